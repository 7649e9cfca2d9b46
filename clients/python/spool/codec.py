"""The spool wire protocol, versions 1 and 2 (docs/PROTOCOL.md): frames, requests and replies.

Version 2 pages STATS and QUEUES (a cursor and a limit; replies end with the next cursor),
adds counters to STATS and the EXPIRED job state. The layouts that differ take the negotiated
version (``Reader.version``, the ``version`` argument of the encoders); the rest is the same in
both.

This module does no I/O. Encoders turn arguments into the bytes of one frame; decoders turn one
reply payload into Python values. :class:`FrameReader` cuts a byte stream into frames, checking
each frame size against the server's maximum *before* buffering the payload, so a hostile
length costs nothing. Both :class:`spool.Client` and :class:`spool.AsyncClient` use it, so the
format is written once on the Python side, as ``src/wire/`` is on the C side.

Every decoder consumes its payload exactly; a payload that is short, has a length running past
its end, a count above its limit, or trailing bytes raises :class:`spool.ProtocolError`.
"""

from __future__ import annotations

import enum
import re
import struct
from dataclasses import dataclass, field
from typing import Callable, Sequence

from .errors import InvalidArgument, ProtocolError, SpoolError, TooLarge, error_from_wire

# "SPOL" read as a little-endian u32: the first field of HELLO.
MAGIC = 0x4C4F5053
VERSION = 2
VERSION_MIN = 1
HEADER_SIZE = 16
HEADER = struct.Struct("<IHHQ")
OP_REPLY = 0x8000
OP_ERROR = 0xFFFF

# Before HELLO|REPLY names the server's frame maximum, a reply larger than this is refused: a
# HELLO reply or error is a few dozen bytes plus a 1024-byte text, and the protocol's smallest
# allowed frame maximum (4096) always holds one.
FRAME_SIZE_HANDSHAKE_MAX = 4096
# The protocol's ceiling on any configured frame maximum (64 MiB): a HELLO reply announcing more
# is a protocol violation, and no frame above it is ever buffered.
FRAME_SIZE_LIMIT = 64 * 1024 * 1024
FRAME_SIZE_MIN = 4096

QUEUE_NAME_SIZE_MAX = 200
KEY_SIZE_MAX = 255
RESULT_SIZE_MAX = 65536
TEXT_SIZE_MAX = 1024
BATCH_COUNT_MAX = 4096
RESERVE_COUNT_MAX = 1024
RESERVE_QUEUES_MAX = 16
STATS_QUEUES_MAX = 65535
U32_MAX = 0xFFFFFFFF
U64_MAX = 0xFFFFFFFFFFFFFFFF

PUT_RUN_AT = 0x01
PUT_MAX_ATTEMPTS = 0x02
PUT_DUPLICATE = 0x01
RESERVE_DETACH = 0x01
RELEASE_PRIORITY = 0x01
CONFIG_TTR = 0x01
CONFIG_MAX_ATTEMPTS = 0x02
QUEUE_PAUSED = 0x01
DELETE_QUEUE_FORCE = 0x01

_QUEUE_NAME = re.compile(rb"[A-Za-z0-9._:-]{1,200}\Z")


class Op(enum.IntEnum):
    """Request opcodes (a reply is ``op | 0x8000``, an error reply ``0xFFFF``)."""

    HELLO = 0x0001
    PING = 0x0002
    PUT = 0x0010
    PUT_BATCH = 0x0011
    RESERVE = 0x0012
    ACK = 0x0013
    ACK_BATCH = 0x0014
    RELEASE = 0x0015
    TOUCH = 0x0016
    BURY = 0x0017
    KICK = 0x0018
    KICK_JOB = 0x0019
    PEEK = 0x001A
    PEEK_NEXT = 0x001B
    DELETE = 0x001C
    WAIT = 0x001D
    STATUS = 0x001E
    STATS = 0x0020
    QUEUES = 0x0021
    PAUSE = 0x0022
    RESUME = 0x0023
    PURGE = 0x0024
    QUEUE_CONFIG = 0x0025
    DELETE_QUEUE = 0x0026  # a new opcode: any version (an older server: UnknownOp)


