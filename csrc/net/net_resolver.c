/*
 * net_resolver.c -- getaddrinfo on detached worker threads, results
 * announced through a wake-up descriptor (an eventfd on Linux, a pipe on
 * other POSIX systems, a loopback socket pair on Windows: net_sys.h).
 *
 * One mutex guards everything shared: a queue of waiting lookups, a list of
 * running ones (so cancel can mark them), a list of finished ones.  The
 * owner and every live worker hold a reference; net_resolver_free only
 * marks the resolver dead, so a worker stuck in DNS never stalls the loop,
 * and whoever drops the last reference frees the shared state.
 */
#include "net_resolver.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifndef NET_SYS_WINDOWS
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#endif

#define DEFAULT_THREADS 4

typedef struct lookup {
  struct lookup *next;
  uint64_t id;
  char *host; /* NULL: getaddrinfo's loopback */
  int port;
  bool cancelled; /* set while running: drop the result */
  net_resolve_result res;
} lookup;

typedef struct lookup_list {
  lookup *head, *tail;
  size_t len;
} lookup_list;

struct net_resolver {
  net_mutex mu;
  net_cond cv; /* idle workers wait here for work or death */
  int efd;  /* the wake-up pair: efd is watched, wfd posted */
  int wfd;
  int max_threads, nthreads, nidle;
  int refs; /* the owner's plus one per live worker */
  bool dead;
  uint64_t next_id;
  lookup_list queued, running, done;
};

static void list_push(lookup_list *l, lookup *x) {
  x->next = NULL;
  if (l->tail)
    l->tail->next = x;
  else
    l->head = x;
  l->tail = x;
  l->len++;
}

static lookup *list_pop(lookup_list *l) {
  lookup *x = l->head;
  if (x) {
    l->head = x->next;
    if (!l->head)
      l->tail = NULL;
    l->len--;
  }
  return x;
}

/* Unlink x (if given) or the lookup with id; returns it or NULL. */
static lookup *list_take(lookup_list *l, lookup *x, uint64_t id) {
  lookup *prev = NULL;
  for (lookup *c = l->head; c; prev = c, c = c->next) {
    if (x ? c != x : c->id != id)
      continue;
    if (prev)
      prev->next = c->next;
    else
      l->head = c->next;
    if (l->tail == c)
      l->tail = prev;
    l->len--;
    return c;
  }
  return NULL;
}

static void lookup_free(lookup *x) {
  free(x->host);
  free(x);
}

static void list_free(lookup_list *l) {
  lookup *x;
  while ((x = list_pop(l)))
    lookup_free(x);
}

static void drain(int efd) {
  if (efd >= 0)
    net_sys_wake_drain(efd);
}

static void notify(int wfd) {
  if (wfd >= 0)
    net_sys_wake_post(wfd);
}

/* Called by whoever drops the last reference, without the lock. */
static void destroy(net_resolver *r) {
  list_free(&r->queued);
  list_free(&r->done);
  net_cond_destroy(&r->cv);
  net_mutex_destroy(&r->mu);
  free(r);
}

/* gai_strerror's text.  Windows' returns a pointer into one static buffer
 * that every thread shares, so it gets fixed texts for the common codes. */
static const char *lookup_error_text(int rc) {
#ifdef NET_SYS_WINDOWS
  switch (rc) {
  case EAI_NONAME: return "Name or service not known";
  case EAI_AGAIN: return "Temporary failure in name resolution";
  case EAI_FAIL: return "Non-recoverable failure in name resolution";
  case EAI_SERVICE: return "Servname not supported for ai_socktype";
  case EAI_MEMORY: return "Memory allocation failure";
  default: return "name lookup failed";
  }
#else
  return gai_strerror(rc);
#endif
}

static void run_lookup(lookup *x) {
  net_resolve_result *res = &x->res;
  char port[8];
  struct addrinfo hints, *ai = NULL;
  res->id = x->id;
  if (x->port < 0 || x->port > 65535) {
    res->error = EAI_SERVICE;
    res->message = lookup_error_text(EAI_SERVICE);
    return;
  }
  snprintf(port, sizeof port, "%d", x->port);
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_protocol = IPPROTO_TCP;
  /* No AI_ADDRCONFIG: on a host whose only addresses are loopback it
   * hides "localhost" and ::1. */
  hints.ai_flags = AI_NUMERICSERV;
  int rc = getaddrinfo(x->host, port, &hints, &ai);
  if (rc != 0) {
    res->error = rc;
    res->message = lookup_error_text(rc);
    return;
  }
  for (struct addrinfo *a = ai; a && res->num_addrs < NET_RESOLVE_MAX_ADDRS;
       a = a->ai_next) {
    if (a->ai_addrlen > sizeof res->addrs[0] || !a->ai_addr)
      continue;
    memcpy(&res->addrs[res->num_addrs], a->ai_addr, a->ai_addrlen);
    res->addrlens[res->num_addrs++] = a->ai_addrlen;
  }
  freeaddrinfo(ai);
  if (res->num_addrs == 0) {
    res->error = EAI_NONAME;
    res->message = lookup_error_text(EAI_NONAME);
  }
}

