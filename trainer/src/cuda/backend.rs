//! [`CudaBackend`]: the trainer's [`Backend`] trait on the GPU kernels.
//!
//! The trait moves host slices, so each call uploads its inputs, runs the kernels and
//! downloads its outputs: this makes every op checkable against the CPU backend through
//! the same interface (and usable by the model code as it stands), while the speed of a
//! device-resident step is what `scripts/gpu-check.sh` measures through the kernels
//! directly. Storage is fp32 (the trait's `f32`).
//!
//! Conventions match the CPU backend: every backward adds (+=) into its gradients.
//! Differences, all documented on the methods: `att` holds the per-row logsumexp
//! `[B, H, T]` (its first `B·H·T` entries) instead of the `[B, H, T, T]` probabilities,
//! since flash attention never forms them; residual adds, dropout (whose masks must be
//! drawn by the CPU's RNG to match bit for bit) and scaling run on the host, where the
//! data already is. The trait has no error channel, so a failing CUDA call inside an op
//! panics with the [`CudaError`] text; [`CudaBackend::new`] itself fails cleanly.

use super::attention::AttnShape as GpuAttn;
use super::embedding::EmbeddingShape;
use super::error::CudaError;
use super::matmul::Blas;
use super::rope::RopeTables;
use super::{activation, adamw, attention, bias_grad, classifier, embedding, grad_norm};
use super::{layernorm, rmsnorm, rope, CudaDevice};
use crate::backend::{Activation, Backend, Cpu};
use crate::layers::attention::AttnShape;
use crate::layers::embedding::{sinusoid_row, PosAdd};
use crate::layers::rope::Rope;
use crate::optim::AdamParams;
use cudarc::driver::CudaSlice;
use std::collections::HashMap;
use std::sync::Mutex;

/// RoPE tables are cached by head width, `(base, scale)` bits and padded length.
type RopeKey = (usize, (u64, u64), usize);

/// The CUDA backend over one GPU.
pub struct CudaBackend {
    dev: CudaDevice,
    blas: Blas,
    /// RoPE tables per (head_dim, (base, scale) bits, max positions).
    rope: Mutex<HashMap<RopeKey, RopeTables>>,
}

impl std::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaBackend({:?})", self.dev)
    }
}

/// Unwraps a CUDA result inside a trait method (which has no error channel).
#[track_caller]
fn ok<T>(r: Result<T, CudaError>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("CUDA backend: {e}"),
    }
}

fn u32_to_i32(tokens: &[u32], vocab: usize, what: &str) -> Vec<i32> {
    tokens
        .iter()
        .enumerate()
        .map(|(p, &t)| {
            if t as usize >= vocab {
                panic!("CUDA backend: {what} {t} at position {p} is outside 0..{vocab}");
            }
            t as i32
        })
        .collect()
}

/// The CUDA backend trains the classic decoder, q/k/v biases and linear RoPE
/// scaling; the newer options the CPU trains (q/k norm, GeGLU, a head width other
/// than `d_model / n_heads`, post norms, an embedding scale) have no kernels or
/// GPU tests yet (issue 10), so a run with one is refused ([`Backend::check_options`]),
/// in one line naming each.
pub fn check_cuda_options(o: &llm_format::ModelOptions) -> Result<(), String> {
    let a = &o.arch;
    let mut cpu_only = Vec::new();
    if let Some(hd) = a.head_dim.filter(|&hd| hd * o.n_heads != o.d_model) {
        cpu_only.push(format!(
            "head_dim = {hd} (not d_model / n_heads = {})",
            o.d_model / o.n_heads
        ));
    }
    if a.qk_norm {
        cpu_only.push("qk_norm".into());
    }
    if o.mlp == llm_format::Mlp::GeGlu {
        cpu_only.push("mlp = geglu".into());
    }
    if a.post_norms {
        cpu_only.push("post_norms".into());
    }
    if let Some(s) = a.embed_scale {
        cpu_only.push(format!("embed_scale = {s}"));
    }
    if cpu_only.is_empty() {
        return Ok(());
    }
    Err(format!(
        "the CUDA backend does not train {} yet (the CPU does: --device cpu)",
        cpu_only.join(", ")
    ))
}

