#!/usr/bin/env python3
"""Benchmark of the Python client against libspool, in one run on one machine.

Starts its own spoold (build/src/spoold, 127.0.0.1 port 0, a temp dir, --sync as given), then:
  1. libspool: COUNT single spool_put round trips (a small C program built here with cc),
  2. spool.Client.put: the same COUNT single round trips from Python,
     1 and 2 alternating for ROUNDS rounds; then COUNT*ROUNDS puts interleaved one by one
     (libspool through ctypes, then spool.Client, then libspool, ...);
  3. spool.Client.put_many: PUT_BATCHes of BATCH 100-byte jobs for DURATION seconds, DEPTH
     batches in flight (replies matched by id; the next batch is encoded meanwhile);
  4. for reference, spool-bench (C) producing with the same batch and depth.
Prints one line:
  RESULT sync=.. size=.. libspool_put_p50_us=.. py_put_p50_us=.. put_p50_gap_us=..
         py_put_batch_jobs_per_s=.. ...
Usage: bench_put.py [--sync always|none|interval:MS] [--count N] [--rounds R] [--batch B]
                    [--depth D]
                    [--duration S] [--size BYTES]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))

import spool  # noqa: E402
from server import REPO, Spoold  # noqa: E402


def build_helper(workdir: str) -> str:
    lib_dir = REPO / "build" / "src" / "client"
    if not (lib_dir / "libspool.so").exists():
        sys.exit(f"bench_put: {lib_dir}/libspool.so not built (meson compile -C build)")
    out = os.path.join(workdir, "libspool_put")
    cc = os.environ.get("CC", "cc")
    subprocess.run([cc, "-O2", "-o", out, str(HERE / "libspool_put.c"),
                    f"-I{REPO / 'include'}", f"-L{lib_dir}", "-lspool",
                    f"-Wl,-rpath,{lib_dir}"], check=True)
    return out


def parse_result(line: str) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in line.split()[1:])


def percentile(sorted_us: list[float], p: float) -> float:
    return sorted_us[min(len(sorted_us) - 1, int(len(sorted_us) * p / 100))]


def py_single_puts(address: str, queue: str, count: int, size: int, warmup: int) -> list[float]:
    body = b"x" * size
    lat = []
    with spool.Client(address) as c:
        put = c.put
        clock = time.perf_counter_ns
        for i in range(warmup + count):
            t0 = clock()
            put(queue, body)
            if i >= warmup:
                lat.append((clock() - t0) / 1000)
    lat.sort()
    return lat


class _JobSpec(ctypes.Structure):
    """struct spool_job_spec of include/spool/client.h."""

    _fields_ = [("queue", ctypes.c_char_p), ("body", ctypes.c_void_p),
                ("body_len", ctypes.c_size_t), ("priority", ctypes.c_uint32),
                ("delay_ms", ctypes.c_uint64), ("run_at_ms", ctypes.c_uint64),
                ("ttr_ms", ctypes.c_uint32), ("max_attempts", ctypes.c_uint32),
                ("ttl_ms", ctypes.c_uint64), ("key", ctypes.c_char_p)]


def interleaved_puts(address: str, count: int, size: int, warmup: int
                     ) -> tuple[list[float], list[float]]:
    """libspool (through ctypes, in this process) and spool.Client putting in turn, one put
    each: both see the same moment's disk and CPU, which rounds of seconds cannot give under
    --sync always (an fdatasync's time swings by milliseconds on a shared machine). ctypes
    adds about a microsecond to each libspool call, in Python's favour."""
    lib = ctypes.CDLL(str(REPO / "build" / "src" / "client" / "libspool.so"))
    lib.spool_connect.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_void_p)]
    lib.spool_put.argtypes = [ctypes.c_void_p, ctypes.POINTER(_JobSpec),
                              ctypes.POINTER(ctypes.c_uint64)]
    lib.spool_close.argtypes = [ctypes.c_void_p]
    handle = ctypes.c_void_p()
    if lib.spool_connect(address.encode(), 5000, ctypes.byref(handle)) != 0:
        sys.exit("bench_put: spool_connect failed")
    body = b"x" * size
    spec = _JobSpec(queue=b"bench-ic", body=ctypes.cast(ctypes.c_char_p(body), ctypes.c_void_p),
                    body_len=size)
    spec_ref, job_id = ctypes.byref(spec), ctypes.c_uint64()
    id_ref, c_put = ctypes.byref(job_id), lib.spool_put
    c_lat: list[float] = []
    py_lat: list[float] = []
    clock = time.perf_counter_ns
    with spool.Client(address) as c:
        put = c.put
        for i in range(warmup + count):
            t0 = clock()
            if c_put(handle, spec_ref, id_ref) != 0:
                sys.exit("bench_put: spool_put failed")
            t1 = clock()
            put("bench-ip", body)
            t2 = clock()
            if i >= warmup:
                c_lat.append((t1 - t0) / 1000)
                py_lat.append((t2 - t1) / 1000)
    lib.spool_close(handle)
    return sorted(c_lat), sorted(py_lat)


