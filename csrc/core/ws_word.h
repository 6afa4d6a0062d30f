/*
 * ws_word.h -- 8-byte words at any address, for the core's word-at-a-time
 * loops (masking, UTF-8's ASCII runs).  memcpy: no alignment or aliasing
 * games, and compilers make each one plain load or store.
 */
#ifndef MOONWS_WS_WORD_H
#define MOONWS_WS_WORD_H

#include <stdint.h>
#include <string.h>

static inline uint64_t ws_load64(const uint8_t *p) {
  uint64_t w;
  memcpy(&w, p, 8);
  return w;
}

static inline void ws_store64(uint8_t *p, uint64_t w) { memcpy(p, &w, 8); }

#endif
