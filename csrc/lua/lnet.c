/*
 * lnet.c -- moonws.core sockets: listeners, outgoing connections, and the
 * resolver that keeps DNS off the loop thread.
 *
 * Socket addresses travel through Lua as opaque strings (a sockaddr's
 * bytes), so Lua can keep a list of them to try in order without a type
 * of its own.  Every descriptor is owned by a userdata from the moment it
 * exists (a conn or a listener), never by a bare integer in Lua.
 */
#include <errno.h>
#include <string.h>

#include "lconn.h"
#include "lmoonws.h"
#include "net_resolver.h"
#include "net_tcp.h"

#define LISTENER_TYPE "moonws.listener"
#define RESOLVER_TYPE "moonws.resolver"

/* ---- listener ---- */

typedef struct listener {
  int fd; /* -1 once closed */
} listener;

static listener *check_listener(lua_State *L) {
  listener *l = luaL_checkudata(L, 1, LISTENER_TYPE);
  if (l->fd < 0)
    luaL_error(L, "attempt to use a closed listener");
  return l;
}

/* core.listen(host, port [, backlog [, reuseport]]) -> listener | nil,
 * message, name.  reuseport: SO_REUSEPORT (see net_tcp.h). */
static int net_listen(lua_State *L) {
  const char *host = luaL_optstring(L, 1, NULL);
  lua_Integer port = luaL_checkinteger(L, 2);
  lua_Integer backlog = luaL_optinteger(L, 3, 511);
  int flags = lua_toboolean(L, 4) ? NET_TCP_REUSEPORT : 0;
  luaL_argcheck(L, port >= 0 && port <= 65535, 2, "port must be 0..65535");
  listener *l = compat_newuserdata(L, sizeof *l, 0);
  l->fd = -1;
  luaL_setmetatable(L, LISTENER_TYPE);
  int err = 0;
  l->fd = net_tcp_listen_flags(host, (int)port, (int)backlog, flags, &err);
  if (l->fd < 0) {
    if (err == EINVAL)
      return lmoonws_fail(L, WS_E_IO, "listen: host must be a numeric address");
    if (err == ENOPROTOOPT && flags)
      return lmoonws_fail(L, WS_E_IO,
                          "listen: reuseport needs SO_REUSEPORT (Linux, "
                          "macOS, the BSDs), which this system lacks");
    return lmoonws_fail_errno(L, "listen", err);
  }
  return 1;
}

static int listener_fd(lua_State *L) {
  lua_pushinteger(L, check_listener(L)->fd);
  return 1;
}

static int listener_port(lua_State *L) {
  lua_pushinteger(L, net_tcp_local_port(check_listener(L)->fd));
  return 1;
}

/* accept() -> conn, peer | false (none pending) | nil, message, name */
static int listener_accept(lua_State *L) {
  listener *l = check_listener(L);
  struct sockaddr_storage addr;
  socklen_t len = sizeof addr;
  int err = 0;
  int fd = net_tcp_accept(l->fd, &addr, &len, &err);
  if (fd < 0) {
    if (err == EAGAIN || err == EWOULDBLOCK) {
      lua_pushboolean(L, 0);
      return 1;
    }
    return lmoonws_fail_errno(L, "accept", err);
  }
  int n = lconn_new(L, WS_ROLE_SERVER, fd);
  if (n != 1)
    return n;
  char buf[80];
  lua_pushstring(L, net_addr_format((struct sockaddr *)&addr, buf, sizeof buf));
  return 2;
}

static int listener_close(lua_State *L) {
  listener *l = luaL_checkudata(L, 1, LISTENER_TYPE);
  if (l->fd >= 0) {
    net_tcp_close(l->fd);
    l->fd = -1;
  }
  return 0;
}

/* ---- outgoing connections and addresses ---- */

/* core.connect(address) -> conn (connecting) | nil, message, name */
static int net_connect(lua_State *L) {
  size_t len;
  const char *sa = luaL_checklstring(L, 1, &len);
  luaL_argcheck(L, len >= sizeof(net_sa_family) && len <= sizeof(struct sockaddr_storage),
                1, "not a socket address");
  struct sockaddr_storage addr;
  memset(&addr, 0, sizeof addr);
  memcpy(&addr, sa, len);
  int err = 0;
  int fd = net_tcp_connect((struct sockaddr *)&addr, (socklen_t)len, &err);
  if (fd < 0)
    return lmoonws_fail_errno(L, "connect", err);
  return lconn_new(L, WS_ROLE_CLIENT, fd);
}

