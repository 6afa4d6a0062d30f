/*
 * test_handshake.c -- RFC 6455 4 on both sides: the key and accept values,
 * each refusal of check_request with its status in the documented order,
 * byte-exact builder output, header injection and reserved fields refused
 * with out unchanged, out-of-memory, check_response's rules (subprotocols,
 * extensions, accept) and a full client/server round trip.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "test_harness.h"
#include "ws_handshake.h"

#define RFC_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define RFC_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
#define PREFIX "previous|"

static ws_buf out = WS_BUF_INIT;

/* Builders append: out starts with PREFIX so "unchanged" is observable. */
static void prefill(void) {
  ws_buf_clear(&out);
  ws_buf_append(&out, PREFIX, strlen(PREFIX));
}
static bool out_is(const char *text) {
  size_t p = strlen(PREFIX), n = strlen(text);
  return ws_buf_len(&out) == p + n &&
         memcmp(ws_buf_data(&out), PREFIX, p) == 0 &&
         memcmp(ws_buf_data(&out) + p, text, n) == 0;
}
#define CHECK_UNCHANGED() CHECK(out_is(""))

static int counting_random(void *ud, uint8_t *buf, size_t n) {
  int *calls = ud;
  for (size_t i = 0; i < n; i++)
    buf[i] = (uint8_t)i;
  (*calls)++;
  return 0;
}
static int failing_random(void *ud, uint8_t *buf, size_t n) { return -1; }

static void test_accept_and_key(void) {
  char acc[WS_ACCEPT_LEN + 1];
  CHECK_EQ_INT(ws_handshake_accept(RFC_KEY, strlen(RFC_KEY), acc), 0);
  CHECK(strcmp(acc, RFC_ACCEPT) == 0);
  /* Only key_len bytes of the key count. */
  CHECK_EQ_INT(ws_handshake_accept(RFC_KEY "junk", strlen(RFC_KEY), acc), 0);
  CHECK(strcmp(acc, RFC_ACCEPT) == 0);
  CHECK_EQ_INT(ws_handshake_accept(NULL, 0, acc), -1);
  static char long_key[200];
  memset(long_key, 'A', sizeof long_key - 1);
  CHECK_EQ_INT(ws_handshake_accept(long_key, 199, acc), -1);

  char key[WS_KEY_LEN + 1];
  int calls = 0;
  CHECK_EQ_INT(ws_handshake_make_key(key, counting_random, &calls), 0);
  CHECK_EQ_INT(calls, 1);
  CHECK(strcmp(key, "AAECAwQFBgcICQoLDA0ODw==") == 0);
  CHECK_EQ_INT(ws_handshake_make_key(key, failing_random, NULL), -1);
  char key2[WS_KEY_LEN + 1];
  CHECK_EQ_INT(ws_handshake_make_key(key, NULL, NULL), 0);
  CHECK_EQ_INT(ws_handshake_make_key(key2, NULL, NULL), 0);
  CHECK_EQ_INT(strlen(key), WS_KEY_LEN);
  CHECK(key[22] == '=' && key[23] == '=');
  CHECK(strcmp(key, key2) != 0);
}

/* ---- server: check_request ---- */

static ws_http_request req;
static ws_handshake_verdict verdict;

static int verdict_of(const char *head) {
  int r = ws_http_parse_request(head, strlen(head), &req);
  CHECK_EQ_INT(r, (int)strlen(head));
  if (r <= 0)
    return -1;
  return ws_handshake_check_request(&req, &verdict);
}

#define H_HOST "Host: example.org\r\n"
#define H_UPG "Upgrade: websocket\r\n"
#define H_CONN "Connection: Upgrade\r\n"
#define H_VER "Sec-WebSocket-Version: 13\r\n"
#define H_KEY "Sec-WebSocket-Key: " RFC_KEY "\r\n"
#define GET "GET /chat HTTP/1.1\r\n"

#define CHECK_REFUSED(head, st, msg)                                           \
  do {                                                                         \
    CHECK_EQ_INT(verdict_of(head), st);                                        \
    CHECK_EQ_INT(verdict.status, st);                                          \
    CHECK(verdict.message && strcmp(verdict.message, msg) == 0);               \
  } while (0)
#define CHECK_ACCEPTED(head)                                                   \
  do {                                                                         \
    CHECK_EQ_INT(verdict_of(head), 0);                                         \
    CHECK_EQ_INT(verdict.status, 0);                                           \
    CHECK(verdict.message == NULL);                                            \
  } while (0)