impl CudaBackend {
    /// Opens GPU `ordinal` and a cuBLASLt handle; compiles nothing until first use.
    pub fn new(ordinal: usize) -> Result<Self, CudaError> {
        let dev = CudaDevice::open(ordinal)?;
        let blas = Blas::new(&dev)?;
        Ok(CudaBackend {
            dev,
            blas,
            rope: Mutex::new(HashMap::new()),
        })
    }

    /// The device.
    pub fn device(&self) -> &CudaDevice {
        &self.dev
    }

    fn up(&self, h: &[f32]) -> CudaSlice<f32> {
        ok(self.dev.stream().clone_htod(h).map_err(CudaError::from))
    }

    fn up_i32(&self, h: &[i32]) -> CudaSlice<i32> {
        ok(self.dev.stream().clone_htod(h).map_err(CudaError::from))
    }

    fn zeros(&self, n: usize) -> CudaSlice<f32> {
        ok(self.dev.stream().alloc_zeros(n).map_err(CudaError::from))
    }

    /// Copies `d` into `h` and waits for it.
    fn down(&self, d: &CudaSlice<f32>, h: &mut [f32]) {
        let st = self.dev.stream();
        ok(st.memcpy_dtoh(d, h).map_err(CudaError::from));
        ok(self.dev.synchronize());
    }

    fn with_rope<R>(
        &self,
        hd: usize,
        rope: Rope,
        seq: usize,
        f: impl FnOnce(&RopeTables) -> R,
    ) -> R {
        let key = (
            hd,
            (rope.base.to_bits(), rope.scale.to_bits()),
            seq.next_power_of_two(),
        );
        let mut m = match self.rope.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        let t = m
            .entry(key)
            .or_insert_with(|| ok(RopeTables::new(&self.dev, key.2, hd, rope)));
        f(t)
    }
}

#[allow(clippy::too_many_arguments)]
impl Backend<f32> for CudaBackend {
    fn name(&self) -> String {
        format!(
            "cuda:{} ({})",
            self.dev.context().ordinal(),
            self.dev.name()
        )
    }
    fn check_fits(&self, what: &str, bytes: usize) -> Result<(), String> {
        self.dev.check_fits(what, bytes).map_err(|e| e.to_string())
    }

    fn check_options(&self, o: &llm_format::ModelOptions) -> Result<(), String> {
        check_cuda_options(o)
    }

    fn matmul_forward(
        &self,
        out: &mut [f32],
        inp: &[f32],
        w: &[f32],
        bias: Option<&[f32]>,
        n: usize,
        i: usize,
        o: usize,
    ) {
        let (di, dw) = (self.up(inp), self.up(w));
        let db = bias.map(|b| self.up(b));
        let mut d = self.zeros(n * o);
        ok(self.blas.forward(&mut d, &di, &dw, db.as_ref(), n, i, o));
        self.down(&d, out);
    }

    fn matmul_backward(
        &self,
        dinp: &mut [f32],
        dw: &mut [f32],
        dbias: Option<&mut [f32]>,
        dout: &[f32],
        inp: &[f32],
        w: &[f32],
        n: usize,
        i: usize,
        o: usize,
    ) {
        let (ddo, di, dwt) = (self.up(dout), self.up(inp), self.up(w));
        let (mut gi, mut gw) = (self.up(dinp), self.up(dw));
        ok(self
            .blas
            .backward(&mut gi, &mut gw, &ddo, &di, &dwt, n, i, o, true));
        if let Some(db) = dbias {
            let mut gb = self.up(db);
            ok(bias_grad::bias_backward(&self.dev, &mut gb, &ddo, n, o));
            self.down(&gb, db);
        }
        self.down(&gi, dinp);
        self.down(&gw, dw);
    }

    fn layernorm_forward(
        &self,
        out: &mut [f32],
        mean: &mut [f32],
        rstd: &mut [f32],
        inp: &[f32],
        w: &[f32],
        b: Option<&[f32]>,
        c: usize,
        eps: f64,
    ) {
        let n = inp.len() / c;
        let (di, dw) = (self.up(inp), self.up(w));
        let db = b.map(|b| self.up(b));
        let (mut o, mut m, mut r) = (self.zeros(n * c), self.zeros(n), self.zeros(n));
        ok(layernorm::forward(
            &self.dev,
            &mut o,
            &mut m,
            &mut r,
            &di,
            &dw,
            db.as_ref(),
            n,
            c,
            eps as f32,
        ));
        self.down(&o, out);
        self.down(&m, mean);
        self.down(&r, rstd);
    }

