/* net_signal.c -- see net_signal.h.  The only state a signal handler (or a
 * Windows console handler, which runs on a thread of its own) can reach is
 * a global, so the pipe lives in two process-wide descriptors. */
#include "net_signal.h"
#include "net_sys.h"

#include <errno.h>
#include <signal.h>
#include <string.h>

#define MAX_SIGNO 64

static int pipe_rfd = -1, pipe_wfd = -1;

int net_signal_open(int *err) {
  if (pipe_rfd < 0) {
    int e = net_sys_init();
    if (!e)
      e = net_sys_pipe_open(&pipe_rfd, &pipe_wfd);
    if (e) {
      *err = e;
      pipe_rfd = pipe_wfd = -1;
      return -1;
    }
  }
  return pipe_rfd;
}

bool net_signal_next(int *signo) {
  unsigned char byte;
  if (pipe_rfd < 0 || !net_sys_wake_read_byte(pipe_rfd, &byte))
    return false;
  *signo = byte;
  return true;
}

#ifndef NET_SYS_WINDOWS

static struct sigaction previous[MAX_SIGNO + 1];
static bool caught[MAX_SIGNO + 1];

static void on_signal(int signo) {
  int saved = errno; /* the interrupted code may be reading errno */
  net_sys_wake_post_byte(pipe_wfd, (unsigned char)signo); /* full: dropped */
  errno = saved;
}

int net_signal_catch(int signo) {
  if (signo <= 0 || signo > MAX_SIGNO)
    return EINVAL;
  if (caught[signo])
    return 0;
  int err = 0;
  if (net_signal_open(&err) < 0)
    return err;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  if (sigaction(signo, &sa, &previous[signo]) != 0)
    return errno;
  caught[signo] = true;
  return 0;
}

int net_signal_release(int signo) {
  if (signo <= 0 || signo > MAX_SIGNO)
    return EINVAL;
  if (!caught[signo])
    return 0;
  if (sigaction(signo, &previous[signo], NULL) != 0)
    return errno;
  caught[signo] = false;
  return 0;
}

#else /* Windows: console control events under the C signal numbers */

static volatile LONG caught[MAX_SIGNO + 1];
static INIT_ONCE handler_once = INIT_ONCE_STATIC_INIT;

static int event_signo(DWORD type) {
  switch (type) {
  case CTRL_C_EVENT: return SIGINT;
  case CTRL_BREAK_EVENT: return SIGBREAK;
  case CTRL_CLOSE_EVENT: return SIGTERM;
  default: return 0; /* logoff, shutdown: services only */
  }
}

/* Runs on a thread the system starts for the event.  FALSE passes the
 * event on (by default: the process ends). */
static BOOL WINAPI on_console_event(DWORD type) {
  int signo = event_signo(type);
  if (signo == 0 || !InterlockedCompareExchange(&caught[signo], 0, 0))
    return FALSE;
  net_sys_wake_post_byte(pipe_wfd, (unsigned char)signo);
  /* After a close event returns, Windows ends the process at once: wait
   * here so the loop can shut down (Windows still ends it after about
   * 5 seconds). */
  if (type == CTRL_CLOSE_EVENT)
    Sleep(INFINITE);
  return TRUE;
}

static int install_err;

static BOOL CALLBACK install(PINIT_ONCE once, PVOID param, PVOID *ctx) {
  (void)once, (void)param, (void)ctx;
  install_err = SetConsoleCtrlHandler(on_console_event, TRUE) ? 0 : EIO;
  return TRUE;
}

int net_signal_catch(int signo) {
  if (signo != SIGINT && signo != SIGBREAK && signo != SIGTERM)
    return EINVAL;
  int err = 0;
  if (net_signal_open(&err) < 0)
    return err;
  if (!InitOnceExecuteOnce(&handler_once, install, NULL, NULL) || install_err)
    return install_err ? install_err : EIO;
  InterlockedExchange(&caught[signo], 1);
  return 0;
}

int net_signal_release(int signo) {
  if (signo <= 0 || signo > MAX_SIGNO)
    return EINVAL;
  InterlockedExchange(&caught[signo], 0);
  return 0;
}

#endif