/* core.numeric_address(host, port) -> address | nil when host is a name */
static int net_numeric_address(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  lua_Integer port = luaL_checkinteger(L, 2);
  struct sockaddr_storage addr;
  socklen_t len;
  if (!net_resolve_numeric(host, (int)port, &addr, &len))
    return 0;
  lua_pushlstring(L, (const char *)&addr, len);
  return 1;
}

/* core.format_address(address) -> "127.0.0.1:80" | "[::1]:80" */
static int net_format_address(lua_State *L) {
  size_t len;
  const char *sa = luaL_checklstring(L, 1, &len);
  struct sockaddr_storage addr;
  memset(&addr, 0, sizeof addr);
  memcpy(&addr, sa, len < sizeof addr ? len : sizeof addr);
  char buf[80];
  lua_pushstring(L, net_addr_format((struct sockaddr *)&addr, buf, sizeof buf));
  return 1;
}

/* ---- resolver ---- */

typedef struct lresolver {
  net_resolver *r;
} lresolver;

static lresolver *check_resolver(lua_State *L) {
  lresolver *lr = luaL_checkudata(L, 1, RESOLVER_TYPE);
  if (!lr->r)
    luaL_error(L, "attempt to use a closed resolver");
  return lr;
}

/* core.resolver([max_threads]) -> resolver */
static int net_resolver_create(lua_State *L) {
  lua_Integer threads = luaL_optinteger(L, 1, 4);
  lresolver *lr = compat_newuserdata(L, sizeof *lr, 0);
  lr->r = NULL;
  luaL_setmetatable(L, RESOLVER_TYPE);
  int err = 0;
  lr->r = net_resolver_new((int)threads, &err);
  if (!lr->r)
    return lmoonws_fail_errno(L, "resolver", err);
  return 1;
}

static int resolver_fd(lua_State *L) {
  lua_pushinteger(L, net_resolver_fd(check_resolver(L)->r));
  return 1;
}

static int resolver_start(lua_State *L) {
  lresolver *lr = check_resolver(L);
  const char *host = luaL_checkstring(L, 2);
  lua_Integer port = luaL_checkinteger(L, 3);
  uint64_t id = net_resolver_start(lr->r, host, (int)port);
  if (!id)
    return lmoonws_fail(L, WS_E_NOMEM, NULL);
  lua_pushinteger(L, (lua_Integer)id);
  return 1;
}

static int resolver_cancel(lua_State *L) {
  lresolver *lr = check_resolver(L);
  net_resolver_cancel(lr->r, (uint64_t)luaL_checkinteger(L, 2));
  return 0;
}

/* collect() -> id, {address...} | id, nil, message | nil (none waiting) */
static int resolver_collect(lua_State *L) {
  lresolver *lr = check_resolver(L);
  net_resolve_result res;
  if (!net_resolver_collect(lr->r, &res))
    return 0;
  lua_pushinteger(L, (lua_Integer)res.id);
  if (res.error) {
    lua_pushnil(L);
    lua_pushstring(L, res.message ? res.message : "lookup failed");
    return 3;
  }
  lua_createtable(L, (int)res.num_addrs, 0);
  for (size_t i = 0; i < res.num_addrs; i++) {
    lua_pushlstring(L, (const char *)&res.addrs[i], res.addrlens[i]);
    lua_rawseti(L, -2, (int)i + 1);
  }
  return 2;
}

static int resolver_close(lua_State *L) {
  lresolver *lr = luaL_checkudata(L, 1, RESOLVER_TYPE);
  if (lr->r) {
    net_resolver_free(lr->r);
    lr->r = NULL;
  }
  return 0;
}

void lmoonws_open_net(lua_State *L) {
  static const luaL_Reg listener_methods[] = {{"fd", listener_fd},
                                              {"port", listener_port},
                                              {"accept", listener_accept},
                                              {"close", listener_close},
                                              {NULL, NULL}};
  static const luaL_Reg resolver_methods[] = {{"fd", resolver_fd},
                                              {"start", resolver_start},
                                              {"cancel", resolver_cancel},
                                              {"collect", resolver_collect},
                                              {"close", resolver_close},
                                              {NULL, NULL}};
  static const luaL_Reg functions[] = {
      {"listen", net_listen},
      {"connect", net_connect},
      {"numeric_address", net_numeric_address},
      {"format_address", net_format_address},
      {"resolver", net_resolver_create},
      {NULL, NULL}};
  lmoonws_new_type(L, LISTENER_TYPE, listener_methods, listener_close);
  lmoonws_new_type(L, RESOLVER_TYPE, resolver_methods, resolver_close);
  luaL_setfuncs(L, functions, 0);
}