class Durability(enum.IntEnum):
    """How far a mutating request's log records got before the reply was sent."""

    NONE = 0  # nothing needed logging, or applied in memory only
    WRITTEN = 1  # in the server's page cache: survives kill -9, not power loss
    SYNCED = 2  # fdatasync'ed: survives power loss


class JobState(enum.IntEnum):
    UNKNOWN = 0
    READY = 1
    DELAYED = 2
    RESERVED = 3
    DEAD = 4
    DONE = 5  # acked
    EXPIRED = 6  # its ttl ran out before an ack (version 2; version 1 says DEAD, "expired")


# ---- values ----


@dataclass(slots=True)
class JobSpec:
    """One job to put. Durations are milliseconds; ``run_at_ms`` is an absolute Unix ms time
    (then ``delay_ms`` is ignored); ``max_attempts`` None = the queue's default, 0 = no limit;
    ``ttr_ms`` 0 = the queue's default; ``ttl_ms`` 0 = never dropped; ``key`` is an idempotency
    key (a repeated key returns the first job's id and enqueues nothing)."""

    queue: str
    body: bytes | str = b""
    priority: int = 0
    delay_ms: int = 0
    run_at_ms: int | None = None
    ttr_ms: int = 0
    max_attempts: int | None = None
    ttl_ms: int = 0
    key: str | bytes | None = None


@dataclass(slots=True)
class HelloReply:
    version: int
    frame_size_max: int
    job_size_max: int
    server_time_ms: int
    server_name: str


@dataclass(slots=True)
class PutResult:
    id: int
    duplicate: bool  # the key was seen before: id is the original job's
    durability: Durability


@dataclass(slots=True)
class Delivery:
    """A reserved job: ack, release, touch or bury it with ``id`` and ``lease``."""

    id: int
    lease: int
    attempt: int  # 1 on the first delivery
    priority: int
    deadline_ms: int  # Unix ms (server clock) when the lease expires unless touched
    queue: str
    body: bytes


@dataclass(slots=True)
class Job:
    """A job as PEEK, STATUS and WAIT report it (times are Unix ms on the server's clock)."""

    id: int
    state: JobState
    queue: str
    priority: int
    attempts: int
    max_attempts: int
    ttr_ms: int
    created_ms: int
    ready_at_ms: int
    deadline_ms: int
    finished_ms: int
    reason: str  # why it is dead, else ""
    result: bytes  # the ack's result (done jobs; STATUS and WAIT)
    body: bytes  # PEEK and PEEK_NEXT only

    @property
    def done(self) -> bool:
        return self.state == JobState.DONE

    @property
    def dead(self) -> bool:
        return self.state == JobState.DEAD

    @property
    def expired(self) -> bool:
        return self.state == JobState.EXPIRED


@dataclass(slots=True)
class AckBatchResult:
    durability: Durability
    errors: list[SpoolError | None]  # one per ack, in request order: None = acked

    @property
    def ok(self) -> bool:
        return all(e is None for e in self.errors)


@dataclass(slots=True)
class TouchResult:
    deadline_ms: int
    durability: Durability


@dataclass(slots=True)
class CountResult:
    count: int
    durability: Durability


@dataclass(slots=True)
class QueueStats:
    name: str
    paused: bool
    ready: int
    delayed: int
    reserved: int
    dead: int
    total_put: int
    oldest_ready_age_ms: int
    ack_floor: int
    ttr_ms: int
    max_attempts: int
    expired: int = 0  # expired jobs still remembered (version 2)