static void test_check_request_ok(void) {
  CHECK_ACCEPTED(GET H_HOST H_UPG H_CONN H_VER H_KEY
                 "Sec-WebSocket-Protocol: chat, superchat\r\n"
                 "Sec-WebSocket-Extensions: permessage-deflate\r\n"
                 "Sec-WebSocket-Extensions: x-other\r\n\r\n");
  CHECK(verdict.key_len == 24 && memcmp(verdict.key, RFC_KEY, 24) == 0);
  CHECK(verdict.protocols == &req.headers[5]);
  CHECK(verdict.extensions == &req.headers[6]);
  /* Case-insensitive names and tokens, lists, OWS. */
  CHECK_ACCEPTED(GET "host: h\r\nupgrade: h2c,  WebSocket \r\n"
                     "CONNECTION: keep-alive, UPGRADE\r\n"
                     "sec-websocket-version:13\r\nsec-websocket-key:  " RFC_KEY
                     "  \r\n\r\n");
  CHECK(verdict.protocols == NULL && verdict.extensions == NULL);
  /* Upgrade and Connection split over several fields. */
  CHECK_ACCEPTED(GET H_HOST "Upgrade: h2c\r\nUpgrade: websocket\r\n"
                 "Connection: keep-alive\r\nConnection: upgrade\r\n" H_VER H_KEY
                 "\r\n");
  /* Any 22 base64 characters and "==" (and HTTP/1.1 bare-LF heads). */
  CHECK_ACCEPTED("GET / HTTP/1.1\nHost: h\nUpgrade: websocket\nConnection: "
                 "upgrade\nSec-WebSocket-Version: 13\nSec-WebSocket-Key: "
                 "+/+/AAAAzzzz0000999999==\n\n");
}

static void test_check_request_refusals(void) {
  CHECK_REFUSED("POST /chat HTTP/1.1\r\n" H_HOST H_UPG H_CONN H_VER H_KEY "\r\n",
                405, "method must be GET");
  CHECK_REFUSED("get /chat HTTP/1.1\r\n" H_HOST H_UPG H_CONN H_VER H_KEY "\r\n",
                405, "method must be GET");
  CHECK_REFUSED("GETS /chat HTTP/1.1\r\n" H_HOST H_UPG H_CONN H_VER H_KEY "\r\n",
                405, "method must be GET");
  CHECK_REFUSED("GET /chat HTTP/1.0\r\n" H_HOST H_UPG H_CONN H_VER H_KEY "\r\n",
                400, "HTTP/1.1 or later is required");
  CHECK_REFUSED(GET H_UPG H_CONN H_VER H_KEY "\r\n", 400, "missing Host header");
  CHECK_REFUSED(GET H_HOST H_HOST H_UPG H_CONN H_VER H_KEY "\r\n", 400,
                "repeated Host header");
  CHECK_REFUSED(GET H_HOST H_CONN H_VER H_KEY "\r\n", 426,
                "missing Upgrade: websocket");
  CHECK_REFUSED(GET H_HOST "Upgrade: h2c\r\n" H_CONN H_VER H_KEY "\r\n", 400,
                "Upgrade does not name websocket");
  CHECK_REFUSED(GET H_HOST "Upgrade: websocket2\r\n" H_CONN H_VER H_KEY "\r\n",
                400, "Upgrade does not name websocket");
  CHECK_REFUSED(GET H_HOST "Upgrade:\r\n" H_CONN H_VER H_KEY "\r\n", 400,
                "Upgrade does not name websocket");
  CHECK_REFUSED(GET H_HOST H_UPG H_VER H_KEY "\r\n", 400,
                "missing Connection: upgrade");
  CHECK_REFUSED(GET H_HOST H_UPG "Connection: keep-alive\r\n" H_VER H_KEY "\r\n",
                400, "missing Connection: upgrade");
  CHECK_REFUSED(GET H_HOST H_UPG H_CONN H_KEY "\r\n", 426,
                "missing Sec-WebSocket-Version");
  static const char *const bad_versions[] = {
      "Sec-WebSocket-Version: 8\r\n", "Sec-WebSocket-Version: 13, 8\r\n",
      "Sec-WebSocket-Version: 130\r\n", "Sec-WebSocket-Version: 1 3\r\n",
      "Sec-WebSocket-Version:\r\n", H_VER H_VER};
  for (size_t i = 0; i < sizeof bad_versions / sizeof *bad_versions; i++) {
    char head[512];
    snprintf(head, sizeof head, GET H_HOST H_UPG H_CONN "%s" H_KEY "\r\n",
             bad_versions[i]);
    CHECK_REFUSED(head, 426, "unsupported WebSocket version (only 13)");
  }
  CHECK_REFUSED(GET H_HOST H_UPG H_CONN H_VER "\r\n", 400,
                "missing Sec-WebSocket-Key");
  CHECK_REFUSED(GET H_HOST H_UPG H_CONN H_VER H_KEY H_KEY "\r\n", 400,
                "repeated Sec-WebSocket-Key");
  static const char *const bad_keys[] = {
      "dGhlIHNhbXBsZSBub25jZQ=",   /* 23 */
      "dGhlIHNhbXBsZSBub25jZQ===", /* 25 */
      "dGhlIHNhbXBsZSBub25jZXg=",  /* 17 bytes */
      "dGhlIHNhbXBsZSBub25jZ===",  /* 15 bytes and padding */
      "dGhlIHNhbXBsZSBub25jZ!==",  /* not base64 */
      "dGhlIHNhbXBsZSBub25j-Q==",  /* base64url, not base64 */
      "dGhlIHNh bXBsZSBub25jZQ==", /* inner space */
      "dGhlIHNhbXBsZSBub25jZQ",    /* unpadded */
      "",
  };
  for (size_t i = 0; i < sizeof bad_keys / sizeof *bad_keys; i++) {
    char head[512];
    snprintf(head, sizeof head,
             GET H_HOST H_UPG H_CONN H_VER "Sec-WebSocket-Key: %s\r\n\r\n",
             bad_keys[i]);
    CHECK_REFUSED(head, 400,
                  "malformed Sec-WebSocket-Key (not base64 of 16 bytes)");
  }
}

