/* test_deflate.c -- permessage-deflate (RFC 7692): negotiation tables
 * (offer -> answer, answer -> verdict) for every parameter and the invalid
 * forms, the RFC's example bytes, round trips between two ws_conn with and
 * without context takeover for window bits 8..15, fragmented compressed
 * messages both ways, the rules on RSV1, corrupt data, the inflated-size
 * limit against a deflate bomb, the threshold, and steady traffic that
 * allocates nothing.  `test_deflate --memory` prints what zlib holds per
 * connection for each window size. */
#include "test_harness.h"
#include "ws_conn.h"
#include "ws_deflate.h"
#include "ws_mask.h"

#include <stdint.h>
#include <stdlib.h>
#include <zlib.h>

static int det_random(void *ud, uint8_t *out, size_t n) {
  uint32_t *s = ud;
  for (size_t i = 0; i < n; i++) {
    *s = *s * 1664525u + 1013904223u;
    out[i] = (uint8_t)(*s >> 24);
  }
  return 0;
}

static ws_deflate_options dflt(void) {
  ws_deflate_options o;
  ws_deflate_options_init(&o);
  return o;
}

/* Options from a compact spec: no-context flags and window bits. */
static ws_deflate_options opts4(bool snct, bool cnct, uint8_t smwb,
                                uint8_t cmwb) {
  ws_deflate_options o = dflt();
  o.server_no_context_takeover = snct;
  o.client_no_context_takeover = cnct;
  o.server_max_window_bits = smwb;
  o.client_max_window_bits = cmwb;
  return o;
}

/* ---- negotiation -------------------------------------------------------- */

static void test_options(void) {
  ws_deflate_options o = dflt();
  CHECK(o.enabled);
  CHECK_EQ_INT(o.threshold, 1024);
  CHECK_EQ_INT(o.level, -1);
  CHECK_EQ_INT(o.mem_level, 8);
  CHECK(ws_deflate_options_check(&o) == NULL);
  o.server_max_window_bits = 7;
  CHECK(ws_deflate_options_check(&o) != NULL);
  o = dflt();
  o.client_max_window_bits = 16;
  CHECK(ws_deflate_options_check(&o) != NULL);
  o = dflt();
  o.level = 10;
  CHECK(ws_deflate_options_check(&o) != NULL);
  o = dflt();
  o.mem_level = 10;
  CHECK(ws_deflate_options_check(&o) != NULL);
  char buf[WS_DEFLATE_HEADER_MAX];
  o = dflt();
  o.level = -2;
  CHECK_EQ_INT(ws_deflate_offer(&o, buf, sizeof buf), WS_ERROR);
  o = dflt();
  CHECK_EQ_INT(ws_deflate_offer(&o, buf, 10), WS_ERROR); /* too small */
}

