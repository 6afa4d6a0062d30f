/* examples/embed/host.c -- a game-style host that embeds Lua 5.4 and moonws.
 *
 * The host owns the thread and the clock, as a game engine does: it runs a
 * Lua script once, then calls the script's global frame() 60 times a second
 * and measures how long each call works (never the wait between frames).
 * moonws must therefore never block and do bounded work per call: frame()
 * calls moonws.step(0).  Two ways to wait for the next frame:
 *
 *   sleep  clock_nanosleep to the frame deadline (network I/O is handled
 *          only inside frame(), once per frame);
 *   poll   a host event loop: poll() on moonws.fd() with the timeout of
 *          moonws.next_timeout() (capped at the frame deadline), then
 *          moonws.step(0) as soon as moonws has work, between frames.
 *
 * Usage: host [-m sleep|poll] [-n max_frames] script.lua [args...]
 * The script sees its arguments in `arg`, like lua5.4's; frame() returns
 * true to go on.  When it stops, the host prints its measurements, one
 * "name value" a line: frames, late_frames, worst_frame_ms (wall time of
 * the slowest frame() call), worst_frame_own_ms (the same without time
 * spent waiting for a CPU, see struct meter), and in poll mode wakeups,
 * worst_step_ms and worst_step_own_ms for the steps between frames.  Then
 * it calls the script's optional finish(), whose truth is the exit status.
 * Exit status: 0 success, 1 the script failed or finish() said false,
 * 2 max_frames reached, 64 bad usage.
 *
 * Build (from the checkout): make build/embed/host, or
 *   cc -std=c11 -O2 -Wall -Wextra -I/usr/include/lua5.4 \
 *      -o build/embed/host examples/embed/host.c -llua5.4 -lm
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _WIN32
/* Windows (mingw-w64, docs/PLATFORMS.md): a monotonic clock from
 * QueryPerformanceCounter, Sleep for the frame pacing, no schedstat, and
 * no poll mode (moonws.fd() is nil there: no single handle to wait on). */
#define WIN32_LEAN_AND_MEAN
#include <windows.h>
#include <timeapi.h>
#else
#include <fcntl.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>
#endif

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#define FRAME_NS 16666667LL /* 60 Hz */

#ifdef _WIN32
static long long now_ns(void) {
  static LARGE_INTEGER freq;
  LARGE_INTEGER t;
  if (!freq.QuadPart)
    QueryPerformanceFrequency(&freq);
  QueryPerformanceCounter(&t);
  return t.QuadPart / freq.QuadPart * 1000000000LL +
         t.QuadPart % freq.QuadPart * 1000000000LL / freq.QuadPart;
}
#else
static long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}
#endif

/* Work is measured two ways: wall time, and "own" time, which is wall time
 * minus the time this thread sat runnable waiting for a CPU (Linux's
 * /proc/thread-self/schedstat, second field).  On a busy machine the
 * scheduler may give the CPU to other processes in the middle of a frame;
 * own time leaves that out but still counts everything the frame did,
 * blocking included.  Without schedstat, own time is wall time. */
struct meter {
  int schedstat; /* descriptor, or -1 */
  long long wall, queued;
};
struct worst {
  long long wall, own;
};

static long long queued_ns(int schedstat) {
#ifdef _WIN32
  (void)schedstat;
  return 0;
#else
  char buf[128];
  long long run, waited;
  if (schedstat < 0)
    return 0;
  ssize_t n = pread(schedstat, buf, sizeof buf - 1, 0);
  if (n <= 0)
    return 0;
  buf[n] = '\0';
  return sscanf(buf, "%lld %lld", &run, &waited) == 2 ? waited : 0;
#endif
}

static void meter_start(struct meter *m) {
  m->wall = now_ns();
  m->queued = queued_ns(m->schedstat);
}

static void meter_stop(const struct meter *m, struct worst *w) {
  long long wall = now_ns() - m->wall;
  long long own = wall - (queued_ns(m->schedstat) - m->queued);
  if (wall > w->wall)
    w->wall = wall;
  if (own > w->own)
    w->own = own;
}

