/*
 * spool/error.h: error codes of libspool and of the spool wire protocol, and the export macro.
 *
 * Every libspool call returns an int: 0 on success, a negative errno for a system error
 * (-ECONNREFUSED, -ENOMEM, ...) or one of the SPOOL_E_* codes below. The SPOOL_E_* codes live
 * in a reserved negative band (-20001 .. -20999), far below every errno and apart from the
 * storage engine's own band (-10001 ..), so a value never means two things.
 *
 * Codes -20001 .. -20099 travel on the wire: an error frame carries the positive number
 * (code = -(SPOOL_ERROR_BASE + wire_code)), see docs/PROTOCOL.md. Their names (the text after
 * SPOOL_E_) are what the server logs and what the `spool` CLI prints. Codes -20100 and below
 * are produced by the client library only and never sent.
 *
 * This header is self-contained and may be included alone.
 */
#ifndef SPOOL_ERROR_H
#define SPOOL_ERROR_H

#if defined(_WIN32)
#define SPOOL_API
#elif defined(__GNUC__)
#define SPOOL_API __attribute__((visibility("default")))
#else
#define SPOOL_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Base of the reserved band: a code is -(SPOOL_ERROR_BASE + n). */
#define SPOOL_ERROR_BASE 20000

enum spool_error {
    SPOOL_OK = 0,
    /* Sent by the server (wire codes 1..99). */
    SPOOL_E_BAD_FRAME = -20001,           /* a frame that does not parse; connection closed */
    SPOOL_E_TOO_LARGE = -20002,           /* frame, body, result or batch above its limit */
    SPOOL_E_UNKNOWN_OP = -20003,          /* an opcode this server does not know */
    SPOOL_E_BAD_REQUEST = -20004,         /* well-formed frame, invalid field (queue name...) */
    SPOOL_E_VERSION_UNSUPPORTED = -20005, /* no protocol version in common; connection closed */
    SPOOL_E_HANDSHAKE_REQUIRED = -20006,  /* a request before HELLO; connection closed */
    SPOOL_E_AUTH_FAILED = -20007,         /* wrong shared secret; connection closed */
    SPOOL_E_NOT_FOUND = -20008,           /* no such job (or queue, for stats QUEUE) */
    SPOOL_E_LEASE_EXPIRED = -20009,       /* the lease token is stale: the job moved on */
    SPOOL_E_WRONG_STATE = -20010,         /* the job is not in a state the call allows */
    SPOOL_E_QUEUE_FULL = -20011,          /* per-queue job/byte limit reached: retry later */
    SPOOL_E_DISK_FULL = -20012,           /* the server keeps its disk headroom: retry later */
    SPOOL_E_BUSY = -20013,                /* too many connections or requests: retry later */
    SPOOL_E_SHUTTING_DOWN = -20014,       /* the server is stopping: retry elsewhere/later */
    SPOOL_E_INTERNAL = -20015,            /* a server fault; the server log says more */
    SPOOL_E_TOO_MANY_QUEUES = -20016,     /* a new queue would exceed the server's
                                             --max-queues; delete or empty some queues */
    /* Produced by libspool only (never on the wire). */
    SPOOL_E_CONNECTION_CLOSED = -20100, /* the server closed (or reset) the connection */
    SPOOL_E_PROTOCOL = -20101,          /* the server sent bytes libspool cannot decode */
    SPOOL_E_TIMED_OUT = -20102,         /* connect or I/O timeout expired */
    SPOOL_E_RESOLVE = -20103,           /* the server address did not resolve */
    SPOOL_E_INVALID_ARGUMENT = -20104,  /* a caller argument is out of range */
};

/*
 * A static English sentence for an error code (SPOOL_E_*, negative errno, or 0). Never NULL;
 * the string lives as long as the process and must not be freed. Unknown codes give
 * "unknown error".
 */
SPOOL_API const char *spool_strerror(int error);

/*
 * The short upper-case name of an error code: "LEASE_EXPIRED", "NOT_FOUND", ...; for a
 * negative errno the errno's symbolic name ("ECONNREFUSED") when known, else "ERRNO". "OK" for
 * 0. Never NULL; static storage, not to be freed.
 */
SPOOL_API const char *spool_error_name(int error);

/* True if the same request may succeed later unchanged (QUEUE_FULL, DISK_FULL, BUSY, ...). */
SPOOL_API int spool_error_is_retryable(int error);

#ifdef __cplusplus
}
#endif

#endif
