/* test_conn.c -- the connection state machine: client <-> server round
 * trips, the same bytes cut at every offset and fed one byte at a time,
 * fragmentation with control frames between, every receive rule with its
 * close code, error name, message and the close frame it queues, automatic
 * replies, limits before allocation, and byte-exact client frames from a
 * deterministic mask source.  Input pieces are separate allocations so
 * ASan/valgrind catch any pointer kept into a caller's buffer. */
#include "test_harness.h"
#include "ws_conn.h"
#include "ws_mask.h"
#include "ws_utf8.h"

#include <stdint.h>
#include <stdlib.h>

/* ---- deterministic mask source ------------------------------------------ */

static int det_random(void *ud, uint8_t *out, size_t n) {
  uint32_t *s = ud;
  for (size_t i = 0; i < n; i++) {
    *s = *s * 1664525u + 1013904223u;
    out[i] = (uint8_t)(*s >> 24);
  }
  return 0;
}

static int fail_random(void *ud, uint8_t *out, size_t n) { return -1; }

static void next_key(uint32_t *seed, uint8_t key[4]) {
  det_random(seed, key, 4);
}

/* ---- recording events --------------------------------------------------- */

typedef struct rec {
  ws_event_type type;
  uint16_t code;
  enum ws_error error;
  size_t len;
  uint8_t *data;
  int inplace; /* data pointed into the buffer given to ws_conn_recv */
} rec;

#define MAX_EVENTS 64
typedef struct evlist {
  rec ev[MAX_EVENTS];
  int n;
  int overflow;
} evlist;

static void evlist_free(evlist *l) {
  for (int i = 0; i < l->n; i++)
    free(l->ev[i].data);
  l->n = 0;
}

/* Feed data[0, len) until all is consumed, recording every event. */
static void feed(ws_conn *c, uint8_t *data, size_t len, evlist *l) {
  size_t pos = 0;
  for (;;) {
    ws_event ev;
    size_t used = ws_conn_recv(c, data + pos, len - pos, &ev);
    CHECK(used <= len - pos);
    if (used > len - pos)
      return;
    pos += used;
    if (ev.type == WS_EV_NONE) {
      CHECK_EQ_INT(pos, len); /* NONE: everything consumed */
      CHECK(ev.data == NULL && ev.len == 0 && ev.code == 0 && ev.error == 0);
      return;
    }
    if (l->n == MAX_EVENTS) {
      l->overflow = 1;
      return;
    }
    rec *r = &l->ev[l->n++];
    r->type = ev.type;
    r->code = ev.code;
    r->error = ev.error;
    r->len = ev.len;
    r->data = malloc(ev.len ? ev.len : 1);
    if (ev.len)
      memcpy(r->data, ev.data, ev.len);
    r->inplace = (uintptr_t)ev.data >= (uintptr_t)data &&
                 (uintptr_t)ev.data <= (uintptr_t)(data + len);
    if (pos == len)
      return;
  }
}

/* Feed a copy of bytes as separate allocations cut at the given offsets. */
static void feed_cuts(ws_conn *c, const uint8_t *bytes, size_t n,
                      const size_t *cuts, int ncuts, evlist *l) {
  size_t start = 0;
  for (int i = 0; i <= ncuts; i++) {
    size_t end = i < ncuts ? cuts[i] : n;
    uint8_t *piece = malloc(end - start ? end - start : 1);
    memcpy(piece, bytes + start, end - start);
    feed(c, piece, end - start, l);
    free(piece);
    start = end;
  }
}

static void feed_copy(ws_conn *c, const uint8_t *bytes, size_t n, evlist *l) {
  feed_cuts(c, bytes, n, NULL, 0, l);
}

static void feed_bytewise(ws_conn *c, const uint8_t *bytes, size_t n,
                          evlist *l) {
  for (size_t i = 0; i < n; i++) {
    uint8_t *b = malloc(1);
    *b = bytes[i];
    feed(c, b, 1, l);
    free(b);
  }
}

typedef struct want_ev {
  ws_event_type type;
  const char *data;
  size_t len;
  uint16_t code;
  enum ws_error error;
} want_ev;

static int events_equal(const evlist *l, const want_ev *w, int n) {
  if (l->overflow || l->n != n)
    return 0;
  for (int i = 0; i < n; i++) {
    const rec *r = &l->ev[i];
    if (r->type != w[i].type || r->len != w[i].len || r->code != w[i].code ||
        r->error != w[i].error || memcmp(r->data, w[i].data, w[i].len) != 0)
      return 0;
  }
  return 1;
}

static void print_events(const evlist *l) {
  for (int i = 0; i < l->n; i++)
    fprintf(stderr, "  event %d: type %d code %u error %d len %zu '%.*s'\n", i,
            l->ev[i].type, l->ev[i].code, l->ev[i].error, l->ev[i].len,
            (int)(l->ev[i].len < 80 ? l->ev[i].len : 80),
            (const char *)l->ev[i].data);
}

#define CHECK_EVENTS(l, ...)                                                   \
  do {                                                                         \
    const want_ev w_[] = {__VA_ARGS__};                                        \
    int ok_ = events_equal((l), w_, (int)(sizeof w_ / sizeof w_[0]));          \
    CHECK(ok_);                                                                \
    if (!ok_)                                                                  \
      print_events(l);                                                         \
  } while (0)

#define EV(t, s)                                                               \
  { (t), (s), sizeof(s) - 1, 0, WS_E_NONE }
#define EV_CLOSE(code, s)                                                      \
  { WS_EV_CLOSE, (s), sizeof(s) - 1, (code), WS_E_NONE }
#define EV_ERR(...)                                                            \
  EV_ERR_(__VA_ARGS__) /* so P1002 can stand for code, err                     \
                        */
#define EV_ERR_(code, err, s)                                                  \
  { WS_EV_ERROR, (s), sizeof(s) - 1, (code), (err) }

/* out holds exactly these bytes (compared only when the length is right). */
#define CHECK_OUT(out, bytes, n)                                               \
  do {                                                                         \
    CHECK_EQ_INT(ws_buf_len(out), (n));                                        \
    if (ws_buf_len(out) == (size_t)(n))                                        \
      CHECK_MEM(ws_buf_data(out), (bytes), (n));                               \
  } while (0)

/* ---- building peer input and reading our output ------------------------- */

typedef struct bytes {
  uint8_t *d;
  size_t n, cap;
} bytes;

static void put(bytes *b, const void *p, size_t n) {
  if (b->n + n > b->cap) {
    b->cap = (b->n + n) * 2;
    b->d = realloc(b->d, b->cap);
  }
  if (n)
    memcpy(b->d + b->n, p, n);
  b->n += n;
}

static const uint8_t peer_key[4] = {0x9c, 0x01, 0x7e, 0xa5};

/* A frame as the peer would send it: masked (by a client) or not.  The
 * header is written by hand here, not by ws_frame, for lengths < 65536. */
static void put_frame(bytes *b, bool fin, uint8_t rsv, uint8_t op, bool masked,
                      const void *payload, size_t len) {
  uint8_t h[14];
  size_t hn = 0;
  h[hn++] = (uint8_t)((fin ? 0x80 : 0) | rsv | op);
  uint8_t m = masked ? 0x80 : 0;
  if (len < 126) {
    h[hn++] = (uint8_t)(m | len);
  } else if (len < 65536) {
    h[hn++] = m | 126;
    h[hn++] = (uint8_t)(len >> 8);
    h[hn++] = (uint8_t)len;
  } else {
    h[hn++] = m | 127;
    for (int i = 7; i >= 0; i--)
      h[hn++] = (uint8_t)((uint64_t)len >> (8 * i));
  }
  if (masked) {
    memcpy(h + hn, peer_key, 4);
    hn += 4;
  }
  put(b, h, hn);
  size_t at = b->n;
  put(b, payload, len);
  if (masked)
    for (size_t i = 0; i < len; i++)
      b->d[at + i] ^= peer_key[i % 4];
}

typedef struct oframe {
  uint8_t op, rsv;
  bool fin, masked;
  uint8_t key[4];
  size_t len;
  uint8_t payload[256]; /* first 256 bytes, unmasked */
} oframe;

/* Decode every frame on out (without consuming it); -1 if out does not end
 * exactly at a frame boundary. */
static int out_frames(const ws_buf *out, oframe *f, int max) {
  const uint8_t *p = out->base ? ws_buf_data(out) : NULL;
  size_t n = ws_buf_len(out), pos = 0;
  int k = 0;
  while (pos < n && k < max) {
    ws_frame_header h;
    int r = ws_frame_header_decode(p + pos, n - pos, &h);
    if (r < 0 || h.payload_len > n - pos - (size_t)r)
      return -1;
    pos += (size_t)r;
    f[k].op = h.opcode;
    f[k].rsv = h.rsv;
    f[k].fin = h.fin;
    f[k].masked = h.masked;
    memcpy(f[k].key, h.mask, 4);
    f[k].len = (size_t)h.payload_len;
    for (size_t i = 0; i < f[k].len && i < sizeof f[k].payload; i++)
      f[k].payload[i] = p[pos + i] ^ (h.masked ? h.mask[i % 4] : 0);
    pos += f[k].len;
    k++;
  }
  return pos == n ? k : -1;
}

static void check_close_frame(const oframe *f, unsigned code,
                              const char *reason, bool masked) {
  size_t rl = strlen(reason);
  CHECK_EQ_INT(f->op, WS_OP_CLOSE);
  CHECK(f->fin);
  CHECK_EQ_INT(f->masked, masked);
  CHECK_EQ_INT(f->len, 2 + rl);
  CHECK_EQ_INT(f->payload[0] << 8 | f->payload[1], code);
  CHECK_MEM(f->payload + 2, reason, rl);
}

