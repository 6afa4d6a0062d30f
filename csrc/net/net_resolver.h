/*
 * net_resolver.h -- host name lookups that never stall the loop.
 *
 * getaddrinfo blocks (DNS can take seconds), so lookups run on a small pool
 * of worker threads; a finished lookup makes the resolver's notify fd
 * readable, and the owner collects results from the loop thread.  Numeric
 * hosts ("127.0.0.1", "::1") never leave the calling thread.
 *
 * Lifetime: a lookup abandoned by its owner (timeout, socket closed) is
 * cancelled; if a worker is inside getaddrinfo for it, the worker frees it
 * when it returns.  net_resolver_free waits for no worker: it detaches, and
 * the last one out frees the shared state.
 */
#ifndef MOONWS_NET_RESOLVER_H
#define MOONWS_NET_RESOLVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net_sys.h"

typedef struct net_resolver net_resolver;

#define NET_RESOLVE_MAX_ADDRS 16

typedef struct net_resolve_result {
  uint64_t id;
  int error;           /* 0, or a getaddrinfo EAI_* code */
  const char *message; /* gai_strerror text when error != 0 */
  size_t num_addrs;
  struct sockaddr_storage addrs[NET_RESOLVE_MAX_ADDRS];
  socklen_t addrlens[NET_RESOLVE_MAX_ADDRS];
} net_resolve_result;

/* A resolver with up to max_threads workers (started on demand; <= 0
 * means 4).  NULL on failure with *err set. */
net_resolver *net_resolver_new(int max_threads, int *err);
void net_resolver_free(net_resolver *r);

/* Readable when results are waiting. */
int net_resolver_fd(const net_resolver *r);

/* Start looking up host (TCP, any family, no AI_ADDRCONFIG: it would hide
 * localhost on a loopback-only host) for port.
 * Returns an id > 0, or 0 when out of memory. */
uint64_t net_resolver_start(net_resolver *r, const char *host, int port);

/* Abandon a lookup; its result will never be collected. */
void net_resolver_cancel(net_resolver *r, uint64_t id);

/* Take one finished lookup into *out; false when none is waiting.  Drains
 * the notify fd once nothing is left. */
bool net_resolver_collect(net_resolver *r, net_resolve_result *out);

/* Resolve a numeric host synchronously (no DNS): true and one address when
 * host is an IPv4/IPv6 literal. */
bool net_resolve_numeric(const char *host, int port,
                         struct sockaddr_storage *addr, socklen_t *addrlen);

#endif