static void test_offer(void) {
  static const struct {
    bool snct, cnct;
    uint8_t smwb, cmwb;
    const char *want;
  } cases[] = {
      {0, 0, 0, 0, "permessage-deflate; client_max_window_bits"},
      {1, 0, 0, 0,
       "permessage-deflate; server_no_context_takeover; client_max_window_bits"},
      {0, 1, 0, 0,
       "permessage-deflate; client_no_context_takeover; client_max_window_bits"},
      {0, 0, 10, 0,
       "permessage-deflate; server_max_window_bits=10; client_max_window_bits"},
      {0, 0, 0, 9, "permessage-deflate; client_max_window_bits=9"},
      {1, 1, 8, 15,
       "permessage-deflate; server_no_context_takeover; "
       "client_no_context_takeover; server_max_window_bits=8; "
       "client_max_window_bits=15"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    ws_deflate_options o =
        opts4(cases[i].snct, cases[i].cnct, cases[i].smwb, cases[i].cmwb);
    char buf[WS_DEFLATE_HEADER_MAX];
    int n = ws_deflate_offer(&o, buf, sizeof buf);
    CHECK_EQ_INT(n, (int)strlen(cases[i].want));
    CHECK(strcmp(buf, cases[i].want) == 0);
    if (strcmp(buf, cases[i].want) != 0)
      fprintf(stderr, "  offer %zu: got '%s'\n", i, buf);
  }
}

typedef struct accept_case {
  bool snct, cnct; /* server options */
  uint8_t smwb, cmwb;
  const char *offer;
  int ret;
  const char *answer;
} accept_case;

#define PMD "permessage-deflate"

static const accept_case accept_cases[] = {
    /* plain and each parameter honoured */
    {0, 0, 0, 0, PMD, 1, PMD},
    {0, 0, 0, 0, PMD "; client_max_window_bits", 1, PMD},
    {0, 0, 0, 0, PMD "; client_max_window_bits=12", 1,
     PMD "; client_max_window_bits=12"},
    {0, 0, 0, 0, PMD "; server_no_context_takeover", 1,
     PMD "; server_no_context_takeover"},
    {0, 0, 0, 0, PMD "; client_no_context_takeover", 1,
     PMD "; client_no_context_takeover"},
    {0, 0, 0, 0, PMD "; server_max_window_bits=10", 1,
     PMD "; server_max_window_bits=10"},
    {0, 0, 0, 0, PMD "; server_max_window_bits=8", 1,
     PMD "; server_max_window_bits=8"},
    {0, 0, 0, 0,
     PMD "; server_no_context_takeover; client_no_context_takeover; "
         "server_max_window_bits=9; client_max_window_bits=11",
     1,
     PMD "; server_no_context_takeover; client_no_context_takeover; "
         "server_max_window_bits=9; client_max_window_bits=11"},
    /* the server's own choices */
    {1, 0, 0, 0, PMD, 1, PMD "; server_no_context_takeover"},
    {0, 1, 0, 0, PMD, 1, PMD "; client_no_context_takeover"},
    {0, 0, 11, 0, PMD, 1, PMD "; server_max_window_bits=11"},
    {0, 0, 9, 0, PMD "; server_max_window_bits=10", 1,
     PMD "; server_max_window_bits=9"},
    {0, 0, 12, 0, PMD "; server_max_window_bits=10", 1,
     PMD "; server_max_window_bits=10"},
    {0, 0, 0, 10, PMD "; client_max_window_bits", 1,
     PMD "; client_max_window_bits=10"},
    {0, 0, 0, 10, PMD "; client_max_window_bits=9", 1,
     PMD "; client_max_window_bits=9"},
    {0, 0, 0, 10, PMD "; client_max_window_bits=12", 1,
     PMD "; client_max_window_bits=10"},
    {0, 0, 0, 10, PMD, 0, ""}, /* cannot limit this client's window */
    {0, 0, 0, 15, PMD, 1, PMD},
    /* spelling: case, spaces, quoted values */
    {0, 0, 0, 0, "Permessage-Deflate ;  Server_No_Context_Takeover", 1,
     PMD "; server_no_context_takeover"},
    {0, 0, 0, 0, PMD "; client_max_window_bits=\"10\"", 1,
     PMD "; client_max_window_bits=10"},
    {0, 0, 0, 0, PMD "; server_max_window_bits = 10", 1,
     PMD "; server_max_window_bits=10"},
    /* invalid offers are declined ... */
    {0, 0, 0, 0, PMD "; client_max_window_bits=7", 0, ""},
    {0, 0, 0, 0, PMD "; client_max_window_bits=16", 0, ""},
    {0, 0, 0, 0, PMD "; client_max_window_bits=abc", 0, ""},
    {0, 0, 0, 0, PMD "; client_max_window_bits=08", 0, ""},
    {0, 0, 0, 0, PMD "; client_max_window_bits=\"1a\"", 0, ""},
    {0, 0, 0, 0, PMD "; client_max_window_bits=\"10", 0, ""},
    {0, 0, 0, 0, PMD "; client_max_window_bits=", 0, ""},
    {0, 0, 0, 0, PMD "; server_max_window_bits", 0, ""},
    {0, 0, 0, 0, PMD "; server_max_window_bits=100000000000", 0, ""},
    {0, 0, 0, 0, PMD "; server_no_context_takeover=1", 0, ""},
    {0, 0, 0, 0, PMD "; server_no_context_takeover; server_no_context_takeover",
     0, ""},
    {0, 0, 0, 0, PMD "; client_no_context_takeover; client_no_context_takeover",
     0, ""},
    {0, 0, 0, 0, PMD "; client_max_window_bits; client_max_window_bits=10", 0,
     ""},
    {0, 0, 0, 0, PMD "; server_max_window_bits=10; server_max_window_bits=10",
     0, ""},
    {0, 0, 0, 0, PMD "; foo", 0, ""},
    {0, 0, 0, 0, PMD "; mux=1", 0, ""},
    {0, 0, 0, 0, PMD ";", 0, ""},
    {0, 0, 0, 0, PMD " x", 0, ""},
    /* ... and the next offer is considered */
    {0, 0, 0, 0, PMD "; client_max_window_bits=7, " PMD, 1, PMD},
    {0, 0, 0, 0, PMD "; foo, " PMD "; server_max_window_bits=12", 1,
     PMD "; server_max_window_bits=12"},
    {0, 0, 0, 10, PMD ", " PMD "; client_max_window_bits", 1,
     PMD "; client_max_window_bits=10"},
    {0, 0, 0, 0, "x-webkit-deflate-frame, " PMD, 1, PMD},
    {0, 0, 0, 0, "foo; bar=\"a, " PMD "\"", 0, ""}, /* inside quotes */
    {0, 0, 0, 0, "x-foo", 0, ""},
    {0, 0, 0, 0, "", 0, ""},
};

static void test_accept(void) {
  for (size_t i = 0; i < sizeof accept_cases / sizeof accept_cases[0]; i++) {
    const accept_case *t = &accept_cases[i];
    ws_deflate_options o = opts4(t->snct, t->cnct, t->smwb, t->cmwb);
    ws_deflate_params p;
    char buf[WS_DEFLATE_HEADER_MAX];
    int r = ws_deflate_accept(t->offer, strlen(t->offer), &o, &p, buf,
                              sizeof buf);
    CHECK_EQ_INT(r, t->ret);
    CHECK(strcmp(buf, t->answer) == 0);
    if (r != t->ret || strcmp(buf, t->answer) != 0)
      fprintf(stderr, "  accept %zu: '%s' -> %d '%s'\n", i, t->offer, r, buf);
    /* The answer is what ws_deflate_format writes for p. */
    char again[WS_DEFLATE_HEADER_MAX];
    if (r == 1) {
      ws_deflate_format(&p, again, sizeof again);
      CHECK(strcmp(again, buf) == 0);
    }
  }
  /* Disabled, no offer, bad arguments. */
  ws_deflate_options o = dflt();
  ws_deflate_params p;
  char buf[WS_DEFLATE_HEADER_MAX];
  o.enabled = false;
  CHECK_EQ_INT(ws_deflate_accept(PMD, strlen(PMD), &o, &p, buf, sizeof buf), 0);
  o = dflt();
  CHECK_EQ_INT(ws_deflate_accept(NULL, 0, &o, &p, buf, sizeof buf), 0);
  CHECK_EQ_INT(ws_deflate_accept(PMD, strlen(PMD), &o, &p, buf, 20), WS_ERROR);
  o.client_max_window_bits = 3;
  CHECK_EQ_INT(ws_deflate_accept(PMD, strlen(PMD), &o, &p, buf, sizeof buf),
               WS_ERROR);
}

typedef struct check_case {
  const char *offer, *answer;
  int ret;
  const char *want; /* 1: the agreed params formatted; WS_ERROR: message */
} check_case;

static const check_case check_cases[] = {
    {PMD "; client_max_window_bits", PMD, 1, PMD},
    {PMD "; client_max_window_bits", "", 0, ""},
    {PMD "; client_max_window_bits", " , ", 0, ""},
    {PMD "; client_max_window_bits", PMD "; client_max_window_bits=10", 1,
     PMD "; client_max_window_bits=10"},
    {PMD "; client_max_window_bits", PMD "; server_no_context_takeover", 1,
     PMD "; server_no_context_takeover"}, /* the server may add it */
    {PMD "; client_max_window_bits", PMD "; client_no_context_takeover", 1,
     PMD "; client_no_context_takeover"},
    {PMD "; client_max_window_bits", PMD "; server_max_window_bits=9", 1,
     PMD "; server_max_window_bits=9"},
    {PMD "; server_max_window_bits=10", PMD "; server_max_window_bits=10", 1,
     PMD "; server_max_window_bits=10"},
    {PMD "; server_max_window_bits=10", PMD "; server_max_window_bits=8", 1,
     PMD "; server_max_window_bits=8"},
    {PMD "; client_max_window_bits=12", PMD "; client_max_window_bits=12", 1,
     PMD "; client_max_window_bits=12"},
    {PMD "; client_max_window_bits=12", PMD "; client_max_window_bits=8", 1,
     PMD "; client_max_window_bits=8"},
    {PMD "; server_no_context_takeover", PMD "; server_no_context_takeover",
     1, PMD "; server_no_context_takeover"},
    {PMD "; server_max_window_bits=10, " PMD, PMD, 1, PMD}, /* 2nd offer */
    {"PERMESSAGE-DEFLATE", "permessage-deflate", 1, PMD},
    /* answers that fail the connection */
    {PMD "; client_max_window_bits", "x-foo", WS_ERROR,
     "server answered with an extension that was not offered"},
    {PMD "; client_max_window_bits", PMD ", x-foo", WS_ERROR,
     "server answered with an extension that was not offered"},
    {PMD "; client_max_window_bits", PMD ", " PMD, WS_ERROR,
     "server answered permessage-deflate twice"},
    {"x-foo", PMD, WS_ERROR,
     "server answered permessage-deflate, which was not offered"},
    {PMD, PMD "; client_max_window_bits=10", WS_ERROR,
     "client_max_window_bits in the answer but not offered"},
    {PMD "; client_max_window_bits", PMD "; client_max_window_bits", WS_ERROR,
     "client_max_window_bits without a value in the answer"},
    {PMD "; client_max_window_bits=10", PMD "; client_max_window_bits=11",
     WS_ERROR, "client_max_window_bits larger than offered"},
    {PMD "; server_max_window_bits=10", PMD "; server_max_window_bits=11",
     WS_ERROR, "server_max_window_bits larger than offered"},
    {PMD "; server_max_window_bits=10", PMD, WS_ERROR,
     "server did not confirm server_max_window_bits"},
    {PMD "; server_no_context_takeover", PMD, WS_ERROR,
     "server did not accept server_no_context_takeover"},
    {PMD "; client_max_window_bits", PMD "; client_max_window_bits=7",
     WS_ERROR, "invalid client_max_window_bits (not 8..15)"},
    {PMD "; client_max_window_bits", PMD "; client_max_window_bits=16",
     WS_ERROR, "invalid client_max_window_bits (not 8..15)"},
    {PMD "; client_max_window_bits", PMD "; client_max_window_bits=abc",
     WS_ERROR, "invalid client_max_window_bits (not 8..15)"},
    {PMD "; client_max_window_bits", PMD "; server_max_window_bits=16",
     WS_ERROR, "invalid server_max_window_bits (not 8..15)"},
    {PMD "; client_max_window_bits", PMD "; server_max_window_bits",
     WS_ERROR, "server_max_window_bits without a value"},
    {PMD "; client_max_window_bits",
     PMD "; server_no_context_takeover; server_no_context_takeover", WS_ERROR,
     "repeated *_no_context_takeover parameter"},
    {PMD "; client_max_window_bits",
     PMD "; client_max_window_bits=9; client_max_window_bits=9", WS_ERROR,
     "repeated client_max_window_bits"},
    {PMD "; client_max_window_bits",
     PMD "; server_max_window_bits=9; server_max_window_bits=9", WS_ERROR,
     "repeated server_max_window_bits"},
    {PMD "; client_max_window_bits", PMD "; foo=1", WS_ERROR,
     "unknown permessage-deflate parameter"},
    {PMD "; client_max_window_bits", PMD "; client_no_context_takeover=x",
     WS_ERROR, "*_no_context_takeover parameter with a value"},
    {PMD "; client_max_window_bits", PMD ";;", WS_ERROR,
     "malformed permessage-deflate parameters"},
};

static void test_check_response(void) {
  for (size_t i = 0; i < sizeof check_cases / sizeof check_cases[0]; i++) {
    const check_case *t = &check_cases[i];
    ws_deflate_params p;
    const char *msg = "unset";
    int r = ws_deflate_check_response(t->answer, strlen(t->answer), t->offer,
                                      strlen(t->offer), &p, &msg);
    CHECK_EQ_INT(r, t->ret);
    char got[WS_DEFLATE_HEADER_MAX] = "";
    if (r == 1)
      ws_deflate_format(&p, got, sizeof got);
    const char *cmp = r == WS_ERROR ? (msg ? msg : "(null)") : got;
    CHECK(strcmp(cmp, t->want) == 0);
    if (r != t->ret || strcmp(cmp, t->want) != 0)
      fprintf(stderr, "  check %zu: '%s' / '%s' -> %d '%s'\n", i, t->offer,
              t->answer, r, cmp);
    if (r != WS_ERROR)
      CHECK(msg == NULL);
  }
  /* Every answer ws_deflate_accept writes passes the client's check for
   * the offer it answered, with the same parameters. */
  for (size_t i = 0; i < sizeof accept_cases / sizeof accept_cases[0]; i++) {
    const accept_case *t = &accept_cases[i];
    if (t->ret != 1)
      continue;
    ws_deflate_options o = opts4(t->snct, t->cnct, t->smwb, t->cmwb);
    ws_deflate_params ps, pc;
    char ans[WS_DEFLATE_HEADER_MAX];
    const char *msg;
    ws_deflate_accept(t->offer, strlen(t->offer), &o, &ps, ans, sizeof ans);
    CHECK_EQ_INT(ws_deflate_check_response(ans, strlen(ans), t->offer,
                                           strlen(t->offer), &pc, &msg),
                 1);
    CHECK(memcmp(&ps, &pc, sizeof ps) == 0);
  }
}

/* ---- two connections ---------------------------------------------------- */

typedef struct rec {
  ws_event_type type;
  uint16_t code;
  enum ws_error error;
  uint8_t *data;
  size_t len;
} rec;

#define MAX_EVENTS 128
typedef struct evlist {
  rec ev[MAX_EVENTS];
  int n;
} evlist;

static void evlist_free(evlist *l) {
  for (int i = 0; i < l->n; i++)
    free(l->ev[i].data);
  l->n = 0;
}

/* Keep a copy of ev in l; false when l is full. */
static bool record(evlist *l, const ws_event *ev) {
  CHECK(l->n < MAX_EVENTS);
  if (l->n == MAX_EVENTS)
    return false;
  rec *r = &l->ev[l->n++];
  r->type = ev->type;
  r->code = ev->code;
  r->error = ev->error;
  r->len = ev->len;
  r->data = malloc(ev->len + 1);
  if (ev->len)
    memcpy(r->data, ev->data, ev->len);
  r->data[ev->len] = 0;
  return true;
}

/* Feed data[0, len) (modifiable) until consumed, recording events. */
static void feed(ws_conn *c, uint8_t *data, size_t len, evlist *l) {
  size_t pos = 0;
  while (pos < len) {
    ws_event ev;
    size_t used = ws_conn_recv(c, data + pos, len - pos, &ev);
    CHECK(used <= len - pos);
    if (used > len - pos)
      return;
    pos += used;
    if (ev.type == WS_EV_NONE) {
      CHECK_EQ_INT(pos, len);
      return;
    }
    if (!record(l, &ev))
      return;
  }
}

/* Feed a copy of bytes in pieces of step bytes (0 = whole), each its own
 * allocation so a pointer kept into one would be caught. */
static void feed_steps(ws_conn *c, const uint8_t *bytes, size_t n, size_t step,
                       evlist *l) {
  if (!step)
    step = n ? n : 1;
  for (size_t at = 0; at < n; at += step) {
    size_t k = n - at < step ? n - at : step;
    uint8_t *piece = malloc(k);
    memcpy(piece, bytes + at, k);
    feed(c, piece, k, l);
    free(piece);
  }
}

/* Move everything queued on from->out into to, in pieces of step. */
static void transfer(ws_conn *from, ws_conn *to, size_t step, evlist *l) {
  size_t n = ws_buf_len(&from->out);
  if (!n)
    return;
  feed_steps(to, ws_buf_data(&from->out), n, step, l);
  ws_conn_out_consume(from, n);
}

typedef struct oframe {
  uint8_t op, rsv;
  bool fin;
  size_t len;
} oframe;

/* The frames queued on out, not consumed; -1 unless out ends on a frame. */
static int out_frames(const ws_buf *out, oframe *f, int max) {
  const uint8_t *p = ws_buf_len(out) ? ws_buf_data(out) : NULL;
  size_t n = ws_buf_len(out), pos = 0;
  int k = 0;
  while (pos < n && k < max) {
    ws_frame_header h;
    int r = ws_frame_header_decode(p + pos, n - pos, &h);
    if (r < 0 || h.payload_len > n - pos - (size_t)r)
      return -1;
    f[k].op = h.opcode;
    f[k].rsv = h.rsv;
    f[k].fin = h.fin;
    f[k].len = (size_t)h.payload_len;
    pos += (size_t)r + f[k].len;
    k++;
  }
  return pos == n ? k : -1;
}

typedef struct pair {
  ws_conn cli, srv;
  ws_deflate *dc, *ds;
  uint32_t seed;
} pair;

/* Negotiate like the handshake does (offer -> accept -> check), then make
 * both ends.  false when they did not agree. */
static bool pair_open(pair *p, const ws_deflate_options *co,
                      const ws_deflate_options *so, uint64_t max_payload) {
  char offer[WS_DEFLATE_HEADER_MAX], answer[WS_DEFLATE_HEADER_MAX];
  ws_deflate_params sp, cp;
  const char *msg;
  memset(p, 0, sizeof *p);
  p->seed = 7;
  CHECK(ws_deflate_offer(co, offer, sizeof offer) > 0);
  int r = ws_deflate_accept(offer, strlen(offer), so, &sp, answer, sizeof answer);
  CHECK_EQ_INT(r, 1);
  CHECK_EQ_INT(ws_deflate_check_response(answer, strlen(answer), offer,
                                         strlen(offer), &cp, &msg),
               1);
  if (r != 1)
    return false;
  p->dc = ws_deflate_new(WS_ROLE_CLIENT, &cp, co);
  p->ds = ws_deflate_new(WS_ROLE_SERVER, &sp, so);
  CHECK(p->dc && p->ds);
  ws_conn_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.max_payload = max_payload;
  cfg.random = det_random;
  cfg.random_ud = &p->seed;
  cfg.deflate = p->dc;
  ws_conn_init(&p->cli, WS_ROLE_CLIENT, &cfg);
  cfg.deflate = p->ds;
  ws_conn_init(&p->srv, WS_ROLE_SERVER, &cfg);
  return p->dc && p->ds;
}

static void pair_close(pair *p) {
  ws_conn_free(&p->cli);
  ws_conn_free(&p->srv);
  ws_deflate_free(p->dc);
  ws_deflate_free(p->ds);
}

static void fill_text(uint8_t *p, size_t n, unsigned salt) {
  static const char *const words[] = {"websocket ", "deflate ", "moon ",
                                      "\xC3\xA9t\xC3\xA9 ", "frame ",
                                      "\xE2\x82\xAC ", "lua "};
  size_t i = 0;
  unsigned k = salt;
  while (i < n) {
    const char *w = words[k++ % 7];
    size_t wl = strlen(w);
    if (wl > n - i) {
      memset(p + i, 'x', n - i);
      break;
    }
    memcpy(p + i, w, wl);
    i += wl;
  }
}

static void fill_random(uint8_t *p, size_t n, uint32_t s) {
  for (size_t i = 0; i < n; i++) {
    s = s * 1103515245u + 12345u;
    p[i] = (uint8_t)(s >> 16);
  }
}

/* One message from a to b: queued as one frame with RSV1 as expected,
 * delivered intact whether fed whole or in pieces of step bytes.
 * Returns the frame's payload size. */
static size_t one_message(ws_conn *a, ws_conn *b, uint8_t op,
                          const uint8_t *msg, size_t n, bool compressed,
                          size_t step) {
  CHECK_EQ_INT(ws_conn_send(a, op, msg, n), WS_E_NONE);
  oframe f[2];
  CHECK_EQ_INT(out_frames(&a->out, f, 2), 1);
  CHECK_EQ_INT(f[0].rsv, compressed ? WS_RSV1 : 0);
  CHECK(f[0].fin);
  evlist l = {0};
  transfer(a, b, step, &l);
  CHECK_EQ_INT(l.n, 1);
  if (l.n == 1) {
    CHECK_EQ_INT(l.ev[0].type, op == WS_OP_TEXT ? WS_EV_TEXT : WS_EV_BINARY);
    CHECK_EQ_INT(l.ev[0].len, n);
    if (l.ev[0].len == n && n)
      CHECK_MEM(l.ev[0].data, msg, n);
  }
  if (l.n > 0 && l.ev[0].type == WS_EV_ERROR) {
    fprintf(stderr, "  event: type %d code %u '%s'\n", l.ev[0].type,
            l.ev[0].code, (const char *)l.ev[0].data);
  }
  evlist_free(&l);
  return f[0].len;
}

/* ---- the RFC's examples ------------------------------------------------- */

static void test_rfc_examples(void) {
  ws_deflate_options o = dflt();
  o.threshold = 0;
  pair p;
  if (!pair_open(&p, &o, &o, 0))
    return;
  /* 7.2.3.1: "Hello" from a server, one unmasked frame. */
  static const uint8_t hello[] = {0xc1, 0x07, 0xf2, 0x48, 0xcd,
                                  0xc9, 0xc9, 0x07, 0x00};
  CHECK_EQ_INT(ws_conn_send(&p.srv, WS_OP_TEXT, "Hello", 5), WS_E_NONE);
  CHECK_EQ_INT(ws_buf_len(&p.srv.out), sizeof hello);
  if (ws_buf_len(&p.srv.out) == sizeof hello)
    CHECK_MEM(ws_buf_data(&p.srv.out), hello, sizeof hello);
  evlist l = {0};
  transfer(&p.srv, &p.cli, 0, &l);
  /* 7.2.3.2: the same again, with the LZ77 window from the first one. */
  static const uint8_t hello2[] = {0xc1, 0x05, 0xf2, 0x00, 0x11, 0x00, 0x00};
  CHECK_EQ_INT(ws_conn_send(&p.srv, WS_OP_TEXT, "Hello", 5), WS_E_NONE);
  CHECK_EQ_INT(ws_buf_len(&p.srv.out), sizeof hello2);
  if (ws_buf_len(&p.srv.out) == sizeof hello2)
    CHECK_MEM(ws_buf_data(&p.srv.out), hello2, sizeof hello2);
  transfer(&p.srv, &p.cli, 1, &l);
  /* 7.2.3.1 fragmented, 7.2.3.3 a stored block, 7.2.3.4 BFINAL set (the
   * stream ends; the window must survive it for the next message). */
  static const uint8_t frag[] = {0x41, 0x03, 0xf2, 0x48, 0xcd,
                                 0x80, 0x04, 0xc9, 0xc9, 0x07, 0x00};
  static const uint8_t stored[] = {0xc1, 0x0b, 0x00, 0x05, 0x00, 0xfa, 0xff,
                                   0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00};
  static const uint8_t bfinal[] = {0xc1, 0x08, 0xf3, 0x48, 0xcd,
                                   0xc9, 0xc9, 0x07, 0x00, 0x00};
  static const uint8_t after_bfinal[] = {0xc1, 0x05, 0xf2, 0x00,
                                         0x11, 0x00, 0x00};
  feed_steps(&p.cli, frag, sizeof frag, 0, &l);
  feed_steps(&p.cli, stored, sizeof stored, 3, &l);
  feed_steps(&p.cli, bfinal, sizeof bfinal, 0, &l);
  feed_steps(&p.cli, after_bfinal, sizeof after_bfinal, 0, &l);
  /* 7.2.3.6: an empty message compressed is 0x00; empty payload too. */
  static const uint8_t empty[] = {0xc1, 0x01, 0x00, 0xc2, 0x00};
  feed_steps(&p.cli, empty, sizeof empty, 0, &l);
  CHECK_EQ_INT(l.n, 8);
  for (int i = 0; i < l.n && i < 6; i++) {
    CHECK_EQ_INT(l.ev[i].type, WS_EV_TEXT);
    CHECK(l.ev[i].len == 5 && memcmp(l.ev[i].data, "Hello", 5) == 0);
  }
  if (l.n == 8) {
    CHECK(l.ev[6].type == WS_EV_TEXT && l.ev[6].len == 0);
    CHECK(l.ev[7].type == WS_EV_BINARY && l.ev[7].len == 0);
  }
  evlist_free(&l);
  /* Our own empty compressed message is 0x00 too, fresh or with context. */
  for (int k = 0; k < 2; k++) {
    ws_buf out = WS_BUF_INIT;
    size_t n;
    CHECK_EQ_INT(ws_deflate_compress(k ? p.ds : p.dc, "", 0, true, &out, &n),
                 WS_E_NONE);
    CHECK(n == 1 && ws_buf_len(&out) == 1 && ws_buf_data(&out)[0] == 0);
    ws_buf_free(&out);
  }
  pair_close(&p);
}

/* ---- round trips -------------------------------------------------------- */

/* Messages of many sizes both ways, three rounds (fed whole, in 4093-byte
 * reads, small ones byte by byte).  small: text must shrink to a quarter
 * (not with level 0, nor with window 8's run-length-only compression). */
static void round_trips(const ws_deflate_options *co,
                        const ws_deflate_options *so, bool small,
                        const char *what) {
  pair p;
  if (!pair_open(&p, co, so, 0))
    return;
  static const size_t sizes[] = {1, 5, 200, 1023, 1024, 5000, 70000, 300000};
  size_t nsizes = sizeof sizes / sizeof sizes[0];
  uint8_t *buf = malloc(300000);
  int failed_before = test_case_failed_;
  for (int round = 0; round < 3; round++) {
    for (size_t i = 0; i < nsizes; i++) {
      size_t n = sizes[i];
      bool text = (i + (size_t)round) % 2 == 0;
      if (text)
        fill_text(buf, n, (unsigned)(i + (size_t)round));
      else if (i % 3 == 0)
        fill_random(buf, n, (uint32_t)(i * 31 + (size_t)round));
      else
        fill_text(buf, n, (unsigned)i);
      uint8_t op = text ? WS_OP_TEXT : WS_OP_BINARY;
      size_t step = round == 1 ? 4093 : round == 2 && n < 2000 ? 1 : 0;
      size_t zc = one_message(&p.cli, &p.srv, op, buf, n,
                              n >= co->threshold, step);
      size_t zs = one_message(&p.srv, &p.cli, op, buf, n,
                              n >= so->threshold, step);
      /* Text compresses well (random bytes do not). */
      if (small && text && n >= 5000) {
        CHECK(zc < n / 4);
        CHECK(zs < n / 4);
      }
    }
  }
  if (test_case_failed_ && !failed_before)
    fprintf(stderr, "  (round trips: %s)\n", what);
  free(buf);
  pair_close(&p);
}

static void test_round_trips(void) {
  ws_deflate_options c = dflt(), s = dflt();
  round_trips(&c, &s, true, "defaults");
  c = opts4(true, true, 0, 0);
  round_trips(&c, &s, true, "client asks for no context takeover both ways");
  c = dflt();
  s = opts4(true, true, 0, 0);
  round_trips(&c, &s, true, "server imposes no context takeover both ways");
  for (uint8_t w = 8; w <= 15; w++) {
    c = opts4(false, false, w, 0);
    s = opts4(false, false, 0, w);
    round_trips(&c, &s, w > 8, "window bits");
    c = opts4(false, false, 0, w);
    s = opts4(false, false, w, 0);
    s.mem_level = w - 6; /* 2..9 */
    round_trips(&c, &s, w > 8, "window bits (other way)");
  }
  c = dflt();
  s = dflt();
  c.level = 1;
  s.level = 9;
  c.threshold = s.threshold = 0;
  round_trips(&c, &s, true, "levels 1 and 9, threshold 0");
  c.level = s.level = 0;
  round_trips(&c, &s, false, "level 0 (stored blocks)");
}

/* With context takeover a repeated message costs almost nothing; without,
 * as much as the first time. */
static void test_context_takeover(void) {
  uint8_t msg[4096];
  fill_random(msg, sizeof msg, 3);
  for (size_t i = 0; i < sizeof msg; i++) /* letters: no long repeats */
    msg[i] = (uint8_t)('a' + msg[i] % 26);
  for (int nct = 0; nct < 2; nct++) {
    ws_deflate_options c = opts4(nct, nct, 0, 0), s = dflt();
    pair p;
    if (!pair_open(&p, &c, &s, 0))
      return;
    size_t first = one_message(&p.cli, &p.srv, WS_OP_TEXT, msg, sizeof msg,
                               true, 0);
    size_t first_s = one_message(&p.srv, &p.cli, WS_OP_TEXT, msg, sizeof msg,
                                 true, 0);
    for (int i = 0; i < 3; i++) {
      size_t again = one_message(&p.cli, &p.srv, WS_OP_TEXT, msg, sizeof msg,
                                 true, 0);
      size_t again_s = one_message(&p.srv, &p.cli, WS_OP_TEXT, msg,
                                   sizeof msg, true, 0);
      if (nct) {
        CHECK_EQ_INT(again, first);
        CHECK_EQ_INT(again_s, first_s);
      } else {
        CHECK(first > 2000 && again < 100);
        CHECK(first_s > 2000 && again_s < 100);
      }
    }
    pair_close(&p);
  }
}

/* Fragmented compressed messages both ways: RSV1 on the first frame only,
 * pings between the pieces, empty pieces (also a last one). */
static void test_fragmented(void) {
  ws_deflate_options o = dflt();
  static const char *const pieces[] = {"Hello, ", "", "fragmented ",
                                       "compressed world", ""};
  static const bool take_over[] = {false, true};
  for (int t = 0; t < 2; t++) {
    ws_deflate_options c = opts4(!take_over[t], !take_over[t], 0, 0);
    pair p;
    if (!pair_open(&p, &c, &o, 0))
      return;
    for (int dir = 0; dir < 2; dir++) {
      ws_conn *a = dir ? &p.srv : &p.cli, *b = dir ? &p.cli : &p.srv;
      for (int round = 0; round < 3; round++) {
        size_t np = round == 2 ? 4 : 5; /* round 2 ends on a full piece */
        for (size_t i = 0; i < np; i++) {
          CHECK_EQ_INT(ws_conn_send_fragment(a, WS_OP_TEXT, pieces[i],
                                             strlen(pieces[i]), i == np - 1),
                       WS_E_NONE);
          if (i == 1)
            CHECK_EQ_INT(ws_conn_send(a, WS_OP_PING, "p", 1), WS_E_NONE);
        }
        oframe f[8];
        int nf = out_frames(&a->out, f, 8);
        CHECK_EQ_INT(nf, (int)np + 1);
        for (int i = 0, data = 0; i < nf; i++) {
          if (f[i].op == WS_OP_PING) {
            CHECK_EQ_INT(f[i].rsv, 0);
            continue;
          }
          CHECK_EQ_INT(f[i].rsv, data == 0 ? WS_RSV1 : 0);
          CHECK_EQ_INT(f[i].op, data == 0 ? WS_OP_TEXT : WS_OP_CONTINUATION);
          data++;
        }
        evlist l = {0};
        transfer(a, b, round == 1 ? 1 : 0, &l);
        ws_conn_out_consume(b, ws_buf_len(&b->out)); /* the pong */
        CHECK_EQ_INT(l.n, 2);
        if (l.n == 2) {
          CHECK_EQ_INT(l.ev[0].type, WS_EV_PING);
          CHECK_EQ_INT(l.ev[1].type, WS_EV_TEXT);
          const char *want = "Hello, fragmented compressed world";
          CHECK(l.ev[1].len == strlen(want) &&
                memcmp(l.ev[1].data, want, strlen(want)) == 0);
        }
        evlist_free(&l);
        /* A whole message after it still decodes (streams in step). */
        uint8_t big[3000];
        fill_text(big, sizeof big, (unsigned)round);
        one_message(a, b, WS_OP_BINARY, big, sizeof big, true, 0);
      }
    }
    pair_close(&p);
  }
  /* A large message sent in 1000-byte pieces. */
  pair p;
  if (!pair_open(&p, &o, &o, 0))
    return;
  size_t n = 200000;
  uint8_t *m = malloc(n);
  fill_text(m, n, 9);
  CHECK_EQ_INT(ws_conn_send_fragment(&p.cli, WS_OP_BINARY, NULL, 0, false),
               WS_E_NONE);
  for (size_t at = 0; at < n; at += 1000)
    CHECK_EQ_INT(ws_conn_send_fragment(&p.cli, WS_OP_BINARY, m + at, 1000,
                                       at + 1000 == n),
                 WS_E_NONE);
  evlist l = {0};
  transfer(&p.cli, &p.srv, 777, &l);
  CHECK(l.n == 1 && l.ev[0].type == WS_EV_BINARY && l.ev[0].len == n &&
        memcmp(l.ev[0].data, m, n) == 0);
  evlist_free(&l);
  free(m);
  pair_close(&p);
}

/* ---- receive rules ------------------------------------------------------ */

/* A frame from the peer of role `to` (masked when `to` is the server). */
static size_t put_frame(uint8_t *out, ws_role to, bool fin, uint8_t rsv,
                        uint8_t op, const void *payload, size_t len) {
  static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
  bool masked = to == WS_ROLE_SERVER;
  size_t hs = ws_frame_header_encode(out, fin, rsv, op, masked ? key : NULL,
                                     len);
  if (len)
    memcpy(out + hs, payload, len);
  if (masked)
    ws_mask_inplace(out + hs, len, key, 0);
  return hs + len;
}

/* Feed frames to a fresh compressed conn of role; expect a failure with
 * code, error name and message. */
static void expect_fail(ws_role role, const uint8_t *bytes, size_t n,
                        uint16_t code, enum ws_error err, const char *why,
                        uint64_t max_payload) {
  ws_deflate_options o = dflt();
  ws_deflate_params pa = {0};
  ws_deflate *d = ws_deflate_new(role, &pa, &o);
  ws_conn_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.deflate = d;
  cfg.max_payload = max_payload;
  for (size_t step = 0; step <= 1; step++) {
    ws_conn c;
    ws_conn_init(&c, role, &cfg);
    evlist l = {0};
    feed_steps(&c, bytes, n, step, &l);
    CHECK(l.n >= 1);
    if (l.n >= 1) {
      rec *r = &l.ev[l.n - 1];
      CHECK_EQ_INT(r->type, WS_EV_ERROR);
      CHECK_EQ_INT(r->code, code);
      CHECK_EQ_INT(r->error, err);
      CHECK(strcmp((const char *)r->data, why) == 0);
      if (strcmp((const char *)r->data, why) != 0)
        fprintf(stderr, "  got '%s', want '%s'\n", (const char *)r->data, why);
    }
    CHECK(c.failed && c.close_sent);
    evlist_free(&l);
    ws_conn_free(&c);
    ws_deflate_free(d);
    d = ws_deflate_new(role, &pa, &o);
    cfg.deflate = d;
  }
  ws_deflate_free(d);
}

static void test_rsv_rules(void) {
  uint8_t b[64];
  size_t n;
  /* RSV1 on a continuation frame. */
  n = put_frame(b, WS_ROLE_SERVER, false, WS_RSV1, WS_OP_TEXT, "\xf2\x48", 2);
  n += put_frame(b + n, WS_ROLE_SERVER, true, WS_RSV1, WS_OP_CONTINUATION,
                 "\xcd\xc9\xc9\x07\x00", 5);
  expect_fail(WS_ROLE_SERVER, b, n, 1002, WS_E_PROTOCOL,
              "RSV1 set on a continuation frame", 0);
  /* RSV1 on control frames. */
  n = put_frame(b, WS_ROLE_CLIENT, true, WS_RSV1, WS_OP_PING, "x", 1);
  expect_fail(WS_ROLE_CLIENT, b, n, 1002, WS_E_PROTOCOL,
              "RSV1 set on a control frame", 0);
  n = put_frame(b, WS_ROLE_SERVER, true, WS_RSV1, WS_OP_CLOSE, "", 0);
  expect_fail(WS_ROLE_SERVER, b, n, 1002, WS_E_PROTOCOL,
              "RSV1 set on a control frame", 0);
  /* ... even between the fragments of a compressed message. */
  n = put_frame(b, WS_ROLE_SERVER, false, WS_RSV1, WS_OP_TEXT, "\xf2\x48", 2);
  n += put_frame(b + n, WS_ROLE_SERVER, true, WS_RSV1, WS_OP_PONG, "", 0);
  expect_fail(WS_ROLE_SERVER, b, n, 1002, WS_E_PROTOCOL,
              "RSV1 set on a control frame", 0);
  /* RSV2/RSV3 stay refused with compression. */
  n = put_frame(b, WS_ROLE_SERVER, true, WS_RSV1 | WS_RSV2, WS_OP_TEXT, "x", 1);
  expect_fail(WS_ROLE_SERVER, b, n, 1002, WS_E_PROTOCOL,
              "reserved bit RSV2 set without an extension", 0);
  /* Without compression RSV1 is refused as before. */
  ws_conn c;
  ws_conn_init(&c, WS_ROLE_CLIENT, NULL);
  n = put_frame(b, WS_ROLE_CLIENT, true, WS_RSV1, WS_OP_TEXT,
                "\xf2\x48\xcd\xc9\xc9\x07\x00", 7);
  evlist l = {0};
  feed_steps(&c, b, n, 0, &l);
  CHECK(l.n == 1 && l.ev[0].code == 1002 &&
        strcmp((const char *)l.ev[0].data,
               "reserved bit RSV1 set without an extension") == 0);
  evlist_free(&l);
  ws_conn_free(&c);
  /* A plain message on a compressed connection is taken as is, zero-copy
   * rules unchanged. */
  ws_deflate_options o = dflt();
  ws_deflate_params pa = {0};
  ws_deflate *d = ws_deflate_new(WS_ROLE_CLIENT, &pa, &o);
  ws_conn_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.deflate = d;
  ws_conn_init(&c, WS_ROLE_CLIENT, &cfg);
  n = put_frame(b, WS_ROLE_CLIENT, true, 0, WS_OP_TEXT, "plain", 5);
  n += put_frame(b + n, WS_ROLE_CLIENT, true, WS_RSV1, WS_OP_TEXT,
                 "\xf2\x48\xcd\xc9\xc9\x07\x00", 7);
  feed_steps(&c, b, n, 0, &l);
  CHECK(l.n == 2 && l.ev[0].len == 5 && memcmp(l.ev[0].data, "plain", 5) == 0 &&
        l.ev[1].len == 5 && memcmp(l.ev[1].data, "Hello", 5) == 0);
  evlist_free(&l);
  ws_conn_free(&c);
  ws_deflate_free(d);
}

static void test_corrupt(void) {
  uint8_t b[64];
  size_t n;
  /* BTYPE 11 is reserved. */
  n = put_frame(b, WS_ROLE_SERVER, true, WS_RSV1, WS_OP_BINARY,
                "\xff\xff\xff", 3);
  expect_fail(WS_ROLE_SERVER, b, n, 1007, WS_E_INVALID_DATA,
              "invalid compressed data: invalid block type", 0);
  /* A distance before the start of the stream. */
  n = put_frame(b, WS_ROLE_CLIENT, true, WS_RSV1, WS_OP_TEXT,
                "\xf2\x00\x11\x00\x00", 5);
  expect_fail(WS_ROLE_CLIENT, b, n, 1007, WS_E_INVALID_DATA,
              "invalid compressed data: invalid distance too far back", 0);
  /* A stored block that claims more bytes than the message has. */
  n = put_frame(b, WS_ROLE_CLIENT, true, WS_RSV1, WS_OP_TEXT,
                "\x00\x0a\x00\xf5\xff\x48\x65", 7);
  expect_fail(WS_ROLE_CLIENT, b, n, 1007, WS_E_INVALID_DATA,
              "invalid compressed data: message ends inside a deflate block",
              0);
  /* Stored LEN/NLEN that do not match. */
  n = put_frame(b, WS_ROLE_CLIENT, true, WS_RSV1, WS_OP_TEXT,
                "\x00\x05\x00\xfb\xff\x48\x65\x6c\x6c\x6f", 10);
  expect_fail(WS_ROLE_CLIENT, b, n, 1007, WS_E_INVALID_DATA,
              "invalid compressed data: invalid stored block lengths", 0);
  /* Inflated text that is not UTF-8: stored "\xff" in a text message. */
  n = put_frame(b, WS_ROLE_SERVER, true, WS_RSV1, WS_OP_TEXT,
                "\x00\x01\x00\xfe\xff\xff\x00", 7);
  expect_fail(WS_ROLE_SERVER, b, n, 1007, WS_E_INVALID_DATA,
              "invalid UTF-8 in text message", 0);
  /* Text cut inside a character: stored "\xc3". */
  n = put_frame(b, WS_ROLE_SERVER, true, WS_RSV1, WS_OP_TEXT,
                "\x00\x01\x00\xfe\xff\xc3\x00", 7);
  expect_fail(WS_ROLE_SERVER, b, n, 1007, WS_E_INVALID_DATA,
              "text message ends inside a UTF-8 sequence", 0);
}

/* The limit applies to the inflated size, exactly. */
static void test_max_payload(void) {
  size_t max = 10000;
  uint8_t *m = malloc(max + 1);
  fill_text(m, max + 1, 1);
  ws_deflate_options o = dflt();
  pair p;
  if (!pair_open(&p, &o, &o, max))
    return;
  size_t z = one_message(&p.cli, &p.srv, WS_OP_TEXT, m, max, true, 0);
  CHECK(z < max / 4); /* small on the wire, still measured inflated */
  CHECK_EQ_INT(ws_conn_send(&p.cli, WS_OP_TEXT, m, max + 1), WS_E_NONE);
  evlist l = {0};
  transfer(&p.cli, &p.srv, 0, &l);
  CHECK(l.n == 1 && l.ev[0].type == WS_EV_ERROR && l.ev[0].code == 1009 &&
        l.ev[0].error == WS_E_TOO_BIG &&
        strcmp((const char *)l.ev[0].data,
               "payload exceeds max_payload 10000 bytes once decompressed") == 0);
  evlist_free(&l);
  /* Fragmented: the limit counts every piece. */
  pair_close(&p);
  if (!pair_open(&p, &o, &o, max))
    return;
  CHECK_EQ_INT(ws_conn_send_fragment(&p.srv, WS_OP_BINARY, m, max / 2, false),
               WS_E_NONE);
  CHECK_EQ_INT(ws_conn_send_fragment(&p.srv, WS_OP_BINARY, m, max / 2 + 1,
                                     true),
               WS_E_NONE);
  transfer(&p.srv, &p.cli, 100, &l);
  CHECK(l.n == 1 && l.ev[0].type == WS_EV_ERROR && l.ev[0].code == 1009);
  evlist_free(&l);
  free(m);
  pair_close(&p);
}

/* Compressed zeros, chunk bytes at a time: after the first chunk every
 * chunk compresses to the same bytes, so the stream for chunks * chunk
 * bytes is built from two of them.  The final tail is removed. */
static uint8_t *zero_bomb(size_t chunk, size_t chunks, size_t *len) {
  z_stream z;
  memset(&z, 0, sizeof z);
  CHECK_EQ_INT(deflateInit2(&z, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY),
               Z_OK);
  uint8_t *zeros = calloc(1, chunk);
  uint8_t *c[3];
  size_t cn[3];
  for (int i = 0; i < 3; i++) {
    c[i] = malloc(chunk);
    z.next_in = zeros;
    z.avail_in = (uInt)chunk;
    z.next_out = c[i];
    z.avail_out = (uInt)chunk;
    CHECK_EQ_INT(deflate(&z, Z_SYNC_FLUSH), Z_OK);
    CHECK(z.avail_out > 0 && z.avail_in == 0);
    cn[i] = chunk - z.avail_out;
  }
  CHECK(cn[1] == cn[2] && memcmp(c[1], c[2], cn[1]) == 0);
  *len = cn[0] + cn[1] * (chunks - 1) - 4;
  uint8_t *out = malloc(*len + 4);
  memcpy(out, c[0], cn[0]);
  for (size_t i = 1; i < chunks; i++)
    memcpy(out + cn[0] + cn[1] * (i - 1), c[1], cn[1]);
  deflateEnd(&z);
  for (int i = 0; i < 3; i++)
    free(c[i]);
  free(zeros);
  return out;
}

/* A server conn c with permessage-deflate (the defaults, agreed without
 * parameters) and max_payload; returns its ws_deflate, to free after c. */
static ws_deflate *deflate_server(ws_conn *c, uint64_t max_payload) {
  ws_deflate_options o = dflt();
  ws_deflate_params pa = {0};
  ws_deflate *d = ws_deflate_new(WS_ROLE_SERVER, &pa, &o);
  ws_conn_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.deflate = d;
  cfg.max_payload = max_payload;
  ws_conn_init(c, WS_ROLE_SERVER, &cfg);
  return d;
}

/* About 1 MiB on the wire that inflates to 1 GiB, against max_payload
 * 16 MiB: 1009, and the message buffer never grows past the limit. */
static void test_bomb(void) {
  size_t max = (size_t)16 << 20, len;
  uint8_t *z = zero_bomb((size_t)1 << 20, 1024, &len);
  CHECK(len < ((size_t)1 << 20) + 65536); /* about 1 MiB */
  ws_deflate_options o = dflt();
  ws_deflate_params pa = {0};
  ws_deflate *d = ws_deflate_new(WS_ROLE_SERVER, &pa, &o);
  ws_buf out = WS_BUF_INIT;
  const char *why = NULL;
  CHECK_EQ_INT(ws_deflate_decompress(d, z, len, true, &out, max, &why),
               WS_E_TOO_BIG);
  CHECK(why && strcmp(why, "message over max_payload (decompressed)") == 0);
  CHECK(out.cap <= max + 1);
  CHECK_EQ_INT(ws_buf_len(&out), max + 1);
  ws_buf_free(&out);
  ws_deflate_free(d);
  /* Through a connection, as one masked frame from a client. */
  ws_conn c;
  d = deflate_server(&c, max);
  uint8_t *frame = malloc(len + 14);
  size_t fn = put_frame(frame, WS_ROLE_SERVER, true, WS_RSV1, WS_OP_BINARY, z,
                        len);
  /* Most of it first: the buffer grows with the output, not the header. */
  evlist l = {0};
  size_t part = fn / 128; /* ~8 MiB of zeros: under the limit */
  feed(&c, frame, part, &l);
  CHECK_EQ_INT(l.n, 0);
  CHECK(c.msg.cap <= max + 1 && ws_buf_len(&c.msg) > max / 4);
  feed(&c, frame + part, fn - part, &l);
  CHECK(l.n == 1 && l.ev[0].type == WS_EV_ERROR && l.ev[0].code == 1009 &&
        l.ev[0].error == WS_E_TOO_BIG);
  CHECK(c.failed && c.msg.cap == 0);
  evlist_free(&l);
  ws_conn_free(&c);
  ws_deflate_free(d);
  free(frame);
  free(z);
}

/* The counters: compressed and plain messages both ways. */
static void test_counters(void) {
  ws_deflate_options c = dflt(), so = dflt();
  pair p;
  if (!pair_open(&p, &c, &so, 0))
    return;
  uint8_t msg[5000];
  fill_text(msg, sizeof msg, 3);
  size_t z = one_message(&p.cli, &p.srv, WS_OP_TEXT, msg, sizeof msg, true, 0);
  one_message(&p.cli, &p.srv, WS_OP_BINARY, msg, 10, false, 0); /* threshold */
  const ws_conn_counters *tx = &p.cli.counters, *rx = &p.srv.counters;
  CHECK_EQ_INT(tx->messages_out, 2);
  CHECK_EQ_INT(tx->bytes_out, sizeof msg + 10);
  CHECK_EQ_INT(tx->wire_bytes_out, z + 10);
  CHECK_EQ_INT(rx->messages_in, 2);
  CHECK_EQ_INT(rx->bytes_in, sizeof msg + 10);
  CHECK_EQ_INT(rx->wire_bytes_in, z + 10);
  CHECK_EQ_INT(rx->inflated_in, sizeof msg);
  CHECK_EQ_INT(tx->messages_in + rx->messages_out, 0);
  pair_close(&p);
}

/* ---- bounded work ------------------------------------------------------- */

/* Feed data[0, len) with a budget of `budget` inflated bytes per call,
 * renewed after every WS_EV_BUDGET, recording events; *calls counts the
 * calls, and no call may grow the message by more than the budget. */
static void feed_budget(ws_conn *c, uint8_t *data, size_t len, size_t budget,
                        evlist *l, size_t *calls) {
  size_t pos = 0;
  for (;;) {
    ws_event ev;
    size_t before = ws_buf_len(&c->msg);
    ws_conn_set_budget(c, budget);
    size_t used = ws_conn_recv(c, data + pos, len - pos, &ev);
    (*calls)++;
    CHECK(used <= len - pos);
    if (used > len - pos)
      return;
    pos += used;
    size_t after = ev.type == WS_EV_TEXT || ev.type == WS_EV_BINARY
                       ? ev.len
                       : ws_buf_len(&c->msg);
    CHECK(after < before || after - before <= budget);
    if (ev.type == WS_EV_BUDGET) {
      CHECK(c->paused);
      continue;
    }
    CHECK(!c->paused);
    if (ev.type == WS_EV_NONE) {
      CHECK_EQ_INT(pos, len);
      return;
    }
    if (!record(l, &ev) || pos == len)
      return;
  }
}

/* A bomb costs one budget per call: 1009 comes after max / budget calls,
 * none of which inflated more than the budget. */
static void test_bomb_budget(void) {
  size_t max = (size_t)16 << 20, budget = 256 * 1024, len, calls = 0;
  uint8_t *z = zero_bomb((size_t)1 << 20, 64, &len);
  ws_conn c;
  ws_deflate *d = deflate_server(&c, max);
  uint8_t *frame = malloc(len + 14);
  size_t fn = put_frame(frame, WS_ROLE_SERVER, true, WS_RSV1, WS_OP_TEXT, z,
                        len);
  evlist l = {0};
  feed_budget(&c, frame, fn, budget, &l, &calls);
  CHECK(l.n == 1 && l.ev[0].type == WS_EV_ERROR && l.ev[0].code == 1009);
  CHECK(calls >= max / budget && calls <= max / budget + 2);
  evlist_free(&l);
  ws_conn_free(&c);
  ws_deflate_free(d);
  free(frame);
  free(z);
}

/* Stopping anywhere changes nothing: messages of every kind, both ways,
 * with and without context takeover, fed whole or in pieces, arrive
 * intact under budgets from 1 byte up, fragmented ones too. */
static void test_budget_resumes(void) {
  static const size_t budgets[] = {1, 7, 4096, 100000};
  static const size_t sizes[] = {0, 1, 300, 70000};
  static const size_t steps[] = {0, 1, 977};
  size_t big = 70000;
  uint8_t *msg = malloc(big);
  for (int t = 0; t < 2; t++) {
    ws_deflate_options c = opts4(t, t, 0, 0), so = dflt();
    c.threshold = so.threshold = 0;
    for (size_t b = 0; b < sizeof budgets / sizeof *budgets; b++)
      for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++)
        for (size_t st = 0; st < sizeof steps / sizeof *steps; st++) {
          size_t n = sizes[k];
          if (steps[st] == 1 && (n > 300 || budgets[b] < 7))
            continue; /* byte by byte: enough with small messages */
          pair p;
          if (!pair_open(&p, &c, &so, 0))
            break;
          for (int dir = 0; dir < 2; dir++) {
            ws_conn *a = dir ? &p.srv : &p.cli, *r = dir ? &p.cli : &p.srv;
            for (int kind = 0; kind < 3; kind++) {
              uint8_t op = kind == 1 ? WS_OP_BINARY : WS_OP_TEXT;
              if (kind == 0)
                fill_text(msg, n, (unsigned)k);
              else if (kind == 1)
                fill_random(msg, n, (uint32_t)k);
              else
                memset(msg, 'z', n);
              if (kind == 2 && n > 2) /* in three fragments, a ping between */
                CHECK(ws_conn_send_fragment(a, op, msg, n / 3, false) == 0 &&
                      ws_conn_send(a, WS_OP_PING, "p", 1) == 0 &&
                      ws_conn_send_fragment(a, op, msg + n / 3, n / 3,
                                            false) == 0 &&
                      ws_conn_send_fragment(a, op, msg + 2 * (n / 3),
                                            n - 2 * (n / 3), true) == 0);
              else
                CHECK_EQ_INT(ws_conn_send(a, op, msg, n), WS_E_NONE);
              size_t total = ws_buf_len(&a->out), calls = 0;
              size_t step = steps[st] ? steps[st] : total;
              evlist l = {0};
              for (size_t at = 0; at < total; at += step) {
                size_t m = total - at < step ? total - at : step;
                uint8_t *piece = malloc(m);
                memcpy(piece, ws_buf_data(&a->out) + at, m);
                feed_budget(r, piece, m, budgets[b], &l, &calls);
                free(piece);
              }
              ws_conn_out_consume(a, total);
              ws_conn_out_consume(r, ws_buf_len(&r->out)); /* a pong */
              CHECK(l.n >= 1);
              rec *e = l.n ? &l.ev[l.n - 1] : NULL;
              CHECK(e && e->type == (op == WS_OP_TEXT ? WS_EV_TEXT
                                                      : WS_EV_BINARY));
              CHECK(e && e->len == n && (n == 0 || memcmp(e->data, msg, n) == 0));
              evlist_free(&l);
            }
          }
          pair_close(&p);
        }
  }
  free(msg);
}

