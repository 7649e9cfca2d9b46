#!/usr/bin/env bash
# bench/compare's table from a results file (--from): medians per target and the
# same-repetition ratios, on a small made-up grid whose answers are known. No server runs.
# Usage: test_compare_table.sh COMPARE
set -uo pipefail
compare=${1:?usage: test_compare_table.sh COMPARE}
dir=$(mktemp -d "${TMPDIR:-/tmp}/compare-table.XXXXXX")
trap 'rm -rf "$dir"' EXIT

line() { # W REP target jobs_per_s lat_p99_us rate [fetch_batch [body [send_lag_p99_us]]]
    echo "W=$1 REP=$2 RESULT target=$3 mode=e2e producers=1 consumers=1 depth=1 batch=1" \
        "${7:+fetch_batch=$7}" \
        "size=100 ${8:+body=$8 }queues=1 rate=$6 jobs=10 seconds=3.000 jobs_per_s=$4 mb_per_s=1.00" \
        "lat_p50_us=100.0 lat_p99_us=$5 ${9:+send_lag_p99_us=$9 }produced=10 consumed=10" \
        "errors=0 server_cpu_s=1.00"
}
{
    # Workload 0 (closed loop): spool 300/400/500 jobs/s against redis 100/100/250.
    # Their fetch batches: spool 32, beanstalkd 1, redis 32 in the runs that say so.
    line 0 1 spool 300 1000 0 32 "" 50000 # closed loop: no lag flag
    line 0 1 beanstalkd 10 1000 0 1; line 0 1 redis 100 1000 0 32
    line 0 2 spool 400 1000 0 32; line 0 2 beanstalkd 20 1000 0 1; line 0 2 redis 100 1000 0 32
    line 0 3 spool 500 1000 0 32; line 0 3 beanstalkd 50 1000 0 1; line 0 3 redis 250 1000 0 32
    # Workload 2 (open loop), from before fetch_batch= was printed: batch= (1) is shown.
    # Workload 1 did not run (bench/compare --workloads "0 2"): it gets no row.: put p99 of spool 1000/2000/4000 against redis 2000/1000/4000.
    line 2 1 spool 1000 1000 1000; line 2 1 beanstalkd 1000 5000 1000
    line 2 1 redis 1000 2000 1000
    line 2 2 spool 1000 2000 1000; line 2 2 beanstalkd 1000 5000 1000
    line 2 2 redis 1000 1000 1000 "" "" 20000 # the generator 20 ms late: flagged
    line 2 3 spool 1000 4000 1000; line 2 3 beanstalkd 1000 5000 1000
    line 2 3 redis 1000 4000 1000
    # Workload 1 (produce): fetch_batch=0, shown as "-".
    line 1 1 spool 700 1000 0 0; line 1 1 redis 100 1000 0 0
    # Workload 0 again with json bodies (bench/compare --body "random json"), and random ones:
    # rows of their own, labelled; ratios by repetition 2.00, 3.00, 1.00 and 5.00 (one rep).
    line 0 1 spool 200 1000 0 32 json; line 0 1 redis 100 1000 0 32 json
    line 0 2 spool 600 1000 0 32 json; line 0 2 redis 200 1000 0 32 json
    line 0 3 spool 900 1000 0 32 json; line 0 3 redis 900 1000 0 32 json
    line 0 1 spool 5000 1000 0 32 random; line 0 1 redis 1000 1000 0 32 random
    echo "W=0 REP=2 FAILED target=redis body=random"
    echo "DISK before_us=300 after_us=400"
} >"$dir/raw"

out=$("$compare" --from "$dir/raw" 2>&1) || { echo "compare failed:"; echo "$out"; exit 1; }
failures=0
expect() {
    if ! grep -qF -- "$1" <<<"$out"; then
        echo "FAIL: missing: $1"
        failures=$((failures + 1))
    fi
}
# Lines without body= are from before --body, when every body was 'x'.
expect "| e2e 100 B, 8P+8C, depth 32, x bodies | spool | 32 | 400 |"
expect "| e2e 100 B, 8P+8C, depth 32, x bodies | beanstalkd | 1 | 20 |"
expect "| e2e 100 B, 8P+8C, depth 32, x bodies | redis | 32 | 100 | 1.00 | 100 | 1000 | - | - | 1.00 | 0 | - |"
expect "| e2e 100 B, 8P+8C, depth 32, json bodies | spool | 32 | 600 |"
expect "| e2e 100 B, 8P+8C, depth 32, json bodies | redis | 32 | 200 |"
expect "| e2e 100 B, 8P+8C, depth 32, random bodies | spool | 32 | 5000 |"
expect "| e2e 100 B, 8P+8C, depth 32, random bodies | redis | 32 | 1000 | 1.00 | 100 | 1000 | - | - | 1.00 | 0 (1 runs failed) | - |"
expect "| e2e 100 B, 8P+8C, depth 32, json bodies | - | 2.00, 3.00, 1.00 (median 2.00) |"
expect "| e2e 100 B, 8P+8C, depth 32, random bodies | - | 5.00 (median 5.00) |"
expect "| e2e 4 KiB, open loop 1000/s, x bodies | spool | 1 | 1000 |"
expect "took 300 µs before the grid, 400 µs after"
# Ratios by repetition: 3.00, 4.00, 2.00 -> median 3.00; open loop p99 2.00, 0.50, 1.00.
expect "| e2e 100 B, 8P+8C, depth 32, x bodies | 30.00, 20.00, 10.00 (median 20.00) | 3.00, 4.00, 2.00 (median 3.00) |"
expect "| e2e 4 KiB, open loop 1000/s, x bodies | 5.00, 2.50, 1.25 (median 2.50) | 2.00, 0.50†, 1.00 (median 1.00) |"
expect "† the generator sent more than 10 ms late at p99"
expect "| produce 100 B, 8 conns, batch 64, x bodies | spool | - | 700 |"
# A grid of some workloads only (bench/compare --workloads 0): no rows for the others.
grep '^W=0 ' "$dir/raw" >"$dir/raw0"
if "$compare" --from "$dir/raw0" 2>&1 | grep -q "produce 100 B\|open loop"; then
    echo "FAIL: a row for a workload that did not run"
    failures=$((failures + 1))
fi
# An unknown body kind is refused before anything runs.
if "$compare" --body "random zip" --from "$dir/raw" >/dev/null 2>&1; then
    echo "FAIL: --body zip accepted"
    failures=$((failures + 1))
fi
if [ "$failures" -ne 0 ]; then
    echo "$out"
    exit 1
fi
echo "ok: table and same-repetition ratios"
