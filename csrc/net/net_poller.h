/*
 * net_poller.h -- readiness of many file descriptors: epoll, or poll() as a
 * fallback (and for tests of the fallback); poll() on portable POSIX builds
 * and WSAPoll on Windows (net_sys.h).
 *
 * Level-triggered.  Interest is set per fd; an fd's hang-up or error is
 * reported as readable and writable both, so whoever waits finds out on its
 * next read or write.  net_poller_fd gives one descriptor that is readable
 * when any watched fd is ready (the epoll fd), for host event loops; with
 * the poll backend there is none (so none on Windows, where no single
 * handle becomes ready for a set of sockets).
 */
#ifndef MOONWS_NET_POLLER_H
#define MOONWS_NET_POLLER_H

#include <stdbool.h>

#define NET_POLL_READ 1u
#define NET_POLL_WRITE 2u

typedef struct net_poller net_poller;

typedef struct net_poll_event {
  int fd;
  unsigned events; /* NET_POLL_READ | NET_POLL_WRITE */
} net_poll_event;

/* A new poller; use_poll forces the poll() backend.  NULL on failure with
 * *err set. */
net_poller *net_poller_new(bool use_poll, int *err);
void net_poller_free(net_poller *p);

/* Watch fd for events (a mask of NET_POLL_*); 0 stops watching it.
 * Returns 0 or an errno. */
int net_poller_set(net_poller *p, int fd, unsigned events);

/* Wait up to timeout_ms (-1 forever, 0 never) and store up to max ready
 * fds in out.  Returns their count (0 on timeout or EINTR) or -errno. */
int net_poller_wait(net_poller *p, int timeout_ms, net_poll_event *out,
                    int max);

/* The pollable descriptor (epoll fd), or -1 with the poll backend. */
int net_poller_fd(const net_poller *p);

/* "epoll" or "poll". */
const char *net_poller_backend(const net_poller *p);

#endif
