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

#if LUA_VERSION_NUM >= 504
#define compat_newuserdata(L, size, nuv) lua_newuserdatauv((L), (size), (nuv))
#define compat_setuservalue(L, idx, n) lua_setiuservalue((L), (idx), (n))
#define compat_getuservalue(L, idx, n) lua_getiuservalue((L), (idx), (n))
#else
/* LuaJIT: one environment table per userdata stands in for user values. */
void *compat_newuserdata(lua_State *L, size_t size, int nuv);
int compat_setuservalue(lua_State *L, int idx, int n);
int compat_getuservalue(lua_State *L, int idx, int n);
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
