/*
 * lpoller.c -- moonws.core poller, timers and clock: what the Lua
 * scheduler (lua/moonws/loop.lua) waits with.
 *
 * wait() fills two Lua tables the caller reuses (fds, events) instead of
 * returning new ones, so a busy loop allocates nothing per round.
 */
#include <math.h>
#include <string.h>

#include "lmoonws.h"
#include "net_poller.h"
#include "net_timer.h"

#define POLLER_TYPE "moonws.poller"
#define TIMERS_TYPE "moonws.timers"
#define MAX_EVENTS 256

typedef struct lpoller {
  net_poller *p;
  net_poll_event events[MAX_EVENTS];
} lpoller;

static lpoller *check_poller(lua_State *L) {
  lpoller *lp = luaL_checkudata(L, 1, POLLER_TYPE);
  if (!lp->p)
    luaL_error(L, "attempt to use a closed poller");
  return lp;
}

/* core.poller([use_poll]) */
static int poller_new(lua_State *L) {
  bool use_poll = lua_toboolean(L, 1);
  lpoller *lp = compat_newuserdata(L, sizeof *lp, 0);
  lp->p = NULL;
  luaL_setmetatable(L, POLLER_TYPE);
  int err = 0;
  lp->p = net_poller_new(use_poll, &err);
  if (!lp->p)
    return lmoonws_fail_errno(L, "poller", err);
  return 1;
}

/* set(fd, want_read, want_write) */
static int poller_set(lua_State *L) {
  lpoller *lp = check_poller(L);
  lua_Integer fd = luaL_checkinteger(L, 2);
  unsigned events = (lua_toboolean(L, 3) ? NET_POLL_READ : 0) |
                    (lua_toboolean(L, 4) ? NET_POLL_WRITE : 0);
  int err = net_poller_set(lp->p, (int)fd, events);
  if (err)
    return lmoonws_fail_errno(L, "poller", err);
  lua_pushboolean(L, 1);
  return 1;
}

/* wait(timeout_seconds|nil, fds, events) -> n; fds[i], events[i] (1 read,
 * 2 write, 3 both) for i = 1..n. */
static int poller_wait(lua_State *L) {
  lpoller *lp = check_poller(L);
  int ms = -1;
  if (!lua_isnoneornil(L, 2)) {
    lua_Number t = luaL_checknumber(L, 2);
    /* Round up: waking before a timer's deadline would only spin. */
    ms = t <= 0 ? 0 : t > 86400 ? 86400000 : (int)ceil(t * 1000.0);
  }
  luaL_checktype(L, 3, LUA_TTABLE);
  luaL_checktype(L, 4, LUA_TTABLE);
  int n = net_poller_wait(lp->p, ms, lp->events, MAX_EVENTS);
  if (n < 0)
    return lmoonws_fail_errno(L, "poll", -n);
  for (int i = 0; i < n; i++) {
    lua_pushinteger(L, lp->events[i].fd);
    lua_rawseti(L, 3, i + 1);
    lua_pushinteger(L, lp->events[i].events);
    lua_rawseti(L, 4, i + 1);
  }
  lua_pushinteger(L, n);
  return 1;
}

static int poller_fd(lua_State *L) {
  int fd = net_poller_fd(check_poller(L)->p);
  if (fd < 0)
    return 0;
  lua_pushinteger(L, fd);
  return 1;
}

static int poller_backend(lua_State *L) {
  lua_pushstring(L, net_poller_backend(check_poller(L)->p));
  return 1;
}

static int poller_close(lua_State *L) {
  lpoller *lp = luaL_checkudata(L, 1, POLLER_TYPE);
  if (lp->p) {
    net_poller_free(lp->p);
    lp->p = NULL;
  }
  return 0;
}

/* ---- timers ---- */

typedef struct ltimers {
  net_timer_heap *h;
} ltimers;

static ltimers *check_timers(lua_State *L) {
  ltimers *lt = luaL_checkudata(L, 1, TIMERS_TYPE);
  if (!lt->h)
    luaL_error(L, "attempt to use a closed timer heap");
  return lt;
}

static int timers_new(lua_State *L) {
  ltimers *lt = compat_newuserdata(L, sizeof *lt, 0);
  lt->h = NULL;
  luaL_setmetatable(L, TIMERS_TYPE);
  lt->h = net_timer_heap_new();
  if (!lt->h)
    return luaL_error(L, "out of memory");
  return 1;
}

/* add(deadline) -> handle */
static int timers_add(lua_State *L) {
  ltimers *lt = check_timers(L);
  uint64_t handle = net_timer_add(lt->h, luaL_checknumber(L, 2));
  if (!handle)
    return luaL_error(L, "out of memory");
  lua_pushinteger(L, (lua_Integer)handle);
  return 1;
}

static int timers_cancel(lua_State *L) {
  ltimers *lt = check_timers(L);
  lua_pushboolean(L, net_timer_cancel(lt->h, (uint64_t)luaL_checkinteger(L, 2)));
  return 1;
}

/* next() -> earliest deadline | nil */
static int timers_next(lua_State *L) {
  double deadline;
  if (!net_timer_next(check_timers(L)->h, &deadline))
    return 0;
  lua_pushnumber(L, deadline);
  return 1;
}

/* pop(now) -> handle of one due timer | nil */
static int timers_pop(lua_State *L) {
  ltimers *lt = check_timers(L);
  uint64_t handle;
  if (!net_timer_pop_due(lt->h, luaL_checknumber(L, 2), &handle))
    return 0;
  lua_pushinteger(L, (lua_Integer)handle);
  return 1;
}

static int timers_count(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)net_timer_count(check_timers(L)->h));
  return 1;
}

static int timers_close(lua_State *L) {
  ltimers *lt = luaL_checkudata(L, 1, TIMERS_TYPE);
  if (lt->h) {
    net_timer_heap_free(lt->h);
    lt->h = NULL;
  }
  return 0;
}

static int clock_now(lua_State *L) {
  lua_pushnumber(L, net_clock_now());
  return 1;
}

void lmoonws_open_loop(lua_State *L) {
  static const luaL_Reg poller_methods[] = {{"set", poller_set},
                                            {"wait", poller_wait},
                                            {"fd", poller_fd},
                                            {"backend", poller_backend},
                                            {"close", poller_close},
                                            {NULL, NULL}};
  static const luaL_Reg timers_methods[] = {{"add", timers_add},
                                            {"cancel", timers_cancel},
                                            {"next", timers_next},
                                            {"pop", timers_pop},
                                            {"count", timers_count},
                                            {"close", timers_close},
                                            {NULL, NULL}};
  static const luaL_Reg functions[] = {{"poller", poller_new},
                                       {"timers", timers_new},
                                       {"now", clock_now},
                                       {NULL, NULL}};
  lmoonws_new_type(L, POLLER_TYPE, poller_methods, poller_close);
  lmoonws_new_type(L, TIMERS_TYPE, timers_methods, timers_close);
  luaL_setfuncs(L, functions, 0);
}
