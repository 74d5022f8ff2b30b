//! A device-resident GPT-2 training step built from the kernel library, for measuring
//! what the kernels can do (`scripts/gpu-check.sh`): learned positions, LayerNorm with
//! bias, GELU MLP, tied embeddings, bf16 storage with fp32 master weights, AdamW with
//! global-norm clipping. Forward and backward follow llm.c's `gpt2_forward` /
//! `gpt2_backward` layer by layer. It is a benchmark, not the trainer: no data loader,
//! no checkpoints; the tokens are random.

use super::attention::AttnShape;
use super::embedding::EmbeddingShape;
use super::error::CudaError;
use super::matmul::Blas;
use super::{activation, adamw, attention, bias_grad, classifier, embedding, grad_norm};
use super::{layernorm, CudaDevice};
use crate::rng::Rng;
use cudarc::driver::CudaSlice;
use half::bf16;
use llm_format::{Mlp, ModelOptions, Norm, Positions};
use std::time::Instant;

/// Dense bf16 peak of an H100/H200 SXM, as llm.c's MFU uses.
pub const H100_BF16_FLOPS: f64 = 989e12;

/// What to measure.
#[derive(Clone, Copy, Debug)]
pub struct BenchConfig {
    /// Decoder blocks (12 for GPT-2 124M).
    pub n_layers: usize,
    /// Heads (12).
    pub n_heads: usize,
    /// Width (768).
    pub d_model: usize,
    /// Sequence length (1024).
    pub seq: usize,
    /// Vocabulary (50304, GPT-2's padded to a multiple of 128).
    pub vocab: usize,
    /// Batch; `None` picks the largest that the estimate fits in free memory.
    pub batch: Option<usize>,
    /// Timed steps (after two warm-up steps).
    pub steps: usize,
}

impl BenchConfig {
    /// GPT-2 124M at T = 1024.
    pub fn gpt2_124m() -> Self {
        BenchConfig {
            n_layers: 12,
            n_heads: 12,
            d_model: 768,
            seq: 1024,
            vocab: 50304,
            batch: None,
            steps: 10,
        }
    }

    /// The model options of this shape (for the parameter count).
    pub fn options(&self) -> ModelOptions {
        ModelOptions {
            vocab_size: self.vocab,
            d_model: self.d_model,
            n_layers: self.n_layers,
            n_heads: self.n_heads,
            n_kv_heads: self.n_heads,
            d_ff: 4 * self.d_model,
            max_len: self.seq,
            positions: Positions::Learned,
            norm: Norm::LayerNorm,
            mlp: Mlp::Gelu,
            bias: true,
            tied_embeddings: true,
            norm_eps: 1e-5,
            rope_base: 10000.0,
            arch: Default::default(),
        }
    }

    /// Bytes this step needs at batch `b`: parameters (bf16 + grad bf16 + master, m, v
    /// fp32 = 16 B each), activations kept for the backward pass, logits and scratch.
    pub fn bytes_needed(&self, b: usize) -> usize {
        let (c, l, bt) = (self.d_model, self.n_layers, b * self.seq);
        let params = self.options().n_params() * 16;
        // Per layer per token, bf16: resid_in, ln1, q, k, v, atty, attproj, resid2, ln2,
        // fcproj (10 C), fch and fch_gelu (8 C); fp32: 4 norm stats + lse per head.
        let per_layer = bt * (18 * c * 2 + (4 + self.n_heads) * 4);
        let logits = bt * self.vocab * 2;
        let scratch = bt * c * 2 * 8 + bt * 4 * c * 2 * 2;
        params + l * per_layer + logits + scratch + bt * c * 2 * 3
    }

    /// llm.c's FLOPs per token: `6 N + 6 L C T`.
    pub fn flops_per_token(&self) -> f64 {
        6.0 * self.options().n_params() as f64
            + 6.0 * (self.n_layers * self.d_model * self.seq) as f64
    }
}

