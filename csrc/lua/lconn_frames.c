/*
 * lconn_frames.c -- a conn after its handshake: the core's events as Lua
 * values (next_event), and sending -- whole messages (a big one written
 * from the Lua string itself), fragments, control frames, the close --
 * with send_limit applied here, on the hot path's one C call.
 */
#include <stdio.h>
#include <string.h>

#include "lconn_priv.h"

/* ---- frames ---- */

/* next_event() -> nil when more input is needed, false when the round's
 * budget (budget()) is spent and the rest waits for the next, else one of
 *   "text"|"binary"|"ping"|"pong", data
 *   "close", code, reason
 *   "error", message, name, code        (the connection has failed) */
bool lconn_pull(lconn *c, lconn_pulled *p) {
  uint8_t *data;
  size_t len;
  if (c->direct_ev.type != WS_EV_NONE) {
    p->ev = c->direct_ev;
    c->direct_ev.type = WS_EV_NONE;
    p->source = 0;
    p->used = 0;
    return true;
  }
  if (ws_buf_len(&c->in) != 0) {
    data = ws_buf_data(&c->in);
    len = ws_buf_len(&c->in);
    p->source = 2;
  } else if (c->sh->owner == c && c->sh->pos < c->sh->len) {
    data = c->sh->scratch + c->sh->pos;
    len = c->sh->len - c->sh->pos;
    p->source = 1;
  } else if (c->ws.paused) { /* zlib still owes output: no input needed */
    data = c->sh->scratch;
    len = 0;
    p->source = 1;
  } else {
    return false;
  }
  p->used = ws_conn_recv(&c->ws, data, len, &p->ev);
  return true;
}

void lconn_pull_done(lconn *c, const lconn_pulled *p) {
  if (p->source == 1) {
    c->sh->pos += p->used;
  } else if (p->source == 2) {
    ws_buf_consume(&c->in, p->used);
    if (ws_buf_len(&c->in) == 0)
      ws_buf_free(&c->in);
  }
}

static int conn_next_event(lua_State *L) {
  lconn *c = lconn_self(L);
  lconn_pulled p;
  if (!lconn_pull(c, &p))
    return 0;
  /* The event may point into the input: push it before the bytes go. */
  int nret = lconn_push_event(L, c, &p.ev);
  lconn_pull_done(c, &p);
  return nret;
}

int lconn_push_event(lua_State *L, lconn *c, const ws_event *e) {
  ws_event ev = *e;
  int nret;
  switch (ev.type) {
  case WS_EV_NONE:
    nret = 0;
    break;
  case WS_EV_BUDGET:
    lua_pushboolean(L, 0);
    nret = 1;
    break;
  case WS_EV_TEXT:
  case WS_EV_BINARY:
  case WS_EV_PING:
  case WS_EV_PONG: {
    static const char *const kinds[] = {NULL, "text", "binary", "ping", "pong"};
    lua_pushstring(L, kinds[ev.type]);
    lua_pushlstring(L, (const char *)ev.data, ev.len);
    nret = 2;
    break;
  }
  case WS_EV_CLOSE:
    lua_pushliteral(L, "close");
    lua_pushinteger(L, ev.code);
    lua_pushlstring(L, (const char *)ev.data, ev.len);
    nret = 3;
    break;
  case WS_EV_ERROR:
  default:
    lua_pushliteral(L, "error");
    lua_pushlstring(L, (const char *)ev.data, ev.len);
    lua_pushstring(L, ws_error_name(ev.error));
    lua_pushinteger(L, ev.code);
    nret = 4;
    break;
  }
  /* Nothing can be inflated or sent compressed after these. */
  if ((ev.type == WS_EV_CLOSE || ev.type == WS_EV_ERROR) && c->deflate)
    lconn_drop_deflate(c);
  return nret;
}

static int push_send_result(lua_State *L, enum ws_error e) {
  if (e == WS_E_NONE) {
    lua_pushboolean(L, 1);
    return 1;
  }
  return lmoonws_fail(L, e, e == WS_E_CLOSED ? "closed" : NULL);
}

static const uint8_t *check_text(lua_State *L, int idx, size_t *len,
                                 bool binary) {
  const char *s = luaL_checklstring(L, idx, len);
  if (!binary && !ws_utf8_valid((const uint8_t *)s, *len))
    luaL_argerror(L, idx, "invalid UTF-8 in a text message (send it as binary)");
  return (const uint8_t *)s;
}

/* A big message with nothing queued before it: header and payload in one
 * gather write, the payload from the Lua string; what the transport does
 * not take now goes on out as usual (a failure shows at the next flush). */
