// matmul.cu: y = x · Wᵀ for weights in the file's storage types, fp32 activations.
//
// One warp per weight row, four rows per block; blockIdx.y picks a group of up to NB
// activation rows, so a row of weights is read once per NB tokens (generation is
// n = 1: each weight byte is read once per token, the memory-bound case the kernel is
// built for). Lanes take items of 8 weights in turn along the row (a quarter block of
// a 32-block type, 16 bytes of an f16 row) and decode each item once for all NB
// activation rows; the warp then sums its lanes. Rows whose length is not a multiple
// of 8, and buffers not on 16 bytes, take a scalar path that decodes one weight at a
// time from bytes (row_bytes<DT> and elem<DT> are in common.cuh, shared with embed.cu).

#define ROWS_PER_BLOCK 4
#define NB 8

// The 8 weights of item `i` of a row: w[0..4] are columns o0..o0+3, w[4..8] columns
// o1..o1+3. The row starts on 16 bytes (float types) or 2 bytes (blocks).
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

// y[j, r] = Σ_c W[r, c] · x[j, c] for r < rows, j < n: W is rows × cols in storage
// type DT, x is n × cols and y n × rows, both fp32 and row-major. Launch with
// ROWS_PER_BLOCK warps per block and grid (ceil(rows / ROWS_PER_BLOCK), ceil(n / NB)).
template <int DT>
__device__ __forceinline__ void matmul_rows(const unsigned char* w, const float* x, float* y,
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
            if (lane == 0) y[(long long)(j0 + j) * rows + r] = s;
        }
    }
}

extern "C" __global__ void matmul_f32(const unsigned char* w, const float* x, float* y, int rows, int cols, int n) {
    matmul_rows<DT_F32>(w, x, y, rows, cols, n);
}
extern "C" __global__ void matmul_f16(const unsigned char* w, const float* x, float* y, int rows, int cols, int n) {
    matmul_rows<DT_F16>(w, x, y, rows, cols, n);
}
extern "C" __global__ void matmul_bf16(const unsigned char* w, const float* x, float* y, int rows, int cols, int n) {
    matmul_rows<DT_BF16>(w, x, y, rows, cols, n);
}
extern "C" __global__ void matmul_q8_0(const unsigned char* w, const float* x, float* y, int rows, int cols, int n) {
    matmul_rows<DT_Q8_0>(w, x, y, rows, cols, n);
}
extern "C" __global__ void matmul_q4_0(const unsigned char* w, const float* x, float* y, int rows, int cols, int n) {
    matmul_rows<DT_Q4_0>(w, x, y, rows, cols, n);
}
extern "C" __global__ void matmul_q4_1(const unsigned char* w, const float* x, float* y, int rows, int cols, int n) {
    matmul_rows<DT_Q4_1>(w, x, y, rows, cols, n);
}
