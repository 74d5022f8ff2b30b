// matmul.cu: y = x · Wᵀ for weights in every storage type of the format (F32, F16,
// BF16; Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL in blocks of 32; Q2_K, Q3_K, Q4_K, Q5_K,
// Q6_K, IQ4_XS in super-blocks of 256), fp32 activations.
//
// One warp per weight row, four rows per block; blockIdx.y picks a group of up to NB
// activation rows, so a row of weights is read once per NB tokens (generation is
// n = 1: each weight byte is read once per token, the memory-bound case the kernel is
// built for). Lanes take items of 8 weights in turn along the row (a quarter block of
// a 32-block type, 16 bytes of an f16 row, a 32nd of a super-block: a warp's step is
// one super-block) and decode each item once for all NB activation rows; the warp
// then sums its lanes. Rows whose length is not a multiple of 8, and buffers not on
// 16 bytes, take a scalar path that decodes one weight at a time from bytes
// (row_bytes<DT>, elem<DT> and the shared scale decoders are in common.cuh, shared
// with embed.cu).

#define ROWS_PER_BLOCK 4
#define NB 8

// The 8 weights of item `i` of a row: w[0..4] are columns o0..o0+3, w[4..8] columns
// o1..o1+3. The row starts on 16 bytes (float types) or on what the block size keeps
// from the 16-byte start of the matrix: 2 bytes (Q8_0, Q4_0, Q4_1, Q5_0, IQ4_NL, Q3_K,
// Q6_K), 4 (Q2_K), 8 (Q5_1, IQ4_XS) or 16 (Q4_K, Q5_K); loads are never wider than
// that.
template <int DT>
__device__ __forceinline__ void item8(const unsigned char* row, int i, float* w, int& o0, int& o1);

template <>
__device__ __forceinline__ void item8<DT_F32>(const unsigned char* row, int i, float* w, int& o0, int& o1) {
    const float4* r = reinterpret_cast<const float4*>(row) + 2 * i;
    float4 a = r[0], b = r[1];
    w[0] = a.x; w[1] = a.y; w[2] = a.z; w[3] = a.w;
    w[4] = b.x; w[5] = b.y; w[6] = b.z; w[7] = b.w;
    o0 = 8 * i;
    o1 = 8 * i + 4;
}

// Eight 16-bit values from one 16-byte load.
__device__ __forceinline__ void load8_u16(const unsigned char* p, unsigned short* h) {
    uint4 v = *reinterpret_cast<const uint4*>(p);
    unsigned u[4] = {v.x, v.y, v.z, v.w};
    for (int k = 0; k < 4; k++) {
        h[2 * k] = (unsigned short)(u[k] & 0xffffu);
        h[2 * k + 1] = (unsigned short)(u[k] >> 16);
    }
}

template <>
__device__ __forceinline__ void item8<DT_F16>(const unsigned char* row, int i, float* w, int& o0, int& o1) {
    unsigned short h[8];
    load8_u16(row + 16 * i, h);
    for (int k = 0; k < 8; k++) w[k] = f16_bits(h[k]);
    o0 = 8 * i;
    o1 = 8 * i + 4;
}

template <>
__device__ __forceinline__ void item8<DT_BF16>(const unsigned char* row, int i, float* w, int& o0, int& o1) {
    unsigned short h[8];
    load8_u16(row + 16 * i, h);
    for (int k = 0; k < 8; k++) w[k] = bf16_bits(h[k]);
    o0 = 8 * i;
    o1 = 8 * i + 4;
}

// Q8_0 (34 bytes: f16 d, 32 × i8): item i is quants 8p..8p+7 of block i/4, p = i%4.
template <>
__device__ __forceinline__ void item8<DT_Q8_0>(const unsigned char* row, int i, float* w, int& o0, int& o1) {
    int b = i / 4, p = i % 4;
    const unsigned char* blk = row + 34 * b;
    float d = f16_bits(ld_u16(blk));
    unsigned q[2] = {ld_u32_a2(blk + 2 + 8 * p), ld_u32_a2(blk + 6 + 8 * p)};
    for (int k = 0; k < 8; k++) w[k] = (float)(signed char)((q[k / 4] >> (8 * (k % 4))) & 0xffu) * d;
    o0 = 32 * b + 8 * p;
    o1 = o0 + 4;
}

