#!/usr/bin/env python3
"""Disk use with sparse pinned jobs, compaction off and on (issue 11, item 5).

One spoold per setting (1 MiB segments, 127.0.0.1 port 0, a temp dir): ROUNDS rounds put 48
incompressible jobs of 4 KB in one batch and reserve and ack the ready ones; every PIN_EVERY-th
job is put with a one-hour delay and so stays. Then a few seconds for a compaction cycle and
the checkpoint after it, and the segment files are counted. Prints one line per setting:
  RESULT bench=compaction_disk compact_percent=N jobs_put=N pinned=N live_bytes=N
         segments=N segment_bytes=N compaction_cycles=N
Usage: bench/compaction_disk.py [BUILD_DIR] (default build). The server is stopped by pid.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))
import spool  # noqa: E402
from spool.codec import JobSpec  # noqa: E402

PIN_EVERY = 200
BODY = 4000
BATCH = 48  # 192 KB: below a quarter of a 1 MiB segment (one commit)
ROUNDS = 200  # 9,600 jobs, 39 MB of puts
SETTLE_S = 3  # a survey (once a second), a cycle, the checkpoint it asks for
START_TIMEOUT_S = 20


def run(spoold, percent):
    d = tempfile.mkdtemp(prefix="spool-compaction-bench.")
    ready = os.path.join(d, "ready")
    with open(os.path.join(d, "spoold.log"), "w") as log:
        p = subprocess.Popen([spoold, "--data", os.path.join(d, "data"), "--listen",
                              "127.0.0.1:0", "--ready-file", ready, "--segment-size", "1m",
                              "--max-job-size", "64k", "--checkpoint-bytes", "1m",
                              "--compact-percent", str(percent)], stderr=log)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (os.path.exists(ready) and os.path.getsize(ready) > 0):
            if time.monotonic() > deadline or p.poll() is not None:
                raise RuntimeError("spoold did not start: see " + d)
            time.sleep(0.05)
        addr = open(ready).read().split()[0]
        n = 0
        with spool.Client(addr) as c:
            for _ in range(ROUNDS):
                jobs = []
                for _ in range(BATCH):
                    n += 1
                    delay = 3600_000 if n % PIN_EVERY == 0 else 0
                    jobs.append(JobSpec("q", os.urandom(BODY), delay_ms=delay))
                c.put_batch(jobs)
                c.ack_batch(c.reserve("q", count=BATCH))
            time.sleep(SETTLE_S)
        segments = [f for f in os.listdir(os.path.join(d, "data")) if f.endswith(".seg")]
    finally:
        p.terminate()
        p.wait()
    cycles = sum(1 for line in open(os.path.join(d, "spoold.log")) if "msg=compaction " in line)
    shutil.rmtree(d)
    pinned = n // PIN_EVERY
    print(f"RESULT bench=compaction_disk compact_percent={percent} jobs_put={n} "
          f"pinned={pinned} live_bytes={pinned * BODY} segments={len(segments)} "
          f"segment_bytes=1048576 compaction_cycles={cycles}", flush=True)


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build")
    spoold = os.path.join(build, "src", "spoold")
    for percent in (0, 25):
        run(spoold, percent)


if __name__ == "__main__":
    main()
