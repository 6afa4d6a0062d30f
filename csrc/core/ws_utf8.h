/*
 * ws_utf8.h -- incremental UTF-8 validation (RFC 3629, Unicode table 3-7).
 *
 * Text messages and close reasons must be valid UTF-8 (RFC 6455 8.1).  The
 * validator is fed a message piece by piece (frames, reads) and fails on the
 * first byte that no valid continuation could follow: overlong forms,
 * surrogates (U+D800..U+DFFF), code points above U+10FFFF, stray
 * continuation bytes, and bytes C0, C1, F5..FF.  A message may only end
 * where ws_utf8_complete() is true (no truncated sequence).
 *
 * Hot path: mostly-ASCII text is checked a machine word at a time.
 */
#ifndef MOONWS_WS_UTF8_H
#define MOONWS_WS_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ws_utf8 {
  uint32_t state; /* 0: at a character boundary; else inside a sequence */
} ws_utf8;

static inline void ws_utf8_init(ws_utf8 *v) { v->state = 0; }

/* Validate the next n bytes.  Returns 0 when everything so far is valid
 * (possibly ending inside a sequence), -1 at the first invalid byte; after
 * -1 the state is invalid until ws_utf8_init. */
int ws_utf8_feed(ws_utf8 *v, const uint8_t *p, size_t n);

/* True when the bytes fed so far end on a character boundary. */
static inline bool ws_utf8_complete(const ws_utf8 *v) { return v->state == 0; }

/* Whole-buffer check: valid and complete. */
bool ws_utf8_valid(const uint8_t *p, size_t n);

#endif
