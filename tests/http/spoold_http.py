"""Shared by the HTTP tests: start spoold with its HTTP listener on 127.0.0.1 port 0 in a temp
dir (addresses from --ready-file and --http-ready-file), stop it by pid, and small HTTP helpers
(standard library only). SPOOLD names the binary; the Python client comes from clients/python
(SPOOL_PYTHON_CLIENT)."""
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.environ.get("SPOOL_PYTHON_CLIENT", ""))


class Spoold:
    def __init__(self, *args, keep_dir=None):
        self.dir = keep_dir or tempfile.mkdtemp(prefix="spoold-http-")
        self.log_path = os.path.join(self.dir, "spoold.log")
        ready = os.path.join(self.dir, "ready")
        http_ready = os.path.join(self.dir, "http-ready")
        for path in (ready, http_ready):
            if os.path.exists(path):
                os.unlink(path)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [os.environ["SPOOLD"], "--data", os.path.join(self.dir, "data"), "--listen",
                 "127.0.0.1:0", "--ready-file", ready, "--http", "127.0.0.1:0",
                 "--http-ready-file", http_ready, *args],
                stderr=log)
        deadline = time.monotonic() + 20
        while not (os.path.exists(ready) and os.path.exists(http_ready)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError("spoold did not start:\n" + self.log())
            time.sleep(0.01)
        self.addr = read_text(ready).strip()
        self.http_addr = read_text(http_ready).strip()
        host, port = self.http_addr.rsplit(":", 1)
        self.http_host, self.http_port = host, int(port)

    def log(self):
        try:
            return read_text(self.log_path)
        except OSError:
            return ""

    def request(self, method, path, token=None, headers=None):
        """(status, headers dict, body bytes)."""
        conn = http.client.HTTPConnection(self.http_host, self.http_port, timeout=20)
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = "Bearer " + token
        conn.request(method, path, headers=h)
        r = conn.getresponse()
        body = r.read()
        conn.close()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body

    def json(self, method, path, token=None, expect=200):
        status, _, body = self.request(method, path, token)
        if status != expect:
            raise AssertionError(f"{method} {path}: {status} {body!r}, wanted {expect}")
        return json.loads(body)

    def metrics(self, token=None):
        status, headers, body = self.request("GET", "/metrics", token)
        assert status == 200, (status, body)
        assert headers["content-type"].startswith("text/plain; version=0.0.4"), headers
        return body.decode()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
                return -1
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def cleanup(self):
        self.kill()
        if not os.environ.get("SPOOL_KEEP_TEST_DIRS"):
            shutil.rmtree(self.dir, ignore_errors=True)


def read_text(path):
    with open(path, errors="replace") as f:
        return f.read()


def parse_metrics(text):
    """{(name, frozenset(labels.items())): value} of a Prometheus text page."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, value = line.rsplit(" ", 1)
        labels = {}
        if "{" in head:
            name, rest = head.split("{", 1)
            for part in rest.rstrip("}").split('",'):
                if part:
                    k, v = part.split("=", 1)
                    labels[k] = v.strip('"')
        else:
            name = head
        out[(name, frozenset(labels.items()))] = float(value)
    return out


def metric(parsed, name, **labels):
    return parsed[(name, frozenset(labels.items()))]