/* The first failed rule decides. */
static void test_check_request_order(void) {
  CHECK_EQ_INT(verdict_of("POST / HTTP/1.0\r\n\r\n"), 405);
  CHECK_REFUSED("GET / HTTP/1.0\r\n\r\n", 400, "HTTP/1.1 or later is required");
  CHECK_REFUSED(GET "\r\n", 400, "missing Host header");
  CHECK_REFUSED(GET H_HOST "\r\n", 426, "missing Upgrade: websocket");
  CHECK_REFUSED(GET H_HOST "Upgrade: h2c\r\n\r\n", 400,
                "Upgrade does not name websocket");
  CHECK_REFUSED(GET H_HOST H_UPG "\r\n", 400, "missing Connection: upgrade");
  CHECK_REFUSED(GET H_HOST H_UPG H_CONN "Sec-WebSocket-Key: x\r\n\r\n", 426,
                "missing Sec-WebSocket-Version");
}

/* ---- builders ---- */

static const ws_handshake_field extra[] = {{"User-Agent", "moonws/1"},
                                           {"Authorization", "Basic dTpw"}};

static ws_handshake_request_spec full_spec(void) {
  ws_handshake_request_spec s = {
      "server.example.com", "/chat?x=1", RFC_KEY, "chat, superchat",
      "permessage-deflate; client_max_window_bits", "http://example.com",
      extra, 2};
  return s;
}

static void test_build_request(void) {
  ws_handshake_request_spec s = full_spec();
  prefill();
  CHECK_EQ_INT(ws_handshake_build_request(&out, &s), 0);
  CHECK(out_is("GET /chat?x=1 HTTP/1.1\r\n"
               "Host: server.example.com\r\n"
               "Upgrade: websocket\r\n"
               "Connection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               "Sec-WebSocket-Version: 13\r\n"
               "Origin: http://example.com\r\n"
               "Sec-WebSocket-Protocol: chat, superchat\r\n"
               "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
               "User-Agent: moonws/1\r\n"
               "Authorization: Basic dTpw\r\n"
               "\r\n"));
  ws_handshake_request_spec m = {"[::1]:9000", "/", RFC_KEY, NULL, "", NULL,
                                 NULL, 0};
  prefill();
  CHECK_EQ_INT(ws_handshake_build_request(&out, &m), 0);
  CHECK(out_is("GET / HTTP/1.1\r\n"
               "Host: [::1]:9000\r\n"
               "Upgrade: websocket\r\n"
               "Connection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               "Sec-WebSocket-Version: 13\r\n"
               "\r\n"));
}

static void test_build_response(void) {
  const ws_handshake_field f[] = {{"Server", "moonws"}};
  prefill();
  CHECK_EQ_INT(ws_handshake_build_response(&out, RFC_KEY, 24, "chat", NULL, f, 1), 0);
  CHECK(out_is("HTTP/1.1 101 Switching Protocols\r\n"
               "Upgrade: websocket\r\n"
               "Connection: Upgrade\r\n"
               "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
               "Sec-WebSocket-Protocol: chat\r\n"
               "Server: moonws\r\n"
               "\r\n"));
  prefill();
  CHECK_EQ_INT(ws_handshake_build_response(&out, RFC_KEY, 24, "", "permessage-deflate",
                                           NULL, 0), 0);
  CHECK(out_is("HTTP/1.1 101 Switching Protocols\r\n"
               "Upgrade: websocket\r\n"
               "Connection: Upgrade\r\n"
               "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
               "Sec-WebSocket-Extensions: permessage-deflate\r\n"
               "\r\n"));
  prefill();
  CHECK_EQ_INT(ws_handshake_build_response(&out, RFC_KEY, 24, NULL, "", NULL, 0), 0);
  CHECK(out_is("HTTP/1.1 101 Switching Protocols\r\n"
               "Upgrade: websocket\r\n"
               "Connection: Upgrade\r\n"
               "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
               "\r\n"));
}

