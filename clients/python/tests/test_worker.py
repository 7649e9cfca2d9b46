"""spool.Worker against a real spoold: ack with the handler's result, retry with backoff, bury
after max attempts, bounded concurrency, touching long jobs, and SIGTERM handling of the
`python3 -m spool worker` command (finish within the grace period, else release)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import unittest
from pathlib import Path

import spool
from spool import Delivery, JobState
from server import Spoold, unique_queue

server: Spoold
PACKAGE_DIR = str(Path(__file__).resolve().parents[1])
# Bounds on how long a test waits for the worker to reach a state: generous for a loaded
# 2-core machine; a test normally takes a fraction of a second.
SETTLE_S = 20.0


def setUpModule() -> None:
    global server
    server = Spoold().start()
    logging.getLogger("spool.worker").setLevel(logging.ERROR)  # failures here are on purpose


def tearDownModule() -> None:
    server.close()


class WorkerCase(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self) -> None:
        self.c = await spool.AsyncClient(server.address).connect()
        self.q = unique_queue()

    async def asyncTearDown(self) -> None:
        await self.c.close()

    async def run_worker(self, worker: spool.Worker, job_ids: list[int]) -> list[spool.Job]:
        """Run the worker until every job is done or dead; return the jobs."""
        task = asyncio.ensure_future(worker.run_async())
        try:
            jobs = []
            for job_id in job_ids:
                job = await self.c.wait(job_id, timeout=SETTLE_S)
                self.assertIn(job.state, (JobState.DONE, JobState.DEAD), job)
                jobs.append(job)
            return jobs
        finally:
            worker.stop()
            await asyncio.wait_for(task, SETTLE_S)

    async def test_ack_with_result(self) -> None:
        def handler(d: Delivery) -> object:
            return {"len": len(d.body), "queue": d.queue}

        ids = [(await self.c.put(self.q, b"x" * i)).id for i in range(1, 4)]
        worker = spool.Worker(handler, self.q, address=server.address)
        jobs = await self.run_worker(worker, ids)
        self.assertEqual([j.result for j in jobs],
                         [f'{{"len": {i}, "queue": "{self.q}"}}'.encode() for i in range(1, 4)])
        self.assertEqual(worker.stats.acked, 3)

    async def test_coroutine_handler_and_several_queues(self) -> None:
        other = unique_queue()

        async def handler(d: Delivery) -> bytes:
            await asyncio.sleep(0.01)
            return d.body.upper()

        ids = [(await self.c.put(self.q, b"a")).id, (await self.c.put(other, b"b")).id]
        jobs = await self.run_worker(spool.Worker(handler, [self.q, other],
                                                  address=server.address), ids)
        self.assertEqual([j.result for j in jobs], [b"A", b"B"])

    async def test_retry_then_success(self) -> None:
        seen: list[int] = []

        def handler(d: Delivery) -> str:
            seen.append(d.attempt)
            if d.attempt < 3:
                raise RuntimeError(f"flaky {d.attempt}")
            return "ok"

        job_id = (await self.c.put(self.q, b"x")).id
        worker = spool.Worker(handler, self.q, address=server.address, backoff=0.05)
        t0 = time.monotonic()
        [job] = await self.run_worker(worker, [job_id])
        self.assertEqual((job.state, job.result, job.attempts), (JobState.DONE, b"ok", 3))
        self.assertEqual(seen, [1, 2, 3])
        self.assertGreaterEqual(time.monotonic() - t0, 0.05 + 0.1)  # backoff 0.05, then 0.1
        self.assertEqual(worker.stats.released, 2)

    async def test_bury_after_max_attempts(self) -> None:
        def handler(d: Delivery) -> None:
            raise ValueError("cannot parse " + d.body.decode())

        job_id = (await self.c.put(self.q, b"junk")).id
        worker = spool.Worker(handler, self.q, address=server.address, max_attempts=2,
                              backoff=0.01)
        [job] = await self.run_worker(worker, [job_id])
        self.assertEqual((job.state, job.attempts), (JobState.DEAD, 2))
        self.assertTrue(job.reason.startswith("ValueError: cannot parse junk"), job.reason)
        self.assertEqual((worker.stats.released, worker.stats.buried), (1, 1))

    async def test_concurrency_is_bounded(self) -> None:
        lock = threading.Lock()
        running = [0, 0]  # now, most

        def handler(d: Delivery) -> None:
            with lock:
                running[0] += 1
                running[1] = max(running[1], running[0])
            time.sleep(0.05)
            with lock:
                running[0] -= 1

        ids = [r.id for r in await self.c.put_batch([(self.q, b"")] * 12)]
        worker = spool.Worker(handler, self.q, address=server.address, concurrency=3)
        await self.run_worker(worker, ids)
        self.assertLessEqual(running[1], 3)
        self.assertGreaterEqual(running[1], 2)
        self.assertEqual(worker.stats.acked, 12)

    async def test_long_job_is_touched(self) -> None:
        async def handler(d: Delivery) -> str:
            await asyncio.sleep(2.5)  # 2.5 leases of 1 s
            return "slow"

        job_id = (await self.c.put(self.q, b"", ttr_ms=1000)).id
        worker = spool.Worker(handler, self.q, address=server.address)
        [job] = await self.run_worker(worker, [job_id])
        self.assertEqual((job.state, job.attempts), (JobState.DONE, 1))  # never redelivered
        self.assertGreaterEqual(worker.stats.touched, 2)


HANDLERS = '''
import time

def slow(delivery):
    time.sleep(float(delivery.body))
    return "finished"
'''


class WorkerCommand(unittest.TestCase):
    """SIGTERM to `python3 -m spool worker`."""

    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="spool-worker-")
        Path(self.dir, "handlers.py").write_text(textwrap.dedent(HANDLERS))
        self.c = spool.Client(server.address)
        self.q = unique_queue()

    def tearDown(self) -> None:
        self.c.close()

    def start(self, grace: str) -> subprocess.Popen:
        env = dict(os.environ, PYTHONPATH=PACKAGE_DIR)
        proc = subprocess.Popen(
            [sys.executable, "-m", "spool", "worker", "handlers:slow", self.q, "--address",
             server.address, "--grace", grace], cwd=self.dir, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.addCleanup(self.reap, proc)
        return proc

    @staticmethod
    def reap(proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.kill()  # by its pid: only this test's own worker
        proc.communicate()

    def wait_reserved(self, job_id: int, proc: subprocess.Popen) -> None:
        deadline = time.monotonic() + SETTLE_S
        while self.c.status(job_id).state != JobState.RESERVED:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                self.fail(f"the worker never took the job: {proc.communicate()[0]}")
            time.sleep(0.05)

    def test_sigterm_lets_running_job_finish(self) -> None:
        job_id = self.c.put(self.q, b"1.0").id
        proc = self.start(grace="15")
        self.wait_reserved(job_id, proc)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=SETTLE_S)
        self.assertEqual(proc.returncode, 0, out)
        job = self.c.status(job_id)
        self.assertEqual((job.state, job.result), (JobState.DONE, b"finished"))

    def test_sigterm_releases_job_after_grace(self) -> None:
        job_id = self.c.put(self.q, b"60").id
        self.c.put(self.q, b"0")  # not taken after the signal: stays ready
        proc = self.start(grace="0.5")
        self.wait_reserved(job_id, proc)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=SETTLE_S)
        self.assertLess(time.monotonic() - t0, 10, "the worker waited for the 60 s job")
        self.assertEqual(proc.returncode, 0, out)
        self.assertIn("abandoned 1", out)
        job = self.c.status(job_id)
        self.assertEqual((job.state, job.attempts), (JobState.READY, 1))


if __name__ == "__main__":
    unittest.main()
