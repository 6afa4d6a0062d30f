/*
 * test_resolver.c -- the threaded resolver with names from /etc/hosts and
 * literals only (no outside DNS): results, ids, cancellation, the notify
 * fd, and a free that leaves no thread behind.
 */
#include "net_resolver.h"
#include "test_harness.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static bool fd_readable(int fd, int ms) {
  struct pollfd p = {fd, POLLIN, 0};
  return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

/* Threads in this process, from /proc (-1 when unknown). */
static int thread_count(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  int n = -1;
  if (!f)
    return -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "Threads: %d", &n) == 1)
      break;
  fclose(f);
  return n;
}

/* Detached workers leave on their own after free; wait until they have
 * (valgrind would otherwise see their stacks as leaked). */
static bool wait_threads(int want) {
  for (int i = 0; i < 500; i++) {
    if (thread_count() <= want)
      return true;
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  return false;
}

static int addr_port(const struct sockaddr_storage *ss) {
  if (ss->ss_family == AF_INET)
    return ntohs(((const struct sockaddr_in *)ss)->sin_port);
  if (ss->ss_family == AF_INET6)
    return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
  return -1;
}

static bool is_loopback(const struct sockaddr_storage *ss) {
  if (ss->ss_family == AF_INET)
    return ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) ==
           INADDR_LOOPBACK;
  if (ss->ss_family == AF_INET6)
    return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)ss)->sin6_addr);
  return false;
}

/* Wait on the notify fd and collect one result. */
static bool collect_wait(net_resolver *r, net_resolve_result *res) {
  for (int i = 0; i < 100; i++) {
    if (net_resolver_collect(r, res))
      return true;
    fd_readable(net_resolver_fd(r), 50);
  }
  return false;
}

static int base_threads;

static void test_localhost(void) {
  int err = 0;
  net_resolver *r = net_resolver_new(2, &err);
  CHECK(r != NULL);
  if (!r)
    return;
  int fd = net_resolver_fd(r);
  CHECK(fd >= 0);
  CHECK(!fd_readable(fd, 0));
  uint64_t id = net_resolver_start(r, "localhost", 8080);
  CHECK(id > 0);
  CHECK(fd_readable(fd, 5000));
  static net_resolve_result res;
  memset(&res, 0xa5, sizeof res);
  CHECK(net_resolver_collect(r, &res));
  CHECK(res.id == id);
  CHECK_EQ_INT(res.error, 0);
  CHECK(res.num_addrs >= 1 && res.num_addrs <= NET_RESOLVE_MAX_ADDRS);
  int loop = 0;
  for (size_t i = 0; i < res.num_addrs && i < NET_RESOLVE_MAX_ADDRS; i++) {
    CHECK(res.addrs[i].ss_family == AF_INET ||
          res.addrs[i].ss_family == AF_INET6);
    CHECK(res.addrlens[i] == (res.addrs[i].ss_family == AF_INET
                                  ? sizeof(struct sockaddr_in)
                                  : sizeof(struct sockaddr_in6)));
    CHECK_EQ_INT(addr_port(&res.addrs[i]), 8080);
    loop += is_loopback(&res.addrs[i]);
  }
  CHECK(loop >= 1);
  /* All collected: the fd is quiet again and collect says so. */
  CHECK(!fd_readable(fd, 0));
  CHECK(!net_resolver_collect(r, &res));

  /* A literal through the pool works too; a bad port is an EAI_ error. */
  id = net_resolver_start(r, "127.0.0.1", 0);
  CHECK(collect_wait(r, &res));
  CHECK(res.id == id && res.error == 0 && res.num_addrs == 1);
  CHECK_EQ_INT(addr_port(&res.addrs[0]), 0);
  id = net_resolver_start(r, "localhost", 70000);
  CHECK(collect_wait(r, &res));
  CHECK(res.id == id);
  CHECK_EQ_INT(res.error, EAI_SERVICE);
  CHECK(res.message != NULL && res.message[0] != '\0');
  CHECK_EQ_INT(res.num_addrs, 0);
  net_resolver_free(r);
  CHECK(wait_threads(base_threads));
}

static void test_numeric(void) {
  struct sockaddr_storage ss;
  socklen_t len = 0;
  CHECK(net_resolve_numeric("127.0.0.1", 443, &ss, &len));
  CHECK_EQ_INT(ss.ss_family, AF_INET);
  CHECK_EQ_INT(len, sizeof(struct sockaddr_in));
  CHECK_EQ_INT(addr_port(&ss), 443);
  CHECK(is_loopback(&ss));
  CHECK(net_resolve_numeric("::1", 80, &ss, &len));
  CHECK_EQ_INT(ss.ss_family, AF_INET6);
  CHECK_EQ_INT(len, sizeof(struct sockaddr_in6));
  CHECK_EQ_INT(addr_port(&ss), 80);
  CHECK(is_loopback(&ss));
  CHECK(net_resolve_numeric("2001:db8::1", 65535, &ss, &len));
  char txt[INET6_ADDRSTRLEN];
  inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, txt,
            sizeof txt);
  CHECK(strcmp(txt, "2001:db8::1") == 0);
  CHECK(!net_resolve_numeric("localhost", 80, &ss, &len));
  CHECK(!net_resolve_numeric("[::1]", 80, &ss, &len));
  CHECK(!net_resolve_numeric("127.0.0.1.", 80, &ss, &len));
  CHECK(!net_resolve_numeric("", 80, &ss, &len));
  CHECK(!net_resolve_numeric(NULL, 80, &ss, &len));
  CHECK(!net_resolve_numeric("127.0.0.1", 65536, &ss, &len));
  CHECK(!net_resolve_numeric("127.0.0.1", -1, &ss, &len));
}

