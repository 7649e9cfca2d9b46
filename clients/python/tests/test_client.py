"""spool.Client against a real spoold: every request's success and error paths, pipelining with
out-of-order replies, auth, back pressure, BUSY at accept, and reconnecting across a restart."""

from __future__ import annotations

import os
import threading
import time
import unittest

import spool
from spool import Durability, JobSpec, JobState
from server import Spoold, unique_queue

server: Spoold


def setUpModule() -> None:
    global server
    server = Spoold().start()


def tearDownModule() -> None:
    server.close()


class ClientCase(unittest.TestCase):
    def setUp(self) -> None:
        self.c = spool.Client(server.address)
        self.q = unique_queue()

    def tearDown(self) -> None:
        self.c.close()

    def reserve1(self, queue: str | None = None) -> spool.Delivery:
        got = self.c.reserve(queue or self.q, 1, timeout=5)
        self.assertEqual(len(got), 1)
        return got[0]


class Producing(ClientCase):
    def test_put_reserve_ack_wait(self) -> None:
        put = self.c.put(self.q, b"hello", priority=3)
        self.assertGreater(put.id, 0)
        self.assertFalse(put.duplicate)
        self.assertEqual(put.durability, Durability.SYNCED)  # spoold's default --sync always
        d = self.reserve1()
        self.assertEqual((d.id, d.body, d.attempt, d.priority, d.queue),
                         (put.id, b"hello", 1, 3, self.q))
        self.assertEqual(self.c.ack(d.id, d.lease, "sent"), Durability.SYNCED)
        self.assertEqual(self.c.last_durability, Durability.SYNCED)
        job = self.c.wait(put.id, timeout=1)
        self.assertEqual((job.state, job.result, job.attempts), (JobState.DONE, b"sent", 1))

    def test_idempotency_key(self) -> None:
        first = self.c.put(self.q, b"a", key="order-17")
        again = self.c.put(self.q, b"b", key="order-17")
        self.assertEqual(again.id, first.id)
        self.assertTrue(again.duplicate)
        self.assertEqual(self.c.stats(self.q).queues[0].ready, 1)

    def test_put_options(self) -> None:
        put = self.c.put(self.q, b"x", delay_ms=60_000, ttr_ms=5000, max_attempts=0, ttl_ms=0)
        job = self.c.peek(put.id)
        self.assertEqual((job.state, job.ttr_ms, job.max_attempts, job.body),
                         (JobState.DELAYED, 5000, 0, b"x"))
        at = self.c.server_time_ms() + 3_600_000
        job = self.c.peek(self.c.put(self.q, b"y", run_at_ms=at).id)
        self.assertEqual(job.state, JobState.DELAYED)
        self.assertAlmostEqual(job.ready_at_ms, at, delta=1)

    def test_put_batch_and_ack_batch(self) -> None:
        results = self.c.put_batch([JobSpec(self.q, f"j{i}") for i in range(9)] + [(self.q, b"t")])
        self.assertEqual(len({r.id for r in results}), 10)
        ds = self.c.reserve(self.q, 10, timeout=5)
        self.assertEqual([d.id for d in ds], [r.id for r in results])
        stale = (ds[0].id, ds[0].lease + 1)
        out = self.c.ack_batch([stale] + [(d.id, d.lease, b"r") for d in ds[1:]] + [ds[0]])
        self.assertIsInstance(out.errors[0], spool.LeaseExpired)
        self.assertEqual(out.errors[1:], [None] * 10)
        self.assertFalse(out.ok)
        self.assertEqual(self.c.status(ds[5].id).result, b"r")

    def test_put_batch_is_all_or_nothing(self) -> None:
        with self.assertRaises(spool.TooLarge):  # one body above the server's job maximum
            self.c.put_batch([(self.q, b"ok"), (self.q, b"x" * (self.c.job_size_max + 1))])
        with self.assertRaises(spool.NotFound):
            self.c.stats(self.q)  # nothing was enqueued, not even the queue

    def test_put_many(self) -> None:
        results = self.c.put_many(((self.q, f"{i}") for i in range(1000)), batch=64, window=4)
        self.assertEqual(len({r.id for r in results}), 1000)
        self.assertEqual(self.c.peek(results[999].id).body, b"999")
        self.assertEqual(self.c.stats(self.q).queues[0].ready, 1000)

    def test_put_many_stops_at_the_first_error(self) -> None:
        big = b"x" * (self.c.job_size_max + 1)  # the server refuses the batch holding it
        jobs = [(self.q, b"a")] * 10 + [(self.q, big)] + [(self.q, b"b")] * 100
        with self.assertRaises(spool.TooLarge) as cm:
            self.c.put_many(jobs, batch=5, window=1)
        self.assertEqual(len(cm.exception.results), 10)  # the two batches before it
        self.assertEqual(self.c.stats(self.q).queues[0].ready, 10)
        self.c.ping()

    def test_put_errors(self) -> None:
        with self.assertRaises(spool.TooLarge):  # server-side: the connection stays usable
            self.c.put(self.q, b"x" * (self.c.job_size_max + 1))
        self.c.ping()
        with self.assertRaises(spool.InvalidArgument):
            self.c.put("bad name!", b"")
        with self.assertRaises(spool.TooLarge):  # above the frame maximum: refused locally
            self.c.put_batch([(self.q, b"x" * 600_000)] * 4)
        self.c.ping()


