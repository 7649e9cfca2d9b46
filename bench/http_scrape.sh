#!/usr/bin/env bash
# Does scraping /metrics slow spool down? (issue 14) One spoold with 10,000 queues (one ready
# job each, so every snapshot copies and every scrape renders all of them), then the e2e
# workload of spool-bench, alternating runs without and with a scraper that GETs /metrics once
# a second (as Prometheus would, at 15x its default rate), REPS times each. Prints each run's
# RESULT line, then one line with the medians and their ratios:
#   RESULT bench=http_scrape queues=10000 reps=N base_jobs_per_s=... scraped_jobs_per_s=...
#          throughput_change_pct=... base_put_p99_us=... scraped_put_p99_us=... p99_change_pct=...
# Usage: bench/http_scrape.sh [BUILD_DIR] (default build). Environment: REPS (5), DURATION
# seconds per run (8), QUEUES (10000), BENCH_ARGS (spool-bench e2e load options), SCRAPE_PATH
# (/metrics; /api/v1/server costs the loop the same snapshot with almost no rendering).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
reps=${REPS:-5}
duration=${DURATION:-8}
queues=${QUEUES:-10000}
load=${BENCH_ARGS:---producers 2 --consumers 2 --depth 8 --batch 4 --queues 8}
dir=$(mktemp -d /tmp/spool-http-bench.XXXXXX)
pid=
scraper=
cleanup() {
    [ -n "$scraper" ] && kill "$scraper" 2>/dev/null
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT

"$build/src/spoold" --data "$dir/data" --listen 127.0.0.1:0 --ready-file "$dir/ready" \
    --http 127.0.0.1:0 --http-ready-file "$dir/http" 2>"$dir/spoold.log" &
pid=$!
for _ in $(seq 1000); do [ -s "$dir/http" ] && [ -s "$dir/ready" ] && break; sleep 0.01; done
addr=$(cat "$dir/ready")
http=$(cat "$dir/http")

# 10,000 queues, one job each (put in pipelined batches by the Python client).
PYTHONPATH="$root/clients/python" python3 - "$addr" "$queues" <<'PY'
import sys
import spool
addr, n = sys.argv[1], int(sys.argv[2])
with spool.Client(addr) as c:
    c.put_many([(f"idle-{i:05d}", b"x") for i in range(n)])
PY
curl -s "http://$http/metrics" -o "$dir/metrics.txt"
echo "queues=$(curl -s "http://$http/api/v1/server" | sed 's/.*"queues":\([0-9]*\).*/\1/')" \
    "metrics_bytes=$(wc -c <"$dir/metrics.txt")" >&2

# Each scrape also records what its snapshot cost the loop (spool_metrics_snapshot_build_seconds)
# and what the whole request took (curl's time_total: wake the loop, copy, render, transfer).
scrape() {
    while true; do
        curl -s -o "$dir/page" -w '%{time_total}\n' "http://$http${SCRAPE_PATH:-/metrics}" >>"$dir/request_s"
        sed -n 's/^spool_metrics_snapshot_build_seconds //p' "$dir/page" >>"$dir/build_s"
        sleep 1
    done
}

run() {
    "$build/bench/spool-bench" e2e --server "$addr" $load --duration "$duration" --warmup 1 \
        --queue-prefix e2e --quiet
}

: >"$dir/base" ; : >"$dir/scraped"; : >"$dir/build_s"; : >"$dir/request_s"
for r in $(seq "$reps"); do
    line=$(run); echo "base    $line"; echo "$line" >>"$dir/base"
    scrape & scraper=$!
    line=$(run); echo "scraped $line"; echo "$line" >>"$dir/scraped"
    kill "$scraper"; wait "$scraper" 2>/dev/null || true; scraper=
done

median() { # KEY FILE
    grep -o " $1=[0-9.]*" "$2" | cut -d= -f2 | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'
}
bt=$(median jobs_per_s "$dir/base"); st=$(median jobs_per_s "$dir/scraped")
bp=$(median lat_p99_us "$dir/base"); sp=$(median lat_p99_us "$dir/scraped")
# Same-repetition ratios (scraped over base), then their medians: the machine's drift between
# repetitions (other work, the disk) cancels within a pair.
ratios() { # KEY
    paste -d' ' <(grep -o " $1=[0-9.]*" "$dir/base" | cut -d= -f2) \
        <(grep -o " $1=[0-9.]*" "$dir/scraped" | cut -d= -f2) | awk '{printf "%.3f\n", $2/$1}'
}
ratios jobs_per_s >"$dir/rt"; ratios lat_p99_us >"$dir/rp"
echo "throughput ratios: $(tr '\n' ' ' <"$dir/rt")  put p99 ratios: $(tr '\n' ' ' <"$dir/rp")"
rt=$(sort -g "$dir/rt" | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}')
rp=$(sort -g "$dir/rp" | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}')
med() { sort -g "$1" | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
build_ms=$(awk "BEGIN {printf \"%.2f\", $(med "$dir/build_s")0 * 1000}")
build_max_ms=$(sort -g "$dir/build_s" | tail -1 | awk '{printf "%.2f", $1 * 1000}')
[ -s "$dir/build_s" ] || build_ms=na build_max_ms=na # a SCRAPE_PATH without the gauge
request_ms=$(awk "BEGIN {printf \"%.1f\", $(med "$dir/request_s") * 1000}")
echo "RESULT bench=http_scrape queues=$queues reps=$reps snapshot_build_ms_p50=$build_ms" \
    "snapshot_build_ms_max=$build_max_ms scrape_request_ms_p50=$request_ms" \
    "scrapes=$(wc -l <"$dir/build_s") base_jobs_per_s=$bt" \
    "median_pair_throughput_ratio=$rt median_pair_put_p99_ratio=$rp" \
    "scraped_jobs_per_s=$st throughput_change_pct=$(awk "BEGIN {printf \"%.1f\", ($st-$bt)*100/$bt}")" \
    "base_put_p99_us=$bp scraped_put_p99_us=$sp" \
    "p99_change_pct=$(awk "BEGIN {printf \"%.1f\", ($sp-$bp)*100/$bp}")"