// Q4_0 (18 bytes: f16 d, 16 bytes of nibbles; byte j holds columns j and j+16):
// item i is bytes 4p..4p+3 of block i/4, columns 4p.. and 16+4p..
template <>
__device__ __forceinline__ void item8<DT_Q4_0>(const unsigned char* row, int i, float* w, int& o0, int& o1) {
    int b = i / 4, p = i % 4;
    const unsigned char* blk = row + 18 * b;
    float d = f16_bits(ld_u16(blk));
    unsigned q = ld_u32_a2(blk + 2 + 4 * p);
    for (int k = 0; k < 4; k++) {
        w[k] = (float)((int)((q >> (8 * k)) & 15u) - 8) * d;
        w[4 + k] = (float)((int)((q >> (8 * k + 4)) & 15u) - 8) * d;
    }
    o0 = 32 * b + 4 * p;
    o1 = o0 + 16;
}

// Q4_1 (20 bytes: f16 d, f16 m, 16 bytes of nibbles as Q4_0): x = q·d + m.
template <>
__device__ __forceinline__ void item8<DT_Q4_1>(const unsigned char* row, int i, float* w, int& o0, int& o1) {
    int b = i / 4, p = i % 4;
    const unsigned char* blk = row + 20 * b;
    float d = f16_bits(ld_u16(blk)), m = f16_bits(ld_u16(blk + 2));
    unsigned q = ld_u32_a2(blk + 4 + 4 * p);
    for (int k = 0; k < 4; k++) {
        w[k] = (float)((q >> (8 * k)) & 15u) * d + m;
        w[4 + k] = (float)((q >> (8 * k + 4)) & 15u) * d + m;
    }
    o0 = 32 * b + 4 * p;
    o1 = o0 + 16;
}

// Q5_0 (22 bytes: f16 d, 32-bit qh, 16 bytes of nibbles as Q4_0): item i as Q4_0's,
// bytes 4p..4p+3 of block i/4 (columns 4p.. and 16+4p..) with their fifth bits, bits
// 4p.. and 16+4p.. of qh: x = (q - 16)·d.
template <>
__device__ __forceinline__ void item8<DT_Q5_0>(const unsigned char* row, int i, float* w, int& o0, int& o1) {
    int b = i / 4, p = i % 4;
    const unsigned char* blk = row + 22 * b;
    float d = f16_bits(ld_u16(blk));
    unsigned qh = ld_u32_a2(blk + 2) >> (4 * p);
    unsigned q = ld_u32_a2(blk + 6 + 4 * p);
    for (int k = 0; k < 4; k++) {
        int lo = (int)(((q >> (8 * k)) & 15u) | (((qh >> k) & 1u) << 4));
        int hi = (int)(((q >> (8 * k + 4)) & 15u) | (((qh >> (16 + k)) & 1u) << 4));
        w[k] = (float)(lo - 16) * d;
        w[4 + k] = (float)(hi - 16) * d;
    }
    o0 = 32 * b + 4 * p;
    o1 = o0 + 16;
}

// Q5_1 (24 bytes: f16 d, f16 m, qh, nibbles; blocks on 8 bytes): items as Q5_0's,
// x = q·d + m.
template <>
__device__ __forceinline__ void item8<DT_Q5_1>(const unsigned char* row, int i, float* w, int& o0, int& o1) {
    int b = i / 4, p = i % 4;
    const unsigned char* blk = row + 24 * b;
    float d = f16_bits(ld_u16(blk)), m = f16_bits(ld_u16(blk + 2));
    unsigned qh = ld_u32(blk + 4) >> (4 * p);
    unsigned q = ld_u32(blk + 8 + 4 * p);
    for (int k = 0; k < 4; k++) {
        unsigned lo = ((q >> (8 * k)) & 15u) | (((qh >> k) & 1u) << 4);
        unsigned hi = ((q >> (8 * k + 4)) & 15u) | (((qh >> (16 + k)) & 1u) << 4);
        w[k] = (float)lo * d + m;
        w[4 + k] = (float)hi * d + m;
    }
    o0 = 32 * b + 4 * p;
    o1 = o0 + 16;
}

