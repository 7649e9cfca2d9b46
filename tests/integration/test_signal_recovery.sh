#!/usr/bin/env bash
# SIGTERM while spoold recovers: the signal must wait for the loop (spoold blocks SIGTERM and
# SIGINT before recovery), which then stops cleanly: exit status 0, "shutting down" logged,
# and every job still there on the next start. Before that fix the signal's default action
# killed a half-started server (status 143).
# The log is made long (a produce run, then SIGKILL, so no checkpoint shortens recovery); the
# signal is sent once spoold has a segment file open and is not yet listening. If recovery
# finishes before that can be seen, the run says so and checks only the clean stop.
# Usage: test_signal_recovery.sh SPOOL_BENCH SPOOLD SPOOL. spoold listens on 127.0.0.1 port 0
# in a temp dir and is stopped by pid.
script_name=test_signal_recovery.sh
# shellcheck source=bench-tool-setup.sh
source "$(dirname "$0")/bench-tool-setup.sh"

start() {
    rm -f "$dir/ready"
    "$spoold" --data "$dir/data" --listen 127.0.0.1:0 --ready-file "$dir/ready" \
        --checkpoint-interval 3600000 2>>"$dir/spoold.log" &
    pid=$!
}

wait_ready() {
    for _ in $(seq 1000); do
        [ -s "$dir/ready" ] && return 0
        kill -0 "$pid" 2>/dev/null || { echo "spoold exited:"; cat "$dir/spoold.log"; return 1; }
        sleep 0.01
    done
    echo "spoold did not become ready"
    return 1
}

start
wait_ready || exit 1
line=$("$bench" produce --server "$(cat "$dir/ready")" --producers 2 --depth 8 --batch 64 \
    --size 64 --count 200000 --queue-prefix sig --quiet 2>&1 | grep '^RESULT')
jobs=$(echo "$line" | sed -n 's/.* jobs=\([0-9]*\) .*/\1/p')
[ "${jobs:-0}" -ge 200000 ] || { echo "produce did not finish: $line"; exit 1; }
kill -KILL "$pid"
wait "$pid" 2>/dev/null
pid=""

: >"$dir/spoold.log"
start
in_recovery=0
for _ in $(seq 20000); do
    if [ -s "$dir/ready" ] || ! kill -0 "$pid" 2>/dev/null; then
        break
    fi
    if ls -l "/proc/$pid/fd" 2>/dev/null | grep -q '\.seg$'; then
        in_recovery=1
        break
    fi
done
if [ -s "$dir/ready" ]; then
    in_recovery=0
fi
kill -TERM "$pid"
wait "$pid"
status=$?
pid=""
if [ "$in_recovery" = 1 ]; then
    echo "SIGTERM sent during recovery"
else
    echo "note: recovery ended before the signal could be sent during it"
fi
if [ "$status" != 0 ]; then
    echo "FAIL: spoold exited with status $status after SIGTERM (want 0)"
    cat "$dir/spoold.log"
    exit 1
fi
grep -q 'msg="shutting down" signal=TERM' "$dir/spoold.log" ||
    { echo "FAIL: no shutdown message"; cat "$dir/spoold.log"; exit 1; }

# Nothing lost: the next start has every job.
start
wait_ready || exit 1
stats=$("$spool" --server "$(cat "$dir/ready")" stats)
ready=$(echo "$stats" | sed -n '1s/.* ready=\([0-9]*\) .*/\1/p')
kill -TERM "$pid"
wait "$pid"
pid=""
if [ "${ready:-0}" != "$jobs" ]; then
    echo "FAIL: $jobs jobs put, $ready ready after the restarts"
    echo "$stats"
    exit 1
fi
echo "ok: clean stop on SIGTERM, $ready jobs kept"
