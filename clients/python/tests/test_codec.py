"""The codec against the golden frames of protocol v1 and v2 (tests/compat/wire-v1, wire-v2,
written by the C codec and never regenerated): requests encode to exactly those bytes, replies
decode to the values tests/compat/test_wire_v1.c and test_wire_v2.c check, and malformed
payloads raise ProtocolError."""

from __future__ import annotations

import struct
import unittest
from pathlib import Path

from spool import codec
from spool.codec import Durability, JobSpec, JobState, Op
from spool.errors import LeaseExpired, ProtocolError

GOLDEN = Path(__file__).resolve().parents[3] / "tests" / "compat" / "wire-v1"
GOLDEN_V2 = GOLDEN.parent / "wire-v2"


def golden(name: str) -> bytes:
    return (GOLDEN / f"{name}.bin").read_bytes()


def golden_v2(name: str) -> bytes:
    return (GOLDEN_V2 / f"{name}.bin").read_bytes()


def split(frame: bytes) -> tuple[int, int, bytes]:
    size, op, _flags, rid = codec.HEADER.unpack_from(frame)
    assert size == len(frame)
    return op, rid, frame[16:]


class GoldenRequests(unittest.TestCase):
    def check(self, name: str, op: int, payload: bytes) -> None:
        self.assertEqual(codec.frame(op, 7, payload), golden(name), name)

    def test_hello(self) -> None:
        self.check("hello", Op.HELLO, codec.encode_hello("cli", None, version_max=1))

    def spec(self) -> JobSpec:
        # flags 3 = RUN_AT | MAX_ATTEMPTS: the 100 is a run-at time
        return JobSpec("mail", b"body", priority=5, run_at_ms=100, ttr_ms=1000, max_attempts=3,
                       ttl_ms=9, key="k")

    def test_put(self) -> None:
        self.check("put", Op.PUT, codec.encode_job_spec(self.spec()))

    def test_put_batch(self) -> None:
        self.check("put_batch", Op.PUT_BATCH, codec.encode_put_batch([self.spec(), self.spec()]))

    def test_reserve(self) -> None:
        self.check("reserve", Op.RESERVE, codec.encode_reserve(["a", "b.c"], 4, 10,
                                                                codec.RESERVE_DETACH))

    def test_release(self) -> None:
        self.check("release", Op.RELEASE, codec.encode_release(1, 2, 3, 4, "exit 1"))

    def test_ack_batch(self) -> None:
        self.check("ack_batch", Op.ACK_BATCH,
                   codec.encode_ack_batch([(1, 2, b"res"), (3, 4, b"")]))

    def test_bury(self) -> None:
        self.check("bury", Op.BURY, codec.encode_bury(1, 2, "why"))

    def test_queue_config(self) -> None:
        self.check("queue_config", Op.QUEUE_CONFIG, codec.encode_queue_config("q", 100, 2))


class BatchFastPath(unittest.TestCase):
    def test_batch_encodes_as_its_jobs_one_by_one(self) -> None:
        # encode_put_batch reuses the bytes before each key across jobs with the same options:
        # it must give the bytes of the plain per-job encoder, whatever the mix.
        jobs: list = [JobSpec("a", b"1"), ("a", b"1"), ("b", "text"),
                      JobSpec("b", b"22", priority=3, delay_ms=5), JobSpec("a", b"k", key="kk"),
                      JobSpec("c", b"", run_at_ms=9, max_attempts=0, ttl_ms=4, ttr_ms=7),
                      ("a", b""), JobSpec("b", b"x", priority=3, delay_ms=5)]
        one_by_one = b"".join(codec.encode_job_spec(j if isinstance(j, JobSpec) else JobSpec(*j))
                              for j in jobs)
        self.assertEqual(codec.encode_put_batch(jobs), struct.pack("<I", len(jobs)) + one_by_one)