// IQ4_NL (18 bytes: f16 d, index nibbles as Q4_0): items as Q4_0's, x = d·level[q].
template <>
__device__ __forceinline__ void item8<DT_IQ4_NL>(const unsigned char* row, int i, float* w, int& o0, int& o1) {
    int b = i / 4, p = i % 4;
    const unsigned char* blk = row + 18 * b;
    float d = f16_bits(ld_u16(blk));
    unsigned q = ld_u32_a2(blk + 2 + 4 * p);
    for (int k = 0; k < 4; k++) {
        w[k] = d * iq4nl_level((q >> (8 * k)) & 15u);
        w[4 + k] = d * iq4nl_level((q >> (8 * k + 4)) & 15u);
    }
    o0 = 32 * b + 4 * p;
    o1 = o0 + 16;
}

// The super-block types (256 weights): item i is in super-block i/32, and its 8
// weights share one group's scale, so each item decodes one scale (and minimum):
//   Q2_K, Q3_K, Q4_K, Q5_K, Q6_K: the 8 consecutive elements k0 = 8(i%32) .. k0+7 (half
//     a group of 16, or a quarter of a group of 32), columns o0 = 256(i/32) + k0 and
//     o1 = o0 + 4;
//   IQ4_XS: 4 index bytes and both their nibbles, as IQ4_NL's items: group g = (i%32)/4,
//     bytes 4p..4p+3 of its 16 (p = i%4), elements 32g + 4p.. and 32g + 16 + 4p...
// A warp's step along the row is one super-block: its lanes share the super-block's
// scales (broadcast loads) and read its quant bytes once between them.

// Q2_K (84 bytes: 16 scale bytes, 64 quant bytes, f16 d, f16 dmin; on 4 bytes):
// elements k0.. are bits 2s.. (s = (k0/32)%4) of bytes 32(k0/128) + k0%32 .. +7;
// group k0/16's scale byte: x = (d·sc)·q - dmin·m.
template <>
__device__ __forceinline__ void item8<DT_Q2_K>(const unsigned char* row, int i, float* w, int& o0, int& o1) {
    int b = i / 32, k0 = 8 * (i % 32);
    const unsigned char* blk = row + 84 * b;
    const unsigned char* qs = blk + 16 + 32 * (k0 / 128) + k0 % 32;
    int s = 2 * ((k0 / 32) % 4), sc = blk[k0 / 16];
    unsigned q[2] = {ld_u32(qs) >> s, ld_u32(qs + 4) >> s};
    float dl = f16_bits(ld_u16(blk + 80)) * (float)(sc & 15);
    float ml = f16_bits(ld_u16(blk + 82)) * (float)(sc >> 4);
    for (int k = 0; k < 8; k++) w[k] = dl * (float)((q[k / 4] >> (8 * (k % 4))) & 3u) - ml;
    o0 = 256 * b + k0;
    o1 = o0 + 4;
}

