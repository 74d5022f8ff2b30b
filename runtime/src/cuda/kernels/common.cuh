// common.cuh: prepended to every runtime kernel file before it is compiled (by NVRTC
// for the GPU, by g++ with cuda_emu.h for the emulator tests). Weights are read in
// the .llm file's own block layouts (format/SPEC.md), activations are fp32, and the
// arithmetic is fp32.
#include <cuda_fp16.h>
#include <cuda_bf16.h>

#define WARP 32
#define FULL_MASK 0xffffffffu

// The storage types' ids, as in the file (ggml's numbering).
#define DT_F32 0
#define DT_F16 1
#define DT_Q4_0 2
#define DT_Q4_1 3
#define DT_Q8_0 8
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

// Bytes of one row of `cols` weights of storage type DT (whole blocks for the block
// types).
template <int DT> __device__ __forceinline__ long long row_bytes(int cols);
template <> __device__ __forceinline__ long long row_bytes<DT_F32>(int cols) { return 4LL * cols; }
template <> __device__ __forceinline__ long long row_bytes<DT_F16>(int cols) { return 2LL * cols; }
template <> __device__ __forceinline__ long long row_bytes<DT_BF16>(int cols) { return 2LL * cols; }
template <> __device__ __forceinline__ long long row_bytes<DT_Q8_0>(int cols) { return 34LL * (cols / 32); }
template <> __device__ __forceinline__ long long row_bytes<DT_Q4_0>(int cols) { return 18LL * (cols / 32); }
template <> __device__ __forceinline__ long long row_bytes<DT_Q4_1>(int cols) { return 20LL * (cols / 32); }

// Two bytes, little-endian, at any address (byte-wise loads: no alignment assumed).
__device__ __forceinline__ unsigned short u16_at(const unsigned char* p) {
    return (unsigned short)(p[0] | (p[1] << 8));
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
