// grad_norm.cu: the global gradient norm over many tensors, deterministically: every
// tensor adds its sum of squares into a fixed-size array of per-block partials
// (partials[blockIdx.x] +=, launches serialised on one stream), then one block sums the
// partials in order. Plus in-place clipping for callers that clip outside AdamW.

// partials[blockIdx.x] += sum of x[i]^2 over a grid-stride walk of this block's elements.
extern "C" __global__ void norm_squared_accumulate(float* partials, const floatX* x, long long n) {
    __shared__ float scratch[32];
    float s = 0.0f;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        float v = ldx(x[i]);
        s += v * v;
    }
    s = block_sum(s, scratch);
    if (threadIdx.x == 0) partials[blockIdx.x] += s;
}

// out[0] = sqrt(sum of partials[0..count]); one block.
extern "C" __global__ void norm_finish(float* out, const float* partials, int count) {
    __shared__ float scratch[32];
    float s = 0.0f;
    for (int i = threadIdx.x; i < count; i += blockDim.x) s += partials[i];
    s = block_sum(s, scratch);
    if (threadIdx.x == 0) out[0] = sqrtf(s);
}

// x *= max_norm / *norm when *norm > max_norm.
extern "C" __global__ void clip_by_norm(floatX* x, long long n, const float* norm, float max_norm) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float gn = *norm;
    if (gn > max_norm) x[i] = stx(ldx(x[i]) * (max_norm / gn));
}