// Q3_K (110 bytes: 32 bytes hmask, 64 quant bytes as Q2_K's, 12 scale bytes, f16 d; on
// 2 bytes): Q2_K's low bits, the high bits at bit k0/32 of hmask[k0%32 ..]:
// x = (d·scale)·(low - 4·!high), scale of group k0/16.
template <>
__device__ __forceinline__ void item8<DT_Q3_K>(const unsigned char* row, int i, float* w, int& o0, int& o1) {
    int b = i / 32, k0 = 8 * (i % 32);
    const unsigned char* blk = row + 110 * b;
    const unsigned char* qs = blk + 32 + 32 * (k0 / 128) + k0 % 32;
    int s = 2 * ((k0 / 32) % 4), hs = k0 / 32;
    unsigned q[2] = {ld_u32_a2(qs) >> s, ld_u32_a2(qs + 4) >> s};
    unsigned h[2] = {ld_u32_a2(blk + k0 % 32) >> hs, ld_u32_a2(blk + k0 % 32 + 4) >> hs};
    float dl = f16_bits(ld_u16(blk + 108)) * (float)q3k_scale(blk + 96, k0 / 16);
    for (int k = 0; k < 8; k++) {
        int low = (int)((q[k / 4] >> (8 * (k % 4))) & 3u);
        int high = (h[k / 4] >> (8 * (k % 4))) & 1u ? 0 : 4;
        w[k] = dl * (float)(low - high);
    }
    o0 = 256 * b + k0;
    o1 = o0 + 4;
}

// Q4_K (144 bytes: f16 d, f16 dmin, 12 scale bytes, 128 nibble bytes; on 16 bytes):
// elements k0.. of group j = k0/32 are the low (j even) or high nibbles of bytes
// 32(j/2) + k0%32 .. +7: x = (d·sc)·q - dmin·m, group j's scale and minimum.
template <>
__device__ __forceinline__ void item8<DT_Q4_K>(const unsigned char* row, int i, float* w, int& o0, int& o1) {
    int b = i / 32, k0 = 8 * (i % 32), j = k0 / 32, sc, m;
    const unsigned char* blk = row + 144 * b;
    const unsigned char* qs = blk + 16 + 32 * (j / 2) + k0 % 32;
    int s = 4 * (j % 2);
    unsigned q[2] = {ld_u32(qs) >> s, ld_u32(qs + 4) >> s};
    scale_min_k4(blk + 4, j, sc, m);
    float dl = f16_bits(ld_u16(blk)) * (float)sc, ml = f16_bits(ld_u16(blk + 2)) * (float)m;
    for (int k = 0; k < 8; k++) w[k] = dl * (float)((q[k / 4] >> (8 * (k % 4))) & 15u) - ml;
    o0 = 256 * b + k0;
    o1 = o0 + 4;
}

// Q5_K (176 bytes: Q4_K's d, dmin, scales, 32 bytes qh, 128 nibble bytes; on 16
// bytes): Q4_K's nibbles plus fifth bits, bit j of qh[k0%32 ..].
template <>
__device__ __forceinline__ void item8<DT_Q5_K>(const unsigned char* row, int i, float* w, int& o0, int& o1) {
    int b = i / 32, k0 = 8 * (i % 32), j = k0 / 32, sc, m;
    const unsigned char* blk = row + 176 * b;
    const unsigned char* qs = blk + 48 + 32 * (j / 2) + k0 % 32;
    int s = 4 * (j % 2);
    unsigned q[2] = {ld_u32(qs) >> s, ld_u32(qs + 4) >> s};
    unsigned h[2] = {ld_u32(blk + 16 + k0 % 32) >> j, ld_u32(blk + 20 + k0 % 32) >> j};
    scale_min_k4(blk + 4, j, sc, m);
    float dl = f16_bits(ld_u16(blk)) * (float)sc, ml = f16_bits(ld_u16(blk + 2)) * (float)m;
    for (int k = 0; k < 8; k++) {
        int sh = 8 * (k % 4);
        unsigned qk = ((q[k / 4] >> sh) & 15u) | (((h[k / 4] >> sh) & 1u) << 4);
        w[k] = dl * (float)qk - ml;
    }
    o0 = 256 * b + k0;
    o1 = o0 + 4;
}

