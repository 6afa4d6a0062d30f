/* test_frame.c -- frame header encode/decode: round trips across the length
 * forms, exact bytes, malformed lengths, and every truncation. */
#include "test_harness.h"
#include "ws_frame.h"

#include <stdint.h>

static const uint64_t lengths[] = {0,
                                   1,
                                   125,
                                   126,
                                   127,
                                   65535,
                                   65536,
                                   (uint64_t)1 << 32,
                                   ((uint64_t)1 << 63) - 1};

static size_t expected_size(uint64_t len, int masked) {
  return (len < 126 ? 2 : len < 65536 ? 4 : 10) + (masked ? 4 : 0);
}

static void test_round_trip(void) {
  static const uint8_t key[4] = {0xde, 0xad, 0xbe, 0xef};
  static const uint8_t ops[] = {
      WS_OP_CONTINUATION, WS_OP_TEXT, WS_OP_BINARY, WS_OP_CLOSE,
      WS_OP_PING,         WS_OP_PONG, 0x3,          0xF};
  static const uint8_t rsvs[] = {0, WS_RSV1, WS_RSV2, WS_RSV3,
                                 WS_RSV1 | WS_RSV2 | WS_RSV3};
  for (size_t li = 0; li < sizeof lengths / sizeof lengths[0]; li++)
    for (int masked = 0; masked < 2; masked++)
      for (int fin = 0; fin < 2; fin++)
        for (size_t oi = 0; oi < sizeof ops; oi++)
          for (size_t ri = 0; ri < sizeof rsvs; ri++) {
            uint8_t buf[WS_FRAME_HEADER_MAX + 4];
            memset(buf, 0x55, sizeof buf);
            uint64_t len = lengths[li];
            size_t n = ws_frame_header_encode(buf, fin, rsvs[ri], ops[oi],
                                              masked ? key : NULL, len);
            CHECK_EQ_INT(n, expected_size(len, masked));
            CHECK_EQ_INT(ws_frame_header_size(masked, len), n);
            CHECK_EQ_INT(buf[n], 0x55); /* nothing written past the header */
            ws_frame_header h;
            memset(&h, 0xCC, sizeof h);
            /* Trailing bytes (payload) are not part of the header. */
            CHECK_EQ_INT(ws_frame_header_decode(buf, n + 4, &h), (int)n);
            CHECK_EQ_INT(ws_frame_header_decode(buf, n, &h), (int)n);
            CHECK(h.payload_len == len);
            CHECK_EQ_INT(h.fin, fin);
            CHECK_EQ_INT(h.masked, masked);
            CHECK_EQ_INT(h.opcode, ops[oi]);
            CHECK_EQ_INT(h.rsv, rsvs[ri]);
            if (masked)
              CHECK_MEM(h.mask, key, 4);
            for (size_t k = 0; k < n; k++)
              CHECK_EQ_INT(ws_frame_header_decode(buf, k, &h), WS_INCOMPLETE);
          }
}

