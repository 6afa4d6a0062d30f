/*
 * test_http.c -- the HTTP head parser: accepted and refused forms with the
 * exact status, every prefix of a valid head (incomplete, never an
 * over-read: each prefix is parsed from its own heap copy of exactly that
 * length, so ASan/valgrind see any read past len), early failure of
 * garbage, and the list/token helpers.
 */
#include <stdlib.h>
#include <string.h>

#include "test_harness.h"
#include "ws_http.h"

static ws_http_request req;
static ws_http_response res;

/* Parse s[0, n) from an exact-size heap copy, kept until the next parse
 * (the results point into it). */
static char *copy;

static const char *fresh_copy(const char *s, size_t n) {
  free(copy);
  copy = malloc(n ? n : 1);
  memcpy(copy, s, n);
  return copy;
}
static int preq_n(const char *s, size_t n) {
  return ws_http_parse_request(fresh_copy(s, n), n, &req);
}
static int pres_n(const char *s, size_t n) {
  return ws_http_parse_response(fresh_copy(s, n), n, &res);
}
static int preq(const char *s) { return preq_n(s, strlen(s)); }
static int pres(const char *s) { return pres_n(s, strlen(s)); }

static bool field_is(const ws_http_header *h, const char *name,
                     const char *value) {
  return h->name_len == strlen(name) && memcmp(h->name, name, h->name_len) == 0 &&
         h->value_len == strlen(value) &&
         memcmp(h->value, value, h->value_len) == 0;
}

/* Refused with this status, and with a message. */
#define CHECK_REQ_ERR(s, st)                                                   \
  do {                                                                         \
    CHECK_EQ_INT(preq(s), WS_ERROR);                                           \
    CHECK_EQ_INT(req.status, st);                                              \
    CHECK(req.message != NULL && req.message[0] != '\0');                      \
  } while (0)
#define CHECK_RES_ERR(s)                                                       \
  do {                                                                         \
    CHECK_EQ_INT(pres(s), WS_ERROR);                                           \
    CHECK(res.message != NULL && res.message[0] != '\0');                      \
  } while (0)

static const char *const good_requests[] = {
    "GET /chat HTTP/1.1\r\n"
    "Host: server.example.com\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Origin: http://example.com\r\n"
    "Sec-WebSocket-Protocol: chat, superchat\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "\r\n",
    "GET / HTTP/1.0\n\n",
    "OPTIONS * HTTP/1.1\r\nA:\r\nB: \t x \t\r\nC:y\n\r\n",
    "GET /a?b=c%20d HTTP/1.1\r\nX-e: caf\xc3\xa9\r\n\n",
};

static const char *const good_responses[] = {
    "HTTP/1.1 101 Switching Protocols\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
    "\r\n",
    "HTTP/1.0 404\r\n\r\n",
    "HTTP/1.1 200 \n\n",
    "HTTP/1.1 401 Unauthorized\tnow\r\nWWW-Authenticate: Basic\r\n\r\n",
};

