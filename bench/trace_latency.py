#!/usr/bin/env python3
"""Where a commit's time goes, from kernel tracepoints (bench/trace-latency records them).

Reads `perf script` output of the io_uring, block and sched tracepoints recorded system-wide
while spoold served a load, and splits the server's part of a put's latency into stages:

  ingest    the newest request bytes before a commit arrive (a recv completion on spoold's
            ring) until the commit starts (spoold submits the batch's write): the server's own
            turn, from the request that closed the batch to its write
  submit    the write is submitted until its first block request reaches the device queue
  device    first block request issued until the last one completes before the write's CQE:
            the data write, the flush the O_DSYNC write needs on a disk without FUA, and any
            synchronous metadata write between them
  complete  that last block completion until spoold's ring holds the write's CQE (the dio
            worker's wake-up and the completion's trip back)
  commit    submit + device + complete: the write's submission until its CQE
  shared    commit, for the commits that shared the disk with another write of spoold's (a
            commit started while one was in flight, or one in flight when the next started):
            the commits that queue behind one another, where the tail comes from
  release   the CQE until spoold's next send (a reply or a delivery leaving)

submit, device and complete are counted only for commits alone on the disk (no other write of
spoold's in flight), where the block requests between submit and CQE are that commit's; the
counts say how many were. ingest, commit and release count every commit. Every write on
spoold's ring counts as a commit: the spare's zero fill, a roll's header and a checkpoint
write too (tracepoints do not say which file a write went to); on a fresh server the zero fill
runs in the first second or two, so trace after a warmup, as bench/trace-latency does.

Prints a table, then one machine-readable line:
  TRACE commits=N alone=N meta_writes=N ingest_p50_us=... ingest_p99_us=... submit_p50_us=...
Usage: perf script -i perf.data | bench/trace_latency.py --pid PID
Standard library only.
"""
import argparse
import re
import sys

# comm, tid, [cpu], timestamp (s), event, rest
EVENT_RE = re.compile(r"^\s*(.+?)\s+(\d+)\s+\[(\d+)\]\s+(\d+\.\d+):\s+(\S+):\s*(.*)$")
USER_DATA_RE = re.compile(r"user_data (0x[0-9a-f]+|\d+)")
RING_RE = re.compile(r"ring (0x[0-9a-f]+)")
OPCODE_RE = re.compile(r"opcode (\w+)")
RESULT_RE = re.compile(r"result (-?\d+)")
# block:block_rq_issue: 254,0 WS 8192 () 116985200 + 16 ...; the rwbs field is the second.
BLOCK_RWBS_RE = re.compile(r"^\S+ (\S+) ")

STAGES = ("ingest", "submit", "device", "complete", "commit", "shared", "release")
PERCENTILES = (50, 90, 99)


def parse(lines):
    """The events as (t_us, tid, event, rest), in time order."""
    events = []
    for line in lines:
        m = EVENT_RE.match(line)
        if m is None:
            continue
        _comm, tid, _cpu, t, name, rest = m.groups()
        events.append((float(t) * 1e6, int(tid), name, rest))
    events.sort(key=lambda e: e[0])
    return events


def user_data(rest):
    m = USER_DATA_RE.search(rest)
    return int(m.group(1), 0) if m else None


def ring(rest):
    m = RING_RE.search(rest)
    return m.group(1) if m else None


