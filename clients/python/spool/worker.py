"""spool.Worker: run a handler on the jobs of one or more queues.

The worker reserves jobs in batches (never more than it has free slots), runs the handler on
each with at most ``concurrency`` at a time, and settles every job it took:

- the handler returns: ack, with the return value as the job's result (bytes as they are, str
  as UTF-8, None as empty, anything else as JSON);
- the handler raises: release with exponential backoff (``backoff`` * 2^(attempt-1) seconds,
  capped at ``backoff_max``) and the exception text as reason; on attempt ``max_attempts``,
  bury with that text instead (the job goes to the dead letters);
- while the handler runs, the lease is touched each time half of it is left, so a long job is
  not delivered twice;
- on SIGTERM / SIGINT (or :meth:`Worker.stop`) it stops reserving, lets running jobs finish
  for up to ``grace`` seconds, then releases the jobs still running and exits.

A handler is a plain function (run in a thread pool of ``concurrency`` threads) or a coroutine
function (run on the event loop); it receives the :class:`spool.Delivery`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import json
import logging
import signal
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from .aio import AsyncClient
from .codec import RESULT_SIZE_MAX, TEXT_SIZE_MAX, Delivery
from .errors import SpoolError, TooLarge

log = logging.getLogger("spool.worker")

# How long one reserve blocks on the server. At a stop the worker lets the reserve it has out
# finish (jobs it brings are worked on within the grace period like the others) rather than
# abandon it: an abandoned reserve would still take jobs on the server, each costing an
# attempt when given back. So a stop waits up to this long for it; 1 s keeps that short while
# an idle worker costs the server one request a second.
RESERVE_TIMEOUT_S = 1.0
# Pause after a failed reserve (server gone, restarting) before the next try, doubling to a cap.
RESERVE_RETRY_BASE_S = 0.1
RESERVE_RETRY_MAX_S = 5.0


def encode_result(value: Any) -> bytes:
    """A handler's return value as the ack result."""
    if value is None:
        return b""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value).encode()


def failure_reason(exc: BaseException) -> str:
    """"Type: message" and the innermost frame, within the protocol's 1024-byte text limit."""
    text = f"{type(exc).__name__}: {exc}"
    tb = traceback.extract_tb(exc.__traceback__)
    if tb:
        last = tb[-1]
        text += f" (at {last.filename}:{last.lineno} in {last.name})"
    raw = text.encode()
    if len(raw) > TEXT_SIZE_MAX:
        raw = raw[:TEXT_SIZE_MAX - 3].decode(errors="ignore").encode() + b"..."
    return raw.decode()


@dataclass
class WorkerStats:
    reserved: int = 0
    acked: int = 0
    released: int = 0  # after a failure, to be retried
    buried: int = 0
    touched: int = 0
    abandoned: int = 0  # released at shutdown, still running after the grace period


