/* test_mask.c -- ws_mask against a byte loop: every length 0..100, phase
 * 0..3 and source/destination alignment 0..7, in place and copying, with
 * guard bytes around the destination to catch stray writes. */
#include "test_harness.h"
#include "ws_mask.h"

#include <stdint.h>

#define MAXLEN 100
#define GUARD 16

static void ref_mask(uint8_t *dst, const uint8_t *src, size_t len,
                     const uint8_t key[4], size_t phase) {
  for (size_t i = 0; i < len; i++)
    dst[i] = src[i] ^ key[(phase + i) % 4];
}

static void fill(uint8_t *p, size_t n, uint32_t seed) {
  for (size_t i = 0; i < n; i++) {
    seed = seed * 1103515245u + 12345u;
    p[i] = (uint8_t)(seed >> 16);
  }
}

static const uint8_t keys[3][4] = {
    {0x37, 0xfa, 0x21, 0x3d}, {0xff, 0x00, 0x80, 0x01}, {0, 0, 0, 0}};

static void test_copy_all(void) {
  /* uint64_t storage so offset 0 is 8-aligned and offsets 0..7 cover every
   * alignment. */
  uint64_t srcw[(MAXLEN + 2 * GUARD) / 8 + 2],
      dstw[(MAXLEN + 2 * GUARD) / 8 + 2];
  uint8_t *src = (uint8_t *)srcw, *dst = (uint8_t *)dstw;
  uint8_t want[MAXLEN + 2 * GUARD];
  long bad = 0, runs = 0;
  for (int k = 0; k < 3; k++)
    for (size_t len = 0; len <= MAXLEN; len++)
      for (size_t phase = 0; phase < 4; phase++)
        for (size_t sa = 0; sa < 8; sa++)
          for (size_t da = 0; da < 8; da++) {
            fill(src, sizeof srcw, (uint32_t)(len * 131 + phase * 7 + sa));
            memset(dst, 0xA5, sizeof dstw);
            memset(want, 0xA5, sizeof want);
            ref_mask(want + GUARD + da, src + sa, len, keys[k], phase);
            ws_mask_copy(dst + GUARD + da, src + sa, len, keys[k], phase);
            runs++;
            if (memcmp(dst, want, MAXLEN + 2 * GUARD) != 0)
              bad++;
          }
  CHECK_EQ_INT(bad, 0);
  CHECK_EQ_INT(runs, 3L * 101 * 4 * 8 * 8);
}

static void test_inplace_all(void) {
  uint64_t bufw[(MAXLEN + 2 * GUARD) / 8 + 2];
  uint8_t *buf = (uint8_t *)bufw;
  uint8_t want[MAXLEN + 2 * GUARD];
  long bad = 0;
  for (int k = 0; k < 3; k++)
    for (size_t len = 0; len <= MAXLEN; len++)
      for (size_t phase = 0; phase < 4; phase++)
        for (size_t a = 0; a < 8; a++) {
          fill(buf, MAXLEN + 2 * GUARD, (uint32_t)(len * 17 + phase + a));
          memcpy(want, buf, sizeof want);
          ref_mask(want + GUARD + a, buf + GUARD + a, len, keys[k], phase);
          ws_mask_inplace(buf + GUARD + a, len, keys[k], phase);
          if (memcmp(buf, want, sizeof want) != 0)
            bad++;
        }
  CHECK_EQ_INT(bad, 0);
}

/* Masking twice is the identity, and a payload masked in pieces with the
 * running phase equals masking it whole (how ws_conn unmasks split reads). */
static void test_pieces_and_involution(void) {
  uint8_t orig[1000], a[1000], b[1000];
  fill(orig, sizeof orig, 99);
  const uint8_t *key = keys[0];
  memcpy(a, orig, sizeof a);
  ws_mask_inplace(a, sizeof a, key, 0);
  CHECK(memcmp(a, orig, sizeof a) != 0);
  size_t cuts[] = {0, 1, 3, 8, 9, 17, 64, 333, 999, 1000};
  for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
    size_t at = cuts[c];
    ws_mask_copy(b, orig, at, key, 0);
    ws_mask_copy(b + at, orig + at, sizeof b - at, key, at);
    CHECK_MEM(a, b, sizeof a);
  }
  ws_mask_inplace(a, sizeof a, key, 0);
  CHECK_MEM(a, orig, sizeof a);
  /* A known vector: RFC 6455 5.7 "Hello", key 37 fa 21 3d. */
  uint8_t hello[5] = {'H', 'e', 'l', 'l', 'o'};
  const uint8_t rfc[5] = {0x7f, 0x9f, 0x4d, 0x51, 0x58};
  ws_mask_inplace(hello, 5, key, 0);
  CHECK_MEM(hello, rfc, 5);
  /* phase is taken mod 4: phase 4 equals phase 0. */
  uint8_t x[9] = "abcdefgh", y[9] = "abcdefgh";
  ws_mask_inplace(x, 8, key, 4);
  ws_mask_inplace(y, 8, key, 0);
  CHECK_MEM(x, y, 8);
}

int main(void) {
  TEST_RUN(test_copy_all);
  TEST_RUN(test_inplace_all);
  TEST_RUN(test_pieces_and_involution);
  return TEST_REPORT();
}
