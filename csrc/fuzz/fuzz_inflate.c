/* fuzz_inflate.c -- permessage-deflate between two in-memory conns.
 *
 * Input: [client a b] [server a b] [mode] [extra] [body]; options bytes as
 * in fuzz_deflate.h, negotiated as the handshake does (must agree).
 * mode bit 0: the server sends (else the client); bit 1: round trip (else
 * raw); bits 2-3: the cut feeding step (1, 7, 61 or 1000 bytes); bits 4-7:
 * the receiver's max_payload (raw mode; a table from 1 to 64 KiB, 0 = the
 * default).
 *
 * Raw mode: the body scripts frames [ctl] [len] [payload x len]: ctl bits
 * 0-1 continuation, text, binary or ping; bit 2 FIN; bit 3 RSV1; bit 4 len
 * counts 8-byte units.  The frames (masked when the receiver is a server)
 * are fed whole to one receiver and cut to another, each with its own
 * inflater; the cut one also inflates within a budget per call (extra bits
 * 0-2: none, or 1 to 65536 bytes), so it stops and resumes anywhere.  Both must pass fz_feed's rules (messages within max_payload,
 * text valid), fail only with 1002/1007/1009, give the same events and
 * close codes (fz_log_equal: only an error's text may depend on where the
 * reads end), and keep conn->msg within max_payload + 1
 * bytes when every data message was compressed (inflating never grows past
 * the limit), else within twice max_payload (an uncompressed message's
 * buffer doubles).
 *
 * Round-trip mode: the body is sent as 1-4 messages (extra bits 0-1), text
 * when it is valid UTF-8; whole (ws_conn_send), or (extra bit 2) in
 * fragments of extra bits 4-7 * 29 + 1 bytes, with (bit 3) a ping after
 * the first when more follow.  The sender's frames must carry RSV1 as
 * documented; the receiver must give back exactly each message. */
#include "fuzz_deflate.h"

static const uint64_t payload_limits[16] = {
    0, 1, 2, 5, 16, 100, 125, 126, 255, 256, 1000, 1024, 4095, 4096, 20000,
    65536};

typedef struct side {
  ws_conn c;
  ws_deflate *d;
  uint32_t seed;
} side;

static void side_open(side *s, ws_role role, const ws_deflate_params *p,
                      const ws_deflate_options *o, uint64_t max_payload) {
  ws_conn_config cfg;
  memset(&cfg, 0, sizeof cfg);
  s->seed = 9;
  s->d = ws_deflate_new(role, p, o);
  FZ_CHECK(s->d != NULL);
  cfg.max_payload = max_payload;
  cfg.deflate = s->d;
  cfg.random = fz_random;
  cfg.random_ud = &s->seed;
  ws_conn_init(&s->c, role, &cfg);
}

static void side_close(side *s) {
  ws_conn_free(&s->c);
  ws_deflate_free(s->d);
}

static void run_init(fz_run *r, side *s, bool any_plain) {
  memset(r, 0, sizeof *r);
  r->c = &s->c;
  r->max_payload = s->c.cfg.max_payload;
  uint64_t m = r->max_payload;
  r->msg_cap_bound = any_plain ? (m > 128 ? 2 * m : 256) : m + 1;
}

/* Build the scripted frames of body into wire (sized by the caller). */
static size_t script(fz_in *body, bool masked, uint8_t *wire, bool *any_plain) {
  static const uint8_t ops[4] = {WS_OP_CONTINUATION, WS_OP_TEXT, WS_OP_BINARY,
                                 WS_OP_PING};
  size_t w = 0;
  unsigned k = 0;
  *any_plain = false;
  while (body->n) {
    uint8_t ctl = fz_byte(body);
    size_t len = fz_byte(body);
    if (ctl & 16)
      len *= 8;
    if (len > body->n)
      len = body->n;
    uint8_t op = ops[ctl & 3];
    bool rsv1 = ctl & 8;
    if ((op == WS_OP_TEXT || op == WS_OP_BINARY) && !rsv1)
      *any_plain = true;
    uint8_t key[4] = {(uint8_t)(0x11 * k), 0xa5, (uint8_t)k, 0x3c};
    k++;
    w += ws_frame_header_encode(wire + w, ctl & 4, rsv1 ? WS_RSV1 : 0, op,
                                masked ? key : NULL, len);
    for (size_t i = 0; i < len; i++)
      wire[w + i] = (uint8_t)(body->p[i] ^ (masked ? key[i & 3] : 0));
    w += len;
    body->p += len;
    body->n -= len;
  }
  return w;
}

static const size_t budgets[8] = {0, 1, 2, 3, 61, 1000, 4096, 65536};

static void raw(ws_role rx, const ws_deflate_params *p,
                const ws_deflate_options *o, uint64_t max_payload,
                size_t step, size_t budget, fz_in body) {
  /* Every 2 input bytes make at most a 14-byte header. */
  uint8_t *wire = fz_alloc(body.n * 8 + 16);
  bool any_plain;
  size_t w = script(&body, rx == WS_ROLE_SERVER, wire, &any_plain);
  side a, b;
  side_open(&a, rx, p, o, max_payload);
  side_open(&b, rx, p, o, max_payload);
  fz_run ra, rb;
  run_init(&ra, &a, any_plain);
  run_init(&rb, &b, any_plain);
  rb.budget = budget;
  fz_feed_copy(&ra, wire, w);
  for (size_t at = 0; at < w; at += step)
    fz_feed_copy(&rb, wire + at, w - at < step ? w - at : step);
  if (!fz_log_equal(&ra.log, &rb.log, false)) {
    fz_log_dump("whole", &ra.log);
    fz_log_dump("cut", &rb.log);
    FZ_CHECK(!"whole and cut feeding gave different events");
  }
  for (size_t i = 0; i < ra.log.n; i++)
    if (ra.log.ev[i].type == WS_EV_ERROR)
      FZ_CHECK(ra.log.ev[i].code != 1011);
  fz_check_out_agrees(&ra, false);
  fz_log_free(&ra.log);
  fz_log_free(&rb.log);
  side_close(&a);
  side_close(&b);
  free(wire);
}

