// attention.cu: causal attention of new tokens over one layer's fp32 KV cache, and the
// store of their keys and values into it.
//
// Cache layout: K and V each [n_ctx, kv_dim] fp32 rows, kv_dim = n_kv_heads·hd, kv head
// g at columns g·hd... (GQA: query head h reads kv head h / (n_heads / n_kv_heads)).
// Queries q and the output are [n, q_dim], q_dim = n_heads·hd, head h at columns h·hd.
// Row i is the token at position pos[i] (a device int array, so that a captured CUDA
// graph replays with new positions); it attends keys lo..=pos[i], lo = max(0, pos[i] + 1
// - window) (window = n_ctx for none), as attend_head in runtime/src/context.rs:
// out = softmax(scale·K·q)·V.
//
// One block of ATT_THREADS threads per (head, query): grid (n_heads, n). The keys go in
// tiles of ATT_TILE: each warp scores keys of the tile (lanes split hd, a warp sum), the
// block then takes the tile's max and weights into shared memory, and every thread
// updates its output columns (hd ≤ HD_MAX: column c belongs to thread c % ATT_THREADS)
// with the online softmax (running max m and sum l, the accumulators rescaled by
// e^(m_old - m_new)). Shared memory is fixed (HD_MAX + 2·ATT_TILE floats) whatever the
// context length.

#define ATT_THREADS 128
#define ATT_TILE 64
#define HD_MAX 256
#define ATT_COLS (HD_MAX / ATT_THREADS)
#define ATT_NEG_INF (-__int_as_float(0x7f800000))
#define ATT_NAN (__int_as_float(0x7fc00000))

// A position outside 0..n_ctx makes its output row NaN instead of reading outside the
// cache. Launch with blockDim.x = ATT_THREADS, grid (n_heads, n); window ≥ 1.
extern "C" __global__ void attention(float* out, const float* q, const float* k_cache,
                                     const float* v_cache, const int* pos, int n, int n_heads,
                                     int n_kv_heads, int hd, int n_ctx, int window,
                                     float scale) {
    __shared__ float qs[HD_MAX];
    __shared__ float sc[ATT_TILE];
    __shared__ float ps[ATT_TILE];
    int h = blockIdx.x, i = blockIdx.y;
    if (h >= n_heads || i >= n) return;  // the whole block
    int tid = threadIdx.x, lane = tid % WARP, warp = tid / WARP, nwarps = blockDim.x / WARP;
    int q_dim = n_heads * hd, kv_dim = n_kv_heads * hd;
    int kvh = h / (n_heads / n_kv_heads);
    float* o = out + (long long)i * q_dim + h * hd;
    int p = pos[i];
    if (p < 0 || p >= n_ctx) {  // the whole block
        for (int c = tid; c < hd; c += blockDim.x) o[c] = ATT_NAN;
        return;
    }
    int lo = max(0, p + 1 - window);
    const float* qh = q + (long long)i * q_dim + h * hd;
    for (int c = tid; c < hd; c += blockDim.x) qs[c] = qh[c];
    __syncthreads();
    const float* kb = k_cache + kvh * hd;
    const float* vb = v_cache + kvh * hd;
    float m = ATT_NEG_INF, l = 0.0f, acc[ATT_COLS];
#pragma unroll
    for (int u = 0; u < ATT_COLS; u++) acc[u] = 0.0f;
    for (int t0 = lo; t0 <= p; t0 += ATT_TILE) {
        int tn = min(ATT_TILE, p + 1 - t0);
        // Scores of the tile's keys, one warp per key.
        for (int j = warp; j < tn; j += nwarps) {
            const float* kr = kb + (long long)(t0 + j) * kv_dim;
            float s = 0.0f;
            for (int c = lane; c < hd; c += WARP) s += qs[c] * kr[c];
            s = warp_sum(s);
            if (lane == 0) sc[j] = s * scale;
        }
        __syncthreads();
        // The running max (the same in every thread), then the tile's weights.
        float mt = m;
        for (int j = 0; j < tn; j++) mt = fmaxf(mt, sc[j]);
        for (int j = tid; j < tn; j += blockDim.x) ps[j] = expf(sc[j] - mt);
        __syncthreads();
        float corr = expf(m - mt);  // 0 on the first tile (m = -inf)
        float ls = 0.0f;
        for (int j = 0; j < tn; j++) ls += ps[j];
        l = l * corr + ls;
#pragma unroll
        for (int u = 0; u < ATT_COLS; u++) {
            int c = tid + u * ATT_THREADS;
            if (c < hd) {
                float a = acc[u] * corr;
                for (int j = 0; j < tn; j++) a += ps[j] * vb[(long long)(t0 + j) * kv_dim + c];
                acc[u] = a;
            }
        }
        m = mt;
        __syncthreads();  // sc and ps are rewritten by the next tile
    }
    float inv = 1.0f / l;
#pragma unroll
    for (int u = 0; u < ATT_COLS; u++) {
        int c = tid + u * ATT_THREADS;
        if (c < hd) o[c] = acc[u] * inv;
    }
}

// k_cache[pos[i]] = k[i] and v_cache[pos[i]] = v[i] for the n rows of kv_dim values (the
// new tokens' keys and values). A position outside 0..n_ctx is not stored (attention then
// answers that row with NaN). One thread per element: grid ceil(n·kv_dim / blockDim.x).
extern "C" __global__ void kv_store(float* k_cache, float* v_cache, const float* k,
                                    const float* v, const int* pos, int n, int kv_dim,
                                    int n_ctx) {
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)n * kv_dim) return;
    int t = (int)(idx / kv_dim), c = (int)(idx % kv_dim);
    int p = pos[t];
    if (p < 0 || p >= n_ctx) return;
    long long dst = (long long)p * kv_dim + c;
    k_cache[dst] = k[idx];
    v_cache[dst] = v[idx];
}