    fn layernorm_backward(
        &self,
        dinp: &mut [f32],
        dw: &mut [f32],
        db: Option<&mut [f32]>,
        dout: &[f32],
        inp: &[f32],
        w: &[f32],
        mean: &[f32],
        rstd: &[f32],
        c: usize,
    ) {
        let n = inp.len() / c;
        let (ddo, di, dwt, m, r) = (
            self.up(dout),
            self.up(inp),
            self.up(w),
            self.up(mean),
            self.up(rstd),
        );
        let (mut gi, mut gw) = (self.up(dinp), self.up(dw));
        let mut gb = db.as_deref().map(|b| self.up(b));
        ok(layernorm::backward(
            &self.dev,
            &mut gi,
            &mut gw,
            gb.as_mut(),
            &ddo,
            &di,
            &dwt,
            &m,
            &r,
            n,
            c,
            true,
        ));
        self.down(&gi, dinp);
        self.down(&gw, dw);
        if let (Some(db), Some(gb)) = (db, gb) {
            self.down(&gb, db);
        }
    }

    fn rmsnorm_forward(
        &self,
        out: &mut [f32],
        rstd: &mut [f32],
        inp: &[f32],
        w: &[f32],
        c: usize,
        eps: f64,
    ) {
        let n = inp.len() / c;
        let (di, dw) = (self.up(inp), self.up(w));
        let (mut o, mut r) = (self.zeros(n * c), self.zeros(n));
        ok(rmsnorm::forward(
            &self.dev, &mut o, &mut r, &di, &dw, n, c, eps as f32,
        ));
        self.down(&o, out);
        self.down(&r, rstd);
    }

    fn rmsnorm_backward(
        &self,
        dinp: &mut [f32],
        dw: &mut [f32],
        dout: &[f32],
        inp: &[f32],
        w: &[f32],
        rstd: &[f32],
        c: usize,
    ) {
        let n = inp.len() / c;
        let (ddo, di, dwt, r) = (self.up(dout), self.up(inp), self.up(w), self.up(rstd));
        let (mut gi, mut gw) = (self.up(dinp), self.up(dw));
        ok(rmsnorm::backward(
            &self.dev, &mut gi, &mut gw, &ddo, &di, &dwt, &r, n, c, true,
        ));
        self.down(&gi, dinp);
        self.down(&gw, dw);
    }

    fn rope(&self, x: &mut [f32], seq: usize, heads: usize, hd: usize, rope: Rope, inverse: bool) {
        let batch = x.len() / (seq * heads * hd).max(1);
        let mut d = self.up(x);
        self.with_rope(hd, rope, seq, |t| {
            ok(if inverse {
                rope::backward(&self.dev, t, &mut d, batch, seq, heads)
            } else {
                rope::forward(&self.dev, t, &mut d, batch, seq, heads)
            })
        });
        self.down(&d, x);
    }

    /// `att`'s first `B·H·T` entries receive the per-row logsumexp (not probabilities).
    fn attention_forward(
        &self,
        out: &mut [f32],
        att: &mut [f32],
        q: &[f32],
        k: &[f32],
        v: &[f32],
        sh: AttnShape,
    ) {
        let s = gpu_shape(q.len(), sh);
        let (dq, dk, dv) = (self.up(q), self.up(k), self.up(v));
        let mut o = self.zeros(out.len());
        let lse_len = s.batch * s.heads * s.seq;
        let mut lse = self.zeros(lse_len);
        ok(attention::forward(
            &self.dev, &mut o, &mut lse, &dq, &dk, &dv, s,
        ));
        self.down(&o, out);
        self.down(&lse, &mut att[..lse_len]);
    }

