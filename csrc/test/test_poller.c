/*
 * test_poller.c -- both poller backends (epoll and poll) on socketpairs:
 * readiness, interest changes, hang-ups, timeouts, many fds, closed fds.
 */
#include "net_poller.h"
#include "test_harness.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RW (NET_POLL_READ | NET_POLL_WRITE)

static bool use_poll; /* the backend under test */

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static net_poller *new_poller(void) {
  int err = 0;
  net_poller *p = net_poller_new(use_poll, &err);
  CHECK(p != NULL);
  if (p)
    CHECK(strcmp(net_poller_backend(p), use_poll ? "poll" : "epoll") == 0);
  return p;
}

static void pair(int sv[2]) {
  CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
}

/* Wait and expect exactly one event. */
static void expect_one(net_poller *p, int timeout, int fd, unsigned events) {
  net_poll_event ev[4];
  int n = net_poller_wait(p, timeout, ev, 4);
  CHECK_EQ_INT(n, 1);
  if (n >= 1) {
    CHECK_EQ_INT(ev[0].fd, fd);
    CHECK_EQ_INT(ev[0].events, events);
  }
}

static void expect_none(net_poller *p) {
  net_poll_event ev[4];
  CHECK_EQ_INT(net_poller_wait(p, 0, ev, 4), 0);
}

static void test_read_write(void) {
  net_poller *p = new_poller();
  if (!p)
    return;
  int sv[2];
  pair(sv);
  CHECK_EQ_INT(net_poller_set(p, sv[0], NET_POLL_READ), 0);
  expect_none(p);
  CHECK_EQ_INT(write(sv[1], "x", 1), 1);
  expect_one(p, 1000, sv[0], NET_POLL_READ);
  /* Level-triggered: still reported until read. */
  expect_one(p, 0, sv[0], NET_POLL_READ);
  CHECK_EQ_INT(net_poller_set(p, sv[0], RW), 0);
  expect_one(p, 0, sv[0], RW);
  CHECK_EQ_INT(net_poller_set(p, sv[0], NET_POLL_WRITE), 0);
  expect_one(p, 0, sv[0], NET_POLL_WRITE);
  /* Setting the same mask again is harmless. */
  CHECK_EQ_INT(net_poller_set(p, sv[0], NET_POLL_WRITE), 0);
  expect_one(p, 0, sv[0], NET_POLL_WRITE);
  char c;
  CHECK_EQ_INT(read(sv[0], &c, 1), 1);
  CHECK_EQ_INT(net_poller_set(p, sv[0], NET_POLL_READ), 0);
  expect_none(p);
  /* Removed: data no longer reported; removing twice is fine. */
  CHECK_EQ_INT(write(sv[1], "y", 1), 1);
  CHECK_EQ_INT(net_poller_set(p, sv[0], 0), 0);
  expect_none(p);
  CHECK_EQ_INT(net_poller_set(p, sv[0], 0), 0);
  CHECK_EQ_INT(net_poller_set(p, 12345, 0), 0);
  /* Re-added after removal. */
  CHECK_EQ_INT(net_poller_set(p, sv[0], NET_POLL_READ), 0);
  expect_one(p, 0, sv[0], NET_POLL_READ);
  /* Bits outside the mask are ignored. */
  CHECK_EQ_INT(net_poller_set(p, sv[1], NET_POLL_WRITE | 0x80), 0);
  net_poll_event ev[4];
  CHECK_EQ_INT(net_poller_wait(p, 0, ev, 4), 2);
  CHECK_EQ_INT(net_poller_set(p, -1, NET_POLL_READ), EBADF);
  CHECK_EQ_INT(net_poller_wait(p, 0, ev, 0), -EINVAL);
  /* max caps the count. */
  CHECK_EQ_INT(net_poller_wait(p, 0, ev, 1), 1);
  close(sv[0]);
  close(sv[1]);
  net_poller_free(p);
}

static void test_hangup(void) {
  net_poller *p = new_poller();
  if (!p)
    return;
  int sv[2];
  pair(sv);
  CHECK_EQ_INT(net_poller_set(p, sv[0], NET_POLL_READ), 0);
  expect_none(p);
  /* Half-close is plain readability (EOF), not a hang-up. */
  CHECK_EQ_INT(shutdown(sv[1], SHUT_WR), 0);
  expect_one(p, 1000, sv[0], NET_POLL_READ);
  close(sv[1]);
  /* A hang-up reads as both, whatever the interest. */
  expect_one(p, 1000, sv[0], RW);
  CHECK_EQ_INT(net_poller_set(p, sv[0], NET_POLL_WRITE), 0);
  expect_one(p, 0, sv[0], RW);
  CHECK_EQ_INT(net_poller_set(p, sv[0], 0), 0);
  close(sv[0]);
  net_poller_free(p);
}