/// The measurement.
#[derive(Clone, Debug)]
pub struct BenchReport {
    /// Batch used.
    pub batch: usize,
    /// Mean milliseconds per step.
    pub ms_per_step: f64,
    /// Training tokens per second.
    pub tokens_per_s: f64,
    /// Device memory in use at the end (total − free), bytes.
    pub peak_bytes: usize,
    /// Model FLOPs utilisation against [`H100_BF16_FLOPS`].
    pub mfu: f64,
    /// Mean loss of the first step (about ln(vocab): random tokens, small weights).
    pub first_loss: f32,
    /// Mean loss of the last step; below `first_loss` when the step learns (every
    /// step sees the same batch, so the model memorises it).
    pub last_loss: f32,
}

type Buf = CudaSlice<bf16>;

struct Param {
    w: Buf,
    g: Buf,
    master: CudaSlice<f32>,
    m: CudaSlice<f32>,
    v: CudaSlice<f32>,
    decay: bool,
}

struct Layer {
    ln1w: usize,
    ln1b: usize,
    wq: usize,
    bq: usize,
    wk: usize,
    bk: usize,
    wv: usize,
    bv: usize,
    wo: usize,
    bo: usize,
    ln2w: usize,
    ln2b: usize,
    wfc: usize,
    bfc: usize,
    wproj: usize,
    bproj: usize,
}

struct Acts {
    resid_in: Buf,
    ln1: Buf,
    ln1_mean: CudaSlice<f32>,
    ln1_rstd: CudaSlice<f32>,
    q: Buf,
    k: Buf,
    v: Buf,
    atty: Buf,
    lse: CudaSlice<f32>,
    attproj: Buf,
    resid2: Buf,
    ln2: Buf,
    ln2_mean: CudaSlice<f32>,
    ln2_rstd: CudaSlice<f32>,
    fch: Buf,
    fch_gelu: Buf,
    fcproj: Buf,
}

struct Model {
    params: Vec<Param>,
    layers: Vec<Layer>,
    wte: usize,
    wpe: usize,
    lnfw: usize,
    lnfb: usize,
}

fn alloc(dev: &CudaDevice, n: usize) -> Result<Buf, CudaError> {
    Ok(dev.stream().alloc_zeros::<bf16>(n)?)
}

fn alloc32(dev: &CudaDevice, n: usize) -> Result<CudaSlice<f32>, CudaError> {
    Ok(dev.stream().alloc_zeros::<f32>(n)?)
}

impl Model {
    fn new(dev: &CudaDevice, cfg: &BenchConfig, rng: &mut Rng) -> Result<Self, CudaError> {
        let (c, v, t) = (cfg.d_model, cfg.vocab, cfg.seq);
        let mut params = Vec::new();
        let mut add = |n: usize, std: f64, ones: bool, decay: bool| -> Result<usize, CudaError> {
            let host: Vec<f32> = (0..n)
                .map(|_| {
                    if ones {
                        1.0
                    } else {
                        (rng.normal() * std) as f32
                    }
                })
                .collect();
            let hb: Vec<bf16> = host.iter().map(|&x| bf16::from_f32(x)).collect();
            let st = dev.stream();
            params.push(Param {
                w: st.clone_htod(&hb)?,
                g: alloc(dev, n)?,
                master: st.clone_htod(&host)?,
                m: alloc32(dev, n)?,
                v: alloc32(dev, n)?,
                decay,
            });
            Ok(params.len() - 1)
        };
        let wte = add(v * c, 0.02, false, true)?;
        let wpe = add(t * c, 0.01, false, true)?;
        let mut layers = Vec::new();
        for _ in 0..cfg.n_layers {
            layers.push(Layer {
                ln1w: add(c, 0.0, true, false)?,
                ln1b: add(c, 0.0, false, false)?,
                wq: add(c * c, 0.02, false, true)?,
                bq: add(c, 0.0, false, false)?,
                wk: add(c * c, 0.02, false, true)?,
                bk: add(c, 0.0, false, false)?,
                wv: add(c * c, 0.02, false, true)?,
                bv: add(c, 0.0, false, false)?,
                wo: add(c * c, 0.02, false, true)?,
                bo: add(c, 0.0, false, false)?,
                ln2w: add(c, 0.0, true, false)?,
                ln2b: add(c, 0.0, false, false)?,
                wfc: add(4 * c * c, 0.02, false, true)?,
                bfc: add(4 * c, 0.0, false, false)?,
                wproj: add(4 * c * c, 0.02, false, true)?,
                bproj: add(c, 0.0, false, false)?,
            });
        }
        let lnfw = add(c, 0.0, true, false)?;
        let lnfb = add(c, 0.0, false, false)?;
        Ok(Model {
            params,
            layers,
            wte,
            wpe,
            lnfw,
            lnfb,
        })
    }
}