    /// Reads the logsumexp that [`Self::attention_forward`] left in `att`, and recomputes
    /// the forward output it needs.
    fn attention_backward(
        &self,
        dq: &mut [f32],
        dk: &mut [f32],
        dv: &mut [f32],
        dout: &[f32],
        q: &[f32],
        k: &[f32],
        v: &[f32],
        att: &[f32],
        sh: AttnShape,
    ) {
        let s = gpu_shape(q.len(), sh);
        let lse_len = s.batch * s.heads * s.seq;
        let (q_, k_, v_) = (self.up(q), self.up(k), self.up(v));
        let mut o = self.zeros(q.len());
        let mut lse = self.zeros(lse_len);
        // The trait does not pass the forward output: recompute it (and the same lse).
        ok(attention::forward(
            &self.dev, &mut o, &mut lse, &q_, &k_, &v_, s,
        ));
        let lse_in = self.up(&att[..lse_len]);
        let (mut gq, mut gk, mut gv) = (self.up(dq), self.up(dk), self.up(dv));
        ok(attention::backward(
            &self.dev,
            &mut gq,
            &mut gk,
            &mut gv,
            &self.up(dout),
            &q_,
            &k_,
            &v_,
            &o,
            &lse_in,
            s,
            true,
        ));
        self.down(&gq, dq);
        self.down(&gk, dk);
        self.down(&gv, dv);
    }

    fn activation_forward(&self, act: Activation, out: &mut [f32], inp: &[f32]) {
        let di = self.up(inp);
        let mut o = self.zeros(inp.len());
        ok(activation::forward(
            &self.dev,
            gpu_act(act),
            &mut o,
            &di,
            inp.len(),
        ));
        self.down(&o, out);
    }

    fn activation_backward(&self, act: Activation, dinp: &mut [f32], inp: &[f32], dout: &[f32]) {
        let (di, ddo) = (self.up(inp), self.up(dout));
        let mut g = self.up(dinp);
        ok(activation::backward(
            &self.dev,
            gpu_act(act),
            &mut g,
            &di,
            &ddo,
            inp.len(),
            true,
        ));
        self.down(&g, dinp);
    }

    fn swiglu_forward(&self, out: &mut [f32], gate: &[f32], up: &[f32]) {
        let (dg, du) = (self.up(gate), self.up(up));
        let mut o = self.zeros(gate.len());
        ok(activation::swiglu_forward(
            &self.dev,
            &mut o,
            &dg,
            &du,
            gate.len(),
        ));
        self.down(&o, out);
    }

    /// On the host (the CPU backend's op): [`Self::check_options`] refuses GeGLU
    /// runs, so training never reaches this; it is here for the trait's completeness.
    fn geglu_forward(&self, out: &mut [f32], gate: &[f32], up: &[f32]) {
        Backend::<f32>::geglu_forward(&Cpu, out, gate, up)
    }

    /// On the host, as [`Self::geglu_forward`].
    fn geglu_backward(
        &self,
        dgate: &mut [f32],
        dup: &mut [f32],
        dout: &[f32],
        gate: &[f32],
        up: &[f32],
    ) {
        Backend::<f32>::geglu_backward(&Cpu, dgate, dup, dout, gate, up)
    }

    fn swiglu_backward(
        &self,
        dgate: &mut [f32],
        dup: &mut [f32],
        dout: &[f32],
        gate: &[f32],
        up: &[f32],
    ) {
        let (dg, du, ddo) = (self.up(gate), self.up(up), self.up(dout));
        let (mut gg, mut gu) = (self.up(dgate), self.up(dup));
        ok(activation::swiglu_backward(
            &self.dev,
            &mut gg,
            &mut gu,
            &dg,
            &du,
            &ddo,
            gate.len(),
            true,
        ));
        self.down(&gg, dgate);
        self.down(&gu, dup);
    }

    /// Sinusoidal positions go through the learned-position kernel with a table built
    /// on the host by the CPU's own `sinusoid_row`.
    fn embedding_forward(
        &self,
        out: &mut [f32],
        tokens: &[u32],
        tok_emb: &[f32],
        pos: PosAdd<'_, f32>,
        seq: usize,
        c: usize,
    ) {
        let vocab = tok_emb.len() / c;
        let itok = u32_to_i32(tokens, vocab, "token");
        let s = EmbeddingShape {
            batch: tokens.len() / seq,
            seq,
            channels: c,
            vocab,
        };
        let table = match pos {
            PosAdd::Learned(p) => Some(self.up(&p[..seq * c])),
            PosAdd::Sinusoidal => {
                let mut t = vec![0.0f32; seq * c];
                for (pos, row) in t.chunks_exact_mut(c).enumerate() {
                    sinusoid_row(pos, row);
                }
                Some(self.up(&t))
            }
            PosAdd::None => None,
        };
        let (dt, dte) = (self.up_i32(&itok), self.up(tok_emb));
        let mut o = self.zeros(out.len());
        ok(embedding::forward(
            &self.dev,
            &mut o,
            &dt,
            &itok,
            &dte,
            table.as_ref(),
            s,
        ));
        self.down(&o, out);
    }

