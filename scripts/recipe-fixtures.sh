#!/usr/bin/env bash
# Records which ggml type llama.cpp's `llama-quantize` gives each tensor, per K-quant
# mixture, for a few small random llama models (shapes chosen to hit every rule:
# 12 layers for use_more_bits, rows of 288 for the fallbacks, n_gqa 4 for Q2_K's
# attn_v). trainer/tests/quant_recipes.rs checks `QuantPlan` against these files.
#
# usage: scripts/recipe-fixtures.sh LLAMA_QUANTIZE [OUT_DIR]
#   LLAMA_QUANTIZE  a llama.cpp `llama-quantize` binary (docs/PERF.md says how to build
#                   one from the llama-cpp-python sdist)
#   OUT_DIR         default trainer/tests/data/recipes
# Needs a Python with the `gguf` and `numpy` packages (PYTHON, default python3).
set -euo pipefail
Q=$(realpath "$1")
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${2:-$ROOT/trainer/tests/data/recipes}
PYTHON=${PYTHON:-python3}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$OUT"
# name layers d_model d_ff heads kv_heads vocab
SHAPES="l12-d256 12 256 768 4 4 512
l8-d288-gqa3 8 288 768 6 2 512
l4-d512-gqa4 4 512 1536 8 2 512"
MIXES="Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K"
while read -r name L D F H KV V; do
    "$PYTHON" - "$TMP/$name.gguf" "$L" "$D" "$F" "$H" "$KV" "$V" <<'PY'
import sys
import numpy as np
import gguf
path, L, D, F, H, KV, V = sys.argv[1], *map(int, sys.argv[2:])
w = gguf.GGUFWriter(path, "llama")
w.add_context_length(256); w.add_embedding_length(D); w.add_block_count(L)
w.add_feed_forward_length(F); w.add_head_count(H); w.add_head_count_kv(KV)
w.add_rope_dimension_count(D // H); w.add_layer_norm_rms_eps(1e-5); w.add_file_type(1)
toks = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
toks += [f"\u2581t{i}" for i in range(V - len(toks))]
w.add_tokenizer_model("llama"); w.add_token_list(toks)
w.add_token_scores([0.0] * V); w.add_token_types([2, 3, 3] + [6] * 256 + [1] * (V - 259))
rng = np.random.default_rng(0)
def m(n, r, c): w.add_tensor(n, (0.02 * rng.standard_normal((r, c))).astype(np.float16))
def v(n, r): w.add_tensor(n, np.ones(r, dtype=np.float32))
kvd = D // H * KV
m("token_embd.weight", V, D)
for l in range(L):
    v(f"blk.{l}.attn_norm.weight", D)
    m(f"blk.{l}.attn_q.weight", D, D); m(f"blk.{l}.attn_k.weight", kvd, D)
    m(f"blk.{l}.attn_v.weight", kvd, D); m(f"blk.{l}.attn_output.weight", D, D)
    v(f"blk.{l}.ffn_norm.weight", D)
    m(f"blk.{l}.ffn_gate.weight", F, D); m(f"blk.{l}.ffn_up.weight", F, D)
    m(f"blk.{l}.ffn_down.weight", D, F)
v("output_norm.weight", D); m("output.weight", V, D)
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
PY
    for mix in $MIXES; do
        "$Q" --allow-requantize "$TMP/$name.gguf" "$TMP/$name-$mix.gguf" "$mix" >/dev/null 2>&1
        "$PYTHON" - "$TMP/$name-$mix.gguf" "$L $D $F $H $KV $V" >"$OUT/$name-${mix,,}.txt" <<'PY'
import sys
import gguf
r = gguf.GGUFReader(sys.argv[1])
print("# shape (layers d_model d_ff heads kv_heads vocab):", sys.argv[2])
for t in r.tensors:
    if len(t.shape) == 2:
        print(t.name, t.tensor_type.name.lower())
PY
    done
done <<<"$SHAPES"
echo "wrote $(ls "$OUT" | wc -l) files to $OUT"
