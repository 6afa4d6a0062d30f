/*
 * test_proxyproto.c -- ws_proxyproto: PROXY protocol v1 and v2 headers,
 * whole and cut at every offset (every prefix is incomplete, never an
 * error), followed by the client's bytes (never consumed), the
 * specification's examples, LOCAL and UNSPEC, bounds, malformed headers;
 * and the address text parsers behind version 1.
 */
#include <string.h>

#include "test_harness.h"
#include "ws_proxyproto.h"

static ws_proxyproto pp;

/* Parse head followed by tail; every strict prefix of head must be
 * incomplete, and the result must not depend on the tail. */
static int parse_cut(const uint8_t *head, size_t n) {
  static const char tail[] = "GET / HTTP/1.1\r\n";
  uint8_t buf[WS_PROXYPROTO_MAX + sizeof tail];
  for (size_t cut = 0; cut < n; cut++) {
    memcpy(buf, head, cut);
    if (ws_proxyproto_parse(buf, cut, &pp) != WS_INCOMPLETE) {
      fprintf(stderr, "  prefix of %zu bytes not incomplete\n", cut);
      return -100;
    }
  }
  memcpy(buf, head, n);
  int whole = ws_proxyproto_parse(buf, n, &pp);
  ws_proxyproto first = pp;
  memcpy(buf + n, tail, sizeof tail - 1);
  int with_tail = ws_proxyproto_parse(buf, n + sizeof tail - 1, &pp);
  if (whole != with_tail || (whole > 0 && memcmp(&first, &pp, sizeof pp)))
    return -101;
  return whole;
}

static int parse_text(const char *s) {
  return parse_cut((const uint8_t *)s, strlen(s));
}

static void test_v1(void) {
  const char *h = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
  CHECK_EQ_INT(parse_text(h), (int)strlen(h));
  CHECK_EQ_INT(pp.version, 1);
  CHECK(!pp.local);
  CHECK_EQ_INT(pp.family, 4);
  CHECK_MEM(pp.src, "\xc0\xa8\x00\x01", 4);
  CHECK_MEM(pp.dst, "\xc0\xa8\x00\x0b", 4);
  CHECK_EQ_INT(pp.src_port, 56324);
  CHECK_EQ_INT(pp.dst_port, 443);

  h = "PROXY TCP6 2001:db8::1 ::1 65535 0\r\n";
  CHECK_EQ_INT(parse_text(h), (int)strlen(h));
  CHECK_EQ_INT(pp.family, 6);
  CHECK_MEM(pp.src, "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01", 16);
  CHECK_MEM(pp.dst, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01", 16);
  CHECK_EQ_INT(pp.src_port, 65535);
  CHECK_EQ_INT(pp.dst_port, 0);

  h = "PROXY UNKNOWN\r\n";
  CHECK_EQ_INT(parse_text(h), (int)strlen(h));
  CHECK(pp.local);
  h = "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n";
  CHECK_EQ_INT(parse_text(h), (int)strlen(h));
  CHECK(pp.local);

  /* The longest header the specification allows: 107 bytes. */
  h = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
      "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
  CHECK_EQ_INT(strlen(h), WS_PROXYPROTO_V1_MAX);
  CHECK_EQ_INT(parse_text(h), WS_PROXYPROTO_V1_MAX);
  h = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
      "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
  CHECK_EQ_INT(parse_text(h), (int)strlen(h));
  CHECK_MEM(pp.src, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 16);
}

static void test_v1_malformed(void) {
#define S(x) {x, sizeof(x) - 1}
  static const struct {
    const char *s;
    size_t n;
  } bad[] = {
      S("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"),       /* LF without CR */
      S("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n"),    /* two spaces */
      S("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n"),    /* a trailing space */
      S("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"),       /* a field missing */
      S("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n"),     /* protocol */
      S("PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n"),
      S("PROXY TCP4 ::1 5.6.7.8 1 2\r\n"),         /* family mismatch */
      S("PROXY TCP6 1.2.3.4 ::1 1 2\r\n"),
      S("PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n"),   /* octet */
      S("PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n"),    /* leading zero */
      S("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n"),
      S("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"), /* port */
      S("PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n"),
      S("PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n"),
      S("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\0\r\n"),   /* a NUL */
      S("PROXY TCP6 1::2::3 ::1 1 2\r\n"),
      S("PROXY TCP6 [::1] ::1 1 2\r\n"),
      S("PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n"),
      S("PROXY UNKNOWNX\r\n"),
      S("PROXY \r\n"),
      S("GET / HTTP/1.1\r\n\r\n"), /* no header at all */
      S("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n"),
  };
#undef S
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    pp.message = NULL;
    if (ws_proxyproto_parse((const uint8_t *)bad[i].s, bad[i].n, &pp) != WS_ERROR) {
      fprintf(stderr, "  accepted: %s\n", bad[i].s);
      CHECK(0);
    }
    CHECK(pp.message != NULL);
  }
  /* 107 bytes without CRLF: over the bound, not incomplete. */
  char longer[WS_PROXYPROTO_V1_MAX + 1];
  memset(longer, '1', sizeof longer);
  memcpy(longer, "PROXY TCP4 ", 11);
  CHECK_EQ_INT(ws_proxyproto_parse((uint8_t *)longer, WS_PROXYPROTO_V1_MAX - 1, &pp),
               WS_INCOMPLETE);
  CHECK_EQ_INT(ws_proxyproto_parse((uint8_t *)longer, WS_PROXYPROTO_V1_MAX, &pp),
               WS_ERROR);
}