@dataclass(slots=True)
class Stats:
    uptime_ms: int
    connections: int
    commits: int
    log_bytes: int
    ready: int
    delayed: int
    reserved: int
    dead: int
    total_put: int
    total_acked: int
    queues: list[QueueStats] = field(default_factory=list)
    # Version 2 (0 from a version 1 server):
    queue_count: int = 0  # queues the server knows (every page)
    expired: int = 0  # jobs whose ttl ran out since the server started
    keys: int = 0  # idempotency keys remembered
    keys_evicted: int = 0  # keys forgotten early at the server's --max-idempotency-keys
    next_cursor: str = ""  # a page's: the name to continue after ("" = the last page)


@dataclass(slots=True)
class QueueInfo:
    name: str
    paused: bool


# ---- encoding ----

_U8 = struct.Struct("<B")
_U32 = struct.Struct("<I")
_SPEC_FIXED = struct.Struct("<BIQIIQ")  # flags, priority, delay, ttr, max_attempts, ttl
_ID_LEASE = struct.Struct("<QQ")


def to_bytes(value: bytes | bytearray | memoryview | str | None, what: str) -> bytes:
    if value is None:
        return b""
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise InvalidArgument(f"{what} must be bytes or str, not {type(value).__name__}")


def check_uint(value: int, limit: int, what: str) -> int:
    if not isinstance(value, int) or value < 0 or value > limit:
        raise InvalidArgument(f"{what} must be an integer in [0, {limit}], not {value!r}")
    return value


def queue_name(queue: str | bytes) -> bytes:
    raw = to_bytes(queue, "queue")
    if not _QUEUE_NAME.match(raw):
        raise InvalidArgument(f"queue name {queue!r}: 1..200 bytes of [A-Za-z0-9._:-]")
    return raw


def name8(raw: bytes) -> bytes:
    return _U8.pack(len(raw)) + raw


def text16(value: str | bytes | None, what: str, size_max: int = TEXT_SIZE_MAX) -> bytes:
    raw = to_bytes(value, what)
    if len(raw) > size_max:
        raise TooLarge(f"{what} is {len(raw)} bytes, at most {size_max}")
    return struct.pack("<H", len(raw)) + raw


def blob32(raw: bytes) -> bytes:
    return _U32.pack(len(raw)) + raw


def frame(op: int, request_id: int, payload: bytes = b"") -> bytes:
    """One frame: the 16-byte header and the payload."""
    return HEADER.pack(HEADER_SIZE + len(payload), op, 0, request_id) + payload


def encode_hello(client_name: str, auth: str | bytes | None, version_max: int = VERSION) -> bytes:
    if not VERSION_MIN <= version_max <= VERSION:
        raise InvalidArgument(f"protocol version {version_max} outside {VERSION_MIN}..{VERSION}")
    return (
        struct.pack("<IHH", MAGIC, VERSION_MIN, version_max)
        + text16(client_name, "client name")
        + text16(auth, "auth")
    )


def encode_job_spec(job: JobSpec) -> bytes:
    """The bytes of one job spec (PUT's payload, one item of PUT_BATCH)."""
    flags = 0
    delay_ms = job.delay_ms
    if job.run_at_ms is not None:
        flags |= PUT_RUN_AT
        delay_ms = job.run_at_ms
    max_attempts = 0
    if job.max_attempts is not None:
        flags |= PUT_MAX_ATTEMPTS
        max_attempts = job.max_attempts
    key = to_bytes(job.key, "key")
    if len(key) > KEY_SIZE_MAX:
        raise TooLarge(f"idempotency key is {len(key)} bytes, at most {KEY_SIZE_MAX}")
    body = to_bytes(job.body, "body")
    try:
        fixed = _SPEC_FIXED.pack(flags, job.priority, delay_ms, job.ttr_ms, max_attempts,
                                 job.ttl_ms)
    except struct.error:
        for name, value, limit in (("priority", job.priority, U32_MAX),
                                   ("delay_ms/run_at_ms", delay_ms, U64_MAX),
                                   ("ttr_ms", job.ttr_ms, U32_MAX),
                                   ("max_attempts", max_attempts, U32_MAX),
                                   ("ttl_ms", job.ttl_ms, U64_MAX)):
            check_uint(value, limit, name)
        raise
    return b"".join((name8(queue_name(job.queue)), fixed, _U8.pack(len(key)), key,
                     _U32.pack(len(body)), body))


