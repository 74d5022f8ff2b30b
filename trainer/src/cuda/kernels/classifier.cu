// classifier.cu: the fused classifier. One block per row of logits [N, V]: softmax,
// cross-entropy against targets[n] and the gradient, in one kernel; the logits are
// overwritten with dlogits = (softmax - onehot(target)) * dloss so no [N, V] probability
// tensor is ever stored. A negative target marks an ignored row (loss 0, gradient 0).

// losses[n] = logsumexp(logits[n]) - logits[n, target]; logits[n] := dlogits[n].
extern "C" __global__ void fused_classifier(floatX* logits, float* losses, const int* targets,
                                            int N, int V, float dloss) {
    __shared__ float scratch[32];
    int n = blockIdx.x;
    if (n >= N) return;
    floatX* row = logits + (long long)n * V;
    int target = targets[n];
    // Pass 1: online max and sum of exp per thread, then merged across the block.
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
    float lse = bm + logf(bs);
    if (threadIdx.x == 0) losses[n] = target >= 0 ? lse - ldx(row[target]) : 0.0f;
    __syncthreads();  // row[target] is read above before any thread overwrites it
    // Pass 2: the gradient, in place.
    float scale = target >= 0 ? dloss : 0.0f;
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        float p = expf(ldx(row[v]) - lse);
        row[v] = stx((p - (v == target ? 1.0f : 0.0f)) * scale);
    }
}