static void test_timeout(void) {
  net_poller *p = new_poller();
  if (!p)
    return;
  int sv[2];
  pair(sv);
  CHECK_EQ_INT(net_poller_set(p, sv[0], NET_POLL_READ), 0);
  net_poll_event ev[4];
  double t0 = now_ms();
  CHECK_EQ_INT(net_poller_wait(p, 0, ev, 4), 0);
  CHECK(now_ms() - t0 < 50);
  t0 = now_ms();
  CHECK_EQ_INT(net_poller_wait(p, 100, ev, 4), 0);
  double dt = now_ms() - t0;
  CHECK(dt >= 90 && dt < 1000);
  /* An empty poller still honours the timeout. */
  CHECK_EQ_INT(net_poller_set(p, sv[0], 0), 0);
  t0 = now_ms();
  CHECK_EQ_INT(net_poller_wait(p, 50, ev, 4), 0);
  dt = now_ms() - t0;
  CHECK(dt >= 40 && dt < 1000);
  close(sv[0]);
  close(sv[1]);
  net_poller_free(p);
}

static void raise_nofile(rlim_t want) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < want &&
      rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

enum { NPAIRS = 1000 };

static void test_many(void) {
  raise_nofile(2 * NPAIRS + 64);
  net_poller *p = new_poller();
  if (!p)
    return;
  static int sv[NPAIRS][2];
  int made = 0;
  for (; made < NPAIRS; made++)
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv[made]) < 0)
      break;
  CHECK_EQ_INT(made, NPAIRS);
  int maxfd = 0;
  for (int i = 0; i < made; i++) {
    CHECK_EQ_INT(net_poller_set(p, sv[i][0], NET_POLL_READ), 0);
    if (sv[i][0] > maxfd)
      maxfd = sv[i][0];
  }
  /* Every 7th becomes readable. */
  int want = 0;
  for (int i = 0; i < made; i += 7, want++)
    CHECK_EQ_INT(write(sv[i][1], "z", 1), 1);
  char *seen = calloc((size_t)maxfd + 1, 1);
  static net_poll_event ev[2 * NPAIRS];
  int n = net_poller_wait(p, 1000, ev, 2 * NPAIRS);
  CHECK_EQ_INT(n, want);
  for (int i = 0; i < n; i++) {
    CHECK(ev[i].fd >= 0 && ev[i].fd <= maxfd);
    CHECK_EQ_INT(ev[i].events, NET_POLL_READ);
    if (ev[i].fd >= 0 && ev[i].fd <= maxfd)
      seen[ev[i].fd]++;
  }
  for (int i = 0; i < made; i++)
    CHECK_EQ_INT(seen[sv[i][0]], i % 7 == 0);

  /* Drop every other fd (holes in the middle of the poll array). */
  want = 0;
  for (int i = 0; i < made; i += 2)
    CHECK_EQ_INT(net_poller_set(p, sv[i][0], 0), 0);
  for (int i = 1; i < made; i += 2)
    if (i % 7 == 0)
      want++;
  memset(seen, 0, (size_t)maxfd + 1);
  n = net_poller_wait(p, 1000, ev, 2 * NPAIRS);
  CHECK_EQ_INT(n, want);
  for (int i = 0; i < n; i++)
    if (ev[i].fd >= 0 && ev[i].fd <= maxfd)
      seen[ev[i].fd]++;
  for (int i = 0; i < made; i++)
    CHECK_EQ_INT(seen[sv[i][0]], i % 2 == 1 && i % 7 == 0);

  /* With a small max, repeated waits still reach every ready fd. */
  memset(seen, 0, (size_t)maxfd + 1);
  for (int round = 0; round < want; round++) {
    n = net_poller_wait(p, 0, ev, 10);
    CHECK(n > 0 && n <= 10);
    for (int i = 0; i < n; i++)
      if (ev[i].fd >= 0 && ev[i].fd <= maxfd)
        seen[ev[i].fd] = 1;
  }
  int reached = 0;
  for (int i = 0; i < made; i++)
    reached += seen[sv[i][0]];
  CHECK_EQ_INT(reached, want);

  for (int i = 0; i < made; i++) {
    close(sv[i][0]);
    close(sv[i][1]);
  }
  free(seen);
  net_poller_free(p);
}