// Q6_K (210 bytes: 128 bytes ql, 64 bytes qh, 16 i8 scales, f16 d; on 2 bytes): in
// half h = k0/128, elements 32s + l.. (s = (k0%128)/32, l = k0%32) are the low (s < 2)
// or high nibbles of ql[64h + 32(s%2) + l ..] with 2 high bits at bits 2s.. of
// qh[32h + l ..]: x = (d·scale)·(q - 32), scale k0/16.
template <>
__device__ __forceinline__ void item8<DT_Q6_K>(const unsigned char* row, int i, float* w, int& o0, int& o1) {
    int b = i / 32, k0 = 8 * (i % 32), h = k0 / 128, s = (k0 % 128) / 32, l = k0 % 32;
    const unsigned char* blk = row + 210 * b;
    const unsigned char* ql = blk + 64 * h + 32 * (s % 2) + l;
    const unsigned char* qh = blk + 128 + 32 * h + l;
    int sl = 4 * (s / 2), sh = 2 * s;
    unsigned lo[2] = {ld_u32_a2(ql) >> sl, ld_u32_a2(ql + 4) >> sl};
    unsigned hi[2] = {ld_u32_a2(qh) >> sh, ld_u32_a2(qh + 4) >> sh};
    float dl = f16_bits(ld_u16(blk + 208)) * (float)(signed char)blk[192 + k0 / 16];
    for (int k = 0; k < 8; k++) {
        int at = 8 * (k % 4);
        int q = (int)(((lo[k / 4] >> at) & 15u) | (((hi[k / 4] >> at) & 3u) << 4));
        w[k] = dl * (float)(q - 32);
    }
    o0 = 256 * b + k0;
    o1 = o0 + 4;
}

// IQ4_XS (136 bytes: f16 d, 16-bit scales_h, 4 bytes scales_l, 128 index nibble bytes,
// 16 per group of 32 as IQ4_NL's block; on 8 bytes): group g = (i%32)/4, bytes 4p..
// (p = i%4) of its 16, columns 32g + 4p.. and 32g + 16 + 4p..: x = (d·scale)·level[q].
template <>
__device__ __forceinline__ void item8<DT_IQ4_XS>(const unsigned char* row, int i, float* w, int& o0, int& o1) {
    int b = i / 32, g = (i % 32) / 4, p = i % 4;
    const unsigned char* blk = row + 136 * b;
    unsigned q = ld_u32(blk + 8 + 16 * g + 4 * p);
    float dl = f16_bits(ld_u16(blk)) * (float)iq4xs_scale(blk, g);
    for (int k = 0; k < 4; k++) {
        w[k] = dl * iq4nl_level((q >> (8 * k)) & 15u);
        w[4 + k] = dl * iq4nl_level((q >> (8 * k + 4)) & 15u);
    }
    o0 = 256 * b + 32 * g + 4 * p;
    o1 = o0 + 16;
}

// Where the rows of the product go, so that one launch can feed several consumers
// (the fused q/k/v and gate/up products) and write into the KV cache or add into the
// residual stream without a kernel of its own: weight rows [0, r1) go to y0 ([n, r1]),
// rows [r1, r2) to y1 and [r2, rows) to y2 (rows of r2 - r1 and rows - r2 values); those
// two at row pos[j] for activation row j when pos is given (the cache rows of the
// tokens' positions; a position outside 0..pos_rows is not written), else at row j.
// With acc the product is added to what is there.
struct Dest {
    float* y0;
    float* y1;
    float* y2;
    int r1, r2;
    const int* pos;
    int pos_rows;
    int acc;
};

__device__ __forceinline__ void store(const Dest& d, int rows, int r, int j, float s) {
    float* p;
    if (r < d.r1) {
        p = d.y0 + (long long)j * d.r1 + r;
    } else {
        int row = j;
        if (d.pos) {
            row = d.pos[j];
            if (row < 0 || row >= d.pos_rows) return;
        }
        p = r < d.r2 ? d.y1 + (long long)row * (d.r2 - d.r1) + (r - d.r1)
                     : d.y2 + (long long)row * (rows - d.r2) + (r - d.r2);
    }
    *p = d.acc ? *p + s : s;
}