/* ---- sending ------------------------------------------------------------ */

static void test_threshold(void) {
  uint8_t m[3000];
  fill_text(m, sizeof m, 5);
  ws_deflate_options o = dflt();
  pair p;
  if (!pair_open(&p, &o, &o, 0))
    return;
  one_message(&p.cli, &p.srv, WS_OP_BINARY, m, 1023, false, 0);
  one_message(&p.cli, &p.srv, WS_OP_BINARY, m, 1024, true, 0);
  one_message(&p.srv, &p.cli, WS_OP_BINARY, m, 1023, false, 0);
  one_message(&p.srv, &p.cli, WS_OP_BINARY, m, 3000, true, 0);
  one_message(&p.srv, &p.cli, WS_OP_BINARY, m, 0, false, 0);
  pair_close(&p);
  o.threshold = 0;
  if (!pair_open(&p, &o, &o, 0))
    return;
  one_message(&p.cli, &p.srv, WS_OP_TEXT, (const uint8_t *)"a", 1, true, 0);
  one_message(&p.cli, &p.srv, WS_OP_TEXT, m, 0, false, 0); /* never empty */
  CHECK(ws_deflate_wants(p.dc, 1));
  CHECK(!ws_deflate_wants(p.dc, 0));
  CHECK(!ws_deflate_wants(NULL, 100));
  /* Control frames never are. */
  CHECK_EQ_INT(ws_conn_send(&p.cli, WS_OP_PING, "ping ping ping", 14),
               WS_E_NONE);
  CHECK_EQ_INT(ws_conn_close(&p.cli, 1000, "bye bye bye", 11), WS_E_NONE);
  oframe f[2];
  CHECK_EQ_INT(out_frames(&p.cli.out, f, 2), 2);
  CHECK(f[0].rsv == 0 && f[0].len == 14 && f[1].rsv == 0 && f[1].len == 13);
  pair_close(&p);
}