class Consuming(ClientCase):
    def test_reserve_timeout_and_blocking(self) -> None:
        t0 = time.monotonic()
        self.assertEqual(self.c.reserve(self.q, 1, timeout=0.2), [])
        self.assertGreaterEqual(time.monotonic() - t0, 0.15)
        producer = spool.Client(server.address)
        timer = threading.Timer(0.2, lambda: producer.put(self.q, b"late"))
        timer.start()
        try:
            self.assertEqual(self.reserve1().body, b"late")
        finally:
            timer.join()
            producer.close()

    def test_reserve_from_several_queues_in_order(self) -> None:
        other = unique_queue()
        self.c.put(other, b"second choice")
        self.c.put(self.q, b"first choice")
        got = self.c.reserve([self.q, other], 2, timeout=5)
        self.assertEqual([d.body for d in got], [b"first choice", b"second choice"])

    def test_release_touch_bury_kick(self) -> None:
        job_id = self.c.put(self.q, b"x").id
        d = self.reserve1()
        self.c.release(d.id, d.lease, 0, priority=7, reason="later")
        job = self.c.status(job_id)
        self.assertEqual((job.state, job.priority), (JobState.READY, 7))
        d = self.reserve1()
        self.assertEqual(d.attempt, 2)
        self.c.bury(d.id, d.lease, "first burial")
        self.c.kick_job(job_id)
        d = self.reserve1()
        self.assertEqual(d.id, job_id)  # a kicked job starts its attempts afresh
        touched = self.c.touch(d.id, d.lease, 120_000)
        self.assertGreater(touched.deadline_ms, d.deadline_ms)
        with self.assertRaises(spool.WrongState):
            self.c.delete(job_id)  # reserved
        self.c.bury(d.id, d.lease, "poison")
        dead = self.c.peek_next(self.q, JobState.DEAD)
        self.assertEqual((dead.id, dead.reason, dead.body), (job_id, "poison", b"x"))
        self.assertEqual(self.c.wait(job_id, 1).state, JobState.DEAD)
        self.assertEqual(self.c.kick(self.q, 10).count, 1)
        self.assertEqual(self.c.peek_next(self.q).id, job_id)
        with self.assertRaises(spool.WrongState):
            self.c.kick_job(job_id)  # ready, not dead
        self.c.delete(job_id)
        with self.assertRaises(spool.NotFound):
            self.c.status(job_id)

    def test_stale_lease_errors(self) -> None:
        self.c.put(self.q, b"x")
        d = self.reserve1()
        for call in (lambda: self.c.ack(d.id, d.lease + 1), lambda: self.c.touch(d.id, 1),
                     lambda: self.c.release(d.id, 1), lambda: self.c.bury(d.id, 1)):
            with self.assertRaises(spool.LeaseExpired) as cm:
                call()
            self.assertFalse(cm.exception.retryable)
        with self.assertRaises(spool.NotFound):
            self.c.ack(2**63, 1)
        self.c.ack(d.id, d.lease)  # the connection survived every error above

    def test_wait_returns_current_state_at_timeout(self) -> None:
        job_id = self.c.put(self.q, b"x").id
        self.assertEqual(self.c.wait(job_id, 0.1).state, JobState.READY)
        with self.assertRaises(spool.NotFound):
            self.c.wait(2**62, 0.1)
        with self.assertRaises(spool.NotFound):
            self.c.peek_next(self.q, JobState.DEAD)


