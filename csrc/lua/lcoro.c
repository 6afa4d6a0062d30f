/*
 * lcoro.c -- moonws.core.resume_ready: the loop's batch of woken
 * coroutines resumed from C (lua/moonws/loop.lua's run_ready).
 *
 * A coroutine per connection is resumed once per message; in Lua each
 * resume was a loop step, a status check (a C call that pushes a string)
 * and a coroutine.resume call.  Here the common outcome -- the coroutine
 * waits again -- costs no Lua at all, and everything else (an error, the
 * end, a yield of the caller's own) goes back to loop.lua, which decides.
 */
#include "lmoonws.h"

/* coroutine.status(co) == "suspended", as lcorolib tells it. */
static bool suspended(lua_State *L, lua_State *co) {
  if (co == L)
    return false;
  int status = lua_status(co);
  if (status == LUA_YIELD)
    return true;
  if (status != LUA_OK)
    return false; /* dead by an error */
  lua_Debug ar;
  if (lua_getstack(co, 0, &ar))
    return false; /* normal: it resumed another one */
  return lua_gettop(co) > 0; /* not started yet; else dead */
}

/* resume_ready(batch, from, n, ours, wait) -> nothing | i, ok, what:
 * resume batch[from..n], each coroutine that is suspended and ours[co].
 * One that yields wait (it waits again) is done with; for any other
 * outcome the first two results of its coroutine.resume come back with
 * its index -- true and what it yielded, true when it ended, false and the
 * error -- and the caller goes on from i + 1.  Once the batch is through,
 * batch[1..n] is emptied. */
static int resume_ready(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_Integer from = luaL_checkinteger(L, 2);
  lua_Integer n = luaL_checkinteger(L, 3);
  luaL_checktype(L, 4, LUA_TTABLE);
  luaL_checkany(L, 5);
  const void *wait = lua_topointer(L, 5);
  for (lua_Integer i = from; i <= n; i++) {
    lua_settop(L, 5);
    lua_rawgeti(L, 1, i); /* 6 */
    lua_State *co = lua_tothread(L, 6);
    /* Not a coroutine, not suspended, or not ours (any more: ours[co],
     * the thread at the top as the key). */
    if (!co || !suspended(L, co) || compat_rawget(L, 4) == LUA_TNIL)
      continue;
    int nres = 0;
    int status = compat_resume(co, L, 0, &nres);
    if (status == LUA_YIELD && nres == 1 && lua_topointer(co, -1) == wait) {
      lua_pop(co, 1);
      continue;
    }
    lua_pushinteger(L, i);
    if (status == LUA_YIELD || status == LUA_OK) {
      lua_pushboolean(L, 1);
      if (status == LUA_YIELD && nres > 0) {
        lua_pop(co, nres - 1);
        lua_xmove(co, L, 1);
      } else {
        lua_pop(co, nres);
        lua_pushnil(L);
      }
    } else {
      lua_pushboolean(L, 0);
      lua_xmove(co, L, 1); /* the error; its stack stays for a traceback */
    }
    return 3;
  }
  for (lua_Integer i = 1; i <= n; i++) {
    lua_pushnil(L);
    lua_rawseti(L, 1, i);
  }
  return 0;
}

void lmoonws_open_coro(lua_State *L) {
  lua_pushcfunction(L, resume_ready);
  lua_setfield(L, -2, "resume_ready");
}
