#!/usr/bin/env bash
# Integration test of the spool CLI against a real spoold on 127.0.0.1 port 0 in a temp dir:
# every command's success path and the documented errors (name on stderr, exit 1; usage
# errors exit 2), the JSON field names of issue 3, a lease acked by another process
# (reserve detaches), a full lifecycle with result and wait, `spool work`, and a put refused
# with QUEUE_FULL. Environment: SPOOLD (server binary), SPOOL (CLI binary).
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/spoold-harness.sh"
: "${SPOOL:?SPOOL must name the spool CLI binary}"

failures=0
trap spoold_cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

# Run the CLI against the test server; stdout to $out, stderr to $err, exit code to $rc.
run() {
    out=$("$SPOOL" --server "$SPOOLD_ADDR" "$@" 2>"$SPOOLD_DIR/stderr")
    rc=$?
    err=$(cat "$SPOOLD_DIR/stderr")
}

expect_ok() {
    run "$@"
    [ "$rc" -eq 0 ] || fail "spool $* exited $rc: $err"
}

# expect_exit CODE NAME ARGS...: exit CODE and stderr starting with NAME.
expect_exit() {
    local code=$1 name=$2
    shift 2
    run "$@"
    [ "$rc" -eq "$code" ] || fail "spool $* exited $rc, wanted $code"
    case "$err" in "$name:"*) ;; *) fail "spool $*: stderr '$err', wanted $name" ;; esac
}

# expect_error NAME ARGS...: exit 1 (an error retrying will not cure), stderr starting with NAME.
expect_error() {
    expect_exit 1 "$@"
}

# A numeric / string field of a one-line JSON object.
num() { printf '%s\n' "$1" | sed -n "s/.*\"$2\":\([0-9][0-9]*\).*/\1/p"; }
str() { printf '%s\n' "$1" | sed -n "s/.*\"$2\":\"\([^\"]*\)\".*/\1/p"; }

spoold_start || exit 1

# put: plain id, and {"id":N} with --json.
expect_ok put mail first
id1=$out
case "$id1" in '' | *[!0-9]*) fail "put printed '$id1', wanted an id" ;; esac
expect_ok --json put mail second
id2=$(num "$out" id)
[ -n "$id2" ] && [ "$id2" != "$id1" ] || fail "put --json printed '$out'"

# reserve in one process, ack in another (the lease is detached).
expect_ok --json reserve mail
for f in id lease attempt deadline_ms; do
    [ -n "$(num "$out" $f)" ] || fail "reserve --json lacks $f: $out"
done
[ "$(str "$out" queue)" = mail ] || fail "reserve queue: $out"
[ "$(str "$out" body)" = first ] || fail "reserve body (FIFO): $out"
[ "$(num "$out" id)" = "$id1" ] || fail "reserve gave $out, wanted job $id1"
lease=$(num "$out" lease)
[ "$lease" != 12345 ] || fail "lease collides with the stale one used below"
expect_error LEASE_EXPIRED ack "$id1" 12345
expect_ok ack "$id1" "$lease" --result all-good
expect_ok --json wait "$id1" --timeout 1000
[ "$(str "$out" state)" = done ] || fail "wait after ack: $out"
[ "$(str "$out" result)" = all-good ] || fail "wait result: $out"
expect_ok --json status "$id1"
[ "$(str "$out" state)" = done ] && [ "$(num "$out" attempts)" = 1 ] || fail "status: $out"

# Unknown jobs and bad arguments.
expect_error NOT_FOUND status 987654321
expect_error NOT_FOUND delete 987654321
run ack notanumber 1
[ "$rc" -eq 2 ] || fail "usage error exited $rc"
case "$err" in INVALID_ARGUMENT:*) ;; *) fail "usage error stderr: $err" ;; esac
run frobnicate
[ "$rc" -eq 2 ] || fail "unknown command exited $rc"

# Priorities: lower first.
expect_ok put prio low --priority 10
expect_ok put prio high --priority 1
expect_ok --json reserve prio
[ "$(str "$out" body)" = high ] || fail "priority order: $out"
hid=$(num "$out" id)
hlease=$(num "$out" lease)