/* After warming up, traffic allocates nothing: zlib makes no allocation
 * and the buffers keep their capacity. */
static void test_steady_state(void) {
  for (int nct = 0; nct < 2; nct++) {
    ws_deflate_options o = opts4(nct, nct, 0, 0);
    o.threshold = 0;
    pair p;
    if (!pair_open(&p, &o, &o, 0))
      return;
    ws_deflate_stats s0c, s0s, s1c, s1s;
    ws_deflate_get_stats(p.dc, &s0c);
    CHECK(s0c.zlib_bytes == 0 && s0c.zlib_allocs == 0); /* idle: nothing */
    uint8_t *m = malloc(50000);
    fill_text(m, 50000, 1);
    static const size_t sizes[] = {10, 2000, 50000, 700};
    for (int i = 0; i < 4; i++)
      for (size_t k = 0; k < 4; k++) {
        one_message(&p.cli, &p.srv, WS_OP_TEXT, m, sizes[k], true, 0);
        one_message(&p.srv, &p.cli, WS_OP_BINARY, m, sizes[k], true, 0);
      }
    ws_deflate_get_stats(p.dc, &s0c);
    ws_deflate_get_stats(p.ds, &s0s);
    size_t caps[4] = {p.cli.out.cap, p.srv.out.cap, p.cli.msg.cap,
                      p.srv.msg.cap};
    for (int i = 0; i < 50; i++)
      for (size_t k = 0; k < 4; k++) {
        fill_text(m, sizes[k], (unsigned)i);
        one_message(&p.cli, &p.srv, WS_OP_TEXT, m, sizes[k], true, 0);
        one_message(&p.srv, &p.cli, WS_OP_BINARY, m, sizes[k], true, 0);
      }
    ws_deflate_get_stats(p.dc, &s1c);
    ws_deflate_get_stats(p.ds, &s1s);
    CHECK_EQ_INT(s1c.zlib_allocs, s0c.zlib_allocs);
    CHECK_EQ_INT(s1s.zlib_allocs, s0s.zlib_allocs);
    CHECK_EQ_INT(s1c.zlib_bytes, s0c.zlib_bytes);
    CHECK(s0c.zlib_bytes > 0);
    CHECK_EQ_INT(p.cli.out.cap, caps[0]);
    CHECK_EQ_INT(p.srv.out.cap, caps[1]);
    CHECK_EQ_INT(p.cli.msg.cap, caps[2]);
    CHECK_EQ_INT(p.srv.msg.cap, caps[3]);
    free(m);
    pair_close(&p);
  }
}

