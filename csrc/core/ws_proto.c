/* ws_proto.c -- tables behind ws_proto.h, and the default CSPRNG source. */
#include "ws_proto.h"

#include <openssl/rand.h>
#include <string.h>

const char *ws_close_code_name(unsigned code) {
  switch (code) {
#define WS_CLOSE_NAME_(num, name)                                              \
  case num:                                                                    \
    return #name;
    WS_CLOSE_CODES(WS_CLOSE_NAME_)
#undef WS_CLOSE_NAME_
  default:
    return NULL;
  }
}

bool ws_close_code_valid_on_wire(unsigned code) {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
         (code >= 3000 && code <= 4999);
}

static const char *const error_names[WS_E_COUNT_] = {
    NULL,
#define WS_ERROR_NAME_(id, name, text) name,
    WS_ERRORS(WS_ERROR_NAME_)
#undef WS_ERROR_NAME_
};

static const char *const error_descriptions[WS_E_COUNT_] = {
    NULL,
#define WS_ERROR_TEXT_(id, name, text) text,
    WS_ERRORS(WS_ERROR_TEXT_)
#undef WS_ERROR_TEXT_
};

const char *ws_error_name(enum ws_error e) {
  return (e > WS_E_NONE && e < WS_E_COUNT_) ? error_names[e] : NULL;
}

const char *ws_error_description(enum ws_error e) {
  return (e > WS_E_NONE && e < WS_E_COUNT_) ? error_descriptions[e] : NULL;
}

/* Masks are drawn 4 bytes a frame; asking OpenSSL for 4 bytes each time
 * costs more than the frame, so draw a pool and hand it out.  The pool is
 * per thread so no lock is needed; bytes are never handed out twice. */
#define RANDOM_POOL_SIZE 512
static _Thread_local struct {
  uint8_t bytes[RANDOM_POOL_SIZE];
  size_t used;
  bool filled;
} random_pool;

int ws_random_default(void *ud, uint8_t *out, size_t n) {
  (void)ud;
  if (n > RANDOM_POOL_SIZE / 4)
    return RAND_bytes(out, (int)n) == 1 ? 0 : -1;
  if (!random_pool.filled || RANDOM_POOL_SIZE - random_pool.used < n) {
    if (RAND_bytes(random_pool.bytes, RANDOM_POOL_SIZE) != 1)
      return -1;
    random_pool.used = 0;
    random_pool.filled = true;
  }
  memcpy(out, random_pool.bytes + random_pool.used, n);
  memset(random_pool.bytes + random_pool.used, 0, n);
  random_pool.used += n;
  return 0;
}