# release with a delay -> delayed; touch; bury -> dead; kick -> ready.
expect_ok touch "$hid" "$hlease"
[ -n "$(printf '%s' "$out" | grep deadline_ms=)" ] || fail "touch output: $out"
expect_ok release "$hid" "$hlease" --delay 60000
expect_ok --json status "$hid"
[ "$(str "$out" state)" = delayed ] || fail "after release --delay: $out"
expect_ok --json reserve prio
lid=$(num "$out" id)
llease=$(num "$out" lease)
expect_ok bury "$lid" "$llease" --reason "broken input"
expect_ok --json peek prio --dead
[ "$(num "$out" id)" = "$lid" ] || fail "peek --dead: $out"
[ "$(str "$out" reason)" = "broken input" ] || fail "dead reason: $out"
expect_ok --json kick prio 5
[ "$(num "$out" kicked)" = 1 ] || fail "kick: $out"
expect_ok --json status "$lid"
[ "$(str "$out" state)" = ready ] || fail "after kick: $out"
expect_ok --json peek "$lid"
[ "$(str "$out" body)" = low ] || fail "peek body: $out"
expect_ok delete "$lid"
expect_error NOT_FOUND status "$lid"

# "--" ends options: a body may start with dashes.
expect_ok --json put dashes -- --not-an-option
expect_ok --json peek dashes --ready
[ "$(str "$out" body)" = "--not-an-option" ] || fail "body after --: $out"

# put from stdin; stats and queues with the issue's field names.
printf 'from stdin' | "$SPOOL" --server "$SPOOLD_ADDR" put piped - >/dev/null || fail "put -"
expect_ok --json peek piped --ready
[ "$(str "$out" body)" = "from stdin" ] || fail "stdin body: $out"
expect_ok --json stats piped
for f in ready delayed reserved dead total_put oldest_ready_age_ms; do
    [ -n "$(num "$out" $f)" ] || fail "stats lacks $f: $out"
done
[ "$(num "$out" ready)" = 1 ] || fail "stats ready: $out"
expect_ok --json queues
printf '%s\n' "$out" | grep -q '"queue":"piped"' || fail "queues: $out"

# work: exit 0 acks with stdout as the result; failure releases with backoff.
expect_ok put jobs ok-job
okid=$out
expect_ok put jobs fail-job
failid=$out
run work jobs --max-jobs 2 -- sh -c 'b=$(cat); [ "$b" = ok-job ] || exit 3; echo "did $b"'
[ "$rc" -eq 0 ] || fail "work exited $rc: $err"
expect_ok --json status "$okid"
[ "$(str "$out" state)" = done ] || fail "work ok job: $out"
printf '%s\n' "$out" | grep -q '"result":"did ok-job\\n"' || fail "work result: $out"
expect_ok --json status "$failid"
case "$(str "$out" state)" in delayed | ready) ;; *) fail "work failed job: $out" ;; esac
[ "$(num "$out" attempts)" = 1 ] || fail "work failed job attempts: $out"

# work keeps the lease alive while CMD outlives its ttr: 1 s lease, 2.5 s of work, acked once.
expect_ok put slow-jobs slow --ttr 1000
slowid=$out
run work slow-jobs --max-jobs 1 -- sh -c 'cat >/dev/null; sleep 2.5; echo finished'
[ "$rc" -eq 0 ] || fail "work (slow) exited $rc: $err"
expect_ok --json status "$slowid"
[ "$(str "$out" state)" = done ] && [ "$(num "$out" attempts)" = 1 ] ||
    fail "slow job not done in one attempt (lease not touched?): $out"

# work_bg QUEUE ARGS...: start `spool work QUEUE ARGS` in the background; its pid in $wpid.
work_bg() {
    "$SPOOL" --server "$SPOOLD_ADDR" work "$@" 2>>"$SPOOLD_DIR/work.err" &
    wpid=$!
}

# wait_state JOB STATE: poll the job's state for up to 10 s.
wait_state() {
    local i
    for i in $(seq 100); do
        run --json status "$1"
        [ "$(str "$out" state)" = "$2" ] && return 0
        sleep 0.1
    done
    fail "job $1 never reached $2: $out"
    return 1
}

