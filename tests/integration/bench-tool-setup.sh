# Sourced by the integration scripts that take "SPOOL_BENCH SPOOLD SPOOL" (registered in
# bench/meson.build): reads the three binaries into bench, spoold and spool, makes the temp
# dir $dir (named after $script_name), and on exit SIGKILLs the spoold whose pid is in $pid
# (stopped by pid only) and removes $dir.
set -uo pipefail
usage="usage: $script_name SPOOL_BENCH SPOOLD SPOOL"
bench=${1:?$usage}
spoold=${2:?$usage}
spool=${3:?$usage}
dir=$(mktemp -d "${TMPDIR:-/tmp}/${script_name%.sh}.XXXXXX")
pid=""
cleanup() {
    if [ -n "$pid" ]; then
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    fi
    rm -rf "$dir"
}
trap cleanup EXIT
