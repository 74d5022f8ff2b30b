#!/usr/bin/env bash
# Makes the seed corpora of the cargo-fuzz targets (fuzz/) under DIR (default
# fuzz/seeds/<target>/): small valid files written by the test suites' own writers
# (the tests named below write them when LLMRT_FUZZ_SEEDS is set, through
# llm_format::testing::fuzz_seed), plus tokenizer and sampler inputs made here.
# Generated, never committed. Usage: scripts/fuzz-corpus.sh [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-fuzz/seeds}"
rm -rf "$out"
mkdir -p "$out"
export LLMRT_FUZZ_SEEDS
LLMRT_FUZZ_SEEDS="$(cd "$out" && pwd)"
t() { cargo test --release -j 2 -q "$@" >/dev/null; }

# .llm files (the format's writer), tiny models and their GGUF exports.
t -p llm-format --test props -- every_truncation_of_a_valid_file_is_an_error
t -p llmrt-suite --test fuzz_seeds -- --ignored
# The importers' test files: GGUF, llama2.c and llm.c pairs, Hugging Face folders.
t -p llm-train --test import_gguf -- blocks_land_byte_identical gpt2_tokenizer_kind
t -p llm-train --test import_hostile -- llama2c_checkpoint_and_tokenizer llmc_checkpoint_and_tokenizer
t -p llm-train --test import_safetensors -- gpt2_f32_with_prefix gpt2_f16_without_prefix

# Tokenizer: kind, flags, pre-tokenizer, then words, the part separator, a text (see
# fuzz/fuzz_targets/tokenizer.rs).
sep=$'\n--8<--fuzz-part--8<--\n'
mkdir -p "$out/tokenizer"
words=$'hello\nworld\n the\nand\n\xc3\xa9t\xc3\xa9\n  \n12'
text="$(head -c 400 data/shakespeare.txt) Ünïcödé 👋 <s> 123 4567"$'\t\r\n'
for kind in 0 1 2 3; do
  for flags in 0 1 14 63; do
    for pre in 0 1 5; do
      printf "\\x$(printf %02x $kind)\\x$(printf %02x $flags)\\x$(printf %02x $pre)%s%s%s" \
        "$words" "$sep" "$text" >"$out/tokenizer/k${kind}_f${flags}_p${pre}"
    done
  done
done

# Sampler: temperature, top_k, top_p, min_p, repeat_penalty, repeat_last_n, frequency
# and presence penalties, seed, history, logits (little-endian; see sampler.rs).
mkdir -p "$out/sampler"
f32() { python3 -c "import struct,sys; sys.stdout.buffer.write(struct.pack('<f', float('$1')))"; }
sampler_seed() { # temperature top_k top_p min_p repeat last_n freq presence
  {
    f32 "$1"; printf "\\x$(printf %02x $2)\\x00"; f32 "$3"; f32 "$4"; f32 "$5"
    printf "\\x$(printf %02x $6)\\x00"; f32 "$7"; f32 "$8"
    printf '\x2a\x00\x00\x00\x00\x00\x00\x00\x03\x01\x00\x00\x00\x02\x00\x00\x00\x07\x00\x00\x00'
    for l in 0.5 -1.25 3 2.5 -inf 0.1 7 1e-30 -2 0; do f32 "$l"; done
  } >"$out/sampler/$9"
}
sampler_seed 0.8 40 0.95 0.05 1.1 64 0 0 defaults
sampler_seed 0 0 1 0 1 0 0 0 greedy
sampler_seed 1.5 3 0.5 0.2 0.7 8 0.5 -0.25 penalties
sampler_seed 1e-7 0 1 0 1 0 0 0 tiny_temperature

for d in "$out"/*/; do
  printf '%-20s %3d seeds\n' "$(basename "$d")" "$(ls "$d" | wc -l)"
done
