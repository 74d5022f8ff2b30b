#!/usr/bin/env bash
# Quality of every quantised type beside llama.cpp, on the same files: a model is
# written as GGUF (llm-train export-gguf), quantised per type by llama.cpp's own
# `llama-quantize`, imported back (`llm-train import --from gguf`, blocks copied), and
# then both engines score the same text and continue the same prompt greedily.
#
# usage: scripts/kquants-vs-llamacpp.sh LLAMA_BIN_DIR MODEL.llm TEXT [WORKDIR]
#   LLAMA_BIN_DIR  llama.cpp's build/bin with llama-quantize, llama-perplexity and
#                  llama-simple (docs/PERF.md: "Building llama.cpp")
#   MODEL.llm      a llama-family model (RoPE, RMSNorm, SwiGLU, no biases) with a
#                  SentencePiece or byte-level tokenizer, in f32/f16
#   TEXT           text to score (at least 2 windows of CTX tokens)
# Environment: TYPES (llama-quantize names; default every type the format has),
#   CTX (default 128), THREADS (default 2), PROMPT (default "ROMEO:"), N (tokens to
#   generate, default 64), LLM_TRAIN, LLM_RUN (default: this checkout's release build).
# Prints a markdown table: perplexity per engine and ratio, and whether the greedy
# continuations are equal (else the first differing character).
set -euo pipefail
BIN=$(realpath "$1"); MODEL=$(realpath "$2"); TEXT=$(realpath "$3")
WORK=${4:-/tmp/llmrt-kquants}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TYPES=${TYPES:-"F16 Q8_0 Q6_K Q5_K_M Q5_1 Q5_0 Q4_K_M Q4_K_S Q4_1 Q4_0 IQ4_NL IQ4_XS Q3_K_M Q2_K"}
CTX=${CTX:-128}; THREADS=${THREADS:-2}; PROMPT=${PROMPT:-"ROMEO:"}; N=${N:-64}
LLM_TRAIN=${LLM_TRAIN:-$ROOT/target/release/llm-train}
LLM_RUN=${LLM_RUN:-$ROOT/target/release/llm-run}
mkdir -p "$WORK"
"$LLM_TRAIN" export-gguf --in "$MODEL" --out "$WORK/base-f16.gguf" --dtype f16 2>/dev/null
echo "| type | llama.cpp ppl | llmrt ppl | ratio | greedy $N tokens |"
echo "|---|---:|---:|---:|---|"
for t in $TYPES; do
    lc=${t,,}
    g="$WORK/$lc.gguf"; l="$WORK/$lc.llm"
    if [[ $t == F16 ]]; then cp "$WORK/base-f16.gguf" "$g"; else
        "$BIN/llama-quantize" --allow-requantize "$WORK/base-f16.gguf" "$g" "$t" >"$WORK/$lc-quantize.log" 2>&1
    fi
    "$LLM_TRAIN" import --from gguf --model "$g" --out "$l" >/dev/null 2>&1
    # llama.cpp logs from a background thread and may exit before the last lines are
    # out (seen with stdout on a file): run it through a pipe, and again if the
    # "Final estimate" line is still missing (3 tries).
    p1=""
    for _ in 1 2 3; do
        "$BIN/llama-perplexity" -m "$g" -f "$TEXT" -c "$CTX" -t "$THREADS" 2>&1 | cat >"$WORK/$lc-ppl-llamacpp.log"
        p1=$(sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p' "$WORK/$lc-ppl-llamacpp.log")
        [[ -n "$p1" ]] && break
    done
    p2=$("$LLM_RUN" perplexity -m "$l" -f "$TEXT" --ctx "$CTX" -t "$THREADS" --second-half 2>"$WORK/$lc-ppl-llmrt.log" \
        | sed -n 's/^perplexity: //p')
    "$BIN/llama-simple" -m "$g" -n "$N" "$PROMPT" 2>/dev/null >"$WORK/$lc-gen-llamacpp.txt" || true
    "$LLM_RUN" -m "$l" -p "$PROMPT" -n "$N" --temperature 0 -t "$THREADS" 2>/dev/null >"$WORK/$lc-gen-llmrt.txt" || true
    # llama-simple echoes the prompt; llm-run prints the continuation only.
    a=$(cat "$WORK/$lc-gen-llamacpp.txt"); b="$PROMPT$(cat "$WORK/$lc-gen-llmrt.txt")"
    if [[ "$a" == "$b" ]]; then same="equal"; else
        i=0; while [[ "${a:$i:1}" == "${b:$i:1}" ]]; do i=$((i + 1)); done
        same="differ at char $i"
    fi
    ratio=$(python3 -c "print(f'{$p2/$p1:.4f}')" 2>/dev/null || echo "?")
    echo "| $lc | $p1 | $p2 | $ratio | $same |"
done
