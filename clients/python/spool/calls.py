"""Every request of the protocol as a :class:`Call`: what to send and how to treat the reply.

:class:`spool.Client`, :class:`spool.AsyncClient` and :class:`spool.Pipeline` build their
requests here, so argument checks, units and the "may this be retried after a reconnect?" rule
are written once. Durations of jobs are milliseconds (``delay_ms``, ``ttr_ms``), as on the wire;
how long a *call* may block (``timeout`` of reserve and wait) is in seconds, as everywhere in
Python.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, NamedTuple, Sequence

from . import codec
from .codec import Delivery, JobSpec, JobState, Op
from .errors import InvalidArgument


class Call(NamedTuple):
    op: int
    # The bytes; or, for a request whose layout depends on the protocol version (STATS and
    # QUEUES), a function of the connection's negotiated version that makes them.
    payload: bytes | Callable[[int], bytes]
    wait_s: float  # how long the server may legitimately hold the reply (reserve, wait)
    # True when sending it again after a lost connection cannot do twice what was meant once:
    # reads, settings, puts with an idempotency key, reserves whose leases die with the
    # connection. Acks, releases, deletes and kicks are not retried.
    idempotent: bool


def timeout_ms(timeout: float | None, what: str) -> int:
    """Seconds (float) to the wire's u32 milliseconds, rounded up so 0.0001 s still blocks;
    None = as long as the protocol allows (2^32-1 ms, 49 days)."""
    if timeout is None:
        return codec.U32_MAX
    if not isinstance(timeout, (int, float)) or timeout < 0 or math.isnan(timeout):
        raise InvalidArgument(f"{what} timeout must be >= 0 seconds, not {timeout!r}")
    return min(codec.U32_MAX, math.ceil(timeout * 1000))


def ping() -> Call:
    return Call(Op.PING, b"", 0.0, True)


def put(queue: str, body: bytes | str, *, priority: int = 0, delay_ms: int = 0,
        run_at_ms: int | None = None, ttr_ms: int = 0, max_attempts: int | None = None,
        ttl_ms: int = 0, key: str | bytes | None = None) -> Call:
    spec = JobSpec(queue, body, priority, delay_ms, run_at_ms, ttr_ms, max_attempts, ttl_ms, key)
    return Call(Op.PUT, codec.encode_job_spec(spec), 0.0, bool(key))


def put_batch(jobs: Iterable[JobSpec | tuple[str, bytes | str]]) -> Call:
    specs = jobs if isinstance(jobs, list) else list(jobs)
    keyed = all(isinstance(j, JobSpec) and j.key for j in specs)
    return Call(Op.PUT_BATCH, codec.encode_put_batch(specs), 0.0, keyed)


def reserve(queues: str | Sequence[str], count: int = 1, timeout: float | None = 0.0,
            detach: bool = False) -> Call:
    ms = timeout_ms(timeout, "reserve")
    flags = codec.RESERVE_DETACH if detach else 0
    queue_list = [queues] if isinstance(queues, str) else list(queues)
    return Call(Op.RESERVE, codec.encode_reserve(queue_list, count, ms, flags), ms / 1000,
                not detach)


def ack(job_id: int, lease: int, result: bytes | str | None = None) -> Call:
    return Call(Op.ACK, codec.encode_ack(job_id, lease, result), 0.0, False)


AckItem = Delivery | tuple[int, int] | tuple[int, int, "bytes | str | None"]


def ack_items(items: Iterable[AckItem]) -> list[tuple[int, int, bytes | str | None]]:
    out: list[tuple[int, int, bytes | str | None]] = []
    for item in items:
        if isinstance(item, Delivery):
            out.append((item.id, item.lease, None))
        elif len(item) == 2:
            out.append((item[0], item[1], None))
        else:
            out.append((item[0], item[1], item[2]))  # type: ignore[misc]
    return out


def ack_batch(items: Iterable[AckItem]) -> Call:
    return Call(Op.ACK_BATCH, codec.encode_ack_batch(ack_items(items)), 0.0, False)


def release(job_id: int, lease: int, delay_ms: int = 0, priority: int | None = None,
            reason: str | bytes | None = None) -> Call:
    return Call(Op.RELEASE, codec.encode_release(job_id, lease, delay_ms, priority, reason), 0.0,
                False)


def touch(job_id: int, lease: int, extend_ms: int = 0) -> Call:
    # Touching twice only moves the deadline twice to about the same place.
    return Call(Op.TOUCH, codec.encode_touch(job_id, lease, extend_ms), 0.0, True)


def bury(job_id: int, lease: int, reason: str | bytes | None = None) -> Call:
    return Call(Op.BURY, codec.encode_bury(job_id, lease, reason), 0.0, False)


def kick(queue: str, count: int = 1) -> Call:
    return Call(Op.KICK, codec.encode_kick(queue, count), 0.0, False)


def kick_job(job_id: int) -> Call:
    return Call(Op.KICK_JOB, codec.encode_job_ref(job_id), 0.0, False)


def peek(job_id: int) -> Call:
    return Call(Op.PEEK, codec.encode_job_ref(job_id), 0.0, True)


def peek_next(queue: str, state: JobState | int = JobState.READY) -> Call:
    return Call(Op.PEEK_NEXT, codec.encode_peek_next(queue, state), 0.0, True)


def delete(job_id: int) -> Call:
    return Call(Op.DELETE, codec.encode_job_ref(job_id), 0.0, False)


def wait(job_id: int, timeout: float | None = 0.0) -> Call:
    ms = timeout_ms(timeout, "wait")
    return Call(Op.WAIT, codec.encode_wait(job_id, ms), ms / 1000, True)


def status(job_id: int) -> Call:
    return Call(Op.STATUS, codec.encode_job_ref(job_id), 0.0, True)


def payload_for(call: Call, version: int) -> bytes:
    """The call's bytes on a connection that negotiated ``version``."""
    return call.payload(version) if callable(call.payload) else call.payload


def stats(queue: str | None = None, cursor: str = "", limit: int = 0) -> Call:
    """STATS: one page (version 2: the queues named after ``cursor``, at most ``limit``)."""
    codec.encode_stats(queue, codec.VERSION, cursor, limit)  # arguments checked now
    return Call(Op.STATS, lambda v: codec.encode_stats(queue, v, cursor, limit), 0.0, True)


def queues(cursor: str = "", limit: int = 0) -> Call:
    codec.encode_queues(codec.VERSION, cursor, limit)
    return Call(Op.QUEUES, lambda v: codec.encode_queues(v, cursor, limit), 0.0, True)


def delete_queue(queue: str, force: bool = False) -> Call:
    return Call(Op.DELETE_QUEUE, codec.encode_delete_queue(queue, force), 0.0, False)


def pause(queue: str) -> Call:
    return Call(Op.PAUSE, codec.encode_queue_ref(queue), 0.0, True)


def resume(queue: str) -> Call:
    return Call(Op.RESUME, codec.encode_queue_ref(queue), 0.0, True)


def purge(queue: str) -> Call:
    return Call(Op.PURGE, codec.encode_queue_ref(queue), 0.0, False)


def queue_config(queue: str, ttr_ms: int | None = None, max_attempts: int | None = None) -> Call:
    return Call(Op.QUEUE_CONFIG, codec.encode_queue_config(queue, ttr_ms, max_attempts), 0.0, True)