static void test_exact_bytes(void) {
  uint8_t b[WS_FRAME_HEADER_MAX];
  static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
  /* RFC 6455 5.7 examples. */
  CHECK_EQ_INT(ws_frame_header_encode(b, true, 0, WS_OP_TEXT, NULL, 5), 2);
  CHECK_MEM(b, "\x81\x05", 2);
  CHECK_EQ_INT(ws_frame_header_encode(b, true, 0, WS_OP_TEXT, key, 5), 6);
  CHECK_MEM(b, "\x81\x85\x37\xfa\x21\x3d", 6);
  CHECK_EQ_INT(ws_frame_header_encode(b, false, 0, WS_OP_TEXT, NULL, 3), 2);
  CHECK_MEM(b, "\x01\x03", 2);
  CHECK_EQ_INT(ws_frame_header_encode(b, true, 0, WS_OP_CONTINUATION, NULL, 2),
               2);
  CHECK_MEM(b, "\x80\x02", 2);
  CHECK_EQ_INT(ws_frame_header_encode(b, true, 0, WS_OP_BINARY, NULL, 256), 4);
  CHECK_MEM(b, "\x82\x7E\x01\x00", 4);
  CHECK_EQ_INT(ws_frame_header_encode(b, true, 0, WS_OP_BINARY, NULL, 65536),
               10);
  CHECK_MEM(b, "\x82\x7F\x00\x00\x00\x00\x00\x01\x00\x00", 10);
  CHECK_EQ_INT(ws_frame_header_encode(b, true, WS_RSV1, WS_OP_BINARY, key,
                                      0x0102030405060708ull),
               14);
  CHECK_MEM(b, "\xC2\xFF\x01\x02\x03\x04\x05\x06\x07\x08\x37\xfa\x21\x3d", 14);
  ws_frame_header h;
  CHECK_EQ_INT(ws_frame_header_decode(b, 14, &h), 14);
  CHECK(h.payload_len == 0x0102030405060708ull);
  CHECK_EQ_INT(h.rsv, WS_RSV1);
  /* Unmasked decode clears the key. */
  CHECK_EQ_INT(ws_frame_header_decode((const uint8_t *)"\x89\x00", 2, &h), 2);
  CHECK_MEM(h.mask, "\0\0\0\0", 4);
  CHECK_EQ_INT(h.opcode, WS_OP_PING);
}

static void test_msb_set(void) {
  uint8_t b[14] = {0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0};
  ws_frame_header h;
  CHECK_EQ_INT(ws_frame_header_decode(b, 10, &h), WS_ERROR);
  memset(b + 2, 0xFF, 8);
  CHECK_EQ_INT(ws_frame_header_decode(b, 10, &h), WS_ERROR);
  b[1] = 0xFF; /* masked: the error comes once the key is there too */
  CHECK_EQ_INT(ws_frame_header_decode(b, 13, &h), WS_INCOMPLETE);
  CHECK_EQ_INT(ws_frame_header_decode(b, 14, &h), WS_ERROR);
  b[2] = 0x7F; /* 2^63-1 is fine */
  CHECK_EQ_INT(ws_frame_header_decode(b, 14, &h), 14);
  CHECK(h.payload_len == ((uint64_t)1 << 63) - 1);
}

static void test_non_minimal(void) {
  ws_frame_header h;
  /* 16-bit form for lengths under 126. */
  for (unsigned len = 0; len < 126; len++) {
    uint8_t b[4] = {0x82, 0x7E, (uint8_t)(len >> 8), (uint8_t)len};
    CHECK_EQ_INT(ws_frame_header_decode(b, 4, &h), WS_ERROR);
    CHECK_EQ_INT(ws_frame_header_decode(b, 3, &h), WS_INCOMPLETE);
  }
  uint8_t ok16[4] = {0x82, 0x7E, 0x00, 0x7E};
  CHECK_EQ_INT(ws_frame_header_decode(ok16, 4, &h), 4);
  CHECK(h.payload_len == 126);
  /* 64-bit form for lengths under 65536. */
  static const uint64_t small[] = {0, 1, 125, 126, 127, 65535};
  for (size_t i = 0; i < sizeof small / sizeof small[0]; i++) {
    uint8_t b[14] = {0x82, 0xFF};
    for (int k = 0; k < 8; k++)
      b[2 + k] = (uint8_t)(small[i] >> (56 - 8 * k));
    CHECK_EQ_INT(ws_frame_header_decode(b, 14, &h), WS_ERROR);
    b[1] = 0x7F;
    CHECK_EQ_INT(ws_frame_header_decode(b, 10, &h), WS_ERROR);
  }
  uint8_t ok64[10] = {0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0};
  CHECK_EQ_INT(ws_frame_header_decode(ok64, 10, &h), 10);
  CHECK(h.payload_len == 65536);
}

int main(void) {
  TEST_RUN(test_round_trip);
  TEST_RUN(test_exact_bytes);
  TEST_RUN(test_msb_set);
  TEST_RUN(test_non_minimal);
  return TEST_REPORT();
}
