/*
 * Fuzz target for the wire codec: the input is a byte stream as a peer would send it. Each
 * frame's header is decoded against a frame maximum, then its payload under the header's
 * opcode, in the layouts of every protocol version; whatever decodes must re-encode to exactly
 * the same bytes in that version (the encoding is canonical), and nothing may read outside the
 * input (run under ASan).
 *
 * Built two ways: with clang -fsanitize=fuzzer as a libFuzzer target (LLVMFuzzerTestOneInput),
 * and, in every build, by fuzz_replay.c, which runs the checked-in corpus plus a bounded
 * number of mutations of it (suite 'fuzz').
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wire_message.h"

/* Small so that TOO_LARGE paths are reached by short inputs too. */
#define FUZZ_FRAME_SIZE_MAX 65536u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_one_frame(const struct wire_header *h, const uint8_t *payload, size_t len,
                           uint16_t version)
{
    union wire_msg m;
    if (wire_decode_v(version, h->opcode, payload, len, &m) != 0)
        return;
    struct wire_buf b;
    wire_buf_init(&b, FUZZ_FRAME_SIZE_MAX);
    int rc = wire_encode_v(&b, version, h->opcode, h->request_id, &m);
    /* A decoded message always re-encodes, byte for byte. */
    if (rc != 0 || b.len != h->frame_size || memcmp(b.data + WIRE_HEADER_SIZE, payload, len) != 0)
        abort();
    wire_buf_free(&b);
    wire_msg_free(h->opcode, &m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;
    while (off < size) {
        struct wire_header h;
        int rc = wire_header_decode(data + off, size - off, FUZZ_FRAME_SIZE_MAX, &h);
        if (rc != 0 || h.frame_size > size - off)
            break; /* need more bytes, or a framing error: a server would close here */
        for (uint16_t v = WIRE_VERSION_MIN; v <= WIRE_VERSION; v++)
            fuzz_one_frame(&h, data + off + WIRE_HEADER_SIZE, h.frame_size - WIRE_HEADER_SIZE,
                           v);
        off += h.frame_size;
    }
    return 0;
}
