/*
 * wire_frame.c: the frame header, the output buffer, and the names of errors and opcodes.
 *
 * The header is 16 bytes (layout in wire_frame.h and docs/PROTOCOL.md). wire_header_decode
 * is the one place a peer-declared length enters the program: it is compared with the
 * receiver's frame maximum here, before any caller sizes a buffer from it.
 */
#include "wire_frame.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "assert.h"
#include "le.h"

int wire_header_decode(const uint8_t *buf, size_t len, uint32_t frame_size_max,
                       struct wire_header *out)
{
    SPOOL_ASSERT(out != NULL);
    SPOOL_ASSERT(frame_size_max >= WIRE_HEADER_SIZE);
    if (len < WIRE_HEADER_SIZE)
        return -EAGAIN;
    out->frame_size = le_get_u32(buf);
    out->opcode = le_get_u16(buf + 4);
    out->flags = le_get_u16(buf + 6);
    out->request_id = le_get_u64(buf + 8);
    if (out->frame_size < WIRE_HEADER_SIZE)
        return SPOOL_E_BAD_FRAME;
    if (out->frame_size > frame_size_max)
        return SPOOL_E_TOO_LARGE;
    return 0;
}

/* Writes the fields as given, even a frame_size below 16: tests forge bad headers with it.
 * wire_encode only ever passes sizes it measured. */
void wire_header_encode(uint8_t out[WIRE_HEADER_SIZE], const struct wire_header *h)
{
    SPOOL_ASSERT(out != NULL);
    le_put_u32(out, h->frame_size);
    le_put_u16(out + 4, h->opcode);
    le_put_u16(out + 6, h->flags);
    le_put_u64(out + 8, h->request_id);
}

void wire_buf_init(struct wire_buf *b, size_t size_max)
{
    SPOOL_ASSERT(size_max >= WIRE_HEADER_SIZE);
    memset(b, 0, sizeof *b);
    b->size_max = size_max;
}

