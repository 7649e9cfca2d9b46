# Shell side of the integration harness: source this file, then
#   spoold_start [extra spoold args...]  -> sets SPOOLD_DIR, SPOOLD_DATA, SPOOLD_ADDR, SPOOLD_PID
#   spoold_stop                          -> SIGTERM by pid, waits, returns spoold's exit status
#   spoold_kill                          -> SIGKILL by pid
#   spoold_cleanup                       -> kill if running, remove the temp dir
# The binary is $SPOOLD (meson sets it for tests in suite 'integration'). spoold listens on
# 127.0.0.1 port 0 and writes its address to a ready file once listening.

spoold_start() {
    : "${SPOOLD:?SPOOLD must name the spoold binary}"
    if [ -z "${SPOOLD_DIR:-}" ]; then
        SPOOLD_DIR=$(mktemp -d "${TMPDIR:-/tmp}/spoold-sh-XXXXXX")
    fi
    SPOOLD_DATA="$SPOOLD_DIR/data"
    rm -f "$SPOOLD_DIR/ready"
    "$SPOOLD" --data "$SPOOLD_DATA" --listen 127.0.0.1:0 --ready-file "$SPOOLD_DIR/ready" "$@" \
        2>>"$SPOOLD_DIR/spoold.log" &
    SPOOLD_PID=$!
    local i
    for i in $(seq 1 2000); do
        if [ -s "$SPOOLD_DIR/ready" ]; then
            SPOOLD_ADDR=$(cat "$SPOOLD_DIR/ready")
            export SPOOLD_DIR SPOOLD_DATA SPOOLD_ADDR SPOOLD_PID
            return 0
        fi
        if ! kill -0 "$SPOOLD_PID" 2>/dev/null; then
            echo "spoold exited before listening:" >&2
            cat "$SPOOLD_DIR/spoold.log" >&2
            return 1
        fi
        sleep 0.01
    done
    echo "spoold did not become ready" >&2
    spoold_kill
    return 1
}

spoold_stop() {
    [ -n "${SPOOLD_PID:-}" ] || return 1
    kill -TERM "$SPOOLD_PID" 2>/dev/null
    local rc=0
    wait "$SPOOLD_PID" || rc=$?
    SPOOLD_PID=
    return $rc
}

spoold_kill() {
    [ -n "${SPOOLD_PID:-}" ] || return 0
    kill -KILL "$SPOOLD_PID" 2>/dev/null
    wait "$SPOOLD_PID" 2>/dev/null
    SPOOLD_PID=
    return 0
}

spoold_cleanup() {
    spoold_kill
    if [ -n "${SPOOLD_DIR:-}" ] && [ -z "${SPOOL_KEEP_TEST_DIRS:-}" ]; then
        rm -rf "$SPOOLD_DIR"
    fi
    SPOOLD_DIR=
}
