#!/usr/bin/env bash
# Runs the aarch64 (NEON) kernel tests on an x86-64 machine: cross-builds llmrt for
# aarch64-unknown-linux-gnu and runs its tests under qemu-user, twice for the kernels:
# on `-cpu max` (NEON with dotprod, i8mm and BF16: `neon_bf16` runs) and on
# `-cpu cortex-a72` (plain NEON).
# Also builds the no_std library for aarch64, and runs the lib tests and the root
# package's decoder test (the whole decoder against an f64 reference) under qemu.
#
# Installs what it needs, skipping what is present: the rustup target, and with apt the
# cross linker (gcc-aarch64-linux-gnu) and qemu-user (or qemu-user-static).
#
#   scripts/test-neon.sh
#
# Exit status: 0 if every test passed, or if a tool could not be installed (prints one
# line starting with "SKIP"); non-zero if a build or a test failed.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

target=aarch64-unknown-linux-gnu
sysroot=/usr/aarch64-linux-gnu
log=target/test-neon.log

skip() {
    echo "SKIP test-neon.sh: $*"
    exit 0
}

# 1. The Rust target.
if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
    rustup target add "$target" >/dev/null 2>&1 ||
        skip "cannot install the Rust target $target (no network?)"
fi

# 2. The cross linker, its C library, and qemu-user.
find_qemu() { command -v qemu-aarch64 || command -v qemu-aarch64-static || true; }
apt_install() {
    local sudo=
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null && sudo -n true 2>/dev/null || return 1
        sudo="sudo -n"
    fi
    command -v apt-get >/dev/null || return 1
    export DEBIAN_FRONTEND=noninteractive
    # Try the package lists as they are first; refresh them only if that fails.
    $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1 ||
        { $sudo apt-get update -qq >/dev/null 2>&1 &&
            $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1; }
}
need=()
command -v aarch64-linux-gnu-gcc >/dev/null || need+=(gcc-aarch64-linux-gnu)
[ -e "$sysroot/lib/libc.so.6" ] && [ -e "$sysroot/lib/crt1.o" ] || need+=(libc6-dev-arm64-cross)
if [ ${#need[@]} -gt 0 ]; then
    echo "== installing ${need[*]}"
    apt_install "${need[@]}" || skip "cannot install ${need[*]} with apt (no network or no root?)"
fi
if [ -z "$(find_qemu)" ]; then
    echo "== installing qemu-user"
    apt_install qemu-user || apt_install qemu-user-static ||
        skip "cannot install qemu-user or qemu-user-static with apt (no network or no root?)"
fi
qemu=$(find_qemu)
[ -n "$qemu" ] || skip "qemu-aarch64 not found after installing qemu-user"

# 3. Crates for the target (normally already fetched for the host build).
cargo fetch --target "$target" >/dev/null 2>&1 || skip "cannot fetch the crates for $target (no network?)"

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
echo "== aarch64 under $("$qemu" --version | head -n 1)"
mkdir -p target
: >"$log"
failed=0

# Runs `cargo ARGS` for the target under `qemu -cpu CPU`, printing cargo's test
# summaries (and, on failure, the end of its output).
run() {
    local cpu=$1 label=$2
    shift 2
    echo "== $label"
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="$qemu -cpu $cpu -L $sysroot"
    local out rc=0
    out=$(mktemp)
    nice -n 10 cargo "$@" --target "$target" >"$out" 2>&1 || rc=$?
    cat "$out" >>"$log"
    grep -E '^ +Running |^test result:' "$out" || true
    if [ "$rc" -ne 0 ]; then
        echo "FAILED (exit $rc): cargo $* --target $target (qemu -cpu $cpu); the end of its output:"
        grep -vE '^ +(Compiling|Checking|Downloaded|Downloading) ' "$out" | tail -n 40
        failed=1
    fi
    rm -f "$out"
}

run max "no_std build" build --release -p llmrt --lib --no-default-features
run max "llmrt kernel tests, -cpu max (NEON, dotprod, BF16)" \
    test --release -p llmrt --test kernels
run cortex-a72 "llmrt kernel tests, -cpu cortex-a72 (NEON only)" \
    test --release -p llmrt --test kernels
run max "llmrt lib tests" test --release -p llmrt --lib
run max "decoder against the f64 reference" test --release -p llmrt-suite --test decoder

echo "== summary (aarch64 under qemu; full output in $log)"
grep -E '^test result:' "$log" |
    awk '{p+=$4; f+=$6; i+=$8} END {printf "%d passed, %d failed, %d skipped\n", p, f, i}'
if [ "$failed" -ne 0 ]; then
    echo "test-neon.sh: FAILED"
    exit 1
fi
echo "test-neon.sh: ok"
