/*
 * test_timer.c -- the timer heap against a sorted reference: ordering,
 * FIFO ties, cancellation, handles that never repeat, and the clock.
 */
#include "net_timer.h"
#include "test_harness.h"

#include <math.h>
#include <stdlib.h>
#include <time.h>

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint64_t next_rand(void) { /* xorshift64: deterministic everywhere */
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

typedef struct ref {
  double deadline;
  int order; /* insertion order */
  uint64_t handle;
  int cancelled;
} ref;

static int cmp_ref(const void *a, const void *b) {
  const ref *x = a, *y = b;
  if (x->deadline != y->deadline)
    return x->deadline < y->deadline ? -1 : 1;
  return (x->order > y->order) - (x->order < y->order);
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

/* Pop everything and compare with the sorted, uncancelled references. */
static void drain_and_compare(net_timer_heap *h, ref *refs, int n) {
  qsort(refs, (size_t)n, sizeof *refs, cmp_ref);
  int mismatches = 0, k = 0;
  uint64_t got;
  double prev = -INFINITY;
  for (int i = 0; i < n; i++) {
    if (refs[i].cancelled)
      continue;
    double d;
    CHECK(net_timer_next(h, &d));
    CHECK(d == refs[i].deadline && d >= prev);
    prev = d;
    if (!net_timer_pop_due(h, INFINITY, &got)) {
      mismatches++;
      break;
    }
    mismatches += got != refs[i].handle;
    k++;
  }
  CHECK_EQ_INT(mismatches, 0);
  CHECK_EQ_INT(net_timer_count(h), 0);
  CHECK(!net_timer_pop_due(h, INFINITY, &got));
  CHECK(!net_timer_next(h, NULL));
  CHECK(k > 0);
}

enum { N = 5000 };

static void test_order(void) {
  net_timer_heap *h = net_timer_heap_new();
  static ref refs[N];
  for (int i = 0; i < N; i++) {
    /* Few distinct values so many deadlines tie. */
    refs[i].deadline = (double)(next_rand() % 200) * 0.25;
    refs[i].order = i;
    refs[i].cancelled = 0;
    refs[i].handle = net_timer_add(h, refs[i].deadline);
    CHECK(refs[i].handle != 0);
  }
  CHECK_EQ_INT(net_timer_count(h), N);
  drain_and_compare(h, refs, N);
  net_timer_heap_free(h);
}

static void test_cancel_subsets(void) {
  net_timer_heap *h = net_timer_heap_new();
  static ref refs[N];
  int n = 0, live = 0;
  /* Three rounds of add-then-cancel so later adds reuse freed slots. */
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < N / 3; i++, n++, live++) {
      refs[n].deadline = (double)(next_rand() % 1000) + round * 0.5;
      refs[n].order = n;
      refs[n].cancelled = 0;
      refs[n].handle = net_timer_add(h, refs[n].deadline);
    }
    for (int i = 0; i < n; i++) {
      if (refs[i].cancelled || next_rand() % 3 != 0)
        continue;
      CHECK(net_timer_cancel(h, refs[i].handle));
      CHECK(!net_timer_cancel(h, refs[i].handle));
      refs[i].cancelled = 1;
      live--;
    }
    CHECK_EQ_INT(net_timer_count(h), live);
  }
  /* Pop a due prefix, then cancelling those handles fails. */
  uint64_t got;
  int popped = 0;
  while (net_timer_pop_due(h, 100.0, &got)) {
    CHECK(!net_timer_cancel(h, got));
    for (int i = 0; i < n; i++)
      if (refs[i].handle == got) {
        CHECK(!refs[i].cancelled);
        CHECK(refs[i].deadline <= 100.0);
        refs[i].cancelled = 1;
      }
    popped++;
  }
  CHECK(popped > 0);
  for (int i = 0; i < n; i++)
    if (!refs[i].cancelled)
      CHECK(refs[i].deadline > 100.0);
  drain_and_compare(h, refs, n);
  net_timer_heap_free(h);
}