static ws_conn_config cfg_seeded(uint32_t *seed) {
  ws_conn_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.random = det_random;
  cfg.random_ud = seed;
  return cfg;
}

/* Valid UTF-8 of exactly n bytes, mixing ASCII and 2- and 3-byte
 * characters. */
static void fill_text(uint8_t *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    size_t left = n - i, k = i % 7;
    if (k == 3 && left >= 3) {
      memcpy(p + i, "\xE2\x82\xAC", 3);
      i += 3;
    } else if (k == 5 && left >= 2) {
      memcpy(p + i, "\xC3\xA9", 2);
      i += 2;
    } else {
      p[i] = (uint8_t)('a' + i % 26);
      i++;
    }
  }
}

static void fill_binary(uint8_t *p, size_t n) {
  uint32_t s = (uint32_t)n;
  for (size_t i = 0; i < n; i++) {
    s = s * 1103515245u + 12345u;
    p[i] = (uint8_t)(s >> 16);
  }
}

/* ---- round trips -------------------------------------------------------- */

/* sender sends one message, receiver gets exactly it, whole (zero-copy),
 * in 4093-byte reads, and (for small sizes) one byte at a time. */
static void round_trip(ws_role from, size_t size, uint8_t op) {
  uint32_t seed = 42;
  ws_conn_config cfg = cfg_seeded(&seed);
  ws_conn snd;
  ws_conn_init(&snd, from, &cfg);
  uint8_t *msg = malloc(size ? size : 1);
  if (op == WS_OP_TEXT)
    fill_text(msg, size);
  else
    fill_binary(msg, size);
  CHECK(op != WS_OP_TEXT || ws_utf8_valid(msg, size));
  CHECK_EQ_INT(ws_conn_send(&snd, op, msg, size), WS_E_NONE);
  size_t wire = ws_buf_len(&snd.out);
  CHECK_EQ_INT(wire, size + ws_frame_header_size(from == WS_ROLE_CLIENT, size));
  const uint8_t *out = ws_buf_data(&snd.out);
  ws_event_type want_type = op == WS_OP_TEXT ? WS_EV_TEXT : WS_EV_BINARY;

  for (int mode = 0; mode < 3; mode++) {
    if (mode == 2 && size > 65536)
      break;
    ws_conn rcv;
    ws_conn_init(&rcv, from == WS_ROLE_CLIENT ? WS_ROLE_SERVER : WS_ROLE_CLIENT,
                 NULL);
    evlist l = {0};
    if (mode == 0)
      feed_copy(&rcv, out, wire, &l);
    else if (mode == 1) {
      size_t ncuts = wire / 4093;
      size_t *cuts = malloc((ncuts + 1) * sizeof *cuts);
      for (size_t i = 0; i < ncuts; i++)
        cuts[i] = (i + 1) * 4093;
      feed_cuts(&rcv, out, wire, cuts, (int)ncuts, &l);
      free(cuts);
    } else
      feed_bytewise(&rcv, out, wire, &l);
    CHECK_EQ_INT(l.n, 1);
    if (l.n == 1) {
      CHECK_EQ_INT(l.ev[0].type, want_type);
      CHECK_EQ_INT(l.ev[0].len, size);
      CHECK(memcmp(l.ev[0].data, msg, size) == 0);
      if (mode == 0) { /* whole in one buffer: returned in place */
        CHECK(l.ev[0].inplace);
        CHECK_EQ_INT(rcv.msg.cap, 0);
      }
    }
    CHECK_EQ_INT(ws_buf_len(&rcv.out), 0);
    CHECK(!rcv.failed);
    evlist_free(&l);
    ws_conn_free(&rcv);
  }
  free(msg);
  ws_conn_free(&snd);
}

static void test_round_trips(void) {
  static const size_t sizes[] = {0, 1, 125, 126, 65535, 65536, 16u << 20};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    round_trip(WS_ROLE_CLIENT, sizes[i], WS_OP_TEXT);
    round_trip(WS_ROLE_CLIENT, sizes[i], WS_OP_BINARY);
    round_trip(WS_ROLE_SERVER, sizes[i], WS_OP_TEXT);
    round_trip(WS_ROLE_SERVER, sizes[i], WS_OP_BINARY);
  }
}

/* ---- one stream cut everywhere ------------------------------------------ */

static void build_mixed_stream(bytes *b) {
  uint8_t bin[300];
  fill_binary(bin, sizeof bin);
  put_frame(b, true, 0, WS_OP_TEXT, true, "Hello", 5);
  put_frame(b, true, 0, WS_OP_BINARY, true, bin, sizeof bin);
  put_frame(b, true, 0, WS_OP_PING, true, "p", 1);
  put_frame(b, false, 0, WS_OP_TEXT, true, "h\xC3", 2); /* split character */
  put_frame(b, true, 0, WS_OP_PONG, true, "", 0);
  put_frame(b, false, 0, WS_OP_CONTINUATION, true, "", 0);
  put_frame(b, true, 0, WS_OP_CONTINUATION, true, "\xA9llo", 4);
  put_frame(b, true, 0, WS_OP_BINARY, true, "", 0);
  put_frame(b, true, 0, WS_OP_CLOSE, true,
            "\x03\xE8"
            "bye",
            5);
  put_frame(b, true, 0, WS_OP_TEXT, true, "ignored", 7); /* after close */
}

static void check_mixed(const evlist *l, ws_conn *c, const uint8_t *bin) {
  const want_ev w[7] = {EV(WS_EV_TEXT, "Hello"),
                        {WS_EV_BINARY, (const char *)bin, 300, 0, WS_E_NONE},
                        EV(WS_EV_PING, "p"),
                        EV(WS_EV_PONG, ""),
                        EV(WS_EV_TEXT, "h\xC3\xA9llo"),
                        EV(WS_EV_BINARY, ""),
                        EV_CLOSE(1000, "bye")};
  int ok = events_equal(l, w, 7);
  CHECK(ok);
  if (!ok)
    print_events(l);
  oframe f[4];
  CHECK_EQ_INT(out_frames(&c->out, f, 4), 2);
  CHECK_EQ_INT(f[0].op, WS_OP_PONG);
  CHECK_EQ_INT(f[0].len, 1);
  CHECK_EQ_INT(f[0].payload[0], 'p');
  check_close_frame(&f[1], 1000, "bye", false);
  CHECK(c->close_received && c->close_sent && !c->failed);
}

static void test_every_split(void) {
  bytes b = {0};
  build_mixed_stream(&b);
  uint8_t bin[300];
  fill_binary(bin, sizeof bin);
  for (size_t k = 0; k <= b.n; k++) {
    ws_conn c;
    ws_conn_init(&c, WS_ROLE_SERVER, NULL);
    evlist l = {0};
    feed_cuts(&c, b.d, b.n, &k, 1, &l);
    check_mixed(&l, &c, bin);
    evlist_free(&l);
    ws_conn_free(&c);
  }
  /* Two cuts: every pair within the first 40 bytes (headers, the split
   * character, the small frames). */
  for (size_t i = 0; i <= 40; i++)
    for (size_t j = i; j <= 40; j++) {
      size_t cuts[2] = {i, j};
      ws_conn c;
      ws_conn_init(&c, WS_ROLE_SERVER, NULL);
      evlist l = {0};
      feed_cuts(&c, b.d, b.n, cuts, 2, &l);
      check_mixed(&l, &c, bin);
      evlist_free(&l);
      ws_conn_free(&c);
    }
  ws_conn c;
  ws_conn_init(&c, WS_ROLE_SERVER, NULL);
  evlist l = {0};
  feed_bytewise(&c, b.d, b.n, &l);
  check_mixed(&l, &c, bin);
  evlist_free(&l);
  ws_conn_free(&c);
  free(b.d);
}

/* ---- fragmentation ------------------------------------------------------ */

