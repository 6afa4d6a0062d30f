/*
 * fuzz_frame.h -- the body of fuzz_frame_server and fuzz_frame_client:
 * arbitrary bytes as the frames a peer sends, fed to a ws_conn of one role.
 *
 * Input: [max_payload] [max_frame] [flags] [ncuts] [cut x ncuts] [stream]
 *   max_payload, max_frame: 0 = the default (64 MiB), else 4k - 3 (1..1017)
 *   flags: bits 4-6 rsv_allowed; bit 0 we send a close frame first
 *   ncuts (low 4 bits): the stream is also fed in pieces of these lengths
 *   (then the rest whole); 0 feeds it byte by byte.
 * The stream is fed twice, to two conns: whole, and cut.  Both runs must
 * pass every per-event rule (fz_feed), give the same events and queue the
 * same bytes (the mask source is repeatable), and their out must decode as
 * the answers those events call for.
 */
#ifndef MOONWS_FUZZ_FRAME_H
#define MOONWS_FUZZ_FRAME_H

#include "fuzz_common.h"

static inline void frame_run(fz_run *r, ws_conn *c, ws_role role,
                             const ws_conn_config *cfg, uint32_t *seed,
                             bool close_first) {
  memset(r, 0, sizeof *r);
  ws_conn_config k = *cfg;
  k.random_ud = seed;
  ws_conn_init(c, role, &k);
  r->c = c;
  r->max_payload = c->cfg.max_payload;
  /* msg grows by doubling from 256 while a message is assembled, and a
   * message is refused from its header before passing max_payload. */
  r->msg_cap_bound = c->cfg.max_payload > 128 ? 2 * c->cfg.max_payload : 256;
  if (close_first) {
    FZ_CHECK(ws_conn_close(c, 1000, "bye", 3) == WS_E_NONE);
    ws_conn_out_consume(c, ws_buf_len(&c->out));
  }
}

static inline int frame_fuzz(ws_role role, const uint8_t *data, size_t size) {
  fz_in in = {data, size};
  uint8_t b_payload = fz_byte(&in), b_frame = fz_byte(&in);
  uint8_t flags = fz_byte(&in), ncuts = fz_byte(&in) & 0x0F;
  uint8_t cuts[16];
  for (size_t i = 0; i < ncuts; i++)
    cuts[i] = fz_byte(&in);
  bool close_first = flags & 1;

  ws_conn_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.max_payload = b_payload ? (uint64_t)b_payload * 4 - 3 : 0;
  cfg.max_frame = b_frame ? (uint64_t)b_frame * 4 - 3 : 0;
  cfg.rsv_allowed = flags & (WS_RSV1 | WS_RSV2 | WS_RSV3);
  cfg.random = fz_random;

  ws_conn ca, cb;
  fz_run ra, rb;
  uint32_t seed_a = 1, seed_b = 1;
  frame_run(&ra, &ca, role, &cfg, &seed_a, close_first);
  frame_run(&rb, &cb, role, &cfg, &seed_b, close_first);

  fz_feed_copy(&ra, in.p, in.n);
  fz_feed_cut(&rb, in.p, in.n, cuts, ncuts);

  if (!fz_log_equal(&ra.log, &rb.log, true)) {
    fz_log_dump("whole", &ra.log);
    fz_log_dump("cut", &rb.log);
    FZ_CHECK(!"whole and cut feeding gave different events");
  }
  FZ_CHECK(ws_buf_len(&ca.out) == ws_buf_len(&cb.out));
  FZ_CHECK(ws_buf_len(&ca.out) == 0 ||
           memcmp(ws_buf_data(&ca.out), ws_buf_data(&cb.out),
                  ws_buf_len(&ca.out)) == 0);
  fz_check_out_agrees(&ra, close_first);
  FZ_CHECK(ca.failed == cb.failed && ca.close_received == cb.close_received);

  /* Once failed or closed, the conn ignores everything. */
  if (ra.done) {
    static const uint8_t more[] = {0x89, 0x80, 1, 2, 3, 4, 0x89, 0x00};
    size_t before = ws_buf_len(&ca.out);
    fz_feed_copy(&ra, more, sizeof more);
    FZ_CHECK(ws_buf_len(&ca.out) == before);
  }

  fz_log_free(&ra.log);
  fz_log_free(&rb.log);
  ws_conn_free(&ca);
  ws_conn_free(&cb);
  return 0;
}

#endif