/* A watched fd closed without set(fd, 0): epoll forgets it, poll reports
 * it (POLLNVAL) until removed; a reused fd number works either way. */
static void test_closed_fd(void) {
  net_poller *p = new_poller();
  if (!p)
    return;
  int sv[2];
  pair(sv);
  int fd = sv[0];
  CHECK_EQ_INT(net_poller_set(p, fd, NET_POLL_READ), 0);
  close(sv[0]);
  close(sv[1]);
  net_poll_event ev[4];
  int n = net_poller_wait(p, 0, ev, 4);
  if (use_poll) {
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(ev[0].fd, fd);
    CHECK_EQ_INT(ev[0].events, RW);
  } else {
    CHECK_EQ_INT(n, 0);
  }
  /* The number comes back (lowest free fd) on the next socketpair. */
  pair(sv);
  CHECK_EQ_INT(sv[0], fd);
  CHECK_EQ_INT(net_poller_set(p, sv[0], NET_POLL_READ), 0);
  expect_none(p);
  CHECK_EQ_INT(write(sv[1], "r", 1), 1);
  expect_one(p, 1000, sv[0], NET_POLL_READ);
  CHECK_EQ_INT(net_poller_set(p, sv[0], 0), 0);
  close(sv[0]);
  /* Removing a closed fd is not an error. */
  CHECK_EQ_INT(net_poller_set(p, sv[0], 0), 0);
  close(sv[1]);
  net_poller_free(p);
}

static void test_poller_fd(void) {
  net_poller *p = new_poller();
  if (!p)
    return;
  int pfd = net_poller_fd(p);
  if (use_poll) {
    CHECK_EQ_INT(pfd, -1);
    net_poller_free(p);
    return;
  }
  CHECK(pfd >= 0);
  CHECK(fcntl(pfd, F_GETFD) & FD_CLOEXEC);
  int sv[2];
  pair(sv);
  CHECK_EQ_INT(net_poller_set(p, sv[0], NET_POLL_READ), 0);
  struct pollfd q = {pfd, POLLIN, 0};
  CHECK_EQ_INT(poll(&q, 1, 0), 0);
  CHECK_EQ_INT(write(sv[1], "w", 1), 1);
  CHECK_EQ_INT(poll(&q, 1, 1000), 1);
  CHECK(q.revents & POLLIN);
  expect_one(p, 0, sv[0], NET_POLL_READ);
  close(sv[0]);
  close(sv[1]);
  net_poller_free(p);
}

static void test_epoll_refuses_file(void) {
  /* A regular file cannot be watched by epoll; the error is returned and
   * nothing is remembered.  poll() accepts it (always ready). */
  net_poller *p = new_poller();
  if (!p)
    return;
  int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
  CHECK(fd >= 0);
  int rc = net_poller_set(p, fd, NET_POLL_READ);
  net_poll_event ev[4];
  if (use_poll) {
    CHECK_EQ_INT(rc, 0);
    expect_one(p, 0, fd, NET_POLL_READ);
  } else {
    CHECK_EQ_INT(rc, EPERM);
    CHECK_EQ_INT(net_poller_wait(p, 0, ev, 4), 0);
  }
  CHECK_EQ_INT(net_poller_set(p, fd, 0), 0);
  close(fd);
  net_poller_free(p);
}

static void run_all(void) {
  fprintf(stderr, "backend: %s\n", use_poll ? "poll" : "epoll");
  TEST_RUN(test_read_write);
  TEST_RUN(test_hangup);
  TEST_RUN(test_timeout);
  TEST_RUN(test_many);
  TEST_RUN(test_closed_fd);
  TEST_RUN(test_poller_fd);
  TEST_RUN(test_epoll_refuses_file);
}

#if !defined(__linux__) || defined(MOONWS_PORTABLE)
/* Without epoll (macOS, the BSDs, -DMOONWS_PORTABLE: net_sys.h) the
 * default backend is poll(), with no pollable descriptor. */
static void test_default_is_poll(void) {
  int err = 0;
  net_poller *p = net_poller_new(false, &err);
  CHECK(p != NULL);
  if (!p)
    return;
  CHECK(strcmp(net_poller_backend(p), "poll") == 0);
  CHECK_EQ_INT(net_poller_fd(p), -1);
  net_poller_free(p);
}
#endif

int main(void) {
#if defined(__linux__) && !defined(MOONWS_PORTABLE)
  use_poll = false;
  run_all();
#else
  TEST_RUN(test_default_is_poll);
#endif
  use_poll = true;
  run_all();
  return TEST_REPORT();
}
