/* net_signal.c -- see net_signal.h.  The only state a signal handler can
 * reach is a global, so the pipe lives in two process-wide descriptors. */
#include "net_signal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#define MAX_SIGNO 64

static int pipe_fds[2] = {-1, -1};
static struct sigaction previous[MAX_SIGNO + 1];
static bool caught[MAX_SIGNO + 1];

static void on_signal(int signo) {
  int saved = errno; /* the interrupted code may be reading errno */
  unsigned char byte = (unsigned char)signo;
  ssize_t ignored = write(pipe_fds[1], &byte, 1); /* full pipe: dropped */
  (void)ignored;
  errno = saved;
}

int net_signal_open(int *err) {
  if (pipe_fds[0] < 0 && pipe2(pipe_fds, O_NONBLOCK | O_CLOEXEC) != 0) {
    *err = errno;
    pipe_fds[0] = pipe_fds[1] = -1;
    return -1;
  }
  return pipe_fds[0];
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

bool net_signal_next(int *signo) {
  unsigned char byte;
  if (pipe_fds[0] < 0 || read(pipe_fds[0], &byte, 1) != 1)
    return false;
  *signo = byte;
  return true;
}
