"""spool.AsyncClient: the asyncio client, with the codec and calls of the blocking one.

One connection carries any number of concurrent calls: each gets a request id and a future,
and one reader task hands every reply to the future of its id, in whatever order replies come.
A call that times out or is cancelled leaves its request outstanding on the server; its late
reply is dropped when it comes, and a late RESERVE reply's jobs are released at once, so a
cancelled reserve does not hold leases until their deadline.

Failures: as :class:`spool.Client`. A lost connection fails every outstanding call with
ConnectionClosed; idempotent calls are retried on a new connection with bounded backoff.
A TimedOut call does not close the connection here (the reader task keeps the stream in sync).
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Iterable, Sequence

from . import calls, codec
from .calls import AckItem, Call
from .client import RECV_SIZE, backoff_s, default_address, parse_address
from .codec import (AckBatchResult, CountResult, Delivery, Durability, HelloReply, Job, JobSpec,
                    JobState, Op, PutResult, QueueInfo, Stats, TouchResult)
from .errors import (ConnectFailed, ConnectionClosed, ProtocolError, SpoolError, TimedOut,
                     TooLarge)

# Unsent bytes above which a call waits for the socket to drain: bounds what a producer that
# never awaits can pile up in memory, while small requests go out without a drain each.
WRITE_BUFFER_HIGH = 1024 * 1024


class _Conn:
    """One connection: its streams, the frame reader and the outstanding requests."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.frames = codec.FrameReader()
        self.frame_size_max = codec.FRAME_SIZE_HANDSHAKE_MAX
        self.pending: dict[int, tuple[int, asyncio.Future]] = {}
        self.abandoned: dict[int, int] = {}  # request id -> opcode, for replies nobody awaits
        self.next_id = 1
        self.closed = False
        self.task: asyncio.Task | None = None
        self.hello: HelloReply | None = None
        self.version = 1  # until HELLO's reply names the negotiated one
        self.clock_offset_ms = 0.0

    def send(self, op: int, payload: bytes) -> int:
        request_id = self.next_id
        self.next_id += 1
        frame = codec.frame(op, request_id, payload)
        if len(frame) > self.frame_size_max:
            raise TooLarge(f"request of {len(frame)} bytes above the server's frame maximum "
                           f"{self.frame_size_max}: split the batch")
        self.writer.write(frame)
        return request_id

    def fail_all(self, err: SpoolError) -> None:
        self.closed = True
        for _, fut in self.pending.values():
            if not fut.done():
                fut.set_result(err)
        self.pending.clear()
        self.writer.close()

    async def read_loop(self) -> None:
        try:
            while not self.closed:
                data = await self.reader.read(RECV_SIZE)
                if not data:
                    have = len(self.frames.buf)
                    raise ConnectionClosed(
                        "server closed the connection" +
                        (f" in the middle of a frame ({have} bytes of it received)" if have
                         else ""))
                self.frames.feed(data)
                while (f := self.frames.next_frame()) is not None:
                    self.dispatch(*f)
        except SpoolError as e:
            self.fail_all(e)
        except OSError as e:
            self.fail_all(ConnectionClosed(f"receive: {e}"))
        except asyncio.CancelledError:
            self.fail_all(ConnectionClosed("connection closed by the client"))
            raise

    def dispatch(self, reply_op: int, request_id: int, payload: bytes) -> None:
        entry = self.pending.pop(request_id, None)
        if entry is None:
            self.dispatch_unawaited(reply_op, request_id, payload)
            return
        op, fut = entry
        value = codec.decode_reply(op, reply_op, payload, self.version)
        if not fut.done():
            fut.set_result(value)
        if isinstance(value, SpoolError) and value.closes_connection:
            self.fail_all(ConnectionClosed(f"server closed the connection after {value}"))

    def dispatch_unawaited(self, reply_op: int, request_id: int, payload: bytes) -> None:
        op = self.abandoned.pop(request_id, None)
        if op is not None:
            value = codec.decode_reply(op, reply_op, payload, self.version)
            if op == Op.RESERVE and isinstance(value, list):
                for d in value:  # nobody will work on these: give them back now
                    rid = self.send(Op.RELEASE, codec.encode_release(d.id, d.lease, 0, None,
                                                                     b"reserve abandoned"))
                    self.abandoned[rid] = Op.RELEASE
            return
        if request_id == 0 and reply_op == codec.OP_ERROR:
            self.fail_all(codec.decode_error(payload))  # BUSY at accept, a framing error
            return
        raise ProtocolError(f"reply with request id {request_id}, which is not outstanding "
                            f"(opcode 0x{reply_op:04x})")