static void test_build_refusal(void) {
  prefill();
  CHECK_EQ_INT(ws_handshake_build_refusal(&out, 405, NULL, NULL, 0, NULL, 0), 0);
  CHECK(out_is("HTTP/1.1 405 Method Not Allowed\r\n"
               "Allow: GET\r\n"
               "Content-Length: 0\r\n"
               "Connection: close\r\n"
               "\r\n"));
  prefill();
  CHECK_EQ_INT(ws_handshake_build_refusal(&out, 426, "", NULL, 0, "only 13", 7), 0);
  CHECK(out_is("HTTP/1.1 426 Upgrade Required\r\n"
               "Upgrade: websocket\r\n"
               "Sec-WebSocket-Version: 13\r\n"
               "Content-Type: text/plain; charset=utf-8\r\n"
               "Content-Length: 7\r\n"
               "Connection: close\r\n"
               "\r\n"
               "only 13"));
  const ws_handshake_field why[] = {{"X-Why", "policy"}};
  prefill();
  CHECK_EQ_INT(ws_handshake_build_refusal(&out, 403, "Go Away", why, 1, NULL, 0), 0);
  CHECK(out_is("HTTP/1.1 403 Go Away\r\n"
               "X-Why: policy\r\n"
               "Content-Length: 0\r\n"
               "Connection: close\r\n"
               "\r\n"));
  /* A user Content-Type replaces the default one. */
  const ws_handshake_field auth[] = {{"WWW-Authenticate", "Basic realm=\"x\""},
                                     {"content-type", "application/json"}};
  prefill();
  CHECK_EQ_INT(ws_handshake_build_refusal(&out, 401, NULL, auth, 2, "{}", 2), 0);
  CHECK(out_is("HTTP/1.1 401 Unauthorized\r\n"
               "WWW-Authenticate: Basic realm=\"x\"\r\n"
               "content-type: application/json\r\n"
               "Content-Length: 2\r\n"
               "Connection: close\r\n"
               "\r\n"
               "{}"));
  /* A body may hold any bytes, NUL included. */
  prefill();
  CHECK_EQ_INT(ws_handshake_build_refusal(&out, 599, NULL, NULL, 0, "a\0\r\n", 4), 0);
  CHECK(ws_buf_len(&out) == strlen(PREFIX) + 107);
  CHECK_MEM(ws_buf_data(&out) + strlen(PREFIX),
            "HTTP/1.1 599 Unknown\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Length: 4\r\nConnection: close\r\n\r\na\0\r\n",
            107);
  /* The refusal parses back as a response head with its body after it. */
  ws_http_response res;
  int n = ws_http_parse_response((const char *)ws_buf_data(&out) + strlen(PREFIX),
                                 ws_buf_len(&out) - strlen(PREFIX), &res);
  CHECK_EQ_INT(n, 103);
  CHECK_EQ_INT(res.status, 599);
}

/* Strings that try to smuggle a header or break the head. */
static const char *const evil[] = {"a\r\nX-Evil: 1", "a\nX-Evil: 1", "a\r",
                                   "\r\n", "a\x01", "a\x7f", "a\x1b[2J"};
#define N_EVIL (sizeof evil / sizeof *evil)

static void check_request_refused(const ws_handshake_request_spec *s) {
  prefill();
  CHECK_EQ_INT(ws_handshake_build_request(&out, s), WS_ERROR);
  CHECK_UNCHANGED();
}

