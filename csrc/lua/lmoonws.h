/*
 * lmoonws.h -- what the binding files of moonws.core share.
 *
 * The binding is thin: each file wraps one part of csrc/core or csrc/net as
 * one Lua type or a few functions, checks arguments (misuse raises), and
 * turns runtime failures into nil, message, name.  It never yields and
 * never blocks; the Lua layer (lua/moonws/) decides how to wait.
 */
#ifndef MOONWS_LMOONWS_H
#define MOONWS_LMOONWS_H

#include "lua_compat.h"
#include "ws_proto.h"

#ifdef _WIN32
#define LMOONWS_API __declspec(dllexport)
#else
#define LMOONWS_API __attribute__((visibility("default")))
#endif

/* Push nil, message, name for error e (message NULL: e's description);
 * returns 3. */
int lmoonws_fail(lua_State *L, enum ws_error e, const char *message);

/* Push nil, "<what>: <strerror>", name for an errno (ECONNREFUSED ->
 * "refused", ETIMEDOUT -> "timeout", ENOMEM -> "nomem", else "io");
 * returns 3. */
int lmoonws_fail_errno(lua_State *L, const char *what, int err);

/* The thread-safe text of an errno. */
const char *lmoonws_strerror(int err, char *buf, size_t size);

/* Create metatable name with __index = methods and gc as __gc and
 * __close (the one idempotent close, as liolib's f_gc). */
void lmoonws_new_type(lua_State *L, const char *name, const luaL_Reg *methods,
                      lua_CFunction gc);

/* Register each part's types and functions into the module table on top. */
void lmoonws_open_conn(lua_State *L);
void lmoonws_open_net(lua_State *L);
void lmoonws_open_loop(lua_State *L);
void lmoonws_open_coro(lua_State *L);
void lmoonws_open_signal(lua_State *L);
void lmoonws_open_tls(lua_State *L);
void lmoonws_open_process(lua_State *L);
void lmoonws_open_peer(lua_State *L);
void lmoonws_open_block_cache(lua_State *L);

#endif
