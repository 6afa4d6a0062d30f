/*
 * fuzz_deflate.h -- permessage-deflate options from two input bytes, and
 * the negotiation every deflate target starts with.
 *
 * Options byte a: bit 0 server_no_context_takeover, bit 1
 * client_no_context_takeover, bits 2-5 server_max_window_bits (0-7 = not
 * asked, else 8..15), bits 6-7 threshold 0, 1, 64 or 1024.  Byte b: bits
 * 0-3 client_max_window_bits (as above), bits 4-5 level -1, 0, 1 or 9,
 * bits 6-7 mem_level 0 (default), 1, 5 or 9.
 */
#ifndef MOONWS_FUZZ_DEFLATE_H
#define MOONWS_FUZZ_DEFLATE_H

#include "fuzz_common.h"
#include "ws_deflate.h"

static inline uint8_t fz_bits(unsigned v) { return v < 8 ? 0 : (uint8_t)v; }

static inline void fz_deflate_options(uint8_t a, uint8_t b,
                                      ws_deflate_options *o) {
  static const size_t thresholds[4] = {0, 1, 64, 1024};
  static const int levels[4] = {-1, 0, 1, 9};
  static const int mem_levels[4] = {0, 1, 5, 9};
  ws_deflate_options_init(o);
  o->server_no_context_takeover = a & 1;
  o->client_no_context_takeover = (a >> 1) & 1;
  o->server_max_window_bits = fz_bits((a >> 2) & 15);
  o->threshold = thresholds[a >> 6];
  o->client_max_window_bits = fz_bits(b & 15);
  o->level = levels[(b >> 4) & 3];
  o->mem_level = mem_levels[b >> 6];
  FZ_CHECK(ws_deflate_options_check(o) == NULL);
}

static inline bool fz_bits_ok(uint8_t b) {
  return b == 0 || (b >= 8 && b <= 15);
}

/* The window a side may use under agreed bits (absent = 15). */
static inline uint8_t fz_eff(uint8_t b) { return b ? b : 15; }

/* What agreed parameters must honour, from both sides' options: the
 * client's requests are granted (an absent client_max_window_bits lets the
 * client keep its own), the server's limits kept. */
static inline void fz_check_agreed(const ws_deflate_params *p,
                                   const ws_deflate_options *co,
                                   const ws_deflate_options *so) {
  FZ_CHECK(fz_bits_ok(p->server_max_window_bits));
  FZ_CHECK(fz_bits_ok(p->client_max_window_bits));
  if (co) {
    if (co->server_no_context_takeover)
      FZ_CHECK(p->server_no_context_takeover);
    if (co->server_max_window_bits)
      FZ_CHECK(p->server_max_window_bits &&
               p->server_max_window_bits <= co->server_max_window_bits);
    if (co->client_max_window_bits)
      FZ_CHECK(p->client_max_window_bits <= co->client_max_window_bits);
  }
  if (so) {
    if (so->server_no_context_takeover)
      FZ_CHECK(p->server_no_context_takeover);
    if (so->client_no_context_takeover)
      FZ_CHECK(p->client_no_context_takeover);
    if (so->server_max_window_bits)
      FZ_CHECK(fz_eff(p->server_max_window_bits) <= so->server_max_window_bits);
    if (so->client_max_window_bits)
      FZ_CHECK(fz_eff(p->client_max_window_bits) <= so->client_max_window_bits);
  }
}

/* Offer -> accept -> check, as the handshake does: must agree, with the
 * same parameters on both sides, written as ws_deflate_format writes them. */
static inline void fz_negotiate(const ws_deflate_options *co,
                                const ws_deflate_options *so,
                                ws_deflate_params *cp, ws_deflate_params *sp) {
  char offer[WS_DEFLATE_HEADER_MAX], answer[WS_DEFLATE_HEADER_MAX];
  char again[WS_DEFLATE_HEADER_MAX];
  const char *msg = "unset";
  memset(offer, 0x55, sizeof offer);
  memset(answer, 0x55, sizeof answer);
  int n = ws_deflate_offer(co, offer, sizeof offer);
  FZ_CHECK(n > 0 && (size_t)n < sizeof offer && strlen(offer) == (size_t)n);
  int r = ws_deflate_accept(offer, (size_t)n, so, sp, answer, sizeof answer);
  FZ_CHECK(so->enabled ? r == 1 : r == 0);
  if (r != 1) {
    FZ_CHECK(answer[0] == '\0');
    return;
  }
  FZ_CHECK(strlen(answer) < sizeof answer);
  FZ_CHECK(ws_deflate_check_response(answer, strlen(answer), offer, (size_t)n,
                                     cp, &msg) == 1);
  FZ_CHECK(msg == NULL);
  FZ_CHECK(memcmp(cp, sp, sizeof *cp) == 0);
  FZ_CHECK(ws_deflate_format(sp, again, sizeof again) == (int)strlen(answer));
  FZ_CHECK(strcmp(again, answer) == 0);
  fz_check_agreed(sp, co, so);
  /* ws_deflate_accept never raises a window the client limited. */
  if (co->client_max_window_bits)
    FZ_CHECK(fz_eff(sp->client_max_window_bits) <= co->client_max_window_bits);
}

#endif