static void test_fragmented_with_controls(void) {
  uint32_t seed = 7;
  ws_conn_config cfg = cfg_seeded(&seed);
  ws_conn cli, srv;
  ws_conn_init(&cli, WS_ROLE_CLIENT, &cfg);
  ws_conn_init(&srv, WS_ROLE_SERVER, NULL);
  CHECK_EQ_INT(ws_conn_send_fragment(&cli, WS_OP_TEXT, "Hel", 3, false),
               WS_E_NONE);
  CHECK_EQ_INT(ws_conn_send(&cli, WS_OP_PING, "ping!", 5), WS_E_NONE);
  CHECK_EQ_INT(ws_conn_send_fragment(&cli, WS_OP_BINARY, "lo \xE2", 4, false),
               WS_E_NONE); /* opcode ignored after the first */
  CHECK_EQ_INT(ws_conn_send(&cli, WS_OP_PONG, "", 0), WS_E_NONE);
  CHECK_EQ_INT(ws_conn_send_fragment(&cli, 0, "\x82\xAC", 2, true), WS_E_NONE);
  CHECK_EQ_INT(cli.send_opcode, 0);
  oframe f[8];
  CHECK_EQ_INT(out_frames(&cli.out, f, 8), 5);
  static const uint8_t ops[5] = {WS_OP_TEXT, WS_OP_PING, WS_OP_CONTINUATION,
                                 WS_OP_PONG, WS_OP_CONTINUATION};
  static const bool fins[5] = {false, true, false, true, true};
  for (int i = 0; i < 5; i++) {
    CHECK_EQ_INT(f[i].op, ops[i]);
    CHECK_EQ_INT(f[i].fin, fins[i]);
    CHECK(f[i].masked);
  }
  evlist l = {0};
  feed_copy(&srv, ws_buf_data(&cli.out), ws_buf_len(&cli.out), &l);
  CHECK_EVENTS(&l, EV(WS_EV_PING, "ping!"), EV(WS_EV_PONG, ""),
               EV(WS_EV_TEXT, "Hello \xE2\x82\xAC"));
  CHECK(l.n == 3 && !l.ev[2].inplace); /* assembled in msg */
  CHECK_EQ_INT(out_frames(&srv.out, f, 8), 1);
  CHECK_EQ_INT(f[0].op, WS_OP_PONG);
  CHECK_EQ_INT(f[0].len, 5);
  CHECK_MEM(f[0].payload, "ping!", 5);
  CHECK(!f[0].masked);
  evlist_free(&l);

  /* Server to client, binary, cut at every offset. */
  ws_buf_clear(&cli.out);
  ws_buf_clear(&srv.out);
  CHECK_EQ_INT(ws_conn_send_fragment(&srv, WS_OP_BINARY, "ab", 2, false),
               WS_E_NONE);
  CHECK_EQ_INT(ws_conn_send(&srv, WS_OP_PING, "x", 1), WS_E_NONE);
  CHECK_EQ_INT(ws_conn_send_fragment(&srv, WS_OP_TEXT, "", 0, false),
               WS_E_NONE);
  CHECK_EQ_INT(ws_conn_send_fragment(&srv, WS_OP_TEXT,
                                     "\xFF"
                                     "c",
                                     2, true),
               WS_E_NONE);
  size_t n = ws_buf_len(&srv.out);
  for (size_t k = 0; k <= n; k++) {
    ws_conn c;
    uint32_t s2 = 1;
    ws_conn_config cfg2 = cfg_seeded(&s2);
    ws_conn_init(&c, WS_ROLE_CLIENT, &cfg2);
    feed_cuts(&c, ws_buf_data(&srv.out), n, &k, 1, &l);
    CHECK_EVENTS(&l, EV(WS_EV_PING, "x"),
                 EV(WS_EV_BINARY, "ab\xFF"
                                  "c"));
    evlist_free(&l);
    CHECK_EQ_INT(out_frames(&c.out, f, 8), 1);
    CHECK_EQ_INT(f[0].op, WS_OP_PONG);
    CHECK(f[0].masked);
    ws_conn_free(&c);
  }
  ws_conn_free(&cli);
  ws_conn_free(&srv);
}

/* ---- failures ----------------------------------------------------------- */

/* Feed the bytes whole, one byte at a time and cut at every offset into
 * fresh connections of role: each run must give exactly one event, the
 * error, and queue exactly one close frame with its code and message as
 * reason; later input is ignored. */
static void expect_fail_cfg(ws_role role, const ws_conn_config *cfg0,
                            const bytes *b, uint16_t code, enum ws_error err,
                            const char *msg) {
  size_t ml = strlen(msg);
  uint8_t first_out[200];
  size_t first_out_len = 0;
  for (size_t run = 0; run < b->n + 2; run++) {
    uint32_t seed = 99;
    ws_conn_config cfg;
    if (cfg0)
      cfg = *cfg0;
    else
      memset(&cfg, 0, sizeof cfg);
    if (!cfg.random)
      cfg.random = det_random;
    if (cfg.random == det_random)
      cfg.random_ud = &seed;
    ws_conn c;
    ws_conn_init(&c, role, &cfg);
    evlist l = {0};
    if (run == 0)
      feed_copy(&c, b->d, b->n, &l);
    else if (run == 1)
      feed_bytewise(&c, b->d, b->n, &l);
    else {
      size_t k = run - 2;
      feed_cuts(&c, b->d, b->n, &k, 1, &l);
    }
    want_ev w = {WS_EV_ERROR, msg, ml, code, err};
    int ok = events_equal(&l, &w, 1);
    CHECK(ok);
    if (!ok) {
      fprintf(stderr, "  run %zu, expected error %u '%s'\n", run, code, msg);
      print_events(&l);
    }
    CHECK(c.failed && c.close_sent);
    oframe f[2];
    CHECK_EQ_INT(out_frames(&c.out, f, 2), 1);
    check_close_frame(&f[0], code, msg, role == WS_ROLE_CLIENT);
    /* Deterministic mask: every run queues the same bytes. */
    if (run == 0) {
      first_out_len =
          ws_buf_len(&c.out) < sizeof first_out ? ws_buf_len(&c.out) : 0;
      if (first_out_len)
        memcpy(first_out, ws_buf_data(&c.out), first_out_len);
    } else {
      CHECK_EQ_INT(ws_buf_len(&c.out), first_out_len);
      if (ws_buf_len(&c.out) == first_out_len && first_out_len)
        CHECK_MEM(ws_buf_data(&c.out), first_out, first_out_len);
    }
    /* Later input: consumed, ignored, nothing queued. */
    size_t before = ws_buf_len(&c.out);
    uint8_t ping[6] = {0x89, 0x80, 1, 2, 3, 4};
    ws_event ev;
    CHECK_EQ_INT(ws_conn_recv(&c, ping, sizeof ping, &ev), sizeof ping);
    CHECK_EQ_INT(ev.type, WS_EV_NONE);
    CHECK_EQ_INT(ws_buf_len(&c.out), before);
    CHECK_EQ_INT(ws_conn_send(&c, WS_OP_TEXT, "x", 1), WS_E_CLOSED);
    CHECK_EQ_INT(c.msg.cap, 0); /* message memory released */
    evlist_free(&l);
    ws_conn_free(&c);
  }
}

static void expect_fail(ws_role role, const bytes *b, uint16_t code,
                        enum ws_error err, const char *msg) {
  expect_fail_cfg(role, NULL, b, code, err, msg);
}

#define SRV WS_ROLE_SERVER
#define CLI WS_ROLE_CLIENT
#define P1002 1002, WS_E_PROTOCOL
#define P1007 1007, WS_E_INVALID_DATA
#define P1009 1009, WS_E_TOO_BIG

static void raw(bytes *b, const char *s, size_t n) { put(b, s, n); }
#define RAW(b, s) raw((b), (s), sizeof(s) - 1)

static void test_fail_lengths(void) {
  bytes b = {0};
  RAW(&b, "\x82\xFE\x00\x05"
          "\1\2\3\4"
          "abcde");
  expect_fail(SRV, &b, P1002, "frame length not in its minimal form");
  b.n = 0;
  RAW(&b, "\x82\xFF\x00\x00\x00\x00\x00\x00\xFF\xFF"
          "\1\2\3\4");
  expect_fail(SRV, &b, P1002, "frame length not in its minimal form");
  b.n = 0;
  RAW(&b, "\x82\xFF\x80\x00\x00\x00\x00\x00\x00\x00"
          "\1\2\3\4");
  expect_fail(SRV, &b, P1002, "64-bit frame length with its top bit set");
  b.n = 0;
  RAW(&b, "\x82\x7F\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF");
  expect_fail(CLI, &b, P1002, "64-bit frame length with its top bit set");
  /* Length form comes before everything else (RSV, opcode, mask). */
  b.n = 0;
  RAW(&b, "\xF3\x7E\x00\x01"
          "x");
  expect_fail(SRV, &b, P1002, "frame length not in its minimal form");
  free(b.d);
}

static void test_fail_rsv_opcode(void) {
  bytes b = {0};
  put_frame(&b, true, WS_RSV1, WS_OP_BINARY, true, "x", 1);
  expect_fail(SRV, &b, P1002, "reserved bit RSV1 set without an extension");
  b.n = 0;
  put_frame(&b, true, WS_RSV2, WS_OP_TEXT, true, "x", 1);
  expect_fail(SRV, &b, P1002, "reserved bit RSV2 set without an extension");
  b.n = 0;
  put_frame(&b, true, WS_RSV3, WS_OP_PING, false, "x", 1);
  expect_fail(CLI, &b, P1002, "reserved bit RSV3 set without an extension");
  /* An allowed bit passes; another one still fails. */
  ws_conn_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.rsv_allowed = WS_RSV1;
  b.n = 0;
  put_frame(&b, true, WS_RSV1 | WS_RSV3, WS_OP_BINARY, true, "x", 1);
  expect_fail_cfg(SRV, &cfg, &b, P1002,
                  "reserved bit RSV3 set without an extension");
  b.n = 0;
  put_frame(&b, true, WS_RSV1, WS_OP_BINARY, true, "x", 1);
  ws_conn c;
  ws_conn_init(&c, SRV, &cfg);
  evlist l = {0};
  feed_copy(&c, b.d, b.n, &l);
  CHECK_EVENTS(&l, EV(WS_EV_BINARY, "x"));
  evlist_free(&l);
  ws_conn_free(&c);
  /* RSV before opcode before masking. */
  b.n = 0;
  RAW(&b, "\xC3\x00");
  expect_fail(SRV, &b, P1002, "reserved bit RSV1 set without an extension");

  static const uint8_t bad_ops[] = {3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF};
  for (size_t i = 0; i < sizeof bad_ops; i++) {
    char want_msg[40];
    snprintf(want_msg, sizeof want_msg, "unknown opcode 0x%X", bad_ops[i]);
    b.n = 0;
    put_frame(&b, true, 0, bad_ops[i], true, "", 0);
    expect_fail(SRV, &b, P1002, want_msg);
    b.n = 0;
    put_frame(&b, false, 0, bad_ops[i], true, "abc", 3); /* also not FIN */
    expect_fail(SRV, &b, P1002, want_msg);
    b.n = 0;
    put_frame(&b, true, 0, bad_ops[i], false, "", 0); /* also unmasked */
    expect_fail(SRV, &b, P1002, want_msg);
  }
  free(b.d);
}

