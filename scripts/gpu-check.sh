#!/usr/bin/env bash
# GPU check for the CUDA backend (issue 5), one script, under 8 minutes on an H200:
#   1. finds NVRTC (LLMRT_NVRTC_LIB, a CUDA toolkit, pip wheels; installs them from PyPI
#      with scripts/install-nvrtc.sh when the network allows),
#   2. builds the trainer's tests (release),
#   3. runs every CUDA test: NVRTC compile + ptxas spill check, each kernel against the
#      CPU reference (fp32 1e-5, bf16 1e-2), the Backend trait against the CPU backend,
#      a small device-resident GPT step that must learn,
#   4. benchmarks the GPT-2 124M shape (12 L, 12 H, C 768, T 1024, V 50304, the largest
#      batch the memory estimate fits) and prints tokens/s, ms/step, peak memory and MFU
#      (llm.c's 6N + 6LCT flops per token against 989 TFLOP/s) as the last table.
#
# What it does not do yet: the benchmark is the kernel library's own device-resident
# GPT-2 step (trainer/src/cuda/bench.rs), not `llm-train train --device cuda` (the
# training loop is not wired to the CUDA backend yet); no --recompute, no multi-GPU.
#
#   scripts/gpu-check.sh [--record]     (--record appends the table row to docs/PERF.md)
set -uo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
record=${1:-}
fail=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

say() { printf '\n== %s (%ss)\n' "$*" "$(( $(date +%s) - start ))"; }

say "device"
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
else
    echo "nvidia-smi not found; the tests will report whether a GPU is usable"
fi

say "NVRTC"
if [ -z "${LLMRT_NVRTC_LIB:-}" ]; then
    for cand in /usr/local/cuda/lib64/libnvrtc.so* /usr/local/cuda-*/lib64/libnvrtc.so* \
        "$PWD"/target/nvrtc/nvidia/*/lib/libnvrtc.so* "$PWD"/shared/nvrtc/nvidia/*/lib/libnvrtc.so* \
        $(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null | \
          xargs -n1 -I{} sh -c 'ls {}/nvidia/*/lib/libnvrtc.so* 2>/dev/null'); do
        case "$cand" in *builtins*|*alt*) continue ;; esac
        if [ -f "$cand" ]; then export LLMRT_NVRTC_LIB=$cand; break; fi
    done
fi
if [ -z "${LLMRT_NVRTC_LIB:-}" ] && ! ldconfig -p 2>/dev/null | grep -q libnvrtc; then
    echo "NVRTC not found locally; trying PyPI (scripts/install-nvrtc.sh target/nvrtc)"
    if out=$(timeout 120 scripts/install-nvrtc.sh target/nvrtc); then
        eval "$(printf '%s\n' "$out" | grep '^export')"
    else
        echo "could not install NVRTC: kernel tests will fail with 'NVRTC not found'"
    fi
fi
echo "LLMRT_NVRTC_LIB=${LLMRT_NVRTC_LIB:-<system library path>}"
echo "LLMRT_CUDA_INCLUDE=${LLMRT_CUDA_INCLUDE:-<derived: toolkit or beside the library>}"
export LLMRT_CUBIN_CACHE=${LLMRT_CUBIN_CACHE:-$PWD/target/cubin-cache}

say "build (release)"
if ! timeout 300 cargo test --release -p llm-train --no-run 2>&1 | tail -3; then
    echo "build failed"
    exit 1
fi

run_test() {
    local name=$1; shift
    say "test: $name"
    local out rc
    out=$(timeout 240 cargo test --release -p llm-train "$@" -- --nocapture --test-threads 1 2>&1)
    rc=$?
    printf '%s\n' "$out" >> "$log"
    printf '%s\n' "$out" | grep -Ev '^\s*(Compiling|Finished|Running|Blocking)' | tail -n 200
    if [ $rc != 0 ]; then fail=1; echo "FAILED: $name (exit $rc)"; fi
}

run_test "unit (host-side logic)" --lib cuda
run_test "NVRTC compile sm_80/sm_90, ptxas spills" --test cuda_compile
run_test "kernels vs CPU reference" --test cuda_kernels
run_test "small GPT step learns" --test cuda_bench small_gpt_step

say "benchmark: GPT-2 124M"
bench_out=$(LLMRT_CUDA_BENCH=1 timeout 240 cargo test --release -p llm-train --test cuda_bench \
    gpt2_124m_benchmark -- --nocapture --test-threads 1 2>&1)
bench_rc=$?
printf '%s\n' "$bench_out" | grep -Ev '^\s*(Compiling|Finished|Running)' | tail -n 30
[ $bench_rc = 0 ] || { fail=1; echo "FAILED: benchmark"; }

if [ "$record" = "--record" ] && [ $bench_rc = 0 ]; then
    gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n1)
    row=$(printf '%s\n' "$bench_out" | grep '^| [0-9]' | tail -n1)
    { echo; echo "### $(date -u +%F) · ${gpu:-GPU} · kernel-level GPT-2 124M step (scripts/gpu-check.sh)";
      echo "| batch | tokens/s | ms/step | peak memory | MFU | loss first→last |"; echo "|---|---|---|---|---|---|"; echo "$row"; } >> docs/PERF.md
    echo "recorded in docs/PERF.md"
fi

say "summary"
all_out="$bench_out
$(cat "$log" 2>/dev/null)"
printf '%s\n' "$bench_out" | grep -E '^(GPT-2|\|)' || echo "(no benchmark table)"
if printf '%s\n' "$all_out" | grep -q "no CUDA GPU/driver found"; then
    echo "gpu-check: no usable GPU here: the GPU tests were SKIPPED, not passed"
    exit 2
fi
if [ $fail = 0 ]; then echo "gpu-check: all passed"; else echo "gpu-check: FAILURES above"; fi
exit $fail