class Managing(ClientCase):
    def test_pause_resume_purge_config_stats(self) -> None:
        self.c.pause(self.q)
        self.c.put(self.q, b"x")
        self.assertEqual(self.c.reserve(self.q, 1, timeout=0), [])
        self.assertIn(spool.QueueInfo(self.q, True), self.c.queues())
        self.c.resume(self.q)
        self.assertEqual(len(self.c.reserve(self.q, 1, timeout=5)), 1)
        self.c.queue_config(self.q, ttr_ms=4000, max_attempts=2)
        qs = self.c.stats(self.q).queues[0]
        self.assertEqual((qs.ttr_ms, qs.max_attempts, qs.reserved, qs.paused), (4000, 2, 1, False))
        self.c.put_batch([(self.q, b"a"), (self.q, b"b")])
        self.assertEqual(self.c.purge(self.q).count, 2)
        self.assertGreaterEqual(self.c.stats().total_put, 3)
        with self.assertRaises(spool.NotFound):
            self.c.stats(unique_queue())
        with self.assertRaises(spool.InvalidArgument):
            self.c.queue_config(self.q, ttr_ms=0)


class QueuesAndKeys(ClientCase):
    """Issue 10 through protocol version 2: expired jobs, DELETE_QUEUE, keys per queue, and
    STATS/QUEUES paged (a small frame maximum holds a few queues per page)."""

    def test_expired_job_is_reported(self) -> None:
        job_id = self.c.put(self.q, b"x", ttl_ms=100).id
        job = self.c.wait(job_id, timeout=5)
        self.assertEqual(job.state, JobState.EXPIRED)
        self.assertTrue(job.expired)
        self.assertEqual(self.c.stats(self.q).queues[0].expired, 1)
        v1 = spool.Client(server.address, protocol_max=1)
        try:
            self.assertEqual(v1.server.version, 1)
            old = v1.status(job_id)
            self.assertEqual((old.state, old.reason), (JobState.DEAD, "expired"))
            self.assertIn(self.q, [q.name for q in v1.queues()])
            self.assertEqual(v1.stats().keys, 0)  # a v1 reply has no such field
        finally:
            v1.close()

    def test_delete_queue_and_scoped_keys(self) -> None:
        other = unique_queue()
        a = self.c.put(self.q, b"a", key="k")
        b = self.c.put(other, b"b", key="k")
        self.assertNotEqual(a.id, b.id)
        self.assertFalse(b.duplicate)
        self.assertTrue(self.c.put(self.q, b"a", key="k").duplicate)
        with self.assertRaises(spool.WrongState):
            self.c.delete_queue(self.q)
        self.assertEqual(self.c.delete_queue(self.q, force=True).count, 1)
        self.assertNotIn(self.q, [q.name for q in self.c.queues()])
        self.assertFalse(self.c.put(self.q, b"a", key="k").duplicate)
        with self.assertRaises(spool.NotFound):
            self.c.delete_queue(unique_queue())

    def test_stats_and_queues_fetch_every_page(self) -> None:
        small = Spoold("--max-frame", "4k", "--max-job-size", "1k").start()
        try:
            c = spool.Client(small.address)
            names = sorted(f"{'p' * 150}-{i:02d}" for i in range(40))
            for name in names:
                c.put(name, b"x")
            self.assertEqual([q.name for q in c.queues()], names)
            stats = c.stats()
            self.assertEqual([q.name for q in stats.queues], names)
            self.assertEqual((stats.queue_count, stats.total_put), (40, 40))
            c.close()
            v1 = spool.Client(small.address, protocol_max=1)
            self.assertLess(len(v1.queues()), 40)  # version 1: one frame's worth
            v1.close()
        finally:
            small.close()


class ErrorPaths(ClientCase):
    def test_local_argument_errors(self) -> None:
        for call in (lambda: self.c.kick(self.q, 0), lambda: self.c.pause("bad name"),
                     lambda: self.c.resume(""), lambda: self.c.purge("x" * 201),
                     lambda: self.c.reserve([], 1), lambda: self.c.reserve(self.q, 1025),
                     lambda: self.c.reserve([self.q] * 17), lambda: self.c.wait(1, -1),
                     lambda: self.c.peek_next(self.q, JobState.DONE),
                     lambda: self.c.ack_batch([]), lambda: self.c.touch(1, 2, -5)):
            with self.assertRaises(spool.InvalidArgument):
                call()
        with self.assertRaises(spool.NotFound):
            self.c.peek(2**59)
        with self.assertRaises(spool.NotFound):
            self.c.kick_job(2**59)

    def test_server_side_request_errors(self) -> None:
        from spool.calls import Call
        from spool.codec import Op
        # Built by hand, past the client's own checks: the server's answer maps to its class
        bad_name = b"\x01\x00\x00\x00\x00\x00\x00\x00\x00\x01\x03a b"
        p = self.c.pipeline()
        p.add(Call(Op.RESERVE, bad_name, 0.0, False)).add(Call(0x7F00, b"", 0.0, False))
        bad_request, unknown_op = p.execute(raise_on_error=False)
        self.assertIsInstance(bad_request, spool.BadRequest)
        self.assertIsInstance(unknown_op, spool.UnknownOp)
        self.c.ping()  # both leave the connection usable


