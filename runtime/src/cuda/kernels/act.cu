// act.cu: the MLP activations, element-wise on fp32 rows, each written as the CPU's
// (runtime/src/ops.rs, runtime/src/kernels/vecops.rs) so that they agree to rounding.
// One thread per element; `count` elements from the start of each buffer.

// GELU, tanh approximation (GPT-2), as ops::gelu.
__device__ __forceinline__ float gelu_tanh(float u) {
    const float S = 0.7978846f;  // sqrt(2/pi), as ops::gelu's constant
    return 0.5f * u * (1.0f + tanhf(S * (u + 0.044715f * u * u * u)));
}

// SwiGLU: h[i] = h[i] · silu(g[i]) = h[i] · g/(1 + e^-g) (vecops::swiglu_body).
extern "C" __global__ void swiglu(float* h, const float* g, int count) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count) return;
    float gv = g[i];
    h[i] = h[i] * (gv / (1.0f + expf(-gv)));
}

// GeGLU: h[i] = h[i] · gelu(g[i]) (ops::geglu; the gate is read, not overwritten).
extern "C" __global__ void geglu(float* h, const float* g, int count) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count) return;
    h[i] = h[i] * gelu_tanh(g[i]);
}

// GELU in place (ops::gelu).
extern "C" __global__ void gelu(float* x, int count) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < count) x[i] = gelu_tanh(x[i]);
}

// ReLU in place (ops::relu: f32::max, so NaN becomes 0 as with fmaxf).
extern "C" __global__ void relu(float* x, int count) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < count) x[i] = fmaxf(x[i], 0.0f);
}
