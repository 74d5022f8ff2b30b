// adamw.cu: AdamW with PyTorch's semantics (decoupled weight decay), fp32 moments.
// In bf16 mode `master` holds the fp32 master weights and `params` the bf16 working copy
// (rounded to nearest even); in fp32 mode `master` is null and `params` is updated itself.
// Gradients are scaled by min(1, max_norm / *grad_norm) when grad_norm is not null,
// which clips by the global norm without a host round trip.

// p -= lr*wd*p; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
// p -= lr * (m/bc1) / (sqrt(v/bc2) + eps), bc = 1 - beta^step.
extern "C" __global__ void adamw_update(floatX* params, float* master, const floatX* grads,
                                        float* m_state, float* v_state, long long n, float lr,
                                        float beta1, float beta2, float bc1, float bc2,
                                        float eps, float weight_decay, const float* grad_norm,
                                        float max_norm) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float scale = 1.0f;
    if (grad_norm != nullptr) {
        float gn = *grad_norm;
        if (gn > max_norm) scale = max_norm / gn;
    }
    float g = ldx(grads[i]) * scale;
    float p = master != nullptr ? master[i] : ldx(params[i]);
    float m = beta1 * m_state[i] + (1.0f - beta1) * g;
    float v = beta2 * v_state[i] + (1.0f - beta2) * g * g;
    m_state[i] = m;
    v_state[i] = v;
    p -= lr * weight_decay * p;
    p -= lr * (m / bc1) / (sqrtf(v / bc2) + eps);
    if (master != nullptr) master[i] = p;
    params[i] = stx(p);
}
