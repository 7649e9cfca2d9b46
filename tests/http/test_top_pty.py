#!/usr/bin/env python3
"""`spool top` on a pseudo-terminal against a real spoold: it draws the queue table with the
workload's queues and a non-zero put rate after a refresh, quits on q and on Ctrl-C with exit
0, and leaves the terminal as it found it (echo and canonical mode back on, alternate screen
left). Also --once without a terminal, and a 401 without the token. Environment: SPOOLD,
SPOOL (the CLI), SPOOL_PYTHON_CLIENT."""
import fcntl
import os
import select
import struct
import subprocess
import termios
import threading
import time
import unittest

from spoold_http import Spoold

import spool


def read_for(fd, seconds, until=None):
    out = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
            if until is not None and until(out):
                break
    return out


class Top(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.s = Spoold()
        cls.stop = threading.Event()
        with spool.Client(cls.s.addr) as c:
            for i in range(3):
                c.put("invoices", f"i{i}")
            c.put("archive", "a", delay_ms=3_600_000)

        def load():
            with spool.Client(cls.s.addr) as c:
                while not cls.stop.is_set():
                    c.put("resize", "x")
                    time.sleep(0.02)

        cls.loader = threading.Thread(target=load, daemon=True)
        cls.loader.start()

    @classmethod
    def tearDownClass(cls):
        cls.stop.set()
        cls.loader.join()
        rc = cls.s.stop()
        cls.s.cleanup()
        assert rc == 0, rc

    def run_top(self, key):
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
        before = termios.tcgetattr(slave)
        self.assertTrue(before[3] & termios.ECHO and before[3] & termios.ICANON)
        proc = subprocess.Popen([os.environ["SPOOL"], "top", "--http", self.s.http_addr],
                                stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
        try:
            names = (b"invoices", b"archive", b"resize")

            def third_screen_drawn(out):  # two refreshes after the first draw, all rows in
                last = out.rsplit(b"QUEUE", 1)[-1]
                return out.count(b"QUEUE") >= 3 and all(n in last for n in names)

            screen = read_for(master, 10, until=third_screen_drawn)
            self.assertGreaterEqual(screen.count(b"QUEUE"), 3, screen)  # refreshed twice
            during = termios.tcgetattr(slave)
            self.assertFalse(during[3] & termios.ECHO, "raw mode: no echo")
            last = screen.rsplit(b"QUEUE", 1)[1]
            for name in names:
                self.assertIn(name, last)
            lines = [line.strip() for line in last.split(b"\n")]
            row = [line for line in lines if line.startswith(b"resize")][0]
            put_rate = float(row.split()[5])
            self.assertGreater(put_rate, 0, row)
            inv = [line for line in lines if line.startswith(b"invoices")][0]
            self.assertEqual(inv.split()[1], b"3", inv)
            os.write(master, key)
            self.assertEqual(proc.wait(timeout=10), 0)
            tail = read_for(master, 0.5)
            self.assertIn(b"\x1b[?1049l", screen + tail, "the alternate screen is left")
            after = termios.tcgetattr(slave)
            self.assertEqual(after[3], before[3], "local modes restored")
            self.assertEqual(after[0], before[0], "input modes restored")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            os.close(master)
            os.close(slave)

    def test_quit_with_q(self):
        self.run_top(b"q")

    def test_quit_with_ctrl_c(self):
        self.run_top(b"\x03")

    def test_once_without_a_terminal(self):
        p = subprocess.run([os.environ["SPOOL"], "top", "--once", "--http", self.s.http_addr],
                           capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(b"invoices", p.stdout)
        self.assertNotIn(b"\x1b[", p.stdout)

    def test_unreachable(self):
        p = subprocess.run([os.environ["SPOOL"], "top", "--once", "--http", "127.0.0.1:1"],
                           capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 5)
        self.assertIn(b"CONNECTION_CLOSED", p.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