static void test_fail_control_rules(void) {
  bytes b = {0};
  uint8_t big[126];
  memset(big, 'z', sizeof big);
  put_frame(&b, false, 0, WS_OP_PING, true, "x", 1);
  expect_fail(SRV, &b, P1002, "control frame fragmented");
  b.n = 0;
  put_frame(&b, false, 0, WS_OP_CLOSE, true, big, 126); /* both: FIN first */
  expect_fail(SRV, &b, P1002, "control frame fragmented");
  b.n = 0;
  put_frame(&b, true, 0, WS_OP_PING, true, big, 126);
  expect_fail(SRV, &b, P1002, "control frame payload over 125 bytes");
  b.n = 0;
  put_frame(&b, true, 0, WS_OP_PONG, false, big, 126); /* before masking */
  expect_fail(SRV, &b, P1002, "control frame payload over 125 bytes");
  /* 125 is fine, and the pong echoes all of it. */
  b.n = 0;
  put_frame(&b, true, 0, WS_OP_PING, true, big, 125);
  ws_conn c;
  ws_conn_init(&c, SRV, NULL);
  evlist l = {0};
  feed_copy(&c, b.d, b.n, &l);
  CHECK_EQ_INT(l.n, 1);
  CHECK_EQ_INT(l.ev[0].type, WS_EV_PING);
  CHECK_EQ_INT(l.ev[0].len, 125);
  CHECK_EQ_INT(ws_buf_len(&c.out), 2 + 125);
  evlist_free(&l);
  ws_conn_free(&c);
  free(b.d);
}

static void test_fail_masking(void) {
  bytes b = {0};
  put_frame(&b, true, 0, WS_OP_TEXT, false, "hi", 2);
  expect_fail(SRV, &b, P1002, "unmasked frame from client");
  b.n = 0;
  put_frame(&b, true, 0, WS_OP_PING, false, "", 0);
  expect_fail(SRV, &b, P1002, "unmasked frame from client");
  b.n = 0;
  put_frame(&b, true, 0, WS_OP_CONTINUATION, false, "",
            0); /* before CONT rule */
  expect_fail(SRV, &b, P1002, "unmasked frame from client");
  b.n = 0;
  put_frame(&b, true, 0, WS_OP_BINARY, true, "hi", 2);
  expect_fail(CLI, &b, P1002, "masked frame from server");
  free(b.d);
}

static void test_fail_fragmentation(void) {
  bytes b = {0};
  put_frame(&b, true, 0, WS_OP_CONTINUATION, true, "x", 1);
  expect_fail(SRV, &b, P1002,
              "continuation frame without a message to continue");
  b.n = 0;
  put_frame(&b, false, 0, WS_OP_CONTINUATION, false, "x", 1);
  expect_fail(CLI, &b, P1002,
              "continuation frame without a message to continue");
  /* A finished message leaves nothing to continue. */
  b.n = 0;
  put_frame(&b, false, 0, WS_OP_BINARY, true, "a", 1);
  put_frame(&b, true, 0, WS_OP_CONTINUATION, true, "b", 1);
  put_frame(&b, true, 0, WS_OP_CONTINUATION, true, "c", 1);
  {
    ws_conn c;
    ws_conn_init(&c, SRV, NULL);
    evlist l = {0};
    feed_copy(&c, b.d, b.n, &l);
    CHECK_EVENTS(
        &l, EV(WS_EV_BINARY, "ab"),
        EV_ERR(P1002, "continuation frame without a message to continue"));
    evlist_free(&l);
    ws_conn_free(&c);
  }
  b.n = 0;
  put_frame(&b, false, 0, WS_OP_TEXT, true, "a", 1);
  put_frame(&b, true, 0, WS_OP_TEXT, true, "b", 1);
  expect_fail(SRV, &b, P1002, "new data frame inside a fragmented message");
  b.n = 0;
  put_frame(&b, false, 0, WS_OP_BINARY, true, "a", 1);
  put_frame(&b, true, 0, WS_OP_PING, true, "", 0);
  put_frame(&b, false, 0, WS_OP_BINARY, true, "b", 1);
  {
    ws_conn c;
    ws_conn_init(&c, SRV, NULL);
    evlist l = {0};
    feed_copy(&c, b.d, b.n, &l);
    CHECK_EVENTS(&l, EV(WS_EV_PING, ""),
                 EV_ERR(P1002, "new data frame inside a fragmented message"));
    evlist_free(&l);
    ws_conn_free(&c);
  }
  free(b.d);
}

static void test_fail_limits(void) {
  bytes b = {0};
  uint8_t pay[101];
  memset(pay, 'q', sizeof pay);
  ws_conn_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.max_frame = 100;
  put_frame(&b, true, 0, WS_OP_BINARY, true, pay, 101);
  expect_fail_cfg(SRV, &cfg, &b, P1009, "payload of 101 bytes exceeds max_frame 100 bytes");
  b.n = 0;
  put_frame(&b, true, 0, WS_OP_BINARY, true, pay, 100);
  put_frame(&b, false, 0, WS_OP_TEXT, true, pay, 100);
  put_frame(&b, true, 0, WS_OP_CONTINUATION, true, pay, 100);
  {
    ws_conn c;
    ws_conn_init(&c, SRV, &cfg);
    evlist l = {0};
    feed_copy(&c, b.d, b.n, &l);
    CHECK_EQ_INT(l.n, 2); /* max_frame is per frame: 200-byte message ok */
    CHECK(l.n == 2 && l.ev[1].type == WS_EV_TEXT && l.ev[1].len == 200);
    evlist_free(&l);
    ws_conn_free(&c);
  }
  memset(&cfg, 0, sizeof cfg);
  cfg.max_payload = 100;
  b.n = 0;
  put_frame(&b, true, 0, WS_OP_TEXT, true, pay, 101);
  expect_fail_cfg(SRV, &cfg, &b, P1009,
                  "payload of 101 bytes exceeds max_payload 100 bytes");
  b.n = 0;
  put_frame(&b, false, 0, WS_OP_BINARY, true, pay, 60);
  put_frame(&b, true, 0, WS_OP_CONTINUATION, true, pay, 41);
  expect_fail_cfg(SRV, &cfg, &b, P1009,
                  "payload of 101 bytes exceeds max_payload 100 bytes");
  b.n = 0;
  put_frame(&b, false, 0, WS_OP_BINARY, true, pay, 60);
  put_frame(&b, true, 0, WS_OP_CONTINUATION, true, pay, 40);
  {
    ws_conn c;
    ws_conn_init(&c, SRV, &cfg);
    evlist l = {0};
    feed_copy(&c, b.d, b.n, &l);
    CHECK_EQ_INT(l.n, 1);
    CHECK(l.n == 1 && l.ev[0].type == WS_EV_BINARY && l.ev[0].len == 100);
    evlist_free(&l);
    ws_conn_free(&c);
  }
  /* Protocol rules come before limits; max_payload (the limit users set)
   * is named before max_frame. */
  b.n = 0;
  put_frame(&b, true, 0, WS_OP_CONTINUATION, true, pay, 101);
  expect_fail_cfg(SRV, &cfg, &b, P1002,
                  "continuation frame without a message to continue");
  cfg.max_frame = 50;
  b.n = 0;
  put_frame(&b, true, 0, WS_OP_BINARY, true, pay, 101);
  expect_fail_cfg(SRV, &cfg, &b, P1009,
                  "payload of 101 bytes exceeds max_payload 100 bytes");
  b.n = 0;
  put_frame(&b, true, 0, WS_OP_BINARY, true, pay, 51);
  expect_fail_cfg(SRV, &cfg, &b, P1009, "payload of 51 bytes exceeds max_frame 50 bytes");
  free(b.d);
}

/* A header announcing a huge frame costs nothing before its bytes come. */
static void test_limits_before_allocation(void) {
  ws_conn c;
  ws_event ev;
  /* 64 MiB announced (= the default limits), 10 bytes sent. */
  uint8_t h[24] = {0x82, 0xFF, 0, 0, 0, 0, 0x04, 0, 0, 0, 1, 2, 3, 4};
  ws_conn_init(&c, SRV, NULL);
  CHECK_EQ_INT(ws_conn_recv(&c, h, 24, &ev), 24);
  CHECK_EQ_INT(ev.type, WS_EV_NONE);
  CHECK(c.msg.cap <= 256);
  CHECK_EQ_INT(ws_buf_len(&c.msg), 10);
  ws_conn_free(&c);
  /* 64 MiB + 1: refused from the header alone. */
  uint8_t h2[14] = {0x82, 0xFF, 0, 0, 0, 0, 0x04, 0, 0, 1, 1, 2, 3, 4};
  ws_conn_init(&c, SRV, NULL);
  CHECK_EQ_INT(ws_conn_recv(&c, h2, 14, &ev), 14);
  CHECK_EQ_INT(ev.type, WS_EV_ERROR);
  CHECK_EQ_INT(ev.code, 1009);
  CHECK_EQ_INT(ev.error, WS_E_TOO_BIG);
  CHECK_EQ_INT(c.msg.cap, 0);
  ws_conn_free(&c);
  /* 2^62 announced to a client with max_frame 1 GiB but max_payload 1 KiB. */
  ws_conn_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.max_frame = (uint64_t)1 << 30;
  cfg.max_payload = 1024;
  uint8_t h3[10] = {0x82, 0x7F, 0x40, 0, 0, 0, 0, 0, 0, 0};
  ws_conn_init(&c, CLI, &cfg);
  CHECK_EQ_INT(ws_conn_recv(&c, h3, 10, &ev), 10);
  CHECK_EQ_INT(ev.type, WS_EV_ERROR);
  CHECK_EQ_INT(ev.code, 1009);
  {
    const char *want =
        "payload of 4398046511104 MiB exceeds max_payload 1 KiB";
    CHECK_EQ_INT(ev.len, strlen(want));
    CHECK_MEM(ev.data, want, ev.len);
  }
  CHECK_EQ_INT(c.msg.cap, 0);
  ws_conn_free(&c);
  /* A fragmented message: the second fragment's header pushes it over. */
  cfg.max_frame = 0;
  cfg.max_payload = 1000;
  ws_conn_init(&c, CLI, &cfg);
  bytes b = {0};
  uint8_t pay[600];
  memset(pay, 1, sizeof pay);
  put_frame(&b, false, 0, WS_OP_BINARY, false, pay, 600);
  RAW(&b, "\x80\x7E\x01\x91"); /* 401 announced, none sent */
  evlist l = {0};
  feed_copy(&c, b.d, b.n, &l);
  CHECK_EVENTS(&l, EV_ERR(P1009, "payload of 1001 bytes exceeds max_payload 1000 bytes"));
  evlist_free(&l);
  ws_conn_free(&c);
  free(b.d);
}

