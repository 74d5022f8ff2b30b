// classifier.cu: the fused classifier. One block per row of logits [N, V]: softmax,
// cross-entropy against targets[n] and the gradient, in one kernel; the logits are
// overwritten with dlogits = (softmax - onehot(target)) * dloss so no [N, V] probability
// tensor is ever stored. A negative target marks an ignored row (loss 0, gradient 0).
// The split pair softmax_ce_probs / softmax_ce_grad computes the same in two steps for
// callers that keep the probabilities between the forward and backward passes.

// logsumexp of one row, by the whole block: online max and sum of exp per thread,
// merged across the block.
__device__ __forceinline__ float row_logsumexp(const floatX* row, int V, float* scratch) {
    float m = NEG_INF, s = 0.0f;
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        float x = ldx(row[v]);
        if (x > m) {
            s = s * expf(m - x) + 1.0f;
            m = x;
        } else {
            s += expf(x - m);
        }
    }
    float bm = block_max(m, scratch);
    float bs = block_sum(m == NEG_INF ? 0.0f : s * expf(m - bm), scratch);
    return bm + logf(bs);
}

// losses[n] = logsumexp(logits[n]) - logits[n, target]; logits[n] := dlogits[n].
extern "C" __global__ void fused_classifier(floatX* logits, float* losses, const int* targets,
                                            int N, int V, float dloss) {
    __shared__ float scratch[32];
    int n = blockIdx.x;
    if (n >= N) return;
    floatX* row = logits + (long long)n * V;
    int target = targets[n];
    float lse = row_logsumexp(row, V, scratch);
    if (threadIdx.x == 0) losses[n] = target >= 0 ? lse - ldx(row[target]) : 0.0f;
    __syncthreads();  // row[target] is read above before any thread overwrites it
    float scale = target >= 0 ? dloss : 0.0f;
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        float p = expf(ldx(row[v]) - lse);
        row[v] = stx((p - (v == target ? 1.0f : 0.0f)) * scale);
    }
}

// logits[n] := softmax(logits[n]); losses[n] = logsumexp - logits[n, target] (0 if ignored).
extern "C" __global__ void softmax_ce_probs(floatX* logits, float* losses, const int* targets,
                                            int N, int V) {
    __shared__ float scratch[32];
    int n = blockIdx.x;
    if (n >= N) return;
    floatX* row = logits + (long long)n * V;
    int target = targets[n];
    float lse = row_logsumexp(row, V, scratch);
    if (threadIdx.x == 0) losses[n] = target >= 0 ? lse - ldx(row[target]) : 0.0f;
    __syncthreads();
    for (int v = threadIdx.x; v < V; v += blockDim.x) row[v] = stx(expf(ldx(row[v]) - lse));
}

// probs[n, v] := dloss[n] * (probs[n, v] - onehot(target)); ignored rows get 0.
extern "C" __global__ void softmax_ce_grad(floatX* probs, const float* dloss, const int* targets,
                                           int N, int V) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)N * V) return;
    int n = (int)(i / V), v = (int)(i % V);
    int t = targets[n];
    float dl = t >= 0 ? dloss[n] : 0.0f;
    probs[i] = stx(dl * (ldx(probs[i]) - (v == t ? 1.0f : 0.0f)));
}