enum { MANY = 50 };

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

static void test_concurrent(void) {
  int err = 0;
  net_resolver *r = net_resolver_new(4, &err);
  if (!r)
    return;
  uint64_t ids[MANY], got[MANY];
  int maxthreads = 0;
  for (int i = 0; i < MANY; i++) {
    ids[i] = net_resolver_start(r, i % 2 ? "localhost" : "vm", 1000 + i);
    CHECK(ids[i] > 0);
    int t = thread_count();
    if (t > maxthreads)
      maxthreads = t;
  }
  /* The pool never grows past max_threads. */
  CHECK(maxthreads <= base_threads + 4);
  int n = 0, bad = 0;
  static net_resolve_result res;
  while (n < MANY && collect_wait(r, &res)) {
    got[n++] = res.id;
    bad += res.error != 0 || res.num_addrs < 1 ||
           addr_port(&res.addrs[0]) != 1000 + (int)(res.id - ids[0]);
  }
  CHECK_EQ_INT(n, MANY);
  CHECK_EQ_INT(bad, 0);
  qsort(ids, MANY, sizeof ids[0], cmp_u64);
  qsort(got, (size_t)n, sizeof got[0], cmp_u64);
  int mismatch = 0;
  for (int i = 0; i < n; i++)
    mismatch += got[i] != ids[i] || (i && got[i] == got[i - 1]);
  CHECK_EQ_INT(mismatch, 0);
  CHECK(!fd_readable(net_resolver_fd(r), 0));
  net_resolver_free(r);
  CHECK(wait_threads(base_threads));
}

/* Cancelled lookups are never delivered, whether they were still queued,
 * running or already finished when cancelled. */
static void test_cancel(void) {
  int err = 0;
  net_resolver *r = net_resolver_new(1, &err);
  if (!r)
    return;
  enum { K = 20 };
  uint64_t ids[K];
  bool cancelled[K];
  for (int i = 0; i < K; i++)
    ids[i] = net_resolver_start(r, "localhost", 80);
  /* One worker, started after the first: the tail is still queued. */
  for (int i = 0; i < K; i++) {
    cancelled[i] = i >= K / 2 || i % 3 == 1;
    if (cancelled[i])
      net_resolver_cancel(r, ids[i]);
  }
  net_resolver_cancel(r, 999999); /* unknown: ignored */
  int want = 0, delivered = 0, wrong = 0;
  for (int i = 0; i < K; i++)
    want += !cancelled[i];
  static net_resolve_result res;
  for (int round = 0; round < 250 && delivered < want; round++) {
    while (net_resolver_collect(r, &res)) {
      delivered++;
      for (int i = 0; i < K; i++)
        if (res.id == ids[i])
          wrong += cancelled[i];
    }
    fd_readable(net_resolver_fd(r), 20);
  }
  /* A late delivery of a cancelled lookup would show up now. */
  struct timespec ts = {0, 50 * 1000 * 1000};
  nanosleep(&ts, NULL);
  while (net_resolver_collect(r, &res)) {
    delivered++;
    for (int i = 0; i < K; i++)
      if (res.id == ids[i])
        wrong += cancelled[i];
  }
  CHECK_EQ_INT(wrong, 0);
  CHECK_EQ_INT(delivered, want);

  /* Cancel a finished, uncollected lookup: the notify fd goes quiet. */
  uint64_t id = net_resolver_start(r, "localhost", 80);
  CHECK(fd_readable(net_resolver_fd(r), 5000));
  net_resolver_cancel(r, id);
  CHECK(!fd_readable(net_resolver_fd(r), 0));
  CHECK(!net_resolver_collect(r, &res));
  net_resolver_free(r);
  CHECK(wait_threads(base_threads));
}

static void test_free_outstanding(void) {
  for (int round = 0; round < 5; round++) {
    int err = 0;
    net_resolver *r = net_resolver_new(3, &err);
    if (!r)
      return;
    for (int i = 0; i < 30; i++)
      CHECK(net_resolver_start(r, "localhost", 443) > 0);
    if (round % 2) { /* some finished and waiting, some not */
      fd_readable(net_resolver_fd(r), 1000);
    }
    net_resolver_free(r);
  }
  net_resolver_free(NULL);
  /* Every worker leaves once its lookup returns. */
  CHECK(wait_threads(base_threads));
}

int main(void) {
  base_threads = thread_count();
  TEST_RUN(test_localhost);
  TEST_RUN(test_numeric);
  TEST_RUN(test_concurrent);
  TEST_RUN(test_cancel);
  TEST_RUN(test_free_outstanding);
  return TEST_REPORT();
}
