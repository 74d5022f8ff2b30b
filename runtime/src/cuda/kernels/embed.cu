// embed.cu: the token embedding: y[i] = E[tokens[i]] as fp32, for an embedding matrix
// E [vocab, d] in any storage type of the format (plain rows), decoded with
// common.cuh's elem<DT> as the matmul's scalar path does (model::embed: dequantise the
// row).
//
// Tokens are read from a device int array (so that a captured CUDA graph replays with
// new tokens); the launcher checks them against the vocabulary before uploading, and a
// token outside 0..vocab that gets here anyway makes its row NaN, never an
// out-of-bounds read. Grid (ceil(d / blockDim.x), n): one thread per output value.

#define EMBED_NAN (__int_as_float(0x7fc00000))

template <int DT>
__device__ __forceinline__ void embed_rows(const unsigned char* e, const int* tokens, float* y,
                                           int n, int d, int vocab) {
    int i = blockIdx.y;
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n || c >= d) return;
    int t = tokens[i];
    y[(long long)i * d + c] =
        (t >= 0 && t < vocab) ? elem<DT>(e + (long long)t * row_bytes<DT>(d), c) : EMBED_NAN;
}

extern "C" __global__ void embed_f32(const unsigned char* e, const int* tokens, float* y, int n, int d, int vocab) {
    embed_rows<DT_F32>(e, tokens, y, n, d, vocab);
}
extern "C" __global__ void embed_f16(const unsigned char* e, const int* tokens, float* y, int n, int d, int vocab) {
    embed_rows<DT_F16>(e, tokens, y, n, d, vocab);
}
extern "C" __global__ void embed_bf16(const unsigned char* e, const int* tokens, float* y, int n, int d, int vocab) {
    embed_rows<DT_BF16>(e, tokens, y, n, d, vocab);
}
extern "C" __global__ void embed_q8_0(const unsigned char* e, const int* tokens, float* y, int n, int d, int vocab) {
    embed_rows<DT_Q8_0>(e, tokens, y, n, d, vocab);
}
extern "C" __global__ void embed_q4_0(const unsigned char* e, const int* tokens, float* y, int n, int d, int vocab) {
    embed_rows<DT_Q4_0>(e, tokens, y, n, d, vocab);
}
extern "C" __global__ void embed_q4_1(const unsigned char* e, const int* tokens, float* y, int n, int d, int vocab) {
    embed_rows<DT_Q4_1>(e, tokens, y, n, d, vocab);
}
extern "C" __global__ void embed_q5_0(const unsigned char* e, const int* tokens, float* y, int n, int d, int vocab) {
    embed_rows<DT_Q5_0>(e, tokens, y, n, d, vocab);
}
extern "C" __global__ void embed_q5_1(const unsigned char* e, const int* tokens, float* y, int n, int d, int vocab) {
    embed_rows<DT_Q5_1>(e, tokens, y, n, d, vocab);
}
extern "C" __global__ void embed_iq4_nl(const unsigned char* e, const int* tokens, float* y, int n, int d, int vocab) {
    embed_rows<DT_IQ4_NL>(e, tokens, y, n, d, vocab);
}
extern "C" __global__ void embed_q2_k(const unsigned char* e, const int* tokens, float* y, int n, int d, int vocab) {
    embed_rows<DT_Q2_K>(e, tokens, y, n, d, vocab);
}
extern "C" __global__ void embed_q3_k(const unsigned char* e, const int* tokens, float* y, int n, int d, int vocab) {
    embed_rows<DT_Q3_K>(e, tokens, y, n, d, vocab);
}
extern "C" __global__ void embed_q4_k(const unsigned char* e, const int* tokens, float* y, int n, int d, int vocab) {
    embed_rows<DT_Q4_K>(e, tokens, y, n, d, vocab);
}
extern "C" __global__ void embed_q5_k(const unsigned char* e, const int* tokens, float* y, int n, int d, int vocab) {
    embed_rows<DT_Q5_K>(e, tokens, y, n, d, vocab);
}
extern "C" __global__ void embed_q6_k(const unsigned char* e, const int* tokens, float* y, int n, int d, int vocab) {
    embed_rows<DT_Q6_K>(e, tokens, y, n, d, vocab);
}
extern "C" __global__ void embed_iq4_xs(const unsigned char* e, const int* tokens, float* y, int n, int d, int vocab) {
    embed_rows<DT_IQ4_XS>(e, tokens, y, n, d, vocab);
}
