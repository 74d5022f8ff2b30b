// attention.cu: causal multi-head attention in the flash-attention manner: K/V (or Q/dO)
// tiles of Bc rows staged in shared memory, online softmax, only the per-row logsumexp
// [B, H, T] saved for the backward pass; no T x T matrix ever exists in memory. GQA/MQA:
// query head h reads kv head h / (H / KVH).
//
// Layouts (row-major): q/dq [B, T, q_stride] with head h at columns h*hd .. h*hd+hd,
// k/v/dk/dv [B, T, kv_stride] with kv head g at g*hd, out/dout [B, T, o_stride].
// Thread layout: a group of G lanes (a power of two, G*DPT >= hd) holds one row, DPT
// dimensions per lane; dot products are reduced over the group with xor shuffles. All
// groups of a block walk the same key range (masking, not branching, for causality) so
// the full-warp shuffles never diverge. Scores use scale = 1/sqrt(hd).
// Gradients dq, dk, dv are written (=), or added (+=) with accumulate != 0; the backward pass needs D = rowsum(dout * out)
// from attention_backward_preprocess first.

#define DPT 8

// Dot product of this lane's DPT values with a 16-byte aligned shared-memory row slice.
__device__ __forceinline__ float dot_dpt(const float* a, const float* s) {
    float4 s0 = *reinterpret_cast<const float4*>(s);
    float4 s1 = *reinterpret_cast<const float4*>(s + 4);
    return a[0] * s0.x + a[1] * s0.y + a[2] * s0.z + a[3] * s0.w + a[4] * s1.x + a[5] * s1.y +
           a[6] * s1.z + a[7] * s1.w;
}

// acc = acc * c + p * s (s a shared-memory row slice).
__device__ __forceinline__ void axpby_dpt(float* acc, float c, float p, const float* s) {
    float4 s0 = *reinterpret_cast<const float4*>(s);
    float4 s1 = *reinterpret_cast<const float4*>(s + 4);
    acc[0] = acc[0] * c + p * s0.x;
    acc[1] = acc[1] * c + p * s0.y;
    acc[2] = acc[2] * c + p * s0.z;
    acc[3] = acc[3] * c + p * s0.w;
    acc[4] = acc[4] * c + p * s1.x;
    acc[5] = acc[5] * c + p * s1.y;
    acc[6] = acc[6] * c + p * s1.z;
    acc[7] = acc[7] * c + p * s1.w;
}

