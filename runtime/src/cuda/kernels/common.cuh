// common.cuh: prepended to every runtime kernel file before it is compiled (by NVRTC
// for the GPU, by g++ with cuda_emu.h for the emulator tests). Weights are read in
// the .llm file's own block layouts (format/SPEC.md), activations are fp32, and the
// arithmetic is fp32. The decoders shared by matmul.cu and embed.cu are here, for
// every storage type of the format: row_bytes<DT>, elem<DT> (one weight, byte-wise),
// IQ4_NL's levels and the K-quants' sub-block scales. Each copies the arithmetic of
// the type's `dequantize` in format/src/quant (legacy.rs, kquants.rs) in the same
// order, so the values match the CPU's to the bit (or to one rounding where the GPU
// fuses a multiply-add).
#include <cuda_fp16.h>
#include <cuda_bf16.h>

#define WARP 32
#define FULL_MASK 0xffffffffu

// The storage types' ids, as in the file (ggml's numbering).
#define DT_F32 0
#define DT_F16 1
#define DT_Q4_0 2
#define DT_Q4_1 3
#define DT_Q5_0 6
#define DT_Q5_1 7
#define DT_Q8_0 8
#define DT_Q2_K 10
#define DT_Q3_K 11
#define DT_Q4_K 12
#define DT_Q5_K 13
#define DT_Q6_K 14
#define DT_IQ4_NL 20
#define DT_IQ4_XS 23
#define DT_BF16 30

// Sum over the 32 lanes of a warp; every lane gets the result.
__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
    return v;
}

// An f16 value from its bits (the hardware conversion on the GPU).
__device__ __forceinline__ float f16_bits(unsigned short b) {
    return __half2float(__ushort_as_half(b));
}

// A bf16 value from its bits: the upper half of an f32.
__device__ __forceinline__ float bf16_bits(unsigned short b) {
    return __int_as_float((int)((unsigned)b << 16));
}

// Two bytes, little-endian, at a 2-byte-aligned address.
__device__ __forceinline__ unsigned short ld_u16(const unsigned char* p) {
    return *reinterpret_cast<const unsigned short*>(p);
}

// Four bytes, little-endian, at a 2-byte-aligned address (two 16-bit loads: the quant
// bytes of Q4_0 and Q8_0 blocks sit at offsets 2 mod 4).
__device__ __forceinline__ unsigned ld_u32_a2(const unsigned char* p) {
    return (unsigned)ld_u16(p) | ((unsigned)ld_u16(p + 2) << 16);
}

// Four bytes, little-endian, at a 4-byte-aligned address (blocks whose size keeps
// them on 4 bytes or more: Q5_1, Q2_K, Q4_K, Q5_K, IQ4_XS).
__device__ __forceinline__ unsigned ld_u32(const unsigned char* p) {
    return *reinterpret_cast<const unsigned*>(p);
}

// Bytes of one row of `cols` weights of storage type DT (whole blocks for the block
// types).
template <int DT> __device__ __forceinline__ long long row_bytes(int cols);
template <> __device__ __forceinline__ long long row_bytes<DT_F32>(int cols) { return 4LL * cols; }
template <> __device__ __forceinline__ long long row_bytes<DT_F16>(int cols) { return 2LL * cols; }
template <> __device__ __forceinline__ long long row_bytes<DT_BF16>(int cols) { return 2LL * cols; }
template <> __device__ __forceinline__ long long row_bytes<DT_Q8_0>(int cols) { return 34LL * (cols / 32); }
template <> __device__ __forceinline__ long long row_bytes<DT_Q4_0>(int cols) { return 18LL * (cols / 32); }
template <> __device__ __forceinline__ long long row_bytes<DT_Q4_1>(int cols) { return 20LL * (cols / 32); }
template <> __device__ __forceinline__ long long row_bytes<DT_Q5_0>(int cols) { return 22LL * (cols / 32); }
template <> __device__ __forceinline__ long long row_bytes<DT_Q5_1>(int cols) { return 24LL * (cols / 32); }
template <> __device__ __forceinline__ long long row_bytes<DT_IQ4_NL>(int cols) { return 18LL * (cols / 32); }
template <> __device__ __forceinline__ long long row_bytes<DT_Q2_K>(int cols) { return 84LL * (cols / 256); }
template <> __device__ __forceinline__ long long row_bytes<DT_Q3_K>(int cols) { return 110LL * (cols / 256); }
template <> __device__ __forceinline__ long long row_bytes<DT_Q4_K>(int cols) { return 144LL * (cols / 256); }
template <> __device__ __forceinline__ long long row_bytes<DT_Q5_K>(int cols) { return 176LL * (cols / 256); }
template <> __device__ __forceinline__ long long row_bytes<DT_Q6_K>(int cols) { return 210LL * (cols / 256); }
template <> __device__ __forceinline__ long long row_bytes<DT_IQ4_XS>(int cols) { return 136LL * (cols / 256); }

