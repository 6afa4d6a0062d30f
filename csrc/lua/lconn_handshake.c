/*
 * lconn_handshake.c -- a conn's opening handshake: the client's request and
 * the judging of the answer, the server's parsing of the request and its
 * 101 or refusal, all by the core's parsers and builders; and the
 * permessage-deflate negotiation, whose agreed state the conn then owns.
 * Runtime failures (out of memory) have results of their own, never the
 * nil that means "not complete yet".
 */
#include <stdlib.h>
#include <string.h>

#include "lconn_priv.h"
#include "ws_http.h"

/* ---- the opening handshake ---- */

/* What only the opening handshake needs, made on first use and freed when
 * it is over: an open connection does not carry it. */
struct lconn_opening {
  char key[WS_KEY_LEN + 1]; /* client: the Sec-WebSocket-Key sent */
  ws_deflate_options pmd;   /* set_compression(); enabled false = off */
  ws_buf ext; /* client: the offer sent; server: the request's
                 Sec-WebSocket-Extensions, fields joined */
};

/* c's opening state, made when missing; NULL when memory ran out. */
static struct lconn_opening *opening(lconn *c) {
  if (!c->opening)
    c->opening = calloc(1, sizeof *c->opening);
  return c->opening;
}

static bool pmd_enabled(const lconn *c) {
  return c->opening && c->opening->pmd.enabled;
}

void lconn_opening_free(lconn *c) {
  if (c->opening) {
    ws_buf_free(&c->opening->ext);
    free(c->opening);
    c->opening = NULL;
  }
}

/* limits(max_payload, max_frame): set before the handshake completes. */
static int conn_limits(lua_State *L) {
  lconn *c = lconn_self(L);
  lua_Integer max_payload = luaL_checkinteger(L, 2);
  lua_Integer max_frame = luaL_checkinteger(L, 3);
  luaL_argcheck(L, max_payload > 0, 2, "max_payload must be positive");
  luaL_argcheck(L, max_frame > 0, 3, "max_frame must be positive");
  if (!c->handshaking)
    return luaL_error(L, "limits can only be set before the handshake ends");
  ws_conn_config cfg = {.max_payload = (uint64_t)max_payload,
                        .max_frame = (uint64_t)max_frame,
                        .defer_fail_close = true};
  ws_buf keep = c->ws.out; /* handshake bytes may already be queued */
  size_t budget = c->ws.budget;
  c->ws.out = (ws_buf)WS_BUF_INIT;
  ws_role role = c->ws.role;
  ws_conn_free(&c->ws);
  ws_conn_init(&c->ws, role, &cfg);
  ws_conn_set_deflate(&c->ws, c->deflate);
  ws_conn_set_budget(&c->ws, budget);
  c->ws.out = keep;
  return 0;
}

/* Window bits from field name of the table at idx: nil, false or true
 * (not asked, or for client_max_window_bits: offered without a value) or
 * an integer 8..15. */
static uint8_t opt_bits(lua_State *L, int idx, const char *name) {
  lua_Integer v = 0;
  lua_getfield(L, idx, name);
  if (compat_isinteger(L, -1)) {
    v = lua_tointeger(L, -1);
    if (v < 8 || v > 15)
      luaL_error(L, "compression.%s must be 8..15", name);
  } else if (!lua_isnil(L, -1) && !lua_isboolean(L, -1)) {
    luaL_error(L, "compression.%s must be an integer or a boolean", name);
  }
  lua_pop(L, 1);
  return (uint8_t)v;
}

static lua_Integer opt_int(lua_State *L, int idx, const char *name,
                           lua_Integer dflt, lua_Integer lo, lua_Integer hi) {
  lua_getfield(L, idx, name);
  lua_Integer v = dflt;
  if (!lua_isnil(L, -1)) {
    if (!compat_isinteger(L, -1))
      luaL_error(L, "compression.%s must be an integer", name);
    v = lua_tointeger(L, -1);
    if (v < lo || v > hi)
      luaL_error(L, "compression.%s out of range", name);
  }
  lua_pop(L, 1);
  return v;
}

