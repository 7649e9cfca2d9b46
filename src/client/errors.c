/*
 * errors.c: names and sentences for libspool's error codes and job states.
 *
 * The SPOOL_E_* table lives in the wire codec (wire_frame.c), so the server logs and the
 * client prints the same names; negative errno values go to glibc's static descriptions
 * (strerrordesc_np / strerrorname_np: no buffer, thread-safe).
 */
#include <string.h>

#include "client_internal.h"

const char *spool_strerror(int error)
{
    if (error == 0)
        return "success";
    const char *text = wire_error_text(error);
    if (text != NULL)
        return text;
    if (error < 0 && error > -4096) {
        text = strerrordesc_np(-error);
        if (text != NULL)
            return text;
    }
    return "unknown error";
}

const char *spool_error_name(int error)
{
    if (error == 0)
        return "OK";
    const char *name = wire_error_name(error);
    if (name != NULL)
        return name;
    if (error < 0 && error > -4096) {
        name = strerrorname_np(-error);
        if (name != NULL)
            return name;
        return "ERRNO";
    }
    return "UNKNOWN";
}

int spool_error_is_retryable(int error)
{
    return error == SPOOL_E_QUEUE_FULL || error == SPOOL_E_DISK_FULL || error == SPOOL_E_BUSY ||
           error == SPOOL_E_SHUTTING_DOWN || error == SPOOL_E_TIMED_OUT;
}

const char *spool_state_name(int state)
{
    static const char *const names[] = {
        [SPOOL_STATE_UNKNOWN] = "unknown", [SPOOL_STATE_READY] = "ready",
        [SPOOL_STATE_DELAYED] = "delayed", [SPOOL_STATE_RESERVED] = "reserved",
        [SPOOL_STATE_DEAD] = "dead",       [SPOOL_STATE_DONE] = "done",
        [SPOOL_STATE_EXPIRED] = "expired",
    };
    if (state < 0 || state > SPOOL_STATE_EXPIRED)
        return "unknown";
    return names[state];
}
