/*
 * net_poller.c -- level-triggered readiness over epoll, or poll() anywhere.
 *
 * epoll keeps the interest set in the kernel; we keep each fd's last mask
 * (an array indexed by fd) only to choose ADD, MOD or DEL.  The poll()
 * backend keeps a dense pollfd array plus an fd -> slot map, so set and
 * remove are O(1) (removal swaps the last entry into the hole).  On
 * Windows the same backend runs on WSAPoll, and the map is indexed by
 * SOCKET values, which are small handle numbers (multiples of 4).
 */
#include "net_poller.h"
#include "net_sys.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef NET_SYS_WINDOWS
/* WSAPoll is poll() for sockets; a descriptor is a SOCKET in an int. */
typedef WSAPOLLFD net_pollfd;
#define net_poll(fds, n, ms) WSAPoll((fds), (ULONG)(n), (ms))
#define PFD_SOCKET(fd) ((SOCKET)(uintptr_t)(fd))
#else
#include <poll.h>
#include <unistd.h>
typedef struct pollfd net_pollfd;
#define net_poll(fds, n, ms) poll((fds), (nfds_t)(n), (ms))
#define PFD_SOCKET(fd) (fd)
#endif

#ifdef NET_SYS_LINUX
#include <sys/epoll.h>
#define NET_HAVE_EPOLL 1
#endif

#define MASK (NET_POLL_READ | NET_POLL_WRITE)

struct net_poller {
  int epfd; /* -1 for the poll backend */
  /* epoll: the mask last set per fd (0 = not registered). */
  unsigned char *masks;
  size_t nmasks;
#ifdef NET_HAVE_EPOLL
  struct epoll_event *evs;
  int nevs;
#endif
  /* poll: the watched fds, dense; slot[fd] = index + 1, or 0. */
  net_pollfd *pfds;
  size_t npfds, cappfds;
  size_t *slot;
  size_t nslot;
  size_t rotate; /* where the next scan starts, so no fd starves */
};

/* Grow *arr (elements of size sz, *n of them, zero-filled) to hold index i. */
static int grow_zeroed(void **arr, size_t *n, size_t sz, size_t i) {
  if (i < *n)
    return 0;
  size_t want = *n ? *n : 64;
  while (want <= i)
    want *= 2;
  if (want > SIZE_MAX / sz)
    return ENOMEM;
  void *a = realloc(*arr, want * sz);
  if (!a)
    return ENOMEM;
  memset((char *)a + *n * sz, 0, (want - *n) * sz);
  *arr = a;
  *n = want;
  return 0;
}

net_poller *net_poller_new(bool use_poll, int *err) {
  net_poller *p = calloc(1, sizeof *p);
  if (!p) {
    if (err)
      *err = ENOMEM;
    return NULL;
  }
  p->epfd = -1;
#ifdef NET_HAVE_EPOLL
  if (!use_poll) {
    p->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (p->epfd < 0) {
      if (err)
        *err = errno;
      free(p);
      return NULL;
    }
  }
#endif
  return p;
}

void net_poller_free(net_poller *p) {
  if (!p)
    return;
#ifdef NET_HAVE_EPOLL
  if (p->epfd >= 0)
    close(p->epfd);
#endif
  free(p->masks);
#ifdef NET_HAVE_EPOLL
  free(p->evs);
#endif
  free(p->pfds);
  free(p->slot);
  free(p);
}

#ifdef NET_HAVE_EPOLL
static int epoll_set(net_poller *p, int fd, unsigned events) {
  unsigned cur = (size_t)fd < p->nmasks ? p->masks[fd] : 0;
  struct epoll_event ev;
  memset(&ev, 0, sizeof ev);
  ev.events = ((events & NET_POLL_READ) ? EPOLLIN : 0) |
              ((events & NET_POLL_WRITE) ? EPOLLOUT : 0);
  ev.data.fd = fd;
  if (events == 0) {
    if (cur == 0)
      return 0;
    p->masks[fd] = 0;
    /* A closed fd has already left the epoll set by itself. */
    if (epoll_ctl(p->epfd, EPOLL_CTL_DEL, fd, &ev) < 0 && errno != ENOENT &&
        errno != EBADF)
      return errno;
    return 0;
  }
  int e = grow_zeroed((void **)&p->masks, &p->nmasks, 1, (size_t)fd);
  if (e)
    return e;
  /* Never skip a call when the mask looks unchanged: the fd number may
   * have been closed and reused without set(fd, 0), and then only the
   * kernel knows it is gone (MOD fails with ENOENT, so we ADD). */
  int op = cur ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
  if (epoll_ctl(p->epfd, op, fd, &ev) < 0) {
    if (errno == ENOENT && op == EPOLL_CTL_MOD)
      op = EPOLL_CTL_ADD;
    else if (errno == EEXIST && op == EPOLL_CTL_ADD)
      op = EPOLL_CTL_MOD;
    else
      return errno;
    if (epoll_ctl(p->epfd, op, fd, &ev) < 0) {
      p->masks[fd] = 0;
      return errno;
    }
  }
  p->masks[fd] = (unsigned char)events;
  return 0;
}