static bool opt_bool(lua_State *L, int idx, const char *name) {
  lua_getfield(L, idx, name);
  bool v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* set_compression(t): before the handshake.  t nil or false: off; true:
 * the defaults; a table: threshold, level, mem_level,
 * server_no_context_takeover, client_no_context_takeover,
 * server_max_window_bits, client_max_window_bits. */
static int conn_set_compression(lua_State *L) {
  lconn *c = lconn_self(L);
  ws_deflate_options o;
  if (!c->handshaking || c->deflate)
    return luaL_error(L, "compression can only be set before the handshake");
  ws_deflate_options_init(&o);
  if (lua_isnoneornil(L, 2) || (lua_isboolean(L, 2) && !lua_toboolean(L, 2))) {
    o.enabled = false;
  } else if (!lua_isboolean(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    o.server_no_context_takeover = opt_bool(L, 2, "server_no_context_takeover");
    o.client_no_context_takeover = opt_bool(L, 2, "client_no_context_takeover");
    o.server_max_window_bits = opt_bits(L, 2, "server_max_window_bits");
    o.client_max_window_bits = opt_bits(L, 2, "client_max_window_bits");
    o.threshold = (size_t)opt_int(L, 2, "threshold", WS_DEFLATE_DEFAULT_THRESHOLD,
                                  0, COMPAT_MAXINTEGER);
    o.level = (int)opt_int(L, 2, "level", o.level, -1, 9);
    o.mem_level = (int)opt_int(L, 2, "mem_level", o.mem_level, 1, 9);
  }
  if (!o.enabled && !c->opening)
    return 0; /* off, as a new conn is */
  struct lconn_opening *op = opening(c);
  if (!op)
    return luaL_error(L, "not enough memory");
  op->pmd = o;
  return 0;
}

/* The handshake is over: frames follow.  Bytes already read after the
 * head stay in c->in and are parsed first. */
static int conn_handshake_done(lua_State *L) {
  lconn *c = lconn_self(L);
  c->handshaking = false;
  lconn_opening_free(c);
  if (ws_buf_len(&c->in) == 0)
    ws_buf_free(&c->in);
  /* An idle connection holds no output buffer: free it now, or once the
   * handshake's answer has gone. */
  if (ws_buf_len(&c->ws.out) == 0)
    ws_buf_free(&c->ws.out);
  else
    c->out_drop_once = true;
  return 0;
}

/* Collect extra header fields from the table at idx ({name = value}). */
static size_t check_fields(lua_State *L, int idx, ws_handshake_field *fields) {
  size_t n = 0;
  if (lua_isnoneornil(L, idx))
    return 0;
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "headers must map names to string values");
    if (n == MAX_EXTRA_FIELDS)
      luaL_error(L, "too many extra headers (at most %d)", MAX_EXTRA_FIELDS);
    size_t nl, vl;
    const char *name = lua_tolstring(L, -2, &nl);
    const char *value = lua_tolstring(L, -1, &vl);
    if (!ws_http_is_token(name, nl) || strlen(name) != nl)
      luaL_error(L, "invalid header name '%s'", name);
    if (!ws_http_is_field_value(value, vl) || strlen(value) != vl)
      luaL_error(L, "invalid value for header '%s' (control characters)",
                 name);
    /* The strings stay alive: the table holds them. */
    fields[n].name = name;
    fields[n].value = value;
    n++;
    lua_pop(L, 1);
  }
  return n;
}

/* Raise, naming it, on a field the handshake writes itself (in a 101 or
 * elsewhere): the builders would only say that something was invalid. */
static void check_not_reserved(lua_State *L, const ws_handshake_field *fields,
                               size_t n, bool upgrade_response) {
  for (size_t i = 0; i < n; i++)
    if (ws_handshake_reserved_field(fields[i].name, upgrade_response))
      luaL_error(L, "header '%s' is written by the handshake itself",
                 fields[i].name);
}

/* core.check_headers(t): raise on a header that could not be sent in a
 * request (the client's headers option). */
static int check_headers(lua_State *L) {
  ws_handshake_field fields[MAX_EXTRA_FIELDS];
  check_not_reserved(L, fields, check_fields(L, 1, fields), false);
  return 0;
}

static const char *opt_field(lua_State *L, int t, const char *name) {
  lua_getfield(L, t, name);
  const char *s = lua_isnil(L, -1) ? NULL : lua_tostring(L, -1);
  lua_pop(L, 1); /* the table keeps the string alive */
  return s;
}

/* Client: queue the upgrade request.  spec = {host, target, protocols,
 * extensions, origin, headers}. */