static void *worker(void *arg) {
  net_resolver *r = arg;
  net_mutex_lock(&r->mu);
  for (;;) {
    while (!r->dead && !r->queued.head) {
      r->nidle++;
      net_cond_wait(&r->cv, &r->mu);
      r->nidle--;
    }
    if (r->dead)
      break;
    lookup *x = list_pop(&r->queued);
    list_push(&r->running, x);
    net_mutex_unlock(&r->mu);
    run_lookup(x);
    net_mutex_lock(&r->mu);
    list_take(&r->running, x, 0);
    if (x->cancelled || r->dead) {
      lookup_free(x);
      continue;
    }
    if (!r->done.head)
      notify(r->wfd);
    list_push(&r->done, x);
  }
  r->nthreads--;
  bool last = --r->refs == 0;
  net_mutex_unlock(&r->mu);
  if (last)
    destroy(r);
  return NULL;
}

net_resolver *net_resolver_new(int max_threads, int *err) {
  net_resolver *r = calloc(1, sizeof *r);
  int e = ENOMEM;
  if (!r)
    goto fail;
  if ((e = net_sys_init()) != 0 ||
      (e = net_sys_wake_open(&r->efd, &r->wfd)) != 0) {
    free(r);
    goto fail;
  }
  if ((e = net_mutex_init(&r->mu)) != 0) {
    net_sys_wake_close(r->efd, r->wfd);
    free(r);
    goto fail;
  }
  if ((e = net_cond_init(&r->cv)) != 0) {
    net_mutex_destroy(&r->mu);
    net_sys_wake_close(r->efd, r->wfd);
    free(r);
    goto fail;
  }
  r->max_threads = max_threads > 0 ? max_threads : DEFAULT_THREADS;
  r->refs = 1;
  return r;
fail:
  if (err)
    *err = e;
  return NULL;
}

void net_resolver_free(net_resolver *r) {
  if (!r)
    return;
  net_mutex_lock(&r->mu);
  r->dead = true;
  net_cond_broadcast(&r->cv);
  /* Running lookups stay with their workers, which free them on return. */
  list_free(&r->queued);
  list_free(&r->done);
  net_sys_wake_close(r->efd, r->wfd);
  r->efd = r->wfd = -1;
  bool last = --r->refs == 0;
  net_mutex_unlock(&r->mu);
  if (last)
    destroy(r);
}

int net_resolver_fd(const net_resolver *r) { return r->efd; }

/* Start one more worker; called with the lock held.  Workers block every
 * signal, so signals keep going to the threads that expect them. */
static bool spawn(net_resolver *r) {
  if (net_thread_start_detached(worker, r) != 0)
    return false;
  r->nthreads++;
  r->refs++;
  return true;
}

uint64_t net_resolver_start(net_resolver *r, const char *host, int port) {
  lookup *x = calloc(1, sizeof *x);
  if (!x)
    return 0;
  if (host && !(x->host = strdup(host))) {
    free(x);
    return 0;
  }
  x->port = port;
  net_mutex_lock(&r->mu);
  x->id = ++r->next_id;
  list_push(&r->queued, x);
  /* Idle workers that were signalled but not yet awake still count as
   * idle, so compare with the queue length, not "is anyone idle". */
  if ((size_t)r->nidle < r->queued.len && r->nthreads < r->max_threads &&
      !spawn(r) && r->nthreads == 0) {
    list_take(&r->queued, x, 0);
    net_mutex_unlock(&r->mu);
    lookup_free(x);
    return 0;
  }
  net_cond_signal(&r->cv);
  uint64_t id = x->id;
  net_mutex_unlock(&r->mu);
  return id;
}

void net_resolver_cancel(net_resolver *r, uint64_t id) {
  net_mutex_lock(&r->mu);
  lookup *x = list_take(&r->queued, NULL, id);
  if (!x) {
    x = list_take(&r->done, NULL, id);
    if (x && !r->done.head)
      drain(r->efd);
  }
  if (x) {
    lookup_free(x);
  } else {
    for (lookup *c = r->running.head; c; c = c->next)
      if (c->id == id)
        c->cancelled = true;
  }
  net_mutex_unlock(&r->mu);
}

bool net_resolver_collect(net_resolver *r, net_resolve_result *out) {
  net_mutex_lock(&r->mu);
  lookup *x = list_pop(&r->done);
  if (!r->done.head)
    drain(r->efd);
  net_mutex_unlock(&r->mu);
  if (!x)
    return false;
  *out = x->res;
  lookup_free(x);
  return true;
}

bool net_resolve_numeric(const char *host, int port,
                         struct sockaddr_storage *addr, socklen_t *addrlen) {
  if (!host || port < 0 || port > 65535)
    return false;
  memset(addr, 0, sizeof *addr);
  struct sockaddr_in *a4 = (struct sockaddr_in *)addr;
  if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)port);
    *addrlen = sizeof *a4;
    return true;
  }
  struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)addr;
  if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons((uint16_t)port);
    *addrlen = sizeof *a6;
    return true;
  }
  return false;
}
