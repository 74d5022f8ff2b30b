#!/usr/bin/env bash
# Runs the cargo-fuzz targets of fuzz/ for SECONDS each, one after another, and prints
# per target the executions, libFuzzer's coverage (cov and ft of its last stats line)
# and the crashes (inputs under fuzz/artifacts/<target>/). Needs `cargo +nightly` and
# cargo-fuzz (`cargo install cargo-fuzz`). Makes the seed corpora first when
# fuzz/seeds is missing (scripts/fuzz-corpus.sh); what a run finds is kept in
# fuzz/corpus/<target>/ for the next run.
#
# Usage: scripts/fuzz.sh SECONDS [TARGET...]     (no TARGET: every target)
# Environment: FUZZ_SANITIZER (address by default; none is about twice as fast),
# FUZZ_LOG_DIR (default fuzz/logs: each target's libFuzzer output), FUZZ_BIN_DIR (run
# the target binaries found there, built before, instead of building: a long
# campaign is then not rebuilt by edits made while it runs).
# Exit status: 0 when no target crashed, 1 when one did, 2 on a usage or build error.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
if [ $# -lt 1 ] || ! [[ "$1" =~ ^[0-9]+$ ]]; then
  echo "usage: scripts/fuzz.sh SECONDS [TARGET...]" >&2
  exit 2
fi
secs=$1
shift
san=${FUZZ_SANITIZER:-address}
logs=${FUZZ_LOG_DIR:-$root/fuzz/logs}
mkdir -p "$logs"
cd fuzz
if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
[ -d seeds ] || bash "$root/scripts/fuzz-corpus.sh" "$root/fuzz/seeds" || exit 2
start=$(date +%s)
if [ -n "${FUZZ_BIN_DIR:-}" ]; then
  echo "fuzz: the binaries in $FUZZ_BIN_DIR"
else
  # `cargo fuzz build` builds one target or all of them.
  one=()
  [ ${#targets[@]} -eq 1 ] && one=("${targets[0]}")
  if ! cargo +nightly fuzz build -s "$san" "${one[@]}" >"$logs/build.log" 2>&1; then
    tail -20 "$logs/build.log" >&2
    echo "fuzz: build failed (log: $logs/build.log)" >&2
    exit 2
  fi
  echo "fuzz: built in $(($(date +%s) - start)) s (sanitizer $san)"
fi
printf '%-20s %8s %12s %8s %8s  %s\n' target seconds executions cov ft crashes
failed=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  log="$logs/$t.log"
  before=$(ls "artifacts/$t" | wc -l)
  mkdir -p "seeds/$t"
  args=(-max_total_time="$secs" -timeout=20 -rss_limit_mb=4096 -print_final_stats=1)
  if [ -n "${FUZZ_BIN_DIR:-}" ]; then
    "$FUZZ_BIN_DIR/$t" "corpus/$t" "seeds/$t" -artifact_prefix="artifacts/$t/" "${args[@]}" \
      >"$log" 2>&1
  else
    cargo +nightly fuzz run -s "$san" "$t" "corpus/$t" "seeds/$t" -- "${args[@]}" >"$log" 2>&1
  fi
  rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | grep ' cov: ' | tail -1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  [ -n "$execs" ] || execs=$(sed -n 's/^#\([0-9]*\).*/\1/p' <<<"$last")
  crashes=$(($(ls "artifacts/$t" | wc -l) - before))
  note=$crashes
  if [ "$rc" -ne 0 ]; then
    failed=1
    note="$crashes (exit $rc; log: $log; $(grep -m1 -E 'panicked at|ERROR: AddressSanitizer|ERROR: libFuzzer' "$log" | cut -c1-120))"
  fi
  printf '%-20s %8s %12s %8s %8s  %s\n' "$t" "$secs" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$note"
done
exit $failed
