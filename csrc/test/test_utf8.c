/* test_utf8.c -- ws_utf8 differential against a reference written from
 * RFC 3629's definition (code point arithmetic, not byte tables): every 1-,
 * 2- and 3-byte string, 4-byte strings over the interesting byte values and
 * at random, random mixed strings; whole, split in two at every point and
 * one byte at a time; and the position of the first rejected byte. */
#include "test_harness.h"
#include "ws_utf8.h"

#include <stdint.h>

/* ---- reference ---------------------------------------------------------- */

/* Sequence length announced by a lead byte (RFC 3629 section 3 bit
 * patterns), 0 for a byte that cannot lead (10xxxxxx, 11111xxx). */
static int ref_seq_len(uint8_t b) {
  if (b < 0x80)
    return 1;
  if ((b & 0xE0) == 0xC0)
    return 2;
  if ((b & 0xF0) == 0xE0)
    return 3;
  if ((b & 0xF8) == 0xF0)
    return 4;
  return 0;
}

/* Can the first k bytes of an L-byte sequence t still be completed into a
 * valid scalar value?  The completions cover the code points [lo, hi]; the
 * sequence is valid for cp in [min_L, max_L] except surrogates. */
static int ref_viable(const uint8_t *t, int k, int L) {
  static const uint32_t lead_bits[5] = {0, 0x7F, 0x1F, 0x0F, 0x07};
  static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
  static const uint32_t max_cp[5] = {0, 0x7F, 0x7FF, 0xFFFF, 0x10FFFF};
  uint32_t lo = t[0] & lead_bits[L], hi;
  for (int i = 1; i < k; i++) {
    if ((t[i] & 0xC0) != 0x80)
      return 0;
    lo = lo << 6 | (t[i] & 0x3F);
  }
  hi = lo;
  for (int i = k; i < L; i++) {
    lo = lo << 6;
    hi = hi << 6 | 0x3F;
  }
  if (lo < min_cp[L])
    lo = min_cp[L];
  if (hi > max_cp[L])
    hi = max_cp[L];
  if (lo > hi)
    return 0;
  return !(lo >= 0xD800 && hi <= 0xDFFF);
}

/* Index of the first byte at which s stops being a prefix of valid UTF-8,
 * or n.  *complete: whether s (if all viable) ends on a boundary. */
static size_t ref_fail_pos(const uint8_t *s, size_t n, int *complete) {
  size_t b = 0;
  *complete = 1;
  while (b < n) {
    int L = ref_seq_len(s[b]);
    if (L == 0)
      return b;
    size_t m = n - b < (size_t)L ? n - b : (size_t)L;
    for (size_t k = 1; k <= m; k++)
      if (!ref_viable(s + b, (int)k, L))
        return b + k - 1;
    if (m < (size_t)L) {
      *complete = 0;
      return n;
    }
    b += (size_t)L;
  }
  return n;
}

static int ref_valid(const uint8_t *s, size_t n) {
  int complete;
  return ref_fail_pos(s, n, &complete) == n && complete;
}

/* ---- helpers ------------------------------------------------------------ */

/* Feed one byte at a time: index of the byte whose feed returned -1, or n. */
static size_t fail_pos_bytewise(const uint8_t *s, size_t n, int *complete) {
  ws_utf8 v;
  ws_utf8_init(&v);
  for (size_t i = 0; i < n; i++)
    if (ws_utf8_feed(&v, s + i, 1) != 0) {
      *complete = ws_utf8_complete(&v);
      return i;
    }
  *complete = ws_utf8_complete(&v);
  return n;
}

static long mismatches;

/* Everything we can say about s: whole, byte by byte, and (when split)
 * every cut in two; a piece containing the failing byte must fail. */
static int check_string(const uint8_t *s, size_t n, int splits) {
  int rc, vc;
  size_t rpos = ref_fail_pos(s, n, &rc);
  int rvalid = rpos == n && rc;
  if (ws_utf8_valid(s, n) != rvalid)
    mismatches++;
  size_t vpos = fail_pos_bytewise(s, n, &vc);
  if (vpos != rpos || (vpos == n && vc != rc))
    mismatches++;
  if (vpos < n && vc) /* after -1 the state must not read as complete */
    mismatches++;
  if (!splits)
    return rvalid;
  for (size_t k = 0; k <= n; k++) {
    ws_utf8 v;
    ws_utf8_init(&v);
    int r1 = ws_utf8_feed(&v, s, k);
    if ((r1 != 0) != (rpos < k))
      mismatches++;
    int r2 = ws_utf8_feed(&v, s + k, n - k);
    int ok = r1 == 0 && r2 == 0 && ws_utf8_complete(&v);
    if (ok != rvalid)
      mismatches++;
    if (r1 != 0 && r2 != -1) /* failure is sticky */
      mismatches++;
  }
  return rvalid;
}

