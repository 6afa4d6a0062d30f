/* fuzz_utf8.c -- ws_utf8 against the reference decoder of fuzz_common.h.
 *
 * Input: [ncuts] [cut x ncuts] [text].  ncuts (low 4 bits) cuts the text
 * into pieces of those lengths (then the rest; 0 = byte by byte), each fed
 * from its own allocation at an offset (bits 4-6 of the first byte) so the
 * word-at-a-time paths run at every alignment.  Whole-buffer and
 * incremental verdicts must equal the reference; the incremental one must
 * fail in the piece holding the first invalid byte (not before, not
 * after), stay failed, and report "complete" after a piece exactly when
 * the reference finds a character boundary there. */
#include "fuzz_common.h"
#include "ws_utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_in in = {data, size};
  uint8_t first = fz_byte(&in);
  size_t ncuts = first & 0x0F, align = (first >> 4) & 7;
  uint8_t cuts[16];
  for (size_t i = 0; i < ncuts; i++)
    cuts[i] = fz_byte(&in);
  const uint8_t *p = in.p;
  size_t n = in.n, bad = 0;
  bool *boundary = fz_alloc(n + 1);
  int ref = ref_utf8(p, n, &bad, boundary);

  FZ_CHECK(ws_utf8_valid(p, n) == (ref == REF_UTF8_VALID));
  ws_utf8 v;
  ws_utf8_init(&v);
  int r = ws_utf8_feed(&v, p, n);
  FZ_CHECK((r == -1) == (ref == REF_UTF8_INVALID));
  if (r == 0)
    FZ_CHECK(ws_utf8_complete(&v) == (ref == REF_UTF8_VALID));

  ws_utf8_init(&v);
  bool failed = false;
  size_t at = 0, piece = 0;
  do {
    size_t k = ncuts == 0       ? (n - at ? 1 : 0)
               : piece < ncuts ? (cuts[piece] < n - at ? cuts[piece] : n - at)
                               : n - at;
    uint8_t *buf = fz_alloc(align + k);
    if (k)
      memcpy(buf + align, p + at, k);
    r = ws_utf8_feed(&v, buf + align, k);
    free(buf);
    size_t end = at + k;
    bool holds_bad = ref == REF_UTF8_INVALID && bad < end;
    if (failed) {
      FZ_CHECK(r == -1); /* sticky */
    } else if (holds_bad) {
      FZ_CHECK(r == -1); /* fails no later than the bad byte's piece */
      failed = true;
    } else {
      FZ_CHECK(r == 0); /* and never before it */
      FZ_CHECK(ws_utf8_complete(&v) == boundary[end]);
    }
    at = end;
    piece++;
  } while (at < n);
  FZ_CHECK(failed == (ref == REF_UTF8_INVALID));
  if (!failed)
    FZ_CHECK(ws_utf8_complete(&v) == (ref == REF_UTF8_VALID));
  free(boundary);
  return 0;
}