static int conn_request(lua_State *L) {
  lconn *c = lconn_self(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  ws_handshake_field fields[MAX_EXTRA_FIELDS];
  lua_getfield(L, 2, "headers");
  size_t nfields = check_fields(L, lua_gettop(L), fields);
  struct lconn_opening *op = opening(c);
  if (!op)
    return lmoonws_fail(L, WS_E_NOMEM, NULL);
  if (ws_handshake_make_key(op->key, NULL, NULL))
    return lmoonws_fail(L, WS_E_NOMEM, "no random bytes for the key");
  ws_handshake_request_spec spec = {
      .host = opt_field(L, 2, "host"),
      .target = opt_field(L, 2, "target"),
      .key = op->key,
      .protocols = opt_field(L, 2, "protocols"),
      .extensions = opt_field(L, 2, "extensions"),
      .origin = opt_field(L, 2, "origin"),
      .fields = fields,
      .num_fields = nfields,
  };
  if (!spec.host || !spec.target)
    return luaL_error(L, "request needs host and target");
  /* With compression set, the conn owns the extension offer: the answer
   * could not name another extension it would understand. */
  char offer[WS_DEFLATE_HEADER_MAX];
  ws_buf_free(&op->ext);
  if (op->pmd.enabled) {
    int n = ws_deflate_offer(&op->pmd, offer, sizeof offer);
    if (n < 0)
      return luaL_error(L, "invalid compression options");
    if (ws_buf_append(&op->ext, offer, (size_t)n))
      return lmoonws_fail(L, WS_E_NOMEM, NULL);
    spec.extensions = offer;
  }
  int rc = ws_handshake_build_request(&c->ws.out, &spec);
  if (rc == WS_ERROR)
    return luaL_error(L, "invalid handshake request field");
  if (rc != 0)
    return lmoonws_fail(L, WS_E_NOMEM, NULL);
  lua_pushboolean(L, 1);
  return 1;
}

static void push_headers(lua_State *L, const ws_http_header *h, size_t n) {
  lua_createtable(L, 0, (int)n);
  for (size_t i = 0; i < n; i++) {
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t k = 0; k < h[i].name_len; k++) {
      char ch = h[i].name[k];
      luaL_addchar(&b, (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch);
    }
    luaL_pushresult(&b);
    lua_pushvalue(L, -1);
    lua_rawget(L, -3);
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      lua_pushlstring(L, h[i].value, h[i].value_len);
    } else { /* repeated field: a comma list, as RFC 7230 3.2.2 allows */
      lua_pushliteral(L, ", ");
      lua_pushlstring(L, h[i].value, h[i].value_len);
      lua_concat(L, 3);
    }
    lua_rawset(L, -3);
  }
}

/* The offered subprotocols of every Sec-WebSocket-Protocol field, in order. */
static void push_protocols(lua_State *L, const ws_http_request *req) {
  lua_newtable(L);
  int n = 0;
  for (size_t i = 0; i < req->num_headers; i++) {
    const ws_http_header *h = &req->headers[i];
    size_t count;
    if (ws_http_header_find(h, 1, "sec-websocket-protocol", &count) == NULL)
      continue;
    size_t pos = 0, len;
    const char *item;
    while (ws_http_list_next(h->value, h->value_len, &pos, &item, &len)) {
      lua_pushlstring(L, item, len);
      lua_rawseti(L, -2, ++n);
    }
  }
}

static void push_request(lua_State *L, const ws_http_request *req) {
  lua_createtable(L, 0, 8);
  lua_pushlstring(L, req->method, req->method_len);
  lua_setfield(L, -2, "method");
  lua_pushlstring(L, req->target, req->target_len);
  lua_setfield(L, -2, "path");
  lua_pushfstring(L, "1.%d", req->version_minor);
  lua_setfield(L, -2, "version");
  push_headers(L, req->headers, req->num_headers);
  lua_getfield(L, -1, "origin");
  lua_setfield(L, -3, "origin");
  lua_getfield(L, -1, "sec-websocket-extensions");
  lua_setfield(L, -3, "extensions");
  lua_setfield(L, -2, "headers");
  push_protocols(L, req);
  lua_setfield(L, -2, "protocols");
}

/* Keep every Sec-WebSocket-Extensions field of req, joined with ", ",
 * for respond_upgrade to negotiate from.  0 or -1 (no memory). */
static int keep_extensions(lconn *c, const ws_http_request *req) {
  if (!pmd_enabled(c))
    return 0; /* nothing will negotiate from them */
  ws_buf *ext = &c->opening->ext;
  ws_buf_free(ext);
  for (size_t i = 0; i < req->num_headers; i++) {
    const ws_http_header *h = &req->headers[i];
    if (!ws_http_header_find(h, 1, "sec-websocket-extensions", NULL))
      continue;
    if ((ws_buf_len(ext) && ws_buf_append(ext, ", ", 2)) ||
        ws_buf_append(ext, h->value, h->value_len))
      return -1;
  }
  return 0;
}

/* Server: parse_request(max_handshake) ->
 *   nil                          the head is not complete yet
 *   request                      an acceptable upgrade (request.key set)
 *   false, status, message [, request [, name]]   refuse with status;
 *                                name "nomem" when it is our memory
 *                                that failed (status 503) */