static void test_fail_utf8(void) {
  bytes b = {0};
  put_frame(&b, true, 0, WS_OP_TEXT, true, "ab\xFF", 3);
  expect_fail(SRV, &b, P1007, "invalid UTF-8 in text message");
  b.n = 0;
  put_frame(&b, true, 0, WS_OP_TEXT, true, "\xED\xA0\x80", 3); /* surrogate */
  expect_fail(SRV, &b, P1007, "invalid UTF-8 in text message");
  b.n = 0;
  put_frame(&b, true, 0, WS_OP_TEXT, false, "\xE2\x82", 2);
  expect_fail(CLI, &b, P1007, "text message ends inside a UTF-8 sequence");
  /* The last fragment is bad: the earlier ones never surface. */
  b.n = 0;
  put_frame(&b, false, 0, WS_OP_TEXT, true, "caf", 3);
  put_frame(&b, false, 0, WS_OP_CONTINUATION, true, "\xC3", 1);
  put_frame(&b, true, 0, WS_OP_CONTINUATION, true, "\xA9\xC0", 2);
  expect_fail(SRV, &b, P1007, "invalid UTF-8 in text message");
  b.n = 0;
  put_frame(&b, false, 0, WS_OP_TEXT, true, "caf", 3);
  put_frame(&b, true, 0, WS_OP_CONTINUATION, true, "\xC3", 1);
  expect_fail(SRV, &b, P1007, "text message ends inside a UTF-8 sequence");
  /* Invalid UTF-8 in binary is fine. */
  b.n = 0;
  put_frame(&b, true, 0, WS_OP_BINARY, true, "\xFF", 1);
  ws_conn c;
  ws_conn_init(&c, SRV, NULL);
  evlist l = {0};
  feed_copy(&c, b.d, b.n, &l);
  CHECK_EVENTS(&l, EV(WS_EV_BINARY, "\xFF"));
  evlist_free(&l);
  ws_conn_free(&c);
  free(b.d);
}

/* Text is checked as it arrives: a bad byte early in a long frame fails
 * the connection before the frame completes. */
static void test_utf8_fail_fast(void) {
  uint8_t payload[1000];
  memset(payload, 'a', sizeof payload);
  payload[5] = 0xC0;
  bytes b = {0};
  put_frame(&b, true, 0, WS_OP_TEXT, true, payload, sizeof payload);
  size_t first = 4 + 4 + 10; /* header (16-bit length), key, 10 bytes */
  ws_conn c;
  ws_conn_init(&c, SRV, NULL);
  ws_event ev;
  uint8_t *piece = malloc(first);
  memcpy(piece, b.d, first);
  CHECK_EQ_INT(ws_conn_recv(&c, piece, first, &ev), first);
  CHECK_EQ_INT(ev.type, WS_EV_ERROR);
  CHECK_EQ_INT(ev.code, 1007);
  CHECK_EQ_INT(ev.error, WS_E_INVALID_DATA);
  free(piece);
  ws_conn_free(&c);
  /* Across fragments too: the second fragment's first byte. */
  b.n = 0;
  put_frame(&b, false, 0, WS_OP_TEXT, true, "\xE2\x82", 2);
  put_frame(&b, true, 0, WS_OP_CONTINUATION, true, "\x41zzzzzzzz", 9);
  ws_conn_init(&c, SRV, NULL);
  evlist l = {0};
  size_t cut = b.n - 8; /* up to and including the 0x41 */
  feed_cuts(&c, b.d, cut, NULL, 0, &l);
  CHECK_EVENTS(&l, EV_ERR(P1007, "invalid UTF-8 in text message"));
  evlist_free(&l);
  ws_conn_free(&c);
  free(b.d);
}

static void test_fail_close_frames(void) {
  bytes b = {0};
  put_frame(&b, true, 0, WS_OP_CLOSE, true, "\x03", 1);
  expect_fail(SRV, &b, P1002, "close frame payload of 1 byte");
  static const unsigned bad[] = {0,    999,  1004, 1005, 1006, 1015,
                                 1016, 1100, 2999, 5000, 65535};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    uint8_t p[4] = {(uint8_t)(bad[i] >> 8), (uint8_t)bad[i], 'o', 'k'};
    char msg[40];
    snprintf(msg, sizeof msg, "invalid close code %u", bad[i]);
    b.n = 0;
    put_frame(&b, true, 0, WS_OP_CLOSE, true, p, 4);
    expect_fail(SRV, &b, P1002, msg);
    b.n = 0;
    put_frame(&b, true, 0, WS_OP_CLOSE, false, p, 2);
    expect_fail(CLI, &b, P1002, msg);
  }
  b.n = 0;
  put_frame(&b, true, 0, WS_OP_CLOSE, true,
            "\x03\xE8"
            "bad \xFF",
            7);
  expect_fail(SRV, &b, P1007, "invalid UTF-8 in close reason");
  free(b.d);
}

/* Out of memory, simulated by a mask source that fails: a client cannot
 * answer a ping, fails with 1011 and cannot even queue its close. */
static void test_fail_nomem(void) {
  ws_conn_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.random = fail_random;
  ws_conn c;
  ws_conn_init(&c, CLI, &cfg);
  bytes b = {0};
  put_frame(&b, true, 0, WS_OP_PING, false, "hi", 2);
  evlist l = {0};
  feed_copy(&c, b.d, b.n, &l);
  CHECK_EVENTS(
      &l, EV_ERR(1011, WS_E_NOMEM, "random source failed (no frame mask)"));
  CHECK(c.failed && c.close_sent);
  CHECK_EQ_INT(ws_buf_len(&c.out), 0);
  evlist_free(&l);
  ws_conn_free(&c);
  /* Sending: nothing is queued. */
  ws_conn_init(&c, CLI, &cfg);
  CHECK_EQ_INT(ws_conn_send(&c, WS_OP_TEXT, "x", 1), WS_E_NOMEM);
  CHECK_EQ_INT(ws_conn_send_fragment(&c, WS_OP_TEXT, "x", 1, false),
               WS_E_NOMEM);
  CHECK_EQ_INT(c.send_opcode, 0);
  CHECK_EQ_INT(ws_conn_close(&c, 1000, "", 0), WS_E_NOMEM);
  CHECK(!c.close_sent);
  CHECK_EQ_INT(ws_buf_len(&c.out), 0);
  ws_conn_free(&c);
  free(b.d);
}

/* ---- close handshake and automatic replies ------------------------------ */