static uint32_t rng = 12345;
static uint32_t rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 17;
  rng ^= rng << 5;
  return rng;
}

/* ---- cases -------------------------------------------------------------- */

static void test_reference_sanity(void) {
  /* The reference itself must be right for it to mean anything. */
  int c;
  CHECK_EQ_INT(ref_fail_pos((const uint8_t *)"\xE0\x80", 2, &c), 1);
  CHECK_EQ_INT(ref_fail_pos((const uint8_t *)"\xED\xA0", 2, &c), 1);
  CHECK_EQ_INT(ref_fail_pos((const uint8_t *)"\xF4\x90", 2, &c), 1);
  CHECK_EQ_INT(ref_fail_pos((const uint8_t *)"\xC0", 1, &c), 0);
  CHECK_EQ_INT(ref_fail_pos((const uint8_t *)"\xF5", 1, &c), 0);
  CHECK_EQ_INT(ref_fail_pos((const uint8_t *)"\xE0", 1, &c), 1);
  CHECK_EQ_INT(c, 0);
  CHECK(ref_valid((const uint8_t *)"\xF4\x8F\xBF\xBF", 4));
  CHECK(ref_valid((const uint8_t *)"\xED\x9F\xBF", 3));
  CHECK(!ref_valid((const uint8_t *)"\xED\xA0\x80", 3));
  CHECK(ref_valid((const uint8_t *)"\xEE\x80\x80", 3));
}

static void test_known_vectors(void) {
  static const struct {
    const char *s;
    size_t n, fail_at; /* fail_at == n: never fails */
    int valid;
  } v[] = {
      {"", 0, 0, 1},
      {"hello", 5, 5, 1},
      {"\xC2\x80", 2, 2, 1},
      {"\xDF\xBF", 2, 2, 1},
      {"\xE0\xA0\x80", 3, 3, 1},
      {"\xEF\xBF\xBF", 3, 3, 1},
      {"\xF0\x90\x80\x80", 4, 4, 1},
      {"\xF4\x8F\xBF\xBF", 4, 4, 1},
      {"\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5", 11, 11, 1},
      {"\xE0\x80", 2, 1, 0}, /* overlong 3-byte fails at the 0x80 */
      {"\xED\xA0", 2, 1, 0}, /* surrogate fails at 0xA0 */
      {"\xF4\x90", 2, 1, 0}, /* > U+10FFFF fails at 0x90 */
      {"\xF0\x8F", 2, 1, 0}, /* overlong 4-byte */
      {"\xC0", 1, 0, 0},
      {"\xC1", 1, 0, 0},
      {"\xF5", 1, 0, 0},
      {"\xF8", 1, 0, 0},
      {"\xFF", 1, 0, 0},
      {"\x80", 1, 0, 0},
      {"a\xBF", 2, 1, 0},
      {"\xE2\x82", 2, 2, 0},     /* truncated: never fails, not complete */
      {"\xE2\x82\xAC", 3, 3, 1}, /* euro sign */
      {"\xE2\x82\x41", 3, 2, 0},
      {"\xF0\x9F\x98", 3, 3, 0},
      {"abcdefghijklmnop\xC3", 17, 17, 0},
      {"abcdefghijklmnopqrstuvwx\xFE", 25, 24, 0},
  };
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    const uint8_t *s = (const uint8_t *)v[i].s;
    int c;
    CHECK_EQ_INT(fail_pos_bytewise(s, v[i].n, &c), v[i].fail_at);
    CHECK_EQ_INT(ws_utf8_valid(s, v[i].n), v[i].valid);
    ws_utf8 u;
    ws_utf8_init(&u);
    CHECK_EQ_INT(ws_utf8_feed(&u, s, v[i].n), v[i].fail_at < v[i].n ? -1 : 0);
    CHECK_EQ_INT(ws_utf8_complete(&u), v[i].valid);
  }
}

