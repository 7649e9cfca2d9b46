#!/usr/bin/env bash
# spool-bench against the real spoold: a 2-second e2e run (2 producers, 2 consumers, depth 8,
# batches of 4, with a warmup) must finish with every confirmed put consumed, at least one job,
# no error reply, and a spoold still alive afterwards; then a short produce and a consume run
# (pre-fill, then drain) on the same server must account for every job too.
# The server's own count (spool stats) must agree with the generator's: every put it counted
# is there, and nothing is left ready or reserved after e2e. Then the floor, leases and
# backlog modes, each checked on its own.
# Usage: test_bench_e2e.sh SPOOL_BENCH SPOOLD SPOOL. spoold listens on 127.0.0.1 port 0 in a
# temp dir and is stopped by pid.
script_name=test_bench_e2e.sh
# shellcheck source=bench-tool-setup.sh
source "$(dirname "$0")/bench-tool-setup.sh"

"$spoold" --data "$dir/data" --listen 127.0.0.1:0 --ready-file "$dir/ready" --sync always \
    2>"$dir/spoold.log" &
pid=$!
for _ in $(seq 500); do
    [ -s "$dir/ready" ] && break
    kill -0 "$pid" 2>/dev/null || { echo "spoold exited:"; cat "$dir/spoold.log"; exit 1; }
    sleep 0.01
done
[ -s "$dir/ready" ] || { echo "spoold did not become ready"; exit 1; }
addr=$(cat "$dir/ready")

failures=0
last_produced=""
line_seen=""
# Run spool-bench with the given arguments; check its RESULT line. $1 = what must hold:
# "e2e" (produced == consumed), "produce" (produced == jobs), "consume" (consumed == jobs).
check_run() {
    local kind=$1 line
    shift
    line=$(timeout 60 "$bench" "$@" --target spool --server "$addr" --server-pid "$pid" --quiet)
    local rc=$?
    echo "$line"
    if [ $rc -ne 0 ] || [[ "$line" != RESULT* ]]; then
        echo "FAIL: spool-bench $* exited $rc"
        failures=$((failures + 1))
        return
    fi
    last_produced=$(grep -o ' produced=[0-9]*' <<<"$line" | cut -d= -f2)
    line_seen=$line
    local jobs produced consumed errors
    jobs=$(grep -o ' jobs=[0-9]*' <<<"$line" | cut -d= -f2)
    produced=$(grep -o ' produced=[0-9]*' <<<"$line" | cut -d= -f2)
    consumed=$(grep -o ' consumed=[0-9]*' <<<"$line" | cut -d= -f2)
    errors=$(grep -o ' errors=[0-9]*' <<<"$line" | cut -d= -f2)
    local ok=1
    [ "${jobs:-0}" -gt 0 ] && [ "${errors:-1}" -eq 0 ] || ok=0
    case "$kind" in
    e2e) [ "$produced" -eq "$consumed" ] || ok=0 ;;
    produce) [ "$produced" -eq "$jobs" ] || ok=0 ;;
    consume) [ "$consumed" -eq "$jobs" ] && [ "$produced" -eq "$jobs" ] || ok=0 ;;
    esac
    if [ $ok -eq 0 ]; then
        echo "FAIL: $kind run: jobs=$jobs produced=$produced consumed=$consumed errors=$errors"
        failures=$((failures + 1))
    fi
}

check_run e2e e2e --duration 2 --warmup 0.5 --producers 2 --consumers 2 --depth 8 --batch 4 \
    --queue-prefix bench-e2e
# The server's view of that queue: {"queue":...,"ready":N,...,"reserved":N,...,"total_put":N}
stats=$("$spool" --server "$addr" --json stats bench-e2e-q0)
echo "$stats"
field() { grep -o "\"$1\":[0-9]*" <<<"$stats" | cut -d: -f2; }
if [ "$(field total_put)" != "$last_produced" ] || [ "$(field ready)" != 0 ] ||
    [ "$(field reserved)" != 0 ]; then
    echo "FAIL: server stats disagree with the e2e run (produced=$last_produced)"
    failures=$((failures + 1))
fi
check_run produce produce --count 5000 --producers 2 --depth 4 --batch 16
check_run consume consume --count 5000 --producers 2 --consumers 2 --depth 4 --batch 16
check_run e2e e2e --count 2000 --rate 2000 --producers 1 --consumers 1 --depth 16 --size 4096
# Fetch batches apart from put batches, larger and smaller (a frame's slots fit the larger),
# every job accounted for, and the batch used in the RESULT line.
for batches in "1 32" "16 2"; do
    read -r put_batch fetch_batch <<<"$batches"
    check_run e2e e2e --count 3000 --producers 2 --consumers 2 --depth 8 --batch "$put_batch" \
        --fetch-batch "$fetch_batch"
    if ! grep -q " batch=$put_batch fetch_batch=$fetch_batch " <<<"$line_seen"; then
        echo "FAIL: RESULT does not say batch=$put_batch fetch_batch=$fetch_batch"
        failures=$((failures + 1))
    fi
