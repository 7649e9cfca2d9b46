#!/usr/bin/env bash
# Build the libFuzzer targets of tests/fuzz with clang (ASan + UBSan) and run each for a
# bounded time from its seeds and regressions. One test per target; the last line is
# "libfuzzer: N passed, N failed" (tools/test adds it to its totals). See tests/fuzz/README.md.
#
# Usage: tests/fuzz/run-libfuzzer.sh [TARGET...]      (default: wire record log)
# Environment:
#   SPOOL_FUZZ_TIME   seconds per target (default 30)
#   SPOOL_FUZZ_SEED   libFuzzer -seed (default: from the clock; printed either way)
#   SPOOL_FUZZ_BUILD  build directory (default build-fuzz, made on first use)
#   SPOOL_FUZZ_CC     the compiler (default clang-14, else clang)
#   SPOOL_FUZZ_KEEP=0 do not copy a crashing input into corpus/<target>/regressions/
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=(wire record log)
time_s=${SPOOL_FUZZ_TIME:-30}
seed=${SPOOL_FUZZ_SEED:-$(( $(date +%s) % 1000000007 ))}
builddir=${SPOOL_FUZZ_BUILD:-build-fuzz}
keep=${SPOOL_FUZZ_KEEP:-1}
cc=${SPOOL_FUZZ_CC:-}
if [ -z "$cc" ]; then
    cc=clang
    command -v clang-14 >/dev/null && cc=clang-14
fi

# Per target: the largest input worth trying (a frame stream; a checkpoint and a record
# history; a log of two 32 KiB segments with a checkpoint, the size the seeds have) and the
# seed directory the build makes (empty: the wire seeds are checked in).
declare -A max_len=([wire]=16384 [record]=16384 [log]=131072)
declare -A seeds=([wire]="" [record]=record_seeds [log]=log_seeds)

fail_all() {
    echo "libfuzzer: 0 passed, ${#targets[@]} failed"
    exit 1
}

for t in "${targets[@]}"; do
    [ -n "${max_len[$t]:-}" ] || { echo "unknown fuzz target: $t" >&2; fail_all; }
done

# The build: clang, every object instrumented for coverage (-Dlibfuzzer=true), ASan and
# UBSan with no recovery so any report is a crash. Warnings are not errors here: the gcc
# builds hold the code to -Werror, and a clang-only warning must not hide what the fuzzers find.
if [ ! -f "$builddir/build.ninja" ]; then
    setup_log=$(mktemp /tmp/spool-libfuzzer-setup.XXXXXX)
    CC="$cc" meson setup "$builddir" -Dlibfuzzer=true -Db_sanitize=address,undefined \
        -Db_lundef=false -Dwerror=false -Dc_args=-fno-sanitize-recover=undefined \
        >"$setup_log" 2>&1 || { cat "$setup_log"; rm -f "$setup_log"; fail_all; }
    rm -f "$setup_log"
fi
build_targets=()
for t in "${targets[@]}"; do
    build_targets+=("fuzz_$t")
    [ -z "${seeds[$t]}" ] || build_targets+=("fuzz_${t}_seeds")
done
meson compile -C "$builddir" "${build_targets[@]}" || fail_all

work=$(mktemp -d /tmp/spool-libfuzzer.XXXXXX)
passed=0
failed=0
echo "libfuzzer: seed $seed, $time_s s per target (SPOOL_FUZZ_SEED=$seed reruns with it)"
for t in "${targets[@]}"; do
    bin="$builddir/tests/fuzz/fuzz_$t"
    corpus=(tests/fuzz/corpus/$t)
    [ -z "${seeds[$t]}" ] || corpus=("$builddir/tests/fuzz/${seeds[$t]}")
    corpus+=(tests/fuzz/corpus/$t/regressions)
    # libFuzzer writes the inputs it finds into the first directory: a scratch one.
    mkdir -p "$work/$t/new" "$work/$t/artifacts"
    log="$work/$t/log"
    # The log target's engine warns on stderr for each torn tail it cuts: close the target's
    # stdout and stderr (libFuzzer keeps its own and the sanitizers' reports).
    fd_mask=0
    [ "$t" = log ] && fd_mask=3
    ASAN_OPTIONS=abort_on_error=0:detect_leaks=1 \
        UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        "$bin" -seed="$seed" -max_total_time="$time_s" -timeout=20 -rss_limit_mb=2048 \
        -max_len="${max_len[$t]}" -error_exitcode=1 -timeout_exitcode=1 \
        -close_fd_mask=$fd_mask -print_final_stats=1 -artifact_prefix="$work/$t/artifacts/" \
        "$work/$t/new" "${corpus[@]}" >"$log" 2>&1
    rc=$?
    runs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
    if [ "$rc" -eq 0 ]; then
        echo "fuzz_$t: ok (${runs:-?} runs, ${cov:-cov: ?}, seed $seed)"
        passed=$((passed + 1))
        continue
    fi
    failed=$((failed + 1))
    echo "fuzz_$t: FAILED (exit $rc, seed $seed); the end of its log:"
    tail -n 60 "$log"
    for a in "$work/$t/artifacts"/*; do
        [ -f "$a" ] || continue
        kept="$a"
        # Already a regression (a kept input that still fails): name that one.
        for r in tests/fuzz/corpus/$t/regressions/*; do
            [ -f "$r" ] && cmp -s "$a" "$r" && kept="$r"
        done
        if [ "$keep" = 1 ] && [ "$kept" = "$a" ]; then
            kept="tests/fuzz/corpus/$t/regressions/$(basename "$a")"
            cp "$a" "$kept"
        fi
        echo "fuzz_$t: input kept in $kept; reproduce with: $bin $kept"
    done
done
rm -rf "$work"
echo "libfuzzer: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
