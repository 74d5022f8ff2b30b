//! [`Profiled`]: a [`Backend`] wrapper that times every op of the backend it wraps, so a
//! training run can say where its time goes (`LLM_TRAIN_PROFILE=1 llm-train train ...`
//! prints the table at the end). The ops run unchanged; only wall time is added up, per
//! op name, from the calling thread (the model calls the backend from one thread).

use crate::backend::{Activation, Backend};
use crate::layers::attention::AttnShape;
use crate::layers::embedding::PosAdd;
use crate::layers::rope::Rope;
use crate::optim::AdamParams;
use crate::scalar::Real;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Calls and total time of one op.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct OpTime {
    /// Times the op was called.
    pub calls: u64,
    /// Wall time spent inside it.
    pub total: Duration,
}

/// Times every op of `inner`.
pub struct Profiled<'a, T: Real> {
    inner: &'a dyn Backend<T>,
    times: Mutex<BTreeMap<&'static str, OpTime>>,
}

impl<'a, T: Real> Profiled<'a, T> {
    /// Wraps `inner` with empty counters.
    pub fn new(inner: &'a dyn Backend<T>) -> Self {
        Profiled {
            inner,
            times: Mutex::new(BTreeMap::new()),
        }
    }

    fn time<R>(&self, op: &'static str, f: impl FnOnce(&dyn Backend<T>) -> R) -> R {
        let t0 = Instant::now();
        let r = f(self.inner);
        let dt = t0.elapsed();
        let mut m = match self.times.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        let e = m.entry(op).or_default();
        e.calls += 1;
        e.total += dt;
        r
    }

    /// The counters so far, slowest op first.
    pub fn report(&self) -> Vec<(&'static str, OpTime)> {
        let m = match self.times.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        let mut v: Vec<_> = m.iter().map(|(k, t)| (*k, *t)).collect();
        v.sort_by_key(|r| std::cmp::Reverse(r.1.total));
        v
    }

    /// The report as a text table: op, calls, seconds, share of the ops' total.
    pub fn table(&self) -> String {
        let rows = self.report();
        let all: f64 = rows.iter().map(|r| r.1.total.as_secs_f64()).sum();
        let mut s = format!(
            "{:<22} {:>8} {:>9} {:>6}\n",
            "op", "calls", "seconds", "share"
        );
        for (op, t) in rows {
            let secs = t.total.as_secs_f64();
            s.push_str(&format!(
                "{op:<22} {:>8} {secs:>9.3} {:>5.1}%\n",
                t.calls,
                100.0 * secs / all.max(1e-12)
            ));
        }
        s
    }
}

