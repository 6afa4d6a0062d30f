/*
 * ws_buf.h -- a growable byte buffer with a consumed prefix.
 *
 * Bytes live in base[start, end).  Reading consumes from the front
 * (ws_buf_consume), writing appends at the back (ws_buf_reserve + tail +
 * commit, or ws_buf_append).  Consumed space is reclaimed by moving the live
 * bytes to the front only when growing would otherwise be needed, so a
 * buffer that is drained every round never moves memory.
 *
 * Ownership: the buffer owns base; ws_buf_free releases it.  Pointers into
 * the buffer stay valid until the next reserve/append (which may move it).
 * Every size computation is checked: a request that would overflow size_t
 * or exhaust memory returns -1 and leaves the buffer unchanged.
 */
#ifndef MOONWS_WS_BUF_H
#define MOONWS_WS_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct ws_buf {
  uint8_t *base;
  size_t start;
  size_t end;
  size_t cap;
} ws_buf;

#define WS_BUF_INIT {NULL, 0, 0, 0}

static inline uint8_t *ws_buf_data(const ws_buf *b) { return b->base + b->start; }
static inline size_t ws_buf_len(const ws_buf *b) { return b->end - b->start; }
static inline uint8_t *ws_buf_tail(const ws_buf *b) { return b->base + b->end; }
static inline size_t ws_buf_room(const ws_buf *b) { return b->cap - b->end; }

/* Make room for at least n more bytes at the tail.  0 or -1 (no memory).
 * (ws_buf_grow is its slow half: the room is not there yet.) */
int ws_buf_grow(ws_buf *b, size_t n);
static inline int ws_buf_reserve(ws_buf *b, size_t n) {
  return b->cap - b->end >= n ? 0 : ws_buf_grow(b, n);
}
/* Mark n bytes written at the tail as part of the buffer (n <= room). */
static inline void ws_buf_commit(ws_buf *b, size_t n) { b->end += n; }
/* Append n bytes.  0 or -1 (no memory). */
int ws_buf_append(ws_buf *b, const void *data, size_t n);
/* Drop n bytes (n <= len) from the front. */
void ws_buf_consume(ws_buf *b, size_t n);
/* Forget the contents; keep the memory. */
static inline void ws_buf_clear(ws_buf *b) { b->start = b->end = 0; }
/* Release memory beyond keep bytes of capacity when the buffer is empty,
 * so one large message does not pin its memory for the connection's life. */
void ws_buf_trim(ws_buf *b, size_t keep);
void ws_buf_free(ws_buf *b);

#endif