static enum ws_error send_direct(lconn *c, uint8_t op, const uint8_t *data,
                                 size_t len) {
  ws_buf *out = &c->ws.out;
  enum ws_error e = ws_conn_send_header(&c->ws, op, len);
  if (e != WS_E_NONE)
    return e;
  size_t hs = ws_buf_len(out);
  ssize_t w = c->t->ops->write2(c->t, ws_buf_data(out), hs, data, len);
  size_t sent = w > 0 ? (size_t)w : 0;
  if (sent < hs) {
    ws_conn_out_consume(&c->ws, sent);
    sent = 0;
  } else {
    ws_conn_out_consume(&c->ws, hs);
    sent -= hs;
  }
  if (sent < len && ws_buf_append(out, data + sent, len - sent) != 0) {
    /* The header is out and its payload cannot follow: the stream is
     * broken, so the transport goes (the next flush reports it). */
    c->t->ops->destroy(c->t);
    c->t = NULL;
    return WS_E_NOMEM;
  }
  return WS_E_NONE;
}

/* A message longer than size as frames of size bytes (the last shorter):
 * the text was validated whole, so the pieces may cut characters. */
static enum ws_error send_in_frames(lconn *c, uint8_t op, const uint8_t *data,
                                    size_t len, size_t size) {
  for (size_t pos = 0;; pos += size) {
    size_t n = len - pos < size ? len - pos : size;
    bool fin = n == len - pos;
    enum ws_error e = ws_conn_send_fragment(&c->ws, op, data + pos, n, fin);
    if (e != WS_E_NONE || fin)
      return e;
  }
}

enum ws_error lconn_send_message(lconn *c, uint8_t op, const uint8_t *data,
                                 size_t len, size_t fragment_size) {
  if (fragment_size > 0 && len > fragment_size)
    return send_in_frames(c, op, data, len, fragment_size);
  if (len >= DIRECT_MIN && c->t && c->t->ops->write2 &&
      ws_buf_len(&c->ws.out) == 0 && ws_conn_plain_send(&c->ws, len))
    return send_direct(c, op, data, len);
  return ws_conn_send(&c->ws, op, data, len);
}

/* send(data, binary [, limit [, fragment_size]]) -> true, bytes now queued
 * | nil, message, name | false, message (text that is not UTF-8: misuse,
 * which the Lua caller raises at its own caller's line).  With limit
 * (send_limit), nothing is queued while limit bytes or more already wait:
 * a peer that stops reading cannot make memory grow without end.  With fragment_size, a longer message goes as
 * several frames.  Every front sends through here, or through the hot
 * path's send_fast, which applies the same rules. */
static int conn_send(lua_State *L) {
  lconn *c = lconn_self(L);
  bool binary = lua_toboolean(L, 3);
  lua_Integer limit = luaL_optinteger(L, 4, 0);
  lua_Integer fragment_size = luaL_optinteger(L, 5, 0);
  size_t len;
  const uint8_t *data = (const uint8_t *)luaL_checklstring(L, 2, &len);
  if (!binary && !ws_utf8_valid(data, len)) {
    lua_pushboolean(L, 0);
    lua_pushliteral(L, "invalid UTF-8 in a text message (send it as binary)");
    return 2;
  }
  size_t queued = ws_buf_len(&c->ws.out);
  if (limit > 0 && queued >= (size_t)limit)
    return lconn_send_queue_full(L, queued);
  enum ws_error e =
      lconn_send_message(c, binary ? WS_OP_BINARY : WS_OP_TEXT, data, len,
                         fragment_size > 0 ? (size_t)fragment_size : 0);
  int n = push_send_result(L, e);
  if (n == 1)
    lua_pushinteger(L, (lua_Integer)ws_buf_len(&c->ws.out));
  return n + (n == 1);
}

/* nil, "send queue full ...", "too_big": send_limit refused a message. */
int lconn_send_queue_full(lua_State *L, size_t queued) {
  char why[96];
  snprintf(why, sizeof why, "send queue full: %zu bytes wait for a peer "
                            "that is not reading (send_limit)", queued);
  lua_pushnil(L);
  lua_pushstring(L, why);
  lua_pushstring(L, ws_error_name(WS_E_TOO_BIG));
  return 3;
}

/* send_fragment(data, binary, fin [, checked]): one piece of a message
 * sent in parts.  Text pieces are checked one by one (each must end on a
 * character boundary) unless checked says the caller validated the whole
 * message already. */
static int conn_send_fragment(lua_State *L) {
  lconn *c = lconn_self(L);
  bool binary = lua_toboolean(L, 3);
  bool fin = lua_toboolean(L, 4);
  bool checked = lua_toboolean(L, 5);
  size_t len;
  const uint8_t *data = check_text(L, 2, &len, binary || checked);
  return push_send_result(
      L, ws_conn_send_fragment(&c->ws, binary ? WS_OP_BINARY : WS_OP_TEXT,
                               data, len, fin));
}