static void test_sticky_and_reinit(void) {
  ws_utf8 v;
  ws_utf8_init(&v);
  CHECK_EQ_INT(ws_utf8_feed(&v, (const uint8_t *)"\xFF", 1), -1);
  CHECK_EQ_INT(ws_utf8_feed(&v, (const uint8_t *)"a", 1), -1);
  CHECK_EQ_INT(ws_utf8_feed(&v, (const uint8_t *)"", 0), -1);
  CHECK(!ws_utf8_complete(&v));
  ws_utf8_init(&v);
  CHECK_EQ_INT(ws_utf8_feed(&v, (const uint8_t *)"a", 1), 0);
  CHECK(ws_utf8_complete(&v));
  /* Empty feeds leave a pending sequence pending. */
  CHECK_EQ_INT(ws_utf8_feed(&v, (const uint8_t *)"\xF0", 1), 0);
  CHECK_EQ_INT(ws_utf8_feed(&v, NULL, 0), 0);
  CHECK(!ws_utf8_complete(&v));
  CHECK_EQ_INT(ws_utf8_feed(&v, (const uint8_t *)"\x9F\x98\x80", 3), 0);
  CHECK(ws_utf8_complete(&v));
}

static void test_exhaustive_1_2(void) {
  uint8_t s[2];
  mismatches = 0;
  for (unsigned a = 0; a < 256; a++) {
    s[0] = (uint8_t)a;
    check_string(s, 1, 1);
    for (unsigned b = 0; b < 256; b++) {
      s[1] = (uint8_t)b;
      check_string(s, 2, 1);
    }
  }
  CHECK_EQ_INT(mismatches, 0);
}

/* 16M strings: whole, byte by byte, and cut in two at every point. */
static void test_exhaustive_3(void) {
  uint8_t s[3];
  long valid = 0;
  mismatches = 0;
  for (uint32_t x = 0; x < (1u << 24); x++) {
    s[0] = (uint8_t)(x >> 16);
    s[1] = (uint8_t)(x >> 8);
    s[2] = (uint8_t)x;
    valid += check_string(s, 3, 1);
  }
  CHECK_EQ_INT(mismatches, 0);
  /* 3-byte strings that are valid: a sanity check of coverage, computed
   * independently: (1-byte)^3 + 2 x (1-byte)(2-byte) + (3-byte). */
  long one = 128, two = 30 * 64, three = 16 * 64 * 64 - 32 * 64 - 32 * 64;
  CHECK_EQ_INT(valid, one * one * one + 2 * one * two + three);
}

static const uint8_t interesting[] = {
    0x00, 0x41, 0x7F, 0x80, 0x81, 0x8F, 0x90, 0x9F, 0xA0, 0xBF,
    0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xE1, 0xEC, 0xED, 0xEE, 0xEF,
    0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xF7, 0xF8, 0xFE, 0xFF};

static void test_4_bytes(void) {
  const size_t ni = sizeof interesting;
  uint8_t s[4];
  mismatches = 0;
  for (size_t a = 0; a < ni; a++)
    for (size_t b = 0; b < ni; b++)
      for (size_t c = 0; c < ni; c++)
        for (size_t d = 0; d < ni; d++) {
          s[0] = interesting[a];
          s[1] = interesting[b];
          s[2] = interesting[c];
          s[3] = interesting[d];
          check_string(s, 4, 1);
        }
  /* Uniform random, and random with a valid 4-byte lead. */
  for (int i = 0; i < 400000; i++) {
    uint32_t r = rnd();
    memcpy(s, &r, 4);
    if (i & 1)
      s[0] = (uint8_t)(0xF0 | (s[0] & 0x07));
    check_string(s, 4, 1);
  }
  CHECK_EQ_INT(mismatches, 0);
}

