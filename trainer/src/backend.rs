//! The handful of ops a transformer needs, as a trait the model calls and nothing
//! else: the CPU implementation here is the reference (the `layers` functions, spread
//! over all cores with `rayon`, matrix products through `gemm`); the CUDA backend
//! implements the same trait and is checked against this one.
//!
//! Buffers are host slices in the shapes documented on each `layers` function, and
//! every backward adds (`+=`) into its gradient outputs.

use crate::layers::attention::{self, AttnShape};
use crate::layers::embedding::{self, PosAdd};
use crate::layers::rope::Rope;
use crate::layers::{
    dropout, geglu, gelu, layernorm, linear, relu, residual, rmsnorm, rope, softmax_ce, swiglu,
};
use crate::optim::{adamw_update, AdamParams};
use crate::scalar::Real;
use rayon::prelude::*;

/// Element-wise activations with one input (SwiGLU has its own two-input ops).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// GELU, tanh approximation.
    Gelu,
    /// ReLU.
    Relu,
}

/// The ops of the model; see the `layers` module of each op for shapes and formulas.
#[allow(clippy::too_many_arguments)]
pub trait Backend<T: Real>: Send + Sync {
    /// A short name for logs (`cpu`, `cuda:0`).
    fn name(&self) -> String;
    /// Refuses a run whose memory estimate (`bytes`, for `what`) does not fit the
    /// device, before anything is allocated; the error is one line with the numbers.
    /// Host memory is checked by the trainer itself, so the CPU accepts everything here.
    fn check_fits(&self, what: &str, bytes: usize) -> Result<(), String> {
        let _ = (what, bytes);
        Ok(())
    }
    /// Refuses model options this backend does not train, before anything is
    /// allocated; the error is one line naming the option. The CPU trains every option
    /// the model takes ([`crate::model::check_trainable`]).
    fn check_options(&self, o: &llm_format::ModelOptions) -> Result<(), String> {
        let _ = o;
        Ok(())
    }
    /// `out[N,O] = inp[N,I] · w[O,I]ᵀ + bias`.
    fn matmul_forward(
        &self,
        out: &mut [T],
        inp: &[T],
        w: &[T],
        bias: Option<&[T]>,
        n: usize,
        i: usize,
        o: usize,
    );
    /// `dinp += dout·w`, `dw += doutᵀ·inp`, `dbias += Σ dout`.
    fn matmul_backward(
        &self,
        dinp: &mut [T],
        dw: &mut [T],
        dbias: Option<&mut [T]>,
        dout: &[T],
        inp: &[T],
        w: &[T],
        n: usize,
        i: usize,
        o: usize,
    );
    /// LayerNorm over rows of width `c`; saves `mean`, `rstd`.
    fn layernorm_forward(
        &self,
        out: &mut [T],
        mean: &mut [T],
        rstd: &mut [T],
        inp: &[T],
        w: &[T],
        b: Option<&[T]>,
        c: usize,
        eps: f64,
    );
    /// LayerNorm backward.
    fn layernorm_backward(
        &self,
        dinp: &mut [T],
        dw: &mut [T],
        db: Option<&mut [T]>,
        dout: &[T],
        inp: &[T],
        w: &[T],
        mean: &[T],
        rstd: &[T],
        c: usize,
    );
    /// RMSNorm over rows of width `c`; saves `rstd`.
    fn rmsnorm_forward(
        &self,
        out: &mut [T],
        rstd: &mut [T],
        inp: &[T],
        w: &[T],
        c: usize,
        eps: f64,
    );
    /// RMSNorm backward.
    fn rmsnorm_backward(
        &self,
        dinp: &mut [T],
        dw: &mut [T],
        dout: &[T],
        inp: &[T],
        w: &[T],
        rstd: &[T],
        c: usize,
    );
    /// RoPE in place on `[B, T, heads·hd]`; `inverse` rotates back (the backward).
    fn rope(&self, x: &mut [T], seq: usize, heads: usize, hd: usize, rope: Rope, inverse: bool);
    /// Causal attention; saves the probabilities `att: [B, H, T, T]`.
    fn attention_forward(
        &self,
        out: &mut [T],
        att: &mut [T],
        q: &[T],
        k: &[T],
        v: &[T],
        sh: AttnShape,
    );
    /// Attention backward.
    fn attention_backward(
        &self,
        dq: &mut [T],
        dk: &mut [T],
        dv: &mut [T],
        dout: &[T],
        q: &[T],
        k: &[T],
        v: &[T],
        att: &[T],
        sh: AttnShape,
    );
    /// Element-wise activation.
    fn activation_forward(&self, act: Activation, out: &mut [T], inp: &[T]);
    /// `dinp += dout · act'(inp)`.
    fn activation_backward(&self, act: Activation, dinp: &mut [T], inp: &[T], dout: &[T]);
    /// `out = silu(gate) ⊙ up`.
    fn swiglu_forward(&self, out: &mut [T], gate: &[T], up: &[T]);
    /// SwiGLU backward.
    fn swiglu_backward(&self, dgate: &mut [T], dup: &mut [T], dout: &[T], gate: &[T], up: &[T]);
    /// `out = gelu(gate) ⊙ up` (GeGLU, tanh GELU).
    fn geglu_forward(&self, out: &mut [T], gate: &[T], up: &[T]);
    /// GeGLU backward.
    fn geglu_backward(&self, dgate: &mut [T], dup: &mut [T], dout: &[T], gate: &[T], up: &[T]);
    /// Token embedding plus additive positions.
    fn embedding_forward(
        &self,
        out: &mut [T],
        tokens: &[u32],
        tok_emb: &[T],
        pos: PosAdd<'_, T>,
        seq: usize,
        c: usize,
    );
    /// Embedding backward (scatter-add into the tables).
    fn embedding_backward(
        &self,
        dtok_emb: &mut [T],
        dpos_emb: Option<&mut [T]>,
        dout: &[T],
        tokens: &[u32],
        seq: usize,
        c: usize,
    );
    /// `out = a + b`.
    fn residual_forward(&self, out: &mut [T], a: &[T], b: &[T]);
    /// `acc += x`.
    fn add_inplace(&self, acc: &mut [T], x: &[T]);
    /// Inverted dropout in place, mask saved.
    fn dropout_forward(&self, x: &mut [T], mask: &mut [T], p: f64, seed: u64);
    /// `dx *= mask`.
    fn dropout_backward(&self, dx: &mut [T], mask: &[T]);
    /// Logits → probabilities in place, per-row losses.
    fn softmax_ce_forward(&self, logits: &mut [T], losses: &mut [T], targets: &[u32], v: usize);
    /// Probabilities → dlogits in place.
    fn softmax_ce_backward(&self, probs: &mut [T], dloss: &[T], targets: &[u32], v: usize);
    /// One AdamW update of a parameter range with its moments.
    fn adamw(&self, params: &mut [T], grads: &[T], m: &mut [T], v: &mut [T], hp: &AdamParams);
    /// `Σ g²`, accumulated in f64.
    fn sum_squares(&self, x: &[T]) -> f64;
    /// `x *= s`.
    fn scale(&self, x: &mut [T], s: f64);
}

