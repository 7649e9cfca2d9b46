#!/usr/bin/env python3
"""spoold's HTTP listener against a real spoold: /metrics counts what a workload did (and
passes `promtool check metrics` when promtool is installed), the JSON API, the POST actions
and their effect on the server's state, the (other) label past --metrics-max-queues, and the
bearer token. Environment: SPOOLD, SPOOL_PYTHON_CLIENT (clients/python)."""
import os
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

from spoold_http import Spoold, metric, parse_metrics

import spool


class WorkloadMetrics(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.s = Spoold()
        cls.c = spool.Client(cls.s.addr)

    @classmethod
    def tearDownClass(cls):
        cls.c.close()
        rc = cls.s.stop()
        cls.s.cleanup()
        assert rc == 0, rc

    def test_metrics_count_the_workload(self):
        c = self.c
        ids = [c.put("emails", f"mail {i}").id for i in range(10)]
        got = c.reserve("emails", count=5)
        self.assertEqual(len(got), 5)
        for d in got[:3]:
            c.ack(d.id, d.lease)
        c.release(got[3].id, got[3].lease)
        c.bury(got[4].id, got[4].lease, "broken input")
        with self.assertRaises(spool.errors.SpoolError):
            c.ack(got[0].id, got[0].lease)  # already acked: an error reply
        # A lease that ends with its worker's connection.
        c.put("slow", "x")
        worker = spool.Client(self.s.addr)
        self.assertEqual(len(worker.reserve("slow")), 1)
        worker.close()
        # A job out of attempts.
        c.put("flaky", "y", max_attempts=1)
        d = c.reserve_one("flaky")
        c.release(d.id, d.lease, reason="timeout talking to the bank")
        # A ttl that runs out.
        c.put("short", "z", ttl_ms=100)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            m = parse_metrics(self.s.metrics())
            expired = m.get(("spool_queue_expired_total", frozenset({("queue", "short")})))
            expiries = m.get(("spool_queue_lease_expiries_total", frozenset({("queue", "slow")})))
            if expired == 1 and expiries == 1:
                break
            time.sleep(0.05)
        q = lambda name, **kw: metric(m, name, **kw)
        self.assertEqual(q("spool_queue_puts_total", queue="emails"), 10)
        self.assertEqual(q("spool_queue_deliveries_total", queue="emails"), 5)
        self.assertEqual(q("spool_queue_acks_total", queue="emails"), 3)
        self.assertEqual(q("spool_queue_releases_total", queue="emails"), 1)
        self.assertEqual(q("spool_queue_buries_total", queue="emails"), 1)
        self.assertEqual(q("spool_queue_dead_lettered_total", queue="emails"), 1)
        self.assertEqual(q("spool_queue_jobs", queue="emails", state="ready"), 6)
        self.assertEqual(q("spool_queue_jobs", queue="emails", state="reserved"), 0)
        self.assertEqual(q("spool_queue_jobs", queue="emails", state="dead"), 1)
        self.assertEqual(q("spool_queue_wait_seconds_count", queue="emails"), 5)
        self.assertEqual(q("spool_queue_processing_seconds_count", queue="emails"), 3)
        self.assertEqual(q("spool_queue_processing_seconds_bucket", queue="emails", le="+Inf"), 3)
        self.assertGreater(q("spool_queue_oldest_ready_age_seconds", queue="emails"), 0)
        self.assertEqual(q("spool_queue_lease_expiries_total", queue="slow"), 1)
        self.assertEqual(q("spool_queue_jobs", queue="slow", state="ready"), 1)
        self.assertEqual(q("spool_queue_dead_lettered_total", queue="flaky"), 1)
        self.assertEqual(q("spool_queue_expired_total", queue="short"), 1)
        self.assertEqual(q("spool_jobs_expired_total"), 1)
        self.assertGreaterEqual(q("spool_jobs_dead_lettered_total"), 2)  # other tests add
        self.assertGreaterEqual(q("spool_requests_total", opcode="PUT"), 13)
        self.assertEqual(q("spool_requests_total", opcode="ACK"), 4)
        self.assertEqual(q("spool_request_errors_total", code="LEASE_EXPIRED"), 1)
        self.assertGreater(q("spool_commit_duration_seconds_count"), 0)
        self.assertEqual(q("spool_commit_duration_seconds_count"),
                         q("spool_commit_records_count"))
        self.assertGreaterEqual(q("spool_commit_records_sum"), 13)
        self.assertGreater(q("spool_received_bytes_total"), 0)
        # some input was held unparsed, and never more than was received
        self.assertGreater(q("spool_connection_input_max_bytes"), 0)
        self.assertLessEqual(q("spool_connection_input_max_bytes"),
                             q("spool_received_bytes_total"))
        # between requests nobody holds unparsed input or unsent replies
        self.assertEqual(q("spool_connections_input_bytes"), 0)
        self.assertEqual(q("spool_connections_output_bytes"), 0)
        self.assertGreater(q("spool_resident_memory_bytes"), 1 << 20)
        self.assertGreater(q("spool_disk_free_bytes"), 0)
        self.assertEqual(q("spool_disk_headroom_low"), 0)
        self.assertEqual(q("spool_log_segments"), 1)
        self.assertGreaterEqual(q("spool_connections_accepted_total"), 2)
        self.__class__.ids = ids

    def test_slow_reader_shows_in_connection_gauges(self):
        """A connection that sends PINGs and never reads: its replies back up in spoold (it
        stops reading past 4 MiB of them) and show in spool_connections_output_bytes; once it
        closes, both gauges are back to 0."""
        from spool import codec
        host, port = self.s.addr.rsplit(":", 1)
        sock = socket.create_connection((host, int(port)), timeout=5)
        try:
            sock.sendall(codec.frame(codec.Op.HELLO, 1, codec.encode_hello("slow-reader", None)))
            self.assertGreater(len(sock.recv(4096)), 0)  # the HELLO reply
            m = parse_metrics(self.s.metrics())
            before = (metric(m, "spool_request_errors_total", code="TOO_LARGE"),
                      metric(m, "spool_connections"))
            pings = memoryview(b"".join(codec.frame(codec.Op.PING, i + 2) for i in range(4096)))
            sock.setblocking(False)
            out = 0
            unsent = pings  # a send may take part of the batch: the rest goes first, whole
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and out < 1 << 20:
                try:
                    unsent = unsent[sock.send(unsent):] or pings
                    continue
                except BlockingIOError:
                    pass
                out = metric(parse_metrics(self.s.metrics()), "spool_connections_output_bytes")
                time.sleep(0.05)
            self.assertGreaterEqual(out, 1 << 20)  # replies held for the reader, MiBs of them
            m = parse_metrics(self.s.metrics())
            # every frame arrived whole: no framing error closed the connection
            self.assertEqual((metric(m, "spool_request_errors_total", code="TOO_LARGE"),
                              metric(m, "spool_connections")), before)
            self.assertLessEqual(metric(m, "spool_connections_input_bytes"),
                                 metric(m, "spool_connection_input_max_bytes"))
        finally:
            sock.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            m = parse_metrics(self.s.metrics())
            held = (metric(m, "spool_connections_input_bytes"),
                    metric(m, "spool_connections_output_bytes"))
            if held == (0, 0):
                break
            time.sleep(0.05)
        self.assertEqual(held, (0, 0))

    def test_closing_connection_drops_unread_replies(self):
        """A connection closed for a framing error, whose peer takes its last replies slowly:
        spoold drops the rest 5 s (CONN_UNREAD_MS) after it began closing and counts it,
        instead of holding them and the socket for as long as the peer keeps reading a
        little."""
        from spool import codec
        timed_out = lambda m: metric(m, "spool_connections_timed_out_total",
                                     reason="closing_unread")
        m = parse_metrics(self.s.metrics())
        before = (timed_out(m), metric(m, "spool_connections"))
        host, port = self.s.addr.rsplit(":", 1)
        sock = socket.create_connection((host, int(port)), timeout=5)
        try:
            sock.sendall(codec.frame(codec.Op.HELLO, 1, codec.encode_hello("no-reader", None)))
            self.assertGreater(len(sock.recv(4096)), 0)  # the HELLO reply; none read after
            pings = b"".join(codec.frame(codec.Op.PING, i + 2) for i in range(16384))
            out = 0
            for _ in range(64):  # 256 KiB of PINGs at a time, until the sockets are full and
                sock.sendall(pings)  # spoold holds 3 MiB of replies (it reads on to 4 MiB)
                time.sleep(0.05)
                out = metric(parse_metrics(self.s.metrics()), "spool_connections_output_bytes")
                if out >= 3 << 20:
                    break
            self.assertGreaterEqual(out, 3 << 20)
            sock.sendall(b"\0" * 16)  # a frame size of 0: a framing error, and a close
            closed_at = time.monotonic()
            while time.monotonic() < closed_at + 8:  # 5 s, a sweep, and slack
                m = parse_metrics(self.s.metrics())
                if timed_out(m) > before[0]:
                    break
                # 320 KiB/s: spoold's send moves on every few seconds as the sockets' MiBs
                # drain (a deadline counted from its last progress would never come), but
                # all of it (3 MiB and the sockets' 3-4) takes 20 s
                sock.recv(65536)
                time.sleep(0.2)
            self.assertEqual(timed_out(m), before[0] + 1)
            self.assertGreater(time.monotonic() - closed_at, 4)  # it had its 5 s
            self.assertEqual(metric(m, "spool_connections"), before[1])  # it left the count
            self.assertEqual(metric(m, "spool_connections_output_bytes"), 0)
            self.assertIn('msg="closing connection\'s peer did not take its last replies: '
                          'dropped"',
                          self.s.log())
        finally:
            sock.close()

    def test_idle_connection_gives_its_buffers_back(self):
        """A 1000 KiB put and a reserve of two such jobs grow a connection's buffers to MiBs
        (doubling); once it is idle the sweep frees its empty buffers above 64 KiB, so
        spool_connections_buffer_bytes comes back under 3 x 64 KiB a connection, and the
        connection still carries large jobs after that."""
        body = os.urandom(1000 * 1024)
        keep = 3 * 64 * 1024  # input, replies being appended, replies in flight

        def settled():
            deadline = time.monotonic() + 10
            while True:
                m = parse_metrics(self.s.metrics())
                held = metric(m, "spool_connections_buffer_bytes")
                conns = metric(m, "spool_connections")
                if held <= keep * conns or time.monotonic() > deadline:
                    return held, conns
                time.sleep(0.05)

        with spool.Client(self.s.addr) as c:
            for _ in range(2):
                c.put("trim", body)
                c.put("trim", body)
                got = []
                while len(got) < 2:
                    got += c.reserve("trim", count=2 - len(got), timeout=1)
                self.assertEqual([d.body for d in got], [body, body])
                c.ack_batch(got)  # ACK_BATCH: test_metrics_count_the_workload counts ACKs
                held, conns = settled()
                self.assertGreaterEqual(conns, 1)
                self.assertLessEqual(held, keep * conns)

    def test_promtool_accepts_the_page(self):
        self.c.put("lint", "x")
        promtool = shutil.which("promtool")
        if promtool is None:
            self.skipTest("promtool not installed (Debian package prometheus)")
        p = subprocess.run([promtool, "check", "metrics"], input=self.s.metrics().encode(),
                           capture_output=True)
        self.assertEqual(p.returncode, 0, p.stdout.decode() + p.stderr.decode())

    def test_json_and_actions(self):
        c, s = self.c, self.s
        job = c.put("orders", "o1", max_attempts=5).id
        d = c.reserve_one("orders")
        c.bury(d.id, d.lease, "card declined")
        time.sleep(0.06)  # a snapshot is served again for up to 50 ms (observe.h)
        queue = s.json("GET", "/api/v1/queues/orders")
        self.assertEqual((queue["dead"], queue["puts"], queue["buries"]), (1, 1, 1))
        dead = s.json("GET", "/api/v1/dead")
        self.assertIn({"id": job, "queue": "orders", "reason": "card declined"},
                      [{k: e[k] for k in ("id", "queue", "reason")} for e in dead])
        got = s.json("GET", f"/api/v1/jobs/{job}")
        self.assertEqual((got["state"], got["reason"], got["attempts"]), ("dead", "card declined", 1))
        server = s.json("GET", "/api/v1/server")
        self.assertGreaterEqual(server["jobs"]["dead"], 1)
        self.assertIn("p99", server["commit_seconds"])
        # kick one job: ready again, counted
        self.assertEqual(s.json("POST", f"/api/v1/jobs/{job}/kick"), {"id": job, "kicked": 1})
        self.assertEqual(s.json("GET", f"/api/v1/jobs/{job}")["state"], "ready")
        s.json("POST", f"/api/v1/jobs/{job}/kick", expect=409)  # not dead any more
        m = parse_metrics(s.metrics())  # a command's answer makes the next snapshot fresh
        self.assertEqual(metric(m, "spool_queue_kicked_total", queue="orders"), 1)
        # pause: nothing is handed out; resume: it is
        self.assertEqual(s.json("POST", "/api/v1/queues/orders/pause")["paused"], True)
        self.assertTrue(s.json("GET", "/api/v1/queues/orders")["paused"])
        self.assertIsNone(c.reserve_one("orders"))
        self.assertEqual(s.json("POST", "/api/v1/queues/orders/resume")["paused"], False)
        d = c.reserve_one("orders")
        self.assertEqual(d.id, job)
        s.json("POST", f"/api/v1/jobs/{job}/delete", expect=409)  # reserved: wrong state
        c.bury(d.id, d.lease, "again")
        # kick a whole queue's dead jobs
        self.assertEqual(s.json("POST", "/api/v1/queues/orders/kick?count=10"), {"kicked": 1})
        self.assertEqual(s.json("POST", "/api/v1/queues/orders/kick"), {"kicked": 0})
        # delete, then it is gone (another job keeps the queue from being forgotten when idle)
        c.put("orders", "o2")
        self.assertEqual(s.json("DELETE", f"/api/v1/jobs/{job}"), {"id": job, "deleted": True})
        s.json("GET", f"/api/v1/jobs/{job}", expect=404)
        time.sleep(0.06)
        self.assertEqual(s.json("GET", "/api/v1/queues/orders")["deleted"], 1)
        # the same through the binary protocol: gone
        with self.assertRaises(spool.errors.SpoolError):
            c.peek(job)

    def test_reasons_of_any_bytes_are_valid_json(self):
        c, s = self.c, self.s
        job = c.put("weird", "w").id
        d = c.reserve_one("weird")
        reason = 'quote " backslash \\ newline \n tab \t café ✓ 😀 '.encode() + b"\xff\xc3"
        c.bury(d.id, d.lease, reason)
        got = s.json("GET", f"/api/v1/jobs/{job}")
        self.assertEqual(got["reason"],
                         'quote " backslash \\ newline \n tab \t café ✓ 😀 \ufffd\ufffd')
        time.sleep(0.06)
        dead = [e for e in s.json("GET", "/api/v1/dead") if e["id"] == job]
        self.assertEqual(dead[0]["reason"], got["reason"])

    def test_refusals(self):
        s = self.s
        s.json("GET", "/api/v1/queues/no-such-queue", expect=404)
        s.json("POST", "/api/v1/queues/no-such-queue/pause", expect=404)
        s.json("GET", "/api/v1/nothing", expect=404)
        s.json("GET", "/api/v1/jobs/abc", expect=404)
        s.json("POST", "/api/v1/jobs/123/explode", expect=404)
        s.json("GET", "/api/v1/jobs/123456789", expect=404)
        s.json("PUT", "/api/v1/server", expect=405)
        self.c.put("csrf", "x")
        time.sleep(0.06)
        status, _, _ = s.request("POST", "/api/v1/queues/csrf/pause",
                                 headers={"Origin": "http://evil.example"})
        self.assertEqual(status, 403)
        self.assertFalse(s.json("GET", "/api/v1/queues/csrf")["paused"])
        status, _, _ = s.request("POST", "/api/v1/queues/csrf/pause",
                                 headers={"Origin": f"http://{s.http_addr}"})
        self.assertEqual(status, 200)
        status, headers, body = s.request("GET", "/")
        self.assertEqual(status, 200)
        self.assertTrue(headers["content-type"].startswith("text/html"))
        self.assertIn(b"<canvas", body)


class BodyCacheMetrics(unittest.TestCase):
    def test_body_cache_and_reads_back_are_exported(self):
        """A body cache far smaller than the bodies put: /metrics shows it bounded and
        evicting, and a reserve that must read the bodies back from the log moves the fetch
        counters (the bodies come back whole)."""
        s = Spoold("--body-cache", "8192")
        try:
            with spool.Client(s.addr) as c:
                m = parse_metrics(s.metrics())
                self.assertEqual(metric(m, "spool_body_cache_limit_bytes"), 8192)
                self.assertEqual(metric(m, "spool_body_fetch_reads_total"), 0)
                # Nothing to compact on a fresh server (compaction's counters exist, at 0).
                self.assertEqual(metric(m, "spool_compaction_segments_total"), 0)
                self.assertEqual(metric(m, "spool_compaction_jobs_copied_total"), 0)
                self.assertEqual(metric(m, "spool_compaction_bytes_copied_total"), 0)
                bodies = [(b"%04d" % i) * 250 for i in range(40)]  # 40 KB in all
                for body in bodies:
                    c.put("big", body)
                # A snapshot may be served again for 50 ms, and 40 puts can take less: wait
                # for one that has counted them all.
                puts = ("spool_queue_puts_total", frozenset({("queue", "big")}))
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline:
                    m = parse_metrics(s.metrics())
                    if m.get(puts) == 40:
                        break
                    time.sleep(0.06)
                self.assertEqual(m.get(puts), 40)
                self.assertLessEqual(metric(m, "spool_body_cache_bytes"), 8192)
                self.assertGreater(metric(m, "spool_body_cache_evictions_total"), 0)
                self.assertLess(metric(m, "spool_body_cache_bodies"), 40)
                got = c.reserve("big", count=40)
                self.assertEqual(sorted(bytes(d.body) for d in got), sorted(bodies))
                deadline = time.monotonic() + 5  # a snapshot may be served again for 50 ms
                while time.monotonic() < deadline:
                    m = parse_metrics(s.metrics())
                    if metric(m, "spool_body_fetch_reads_total") > 0:
                        break
                    time.sleep(0.06)
                self.assertGreater(metric(m, "spool_body_fetch_reads_total"), 0)
                self.assertGreater(metric(m, "spool_body_fetch_waits_total"), 0)
                # Read-ahead takes at most half the cache: with 8 KiB, no batch fits.
                self.assertEqual(metric(m, "spool_body_prefetch_reads_total"), 0)
                self.assertGreaterEqual(metric(m, "spool_body_fetch_bodies_total"),
                                        40 - 8192 // 1000)
                self.assertEqual(metric(m, "spool_body_fetch_errors_total"), 0)
                promtool = shutil.which("promtool")
                if promtool:
                    p = subprocess.run([promtool, "check", "metrics"],
                                       input=s.metrics().encode(), capture_output=True)
                    self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        finally:
            self.assertEqual(s.stop(), 0)
            s.cleanup()


class BodiesReadBack(unittest.TestCase):
    BODY = bytes(range(256)) * 2048  # 512 KiB

    @staticmethod
    def connect(s, name):
        """A raw connection past HELLO, and a frame reader for replies of up to 16 MiB."""
        from spool import codec
        host, port = s.addr.rsplit(":", 1)
        sock = socket.create_connection((host, int(port)), timeout=10)
        sock.sendall(codec.frame(codec.Op.HELLO, 1, codec.encode_hello(name, None)))
        reader = codec.FrameReader(codec.FRAME_SIZE_HANDSHAKE_MAX)
        while reader.next_frame() is None:
            reader.feed(sock.recv(4096))
        reader.frame_size_max = 1 << 24
        return sock, reader

    def held_once_settled(self, s):
        """spool_connections_output_bytes once it is above 0 and unchanged for 0.5 s."""
        held, settled = -1.0, 0
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and settled < 5:
            time.sleep(0.1)
            now = metric(parse_metrics(s.metrics()), "spool_connections_output_bytes")
            settled = settled + 1 if now == held and now > 0 else 0
            held = now
        self.assertEqual(settled, 5)
        return held

    @staticmethod
    def frames(sock, reader, count):
        """The next count reply frames, read as they come."""
        while count > 0:
            f = reader.next_frame()
            if f is None:
                reader.feed(sock.recv(1 << 20))
                continue
            count -= 1
            yield f

    def test_pipelined_peeks_of_bodies_read_back_stay_bounded(self):
        """A client that pipelines 48 peeks of 512 KiB bodies the cache does not hold and
        reads no reply: the bodies being read back count toward its 4 MiB of unsent replies,
        so spoold stops taking its requests there, instead of holding all 24 MiB once the
        reads land. Read later, every reply is there, in order, whole."""
        from spool import codec
        s = Spoold("--body-cache", "1m")
        try:
            with spool.Client(s.addr) as c:
                ids = [c.put("peeked", self.BODY).id for _ in range(48)]
            sock, reader = self.connect(s, "peeker")
            try:
                sock.sendall(b"".join(codec.frame(codec.Op.PEEK, 100 + i, codec.encode_job_ref(j))
                                      for i, j in enumerate(ids)))
                # 4 MiB and one body, not 24 MiB less what the sockets hold
                self.assertLessEqual(self.held_once_settled(s), (4 << 20) + len(self.BODY) + 4096)
                got = []
                for op, request_id, payload in self.frames(sock, reader, len(ids)):
                    self.assertEqual(op, codec.Op.PEEK | 0x8000)
                    job = codec.decode_job_info(codec.Reader(payload, op))
                    got.append((request_id, job.id, bytes(job.body) == self.BODY))
                self.assertEqual(got, [(100 + i, j, True) for i, j in enumerate(ids)])
            finally:
                sock.close()
        finally:
            self.assertEqual(s.stop(), 0)
            s.cleanup()

    def test_blocked_reserves_woken_onto_bodies_read_back_stay_bounded(self):
        """48 reserves wait on a paused queue, on a connection that reads no reply; 48 jobs of
        512 KiB are put, and the queue resumes: all ready at once, their bodies out of the
        cache. The reads started for the woken reserves count toward its 4 MiB, so the reserves
        past it are paused (served as it drains) instead of all reading at once. Read later,
        each reserve has its job, whole."""
        from spool import codec
        s = Spoold("--body-cache", "1m")
        try:
            sock, reader = self.connect(s, "waiter")
            try:
                reserve = codec.encode_reserve(["later"], 1, 60000, 0)
                sock.sendall(b"".join(codec.frame(codec.Op.RESERVE, 100 + i, reserve)
                                      for i in range(48)))
                with spool.Client(s.addr) as c:  # all ready at once: the queue resumes
                    c.pause("later")
                    ids = {c.put("later", self.BODY).id for _ in range(48)}
                    c.resume("later")
                self.assertLessEqual(self.held_once_settled(s), (4 << 20) + len(self.BODY) + 4096)
                got = set()
                for op, _, payload in self.frames(sock, reader, len(ids)):
                    self.assertEqual(op, codec.Op.RESERVE | 0x8000)
                    (d,) = codec.decode_reserve_reply(codec.Reader(payload, op))
                    self.assertEqual(bytes(d.body), self.BODY)
                    got.add(d.id)
                self.assertEqual(got, ids)
            finally:
                sock.close()
        finally:
            self.assertEqual(s.stop(), 0)
            s.cleanup()


class SlowHttpClients(unittest.TestCase):
    def test_stuck_http_clients_do_not_slow_the_queue(self):
        """HTTP connections that never finish their request take HTTP slots, not the loop:
        puts and reserves go on at full speed, and HTTP serves again once they are gone."""
        s = Spoold()
        socks = []
        try:
            for _ in range(80):  # beyond the listener's 64 connections
                try:
                    sock = socket.create_connection((s.http_host, s.http_port), timeout=5)
                    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never ends
                    socks.append(sock)
                except OSError:
                    break
            with spool.Client(s.addr) as c:
                started = time.monotonic()
                for i in range(200):
                    c.put("steady", f"{i}")
                got = c.reserve("steady", count=200)
                self.assertEqual(len(got), 200)
                self.assertLess(time.monotonic() - started, 20)
            for sock in socks:
                sock.close()
            socks = []
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    m = parse_metrics(s.metrics())
                    break
                except (OSError, AssertionError):
                    time.sleep(0.1)
            self.assertEqual(metric(m, "spool_queue_deliveries_total", queue="steady"), 200)
        finally:
            for sock in socks:
                sock.close()
            self.assertEqual(s.stop(), 0)
            s.cleanup()


class Cardinality(unittest.TestCase):
    def test_queues_past_the_limit_are_summed(self):
        s = Spoold("--metrics-max-queues", "2")
        try:
            with spool.Client(s.addr) as c:
                for i, name in enumerate(["a1", "a2", "b1", "b2", "b3"]):
                    for _ in range(i + 1):
                        c.put(name, "x")
            time.sleep(0.06)
            m = parse_metrics(s.metrics())
            names = {dict(k[1]).get("queue") for k in m if k[0] == "spool_queue_puts_total"}
            self.assertEqual(names, {"a1", "a2", "(other)"})
            self.assertEqual(metric(m, "spool_queue_puts_total", queue="(other)"), 3 + 4 + 5)
            self.assertEqual(metric(m, "spool_queue_jobs", queue="(other)", state="ready"), 12)
            self.assertEqual(metric(m, "spool_metrics_queues_folded"), 3)
            self.assertEqual(len(s.json("GET", "/api/v1/queues")), 5)  # JSON has them all
            promtool = shutil.which("promtool")
            if promtool:
                p = subprocess.run([promtool, "check", "metrics"], input=s.metrics().encode(),
                                   capture_output=True)
                self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        finally:
            self.assertEqual(s.stop(), 0)
            s.cleanup()


class ManyQueues(unittest.TestCase):
    def test_snapshot_walk_over_several_turns_sees_every_queue(self):
        s = Spoold()
        try:
            with spool.Client(s.addr) as c:
                c.put_many([(f"many-{i:04d}", b"x") for i in range(3000)])
                time.sleep(0.06)
                queues = s.json("GET", "/api/v1/queues")
                self.assertEqual(sorted(q["name"] for q in queues),
                                 [f"many-{i:04d}" for i in range(3000)])
                m = parse_metrics(s.metrics())
                self.assertGreaterEqual(metric(m, "spool_metrics_snapshot_build_turns"), 3)
                self.assertEqual(metric(m, "spool_queue_jobs", queue="(other)", state="ready"),
                                 3000 - 200)
                self.assertEqual(metric(m, "spool_metrics_queues_folded"), 2800)
                # the loop keeps serving while a walk is in progress
                for i in range(50):
                    c.put("busy", "y")
                    if i % 10 == 0:
                        s.metrics()
                # Unchanged queues are kept from the arrays of an earlier snapshot: once
                # both recycled snapshots have seen every queue, a scrape copies only the
                # queues that changed (busy, and the two touched below).
                for _ in range(3):
                    time.sleep(0.06)
                    s.metrics()
                c.put("many-0007", b"z")
                c.reserve("many-0100")
                time.sleep(0.06)
                queues = {q["name"]: q for q in s.json("GET", "/api/v1/queues")}
                self.assertEqual(queues["many-0007"]["ready"], 2)
                self.assertEqual(queues["many-0100"]["reserved"], 1)
                self.assertEqual(queues["many-0101"]["ready"], 1)
                self.assertEqual(len(queues), 3001)
                time.sleep(0.06)
                m = parse_metrics(s.metrics())
                self.assertLessEqual(metric(m, "spool_metrics_snapshot_queues_copied"), 3)
        finally:
            self.assertEqual(s.stop(), 0)
            s.cleanup()


class Auth(unittest.TestCase):
    def test_bearer_token_required(self):
        d = tempfile.mkdtemp(prefix="spoold-http-auth-")
        secret = os.path.join(d, "secret")
        with open(secret, "w") as f:
            f.write("s3cret-token\n")
        s = Spoold("--auth-file", secret)
        try:
            for path in ("/metrics", "/api/v1/server", "/api/v1/queues", "/api/v1/jobs/1"):
                status, headers, _ = s.request("GET", path)
                self.assertEqual(status, 401, path)
                self.assertIn("Bearer", headers.get("www-authenticate", ""))
                self.assertEqual(s.request("GET", path, token="wrong")[0], 401, path)
                self.assertEqual(s.request("GET", path, token="s3cret-token-longer")[0], 401)
                self.assertEqual(s.request("GET", path, token="s3cret-toke")[0], 401)
            self.assertEqual(s.request("POST", "/api/v1/queues/q/pause")[0], 401)
            self.assertEqual(s.request("GET", "/metrics", token="s3cret-token")[0], 200)
            self.assertEqual(s.json("GET", "/api/v1/server", token="s3cret-token")["queues"], 0)
            self.assertEqual(s.request("GET", "/")[0], 200)  # the page itself holds no data
        finally:
            self.assertEqual(s.stop(), 0)
            s.cleanup()
            shutil.rmtree(d, ignore_errors=True)


class HostCheck(unittest.TestCase):
    """DNS rebinding: a page on evil.example (resolving to 127.0.0.1 once loaded) is
    same-origin with the listener in the browser, but its requests say Host: evil.example."""

    def status(self, s, method, path, host):
        return s.request(method, path, headers={"Host": host})[0]

    def test_foreign_host_refused_loopback_accepted(self):
        s = Spoold()
        try:
            port = s.http_port
            for path in ("/metrics", "/api/v1/server", "/api/v1/queues", "/api/v1/overview",
                         "/"):
                self.assertEqual(self.status(s, "GET", path, f"evil.example:{port}"), 421, path)
                self.assertEqual(self.status(s, "GET", path, "evil.example"), 421, path)
            status, headers, body = s.request("GET", "/metrics",
                                              headers={"Host": "localhost.evil.example"})
            self.assertEqual(status, 421)
            self.assertIn(b"--http-allow-host", body)
            self.assertEqual(self.status(s, "POST", "/api/v1/queues/q/pause", "evil.example"),
                             421)
            for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LocalHost", "127.9.8.7",
                         f"[::1]:{port}", "localhost."):
                self.assertEqual(self.status(s, "GET", "/metrics", host), 200, host)
            for host in ("10.1.2.3", "[::2]", "spool.internal", "[::1", "", "127.0.0.1.evil"):
                self.assertEqual(self.status(s, "GET", "/metrics", host), 421, host)
        finally:
            self.assertEqual(s.stop(), 0)
            s.cleanup()

    def test_allowed_names(self):
        s = Spoold("--http-allow-host", "spool.internal,Ops.Example", "--http-allow-host",
                   "[fd00::7]")
        try:
            for host in ("spool.internal", "SPOOL.internal:7712", "ops.example:80",
                         "[fd00::7]:7712", "localhost"):
                self.assertEqual(self.status(s, "GET", "/api/v1/server", host), 200, host)
            self.assertEqual(self.status(s, "GET", "/metrics", "evil.example"), 421)
            self.assertEqual(self.status(s, "GET", "/metrics", "internal"), 421)
        finally:
            self.assertEqual(s.stop(), 0)
            s.cleanup()


class BeanstalkCounted(unittest.TestCase):
    """The beanstalkd listener's commands and error replies count in spool_requests_total and
    spool_request_errors_total, under beanstalk_* names."""

    def test_beanstalk_commands_counted(self):
        s = Spoold("--beanstalk", "127.0.0.1:0")
        try:
            deadline = time.monotonic() + 20
            while "beanstalk listening" not in s.log() and time.monotonic() < deadline:
                time.sleep(0.01)
            line = [l for l in s.log().splitlines() if "beanstalk listening" in l][0]
            port = int(line.rsplit(":", 1)[1].split()[0])
            sock = socket.create_connection(("127.0.0.1", port), timeout=20)
            f = sock.makefile("rb")

            def cmd(text):
                sock.sendall(text)
                return f.readline()

            self.assertTrue(cmd(b"put 0 0 60 5\r\nhello\r\n").startswith(b"INSERTED "))
            got = cmd(b"reserve\r\n")
            self.assertTrue(got.startswith(b"RESERVED "), got)
            self.assertEqual(f.readline(), b"hello\r\n")
            job = got.split()[1]
            self.assertEqual(cmd(b"delete " + job + b"\r\n"), b"DELETED\r\n")
            self.assertEqual(cmd(b"delete " + job + b"\r\n"), b"NOT_FOUND\r\n")
            self.assertEqual(cmd(b"frobnicate\r\n"), b"UNKNOWN_COMMAND\r\n")
            self.assertEqual(cmd(b"delete x\r\n"), b"BAD_FORMAT\r\n")
            sock.close()
            m = parse_metrics(s.metrics())
            q = lambda name, **kw: metric(m, name, **kw)
            self.assertEqual(q("spool_requests_total", opcode="beanstalk_put"), 1)
            self.assertEqual(q("spool_requests_total", opcode="beanstalk_reserve"), 1)
            self.assertEqual(q("spool_requests_total", opcode="beanstalk_delete"), 3)
            self.assertEqual(q("spool_requests_total", opcode="beanstalk_unknown"), 1)
            self.assertEqual(q("spool_requests_total", opcode="beanstalk_stats"), 0)
            self.assertEqual(q("spool_requests_total", opcode="PUT"), 0)
            self.assertEqual(q("spool_request_errors_total", code="beanstalk_NOT_FOUND"), 1)
            self.assertEqual(q("spool_request_errors_total", code="beanstalk_UNKNOWN_COMMAND"),
                             1)
            self.assertEqual(q("spool_request_errors_total", code="beanstalk_BAD_FORMAT"), 1)
            server = s.json("GET", "/api/v1/server")
            self.assertEqual(server["requests"]["beanstalk_delete"], 3)
            self.assertEqual(server["errors"]["beanstalk_NOT_FOUND"], 1)
            promtool = shutil.which("promtool")
            if promtool:
                p = subprocess.run([promtool, "check", "metrics"], input=s.metrics().encode(),
                                   capture_output=True, timeout=60)
                self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        finally:
            self.assertEqual(s.stop(), 0)
            s.cleanup()

    def test_no_beanstalk_series_without_the_listener(self):
        s = Spoold()
        try:
            series = [l for l in s.metrics().splitlines() if not l.startswith("#")]
            self.assertFalse([l for l in series if "beanstalk_" in l])
        finally:
            self.assertEqual(s.stop(), 0)
            s.cleanup()


class Options(unittest.TestCase):
    def run_spoold(self, *args):
        return subprocess.run([os.environ["SPOOLD"], *args], capture_output=True, timeout=30)

    def test_bad_http_option(self):
        p = self.run_spoold("--http", "nonsense")
        self.assertEqual(p.returncode, 2)
        self.assertIn(b"--http", p.stderr)
        p = self.run_spoold("--metrics-max-queues", "0")
        self.assertEqual(p.returncode, 2)
        for bad in ("", "a,,b", ",a", "a b", "a/b"):
            p = self.run_spoold("--http-allow-host", bad)
            self.assertEqual(p.returncode, 2, bad)
            self.assertIn(b"--http-allow-host", p.stderr)

    def test_explicit_address_taken_is_fatal(self):
        s = Spoold()
        d = tempfile.mkdtemp(prefix="spoold-http-taken-")
        try:
            p = self.run_spoold("--data", os.path.join(d, "data"), "--listen", "127.0.0.1:0",
                                "--http", s.http_addr)
            self.assertEqual(p.returncode, 1)
            self.assertIn(b"cannot serve HTTP", p.stderr)
        finally:
            s.stop()
            s.cleanup()
            shutil.rmtree(d, ignore_errors=True)

    def test_http_off(self):
        d = tempfile.mkdtemp(prefix="spoold-http-off-")
        ready, http_ready = os.path.join(d, "ready"), os.path.join(d, "http-ready")
        proc = subprocess.Popen([os.environ["SPOOLD"], "--data", os.path.join(d, "data"),
                                 "--listen", "127.0.0.1:0", "--ready-file", ready, "--http",
                                 "off", "--http-ready-file", http_ready],
                                stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 20
            while not os.path.exists(ready) and time.monotonic() < deadline:
                time.sleep(0.01)
            self.assertTrue(os.path.exists(ready))
            self.assertFalse(os.path.exists(http_ready))
        finally:
            proc.terminate()
            self.assertEqual(proc.wait(timeout=30), 0)
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