def py_batches(address: str, queue: str, batch: int, depth: int, duration: float,
               size: int) -> tuple[int, float]:
    body = b"x" * size
    jobs = [(queue, body)] * batch  # (queue, body): a job with every option at its default
    done = 0
    with spool.Client(address) as c:
        c.put_batch(jobs)  # warm up
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < duration:
            # put_many encodes every batch as a producer would, `depth` batches in flight
            done += len(c.put_many(jobs * 32, batch=batch, window=depth))
        return done, time.perf_counter() - t0


def spool_bench_reference(address: str, args: argparse.Namespace) -> str:
    """What spool-bench (C, one producer, same batch and depth) reaches against the same
    server just after: the server's and the machine's share of the bound."""
    binary = REPO / "build" / "bench" / "spool-bench"
    if not binary.exists():
        return "unavailable"
    out = subprocess.run([str(binary), "produce", "--server", address, "--producers", "1",
                          "--batch", str(args.batch), "--depth", str(args.depth), "--size",
                          str(args.size), "--duration", str(args.duration), "--quiet"],
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith("RESULT"):
            return parse_result(line).get("jobs_per_s", "unavailable")
    return "unavailable"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sync", default="always")
    ap.add_argument("--count", type=int, default=2000, help="single puts per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--size", type=int, default=100)
    args = ap.parse_args()
    workdir = tempfile.mkdtemp(prefix="spool-pybench-")
    server = Spoold("--sync", args.sync).start()
    try:
        helper = build_helper(workdir)
        # Alternate libspool and Python rounds so both see the same machine load (on a shared
        # machine the load changes within seconds); compare the medians of the round p50s.
        c_p50s, py_p50s, py_p99s = [], [], []
        for _ in range(args.rounds):
            c_out = subprocess.run([helper, server.address, "bench-c", str(args.count),
                                    str(args.size), str(args.warmup)],
                                   check=True, capture_output=True, text=True).stdout
            c_p50s.append(float(parse_result(c_out.strip().splitlines()[-1])["p50_us"]))
            lat = py_single_puts(server.address, "bench-py", args.count, args.size,
                                 args.warmup)
            py_p50s.append(percentile(lat, 50))
            py_p99s.append(percentile(lat, 99))
        jobs, seconds = py_batches(server.address, "bench-batch", args.batch, args.depth,
                                   args.duration, args.size)
        ic_lat, ip_lat = interleaved_puts(server.address, args.count * args.rounds, args.size,
                                          args.warmup)
        ic_p50, ip_p50 = percentile(ic_lat, 50), percentile(ip_lat, 50)
        ref = spool_bench_reference(server.address, args)
        c_p50 = statistics.median(c_p50s)
        py_p50 = statistics.median(py_p50s)
        print(f"RESULT sync={args.sync} size={args.size} rounds={args.rounds} "
              f"count={args.count} libspool_put_p50_us={c_p50:.1f} "
              f"py_put_p50_us={py_p50:.1f} py_put_p99_us={statistics.median(py_p99s):.1f} "
              f"put_p50_gap_us={py_p50 - c_p50:.1f} "
              f"libspool_round_p50s_us={','.join(f'{v:.0f}' for v in c_p50s)} "
              f"py_round_p50s_us={','.join(f'{v:.0f}' for v in py_p50s)} "
              f"interleaved_libspool_p50_us={ic_p50:.1f} interleaved_py_p50_us={ip_p50:.1f} "
              f"interleaved_gap_us={ip_p50 - ic_p50:.1f} "
              f"batch={args.batch} depth={args.depth} py_put_batch_jobs={jobs} "
              f"py_put_batch_seconds={seconds:.3f} "
              f"py_put_batch_jobs_per_s={jobs / seconds:.0f} "
              f"spool_bench_batch_jobs_per_s={ref}")
        return 0
    finally:
        server.close()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