def encode_put_batch(jobs: Sequence[JobSpec | tuple[str, bytes | str]]) -> bytes:
    """PUT_BATCH's payload. The bytes before each job's key (queue name and fixed fields) are
    encoded once per distinct set of options in the batch: a batch usually repeats them, and
    that halves the cost per job of a large batch of small bodies."""
    count = len(jobs)
    if count < 1 or count > BATCH_COUNT_MAX:
        raise InvalidArgument(f"a batch holds 1..{BATCH_COUNT_MAX} jobs, not {count}")
    parts = [_U32.pack(count)]
    append = parts.append
    heads: dict[tuple, bytes] = {}
    pack_len = _U32.pack
    for j in jobs:
        if type(j) is tuple:  # (queue, body): every option at its default
            if len(j) != 2:
                raise InvalidArgument(f"a job is a JobSpec or (queue, body), not {j!r}")
            options = (j[0], 0, 0, None, 0, None, 0)
            body = j[1]
            if type(body) is not bytes:
                append(encode_job_spec(JobSpec(j[0], body)))
                continue
        elif isinstance(j, JobSpec):
            body = j.body
            if j.key is not None or type(body) is not bytes:
                append(encode_job_spec(j))
                continue
            options = (j.queue, j.priority, j.delay_ms, j.run_at_ms, j.ttr_ms, j.max_attempts,
                       j.ttl_ms)
        else:
            raise InvalidArgument(f"a job is a JobSpec or (queue, body), not {type(j).__name__}")
        head = heads.get(options)
        if head is None:
            # the full encoder validates the options; its bytes up to the key are the head
            spec = encode_job_spec(JobSpec(*options[:1], b"", *options[1:]))
            head = heads[options] = spec[:-5] + b"\x00"  # keep through the empty key's length
        append(head)
        append(pack_len(len(body)))
        append(body)
    return b"".join(parts)


def encode_reserve(queues: Sequence[str], count: int, timeout_ms: int, flags: int) -> bytes:
    if isinstance(queues, (str, bytes)):
        queues = [queues]
    if not 1 <= len(queues) <= RESERVE_QUEUES_MAX:
        raise InvalidArgument(f"reserve takes 1..{RESERVE_QUEUES_MAX} queues, not {len(queues)}")
    if not isinstance(count, int) or not 1 <= count <= RESERVE_COUNT_MAX:
        raise InvalidArgument(f"reserve count must be in [1, {RESERVE_COUNT_MAX}], not {count!r}")
    check_uint(timeout_ms, U32_MAX, "reserve timeout")
    head = struct.pack("<IIBB", count, timeout_ms, flags, len(queues))
    return head + b"".join(name8(queue_name(q)) for q in queues)


def encode_ack(job_id: int, lease: int, result: bytes | str | None) -> bytes:
    raw = to_bytes(result, "result")
    if len(raw) > RESULT_SIZE_MAX:
        raise TooLarge(f"ack result is {len(raw)} bytes, at most {RESULT_SIZE_MAX}")
    return pack_id_lease(job_id, lease) + blob32(raw)


def encode_ack_batch(items: Sequence[tuple[int, int, bytes | str | None]]) -> bytes:
    count = len(items)
    if count < 1 or count > BATCH_COUNT_MAX:
        raise InvalidArgument(f"a batch holds 1..{BATCH_COUNT_MAX} acks, not {count}")
    return _U32.pack(count) + b"".join(encode_ack(i, l, r) for i, l, r in items)


