/*
 * The limits that the wire codec (src/wire), the log records (src/record.h) and the queue state
 * machine (src/queue.h) all enforce, each defined once. A limit defined per layer drifted: the
 * wire let a reserve ask for 1024 jobs and the queue clamped it to 256 without a word; the
 * record codec took 256-byte idempotency keys that no wire frame can carry. Here each has its
 * unit last in its name and a comment deriving its value; docs/PROTOCOL.md ("Limits") and
 * docs/RECORDS.md quote them.
 *
 * Over-limit input is an operating error: the wire decoder answers TOO_LARGE (PROTOCOL.md), the
 * record decoder RECORD_EINVAL; the layers below assert what the ones above checked.
 */
#ifndef SPOOL_COMMON_LIMITS_H
#define SPOOL_COMMON_LIMITS_H

/* Queue names: 1..200 bytes. Short enough for one log line and a metric label, long enough
 * for service.environment.priority style names with room to spare. */
#define LIMIT_QUEUE_NAME_MAX_BYTES 200u

/* Idempotency keys: 0..255 bytes, what the wire's u8 length prefix holds. A UUID (36) or a
 * hex SHA-256 (64) fits with room to spare. */
#define LIMIT_KEY_MAX_BYTES 255u

/* Ack results: small by contract, 64 KiB (issue 3); larger output belongs in the worker's own
 * store, named by the result. */
#define LIMIT_RESULT_MAX_BYTES (64u * 1024u)

/* Bury and dead reasons: a worker's last error line or two, not a log file. */
#define LIMIT_REASON_MAX_BYTES 1024u

/* Queues one reserve may watch: the reserver embeds one link per queue (no allocation), and a
 * worker serving more queues than this is better split. */
#define LIMIT_RESERVE_MAX_QUEUES 16u

/* Jobs one reserve may ask for: a worker's batch. 1024 deliveries of at least 38 bytes each are
 * 38 KiB of reply, and the server cuts a reply at the frame maximum anyway (the first job always
 * goes, later ones while they fit); the arrays sized by it (8 KiB of job pointers, 64 KiB of
 * delivery views) live on the stack of one handler call. */
#define LIMIT_RESERVE_MAX_JOBS 1024u

#endif
