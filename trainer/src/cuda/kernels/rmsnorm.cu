// rmsnorm.cu: RMSNorm forward/backward, one warp per row (LLaMA's norm, no bias).
// y = x * rstd * w, rstd = 1/sqrt(mean(x^2) + eps). Layouts: x/out [N, C]; rstd [N] fp32.
// dweight accumulates (+=) through per-chunk partials and bias_grad.cu's column_sum_finish.

// One warp normalises one row.
__device__ __forceinline__ void rmsnorm_row(floatX* out, float* rstd, const floatX* x,
                                            const floatX* weight, int row, int C, float eps) {
    int lane = threadIdx.x % WARP;
    float s = 0.0f;
    for (int c = lane; c < C; c += WARP) {
        float v = ldx(x[c]);
        s += v * v;
    }
    float r = rsqrtf(warp_sum(s) / C + eps);
    for (int c = lane; c < C; c += WARP) out[c] = stx(ldx(x[c]) * r * ldx(weight[c]));
    if (lane == 0) rstd[row] = r;
}

// out = rmsnorm(inp).
extern "C" __global__ void rmsnorm_forward(floatX* out, float* rstd, const floatX* inp,
                                           const floatX* weight, int N, int C, float eps) {
    int row = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    if (row >= N) return;
    long long o = (long long)row * C;
    rmsnorm_row(out + o, rstd, inp + o, weight, row, C, eps);
}

// residual = inp1 + inp2 (written), then out = rmsnorm(residual).
extern "C" __global__ void fused_residual_rmsnorm_forward(floatX* residual, floatX* out,
                                                          float* rstd, const floatX* inp1,
                                                          const floatX* inp2,
                                                          const floatX* weight, int N, int C,
                                                          float eps) {
    int row = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    if (row >= N) return;
    long long o = (long long)row * C;
    int lane = threadIdx.x % WARP;
    for (int c = lane; c < C; c += WARP) residual[o + c] = stx(ldx(inp1[o + c]) + ldx(inp2[o + c]));
    __syncwarp();
    rmsnorm_row(out + o, rstd, residual + o, weight, row, C, eps);
}

// dinp (=, or += when accumulate) = rstd * (w*dout - xhat * mean(w*dout*xhat)), xhat = x*rstd.
extern "C" __global__ void rmsnorm_backward_input(floatX* dinp, const floatX* dout,
                                                  const floatX* inp, const floatX* weight,
                                                  const float* rstd, int N, int C,
                                                  int accumulate) {
    int row = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    if (row >= N) return;
    int lane = threadIdx.x % WARP;
    long long o = (long long)row * C;
    float r = rstd[row];
    float sdx = 0.0f;
    for (int c = lane; c < C; c += WARP)
        sdx += ldx(weight[c]) * ldx(dout[o + c]) * ldx(inp[o + c]) * r;
    sdx = warp_sum(sdx) / C;
    for (int c = lane; c < C; c += WARP) {
        float g = r * (ldx(weight[c]) * ldx(dout[o + c]) - ldx(inp[o + c]) * r * sdx);
        if (accumulate) g += ldx(dinp[o + c]);
        dinp[o + c] = stx(g);
    }
}

// partial[chunk, c] = sum over the chunk's rows of dout * xhat (grid as layernorm's).
extern "C" __global__ void rmsnorm_backward_params_partial(float* partial, const floatX* dout,
                                                           const floatX* inp, const float* rstd,
                                                           int N, int C, int rows_per_chunk) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    int r0 = blockIdx.y * rows_per_chunk;
    int r1 = min(N, r0 + rows_per_chunk);
    float dw = 0.0f;
    for (int r = r0; r < r1; r++) {
        long long o = (long long)r * C + c;
        dw += ldx(dout[o]) * ldx(inp[o]) * rstd[r];
    }
    partial[(long long)blockIdx.y * C + c] = dw;
}
