/*
 * lprocess.c -- moonws.core process control for the worker pool
 * (lua/moonws/pool.lua): start a program, reap it without waiting, signal
 * it, and the few facts a pool needs (own pid, parent pid, online CPUs).
 *
 * Lua has no fork/exec.  posix_spawn starts the child without copying the
 * Lua state, and every scratch array lives in a userdata, so an argument
 * error raised halfway leaks nothing.  Nothing here blocks: waitpid is
 * always WNOHANG and the Lua loop polls it on a timer.
 */
#include "lmoonws.h"

#ifdef _WIN32
/* Windows: no posix_spawn, no signals to send, no SO_REUSEPORT for the
 * workers to share a port, so moonws.pool is POSIX-only.  The facts stay. */
#define WIN32_LEAN_AND_MEAN
#include <windows.h>

static int process_unsupported(lua_State *L) {
  return luaL_error(L, "moonws.pool: worker processes are POSIX-only "
                       "(Linux, macOS, the BSDs); not available on Windows");
}

static int process_getpid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)GetCurrentProcessId());
  return 1;
}

static int process_cpu_count(lua_State *L) {
  SYSTEM_INFO si;
  GetSystemInfo(&si);
  lua_pushinteger(L, si.dwNumberOfProcessors > 0
                         ? (lua_Integer)si.dwNumberOfProcessors
                         : 1);
  return 1;
}

void lmoonws_open_process(lua_State *L) {
  static const luaL_Reg functions[] = {{"spawn", process_unsupported},
                                       {"waitpid", process_unsupported},
                                       {"kill", process_unsupported},
                                       {"getpid", process_getpid},
                                       {"getppid", process_unsupported},
                                       {"cpu_count", process_cpu_count},
                                       {NULL, NULL}};
  luaL_setfuncs(L, functions, 0);
}

#else
#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static const struct {
  const char *name;
  int signo;
} process_signals[] = {
    {"TERM", SIGTERM}, {"INT", SIGINT},   {"HUP", SIGHUP},
    {"QUIT", SIGQUIT}, {"KILL", SIGKILL}, {"USR1", SIGUSR1},
    {"USR2", SIGUSR2}, {"CONT", SIGCONT}, {"STOP", SIGSTOP},
    {"CHLD", SIGCHLD}, {"PIPE", SIGPIPE}, {"WINCH", SIGWINCH}};

#define PROCESS_SIGNAL_COUNT                                                   \
  (sizeof process_signals / sizeof process_signals[0])

/* "TERM", "SIGTERM" or a number (0 only checks the process exists). */
static int check_signo(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TNUMBER) {
    lua_Integer n = luaL_checkinteger(L, idx);
    luaL_argcheck(L, n >= 0 && n < 65, idx, "signal number out of range");
    return (int)n;
  }
  const char *name = luaL_checkstring(L, idx);
  if (strncmp(name, "SIG", 3) == 0)
    name += 3;
  for (size_t i = 0; i < PROCESS_SIGNAL_COUNT; i++)
    if (strcmp(name, process_signals[i].name) == 0)
      return process_signals[i].signo;
  return luaL_argerror(L, idx, lua_pushfstring(L, "unknown signal '%s'", name));
}

static void push_signal(lua_State *L, int signo) {
  for (size_t i = 0; i < PROCESS_SIGNAL_COUNT; i++)
    if (process_signals[i].signo == signo) {
      lua_pushstring(L, process_signals[i].name);
      return;
    }
  lua_pushinteger(L, signo);
}

/* The strings of list table idx, checked, as a NULL-terminated array in a
 * new userdata on the stack (the strings stay anchored by the table). */
static const char **string_array(lua_State *L, int idx, size_t *count) {
  size_t n = compat_rawlen(L, idx);
  for (size_t i = 1; i <= n; i++) {
    lua_rawgeti(L, idx, (int)i);
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_argerror(L, idx,
                    lua_pushfstring(L, "entry %d is not a string", (int)i));
    lua_pop(L, 1);
  }
  const char **a = compat_newuserdata(L, (n + 1) * sizeof *a, 0);
  for (size_t i = 1; i <= n; i++) {
    lua_rawgeti(L, idx, (int)i);
    a[i - 1] = lua_tostring(L, -1); /* anchored by the table at idx */
    lua_pop(L, 1);
  }
  a[n] = NULL;
  *count = n;
  return a;
}

/* Whether environment entry "NAME=value" names a variable of table idx. */
static int env_overridden(lua_State *L, int idx, const char *entry) {
  const char *eq = strchr(entry, '=');
  if (!eq)
    return 0;
  lua_pushlstring(L, entry, (size_t)(eq - entry));
  lua_rawget(L, idx);
  int found = !lua_isnil(L, -1);
  lua_pop(L, 1);
  return found;
}

/* core.spawn(argv [, env]) -> pid | nil, message, name
 * argv: {program, args...}; program is searched on PATH as execvp does.
 * env: {NAME = "value" | false}: added to (or, false, removed from) this
 * process's environment for the child.  The child starts with an empty
 * signal mask and default actions for the signals moonws catches. */