class GoldenReplies(unittest.TestCase):
    def decode(self, name: str, op: int) -> object:
        reply_op, rid, payload = split(golden(name))
        self.assertEqual(rid, 7)
        return codec.decode_reply(op, reply_op, payload)

    def test_reserve_reply(self) -> None:
        ds = self.decode("reserve_reply", Op.RESERVE)
        assert isinstance(ds, list)
        self.assertEqual(len(ds), 2)
        self.assertEqual((ds[1].lease, ds[1].deadline_ms, ds[1].body), (7, 10, b"yy"))
        self.assertEqual((ds[0].id, ds[0].queue, ds[0].body), (1, "q", b"x"))

    def test_job_info(self) -> None:
        job = self.decode("job_info", Op.STATUS)
        assert isinstance(job, codec.Job)
        self.assertEqual(job.state, JobState.DONE)
        self.assertEqual((job.result, job.reason, job.body), (b"ok", "r", b"b"))
        self.assertTrue(job.done)

    def test_error(self) -> None:
        err = self.decode("error", Op.ACK)
        self.assertIsInstance(err, LeaseExpired)
        self.assertEqual(err.message, "stale")

    def test_stats_reply(self) -> None:
        stats = self.decode("stats_reply", Op.STATS)
        assert isinstance(stats, codec.Stats)
        self.assertEqual([q.name for q in stats.queues], ["mail"])


class GoldenVersion2(unittest.TestCase):
    """Version 2: paged STATS and QUEUES, DELETE_QUEUE, the EXPIRED state."""

    def reply(self, name: str, op: int, version: int = 2) -> object:
        reply_op, _, payload = split(golden_v2(name))
        return codec.decode_reply(op, reply_op, payload, version)

    def test_requests(self) -> None:
        self.assertEqual(codec.frame(Op.STATS, 11, codec.encode_stats(None, 2, "mail", 50)),
                         golden_v2("stats"))
        self.assertEqual(codec.frame(Op.QUEUES, 12, codec.encode_queues(2, "a.b")),
                         golden_v2("queues"))
        self.assertEqual(codec.frame(Op.DELETE_QUEUE, 13, codec.encode_delete_queue("old:q", True)),
                         golden_v2("delete_queue"))
        # Version 1 layouts: no cursor, no limit.
        self.assertEqual(codec.encode_stats(None, 1, "mail", 50), b"\x00")
        self.assertEqual(codec.encode_queues(1, "a.b"), b"")

    def test_replies(self) -> None:
        stats = self.reply("stats_reply", Op.STATS)
        assert isinstance(stats, codec.Stats)
        self.assertEqual((stats.uptime_ms, stats.queue_count, stats.expired, stats.keys,
                          stats.keys_evicted, stats.next_cursor), (100, 700, 11, 12, 13, "q:2"))
        self.assertEqual([(q.name, q.expired) for q in stats.queues], [("mail", 10), ("q:2", 20)])
        page = self.reply("queues_reply", Op.QUEUES)
        self.assertEqual([q.name for q in page], ["a.c", "b"])
        self.assertEqual(page.next_cursor, "b")
        self.assertEqual(self.reply("delete_queue_reply", Op.DELETE_QUEUE).count, 5)
        job = self.reply("job_info_expired", Op.STATUS)
        assert isinstance(job, codec.Job)
        self.assertTrue(job.expired)
        self.assertEqual(job.finished_ms, 1700000000500)
        # A version 1 peer is never sent EXPIRED, nor the v2 layouts.
        for name, op in (("job_info_expired", Op.STATUS), ("stats_reply", Op.STATS),
                         ("queues_reply", Op.QUEUES)):
            with self.assertRaises(ProtocolError, msg=name):
                self.reply(name, op, version=1)


