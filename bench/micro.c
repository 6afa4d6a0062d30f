/*
 * micro.c -- micro-benchmarks of moonws's per-byte hot paths, linked with
 * the real csrc/core objects: masking (ws_mask) and UTF-8 validation
 * (ws_utf8) on 1 MiB and on one 64-byte message, beside memcpy and a plain
 * 64-bit XOR loop as references.  Each case runs for a fixed time in
 * rounds; the best round counts (the least disturbed by other work on the
 * machine).  Prints one JSON line per case.
 *
 *   micro [seconds per case, default 0.25]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ws_mask.h"
#include "ws_utf8.h"

#define BIG (1u << 20)
#define SMALL 64

static uint8_t *src, *dst, *text_ascii, *text_mixed;
static const uint8_t key[4] = { 0x37, 0xfa, 0x21, 0x3d };
static volatile int sink;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The compiler must assume p's bytes are read and written here. */
static inline void clobber(void *p) { __asm__ volatile("" : : "r"(p) : "memory"); }

typedef void (*op_fn)(size_t len);

static void op_memcpy(size_t len) { memcpy(dst, src, len); clobber(dst); }

/* The reference: what a compiler makes of the simplest word loop. */
static void op_xor64(size_t len) {
  uint64_t k;
  memcpy(&k, key, 4);
  memcpy((uint8_t *)&k + 4, key, 4);
  uint64_t *w = (uint64_t *)(void *)dst;
  for (size_t i = 0; i < len / 8; i++) w[i] ^= k;
  clobber(dst);
}

static void op_mask_inplace(size_t len) { ws_mask_inplace(dst, len, key, 0); clobber(dst); }
static void op_mask_inplace_odd(size_t len) { ws_mask_inplace(dst + 1, len, key, 3); clobber(dst); }
static void op_mask_copy(size_t len) { ws_mask_copy(dst, src, len, key, 0); clobber(dst); }

static void op_utf8_ascii(size_t len) {
  clobber(text_ascii);
  sink = ws_utf8_valid(text_ascii, len);
}

static void op_utf8_mixed(size_t len) {
  clobber(text_mixed);
  sink = ws_utf8_valid(text_mixed, len);
}

/* Runs op on len bytes for about secs; returns the best bytes per second
 * of 5 rounds. */
static double measure(op_fn op, size_t len, double secs) {
  size_t reps = 1;
  for (;;) { /* calibrate: one round takes about secs / 5 */
    double t0 = now_s();
    for (size_t i = 0; i < reps; i++) op(len);
    double t = now_s() - t0;
    if (t > secs / 20 || reps > ((size_t)1 << 40)) {
      reps = (size_t)((double)reps * (secs / 5) / (t > 0 ? t : 1e-9)) + 1;
      break;
    }
    reps *= 4;
  }
  double best = 1e30;
  for (int r = 0; r < 5; r++) {
    double t0 = now_s();
    for (size_t i = 0; i < reps; i++) op(len);
    double t = now_s() - t0;
    if (t < best) best = t;
  }
  return (double)len * (double)reps / best;
}

static void report(const char *name, const char *what, op_fn op, size_t len, double secs) {
  double bps = measure(op, len, secs);
  printf("{\"micro\":\"%s\",\"what\":\"%s\",\"bytes\":%zu,\"gb_per_s\":%.2f,\"ns_per_op\":%.1f}\n",
         name, what, len, bps / 1e9, (double)len / bps * 1e9);
  fflush(stdout);
}

int main(int argc, char **argv) {
  double secs = argc > 1 ? atof(argv[1]) : 0.25;
  if (secs <= 0) secs = 0.25;
  src = aligned_alloc(64, BIG + 64);
  dst = aligned_alloc(64, BIG + 64);
  text_ascii = aligned_alloc(64, BIG + 64);
  text_mixed = aligned_alloc(64, BIG + 64);
  if (!src || !dst || !text_ascii || !text_mixed) return 1;
  for (size_t i = 0; i < BIG + 64; i++) {
    src[i] = (uint8_t)(i * 131u + 7u);
    dst[i] = 0;
    text_ascii[i] = (uint8_t)(' ' + i % 95);
  }
  /* Mixed text: ASCII words with 2-, 3- and 4-byte characters among them
   * (about 1 byte in 4 is not ASCII), cut on a character boundary. */
  static const char piece[] = "Gr\xc3\xbc\xc3\x9f" "e, caf\xc3\xa9 \xe4\xb8\x96\xe7\x95\x8c "
                              "smile \xf0\x9f\x99\x82 and plain ascii words. ";
  size_t plen = sizeof piece - 1, n = 0;
  while (n + plen <= BIG) memcpy(text_mixed + n, piece, plen), n += plen;
  memset(text_mixed + n, 'x', BIG - n);
  if (!ws_utf8_valid(text_mixed, BIG) || !ws_utf8_valid(text_ascii, BIG)) {
    fprintf(stderr, "micro: test text is not valid UTF-8\n");
    return 1;
  }
  report("memcpy", "reference: memcpy", op_memcpy, BIG, secs);
  report("xor64", "reference: plain 64-bit XOR loop, in place", op_xor64, BIG, secs);
  report("ws_mask_inplace", "moonws: unmask in place", op_mask_inplace, BIG, secs);
  report("ws_mask_inplace_unaligned", "moonws: unmask in place, odd address and phase",
         op_mask_inplace_odd, BIG, secs);
  report("ws_mask_copy", "moonws: mask while copying", op_mask_copy, BIG, secs);
  report("ws_utf8_ascii", "moonws: validate ASCII text", op_utf8_ascii, BIG, secs);
  report("ws_utf8_mixed", "moonws: validate mixed UTF-8 text", op_utf8_mixed, BIG, secs);
  report("ws_mask_inplace", "moonws: unmask one 64-byte message", op_mask_inplace, SMALL, secs);
  report("ws_utf8_ascii", "moonws: validate one 64-byte ASCII message", op_utf8_ascii, SMALL,
         secs);
  return 0;
}