/* A version 2 header: cmd, family/transport byte, data. */
static size_t v2(uint8_t *out, uint8_t ver_cmd, uint8_t fam, const uint8_t *data,
                 size_t n) {
  static const uint8_t sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                  0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
  memcpy(out, sig, 12);
  out[12] = ver_cmd;
  out[13] = fam;
  out[14] = (uint8_t)(n >> 8);
  out[15] = (uint8_t)n;
  if (n)
    memcpy(out + 16, data, n);
  return 16 + n;
}

static void test_v2(void) {
  uint8_t h[WS_PROXYPROTO_MAX + 1];
  static const uint8_t ip4[] = {127, 0, 0, 2, 127, 0, 0, 1, 0xDB, 0x46, 0x1F, 0x90,
                                /* a TLV: PP2_TYPE_ALPN "h2" */ 0x01, 0x00, 0x02, 'h', '2'};
  size_t n = v2(h, 0x21, 0x11, ip4, sizeof ip4);
  CHECK_EQ_INT(parse_cut(h, n), (int)n);
  CHECK_EQ_INT(pp.version, 2);
  CHECK(!pp.local);
  CHECK_EQ_INT(pp.family, 4);
  CHECK_MEM(pp.src, "\x7f\0\0\x02", 4);
  CHECK_MEM(pp.dst, "\x7f\0\0\x01", 4);
  CHECK_EQ_INT(pp.src_port, 56134);
  CHECK_EQ_INT(pp.dst_port, 8080);

  uint8_t ip6[36] = {0};
  ip6[15] = 1;                  /* ::1 */
  ip6[16] = 0x20, ip6[17] = 0x01; /* 2001:: */
  ip6[32] = 0x30, ip6[33] = 0x39; /* 12345 */
  ip6[35] = 80;
  n = v2(h, 0x21, 0x21, ip6, sizeof ip6);
  CHECK_EQ_INT(parse_cut(h, n), (int)n);
  CHECK_EQ_INT(pp.family, 6);
  CHECK_MEM(pp.src, ip6, 16);
  CHECK_MEM(pp.dst, ip6 + 16, 16);
  CHECK_EQ_INT(pp.src_port, 12345);
  CHECK_EQ_INT(pp.dst_port, 80);

  /* LOCAL (a health check), UNSPEC and UNIX keep the socket's addresses. */
  n = v2(h, 0x20, 0x00, NULL, 0);
  CHECK_EQ_INT(parse_cut(h, n), 16);
  CHECK(pp.local);
  n = v2(h, 0x20, 0x11, ip4, 12); /* LOCAL with addresses: ignored */
  CHECK_EQ_INT(parse_cut(h, n), 28);
  CHECK(pp.local);
  n = v2(h, 0x21, 0x00, NULL, 0);
  CHECK_EQ_INT(parse_cut(h, n), 16);
  CHECK(pp.local);
  uint8_t unix_data[216] = {0};
  n = v2(h, 0x21, 0x31, unix_data, sizeof unix_data);
  CHECK_EQ_INT(parse_cut(h, n), (int)n);
  CHECK(pp.local);

  /* The largest data allowed, and one byte over. */
  static uint8_t big[WS_PROXYPROTO_V2_DATA_MAX + 1];
  memcpy(big, ip4, 12);
  n = v2(h, 0x21, 0x11, big, WS_PROXYPROTO_V2_DATA_MAX);
  CHECK_EQ_INT(ws_proxyproto_parse(h, n, &pp), (int)n);
  n = v2(h, 0x21, 0x11, big, WS_PROXYPROTO_V2_DATA_MAX + 1);
  CHECK_EQ_INT(ws_proxyproto_parse(h, 16, &pp), WS_ERROR); /* known at once */
}

