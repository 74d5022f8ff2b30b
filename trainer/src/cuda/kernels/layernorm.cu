// layernorm.cu: LayerNorm forward/backward over rows of C channels, one warp per row.
// y = (x - mean) * rstd * w + b, rstd = 1/sqrt(var + eps), var the biased variance.
// Layouts: x/out [N, C]; mean/rstd [N] fp32 saved for the backward pass.
// Parameter gradients accumulate (+=) through a deterministic two-step column reduction
// (per-chunk partials, then bias_grad.cu's column_sum_finish); dinp is = or += by flag
// (+= lets the residual stream's gradient flow through without a separate add).

// One warp normalises one row; two passes (mean, then centred variance) for accuracy.
__device__ __forceinline__ void layernorm_row(floatX* out, float* mean, float* rstd,
                                              const floatX* x, const floatX* weight,
                                              const floatX* bias, int row, int C, float eps) {
    int lane = threadIdx.x % WARP;
    float s = 0.0f;
    for (int c = lane; c < C; c += WARP) s += ldx(x[c]);
    float m = warp_sum(s) / C;
    float v = 0.0f;
    for (int c = lane; c < C; c += WARP) {
        float d = ldx(x[c]) - m;
        v += d * d;
    }
    float r = rsqrtf(warp_sum(v) / C + eps);
    for (int c = lane; c < C; c += WARP) {
        float y = (ldx(x[c]) - m) * r * ldx(weight[c]);
        if (bias != nullptr) y += ldx(bias[c]);
        out[c] = stx(y);
    }
    if (lane == 0) {
        mean[row] = m;
        rstd[row] = r;
    }
}

// out = layernorm(inp); bias may be null.
extern "C" __global__ void layernorm_forward(floatX* out, float* mean, float* rstd,
                                             const floatX* inp, const floatX* weight,
                                             const floatX* bias, int N, int C, float eps) {
    int row = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    if (row >= N) return;
    long long o = (long long)row * C;
    layernorm_row(out + o, mean, rstd, inp + o, weight, bias, row, C, eps);
}

// residual = inp1 + inp2 (written), then out = layernorm(residual): the pre-norm block's
// residual add fused with the next norm, saving one read and one write of [N, C].
extern "C" __global__ void fused_residual_layernorm_forward(
    floatX* residual, floatX* out, float* mean, float* rstd, const floatX* inp1,
    const floatX* inp2, const floatX* weight, const floatX* bias, int N, int C, float eps) {
    int row = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    if (row >= N) return;
    long long o = (long long)row * C;
    int lane = threadIdx.x % WARP;
    for (int c = lane; c < C; c += WARP) residual[o + c] = stx(ldx(inp1[o + c]) + ldx(inp2[o + c]));
    __syncwarp();
    layernorm_row(out + o, mean, rstd, residual + o, weight, bias, row, C, eps);
}

// dinp (=, or += when accumulate) = rstd * (w*dout - mean(w*dout) - xhat * mean(w*dout*xhat)).
extern "C" __global__ void layernorm_backward_input(floatX* dinp, const floatX* dout,
                                                    const floatX* inp, const floatX* weight,
                                                    const float* mean, const float* rstd,
                                                    int N, int C, int accumulate) {
    int row = blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    if (row >= N) return;
    int lane = threadIdx.x % WARP;
    long long o = (long long)row * C;
    float m = mean[row], r = rstd[row];
    float sd = 0.0f, sdx = 0.0f;
    for (int c = lane; c < C; c += WARP) {
        float dn = ldx(weight[c]) * ldx(dout[o + c]);
        sd += dn;
        sdx += dn * (ldx(inp[o + c]) - m) * r;
    }
    sd = warp_sum(sd) / C;
    sdx = warp_sum(sdx) / C;
    for (int c = lane; c < C; c += WARP) {
        float dn = ldx(weight[c]) * ldx(dout[o + c]);
        float xh = (ldx(inp[o + c]) - m) * r;
        float g = r * (dn - sd - xh * sdx);
        if (accumulate) g += ldx(dinp[o + c]);
        dinp[o + c] = stx(g);
    }
}

// Partial parameter gradients over a chunk of rows: partial[chunk, 0, c] = sum dout*xhat,
// partial[chunk, 1, c] = sum dout, over rows [chunk*rows_per_chunk, ...).
// Grid (ceil(C/blockDim.x), chunks); one thread per channel, rows in order.
extern "C" __global__ void layernorm_backward_params_partial(float* partial, const floatX* dout,
                                                             const floatX* inp, const float* mean,
                                                             const float* rstd, int N, int C,
                                                             int rows_per_chunk) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    int r0 = blockIdx.y * rows_per_chunk;
    int r1 = min(N, r0 + rows_per_chunk);
    float dw = 0.0f, db = 0.0f;
    for (int r = r0; r < r1; r++) {
        long long o = (long long)r * C + c;
        float d = ldx(dout[o]);
        dw += d * (ldx(inp[o]) - mean[r]) * rstd[r];
        db += d;
    }
    partial[(long long)blockIdx.y * 2 * C + c] = dw;
    partial[(long long)blockIdx.y * 2 * C + C + c] = db;
}