static void test_request_fields(void) {
  const char *s = good_requests[0];
  size_t n = strlen(s);
  CHECK_EQ_INT(preq(s), (int)n);
  CHECK(req.method_len == 3 && memcmp(req.method, "GET", 3) == 0);
  CHECK(req.target_len == 5 && memcmp(req.target, "/chat", 5) == 0);
  CHECK_EQ_INT(req.version_minor, 1);
  CHECK_EQ_INT(req.num_headers, 7);
  CHECK(field_is(&req.headers[0], "Host", "server.example.com"));
  CHECK(field_is(&req.headers[3], "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="));
  CHECK(field_is(&req.headers[5], "Sec-WebSocket-Protocol", "chat, superchat"));
  CHECK_EQ_INT(req.status, 0);
  CHECK(req.message == NULL);

  /* Bytes after the empty line (the first frames) are not consumed. */
  char more[512];
  snprintf(more, sizeof more, "%s\x81\x05hello", s);
  CHECK_EQ_INT(ws_http_parse_request(more, strlen(more), &req), (int)n);

  /* OWS trimmed, empty values, bare LF line ends, HTTP/1.0. */
  CHECK_EQ_INT(preq(good_requests[2]), (int)strlen(good_requests[2]));
  CHECK(req.method_len == 7 && memcmp(req.method, "OPTIONS", 7) == 0);
  CHECK(req.target_len == 1 && req.target[0] == '*');
  CHECK_EQ_INT(req.num_headers, 3);
  CHECK(field_is(&req.headers[0], "A", ""));
  CHECK(field_is(&req.headers[1], "B", "x"));
  CHECK(field_is(&req.headers[2], "C", "y"));
  CHECK_EQ_INT(preq(good_requests[1]), 16);
  CHECK_EQ_INT(req.version_minor, 0);
  CHECK_EQ_INT(req.num_headers, 0);
  /* Bytes >= 0x80 (obs-text) in a value are kept as sent. */
  CHECK_EQ_INT(preq("GET / HTTP/1.1\r\nX: a\xff b\r\n\r\n"), 27);
  CHECK(field_is(&req.headers[0], "X", "a\xff b"));
  /* Interior whitespace of a value is kept. */
  CHECK_EQ_INT(preq("GET / HTTP/1.1\r\nX: a \t b\r\n\r\n"), 28);
  CHECK(field_is(&req.headers[0], "X", "a \t b"));
}