impl Acts {
    fn new(dev: &CudaDevice, bt: usize, c: usize, bh_t: usize) -> Result<Self, CudaError> {
        Ok(Acts {
            resid_in: alloc(dev, bt * c)?,
            ln1: alloc(dev, bt * c)?,
            ln1_mean: alloc32(dev, bt)?,
            ln1_rstd: alloc32(dev, bt)?,
            q: alloc(dev, bt * c)?,
            k: alloc(dev, bt * c)?,
            v: alloc(dev, bt * c)?,
            atty: alloc(dev, bt * c)?,
            lse: alloc32(dev, bh_t)?,
            attproj: alloc(dev, bt * c)?,
            resid2: alloc(dev, bt * c)?,
            ln2: alloc(dev, bt * c)?,
            ln2_mean: alloc32(dev, bt)?,
            ln2_rstd: alloc32(dev, bt)?,
            fch: alloc(dev, bt * 4 * c)?,
            fch_gelu: alloc(dev, bt * 4 * c)?,
            fcproj: alloc(dev, bt * c)?,
        })
    }
}

/// Picks the largest batch among 128, 64, ... 1 whose estimate fits in 90% of `free`.
pub fn pick_batch(cfg: &BenchConfig, free: usize) -> Option<usize> {
    [128usize, 96, 64, 48, 32, 24, 16, 8, 4, 2, 1]
        .into_iter()
        .find(|&b| cfg.bytes_needed(b) as f64 <= 0.9 * free as f64)
}

