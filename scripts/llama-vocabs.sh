#!/usr/bin/env bash
# Prints the directory of llama.cpp's tokenizer test vocabularies (models/ggml-vocab-*.gguf
# with their .inp/.out files), taken from the llama-cpp-python sdist on PyPI and cached
# under target/llama-vocabs. Exits non-zero (printing nothing on stdout) when they cannot
# be had. Use: LLMRT_LLAMA_VOCABS=$(scripts/llama-vocabs.sh) cargo test --release \
#   -p llm-train --test llama_vocabs -- --ignored
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="$root/target/llama-vocabs"
if ls "$cache"/models/ggml-vocab-*.gguf.inp >/dev/null 2>&1; then
  echo "$cache/models"
  exit 0
fi
api="https://pypi.org/pypi/llama-cpp-python/json"
json=$(curl -sSf --max-time 30 "$api") || { echo "llama-vocabs: cannot reach $api" >&2; exit 1; }
url=$(printf '%s' "$json" | python3 -c '
import json, sys, urllib.parse
d = json.load(sys.stdin)
for u in d["urls"]:
    if u["packagetype"] == "sdist":
        print(urllib.parse.urljoin(sys.argv[1], u["url"]))
        break
' "$api") || true
[ -n "$url" ] || { echo "llama-vocabs: no sdist in $api" >&2; exit 1; }
mkdir -p "$cache"
tmp=$(mktemp -d "$cache/.dl.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
curl -sSfL --max-time 600 -o "$tmp/sdist.tar.gz" "$url" \
  || { echo "llama-vocabs: cannot download $url" >&2; exit 1; }
# Only the vocab files and their tests: */vendor/llama.cpp/models/ggml-vocab-*.
tar -xzf "$tmp/sdist.tar.gz" -C "$tmp" --wildcards '*/vendor/llama.cpp/models/ggml-vocab-*'
src=$(ls -d "$tmp"/*/vendor/llama.cpp/models)
rm -rf "$cache/models"
mv "$src" "$cache/models"
echo "$cache/models"
