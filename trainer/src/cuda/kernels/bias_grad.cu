// bias_grad.cu: deterministic column sums over [N, C] (bias gradients, and the second
// step of the norms' parameter gradients). Step 1 sums chunks of rows into fp32 partials,
// step 2 sums the partials in chunk order and accumulates into the gradient (+=).

// partial[chunk, c] = sum_{r in chunk} x[r, c]; grid (ceil(C/blockDim.x), chunks).
extern "C" __global__ void column_sum_partial(float* partial, const floatX* x, int N, int C,
                                              int rows_per_chunk) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    int r0 = blockIdx.y * rows_per_chunk;
    int r1 = min(N, r0 + rows_per_chunk);
    float s = 0.0f;
    for (int r = r0; r < r1; r++) s += ldx(x[(long long)r * C + c]);
    partial[(long long)blockIdx.y * C + c] = s;
}

// out[c] += sum_chunk partial[chunk * stride + c] for c < C; out may be null (skipped).
extern "C" __global__ void column_sum_finish(floatX* out, const float* partial, int chunks,
                                             int C, long long stride) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C || out == nullptr) return;
    float s = 0.0f;
    for (int k = 0; k < chunks; k++) s += partial[k * stride + c];
    out[c] = stx(ldx(out[c]) + s);
}