// Sum over the G lanes of a group (G a power of two <= 32, groups aligned in the warp).
__device__ __forceinline__ float group_sum(float v, int G) {
    for (int o = G / 2; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
    return v;
}

// Loads `rows` rows (row0.., head column col) of a [B*T, stride] tensor into a zero-padded
// [rows][hd_pad] fp32 tile.
__device__ __forceinline__ void load_tile(float* tile, const floatX* x, long long row_base,
                                          int row0, int rows, int T, int stride, int col,
                                          int hd, int hd_pad) {
    for (int e = threadIdx.x; e < rows * hd_pad; e += blockDim.x) {
        int rr = e / hd_pad, d = e % hd_pad, t = row0 + rr;
        tile[e] = (t < T && d < hd) ? ldx(x[(row_base + t) * stride + col + d]) : 0.0f;
    }
}

// out = softmax(q k^T * scale + causal mask) v; lse[b, h, i] = logsumexp of row i's scores.
// Grid (ceil(T / R), H, B) with R = blockDim.x / G; dynamic smem 2 * Bc * hd_pad floats.
extern "C" __global__ void attention_forward(floatX* out, float* lse, const floatX* q,
                                             const floatX* k, const floatX* v, int T, int H,
                                             int KVH, int hd, int G, int Bc, int q_stride,
                                             int kv_stride, int o_stride, float scale) {
    extern __shared__ float4 smem4[];
    float* smem = reinterpret_cast<float*>(smem4);
    int hd_pad = G * DPT;
    float* Ks = smem;
    float* Vs = smem + Bc * hd_pad;
    int R = blockDim.x / G, g = threadIdx.x % G;
    int b = blockIdx.z, h = blockIdx.y, kvh = h / (H / KVH);
    int i = (int)blockIdx.x * R + (int)threadIdx.x / G;
    long long rb = (long long)b * T;
    float qr[DPT], acc[DPT];
    for (int d = 0; d < DPT; d++) {
        int dim = g * DPT + d;
        qr[d] = (i < T && dim < hd) ? ldx(q[(rb + i) * q_stride + h * hd + dim]) * scale : 0.0f;
        acc[d] = 0.0f;
    }
    float m = NEG_INF, l = 0.0f;
    int last = min(T - 1, (int)blockIdx.x * R + R - 1);  // the block's keys: 0 ..= last
    for (int j0 = 0; j0 <= last; j0 += Bc) {
        int jn = min(Bc, last - j0 + 1);
        __syncthreads();
        load_tile(Ks, k, rb, j0, jn, T, kv_stride, kvh * hd, hd, hd_pad);
        load_tile(Vs, v, rb, j0, jn, T, kv_stride, kvh * hd, hd, hd_pad);
        __syncthreads();
        for (int jj = 0; jj < jn; jj++) {
            float s = group_sum(dot_dpt(qr, Ks + jj * hd_pad + g * DPT), G);
            if (j0 + jj <= i) {
                float mn = fmaxf(m, s);
                float corr = expf(m - mn), p = expf(s - mn);
                l = l * corr + p;
                axpby_dpt(acc, corr, p, Vs + jj * hd_pad + g * DPT);
                m = mn;
            }
        }
    }
    if (i >= T) return;
    float inv = 1.0f / l;
    for (int d = 0; d < DPT; d++) {
        int dim = g * DPT + d;
        if (dim < hd) out[(rb + i) * o_stride + h * hd + dim] = stx(acc[d] * inv);
    }
    if (g == 0) lse[((long long)b * H + h) * T + i] = m + logf(l);
}

// D[b, h, i] = sum_d dout[b, i, h, d] * out[b, i, h, d]; one warp per (b, i, h) row.
extern "C" __global__ void attention_backward_preprocess(float* D, const floatX* out,
                                                         const floatX* dout, int B, int T,
                                                         int H, int hd, int o_stride) {
    long long row = (long long)blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    if (row >= (long long)B * T * H) return;
    int lane = threadIdx.x % WARP;
    int h = (int)(row % H);
    long long bt = row / H;
    long long o = bt * o_stride + (long long)h * hd;
    float s = 0.0f;
    for (int d = lane; d < hd; d += WARP) s += ldx(dout[o + d]) * ldx(out[o + d]);
    s = warp_sum(s);
    long long b = bt / T, t = bt % T;
    if (lane == 0) D[(b * H + h) * T + t] = s;
}

// dq_i = scale * sum_{j <= i} p_ij (dout_i . v_j - D_i) k_j, p_ij = exp(scale q_i.k_j - lse_i).
// Grid and smem as attention_forward (K and V tiles).
extern "C" __global__ void attention_backward_dq(floatX* dq, const floatX* dout,
                                                 const floatX* q, const floatX* k,
                                                 const floatX* v, const float* lse,
                                                 const float* D, int T, int H, int KVH, int hd,
                                                 int G, int Bc, int q_stride, int kv_stride,
                                                 int o_stride, float scale, int accumulate) {
    extern __shared__ float4 smem4[];
    float* smem = reinterpret_cast<float*>(smem4);
    int hd_pad = G * DPT;
    float* Ks = smem;
    float* Vs = smem + Bc * hd_pad;
    int R = blockDim.x / G, g = threadIdx.x % G;
    int b = blockIdx.z, h = blockIdx.y, kvh = h / (H / KVH);
    int i = (int)blockIdx.x * R + (int)threadIdx.x / G;
    long long rb = (long long)b * T;
    float qr[DPT], dor[DPT], acc[DPT];
    for (int d = 0; d < DPT; d++) {
        int dim = g * DPT + d;
        bool ok = i < T && dim < hd;
        qr[d] = ok ? ldx(q[(rb + i) * q_stride + h * hd + dim]) * scale : 0.0f;
        dor[d] = ok ? ldx(dout[(rb + i) * o_stride + h * hd + dim]) : 0.0f;
        acc[d] = 0.0f;
    }
    long long srow = ((long long)b * H + h) * T + i;
    float li = i < T ? lse[srow] : 0.0f, Di = i < T ? D[srow] : 0.0f;
    int last = min(T - 1, (int)blockIdx.x * R + R - 1);
    for (int j0 = 0; j0 <= last; j0 += Bc) {
        int jn = min(Bc, last - j0 + 1);
        __syncthreads();
        load_tile(Ks, k, rb, j0, jn, T, kv_stride, kvh * hd, hd, hd_pad);
        load_tile(Vs, v, rb, j0, jn, T, kv_stride, kvh * hd, hd, hd_pad);
        __syncthreads();
        for (int jj = 0; jj < jn; jj++) {
            float s = group_sum(dot_dpt(qr, Ks + jj * hd_pad + g * DPT), G);
            float dp = group_sum(dot_dpt(dor, Vs + jj * hd_pad + g * DPT), G);
            if (j0 + jj <= i) {
                float ds = expf(s - li) * (dp - Di);
                axpby_dpt(acc, 1.0f, ds, Ks + jj * hd_pad + g * DPT);
            }
        }
    }
    if (i >= T) return;
    for (int d = 0; d < DPT; d++) {
        int dim = g * DPT + d;
        if (dim < hd) {
            long long o = (rb + i) * q_stride + h * hd + dim;
            float g = acc[d] * scale;
            dq[o] = stx(accumulate ? ldx(dq[o]) + g : g);
        }
    }
}

// For key row j of kv head kvh, summed over the query heads that share it and i >= j:
// dv_j = sum p_ij dout_i, dk_j = scale * sum p_ij (dout_i . v_j - D_i) q_i.
// Grid (ceil(T / R), KVH, B); dynamic smem 2 * Bc * hd_pad + 2 * Bc floats (Q, dO tiles,
// lse and D of the tile's rows).
extern "C" __global__ void attention_backward_dkv(floatX* dk, floatX* dv, const floatX* dout,
                                                  const floatX* q, const floatX* k,
                                                  const floatX* v, const float* lse,
                                                  const float* D, int T, int H, int KVH, int hd,
                                                  int G, int Bc, int q_stride, int kv_stride,
                                                  int o_stride, float scale, int accumulate) {
    extern __shared__ float4 smem4[];
    float* smem = reinterpret_cast<float*>(smem4);
    int hd_pad = G * DPT;
    float* Qs = smem;
    float* Os = smem + Bc * hd_pad;
    float* Ls = smem + 2 * Bc * hd_pad;
    float* Ds = Ls + Bc;
    int R = blockDim.x / G, g = threadIdx.x % G;
    int b = blockIdx.z, kvh = blockIdx.y, rep = H / KVH;
    int j = (int)blockIdx.x * R + (int)threadIdx.x / G;
    long long rb = (long long)b * T;
    float kr[DPT], vr[DPT], dka[DPT], dva[DPT];
    for (int d = 0; d < DPT; d++) {
        int dim = g * DPT + d;
        bool ok = j < T && dim < hd;
        kr[d] = ok ? ldx(k[(rb + j) * kv_stride + kvh * hd + dim]) * scale : 0.0f;
        vr[d] = ok ? ldx(v[(rb + j) * kv_stride + kvh * hd + dim]) : 0.0f;
        dka[d] = 0.0f;
        dva[d] = 0.0f;
    }
    int first = (int)blockIdx.x * R;  // the block's queries: first .. T-1
    for (int h = kvh * rep; h < (kvh + 1) * rep; h++) {
        long long sbase = ((long long)b * H + h) * T;
        for (int i0 = first; i0 < T; i0 += Bc) {
            int in = min(Bc, T - i0);
            __syncthreads();
            load_tile(Qs, q, rb, i0, in, T, q_stride, h * hd, hd, hd_pad);
            load_tile(Os, dout, rb, i0, in, T, o_stride, h * hd, hd, hd_pad);
            for (int e = threadIdx.x; e < in; e += blockDim.x) {
                Ls[e] = lse[sbase + i0 + e];
                Ds[e] = D[sbase + i0 + e];
            }
            __syncthreads();
            for (int ii = 0; ii < in; ii++) {
                float s = group_sum(dot_dpt(kr, Qs + ii * hd_pad + g * DPT), G);
                float dp = group_sum(dot_dpt(vr, Os + ii * hd_pad + g * DPT), G);
                if (i0 + ii >= j) {
                    float p = expf(s - Ls[ii]);
                    axpby_dpt(dva, 1.0f, p, Os + ii * hd_pad + g * DPT);
                    axpby_dpt(dka, 1.0f, p * (dp - Ds[ii]), Qs + ii * hd_pad + g * DPT);
                }
            }
        }
    }
    if (j >= T) return;
    for (int d = 0; d < DPT; d++) {
        int dim = g * DPT + d;
        if (dim < hd) {
            long long o = (rb + j) * kv_stride + kvh * hd + dim;
            float gk = dka[d] * scale, gv = dva[d];
            dk[o] = stx(accumulate ? ldx(dk[o]) + gk : gk);
            dv[o] = stx(accumulate ? ldx(dv[o]) + gv : gv);
        }
    }
}
