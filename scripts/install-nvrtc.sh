#!/usr/bin/env bash
# Installs NVRTC 13.0 (and the CUDA runtime headers cuda_fp16.h / cuda_bf16.h) from PyPI
# into DIR, for compiling the trainer's CUDA kernels on machines without a CUDA toolkit
# (CI, laptops). Prints the environment variables to export afterwards.
#
#   scripts/install-nvrtc.sh DIR
#   eval "$(scripts/install-nvrtc.sh DIR | grep ^export)"
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
dir=$1
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

py=$(command -v python3 || command -v python || true)
if [ -z "$py" ]; then
    echo "error: python3 with pip is needed to install NVRTC from PyPI" >&2
    exit 1
fi
# Pinned to 13.0 to match the GPU machines' driver; --no-deps keeps the install small.
"$py" -m pip install --quiet --disable-pip-version-check --no-deps --target "$dir" \
    'nvidia-cuda-nvrtc==13.0.*' 'nvidia-cuda-runtime==13.0.*' >&2

# The wheels' layout moved between releases (nvidia/cuda_nvrtc/lib vs nvidia/cu13/lib):
# find the files instead of assuming a path.
lib=$(find "$dir/nvidia" -name 'libnvrtc.so*' ! -name '*builtins*' | sort | head -n 1)
hdr=$(find "$dir/nvidia" -name cuda_bf16.h | head -n 1)
if [ -z "$lib" ] || [ -z "$hdr" ]; then
    echo "error: libnvrtc.so or cuda_bf16.h not found under $dir/nvidia after install" >&2
    exit 1
fi
libdir=$(dirname "$lib")
incdir=$(dirname "$hdr")

echo "# NVRTC installed in $dir; export these for cargo test -p llm-train --test cuda_compile:"
echo "export LLMRT_NVRTC_LIB=$lib"
echo "export LLMRT_CUDA_INCLUDE=$incdir"
echo "export LD_LIBRARY_PATH=$libdir\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