/* The frames on out: each well-formed, masked iff from a client; a data
 * message's first frame has RSV1 iff compressed, continuations never. */
static void check_sent(const ws_buf *out, bool client, bool compressed,
                       uint8_t op) {
  const uint8_t *q = ws_buf_data(out);
  size_t n = ws_buf_len(out), pos = 0;
  bool first = true;
  while (pos < n) {
    ws_frame_header h;
    int hs = ws_frame_header_decode(q + pos, n - pos, &h);
    FZ_CHECK(hs >= 2 && h.payload_len <= n - pos - (size_t)hs);
    FZ_CHECK(h.masked == client);
    if (h.opcode == WS_OP_PING) {
      FZ_CHECK(h.rsv == 0 && h.fin);
    } else {
      FZ_CHECK(h.opcode == (first ? op : WS_OP_CONTINUATION));
      FZ_CHECK(h.rsv == (first && compressed ? WS_RSV1 : 0));
      first = false;
    }
    pos += (size_t)hs + (size_t)h.payload_len;
  }
  FZ_CHECK(!first);
}

static void round_trip(ws_role tx, const ws_deflate_params *cp,
                       const ws_deflate_params *sp,
                       const ws_deflate_options *co,
                       const ws_deflate_options *so, size_t step,
                       uint8_t extra, fz_in body) {
  side s, r;
  bool client_sends = tx == WS_ROLE_CLIENT;
  side_open(&s, tx, client_sends ? cp : sp, client_sends ? co : so, 0);
  side_open(&r, client_sends ? WS_ROLE_SERVER : WS_ROLE_CLIENT,
            client_sends ? sp : cp, client_sends ? so : co, 0);
  const ws_deflate_options *to = client_sends ? co : so;
  size_t nmsg = 1 + (extra & 3);
  bool fragmented = extra & 4, ping = extra & 8;
  size_t frag = (size_t)(extra >> 4) * 29 + 1;
  size_t each = body.n / nmsg;
  for (size_t m = 0; m < nmsg; m++) {
    const uint8_t *msg = body.p + m * each;
    size_t n = m + 1 == nmsg ? body.n - m * each : each;
    uint8_t op = ref_utf8_valid(msg, n) ? WS_OP_TEXT : WS_OP_BINARY;
    bool compressed, pinged = false;
    if (!fragmented) {
      compressed = n > 0 && n >= to->threshold;
      FZ_CHECK(ws_conn_send(&s.c, op, msg, n) == WS_E_NONE);
    } else {
      compressed = true;
      size_t at = 0;
      do {
        size_t k = n - at < frag ? n - at : frag;
        FZ_CHECK(ws_conn_send_fragment(&s.c, op, msg + at, k, at + k == n) ==
                 WS_E_NONE);
        if (at == 0 && ping && k < n) { /* between fragments */
          FZ_CHECK(ws_conn_send(&s.c, WS_OP_PING, "p", 1) == WS_E_NONE);
          pinged = true;
        }
        at += k;
      } while (at < n);
    }
    check_sent(&s.c.out, client_sends, compressed, op);
    fz_run rr;
    run_init(&rr, &r, true);
    size_t w = ws_buf_len(&s.c.out);
    const uint8_t *q = ws_buf_data(&s.c.out);
    for (size_t at = 0; at < w; at += step)
      fz_feed_copy(&rr, q + at, w - at < step ? w - at : step);
    ws_conn_out_consume(&s.c, w);
    size_t want = pinged ? 2 : 1;
    FZ_CHECK(rr.log.n == want);
    if (want == 2)
      FZ_CHECK(rr.log.ev[0].type == WS_EV_PING && rr.log.ev[0].len == 1);
    const fz_event *e = &rr.log.ev[want - 1];
    FZ_CHECK(e->type == (op == WS_OP_TEXT ? WS_EV_TEXT : WS_EV_BINARY));
    FZ_CHECK(e->len == n && (n == 0 || memcmp(e->data, msg, n) == 0));
    fz_log_free(&rr.log);
    ws_conn_out_consume(&r.c, ws_buf_len(&r.c.out)); /* the pong */
  }
  side_close(&s);
  side_close(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_in in = {data, size};
  static const size_t steps[4] = {1, 7, 61, 1000};
  ws_deflate_options co, so;
  uint8_t ca = fz_byte(&in), cb = fz_byte(&in);
  uint8_t sa = fz_byte(&in), sb = fz_byte(&in);
  fz_deflate_options(ca, cb, &co);
  fz_deflate_options(sa, sb, &so);
  uint8_t mode = fz_byte(&in), extra = fz_byte(&in);
  ws_deflate_params cp, sp;
  fz_negotiate(&co, &so, &cp, &sp);
  ws_role tx = mode & 1 ? WS_ROLE_SERVER : WS_ROLE_CLIENT;
  size_t step = steps[(mode >> 2) & 3];
  if (mode & 2) {
    round_trip(tx, &cp, &sp, &co, &so, step, extra, in);
  } else {
    ws_role rx = tx == WS_ROLE_CLIENT ? WS_ROLE_SERVER : WS_ROLE_CLIENT;
    raw(rx, rx == WS_ROLE_SERVER ? &sp : &cp, rx == WS_ROLE_SERVER ? &so : &co,
        payload_limits[mode >> 4], step, budgets[extra & 7], in);
  }
  return 0;
}
