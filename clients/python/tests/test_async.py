"""spool.AsyncClient against a real spoold: concurrent calls on one connection answered out of
order, errors, a cancelled reserve giving its jobs back, reconnecting across a restart."""

from __future__ import annotations

import asyncio
import time
import unittest

import spool
from spool import Durability, JobState
from server import Spoold, unique_queue

server: Spoold


def setUpModule() -> None:
    global server
    server = Spoold().start()


def tearDownModule() -> None:
    server.close()


class AsyncCase(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self) -> None:
        self.c = await spool.AsyncClient(server.address).connect()
        self.q = unique_queue()

    async def asyncTearDown(self) -> None:
        await self.c.close()

    async def test_round_trip(self) -> None:
        put = await self.c.put(self.q, b"hello", key="k")
        self.assertEqual(put.durability, Durability.SYNCED)
        self.assertTrue((await self.c.put(self.q, b"again", key="k")).duplicate)
        [d] = await self.c.reserve(self.q, 5, timeout=5)
        waiter = asyncio.ensure_future(self.c.wait(put.id, timeout=10))
        await asyncio.sleep(0.05)
        await self.c.touch(d.id, d.lease)
        await self.c.ack(d.id, d.lease, b"result")
        job = await waiter
        self.assertEqual((job.state, job.result), (JobState.DONE, b"result"))
        self.assertEqual(self.c.last_durability, Durability.SYNCED)

    async def test_every_other_request(self) -> None:
        await self.c.ping()
        ids = [r.id for r in await self.c.put_batch([(self.q, b"a"), (self.q, b"b")])]
        ds = await self.c.reserve(self.q, 2, timeout=5)
        out = await self.c.ack_batch([ds[0]])
        self.assertTrue(out.ok)
        await self.c.release(ds[1].id, ds[1].lease, reason="again")
        [d] = await self.c.reserve(self.q, 1, timeout=5)
        await self.c.bury(d.id, d.lease, "bad")
        self.assertEqual((await self.c.peek_next(self.q, JobState.DEAD)).id, ids[1])
        await self.c.kick_job(ids[1])
        self.assertEqual((await self.c.peek(ids[1])).body, b"b")
        await self.c.pause(self.q)
        self.assertTrue((await self.c.stats(self.q)).queues[0].paused)
        await self.c.resume(self.q)
        await self.c.queue_config(self.q, ttr_ms=1234)
        self.assertIn(self.q, [q.name for q in await self.c.queues()])
        self.assertEqual((await self.c.purge(self.q)).count, 1)
        with self.assertRaises(spool.NotFound):
            await self.c.delete(ids[1])
        with self.assertRaises(spool.NotFound):
            await self.c.status(2**60)
        self.assertEqual((await self.c.kick(self.q, 5)).count, 0)
        with self.assertRaises(spool.LeaseExpired):
            await self.c.ack(ds[0].id, ds[0].lease)

    async def test_concurrent_calls_out_of_order(self) -> None:
        other = unique_queue()
        t0 = time.monotonic()
        slow = asyncio.ensure_future(self.c.reserve(other, 1, timeout=0.3))
        puts = await asyncio.gather(*(self.c.put(self.q, f"{i}") for i in range(50)))
        self.assertFalse(slow.done())  # the puts were answered while the reserve waited
        self.assertEqual(await slow, [])
        self.assertGreaterEqual(time.monotonic() - t0, 0.25)
        self.assertEqual(len({p.id for p in puts}), 50)

    async def test_cancelled_reserve_gives_jobs_back(self) -> None:
        reserve = asyncio.ensure_future(self.c.reserve(self.q, 1, timeout=5))
        await asyncio.sleep(0.1)
        reserve.cancel()
        with self.assertRaises(asyncio.CancelledError):
            await reserve
        async with spool.AsyncClient(server.address) as other:
            job_id = (await other.put(self.q, b"x")).id
            # The cancelled reserve still gets this job from the server; the client releases it
            # at once, so another consumer has it long before the 30 s lease would run out.
            [d] = await other.reserve(self.q, 1, timeout=10)
            self.assertEqual(d.id, job_id)

    async def test_reconnect_after_restart(self) -> None:
        loop = asyncio.get_running_loop()
        srv = await loop.run_in_executor(None, lambda: Spoold().start())
        try:
            async with spool.AsyncClient(srv.address, backoff=0.05, retries=8) as c:
                job_id = (await c.put("q", b"x")).id
                await loop.run_in_executor(None, srv.restart)
                self.assertEqual((await c.status(job_id)).state, JobState.READY)
        finally:
            await loop.run_in_executor(None, srv.close)


if __name__ == "__main__":
    unittest.main()