class Malformed(unittest.TestCase):
    def test_truncated_and_trailing(self) -> None:
        payload = struct.pack("<BQB", 2, 7, 0)
        self.assertEqual(codec.decode_reply(Op.PUT, Op.PUT | 0x8000, payload).id, 7)
        for bad in (payload[:-1], payload + b"\x00", b""):
            with self.assertRaises(ProtocolError):
                codec.decode_reply(Op.PUT, Op.PUT | 0x8000, bad)

    def test_every_truncation_of_golden_replies(self) -> None:
        for name, op in (("reserve_reply", Op.RESERVE), ("job_info", Op.STATUS),
                         ("stats_reply", Op.STATS), ("error", Op.ACK)):
            reply_op, _, payload = split(golden(name))
            for cut in range(len(payload)):
                with self.assertRaises(ProtocolError, msg=f"{name} cut at {cut}"):
                    codec.decode_reply(op, reply_op, payload[:cut])

    def test_wrong_reply_opcode(self) -> None:
        with self.assertRaises(ProtocolError):
            codec.decode_reply(Op.PUT, Op.ACK | 0x8000, b"\x02")

    def test_count_above_limit_or_payload(self) -> None:
        with self.assertRaises(ProtocolError):  # 5000 results > the 4096 batch limit
            codec.decode_reply(Op.PUT_BATCH, Op.PUT_BATCH | 0x8000, b"\x02" + struct.pack("<I", 5000))
        with self.assertRaises(ProtocolError):  # 3 results announced, room for none
            codec.decode_reply(Op.PUT_BATCH, Op.PUT_BATCH | 0x8000, b"\x02" + struct.pack("<I", 3))

    def test_blob_length_past_end(self) -> None:
        payload = struct.pack("<IQQIIQ", 1, 1, 2, 1, 0, 0) + b"\x01q" + struct.pack("<I", 1 << 30)
        with self.assertRaises(ProtocolError):
            codec.decode_reply(Op.RESERVE, Op.RESERVE | 0x8000, payload)

    def test_unknown_durability_and_state(self) -> None:
        with self.assertRaises(ProtocolError):
            codec.decode_reply(Op.ACK, Op.ACK | 0x8000, b"\x07")
        _, _, payload = split(golden("job_info"))
        bad = payload[:8] + b"\x09" + payload[9:]
        with self.assertRaises(ProtocolError):
            codec.decode_reply(Op.STATUS, Op.STATUS | 0x8000, bad)

    def test_frame_reader_checks_size_before_buffering(self) -> None:
        r = codec.FrameReader(4096)
        r.feed(codec.HEADER.pack(1 << 30, 0x8002, 0, 1))
        with self.assertRaises(ProtocolError):
            r.next_frame()
        r = codec.FrameReader(4096)
        r.feed(codec.HEADER.pack(8, 0x8002, 0, 1))
        with self.assertRaises(ProtocolError):
            r.next_frame()

    def test_frame_reader_reassembles(self) -> None:
        data = golden("reserve_reply") + golden("error")
        r = codec.FrameReader(4096)
        got = []
        for i in range(len(data)):  # one byte at a time
            r.feed(data[i:i + 1])
            while (f := r.next_frame()) is not None:
                got.append(f[0])
        self.assertEqual(got, [Op.RESERVE | 0x8000, codec.OP_ERROR])

    def test_unknown_error_code_is_internal(self) -> None:
        err = codec.decode_error(struct.pack("<HH", 77, 2) + b"hi")
        self.assertEqual((err.name, err.code), ("INTERNAL", 77))


class Arguments(unittest.TestCase):
    def test_bad_arguments_raise_before_sending(self) -> None:
        from spool import InvalidArgument, TooLarge
        for bad in ("", "a b", "x" * 201, "é"):
            with self.assertRaises(InvalidArgument):
                codec.encode_job_spec(JobSpec(bad, b""))
        with self.assertRaises(TooLarge):
            codec.encode_job_spec(JobSpec("q", b"", key="k" * 256))
        with self.assertRaises(InvalidArgument):
            codec.encode_job_spec(JobSpec("q", b"", priority=-1))
        with self.assertRaises(InvalidArgument):
            codec.encode_reserve(["q"], 0, 0, 0)
        with self.assertRaises(InvalidArgument):
            codec.encode_put_batch([])
        with self.assertRaises(TooLarge):
            codec.encode_ack(1, 2, b"x" * 65537)
        with self.assertRaises(TooLarge):
            codec.encode_bury(1, 2, "x" * 1025)

    def test_durability_values(self) -> None:
        self.assertEqual([int(d) for d in Durability], [0, 1, 2])


if __name__ == "__main__":
    unittest.main()
