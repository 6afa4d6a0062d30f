/*
 * test_url.c -- WebSocket URL splitting: schemes, default and explicit
 * ports, IPv6 literals, userinfo, resources (including a query without a
 * path), and every refusal with a message.  Each URL is parsed from an
 * exact-size heap copy so a read past len is caught by ASan/valgrind.
 */
#include <stdlib.h>
#include <string.h>

#include "test_harness.h"
#include "ws_proto.h"
#include "ws_url.h"

static ws_url u;
static char *copy;

static int parse(const char *s) {
  size_t n = strlen(s);
  free(copy);
  copy = malloc(n ? n : 1);
  memcpy(copy, s, n);
  return ws_url_parse(copy, n, &u);
}

static bool part_is(const char *p, size_t n, const char *want) {
  return p && n == strlen(want) && memcmp(p, want, n) == 0;
}

#define CHECK_URL(s, sec, h, v6, prt, expl, res, slash, user)                 \
  do {                                                                         \
    CHECK_EQ_INT(parse(s), 0);                                                 \
    CHECK(u.message == NULL);                                                  \
    CHECK_EQ_INT(u.secure, sec);                                               \
    CHECK(part_is(u.host, u.host_len, h));                                     \
    CHECK_EQ_INT(u.host_is_ipv6, v6);                                          \
    CHECK_EQ_INT(u.port, prt);                                                 \
    CHECK_EQ_INT(u.port_explicit, expl);                                       \
    CHECK(part_is(u.resource, u.resource_len, res));                           \
    CHECK_EQ_INT(u.resource_needs_slash, slash);                               \
    if (user)                                                                  \
      CHECK(part_is(u.userinfo, u.userinfo_len, (const char *)(user)));        \
    else                                                                       \
      CHECK(u.userinfo == NULL && u.userinfo_len == 0);                        \
  } while (0)

#define CHECK_BAD(s, msg)                                                      \
  do {                                                                         \
    CHECK_EQ_INT(parse(s), WS_ERROR);                                          \
    CHECK(u.message && strcmp(u.message, msg) == 0);                           \
    if (u.message && strcmp(u.message, msg) != 0)                              \
      fprintf(stderr, "  \"%s\": %s\n", s, u.message);                         \
  } while (0)

static void test_schemes_and_ports(void) {
  CHECK_URL("ws://example.com", false, "example.com", false, 80, false, "/", false, NULL);
  CHECK_URL("wss://example.com", true, "example.com", false, 443, false, "/", false, NULL);
  CHECK_URL("http://example.com/", false, "example.com", false, 80, false, "/", false, NULL);
  CHECK_URL("https://example.com/", true, "example.com", false, 443, false, "/", false,
            NULL);
  CHECK_URL("WS://Example.COM/Chat", false, "Example.COM", false, 80, false, "/Chat",
            false, NULL);
  CHECK_URL("WsS://h", true, "h", false, 443, false, "/", false, NULL);
  CHECK_URL("HTTPS://h", true, "h", false, 443, false, "/", false, NULL);
  CHECK_URL("ws://h:8080/x", false, "h", false, 8080, true, "/x", false, NULL);
  CHECK_URL("wss://h:1", true, "h", false, 1, true, "/", false, NULL);
  CHECK_URL("wss://h:65535", true, "h", false, 65535, true, "/", false, NULL);
  CHECK_URL("ws://h:80", false, "h", false, 80, true, "/", false, NULL);
  CHECK_URL("ws://h:0080", false, "h", false, 80, true, "/", false, NULL);
  CHECK_URL("ws://127.0.0.1:9001/", false, "127.0.0.1", false, 9001, true, "/", false,
            NULL);
  CHECK_URL("ws://a-b_c~d.e%41/", false, "a-b_c~d.e%41", false, 80, false, "/", false,
            NULL);
}

static void test_ipv6(void) {
  CHECK_URL("ws://[::1]/", false, "::1", true, 80, false, "/", false, NULL);
  CHECK_URL("wss://[::1]:9443/p", true, "::1", true, 9443, true, "/p", false, NULL);
  CHECK_URL("ws://[2001:db8::a:B:c]", false, "2001:db8::a:B:c", true, 80, false, "/",
            false, NULL);
  CHECK_URL("ws://[::ffff:192.0.2.1]:81?q", false, "::ffff:192.0.2.1", true, 81, true,
            "?q", true, NULL);
  CHECK_BAD("ws://[]/", "invalid IPv6 address");
  CHECK_BAD("ws://[1.2.3.4]/", "invalid IPv6 address");
  CHECK_BAD("ws://[::1/", "unterminated IPv6 address (missing ']')");
  CHECK_BAD("ws://[::1", "unterminated IPv6 address (missing ']')");
  CHECK_BAD("ws://[::g]/", "invalid character in IPv6 address");
  CHECK_BAD("ws://[fe80::1%25eth0]/", "invalid character in IPv6 address");
  CHECK_BAD("ws://[::1]x/", "unexpected characters after IPv6 address");
  CHECK_BAD("ws://[::1]]/", "unexpected characters after IPv6 address");
  CHECK_BAD("ws://::1/", "missing host");
  CHECK_BAD("ws://[::1]:/", "missing port number after ':'");
  CHECK_BAD("ws://[::1]:0/", "port number out of range (1-65535)");
}