static void sleep_until(long long deadline) {
#ifdef _WIN32
  long long t;
  while ((t = now_ns()) < deadline)
    Sleep((DWORD)((deadline - t + 999999) / 1000000));
#else
  struct timespec ts = {(time_t)(deadline / 1000000000LL), (long)(deadline % 1000000000LL)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
  }
#endif
}

/* Errors raised in Lua get a traceback. */
static int traceback(lua_State *L) {
  luaL_traceback(L, L, lua_tostring(L, 1), 1);
  return 1;
}

/* Call the function below nargs arguments on the stack with one result,
 * under a traceback; on error print it and return 0. */
static int call(lua_State *L, int nargs, const char *what) {
  int base = lua_gettop(L) - nargs;
  lua_pushcfunction(L, traceback);
  lua_insert(L, base);
  int status = lua_pcall(L, nargs, 1, base);
  lua_remove(L, base);
  if (status != LUA_OK) {
    fprintf(stderr, "host: %s: %s\n", what, lua_tostring(L, -1));
    lua_pop(L, 1);
    return 0;
  }
  return 1;
}

/* Call the global frame(); 1 to go on, 0 when it returned false or failed. */
static int run_frame(lua_State *L, int *failed) {
  lua_getglobal(L, "frame");
  if (!call(L, 0, "frame()")) {
    *failed = 1;
    return 0;
  }
  int go_on = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return go_on;
}

/* moonws.NAME(args...) from C, with the moonws table at index `moonws`;
 * leaves one result. */
static int moonws_call(lua_State *L, int moonws, const char *name, int nargs) {
  lua_getfield(L, moonws, name);
  lua_insert(L, -1 - nargs);
  return call(L, nargs, name);
}

#ifndef _WIN32
/* Milliseconds for poll(), rounded up so the host never wakes early and spins. */
static int ms_ceil(long long ns) {
  if (ns <= 0)
    return 0;
  return (int)((ns + 999999) / 1000000);
}
#endif

int main(int argc, char **argv) {
  const char *mode = "sleep";
  long max_frames = 60L * 60; /* one minute: the host always ends */
  int i = 1;
  for (; i + 1 < argc && argv[i][0] == '-'; i += 2) {
    if (strcmp(argv[i], "-m") == 0)
      mode = argv[i + 1];
    else if (strcmp(argv[i], "-n") == 0)
      max_frames = strtol(argv[i + 1], NULL, 10);
    else
      break;
  }
  int polling = strcmp(mode, "poll") == 0;
  if (i >= argc || (!polling && strcmp(mode, "sleep") != 0) || max_frames <= 0) {
    fprintf(stderr, "usage: %s [-m sleep|poll] [-n max_frames] script.lua [args...]\n", argv[0]);
    return 64;
  }
#ifdef _WIN32
  if (polling) {
    fprintf(stderr, "host: no poll mode on Windows (moonws.fd() is nil there)\n");
    return 64;
  }
  timeBeginPeriod(1); /* Sleep(1) sleeps 1 ms, not a 15.6 ms tick */
#endif

  lua_State *L = luaL_newstate();
  if (!L) {
    fprintf(stderr, "host: out of memory\n");
    return 1;
  }
  luaL_openlibs(L);

  /* arg, as lua5.4 sets it: arg[0] the script, arg[1..] its arguments. */
  lua_createtable(L, argc - i - 1, 1);
  for (int a = i; a < argc; a++) {
    lua_pushstring(L, argv[a]);
    lua_rawseti(L, -2, a - i);
  }
  lua_setglobal(L, "arg");

  if (luaL_loadfile(L, argv[i]) != LUA_OK) {
    fprintf(stderr, "host: %s\n", lua_tostring(L, -1));
    lua_close(L);
    return 1;
  }
  if (!call(L, 0, argv[i])) {
    lua_close(L);
    return 1;
  }
  lua_pop(L, 1);
  if (lua_getglobal(L, "frame") != LUA_TFUNCTION) {
    fprintf(stderr, "host: %s defines no global function frame()\n", argv[i]);
    lua_close(L);
    return 1;
  }
  lua_pop(L, 1);

  /* The poll mode asks moonws itself for its descriptor and timers. */
  int moonws = 0, fd = -1;
  if (polling) {
    lua_getglobal(L, "require");
    lua_pushstring(L, "moonws");
    if (!call(L, 1, "require 'moonws'")) {
      lua_close(L);
      return 1;
    }
    moonws = lua_gettop(L);
    if (!moonws_call(L, moonws, "fd", 0) || !lua_isinteger(L, -1)) {
      fprintf(stderr, "host: moonws.fd() gave no descriptor (MOONWS_POLL=poll?)\n");
      lua_close(L);
      return 1;
    }
    fd = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
  }

  long frames = 0, late = 0, wakeups = 0;
#ifdef _WIN32
  struct meter meter = {-1, 0, 0};
#else
  struct meter meter = {open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC), 0, 0};
