#!/usr/bin/env bash
# Start-up time and memory of llmrt beside llama.cpp (and ik_llama.cpp with and without
# its load-time repacking, -rtr 1) on the model files of scripts/bench-vs-llamacpp.sh.
#
# usage: scripts/startup-vs-llamacpp.sh LLAMA_BENCH WORKDIR KEY...
#
#   LLAMA_BENCH  path of a llama.cpp `llama-bench` binary
#   WORKDIR      a bench-vs-llamacpp.sh work folder: KEY.gguf and KEY.llm for each KEY
#                (e.g. 110m-f16), and KEY.r16.llm where LAYOUT=r16 made one
#   IK_BENCH     (environment, optional) an ik_llama.cpp `llama-bench`
#   LLM_RUN      (environment) llmrt's `llm-run` (default: target/release/llm-run)
#   ROUNDS       (environment) rounds, the engines alternating within each (default 3)
#
# Per run: wall time and peak RSS (`/usr/bin/time -f "%e %M"`) of one 1-token run,
# `llama-bench -m KEY.gguf -t 2 -p 0 -n 1 -r 1 [-rtr 1]` and `llm-run bench -m KEY.llm
# -t 2 -p 0 -n 1 -r 1 --no-bandwidth`, with the files in the page cache (the first
# round warms it). Then, once per engine, the private and file-backed memory
# (`RssAnon`, `RssFile` of /proc/PID/status) 2.5 s into a 512-token run: a weight
# copy made at load (repacking) is private; weights read through the mmap are shared
# page cache. Prints one line per run and the medians.
set -euo pipefail

if [[ $# -lt 3 || "$1" == -h || "$1" == --help ]]; then
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 2
fi
ml=$1
dir=$2
shift 2
run=${LLM_RUN:-target/release/llm-run}
rounds=${ROUNDS:-3}
for f in "$ml" "$run" /usr/bin/time; do
    [ -x "$f" ] || { echo "error: $f is not an executable" >&2; exit 1; }
done

# The engines for KEY: "name|command" (the model path filled in).
engines() {
    local key=$1
    echo "mainline|$ml -m $dir/$key.gguf -t 2 -p 0"
    if [ -n "${IK_BENCH:-}" ]; then
        echo "ik|$IK_BENCH -m $dir/$key.gguf -t 2 -p 0"
        echo "ik-rtr|$IK_BENCH -m $dir/$key.gguf -t 2 -p 0 -rtr 1"
    fi
    echo "ours|$run bench -m $dir/$key.llm -t 2 -p 0 --no-bandwidth"
    [ -f "$dir/$key.r16.llm" ] && echo "ours-r16|$run bench -m $dir/$key.r16.llm -t 2 -p 0 --no-bandwidth"
    return 0
}

out=$(mktemp)
tm=$(mktemp)
trap 'rm -f "$out" "$tm"' EXIT
for key in "$@"; do
    for r in $(seq "$rounds"); do
        while IFS='|' read -r name cmd; do
            # shellcheck disable=SC2086 # the command is split on purpose
            /usr/bin/time -o "$tm" -f "%e %M" $cmd -n 1 -r 1 >/dev/null 2>&1 ||
                { echo "error: $name on $key failed: $cmd -n 1 -r 1" >&2; exit 1; }
            echo "$key $r $name $(tail -n 1 "$tm")" | tee -a "$out"
        done < <(engines "$key")
    done
    while IFS='|' read -r name cmd; do
        # shellcheck disable=SC2086
        $cmd -n 512 -r 2 >/dev/null 2>&1 &
        pid=$!
        sleep 2.5
        mem=$(grep -E '^(RssAnon|RssFile)' "/proc/$pid/status" 2>/dev/null | tr -s ' \t' ' ' | tr '\n' ' ')
        wait "$pid" || true
        echo "$key memory $name ${mem:-(ended before 2.5 s)}"
    done < <(engines "$key")
done
echo "== medians (wall time, peak RSS)"
median() { sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
for key in "$@"; do
    for name in $(awk -v k="$key" '$1 == k {print $3}' "$out" | sort -u); do
        t=$(awk -v k="$key" -v e="$name" '$1 == k && $3 == e {print $4}' "$out" | median)
        m=$(awk -v k="$key" -v e="$name" '$1 == k && $3 == e {print $5}' "$out" | median)
        printf '%-14s %-9s %6s s %6d MB\n' "$key" "$name" "$t" "$((m / 1024))"
    done
done