/// The CPU reference backend: all cores through rayon's global pool.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cpu;

#[allow(clippy::too_many_arguments)]
impl<T: Real> Backend<T> for Cpu {
    fn name(&self) -> String {
        format!("cpu ({} threads)", rayon::current_num_threads())
    }
    fn matmul_forward(
        &self,
        out: &mut [T],
        inp: &[T],
        w: &[T],
        bias: Option<&[T]>,
        n: usize,
        i: usize,
        o: usize,
    ) {
        linear::linear_forward(out, inp, w, bias, n, i, o)
    }
    fn matmul_backward(
        &self,
        dinp: &mut [T],
        dw: &mut [T],
        dbias: Option<&mut [T]>,
        dout: &[T],
        inp: &[T],
        w: &[T],
        n: usize,
        i: usize,
        o: usize,
    ) {
        linear::linear_backward(dinp, dw, dbias, dout, inp, w, n, i, o)
    }
    fn layernorm_forward(
        &self,
        out: &mut [T],
        mean: &mut [T],
        rstd: &mut [T],
        inp: &[T],
        w: &[T],
        b: Option<&[T]>,
        c: usize,
        eps: f64,
    ) {
        layernorm::layernorm_forward(out, mean, rstd, inp, w, b, c, eps)
    }
    fn layernorm_backward(
        &self,
        dinp: &mut [T],
        dw: &mut [T],
        db: Option<&mut [T]>,
        dout: &[T],
        inp: &[T],
        w: &[T],
        mean: &[T],
        rstd: &[T],
        c: usize,
    ) {
        layernorm::layernorm_backward(dinp, dw, db, dout, inp, w, mean, rstd, c)
    }
    fn rmsnorm_forward(
        &self,
        out: &mut [T],
        rstd: &mut [T],
        inp: &[T],
        w: &[T],
        c: usize,
        eps: f64,
    ) {
        rmsnorm::rmsnorm_forward(out, rstd, inp, w, c, eps)
    }
    fn rmsnorm_backward(
        &self,
        dinp: &mut [T],
        dw: &mut [T],
        dout: &[T],
        inp: &[T],
        w: &[T],
        rstd: &[T],
        c: usize,
    ) {
        rmsnorm::rmsnorm_backward(dinp, dw, dout, inp, w, rstd, c)
    }
    fn rope(&self, x: &mut [T], seq: usize, heads: usize, hd: usize, rope: Rope, inverse: bool) {
        rope::rope_apply(x, seq, heads, hd, rope, inverse)
    }
    fn attention_forward(
        &self,
        out: &mut [T],
        att: &mut [T],
        q: &[T],
        k: &[T],
        v: &[T],
        sh: AttnShape,
    ) {
        attention::attention_forward(out, att, q, k, v, sh)
    }
    fn attention_backward(
        &self,
        dq: &mut [T],
        dk: &mut [T],
        dv: &mut [T],
        dout: &[T],
        q: &[T],
        k: &[T],
        v: &[T],
        att: &[T],
        sh: AttnShape,
    ) {
        attention::attention_backward(dq, dk, dv, dout, q, k, v, att, sh)
    }
    fn activation_forward(&self, act: Activation, out: &mut [T], inp: &[T]) {
        match act {
            Activation::Gelu => gelu::gelu_forward(out, inp),
            Activation::Relu => relu::relu_forward(out, inp),
        }
    }
    fn activation_backward(&self, act: Activation, dinp: &mut [T], inp: &[T], dout: &[T]) {
        match act {
            Activation::Gelu => gelu::gelu_backward(dinp, inp, dout),
            Activation::Relu => relu::relu_backward(dinp, inp, dout),
        }
    }
    fn swiglu_forward(&self, out: &mut [T], gate: &[T], up: &[T]) {
        swiglu::swiglu_forward(out, gate, up)
    }
    fn swiglu_backward(&self, dgate: &mut [T], dup: &mut [T], dout: &[T], gate: &[T], up: &[T]) {
        swiglu::swiglu_backward(dgate, dup, dout, gate, up)
    }
    fn geglu_forward(&self, out: &mut [T], gate: &[T], up: &[T]) {
        geglu::geglu_forward(out, gate, up)
    }
    fn geglu_backward(&self, dgate: &mut [T], dup: &mut [T], dout: &[T], gate: &[T], up: &[T]) {
        geglu::geglu_backward(dgate, dup, dout, gate, up)
    }
    fn embedding_forward(
        &self,
        out: &mut [T],
        tokens: &[u32],
        tok_emb: &[T],
        pos: PosAdd<'_, T>,
        seq: usize,
        c: usize,
    ) {
        embedding::embedding_forward(out, tokens, tok_emb, pos, seq, c)
    }
    fn embedding_backward(
        &self,
        dtok_emb: &mut [T],
        dpos_emb: Option<&mut [T]>,
        dout: &[T],
        tokens: &[u32],
        seq: usize,
        c: usize,
    ) {
        embedding::embedding_backward(dtok_emb, dpos_emb, dout, tokens, seq, c)
    }
    fn residual_forward(&self, out: &mut [T], a: &[T], b: &[T]) {
        residual::residual_forward(out, a, b)
    }
    fn add_inplace(&self, acc: &mut [T], x: &[T]) {
        residual::add_inplace(acc, x)
    }
    fn dropout_forward(&self, x: &mut [T], mask: &mut [T], p: f64, seed: u64) {
        dropout::dropout_forward(x, mask, p, seed)
    }
    fn dropout_backward(&self, dx: &mut [T], mask: &[T]) {
        dropout::dropout_backward(dx, mask)
    }
    fn softmax_ce_forward(&self, logits: &mut [T], losses: &mut [T], targets: &[u32], v: usize) {
        softmax_ce::softmax_ce_forward(logits, losses, targets, v)
    }
    fn softmax_ce_backward(&self, probs: &mut [T], dloss: &[T], targets: &[u32], v: usize) {
        softmax_ce::softmax_ce_backward(probs, dloss, targets, v)
    }
    fn adamw(&self, params: &mut [T], grads: &[T], m: &mut [T], v: &mut [T], hp: &AdamParams) {
        adamw_update(params, grads, m, v, hp)
    }
    fn sum_squares(&self, x: &[T]) -> f64 {
        // Fixed chunks and eight fixed lanes per chunk: the order of the additions
        // depends on neither the thread count nor the schedule, and the lanes vectorise.
        x.par_chunks(1 << 14)
            .map(|c| {
                let mut acc = [0f64; 8];
                let mut it = c.chunks_exact(8);
                for w in &mut it {
                    for (a, v) in acc.iter_mut().zip(w) {
                        *a += v.f64() * v.f64();
                    }
                }
                for (a, v) in acc.iter_mut().zip(it.remainder()) {
                    *a += v.f64() * v.f64();
                }
                acc.iter().sum::<f64>()
            })
            .collect::<Vec<f64>>()
            .iter()
            .sum()
    }
    fn scale(&self, x: &mut [T], s: f64) {
        let s = T::c(s);
        x.par_chunks_mut(crate::layers::CHUNK).for_each(|c| {
            for v in c.iter_mut() {
                *v *= s;
            }
        });
    }
}