def pack_id_lease(job_id: int, lease: int) -> bytes:
    check_uint(job_id, U64_MAX, "job id")
    check_uint(lease, U64_MAX, "lease")
    return _ID_LEASE.pack(job_id, lease)


def encode_release(job_id: int, lease: int, delay_ms: int, priority: int | None,
                   reason: str | bytes | None) -> bytes:
    check_uint(delay_ms, U64_MAX, "delay_ms")
    flags = 0 if priority is None else RELEASE_PRIORITY
    prio = 0 if priority is None else check_uint(priority, U32_MAX, "priority")
    return (pack_id_lease(job_id, lease) + struct.pack("<QBI", delay_ms, flags, prio)
            + text16(reason, "reason"))


def encode_touch(job_id: int, lease: int, extend_ms: int) -> bytes:
    return pack_id_lease(job_id, lease) + _U32.pack(check_uint(extend_ms, U32_MAX, "extend_ms"))


def encode_bury(job_id: int, lease: int, reason: str | bytes | None) -> bytes:
    return pack_id_lease(job_id, lease) + text16(reason, "reason")


def encode_kick(queue: str, count: int) -> bytes:
    if not isinstance(count, int) or not 1 <= count <= U32_MAX:
        raise InvalidArgument(f"kick count must be in [1, {U32_MAX}], not {count!r}")
    return name8(queue_name(queue)) + _U32.pack(count)


def encode_job_ref(job_id: int) -> bytes:
    return struct.pack("<Q", check_uint(job_id, U64_MAX, "job id"))


def encode_peek_next(queue: str, state: JobState | int) -> bytes:
    if state not in (JobState.READY, JobState.DELAYED, JobState.DEAD):
        raise InvalidArgument("peek_next state must be READY, DELAYED or DEAD")
    return name8(queue_name(queue)) + _U8.pack(int(state))


def encode_wait(job_id: int, timeout_ms: int) -> bytes:
    return encode_job_ref(job_id) + _U32.pack(check_uint(timeout_ms, U32_MAX, "wait timeout"))


def encode_queue_ref(queue: str | None, allow_empty: bool = False) -> bytes:
    if allow_empty and not queue:
        return b"\x00"
    return name8(queue_name(queue or ""))


def encode_stats(queue: str | None, version: int, cursor: str = "", limit: int = 0) -> bytes:
    """STATS: one queue, or (empty) every queue; version 2 adds the page's cursor and limit."""
    out = encode_queue_ref(queue, allow_empty=True)
    if version >= 2:
        out += encode_queue_ref(cursor, allow_empty=True) + _U32.pack(check_uint(limit, U32_MAX,
                                                                                 "limit"))
    return out


def encode_queues(version: int, cursor: str = "", limit: int = 0) -> bytes:
    """QUEUES: empty in version 1; a page's cursor and limit in version 2."""
    if version < 2:
        return b""
    return encode_queue_ref(cursor, allow_empty=True) + _U32.pack(check_uint(limit, U32_MAX,
                                                                             "limit"))


def encode_delete_queue(queue: str, force: bool) -> bytes:
    return name8(queue_name(queue)) + _U8.pack(DELETE_QUEUE_FORCE if force else 0)


def encode_queue_config(queue: str, ttr_ms: int | None, max_attempts: int | None) -> bytes:
    flags = 0
    if ttr_ms is not None:
        if check_uint(ttr_ms, U32_MAX, "ttr_ms") == 0:
            raise InvalidArgument("ttr_ms must be > 0")
        flags |= CONFIG_TTR
    if max_attempts is not None:
        check_uint(max_attempts, U32_MAX, "max_attempts")
        flags |= CONFIG_MAX_ATTEMPTS
    return name8(queue_name(queue)) + struct.pack("<BII", flags, ttr_ms or 0, max_attempts or 0)


# ---- decoding ----