# wait_exit PID: wait up to 10 s for it to exit; its exit code in $wrc, else kill it and fail.
wait_exit() {
    local i
    for i in $(seq 100); do
        if ! kill -0 "$1" 2>/dev/null; then
            wait "$1"
            wrc=$?
            return 0
        fi
        sleep 0.1
    done
    kill -9 "$1" 2>/dev/null
    wait "$1" 2>/dev/null
    fail "worker $1 still running 10 s after it was told to stop"
    return 1
}

# work and SIGTERM: the running command gets --grace, then its group is stopped and the job
# released at once (it used to wait for the command with no limit).
expect_ok put grace-q long-job
gid=$out
work_bg grace-q --grace 300 -- sh -c 'cat >/dev/null; exec sleep 30'
wait_state "$gid" reserved
kill -TERM "$wpid"
wait_exit "$wpid" && [ "$wrc" -eq 0 ] || fail "worker stopped by SIGTERM exited $wrc"
wait_state "$gid" ready
# ... a command that finishes within the grace is acked as usual.
expect_ok put grace-q short-job
gid=$out
work_bg grace-q --grace 10000 -- sh -c 'cat >/dev/null; sleep 1; echo finished'
wait_state "$gid" reserved
kill -TERM "$wpid"
wait_exit "$wpid"
wait_state "$gid" done
# ... and a second signal ends it at once, whatever the grace.
expect_ok put grace-q stubborn-job
gid=$out
work_bg grace-q -- sh -c 'cat >/dev/null; exec sleep 30'
wait_state "$gid" reserved
kill -TERM "$wpid"
sleep 0.3
kill -INT "$wpid"
wait_exit "$wpid"
wait_state "$gid" ready

# kill -9 of the worker takes its command with it: the job is handed out again, and must not
# also keep running under the dead worker.
expect_ok put orphan-q orphan-job
oid=$out
work_bg orphan-q -- sh -c 'echo $$ >"$0"; cat >/dev/null; exec sleep 30' "$SPOOLD_DIR/cmd.pid"
wait_state "$oid" reserved
kill -KILL "$wpid"
wait "$wpid" 2>/dev/null
cmd_pid=$(cat "$SPOOLD_DIR/cmd.pid")
for i in $(seq 50); do kill -0 "$cmd_pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$cmd_pid" 2>/dev/null; then
    fail "command $cmd_pid outlived its killed worker"
    kill -9 "$cmd_pid"
fi
wait_state "$oid" ready

# Exit codes for scripts: 3 when reserve or wait time out, 4 when wait finds the job dead.
expect_exit 3 TIMED_OUT reserve nothing-here --timeout 100
[ -z "$out" ] || fail "reserve that timed out printed '$out'"
expect_ok put pending-q later
expect_exit 3 TIMED_OUT --json wait "$out" --timeout 100
[ "$(str "$out" state)" = ready ] || fail "wait that timed out: $out"

# release --reason: the worker's error becomes the dead reason on the last attempt.
expect_ok put fails-q --max-attempts 1 payload
id_fail=$out
expect_ok --json reserve fails-q
expect_ok release "$id_fail" "$(num "$out" lease)" --reason "disk on fire"
run --json wait "$id_fail" --timeout 1000
[ "$rc" -eq 4 ] || fail "wait on a dead job exited $rc, wanted 4: $out"
[ "$(str "$out" state)" = dead ] || fail "released-with-reason job: $out"
case "$(str "$out" reason)" in *"disk on fire") ;; *) fail "dead reason: $out" ;; esac
run release 1 2 --reason r --priority 3
[ "$rc" -eq 2 ] || fail "release --reason --priority exited $rc, wanted 2"

# put --json says whether an idempotency key made the put a repeat.
expect_ok --json put keyed --key k-1 one
first=$(num "$out" id)
case "$out" in *'"duplicate":false'*) ;; *) fail "first keyed put: $out" ;; esac
expect_ok --json put keyed --key k-1 one
[ "$(num "$out" id)" = "$first" ] || fail "repeat returned another id: $out"
case "$out" in *'"duplicate":true'*) ;; *) fail "repeated keyed put: $out" ;; esac

