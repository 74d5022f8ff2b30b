#!/usr/bin/env bash
# GPU check for the CUDA backend (issue 5), one script, under 8 minutes on an H200:
#   1. finds NVRTC and cuBLASLt (LLMRT_NVRTC_LIB, a CUDA toolkit, pip wheels in python's
#      site-packages; installs NVRTC from PyPI with scripts/install-nvrtc.sh if it can),
#   2. builds the trainer's tests (release) with cargo, or, on a machine without cargo
#      (the GPU machines have no Rust and no network), runs the test binaries that
#      `scripts/gpu-check.sh --prepare` put in target/gpu-check/ (carry that folder),
#   3. runs every CUDA test (they are `#[ignore = "needs a CUDA GPU"]`, so this passes
#      --include-ignored): host-side unit tests, NVRTC compile + ptxas spill check,
#      each kernel against the CPU reference (fp32 1e-5, bf16 1e-2), the Backend trait
#      against the CPU backend, a small device-resident GPT step that must learn,
#   4. runs the runtime's CPU kernel tests with the host's AMX tiles (on by default
#      where they run; the GPU machines' Xeons have them),
#   5. runs the runtime's GPU kernels against their f64 references and whole models on
#      the GPU (llmrt::cuda::GpuContext) against the f64 reference decoder and the CPU's
#      greedy tokens, and CUDA-graph replay against direct launches (issue 11),
#   6. benchmarks the GPT-2 124M shape (12 L, 12 H, C 768, T 1024, V 50304, the largest
#      batch the memory estimate fits) and prints tokens/s, ms/step, peak memory and MFU
#      (llm.c's 6N + 6LCT flops per token against 989 TFLOP/s),
#   7. `llm-run bench --device cuda` pp512/tg128 on random-weight models of the
#      stories110M shape (f16, q8_0, q4_0) and SmolLM2-135M's (q4_1), with CUDA graphs
#      and without, each with the HBM roofline share of its generation speed.
#
# What it does not do yet: the benchmark is the kernel library's own device-resident
# GPT-2 step (trainer/src/cuda/bench.rs), not `llm-train train --device cuda` (the
# training loop is not wired to the CUDA backend yet); no --recompute, no multi-GPU.
#
#   scripts/gpu-check.sh --prepare   build the test binaries into target/gpu-check/
#   scripts/gpu-check.sh [--record]  run (--record appends the table row to docs/PERF.md)
# Exit status: 0 all passed, 1 a failure, 2 no usable GPU (GPU tests skipped, not passed).
set -uo pipefail
cd "$(dirname "$0")/.."
bindir=target/gpu-check
tests="cuda_compile cuda_kernels cuda_bench train_recompute"

if [ "${1:-}" = "--prepare" ]; then
    mkdir -p "$bindir"
    # Build first with cargo's own output, so that a failed build stops here, loudly.
    if ! cargo test --release -p llm-train -p llmrt --no-run 2>&1 | grep -v '^ *Executable' | tail -n 40; then
        echo "gpu-check --prepare: the build failed (above)"
        exit 1
    fi
    cargo test --release -p llm-train --no-run --message-format=json 2>/dev/null | python3 -c '
import json, shutil, sys
want = set(sys.argv[1].split()) | {"llm_train"}
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") != "compiler-artifact" or not m.get("executable") or not m["profile"]["test"]:
        continue
    name = m["target"]["name"]
    if name in want and (name != "llm_train" or "lib" in m["target"]["kind"]):
        shutil.copy(m["executable"], sys.argv[2] + "/" + name)
        print("prepared", sys.argv[2] + "/" + name)
' "$tests" "$bindir"
    # The runtime's kernel tests: the CPU kernels for the AMX stage, the GPU kernels.
    cargo test --release -p llmrt --test kernels --test cuda_kernels --no-run --message-format=json 2>/dev/null | python3 -c '
