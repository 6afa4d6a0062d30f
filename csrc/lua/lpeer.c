/*
 * lpeer.c -- moonws.core's view of who the peer is: the PROXY protocol
 * header a load balancer writes first (parsed by the core's
 * ws_proxyproto), and IP addresses as bytes and as text for the Lua side
 * that judges X-Forwarded-For and Forwarded against trusted_proxies
 * (moonws.peer_address).
 */
#include <string.h>

#include "lconn.h"
#include "lmoonws.h"
#include "net_tcp.h"
#include "ws_proxyproto.h"

/* The text of a 4- or 16-byte address, pushed; false when it fails. */
static bool push_ip(lua_State *L, const uint8_t *addr, size_t len) {
  char text[64];
  if (!net_ip_format(addr, len, text, sizeof text))
    return false;
  lua_pushstring(L, text);
  return true;
}

static int push_header(lua_State *L, const ws_proxyproto *pp) {
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, pp->version);
  lua_setfield(L, -2, "version");
  lua_pushboolean(L, pp->local);
  lua_setfield(L, -2, "local");
  if (!pp->local) {
    size_t n = pp->family == 4 ? 4 : 16;
    if (!push_ip(L, pp->src, n))
      return lmoonws_fail(L, WS_E_HANDSHAKE, "PROXY header: unprintable address");
    lua_setfield(L, -2, "source");
    if (!push_ip(L, pp->dst, n))
      return lmoonws_fail(L, WS_E_HANDSHAKE, "PROXY header: unprintable address");
    lua_setfield(L, -2, "destination");
    lua_pushinteger(L, pp->src_port);
    lua_setfield(L, -2, "source_port");
    lua_pushinteger(L, pp->dst_port);
    lua_setfield(L, -2, "destination_port");
  }
  return 1;
}

/* core.proxy_header(conn) -> header | 0 (more bytes needed: wait until
 * readable) | false (end of stream) | nil, message, name.  Before TLS and
 * before the request: the kernel's bytes are only peeked at, and exactly
 * the header's are taken (kept in the conn's input while incomplete), so
 * what follows -- a TLS hello, the request -- is left for its reader.
 * header = {version = 1|2, local = bool [, source, source_port,
 * destination, destination_port]} (local: keep the socket's address). */
static int proxy_header(lua_State *L) {
  lconn *c = lconn_check(L, 1);
  net_transport *t = lconn_transport(c);
  ws_buf *in = lconn_input(c);
  uint8_t buf[WS_PROXYPROTO_MAX];
  size_t have = ws_buf_len(in);
  if (!t)
    return lmoonws_fail(L, WS_E_CLOSED, "socket closed");
  if (have >= sizeof buf)
    return luaL_error(L, "proxy_header: input already past a header's bound");
  if (have) /* an empty buffer may have no data pointer at all */
    memcpy(buf, ws_buf_data(in), have);
  ssize_t r = net_tcp_peek(t, buf + have, sizeof buf - have);
  if (r == NET_WANT_READ || r == NET_WANT_WRITE) {
    lua_pushinteger(L, 0);
    return 1;
  }
  if (r == NET_EOF) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (r < 0)
    return t->err ? lmoonws_fail_errno(L, "read", t->err)
                  : luaL_error(L, "proxy_header needs a plain TCP connection");
  size_t total = have + (size_t)r;
  ws_proxyproto pp;
  int n = ws_proxyproto_parse(buf, total, &pp);
  if (n == WS_ERROR)
    return lmoonws_fail(L, WS_E_HANDSHAKE, pp.message);
  /* Take the header's bytes out of the kernel: all peeked ones while it
   * is incomplete (each belongs to it), else exactly its rest. */
  size_t take = n == WS_INCOMPLETE ? (size_t)r : (size_t)n - have;
  uint8_t sink[WS_PROXYPROTO_MAX];
  if (take && t->ops->read(t, sink, take) != (ssize_t)take)
    return lmoonws_fail(L, WS_E_IO, "PROXY header: the peeked bytes could not be read");
  if (n == WS_INCOMPLETE) {
    if (ws_buf_append(in, buf + have, take))
      return lmoonws_fail(L, WS_E_NOMEM, NULL);
    lua_pushinteger(L, 0);
    return 1;
  }
  ws_buf_clear(in);
  return push_header(L, &pp);
}

/* core.ip_bytes(text) -> the 4 or 16 bytes of an IPv4 or IPv6 address in
 * text (no brackets, no zone), or nil. */
static int ip_bytes(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  uint8_t a[16];
  if (ws_proxyproto_ipv4(s, len, a))
    lua_pushlstring(L, (const char *)a, 4);
  else if (ws_proxyproto_ipv6(s, len, a))
    lua_pushlstring(L, (const char *)a, 16);
  else
    lua_pushnil(L);
  return 1;
}

/* core.ip_text(bytes) -> the canonical text of a 4- or 16-byte address. */
static int ip_text(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  luaL_argcheck(L, len == 4 || len == 16, 1, "4 or 16 bytes expected");
  if (!push_ip(L, (const uint8_t *)s, len))
    lua_pushnil(L);
  return 1;
}

void lmoonws_open_peer(lua_State *L) {
  static const luaL_Reg functions[] = {{"proxy_header", proxy_header},
                                       {"ip_bytes", ip_bytes},
                                       {"ip_text", ip_text},
                                       {NULL, NULL}};
  luaL_setfuncs(L, functions, 0);
  lua_pushinteger(L, WS_PROXYPROTO_MAX);
  lua_setfield(L, -2, "PROXY_HEADER_MAX");
}
