// cast.cu: fp32 <-> bf16 conversions (round to nearest even), independent of floatX.

// out[i] = bf16(inp[i]).
extern "C" __global__ void cast_f32_to_bf16(__nv_bfloat16* out, const float* inp, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = __float2bfloat16_rn(inp[i]);
}

// out[i] = float(inp[i]) (exact).
extern "C" __global__ void cast_bf16_to_f32(float* out, const __nv_bfloat16* inp, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = __bfloat162float(inp[i]);
}
