/*
 * lconn_io.c -- a conn's transport: reading (into one scratch buffer shared
 * by every conn of the Lua state, or straight into a big frame's message),
 * writing what the core queued, and the fronts that own the socket
 * themselves (feed, take_output).  Nothing here waits: every call reports
 * "would block" and the Lua layer decides what to wait for.
 */
#include <errno.h>
#include <string.h>

#include "lconn_priv.h"
#include "net_tcp.h"
#include "net_tls.h"

/* ---- transport ---- */

static int conn_fd(lua_State *L) {
  lconn *c = lconn_self(L);
  if (!c->t)
    return 0;
  lua_pushinteger(L, c->t->fd);
  return 1;
}

static int conn_peer(lua_State *L) {
  lconn *c = lconn_self(L);
  char buf[80];
  if (!c->t)
    return 0;
  lua_pushstring(L, net_peer_format(c->t->fd, buf, sizeof buf));
  return 1;
}

/* After the fd turned writable: true, or nil, message, name. */
static int conn_connect_result(lua_State *L) {
  lconn *c = lconn_self(L);
  if (!c->t)
    return lmoonws_fail(L, WS_E_CLOSED, "not connected");
  int err = net_tcp_connect_result(c->t->fd);
  if (err == EINPROGRESS || err == EALREADY)
    return 0; /* spurious wake-up: keep waiting */
  if (err)
    return lmoonws_fail_errno(L, "connect", err);
  lua_pushboolean(L, 1);
  return 1;
}

/* Shut down the sending side (after our close frame went out). */
static int conn_shutdown(lua_State *L) {
  lconn *c = lconn_self(L);
  if (c->t)
    c->t->ops->shutdown(c->t);
  return 0;
}

/* Close the socket now; the conn keeps its protocol state for inspection. */
static int conn_close_fd(lua_State *L) {
  lconn *c = lconn_self(L);
  if (c->sh->owner == c)
    c->sh->owner = NULL;
  if (c->t) {
    c->t->ops->destroy(c->t);
    c->t = NULL;
  }
  return 0;
}

static int push_transport_failure(lua_State *L, net_transport *t,
                                  const char *what) {
  if (t->err)
    return lmoonws_fail_errno(L, what, t->err);
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", what, t->message ? t->message : "failed");
  /* Without an errno the TLS layer itself failed (a bad record, an alert). */
  lua_pushstring(L, ws_error_name(net_tls_is_tls(t) ? WS_E_TLS : WS_E_IO));
  return 3;
}

/* Move bytes another conn left unparsed in the scratch into its own
 * buffer, so the scratch can take new bytes. */
static int spill_scratch(lconn_shared *sh) {
  lconn *owner = sh->owner;
  if (owner && sh->pos < sh->len) {
    if (ws_buf_append(&owner->in, sh->scratch + sh->pos, sh->len - sh->pos))
      return -1;
  }
  sh->owner = NULL;
  sh->pos = sh->len = 0;
  return 0;
}

static size_t unparsed(const lconn *c) {
  size_t n = ws_buf_len(&c->in);
  if (c->sh->owner == c)
    n += c->sh->len - c->sh->pos;
  return n;
}


ssize_t lconn_read_some(lconn *c, size_t max, size_t direct_max,
                        lconn_read_info *info) {
  uint8_t *dst;
  size_t room;
  ssize_t r;
  info->direct = false;
  info->filled = false;
  if (!c->handshaking &&
      (dst = ws_conn_payload_room(&c->ws, direct_max, &room)) != NULL &&
      room >= DIRECT_MIN) {
    /* A big frame's payload, read into the message itself (no scratch,
     * no second copy).  A message it completes waits in direct_ev. */
    r = c->t->ops->read(c->t, dst, room);
    if (r > 0) {
      /* A room that ended the frame says nothing of more input: reading
       * on would mostly cost a read that would block (a peer waiting for
       * the answer to its big message). */
      bool frame_left = ws_conn_payload_commit(&c->ws, (size_t)r, &c->direct_ev);
      c->bytes_read += (uint64_t)r;
      info->direct = true;
      info->filled = (size_t)r == room && frame_left;
    }
    return r;
  }
  if (max == 0)
    return LCONN_READ_BUDGET;
  if (c->handshaking) {
    if (ws_buf_reserve(&c->in, HANDSHAKE_READ))
      return LCONN_READ_NOMEM;
    dst = ws_buf_tail(&c->in);
    room = ws_buf_room(&c->in);
  } else {
    if (spill_scratch(c->sh))
      return LCONN_READ_NOMEM;
    dst = c->sh->scratch;
    room = SCRATCH_SIZE;
  }
  if (max < room)
    room = max;
  r = c->t->ops->read(c->t, dst, room);
  if (r > 0) {
    if (c->handshaking) {
      ws_buf_commit(&c->in, (size_t)r);
    } else {
      c->sh->owner = c;
      c->sh->pos = 0;
      c->sh->len = (size_t)r;
    }
    c->bytes_read += (uint64_t)r;
    info->filled = (size_t)r == room;
  }
  return r;
}

/* read([max]) -> n bytes now waiting to be parsed (> 0); 0, "read"|"write"
 * when the transport would block; false at end of stream; nil, message,
 * name.  max bounds the bytes taken from the transport in this call. */