    fn embedding_backward(
        &self,
        dtok_emb: &mut [f32],
        dpos_emb: Option<&mut [f32]>,
        dout: &[f32],
        tokens: &[u32],
        seq: usize,
        c: usize,
    ) {
        let vocab = dtok_emb.len() / c;
        let itok = u32_to_i32(tokens, vocab, "token");
        let s = EmbeddingShape {
            batch: tokens.len() / seq,
            seq,
            channels: c,
            vocab,
        };
        let ddo = self.up(dout);
        let mut gt = self.up(dtok_emb);
        ok(embedding::backward_tok(&self.dev, &mut gt, &ddo, &itok, s));
        self.down(&gt, dtok_emb);
        if let Some(dp) = dpos_emb {
            let mut gp = self.up(&dp[..seq * c]);
            ok(embedding::backward_pos(&self.dev, &mut gp, &ddo, s));
            self.down(&gp, &mut dp[..seq * c]);
        }
    }

    /// On the host (the operands are there already).
    fn residual_forward(&self, out: &mut [f32], a: &[f32], b: &[f32]) {
        Backend::<f32>::residual_forward(&Cpu, out, a, b)
    }

    /// On the host.
    fn add_inplace(&self, acc: &mut [f32], x: &[f32]) {
        Backend::<f32>::add_inplace(&Cpu, acc, x)
    }

    /// On the host, with the CPU's RNG, so masks are identical across backends.
    fn dropout_forward(&self, x: &mut [f32], mask: &mut [f32], p: f64, seed: u64) {
        Backend::<f32>::dropout_forward(&Cpu, x, mask, p, seed)
    }

    /// On the host.
    fn dropout_backward(&self, dx: &mut [f32], mask: &[f32]) {
        Backend::<f32>::dropout_backward(&Cpu, dx, mask)
    }

    fn softmax_ce_forward(
        &self,
        logits: &mut [f32],
        losses: &mut [f32],
        targets: &[u32],
        v: usize,
    ) {
        let n = losses.len();
        let it = u32_to_i32(targets, v, "target");
        let dt = self.up_i32(&it);
        let mut dl = self.up(logits);
        let mut l = self.zeros(n);
        ok(classifier::probs(
            &self.dev, &mut dl, &mut l, &dt, &it, n, v,
        ));
        self.down(&dl, logits);
        self.down(&l, losses);
    }

    fn softmax_ce_backward(&self, probs: &mut [f32], dloss: &[f32], targets: &[u32], v: usize) {
        let n = dloss.len();
        let it = u32_to_i32(targets, v, "target");
        let (dt, dd) = (self.up_i32(&it), self.up(dloss));
        let mut dp = self.up(probs);
        ok(classifier::grad(&self.dev, &mut dp, &dd, &dt, n, v));
        self.down(&dp, probs);
    }

    fn adamw(
        &self,
        params: &mut [f32],
        grads: &[f32],
        m: &mut [f32],
        v: &mut [f32],
        hp: &AdamParams,
    ) {
        let (mut dp, dg, mut dm, mut dv) =
            (self.up(params), self.up(grads), self.up(m), self.up(v));
        let step = adamw::AdamWStep {
            lr: hp.lr as f32,
            beta1: hp.beta1 as f32,
            beta2: hp.beta2 as f32,
            eps: hp.eps as f32,
            weight_decay: hp.weight_decay as f32,
            step: u32::try_from(hp.step.max(1)).unwrap_or(u32::MAX),
        };
        let state = adamw::AdamWState {
            m: &mut dm,
            v: &mut dv,
            master: None,
        };
        ok(adamw::update(&self.dev, &mut dp, &dg, state, step, None));
        self.down(&dp, params);
        self.down(&dm, m);
        self.down(&dv, v);
    }

    fn sum_squares(&self, x: &[f32]) -> f64 {
        let mut g = ok(grad_norm::GlobalNorm::new(&self.dev));
        let d = self.up(x);
        ok(g.add(&self.dev, &d));
        let norm = ok(g.finish::<f32>(&self.dev)).clone();
        let mut h = [0.0f32];
        self.down(&norm, &mut h);
        (h[0] as f64) * (h[0] as f64)
    }

