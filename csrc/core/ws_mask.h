/*
 * ws_mask.h -- XOR masking of payload bytes (RFC 6455 5.3), a word at a time.
 *
 * phase is the offset of data[0] within the frame payload, so a payload
 * that arrives in pieces is unmasked piece by piece: byte i of the piece is
 * XORed with key[(phase + i) % 4].
 */
#ifndef MOONWS_WS_MASK_H
#define MOONWS_WS_MASK_H

#include <stddef.h>
#include <stdint.h>

/* Mask (or unmask: it is its own inverse) len bytes in place. */
void ws_mask_inplace(uint8_t *data, size_t len, const uint8_t key[4],
                     size_t phase);

/* dst = src XOR key; dst and src must not overlap. */
void ws_mask_copy(uint8_t *restrict dst, const uint8_t *restrict src,
                  size_t len, const uint8_t key[4], size_t phase);

#endif
