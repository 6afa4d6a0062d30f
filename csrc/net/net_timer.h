/*
 * net_timer.h -- a monotonic clock and a binary min-heap of deadlines.
 *
 * Timers are named by 64-bit handles that are never reused (slot index plus
 * a generation), so cancelling a timer that already fired is harmless.
 * add, cancel and pop are O(log n); memory is reused through a free list.
 */
#ifndef MOONWS_NET_TIMER_H
#define MOONWS_NET_TIMER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Seconds on CLOCK_MONOTONIC. */
double net_clock_now(void);

typedef struct net_timer_heap net_timer_heap;

net_timer_heap *net_timer_heap_new(void);
void net_timer_heap_free(net_timer_heap *h);

/* Add a timer; returns its handle (> 0), or 0 when out of memory. */
uint64_t net_timer_add(net_timer_heap *h, double deadline);

/* Remove a pending timer; false if it is not pending (fired, cancelled). */
bool net_timer_cancel(net_timer_heap *h, uint64_t handle);

/* The earliest deadline; false when no timer is pending. */
bool net_timer_next(const net_timer_heap *h, double *deadline);

/* Remove and return (in *handle) one timer whose deadline <= now; false
 * when none is due. */
bool net_timer_pop_due(net_timer_heap *h, double now, uint64_t *handle);

/* Number of pending timers. */
size_t net_timer_count(const net_timer_heap *h);

#endif