static int conn_parse_request(lua_State *L) {
  lconn *c = lconn_self(L);
  size_t max = (size_t)luaL_checkinteger(L, 2);
  size_t len = ws_buf_len(&c->in);
  ws_http_request req;
  int rc = ws_http_parse_request((const char *)ws_buf_data(&c->in),
                                 len < max ? len : max, &req);
  if (rc == WS_INCOMPLETE) {
    if (len < max)
      return 0;
    lua_pushboolean(L, 0);
    lua_pushinteger(L, 431);
    lua_pushliteral(L, "request header over max_handshake bytes");
    return 3;
  }
  if (rc == WS_ERROR) {
    lua_pushboolean(L, 0);
    lua_pushinteger(L, req.status ? req.status : 400);
    lua_pushstring(L, req.message ? req.message : "malformed request");
    return 3;
  }
  ws_handshake_verdict v;
  int status = ws_handshake_check_request(&req, &v);
  const char *message = v.message ? v.message : "bad request";
  bool nomem = status == 0 && keep_extensions(c, &req) != 0;
  if (nomem) {
    status = 503;
    message = "out of memory";
  }
  if (status != 0) {
    lua_pushboolean(L, 0);
    lua_pushinteger(L, status);
    lua_pushstring(L, message);
  }
  push_request(L, &req);
  if (status == 0) {
    lua_pushlstring(L, v.key, v.key_len);
    lua_setfield(L, -2, "key");
  }
  /* Everything pushed is copied: the head may go. */
  ws_buf_consume(&c->in, (size_t)rc);
  if (nomem) {
    lua_pushstring(L, ws_error_name(WS_E_NOMEM));
    return 5;
  }
  return status == 0 ? 1 : 4; /* request | false, status, message, request */
}

/* Server: respond_upgrade(key, protocol, extensions, headers) -> true,
 * extensions answered ("" for none).  With compression set, extensions is
 * ignored: the answer is negotiated from the request's offer (kept by
 * parse_request) and the agreed permessage-deflate takes effect. */
static int conn_respond_upgrade(lua_State *L) {
  lconn *c = lconn_self(L);
  size_t key_len;
  const char *key = luaL_checklstring(L, 2, &key_len);
  const char *protocol = luaL_optstring(L, 3, NULL);
  const char *extensions = luaL_optstring(L, 4, NULL);
  ws_handshake_field fields[MAX_EXTRA_FIELDS];
  size_t nfields = check_fields(L, 5, fields);
  check_not_reserved(L, fields, nfields, true);
  char answer[WS_DEFLATE_HEADER_MAX];
  ws_deflate_params p;
  int agreed = 0;
  if (pmd_enabled(c)) {
    struct lconn_opening *op = c->opening;
    size_t n = ws_buf_len(&op->ext);
    agreed = ws_deflate_accept(n ? (const char *)ws_buf_data(&op->ext) : NULL,
                               n, &op->pmd, &p, answer, sizeof answer);
    extensions = agreed == 1 ? answer : NULL;
  }
  size_t before = ws_buf_len(&c->ws.out);
  int rc = ws_handshake_build_response(&c->ws.out, key, key_len, protocol,
                                       extensions, fields, nfields);
  if (rc == WS_ERROR)
    return luaL_error(L, "invalid protocol, extension or header value");
  if (rc != 0)
    return lmoonws_fail(L, WS_E_NOMEM, NULL);
  if (agreed == 1) {
    lconn_drop_deflate(c);
    c->deflate = ws_deflate_new(WS_ROLE_SERVER, &p, &c->opening->pmd);
    if (!c->deflate) {
      c->ws.out.end = c->ws.out.start + before; /* take the 101 back */
      return lmoonws_fail(L, WS_E_NOMEM, NULL);
    }
    ws_conn_set_deflate(&c->ws, c->deflate);
  }
  if (c->opening)
    ws_buf_free(&c->opening->ext);
  lua_pushboolean(L, 1);
  lua_pushstring(L, extensions ? extensions : "");
  return 2;
}