class AsyncClient:
    """An asyncio spool client. Use ``async with AsyncClient(address) as c:`` or
    ``c = await AsyncClient(address).connect()``. Options as :class:`spool.Client`."""

    def __init__(self, address: str | None = None, *, auth: str | bytes | None = None,
                 client_name: str = "spool-python-async", connect_timeout: float = 5.0,
                 timeout: float | None = 30.0, retries: int = 5, backoff: float = 0.05,
                 backoff_max: float = 2.0, protocol_max: int = codec.VERSION) -> None:
        self.address = address or default_address()
        self.protocol_max = protocol_max
        parse_address(self.address)
        self.auth = auth
        self.client_name = client_name
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.last_durability = Durability.NONE
        self._conn: _Conn | None = None
        self._lock: asyncio.Lock | None = None
        self._closed = False

    async def __aenter__(self) -> "AsyncClient":
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> "AsyncClient":
        await self._connection()
        return self

    async def close(self) -> None:
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.fail_all(ConnectionClosed("client is closed"))
            if conn.task is not None:
                conn.task.cancel()
                try:
                    await conn.task
                except (asyncio.CancelledError, Exception):
                    pass

    @property
    def server(self) -> HelloReply:
        if self._conn is None or self._conn.hello is None:
            raise ConnectionClosed("not connected")
        return self._conn.hello

    def server_time_ms(self) -> int:
        offset = self._conn.clock_offset_ms if self._conn is not None else 0.0
        return int(time.time() * 1000 + offset)

    async def _open(self) -> _Conn:
        host, port = parse_address(self.address)
        deadline = time.monotonic() + self.connect_timeout
        try:
            async with asyncio.timeout(self.connect_timeout):
                reader, writer = await asyncio.open_connection(host, port)
        except TimeoutError as e:
            raise TimedOut(f"connect to {self.address}: timed out") from e
        except OSError as e:
            raise ConnectFailed(f"connect to {self.address}: {e}") from e
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Conn(reader, writer)
        conn.task = asyncio.get_running_loop().create_task(conn.read_loop())
        hello = await self._exchange(conn, Op.HELLO,
                                     codec.encode_hello(self.client_name, self.auth,
                                                        self.protocol_max),
                                     max(0.0, deadline - time.monotonic()), handshake=True)
        if isinstance(hello, SpoolError):
            conn.fail_all(hello)
            raise hello
        assert isinstance(hello, HelloReply)
        conn.hello = hello
        conn.version = hello.version
        conn.frame_size_max = hello.frame_size_max
        conn.frames.frame_size_max = hello.frame_size_max
        conn.clock_offset_ms = hello.server_time_ms - time.time() * 1000
        return conn

    async def _connection(self) -> _Conn:
        if self._closed:
            raise ConnectionClosed("client is closed")
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._conn is not None and not self._conn.closed:
                return self._conn
            self._conn = None
            for attempt in range(self.retries + 1):
                try:
                    self._conn = await self._open()
                    return self._conn
                except SpoolError as e:
                    if attempt == self.retries or not (
                            isinstance(e, ConnectionClosed) or e.retryable):
                        raise
                await asyncio.sleep(backoff_s(attempt, self.backoff, self.backoff_max))
            raise AssertionError("unreachable")

    async def _exchange(self, conn: _Conn, op: int, payload: bytes, wait_s: float,
                        handshake: bool = False) -> object:
        if conn.closed:
            return ConnectionClosed("connection is closed")
        request_id = conn.send(op, payload)
        fut = asyncio.get_running_loop().create_future()
        conn.pending[request_id] = (op, fut)
        if conn.writer.transport.get_write_buffer_size() > WRITE_BUFFER_HIGH:
            await conn.writer.drain()
        limit = wait_s if handshake else (None if self.timeout is None else self.timeout + wait_s)
        try:
            async with asyncio.timeout(limit):
                return await fut
        except TimeoutError:
            self._abandon(conn, request_id, op)
            if handshake:
                conn.fail_all(ConnectionClosed("handshake timed out"))
            raise TimedOut(f"no reply to {Op(op).name} within {limit:.3f} s") from None
        except asyncio.CancelledError:
            self._abandon(conn, request_id, op)
            raise

    @staticmethod
    def _abandon(conn: _Conn, request_id: int, op: int) -> None:
        if conn.pending.pop(request_id, None) is not None and not conn.closed:
            conn.abandoned[request_id] = op

    async def _run(self, call: Call) -> object:
        attempt = 0
        while True:
            conn = await self._connection()
            value = await self._exchange(conn, call.op, calls.payload_for(call, conn.version),
                                         call.wait_s)
            if isinstance(value, SpoolError):
                retry = (call.idempotent and attempt < self.retries and conn.closed and
                         ((isinstance(value, ConnectionClosed)
                           and not isinstance(value, ProtocolError)) or value.retryable))
                if not retry:
                    raise value
                await asyncio.sleep(backoff_s(attempt, self.backoff, self.backoff_max))
                attempt += 1
                continue
            if isinstance(value, Durability):
                self.last_durability = value
            elif (d := getattr(value, "durability", None)) is not None:
                self.last_durability = d
            return value

    # ---- the protocol's requests (see spool.Client for each one's meaning) ----

    async def ping(self) -> None:
        await self._run(calls.ping())

    async def put(self, queue: str, body: bytes | str = b"", *, priority: int = 0,
                  delay_ms: int = 0, run_at_ms: int | None = None, ttr_ms: int = 0,
                  max_attempts: int | None = None, ttl_ms: int = 0,
                  key: str | bytes | None = None) -> PutResult:
        return await self._run(calls.put(  # type: ignore[return-value]
            queue, body, priority=priority, delay_ms=delay_ms, run_at_ms=run_at_ms,
            ttr_ms=ttr_ms, max_attempts=max_attempts, ttl_ms=ttl_ms, key=key))

    async def put_batch(self, jobs: Iterable[JobSpec | tuple[str, bytes | str]]
                        ) -> list[PutResult]:
        value = await self._run(calls.put_batch(jobs))
        assert isinstance(value, list)
        if value:
            self.last_durability = value[0].durability
        return value

    async def reserve(self, queues: str | Sequence[str], count: int = 1,
                      timeout: float | None = 0.0, *, detach: bool = False) -> list[Delivery]:
        return await self._run(calls.reserve(queues, count, timeout, detach))  # type: ignore[return-value]

    async def ack(self, job_id: int, lease: int, result: bytes | str | None = None) -> Durability:
        return await self._run(calls.ack(job_id, lease, result))  # type: ignore[return-value]

    async def ack_batch(self, items: Iterable[AckItem]) -> AckBatchResult:
        return await self._run(calls.ack_batch(items))  # type: ignore[return-value]

    async def release(self, job_id: int, lease: int, delay_ms: int = 0, *,
                      priority: int | None = None,
                      reason: str | bytes | None = None) -> Durability:
        return await self._run(calls.release(job_id, lease, delay_ms, priority, reason))  # type: ignore[return-value]

    async def touch(self, job_id: int, lease: int, extend_ms: int = 0) -> TouchResult:
        return await self._run(calls.touch(job_id, lease, extend_ms))  # type: ignore[return-value]

    async def bury(self, job_id: int, lease: int, reason: str | bytes | None = None
                   ) -> Durability:
        return await self._run(calls.bury(job_id, lease, reason))  # type: ignore[return-value]

    async def kick(self, queue: str, count: int = 1) -> CountResult:
        return await self._run(calls.kick(queue, count))  # type: ignore[return-value]

    async def kick_job(self, job_id: int) -> Durability:
        return await self._run(calls.kick_job(job_id))  # type: ignore[return-value]

    async def peek(self, job_id: int) -> Job:
        return await self._run(calls.peek(job_id))  # type: ignore[return-value]

    async def peek_next(self, queue: str, state: JobState | int = JobState.READY) -> Job:
        return await self._run(calls.peek_next(queue, state))  # type: ignore[return-value]

    async def delete(self, job_id: int) -> Durability:
        return await self._run(calls.delete(job_id))  # type: ignore[return-value]

    async def wait(self, job_id: int, timeout: float | None = 0.0) -> Job:
        return await self._run(calls.wait(job_id, timeout))  # type: ignore[return-value]

    async def status(self, job_id: int) -> Job:
        return await self._run(calls.status(job_id))  # type: ignore[return-value]

    async def stats(self, queue: str | None = None) -> Stats:
        """As :meth:`spool.Client.stats`: every page."""
        first = await self._run(calls.stats(queue))
        assert isinstance(first, Stats)
        page = first
        while page.next_cursor:
            page = await self._run(calls.stats(queue, page.next_cursor))  # type: ignore[assignment]
            if not page.queues:
                raise ProtocolError("a STATS page with a next cursor but no queue")
            first.queues.extend(page.queues)
        first.next_cursor = ""
        return first

    async def queues(self) -> list[QueueInfo]:
        out: list[QueueInfo] = []
        cursor = ""
        while True:
            page = await self._run(calls.queues(cursor))
            assert isinstance(page, codec.QueuesPage)
            out.extend(page)
            if not page.next_cursor:
                return out
            if not page:
                raise ProtocolError("a QUEUES page with a next cursor but no queue")
            cursor = page.next_cursor

    async def delete_queue(self, queue: str, *, force: bool = False) -> CountResult:
        return await self._run(calls.delete_queue(queue, force))  # type: ignore[return-value]

    async def pause(self, queue: str) -> Durability:
        return await self._run(calls.pause(queue))  # type: ignore[return-value]

    async def resume(self, queue: str) -> Durability:
        return await self._run(calls.resume(queue))  # type: ignore[return-value]

    async def purge(self, queue: str) -> CountResult:
        return await self._run(calls.purge(queue))  # type: ignore[return-value]

    async def queue_config(self, queue: str, *, ttr_ms: int | None = None,
                           max_attempts: int | None = None) -> Durability:
        return await self._run(calls.queue_config(queue, ttr_ms, max_attempts))  # type: ignore[return-value]