def percentile(values, p):
    """The nearest-rank percentile of values (sorted here), or None when empty."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, (len(s) * p + 99) // 100 - 1))
    return s[k]


class Commit:
    def __init__(self, submit_us, alone):
        self.submit_us = submit_us
        self.alone = alone          # no other write of the server's in flight while it was
        self.cqe_us = None
        self.first_issue_us = None
        self.last_done_us = None
        self.meta = False           # a metadata write (rwbs with M) ran inside it
        self.last_arrival_us = None  # the newest recv completion before it


def analyze(events, pid):
    """Stage samples (lists of µs) and counts, for the server whose ring belongs to pid."""
    rings = set()       # the server's rings (a completion may run in another task's context)
    ops = {}            # user_data -> opcode, from the server's submissions
    writes = {}         # user_data -> Commit in flight
    commits = []
    last_arrival = None  # the newest recv completion since the last commit started
    release = []
    awaiting_send = []  # commits whose CQE came and whose next send has not
    for t, tid, name, rest in events:
        if name == "io_uring:io_uring_submit_req" and tid == pid:
            ud = user_data(rest)
            op = OPCODE_RE.search(rest)
            if ud is None or op is None:
                continue
            rings.add(ring(rest))
            ops[ud] = op.group(1)
            if op.group(1) == "WRITE":
                c = Commit(t, alone=not writes)
                for other in writes.values():
                    other.alone = False
                c.last_arrival_us, last_arrival = last_arrival, None
                writes[ud] = c
                commits.append(c)
            elif op.group(1) == "SEND":
                for c in awaiting_send:
                    release.append(t - c.cqe_us)
                awaiting_send = []
        elif name == "io_uring:io_uring_complete" and ring(rest) in rings:
            ud = user_data(rest)
            if ud in writes:
                c = writes.pop(ud)
                c.cqe_us = t
                awaiting_send.append(c)
            elif ops.get(ud) == "RECV":
                m = RESULT_RE.search(rest)
                if m and int(m.group(1)) > 0:
                    last_arrival = t
        elif name in ("block:block_rq_issue", "block:block_rq_complete") and len(writes) == 1:
            c = next(iter(writes.values()))
            m = BLOCK_RWBS_RE.match(rest)
            rwbs = m.group(1) if m else ""
            if name == "block:block_rq_issue":
                if c.first_issue_us is None and ("W" in rwbs or "F" in rwbs):
                    c.first_issue_us = t
                if "M" in rwbs:
                    c.meta = True
            elif c.first_issue_us is not None:
                c.last_done_us = t
    done = [c for c in commits if c.cqe_us is not None]
    samples = {s: [] for s in STAGES}
    samples["release"] = release
    for c in done:
        samples["commit"].append(c.cqe_us - c.submit_us)
        if not c.alone:
            samples["shared"].append(c.cqe_us - c.submit_us)
        if c.last_arrival_us is not None:
            samples["ingest"].append(c.submit_us - c.last_arrival_us)
        if c.alone and c.first_issue_us is not None and c.last_done_us is not None:
            samples["submit"].append(c.first_issue_us - c.submit_us)
            samples["device"].append(c.last_done_us - c.first_issue_us)
            samples["complete"].append(c.cqe_us - c.last_done_us)
    counts = {
        "commits": len(done),
        "alone": sum(1 for c in done if c.alone),
        "meta_writes": sum(1 for c in done if c.meta),
    }
    return samples, counts


def report(samples, counts, out):
    out.write("stage     count      p50      p90      p99  (µs)\n")
    fields = [f"{k}={v}" for k, v in counts.items()]
    for stage in STAGES:
        values = samples[stage]
        ps = [percentile(values, p) for p in PERCENTILES]
        cells = " ".join(f"{p:8.0f}" if p is not None else "       -" for p in ps)
        out.write(f"{stage:<9} {len(values):6d} {cells}\n")
        for p, v in zip(PERCENTILES, ps):
            if p in (50, 99):
                fields.append(f"{stage}_p{p}_us={v:.0f}" if v is not None else
                              f"{stage}_p{p}_us=-")
    out.write("TRACE " + " ".join(fields) + "\n")


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pid", type=int, required=True, help="spoold's pid (its loop thread)")
    ap.add_argument("file", nargs="?", help="perf script output (default: standard input)")
    args = ap.parse_args(argv)
    with (open(args.file) if args.file else sys.stdin) as f:
        samples, counts = analyze(parse(f), args.pid)
    if counts["commits"] == 0:
        sys.stderr.write("trace_latency: no write of pid %d in the trace\n" % args.pid)
        return 1
    report(samples, counts, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
