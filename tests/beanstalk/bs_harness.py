"""Servers and a raw client for the beanstalk suite (standard library only).

Spoold starts build/src/spoold with --beanstalk on 127.0.0.1 port 0 in a temp dir and learns
both addresses from its --ready-file; Beanstalkd starts /usr/bin/beanstalkd on a free
127.0.0.1 port (no binlog) for the comparisons. Both are stopped by pid, never by name.
"""
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time

START_TIMEOUT_S = 10.0
REPLY_TIMEOUT_S = 10.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout_s=START_TIMEOUT_S):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited with %s" % proc.returncode)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("server did not listen on %d" % port)


class Spoold:
    def __init__(self, *args, data_dir=None):
        self.binary = os.environ.get("SPOOLD", "build/src/spoold")
        self.owned_dir = data_dir is None
        self.dir = data_dir or tempfile.mkdtemp(prefix="spool-bs-")
        self.args = list(args)
        self.proc = None
        self.start()

    def start(self):
        ready = os.path.join(self.dir, "ready")
        if os.path.exists(ready):
            os.unlink(ready)
        self.log = open(os.path.join(self.dir, "spoold.log"), "ab")
        self.proc = subprocess.Popen(
            [self.binary, "--data", os.path.join(self.dir, "data"), "--listen", "127.0.0.1:0",
             "--beanstalk", "127.0.0.1:0", "--ready-file", ready] + self.args,
            stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("spoold exited: %s" % self.log_tail())
            try:
                with open(ready) as f:
                    lines = f.read().splitlines()
                if len(lines) >= 2 and lines[1].startswith("beanstalk "):
                    self.native_port = int(lines[0].rsplit(":", 1)[1])
                    self.port = int(lines[1].rsplit(":", 1)[1])
                    return
            except FileNotFoundError:
                pass
            time.sleep(0.01)
        raise RuntimeError("spoold did not become ready")

    def log_tail(self):
        with open(os.path.join(self.dir, "spoold.log"), "rb") as f:
            return f.read()[-2000:].decode(errors="replace")

    def kill9(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()

    def stop(self):
        """SIGTERM, and the exit must be clean (a sanitizer report or a crash is not)."""
        code = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                code = self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        if code not in (None, 0):
            raise RuntimeError("spoold exited with %s: %s" % (code, self.log_tail()))
        if self.owned_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


class Beanstalkd:
    """The real thing, in memory (no -b), for answers to compare with."""

    BINARY = "/usr/bin/beanstalkd"

    @classmethod
    def available(cls):
        return os.access(cls.BINARY, os.X_OK)

    def __init__(self, *args):
        self.port = free_port()
        self.proc = subprocess.Popen([self.BINARY, "-l", "127.0.0.1", "-p", str(self.port)] +
                                     list(args), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_port(self.port, self.proc)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


class Client:
    """One raw connection: send bytes, read whole replies (a line, and a body after OK,
    FOUND and RESERVED)."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=REPLY_TIMEOUT_S)
        self.buf = b""

    def close(self):
        self.sock.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed")
        self.buf += data

    def line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode()

    def reply(self):
        line = self.line()
        word = line.split(" ")[0]
        if word in ("OK", "FOUND", "RESERVED"):
            size = int(line.split(" ")[-1])
            while len(self.buf) < size + 2:
                self._fill()
            body, self.buf = self.buf[:size], self.buf[size + 2:]
            return line, body
        return line, None

    def cmd(self, text, body=None):
        """Send one command (and a body) and return (line, body) of its reply."""
        data = text.encode() + b"\r\n"
        if body is not None:
            data += body + b"\r\n"
        self.send(data)
        return self.reply()

    def closed(self, timeout_s=2.0):
        """True once the server closes the connection (nothing more to read)."""
        self.sock.settimeout(timeout_s)
        try:
            return self.sock.recv(1) == b""
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True


ID_RE = re.compile(r"^(INSERTED|RESERVED|FOUND|BURIED) (\d+)")


class Normalizer:
    """Job ids differ between servers: name each by its order of first appearance."""

    def __init__(self):
        self.ids = {}

    def name(self, job_id):
        return self.ids.setdefault(job_id, "#%d" % (len(self.ids) + 1))

    def line(self, line):
        m = ID_RE.match(line)
        if m:
            return line.replace(m.group(2), self.name(m.group(2)), 1)
        return line
