/* ws_utf8.c -- incremental UTF-8 validation (Unicode 3-7).
 *
 * The state packs what the next byte must be: bytes still owed by the
 * current sequence, and the allowed range of the next one (only the second
 * byte of E0, ED, F0, F4 sequences is narrower than 80..BF; that narrowing
 * is what rules out overlongs, surrogates and > U+10FFFF).  Checking ranges
 * byte by byte makes every invalid input fail at its first bad byte.  At a
 * boundary, ASCII is skipped 64 bytes at a time, then 16 (SSE2: one
 * 16-byte mask says where the first high bit is; elsewhere 32 and 16
 * bytes as words), then to the first high bit of a word, and a sequence
 * that is whole in the buffer is checked without touching the state. */
#include "ws_utf8.h"
#include "ws_word.h"

#if defined(__SSE2__) && (defined(__GNUC__) || defined(__clang__))
#include <emmintrin.h>
#define UTF8_SSE2 1
#endif

#define ST(need, lo, hi)                                                       \
  ((uint32_t)(need) | (uint32_t)(lo) << 8 | (uint32_t)(hi) << 16)
#define ST_NEED(s) ((s)&0xFF)
#define ST_LO(s) (((s) >> 8) & 0xFF)
#define ST_HI(s) (((s) >> 16) & 0xFF)
#define ST_FAIL 0xFFFFFFFFu /* sticky; nonzero so never "complete" */

/* What must follow lead byte b (b >= 0x80), or ST_FAIL if b cannot start a
 * sequence: 80..BF (continuation), C0/C1 (always overlong), F5..FF. */
static inline uint32_t lead_state(uint8_t b) {
  if (b < 0xC2)
    return ST_FAIL;
  if (b < 0xE0)
    return ST(1, 0x80, 0xBF);
  if (b < 0xF0)
    return b == 0xE0   ? ST(2, 0xA0, 0xBF) /* no overlong 3-byte */
           : b == 0xED ? ST(2, 0x80, 0x9F) /* no surrogates */
                       : ST(2, 0x80, 0xBF);
  if (b < 0xF5)
    return b == 0xF0   ? ST(3, 0x90, 0xBF) /* no overlong 4-byte */
           : b == 0xF4 ? ST(3, 0x80, 0x8F) /* nothing above U+10FFFF */
                       : ST(3, 0x80, 0xBF);
  return ST_FAIL;
}

#define HIGH_BITS 0x8080808080808080u

#ifdef UTF8_SSE2
static inline __m128i load16(const uint8_t *p) {
  return _mm_loadu_si128((const __m128i *)(const void *)p);
}
#else
static inline int ascii_2words(const uint8_t *p) {
  return ((ws_load64(p) | ws_load64(p + 8)) & HIGH_BITS) == 0;
}

static inline int ascii_4words(const uint8_t *p) {
  return ((ws_load64(p) | ws_load64(p + 8) | ws_load64(p + 16) |
           ws_load64(p + 24)) &
          HIGH_BITS) == 0;
}
#endif

/* Index of the first byte >= 0x80 among p[0, 8), or 8 when none is. */
static inline size_t first_non_ascii(const uint8_t *p) {
#if defined(__GNUC__) && defined(__BYTE_ORDER__) &&                           \
    __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  uint64_t w = ws_load64(p) & HIGH_BITS;
  return w ? (size_t)__builtin_ctzll(w) >> 3 : 8;
#else
  size_t k = 0;
  while (k < 8 && p[k] < 0x80)
    k++;
  return k;
#endif
}

/* Index of the first byte >= 0x80 among p[0, n), or n when none is. */
static inline size_t ascii_run(const uint8_t *p, size_t n) {
  size_t i = 0;
#ifdef UTF8_SSE2
  for (; n - i >= 64; i += 64) {
    __m128i any = _mm_or_si128(_mm_or_si128(load16(p + i), load16(p + i + 16)),
                               _mm_or_si128(load16(p + i + 32),
                                            load16(p + i + 48)));
    if (_mm_movemask_epi8(any))
      break;
  }
  if (i == n)
    return n;
  for (; n - i >= 16; i += 16) {
    unsigned high = (unsigned)_mm_movemask_epi8(load16(p + i));
    if (high)
      return i + (size_t)__builtin_ctz(high);
  }
#else
  while (n - i >= 32 && ascii_4words(p + i))
    i += 32;
  if (n - i >= 16 && ascii_2words(p + i))
    i += 16;
#endif
  for (; n - i >= 8; i += 8) {
    size_t at = first_non_ascii(p + i);
    if (at < 8)
      return i + at;
  }
  while (i < n && p[i] < 0x80)
    i++;
  return i;
}

int ws_utf8_feed(ws_utf8 *v, const uint8_t *p, size_t n) {
  uint32_t st = v->state;
  size_t i = 0;
  if (st == ST_FAIL)
    return -1;
  for (;;) {
    /* Inside a sequence split across calls: one byte at a time. */
    while (st != 0) {
      if (i == n) {
        v->state = st;
        return 0;
      }
      uint8_t b = p[i++];
      if (b < ST_LO(st) || b > ST_HI(st))
        goto fail;
      st = ST_NEED(st) > 1 ? ST(ST_NEED(st) - 1, 0x80, 0xBF) : 0;
    }
    /* ASCII in blocks, then to the first high bit (text with short ASCII
     * runs between characters would otherwise go byte by byte). */
    i += ascii_run(p + i, n - i);
    if (i == n) {
      v->state = 0;
      return 0;
    }
    st = lead_state(p[i++]);
    if (st == ST_FAIL)
      goto fail;
    size_t need = ST_NEED(st);
    if (n - i >= need) {
      if (p[i] < ST_LO(st) || p[i] > ST_HI(st))
        goto fail;
      if (need >= 2 && (p[i + 1] & 0xC0) != 0x80)
        goto fail;
      if (need == 3 && (p[i + 2] & 0xC0) != 0x80)
        goto fail;
      i += need;
      st = 0;
    }
  }
fail:
  v->state = ST_FAIL;
  return -1;
}

bool ws_utf8_valid(const uint8_t *p, size_t n) {
  size_t i = ascii_run(p, n); /* most text is ASCII: no state needed */
  if (i == n)
    return true;
  ws_utf8 v;
  ws_utf8_init(&v);
  return ws_utf8_feed(&v, p + i, n - i) == 0 && ws_utf8_complete(&v);
}