/* Window bits 8 for our compressor: zlib compresses with 9 and Z_RLE, so
 * the stream must inflate with a 256-byte window.  Output is taken one
 * byte per call so the inflater cannot lean on its output buffer. */
static void test_window_8(void) {
  ws_deflate_options o = opts4(false, false, 8, 0);
  ws_deflate_params pa = {false, false, 8, 0};
  ws_deflate *d = ws_deflate_new(WS_ROLE_SERVER, &pa, &o);
  ws_deflate_stats st;
  ws_deflate_get_stats(d, &st);
  CHECK_EQ_INT(st.deflate_window_bits, 9);
  z_stream z;
  memset(&z, 0, sizeof z);
  CHECK_EQ_INT(inflateInit2(&z, -8), Z_OK);
  uint8_t *m = malloc(20000), *back = malloc(20000);
  for (int msg = 0; msg < 4; msg++) {
    fill_text(m, 20000, (unsigned)msg); /* repeats at distances > 256 */
    ws_buf out = WS_BUF_INIT;
    size_t n;
    CHECK_EQ_INT(ws_deflate_compress(d, m, 20000, true, &out, &n), WS_E_NONE);
    CHECK(n < 20000);
    CHECK_EQ_INT(ws_buf_append(&out, "\x00\x00\xff\xff", 4), 0);
    z.next_in = ws_buf_data(&out);
    z.avail_in = (uInt)ws_buf_len(&out);
    size_t got = 0;
    int r = Z_OK;
    while (r == Z_OK && got < 20000) {
      z.next_out = back + got;
      z.avail_out = 1;
      r = inflate(&z, Z_SYNC_FLUSH);
      got += 1 - z.avail_out;
    }
    CHECK(r == Z_OK || r == Z_BUF_ERROR);
    CHECK_EQ_INT(got, 20000);
    CHECK_MEM(back, m, 20000);
    ws_buf_free(&out);
  }
  inflateEnd(&z);
  free(m);
  free(back);
  ws_deflate_free(d);
}

