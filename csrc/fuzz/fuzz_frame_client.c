/* fuzz_frame_client.c -- frames from a server, to a client conn (see
 * fuzz_frame.h). */
#include "fuzz_frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  return frame_fuzz(WS_ROLE_CLIENT, data, size);
}
