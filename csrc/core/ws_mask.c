/* ws_mask.c -- XOR masking a machine word at a time.
 *
 * The 4-byte key repeated twice is one 8-byte word, so after rotating it
 * by the phase every aligned-to-the-payload step of 8 bytes uses the same
 * word.  Words are moved with memcpy (any alignment, no aliasing games) and
 * the key lives in locals so the compiler can keep it in a register and
 * vectorize; only the last len % 8 bytes go one at a time. */
#include "ws_mask.h"
#include "ws_word.h"

#include <string.h>

/* dst may equal src (each word is read before it is written), not overlap
 * it otherwise. */
static inline void mask_run(uint8_t *dst, const uint8_t *src, size_t len,
                            const uint8_t key[4], size_t phase) {
  /* The key three times over: from offset phase & 3 on, any 8 bytes are
   * the key rotated to the phase (whatever the byte order), so the word
   * is one load instead of eight byte copies. */
  uint8_t kk[12];
  memcpy(kk, key, 4);
  memcpy(kk + 4, key, 4);
  memcpy(kk + 8, key, 4);
  const uint8_t *k = kk + (phase & 3);
  uint64_t kw = ws_load64(k);
  size_t i = 0;
  for (; len - i >= 32; i += 32) {
    ws_store64(dst + i, ws_load64(src + i) ^ kw);
    ws_store64(dst + i + 8, ws_load64(src + i + 8) ^ kw);
    ws_store64(dst + i + 16, ws_load64(src + i + 16) ^ kw);
    ws_store64(dst + i + 24, ws_load64(src + i + 24) ^ kw);
  }
  for (; len - i >= 8; i += 8)
    ws_store64(dst + i, ws_load64(src + i) ^ kw);
  for (; i < len; i++)
    dst[i] = src[i] ^ k[i & 3];
}

void ws_mask_inplace(uint8_t *data, size_t len, const uint8_t key[4],
                     size_t phase) {
  mask_run(data, data, len, key, phase);
}

void ws_mask_copy(uint8_t *restrict dst, const uint8_t *restrict src,
                  size_t len, const uint8_t key[4], size_t phase) {
  mask_run(dst, src, len, key, phase);
}
