/*
 * client_internal.h: the connection inside a spool_client (private to src/client).
 *
 * conn.c owns the socket: connect with a deadline, the handshake, writing the output buffer
 * and reading whole frames. client_call() sends one request and waits for the frame with its
 * request id; frames for other ids (replies to pipelined requests) are copied aside to the
 * stash, in arrival order, for spool_pipeline_recv. A decoded reply's byte views point into
 * the input buffer (or a stash copy) and stay valid until the next call on the client, so
 * client.c copies what it returns to the caller before returning.
 */
#ifndef SPOOL_CLIENT_INTERNAL_H
#define SPOOL_CLIENT_INTERNAL_H

#include <stdbool.h>

#include <spool/client.h>

#include "wire_message.h"

/* A frame read for a request nobody was waiting for at that moment (a pipelined reply). */
struct client_stashed {
    struct client_stashed *next;
    struct wire_header header;
    uint8_t *payload; /* malloc'ed, header.frame_size - 16 bytes */
};

struct spool_client {
    int fd;
    bool broken; /* an I/O or protocol error happened: every call fails from now on */
    uint64_t request_id_next;
    uint32_t frame_size_max; /* the server's, from the handshake */
    uint32_t job_size_max;
    uint16_t version; /* negotiated at HELLO; 0 before (version 1 layouts) */
    int io_timeout_ms; /* <= 0: no limit */
    int last_durability;
    struct wire_buf out;
    uint8_t *in; /* in[in_start..in_end) is received, not yet handed out */
    size_t in_start;
    size_t in_end;
    size_t in_cap;
    size_t pipeline_pending; /* pipelined requests whose replies were not yet returned */
    struct client_stashed *stash_head;
    struct client_stashed *stash_tail;
    uint8_t *reply_owned; /* payload copy backing the last reply, freed by the next call */
};

/* The version the client's frames use. */
static inline uint16_t client_version(const struct spool_client *c)
{
    return c->version != 0 ? c->version : WIRE_VERSION_MIN;
}

/* Before the handshake, accept frames up to this size (a HELLO reply or error is tiny). */
#define CLIENT_HANDSHAKE_FRAME_MAX ((uint32_t)64 * 1024)
#define CLIENT_CONNECT_TIMEOUT_MS_DEFAULT 5000

int client_open(const char *address, const struct spool_connect_options *opts,
                struct spool_client **out);
void client_free(struct spool_client *c);

/* Milliseconds on CLOCK_MONOTONIC. */
int64_t client_now_ms(void);

/*
 * Send request op with msg and wait for its reply, for at most the io timeout plus wait_ms
 * (a reserve or wait's own timeout). On 0, *reply holds the decoded reply (release with
 * client_reply_done). An ERROR frame returns its SPOOL_E_* code. Connection and decode
 * failures return their error and mark the client broken.
 */
int client_call(struct spool_client *c, uint16_t op, const union wire_msg *msg, uint32_t wait_ms,
                union wire_msg *reply);
void client_reply_done(struct spool_client *c, uint16_t op, union wire_msg *reply);

/* Pipelining: encode a request into the output buffer without sending. */
int client_enqueue(struct spool_client *c, uint16_t op, const union wire_msg *msg,
                   uint64_t *request_id_out);
int client_flush(struct spool_client *c, int64_t deadline_ms);
/* The next frame for a pipelined request (stash first, then the socket). The payload stays
 * valid until the next call on the client. */
int client_next_frame(struct spool_client *c, struct wire_header *h, const uint8_t **payload);

/* client.c helpers shared with client_query.c. */
bool client_queue_ok(const char *queue);
/* The codec's job spec for a public one: 0, SPOOL_E_INVALID_ARGUMENT or SPOOL_E_TOO_LARGE. */
int client_job_spec_to_wire(const struct spool_job_spec *job, struct wire_job_spec *w);
/* Copy b and a NUL byte to *cursor, advance it, and return the copy. */
const void *client_pack_bytes(char **cursor, struct wire_bytes b);

#endif
