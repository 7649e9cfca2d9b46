"""spool.Client: a blocking client of spoold, one TCP connection.

Requests are pipelined on the wire: :meth:`Client.pipeline` sends many requests in one write
and matches the replies by request id, in whatever order the server sends them (a put is
answered when its group commit is durable, a blocking reserve when a job arrives). A single
call is a pipeline of one.

Failures: a server error about a request (NotFound, LeaseExpired, QueueFull, ...) is raised
and the connection stays usable. A connection failure (ConnectionClosed, ProtocolError,
TimedOut) drops the connection; the next call connects again. A call that the protocol allows
to repeat (see :mod:`spool.calls`) is retried on a new connection, with exponential backoff,
up to ``retries`` times; any other call raises, since the server may already have applied it.

Calls on one Client are serialised by a lock, so a Client may be shared by threads (they take
turns on the connection); for concurrency use several Clients or :class:`spool.AsyncClient`.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import threading
import time
from typing import Iterable, Iterator, Sequence

from . import calls, codec
from .calls import AckItem, Call
from .codec import (AckBatchResult, CountResult, Delivery, Durability, HelloReply, Job, JobSpec,
                    JobState, Op, PutResult, QueueInfo, Stats, TouchResult)
from .errors import (ConnectFailed, ConnectionClosed, InvalidArgument, ProtocolError,
                     SpoolError, TimedOut, TooLarge)

DEFAULT_ADDRESS = "127.0.0.1:7711"
# Bytes asked of one recv(): a 256-job batch reply is ~2.3 KiB, a reserve of many jobs more;
# 256 KiB drains a socket buffer's worth in one call without holding memory for nothing.
RECV_SIZE = 256 * 1024
# Requests up to this many bytes are sent with one blocking sendall before reading: the
# kernel's socket buffers (a few hundred KiB on loopback and LANs) take them whole, so the
# server never waits on us to read while we wait on it to read. Larger ones go through poll.
SMALL_SEND_MAX = 64 * 1024


def default_address() -> str:
    """``$SPOOL_ADDRESS`` if set, else 127.0.0.1:7711 (where spoold listens by default)."""
    return os.environ.get("SPOOL_ADDRESS") or DEFAULT_ADDRESS


def parse_address(address: str) -> tuple[str, int]:
    """"HOST:PORT" or "[V6ADDR]:PORT" to (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidArgument(f"address {address!r} is not HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def backoff_s(attempt: int, base_s: float, max_s: float) -> float:
    """Delay before retry number ``attempt`` (0-based): base * 2^attempt, capped."""
    return min(max_s, base_s * (2 ** min(attempt, 30)))


class Connection:
    """One connected, handshaken socket and its frame reader. Not thread-safe; the Client's lock
    serialises use. Any failure inside :meth:`exchange` closes it."""

    def __init__(self, address: str, *, auth: str | bytes | None, client_name: str,
                 connect_timeout: float, protocol_max: int = codec.VERSION) -> None:
        host, port = parse_address(address)
        self.version = 1  # until HELLO's reply names the negotiated one
        deadline = time.monotonic() + connect_timeout
        try:
            sock = socket.create_connection((host, port), timeout=connect_timeout)
        except socket.timeout as e:
            raise TimedOut(f"connect to {address}: {e}") from e
        except OSError as e:
            raise ConnectFailed(f"connect to {address}: {e}") from e
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Blocking, with the kernel's SO_RCVTIMEO/SO_SNDTIMEO as the call's timeout: a small
        # call is then send + recv, two system calls, as in libspool (Python's own socket
        # timeouts poll before every recv). Large sends interleave with reads through poll and
        # MSG_DONTWAIT instead (see _run_io).
        sock.settimeout(None)
        self.io_timeout_s: float | None = -1.0  # what SO_RCVTIMEO is set to (-1: unknown)
        self.sock: socket.socket | None = sock
        self.reader = codec.FrameReader()
        self.recv_buf = bytearray(RECV_SIZE)
        self.recv_view = memoryview(self.recv_buf)
        self.poller = select.poll()
        self.poller.register(sock.fileno(), select.POLLIN)
        self.frame_size_max = codec.FRAME_SIZE_HANDSHAKE_MAX
        self.next_id = 1
        hello = self.exchange([(Op.HELLO, codec.encode_hello(client_name, auth, protocol_max))],
                              max(0.001, deadline - time.monotonic()))[0]
        if isinstance(hello, SpoolError):
            self.close()
            raise hello
        assert isinstance(hello, HelloReply)
        self.hello = hello
        self.version = hello.version
        self.frame_size_max = hello.frame_size_max
        self.reader.frame_size_max = hello.frame_size_max
        # Server clock minus ours, for lease deadlines (Unix ms on the server's clock).
        self.clock_offset_ms = hello.server_time_ms - time.time() * 1000

    def stale(self) -> bool:
        """True (and closed) if the server spoke or hung up while nothing was outstanding: an
        EOF, a reset, or a connection-level error frame (SHUTTING_DOWN, BUSY) from a server
        that is going away. Checked before each call, so a request is never written onto a
        connection already known dead, and even a non-idempotent call reconnects safely."""
        if self.sock is None:
            return True
        self.poller.modify(self.sock.fileno(), select.POLLIN)
        if not self.poller.poll(0):
            return False
        self.close()
        return True

    @property
    def closed(self) -> bool:
        return self.sock is None

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None

    def exchange(self, requests: Sequence[tuple[int, bytes]], duration: float | None) -> list:
        """Send the requests, wait up to ``duration`` seconds (None: no limit) for every reply;
        a reply value or a SpoolError instance (the server's error for that request) per
        request, in request order."""
        deadline = None if duration is None else time.monotonic() + duration
        if self.sock is None:
            raise ConnectionClosed("connection is closed")
        frames = []
        ids: dict[int, int] = {}
        for i, (op, payload) in enumerate(requests):
            frame = codec.frame(op, self.next_id, payload)
            if len(frame) > self.frame_size_max:
                raise TooLarge(f"request of {len(frame)} bytes above the server's frame maximum "
                               f"{self.frame_size_max}: split the batch")
            ids[self.next_id] = i
            self.next_id += 1
            frames.append(frame)
        out = frames[0] if len(frames) == 1 else b"".join(frames)
        results: list = [None] * len(requests)
        try:
            self._run_io(out, ids, [op for op, _ in requests], results, deadline, duration)
        except BaseException:
            self.close()  # mid-frame or out of sync: the byte stream cannot be trusted
            raise
        return results

    def _set_io_timeout(self, seconds: float | None) -> None:
        """SO_RCVTIMEO and SO_SNDTIMEO (None or 0: none); skipped when already set."""
        if seconds == self.io_timeout_s:
            return
        assert self.sock is not None
        whole = 0.0 if seconds is None else max(seconds, 0.001)
        tv = struct.pack("@ll", int(whole), int((whole % 1) * 1e6))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
        self.io_timeout_s = seconds

    def _run_io(self, out: bytes, ids: dict[int, int], ops: list[int], results: list,
                deadline: float | None, duration: float | None) -> None:
        if len(out) > SMALL_SEND_MAX:
            self._run_io_polled(out, ids, ops, results, deadline)
            return
        sock = self.sock
        assert sock is not None
        self._set_io_timeout(duration)
        try:
            sock.sendall(out)
        except BlockingIOError as e:
            raise TimedOut("send timed out") from e
        except OSError as e:
            raise ConnectionClosed(f"send: {e}") from e
        while not self._take_frames(ids, ops, results):
            # checked before each read, so a server trickling bytes cannot stretch the call
            if deadline is not None and time.monotonic() >= deadline:
                raise TimedOut(f"no reply within the timeout ({len(ids)} outstanding)")
            try:
                data = self._recv(0)
            except (BlockingIOError, InterruptedError):
                # SO_RCVTIMEO expired (or a signal): wait exactly what is left
                if deadline is not None:
                    self._set_io_timeout(max(0.001, deadline - time.monotonic()))
                continue
            except OSError as e:
                raise ConnectionClosed(f"receive: {e}") from e
            if not data:
                self._eof()
            self.reader.feed(data)

    def _recv(self, flags: int) -> memoryview:
        """Read into the connection's one receive buffer (sock.recv(n) would allocate n
        bytes each time: for 256 KiB that is an mmap and page faults per reply)."""
        assert self.sock is not None
        n = self.sock.recv_into(self.recv_buf, RECV_SIZE, flags)
        return self.recv_view[:n]

    def _read_available(self) -> None:
        """Feed the reader what the socket holds now (nothing when it has nothing yet)."""
        try:
            data = self._recv(socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            raise ConnectionClosed(f"receive: {e}") from e
        if not data:
            self._eof()
        self.reader.feed(data)

    def _eof(self) -> None:
        have = len(self.reader.buf)
        raise ConnectionClosed(
            "server closed the connection" +
            (f" in the middle of a frame ({have} bytes of it received)" if have else ""))

    def _run_io_polled(self, out: bytes, ids: dict[int, int], ops: list[int], results: list,
                       deadline: float | None) -> None:
        """Send a large request list while reading replies, so neither side's buffers fill
        up with the other waiting (the server may stop reading while its replies are
        unread)."""
        sock = self.sock
        assert sock is not None
        view = memoryview(out)
        sent = 0
        fd = sock.fileno()
        while True:
            if sent < len(out):
                sent += self._send(sock, view[sent:])
            if self._take_frames(ids, ops, results):
                return
            self.poller.modify(fd, select.POLLIN | (select.POLLOUT if sent < len(out) else 0))
            wait_ms = None if deadline is None else max(0, (deadline - time.monotonic()) * 1000)
            if not self.poller.poll(wait_ms):
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimedOut(f"no reply within the timeout ({len(ids)} outstanding)")
                continue
            self._read_available()

    def stream(self, requests: Iterator[tuple[int, bytes]], window: int,
               timeout: float | None) -> list:
        """Send requests keeping up to ``window`` unanswered, encoding the next ones while the
        server works on the earlier: results (values or SpoolError instances) in request
        order. Stops sending at the first error reply and waits for those in flight.
        ``timeout`` bounds the wait for each reply, not the whole stream."""
        if self.sock is None:
            raise ConnectionClosed("connection is closed")
        results: list = []
        ops: dict[int, int] = {}  # request id -> index in results
        out = bytearray()
        more = True
        try:
            while True:
                while more and len(ops) < window:
                    item = next(requests, None)
                    if item is None:
                        more = False
                        break
                    op, payload = item
                    frame = codec.frame(op, self.next_id, payload)
                    if len(frame) > self.frame_size_max:
                        raise TooLarge(f"request of {len(frame)} bytes above the server's "
                                       f"frame maximum {self.frame_size_max}")
                    ops[self.next_id] = len(results)
                    self.next_id += 1
                    results.append(op)  # replaced by the reply's value
                    out += frame
                if not ops:
                    return results
                waiting = list(ops.values())
                self._stream_io(out, ops, results, timeout)
                if any(isinstance(results[i], SpoolError) for i in waiting):
                    more = False  # results of requests still in flight are checked later
        except BaseException:
            self.close()
            raise

    def _stream_io(self, out: bytearray, ops: dict[int, int], results: list,
                   timeout: float | None) -> None:
        """Send what is buffered and take at least one reply (or the send's progress)."""
        sock = self.sock
        assert sock is not None
        if out:
            sent = self._send(sock, memoryview(out))
            del out[:sent]
        before = len(ops)
        while True:
            # results[i] still holds request i's opcode until its reply replaces it
            self._take_frames(ops, results, results)
            if len(ops) < before:
                return
            self.poller.modify(sock.fileno(), select.POLLIN | (select.POLLOUT if out else 0))
            if not self.poller.poll(None if timeout is None else timeout * 1000):
                raise TimedOut(f"no reply within {timeout} s ({len(ops)} outstanding)")
            if out:
                sent = self._send(sock, memoryview(out))
                del out[:sent]
            self._read_available()

    @staticmethod
    def _send(sock: socket.socket, data: memoryview) -> int:
        try:
            return sock.send(data, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as e:
            raise ConnectionClosed(f"send: {e}") from e

    def _take_frames(self, ids: dict[int, int], ops: list[int], results: list) -> bool:
        """Decode the buffered frames into results; True once every request is answered."""
        while ids:
            f = self.reader.next_frame()
            if f is None:
                return False
            reply_op, request_id, payload = f
            i = ids.pop(request_id, None)
            if i is None:
                if request_id == 0 and reply_op == codec.OP_ERROR:
                    # A connection-level error (BUSY at accept, a framing error): it answers
                    # every outstanding request, and the server closes after it.
                    err = codec.decode_error(payload)
                    for j in ids.values():
                        results[j] = err
                    ids.clear()
                    self.close()
                    return True
                raise ProtocolError(f"reply with request id {request_id}, which is not "
                                    f"outstanding (opcode 0x{reply_op:04x})")
            value = codec.decode_reply(ops[i], reply_op, payload, self.version)
            results[i] = value
            if isinstance(value, SpoolError) and value.closes_connection:
                # The server closes after this error: nothing else will be answered.
                for j in ids.values():
                    results[j] = ConnectionClosed(f"server closed the connection after {value}")
                ids.clear()
                self.close()
        return True


def _connection_level(err: BaseException) -> bool:
    """An error after which the request may be sent again on a new connection."""
    return isinstance(err, ConnectionClosed) and not isinstance(err, ProtocolError)


class Client:
    """A blocking spool client.

    ``address`` is "HOST:PORT" (default ``$SPOOL_ADDRESS`` or 127.0.0.1:7711). ``timeout`` is
    the I/O timeout of a call in seconds (None = wait forever), added to the time a reserve or
    wait may block on the server. ``retries`` bounds reconnect attempts for a call, with
    backoff from ``backoff`` seconds doubling up to ``backoff_max``. The connection is made at
    construction (errors: ConnectFailed, TimedOut, AuthFailed, VersionUnsupported).
    """

    def __init__(self, address: str | None = None, *, auth: str | bytes | None = None,
                 client_name: str = "spool-python", connect_timeout: float = 5.0,
                 timeout: float | None = 30.0, retries: int = 5, backoff: float = 0.05,
                 backoff_max: float = 2.0, connect: bool = True,
                 protocol_max: int = codec.VERSION) -> None:
        self.address = address or default_address()
        #: The newest protocol version offered at HELLO (1: behave as a version 1 client).
        self.protocol_max = protocol_max
        parse_address(self.address)
        self.auth = auth
        self.client_name = client_name
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.backoff_max = backoff_max
        #: Durability reported by the last successful mutating call.
        self.last_durability = Durability.NONE
        self._lock = threading.RLock()
        self._conn: Connection | None = None
        self._closed = False
        if connect:
            with self._lock:
                self._connection()

    # ---- connection management ----

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection; leases it holds (unless reserved detached) are released by
        the server at once. Later calls raise ConnectionClosed."""
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @property
    def server(self) -> HelloReply:
        """What the server said at the handshake (version, limits, name)."""
        return self._connection().hello

    @property
    def job_size_max(self) -> int:
        return self.server.job_size_max

    def server_time_ms(self) -> int:
        """Now on the server's clock (Unix ms), estimated from the handshake."""
        return int(time.time() * 1000 + self._connection().clock_offset_ms)

    def _connection(self) -> Connection:
        if self._closed:
            raise ConnectionClosed("client is closed")
        if self._conn is not None and not self._conn.closed and not self._conn.stale():
            return self._conn
        self._conn = None
        for attempt in range(self.retries + 1):
            try:
                self._conn = Connection(self.address, auth=self.auth,
                                        client_name=self.client_name,
                                        connect_timeout=self.connect_timeout,
                                        protocol_max=self.protocol_max)
                return self._conn
            except SpoolError as e:
                if attempt == self.retries or not (_connection_level(e) or e.retryable):
                    raise
            time.sleep(backoff_s(attempt, self.backoff, self.backoff_max))
        raise AssertionError("unreachable")

    def _duration(self, wait_s: float) -> float | None:
        return None if self.timeout is None else self.timeout + wait_s

    def _run(self, call: Call) -> object:
        with self._lock:
            attempt = 0
            while True:
                conn = self._connection()
                try:
                    value = conn.exchange([(call.op, calls.payload_for(call, conn.version))],
                                          self._duration(call.wait_s))[0]
                except SpoolError as e:
                    value = e
                if isinstance(value, SpoolError):
                    retry = (call.idempotent and attempt < self.retries and conn.closed
                             and (_connection_level(value) or value.retryable))
                    if not retry:
                        raise value
                    time.sleep(backoff_s(attempt, self.backoff, self.backoff_max))
                    attempt += 1
                    continue
                self._note_durability(value)
                return value

    def _note_durability(self, value: object) -> None:
        if isinstance(value, Durability):
            self.last_durability = value
        else:
            d = getattr(value, "durability", None)
            if d is not None:
                self.last_durability = d
            elif isinstance(value, list) and value and isinstance(value[0], PutResult):
                self.last_durability = value[0].durability

    def pipeline(self) -> "Pipeline":
        """A batch of requests sent in one write; see :class:`Pipeline`."""
        return Pipeline(self)

    # ---- the protocol's requests ----

    def ping(self) -> None:
        self._run(calls.ping())

    def put(self, queue: str, body: bytes | str = b"", *, priority: int = 0, delay_ms: int = 0,
            run_at_ms: int | None = None, ttr_ms: int = 0, max_attempts: int | None = None,
            ttl_ms: int = 0, key: str | bytes | None = None) -> PutResult:
        """Put one job. ``max_attempts`` None = the queue's default, 0 = unlimited; ``key``:
        idempotency key (a repeat returns the original id with ``duplicate`` set). Errors:
        TooLarge, BadRequest, QueueFull, DiskFull, InvalidArgument, connection errors."""
        return self._run(calls.put(queue, body, priority=priority, delay_ms=delay_ms,  # type: ignore[return-value]
                                   run_at_ms=run_at_ms, ttr_ms=ttr_ms, max_attempts=max_attempts,
                                   ttl_ms=ttl_ms, key=key))

    def put_batch(self, jobs: Iterable[JobSpec | tuple[str, bytes | str]]) -> list[PutResult]:
        """Put 1..4096 jobs (JobSpec or (queue, body)) in one request, all or nothing; one
        result per job in order. The batch must fit one frame (TooLarge: split it)."""
        return self._run(calls.put_batch(jobs))  # type: ignore[return-value]

    def put_many(self, jobs: Iterable[JobSpec | tuple[str, bytes | str]], *, batch: int = 256,
                 window: int = 8) -> list[PutResult]:
        """Put any number of jobs as PUT_BATCHes of ``batch`` jobs, keeping up to ``window``
        batches in flight (the next is encoded while the server commits the earlier): the
        fastest way to enqueue many jobs from one thread. Each batch is all or nothing; after
        an error no further batch is sent, those in flight complete, and the first error is
        raised with ``.results`` holding the results of every batch that was enqueued. Not
        retried after a lost connection."""
        if not 1 <= batch <= codec.BATCH_COUNT_MAX or window < 1:
            raise InvalidArgument(f"batch must be in [1, {codec.BATCH_COUNT_MAX}], window >= 1")
        def requests() -> Iterator[tuple[int, bytes]]:
            chunk: list = []
            for job in jobs:
                chunk.append(job)
                if len(chunk) == batch:
                    yield Op.PUT_BATCH, codec.encode_put_batch(chunk)
                    chunk = []
            if chunk:
                yield Op.PUT_BATCH, codec.encode_put_batch(chunk)
        with self._lock:
            results = self._connection().stream(requests(), window, self.timeout)
        out: list[PutResult] = []
        errors = [v for v in results if isinstance(v, SpoolError)]
        for value in results:
            if not isinstance(value, SpoolError) and not isinstance(value, int):
                out.extend(value)
        if errors:
            errors[0].results = out  # type: ignore[attr-defined]
            raise errors[0]
        if out:
            self.last_durability = out[-1].durability
        return out

    def reserve(self, queues: str | Sequence[str], count: int = 1, timeout: float | None = 0.0,
                *, detach: bool = False) -> list[Delivery]:
        """Reserve up to ``count`` (1..1024) jobs from the queues (1..16, in order of
        preference), blocking up to ``timeout`` seconds for the first; [] on timeout."""
        return self._run(calls.reserve(queues, count, timeout, detach))  # type: ignore[return-value]

    def reserve_one(self, queues: str | Sequence[str], timeout: float | None = 0.0
                    ) -> Delivery | None:
        got = self.reserve(queues, 1, timeout)
        return got[0] if got else None

    def ack(self, job_id: int, lease: int, result: bytes | str | None = None) -> Durability:
        """The job is done; ``result`` (<= 64 KiB) is kept for wait/status. Errors:
        LeaseExpired, NotFound, TooLarge."""
        return self._run(calls.ack(job_id, lease, result))  # type: ignore[return-value]

    def ack_batch(self, items: Iterable[AckItem]) -> AckBatchResult:
        """Ack 1..4096 deliveries (Delivery, (id, lease) or (id, lease, result)); each
        succeeds or fails on its own: see ``result.errors``."""
        return self._run(calls.ack_batch(items))  # type: ignore[return-value]

    def release(self, job_id: int, lease: int, delay_ms: int = 0, *, priority: int | None = None,
                reason: str | bytes | None = None) -> Durability:
        """Give a job back: ready again after ``delay_ms``; ``reason`` is recorded as the dead
        reason if this was its last attempt."""
        return self._run(calls.release(job_id, lease, delay_ms, priority, reason))  # type: ignore[return-value]

    def touch(self, job_id: int, lease: int, extend_ms: int = 0) -> TouchResult:
        """Extend a lease to now + ``extend_ms`` (0 = the job's ttr)."""
        return self._run(calls.touch(job_id, lease, extend_ms))  # type: ignore[return-value]

    def bury(self, job_id: int, lease: int, reason: str | bytes | None = None) -> Durability:
        """Move a reserved job to the dead letters with ``reason``."""
        return self._run(calls.bury(job_id, lease, reason))  # type: ignore[return-value]

    def kick(self, queue: str, count: int = 1) -> CountResult:
        """Move up to ``count`` dead jobs of the queue back to ready, oldest first."""
        return self._run(calls.kick(queue, count))  # type: ignore[return-value]

    def kick_job(self, job_id: int) -> Durability:
        """Move one dead or delayed job to ready (WrongState otherwise)."""
        return self._run(calls.kick_job(job_id))  # type: ignore[return-value]

    def peek(self, job_id: int) -> Job:
        return self._run(calls.peek(job_id))  # type: ignore[return-value]

    def peek_next(self, queue: str, state: JobState | int = JobState.READY) -> Job:
        """The next ready / next due delayed / oldest dead job of a queue (NotFound: none)."""
        return self._run(calls.peek_next(queue, state))  # type: ignore[return-value]

    def delete(self, job_id: int) -> Durability:
        """Delete a ready, delayed or dead job (WrongState if reserved)."""
        return self._run(calls.delete(job_id))  # type: ignore[return-value]

    def wait(self, job_id: int, timeout: float | None = 0.0) -> Job:
        """Wait up to ``timeout`` seconds for the job to be done (with its result) or dead;
        at the timeout, the job as it is (check ``job.state``)."""
        return self._run(calls.wait(job_id, timeout))  # type: ignore[return-value]

    def status(self, job_id: int) -> Job:
        return self._run(calls.status(job_id))  # type: ignore[return-value]

    def stats(self, queue: str | None = None) -> Stats:
        """Server statistics with every queue's (or only ``queue``'s: NotFound if unknown).
        Protocol version 2 fetches every page, in name order; a version 1 server answers with
        as many queues as fit one frame."""
        with self._lock:
            first = self._run(calls.stats(queue))
            assert isinstance(first, Stats)
            page = first
            while page.next_cursor:
                page = self._run(calls.stats(queue, page.next_cursor))  # type: ignore[assignment]
                if not page.queues:
                    raise ProtocolError("a STATS page with a next cursor but no queue")
                first.queues.extend(page.queues)
            first.next_cursor = ""
            return first

    def queues(self) -> list[QueueInfo]:
        """Every queue (protocol version 2: every page, in name order)."""
        with self._lock:
            out: list[QueueInfo] = []
            cursor = ""
            while True:
                page = self._run(calls.queues(cursor))
                assert isinstance(page, codec.QueuesPage)
                out.extend(page)
                if not page.next_cursor:
                    return out
                if not page:
                    raise ProtocolError("a QUEUES page with a next cursor but no queue")
                cursor = page.next_cursor

    def delete_queue(self, queue: str, *, force: bool = False) -> CountResult:
        """Delete a queue: its jobs, idempotency keys and settings. A queue with jobs is
        WrongState unless ``force`` (then reserved jobs go too). NotFound if unknown."""
        return self._run(calls.delete_queue(queue, force))  # type: ignore[return-value]

    def pause(self, queue: str) -> Durability:
        return self._run(calls.pause(queue))  # type: ignore[return-value]

    def resume(self, queue: str) -> Durability:
        return self._run(calls.resume(queue))  # type: ignore[return-value]

    def purge(self, queue: str) -> CountResult:
        """Delete every ready, delayed and dead job of the queue (reserved ones stay)."""
        return self._run(calls.purge(queue))  # type: ignore[return-value]

    def queue_config(self, queue: str, *, ttr_ms: int | None = None,
                     max_attempts: int | None = None) -> Durability:
        """Set a queue's defaults for later puts (None = keep; max_attempts 0 = unlimited)."""
        return self._run(calls.queue_config(queue, ttr_ms, max_attempts))  # type: ignore[return-value]


class Pipeline:
    """Requests collected, then sent in one write by :meth:`execute`, which returns their
    results in the order added (replies may arrive in any order: they are matched by request
    id). A pipeline is not retried after a lost connection: its requests may have been applied.

        with client.pipeline() as p:
            p.put("mail", b"a")
            p.put_batch([("mail", b"b"), ("mail", b"c")])
        results = p.results
    """

    def __init__(self, client: Client) -> None:
        self.client = client
        self.calls: list[Call] = []
        self.results: list = []

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.execute()

    def __len__(self) -> int:
        return len(self.calls)

    def add(self, call: Call) -> "Pipeline":
        self.calls.append(call)
        return self

    def put(self, queue: str, body: bytes | str = b"", **options: object) -> "Pipeline":
        return self.add(calls.put(queue, body, **options))  # type: ignore[arg-type]

    def put_batch(self, jobs: Iterable[JobSpec | tuple[str, bytes | str]]) -> "Pipeline":
        return self.add(calls.put_batch(jobs))

    def ack(self, job_id: int, lease: int, result: bytes | str | None = None) -> "Pipeline":
        return self.add(calls.ack(job_id, lease, result))

    def ack_batch(self, items: Iterable[AckItem]) -> "Pipeline":
        return self.add(calls.ack_batch(items))

    def release(self, job_id: int, lease: int, delay_ms: int = 0, *,
                priority: int | None = None, reason: str | bytes | None = None) -> "Pipeline":
        return self.add(calls.release(job_id, lease, delay_ms, priority, reason))

    def reserve(self, queues: str | Sequence[str], count: int = 1,
                timeout: float | None = 0.0) -> "Pipeline":
        return self.add(calls.reserve(queues, count, timeout))

    def status(self, job_id: int) -> "Pipeline":
        return self.add(calls.status(job_id))

    def wait(self, job_id: int, timeout: float | None = 0.0) -> "Pipeline":
        return self.add(calls.wait(job_id, timeout))

    def execute(self, raise_on_error: bool = True) -> list:
        """Send everything, wait for every reply. With ``raise_on_error`` the first failed
        request's error is raised (after all replies arrived); otherwise failed entries hold
        their SpoolError instance."""
        batch, self.calls = self.calls, []
        if not batch:
            self.results = []
            return self.results
        client = self.client
        wait_s = max(c.wait_s for c in batch)
        with client._lock:
            conn = client._connection()
            results = conn.exchange([(c.op, calls.payload_for(c, conn.version)) for c in batch],
                                    client._duration(wait_s))
        for value in results:
            if not isinstance(value, SpoolError):
                client._note_durability(value)
        self.results = results
        if raise_on_error:
            for value in results:
                if isinstance(value, SpoolError):
                    raise value
        return results
