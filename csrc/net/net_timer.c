/*
 * net_timer.c -- a monotonic clock (net_sys.h) and a binary min-heap of
 * deadlines.
 *
 * Timers live in a slot array (reused through a free list); the heap holds
 * slot indexes and each slot knows its heap position, so cancel is
 * O(log n).  A handle is (generation << 32) | (slot + 1): the generation
 * moves on whenever a slot is freed, so an old handle never names a new
 * timer.  Equal deadlines fire in insertion order (a sequence number).
 */
#include "net_timer.h"
#include "net_sys.h"

#include <math.h>
#include <stdlib.h>

#define NOT_PENDING UINT32_MAX
#define NO_SLOT UINT32_MAX

typedef struct timer_node {
  double deadline;
  uint64_t seq;
  uint32_t gen;
  uint32_t pos;  /* index in the heap, or NOT_PENDING */
  uint32_t next; /* next free slot while on the free list */
} timer_node;

struct net_timer_heap {
  timer_node *nodes;
  uint32_t nnodes, capnodes;
  uint32_t free_head;
  uint32_t *heap; /* slot indexes */
  uint32_t count, capheap;
  uint64_t seq;
};

double net_clock_now(void) { return net_sys_monotonic(); }

net_timer_heap *net_timer_heap_new(void) {
  net_timer_heap *h = calloc(1, sizeof *h);
  if (h)
    h->free_head = NO_SLOT;
  return h;
}

void net_timer_heap_free(net_timer_heap *h) {
  if (!h)
    return;
  free(h->nodes);
  free(h->heap);
  free(h);
}

static bool before(const net_timer_heap *h, uint32_t a, uint32_t b) {
  const timer_node *x = &h->nodes[a], *y = &h->nodes[b];
  return x->deadline < y->deadline ||
         (x->deadline == y->deadline && x->seq < y->seq);
}

static void place(net_timer_heap *h, uint32_t i, uint32_t slot) {
  h->heap[i] = slot;
  h->nodes[slot].pos = i;
}

static void sift_up(net_timer_heap *h, uint32_t i) {
  uint32_t slot = h->heap[i];
  while (i > 0) {
    uint32_t parent = (i - 1) / 2;
    if (!before(h, slot, h->heap[parent]))
      break;
    place(h, i, h->heap[parent]);
    i = parent;
  }
  place(h, i, slot);
}

static void sift_down(net_timer_heap *h, uint32_t i) {
  uint32_t slot = h->heap[i];
  for (;;) {
    uint64_t l = 2 * (uint64_t)i + 1;
    if (l >= h->count)
      break;
    uint32_t c = (uint32_t)l;
    if (c + 1 < h->count && before(h, h->heap[c + 1], h->heap[c]))
      c++;
    if (!before(h, h->heap[c], slot))
      break;
    place(h, i, h->heap[c]);
    i = c;
  }
  place(h, i, slot);
}

/* Grow an array of elements of size sz to hold one more than *cap. */
static bool grow(void **arr, uint32_t *cap, size_t sz) {
  uint32_t want = *cap ? *cap : 16;
  if (*cap) {
    if (*cap >= (NO_SLOT - 1) / 2)
      want = NO_SLOT - 1;
    else
      want = *cap * 2;
    if (want <= *cap)
      return false;
  }
  void *a = realloc(*arr, (size_t)want * sz);
  if (!a)
    return false;
  *arr = a;
  *cap = want;
  return true;
}

uint64_t net_timer_add(net_timer_heap *h, double deadline) {
  if (isnan(deadline)) /* would break the ordering; treat as due now */
    deadline = -INFINITY;
  bool reuse = h->free_head != NO_SLOT;
  uint32_t slot = reuse ? h->free_head : h->nnodes;
  if (!reuse && h->nnodes == h->capnodes &&
      !grow((void **)&h->nodes, &h->capnodes, sizeof *h->nodes))
    return 0;
  if (h->count == h->capheap &&
      !grow((void **)&h->heap, &h->capheap, sizeof *h->heap))
    return 0;
  timer_node *n = &h->nodes[slot];
  if (reuse) {
    h->free_head = n->next;
  } else {
    h->nnodes++;
    n->gen = 0;
  }
  n->deadline = deadline;
  n->seq = h->seq++;
  n->next = NO_SLOT;
  h->count++;
  place(h, h->count - 1, slot);
  sift_up(h, h->count - 1);
  return ((uint64_t)n->gen << 32) | ((uint64_t)slot + 1);
}

/* Free a slot that has left the heap; a slot whose generation would wrap
 * is retired for good, so no handle ever repeats. */
static void release(net_timer_heap *h, uint32_t slot) {
  timer_node *n = &h->nodes[slot];
  n->pos = NOT_PENDING;
  if (n->gen == UINT32_MAX)
    return;
  n->gen++;
  n->next = h->free_head;
  h->free_head = slot;
}

static void remove_at(net_timer_heap *h, uint32_t i) {
  uint32_t slot = h->heap[i];
  uint32_t last = h->heap[--h->count];
  if (i != h->count) {
    place(h, i, last);
    sift_down(h, i);
    if (h->heap[i] == last)
      sift_up(h, i);
  }
  release(h, slot);
}

bool net_timer_cancel(net_timer_heap *h, uint64_t handle) {
  uint64_t low = handle & 0xffffffffu;
  if (low == 0 || low > h->nnodes)
    return false;
  uint32_t slot = (uint32_t)(low - 1);
  timer_node *n = &h->nodes[slot];
  if (n->gen != (uint32_t)(handle >> 32) || n->pos == NOT_PENDING)
    return false;
  remove_at(h, n->pos);
  return true;
}

bool net_timer_next(const net_timer_heap *h, double *deadline) {
  if (h->count == 0)
    return false;
  if (deadline)
    *deadline = h->nodes[h->heap[0]].deadline;
  return true;
}

bool net_timer_pop_due(net_timer_heap *h, double now, uint64_t *handle) {
  if (h->count == 0 || isnan(now))
    return false;
  uint32_t slot = h->heap[0];
  timer_node *n = &h->nodes[slot];
  if (n->deadline > now)
    return false;
  if (handle)
    *handle = ((uint64_t)n->gen << 32) | ((uint64_t)slot + 1);
  remove_at(h, 0);
  return true;
}

size_t net_timer_count(const net_timer_heap *h) { return h->count; }