static int epoll_wait_events(net_poller *p, int timeout_ms,
                             net_poll_event *out, int max) {
  if (p->nevs < max) {
    struct epoll_event *evs = realloc(p->evs, (size_t)max * sizeof *evs);
    if (!evs)
      return -ENOMEM;
    p->evs = evs;
    p->nevs = max;
  }
  int n = epoll_wait(p->epfd, p->evs, max, timeout_ms);
  if (n < 0)
    return errno == EINTR ? 0 : -errno;
  for (int i = 0; i < n; i++) {
    uint32_t e = p->evs[i].events;
    unsigned m = ((e & EPOLLIN) ? NET_POLL_READ : 0) |
                 ((e & EPOLLOUT) ? NET_POLL_WRITE : 0);
    if (e & (EPOLLHUP | EPOLLERR))
      m = MASK;
    out[i].fd = p->evs[i].data.fd;
    out[i].events = m;
  }
  return n;
}
#endif

static int poll_set(net_poller *p, int fd, unsigned events) {
  size_t idx = (size_t)fd < p->nslot ? p->slot[fd] : 0;
  short pe = (short)(((events & NET_POLL_READ) ? POLLIN : 0) |
                     ((events & NET_POLL_WRITE) ? POLLOUT : 0));
  if (events == 0) {
    if (idx == 0)
      return 0;
    net_pollfd last = p->pfds[--p->npfds];
    if (idx - 1 != p->npfds) {
      p->pfds[idx - 1] = last;
      p->slot[(size_t)last.fd] = idx;
    }
    p->slot[fd] = 0;
    return 0;
  }
  if (idx) {
    p->pfds[idx - 1].events = pe;
    return 0;
  }
  int e = grow_zeroed((void **)&p->slot, &p->nslot, sizeof *p->slot,
                      (size_t)fd);
  if (!e && p->npfds == p->cappfds)
    e = grow_zeroed((void **)&p->pfds, &p->cappfds, sizeof *p->pfds,
                    p->npfds);
  if (e)
    return e;
  p->pfds[p->npfds].fd = PFD_SOCKET(fd);
  p->pfds[p->npfds].events = pe;
  p->pfds[p->npfds].revents = 0;
  p->slot[fd] = ++p->npfds;
  return 0;
}

static int poll_wait_events(net_poller *p, int timeout_ms,
                            net_poll_event *out, int max) {
#ifdef NET_SYS_WINDOWS
  /* WSAPoll with nothing to watch fails (WSAEINVAL): sleep instead, as
   * poll() does. */
  if (p->npfds == 0) {
    if (timeout_ms != 0)
      Sleep(timeout_ms < 0 ? INFINITE : (DWORD)timeout_ms);
    return 0;
  }
#endif
  int n = net_poll(p->pfds, p->npfds, timeout_ms);
  if (n < 0) {
    int e = net_sys_error();
    return e == EINTR ? 0 : -e;
  }
  int got = 0;
  size_t total = p->npfds;
  size_t start = total ? p->rotate % total : 0;
  for (size_t k = 0; k < total && got < max && n > 0; k++) {
    size_t i = (start + k) % total;
    short r = p->pfds[i].revents;
    if (r == 0)
      continue;
    n--;
    unsigned m = ((r & POLLIN) ? NET_POLL_READ : 0) |
                 ((r & POLLOUT) ? NET_POLL_WRITE : 0);
    if (r & (POLLHUP | POLLERR | POLLNVAL))
      m = MASK;
    out[got].fd = (int)p->pfds[i].fd;
    out[got].events = m;
    got++;
    p->rotate = i + 1;
  }
  return got;
}

int net_poller_set(net_poller *p, int fd, unsigned events) {
  if (fd < 0)
    return EBADF;
  events &= MASK;
#ifdef NET_HAVE_EPOLL
  if (p->epfd >= 0)
    return epoll_set(p, fd, events);
#endif
  return poll_set(p, fd, events);
}

int net_poller_wait(net_poller *p, int timeout_ms, net_poll_event *out,
                    int max) {
  if (max <= 0 || !out)
    return -EINVAL;
  if (timeout_ms < -1)
    timeout_ms = -1;
#ifdef NET_HAVE_EPOLL
  if (p->epfd >= 0)
    return epoll_wait_events(p, timeout_ms, out, max);
#endif
  return poll_wait_events(p, timeout_ms, out, max);
}

int net_poller_fd(const net_poller *p) { return p->epfd; }

const char *net_poller_backend(const net_poller *p) {
  return p->epfd >= 0 ? "epoll" : "poll";
}
