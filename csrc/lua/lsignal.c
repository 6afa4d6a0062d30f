/*
 * lsignal.c -- moonws.core signals: catch SIGINT, SIGTERM, SIGHUP, ... and
 * read them from a pollable descriptor (see net_signal.h).  The Lua loop
 * (moonws.onsignal) watches the descriptor and calls the handlers.  On
 * Windows the names are those of the console events: INT (Ctrl+C), BREAK
 * (Ctrl+Break) and TERM (the console window closed).
 */
#include <signal.h>
#include <string.h>

#include "lmoonws.h"
#include "net_signal.h"

static const struct {
  const char *name;
  int signo;
} signal_names[] = {
#ifdef _WIN32
    {"INT", SIGINT}, {"TERM", SIGTERM}, {"BREAK", SIGBREAK}};
#else
    {"INT", SIGINT},   {"TERM", SIGTERM}, {"HUP", SIGHUP},
    {"QUIT", SIGQUIT}, {"USR1", SIGUSR1}, {"USR2", SIGUSR2},
    {"WINCH", SIGWINCH}};
#endif

#define SIGNAL_COUNT (sizeof signal_names / sizeof signal_names[0])

/* "TERM" or "SIGTERM" -> SIGTERM; raises on an unknown name. */
static int check_signal(lua_State *L, int idx) {
  const char *name = luaL_checkstring(L, idx);
  if (strncmp(name, "SIG", 3) == 0)
    name += 3;
  for (size_t i = 0; i < SIGNAL_COUNT; i++)
    if (strcmp(name, signal_names[i].name) == 0)
      return signal_names[i].signo;
  return luaL_argerror(L, idx, lua_pushfstring(L, "unknown signal '%s'", name));
}

static const char *signal_name(int signo) {
  for (size_t i = 0; i < SIGNAL_COUNT; i++)
    if (signal_names[i].signo == signo)
      return signal_names[i].name;
  return NULL;
}

/* core.signal_fd() -> the descriptor that turns readable on a caught signal */
static int signal_fd(lua_State *L) {
  int err = 0;
  int fd = net_signal_open(&err);
  if (fd < 0)
    return lmoonws_fail_errno(L, "signal pipe", err);
  lua_pushinteger(L, fd);
  return 1;
}

/* core.signal_catch(name) / core.signal_release(name) */
static int signal_catch(lua_State *L) {
  int err = net_signal_catch(check_signal(L, 1));
  if (err)
    return lmoonws_fail_errno(L, "sigaction", err);
  lua_pushboolean(L, 1);
  return 1;
}

static int signal_release(lua_State *L) {
  int err = net_signal_release(check_signal(L, 1));
  if (err)
    return lmoonws_fail_errno(L, "sigaction", err);
  lua_pushboolean(L, 1);
  return 1;
}

/* core.signal_next() -> the name of one caught signal, or nil */
static int signal_next(lua_State *L) {
  int signo;
  while (net_signal_next(&signo)) {
    const char *name = signal_name(signo);
    if (name) {
      lua_pushstring(L, name);
      return 1;
    }
  }
  return 0;
}

void lmoonws_open_signal(lua_State *L) {
  static const luaL_Reg functions[] = {{"signal_fd", signal_fd},
                                       {"signal_catch", signal_catch},
                                       {"signal_release", signal_release},
                                       {"signal_next", signal_next},
                                       {NULL, NULL}};
  luaL_setfuncs(L, functions, 0);
}