static void test_request_injection(void) {
  for (size_t i = 0; i < N_EVIL; i++) {
    ws_handshake_request_spec s = full_spec();
    s.host = evil[i];
    check_request_refused(&s);
    s = full_spec();
    s.target = evil[i];
    check_request_refused(&s);
    s = full_spec();
    s.origin = evil[i];
    check_request_refused(&s);
    s = full_spec();
    s.protocols = evil[i];
    check_request_refused(&s);
    s = full_spec();
    s.extensions = evil[i];
    check_request_refused(&s);
    s = full_spec();
    s.key = evil[i];
    check_request_refused(&s);
    ws_handshake_field f[2] = {{"X-Ok", "fine"}, {"X-Ok", "fine"}};
    s = full_spec();
    s.fields = f;
    f[1].name = evil[i];
    check_request_refused(&s);
    f[1].name = "X-Ok";
    f[1].value = evil[i];
    check_request_refused(&s);
  }
  /* Other malformed specs. */
  ws_handshake_request_spec s = full_spec();
  s.target = "/a b";
  check_request_refused(&s);
  s.target = "";
  check_request_refused(&s);
  s.target = NULL;
  check_request_refused(&s);
  s = full_spec();
  s.host = "";
  check_request_refused(&s);
  s.host = NULL;
  check_request_refused(&s);
  s = full_spec();
  s.key = "not-a-key";
  check_request_refused(&s);
  s.key = NULL;
  check_request_refused(&s);
  s = full_spec();
  s.fields = NULL;
  check_request_refused(&s);
  ws_handshake_field f[] = {{"X Bad", "v"}, {"", "v"}, {"X:y", "v"},
                            {NULL, "v"},    {"X", NULL}};
  for (size_t i = 0; i < sizeof f / sizeof *f; i++) {
    s = full_spec();
    s.fields = &f[i];
    s.num_fields = 1;
    check_request_refused(&s);
  }
  prefill();
  CHECK_EQ_INT(ws_handshake_build_request(&out, NULL), WS_ERROR);
  CHECK_UNCHANGED();
}

static void test_response_injection(void) {
  for (size_t i = 0; i < N_EVIL; i++) {
    ws_handshake_field f[] = {{"X-Ok", evil[i]}};
    ws_handshake_field g[] = {{evil[i], "v"}};
    prefill();
    CHECK_EQ_INT(ws_handshake_build_response(&out, RFC_KEY, 24, evil[i], NULL, NULL, 0),
                 WS_ERROR);
    CHECK_EQ_INT(ws_handshake_build_response(&out, RFC_KEY, 24, NULL, evil[i], NULL, 0),
                 WS_ERROR);
    CHECK_EQ_INT(ws_handshake_build_response(&out, RFC_KEY, 24, NULL, NULL, f, 1),
                 WS_ERROR);
    CHECK_EQ_INT(ws_handshake_build_response(&out, RFC_KEY, 24, NULL, NULL, g, 1),
                 WS_ERROR);
    CHECK_EQ_INT(ws_handshake_build_refusal(&out, 400, evil[i], NULL, 0, NULL, 0),
                 WS_ERROR);
    CHECK_EQ_INT(ws_handshake_build_refusal(&out, 400, NULL, f, 1, NULL, 0), WS_ERROR);
    CHECK_EQ_INT(ws_handshake_build_refusal(&out, 400, NULL, g, 1, NULL, 0), WS_ERROR);
    CHECK_UNCHANGED();
  }
  prefill();
  /* One subprotocol, a token: a list would fail the client. */
  CHECK_EQ_INT(ws_handshake_build_response(&out, RFC_KEY, 24, "a, b", NULL, NULL, 0),
               WS_ERROR);
  CHECK_EQ_INT(ws_handshake_build_response(&out, RFC_KEY, 24, "a b", NULL, NULL, 0),
               WS_ERROR);
  CHECK_EQ_INT(ws_handshake_build_response(&out, NULL, 0, NULL, NULL, NULL, 0), WS_ERROR);
  CHECK_EQ_INT(ws_handshake_build_response(&out, RFC_KEY, 24, NULL, NULL, NULL, 1),
               WS_ERROR);
  CHECK_EQ_INT(ws_handshake_build_refusal(&out, 101, NULL, NULL, 0, NULL, 0), WS_ERROR);
  CHECK_EQ_INT(ws_handshake_build_refusal(&out, 99, NULL, NULL, 0, NULL, 0), WS_ERROR);
  CHECK_EQ_INT(ws_handshake_build_refusal(&out, 600, NULL, NULL, 0, NULL, 0), WS_ERROR);
  CHECK_EQ_INT(ws_handshake_build_refusal(&out, 400, NULL, NULL, 0, NULL, 3), WS_ERROR);
  CHECK_UNCHANGED();
}