// Two bytes, little-endian, at any address (byte-wise loads: no alignment assumed).
__device__ __forceinline__ unsigned short u16_at(const unsigned char* p) {
    return (unsigned short)(p[0] | (p[1] << 8));
}

// IQ4_NL's 16 levels (ggml's kvalues_iq4nl: -127, -104, -83, -65, -49, -35, -22, -10,
// 1, 13, 25, 38, 53, 69, 89, 113), for IQ4_NL and IQ4_XS: level q is byte q % 8 of the
// first (q < 8) or the second 64-bit constant, as a signed byte. Register arithmetic,
// no table in memory.
__device__ __forceinline__ float iq4nl_level(unsigned q) {
    unsigned long long t = q < 8 ? 0xf6eaddcfbfad9881ULL : 0x7159453526190d01ULL;
    return (float)(signed char)((t >> (8 * (q & 7))) & 0xffu);
}

// Scale sc and minimum m (6 bits each) of group j (0..8) of a Q4_K/Q5_K super-block,
// from its 12 scale bytes s (ggml's get_scale_min_k4): groups 0..3 are the low 6 bits
// of bytes j and j+4; groups 4..7 take their low 4 bits from the nibbles of byte j+4
// and their top 2 from the top bits of bytes j-4 (scale) and j (minimum).
__device__ __forceinline__ void scale_min_k4(const unsigned char* s, int j, int& sc, int& m) {
    if (j < 4) {
        sc = s[j] & 63;
        m = s[j + 4] & 63;
    } else {
        sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
        m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

// The signed scale (-32..31) of group g (0..16) of a Q3_K super-block from its 12
// scale bytes s: low 4 bits in the nibbles of bytes 0..8 (low nibbles for groups 0..7,
// high for 8..15), high 2 bits at bits 2(g/4).. of byte 8 + g%4, offset 32.
__device__ __forceinline__ int q3k_scale(const unsigned char* s, int g) {
    int low = g < 8 ? s[g] & 15 : s[g - 8] >> 4;
    int high = (s[8 + g % 4] >> (2 * (g / 4))) & 3;
    return (low | (high << 4)) - 32;
}

// The signed scale (-32..31) of group g (0..8) of the IQ4_XS super-block at blk: low 4
// bits in nibble g%2 of scales_l[g/2] (byte 4 + g/2), high 2 bits at bits 2g.. of the
// 16-bit scales_h (bytes 2..4), offset 32.
__device__ __forceinline__ int iq4xs_scale(const unsigned char* blk, int g) {
    int low = (blk[4 + g / 2] >> (4 * (g % 2))) & 15;
    int high = (u16_at(blk + 2) >> (2 * g)) & 3;
    return (low | (high << 4)) - 32;
}

// Column c of a row of storage type DT, read byte by byte (any alignment): the scalar
// paths of matmul.cu and the embedding rows of embed.cu.
template <int DT> __device__ __forceinline__ float elem(const unsigned char* row, int c);
template <> __device__ __forceinline__ float elem<DT_F32>(const unsigned char* row, int c) {
    const unsigned char* p = row + 4 * c;
    return __int_as_float((int)((unsigned)u16_at(p) | ((unsigned)u16_at(p + 2) << 16)));
}
template <> __device__ __forceinline__ float elem<DT_F16>(const unsigned char* row, int c) {
    return f16_bits(u16_at(row + 2 * c));
}
template <> __device__ __forceinline__ float elem<DT_BF16>(const unsigned char* row, int c) {
    return bf16_bits(u16_at(row + 2 * c));
}
template <> __device__ __forceinline__ float elem<DT_Q8_0>(const unsigned char* row, int c) {
    const unsigned char* blk = row + 34 * (c / 32);
    return (float)(signed char)blk[2 + c % 32] * f16_bits(u16_at(blk));
}
template <> __device__ __forceinline__ float elem<DT_Q4_0>(const unsigned char* row, int c) {
    const unsigned char* blk = row + 18 * (c / 32);
    int j = c % 32, byte = blk[2 + (j & 15)];
    return (float)((j < 16 ? byte & 15 : byte >> 4) - 8) * f16_bits(u16_at(blk));
}
template <> __device__ __forceinline__ float elem<DT_Q4_1>(const unsigned char* row, int c) {
    const unsigned char* blk = row + 20 * (c / 32);
    int j = c % 32, byte = blk[4 + (j & 15)];
    return (float)(j < 16 ? byte & 15 : byte >> 4) * f16_bits(u16_at(blk)) + f16_bits(u16_at(blk + 2));
}

// Q5_0 (22 bytes: f16 d, 32-bit mask qh of fifth bits, 16 bytes of nibbles as Q4_0;
// bit j of qh is element j's): x = (q - 16)·d.
template <> __device__ __forceinline__ float elem<DT_Q5_0>(const unsigned char* row, int c) {
    const unsigned char* blk = row + 22 * (c / 32);
    int j = c % 32, byte = blk[6 + (j & 15)];
    int q = (j < 16 ? byte & 15 : byte >> 4) | (((blk[2 + j / 8] >> (j % 8)) & 1) << 4);
    return (float)(q - 16) * f16_bits(u16_at(blk));
}
// Q5_1 (24 bytes: f16 d, f16 m, then Q5_0's qh and nibbles): x = q·d + m.
template <> __device__ __forceinline__ float elem<DT_Q5_1>(const unsigned char* row, int c) {
    const unsigned char* blk = row + 24 * (c / 32);
    int j = c % 32, byte = blk[8 + (j & 15)];
    int q = (j < 16 ? byte & 15 : byte >> 4) | (((blk[4 + j / 8] >> (j % 8)) & 1) << 4);
    return (float)q * f16_bits(u16_at(blk)) + f16_bits(u16_at(blk + 2));
}
// IQ4_NL (18 bytes: f16 d, 16 bytes of index nibbles as Q4_0): x = d·level[q].
template <> __device__ __forceinline__ float elem<DT_IQ4_NL>(const unsigned char* row, int c) {
    const unsigned char* blk = row + 18 * (c / 32);
    int j = c % 32, byte = blk[2 + (j & 15)];
    return f16_bits(u16_at(blk)) * iq4nl_level(j < 16 ? byte & 15 : byte >> 4);
}

// The super-block types: element k (0..256) of super-block c/256.
//
// Q2_K (84 bytes: 16 scale bytes, 64 bytes of 2-bit quants, f16 d, f16 dmin): element
// k = 128h + 32s + l is bits 2s.. of quant byte 32h + l; group k/16's byte holds its
// scale (low nibble) and minimum (high): x = (d·sc)·q - dmin·m.
template <> __device__ __forceinline__ float elem<DT_Q2_K>(const unsigned char* row, int c) {
    const unsigned char* blk = row + 84 * (c / 256);
    int k = c % 256, sc = blk[k / 16];
    int q = (blk[16 + 32 * (k / 128) + k % 32] >> (2 * ((k / 32) % 4))) & 3;
    float dl = f16_bits(u16_at(blk + 80)) * (float)(sc & 15);
    float ml = f16_bits(u16_at(blk + 82)) * (float)(sc >> 4);
    return dl * (float)q - ml;
}
// Q3_K (110 bytes: 32 bytes hmask, 64 bytes of low 2 bits packed as Q2_K's, 12 scale
// bytes, f16 d): element k's high bit is bit k/32 of hmask[k%32], a clear bit
// subtracting 4: x = (d·scale)·(low - 4·!high), scale of group k/16 (q3k_scale).
template <> __device__ __forceinline__ float elem<DT_Q3_K>(const unsigned char* row, int c) {
    const unsigned char* blk = row + 110 * (c / 256);
    int k = c % 256;
    int low = (blk[32 + 32 * (k / 128) + k % 32] >> (2 * ((k / 32) % 4))) & 3;
    int high = (blk[k % 32] >> (k / 32)) & 1 ? 0 : 4;
    float dl = f16_bits(u16_at(blk + 108)) * (float)q3k_scale(blk + 96, k / 16);
    return dl * (float)(low - high);
}
// Q4_K (144 bytes: f16 d, f16 dmin, 12 scale bytes, 128 bytes of nibbles): element k of
// group j = k/32 is the low (j even) or high (j odd) nibble of byte 32(j/2) + k%32:
// x = (d·sc)·q - dmin·m with group j's scale and minimum (scale_min_k4).
template <> __device__ __forceinline__ float elem<DT_Q4_K>(const unsigned char* row, int c) {
    const unsigned char* blk = row + 144 * (c / 256);
    int k = c % 256, j = k / 32, byte = blk[16 + 32 * (j / 2) + k % 32];
    int q = j % 2 ? byte >> 4 : byte & 15, sc, m;
    scale_min_k4(blk + 4, j, sc, m);
    float dl = f16_bits(u16_at(blk)) * (float)sc, ml = f16_bits(u16_at(blk + 2)) * (float)m;
    return dl * (float)q - ml;
}
// Q5_K (176 bytes: Q4_K's d, dmin, scales, then 32 bytes qh and the 128 nibble bytes):
// Q4_K's element plus a fifth bit, bit j of qh[k%32].
template <> __device__ __forceinline__ float elem<DT_Q5_K>(const unsigned char* row, int c) {
    const unsigned char* blk = row + 176 * (c / 256);
    int k = c % 256, j = k / 32, byte = blk[48 + 32 * (j / 2) + k % 32];
    int q = (j % 2 ? byte >> 4 : byte & 15) | (((blk[16 + k % 32] >> j) & 1) << 4), sc, m;
    scale_min_k4(blk + 4, j, sc, m);
    float dl = f16_bits(u16_at(blk)) * (float)sc, ml = f16_bits(u16_at(blk + 2)) * (float)m;
    return dl * (float)q - ml;
}
// Q6_K (210 bytes: 128 bytes ql, 64 bytes qh, 16 i8 scales, f16 d): in half h = k/128,
// element 32s + l (s, l = (k%128)/32, k%32) is the low (s < 2) or high nibble of
// ql[64h + 32(s%2) + l] plus 2 high bits at bits 2s.. of qh[32h + l]:
// x = (d·scale)·(q - 32), scale k/16.
template <> __device__ __forceinline__ float elem<DT_Q6_K>(const unsigned char* row, int c) {
    const unsigned char* blk = row + 210 * (c / 256);
    int k = c % 256, h = k / 128, s = (k % 128) / 32, l = k % 32;
    int ql = blk[64 * h + 32 * (s % 2) + l];
    int q = (s < 2 ? ql & 15 : ql >> 4) | (((blk[128 + 32 * h + l] >> (2 * s)) & 3) << 4);
    float dl = f16_bits(u16_at(blk + 208)) * (float)(signed char)blk[192 + k / 16];
    return dl * (float)(q - 32);
}
// IQ4_XS (136 bytes: f16 d, 16-bit scales_h, 4 bytes scales_l, 128 bytes of index
// nibbles, 16 per group of 32 as IQ4_NL's block): x = (d·scale)·level[q], scale of
// group k/32 (iq4xs_scale).
template <> __device__ __forceinline__ float elem<DT_IQ4_XS>(const unsigned char* row, int c) {
    const unsigned char* blk = row + 136 * (c / 256);
    int k = c % 256, g = k / 32, j = k % 32, byte = blk[8 + 16 * g + (j & 15)];
    float dl = f16_bits(u16_at(blk)) * (float)iq4xs_scale(blk, g);
    return dl * iq4nl_level(j < 16 ? byte & 15 : byte >> 4);
}