static void test_handles_unique(void) {
  net_timer_heap *h = net_timer_heap_new();
  uint64_t a = net_timer_add(h, 1.0);
  CHECK(net_timer_cancel(h, a));
  uint64_t b = net_timer_add(h, 1.0); /* reuses a's slot */
  CHECK(b != 0 && b != a);
  CHECK((b & 0xffffffffu) == (a & 0xffffffffu));
  CHECK(!net_timer_cancel(h, a));
  CHECK_EQ_INT(net_timer_count(h), 1);
  uint64_t got = 0;
  CHECK(net_timer_pop_due(h, 1.0, &got));
  CHECK(got == b);
  uint64_t c = net_timer_add(h, 2.0);
  CHECK(c != a && c != b);
  CHECK(!net_timer_cancel(h, b));
  CHECK(net_timer_cancel(h, c));

  /* Many add/cancel/pop cycles: every handle ever issued is distinct. */
  enum { M = 20000 };
  static uint64_t all[M];
  uint64_t keep[8] = {0};
  for (int i = 0; i < M; i++) {
    all[i] = net_timer_add(h, (double)(next_rand() % 10));
    CHECK(all[i] != 0);
    int k = (int)(next_rand() % 8);
    if (keep[k]) /* may have fired already: then false */
      net_timer_cancel(h, keep[k]);
    keep[k] = all[i];
    if (i % 5 == 0)
      net_timer_pop_due(h, 3.0, &got);
  }
  qsort(all, M, sizeof all[0], cmp_u64);
  int dups = 0;
  for (int i = 1; i < M; i++)
    dups += all[i] == all[i - 1];
  CHECK_EQ_INT(dups, 0);
  /* Garbage handles are refused. */
  CHECK(!net_timer_cancel(h, 0));
  CHECK(!net_timer_cancel(h, UINT64_MAX));
  CHECK(!net_timer_cancel(h, ((uint64_t)7 << 32) | 1));
  net_timer_heap_free(h);
}

static void test_fifo_ties(void) {
  net_timer_heap *h = net_timer_heap_new();
  uint64_t hs[100];
  for (int i = 0; i < 100; i++)
    hs[i] = net_timer_add(h, i % 2 ? 5.0 : 3.0);
  /* Cancelling from the middle keeps the rest in order. */
  CHECK(net_timer_cancel(h, hs[50]));
  CHECK(net_timer_cancel(h, hs[51]));
  uint64_t got;
  int bad = 0;
  for (int i = 0; i < 100; i += 2)
    if (i != 50)
      bad += !net_timer_pop_due(h, 3.0, &got) || got != hs[i];
  CHECK(!net_timer_pop_due(h, 4.9, &got));
  for (int i = 1; i < 100; i += 2)
    if (i != 51)
      bad += !net_timer_pop_due(h, 5.0, &got) || got != hs[i];
  CHECK_EQ_INT(bad, 0);
  CHECK_EQ_INT(net_timer_count(h), 0);
  net_timer_heap_free(h);
}

static void test_pop_due(void) {
  net_timer_heap *h = net_timer_heap_new();
  uint64_t got = 0;
  double d = -1;
  CHECK(!net_timer_next(h, &d));
  CHECK(!net_timer_pop_due(h, 1e9, &got));
  uint64_t t3 = net_timer_add(h, 3.0);
  uint64_t t1 = net_timer_add(h, 1.0);
  uint64_t t2 = net_timer_add(h, 2.0);
  CHECK(net_timer_next(h, &d) && d == 1.0);
  CHECK(!net_timer_pop_due(h, 0.5, &got));
  CHECK(!net_timer_pop_due(h, 0.999, &got));
  CHECK(net_timer_pop_due(h, 2.0, &got) && got == t1);
  CHECK(net_timer_pop_due(h, 2.0, &got) && got == t2); /* deadline == now */
  CHECK(!net_timer_pop_due(h, 2.0, &got));
  CHECK(!net_timer_pop_due(h, NAN, &got));
  CHECK(net_timer_next(h, &d) && d == 3.0);
  CHECK_EQ_INT(net_timer_count(h), 1);
  /* A NaN deadline must not corrupt the order: it is due at once. */
  uint64_t tn = net_timer_add(h, NAN);
  CHECK(net_timer_pop_due(h, 0.0, &got) && got == tn);
  CHECK(net_timer_pop_due(h, 3.0, &got) && got == t3);
  CHECK_EQ_INT(net_timer_count(h), 0);
  net_timer_heap_free(h);
}

static void test_clock(void) {
  double a = net_clock_now();
  CHECK(a > 0);
  struct timespec ts = {0, 20 * 1000 * 1000};
  nanosleep(&ts, NULL);
  double b = net_clock_now();
  CHECK(b - a >= 0.015 && b - a < 2.0);
  CHECK(net_clock_now() >= b);
}

int main(void) {
  TEST_RUN(test_order);
  TEST_RUN(test_cancel_subsets);
  TEST_RUN(test_handles_unique);
  TEST_RUN(test_fifo_ties);
  TEST_RUN(test_pop_due);
  TEST_RUN(test_clock);
  return TEST_REPORT();
}