import json, shutil, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") != "compiler-artifact" or not m.get("executable"):
        continue
    # The runtime cuda_kernels test is carried as rt_cuda_kernels (the trainer has one).
    name = {"kernels": "kernels", "cuda_kernels": "rt_cuda_kernels"}.get(m["target"]["name"])
    if name:
        shutil.copy(m["executable"], sys.argv[1] + "/" + name)
        print("prepared", sys.argv[1] + "/" + name)
' "$bindir"
    # The suite's whole-model GPU tests, the bench-model writer, and the binaries.
    cargo test --release -p llmrt-suite --test gpu_forward --test sequences --no-run --message-format=json 2>/dev/null | python3 -c '
import json, shutil, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] in ("gpu_forward", "sequences"):
        shutil.copy(m["executable"], sys.argv[1] + "/" + m["target"]["name"])
        print("prepared", sys.argv[1] + "/" + m["target"]["name"])
' "$bindir"
    if ! cargo build --release -p llmrt --bin llm-run -p llm-train --bin llm-train 2>&1 | tail -n 3; then
        echo "gpu-check --prepare: the build failed (above)"
        exit 1
    fi
    cp target/release/llm-run target/release/llm-train "$bindir"/
    du -sh "$bindir"
    echo "carry $bindir to the GPU machine and run scripts/gpu-check.sh there"
    exit 0
fi

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

say "CUDA libraries"
sites=$(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null || true)
libdirs=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib $(for s in $sites; do ls -d "$s"/nvidia/*/lib 2>/dev/null; done); do
    [ -d "$d" ] && libdirs="$libdirs:$d"
done
# cuBLASLt (and NVRTC when found this way) are loaded by name: put their folders on the path.
export LD_LIBRARY_PATH="${libdirs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if [ -z "${LLMRT_NVRTC_LIB:-}" ]; then
    for cand in $(echo "${libdirs#:}" | tr ':' '\n' | sed 's|$|/libnvrtc.so*|') "$PWD"/target/nvrtc/nvidia/*/lib/libnvrtc.so*; do
        for f in $cand; do
            case "$f" in *builtins*|*alt*) continue ;; esac
            if [ -f "$f" ]; then export LLMRT_NVRTC_LIB=$f; break 2; fi
        done
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
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
export LLMRT_CUBIN_CACHE=${LLMRT_CUBIN_CACHE:-$PWD/target/cubin-cache}

if command -v cargo >/dev/null; then
    mode=cargo
    say "build (release)"
    if ! timeout 300 cargo test --release -p llm-train --no-run 2>&1 | tail -3; then
        echo "build failed"
        exit 1
    fi
elif [ -x "$bindir/cuda_kernels" ]; then
    mode=bin
    echo "no cargo here: running the prepared binaries in $bindir"
else
    echo "no cargo and no $bindir: run scripts/gpu-check.sh --prepare on a build machine and carry $bindir"
    exit 1
fi

# run_test NAME TARGET [FILTER] [ENV=VALUE...]: one test target, output kept for the summary.
run_test() {
    local name=$1 target=$2 filter=${3:-} out rc
    shift 3 2>/dev/null || shift $#
    say "test: $name"
    if [ $mode = cargo ]; then
        local sel=(-p llm-train --test "$target")
        [ "$target" = llm_train ] && sel=(-p llm-train --lib)
        [ "$target" = kernels ] && sel=(-p llmrt --test kernels)
        [ "$target" = rt_cuda_kernels ] && sel=(-p llmrt --test cuda_kernels)
        [ "$target" = gpu_forward ] && sel=(-p llmrt-suite --test gpu_forward)
        [ "$target" = sequences ] && sel=(-p llmrt-suite --test sequences)
        out=$(env "$@" timeout 240 cargo test --release "${sel[@]}" -- $filter --include-ignored --nocapture --test-threads 1 2>&1)
    else
        out=$(env "$@" timeout 240 "$bindir/$target" $filter --include-ignored --nocapture --test-threads 1 2>&1)
    fi
    rc=$?
    printf '%s\n' "$out" >> "$log"
    printf '%s\n' "$out" | grep -Ev '^\s*(Compiling|Finished|Running|Blocking)' | tail -n 200
    if [ $rc != 0 ]; then fail=1; echo "FAILED: $name (exit $rc)"; fi
}