void wire_buf_free(struct wire_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void wire_buf_consume(struct wire_buf *b, size_t n)
{
    SPOOL_ASSERT(n <= b->len);
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

int wire_buf_reserve(struct wire_buf *b, size_t n)
{
    SPOOL_ASSERT(b->len <= b->cap);
    if (b->cap - b->len >= n)
        return 0;
    if (n > SIZE_MAX / 2 - b->len)
        return -ENOMEM;
    size_t cap = b->cap < 256 ? 256 : b->cap;
    while (cap - b->len < n)
        cap *= 2;
    uint8_t *data = realloc(b->data, cap);
    if (data == NULL)
        return -ENOMEM;
    b->data = data;
    b->cap = cap;
    return 0;
}

/* Names and sentences of the wire codes, indexed by wire code (1..). */
static const struct {
    const char *name;
    const char *text;
} wire_errors[] = {
    [1] = {"BAD_FRAME", "malformed frame"},
    [2] = {"TOO_LARGE", "frame, body, result or count above its limit"},
    [3] = {"UNKNOWN_OP", "unknown opcode"},
    [4] = {"BAD_REQUEST", "invalid field in request"},
    [5] = {"VERSION_UNSUPPORTED", "no protocol version in common"},
    [6] = {"HANDSHAKE_REQUIRED", "HELLO must be the first and only handshake"},
    [7] = {"AUTH_FAILED", "authentication failed"},
    [8] = {"NOT_FOUND", "no such job or queue"},
    [9] = {"LEASE_EXPIRED", "the lease token is stale"},
    [10] = {"WRONG_STATE", "the job is not in a state that allows this"},
    [11] = {"QUEUE_FULL", "the queue is full; retry later"},
    [12] = {"DISK_FULL", "the server's disk headroom is used; retry later"},
    [13] = {"BUSY", "the server is busy; retry later"},
    [14] = {"SHUTTING_DOWN", "the server is shutting down"},
    [15] = {"INTERNAL", "internal server error"},
    [16] = {"TOO_MANY_QUEUES", "the server's queue limit is reached"},
};
#define WIRE_ERROR_WIRE_MAX 16

/* libspool's own codes, from SPOOL_E_CONNECTION_CLOSED (-20100) down. */
static const struct {
    const char *name;
    const char *text;
} client_errors[] = {
    {"CONNECTION_CLOSED", "the server closed the connection"},
    {"PROTOCOL", "the server sent an undecodable reply"},
    {"TIMED_OUT", "timed out"},
    {"RESOLVE", "the server address does not resolve"},
    {"INVALID_ARGUMENT", "invalid argument"},
};
#define CLIENT_ERROR_COUNT (sizeof client_errors / sizeof client_errors[0])

uint16_t wire_error_to_wire(int error)
{
    int code = -error - SPOOL_ERROR_BASE;
    if (code >= 1 && code <= WIRE_ERROR_WIRE_MAX)
        return (uint16_t)code;
    return (uint16_t)(-SPOOL_E_INTERNAL - SPOOL_ERROR_BASE);
}

int wire_error_from_wire(uint16_t code)
{
    if (code >= 1 && code <= WIRE_ERROR_WIRE_MAX)
        return -(SPOOL_ERROR_BASE + (int)code);
    return SPOOL_E_INTERNAL;
}

const char *wire_error_name(int error)
{
    int code = -error - SPOOL_ERROR_BASE;
    if (code >= 1 && code <= WIRE_ERROR_WIRE_MAX)
        return wire_errors[code].name;
    int client = SPOOL_E_CONNECTION_CLOSED - error;
    if (client >= 0 && (size_t)client < CLIENT_ERROR_COUNT)
        return client_errors[client].name;
    return NULL;
}

const char *wire_error_text(int error)
{
    int code = -error - SPOOL_ERROR_BASE;
    if (code >= 1 && code <= WIRE_ERROR_WIRE_MAX)
        return wire_errors[code].text;
    int client = SPOOL_E_CONNECTION_CLOSED - error;
    if (client >= 0 && (size_t)client < CLIENT_ERROR_COUNT)
        return client_errors[client].text;
    return NULL;
}

static const struct {
    uint16_t op;
    const char *name;
} wire_op_names[] = {
    {WIRE_OP_HELLO, "HELLO"},
    {WIRE_OP_PING, "PING"},
    {WIRE_OP_PUT, "PUT"},
    {WIRE_OP_PUT_BATCH, "PUT_BATCH"},
    {WIRE_OP_RESERVE, "RESERVE"},
    {WIRE_OP_ACK, "ACK"},
    {WIRE_OP_ACK_BATCH, "ACK_BATCH"},
    {WIRE_OP_RELEASE, "RELEASE"},
    {WIRE_OP_TOUCH, "TOUCH"},
    {WIRE_OP_BURY, "BURY"},
    {WIRE_OP_KICK, "KICK"},
    {WIRE_OP_KICK_JOB, "KICK_JOB"},
    {WIRE_OP_PEEK, "PEEK"},
    {WIRE_OP_PEEK_NEXT, "PEEK_NEXT"},
    {WIRE_OP_DELETE, "DELETE"},
    {WIRE_OP_WAIT, "WAIT"},
    {WIRE_OP_STATUS, "STATUS"},
    {WIRE_OP_STATS, "STATS"},
    {WIRE_OP_QUEUES, "QUEUES"},
    {WIRE_OP_PAUSE, "PAUSE"},
    {WIRE_OP_RESUME, "RESUME"},
    {WIRE_OP_PURGE, "PURGE"},
    {WIRE_OP_QUEUE_CONFIG, "QUEUE_CONFIG"},
    {WIRE_OP_DELETE_QUEUE, "DELETE_QUEUE"},
};

/* Request names only: a reply's name is its request's (logs print "PUT reply"). */
const char *wire_op_name(uint16_t opcode)
{
    if (opcode == WIRE_OP_ERROR)
        return "ERROR";
    uint16_t request = (uint16_t)(opcode & ~WIRE_OP_REPLY);
    for (size_t i = 0; i < sizeof wire_op_names / sizeof wire_op_names[0]; i++) {
        if (wire_op_names[i].op == request)
            return wire_op_names[i].name;
    }
    return NULL;
}
