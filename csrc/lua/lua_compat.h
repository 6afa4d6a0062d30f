/*
 * lua_compat.h -- the only place that knows which Lua C API we build for.
 *
 * moonws builds against Lua 5.4 first and LuaJIT 2.1 (the Lua 5.1 API of
 * OpenResty, LÖVE and Defold) next.  Binding files call the names below and
 * never a 5.4-only function directly.
 */
#ifndef MOONWS_LUA_COMPAT_H
#define MOONWS_LUA_COMPAT_H

#include <lauxlib.h>
#include <lua.h>

#include <math.h>
#include <stdint.h>

#if LUA_VERSION_NUM >= 504
#define compat_newuserdata(L, size, nuv) lua_newuserdatauv((L), (size), (nuv))
#define compat_setuservalue(L, idx, n) lua_setiuservalue((L), (idx), (n))
#define compat_getuservalue(L, idx, n) lua_getiuservalue((L), (idx), (n))
#else
/* LuaJIT: one environment table per userdata stands in for user values. */
static inline int compat_absindex(lua_State *L, int idx) {
  return (idx < 0 && idx > LUA_REGISTRYINDEX) ? lua_gettop(L) + idx + 1 : idx;
}
static inline void *compat_newuserdata(lua_State *L, size_t size, int nuv) {
  void *p = lua_newuserdata(L, size);
  if (nuv > 0) {
    lua_createtable(L, nuv, 0);
    lua_setfenv(L, -2);
  }
  return p;
}
/* Pops a value and stores it as user value n of the userdata at idx. */
static inline int compat_setuservalue(lua_State *L, int idx, int n) {
  idx = compat_absindex(L, idx);
  lua_getfenv(L, idx);
  lua_insert(L, -2);
  lua_rawseti(L, -2, n);
  lua_pop(L, 1);
  return 1;
}
static inline int compat_getuservalue(lua_State *L, int idx, int n) {
  idx = compat_absindex(L, idx);
  lua_getfenv(L, idx);
  lua_rawgeti(L, -1, n);
  lua_remove(L, -2);
  return lua_type(L, -1);
}
#endif

/* lua_resume of co from L with nargs arguments; *nres: the values it
 * yielded or returned, on top of co's stack (5.1: all of co's stack). */
#if LUA_VERSION_NUM >= 504
#define compat_resume(co, L, nargs, nres) lua_resume((co), (L), (nargs), (nres))
#else
static inline int compat_resume(lua_State *co, lua_State *L, int nargs,
                                int *nres) {
  (void)L;
  int status = lua_resume(co, nargs);
  *nres = lua_gettop(co);
  return status;
}
#endif

/* lua_rawget, returning the type of the value it pushed (5.1: void). */
#if LUA_VERSION_NUM >= 503
#define compat_rawget(L, idx) lua_rawget((L), (idx))
#else
static inline int compat_rawget(lua_State *L, int idx) {
  lua_rawget(L, idx);
  return lua_type(L, -1);
}
#endif

/* lua_rawgeti, the same way. */
#if LUA_VERSION_NUM >= 503
#define compat_rawgeti(L, idx, n) lua_rawgeti((L), (idx), (n))
#else
static inline int compat_rawgeti(lua_State *L, int idx, int n) {
  lua_rawgeti(L, idx, n);
  return lua_type(L, -1);
}
#endif

#if LUA_VERSION_NUM >= 503
#define compat_isinteger(L, idx) lua_isinteger((L), (idx))
#define COMPAT_MAXINTEGER LUA_MAXINTEGER
#else
/* Lua 5.1 numbers are doubles: an integer is a number with no fraction,
 * and the largest is the largest exactly representable one. */
static inline int compat_isinteger(lua_State *L, int idx) {
  if (lua_type(L, idx) != LUA_TNUMBER)
    return 0;
  lua_Number n = lua_tonumber(L, idx);
  return n == floor(n) && fabs(n) <= 9007199254740992.0;
}
#define COMPAT_MAXINTEGER ((lua_Integer)9007199254740992LL)
#endif

#if LUA_VERSION_NUM < 502
#define compat_rawlen(L, i) lua_objlen((L), (i))
/* Registry slots keyed by the address of a C object. */
#define compat_registry_get(L, key)                                            \
  (lua_pushlightuserdata((L), (void *)(key)), lua_rawget((L), LUA_REGISTRYINDEX))
#define compat_registry_set(L, key)                                            \
  (lua_pushlightuserdata((L), (void *)(key)), lua_insert((L), -2),             \
   lua_rawset((L), LUA_REGISTRYINDEX))
#else
#define compat_rawlen(L, i) lua_rawlen((L), (i))
#define compat_registry_get(L, key) lua_rawgetp((L), LUA_REGISTRYINDEX, (key))
#define compat_registry_set(L, key) lua_rawsetp((L), LUA_REGISTRYINDEX, (key))
#endif

#endif