#[allow(clippy::too_many_arguments)]
impl<T: Real> Backend<T> for Profiled<'_, T> {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn check_fits(&self, what: &str, bytes: usize) -> Result<(), String> {
        self.inner.check_fits(what, bytes)
    }
    fn check_options(&self, o: &llm_format::ModelOptions) -> Result<(), String> {
        self.inner.check_options(o)
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
        self.time("matmul_forward", |b| {
            b.matmul_forward(out, inp, w, bias, n, i, o)
        })
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
        self.time("matmul_backward", |b| {
            b.matmul_backward(dinp, dw, dbias, dout, inp, w, n, i, o)
        })
    }
    fn layernorm_forward(
        &self,
        out: &mut [T],
        mean: &mut [T],
        rstd: &mut [T],
        inp: &[T],
        w: &[T],
        bias: Option<&[T]>,
        c: usize,
        eps: f64,
    ) {
        self.time("layernorm_forward", |b| {
            b.layernorm_forward(out, mean, rstd, inp, w, bias, c, eps)
        })
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
        self.time("layernorm_backward", |b| {
            b.layernorm_backward(dinp, dw, db, dout, inp, w, mean, rstd, c)
        })
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
        self.time("rmsnorm_forward", |b| {
            b.rmsnorm_forward(out, rstd, inp, w, c, eps)
        })
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
        self.time("rmsnorm_backward", |b| {
            b.rmsnorm_backward(dinp, dw, dout, inp, w, rstd, c)
        })
    }
    fn rope(&self, x: &mut [T], seq: usize, heads: usize, hd: usize, rope: Rope, inverse: bool) {
        self.time("rope", |b| b.rope(x, seq, heads, hd, rope, inverse))
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
        self.time("attention_forward", |b| {
            b.attention_forward(out, att, q, k, v, sh)
        })
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
        self.time("attention_backward", |b| {
            b.attention_backward(dq, dk, dv, dout, q, k, v, att, sh)
        })
    }
    fn activation_forward(&self, act: Activation, out: &mut [T], inp: &[T]) {
        self.time("activation_forward", |b| {
            b.activation_forward(act, out, inp)
        })
    }
    fn activation_backward(&self, act: Activation, dinp: &mut [T], inp: &[T], dout: &[T]) {
        self.time("activation_backward", |b| {
            b.activation_backward(act, dinp, inp, dout)
        })
    }
    fn geglu_forward(&self, out: &mut [T], gate: &[T], up: &[T]) {
        self.time("geglu_forward", |b| b.geglu_forward(out, gate, up))
    }
    fn geglu_backward(&self, dgate: &mut [T], dup: &mut [T], dout: &[T], gate: &[T], up: &[T]) {
        self.time("geglu_backward", |b| {
            b.geglu_backward(dgate, dup, dout, gate, up)
        })
    }
    fn swiglu_forward(&self, out: &mut [T], gate: &[T], up: &[T]) {
        self.time("swiglu_forward", |b| b.swiglu_forward(out, gate, up))
    }
    fn swiglu_backward(&self, dgate: &mut [T], dup: &mut [T], dout: &[T], gate: &[T], up: &[T]) {
        self.time("swiglu_backward", |b| {
            b.swiglu_backward(dgate, dup, dout, gate, up)
        })
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
        self.time("embedding_forward", |b| {
            b.embedding_forward(out, tokens, tok_emb, pos, seq, c)
        })
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
        self.time("embedding_backward", |b| {
            b.embedding_backward(dtok_emb, dpos_emb, dout, tokens, seq, c)
        })
    }
    fn residual_forward(&self, out: &mut [T], a: &[T], bb: &[T]) {
        self.time("residual_forward", |b| b.residual_forward(out, a, bb))
    }
    fn add_inplace(&self, acc: &mut [T], x: &[T]) {
        self.time("add_inplace", |b| b.add_inplace(acc, x))
    }
    fn dropout_forward(&self, x: &mut [T], mask: &mut [T], p: f64, seed: u64) {
        self.time("dropout_forward", |b| b.dropout_forward(x, mask, p, seed))
    }
    fn dropout_backward(&self, dx: &mut [T], mask: &[T]) {
        self.time("dropout_backward", |b| b.dropout_backward(dx, mask))
    }
    fn softmax_ce_forward(&self, logits: &mut [T], losses: &mut [T], targets: &[u32], v: usize) {
        self.time("softmax_ce_forward", |b| {
            b.softmax_ce_forward(logits, losses, targets, v)
        })
    }
    fn softmax_ce_backward(&self, probs: &mut [T], dloss: &[T], targets: &[u32], v: usize) {
        self.time("softmax_ce_backward", |b| {
            b.softmax_ce_backward(probs, dloss, targets, v)
        })
    }
    fn adamw(&self, params: &mut [T], grads: &[T], m: &mut [T], v: &mut [T], hp: &AdamParams) {
        self.time("adamw", |b| b.adamw(params, grads, m, v, hp))
    }
    fn sum_squares(&self, x: &[T]) -> f64 {
        self.time("sum_squares", |b| b.sum_squares(x))
    }
    fn scale(&self, x: &mut [T], s: f64) {
        self.time("scale", |b| b.scale(x, s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Cpu;
    use crate::layers::testutil::rand_vec;

    #[test]
    fn profiled_backend_computes_the_same_and_counts_calls() {
        let (n, i, o) = (9, 13, 7);
        let inp = rand_vec::<f32>(n * i, 1);
        let w = rand_vec::<f32>(o * i, 2);
        let (mut a, mut b) = (vec![0f32; n * o], vec![0f32; n * o]);
        let p = Profiled::new(&Cpu);
        p.matmul_forward(&mut a, &inp, &w, None, n, i, o);
        p.matmul_forward(&mut a, &inp, &w, None, n, i, o);
        Backend::<f32>::matmul_forward(&Cpu, &mut b, &inp, &w, None, n, i, o);
        assert_eq!(a, b);
        let r = p.report();
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].0, r[0].1.calls), ("matmul_forward", 2));
        assert!(p.table().contains("matmul_forward"));
    }
}
