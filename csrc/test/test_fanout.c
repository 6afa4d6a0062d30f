/* test_fanout.c -- one message for many connections (ws_fanout): receivers
 * without compression, with a shared compressor (no context takeover) and
 * with their own (takeover) side by side, each read back by a client
 * ws_conn; frames built and compressed once; fragment_size; the limit
 * (WS_FAN_SLOW), a close sent, a fragmented send in progress (WS_FAN_HELD),
 * own_max; a held pong goes first; the direct writer taking all, part or
 * nothing of a big frame. */
#include "test_harness.h"
#include "ws_conn.h"
#include "ws_deflate.h"
#include "ws_fanout.h"

#include <stdlib.h>

/* A server conn and the client conn that reads what it sends, with
 * permessage-deflate agreed as params says (NULL: none). */
typedef struct pair {
  ws_conn srv, cli;
  ws_deflate *sd, *cd;
} pair;

static void pair_init(pair *p, const ws_deflate_params *params) {
  ws_conn_init(&p->srv, WS_ROLE_SERVER, NULL);
  ws_conn_init(&p->cli, WS_ROLE_CLIENT, NULL);
  p->sd = p->cd = NULL;
  if (params) {
    ws_deflate_options o;
    ws_deflate_options_init(&o);
    o.threshold = 16;
    p->sd = ws_deflate_new(WS_ROLE_SERVER, params, &o);
    p->cd = ws_deflate_new(WS_ROLE_CLIENT, params, &o);
    ws_conn_set_deflate(&p->srv, p->sd);
    ws_conn_set_deflate(&p->cli, p->cd);
  }
}

static void pair_free(pair *p) {
  ws_conn_free(&p->srv);
  ws_conn_free(&p->cli);
  ws_deflate_free(p->sd);
  ws_deflate_free(p->cd);
}

/* Move what the server queued to the client and take one event. */
static ws_event deliver(pair *p, uint8_t *scratch) {
  size_t n = ws_buf_len(&p->srv.out);
  memcpy(scratch, ws_buf_data(&p->srv.out), n);
  ws_conn_out_consume(&p->srv, n);
  ws_event ev;
  size_t used = ws_conn_recv(&p->cli, scratch, n, &ev);
  CHECK_EQ_INT(used, n);
  return ev;
}

static uint8_t *text(size_t n) {
  uint8_t *t = malloc(n);
  for (size_t i = 0; i < n; i++)
    t[i] = (uint8_t)("abcdefghij klmnop, "[i % 19] + (i / 997) % 3);
  return t;
}

static void test_mixed_receivers(void) {
  ws_deflate_params shared = {.server_no_context_takeover = true};
  ws_deflate_params own = {0};
  pair p[4];
  pair_init(&p[0], NULL);
  pair_init(&p[1], &shared);
  pair_init(&p[2], &shared);
  pair_init(&p[3], &own);
  ws_fanout f;
  ws_fanout_init(&f, 0);
  uint8_t *scratch = malloc(1 << 20);
  size_t sizes[] = {5, 3000, 70000};
  size_t wire_first[4] = {0};
  for (int round = 0; round < 2; round++) {
    for (size_t k = 0; k < 3; k++) {
      uint8_t *m = text(sizes[k]);
      ws_fanout_begin(&f, WS_OP_TEXT, m, sizes[k]);
      for (int i = 0; i < 4; i++)
        CHECK_EQ_INT(ws_fanout_queue(&f, &p[i].srv, 0, 0, NULL, NULL), WS_FAN_QUEUED);
      ws_fanout_end(&f);
      for (int i = 0; i < 4; i++) {
        uint64_t before = p[i].srv.counters.wire_bytes_out;
        ws_event ev = deliver(&p[i], scratch);
        CHECK_EQ_INT(ev.type, WS_EV_TEXT);
        CHECK_EQ_INT(ev.len, sizes[k]);
        CHECK(ev.len == sizes[k] && memcmp(ev.data, m, sizes[k]) == 0);
        (void)before;
      }
      free(m);
    }
    if (round == 0)
      for (int i = 0; i < 4; i++)
        wire_first[i] = p[i].srv.counters.wire_bytes_out;
  }
  /* 5 bytes is under the threshold: plain for all; the two bigger ones
   * compressed once for the two shared receivers, by its own for the 4th */
  CHECK_EQ_INT(f.counters.messages, 6);
  CHECK_EQ_INT(f.counters.deliveries, 24);
  CHECK_EQ_INT(f.counters.shared_deflates, 4);
  CHECK_EQ_INT(f.counters.own_deflates, 4);
  CHECK_EQ_INT(f.counters.frames_built, 6 + 4); /* plain once a message, shared 4 */
  /* shared receivers get the same bytes; takeover compresses the repeat
   * round into fewer bytes than the first */
  CHECK_EQ_INT(p[1].srv.counters.wire_bytes_out, p[2].srv.counters.wire_bytes_out);
  CHECK(p[3].srv.counters.wire_bytes_out - wire_first[3] < wire_first[3]);
  CHECK_EQ_INT(p[1].srv.counters.wire_bytes_out - wire_first[1], wire_first[1]);
  CHECK(p[1].srv.counters.deflated_wire_out < p[1].srv.counters.deflated_out);
  CHECK_EQ_INT(p[0].srv.counters.deflated_out, 0);
  ws_fanout_free(&f);
  for (int i = 0; i < 4; i++)
    pair_free(&p[i]);
  free(scratch);
}

