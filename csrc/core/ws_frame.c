/* ws_frame.c -- the frame header wire format (RFC 6455 5.2).
 *
 * Decoding reports "incomplete" until the whole header, mask key included,
 * is present, so a caller never acts on half a header; only then are the
 * length rules (63-bit, minimal form) checked. */
#include "ws_frame.h"

#include <string.h>

int ws_frame_header_decode(const uint8_t *p, size_t n, ws_frame_header *h) {
  if (n < 2)
    return WS_INCOMPLETE;
  uint8_t len7 = p[1] & 0x7F;
  bool masked = (p[1] & 0x80) != 0;
  size_t ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
  size_t size = 2 + ext + (masked ? 4 : 0);
  if (n < size)
    return WS_INCOMPLETE;
  uint64_t len = len7;
  if (ext) {
    len = 0;
    for (size_t i = 0; i < ext; i++)
      len = len << 8 | p[2 + i];
    if (ext == 2 ? len < 126 : (len >> 63) != 0 || len <= 0xFFFF)
      return WS_ERROR;
  }
  h->fin = (p[0] & 0x80) != 0;
  h->rsv = p[0] & (WS_RSV1 | WS_RSV2 | WS_RSV3);
  h->opcode = p[0] & 0x0F;
  h->masked = masked;
  h->payload_len = len;
  if (masked)
    memcpy(h->mask, p + 2 + ext, 4);
  else
    memset(h->mask, 0, 4);
  return (int)size;
}

size_t ws_frame_header_size(bool masked, uint64_t payload_len) {
  size_t ext = payload_len < 126 ? 0 : payload_len <= 0xFFFF ? 2 : 8;
  return 2 + ext + (masked ? 4 : 0);
}

size_t ws_frame_header_encode(uint8_t out[WS_FRAME_HEADER_MAX], bool fin,
                              uint8_t rsv, uint8_t opcode, const uint8_t *mask,
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
