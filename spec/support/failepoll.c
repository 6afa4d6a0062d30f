/*
 * failepoll.c -- a shim for fault tests, loaded with LD_PRELOAD: the Nth
 * epoll_ctl(EPOLL_CTL_ADD) call of the process (N from MOONWS_FAIL_EPOLL_ADD,
 * counting from 1) fails with ENOSPC, as it does when a busy server reaches
 * fs.epoll.max_user_watches; every other call goes to libc.
 * Built at test time by spec/faults_spec.lua; never part of moonws.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>

int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev) {
  static int (*real)(int, int, int, struct epoll_event *);
  static long adds, fail_at = -1;
  if (!real) {
    real = (int (*)(int, int, int, struct epoll_event *))dlsym(RTLD_NEXT,
                                                                "epoll_ctl");
    const char *s = getenv("MOONWS_FAIL_EPOLL_ADD");
    fail_at = s ? atol(s) : -1;
  }
  if (op == EPOLL_CTL_ADD && ++adds == fail_at) {
    errno = ENOSPC;
    return -1;
  }
  return real(epfd, op, fd, ev);
}
