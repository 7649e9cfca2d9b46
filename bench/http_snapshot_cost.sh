#!/usr/bin/env bash
# What a snapshot costs the loop with 10,000 idle queues (one ready job each) while a trickle
# of puts touches 8 others: 40 scrapes of /metrics 60 ms apart (each takes a new snapshot),
# the first 5 dropped, then the median, min and max of spool_metrics_snapshot_build_seconds.
# No load runs, so this isolates the loop's copy from the scrape's CPU (bench/http_scrape.sh
# measures the whole effect on a workload). Usage: bench/http_snapshot_cost.sh [SPOOLD]
# (default build/src/spoold); to compare two builds, alternate them in one sitting.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
spoold=${1:-$root/build/src/spoold}
dir=$(mktemp -d /tmp/obs2-idle.XXXXXX)
"$spoold" --data "$dir/data" --listen 127.0.0.1:0 --ready-file "$dir/ready" --http 127.0.0.1:0 --http-ready-file "$dir/http" 2>"$dir/log" &
pid=$!
for _ in $(seq 1000); do [ -s "$dir/http" ] && [ -s "$dir/ready" ] && break; sleep 0.01; done
addr=$(cat "$dir/ready"); http=$(cat "$dir/http")
PYTHONPATH="$root/clients/python" python3 - "$addr" "$http" <<'PY'
import sys, time, urllib.request, statistics
import spool
addr, http = sys.argv[1], sys.argv[2]
with spool.Client(addr) as c:
    c.put_many([(f"idle-{i:05d}", b"x") for i in range(10000)])
    vals = []
    for i in range(40):
        c.put(f"hot-{i % 8}", b"y")
        time.sleep(0.06)
        body = urllib.request.urlopen(f"http://{http}/metrics").read().decode()
        for line in body.splitlines():
            if line.startswith("spool_metrics_snapshot_build_seconds "):
                vals.append(float(line.split()[1]) * 1000)
    vals = vals[5:]
    print(f"RESULT bench=http_snapshot_cost queues=10000 build_ms_p50={statistics.median(vals):.3f} build_ms_min={min(vals):.3f} build_ms_max={max(vals):.3f} n={len(vals)}")
PY
kill "$pid"; wait "$pid" || true; rm -rf "$dir"