static void test_close_echo(void) {
  ws_conn c;
  evlist l = {0};
  oframe f[4];
  bytes b = {0};
  /* Code and reason: both echoed. */
  put_frame(&b, true, 0, WS_OP_CLOSE, true,
            "\x03\xE8"
            "bye \xC3\xA9",
            8);
  put_frame(&b, true, 0, WS_OP_TEXT, true, "late", 4);
  ws_conn_init(&c, SRV, NULL);
  feed_copy(&c, b.d, b.n, &l);
  CHECK_EVENTS(&l, EV_CLOSE(1000, "bye \xC3\xA9"));
  CHECK(c.close_received && c.close_sent && !c.failed);
  CHECK_OUT(&c.out, "\x88\x08\x03\xE8" "bye \xC3\xA9", 10);
  /* Later input: consumed and ignored. */
  uint8_t more[7] = {0x89, 0x81, 0, 0, 0, 0, 'x'};
  ws_event ev;
  CHECK_EQ_INT(ws_conn_recv(&c, more, 7, &ev), 7);
  CHECK_EQ_INT(ev.type, WS_EV_NONE);
  CHECK_EQ_INT(ws_buf_len(&c.out), 10);
  CHECK_EQ_INT(ws_conn_send(&c, WS_OP_PING, "", 0), WS_E_CLOSED);
  CHECK_EQ_INT(ws_conn_close(&c, 1000, "", 0), WS_E_CLOSED);
  evlist_free(&l);
  ws_conn_free(&c);

  /* Empty close: 1005 to us, an empty close back. */
  b.n = 0;
  put_frame(&b, true, 0, WS_OP_CLOSE, true, "", 0);
  ws_conn_init(&c, SRV, NULL);
  feed_copy(&c, b.d, b.n, &l);
  CHECK_EVENTS(&l, EV_CLOSE(1005, ""));
  CHECK_OUT(&c.out, "\x88\x00", 2);
  evlist_free(&l);
  ws_conn_free(&c);

  /* Codes at the edges of the valid ranges are accepted and echoed. */
  static const unsigned good[] = {1000, 1001, 1002, 1003, 1007,
                                  1011, 1014, 3000, 4000, 4999};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    uint8_t p[2] = {(uint8_t)(good[i] >> 8), (uint8_t)good[i]};
    b.n = 0;
    put_frame(&b, true, 0, WS_OP_CLOSE, true, p, 2);
    ws_conn_init(&c, SRV, NULL);
    feed_copy(&c, b.d, b.n, &l);
    CHECK_EQ_INT(l.n, 1);
    CHECK(l.n == 1 && l.ev[0].type == WS_EV_CLOSE && l.ev[0].code == good[i]);
    CHECK_EQ_INT(out_frames(&c.out, f, 4), 1);
    check_close_frame(&f[0], good[i], "", false);
    evlist_free(&l);
    ws_conn_free(&c);
  }

  /* We closed first: a ping that comes before the peer's close is still
   * answered (RFC 6455 5.5.2 excuses only a *received* close), the peer's
   * close is reported, and no close is echoed. */
  ws_conn_init(&c, SRV, NULL);
  CHECK_EQ_INT(ws_conn_close(&c, 1001, "going", 5), WS_E_NONE);
  CHECK_EQ_INT(ws_conn_close(&c, 1000, "", 0), WS_E_CLOSED);
  b.n = 0;
  put_frame(&b, true, 0, WS_OP_PING, true, "p", 1);
  put_frame(&b, true, 0, WS_OP_CLOSE, true, "\x03\xE9", 2);
  feed_copy(&c, b.d, b.n, &l);
  CHECK_EVENTS(&l, EV(WS_EV_PING, "p"), EV_CLOSE(1001, ""));
  CHECK_EQ_INT(out_frames(&c.out, f, 4), 2);
  check_close_frame(&f[0], 1001, "going", false);
  CHECK_EQ_INT(f[1].op, WS_OP_PONG);
  CHECK_EQ_INT(f[1].len, 1);
  CHECK_MEM(f[1].payload, "p", 1);
  evlist_free(&l);
  ws_conn_free(&c);

  /* A close in the middle of a fragmented message drops the message. */
  b.n = 0;
  put_frame(&b, false, 0, WS_OP_TEXT, true, "part", 4);
  put_frame(&b, true, 0, WS_OP_CLOSE, true, "\x0B\xB8", 2);
  ws_conn_init(&c, SRV, NULL);
  feed_copy(&c, b.d, b.n, &l);
  CHECK_EVENTS(&l, EV_CLOSE(3000, ""));
  CHECK_EQ_INT(c.msg.cap, 0);
  evlist_free(&l);
  ws_conn_free(&c);
  free(b.d);
}

static void test_client_close_echo_exact(void) {
  uint32_t seed = 5, mirror = 5;
  ws_conn_config cfg = cfg_seeded(&seed);
  ws_conn c;
  ws_conn_init(&c, CLI, &cfg);
  bytes b = {0};
  put_frame(&b, true, 0, WS_OP_CLOSE, false,
            "\x0F\x9F"
            "x",
            3); /* 3999 */
  evlist l = {0};
  feed_copy(&c, b.d, b.n, &l);
  CHECK_EVENTS(&l, EV_CLOSE(3999, "x"));
  uint8_t key[4];
  next_key(&mirror, key);
  uint8_t want[9] = {0x88,
                     0x83,
                     key[0],
                     key[1],
                     key[2],
                     key[3],
                     (uint8_t)(0x0F ^ key[0]),
                     (uint8_t)(0x9F ^ key[1]),
                     (uint8_t)('x' ^ key[2])};
  CHECK_OUT(&c.out, want, 9);
  evlist_free(&l);
  ws_conn_free(&c);
  free(b.d);
}

static void test_ping_autopong(void) {
  ws_conn c;
  evlist l = {0};
  bytes b = {0};
  put_frame(&b, true, 0, WS_OP_PING, true, "abc", 3);
  put_frame(&b, true, 0, WS_OP_PONG, true, "zz", 2);
  put_frame(&b, true, 0, WS_OP_PING, true, "", 0);
  ws_conn_init(&c, SRV, NULL);
  feed_copy(&c, b.d, b.n, &l);
  CHECK_EVENTS(&l, EV(WS_EV_PING, "abc"), EV(WS_EV_PONG, "zz"),
               EV(WS_EV_PING, ""));
  CHECK_OUT(&c.out,
            "\x8A\x03"
            "abc"
            "\x8A\x00",
            7);
  evlist_free(&l);
  ws_conn_free(&c);

  /* Client: the pong is masked with the next key. */
  uint32_t seed = 77, mirror = 77;
  ws_conn_config cfg = cfg_seeded(&seed);
  ws_conn_init(&c, CLI, &cfg);
  b.n = 0;
  put_frame(&b, true, 0, WS_OP_PING, false, "abc", 3);
  feed_bytewise(&c, b.d, b.n, &l); /* control payload split: via ctrl */
  CHECK_EVENTS(&l, EV(WS_EV_PING, "abc"));
  uint8_t key[4];
  next_key(&mirror, key);
  uint8_t want[9] = {0x8A,
                     0x83,
                     key[0],
                     key[1],
                     key[2],
                     key[3],
                     (uint8_t)('a' ^ key[0]),
                     (uint8_t)('b' ^ key[1]),
                     (uint8_t)('c' ^ key[2])};
  CHECK_OUT(&c.out, want, 9);
  evlist_free(&l);
  ws_conn_free(&c);
  free(b.d);
}

/* RFC 6455 5.5.3 under backpressure: while WS_PONG_BACKLOG bytes wait on
 * out (a peer that does not read), the newest ping's pong is held,
 * replacing older ones; it goes once out drains below that, or ahead of
 * the next frame we queue.  Below it, every ping gets its pong. */
static void test_pong_coalescing(void) {
  ws_conn c;
  evlist l = {0};
  bytes b = {0};
  char payload[16];
  static uint8_t big[WS_PONG_BACKLOG];
  ws_conn_init(&c, SRV, NULL);
  CHECK_EQ_INT(ws_conn_send(&c, WS_OP_BINARY, big, sizeof big), WS_E_NONE);
  size_t queued = ws_buf_len(&c.out); /* the peer reads none of it */
  for (int i = 0; i < 50; i++) {
    snprintf(payload, sizeof payload, "p%d", i);
    put_frame(&b, true, 0, WS_OP_PING, true, payload, strlen(payload));
  }
  feed_copy(&c, b.d, b.n, &l);
  CHECK_EQ_INT(l.n, 50);
  evlist_free(&l);
  CHECK_EQ_INT(ws_buf_len(&c.out), queued); /* nothing queued: all held */
  CHECK(c.pong_held);
  CHECK(queued > WS_PONG_BACKLOG);
  ws_conn_out_consume(&c, queued - WS_PONG_BACKLOG); /* still at the backlog */
  CHECK_EQ_INT(ws_buf_len(&c.out), WS_PONG_BACKLOG);
  ws_conn_out_consume(&c, WS_PONG_BACKLOG - 100); /* under it: the newest goes */
  CHECK_EQ_INT(ws_buf_len(&c.out), 100 + 5);
  CHECK_MEM(ws_buf_data(&c.out) + 100, "\x8A\x03p49", 5);
  CHECK(!c.pong_held);
  ws_conn_out_consume(&c, ws_buf_len(&c.out));

  /* The held pong goes ahead of the next frame queued. */
  CHECK_EQ_INT(ws_conn_send(&c, WS_OP_BINARY, big, sizeof big), WS_E_NONE);
  queued = ws_buf_len(&c.out);
  b.n = 0;
  put_frame(&b, true, 0, WS_OP_PING, true, "a", 1);
  put_frame(&b, true, 0, WS_OP_PING, true, "b", 1);
  feed_copy(&c, b.d, b.n, &l);
  CHECK_EQ_INT(ws_conn_send(&c, WS_OP_TEXT, "hi", 2), WS_E_NONE);
  CHECK_EQ_INT(ws_buf_len(&c.out), queued + 7);
  CHECK_MEM(ws_buf_data(&c.out) + queued, "\x8A\x01" "b" "\x81\x02" "hi", 7);
  evlist_free(&l);

  /* A close frame, too (pongs may follow our close: 5.5.1 forbids only
   * data frames; but the held one goes first). */
  b.n = 0;
  put_frame(&b, true, 0, WS_OP_PING, true, "c", 1);
  put_frame(&b, true, 0, WS_OP_PING, true, "d", 1);
  feed_copy(&c, b.d, b.n, &l);
  queued = ws_buf_len(&c.out);
  CHECK_EQ_INT(ws_conn_close(&c, 1000, "", 0), WS_E_NONE);
  CHECK_EQ_INT(ws_buf_len(&c.out), queued + 7);
  CHECK_MEM(ws_buf_data(&c.out) + queued, "\x8A\x01" "d" "\x88\x02\x03\xE8", 7);
  evlist_free(&l);
  ws_conn_free(&c);
  free(b.d);
}

/* cfg.defer_fail_close: the messages before a failure can be answered
 * before its close frame goes, which then carries the same code and text. */
