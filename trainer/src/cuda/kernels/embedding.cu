// embedding.cu: token (+ learned position) embeddings and their gradients.
// Layouts: tokens [B*T] int32 (validated on the host), wte [V, C], wpe [maxT, C],
// out/dout [B*T, C]. Parameter gradients accumulate (+=). No atomics: the token
// gradient walks a host-built bucketing of positions by token, so it is deterministic.

// out[n, c] = wte[tokens[n], c] + wpe[n % T, c] (wpe may be null: no learned positions).
extern "C" __global__ void embedding_forward(floatX* out, const int* tokens, const floatX* wte,
                                             const floatX* wpe, int BT, int T, int C) {
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)BT * C) return;
    int n = (int)(idx / C), c = (int)(idx % C);
    float v = ldx(wte[(long long)tokens[n] * C + c]);
    if (wpe != nullptr) v += ldx(wpe[(long long)(n % T) * C + c]);
    out[idx] = stx(v);
}

// dwpe[t, c] += sum_b dout[b, t, c]; one thread per (t, c), batch summed in order.
extern "C" __global__ void embedding_backward_pos(floatX* dwpe, const floatX* dout, int B, int T,
                                                  int C) {
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)T * C) return;
    float acc = 0.0f;
    for (int b = 0; b < B; b++) acc += ldx(dout[(long long)b * T * C + idx]);
    dwpe[idx] = stx(ldx(dwpe[idx]) + acc);
}

// dwte[tok, c] += sum over positions n with tokens[n] == tok of dout[n, c].
// Bucket u (blockIdx.x) covers order[bucket_start[u] .. bucket_start[u+1]], all of
// token bucket_tok[u]; blockIdx.y * blockDim.x + threadIdx.x is the channel.
extern "C" __global__ void embedding_backward_tok(floatX* dwte, const floatX* dout,
                                                  const int* order, const int* bucket_start,
                                                  const int* bucket_tok, int C) {
    int c = blockIdx.y * blockDim.x + threadIdx.x;
    int u = blockIdx.x;
    if (c >= C) return;
    float acc = 0.0f;
    for (int i = bucket_start[u]; i < bucket_start[u + 1]; i++)
        acc += ldx(dout[(long long)order[i] * C + c]);
    long long w = (long long)bucket_tok[u] * C + c;
    dwte[w] = stx(ldx(dwte[w]) + acc);
}