static void test_fragments(void) {
  ws_deflate_params shared = {.server_no_context_takeover = true};
  pair p[2];
  pair_init(&p[0], NULL);
  pair_init(&p[1], &shared);
  ws_fanout f;
  ws_fanout_init(&f, 1000);
  uint8_t *scratch = malloc(1 << 20);
  uint8_t *m = text(4500);
  ws_fanout_begin(&f, WS_OP_BINARY, m, 4500);
  for (int i = 0; i < 2; i++)
    CHECK_EQ_INT(ws_fanout_queue(&f, &p[i].srv, 0, 0, NULL, NULL), WS_FAN_QUEUED);
  ws_fanout_end(&f);
  /* 4500 plain bytes in frames of 1000: 5 headers of 4 bytes */
  CHECK_EQ_INT(ws_buf_len(&p[0].srv.out), 4500 + 5 * 4);
  for (int i = 0; i < 2; i++) {
    size_t n = ws_buf_len(&p[i].srv.out);
    memcpy(scratch, ws_buf_data(&p[i].srv.out), n);
    ws_conn_out_consume(&p[i].srv, n);
    ws_event ev;
    size_t at = 0;
    do {
      at += ws_conn_recv(&p[i].cli, scratch + at, n - at, &ev);
    } while (ev.type == WS_EV_NONE && at < n);
    CHECK_EQ_INT(ev.type, WS_EV_BINARY);
    CHECK(ev.len == 4500 && memcmp(ev.data, m, 4500) == 0);
  }
  free(m);
  free(scratch);
  ws_fanout_free(&f);
  pair_free(&p[0]);
  pair_free(&p[1]);
}

static void test_refusals(void) {
  ws_deflate_params own = {0};
  pair p;
  pair_init(&p, &own);
  ws_fanout f;
  ws_fanout_init(&f, 0);
  uint8_t *m = text(5000);
  ws_fanout_begin(&f, WS_OP_TEXT, m, 5000);
  /* own_max: a message it would compress alone, bigger than that */
  CHECK_EQ_INT(ws_fanout_queue(&f, &p.srv, 0, 4999, NULL, NULL), WS_FAN_HELD);
  CHECK_EQ_INT(ws_buf_len(&p.srv.out), 0);
  /* the limit */
  CHECK_EQ_INT(ws_fanout_queue(&f, &p.srv, 0, 0, NULL, NULL), WS_FAN_QUEUED);
  size_t queued = ws_buf_len(&p.srv.out);
  CHECK_EQ_INT(ws_fanout_queue(&f, &p.srv, queued, 0, NULL, NULL), WS_FAN_SLOW);
  CHECK_EQ_INT(ws_buf_len(&p.srv.out), queued);
  CHECK_EQ_INT(ws_fanout_queue(&f, &p.srv, queued + 1, 0, NULL, NULL), WS_FAN_QUEUED);
  ws_conn_out_consume(&p.srv, ws_buf_len(&p.srv.out));
  /* a fragmented send in progress */
  CHECK_EQ_INT(ws_conn_send_fragment(&p.srv, WS_OP_BINARY, "ab", 2, false), WS_E_NONE);
  CHECK_EQ_INT(ws_fanout_queue(&f, &p.srv, 0, 0, NULL, NULL), WS_FAN_HELD);
  CHECK_EQ_INT(ws_conn_send_fragment(&p.srv, WS_OP_BINARY, "c", 1, true), WS_E_NONE);
  /* after the close frame */
  CHECK_EQ_INT(ws_conn_close(&p.srv, 1000, "", 0), WS_E_NONE);
  CHECK_EQ_INT(ws_fanout_queue(&f, &p.srv, 0, 0, NULL, NULL), WS_FAN_CLOSED);
  ws_fanout_end(&f);
  CHECK_EQ_INT(f.counters.deliveries, 2);
  free(m);
  ws_fanout_free(&f);
  pair_free(&p);
}

