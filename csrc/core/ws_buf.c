/* ws_buf.c -- see ws_buf.h. */
#include "ws_buf.h"

#include <stdlib.h>
#include <string.h>

#define WS_BUF_MIN_CAP 256

int ws_buf_grow(ws_buf *b, size_t n) {
  if (b->cap - b->end >= n)
    return 0;
  size_t len = b->end - b->start;
  if (n > SIZE_MAX - len)
    return -1;
  size_t need = len + n;
  /* Compacting is enough when the consumed prefix frees the room and the
   * live bytes are few compared with the buffer (cheap to move). */
  if (need <= b->cap && len <= b->cap / 2) {
    memmove(b->base, b->base + b->start, len);
    b->start = 0;
    b->end = len;
    return 0;
  }
  size_t cap = b->cap < WS_BUF_MIN_CAP ? WS_BUF_MIN_CAP : b->cap;
  while (cap < need)
    cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  uint8_t *base;
  if (b->start == 0) {
    base = realloc(b->base, cap);
    if (!base)
      return -1;
  } else {
    base = malloc(cap);
    if (!base)
      return -1;
    if (len)
      memcpy(base, b->base + b->start, len);
    free(b->base);
  }
  b->base = base;
  b->start = 0;
  b->end = len;
  b->cap = cap;
  return 0;
}

int ws_buf_append(ws_buf *b, const void *data, size_t n) {
  if (n == 0)
    return 0;
  if (ws_buf_reserve(b, n) != 0)
    return -1;
  memcpy(b->base + b->end, data, n);
  b->end += n;
  return 0;
}

void ws_buf_consume(ws_buf *b, size_t n) {
  b->start += n;
  if (b->start >= b->end)
    b->start = b->end = 0;
}

void ws_buf_trim(ws_buf *b, size_t keep) {
  if (b->start != b->end || b->cap <= keep)
    return;
  free(b->base);
  b->base = NULL;
  b->start = b->end = b->cap = 0;
  if (keep) {
    b->base = malloc(keep);
    if (b->base)
      b->cap = keep;
  }
}

void ws_buf_free(ws_buf *b) {
  free(b->base);
  b->base = NULL;
  b->start = b->end = b->cap = 0;
}
