#!/usr/bin/env python3
"""bench/trace_latency.py on a made-up perf script excerpt whose stage times are known."""
import importlib.util
import io
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SPEC = importlib.util.spec_from_file_location(
    "trace_latency", os.path.join(HERE, "..", "..", "bench", "trace_latency.py"))
tl = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(tl)

PID = 100
RING = "0xffff888000000001"
OTHER_RING = "0xffff888000000002"


def ev(t_us, comm, tid, name, rest):
    return "%16s %6d [001] %.6f: %s: %s" % (comm, tid, t_us / 1e6, name, rest)


def submit(t, ud, opcode, tid=PID, ring=RING):
    return ev(t, "spoold", tid, "io_uring:io_uring_submit_req",
              "ring %s, req 0xffff1, user_data 0x%x, opcode %s, flags 0x400000, sq_thread 0"
              % (ring, ud, opcode))


def complete(t, ud, result, comm="spoold", tid=PID, ring=RING):
    return ev(t, comm, tid, "io_uring:io_uring_complete",
              "ring %s, req 0xffff1, user_data 0x%x, result %d, cflags 0x0 extra1 0 extra2 0"
              % (ring, ud, result))


def block(t, what, rwbs):
    return ev(t, "kworker/1:4", 7, "block:block_rq_" + what,
              "254,0 %s 4096 () 100 + 8 0x2,0,4 [spoold]" % rwbs)


LINES = [
    "a line perf prints that is no event",
    submit(900, 0x10, "RECV"),
    complete(1000, 0x10, 100),               # a put arrives
    submit(1010, 0x20, "WRITE"),             # its commit starts: ingest 10
    block(1016, "issue", "WS"),              # submit 6
    block(1050, "issue", "WSM"),             # a metadata write inside the commit
    block(1080, "complete", "WS"),
    block(1085, "complete", "WSM"),
    block(1090, "issue", "FF"),
    block(1150, "complete", "FF"),           # device 1150 - 1016 = 134
    complete(1152, 0x20, 42, ring=OTHER_RING),  # another ring's op: not ours
    complete(1157, 0x20, 8192, comm="kworker/1:4", tid=7),  # complete 7, commit 147
    submit(1162, 0x18, "SEND"),              # release 5
    # A process of its own submitting a write: not spoold's.
    submit(1500, 0x99, "WRITE", tid=555, ring=OTHER_RING),
    # Two commits sharing the disk: neither is alone; no arrival before the first.
    submit(2000, 0x20, "WRITE"),
    complete(2003, 0x10, 0),                 # a recv that ended with 0 bytes is no arrival
    complete(2004, 0x10, 60),
    submit(2005, 0x21, "WRITE"),             # ingest 1
    block(2010, "issue", "WS"),
    block(2190, "complete", "WS"),
    complete(2200, 0x20, 4096, comm="kworker/1:4", tid=7),  # commit 200
    complete(2300, 0x21, 4096, comm="kworker/1:4", tid=7),  # commit 295
    submit(2310, 0x18, "SEND"),              # release 110 and 10
]


def near(a, b):
    return abs(a - b) < 1e-6


def main():
    failures = []

    def check(what, got, want):
        ok = (sorted(got) == sorted(want) if isinstance(want, list) else got == want)
        if isinstance(want, list) and ok:
            ok = all(near(x, y) for x, y in zip(sorted(got), sorted(want)))
        print("%s %s: got %s, want %s" % ("ok  " if ok else "FAIL", what, got, want))
        if not ok:
            failures.append(what)

    samples, counts = tl.analyze(tl.parse(LINES), PID)
    check("commits", counts["commits"], 3)
    check("alone", counts["alone"], 1)
    check("meta_writes", counts["meta_writes"], 1)
    check("ingest", [round(x) for x in samples["ingest"]], [10, 1])
    check("submit", [round(x) for x in samples["submit"]], [6])
    check("device", [round(x) for x in samples["device"]], [134])
    check("complete", [round(x) for x in samples["complete"]], [7])
    check("commit", [round(x) for x in samples["commit"]], [147, 200, 295])
    check("shared", [round(x) for x in samples["shared"]], [200, 295])
    check("release", [round(x) for x in samples["release"]], [5, 110, 10])
    check("percentile of nothing", tl.percentile([], 50), None)
    check("p50 of 1..100", tl.percentile(list(range(1, 101)), 50), 50)
    check("p99 of 1..100", tl.percentile(list(range(1, 101)), 99), 99)
    check("p99 of one", tl.percentile([7], 99), 7)

    out = io.StringIO()
    tl.report(samples, counts, out)
    trace = [line for line in out.getvalue().splitlines() if line.startswith("TRACE ")]
    check("one TRACE line", len(trace), 1)
    fields = dict(f.split("=") for f in trace[0].split()[1:]) if trace else {}
    check("TRACE device_p50_us", fields.get("device_p50_us"), "134")
    check("TRACE commit_p99_us", fields.get("commit_p99_us"), "295")
    check("TRACE alone", fields.get("alone"), "1")

    # A trace without the server's writes is an error, not an empty table.
    sys.stdin = io.StringIO("\n".join(LINES))
    check("unknown pid exits 1", tl.main(["--pid", "4242"]), 1)

    print("%d failed" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