class Pipelining(ClientCase):
    def test_replies_out_of_order(self) -> None:
        # The reserve is answered at its 0.3 s timeout, the puts as soon as they are durable:
        # the replies come in another order than the requests, and are matched by id.
        other = unique_queue()
        p = self.c.pipeline()
        p.reserve(other, 1, timeout=0.3).put(self.q, b"a").put_batch([(self.q, b"b")])
        t0 = time.monotonic()
        empty, put, batch = p.execute()
        self.assertGreaterEqual(time.monotonic() - t0, 0.25)
        self.assertEqual(empty, [])
        self.assertEqual(self.c.peek(put.id).body, b"a")
        self.assertEqual(self.c.peek(batch[0].id).body, b"b")

    def test_errors_per_request(self) -> None:
        with self.assertRaises(spool.NotFound):
            with self.c.pipeline() as p:
                p.put(self.q, b"ok").status(2**61).put(self.q, b"ok2")
        self.assertEqual(self.c.peek(p.results[2].id).body, b"ok2")  # the others went through
        results = self.c.pipeline().put(self.q, b"x").status(2**61).execute(raise_on_error=False)
        self.assertIsInstance(results[1], spool.NotFound)

    def test_many_in_flight(self) -> None:
        p = self.c.pipeline()
        for i in range(200):
            p.put_batch([(self.q, f"{i}-{j}") for j in range(16)])
        results = p.execute()
        self.assertEqual(sum(len(r) for r in results), 3200)
        self.assertEqual(self.c.stats(self.q).queues[0].ready, 3200)


class Connecting(unittest.TestCase):
    def test_auth(self) -> None:
        srv = Spoold()
        with open(os.path.join(srv.dir, "secret"), "w") as f:
            f.write("s3cret\n")
        srv.extra = ["--auth-file", os.path.join(srv.dir, "secret")]
        srv.start()
        try:
            with spool.Client(srv.address, auth="s3cret") as c:
                c.ping()
            for auth in (None, "wrong"):
                with self.assertRaises(spool.AuthFailed):
                    spool.Client(srv.address, auth=auth)
        finally:
            srv.close()

    def test_queue_full_and_busy(self) -> None:
        srv = Spoold("--max-queue-jobs", "1", "--max-connections", "1").start()
        try:
            with spool.Client(srv.address) as c:
                c.put("q", b"1")
                with self.assertRaises(spool.QueueFull) as cm:
                    c.put("q", b"2")
                self.assertTrue(cm.exception.retryable)
                with self.assertRaises(spool.Busy) as busy:  # BUSY at accept (request id 0)
                    spool.Client(srv.address, retries=1, backoff=0.01)
                self.assertTrue(busy.exception.retryable)
                c.ping()
        finally:
            srv.close()

    def test_durability_follows_the_server_sync_mode(self) -> None:
        srv = Spoold("--sync", "none").start()
        try:
            with spool.Client(srv.address) as c:
                self.assertEqual(c.put("q", b"x").durability, Durability.WRITTEN)
                [d] = c.reserve("q", 1, timeout=5)
                self.assertEqual(c.touch(d.id, d.lease).durability, Durability.NONE)
                self.assertEqual(c.last_durability, Durability.NONE)
                self.assertEqual(c.ack(d.id, d.lease), Durability.WRITTEN)
        finally:
            srv.close()

    def test_connect_refused_and_bad_address(self) -> None:
        srv = Spoold().start()
        address = srv.address
        srv.close()
        with self.assertRaises(spool.ConnectFailed):
            spool.Client(address, retries=1, backoff=0.01)
        with self.assertRaises(spool.InvalidArgument):
            spool.Client("no-port")

    def test_reconnect_after_restart(self) -> None:
        srv = Spoold().start()
        try:
            c = spool.Client(srv.address, backoff=0.05, retries=8)
            job_id = c.put("q", b"kept").id
            srv.restart()
            # The dead connection is noticed before sending: even a put goes to a new one.
            self.assertEqual(c.status(job_id).state, JobState.READY)
            srv.restart()
            c.put("q", b"again")
            self.assertEqual(c.stats("q").queues[0].ready, 2)
            c.close()
            with self.assertRaises(spool.ConnectionClosed):
                c.ping()
        finally:
            srv.close()


if __name__ == "__main__":
    unittest.main()