static int send_control(lua_State *L, uint8_t opcode) {
  lconn *c = lconn_self(L);
  size_t len;
  const char *data = luaL_optlstring(L, 2, "", &len);
  luaL_argcheck(L, len <= WS_CONTROL_MAX, 2,
                "control frame payload over 125 bytes");
  return push_send_result(L, ws_conn_send(&c->ws, opcode, data, len));
}

static int conn_ping(lua_State *L) { return send_control(L, WS_OP_PING); }
static int conn_pong(lua_State *L) { return send_control(L, WS_OP_PONG); }

/* close([code [, reason]]): code nil or 0 sends no status code.  Any code
 * valid on the wire is taken here; the public API applies the stricter
 * application rule. */
static int conn_close(lua_State *L) {
  lconn *c = lconn_self(L);
  lua_Integer code = luaL_optinteger(L, 2, 0);
  size_t len;
  const char *reason = luaL_optlstring(L, 3, "", &len);
  luaL_argcheck(L, code == 0 || ws_close_code_valid_on_wire((unsigned)code), 2,
                "invalid close code");
  luaL_argcheck(L, len <= WS_CLOSE_REASON_MAX, 3,
                "close reason over 123 bytes");
  luaL_argcheck(L, code != 0 || len == 0, 3, "a close reason needs a code");
  luaL_argcheck(L, ws_utf8_valid((const uint8_t *)reason, len), 3,
                "close reason is not valid UTF-8");
  return push_send_result(
      L, ws_conn_close(&c->ws, (unsigned)code, reason, len));
}

/* deflates(n) -> whether a whole message of n bytes would go compressed
 * (the Lua layer deflates big ones a slice per round). */
static int conn_deflates(lua_State *L) {
  lconn *c = lconn_self(L);
  lua_Integer n = luaL_checkinteger(L, 2);
  lua_pushboolean(L, n >= 0 && ws_deflate_wants(c->deflate, (size_t)n));
  return 1;
}

/* budget(n): the bytes the next next_event() calls may inflate in all,
 * renewed once per round, so a deflate bomb costs one slice a round. */
static int conn_budget(lua_State *L) {
  lconn *c = lconn_self(L);
  lua_Integer n = luaL_checkinteger(L, 2);
  luaL_argcheck(L, n > 0, 2, "budget must be positive");
  ws_conn_set_budget(&c->ws, (size_t)n);
  return 0;
}

/* counters([t]) -> t: ws_conn_counters as integer fields (into t when
 * given, so a caller polling often allocates nothing). */
static int conn_counters(lua_State *L) {
  lconn *c = lconn_self(L);
  const ws_conn_counters *k = &c->ws.counters;
  if (lua_istable(L, 2))
    lua_settop(L, 2);
  else
    lua_createtable(L, 0, 11);
#define COUNTER_FIELD(name)                                                    \
  lua_pushinteger(L, (lua_Integer)k->name);                                    \
  lua_setfield(L, -2, #name);
  LCONN_COUNTERS(COUNTER_FIELD)
#undef COUNTER_FIELD
  return 1;
}

/* fail_close(): after an "error" event, queue the failure's close frame
 * (the Lua layer first lets the receiver answer earlier messages). */
static int conn_fail_close(lua_State *L) {
  lconn *c = lconn_self(L);
  return push_send_result(L, ws_conn_fail_close(&c->ws));
}

/* state() -> close_sent, close_received, failed */
static int conn_state(lua_State *L) {
  lconn *c = lconn_self(L);
  lua_pushboolean(L, c->ws.close_sent);
  lua_pushboolean(L, c->ws.close_received);
  lua_pushboolean(L, c->ws.failed);
  return 3;
}

/* core.utf8_valid(s) */
static int utf8_valid(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  lua_pushboolean(L, ws_utf8_valid((const uint8_t *)s, len));
  return 1;
}


const luaL_Reg lconn_frames_methods[] = {
    {"next_event", conn_next_event},
    {"budget", conn_budget},
    {"deflates", conn_deflates},
    {"counters", conn_counters},
    {"send", conn_send},
    {"send_fragment", conn_send_fragment},
    {"ping", conn_ping},
    {"pong", conn_pong},
    {"close", conn_close},
    {"fail_close", conn_fail_close},
    {"state", conn_state},
    {NULL, NULL}};

const luaL_Reg lconn_frames_functions[] = {
    {"utf8_valid", utf8_valid},
    {NULL, NULL}};