/* ---- memory ------------------------------------------------------------- */

/* What zlib holds for one server connection after one message each way,
 * the deflate part first. */
static void measure(uint8_t bits, int mem_level, size_t *deflate_bytes,
                    size_t *total) {
  ws_deflate_options c = opts4(false, false, bits, bits);
  ws_deflate_options s = c;
  s.mem_level = mem_level;
  c.threshold = s.threshold = 0;
  pair p;
  *deflate_bytes = *total = 0;
  if (!pair_open(&p, &c, &s, 0))
    return;
  uint8_t m[2000];
  fill_text(m, sizeof m, 2);
  ws_deflate_stats st;
  ws_deflate_get_stats(p.ds, &st);
  CHECK_EQ_INT(st.zlib_bytes, 0);
  one_message(&p.srv, &p.cli, WS_OP_TEXT, m, sizeof m, true, 0);
  ws_deflate_get_stats(p.ds, &st);
  *deflate_bytes = st.zlib_bytes;
  one_message(&p.cli, &p.srv, WS_OP_TEXT, m, sizeof m, true, 0);
  ws_deflate_get_stats(p.ds, &st);
  *total = st.zlib_bytes;
  pair_close(&p);
}

static void test_memory(void) {
  size_t prev = 0;
  for (uint8_t w = 9; w <= 15; w++) {
    size_t dz, tot;
    measure(w, 8, &dz, &tot);
    CHECK(dz > 0 && tot > dz && tot > prev);
    prev = tot;
  }
  size_t d8, t8, d9, t9;
  measure(8, 8, &d8, &t8);
  measure(9, 8, &d9, &t9);
  CHECK_EQ_INT(t8, t9); /* 8 costs what 9 does */
}