class Reader:
    """Bounds-checked reads from one payload; every overrun is a ProtocolError."""

    __slots__ = ("buf", "off", "what", "version")

    def __init__(self, buf: bytes, what: str | int, version: int = 1) -> None:
        self.buf = buf
        self.off = 0
        self.what = what  # a name, or a request opcode (named only when an error needs it)
        self.version = version  # the negotiated protocol version: layouts differ from 2 on

    def fail(self, why: str) -> ProtocolError:
        what = Op(self.what).name if isinstance(self.what, int) else self.what
        return ProtocolError(f"{what} reply: {why}")

    def take(self, n: int) -> bytes:
        end = self.off + n
        if end > len(self.buf):
            raise self.fail(f"truncated at byte {self.off} (wants {n} more, "
                            f"{len(self.buf) - self.off} left)")
        out = self.buf[self.off:end]
        self.off = end
        return out

    def unpack(self, s: struct.Struct) -> tuple:
        end = self.off + s.size
        if end > len(self.buf):
            raise self.fail(f"truncated at byte {self.off}")
        out = s.unpack_from(self.buf, self.off)
        self.off = end
        return out

    def u8(self) -> int:
        return self.unpack(_U8)[0]

    def u32(self) -> int:
        return self.unpack(_U32)[0]

    def sized(self, prefix: struct.Struct, size_max: int, what: str) -> bytes:
        (n,) = self.unpack(prefix)
        if n > size_max:
            raise self.fail(f"{what} of {n} bytes above its limit {size_max}")
        return self.take(n)

    def name8(self) -> str:
        return self.sized(_U8, QUEUE_NAME_SIZE_MAX, "queue name").decode(errors="replace")

    def cursor(self) -> str:
        """A version 2 page's next cursor (name8, "" when the page is the last)."""
        return self.name8() if self.version >= 2 else ""

    def text16(self) -> str:
        return self.sized(_U16, TEXT_SIZE_MAX, "text").decode(errors="replace")

    def blob32(self, size_max: int = FRAME_SIZE_LIMIT) -> bytes:
        return self.sized(_U32, size_max, "blob")

    def count(self, limit: int, item_size_min: int) -> int:
        n = self.u32()
        if n > limit:
            raise self.fail(f"count {n} above its limit {limit}")
        if n * item_size_min > len(self.buf) - self.off:
            raise self.fail(f"count {n} does not fit the payload")
        return n

    def durability(self) -> Durability:
        d = self.u8()
        if d > Durability.SYNCED:
            raise self.fail(f"durability {d} unknown")
        return Durability(d)

    def end(self) -> None:
        if self.off != len(self.buf):
            raise self.fail(f"{len(self.buf) - self.off} trailing bytes")


_U16 = struct.Struct("<H")
_HELLO_REPLY = struct.Struct("<HIIQ")
_PUT_REPLY = struct.Struct("<BQB")
_PUT_RESULT = struct.Struct("<QB")
_DELIVERY = struct.Struct("<QQIIQ")
_JOB_INFO_A = struct.Struct("<QB")
_JOB_INFO_B = struct.Struct("<IIIIQQQQ")
_DUR_U64 = struct.Struct("<BQ")
_SERVER_STATS = struct.Struct("<QIQQQQQQQQ")
_QUEUE_STATS = struct.Struct("<BQQQQQQQII")
_SERVER_STATS_V2 = struct.Struct("<IQQQ")
_DURABILITIES = tuple(Durability)


def decode_hello_reply(r: Reader) -> HelloReply:
    version, frame_max, job_max, now_ms = r.unpack(_HELLO_REPLY)
    name = r.text16()
    if not VERSION_MIN <= version <= VERSION:
        raise r.fail(f"server chose version {version}, this client speaks "
                     f"{VERSION_MIN}..{VERSION}")
    if not FRAME_SIZE_MIN <= frame_max <= FRAME_SIZE_LIMIT:
        raise r.fail(f"frame maximum {frame_max} outside {FRAME_SIZE_MIN}..{FRAME_SIZE_LIMIT}")
    return HelloReply(version, frame_max, job_max, now_ms, name)


