/* fuzz_close.c -- close frame payloads against an independent judgement.
 *
 * Input: [mode] [payload].  mode bit 0: the conn is a client (the frame
 * comes unmasked) rather than a server (masked); bit 1: a text fragment
 * that the close cuts comes first; bits 2-7: the frame is fed in two pieces
 * cut there (0 = whole).  The payload becomes one close frame (any length:
 * over 125 is a protocol error too).  Expected, per RFC 6455 5.5 and 7.4:
 * empty -> CLOSE 1005; 1 byte, > 125 bytes or a code not valid on the wire
 * -> ERROR 1002; a reason that is not UTF-8 -> ERROR 1007; else CLOSE with
 * the code and the reason bytes.  The conn must give exactly that one
 * event, queue the matching close frame (the echo of code and reason, or
 * ours), and
 * ignore what follows. */
#include "fuzz_common.h"

static const uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_in in = {data, size};
  uint8_t mode = fz_byte(&in);
  ws_role role = mode & 1 ? WS_ROLE_CLIENT : WS_ROLE_SERVER;
  bool fragment = mode & 2;
  size_t cut = mode >> 2;
  const uint8_t *p = in.p;
  size_t n = in.n < 4096 ? in.n : 4096; /* a 16-bit length is enough */
  bool masked = role == WS_ROLE_SERVER;

  /* The expected outcome. */
  ws_event_type want = WS_EV_CLOSE;
  unsigned want_code = WS_CLOSE_NO_STATUS_RECEIVED;
  if (n > WS_CONTROL_MAX || n == 1) {
    want = WS_EV_ERROR, want_code = 1002;
  } else if (n >= 2) {
    want_code = (unsigned)p[0] << 8 | p[1];
    if (!ref_close_code_ok(want_code))
      want = WS_EV_ERROR, want_code = 1002;
    else if (!ref_utf8_valid(p + 2, n - 2))
      want = WS_EV_ERROR, want_code = 1007;
  }

  /* The bytes: [text fragment "ab"] close frame, built by hand. */
  size_t cap = 8 + 8 + n; /* fragment, close header, payload */
  uint8_t *wire = fz_alloc(cap);
  size_t w = 0;
  if (fragment) {
    wire[w++] = 0x01; /* TEXT, FIN = 0 */
    wire[w++] = (uint8_t)((masked ? 0x80 : 0) | 2);
    if (masked) {
      memcpy(wire + w, mask, 4);
      w += 4;
    }
    for (size_t i = 0; i < 2; i++)
      wire[w++] = (uint8_t)("ab"[i] ^ (masked ? mask[i] : 0));
  }
  wire[w++] = 0x88;
  uint8_t mbit = masked ? 0x80 : 0;
  if (n < 126) {
    wire[w++] = (uint8_t)(mbit | n);
  } else {
    wire[w++] = mbit | 126;
    wire[w++] = (uint8_t)(n >> 8);
    wire[w++] = (uint8_t)n;
  }
  if (masked) {
    memcpy(wire + w, mask, 4);
    w += 4;
  }
  for (size_t i = 0; i < n; i++)
    wire[w++] = (uint8_t)(p[i] ^ (masked ? mask[i & 3] : 0));

  ws_conn c;
  ws_conn_config cfg;
  uint32_t seed = 3;
  memset(&cfg, 0, sizeof cfg);
  cfg.random = fz_random;
  cfg.random_ud = &seed;
  ws_conn_init(&c, role, &cfg);
  fz_run r;
  memset(&r, 0, sizeof r);
  r.c = &c;
  r.max_payload = c.cfg.max_payload;
  r.msg_cap_bound = 256;
  if (cut > w)
    cut = w;
  fz_feed_copy(&r, wire, cut);
  fz_feed_copy(&r, wire + cut, w - cut);

  FZ_CHECK(r.log.n == 1);
  const fz_event *e = &r.log.ev[0];
  FZ_CHECK(e->type == want && e->code == want_code);
  if (want == WS_EV_CLOSE)
    FZ_CHECK(e->len == (n ? n - 2 : 0) &&
             (e->len == 0 || memcmp(e->data, p + 2, e->len) == 0));
  fz_check_out_agrees(&r, false);
  FZ_CHECK(c.close_sent && (want == WS_EV_CLOSE ? c.close_received : c.failed));
  /* An echo carries the code and the reason, as they came. */
  if (want == WS_EV_CLOSE) {
    size_t hs = ws_frame_header_size(!masked, n);
    FZ_CHECK(ws_buf_len(&c.out) == hs + n);
    if (masked && n) /* a server (masked input) echoes unmasked: compare */
      FZ_CHECK(memcmp(ws_buf_data(&c.out) + hs, p, n) == 0);
  }

  size_t before = ws_buf_len(&c.out);
  fz_feed_copy(&r, wire, w); /* ignored now */
  FZ_CHECK(r.log.n == 1 && ws_buf_len(&c.out) == before);

  fz_log_free(&r.log);
  ws_conn_free(&c);
  free(wire);
  return 0;
}