#endif
  struct worst worst_frame = {0, 0}, worst_step = {0, 0};
  int failed = 0, running = 1;
  long long deadline = now_ns();
  while (running) {
    meter_start(&meter);
    running = run_frame(L, &failed);
    meter_stop(&meter, &worst_frame);
    frames++;
    if (running && frames >= max_frames) {
      fprintf(stderr, "host: still running after %ld frames\n", frames);
      failed = 2;
      break;
    }

    /* The next deadline; a frame that overran skips the deadlines it missed
     * instead of running a burst of frames to catch up. */
    deadline += FRAME_NS;
    long long t = now_ns();
    if (t > deadline) {
      late++;
      deadline += (t - deadline + FRAME_NS - 1) / FRAME_NS * FRAME_NS;
    }
    if (!running)
      break;
    if (!polling) {
      sleep_until(deadline);
      continue;
    }

#ifdef _WIN32
    (void)fd;
#else
    /* Until the frame deadline, wake up whenever moonws has work. */
    while ((t = now_ns()) < deadline) {
      long long wait = deadline - t;
      if (!moonws_call(L, moonws, "next_timeout", 0)) {
        failed = 1;
        running = 0;
        break;
      }
      if (lua_isnumber(L, -1)) {
        double timer = lua_tonumber(L, -1) * 1e9;
        if (timer < (double)wait)
          wait = timer <= 0 ? 0 : (long long)ceil(timer);
      }
      lua_pop(L, 1);
      struct pollfd p = {fd, POLLIN, 0};
      int n = poll(&p, 1, ms_ceil(wait));
      if (n < 0 && errno != EINTR) {
        perror("host: poll");
        failed = 1;
        running = 0;
        break;
      }
      if (n == 0 && now_ns() >= deadline)
        break; /* time for a frame: it steps moonws itself */
      meter_start(&meter);
      lua_pushnumber(L, 0);
      if (!moonws_call(L, moonws, "step", 1)) {
        failed = 1;
        running = 0;
        break;
      }
      lua_pop(L, 1);
      meter_stop(&meter, &worst_step);
      wakeups++;
    }
#endif
  }

  printf("frames %ld\n", frames);
  printf("late_frames %ld\n", late);
  printf("schedstat %d\n", meter.schedstat >= 0);
  printf("worst_frame_ms %.3f\n", (double)worst_frame.wall / 1e6);
  printf("worst_frame_own_ms %.3f\n", (double)worst_frame.own / 1e6);
  if (polling) {
    printf("wakeups %ld\n", wakeups);
    printf("worst_step_ms %.3f\n", (double)worst_step.wall / 1e6);
    printf("worst_step_own_ms %.3f\n", (double)worst_step.own / 1e6);
  }
  fflush(stdout);
#ifndef _WIN32
  if (meter.schedstat >= 0)
    close(meter.schedstat);
#endif

  if (!failed && lua_getglobal(L, "finish") == LUA_TFUNCTION) {
    if (!call(L, 0, "finish()") || !lua_toboolean(L, -1))
      failed = 1;
  }
  lua_close(L);
  return failed;
}