static void test_reserved_fields(void) {
  static const char *const names[] = {
      "Host", "upgrade", "CONNECTION", "sec-websocket-key",
      "Sec-WebSocket-Version", "Sec-Websocket-Accept", "Content-Length",
      "transfer-encoding"};
  for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
    ws_handshake_field f[] = {{"X-Ok", "1"}, {names[i], "x"}};
    ws_handshake_request_spec s = full_spec();
    s.fields = f;
    check_request_refused(&s);
    prefill();
    CHECK_EQ_INT(ws_handshake_build_response(&out, RFC_KEY, 24, NULL, NULL, f, 2),
                 WS_ERROR);
    CHECK_EQ_INT(ws_handshake_build_refusal(&out, 403, NULL, f, 2, NULL, 0), WS_ERROR);
    CHECK_UNCHANGED();
  }
  /* The negotiation's answer is the 101's own; elsewhere a plain header. */
  static const char *const negotiated[] = {"Sec-WebSocket-Protocol",
                                           "sec-websocket-extensions"};
  for (size_t i = 0; i < sizeof negotiated / sizeof *negotiated; i++) {
    ws_handshake_field f[] = {{negotiated[i], "x"}};
    prefill();
    CHECK_EQ_INT(ws_handshake_build_response(&out, RFC_KEY, 24, NULL, NULL, f, 1),
                 WS_ERROR);
    CHECK_UNCHANGED();
    CHECK_EQ_INT(ws_handshake_build_refusal(&out, 403, NULL, f, 1, NULL, 0), 0);
  }
}

/* A buffer that cannot grow: reserve fails without touching memory. */
static void test_out_of_memory(void) {
  uint8_t store[8] = "unused";
  ws_buf fake = {store, 0, SIZE_MAX - 4, SIZE_MAX - 4};
  ws_buf before = fake;
  ws_handshake_request_spec s = full_spec();
  CHECK_EQ_INT(ws_handshake_build_request(&fake, &s), -3);
  CHECK_EQ_INT(ws_handshake_build_response(&fake, RFC_KEY, 24, NULL, NULL, NULL, 0), -3);
  CHECK_EQ_INT(ws_handshake_build_refusal(&fake, 400, NULL, NULL, 0, "x", 1), -3);
  CHECK(fake.base == before.base && fake.start == before.start &&
        fake.end == before.end && fake.cap == before.cap);
  CHECK(strcmp((char *)store, "unused") == 0);
}

/* ---- client: check_response ---- */

static ws_http_response res;
static ws_handshake_answer ans;

static int answer_of(const char *head, const char *offered, bool ext) {
  int r = ws_http_parse_response(head, strlen(head), &res);
  CHECK_EQ_INT(r, (int)strlen(head));
  if (r <= 0)
    return 1;
  return ws_handshake_check_response(&res, RFC_KEY, offered, ext, &ans);
}

#define S101 "HTTP/1.1 101 Switching Protocols\r\n"
#define R_UPG "Upgrade: websocket\r\n"
#define R_CONN "Connection: Upgrade\r\n"
#define R_ACC "Sec-WebSocket-Accept: " RFC_ACCEPT "\r\n"

#define CHECK_ANSWER_ERR(head, offered, ext, msg)                              \
  do {                                                                         \
    CHECK_EQ_INT(answer_of(head, offered, ext), WS_ERROR);                     \
    CHECK(ans.message && strcmp(ans.message, msg) == 0);                       \
    if (ans.message && strcmp(ans.message, msg) != 0)                         \
      fprintf(stderr, "  message: %s\n", ans.message);                         \
    CHECK(ans.protocol == NULL && ans.protocol_len == 0);                      \
    CHECK(ans.extensions == NULL);                                             \
  } while (0)