done
# Each body kind: named in the RESULT line (random by default), and its send stamp read back
# at delivery (a json body carries it as hex digits): deliver p50 between 1 µs and 10 s.
for body in default random x json; do
    args=()
    [ "$body" = default ] || args=(--body "$body")
    check_run e2e e2e --count 2000 --producers 2 --consumers 2 --depth 8 --batch 8 --size 200 \
        "${args[@]}"
    want=${body/default/random}
    deliver=$(grep -o ' deliver_p50_us=[0-9]*' <<<"$line_seen" | cut -d= -f2)
    if ! grep -q " body=$want " <<<"$line_seen" || [ "${deliver:-0}" -lt 1 ] ||
        [ "$deliver" -gt 10000000 ]; then
        echo "FAIL: --body $body: RESULT lacks body=$want or deliver_p50_us=$deliver is off"
        failures=$((failures + 1))
    fi
done
if "$bench" e2e --body zip --server "$addr" --count 10 --quiet >/dev/null 2>&1; then
    echo "FAIL: --body zip accepted"
    failures=$((failures + 1))
fi
# floor: the commit of a 4 KiB job's batch (8 KiB) and a loopback round trip, each measured
# (non-zero), the floor their sum, the commit's kind named as spoold would make it here (direct
# on a file system with O_DIRECT, as the temp dir's is unless it is tmpfs), and its scratch file
# gone; a size out of range refused (2).
line=$(timeout 60 "$bench" floor --dir "$dir" --size 4096 --rate 2000 --count 100)
echo "$line"
num() { grep -o " $1=[0-9.]*" <<<"$line" | cut -d= -f2; }
commit_io=direct
[ "$(stat -f -c %T "$dir")" = tmpfs ] && commit_io=buffered
if [[ "$line" != "RESULT mode=floor "* ]] || [ "$(num write_bytes)" != 8192 ] ||
    [[ "$line" != *" commit_io=$commit_io "* ]] ||
    ! awk -v c="$(num commit_p50_us)" -v r="$(num rtt_p50_us)" -v f="$(num floor_p50_us)" \
        'BEGIN { exit !(c > 0 && r > 0 && f - (c + r) < 0.2 && (c + r) - f < 0.2) }' ||
    [ -e "$dir/spool-bench-floor.dat" ]; then
    echo "FAIL: spool-bench floor: $line"
    failures=$((failures + 1))
fi
"$bench" floor --dir "$dir" --size 0 >/dev/null 2>&1
if [ $? -ne 2 ]; then
    echo "FAIL: spool-bench floor --size 0 not refused with 2"
    failures=$((failures + 1))
fi
# leases: the lease set and an ack timed with 2000 leases held (non-zero figures, the ratio
# their quotient within the rounding of the printed figures); no lease count refused (2).
line=$(timeout 60 "$bench" leases --leases 2000 --reps 1)
echo "$line"
if [[ "$line" != "RESULT mode=leases leases=2000 reps=1 "* ]] ||
    ! awk -v r="$(num runheap_ns)" -v h="$(num heap_ns)" -v q="$(num heap_over_runheap)" \
        -v a="$(num ack_ns)" \
        'BEGIN { exit !(r > 0 && h > 0 && a > 0 && q > 0 && (h / r) / q < 1.05 &&
                        q / (h / r) < 1.05) }'
then
    echo "FAIL: spool-bench leases: $line"
    failures=$((failures + 1))
fi
"$bench" leases --leases 0 >/dev/null 2>&1
if [ $? -ne 2 ]; then
    echo "FAIL: spool-bench leases --leases 0 not refused with 2"
    failures=$((failures + 1))
fi
# backlog starts spoold itself (this build's, in $dir): 200 jobs filled, restarted, drained.
# Its commits are written as spoold says in its stop line (direct here unless $dir is tmpfs),
# or buffered when --spoold-arg turns direct I/O off; an argument spoold refuses fails the run
# (1), and its temp directory is kept for the log.
for direct in on off; do
    want=buffered+fdatasync
    [ "$direct" = on ] && [ "$commit_io" = direct ] && want=direct
    line=$(SPOOLD="$spoold" timeout 60 "$bench" backlog --jobs 200 --dir "$dir" \
        --spoold-arg=--direct-io --spoold-arg="$direct")
    echo "$line"
    if [[ "$line" != "RESULT bench=backlog jobs=200 "* ]] || [[ "$line" != *" commit_io=$want" ]]
    then
        echo "FAIL: spool-bench backlog --spoold-arg=--direct-io --spoold-arg=$direct: $line"
        failures=$((failures + 1))
    fi
done
SPOOLD="$spoold" timeout 60 "$bench" backlog --jobs 200 --dir "$dir" \
    --spoold-arg=--no-such-option >/dev/null 2>&1
if [ $? -ne 1 ]; then
    echo "FAIL: spool-bench backlog with a refused spoold argument did not exit 1"
    failures=$((failures + 1))
fi

if ! kill -0 "$pid" 2>/dev/null; then
    echo "FAIL: spoold died during the runs"
    cat "$dir/spoold.log"
    failures=$((failures + 1))
fi
kill -TERM "$pid" 2>/dev/null
wait "$pid"
rc=$?
pid=""
if [ $rc -ne 0 ]; then
    echo "FAIL: spoold exited $rc on SIGTERM"
    failures=$((failures + 1))
fi
[ $failures -eq 0 ] && echo "ok" || exit 1
