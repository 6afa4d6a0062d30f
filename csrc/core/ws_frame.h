/*
 * ws_frame.h -- frame header encoding and decoding (RFC 6455 5.2).
 *
 * Only the wire format lives here.  Whether a header is acceptable for a
 * role and state (masking direction, reserved bits, opcodes, control frame
 * rules, limits) is decided by ws_conn, which knows both.
 */
#ifndef MOONWS_WS_FRAME_H
#define MOONWS_WS_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ws_proto.h"

#define WS_FRAME_HEADER_MAX 14

typedef struct ws_frame_header {
  uint64_t payload_len;
  uint8_t mask[4];  /* valid when masked */
  uint8_t opcode;   /* 4 bits, not checked here */
  uint8_t rsv;      /* WS_RSV1|WS_RSV2|WS_RSV3 as found */
  bool fin;
  bool masked;
} ws_frame_header;

/* Decode the header at p[0, n).
 * Returns the header size (2..14), WS_INCOMPLETE when n is too short, or
 * WS_ERROR when the length field is malformed: a 64-bit length with its most
 * significant bit set, or a length not in its minimal form (RFC 6455 5.2:
 * "the minimal number of bytes MUST be used"). Both mean close code 1002. */
int ws_frame_header_decode(const uint8_t *p, size_t n, ws_frame_header *h);

/* Encode a header into out; mask NULL means unmasked.  Returns its size.
 * (Inline: every frame sent writes one, most of them 2 bytes.) */
static inline size_t ws_frame_header_encode(uint8_t out[WS_FRAME_HEADER_MAX],
                                            bool fin, uint8_t rsv,
                                            uint8_t opcode,
                                            const uint8_t *mask,
                                            uint64_t payload_len) {
  uint8_t m = mask ? 0x80 : 0;
  size_t n = 2;
  out[0] = (uint8_t)((fin ? 0x80 : 0) | (rsv & (WS_RSV1 | WS_RSV2 | WS_RSV3)) |
                     (opcode & 0x0F));
  if (payload_len < 126) {
    out[1] = (uint8_t)(m | payload_len);
  } else if (payload_len <= 0xFFFF) {
    out[1] = m | 126;
    out[2] = (uint8_t)(payload_len >> 8);
    out[3] = (uint8_t)payload_len;
    n = 4;
  } else {
    out[1] = m | 127;
    for (int i = 0; i < 8; i++)
      out[2 + i] = (uint8_t)(payload_len >> (56 - 8 * i));
    n = 10;
  }
  if (mask) {
    memcpy(out + n, mask, 4);
    n += 4;
  }
  return n;
}

/* Size of the header ws_frame_header_encode would write. */
static inline size_t ws_frame_header_size(bool masked, uint64_t payload_len) {
  size_t ext = payload_len < 126 ? 0 : payload_len <= 0xFFFF ? 2 : 8;
  return 2 + ext + (masked ? 4 : 0);
}

#endif