// y[j, r] = Σ_c W[r, c] · x[j, c] for r < rows, j < n, stored as `dst` says: W is
// rows × cols in storage type DT, x is n × cols fp32 row-major. Launch with
// ROWS_PER_BLOCK warps per block and grid (ceil(rows / ROWS_PER_BLOCK), ceil(n / NB)).
template <int DT>
__device__ __forceinline__ void matmul_rows(const unsigned char* w, const float* x, Dest dst,
                                            int rows, int cols, int n) {
    int lane = threadIdx.x % WARP;
    int r = blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / WARP;
    int j0 = blockIdx.y * NB;
    if (r >= rows) return;  // the whole warp: no shuffle waits for it
    int nb = min(NB, n - j0);
    const unsigned char* row = w + (long long)r * row_bytes<DT>(cols);
    const float* xs = x + (long long)j0 * cols;
    float acc[NB];
#pragma unroll
    for (int j = 0; j < NB; j++) acc[j] = 0.0f;
    bool fast = (cols & 7) == 0 && ((unsigned long long)w & 15) == 0 &&
                ((unsigned long long)x & 15) == 0;
    if (fast) {
        for (int i = lane; i < cols / 8; i += WARP) {
            float wv[8];
            int o0, o1;
            item8<DT>(row, i, wv, o0, o1);
#pragma unroll
            for (int j = 0; j < NB; j++) {
                if (j < nb) {
                    const float* xj = xs + (long long)j * cols;
                    float4 a = *reinterpret_cast<const float4*>(xj + o0);
                    float4 b = *reinterpret_cast<const float4*>(xj + o1);
                    acc[j] += wv[0] * a.x + wv[1] * a.y + wv[2] * a.z + wv[3] * a.w +
                              wv[4] * b.x + wv[5] * b.y + wv[6] * b.z + wv[7] * b.w;
                }
            }
        }
    } else {
        for (int c = lane; c < cols; c += WARP) {
            float wc = elem<DT>(row, c);
#pragma unroll
            for (int j = 0; j < NB; j++) {
                if (j < nb) acc[j] += wc * xs[(long long)j * cols + c];
            }
        }
    }
#pragma unroll
    for (int j = 0; j < NB; j++) {
        if (j < nb) {  // the same for every lane of the warp
            float s = warp_sum(acc[j]);
            if (lane == 0) store(dst, rows, r, j0 + j, s);
        }
    }
}