static void test_check_response(void) {
  CHECK_EQ_INT(answer_of(S101 R_UPG R_CONN R_ACC "\r\n", NULL, false), 0);
  CHECK(ans.message == NULL && ans.protocol == NULL && ans.protocol_len == 0);
  CHECK(ans.extensions == NULL && ans.extensions_len == 0);
  CHECK_EQ_INT(answer_of("HTTP/1.1 101\r\nupgrade: WebSocket\r\n"
                         "connection: keep-alive, upgrade\r\n"
                         "sec-websocket-accept: " RFC_ACCEPT "\r\n\r\n",
                         "", true), 0);
  /* Refusals by status, with the server's reason or the standard one. */
  CHECK_ANSWER_ERR("HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic\r\n\r\n",
                   NULL, false, "server answered 401 Unauthorized");
  CHECK_ANSWER_ERR("HTTP/1.1 403\r\n\r\n", NULL, false, "server answered 403 Forbidden");
  CHECK_ANSWER_ERR("HTTP/1.0 200 Fine thanks\r\n\r\n", NULL, false,
                   "server answered 200 Fine thanks");
  CHECK_ANSWER_ERR("HTTP/1.1 302 Found\r\n" R_UPG R_CONN R_ACC "\r\n", NULL, false,
                   "server answered 302 Found");
  /* A long reason is cut, not overflowed. */
  char head[600];
  snprintf(head, sizeof head, "HTTP/1.1 500 %0300d\r\n\r\n", 0);
  CHECK_EQ_INT(answer_of(head, NULL, false), WS_ERROR);
  CHECK(ans.message == ans.text && strlen(ans.text) < sizeof ans.text);
  CHECK(strncmp(ans.text, "server answered 500 0000", 24) == 0);

  CHECK_ANSWER_ERR(S101 R_CONN R_ACC "\r\n", NULL, false, "missing Upgrade: websocket");
  CHECK_ANSWER_ERR(S101 "Upgrade: h2c\r\n" R_CONN R_ACC "\r\n", NULL, false,
                   "missing Upgrade: websocket");
  CHECK_ANSWER_ERR(S101 R_UPG R_ACC "\r\n", NULL, false, "missing Connection: upgrade");
  CHECK_ANSWER_ERR(S101 R_UPG "Connection: close\r\n" R_ACC "\r\n", NULL, false,
                   "missing Connection: upgrade");
  CHECK_ANSWER_ERR(S101 R_UPG R_CONN "\r\n", NULL, false, "missing Sec-WebSocket-Accept");
  CHECK_ANSWER_ERR(S101 R_UPG R_CONN R_ACC R_ACC "\r\n", NULL, false,
                   "repeated Sec-WebSocket-Accept");
  CHECK_ANSWER_ERR(S101 R_UPG R_CONN
                   "Sec-WebSocket-Accept: S3PPLMBITXAQ9KYGZZHZRBK+XOO=\r\n\r\n",
                   NULL, false, "wrong Sec-WebSocket-Accept");
  CHECK_ANSWER_ERR(S101 R_UPG R_CONN
                   "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo\r\n\r\n",
                   NULL, false, "wrong Sec-WebSocket-Accept");
  CHECK_ANSWER_ERR(S101 R_UPG R_CONN "Sec-WebSocket-Accept: " RFC_KEY "\r\n\r\n",
                   NULL, false, "wrong Sec-WebSocket-Accept");
  /* No key to check against. */
  CHECK_EQ_INT(ws_http_parse_response(S101 R_UPG R_CONN R_ACC "\r\n",
                                      strlen(S101 R_UPG R_CONN R_ACC "\r\n"), &res) > 0, 1);
  CHECK_EQ_INT(ws_handshake_check_response(&res, NULL, NULL, false, &ans), WS_ERROR);
  CHECK(ans.message != NULL);
}

static void test_subprotocols(void) {
#define OK101 S101 R_UPG R_CONN R_ACC
  CHECK_EQ_INT(answer_of(OK101 "Sec-WebSocket-Protocol: superchat\r\n\r\n",
                         "chat, superchat", false), 0);
  CHECK(ans.protocol_len == 9 && memcmp(ans.protocol, "superchat", 9) == 0);
  CHECK_EQ_INT(answer_of(OK101 "Sec-WebSocket-Protocol: chat\r\n\r\n", "chat", false), 0);
  CHECK(ans.protocol_len == 4 && memcmp(ans.protocol, "chat", 4) == 0);
  /* Offered but none chosen fails, as in the browser (issue 16). */
  CHECK_ANSWER_ERR(OK101 "\r\n", "chat, superchat", false,
                   "server chose none of the offered subprotocols");
  CHECK_EQ_INT(answer_of(OK101 "\r\n", "", false), 0);
  CHECK(ans.protocol == NULL && ans.protocol_len == 0);
  CHECK_EQ_INT(answer_of(OK101 "\r\n", " , ,", false), 0); /* a list with no element */
  CHECK_ANSWER_ERR(OK101 "Sec-WebSocket-Protocol: chat\r\n\r\n", NULL, false,
                   "server chose subprotocol \"chat\" that was not offered");
  CHECK_ANSWER_ERR(OK101 "Sec-WebSocket-Protocol: chat\r\n\r\n", "", false,
                   "server chose subprotocol \"chat\" that was not offered");
  CHECK_ANSWER_ERR(OK101 "Sec-WebSocket-Protocol: Chat\r\n\r\n", "chat", false,
                   "server chose subprotocol \"Chat\" that was not offered");
  CHECK_ANSWER_ERR(OK101 "Sec-WebSocket-Protocol: cha\r\n\r\n", "chat", false,
                   "server chose subprotocol \"cha\" that was not offered");
  CHECK_ANSWER_ERR(OK101 "Sec-WebSocket-Protocol: chat, superchat\r\n\r\n",
                   "chat, superchat", false,
                   "server chose subprotocol \"chat, superchat\" that was not offered");
  CHECK_ANSWER_ERR(OK101 "Sec-WebSocket-Protocol:\r\n\r\n", "chat", false,
                   "server chose subprotocol \"\" that was not offered");
  CHECK_ANSWER_ERR(OK101 "Sec-WebSocket-Protocol: chat\r\n"
                         "Sec-WebSocket-Protocol: chat\r\n\r\n",
                   "chat", false, "repeated Sec-WebSocket-Protocol");
}

