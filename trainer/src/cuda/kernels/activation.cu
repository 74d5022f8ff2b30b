// activation.cu: element-wise MLP activations and their gradients. Gradients are written
// (=) or, with accumulate != 0, added (+=) as the CPU trainer's backward passes do.
// GELU is GPT-2's tanh approximation; SwiGLU is silu(gate) * up over two [N, F] inputs.

#define GELU_SCALE 0.7978845608028654f  // sqrt(2/pi)

// out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
extern "C" __global__ void gelu_forward(floatX* out, const floatX* inp, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float x = ldx(inp[i]);
    float u = GELU_SCALE * (x + 0.044715f * x * x * x);
    out[i] = stx(0.5f * x * (1.0f + tanhf(u)));
}

// dinp = dout * d/dx gelu(x).
extern "C" __global__ void gelu_backward(floatX* dinp, const floatX* inp, const floatX* dout,
                                         long long n, int accumulate) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float x = ldx(inp[i]);
    float u = GELU_SCALE * (x + 0.044715f * x * x * x);
    float th = tanhf(u);
    float sech2 = 1.0f - th * th;
    float g = 0.5f * (1.0f + th) + 0.5f * x * sech2 * GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
    float r = ldx(dout[i]) * g;
    dinp[i] = stx(accumulate ? ldx(dinp[i]) + r : r);
}

// out = max(x, 0).
extern "C" __global__ void relu_forward(floatX* out, const floatX* inp, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    out[i] = stx(fmaxf(ldx(inp[i]), 0.0f));
}

// dinp = dout where x > 0, else 0.
extern "C" __global__ void relu_backward(floatX* dinp, const floatX* inp, const floatX* dout,
                                         long long n, int accumulate) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float r = ldx(inp[i]) > 0.0f ? ldx(dout[i]) : 0.0f;
    dinp[i] = stx(accumulate ? ldx(dinp[i]) + r : r);
}

// out = silu(gate) * up, silu(g) = g / (1 + exp(-g)).
extern "C" __global__ void swiglu_forward(floatX* out, const floatX* gate, const floatX* up,
                                          long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float g = ldx(gate[i]);
    float s = 1.0f / (1.0f + expf(-g));
    out[i] = stx(g * s * ldx(up[i]));
}

// dgate = dout * up * silu'(gate), silu'(g) = s (1 + g (1 - s)); dup = dout * silu(gate).
extern "C" __global__ void swiglu_backward(floatX* dgate, floatX* dup, const floatX* gate,
                                           const floatX* up, const floatX* dout, long long n,
                                           int accumulate) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float g = ldx(gate[i]), u = ldx(up[i]), d = ldx(dout[i]);
    float s = 1.0f / (1.0f + expf(-g));
    float dg = d * u * s * (1.0f + g * (1.0f - s)), du = d * g * s;
    if (accumulate) {
        dg += ldx(dgate[i]);
        du += ldx(dup[i]);
    }
    dgate[i] = stx(dg);
    dup[i] = stx(du);
}
