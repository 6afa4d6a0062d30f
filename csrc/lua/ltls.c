/*
 * ltls.c -- moonws.core TLS contexts, TLS on a conn, and HTTP CONNECT.
 * A Lua context holds one reference to its net_tls_ctx and each TLS
 * transport its own, so collecting the Lua object under live connections
 * is safe.  tls_start swaps a conn's TCP transport for TLS on the same fd.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "lconn.h"
#include "lmoonws.h"
#include "net_tcp.h"
#include "net_tls.h"
#include "ws_http.h"

#define TLS_CTX_TYPE "moonws.tls_context"
#define MAX_AUTHORITY 300 /* 255 of host name, brackets, colon, port */
#define MAX_REASON 100    /* of a proxy's reason phrase in a message */

typedef struct ltls_ctx {
  net_tls_ctx *ctx; /* NULL once closed */
} ltls_ctx;

/* ---- contexts ---- */

static ltls_ctx *check_ctx(lua_State *L, int idx) {
  ltls_ctx *c = luaL_checkudata(L, idx, TLS_CTX_TYPE);
  if (!c->ctx)
    luaL_error(L, "attempt to use a closed TLS context");
  return c;
}

/* A string field of the config table (NUL bytes would cut a path short:
 * raise rather than open another file). */
static const char *opt_string(lua_State *L, const char *name) {
  lua_getfield(L, 1, name);
  const char *s = NULL;
  if (!lua_isnil(L, -1)) {
    size_t len;
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "TLS option '%s' must be a string", name);
    s = lua_tolstring(L, -1, &len);
    if (strlen(s) != len || len == 0)
      luaL_error(L, "TLS option '%s' must be a non-empty string without "
                    "NUL bytes", name);
  }
  lua_pop(L, 1); /* the table keeps the string alive */
  return s;
}

static bool opt_bool(lua_State *L, const char *name, bool def) {
  lua_getfield(L, 1, name);
  int type = lua_type(L, -1);
  if (type != LUA_TNIL && type != LUA_TBOOLEAN)
    luaL_error(L, "TLS option '%s' must be a boolean", name);
  bool v = type == LUA_TNIL ? def : lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* core.tls_context{server, verify, cafile, capath, cert, key, ciphers} ->
 * ctx | nil, message, "tls".  verify defaults to true for a client (check
 * the server) and false for a server (ask for no client certificate). */
static int tls_context(lua_State *L) {
  static const char *const known[] = {"server", "verify", "cafile", "capath",
                                      "cert",   "key",    "ciphers", NULL};
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    lua_pop(L, 1);
    const char *key = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
    int i = 0;
    while (known[i] && strcmp(known[i], key) != 0)
      i++;
    if (!known[i])
      return luaL_error(L, "unknown TLS option '%s'",
                        lua_type(L, -1) == LUA_TSTRING ? key : "?");
  }
  net_tls_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.server = opt_bool(L, "server", false);
  cfg.verify = opt_bool(L, "verify", !cfg.server);
  cfg.cafile = opt_string(L, "cafile");
  cfg.capath = opt_string(L, "capath");
  cfg.cert = opt_string(L, "cert");
  cfg.key = opt_string(L, "key");
  cfg.ciphers = opt_string(L, "ciphers");

  ltls_ctx *c = compat_newuserdata(L, sizeof *c, 0);
  c->ctx = NULL; /* closed until created */
  luaL_setmetatable(L, TLS_CTX_TYPE);
  char err[300];
  c->ctx = net_tls_ctx_new(&cfg, err, sizeof err);
  if (!c->ctx)
    return lmoonws_fail(L, WS_E_TLS, err);
  return 1;
}

static int ctx_close(lua_State *L) {
  ltls_ctx *c = luaL_checkudata(L, 1, TLS_CTX_TYPE);
  net_tls_ctx_unref(c->ctx);
  c->ctx = NULL;
  return 0;
}

static int ctx_is_server(lua_State *L) {
  lua_pushboolean(L, net_tls_ctx_is_server(check_ctx(L, 1)->ctx));
  return 1;
}

static int ctx_tostring(lua_State *L) {
  ltls_ctx *c = luaL_checkudata(L, 1, TLS_CTX_TYPE);
  lua_pushfstring(L, "moonws.tls_context (%s, %p)",
                  !c->ctx                          ? "closed"
                  : net_tls_ctx_is_server(c->ctx) ? "server"
                                                   : "client",
                  (void *)c);
  return 1;
}

/* ---- TLS on a conn ---- */