static void test_extensions(void) {
  CHECK_EQ_INT(answer_of(OK101 "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
                         NULL, true), 0);
  CHECK(ans.extensions_len == 18 &&
        memcmp(ans.extensions, "permessage-deflate", 18) == 0);
  CHECK_EQ_INT(answer_of(OK101 "\r\n", NULL, true), 0);
  CHECK(ans.extensions == NULL);
  CHECK_ANSWER_ERR(OK101 "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n", NULL,
                   false, "server sent Sec-WebSocket-Extensions but none were offered");
  CHECK_ANSWER_ERR(OK101 "Sec-WebSocket-Extensions: a\r\n"
                         "Sec-WebSocket-Extensions: b\r\n\r\n",
                   NULL, true, "repeated Sec-WebSocket-Extensions");
}

/* Client request -> server check -> server answer -> client check. */
static void round_trip(ws_random_fn rnd, void *ud) {
  char key[WS_KEY_LEN + 1];
  CHECK_EQ_INT(ws_handshake_make_key(key, rnd, ud), 0);
  ws_handshake_request_spec s = {"example.org:8080", "/ws?room=1", key,
                                 "chat, superchat", "permessage-deflate",
                                 "https://example.org", extra, 2};
  ws_buf wire = WS_BUF_INIT;
  CHECK_EQ_INT(ws_handshake_build_request(&wire, &s), 0);
  ws_http_request rq;
  int n = ws_http_parse_request((const char *)ws_buf_data(&wire), ws_buf_len(&wire), &rq);
  CHECK_EQ_INT(n, (int)ws_buf_len(&wire));
  CHECK(rq.target_len == 10 && memcmp(rq.target, "/ws?room=1", 10) == 0);
  ws_handshake_verdict v;
  CHECK_EQ_INT(ws_handshake_check_request(&rq, &v), 0);
  CHECK(v.key_len == WS_KEY_LEN && memcmp(v.key, key, WS_KEY_LEN) == 0);
  /* The server picks the second protocol it is offered. */
  CHECK(v.protocols != NULL);
  char chosen[32] = "";
  if (v.protocols) {
    size_t pos = 0, len = 0;
    const char *item = NULL;
    CHECK(ws_http_list_next(v.protocols->value, v.protocols->value_len, &pos, &item, &len));
    CHECK(ws_http_list_next(v.protocols->value, v.protocols->value_len, &pos, &item, &len));
    if (item && len < sizeof chosen)
      memcpy(chosen, item, len);
  }
  CHECK(strcmp(chosen, "superchat") == 0);
  CHECK(v.extensions && v.extensions->value_len == 18);
  ws_buf reply = WS_BUF_INIT;
  CHECK_EQ_INT(ws_handshake_build_response(&reply, v.key, v.key_len, chosen,
                                           "permessage-deflate", NULL, 0), 0);
  ws_http_response rs;
  n = ws_http_parse_response((const char *)ws_buf_data(&reply), ws_buf_len(&reply), &rs);
  CHECK_EQ_INT(n, (int)ws_buf_len(&reply));
  ws_handshake_answer a;
  CHECK_EQ_INT(ws_handshake_check_response(&rs, key, s.protocols, true, &a), 0);
  CHECK(a.protocol_len == 9 && memcmp(a.protocol, "superchat", 9) == 0);
  CHECK(a.extensions_len == 18 && memcmp(a.extensions, "permessage-deflate", 18) == 0);
  /* A different key's answer is refused. */
  CHECK_EQ_INT(ws_handshake_check_response(&rs, RFC_KEY, s.protocols, true, &a),
               strcmp(key, RFC_KEY) == 0 ? 0 : WS_ERROR);
  ws_buf_free(&wire);
  ws_buf_free(&reply);
}

static void test_round_trip(void) {
  int calls = 0;
  round_trip(counting_random, &calls);
  CHECK_EQ_INT(calls, 1);
  round_trip(NULL, NULL);
}

int main(void) {
  TEST_RUN(test_accept_and_key);
  TEST_RUN(test_check_request_ok);
  TEST_RUN(test_check_request_refusals);
  TEST_RUN(test_check_request_order);
  TEST_RUN(test_build_request);
  TEST_RUN(test_build_response);
  TEST_RUN(test_build_refusal);
  TEST_RUN(test_request_injection);
  TEST_RUN(test_response_injection);
  TEST_RUN(test_reserved_fields);
  TEST_RUN(test_out_of_memory);
  TEST_RUN(test_check_response);
  TEST_RUN(test_subprotocols);
  TEST_RUN(test_extensions);
  TEST_RUN(test_round_trip);
  ws_buf_free(&out);
  return TEST_REPORT();
}
