#!/bin/sh
# libspool exports the public API only: every defined dynamic symbol is spool_* (or the
# version node). Exit 77 (skip) without nm.
lib="$1"
command -v nm >/dev/null 2>&1 || exit 77
symbols=$(nm -D --defined-only "$lib" | awk '{sub(/@.*/, "", $3); print $3}')
[ -n "$symbols" ] || { echo "no symbols in $lib"; exit 1; }
bad=$(printf '%s\n' "$symbols" | grep -v -e '^spool_' -e '^SPOOL_0$' || true)
if [ -n "$bad" ]; then
    echo "unexpected exports from $lib:"
    printf '%s\n' "$bad"
    exit 1
fi
for want in spool_connect spool_put spool_reserve spool_ack spool_strerror spool_close; do
    printf '%s\n' "$symbols" | grep -qx "$want" || { echo "missing export $want"; exit 1; }
done
exit 0
