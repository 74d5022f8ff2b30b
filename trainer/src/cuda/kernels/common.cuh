// common.cuh: prepended by the launcher to every kernel file before NVRTC compiles it.
// Each file is compiled twice: with LLMRT_BF16 = 1 the activations, parameters and their
// gradients (`floatX`) are bf16, otherwise fp32. Statistics (mean, rstd, lse, losses),
// AdamW moments and master weights are always fp32; arithmetic is always fp32.
#include <cuda_bf16.h>

#if LLMRT_BF16
typedef __nv_bfloat16 floatX;
#else
typedef float floatX;
#endif

// Loads and stores between the storage type and fp32 (round to nearest even).
__device__ __forceinline__ float ldx(floatX v) { return (float)v; }
__device__ __forceinline__ floatX stx(float v) { return (floatX)v; }

// -inf without math.h (NVRTC has no libc headers).
#define NEG_INF (-__int_as_float(0x7f800000))
#define WARP 32
#define FULL_MASK 0xffffffffu

// Sum over the 32 lanes of a warp; every lane gets the result.
__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
    return v;
}

// Max over the 32 lanes of a warp; every lane gets the result.
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, o));
    return v;
}

// Sum over a block (blockDim.x a multiple of 32, at most 1024); every thread gets it.
// `scratch` holds 32 floats of shared memory; the trailing barrier lets callers reuse it.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
    int lane = threadIdx.x % WARP, warp = threadIdx.x / WARP, nwarps = blockDim.x / WARP;
    v = warp_sum(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < nwarps ? scratch[lane] : 0.0f;
    v = warp_sum(v);
    __syncthreads();
    return v;
}

// Max over a block, as block_sum.
__device__ __forceinline__ float block_max(float v, float* scratch) {
    int lane = threadIdx.x % WARP, warp = threadIdx.x / WARP, nwarps = blockDim.x / WARP;
    v = warp_max(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < nwarps ? scratch[lane] : NEG_INF;
    v = warp_max(v);
    __syncthreads();
    return v;
}