extern "C" __global__ void matmul_f32(const unsigned char* w, const float* x, float* y0, float* y1,
        float* y2, int rows, int cols, int n, int r1, int r2, const int* pos, int pos_rows, int acc) {
    matmul_rows<DT_F32>(w, x, Dest{y0, y1, y2, r1, r2, pos, pos_rows, acc}, rows, cols, n);
}
extern "C" __global__ void matmul_f16(const unsigned char* w, const float* x, float* y0, float* y1,
        float* y2, int rows, int cols, int n, int r1, int r2, const int* pos, int pos_rows, int acc) {
    matmul_rows<DT_F16>(w, x, Dest{y0, y1, y2, r1, r2, pos, pos_rows, acc}, rows, cols, n);
}
extern "C" __global__ void matmul_bf16(const unsigned char* w, const float* x, float* y0, float* y1,
        float* y2, int rows, int cols, int n, int r1, int r2, const int* pos, int pos_rows, int acc) {
    matmul_rows<DT_BF16>(w, x, Dest{y0, y1, y2, r1, r2, pos, pos_rows, acc}, rows, cols, n);
}
extern "C" __global__ void matmul_q8_0(const unsigned char* w, const float* x, float* y0, float* y1,
        float* y2, int rows, int cols, int n, int r1, int r2, const int* pos, int pos_rows, int acc) {
    matmul_rows<DT_Q8_0>(w, x, Dest{y0, y1, y2, r1, r2, pos, pos_rows, acc}, rows, cols, n);
}
extern "C" __global__ void matmul_q4_0(const unsigned char* w, const float* x, float* y0, float* y1,
        float* y2, int rows, int cols, int n, int r1, int r2, const int* pos, int pos_rows, int acc) {
    matmul_rows<DT_Q4_0>(w, x, Dest{y0, y1, y2, r1, r2, pos, pos_rows, acc}, rows, cols, n);
}
extern "C" __global__ void matmul_q4_1(const unsigned char* w, const float* x, float* y0, float* y1,
        float* y2, int rows, int cols, int n, int r1, int r2, const int* pos, int pos_rows, int acc) {
    matmul_rows<DT_Q4_1>(w, x, Dest{y0, y1, y2, r1, r2, pos, pos_rows, acc}, rows, cols, n);
}
extern "C" __global__ void matmul_q5_0(const unsigned char* w, const float* x, float* y0, float* y1,
        float* y2, int rows, int cols, int n, int r1, int r2, const int* pos, int pos_rows, int acc) {
    matmul_rows<DT_Q5_0>(w, x, Dest{y0, y1, y2, r1, r2, pos, pos_rows, acc}, rows, cols, n);
}
extern "C" __global__ void matmul_q5_1(const unsigned char* w, const float* x, float* y0, float* y1,
        float* y2, int rows, int cols, int n, int r1, int r2, const int* pos, int pos_rows, int acc) {
    matmul_rows<DT_Q5_1>(w, x, Dest{y0, y1, y2, r1, r2, pos, pos_rows, acc}, rows, cols, n);
}
extern "C" __global__ void matmul_iq4_nl(const unsigned char* w, const float* x, float* y0, float* y1,
        float* y2, int rows, int cols, int n, int r1, int r2, const int* pos, int pos_rows, int acc) {
    matmul_rows<DT_IQ4_NL>(w, x, Dest{y0, y1, y2, r1, r2, pos, pos_rows, acc}, rows, cols, n);
}
extern "C" __global__ void matmul_q2_k(const unsigned char* w, const float* x, float* y0, float* y1,
        float* y2, int rows, int cols, int n, int r1, int r2, const int* pos, int pos_rows, int acc) {
    matmul_rows<DT_Q2_K>(w, x, Dest{y0, y1, y2, r1, r2, pos, pos_rows, acc}, rows, cols, n);
}
extern "C" __global__ void matmul_q3_k(const unsigned char* w, const float* x, float* y0, float* y1,
        float* y2, int rows, int cols, int n, int r1, int r2, const int* pos, int pos_rows, int acc) {
    matmul_rows<DT_Q3_K>(w, x, Dest{y0, y1, y2, r1, r2, pos, pos_rows, acc}, rows, cols, n);
}
extern "C" __global__ void matmul_q4_k(const unsigned char* w, const float* x, float* y0, float* y1,
        float* y2, int rows, int cols, int n, int r1, int r2, const int* pos, int pos_rows, int acc) {
    matmul_rows<DT_Q4_K>(w, x, Dest{y0, y1, y2, r1, r2, pos, pos_rows, acc}, rows, cols, n);
}
extern "C" __global__ void matmul_q5_k(const unsigned char* w, const float* x, float* y0, float* y1,
        float* y2, int rows, int cols, int n, int r1, int r2, const int* pos, int pos_rows, int acc) {
    matmul_rows<DT_Q5_K>(w, x, Dest{y0, y1, y2, r1, r2, pos, pos_rows, acc}, rows, cols, n);
}
extern "C" __global__ void matmul_q6_k(const unsigned char* w, const float* x, float* y0, float* y1,
        float* y2, int rows, int cols, int n, int r1, int r2, const int* pos, int pos_rows, int acc) {
    matmul_rows<DT_Q6_K>(w, x, Dest{y0, y1, y2, r1, r2, pos, pos_rows, acc}, rows, cols, n);
}
extern "C" __global__ void matmul_iq4_xs(const unsigned char* w, const float* x, float* y0, float* y1,
        float* y2, int rows, int cols, int n, int r1, int r2, const int* pos, int pos_rows, int acc) {
    matmul_rows<DT_IQ4_XS>(w, x, Dest{y0, y1, y2, r1, r2, pos, pos_rows, acc}, rows, cols, n);
}
