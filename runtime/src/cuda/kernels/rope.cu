// rope.cu: the position codes of the forward pass, on fp32 rows, as runtime/src/ops.rs
// computes them:
//
//   rope            rotary embedding of the q rows [n, q_dim] and k rows [n, kv_dim] in
//                   place, on adjacent pairs of each head of hd values (ops::rope_table
//                   then ops::rope); one thread per pair of q or k
//   add_sinusoidal  the sinusoidal code added to rows [n, d] (ops::add_sinusoidal); one
//                   thread per pair
//   add_pos_rows    learned position rows added to rows [n, d]; one thread per element
//
// Positions are read from a device int array (pos[i] for row i), so a captured CUDA
// graph replays with new positions. The angles are the CPU's own float operations on the
// same inputs (the inverse frequencies and the sinusoidal divisors come from the host),
// so only cosf/sinf's last-bit rounding differs.

#define POS_NAN (__int_as_float(0x7fc00000))

// Pair j of the q and k rows of token t (pairs of q first, then of k): rotated by the
// angle pos[t]·freqs[i], i = the pair's index within its head, cosine and sine scaled by
// `scale` (YaRN's attention factor, else 1). freqs holds hd/2 inverse frequencies. With
// k_cache_rows > 0, k is the KV cache ([k_cache_rows, kv_dim]) and token t's key row is
// row pos[t] (the fused q/k/v product wrote it there); a position outside is skipped.
// Grid: ceil(n·(q_dim + kv_dim)/2 / blockDim.x) blocks.
extern "C" __global__ void rope(float* q, float* k, const float* freqs, const int* pos, int n,
                                int q_dim, int kv_dim, int hd, float scale, int k_cache_rows) {
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    int per = q_dim / 2 + kv_dim / 2;
    if (idx >= (long long)n * per) return;
    int t = (int)(idx / per), j = (int)(idx % per);
    float* x;
    if (j < q_dim / 2) {
        x = q + (long long)t * q_dim + 2 * j;
    } else {
        j -= q_dim / 2;
        long long row = t;
        if (k_cache_rows > 0) {
            row = pos[t];
            if (row < 0 || row >= k_cache_rows) return;
        }
        x = k + row * kv_dim + 2 * j;
    }
    float ang = (float)pos[t] * freqs[j % (hd / 2)];
    float c = cosf(ang) * scale, s = sinf(ang) * scale;
    float a = x[0], b = x[1];
    x[0] = a * c - b * s;
    x[1] = a * s + b * c;
}

// x[t, 2i] += sin(pos[t] / div[i]), x[t, 2i+1] += cos(...) for i < d/2 (an odd d's last
// value is left alone), div[i] = 10000^(2i/d) from the host (rope::sinusoidal_divisors).
// Grid: ceil(n·(d/2) / blockDim.x) blocks.
extern "C" __global__ void add_sinusoidal(float* x, const float* div, const int* pos, int n,
                                          int d) {
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    int half = d / 2;
    if (idx >= (long long)n * half) return;
    int t = (int)(idx / half), i = (int)(idx % half);
    float ang = (float)pos[t] / div[i];
    float* r = x + (long long)t * d + 2 * i;
    r[0] += sinf(ang);
    r[1] += cosf(ang);
}

// x[t, c] += table[pos[t], c]: the learned position rows (table [max_len, d]). A position
// outside 0..max_len makes its row NaN instead of reading outside the table.
// Grid: ceil(n·d / blockDim.x) blocks.
extern "C" __global__ void add_pos_rows(float* x, const float* table, const int* pos, int n,
                                        int d, int max_len) {
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)n * d) return;
    int t = (int)(idx / d), c = (int)(idx % d);
    int p = pos[t];
    x[idx] = (p >= 0 && p < max_len) ? x[idx] + table[(long long)p * d + c] : POS_NAN;
}
