/*
 * lmoonws.c -- luaopen_moonws_core: the module table, the close-code and
 * error-name tables (exported from ws_proto.h, their one source), and the
 * error helpers the other binding files use.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <stdlib.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "lmoonws.h"
#include "net_sys.h"
#include "net_tcp.h"
#include "ws_http.h"
#include "ws_url.h"

#ifndef NET_SYS_WINDOWS
#include <dlfcn.h>
#endif

const char *lmoonws_strerror(int err, char *buf, size_t size) {
#ifdef NET_SYS_WINDOWS
  /* The C library of Windows has no text for the socket errnos. */
  const char *t = net_errno_text(err);
  if (strcmp(t, "socket error") != 0)
    return t;
#endif
  return net_sys_strerror(err, buf, size);
}

int lmoonws_fail(lua_State *L, enum ws_error e, const char *message) {
  lua_pushnil(L);
  lua_pushstring(L, message ? message : ws_error_description(e));
  lua_pushstring(L, ws_error_name(e));
  return 3;
}

int lmoonws_fail_errno(lua_State *L, const char *what, int err) {
  char buf[128];
  enum ws_error e = err == ECONNREFUSED ? WS_E_REFUSED
                    : err == ETIMEDOUT  ? WS_E_TIMEOUT
                    : err == ENOMEM     ? WS_E_NOMEM
                                        : WS_E_IO;
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", what, lmoonws_strerror(err, buf, sizeof buf));
  lua_pushstring(L, ws_error_name(e));
  return 3;
}

