# Shared by tools/test and tools/quickstart: install the Debian packages spool builds with, only
# those that are missing, running apt-get update first (a fresh machine has no package lists).
# Usage: spool_ensure_packages PKG...
spool_ensure_packages() {
    local missing=()
    local pkg
    for pkg in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$pkg")
        fi
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    echo "installing: ${missing[*]}" >&2
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq >&2 || return 1
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >&2 || return 1
}

SPOOL_BUILD_PACKAGES=(gcc meson ninja-build pkg-config liburing-dev liblz4-dev libxxhash-dev
    libmicrohttpd-dev python3)

# What the HTTP tests use when present (tests/http): promtool checks /metrics, headless Chromium
# and Firefox render the dashboard. Without them those checks are skipped, not failed.
SPOOL_HTTP_TEST_PACKAGES=(prometheus chromium firefox-esr)

# The libFuzzer targets of tests/fuzz (tests/fuzz/run-libfuzzer.sh, run by tools/test): clang 14
# and its compiler-rt (libFuzzer, ASan and UBSan runtimes). Not needed to build or run spool.
SPOOL_FUZZ_PACKAGES=(clang libclang-rt-14-dev)

# The beanstalk suite (tests/beanstalk): a real beanstalkd to compare answers with, and two
# client libraries: Ruby's beaneater (Debian) and Node's fivebeans (npm, from the lockfile).
SPOOL_BEANSTALK_PACKAGES=(beanstalkd ruby ruby-beaneater)

# Install node and npm if missing (a machine with NodeSource's nodejs has npm inside it: the
# Debian npm package would conflict), then the suite's npm packages from its lockfile.
spool_ensure_beanstalk_clients() {
    local root=$1
    spool_ensure_packages "${SPOOL_BEANSTALK_PACKAGES[@]}" || return 1
    command -v node >/dev/null || spool_ensure_packages nodejs || return 1
    command -v npm >/dev/null || spool_ensure_packages npm || return 1
    (cd "$root/tests/beanstalk" && npm ci --no-audit --no-fund --loglevel=error >&2)
}