def decode_empty(r: Reader) -> None:
    return None


def decode_put_reply(r: Reader) -> PutResult:
    d, job_id, flags = r.unpack(_PUT_REPLY)
    if d > 2:
        raise r.fail(f"durability {d} unknown")
    return PutResult(job_id, bool(flags & PUT_DUPLICATE), _DURABILITIES[d])


def decode_put_batch_reply(r: Reader) -> list[PutResult]:
    d = r.durability()
    n = r.count(BATCH_COUNT_MAX, _PUT_RESULT.size)
    raw = r.take(n * _PUT_RESULT.size)
    return [PutResult(i, bool(f & PUT_DUPLICATE), d) for i, f in _PUT_RESULT.iter_unpack(raw)]


def decode_reserve_reply(r: Reader) -> list[Delivery]:
    n = r.count(RESERVE_COUNT_MAX, _DELIVERY.size + 1 + 1 + 4)
    out = []
    for _ in range(n):
        job_id, lease, attempt, priority, deadline = r.unpack(_DELIVERY)
        queue = r.name8()
        out.append(Delivery(job_id, lease, attempt, priority, deadline, queue, r.blob32()))
    return out


def decode_durable_reply(r: Reader) -> Durability:
    return r.durability()


def decode_ack_batch_reply(r: Reader) -> AckBatchResult:
    d = r.durability()
    n = r.count(BATCH_COUNT_MAX, 2)
    codes = struct.unpack_from(f"<{n}H", r.take(2 * n))
    errors = [None if c == 0 else error_from_wire(c, "in ack batch") for c in codes]
    return AckBatchResult(d, errors)


def decode_touch_reply(r: Reader) -> TouchResult:
    d = r.durability()
    (deadline,) = r.unpack(_U64)
    return TouchResult(deadline, d)


def decode_count_reply(r: Reader) -> CountResult:
    d = r.durability()
    (n,) = r.unpack(_U64)
    return CountResult(n, d)


def decode_job_info(r: Reader) -> Job:
    job_id, state = r.unpack(_JOB_INFO_A)
    if state > (JobState.EXPIRED if r.version >= 2 else JobState.DONE):
        raise r.fail(f"job state {state} unknown")
    queue = r.name8()
    prio, attempts, max_attempts, ttr, created, ready_at, deadline, finished = \
        r.unpack(_JOB_INFO_B)
    reason = r.text16()
    result = r.blob32(RESULT_SIZE_MAX)
    body = r.blob32()
    return Job(job_id, JobState(state), queue, prio, attempts, max_attempts, ttr, created,
               ready_at, deadline, finished, reason, result, body)


def decode_stats_reply(r: Reader) -> Stats:
    server = r.unpack(_SERVER_STATS)
    extra = r.unpack(_SERVER_STATS_V2) if r.version >= 2 else (0, 0, 0, 0)
    v2 = r.version >= 2
    n = r.count(STATS_QUEUES_MAX, 2 + _QUEUE_STATS.size + (8 if v2 else 0))
    queues = []
    for _ in range(n):
        name = r.name8()
        flags, *rest = r.unpack(_QUEUE_STATS)
        expired = r.unpack(_U64)[0] if v2 else 0
        queues.append(QueueStats(name, bool(flags & QUEUE_PAUSED), *rest, expired=expired))
    return Stats(*server, queues=queues, queue_count=extra[0], expired=extra[1], keys=extra[2],
                 keys_evicted=extra[3], next_cursor=r.cursor())


class QueuesPage(list):
    """A QUEUES reply: its queues, and (version 2) the cursor of the next page ("" = none)."""

    next_cursor: str = ""