say "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2) · AMX: $(grep -o -m1 -w amx_bf16 /proc/cpuinfo || echo none)"
run_test "CPU kernels with AMX tiles" kernels bf16_prompt
run_test "unit (host-side logic)" llm_train cuda
run_test "NVRTC compile sm_80/sm_90, ptxas spills" cuda_compile ""
run_test "kernels vs CPU reference" cuda_kernels ""
run_test "runtime GPU kernels vs f64 reference" rt_cuda_kernels ""
run_test "small GPT step learns" cuda_bench small_gpt_step
run_test "--recompute on the GPU = keeping everything" train_recompute recompute_on_cuda
run_test "runtime: whole models on the GPU (reference, CPU greedy tokens, graphs)" gpu_forward on_the_gpu
run_test "benchmark: GPT-2 124M" cuda_bench gpt2_124m_benchmark LLMRT_CUDA_BENCH=1

# Runtime bench (issue 11): random-weight models of the stories110M shape (f16, q8_0,
# q4_0) and SmolLM2-135M's (q4_1), written here (nothing is downloaded), then
# `llm-run bench --device cuda` pp512 / tg128, with CUDA graphs and without.
if [ $mode = cargo ]; then
    cargo build --release -p llmrt --bin llm-run >/dev/null 2>&1
    llmrun=target/release/llm-run
else
    llmrun=$bindir/llm-run
fi
work=$(mktemp -d)
for spec in 110m:f16 110m:q8_0 110m:q4_0 smollm2:q4_1; do
    shape=${spec%%:*} dtype=${spec##*:} model=$work/$shape-$dtype.llm
    say "runtime bench: $shape $dtype"
    run_test "write $shape-$dtype" sequences write_110m_bench_model \
        LLMRT_BENCH_MODEL="$model" LLMRT_BENCH_DTYPE="$dtype" LLMRT_BENCH_SHAPE="$shape" >/dev/null
    for graphs in 1 0; do
        out=$(LLMRT_CUDA_GRAPHS=$graphs timeout 120 "$llmrun" bench -m "$model" --device cuda -p 512 -n 128 -r 3 2>&1)
        rc=$?
        printf 'LLMRT_CUDA_GRAPHS=%s\n%s\n' "$graphs" "$out" | tee -a "$log" | tail -n 12
        if [ $rc != 0 ]; then fail=1; echo "FAILED: bench $shape $dtype graphs=$graphs (exit $rc)"; fi
    done
done
rm -rf "$work"

if [ "$record" = "--record" ] && grep -q '^| [0-9]' "$log"; then
    gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n1)
    row=$(grep '^| [0-9]' "$log" | tail -n1)
    { echo; echo "### $(date -u +%F) · ${gpu:-GPU} · kernel-level GPT-2 124M step (scripts/gpu-check.sh)";
      echo "| batch | tokens/s | ms/step | peak memory | MFU | loss first→last |"; echo "|---|---|---|---|---|---|"; echo "$row"; } >> docs/PERF.md
    echo "recorded in docs/PERF.md"
fi

say "summary"
grep -E '^(GPT-2|\|)' "$log" || echo "(no benchmark table)"
if grep -q "no CUDA GPU/driver found" "$log"; then
    echo "gpu-check: no usable GPU here: the GPU tests were SKIPPED, not passed"
    exit 2
fi
if [ $fail = 0 ]; then echo "gpu-check: all passed"; else echo "gpu-check: FAILURES above"; fi
exit $fail
