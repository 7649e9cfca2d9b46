#!/usr/bin/env bash
# Does scraping /metrics slow spool down? (issue 14) One spoold with 10,000 queues (one ready
# job each, so every snapshot visits all of them and every scrape folds all but the labelled
# ones), then the e2e workload of spool-bench, REPS pairs of runs without and with a scraper
# that GETs /metrics once a second (as Prometheus would, at 15x its default rate).
#
# Fairness on a shared, noisy machine:
#   - the scraper is one long-lived process on one keep-alive connection (as Prometheus is),
#     not a curl started every second: starting curl costs some 25 ms of CPU, several times
#     what spoold spends on the scrape, and that is the benchmark's cost, not the server's;
#   - pairs alternate their order (base first, then scraped first: ABBA), so a drift of the
#     machine's load within a pair cancels across pairs instead of always favouring one side;
#   - the verdict is the median of the same-pair ratios (scraped / base), printed with its
#     spread (quartiles, min, max), next to the server's own CPU per scrape (loop thread and
#     HTTP threads, from /proc schedstat) and the scraper's, which do not depend on the noise.
# Prints each run's RESULT line, then one summary RESULT line.
# Usage: bench/http_scrape.sh [BUILD_DIR] (default build). Environment: REPS (pairs, 5),
# DURATION seconds per run (8), QUEUES (10000), BENCH_ARGS (spool-bench e2e load options),
# SCRAPE_PATH (/metrics; /api/v1/server costs the loop the same snapshot with almost no
# rendering), SCRAPE_INTERVAL_S (1), SCRAPE (1; 0: the "scraped" runs do not scrape, an A/A
# run whose ratios' spread is what this machine's noise alone gives).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
reps=${REPS:-5}
duration=${DURATION:-8}
queues=${QUEUES:-10000}
load=${BENCH_ARGS:---producers 2 --consumers 2 --depth 8 --batch 4 --queues 8}
path=${SCRAPE_PATH:-/metrics}
interval=${SCRAPE_INTERVAL_S:-1}
dir=$(mktemp -d /tmp/spool-http-bench.XXXXXX)
pid=
scraper=
cleanup() {
    [ -n "$scraper" ] && kill "$scraper" 2>/dev/null && kill -CONT "$scraper" 2>/dev/null
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

# The scraper: one GET every interval on one connection, at fixed times (a slow answer does not
# shift the next one). Per scrape it appends the request's time and what the snapshot behind
# the page cost the loop (spool_metrics_snapshot_build_seconds, "na" on a page without it).
cat >"$dir/scraper.py" <<'PY'
import http.client, signal, sys, time
host, path, out, interval = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
key = b"\nspool_metrics_snapshot_build_seconds "
conn = http.client.HTTPConnection(host, timeout=10)

def get():
    for attempt in (1, 2):  # an idle connection the server closed: open a new one once
        try:
            conn.request("GET", path)
            return conn.getresponse().read()
        except (http.client.HTTPException, OSError):
            conn.close()
            if attempt == 2:
                raise

with open(out, "a", buffering=1) as f:
    due = time.monotonic()
    while True:
        t0 = time.monotonic()
        if t0 - due > interval:
            due = t0  # continued after a pause (SIGSTOP): no burst of catch-up scrapes
        body = get()
        took = time.monotonic() - t0
        i = body.find(key)
        build = body[i + len(key):body.index(b"\n", i + 1)].decode() if i >= 0 else "na"
        f.write(f"{took:.6f} {build}\n")
        due += interval
        time.sleep(max(0.0, due - time.monotonic()))
PY

# CPU (ns) a thread has run so far: spoold's HTTP threads, the scraper (one thread).
http_ns() {
    local sum=0 t ns
    for t in /proc/$pid/task/*; do # (io_uring workers come and go: skip a vanished one)
        [ "$(cat "$t/comm" 2>/dev/null)" = MHD-worker ] || continue
        ns=$(cut -d' ' -f1 "$t/schedstat" 2>/dev/null) && sum=$((sum + ns))
    done
    echo $sum
}
scraper_ns() { cut -d' ' -f1 "/proc/$scraper/schedstat"; }

run() { # LABEL: one e2e run, its RESULT line appended to $dir/LABEL
    local line
    line=$("$build/bench/spool-bench" e2e --server "$addr" $load --duration "$duration" \
        --warmup 1 --queue-prefix e2e --quiet)
    printf '%-8s%s\n' "$1" "$line"
    echo "$line" >>"$dir/$1"
}

# The scraper starts once (its start-up is not a scrape's cost) and is stopped (SIGSTOP)
# outside the scraped runs; its CPU and the HTTP threads' are summed over those runs.
run_scraped() {
    local h0 s0
    h0=$(http_ns); s0=$(scraper_ns)
    [ "${SCRAPE:-1}" = 0 ] || kill -CONT "$scraper"
    run scraped
    kill -STOP "$scraper"
    echo "$(( $(http_ns) - h0 )) $(( $(scraper_ns) - s0 ))" >>"$dir/cpu_ns"
}

: >"$dir/base"; : >"$dir/scraped"; : >"$dir/scrapes"; : >"$dir/cpu_ns"
python3 "$dir/scraper.py" "$http" "$path" "$dir/scrapes" "$interval" & scraper=$!
for _ in $(seq 1000); do [ -s "$dir/scrapes" ] && break; sleep 0.01; done
kill -STOP "$scraper" # the interpreter has started and scraped once: not counted
sleep 0.1; : >"$dir/scrapes"
for r in $(seq "$reps"); do
    if [ $((r % 2)) -eq 1 ]; then run base; run_scraped; else run_scraped; run base; fi
done

med() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
# p25/p50/p75/min/max of a column of numbers (nearest rank)
spread() {
    sort -g | awk '{a[NR]=$1} END {q=int((NR+3)/4); printf "p25=%s p50=%s p75=%s min=%s max=%s",
        a[q], (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2, a[NR+1-q], a[1], a[NR]}'
}
col() { grep -o " $1=[0-9.]*" "$2" | cut -d= -f2; }
# Same-pair ratios (scraped over base): the machine's drift between pairs cancels within one.
ratios() { paste -d' ' <(col "$1" "$dir/base") <(col "$1" "$dir/scraped") |
    awk '{printf "%.3f\n", $2/$1}'; }
ratios jobs_per_s >"$dir/rt"; ratios lat_p99_us >"$dir/rp"
echo "throughput ratios: $(tr '\n' ' ' <"$dir/rt")  put p99 ratios: $(tr '\n' ' ' <"$dir/rp")"
echo "throughput ratio $(spread <"$dir/rt")"
echo "put p99 ratio    $(spread <"$dir/rp")"
bt=$(col jobs_per_s "$dir/base" | med); st=$(col jobs_per_s "$dir/scraped" | med)
bp=$(col lat_p99_us "$dir/base" | med); sp=$(col lat_p99_us "$dir/scraped" | med)
scrapes=$(wc -l <"$dir/scrapes")
build_ms=na build_max_ms=na
if grep -qv ' na$' "$dir/scrapes"; then
    build_ms=$(awk '$2 != "na" {print $2 * 1000}' "$dir/scrapes" | med)
    build_max_ms=$(awk '$2 != "na" {print $2 * 1000}' "$dir/scrapes" | sort -g | tail -1)
fi
request_ms=$(awk '{print $1 * 1000}' "$dir/scrapes" | med)
# CPU per scrape: spoold's HTTP threads (rendering, sending) and the scraper's, during the
# scraped runs. The loop's share is snapshot_build_ms (it times its own copy).
cpu_ms() { awk -v n="$scrapes" -v c="$1" '{s += $c} END {printf "%.2f", n ? s / 1e6 / n : 0}' \
    "$dir/cpu_ns"; }
echo "RESULT bench=http_scrape queues=$queues reps=$reps path=$path scrapes=$scrapes" \
    "snapshot_build_ms_p50=$build_ms snapshot_build_ms_max=$build_max_ms" \
    "scrape_request_ms_p50=$request_ms http_cpu_ms_per_scrape=$(cpu_ms 1)" \
    "scraper_cpu_ms_per_scrape=$(cpu_ms 2)" \
    "median_pair_throughput_ratio=$(med <"$dir/rt") median_pair_put_p99_ratio=$(med <"$dir/rp")" \
    "base_jobs_per_s=$bt scraped_jobs_per_s=$st base_put_p99_us=$bp scraped_put_p99_us=$sp"