static int process_spawn(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  int has_env = !lua_isnoneornil(L, 2);
  if (has_env)
    luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  size_t argc;
  const char **argv = string_array(L, 1, &argc); /* index 3 */
  luaL_argcheck(L, argc > 0 && argv[0][0] != '\0', 1, "needs a program name");

  /* The child's environment: ours minus the names env sets, then env's
   * "NAME=value" strings, kept in a table (index 4) while the array lives. */
  lua_newtable(L);
  size_t added = 0;
  if (has_env) {
    lua_pushnil(L);
    while (lua_next(L, 2)) {
      if (lua_type(L, -2) != LUA_TSTRING)
        return luaL_argerror(L, 2, "names must be strings");
      const char *name = lua_tostring(L, -2);
      if (name[0] == '\0' || strchr(name, '='))
        return luaL_argerror(L, 2, "a name is empty or contains '='");
      if (lua_type(L, -1) == LUA_TSTRING) {
        lua_pushfstring(L, "%s=%s", name, lua_tostring(L, -1));
        lua_rawseti(L, 4, (int)++added);
      } else if (!(lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1))) {
        return luaL_argerror(L, 2, "values must be strings (or false)");
      }
      lua_pop(L, 1);
    }
  }
  size_t inherited = 0;
  while (environ && environ[inherited])
    inherited++;
  const char **envp =
      compat_newuserdata(L, (inherited + added + 1) * sizeof *envp, 0);
  size_t n = 0;
  for (size_t i = 0; i < inherited; i++)
    if (!has_env || !env_overridden(L, 2, environ[i]))
      envp[n++] = environ[i];
  for (size_t i = 1; i <= added; i++) {
    lua_rawgeti(L, 4, (int)i);
    envp[n++] = lua_tostring(L, -1); /* anchored by the table at 4 */
    lua_pop(L, 1);
  }
  envp[n] = NULL;

  posix_spawnattr_t attr;
  int err = posix_spawnattr_init(&attr);
  if (err)
    return lmoonws_fail_errno(L, "spawn", err);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  for (size_t i = 0; i < PROCESS_SIGNAL_COUNT; i++)
    if (process_signals[i].signo != SIGKILL &&
        process_signals[i].signo != SIGSTOP)
      sigaddset(&defaults, process_signals[i].signo);
  pid_t pid = 0;
  err = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK |
                                            POSIX_SPAWN_SETSIGDEF);
  if (!err)
    err = posix_spawnattr_setsigmask(&attr, &none);
  if (!err)
    err = posix_spawnattr_setsigdefault(&attr, &defaults);
  if (!err)
    err = posix_spawnp(&pid, argv[0], NULL, &attr, (char *const *)argv,
                       (char *const *)envp);
  posix_spawnattr_destroy(&attr);
  if (err)
    return lmoonws_fail_errno(L, argv[0], err);
  lua_pushinteger(L, (lua_Integer)pid);
  return 1;
}

/* core.waitpid(pid) -> false (still running) | "exit", status |
 * "signal", name-or-number | nil, message, name (not our child). */
static int process_waitpid(lua_State *L) {
  lua_Integer pid = luaL_checkinteger(L, 1);
  luaL_argcheck(L, pid > 0, 1, "a process id expected");
  int status = 0;
  pid_t r;
  do
    r = waitpid((pid_t)pid, &status, WNOHANG);
  while (r < 0 && errno == EINTR);
  if (r < 0)
    return lmoonws_fail_errno(L, "waitpid", errno);
  if (r == 0) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (WIFEXITED(status)) {
    lua_pushliteral(L, "exit");
    lua_pushinteger(L, WEXITSTATUS(status));
  } else {
    lua_pushliteral(L, "signal");
    push_signal(L, WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  }
  return 2;
}

/* core.kill(pid, signal) -> true | nil, message, name */
static int process_kill(lua_State *L) {
  lua_Integer pid = luaL_checkinteger(L, 1);
  luaL_argcheck(L, pid > 0, 1, "a process id expected (no groups)");
  int signo = check_signo(L, 2);
  if (kill((pid_t)pid, signo) != 0)
    return lmoonws_fail_errno(L, "kill", errno);
  lua_pushboolean(L, 1);
  return 1;
}

static int process_getpid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)getpid());
  return 1;
}

static int process_getppid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)getppid());
  return 1;
}

/* core.cpu_count() -> the number of online CPUs (at least 1) */
static int process_cpu_count(lua_State *L) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  lua_pushinteger(L, n > 0 ? (lua_Integer)n : 1);
  return 1;
}

void lmoonws_open_process(lua_State *L) {
  static const luaL_Reg functions[] = {{"spawn", process_spawn},
                                       {"waitpid", process_waitpid},
                                       {"kill", process_kill},
                                       {"getpid", process_getpid},
                                       {"getppid", process_getppid},
                                       {"cpu_count", process_cpu_count},
                                       {NULL, NULL}};
  luaL_setfuncs(L, functions, 0);
}

#endif