static void test_deferred_fail_close(void) {
  ws_conn_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.defer_fail_close = true;
  ws_conn c;
  evlist l = {0};
  bytes b = {0};
  put_frame(&b, true, 0, WS_OP_TEXT, true, "hello", 5);
  put_frame(&b, true, WS_RSV2, WS_OP_TEXT, true, "bad", 3);
  ws_conn_init(&c, SRV, &cfg);
  feed_copy(&c, b.d, b.n, &l);
  CHECK_EVENTS(&l, EV(WS_EV_TEXT, "hello"),
               EV_ERR(1002, WS_E_PROTOCOL, "reserved bit RSV2 set without an extension"));
  CHECK(c.failed && !c.close_sent);
  CHECK_EQ_INT(ws_buf_len(&c.out), 0);
  CHECK_EQ_INT(ws_conn_send(&c, WS_OP_TEXT, "reply", 5), WS_E_NONE);
  CHECK_EQ_INT(ws_conn_fail_close(&c), WS_E_NONE);
  CHECK(c.close_sent);
  CHECK_OUT(&c.out, "\x81\x05reply\x88\x2c\x03\xEA"
                    "reserved bit RSV2 set without an extension", 7 + 46);
  CHECK_EQ_INT(ws_conn_fail_close(&c), WS_E_CLOSED);
  CHECK_EQ_INT(ws_conn_send(&c, WS_OP_TEXT, "late", 4), WS_E_CLOSED);
  evlist_free(&l);
  ws_conn_free(&c);
  free(b.d);
}

/* Counters: a whole message (zero-copy), a fragmented one (assembled),
 * control frames not counted; sends counted as queued. */
static void test_counters(void) {
  ws_conn c;
  evlist l = {0};
  bytes b = {0};
  put_frame(&b, true, 0, WS_OP_TEXT, true, "hello", 5);
  put_frame(&b, false, 0, WS_OP_BINARY, true, "ab", 2);
  put_frame(&b, true, 0, WS_OP_PING, true, "p", 1);
  put_frame(&b, true, 0, WS_OP_CONTINUATION, true, "cde", 3);
  ws_conn_init(&c, SRV, NULL);
  feed_copy(&c, b.d, b.n, &l);
  CHECK_EQ_INT(l.n, 3);
  CHECK_EQ_INT(c.counters.messages_in, 2);
  CHECK_EQ_INT(c.counters.bytes_in, 10);
  CHECK_EQ_INT(c.counters.wire_bytes_in, 10);
  CHECK_EQ_INT(c.counters.inflated_in, 0);
  CHECK_EQ_INT(ws_conn_send(&c, WS_OP_TEXT, "xyz", 3), WS_E_NONE);
  CHECK_EQ_INT(ws_conn_send_fragment(&c, WS_OP_BINARY, "12", 2, false), WS_E_NONE);
  CHECK_EQ_INT(ws_conn_send(&c, WS_OP_PING, "q", 1), WS_E_NONE);
  CHECK_EQ_INT(ws_conn_send_fragment(&c, 0, "345", 3, true), WS_E_NONE);
  CHECK_EQ_INT(ws_conn_send_header(&c, WS_OP_BINARY, 100), WS_E_NONE);
  CHECK_EQ_INT(c.counters.messages_out, 3);
  CHECK_EQ_INT(c.counters.bytes_out, 108);
  CHECK_EQ_INT(c.counters.wire_bytes_out, 108);
  evlist_free(&l);
  ws_conn_free(&c);
  free(b.d);
}

/* ---- sending ------------------------------------------------------------ */

static void test_client_frames_exact(void) {
  uint32_t seed = 1234, mirror = 1234;
  ws_conn_config cfg = cfg_seeded(&seed);
  ws_conn c;
  ws_conn_init(&c, CLI, &cfg);
  uint8_t key[4], want[300];
  size_t wn = 0;

  CHECK_EQ_INT(ws_conn_send(&c, WS_OP_TEXT, "Hello", 5), WS_E_NONE);
  next_key(&mirror, key);
  want[wn++] = 0x81;
  want[wn++] = 0x85;
  memcpy(want + wn, key, 4);
  wn += 4;
  for (int i = 0; i < 5; i++)
    want[wn++] = (uint8_t)("Hello"[i] ^ key[i % 4]);

  uint8_t bin[200];
  fill_binary(bin, sizeof bin);
  CHECK_EQ_INT(ws_conn_send(&c, WS_OP_BINARY, bin, 200), WS_E_NONE);
  next_key(&mirror, key);
  want[wn++] = 0x82;
  want[wn++] = 0xFE;
  want[wn++] = 0;
  want[wn++] = 200;
  memcpy(want + wn, key, 4);
  wn += 4;
  for (int i = 0; i < 200; i++)
    want[wn++] = (uint8_t)(bin[i] ^ key[i % 4]);

  CHECK_EQ_INT(ws_conn_close(&c, 4000, "ok", 2), WS_E_NONE);
  next_key(&mirror, key);
  want[wn++] = 0x88;
  want[wn++] = 0x84;
  memcpy(want + wn, key, 4);
  wn += 4;
  const uint8_t cp[4] = {0x0F, 0xA0, 'o', 'k'};
  for (int i = 0; i < 4; i++)
    want[wn++] = (uint8_t)(cp[i] ^ key[i % 4]);

  CHECK_OUT(&c.out, want, wn);
  CHECK(c.close_sent);
  ws_conn_free(&c);

  /* Each frame draws a fresh key. */
  seed = 1;
  ws_conn_init(&c, CLI, &cfg);
  ws_conn_send(&c, WS_OP_PING, "", 0);
  ws_conn_send(&c, WS_OP_PING, "", 0);
  CHECK_EQ_INT(ws_buf_len(&c.out), 12);
  CHECK(ws_buf_len(&c.out) == 12 &&
        memcmp(ws_buf_data(&c.out) + 2, ws_buf_data(&c.out) + 8, 4) != 0);
  ws_conn_free(&c);

  /* The server sends unmasked. */
  ws_conn_init(&c, SRV, NULL);
  CHECK_EQ_INT(ws_conn_send(&c, WS_OP_TEXT, "Hello", 5), WS_E_NONE);
  CHECK_EQ_INT(ws_conn_close(&c, 0, "ignored", 7), WS_E_NONE);
  CHECK_OUT(&c.out, "\x81\x05Hello\x88\x00", 9);
  ws_conn_free(&c);

  /* With no random source configured, ws_random_default masks. */
  ws_conn_init(&c, CLI, NULL);
  CHECK_EQ_INT(ws_conn_send(&c, WS_OP_BINARY, "abcd", 4), WS_E_NONE);
  CHECK_EQ_INT(ws_buf_len(&c.out), 10);
  CHECK(ws_buf_len(&c.out) == 10 && ws_buf_data(&c.out)[1] == 0x84);
  ws_conn_free(&c);
}

static void test_send_rules(void) {
  ws_conn c;
  uint8_t big[126] = {0};
  ws_conn_init(&c, SRV, NULL);
  CHECK_EQ_INT(ws_conn_send(&c, WS_OP_PING, big, 126), WS_E_TOO_BIG);
  CHECK_EQ_INT(ws_conn_send(&c, WS_OP_PONG, big, 126), WS_E_TOO_BIG);
  CHECK_EQ_INT(ws_conn_send(&c, WS_OP_PING, big, 125), WS_E_NONE);
  CHECK_EQ_INT(ws_conn_send(&c, WS_OP_CLOSE, "", 0), WS_E_PROTOCOL);
  CHECK_EQ_INT(ws_conn_send(&c, WS_OP_CONTINUATION, "", 0), WS_E_PROTOCOL);
  CHECK_EQ_INT(ws_conn_send(&c, 0x3, "", 0), WS_E_PROTOCOL);
  CHECK_EQ_INT(ws_conn_send_fragment(&c, WS_OP_PING, "", 0, false),
               WS_E_PROTOCOL);
  CHECK_EQ_INT(ws_conn_send_fragment(&c, WS_OP_CONTINUATION, "", 0, true),
               WS_E_PROTOCOL);
  size_t before = ws_buf_len(&c.out);
  CHECK_EQ_INT(before, 2 + 125);
  /* A whole message while a fragmented one is in progress: misuse. */
  CHECK_EQ_INT(ws_conn_send_fragment(&c, WS_OP_BINARY, "a", 1, false),
               WS_E_NONE);
  CHECK_EQ_INT(c.send_opcode, WS_OP_BINARY);
  CHECK_EQ_INT(ws_conn_send(&c, WS_OP_TEXT, "x", 1), WS_E_PROTOCOL);
  CHECK_EQ_INT(ws_conn_send(&c, WS_OP_PING, "x", 1), WS_E_NONE);
  CHECK_EQ_INT(ws_conn_send_fragment(&c, WS_OP_TEXT, "b", 1, true), WS_E_NONE);
  CHECK_EQ_INT(c.send_opcode, 0);
  CHECK_EQ_INT(ws_conn_send(&c, WS_OP_TEXT, "x", 1), WS_E_NONE);
  CHECK_EQ_INT(ws_buf_len(&c.out), before + 12);
  if (ws_buf_len(&c.out) == before + 12)
    CHECK_MEM(ws_buf_data(&c.out) + before,
              "\x02\x01"
              "a"
              "\x89\x01"
              "x"
              "\x80\x01"
              "b"
              "\x81\x01"
              "x",
              12);
  /* Close: bad codes and long reasons are refused, nothing queued. */
  before = ws_buf_len(&c.out);
  CHECK_EQ_INT(ws_conn_close(&c, 1005, "", 0), WS_E_PROTOCOL);
  CHECK_EQ_INT(ws_conn_close(&c, 999, "", 0), WS_E_PROTOCOL);
  char reason[124];
  memset(reason, 'r', sizeof reason);
  CHECK_EQ_INT(ws_conn_close(&c, 1000, reason, 124), WS_E_TOO_BIG);
  CHECK_EQ_INT(ws_buf_len(&c.out), before);
  CHECK(!c.close_sent);
  CHECK_EQ_INT(ws_conn_close(&c, 1000, reason, 123), WS_E_NONE);
  CHECK_EQ_INT(ws_buf_len(&c.out), before + 2 + 125);
  CHECK(c.close_sent);
  CHECK_EQ_INT(ws_conn_send(&c, WS_OP_TEXT, "x", 1), WS_E_CLOSED);
  CHECK_EQ_INT(ws_conn_send(&c, WS_OP_PING, "", 0), WS_E_CLOSED);
  CHECK_EQ_INT(ws_conn_send_fragment(&c, WS_OP_TEXT, "x", 1, true),
               WS_E_CLOSED);
  CHECK_EQ_INT(ws_conn_close(&c, 1000, "", 0), WS_E_CLOSED);
  CHECK_EQ_INT(ws_buf_len(&c.out), before + 2 + 125);
  ws_conn_free(&c);
  ws_conn_free(&c); /* twice is safe */
}