/* The direct writer: takes want bytes of what it is offered. */
typedef struct writer {
  size_t want, offered, calls;
  uint8_t got[65536];
} writer;

static size_t take(void *ud, const uint8_t *p, size_t n) {
  writer *w = ud;
  w->calls++;
  w->offered = n;
  size_t k = w->want < n ? w->want : n;
  memcpy(w->got, p, k);
  return k;
}

static void test_direct_writes(void) {
  pair p;
  pair_init(&p, NULL);
  ws_fanout f;
  ws_fanout_init(&f, 0);
  uint8_t *scratch = malloc(1 << 20);
  uint8_t *m = text(20000);
  static writer w;
  size_t wants[] = {0, 1000, 20004};
  for (size_t k = 0; k < 3; k++) {
    memset(&w, 0, sizeof w);
    w.want = wants[k];
    ws_fanout_begin(&f, WS_OP_TEXT, m, 20000);
    CHECK_EQ_INT(ws_fanout_queue(&f, &p.srv, 0, 0, take, &w), WS_FAN_QUEUED);
    ws_fanout_end(&f);
    CHECK_EQ_INT(w.calls, 1);
    CHECK_EQ_INT(w.offered, 20004);
    CHECK_EQ_INT(ws_buf_len(&p.srv.out), 20004 - wants[k]);
    /* what was written then what was queued: the whole frame */
    memcpy(scratch, w.got, wants[k]);
    memcpy(scratch + wants[k], ws_buf_data(&p.srv.out), 20004 - wants[k]);
    ws_conn_out_consume(&p.srv, ws_buf_len(&p.srv.out));
    ws_event ev;
    CHECK_EQ_INT(ws_conn_recv(&p.cli, scratch, 20004, &ev), 20004);
    CHECK(ev.type == WS_EV_TEXT && ev.len == 20000 && memcmp(ev.data, m, 20000) == 0);
  }
  /* small frames, or something already waiting: no direct write */
  memset(&w, 0, sizeof w);
  ws_fanout_begin(&f, WS_OP_TEXT, m, 100);
  CHECK_EQ_INT(ws_fanout_queue(&f, &p.srv, 0, 0, take, &w), WS_FAN_QUEUED);
  ws_fanout_end(&f);
  ws_fanout_begin(&f, WS_OP_TEXT, m, 20000);
  CHECK_EQ_INT(ws_fanout_queue(&f, &p.srv, 0, 0, take, &w), WS_FAN_QUEUED);
  ws_fanout_end(&f);
  CHECK_EQ_INT(w.calls, 0);
  CHECK_EQ_INT(ws_buf_len(&p.srv.out), 102 + 20004);
  ws_conn_out_consume(&p.srv, ws_buf_len(&p.srv.out));
  /* a held pong goes first: no direct write, the pong before the frame */
  uint8_t big[WS_PONG_BACKLOG + 10] = {0};
  CHECK_EQ_INT(ws_conn_send(&p.srv, WS_OP_BINARY, big, sizeof big), WS_E_NONE);
  uint8_t ping[] = {0x89, 0x82, 1, 2, 3, 4, 'h' ^ 1, 'i' ^ 2};
  ws_event ev;
  ws_conn_recv(&p.srv, ping, sizeof ping, &ev);
  CHECK_EQ_INT(ev.type, WS_EV_PING);
  CHECK(p.srv.pong_held);
  ws_conn_out_consume(&p.srv, ws_buf_len(&p.srv.out)); /* releases the pong */
  CHECK(!p.srv.pong_held);
  CHECK_EQ_INT(ws_buf_len(&p.srv.out), 4);
  ws_fanout_begin(&f, WS_OP_TEXT, m, 20000);
  CHECK_EQ_INT(ws_fanout_queue(&f, &p.srv, 0, 0, take, &w), WS_FAN_QUEUED);
  ws_fanout_end(&f);
  CHECK_EQ_INT(w.calls, 0);
  CHECK_EQ_INT(ws_buf_data(&p.srv.out)[0], 0x8A); /* the pong first */
  free(m);
  free(scratch);
  ws_fanout_free(&f);
  pair_free(&p);
}

int main(void) {
  TEST_RUN(test_mixed_receivers);
  TEST_RUN(test_fragments);
  TEST_RUN(test_refusals);
  TEST_RUN(test_direct_writes);
  return TEST_REPORT();
}