/// Runs the benchmark on `dev`.
pub fn run(dev: &CudaDevice, cfg: BenchConfig) -> Result<BenchReport, CudaError> {
    let (free, total) = dev.memory()?;
    let b = match cfg.batch {
        Some(b) => b,
        None => pick_batch(&cfg, free).unwrap_or(1),
    };
    // Refused before the first allocation, with the numbers.
    let needed = cfg.bytes_needed(b);
    if needed > free {
        return Err(CudaError::OutOfMemory {
            what: format!("the benchmark at batch {b}"),
            needed,
            free,
        });
    }
    let (c, t, v, h) = (cfg.d_model, cfg.seq, cfg.vocab, cfg.n_heads);
    let bt = b * t;
    let mut rng = Rng::new(1337);
    let blas = Blas::new(dev)?;
    let mut model = Model::new(dev, &cfg, &mut rng)?;
    let mut acts: Vec<Acts> = (0..cfg.n_layers)
        .map(|_| Acts::new(dev, bt, c, b * h * t))
        .collect::<Result<_, _>>()?;
    let mut resid_final = alloc(dev, bt * c)?;
    let mut lnf = alloc(dev, bt * c)?;
    let (mut lnf_mean, mut lnf_rstd) = (alloc32(dev, bt)?, alloc32(dev, bt)?);
    let mut logits = alloc(dev, bt * v)?;
    let mut losses = alloc32(dev, bt)?;
    // Gradient scratch.
    let mut dresid = alloc(dev, bt * c)?;
    let mut dln = alloc(dev, bt * c)?;
    let mut d4a = alloc(dev, bt * 4 * c)?;
    let mut d4b = alloc(dev, bt * 4 * c)?;
    let (mut dq, mut dk, mut dv, mut datty) = (
        alloc(dev, bt * c)?,
        alloc(dev, bt * c)?,
        alloc(dev, bt * c)?,
        alloc(dev, bt * c)?,
    );
    let host_tokens: Vec<i32> = (0..bt).map(|_| rng.below(v as u64) as i32).collect();
    let host_targets: Vec<i32> = (0..bt).map(|_| rng.below(v as u64) as i32).collect();
    let tokens = dev.stream().clone_htod(&host_tokens)?;
    let targets = dev.stream().clone_htod(&host_targets)?;
    let es = EmbeddingShape {
        batch: b,
        seq: t,
        channels: c,
        vocab: v,
    };
    let ash = AttnShape {
        batch: b,
        seq: t,
        heads: h,
        kv_heads: h,
        head_dim: c / h,
    };
    let mut gnorm = grad_norm::GlobalNorm::new(dev)?;
    let mut step_no = 0u32;

    let mut step = |model: &mut Model,
                    acts: &mut Vec<Acts>,
                    read_loss: bool|
     -> Result<Option<f32>, CudaError> {
        step_no += 1;
        let p = &mut model.params;
        // ---- forward ----
        embedding::forward(
            dev,
            &mut acts[0].resid_in,
            &tokens,
            &host_tokens,
            &p[model.wte].w,
            Some(&p[model.wpe].w),
            es,
        )?;
        for l in 0..cfg.n_layers {
            let ly = &model.layers[l];
            if l > 0 {
                let (prev, cur) = acts.split_at_mut(l);
                let (pa, a) = (&prev[l - 1], &mut cur[0]);
                layernorm::fused_residual_forward(
                    dev,
                    &mut a.resid_in,
                    &mut a.ln1,
                    &mut a.ln1_mean,
                    &mut a.ln1_rstd,
                    &pa.resid2,
                    &pa.fcproj,
                    &p[ly.ln1w].w,
                    Some(&p[ly.ln1b].w),
                    bt,
                    c,
                    1e-5,
                )?;
            } else {
                let a = &mut acts[0];
                layernorm::forward(
                    dev,
                    &mut a.ln1,
                    &mut a.ln1_mean,
                    &mut a.ln1_rstd,
                    &a.resid_in,
                    &p[ly.ln1w].w,
                    Some(&p[ly.ln1b].w),
                    bt,
                    c,
                    1e-5,
                )?;
            }
            let a = &mut acts[l];
            blas.forward(&mut a.q, &a.ln1, &p[ly.wq].w, Some(&p[ly.bq].w), bt, c, c)?;
            blas.forward(&mut a.k, &a.ln1, &p[ly.wk].w, Some(&p[ly.bk].w), bt, c, c)?;
            blas.forward(&mut a.v, &a.ln1, &p[ly.wv].w, Some(&p[ly.bv].w), bt, c, c)?;
            attention::forward(dev, &mut a.atty, &mut a.lse, &a.q, &a.k, &a.v, ash)?;
            blas.forward(
                &mut a.attproj,
                &a.atty,
                &p[ly.wo].w,
                Some(&p[ly.bo].w),
                bt,
                c,
                c,
            )?;
            layernorm::fused_residual_forward(
                dev,
                &mut a.resid2,
                &mut a.ln2,
                &mut a.ln2_mean,
                &mut a.ln2_rstd,
                &a.resid_in,
                &a.attproj,
                &p[ly.ln2w].w,
                Some(&p[ly.ln2b].w),
                bt,
                c,
                1e-5,
            )?;
            blas.forward(
                &mut a.fch,
                &a.ln2,
                &p[ly.wfc].w,
                Some(&p[ly.bfc].w),
                bt,
                c,
                4 * c,
            )?;
            activation::forward(
                dev,
                activation::Activation::Gelu,
                &mut a.fch_gelu,
                &a.fch,
                bt * 4 * c,
            )?;
            blas.forward(
                &mut a.fcproj,
                &a.fch_gelu,
                &p[ly.wproj].w,
                Some(&p[ly.bproj].w),
                bt,
                4 * c,
                c,
            )?;
        }
        let last = &acts[cfg.n_layers - 1];
        layernorm::fused_residual_forward(
            dev,
            &mut resid_final,
            &mut lnf,
            &mut lnf_mean,
            &mut lnf_rstd,
            &last.resid2,
            &last.fcproj,
            &p[model.lnfw].w,
            Some(&p[model.lnfb].w),
            bt,
            c,
            1e-5,
        )?;
        blas.forward(&mut logits, &lnf, &p[model.wte].w, None, bt, c, v)?;
        classifier::forward_backward(
            dev,
            &mut logits,
            &mut losses,
            &targets,
            &host_targets,
            bt,
            v,
            1.0 / bt as f32,
        )?;
        let loss = if read_loss {
            let l: Vec<f32> = dev.stream().clone_dtoh(&losses)?;
            Some(l.iter().sum::<f32>() / l.len().max(1) as f32)
        } else {
            None
        };
        // ---- backward ---- (parameter grads +=, zeroed first)
        for q in p.iter_mut() {
            dev.stream().memset_zeros(&mut q.g)?;
        }
        {
            let wte = &mut p[model.wte];
            blas.backward(&mut dln, &mut wte.g, &logits, &lnf, &wte.w, bt, c, v, false)?;
        }
        let (lw, lb) = two_mut(p, model.lnfw, model.lnfb);
        layernorm::backward(
            dev,
            &mut dresid,
            &mut lw.g,
            Some(&mut lb.g),
            &dln,
            &resid_final,
            &lw.w,
            &lnf_mean,
            &lnf_rstd,
            bt,
            c,
            false,
        )?;
        for l in (0..cfg.n_layers).rev() {
            let ly = &model.layers[l];
            let a = &acts[l];
            // fcproj = fch_gelu · wproj^T + bproj
            {
                let q = &mut p[ly.wproj];
                blas.backward(
                    &mut d4a,
                    &mut q.g,
                    &dresid,
                    &a.fch_gelu,
                    &q.w,
                    bt,
                    4 * c,
                    c,
                    false,
                )?;
            }
            bias_grad::bias_backward(dev, &mut p[ly.bproj].g, &dresid, bt, c)?;
            activation::backward(
                dev,
                activation::Activation::Gelu,
                &mut d4b,
                &a.fch,
                &d4a,
                bt * 4 * c,
                false,
            )?;
            {
                let q = &mut p[ly.wfc];
                blas.backward(&mut dln, &mut q.g, &d4b, &a.ln2, &q.w, bt, c, 4 * c, false)?;
            }
            bias_grad::bias_backward(dev, &mut p[ly.bfc].g, &d4b, bt, 4 * c)?;
            let (w2, b2) = two_mut(p, ly.ln2w, ly.ln2b);
            layernorm::backward(
                dev,
                &mut dresid,
                &mut w2.g,
                Some(&mut b2.g),
                &dln,
                &a.resid2,
                &w2.w,
                &a.ln2_mean,
                &a.ln2_rstd,
                bt,
                c,
                true,
            )?;
            // attproj = atty · wo^T + bo
            {
                let q = &mut p[ly.wo];
                blas.backward(
                    &mut datty, &mut q.g, &dresid, &a.atty, &q.w, bt, c, c, false,
                )?;
            }
            bias_grad::bias_backward(dev, &mut p[ly.bo].g, &dresid, bt, c)?;
            attention::backward(
                dev, &mut dq, &mut dk, &mut dv, &datty, &a.q, &a.k, &a.v, &a.atty, &a.lse, ash,
                false,
            )?;
            for (i, (wi, bi, d)) in [
                (ly.wq, ly.bq, &dq),
                (ly.wk, ly.bk, &dk),
                (ly.wv, ly.bv, &dv),
            ]
            .into_iter()
            .enumerate()
            {
                let q = &mut p[wi];
                blas.backward(&mut dln, &mut q.g, d, &a.ln1, &q.w, bt, c, c, i > 0)?;
                bias_grad::bias_backward(dev, &mut p[bi].g, d, bt, c)?;
            }
            let (w1, b1) = two_mut(p, ly.ln1w, ly.ln1b);
            layernorm::backward(
                dev,
                &mut dresid,
                &mut w1.g,
                Some(&mut b1.g),
                &dln,
                &a.resid_in,
                &w1.w,
                &a.ln1_mean,
                &a.ln1_rstd,
                bt,
                c,
                true,
            )?;
        }
        {
            let (te, pe) = two_mut(p, model.wte, model.wpe);
            embedding::backward_tok(dev, &mut te.g, &dresid, &host_tokens, es)?;
            embedding::backward_pos(dev, &mut pe.g, &dresid, es)?;
        }
        // ---- optimiser ----
        for q in p.iter() {
            gnorm.add(dev, &q.g)?;
        }
        let norm = gnorm.finish::<bf16>(dev)?.clone();
        for q in p.iter_mut() {
            let hp = adamw::AdamWStep {
                lr: 6e-4,
                beta1: 0.9,
                beta2: 0.95,
                eps: 1e-8,
                weight_decay: if q.decay { 0.1 } else { 0.0 },
                step: step_no,
            };
            let state = adamw::AdamWState {
                m: &mut q.m,
                v: &mut q.v,
                master: Some(&mut q.master),
            };
            adamw::update(dev, &mut q.w, &q.g, state, hp, Some((&norm, 1.0)))?;
        }
        Ok(loss)
    };

    let first_loss = step(&mut model, &mut acts, true)?.unwrap_or(f32::NAN);
    step(&mut model, &mut acts, false)?;
    dev.synchronize()?;
    let t0 = Instant::now();
    for _ in 0..cfg.steps.max(1) {
        step(&mut model, &mut acts, false)?;
    }
    dev.synchronize()?;
    let secs = t0.elapsed().as_secs_f64() / cfg.steps.max(1) as f64;
    let last_loss = step(&mut model, &mut acts, true)?.unwrap_or(f32::NAN);
    let (free_after, _) = dev.memory()?;
    let tokens_per_s = bt as f64 / secs;
    Ok(BenchReport {
        batch: b,
        ms_per_step: secs * 1e3,
        tokens_per_s,
        peak_bytes: total.saturating_sub(free_after),
        mfu: tokens_per_s * cfg.flops_per_token() / H100_BF16_FLOPS,
        first_loss,
        last_loss,
    })
}

