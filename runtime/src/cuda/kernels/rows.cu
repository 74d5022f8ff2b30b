// rows.cu: the row-wise operations of the forward pass between the matrix products,
// on fp32 rows [n, d] (row-major), each computed as runtime/src/ops.rs does it:
//
//   rmsnorm, layernorm   one block per row (blockDim a multiple of 32, at most 1024),
//                        the row's sums over the block; out may be x (in place)
//   rmsnorm_heads        RMSNorm in place of every hd-wide piece of a buffer (q_norm and
//                        k_norm: each head of each q or k row), one warp per piece
//   add, add_bias, scale one thread per element
//
// Sums run in a different order than the CPU's serial loops, so results agree to
// rounding, not bit for bit.

#define ROWS_MAX_WARPS 32

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets it.
// `scratch` is ROWS_MAX_WARPS floats of shared memory; the trailing barrier lets the
// caller use it again.
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

// out[r] = x[r] / sqrt(mean(x[r]²) + eps) · w for the n rows of d values (ops::rmsnorm).
// Grid (n), block a multiple of 32.
extern "C" __global__ void rmsnorm(float* out, const float* x, const float* w, int n, int d,
                                   float eps) {
    __shared__ float scratch[ROWS_MAX_WARPS];
    int row = blockIdx.x;
    if (row >= n) return;  // the whole block
    const float* xr = x + (long long)row * d;
    float* o = out + (long long)row * d;
    float s = 0.0f;
    for (int c = threadIdx.x; c < d; c += blockDim.x) {
        float v = xr[c];
        s += v * v;
    }
    float r = 1.0f / sqrtf(block_sum(s, scratch) / (float)d + eps);
    for (int c = threadIdx.x; c < d; c += blockDim.x) o[c] = xr[c] * r * w[c];
}

// out[r] = (x[r] - mean) / sqrt(var + eps) · w + b (b may be null) for the n rows of d
// values, mean and variance over the row in two passes (ops::layernorm). Grid (n).
extern "C" __global__ void layernorm(float* out, const float* x, const float* w,
                                     const float* b, int n, int d, float eps) {
    __shared__ float scratch[ROWS_MAX_WARPS];
    int row = blockIdx.x;
    if (row >= n) return;  // the whole block
    const float* xr = x + (long long)row * d;
    float* o = out + (long long)row * d;
    float s = 0.0f;
    for (int c = threadIdx.x; c < d; c += blockDim.x) s += xr[c];
    float mean = block_sum(s, scratch) / (float)d;
    float v = 0.0f;
    for (int c = threadIdx.x; c < d; c += blockDim.x) {
        float e = xr[c] - mean;
        v += e * e;
    }
    float rstd = 1.0f / sqrtf(block_sum(v, scratch) / (float)d + eps);
    for (int c = threadIdx.x; c < d; c += blockDim.x)
        o[c] = (xr[c] - mean) * rstd * w[c] + (b ? b[c] : 0.0f);
}

// x[p] *= w / sqrt(mean(x[p]²) + eps) for each of the `pieces` consecutive pieces of hd
// values of x (the heads of q or k rows: ops::rmsnorm_in_place per row). One warp per
// piece: grid (ceil(pieces / (blockDim.x / 32))).
extern "C" __global__ void rmsnorm_heads(float* x, const float* w, int pieces, int hd,
                                         float eps) {
    int lane = threadIdx.x % WARP;
    int piece = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    if (piece >= pieces) return;  // the whole warp
    float* xp = x + (long long)piece * hd;
    float s = 0.0f;
    for (int c = lane; c < hd; c += WARP) {
        float v = xp[c];
        s += v * v;
    }
    float r = 1.0f / sqrtf(warp_sum(s) / (float)hd + eps);
    for (int c = lane; c < hd; c += WARP) xp[c] = xp[c] * (r * w[c]);
}

// x[i] += y[i] for i < count (the residual add, ops::add). One thread per element.
extern "C" __global__ void add(float* x, const float* y, int count) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < count) x[i] += y[i];
}

// x[i] += b[i % d] for i < count: a bias row added to each row of d values
// (ops::add_bias). One thread per element.
extern "C" __global__ void add_bias(float* x, const float* b, int count, int d) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < count) x[i] += b[i % d];
}

// x[i] *= s for i < count (the embedding scale). One thread per element.
extern "C" __global__ void scale(float* x, float s, int count) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < count) x[i] *= s;
}