static void print_memory(void) {
  printf("zlib bytes per connection (one side, after one message each way;"
         " 0 while idle)\n");
  printf("window  mem_level  deflate  inflate  total\n");
  for (int ml = 8; ml >= 1; ml -= 7)
    for (uint8_t w = 8; w <= 15; w++) {
      size_t dz, tot;
      measure(w, ml, &dz, &tot);
      printf("%6u  %9d  %7zu  %7zu  %6zu\n", (unsigned)w, ml, dz, tot - dz,
             tot);
    }
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "--memory") == 0) {
    print_memory();
    return 0;
  }
  TEST_RUN(test_options);
  TEST_RUN(test_offer);
  TEST_RUN(test_accept);
  TEST_RUN(test_check_response);
  TEST_RUN(test_rfc_examples);
  TEST_RUN(test_round_trips);
  TEST_RUN(test_context_takeover);
  TEST_RUN(test_fragmented);
  TEST_RUN(test_rsv_rules);
  TEST_RUN(test_corrupt);
  TEST_RUN(test_max_payload);
  TEST_RUN(test_bomb);
  TEST_RUN(test_bomb_budget);
  TEST_RUN(test_counters);
  TEST_RUN(test_budget_resumes);
  TEST_RUN(test_threshold);
  TEST_RUN(test_steady_state);
  TEST_RUN(test_window_8);
  TEST_RUN(test_memory);
  return TEST_REPORT();
}