/// Two distinct elements of a slice, mutably.
fn two_mut<T>(v: &mut [T], i: usize, j: usize) -> (&mut T, &mut T) {
    assert_ne!(i, j, "two_mut needs distinct indices");
    if i < j {
        let (a, b) = v.split_at_mut(j);
        (&mut a[i], &mut b[0])
    } else {
        let (a, b) = v.split_at_mut(i);
        (&mut b[0], &mut a[j])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_124m_accounting() {
        let cfg = BenchConfig::gpt2_124m();
        // llm.c's padded GPT-2 124M: 124,475,904 parameters.
        assert_eq!(cfg.options().n_params(), 124_475_904);
        let fpt = cfg.flops_per_token();
        assert!((fpt - (6.0 * 124_475_904.0 + 6.0 * 12.0 * 768.0 * 1024.0)).abs() < 1.0);
        // An H200's ~140 GB holds batch 64 at T = 1024; 8 GB does not.
        assert!(pick_batch(&cfg, 140 << 30).unwrap() >= 64);
        assert!(pick_batch(&cfg, 8 << 30).unwrap() < 16);
        assert_eq!(two_mut(&mut [1, 2, 3], 2, 0), (&mut 3, &mut 1));
        let e = CudaError::OutOfMemory {
            what: "x".into(),
            needed: 3 << 30,
            free: 1 << 30,
        };
        assert_eq!(
            e.to_string(),
            "x needs about 3.00 GiB of GPU memory, 1.00 GiB are free"
        );
    }
}
