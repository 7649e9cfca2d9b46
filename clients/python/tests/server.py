"""A real spoold for the tests: started on 127.0.0.1 port 0 in a temp dir, stopped by pid.

The binary is $SPOOLD, else build/src/spoold of the repository these tests sit in (tools/test
builds it first). Without a binary the tests that need one are skipped.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
# spoold writes its ready file once listening; on a loaded 2-core machine start-up (recovery of
# an empty or small log) takes well under a second, so 20 s only catches a real hang.
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 20.0


def spoold_path() -> str | None:
    path = os.environ.get("SPOOLD") or str(REPO / "build" / "src" / "spoold")
    return path if os.access(path, os.X_OK) else None


class Spoold:
    def __init__(self, *extra: str, data_dir: str | None = None) -> None:
        binary = spoold_path()
        if binary is None:
            raise unittest.SkipTest("spoold not built (set SPOOLD or build build/src/spoold)")
        self.binary = binary
        self.extra = list(extra)
        self.own_dir = data_dir is None
        self.dir = data_dir or tempfile.mkdtemp(prefix="spool-py-")
        self.proc: subprocess.Popen | None = None
        self.address = ""

    def start(self, listen: str = "127.0.0.1:0") -> "Spoold":
        ready = os.path.join(self.dir, "ready")
        if os.path.exists(ready):
            os.unlink(ready)
        self.log = open(os.path.join(self.dir, "spoold.log"), "ab")
        self.proc = subprocess.Popen(
            [self.binary, "--data", os.path.join(self.dir, "data"), "--listen", listen,
             "--ready-file", ready, *self.extra],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if os.path.exists(ready):
                with open(ready) as f:
                    text = f.read().strip()
                if text.endswith("\n") or ":" in text:
                    self.address = text
                    return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"spoold exited with {self.proc.returncode}: "
                                   f"{self.log_text()}")
            time.sleep(0.01)
        self.stop()
        raise RuntimeError("spoold did not become ready")

    def log_text(self) -> str:
        try:
            return Path(self.dir, "spoold.log").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if hasattr(self, "log"):
            self.log.close()

    def restart(self) -> None:
        """Stop and start again on the same port with the same data."""
        listen = self.address
        self.stop()
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:  # the port may linger a moment; spoold binds with SO_REUSEADDR
            try:
                self.start(listen)
                return
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def close(self) -> None:
        self.stop()
        if self.own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


_counter = 0


def unique_queue(prefix: str = "q") -> str:
    global _counter
    _counter += 1
    return f"{prefix}-{os.getpid()}-{_counter}"