static void test_response_fields(void) {
  const char *s = good_responses[0];
  CHECK_EQ_INT(pres(s), (int)strlen(s));
  CHECK_EQ_INT(res.version_minor, 1);
  CHECK_EQ_INT(res.status, 101);
  CHECK(res.reason_len == 19 && memcmp(res.reason, "Switching Protocols", 19) == 0);
  CHECK_EQ_INT(res.num_headers, 3);
  CHECK(field_is(&res.headers[2], "Sec-WebSocket-Accept",
                 "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
  CHECK(res.message == NULL);

  /* No reason and no space before it; an empty reason; HTTP/1.0. */
  CHECK_EQ_INT(pres(good_responses[1]), 16);
  CHECK_EQ_INT(res.status, 404);
  CHECK_EQ_INT(res.version_minor, 0);
  CHECK_EQ_INT(res.reason_len, 0);
  CHECK_EQ_INT(pres(good_responses[2]), 15);
  CHECK_EQ_INT(res.status, 200);
  CHECK_EQ_INT(res.reason_len, 0);
  /* A tab in the reason is allowed. */
  CHECK_EQ_INT(pres(good_responses[3]), (int)strlen(good_responses[3]));
  CHECK(res.reason_len == 16 && memcmp(res.reason, "Unauthorized\tnow", 16) == 0);
  CHECK(field_is(&res.headers[0], "WWW-Authenticate", "Basic"));
}

/* Every proper prefix of a valid head is incomplete. */
static void test_every_prefix_incomplete(void) {
  for (size_t k = 0; k < sizeof good_requests / sizeof *good_requests; k++) {
    size_t n = strlen(good_requests[k]);
    for (size_t i = 0; i < n; i++) {
      int r = preq_n(good_requests[k], i);
      if (r != WS_INCOMPLETE)
        fprintf(stderr, "request %zu prefix %zu: %d (%s)\n", k, i, r,
                req.message ? req.message : "-");
      CHECK_EQ_INT(r, WS_INCOMPLETE);
    }
    CHECK_EQ_INT(preq_n(good_requests[k], n), (int)n);
  }
  for (size_t k = 0; k < sizeof good_responses / sizeof *good_responses; k++) {
    size_t n = strlen(good_responses[k]);
    for (size_t i = 0; i < n; i++) {
      int r = pres_n(good_responses[k], i);
      if (r != WS_INCOMPLETE)
        fprintf(stderr, "response %zu prefix %zu: %d (%s)\n", k, i, r,
                res.message ? res.message : "-");
      CHECK_EQ_INT(r, WS_INCOMPLETE);
    }
    CHECK_EQ_INT(pres_n(good_responses[k], n), (int)n);
  }
}

/* A garbage head fails as soon as its first n bytes make it certain: the
 * prefixes shorter than n are incomplete, n and every longer one fail with
 * the same status. */
static void check_fails_at(const char *s, size_t n, int status) {
  size_t len = strlen(s);
  for (size_t i = 0; i <= len; i++) {
    int r = preq_n(s, i);
    if (i < n) {
      if (r != WS_INCOMPLETE)
        fprintf(stderr, "\"%s\" prefix %zu: %d (%s)\n", s, i, r,
                req.message ? req.message : "-");
      CHECK_EQ_INT(r, WS_INCOMPLETE);
    } else {
      if (r != WS_ERROR || req.status != status)
        fprintf(stderr, "\"%s\" prefix %zu: %d status %d\n", s, i, r,
                req.status);
      CHECK_EQ_INT(r, WS_ERROR);
      CHECK_EQ_INT(req.status, status);
    }
  }
}

static void test_early_errors(void) {
  check_fails_at("G(ET / HTTP/1.1\r\n\r\n", 2, 400);
  check_fails_at(" / HTTP/1.1\r\n\r\n", 1, 400);
  check_fails_at("\r\nGET / HTTP/1.1\r\n\r\n", 1, 400);
  check_fails_at("GET  / HTTP/1.1\r\n\r\n", 5, 400);
  check_fails_at("GET /a\x01 HTTP/1.1\r\n\r\n", 7, 400);
  check_fails_at("GET /\r\n\r\n", 6, 400);
  check_fails_at("GET / HTTQ/1.1\r\n\r\n", 10, 400);
  check_fails_at("GET / HTTP/1,1\r\n\r\n", 13, 400);
  check_fails_at("GET / HTTP/1.1x\r\n\r\n", 15, 400);
  check_fails_at("GET / HTTP/1.1\rx\n\r\n", 16, 400);
  check_fails_at("GET / HTTP/2.0\r\n\r\n", 16, 505);
  check_fails_at("GET / HTTP/1.1\r\n X: y\r\n\r\n", 17, 400);
  check_fails_at("GET / HTTP/1.1\r\nX : y\r\n\r\n", 18, 400);
  check_fails_at("GET / HTTP/1.1\r\nX\x01: y\r\n\r\n", 18, 400);
  check_fails_at("GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n", 21, 400);
  check_fails_at("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", 22, 400);
  check_fails_at("GET / HTTP/1.1\r\nX: a\r\n\rb", 24, 400);
}

static void test_request_errors(void) {
  /* start line */
  CHECK_REQ_ERR("GE@T / HTTP/1.1\r\n\r\n", 400);
  CHECK_REQ_ERR("GET\t/ HTTP/1.1\r\n\r\n", 400);
  CHECK_REQ_ERR("GET  HTTP/1.1\r\n\r\n", 400);
  CHECK_REQ_ERR("GET /a b HTTP/1.1\r\n\r\n", 400);
  CHECK_REQ_ERR("GET /a\x7f HTTP/1.1\r\n\r\n", 400);
  CHECK_EQ_INT(preq_n("GET /\0 HTTP/1.1\r\n\r\n", 19), WS_ERROR);
  CHECK_EQ_INT(req.status, 400);
  CHECK_REQ_ERR("GET / HTTP/1.1 \r\n\r\n", 400);
  CHECK_REQ_ERR("GET / http/1.1\r\n\r\n", 400);
  CHECK_REQ_ERR("GET / HTTP/11.1\r\n\r\n", 400);
  CHECK_REQ_ERR("GET / HTTP/1.\r\n\r\n", 400);
  CHECK_REQ_ERR("GET / HTTP/1.1 extra\r\n\r\n", 400);
  /* RFC 7230 2.6: a higher 1.x minor is taken (and handled as 1.1). */
  CHECK(preq("GET / HTTP/1.2\r\n\r\n") > 0 && req.version_minor == 2);
  CHECK_REQ_ERR("GET / HTTP/0.9\r\n\r\n", 505);
  CHECK_REQ_ERR("GET / HTTP/2.0\r\n\r\n", 505);
  CHECK_REQ_ERR("GET / HTTP/3.0\n\n", 505);
  /* header fields */
  CHECK_REQ_ERR("GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400);
  CHECK_REQ_ERR("GET / HTTP/1.1\r\nHost\t: x\r\n\r\n", 400);
  CHECK_REQ_ERR("GET / HTTP/1.1\r\nHo(st: x\r\n\r\n", 400);
  CHECK_REQ_ERR("GET / HTTP/1.1\r\n: x\r\n\r\n", 400);
  CHECK_REQ_ERR("GET / HTTP/1.1\r\nHost\r\n\r\n", 400);
  CHECK_REQ_ERR("GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", 400);
  CHECK_REQ_ERR("GET / HTTP/1.1\r\nA: b\r\n\tc\r\n\r\n", 400);
  CHECK_REQ_ERR("GET / HTTP/1.1\r\n\tA: b\r\n\r\n", 400);
  CHECK_REQ_ERR("GET / HTTP/1.1\r\nA: b\x01\r\n\r\n", 400);
  CHECK_REQ_ERR("GET / HTTP/1.1\r\nA: b\x1b[0m\r\n\r\n", 400);
  CHECK_EQ_INT(preq_n("GET / HTTP/1.1\r\nA: b\0c\r\n\r\n", 26), WS_ERROR);
  CHECK_EQ_INT(req.status, 400);
  CHECK_REQ_ERR("GET / HTTP/1.1\r\nA: b\rc: d\r\n\r\n", 400);
  CHECK_REQ_ERR("GET / HTTP/1.1\r\nA: b\r\n\rX", 400);
}

/* WS_HTTP_MAX_HEADERS fields pass; one more is 431, decided as soon as the
 * extra field starts. */
static void test_too_many_fields(void) {
  char buf[4096];
  size_t n = (size_t)snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\n");
  for (int i = 0; i < WS_HTTP_MAX_HEADERS; i++)
    n += (size_t)snprintf(buf + n, sizeof buf - n, "H%d: %d\r\n", i, i);
  memcpy(buf + n, "\r\n", 3);
  CHECK_EQ_INT(preq_n(buf, n + 2), (int)(n + 2));
  CHECK_EQ_INT(req.num_headers, WS_HTTP_MAX_HEADERS);
  CHECK(field_is(&req.headers[99], "H99", "99"));
  memcpy(buf + n, "X: y\r\n\r\n", 9);
  CHECK_EQ_INT(preq_n(buf, n + 8), WS_ERROR);
  CHECK_EQ_INT(req.status, 431);
  CHECK_EQ_INT(preq_n(buf, n), WS_INCOMPLETE);
  CHECK_EQ_INT(preq_n(buf, n + 1), WS_ERROR);
  CHECK_EQ_INT(req.status, 431);
  /* the same in a response */
  n = (size_t)snprintf(buf, sizeof buf, "HTTP/1.1 101 OK\r\n");
  for (int i = 0; i <= WS_HTTP_MAX_HEADERS; i++)
    n += (size_t)snprintf(buf + n, sizeof buf - n, "H%d: %d\r\n", i, i);
  CHECK_EQ_INT(pres_n(buf, n), WS_ERROR);
  CHECK(res.message != NULL);
}

static void test_response_errors(void) {
  CHECK_RES_ERR("HTTP/1.1 10\r\n\r\n");
  CHECK_RES_ERR("HTTP/1.1 1010 OK\r\n\r\n");
  CHECK_RES_ERR("HTTP/1.1 10a OK\r\n\r\n");
  CHECK_RES_ERR("HTTP/1.1 099 Low\r\n\r\n");
  CHECK_RES_ERR("HTTP/1.1  101 OK\r\n\r\n");
  CHECK_RES_ERR("HTTP/1.1\r\n\r\n");
  CHECK_RES_ERR("HTTP/1.1 101 OK\x01\r\n\r\n");
  CHECK_RES_ERR("HTTP/2.0 101 OK\r\n\r\n");
  CHECK(pres("HTTP/1.2 101 OK\r\n\r\n") > 0 && res.version_minor == 2);
  CHECK_RES_ERR("HTTP/1.1-101 OK\r\n\r\n");
  CHECK_RES_ERR("http/1.1 101 OK\r\n\r\n");
  CHECK_RES_ERR("ICY 200 OK\r\n\r\n");
  CHECK_RES_ERR("HTTP/1.1 101 OK\r\nA : b\r\n\r\n");
  CHECK_RES_ERR("HTTP/1.1 101 OK\r\nA: b\r\n c\r\n\r\n");
  CHECK_RES_ERR("HTTP/1.1 101 OK\r\nA: b\x7f\r\n\r\n");
  CHECK_RES_ERR("HTTP/1.1 101 OK\rX\r\n\r\n");
  /* A garbage prefix already fails. */
  CHECK_EQ_INT(pres_n("HTTP/1.1 1x", 11), WS_ERROR);
  CHECK_EQ_INT(pres_n("HTTX", 4), WS_ERROR);
  CHECK_EQ_INT(pres_n("HTTP", 4), WS_INCOMPLETE);
  CHECK_EQ_INT(pres_n("", 0), WS_INCOMPLETE);
  CHECK_EQ_INT(preq_n("", 0), WS_INCOMPLETE);
}

static void test_header_find(void) {
  const char *s = "GET / HTTP/1.1\r\nHost: a\r\nX-Y: 1\r\nx-y: 2\r\nX-YZ: 3\r\n\r\n";
  CHECK(preq(s) > 0);
  size_t count = 99;
  const ws_http_header *h = ws_http_header_find(req.headers, req.num_headers, "x-Y", &count);
  CHECK(h == &req.headers[1]);
  CHECK_EQ_INT(count, 2);
  h = ws_http_header_find(req.headers, req.num_headers, "HOST", NULL);
  CHECK(h == &req.headers[0]);
  CHECK(ws_http_header_find(req.headers, req.num_headers, "X", &count) == NULL);
  CHECK_EQ_INT(count, 0);
  CHECK(ws_http_header_find(req.headers, req.num_headers, "X-YZ", &count) == &req.headers[3]);
  CHECK_EQ_INT(count, 1);
  CHECK(ws_http_header_find(req.headers, 0, "Host", &count) == NULL);
  CHECK_EQ_INT(count, 0);
}

static void test_lists(void) {
  const char *v = " a ,, b,\tc  d\t,,  ,permessage-deflate; x=\"1,2\" , ";
  size_t pos = 0, n;
  const char *item;
  const char *want[] = {"a", "b", "c  d", "permessage-deflate; x=\"1,2\""};
  for (size_t i = 0; i < 4; i++) {
    CHECK(ws_http_list_next(v, strlen(v), &pos, &item, &n));
    CHECK(n == strlen(want[i]) && memcmp(item, want[i], n) == 0);
  }
  CHECK(!ws_http_list_next(v, strlen(v), &pos, &item, &n));
  CHECK(!ws_http_list_next(v, strlen(v), &pos, &item, &n));
  pos = 0;
  CHECK(!ws_http_list_next("", 0, &pos, &item, &n));
  pos = 0;
  CHECK(!ws_http_list_next(" , ,\t", 5, &pos, &item, &n));
  /* An escaped quote does not end the quoted string. */
  v = "x=\"a\\\",b\", y";
  pos = 0;
  CHECK(ws_http_list_next(v, strlen(v), &pos, &item, &n));
  CHECK(n == 9 && memcmp(item, "x=\"a\\\",b\"", 9) == 0);
  CHECK(ws_http_list_next(v, strlen(v), &pos, &item, &n));
  CHECK(n == 1 && *item == 'y');
  /* Only the given length is read. */
  pos = 0;
  CHECK(ws_http_list_next("ab,cd", 1, &pos, &item, &n));
  CHECK(n == 1 && *item == 'a');
  CHECK(!ws_http_list_next("ab,cd", 1, &pos, &item, &n));

  const char *c = "keep-alive, Upgrade";
  CHECK(ws_http_list_has(c, strlen(c), "upgrade"));
  CHECK(ws_http_list_has(c, strlen(c), "KEEP-ALIVE"));
  CHECK(!ws_http_list_has(c, strlen(c), "upgrad"));
  CHECK(!ws_http_list_has(c, strlen(c), "keep"));
  CHECK(!ws_http_list_has("Upgrade2", 8, "upgrade"));
  CHECK(!ws_http_list_has("Upgrade", 6, "upgrade"));
  CHECK(ws_http_list_has("websocket", 9, "websocket"));
  CHECK(!ws_http_list_has("", 0, "websocket"));
}

static void test_token_and_value(void) {
  CHECK(ws_http_is_token("Sec-WebSocket-Key", 17));
  CHECK(ws_http_is_token("!#$%&'*+-.^_`|~09azAZ", 21));
  CHECK(!ws_http_is_token("", 0));
  CHECK(!ws_http_is_token("a b", 3));
  CHECK(!ws_http_is_token("a:b", 3));
  CHECK(!ws_http_is_token("a\r\n", 3));
  CHECK(!ws_http_is_token("a\0", 2));
  CHECK(!ws_http_is_token("\xc3\xa9", 2));
  const char *seps = "\"(),/:;<=>?@[\\]{}";
  for (const char *p = seps; *p; p++)
    CHECK(!ws_http_is_token(p, 1));
  CHECK(ws_http_is_field_value("", 0));
  CHECK(ws_http_is_field_value("text/plain; q=\"1\"\t\xc3\xa9", 20));
  CHECK(!ws_http_is_field_value("a\r\nX: y", 7));
  CHECK(!ws_http_is_field_value("a\n", 2));
  CHECK(!ws_http_is_field_value("a\r", 2));
  CHECK(!ws_http_is_field_value("a\0b", 3));
  CHECK(!ws_http_is_field_value("\x7f", 1));
  CHECK(!ws_http_is_field_value("\x1f", 1));
}

static void test_reason_phrases(void) {
  static const struct { int status; const char *phrase; } t[] = {
      {101, "Switching Protocols"}, {200, "OK"}, {400, "Bad Request"},
      {401, "Unauthorized"}, {403, "Forbidden"}, {404, "Not Found"},
      {405, "Method Not Allowed"}, {426, "Upgrade Required"},
      {429, "Too Many Requests"}, {431, "Request Header Fields Too Large"},
      {500, "Internal Server Error"}, {503, "Service Unavailable"},
      {505, "HTTP Version Not Supported"}, {299, "Unknown"}, {-1, "Unknown"}};
  for (size_t i = 0; i < sizeof t / sizeof *t; i++)
    CHECK(strcmp(ws_http_reason_phrase(t[i].status), t[i].phrase) == 0);
}

int main(void) {
  TEST_RUN(test_request_fields);
  TEST_RUN(test_response_fields);
  TEST_RUN(test_every_prefix_incomplete);
  TEST_RUN(test_early_errors);
  TEST_RUN(test_request_errors);
  TEST_RUN(test_too_many_fields);
  TEST_RUN(test_response_errors);
  TEST_RUN(test_header_find);
  TEST_RUN(test_lists);
  TEST_RUN(test_token_and_value);
  TEST_RUN(test_reason_phrases);
  free(copy);
  return TEST_REPORT();
}