void lmoonws_new_type(lua_State *L, const char *name, const luaL_Reg *methods,
                      lua_CFunction gc) {
  luaL_newmetatable(L, name);
  lua_pushcfunction(L, gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, gc);
  lua_setfield(L, -2, "__close");
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

/* moonws.codes: both directions, codes[1009] == "MESSAGE_TOO_BIG" and
 * codes.MESSAGE_TOO_BIG == 1009. */
static void push_codes(lua_State *L) {
  lua_createtable(L, 16, 16);
#define PUSH_CODE_(num, name)                                                  \
  lua_pushinteger(L, num);                                                     \
  lua_setfield(L, -2, #name);                                                  \
  lua_pushstring(L, #name);                                                    \
  lua_rawseti(L, -2, num);
  WS_CLOSE_CODES(PUSH_CODE_)
#undef PUSH_CODE_
}

/* moonws.errors: name -> description for every stable error name. */
static void push_errors(lua_State *L) {
  lua_createtable(L, 0, WS_E_COUNT_);
  for (int e = WS_E_NONE + 1; e < WS_E_COUNT_; e++) {
    lua_pushstring(L, ws_error_description((enum ws_error)e));
    lua_setfield(L, -2, ws_error_name((enum ws_error)e));
  }
}

/* core.parse_url(url) -> {secure, host, port, resource, userinfo,
 * ipv6, port_explicit} | nil, message */
/* u's host, bracketed when it is an IPv6 literal. */
static void push_url_host(lua_State *L, const ws_url *u) {
  if (u->host_is_ipv6) {
    lua_pushliteral(L, "[");
    lua_pushlstring(L, u->host, u->host_len);
    lua_pushliteral(L, "]");
    lua_concat(L, 3);
  } else {
    lua_pushlstring(L, u->host, u->host_len);
  }
}

static int parse_url(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  ws_url u;
  if (ws_url_parse(s, len, &u) != 0) {
    lua_pushnil(L);
    lua_pushstring(L, u.message ? u.message : "invalid URL");
    return 2;
  }
  lua_createtable(L, 0, 9);
  lua_pushboolean(L, u.secure);
  lua_setfield(L, -2, "secure");
  lua_pushlstring(L, u.host, u.host_len);
  lua_setfield(L, -2, "host");
  lua_pushboolean(L, u.host_is_ipv6);
  lua_setfield(L, -2, "ipv6");
  lua_pushinteger(L, u.port);
  lua_setfield(L, -2, "port");
  lua_pushboolean(L, u.port_explicit);
  lua_setfield(L, -2, "port_explicit");
  if (u.resource_needs_slash) { /* "ws://h?x": the request target is "/?x" */
    lua_pushliteral(L, "/");
    lua_pushlstring(L, u.resource, u.resource_len);
    lua_concat(L, 2);
  } else {
    lua_pushlstring(L, u.resource, u.resource_len);
  }
  lua_setfield(L, -2, "resource");
  if (u.userinfo) {
    lua_pushlstring(L, u.userinfo, u.userinfo_len);
    lua_setfield(L, -2, "userinfo");
  }
  /* The two ways the handshake names the server, for every front: the
   * Host field (the port only when not the scheme's), and host:port as an
   * HTTP CONNECT wants it (RFC 7231 4.3.6: always with the port). */
  push_url_host(L, &u);
  if (u.port_explicit && u.port != (u.secure ? 443 : 80)) {
    lua_pushfstring(L, ":%d", (int)u.port);
    lua_concat(L, 2);
  }
  lua_setfield(L, -2, "host_header");
  push_url_host(L, &u);
  lua_pushfstring(L, ":%d", (int)u.port);
  lua_concat(L, 2);
  lua_setfield(L, -2, "authority");
  return 1;
}

/* core.base64(s) -> standard base64 with padding (OpenSSL's encoder). */
static int base64(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  luaL_argcheck(L, len <= 1024 * 1024, 1, "too long to encode");
  size_t out_len = 4 * ((len + 2) / 3) + 1;
  unsigned char *out = malloc(out_len);
  if (!out)
    return luaL_error(L, "out of memory");
  int n = EVP_EncodeBlock(out, (const unsigned char *)s, (int)len);
  lua_pushlstring(L, (const char *)out, (size_t)n);
  free(out);
  return 1;
}

/* core.close_code_sendable(code): may an endpoint send this close code?
 * Every front checks close() and shutdown() arguments with it. */
static int close_code_sendable(lua_State *L) {
  lua_Integer code = luaL_checkinteger(L, 1);
  lua_pushboolean(L, code > 0 && code < 65536 &&
                         ws_close_code_valid_on_wire((unsigned)code));
  return 1;
}

/* core.is_token(s): an RFC 7230 token (subprotocol names, header names). */
static int is_token(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  lua_pushboolean(L, ws_http_is_token(s, len));
  return 1;
}

/* core.sized_table(nrec) -> an empty table with room for nrec fields.  A
 * table filled one field at a time grows through every power of two, each
 * step a rehash and a node array left for the collector; one made at its
 * final size (per-connection state) skips them. */
static int sized_table(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  luaL_argcheck(L, n >= 0 && n <= 1024, 1, "out of range");
  lua_createtable(L, 0, (int)n);
  return 1;
}

/* core.heap_in_use() -> bytes the C heap holds for the process (malloc'd
 * and not freed), or nil where the C library cannot say.  For diagnostics
 * and leak tests: unlike RSS it does not count what the allocator keeps
 * around after frees. */
static int heap_in_use(lua_State *L) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  struct mallinfo2 mi = mallinfo2();
  lua_pushinteger(L, (lua_Integer)(mi.uordblks + mi.hblkhd));
  return 1;
#else
  return 0;
#endif
}

LMOONWS_API int luaopen_moonws_core(lua_State *L);

/* Resolver threads may outlive the Lua state: one inside getaddrinfo
 * cannot be stopped, so it is detached and finishes on its own.  lua_close
 * unloads C modules (dlclose, FreeLibrary), which would unmap the code such
 * a thread is still running; keep this library mapped until the process
 * ends. */
static void keep_module_loaded(void) {
#ifdef NET_SYS_WINDOWS
  HMODULE self;
  (void)GetModuleHandleExW(GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS |
                               GET_MODULE_HANDLE_EX_FLAG_PIN,
                           (LPCWSTR)(void *)&luaopen_moonws_core, &self);
#else
  Dl_info info;
  if (dladdr((void *)&luaopen_moonws_core, &info) && info.dli_fname)
    dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
#endif
}

LMOONWS_API int luaopen_moonws_core(lua_State *L) {
  keep_module_loaded();
  int err = net_sys_init(); /* WSAStartup; SIGPIPE where sends need it */
  if (err) {
    char buf[128];
    return luaL_error(L, "moonws.core: cannot start the socket layer: %s",
                      lmoonws_strerror(err, buf, sizeof buf));
  }
  lua_newtable(L);
  lmoonws_open_block_cache(L);
  push_codes(L);
  lua_setfield(L, -2, "codes");
  push_errors(L);
  lua_setfield(L, -2, "errors");
  lua_pushinteger(L, WS_CONTROL_MAX);
  lua_setfield(L, -2, "CONTROL_MAX");
  lua_pushinteger(L, WS_CLOSE_REASON_MAX);
  lua_setfield(L, -2, "CLOSE_REASON_MAX");
  lua_pushinteger(L, (lua_Integer)WS_DEFAULT_MAX_PAYLOAD);
  lua_setfield(L, -2, "DEFAULT_MAX_PAYLOAD");
  lua_pushinteger(L, (lua_Integer)WS_DEFAULT_MAX_FRAME);
  lua_setfield(L, -2, "DEFAULT_MAX_FRAME");
  lua_pushinteger(L, (lua_Integer)WS_DEFAULT_MAX_HANDSHAKE);
  lua_setfield(L, -2, "DEFAULT_MAX_HANDSHAKE");
  lua_pushinteger(L, (lua_Integer)WS_HANDSHAKE_BODY_MAX);
  lua_setfield(L, -2, "HANDSHAKE_BODY_MAX");
  lua_pushliteral(L, WS_CLOSE_CODES_SENDABLE);
  lua_setfield(L, -2, "CLOSE_CODES_SENDABLE");
  /* "linux", "posix" (macOS, the BSDs, or -DMOONWS_PORTABLE) or "windows":
   * which net_sys.h target this build is (docs/PLATFORMS.md). */
#if defined(NET_SYS_WINDOWS)
  lua_pushliteral(L, "windows");
#elif defined(NET_SYS_LINUX)
  lua_pushliteral(L, "linux");
#else
  lua_pushliteral(L, "posix");
#endif
  lua_setfield(L, -2, "platform");
  static const luaL_Reg functions[] = {{"parse_url", parse_url},
                                       {"base64", base64},
                                       {"is_token", is_token},
                                       {"close_code_sendable", close_code_sendable},
                                       {"heap_in_use", heap_in_use},
                                       {"sized_table", sized_table},
                                       {NULL, NULL}};
  luaL_setfuncs(L, functions, 0);
  lmoonws_open_conn(L);
  lmoonws_open_net(L);
  lmoonws_open_loop(L);
  lmoonws_open_coro(L);
  lmoonws_open_signal(L);
  lmoonws_open_tls(L);
  lmoonws_open_process(L);
  lmoonws_open_peer(L);
  return 1;
}
