"""Malformed replies from a fake server on 127.0.0.1: truncated frames, wrong request ids,
oversize lengths, undecodable payloads, connection-level errors. Each must end the call with a
clear exception within the I/O timeout: no hang, no unbounded read."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
import unittest
from typing import Callable

import spool
from spool import codec
from spool.codec import Op

HELLO_REPLY = struct.pack("<HIIQ", 1, 4096, 1024, 0) + struct.pack("<H", 4) + b"fake"
# Every test finishes well inside this: a hang would show as a failure, not a stuck suite.
CALL_TIMEOUT_S = 1.0


class Close(bytes):
    """Bytes a script sends just before hanging up."""


def reply(op: int, request_id: int, payload: bytes) -> bytes:
    return codec.frame(op, request_id, payload)


class FakeServer:
    """Accepts one connection, answers HELLO, then hands each request frame to ``script``,
    which returns the bytes to send back (or None to hang up)."""

    def __init__(self, script: Callable[[int, int, bytes], bytes | None],
                 hello: bytes | None = None) -> None:
        self.script = script
        self.hello = hello
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = "127.0.0.1:%d" % self.listener.getsockname()[1]
        self.received: list[int] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def read_frame(self, conn: socket.socket) -> tuple[int, int, bytes] | None:
        head = b""
        while len(head) < 16:
            chunk = conn.recv(16 - len(head))
            if not chunk:
                return None
            head += chunk
        size, op, _, rid = codec.HEADER.unpack(head)
        body = b""
        while len(body) < size - 16:
            chunk = conn.recv(size - 16 - len(body))
            if not chunk:
                return None
            body += chunk
        return op, rid, body

    def serve(self) -> None:
        self.listener.settimeout(10)
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(10)
            try:
                f = self.read_frame(conn)
                if f is None:
                    return
                if self.hello is not None:
                    conn.sendall(self.hello)
                    return self.linger(conn)
                conn.sendall(reply(Op.HELLO | 0x8000, f[1], HELLO_REPLY))
                while (f := self.read_frame(conn)) is not None:
                    self.received.append(f[0])
                    out = self.script(*f)
                    if out is None:
                        return
                    conn.sendall(out)
                    if isinstance(out, Close):
                        return
            except OSError:
                return

    @staticmethod
    def linger(conn: socket.socket) -> None:
        try:
            while conn.recv(4096):
                pass
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()
        self.thread.join(5)


def put_reply(rid: int, job_id: int = 5) -> bytes:
    return reply(Op.PUT | 0x8000, rid, struct.pack("<BQB", 2, job_id, 0))


class Malformed(unittest.TestCase):
    def run_put(self, script: Callable[[int, int, bytes], bytes | None],
                hello: bytes | None = None) -> BaseException:
        fake = FakeServer(script, hello)
        try:
            t0 = time.monotonic()
            with self.assertRaises(spool.SpoolError) as cm:
                c = spool.Client(fake.address, timeout=CALL_TIMEOUT_S, retries=0)
                c.put("q", b"x")
            self.assertLess(time.monotonic() - t0, CALL_TIMEOUT_S + 4)
            return cm.exception
        finally:
            fake.close()

    def test_good_reply_works(self) -> None:
        fake = FakeServer(lambda op, rid, body: put_reply(rid, 42))
        try:
            with spool.Client(fake.address, timeout=CALL_TIMEOUT_S) as c:
                self.assertEqual(c.put("q", b"x").id, 42)
                self.assertEqual(c.server.server_name, "fake")
        finally:
            fake.close()

    def test_truncated_frame_then_close(self) -> None:
        err = self.run_put(lambda op, rid, body: Close(put_reply(rid)[:20]))
        # the server sends 20 bytes of a 26-byte frame and hangs up
        self.assertIsInstance(err, spool.ConnectionClosed)
        self.assertIn("middle of a frame", str(err))

    def test_truncated_frame_then_silence(self) -> None:
        def script(op: int, rid: int, body: bytes) -> bytes:
            return put_reply(rid)[:20]  # and then nothing: the next read waits
        err = self.run_put(script)
        self.assertIsInstance(err, spool.TimedOut)

    def test_wrong_request_id(self) -> None:
        err = self.run_put(lambda op, rid, body: put_reply(rid + 1000))
        self.assertIsInstance(err, spool.ProtocolError)
        self.assertIn("not outstanding", str(err))

    def test_oversize_frame_length(self) -> None:
        # 1 GiB announced: refused from the header alone, nothing buffered for it
        err = self.run_put(lambda op, rid, body: codec.HEADER.pack(1 << 30, Op.PUT | 0x8000, 0,
                                                                   rid))
        self.assertIsInstance(err, spool.ProtocolError)
        self.assertIn("above the maximum", str(err))

    def test_frame_size_below_header(self) -> None:
        err = self.run_put(lambda op, rid, body: codec.HEADER.pack(3, Op.PUT | 0x8000, 0, rid))
        self.assertIsInstance(err, spool.ProtocolError)

    def test_wrong_reply_opcode(self) -> None:
        err = self.run_put(lambda op, rid, body: reply(Op.ACK | 0x8000, rid, b"\x02"))
        self.assertIsInstance(err, spool.ProtocolError)

    def test_trailing_bytes(self) -> None:
        err = self.run_put(lambda op, rid, body: reply(Op.PUT | 0x8000, rid,
                                                       struct.pack("<BQB", 2, 5, 0) + b"!"))
        self.assertIsInstance(err, spool.ProtocolError)

    def test_blob_length_past_frame(self) -> None:
        def script(op: int, rid: int, body: bytes) -> bytes:
            if op == Op.PUT:
                return put_reply(rid)
            return reply(Op.RESERVE | 0x8000, rid, struct.pack("<IQQIIQ", 1, 1, 2, 1, 0, 0)
                         + b"\x01q" + struct.pack("<I", 0xFFFFFFF0))
        fake = FakeServer(script)
        try:
            with spool.Client(fake.address, timeout=CALL_TIMEOUT_S, retries=0) as c:
                with self.assertRaises(spool.ProtocolError):
                    c.reserve("q", 1)
        finally:
            fake.close()

    def test_error_with_request_id_zero(self) -> None:
        err_payload = struct.pack("<HH", 14, 8) + b"stopping"
        err = self.run_put(lambda op, rid, body: reply(codec.OP_ERROR, 0, err_payload))
        self.assertIsInstance(err, spool.ShuttingDown)

    def test_busy_at_accept(self) -> None:
        busy = reply(codec.OP_ERROR, 0, struct.pack("<HH", 13, 4) + b"full")
        err = self.run_put(lambda *a: None, hello=busy)
        self.assertIsInstance(err, spool.Busy)

    def test_not_a_spool_server(self) -> None:
        err = self.run_put(lambda *a: None, hello=b"HTTP/1.1 400 Bad Request\r\n\r\n")
        self.assertIsInstance(err, spool.ProtocolError)

    def test_hello_reply_with_bad_frame_max(self) -> None:
        bad = reply(Op.HELLO | 0x8000, 1, struct.pack("<HIIQ", 1, 100, 1024, 0) + b"\0\0")
        err = self.run_put(lambda *a: None, hello=bad)
        self.assertIsInstance(err, spool.ProtocolError)

    def test_server_hangs_up_mid_call(self) -> None:
        err = self.run_put(lambda *a: None)
        self.assertIsInstance(err, spool.ConnectionClosed)

    def test_async_client_too(self) -> None:
        cases = [
            (lambda op, rid, body: put_reply(rid + 7), spool.ProtocolError),
            (lambda op, rid, body: put_reply(rid)[:20], spool.TimedOut),
            (lambda op, rid, body: codec.HEADER.pack(1 << 30, Op.PUT | 0x8000, 0, rid),
             spool.ProtocolError),
            (lambda op, rid, body: None, spool.ConnectionClosed),
        ]

        async def one(fake: FakeServer) -> None:
            async with spool.AsyncClient(fake.address, timeout=CALL_TIMEOUT_S, retries=0) as c:
                await c.put("q", b"x")

        for script, expected in cases:
            fake = FakeServer(script)
            try:
                with self.assertRaises(expected):
                    asyncio.run(asyncio.wait_for(one(fake), CALL_TIMEOUT_S + 4))
            finally:
                fake.close()


if __name__ == "__main__":
    unittest.main()