static void test_v2_malformed(void) {
  uint8_t h[64];
  static const uint8_t ip4[12] = {1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2};
  struct {
    uint8_t ver_cmd, fam;
    size_t n;
  } bad[] = {
      {0x11, 0x11, 12}, /* version 1 in a v2 header */
      {0x31, 0x11, 12}, /* version 3 */
      {0x22, 0x11, 12}, /* command 2 */
      {0x21, 0x41, 12}, /* family 4 */
      {0x21, 0x13, 12}, /* transport 3 */
      {0x21, 0x11, 11}, /* IPv4 addresses cut short */
      {0x21, 0x21, 12}, /* IPv6 family, IPv4-sized data */
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    size_t n = v2(h, bad[i].ver_cmd, bad[i].fam, ip4, bad[i].n);
    pp.message = NULL;
    CHECK_EQ_INT(ws_proxyproto_parse(h, n, &pp), WS_ERROR);
    CHECK(pp.message != NULL);
  }
  /* A signature that goes wrong midway. */
  uint8_t sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0B};
  CHECK_EQ_INT(ws_proxyproto_parse(sig, 11, &pp), WS_INCOMPLETE);
  CHECK_EQ_INT(ws_proxyproto_parse(sig, 12, &pp), WS_ERROR);
  CHECK_EQ_INT(ws_proxyproto_parse((const uint8_t *)"\r\n\r\nX", 5, &pp), WS_ERROR);
  CHECK_EQ_INT(ws_proxyproto_parse((const uint8_t *)"PROXX", 5, &pp), WS_ERROR);
  CHECK_EQ_INT(ws_proxyproto_parse((const uint8_t *)"", 0, &pp), WS_INCOMPLETE);
}

static void test_addresses(void) {
  uint8_t a[16];
  struct {
    const char *text;
    const char *bytes; /* NULL: invalid */
  } v6[] = {
      {"::", "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"},
      {"::1", "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01"},
      {"1::", "\0\x01\0\0\0\0\0\0\0\0\0\0\0\0\0\0"},
      {"1:2:3:4:5:6:7:8", "\0\x01\0\x02\0\x03\0\x04\0\x05\0\x06\0\x07\0\x08"},
      {"1:2:3:4:5:6:7::", "\0\x01\0\x02\0\x03\0\x04\0\x05\0\x06\0\x07\0\0"},
      {"::2:3:4:5:6:7:8", "\0\0\0\x02\0\x03\0\x04\0\x05\0\x06\0\x07\0\x08"},
      {"FFFF::abcd", "\xff\xff\0\0\0\0\0\0\0\0\0\0\0\0\xab\xcd"},
      {"::ffff:192.0.2.1", "\0\0\0\0\0\0\0\0\0\0\xff\xff\xc0\0\x02\x01"},
      {"1:2:3:4:5:6:1.2.3.4", "\0\x01\0\x02\0\x03\0\x04\0\x05\0\x06\x01\x02\x03\x04"},
      {"1:2:3:4:5:6:7:8:9", NULL},
      {"1:2:3:4:5:6:7:8::", NULL},
      {"::1:2:3:4:5:6:7:8", NULL},
      {"1:2:3:4:5:6:7", NULL},
      {"1::2::3", NULL},
      {":::", NULL},
      {":1", NULL},
      {"1:", NULL},
      {"12345::", NULL},
      {"g::", NULL},
      {"1.2.3.4", NULL},
      {"::1.2.3.4.5", NULL},
      {"1.2.3.4::", NULL},
      {"1:2:3:4:5:6:7:1.2.3.4", NULL},
      {"", NULL},
  };
  for (size_t i = 0; i < sizeof v6 / sizeof *v6; i++) {
    bool ok = ws_proxyproto_ipv6(v6[i].text, strlen(v6[i].text), a);
    if (ok != (v6[i].bytes != NULL) || (ok && memcmp(a, v6[i].bytes, 16))) {
      fprintf(stderr, "  IPv6 %s\n", v6[i].text);
      CHECK(0);
    }
  }
  static const char *const bad4[] = {"", "1", "1.2.3", "1.2.3.4.", ".1.2.3", "1..2.3",
                                     "256.1.1.1", "1.2.3.04", "1.2.3.4a", "1.2.3.-4"};
  for (size_t i = 0; i < sizeof bad4 / sizeof *bad4; i++)
    CHECK(!ws_proxyproto_ipv4(bad4[i], strlen(bad4[i]), a));
  CHECK(ws_proxyproto_ipv4("0.0.0.0", 7, a) && !memcmp(a, "\0\0\0\0", 4));
  CHECK(ws_proxyproto_ipv4("255.255.255.255", 15, a) && !memcmp(a, "\xff\xff\xff\xff", 4));
}

int main(void) {
  TEST_RUN(test_v1);
  TEST_RUN(test_v1_malformed);
  TEST_RUN(test_v2);
  TEST_RUN(test_v2_malformed);
  TEST_RUN(test_addresses);
  return TEST_REPORT();
}