/* Server: respond_refusal(status, reason, headers, body). */
static int conn_respond_refusal(lua_State *L) {
  lconn *c = lconn_self(L);
  lua_Integer status = luaL_checkinteger(L, 2);
  luaL_argcheck(L, status >= 200 && status <= 599, 2,
                "status must be 200..599");
  const char *reason = luaL_optstring(L, 3, NULL);
  ws_handshake_field fields[MAX_EXTRA_FIELDS];
  size_t nfields = check_fields(L, 4, fields);
  check_not_reserved(L, fields, nfields, false);
  size_t body_len = 0;
  const char *body = luaL_optlstring(L, 5, NULL, &body_len);
  int rc = ws_handshake_build_refusal(&c->ws.out, (int)status, reason, fields,
                                      nfields, body, body_len);
  if (rc == WS_ERROR)
    return luaL_error(L, "invalid reason or header value");
  if (rc != 0)
    return lmoonws_fail(L, WS_E_NOMEM, NULL);
  lua_pushboolean(L, 1);
  return 1;
}

/* Client: parse_response(max_handshake, offered_protocols, offered_ext) ->
 *   nil                              not complete yet
 *   true, protocol, extensions, headers   accepted ("" when none)
 *   false, message [, status, headers [, name]]   refused or invalid;
 *                                    name "nomem" when our memory failed */
static int conn_parse_response(lua_State *L) {
  lconn *c = lconn_self(L);
  size_t max = (size_t)luaL_checkinteger(L, 2);
  const char *offered = luaL_optstring(L, 3, NULL);
  bool offered_ext = lua_toboolean(L, 4);
  size_t len = ws_buf_len(&c->in);
  ws_http_response res;
  int rc = ws_http_parse_response((const char *)ws_buf_data(&c->in),
                                  len < max ? len : max, &res);
  if (rc == WS_INCOMPLETE) {
    if (len < max)
      return 0;
    lua_pushboolean(L, 0);
    lua_pushliteral(L, "response header over max_handshake bytes");
    return 2;
  }
  if (rc == WS_ERROR) {
    lua_pushboolean(L, 0);
    lua_pushfstring(L, "malformed response: %s",
                    res.message ? res.message : "bad syntax");
    return 2;
  }
  ws_handshake_answer a;
  struct lconn_opening *op = c->opening; /* made by request() */
  bool pmd = pmd_enabled(c) && ws_buf_len(&op->ext);
  const char *why = NULL;
  if (ws_handshake_check_response(&res, op ? op->key : "", offered,
                                  offered_ext || pmd, &a))
    why = a.message ? a.message : "invalid handshake response";
  char agreed_ext[WS_DEFLATE_HEADER_MAX] = "";
  if (!why && pmd && a.extensions) {
    ws_deflate_params p;
    int r = ws_deflate_check_response(a.extensions, a.extensions_len,
                                      (const char *)ws_buf_data(&op->ext),
                                      ws_buf_len(&op->ext), &p, &why);
    if (r == 1) {
      lconn_drop_deflate(c);
      c->deflate = ws_deflate_new(WS_ROLE_CLIENT, &p, &op->pmd);
      if (!c->deflate) {
        lua_pushboolean(L, 0);
        lua_pushliteral(L, "out of memory for permessage-deflate");
        lua_pushinteger(L, res.status);
        push_headers(L, res.headers, res.num_headers);
        lua_pushstring(L, ws_error_name(WS_E_NOMEM));
        ws_buf_consume(&c->in, (size_t)rc);
        return 5;
      }
      ws_conn_set_deflate(&c->ws, c->deflate);
      ws_deflate_format(&p, agreed_ext, sizeof agreed_ext);
    }
  }
  if (why) {
    lua_pushboolean(L, 0);
    if (a.message)
      lua_pushstring(L, why);
    else
      lua_pushfstring(L, "invalid permessage-deflate answer: %s", why);
    lua_pushinteger(L, res.status);
    push_headers(L, res.headers, res.num_headers);
    ws_buf_consume(&c->in, (size_t)rc);
    return 4;
  }
  lua_pushboolean(L, 1);
  lua_pushlstring(L, a.protocol ? a.protocol : "", a.protocol_len);
  if (pmd)
    lua_pushstring(L, agreed_ext);
  else
    lua_pushlstring(L, a.extensions ? a.extensions : "", a.extensions_len);
  push_headers(L, res.headers, res.num_headers);
  if (op)
    ws_buf_free(&op->ext);
  ws_buf_consume(&c->in, (size_t)rc);
  return 4;
}


const luaL_Reg lconn_handshake_methods[] = {
    {"limits", conn_limits},
    {"set_compression", conn_set_compression},
    {"request", conn_request},
    {"parse_response", conn_parse_response},
    {"parse_request", conn_parse_request},
    {"respond_upgrade", conn_respond_upgrade},
    {"respond_refusal", conn_respond_refusal},
    {"handshake_done", conn_handshake_done},
    {NULL, NULL}};

const luaL_Reg lconn_handshake_functions[] = {
    {"check_headers", check_headers},
    {NULL, NULL}};