/* ---- memory ------------------------------------------------------------- */

static void test_msg_memory(void) {
  ws_conn c;
  evlist l = {0};
  ws_conn_init(&c, SRV, NULL);
  /* Small messages split across reads reuse one buffer. */
  bytes b = {0};
  put_frame(&b, true, 0, WS_OP_BINARY, true, "0123456789", 10);
  size_t cut = 9;
  feed_cuts(&c, b.d, b.n, &cut, 1, &l);
  CHECK_EVENTS(&l, EV(WS_EV_BINARY, "0123456789"));
  evlist_free(&l);
  uint8_t *base = c.msg.base;
  size_t cap = c.msg.cap;
  CHECK(base != NULL && cap > 0);
  for (int i = 0; i < 100; i++) {
    feed_cuts(&c, b.d, b.n, &cut, 1, &l);
    CHECK_EQ_INT(l.n, 1);
    evlist_free(&l);
  }
  CHECK(c.msg.base == base);
  CHECK_EQ_INT(c.msg.cap, cap);
  /* A large assembled message is released at the next call. */
  size_t big = 1u << 20;
  uint8_t *p = malloc(big);
  fill_binary(p, big);
  b.n = 0;
  put_frame(&b, true, 0, WS_OP_BINARY, true, p, big);
  cut = b.n / 2;
  feed_cuts(&c, b.d, b.n, &cut, 1, &l);
  CHECK_EQ_INT(l.n, 1);
  CHECK(l.n == 1 && l.ev[0].len == big && memcmp(l.ev[0].data, p, big) == 0);
  CHECK(l.n == 1 && !l.ev[0].inplace);
  CHECK(c.msg.cap >= big);
  evlist_free(&l);
  b.n = 0;
  put_frame(&b, true, 0, WS_OP_PING, true, "", 0);
  feed_copy(&c, b.d, b.n, &l);
  CHECK_EVENTS(&l, EV(WS_EV_PING, ""));
  CHECK_EQ_INT(c.msg.cap, 0);
  evlist_free(&l);
  /* len 0 is a no-op. */
  ws_event ev;
  CHECK_EQ_INT(ws_conn_recv(&c, NULL, 0, &ev), 0);
  CHECK_EQ_INT(ev.type, WS_EV_NONE);
  free(p);
  free(b.d);
  ws_conn_free(&c);
}


/* Direct reads: the payload read straight into the message, in pieces of
 * every size, gives the same message as ws_conn_recv; memory follows what
 * came, never the header's promise; bad text is still refused. */
static void test_direct_read(void) {
  size_t n = 300000;
  uint8_t *pay = malloc(n);
  for (size_t i = 0; i < n; i++)
    pay[i] = (uint8_t)('a' + i % 26);
  bytes b = {0};
  put_frame(&b, true, 0, WS_OP_TEXT, true, pay, n);
  size_t hs = b.n - n;
  for (size_t piece = 1000; piece <= 131072; piece *= 4) {
    ws_conn c;
    ws_event ev;
    ws_conn_init(&c, SRV, NULL);
    /* The header and the first 10 bytes go through ws_conn_recv. */
    CHECK_EQ_INT(ws_conn_recv(&c, b.d, hs + 10, &ev), hs + 10);
    CHECK_EQ_INT(ev.type, WS_EV_NONE);
    size_t at = hs + 10, room;
    while (at < b.n) {
      uint8_t *dst = ws_conn_payload_room(&c, piece, &room);
      CHECK(dst != NULL);
      if (!dst)
        break;
      CHECK(room <= piece && room <= b.n - at);
      CHECK(room <= ws_buf_len(&c.msg) + WS_DIRECT_SLACK);
      memcpy(dst, b.d + at, room); /* what a read() would do */
      bool frame_left = ws_conn_payload_commit(&c, room, &ev);
      at += room;
      CHECK(frame_left == (at < b.n)); /* the front reads on only then */
      if (at < b.n)
        CHECK_EQ_INT(ev.type, WS_EV_NONE);
    }
    CHECK_EQ_INT(ev.type, WS_EV_TEXT);
    CHECK_EQ_INT(ev.len, n);
    CHECK(ev.len == n && memcmp(ev.data, pay, n) == 0);
    CHECK(ws_conn_payload_room(&c, piece, &room) == NULL); /* frame done */
    CHECK_EQ_INT(c.counters.messages_in, 1);
    CHECK_EQ_INT(c.counters.bytes_in, n);
    CHECK_EQ_INT(c.counters.wire_bytes_in, n);
    ws_conn_free(&c);
  }
  /* Invalid UTF-8 arriving directly: 1007, as through ws_conn_recv. */
  pay[200000] = 0xFF;
  b.n = 0;
  put_frame(&b, true, 0, WS_OP_TEXT, true, pay, n);
  {
    ws_conn c;
    ws_event ev;
    size_t room;
    ws_conn_init(&c, SRV, NULL);
    CHECK_EQ_INT(ws_conn_recv(&c, b.d, hs, &ev), hs);
    size_t at = hs;
    do {
      uint8_t *dst = ws_conn_payload_room(&c, 65536, &room);
      CHECK(dst != NULL);
      if (!dst)
        break;
      memcpy(dst, b.d + at, room);
      CHECK(!ws_conn_payload_commit(&c, room, &ev) == (ev.type == WS_EV_ERROR));
      at += room;
    } while (ev.type == WS_EV_NONE && at < b.n);
    CHECK_EQ_INT(ev.type, WS_EV_ERROR);
    CHECK_EQ_INT(ev.code, 1007);
    CHECK(ws_conn_payload_room(&c, 65536, &room) == NULL); /* failed */
    ws_conn_free(&c);
  }
  /* Not inside an uncompressed data frame: no room. */
  {
    ws_conn c;
    size_t room;
    ws_conn_init(&c, SRV, NULL);
    CHECK(ws_conn_payload_room(&c, 65536, &room) == NULL);
    ws_conn_free(&c);
  }
  free(pay);
  free(b.d);
}

/* Direct writes: only the header is queued, for server frames only. */
static void test_send_header(void) {
  ws_conn c;
  ws_conn_init(&c, SRV, NULL);
  CHECK(ws_conn_plain_send(&c, 100000));
  CHECK_EQ_INT(ws_conn_send_header(&c, WS_OP_BINARY, 100000), WS_E_NONE);
  CHECK_OUT(&c.out, "\x82\x7F\x00\x00\x00\x00\x00\x01\x86\xA0", 10);
  CHECK_EQ_INT(ws_conn_send_header(&c, WS_OP_PING, 10), WS_E_PROTOCOL);
  ws_buf_clear(&c.out);
  CHECK_EQ_INT(ws_conn_close(&c, 1000, "", 0), WS_E_NONE);
  CHECK_EQ_INT(ws_conn_send_header(&c, WS_OP_TEXT, 100000), WS_E_CLOSED);
  ws_conn_free(&c);
  ws_conn_init(&c, CLI, NULL); /* a client masks: no direct write */
  CHECK(!ws_conn_plain_send(&c, 100000));
  CHECK_EQ_INT(ws_conn_send_header(&c, WS_OP_TEXT, 100000), WS_E_PROTOCOL);
  CHECK_EQ_INT(ws_buf_len(&c.out), 0);
  ws_conn_free(&c);
}

int main(void) {
  TEST_RUN(test_round_trips);
  TEST_RUN(test_every_split);
  TEST_RUN(test_fragmented_with_controls);
  TEST_RUN(test_fail_lengths);
  TEST_RUN(test_fail_rsv_opcode);
  TEST_RUN(test_fail_control_rules);
  TEST_RUN(test_fail_masking);
  TEST_RUN(test_fail_fragmentation);
  TEST_RUN(test_fail_limits);
  TEST_RUN(test_limits_before_allocation);
  TEST_RUN(test_direct_read);
  TEST_RUN(test_send_header);
  TEST_RUN(test_fail_utf8);
  TEST_RUN(test_utf8_fail_fast);
  TEST_RUN(test_fail_close_frames);
  TEST_RUN(test_fail_nomem);
  TEST_RUN(test_close_echo);
  TEST_RUN(test_client_close_echo_exact);
  TEST_RUN(test_ping_autopong);
  TEST_RUN(test_pong_coalescing);
  TEST_RUN(test_counters);
  TEST_RUN(test_deferred_fail_close);
  TEST_RUN(test_client_frames_exact);
  TEST_RUN(test_send_rules);
  TEST_RUN(test_msg_memory);
  return TEST_REPORT();
}