# Issue 10: wait on a job whose ttl ran out exits 4 and says expired (not NOT_FOUND).
expect_ok put short-lived --ttl 100 gone
tid=$out
sleep 0.4
run --json wait "$tid" --timeout 1000
[ "$rc" -eq 4 ] || fail "wait on an expired job exited $rc, wanted 4"
[ "$(str "$out" state)" = expired ] || fail "wait on an expired job: $out"
expect_ok --json status "$tid"
[ "$(str "$out" state)" = expired ] || fail "status of an expired job: $out"

# queue-delete: refused while the queue has jobs, unless --force; then gone from queues.
expect_ok put doomed a
expect_ok put doomed b
expect_error WRONG_STATE queue-delete doomed
expect_ok --json queue-delete doomed --force
[ "$(num "$out" deleted)" = 2 ] || fail "queue-delete --force: $out"
expect_ok --json queues
case "$out" in *'"doomed"'*) fail "deleted queue still listed: $out" ;; esac
expect_error NOT_FOUND queue-delete never-seen

# Connection refused is named too.
out=$("$SPOOL" --server 127.0.0.1:1 ping 2>&1)
case "$out" in ECONNREFUSED:*) ;; *) fail "refused: $out" ;; esac

# A full queue refuses puts with QUEUE_FULL (restart with a per-queue limit).
spoold_stop || fail "spoold did not stop cleanly"
spoold_start --max-queue-jobs 1 || exit 1
expect_ok put tiny one
expect_exit 5 QUEUE_FULL put tiny two

# Issue 10: a queue limit refuses a put naming one more queue with TOO_MANY_QUEUES; stats and
# queues list every queue even when they take several frames (protocol 2 pages them).
# A restart with fewer --max-queues than it has queues keeps them all (a checkpoint loads
# whole), and refuses new names only.
spoold_stop || fail "spoold did not stop cleanly"
spoold_start --max-queues 3 || exit 1
expect_ok put mail again
expect_error TOO_MANY_QUEUES put brand-new-queue x
spoold_stop || fail "spoold did not stop cleanly"
rm -rf "$SPOOLD_DATA"
spoold_start --max-queues 3 --max-frame 4k --max-job-size 1k || exit 1
long=$(printf 'q%.0s' $(seq 1 150))
expect_ok put "$long-1" x
expect_ok put "$long-2" x
expect_ok put "$long-3" x
expect_error TOO_MANY_QUEUES put "$long-4" x
expect_ok --json stats
[ "$(printf '%s\n' "$out" | grep -c '"queue":')" = 3 ] || fail "stats lists: $out"
[ "$(num "$(printf '%s\n' "$out" | head -1)" queues)" = 3 ] || fail "stats queues: $out"
spoold_stop || fail "spoold did not stop cleanly"
rm -rf "$SPOOLD_DATA"
spoold_start --max-frame 4k --max-job-size 1k || exit 1
for i in $(seq 1 40); do expect_ok put "$long-$i" x; done
expect_ok queues
[ "$(printf '%s\n' "$out" | grep -c .)" = 40 ] || fail "queues listed $(printf '%s\n' "$out" | grep -c .) of 40"
expect_ok --json stats
[ "$(printf '%s\n' "$out" | grep -c '"queue":')" = 40 ] || fail "stats listed fewer than 40 queues"

# A server at its connection limit answers BUSY, retryable (exit 5), not a closed connection.
spoold_stop || fail "spoold did not stop cleanly"
spoold_start --max-connections 1 || exit 1
# The one connection is a client that said HELLO and blocks in a reserve.
"$SPOOL" --server "$SPOOLD_ADDR" reserve busy-q --timeout 3000 >/dev/null 2>&1 &
holder=$!
sleep 0.5
expect_exit 5 BUSY ping
wait "$holder"

if [ "$failures" -ne 0 ]; then
    echo "$failures failure(s); server log: $SPOOLD_DIR/spoold.log" >&2
    exit 1
fi
echo "cli: all checks passed"
