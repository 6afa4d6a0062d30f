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