static int conn_read(lua_State *L) {
  lconn *c = lconn_self(L);
  lua_Integer max = luaL_optinteger(L, 2, SCRATCH_SIZE);
  luaL_argcheck(L, max > 0, 2, "max must be positive");
  if (!c->t)
    return lmoonws_fail(L, WS_E_CLOSED, "socket closed");
  size_t waiting = unparsed(c) + (c->direct_ev.type != WS_EV_NONE) +
                   c->ws.paused;
  if (waiting && !c->handshaking) {
    lua_pushinteger(L, (lua_Integer)waiting);
    return 1;
  }
  lconn_read_info info;
  ssize_t r = lconn_read_some(c, (size_t)max, (size_t)max, &info);
  if (r > 0) {
    /* A direct read leaves nothing unparsed: it says what it took. */
    size_t n = unparsed(c);
    lua_pushinteger(L, (lua_Integer)(n ? n : (size_t)r));
    return 1;
  }
  return lconn_push_read_status(L, c, r);
}

/* What read returns for a transport result r <= 0. */
int lconn_push_read_status(lua_State *L, lconn *c, ssize_t r) {
  switch (r) {
  case LCONN_READ_NOMEM:
    return lmoonws_fail(L, WS_E_NOMEM, NULL);
  case NET_EOF:
    lua_pushboolean(L, 0);
    return 1;
  case NET_WANT_READ:
    lua_pushinteger(L, 0);
    lua_pushliteral(L, "read");
    return 2;
  case NET_WANT_WRITE:
    lua_pushinteger(L, 0);
    lua_pushliteral(L, "write");
    return 2;
  default:
    return push_transport_failure(L, c->t, "read");
  }
}

ssize_t lconn_write_out(lconn *c) {
  ws_buf *out = &c->ws.out;
  while (ws_buf_len(out)) {
    ssize_t w = c->t->ops->write(c->t, ws_buf_data(out), ws_buf_len(out));
    if (w <= 0)
      return w;
    ws_conn_out_consume(&c->ws, (size_t)w);
  }
  ws_buf_trim(out, c->out_drop_once ? 0 : KEEP_BUFFER);
  c->out_drop_once = false;
  return 0;
}

/* flush() -> bytes still queued (0 when all went out) and, when not 0,
 * "write"|"read" (what to wait for); or nil, message, name. */
static int conn_flush(lua_State *L) {
  lconn *c = lconn_self(L);
  c->dirty = false;
  if (!c->t)
    return lmoonws_fail(L, WS_E_CLOSED, "socket closed");
  ssize_t w = lconn_write_out(c);
  if (w == 0) {
    lua_pushinteger(L, 0);
    return 1;
  }
  if (w == NET_WANT_WRITE || w == NET_WANT_READ) {
    lua_pushinteger(L, (lua_Integer)ws_buf_len(&c->ws.out));
    lua_pushstring(L, w == NET_WANT_WRITE ? "write" : "read");
    return 2;
  }
  return push_transport_failure(L, c->t, "write");
}

static int conn_buffered(lua_State *L) {
  lconn *c = lconn_self(L);
  lua_pushinteger(L, (lua_Integer)ws_buf_len(&c->ws.out));
  return 1;
}

/* Bytes held inside the transport (TLS) that a read would return now. */
static int conn_pending(lua_State *L) {
  lconn *c = lconn_self(L);
  lua_pushboolean(L, c->t && c->t->ops->pending && c->t->ops->pending(c->t));
  return 1;
}

/* Drop every received byte not parsed yet (a connection being closed). */
static int conn_discard(lua_State *L) {
  lconn *c = lconn_self(L);
  if (c->sh->owner == c)
    c->sh->owner = NULL;
  ws_buf_free(&c->in);
  c->direct_ev.type = WS_EV_NONE;
  return 0;
}

/* ---- fronts without a transport ---- */

static int conn_feed(lua_State *L) {
  lconn *c = lconn_self(L);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  if (c->sh->owner == c && spill_scratch(c->sh))
    return lmoonws_fail(L, WS_E_NOMEM, NULL);
  if (ws_buf_append(&c->in, s, n))
    return lmoonws_fail(L, WS_E_NOMEM, NULL);
  c->bytes_read += n;
  lua_pushboolean(L, 1);
  return 1;
}

/* take_input(max) -> up to max bytes received and not parsed, taken (""
 * when none): the start of a refused handshake's body, after its head. */
static int conn_take_input(lua_State *L) {
  lconn *c = lconn_self(L);
  lua_Integer max = luaL_checkinteger(L, 2);
  luaL_argcheck(L, max >= 0, 2, "max must not be negative");
  if (c->sh->owner == c && spill_scratch(c->sh))
    return lmoonws_fail(L, WS_E_NOMEM, NULL);
  size_t n = ws_buf_len(&c->in);
  if ((size_t)max < n)
    n = (size_t)max;
  lua_pushlstring(L, (const char *)ws_buf_data(&c->in), n);
  ws_buf_consume(&c->in, n);
  return 1;
}

/* Everything queued, as one string: taking it may release a held pong,
 * which is taken too. */
static int conn_take_output(lua_State *L) {
  lconn *c = lconn_self(L);
  ws_buf *out = &c->ws.out;
  int pieces = 0;
  c->dirty = false;
  do {
    lua_pushlstring(L, (const char *)ws_buf_data(out), ws_buf_len(out));
    ws_conn_out_consume(&c->ws, ws_buf_len(out));
    pieces++;
  } while (ws_buf_len(out));
  lua_concat(L, pieces);
  ws_buf_trim(out, KEEP_BUFFER);
  return 1;
}


const luaL_Reg lconn_io_methods[] = {
    {"fd", conn_fd},
    {"peer", conn_peer},
    {"connect_result", conn_connect_result},
    {"read", conn_read},
    {"flush", conn_flush},
    {"buffered", conn_buffered},
    {"pending", conn_pending},
    {"discard", conn_discard},
    {"feed", conn_feed},
    {"take_output", conn_take_output},
    {"take_input", conn_take_input},
    {"shutdown", conn_shutdown},
    {"close_fd", conn_close_fd},
    {NULL, NULL}};