static void test_userinfo(void) {
  CHECK_URL("ws://user:pass@h/", false, "h", false, 80, false, "/", false, "user:pass");
  CHECK_URL("wss://u@[::1]:5/x", true, "::1", true, 5, true, "/x", false, "u");
  /* Up to the last '@' before the path. */
  CHECK_URL("ws://a@b:c@h:1/p@q", false, "h", false, 1, true, "/p@q", false, "a@b:c");
  CHECK_URL("ws://h/p@q", false, "h", false, 80, false, "/p@q", false, NULL);
  CHECK_URL("ws://h?x@y", false, "h", false, 80, false, "?x@y", true, NULL);
  /* Empty userinfo is none. */
  CHECK_URL("ws://@h", false, "h", false, 80, false, "/", false, NULL);
  CHECK_BAD("ws://user@/", "missing host");
  CHECK_BAD("ws://user@", "missing host");
}

static void test_resources(void) {
  CHECK_URL("ws://h/chat?room=1&x=%20", false, "h", false, 80, false,
            "/chat?room=1&x=%20", false, NULL);
  CHECK_URL("ws://h?x", false, "h", false, 80, false, "?x", true, NULL);
  CHECK_URL("ws://h:81?x=1/2", false, "h", false, 81, true, "?x=1/2", true, NULL);
  CHECK_URL("ws://h?", false, "h", false, 80, false, "?", true, NULL);
  CHECK_URL("ws://h/?", false, "h", false, 80, false, "/?", false, NULL);
  CHECK_URL("ws://h//a/../b", false, "h", false, 80, false, "//a/../b", false, NULL);
  CHECK_URL("ws://h/caf\xc3\xa9", false, "h", false, 80, false, "/caf\xc3\xa9", false,
            NULL);
  /* Parts point into the input; only len bytes are read. */
  const char *s = "ws://host:99/path and more";
  CHECK_EQ_INT(ws_url_parse(s, 17, &u), 0);
  CHECK(u.host == s + 5 && u.host_len == 4);
  CHECK(u.resource == s + 12 && u.resource_len == 5);
  CHECK_EQ_INT(u.port, 99);
}

static void test_refusals(void) {
  CHECK_BAD("ws://h/#frag", "fragment identifiers are not allowed in WebSocket URLs");
  CHECK_BAD("ws://h#", "fragment identifiers are not allowed in WebSocket URLs");
  CHECK_BAD("ws://h/?a#b", "fragment identifiers are not allowed in WebSocket URLs");
  CHECK_BAD("ftp://h/", "unsupported scheme (use ws:// or wss://)");
  CHECK_BAD("wsx://h/", "unsupported scheme (use ws:// or wss://)");
  CHECK_BAD("w://h/", "unsupported scheme (use ws:// or wss://)");
  CHECK_BAD("://h/", "unsupported scheme (use ws:// or wss://)");
  CHECK_BAD("localhost:8080/x", "unsupported scheme (use ws:// or wss://)");
  CHECK_BAD("example.com", "missing scheme (ws:// or wss://)");
  CHECK_BAD("", "missing scheme (ws:// or wss://)");
  CHECK_BAD("ws:h/", "missing \"//\" after the scheme");
  CHECK_BAD("ws:/h/", "missing \"//\" after the scheme");
  CHECK_BAD("ws:", "missing \"//\" after the scheme");
  CHECK_BAD("ws://", "missing host");
  CHECK_BAD("ws:///path", "missing host");
  CHECK_BAD("ws://:80/", "missing host");
  CHECK_BAD("ws://?x", "missing host");
  CHECK_BAD("ws://h:/", "missing port number after ':'");
  CHECK_BAD("ws://h:", "missing port number after ':'");
  CHECK_BAD("ws://h:0", "port number out of range (1-65535)");
  CHECK_BAD("ws://h:65536", "port number out of range (1-65535)");
  CHECK_BAD("ws://h:99999999999999999999999/", "port number out of range (1-65535)");
  CHECK_BAD("ws://h:8o/", "invalid port number");
  CHECK_BAD("ws://h:-1/", "invalid port number");
  CHECK_BAD("ws://h:+80/", "invalid port number");
  CHECK_BAD("ws://h:80:81/", "invalid port number");
  CHECK_BAD("ws://h!/", "invalid character in host");
  CHECK_BAD("ws://h,i/", "invalid character in host");
  CHECK_BAD("ws://h\\i/", "invalid character in host");
  CHECK_BAD("ws://h\xc3\xa9/", "invalid character in host");
  CHECK_BAD("ws://h%4/", "invalid percent-escape in host");
  CHECK_BAD("ws://h%zz/", "invalid percent-escape in host");
  CHECK_BAD("ws://h%", "invalid percent-escape in host");
  static const char *const spaced[] = {
      " ws://h/", "ws://h/ ", "ws://h /", "ws://h/a b", "ws://h/\r\nX: y",
      "ws://h/\n", "ws://h\r/", "ws://h/\t", "ws://h/\x7f", "ws://h/\x01",
      "ws://u\r\n@h/"};
  for (size_t i = 0; i < sizeof spaced / sizeof *spaced; i++)
    CHECK_BAD(spaced[i], "spaces and control characters are not allowed in URLs");
  CHECK_EQ_INT(ws_url_parse("ws://h/\0x", 9, &u), WS_ERROR);
  CHECK(u.message && strcmp(u.message,
                            "spaces and control characters are not allowed in URLs") == 0);
  CHECK_EQ_INT(ws_url_parse(NULL, 0, &u), WS_ERROR);
  CHECK(u.message != NULL);
}

int main(void) {
  TEST_RUN(test_schemes_and_ports);
  TEST_RUN(test_ipv6);
  TEST_RUN(test_userinfo);
  TEST_RUN(test_resources);
  TEST_RUN(test_refusals);
  free(copy);
  return TEST_REPORT();
}