/* Encode cp (RFC 3629 section 3). */
static size_t encode(uint32_t cp, uint8_t *o) {
  if (cp < 0x80) {
    o[0] = (uint8_t)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (uint8_t)(0xC0 | cp >> 6);
    o[1] = (uint8_t)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (uint8_t)(0xE0 | cp >> 12);
    o[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
    o[2] = (uint8_t)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (uint8_t)(0xF0 | cp >> 18);
  o[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3F));
  o[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
  o[3] = (uint8_t)(0x80 | (cp & 0x3F));
  return 4;
}

static uint32_t random_cp(void) {
  static const uint32_t edges[] = {0x00,     0x7F,    0x80,    0x7FF,   0x800,
                                   0xFFF,    0x1000,  0xD7FF,  0xE000,  0xFFFD,
                                   0xFFFF,   0x10000, 0x3FFFF, 0x40000, 0xFFFFF,
                                   0x100000, 0x10FFFF};
  uint32_t r = rnd() % 16;
  if (r < 8) /* mostly ASCII so the word paths run */
    return 0x20 + rnd() % 0x5F;
  if (r < 10)
    return edges[rnd() % (sizeof edges / sizeof edges[0])];
  if (r < 12)
    return 0x80 + rnd() % (0x800 - 0x80);
  if (r < 14) {
    uint32_t cp = 0x800 + rnd() % (0x10000 - 0x800);
    return cp >= 0xD800 && cp <= 0xDFFF ? cp + 0x800 : cp;
  }
  return 0x10000 + rnd() % (0x110000 - 0x10000);
}

/* Random valid strings, some corrupted (a byte changed, dropped or
 * inserted, or cut short), at every alignment of the buffer. */
static void test_mixed_random(void) {
  uint8_t buf[8 + 400], *s;
  long valid = 0, invalid = 0;
  mismatches = 0;
  for (int iter = 0; iter < 6000; iter++) {
    size_t want = iter % 3 == 0 ? rnd() % 300 : rnd() % 40;
    s = buf + iter % 8;
    size_t n = 0;
    while (n + 4 <= want)
      n += encode(random_cp(), s + n);
    switch (rnd() % 5) {
    case 0:
      if (n)
        s[rnd() % n] = (uint8_t)rnd();
      break;
    case 1:
      if (n) {
        size_t at = rnd() % n;
        memmove(s + at, s + at + 1, n - at - 1);
        n--;
      }
      break;
    case 2: {
      size_t at = n ? rnd() % n : 0;
      memmove(s + at + 1, s + at, n - at);
      s[at] = (uint8_t)(0x80 + rnd() % 0x80);
      n++;
      break;
    }
    case 3: {
      size_t cut = 1 + rnd() % 3;
      n = cut <= n ? n - cut : 0;
      break;
    }
    default:
      break;
    }
    if (check_string(s, n, 1))
      valid++;
    else
      invalid++;
  }
  CHECK_EQ_INT(mismatches, 0);
  CHECK(valid > 1000); /* both kinds were really exercised */
  CHECK(invalid > 1000);
}

/* Long ASCII runs with one other byte or sequence at every position and
 * alignment: where the block skips (64, 16, 8 bytes) stop matters. */
static void test_ascii_runs(void) {
  static const char *const odd[] = {"\x80", "\xFF", "\xC3\xA9", "\xE2\x82\xAC",
                                    "\xF0\x9F\x98\x80", "\xED\xA0\x80",
                                    "\xC3"};
  uint8_t buf[8 + 200];
  long valid = 0, invalid = 0;
  mismatches = 0;
  for (size_t n = 0; n <= 160; n++)
    for (size_t at = 0; at <= n; at++) {
      const char *o = odd[(n + at) % (sizeof odd / sizeof odd[0])];
      size_t olen = strlen(o);
      uint8_t *s = buf + (n + at) % 8;
      memset(s, 'a', n + olen);
      memcpy(s + at, o, olen);
      if (check_string(s, n + olen, n <= 80))
        valid++;
      else
        invalid++;
      if (check_string(s, at, 0)) /* all ASCII, up to it */
        valid++;
      else
        invalid++;
    }
  CHECK_EQ_INT(mismatches, 0);
  CHECK(valid > 1000);
  CHECK(invalid > 1000);
}

int main(void) {
  TEST_RUN(test_reference_sanity);
  TEST_RUN(test_known_vectors);
  TEST_RUN(test_sticky_and_reinit);
  TEST_RUN(test_exhaustive_1_2);
  TEST_RUN(test_exhaustive_3);
  TEST_RUN(test_4_bytes);
  TEST_RUN(test_mixed_random);
  TEST_RUN(test_ascii_runs);
  return TEST_REPORT();
}
