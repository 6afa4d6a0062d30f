/*
 * fuzz_http.h -- checks shared by fuzz_http_request and fuzz_http_response:
 * where parsed pieces may point, what a header field may hold, and the
 * prefix rule of a one-pass parser (every proper prefix of an accepted head
 * is incomplete, and the head alone parses to the same length).
 */
#ifndef MOONWS_FUZZ_HTTP_H
#define MOONWS_FUZZ_HTTP_H

#include "fuzz_common.h"
#include "ws_http.h"

/* Is p[0, n) inside buf[0, len)? */
static inline bool fz_inside(const char *p, size_t n, const char *buf,
                             size_t len) {
  return p && p >= buf && n <= len && (size_t)(p - buf) <= len - n;
}

/* A parsed field: a token name, then a value with no CR, LF, NUL or other
 * control byte but tab, trimmed of spaces and tabs, both inside buf. */
static inline void fz_check_fields(const ws_http_header *h, size_t num,
                                   const char *buf, size_t len) {
  FZ_CHECK(num <= WS_HTTP_MAX_HEADERS);
  for (size_t i = 0; i < num; i++) {
    FZ_CHECK(fz_inside(h[i].name, h[i].name_len, buf, len));
    FZ_CHECK(h[i].name_len > 0);
    FZ_CHECK(ws_http_is_token(h[i].name, h[i].name_len));
    FZ_CHECK(h[i].value != NULL);
    FZ_CHECK(fz_inside(h[i].value, h[i].value_len, buf, len));
    FZ_CHECK(h[i].value > h[i].name + h[i].name_len); /* after the colon */
    FZ_CHECK(h[i].name[h[i].name_len] == ':');
    for (size_t k = 0; k < h[i].value_len; k++) {
      unsigned char c = (unsigned char)h[i].value[k];
      FZ_CHECK(c == '\t' || (c >= 0x20 && c != 0x7f));
    }
    if (h[i].value_len) {
      char a = h[i].value[0], z = h[i].value[h[i].value_len - 1];
      FZ_CHECK(a != ' ' && a != '\t' && z != ' ' && z != '\t');
    }
  }
}

/* The prefix lengths worth trying for a head of r bytes: all of them for a
 * short head, else the first 64, the last 64 and a stride between. */
static inline size_t fz_next_prefix(size_t k, size_t r) {
  if (r <= 512 || k < 64 || k + 64 >= r)
    return k + 1;
  size_t next = k + r / 64 + 1;
  return next + 64 < r ? next : r - 64;
}

#endif