def decode_queues_reply(r: Reader) -> QueuesPage:
    n = r.count(STATS_QUEUES_MAX, 3)
    out = QueuesPage()
    for _ in range(n):
        name = r.name8()
        out.append(QueueInfo(name, bool(r.u8() & QUEUE_PAUSED)))
    out.next_cursor = r.cursor()
    return out


_U64 = struct.Struct("<Q")

#: Reply decoder of each request opcode.
REPLY_DECODERS: dict[int, Callable[[Reader], object]] = {
    Op.HELLO: decode_hello_reply,
    Op.PING: decode_empty,
    Op.PUT: decode_put_reply,
    Op.PUT_BATCH: decode_put_batch_reply,
    Op.RESERVE: decode_reserve_reply,
    Op.ACK: decode_durable_reply,
    Op.ACK_BATCH: decode_ack_batch_reply,
    Op.RELEASE: decode_durable_reply,
    Op.TOUCH: decode_touch_reply,
    Op.BURY: decode_durable_reply,
    Op.KICK: decode_count_reply,
    Op.KICK_JOB: decode_durable_reply,
    Op.PEEK: decode_job_info,
    Op.PEEK_NEXT: decode_job_info,
    Op.DELETE: decode_durable_reply,
    Op.WAIT: decode_job_info,
    Op.STATUS: decode_job_info,
    Op.STATS: decode_stats_reply,
    Op.QUEUES: decode_queues_reply,
    Op.PAUSE: decode_durable_reply,
    Op.RESUME: decode_durable_reply,
    Op.PURGE: decode_count_reply,
    Op.QUEUE_CONFIG: decode_durable_reply,
    Op.DELETE_QUEUE: decode_count_reply,
}


def decode_error(payload: bytes) -> SpoolError:
    r = Reader(payload, "ERROR")
    (code,) = r.unpack(_U16)
    message = r.text16()
    r.end()
    return error_from_wire(code, message)


def decode_reply(op: int, reply_op: int, payload: bytes, version: int = 1) -> object:
    """The value of a reply to request ``op`` in protocol ``version``; a SpoolError *instance*
    (not raised) for an ERROR frame, which the caller raises; ProtocolError raised for anything
    malformed."""
    if reply_op == OP_ERROR:
        return decode_error(payload)
    if reply_op != op | OP_REPLY:
        raise ProtocolError(f"reply opcode 0x{reply_op:04x} to a request of opcode 0x{op:04x}")
    r = Reader(payload, op, version)
    value = REPLY_DECODERS[op](r)
    r.end()
    return value


class FrameReader:
    """Cuts a byte stream into frames: feed bytes, take whole ``(opcode, request_id, payload)``
    frames. A frame size below 16 or above the current maximum raises ProtocolError before its
    payload is buffered, so a reader never holds more than one maximum frame plus one read."""

    __slots__ = ("buf", "frame_size_max")

    def __init__(self, frame_size_max: int = FRAME_SIZE_HANDSHAKE_MAX) -> None:
        self.buf = bytearray()
        self.frame_size_max = frame_size_max

    def feed(self, data: bytes) -> None:
        self.buf += data

    def next_frame(self) -> tuple[int, int, bytes] | None:
        buf = self.buf
        if len(buf) < HEADER_SIZE:
            return None
        size, op, _flags, request_id = HEADER.unpack_from(buf)
        if size < HEADER_SIZE:
            raise ProtocolError(f"frame size {size} below the 16-byte header")
        if size > self.frame_size_max:
            raise ProtocolError(f"frame size {size} above the maximum {self.frame_size_max}")
        if len(buf) < size:
            return None
        payload = bytes(buf[HEADER_SIZE:size])
        del buf[:size]
        return op, request_id, payload

    def wanted(self) -> int:
        """Bytes still missing for the frame being received (at least 1)."""
        buf = self.buf
        if len(buf) < HEADER_SIZE:
            return HEADER_SIZE - len(buf)
        return max(1, HEADER.unpack_from(buf)[0] - len(buf))
