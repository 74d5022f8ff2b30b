#!/usr/bin/env bash
# Regenerates the ggml block fixtures in format/tests/data/ggml/ (one file per type)
# with ggml's own C code, so format/tests/ggml_blocks.rs can check, without a C
# toolchain or llama.cpp, that our quantisers and dequantisers give ggml's bytes and
# floats bit for bit.
#
#   scripts/ggml-fixtures.sh [LLAMA_CPP_DIR [BUILD_DIR [SEED]]]
#
#   LLAMA_CPP_DIR  llama.cpp source tree (default: the llama-cpp-python 0.3.36 sdist's
#                  vendored copy at /work/ref/llama_cpp_python-0.3.36/vendor/llama.cpp)
#   BUILD_DIR      its CMake build directory (default LLAMA_CPP_DIR/build); if
#                  ggml/src/libggml-base.a is missing there, the ggml-base target is
#                  built (configured first if the directory has no build system)
#   SEED           PRNG seed for the inputs (default 0x6C6C6D7274, "llmrt")
#
# For each type (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K .. Q6_K, IQ4_NL,
# IQ4_XS) scripts/ggml-fixtures.c builds a deterministic input, quantises it with
# ggml_quantize_chunk(type, src, dst, 0, 4, n/4, NULL) (no importance matrix) and
# dequantises the result with the type traits' to_float. Quantised types get 16
# super-blocks (4096 values), one input pattern each: normal at several scales,
# uniform, non-negative, heavy outliers, all zeros, constant, a single nonzero,
# negative-dominant, tiny (1e-8), large (1e4), per-group scales 1e-4..1e2, zero /
# constant / single-value groups, sparse, exact quarter steps, log-uniform. Float types
# get 1024 values around f16/bf16 rounding ties, subnormals and overflow.
#
# Fixture layout, all little-endian (format/tests/ggml_blocks.rs reads it):
#
#   offset  size        field
#   0       8           magic "GGMLFIX1"
#   8       4           u32 ggml type id (ggml.h's enum ggml_type)
#   12      4           u32 n, number of values
#   16      8           u64 PRNG seed the inputs were made from
#   24      4n          n x f32 inputs
#   24+4n   4           u32 byte count m of the quantised data
#   28+4n   m           the quantised bytes (ggml's block layout)
#   28+4n+m 4n          n x f32 dequantised values (to_float of those bytes)
#
# ggml-base must be compiled without FMA contraction (ggml's default on x86-64, where
# it gets no -mfma) for its scalar reference code to be the one the Rust port
# reproduces; the script refuses a library whose ggml-quants object has FMA
# instructions. On aarch64 build with CMAKE_C_FLAGS=-ffp-contract=off.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
src="${1:-/work/ref/llama_cpp_python-0.3.36/vendor/llama.cpp}"
build="${2:-$src/build}"
seed="${3:-0x6C6C6D7274}"
out="$repo/format/tests/data/ggml"

[[ -f "$src/ggml/include/ggml.h" ]] || { echo "no ggml/include/ggml.h under $src" >&2; exit 1; }

lib="$build/ggml/src/libggml-base.a"
if [[ ! -f "$lib" ]]; then
    if [[ ! -f "$build/CMakeCache.txt" ]]; then
        echo "configuring $build" >&2
        cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
            -DGGML_NATIVE=OFF -DLLAMA_CURL=OFF
    fi
    echo "building ggml-base in $build" >&2
    nice -n 10 cmake --build "$build" --target ggml-base -j"${JOBS:-1}"
fi
[[ -f "$lib" ]] || { echo "$lib not found (is BUILD_SHARED_LIBS on?)" >&2; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# The reference quantisers must not have been contracted to FMA.
if command -v objdump >/dev/null; then
    (cd "$tmp" && ar x "$lib" ggml-quants.c.o 2>/dev/null) || true
    if [[ -f "$tmp/ggml-quants.c.o" ]] &&
        objdump -d "$tmp/ggml-quants.c.o" | grep -Eq '\b(v?fmadd|vfmsub|vfnmadd|vfnmsub|fmla|fmls|fmsub|fnmadd|fnmsub)'; then
        echo "$lib: ggml-quants.c was compiled with FMA contraction; rebuild ggml-base" \
            "with -ffp-contract=off" >&2
        exit 1
    fi
fi

bin="$tmp/ggml-fixtures"
cc -std=c11 -O2 -ffp-contract=off -Wall -Wextra -I"$src/ggml/include" \
    "$here/ggml-fixtures.c" -o "$bin" "$lib" -lstdc++ -lm -lpthread -fopenmp

mkdir -p "$out"
"$bin" "$out" "$seed"
du -ch "$out"/*.bin | tail -n 1