class Worker:
    def __init__(self, handler: Callable[[Delivery], Any], queues: str | Sequence[str], *,
                 client: AsyncClient | None = None, address: str | None = None,
                 auth: str | bytes | None = None, concurrency: int = 8,
                 batch: int | None = None, max_attempts: int = 5, backoff: float = 1.0,
                 backoff_max: float = 300.0, grace: float = 30.0,
                 reserve_timeout: float = RESERVE_TIMEOUT_S, touch: bool = True) -> None:
        if concurrency < 1 or max_attempts < 1:
            raise ValueError("concurrency and max_attempts must be >= 1")
        self.handler = handler
        self.queues = [queues] if isinstance(queues, str) else list(queues)
        self.client = client or AsyncClient(address, auth=auth, client_name="spool-worker")
        self._own_client = client is None
        self.concurrency = concurrency
        self.batch = min(batch or concurrency, 1024)
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.grace = grace
        self.reserve_timeout = reserve_timeout
        self.touch = touch
        self.stats = WorkerStats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._stop_requested = False
        self._stop_time = 0.0
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    # ---- running ----

    def run(self) -> None:
        """Run until SIGTERM/SIGINT or :meth:`stop`, in a new event loop."""
        asyncio.run(self.run_async(install_signals=True))

    def stop(self) -> None:
        """Ask the worker to stop (from any thread or a signal handler)."""
        if not self._stop_requested:
            self._stop_time = time.monotonic()
        self._stop_requested = True
        loop, event = self._loop, self._stopping
        if loop is not None and event is not None:
            loop.call_soon_threadsafe(event.set)

    async def run_async(self, install_signals: bool = False) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        if self._stop_requested:
            self._stopping.set()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._loop.add_signal_handler(sig, self.stop)
        if not inspect.iscoroutinefunction(self.handler):
            self._executor = concurrent.futures.ThreadPoolExecutor(
                self.concurrency, thread_name_prefix="spool-worker")
        running: set[asyncio.Task] = set()
        try:
            await self.client.connect()
            await self._reserve_loop(running)
        finally:
            if not self._stop_requested:  # an error ended the loop
                self._stop_time = time.monotonic()
            await self._drain(running)
            if install_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    self._loop.remove_signal_handler(sig)
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
            if self._own_client:
                await self.client.close()

    async def _reserve_loop(self, running: set[asyncio.Task]) -> None:
        assert self._stopping is not None
        stop_wait = asyncio.ensure_future(self._stopping.wait())
        failures = 0
        try:
            while not self._stopping.is_set():
                free = self.concurrency - len(running)
                if free <= 0:
                    await asyncio.wait({stop_wait, *running}, return_when=asyncio.FIRST_COMPLETED)
                    continue
                try:
                    deliveries = await self.client.reserve(self.queues, min(free, self.batch),
                                                           self.reserve_timeout)
                    failures = 0
                except SpoolError as e:
                    delay = min(RESERVE_RETRY_MAX_S, RESERVE_RETRY_BASE_S * 2 ** failures)
                    failures += 1
                    log.warning("reserve from %s failed: %s; again in %.1f s", self.queues, e,
                                delay)
                    await asyncio.wait({stop_wait}, timeout=delay)
                    continue
                for d in deliveries:
                    self.stats.reserved += 1
                    task = asyncio.ensure_future(self._process(d))
                    running.add(task)
                    task.add_done_callback(running.discard)
        finally:
            stop_wait.cancel()

    async def _drain(self, running: set[asyncio.Task]) -> None:
        """Let running jobs finish within the grace period (counted from the stop); release
        the others."""
        if not running:
            return
        grace = max(0.0, self._stop_time + self.grace - time.monotonic())
        log.info("stopping: waiting up to %.1f s for %d running jobs", grace, len(running))
        _, late = await asyncio.wait(set(running), timeout=grace)
        for task in late:
            task.cancel()
        if late:
            await asyncio.gather(*late, return_exceptions=True)

    # ---- one job ----

    async def _process(self, d: Delivery) -> None:
        toucher = asyncio.ensure_future(self._keep_touching(d)) if self.touch else None
        try:
            try:
                value = await self._call_handler(d)
            except asyncio.CancelledError:
                await asyncio.shield(self._settle(self.client.release(
                    d.id, d.lease, reason="worker stopped before the job finished"), d))
                self.stats.abandoned += 1
                raise
            except Exception as e:  # the handler's failure is the job's, not the worker's
                await self._fail(d, e)
                return
            await self._ack(d, value)
        finally:
            if toucher is not None:
                toucher.cancel()

    async def _call_handler(self, d: Delivery) -> Any:
        if self._executor is None:
            value = self.handler(d)
        else:
            loop = asyncio.get_running_loop()
            value = await loop.run_in_executor(self._executor, self.handler, d)
        if inspect.isawaitable(value):
            value = await value
        return value

    async def _ack(self, d: Delivery, value: Any) -> None:
        try:
            result = encode_result(value)
        except (TypeError, ValueError) as e:
            await self._fail(d, e)
            return
        if len(result) > RESULT_SIZE_MAX:
            await self._fail(d, TooLarge(f"handler result of {len(result)} bytes above "
                                         f"{RESULT_SIZE_MAX}"), retry=False)
            return
        if await self._settle(self.client.ack(d.id, d.lease, result), d):
            self.stats.acked += 1

    async def _fail(self, d: Delivery, exc: BaseException, retry: bool = True) -> None:
        reason = failure_reason(exc)
        if not retry or d.attempt >= self.max_attempts:
            log.warning("job %d buried after attempt %d: %s", d.id, d.attempt, reason)
            if await self._settle(self.client.bury(d.id, d.lease, reason), d):
                self.stats.buried += 1
            return
        delay_s = min(self.backoff_max, self.backoff * 2 ** (d.attempt - 1))
        log.info("job %d failed (attempt %d), retry in %.1f s: %s", d.id, d.attempt, delay_s,
                 reason)
        if await self._settle(self.client.release(d.id, d.lease, int(delay_s * 1000),
                                                  reason=reason), d):
            self.stats.released += 1

    async def _settle(self, call: Any, d: Delivery) -> bool:
        """Await an ack/release/bury; a lost lease or connection is logged, not raised: the
        server delivers the job again when its lease runs out."""
        try:
            await call
            return True
        except SpoolError as e:
            log.warning("job %d: settling failed: %s", d.id, e)
            return False

    async def _keep_touching(self, d: Delivery) -> None:
        deadline_ms = d.deadline_ms
        while True:
            left_ms = deadline_ms - self.client.server_time_ms()
            await asyncio.sleep(max(0.05, left_ms / 2000))
            try:
                deadline_ms = (await self.client.touch(d.id, d.lease)).deadline_ms
                self.stats.touched += 1
            except SpoolError as e:
                log.warning("job %d: touch failed: %s", d.id, e)
                return
