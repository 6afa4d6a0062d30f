/* fuzz_frame_server.c -- frames from a client, to a server conn (see
 * fuzz_frame.h). */
#include "fuzz_frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  return frame_fuzz(WS_ROLE_SERVER, data, size);
}