static net_transport *check_tls(lua_State *L, lconn *c) {
  net_transport *t = lconn_transport(c);
  if (t && !net_tls_is_tls(t))
    luaL_error(L, "not a TLS connection (call tls_start first)");
  return t;
}

/* core.tls_start(conn, ctx [, servername]) -> true | nil, message, name:
 * from now on the conn speaks TLS on its socket (the client sends its
 * hello on the first tls_handshake).  Bytes still queued to send would go
 * out encrypted and bytes already received are not TLS: both are refused. */
static int tls_start(lua_State *L) {
  lconn *c = lconn_check(L, 1);
  ltls_ctx *ctx = check_ctx(L, 2);
  const char *servername = luaL_optstring(L, 3, NULL);
  net_transport *t = lconn_transport(c);
  if (!t)
    return lmoonws_fail(L, WS_E_CLOSED, "socket closed");
  if (net_tls_is_tls(t))
    return luaL_error(L, "TLS already started on this connection");
  if (ws_buf_len(lconn_output(c)))
    return luaL_error(L, "tls_start with bytes queued to send (flush first)");
  if (ws_buf_len(lconn_input(c)))
    return lmoonws_fail(L, WS_E_TLS,
                        "the peer sent data before the TLS handshake");
  int fd = net_tcp_transport_release(t);
  if (fd < 0)
    return luaL_error(L, "tls_start needs a plain TCP connection");
  lconn_set_transport(c, NULL);
  char err[300];
  net_transport *tls =
      net_tls_transport_new(ctx->ctx, fd, servername, err, sizeof err);
  if (!tls) {
    /* Back to plain TCP, so the conn still owns (and closes) its fd. */
    net_transport *tcp = net_tcp_transport_new(fd);
    if (!tcp)
      net_tcp_close(fd);
    lconn_set_transport(c, tcp);
    return lmoonws_fail(L, WS_E_TLS, err);
  }
  lconn_set_transport(c, tls);
  lua_pushboolean(L, 1);
  return 1;
}

/* core.tls_handshake(conn) -> true | 0, "read"|"write" | nil, message,
 * "tls".  After true, decrypted bytes may already wait: read before
 * waiting for the socket (conn:pending()). */
static int tls_handshake(lua_State *L) {
  lconn *c = lconn_check(L, 1);
  net_transport *t = check_tls(L, c);
  if (!t)
    return lmoonws_fail(L, WS_E_CLOSED, "socket closed");
  int r = net_tls_handshake(t);
  if (r == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (r == NET_WANT_READ || r == NET_WANT_WRITE) {
    lua_pushinteger(L, 0);
    lua_pushstring(L, r == NET_WANT_READ ? "read" : "write");
    return 2;
  }
  return lmoonws_fail(L, WS_E_TLS, t->message ? t->message : "TLS failed");
}

static void set_nonempty(lua_State *L, const char *field, const char *s) {
  if (s && s[0]) {
    lua_pushstring(L, s);
    lua_setfield(L, -2, field);
  }
}

/* core.tls_info(conn) -> {version, cipher, alpn, peer_subject, servername,
 * verified} (empty strings left out) | nil before the handshake is done or
 * on a plain connection. */
static int tls_info(lua_State *L) {
  lconn *c = lconn_check(L, 1);
  net_transport *t = lconn_transport(c);
  net_tls_info info;
  if (!t || !net_tls_get_info(t, &info))
    return 0;
  lua_createtable(L, 0, 6);
  set_nonempty(L, "version", info.version);
  set_nonempty(L, "cipher", info.cipher);
  set_nonempty(L, "alpn", info.alpn);
  set_nonempty(L, "peer_subject", info.peer_subject);
  set_nonempty(L, "servername", info.servername);
  lua_pushboolean(L, info.verified);
  lua_setfield(L, -2, "verified");
  return 1;
}

/* ---- HTTP CONNECT (RFC 7231 4.3.6) ---- */

/* "host:port" as a request-target of CONNECT: a reg-name, an IPv4 or a
 * bracketed IPv6 literal, and a port 1..65535; nothing that could end the
 * line or the field. */
static bool valid_authority(const char *s, size_t len) {
  static const char extra[] = "-._~!$&'()*+,;=%[]:";
  if (len == 0 || len > MAX_AUTHORITY || strlen(s) != len)
    return false;
  size_t colon = len;
  for (size_t i = 0; i < len; i++) {
    char ch = s[i];
    bool alnum = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                 (ch >= '0' && ch <= '9');
    if (!alnum && !strchr(extra, ch))
      return false;
    if (ch == ':')
      colon = i;
  }
  if (colon == 0 || colon + 1 >= len || len - colon - 1 > 5)
    return false;
  long port = 0;
  for (size_t i = colon + 1; i < len; i++) {
    if (s[i] < '0' || s[i] > '9')
      return false;
    port = port * 10 + (s[i] - '0');
  }
  if (port < 1 || port > 65535)
    return false;
  /* An IPv6 literal's colons are inside its brackets. */
  return s[0] == '[' ? s[colon - 1] == ']' : memchr(s, ':', colon) == NULL;
}

/* core.proxy_request(conn, "host:port" [, proxy_authorization]) -> true |
 * nil, message, name: queue the CONNECT request on the conn's output. */
static int proxy_request(lua_State *L) {
  lconn *c = lconn_check(L, 1);
  size_t alen, plen = 0;
  const char *authority = luaL_checklstring(L, 2, &alen);
  const char *auth = luaL_optlstring(L, 3, NULL, &plen);
  luaL_argcheck(L, valid_authority(authority, alen), 2,
                "invalid authority (expected host:port)");
  luaL_argcheck(L, !auth || (ws_http_is_field_value(auth, plen) &&
                             strlen(auth) == plen),
                3, "invalid Proxy-Authorization value (control characters)");
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "CONNECT ");
  luaL_addlstring(&b, authority, alen);
  luaL_addstring(&b, " HTTP/1.1\r\nHost: ");
  luaL_addlstring(&b, authority, alen);
  luaL_addstring(&b, "\r\n");
  if (auth) {
    luaL_addstring(&b, "Proxy-Authorization: ");
    luaL_addlstring(&b, auth, plen);
    luaL_addstring(&b, "\r\n");
  }
  luaL_addstring(&b, "\r\n");
  luaL_pushresult(&b);
  size_t len;
  const char *req = lua_tolstring(L, -1, &len);
  if (ws_buf_append(lconn_output(c), req, len))
    return lmoonws_fail(L, WS_E_NOMEM, NULL);
  lua_pushboolean(L, 1);
  return 1;
}