    /// On the host.
    fn scale(&self, x: &mut [f32], s: f64) {
        Backend::<f32>::scale(&Cpu, x, s)
    }
}

fn gpu_shape(q_len: usize, sh: AttnShape) -> GpuAttn {
    GpuAttn {
        batch: q_len / (sh.t * sh.h * sh.hd).max(1),
        seq: sh.t,
        heads: sh.h,
        kv_heads: sh.kvh,
        head_dim: sh.hd,
    }
}

fn gpu_act(a: Activation) -> activation::Activation {
    match a {
        Activation::Gelu => activation::Activation::Gelu,
        Activation::Relu => activation::Activation::Relu,
    }
}

/// What `--device` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceChoice {
    /// The GPU when one opens, else the CPU (the default).
    Auto,
    /// The CPU backend.
    Cpu,
    /// GPU 0; an error when there is none.
    Cuda,
}

impl DeviceChoice {
    /// Parses `auto`, `cpu` or `cuda`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "auto" => Some(DeviceChoice::Auto),
            "cpu" => Some(DeviceChoice::Cpu),
            "cuda" | "gpu" => Some(DeviceChoice::Cuda),
            _ => None,
        }
    }
}

/// A chosen backend and, when `Auto` fell back to the CPU, why.
pub type Chosen = (Box<dyn Backend<f32>>, Option<String>);

/// The backend for `choice`, plus a note to print when `Auto` fell back to the CPU
/// (the one-line reason no GPU was used). `Cuda` without a GPU is the error itself.
pub fn choose_backend(choice: DeviceChoice) -> Result<Chosen, CudaError> {
    match choice {
        DeviceChoice::Cpu => Ok((Box::new(Cpu), None)),
        DeviceChoice::Cuda => Ok((Box::new(CudaBackend::new(0)?), None)),
        DeviceChoice::Auto => match CudaBackend::new(0) {
            Ok(b) => Ok((Box::new(b), None)),
            Err(e) => Ok((Box::new(Cpu), Some(format!("{e}; using the CPU")))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuda_refuses_the_cpu_only_options_by_name() {
        let mut o = crate::config::TrainConfig::tiny().model_options().unwrap();
        assert_eq!(check_cuda_options(&o), Ok(()));
        o.arch.qkv_bias = true;
        o.arch.head_dim = Some(o.d_model / o.n_heads); // the default width, spelled out
        assert_eq!(check_cuda_options(&o), Ok(()));
        type Set<'a> = &'a dyn Fn(&mut llm_format::ModelOptions);
        let named: [(Set, &str); 5] = [
            (&|o| o.arch.qk_norm = true, "qk_norm"),
            (&|o| o.mlp = llm_format::Mlp::GeGlu, "mlp = geglu"),
            (&|o| o.arch.head_dim = Some(64), "head_dim = 64"),
            (&|o| o.arch.post_norms = true, "post_norms"),
            (&|o| o.arch.embed_scale = Some(2.0), "embed_scale = 2"),
        ];
        for (set, name) in named {
            let mut x = o.clone();
            set(&mut x);
            let e = check_cuda_options(&x).unwrap_err();
            assert!(e.contains(name) && e.contains("--device cpu"), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn device_choice_falls_back_with_a_reason() {
        assert_eq!(DeviceChoice::parse("cuda"), Some(DeviceChoice::Cuda));
        assert_eq!(DeviceChoice::parse("tpu"), None);
        let (cpu, note) = choose_backend(DeviceChoice::Cpu).unwrap();
        assert!(cpu.name().starts_with("cpu") && note.is_none());
        let (auto, note) = choose_backend(DeviceChoice::Auto).unwrap();
        match choose_backend(DeviceChoice::Cuda) {
            Ok((gpu, _)) => {
                assert!(gpu.name().starts_with("cuda:"));
                assert!(auto.name().starts_with("cuda:") && note.is_none());
            }
            Err(e) => {
                let note = note.unwrap();
                assert!(auto.name().starts_with("cpu"), "{}", auto.name());
                assert!(
                    note.starts_with("no CUDA GPU/driver found") || note.contains("cuBLASLt"),
                    "{note}"
                );
                assert!(!e.to_string().contains('\n'), "{e}");
            }
        }
    }
}
