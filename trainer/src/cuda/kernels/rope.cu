// rope.cu: rotary position embedding on adjacent pairs (x[2i], x[2i+1]) of each head,
// angle pos * base^(-2i/head_dim) (llama2.c / GGUF convention). The cos/sin table
// [max_len, head_dim/2] is built once on the host in f64, so long positions keep fp32
// accuracy. Layout x [B, T, n_heads, head_dim]; in place allowed (out == inp).

// One thread per pair: out = R(pos) x (forward) or R(-pos) x (backward, sign = -1).
extern "C" __global__ void rope_rotate(floatX* out, const floatX* inp, const float* cos_t,
                                       const float* sin_t, int BT, int T, int n_heads,
                                       int head_dim, float sign) {
    int half_d = head_dim / 2;
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long total = (long long)BT * n_heads * half_d;
    if (idx >= total) return;
    int i = (int)(idx % half_d);
    long long bth = idx / half_d;  // (b*T + t) * n_heads + h
    int t = (int)((bth / n_heads) % T);
    float c = cos_t[(long long)t * half_d + i];
    float s = sign * sin_t[(long long)t * half_d + i];
    long long o = bth * head_dim + 2 * i;
    float x0 = ldx(inp[o]), x1 = ldx(inp[o + 1]);
    out[o] = stx(x0 * c - x1 * s);
    out[o + 1] = stx(x0 * s + x1 * c);
}
