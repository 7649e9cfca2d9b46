#!/usr/bin/env bash
# Does compaction slow puts down? (issue 11, item 5) spool-bench e2e (8 producers, 8
# consumers, depth 32, 100 B) against spoold with 8 MiB segments while a side client pins one
# delayed job every 20 ms, so segments keep becoming mostly dead and compaction runs; runs
# alternate --compact-percent 0 (off) and 25 (the default), REPS times each. Prints each run's
# line, then the medians and their ratio:
#   RESULT bench=compaction_e2e reps=N off_jobs_per_s=... on_jobs_per_s=... on_vs_off=...
# Usage: bench/compaction_e2e.sh [BUILD_DIR] (default build). Environment: REPS (5), DURATION
# seconds per run (6). Servers listen on 127.0.0.1 port 0 and are stopped by pid.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
reps=${REPS:-5}
duration=${DURATION:-6}
off=()
on=()
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for rep in $(seq "$reps"); do
  for pct in 0 25; do
    d=$(mktemp -d /tmp/spool-compaction-e2e.XXXXXX)
    "$build/src/spoold" --data "$d/data" --listen 127.0.0.1:0 --ready-file "$d/ready" \
      --segment-size 8m --compact-percent "$pct" 2>"$d/log" &
    pid=$!
    for _ in $(seq 200); do [ -s "$d/ready" ] && break; sleep 0.05; done
    addr=$(cut -d' ' -f1 "$d/ready")
    PYTHONPATH="$root/clients/python" timeout $((duration + 20)) python3 -c "
import spool, time
end = time.monotonic() + $duration + 1
with spool.Client('$addr') as c:
    while time.monotonic() < end:
        c.put('pinned', b'x' * 100, delay_ms=3600000)
        time.sleep(0.02)
" &
    side=$!
    line=$("$build/bench/spool-bench" e2e --server "$addr" --producers 8 --consumers 8 \
      --depth 32 --size 100 --duration "$duration" --quiet --server-pid "$pid" | grep RESULT)
    wait "$side" || true
    cycles=$(grep -c "msg=compaction " "$d/log" || true)
    kill "$pid"
    wait "$pid" || true
    rate=$(echo "$line" | grep -o 'jobs_per_s=[0-9.]*' | cut -d= -f2)
    echo "compact_percent=$pct rep=$rep compaction_cycles=$cycles jobs_per_s=$rate"
    if [ "$pct" = 0 ]; then off+=("$rate"); else on+=("$rate"); fi
    rm -rf "$d"
  done
done
moff=$(median "${off[@]}")
mon=$(median "${on[@]}")
echo "RESULT bench=compaction_e2e reps=$reps off_jobs_per_s=$moff on_jobs_per_s=$mon" \
  "on_vs_off=$(awk -v a="$mon" -v b="$moff" 'BEGIN {printf "%.3f", a / b}')"
