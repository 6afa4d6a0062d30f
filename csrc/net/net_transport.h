/*
 * net_transport.h -- the one small interface every byte stream satisfies.
 *
 * Plain TCP (net_tcp.c) and TLS over it (net_tls.c, OpenSSL) fill it, so
 * the protocol and the binding never know which they run on.  No call blocks:
 * each returns bytes moved, or says which readiness it needs to progress.
 */
#ifndef MOONWS_NET_TRANSPORT_H
#define MOONWS_NET_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>

#include "net_sys.h" /* ssize_t */

/* Results of read and write besides a byte count (> 0). */
#define NET_EOF 0          /* read: the peer closed its side */
#define NET_WANT_READ (-2) /* retry when the fd is readable */
#define NET_WANT_WRITE (-3) /* retry when the fd is writable */
#define NET_FAIL (-1)      /* failed: see transport->err / ->message */

typedef struct net_transport net_transport;

typedef struct net_transport_ops {
  ssize_t (*read)(net_transport *t, void *buf, size_t n);
  ssize_t (*write)(net_transport *t, const void *buf, size_t n);
  /* Bytes already received and held inside the transport (TLS records):
   * read them before waiting on the fd again. */
  bool (*pending)(net_transport *t);
  /* Begin an orderly shutdown of the sending side without blocking: 0 done,
   * NET_WANT_READ/NET_WANT_WRITE to be called again, NET_FAIL. */
  int (*shutdown)(net_transport *t);
  /* Close the fd and free the transport. */
  void (*destroy)(net_transport *t);
  /* Gather write of two pieces in one call, as write returns (NULL where
   * the transport has none: TLS). */
  ssize_t (*write2)(net_transport *t, const void *a, size_t na, const void *b,
                    size_t nb);
} net_transport_ops;

struct net_transport {
  const net_transport_ops *ops;
  int fd;
  int err;             /* errno of the last NET_FAIL, or 0 */
  const char *message; /* or a static description of it, or NULL */
};

/* A transport over a connected nonblocking TCP socket; takes ownership of
 * fd.  NULL when out of memory (fd is then left open). */
net_transport *net_tcp_transport_new(int fd);

#endif