/* core.proxy_response(conn, max) -> nil (the head is not complete) | true
 * (2xx: the tunnel is open; exactly the head is consumed, what follows
 * belongs to the tunnel) | false, status, message (status nil when the
 * answer is not HTTP or over max bytes). */
static int proxy_response(lua_State *L) {
  lconn *c = lconn_check(L, 1);
  lua_Integer max = luaL_checkinteger(L, 2);
  luaL_argcheck(L, max > 0, 2, "max must be positive");
  ws_buf *in = lconn_input(c);
  size_t len = ws_buf_len(in);
  size_t limit = (size_t)max < len ? (size_t)max : len;
  ws_http_response res;
  int rc = ws_http_parse_response((const char *)ws_buf_data(in), limit, &res);
  if (rc == WS_INCOMPLETE) {
    if (len < (size_t)max)
      return 0;
    lua_pushboolean(L, 0);
    lua_pushnil(L);
    char num[32];
    snprintf(num, sizeof num, "%lld", (long long)max);
    lua_pushfstring(L, "proxy response header over %s bytes", num);
    return 3;
  }
  if (rc == WS_ERROR) {
    lua_pushboolean(L, 0);
    lua_pushnil(L);
    lua_pushfstring(L, "malformed proxy response: %s",
                    res.message ? res.message : "bad syntax");
    return 3;
  }
  ws_buf_consume(in, (size_t)rc);
  if (res.status >= 200 && res.status <= 299) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushboolean(L, 0);
  lua_pushinteger(L, res.status);
  lua_pushfstring(L, "proxy answered %d ", res.status);
  if (res.reason_len)
    lua_pushlstring(L, res.reason,
                    res.reason_len < MAX_REASON ? res.reason_len : MAX_REASON);
  else
    lua_pushstring(L, ws_http_reason_phrase(res.status));
  lua_concat(L, 2);
  return 3;
}

void lmoonws_open_tls(lua_State *L) {
  static const luaL_Reg ctx_methods[] = {{"close", ctx_close},
                                         {"is_server", ctx_is_server},
                                         {NULL, NULL}};
  static const luaL_Reg functions[] = {{"tls_context", tls_context},
                                       {"tls_start", tls_start},
                                       {"tls_handshake", tls_handshake},
                                       {"tls_info", tls_info},
                                       {"proxy_request", proxy_request},
                                       {"proxy_response", proxy_response},
                                       {NULL, NULL}};
  lmoonws_new_type(L, TLS_CTX_TYPE, ctx_methods, ctx_close);
  luaL_getmetatable(L, TLS_CTX_TYPE);
  lua_pushcfunction(L, ctx_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  luaL_setfuncs(L, functions, 0);
}
