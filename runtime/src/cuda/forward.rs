//! A model's forward pass on a [`Gpu`]: the weights uploaded once as the file stores
//! them (plain rows; an `r16` matrix is de-interleaved at upload), an f32 KV cache on
//! the device, and [`crate::Context`]'s forward pass op by op on device buffers, for
//! one sequence. Only the last row's logits come back.
//!
//! The same code runs on a CUDA device and on the CPU emulator, so the suite checks the
//! whole pass (buffers, offsets, order of launches) against the CPU context without a
//! GPU (`tests/gpu_forward.rs`).

use super::attention::{self, Heads, LayerCache};
use super::matmul::{self, Dest, DeviceMatrix};
use super::{act, embed, rope, rows};
use crate::context::rope_freq_tables;
use crate::model::{Linear, Model, NormWeights, WeightRef};
use alloc::sync::Arc;
use llm_format::{Mlp, Norm, Positions};
use llmrt_cuda::{Buffer, CudaError, Gpu};
use std::format;
use std::vec::Vec;

/// A linear layer on the device.
struct GpuLinear {
    w: DeviceMatrix,
    b: Option<Buffer>,
}

/// A norm's weight (and bias) on the device.
struct GpuNorm {
    w: Buffer,
    b: Option<Buffer>,
}

/// One decoder block on the device.
struct GpuLayer {
    attn_norm: GpuNorm,
    qkv: Qkv,
    q_norm: Option<Buffer>,
    k_norm: Option<Buffer>,
    wo: GpuLinear,
    attn_post_norm: Option<GpuNorm>,
    mlp_norm: GpuNorm,
    mlp_post_norm: Option<GpuNorm>,
    mlp_in: MlpIn,
    down: GpuLinear,
    /// This layer's KV cache, `[n_ctx, kv_dim]` each.
    k_cache: Buffer,
    v_cache: Buffer,
}

/// The q/k/v projections. Fused when the three share a storage type and have no
/// biases or q/k norms: one matrix `[q; k; v]` whose one product writes q to its
/// buffer and k and v straight into the cache rows of their positions (no copy
/// kernel, two launches fewer per layer).
// One per layer, built once and never moved: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
enum Qkv {
    Fused(DeviceMatrix),
    Separate {
        wq: GpuLinear,
        wk: GpuLinear,
        wv: GpuLinear,
    },
}

/// The MLP's input projections: `[gate; up]` fused as q/k/v are, the gated pair
/// apart, or the up projection alone (GELU, ReLU).
enum MlpIn {
    Fused(DeviceMatrix),
    Gated { gate: GpuLinear, up: GpuLinear },
    Plain(GpuLinear),
}

/// Whether products are fused (on unless `LLMRT_CUDA_FUSE=0`, to measure what it
/// saves).
fn fusion_enabled() -> bool {
    std::env::var("LLMRT_CUDA_FUSE").map_or(true, |v| v != "0")
}

/// The activations of up to `n_batch` rows.
struct Scratch {
    x: Buffer,
    xb: Buffer,
    q: Buffer,
    k: Buffer,
    v: Buffer,
    att: Buffer,
    proj: Buffer,
    hb: Buffer,
    hb2: Buffer,
    last: Buffer,
    logits: Buffer,
    tokens: Buffer,
    pos: Buffer,
}

/// A model on a GPU with the KV cache of one sequence: `eval` appends tokens and
/// returns the last one's logits, as [`crate::Context::eval`].
pub struct GpuContext {
    gpu: Gpu,
    model: Arc<Model>,
    tok_emb: DeviceMatrix,
    /// `None` when the output projection is the token embedding (tied).
    output: Option<DeviceMatrix>,
    pos_emb: Option<Buffer>,
    sinusoidal: Option<Buffer>,
    /// The global RoPE table, then the sliding layers' own (when they have one).
    freqs: Vec<Buffer>,
    layers: Vec<GpuLayer>,
    out_norm: GpuNorm,
    s: Scratch,
    n_ctx: usize,
    n_batch: usize,
    n_past: usize,
    logits: Vec<f32>,
    /// Products fused (stacked q/k/v and gate/up, residual adds in the product).
    fuse: bool,
    /// The one-token step as a CUDA graph: `Idle` until a first step has run
    /// uncaptured (every module loaded), then captured once and replayed.
    graph: Graph,
}

/// The decode step's graph.
enum Graph {
    /// Off (`LLMRT_CUDA_GRAPHS=0`, or the emulator), or capture failed once.
    Off,
    /// No step yet.
    Idle,
    /// One step ran directly: the next is captured.
    Warm,
    /// Captured: replayed for every token.
    Ready(llmrt_cuda::Graph),
}

impl core::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "GpuContext({}, {} of {} positions)",
            self.gpu.name(),
            self.n_past,
            self.n_ctx
        )
    }
}

/// Whether one-token steps are replayed as CUDA graphs: on unless
/// `LLMRT_CUDA_GRAPHS=0` (to measure what they save).
fn graphs_enabled() -> bool {
    std::env::var("LLMRT_CUDA_GRAPHS").map_or(true, |v| v != "0")
}

/// Bytes of `n` f32 values.
fn f32s(n: usize) -> usize {
    4 * n
}

impl GpuContext {
    /// Uploads `model` to `gpu` with a cache of `n_ctx` positions, taking prompts in
    /// batches of up to `n_batch` tokens. Refuses, before allocating, a model and
    /// cache that do not fit the device's free memory ([`CudaError::OutOfMemory`]
    /// with the numbers), and models whose options or dtypes the GPU path lacks.
    pub fn new(
        gpu: Gpu,
        model: Arc<Model>,
        n_ctx: usize,
        n_batch: usize,
    ) -> Result<GpuContext, CudaError> {
        let o = &model.opts;
        let (d, qd, kv, f, hd) = (o.d_model, o.q_dim(), o.kv_dim(), o.d_ff, o.head_dim());
        let n_ctx = n_ctx.clamp(1, o.max_len.max(1));
        let n_batch = n_batch.clamp(1, n_ctx);
        Heads {
            n_heads: o.n_heads,
            n_kv_heads: o.n_kv_heads,
            hd,
        }
        .check()?;
        let weights: usize = model.bytes().len();
        let cache = 2 * o.n_layers * f32s(n_ctx * kv);
        let widest = d.max(qd).max(f).max(kv);
        let scratch = f32s(n_batch * (3 * d + 2 * qd + 2 * kv + 2 * f + widest + o.vocab_size));
        gpu.check_fits(
            &format!("the model, a {n_ctx}-position cache and {n_batch}-row buffers"),
            weights + cache + scratch,
        )?;

        let bytes = model.bytes();
        // A matrix's rows as plain rows (an `r16` one de-interleaved).
        let rows_of = |w: &WeightRef| -> alloc::borrow::Cow<'_, [u8]> {
            let data = &bytes[w.range.clone()];
            if w.layout == llm_format::Layout::Rows {
                data.into()
            } else {
                llm_format::layout::to_rows(w.layout, data, w.range.len() / w.rows).into()
            }
        };
        let matrix = |w: &WeightRef| -> Result<DeviceMatrix, CudaError> {
            DeviceMatrix::upload(&gpu, w.dtype, &rows_of(w), w.rows, w.cols)
        };
        // Matrices of one storage type and width, stacked into one (None otherwise).
        let fuse = fusion_enabled();
        let stacked = |ls: &[&Linear]| -> Result<Option<DeviceMatrix>, CudaError> {
            let first = &ls[0].w;
            let same = ls
                .iter()
                .all(|l| l.b.is_none() && l.w.dtype == first.dtype && l.w.cols == first.cols);
            if !fuse || !same {
                return Ok(None);
            }
            let mut cat = Vec::new();
            for l in ls {
                cat.extend_from_slice(&rows_of(&l.w));
            }
            let rows = ls.iter().map(|l| l.w.rows).sum();
            DeviceMatrix::upload(&gpu, first.dtype, &cat, rows, first.cols).map(Some)
        };
        let linear = |l: &Linear| -> Result<GpuLinear, CudaError> {
            Ok(GpuLinear {
                w: matrix(&l.w)?,
                b: l.b.as_deref().map(|b| gpu.upload_f32(b)).transpose()?,
            })
        };
        let norm = |n: &NormWeights| -> Result<GpuNorm, CudaError> {
            Ok(GpuNorm {
                w: gpu.upload_f32(&n.w)?,
                b: n.b.as_deref().map(|b| gpu.upload_f32(b)).transpose()?,
            })
        };
        let mut layers = Vec::with_capacity(model.layers.len());
        for l in &model.layers {
            let qkv = match stacked(&[&l.wq, &l.wk, &l.wv])? {
                Some(m) if l.q_norm.is_none() => Qkv::Fused(m),
                _ => Qkv::Separate {
                    wq: linear(&l.wq)?,
                    wk: linear(&l.wk)?,
                    wv: linear(&l.wv)?,
                },
            };
            let mlp_in = match &l.gate {
                Some(gate) => match stacked(&[gate, &l.up])? {
                    Some(m) => MlpIn::Fused(m),
                    None => MlpIn::Gated {
                        gate: linear(gate)?,
                        up: linear(&l.up)?,
                    },
                },
                None => MlpIn::Plain(linear(&l.up)?),
            };
            layers.push(GpuLayer {
                attn_norm: norm(&l.attn_norm)?,
                qkv,
                q_norm: l.q_norm.as_deref().map(|w| gpu.upload_f32(w)).transpose()?,
                k_norm: l.k_norm.as_deref().map(|w| gpu.upload_f32(w)).transpose()?,
                wo: linear(&l.wo)?,
                attn_post_norm: l.attn_post_norm.as_ref().map(norm).transpose()?,
                mlp_norm: norm(&l.mlp_norm)?,
                mlp_post_norm: l.mlp_post_norm.as_ref().map(norm).transpose()?,
                mlp_in,
                down: linear(&l.down)?,
                k_cache: gpu.alloc(f32s(n_ctx * kv))?,
                v_cache: gpu.alloc(f32s(n_ctx * kv))?,
            });
        }
        let tok_emb = matrix(&model.tok_emb)?;
        let output = if o.tied_embeddings {
            None
        } else {
            Some(matrix(&model.output)?)
        };
        let pos_emb = match (&model.pos_emb, o.positions) {
            (Some(p), Positions::Learned) => {
                let mut v = alloc::vec![0.0f32; p.rows * p.cols];
                llm_format::quant::dequantize(p.dtype, &bytes[p.range.clone()], &mut v)
                    .ok_or_else(|| CudaError::Shape("position table size".into()))?;
                Some(gpu.upload_f32(&v)?)
            }
            (None, Positions::Learned) => {
                return Err(CudaError::Shape("learned positions without a table".into()))
            }
            _ => None,
        };
        let sinusoidal = match o.positions {
            Positions::Sinusoidal => Some(gpu.upload_f32(&rope::sinusoidal_divisors(d))?),
            _ => None,
        };
        let freqs = if o.positions == Positions::Rope {
            rope_freq_tables(&model)
                .chunks(hd / 2)
                .map(|t| gpu.upload_f32(t))
                .collect::<Result<Vec<_>, _>>()?
        } else {
            Vec::new()
        };
        let out_norm = norm(&model.out_norm)?;
        let row = |w: usize| gpu.alloc(f32s(n_batch * w));
        let s = Scratch {
            x: row(d)?,
            xb: row(d)?,
            q: row(qd)?,
            k: row(kv)?,
            v: row(kv)?,
            att: row(qd)?,
            proj: row(d)?,
            hb: row(f)?,
            hb2: row(f)?,
            last: gpu.alloc(f32s(d))?,
            logits: gpu.alloc(f32s(n_batch * o.vocab_size))?,
            tokens: gpu.alloc(4 * n_batch)?,
            pos: gpu.alloc(4 * n_batch)?,
        };
        Ok(GpuContext {
            gpu,
            model,
            tok_emb,
            output,
            pos_emb,
            sinusoidal,
            freqs,
            layers,
            out_norm,
            s,
            n_ctx,
            n_batch,
            n_past: 0,
            logits: Vec::new(),
            graph: if graphs_enabled() {
                Graph::Idle
            } else {
                Graph::Off
            },
            fuse,
        })
    }

    /// Turns the replay of one-token steps from a CUDA graph on or off (on by default
    /// unless `LLMRT_CUDA_GRAPHS=0`); off drops a captured graph.
    pub fn set_graphs(&mut self, on: bool) {
        self.graph = if on { Graph::Idle } else { Graph::Off };
    }

    /// Gives the device back (for another model on it).
    pub fn into_gpu(self) -> Gpu {
        self.gpu
    }

    /// The device.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// The model.
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// Positions the cache holds.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Positions evaluated so far.
    pub fn n_past(&self) -> usize {
        self.n_past
    }

    /// The logits of the last token evaluated (`[vocab]`); empty before the first
    /// evaluation, after [`GpuContext::reset`] and after a failed one.
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }

    /// Forgets the sequence (the cache is overwritten as positions come again).
    pub fn reset(&mut self) {
        self.n_past = 0;
        self.logits.clear();
    }

    /// Appends `tokens` to the sequence, in batches of at most `n_batch`, and returns
    /// the last one's logits.
    pub fn eval(&mut self, tokens: &[u32]) -> Result<&[f32], CudaError> {
        self.check(tokens)?;
        // A batch that fails leaves no logits: those held belong to an earlier token.
        self.logits.clear();
        for chunk in tokens.chunks(self.n_batch) {
            self.stage(chunk)?;
            if chunk.len() == 1 {
                self.step()?;
            } else {
                self.forward(chunk.len(), false)?;
            }
            self.n_past += chunk.len();
        }
        let vocab = self.model.opts.vocab_size;
        self.logits.resize(vocab, 0.0);
        if let Err(e) = self.gpu.read_f32_into(&self.s.logits, 0, &mut self.logits) {
            self.logits.clear();
            return Err(e);
        }
        Ok(&self.logits)
    }

    /// Appends `tokens` and writes the logits of every one of them into `out`
    /// (`[tokens.len(), vocab]`), as [`crate::Context::eval_all`] (perplexity).
    pub fn eval_all(&mut self, tokens: &[u32], out: &mut Vec<f32>) -> Result<(), CudaError> {
        self.check(tokens)?;
        let vocab = self.model.opts.vocab_size;
        self.logits.clear();
        out.clear();
        out.resize(tokens.len() * vocab, 0.0);
        for (i, chunk) in tokens.chunks(self.n_batch).enumerate() {
            self.stage(chunk)?;
            self.forward(chunk.len(), true)?;
            self.n_past += chunk.len();
            let at = i * self.n_batch * vocab;
            self.gpu
                .read_f32_into(&self.s.logits, 0, &mut out[at..at + chunk.len() * vocab])?;
        }
        self.logits.extend_from_slice(&out[out.len() - vocab..]);
        Ok(())
    }

    /// Refuses an empty call, one past the context and ids outside the vocabulary,
    /// before anything changes.
    fn check(&self, tokens: &[u32]) -> Result<(), CudaError> {
        if tokens.is_empty() {
            return Err(CudaError::Shape("no tokens to evaluate".into()));
        }
        if self.n_past + tokens.len() > self.n_ctx {
            return Err(CudaError::Shape(format!(
                "{} tokens do not fit in the context of {} tokens",
                self.n_past + tokens.len(),
                self.n_ctx
            )));
        }
        embed::check_tokens(tokens, self.model.opts.vocab_size)
    }

    /// `out = norm(x)` over `n` rows.
    fn norm(&self, out: &Buffer, x: &Buffer, w: &GpuNorm, n: usize) -> Result<(), CudaError> {
        let o = &self.model.opts;
        match o.norm {
            Norm::RmsNorm => rows::rmsnorm(&self.gpu, out, x, &w.w, n, o.norm_eps),
            Norm::LayerNorm => {
                rows::layernorm(&self.gpu, out, x, &w.w, w.b.as_ref(), n, o.norm_eps)
            }
        }
    }

    /// `y = x · Wᵀ (+ b)` over `n` rows.
    fn linear(&self, l: &GpuLinear, x: &Buffer, n: usize, y: &Buffer) -> Result<(), CudaError> {
        matmul::matmul(&self.gpu, &l.w, x, n, y)?;
        match &l.b {
            Some(b) => rows::add_bias(&self.gpu, y, b, n),
            None => Ok(()),
        }
    }

    /// `x += post_norm(in · Wᵀ + b)`: added by the product itself where there is no
    /// bias or post norm, else through `proj`.
    fn residual(
        &self,
        l: &GpuLinear,
        input: &Buffer,
        n: usize,
        post: Option<&GpuNorm>,
    ) -> Result<(), CudaError> {
        let (s, d) = (&self.s, self.model.opts.d_model);
        if l.b.is_none() && post.is_none() && self.fuse {
            let parts = [(&s.x, d)];
            let dst = Dest {
                parts: &parts,
                pos: None,
                accumulate: true,
            };
            return matmul::matmul_to(&self.gpu, &l.w, input, n, dst);
        }
        self.linear(l, input, n, &s.proj)?;
        if let Some(post) = post {
            self.norm(&s.proj, &s.proj, post, n)?;
        }
        rows::add(&self.gpu, &s.x, &s.proj, n * d)
    }

    /// Writes the next pass's inputs into device memory: the token ids and their
    /// positions `n_past..`. Everything after this is device work, so a captured step
    /// replays for any token at any position.
    fn stage(&mut self, tokens: &[u32]) -> Result<(), CudaError> {
        let ids = embed::token_bytes(tokens, self.model.opts.vocab_size)?;
        self.gpu.write(&mut self.s.tokens, 0, &ids)?;
        let pos: Vec<u8> = (0..tokens.len())
            .flat_map(|i| ((self.n_past + i) as i32).to_le_bytes())
            .collect();
        self.gpu.write(&mut self.s.pos, 0, &pos)
    }

    /// One token's pass (inputs staged): replayed from its graph once captured.
    fn step(&mut self) -> Result<(), CudaError> {
        match &self.graph {
            Graph::Ready(g) => return self.gpu.replay(g),
            Graph::Warm => {
                let captured = self.gpu.capture(|| self.forward(1, false));
                match captured {
                    Ok(Some(g)) => {
                        self.gpu.replay(&g)?;
                        self.graph = Graph::Ready(g);
                        return Ok(());
                    }
                    // No graph (the emulator) or a failed capture: run directly from
                    // now on (the capture ran nothing).
                    Ok(None) | Err(_) => self.graph = Graph::Off,
                }
            }
            Graph::Idle => self.graph = Graph::Warm,
            Graph::Off => {}
        }
        self.forward(1, false)
    }

    /// One pass over the `n` staged tokens: the CPU's `Context::forward`, with the
    /// logits of every row (`all_rows`) or of the last. Device work only (no host
    /// copies), so that it can be captured.
    fn forward(&self, n: usize, all_rows: bool) -> Result<(), CudaError> {
        let model = self.model.clone();
        let o = &model.opts;
        let (d, kv, f, qd, hd) = (o.d_model, o.kv_dim(), o.d_ff, o.q_dim(), o.head_dim());
        let heads = Heads {
            n_heads: o.n_heads,
            n_kv_heads: o.n_kv_heads,
            hd,
        };
        let (g, s) = (&self.gpu, &self.s);

        // Embedding (+ absolute positions).
        embed::embed(g, &self.tok_emb, n, &s.tokens, &s.x)?;
        if let Some(scale) = o.arch.embed_scale {
            rows::scale(g, &s.x, scale, n * d)?;
        }
        match o.positions {
            Positions::Learned => {
                let table = self.pos_emb.as_ref().expect("checked at upload");
                rope::add_pos_rows(g, &s.x, table, o.max_len, &s.pos, n, d)?;
            }
            Positions::Sinusoidal => {
                let div = self.sinusoidal.as_ref().expect("made at upload");
                rope::add_sinusoidal(g, &s.x, div, &s.pos, n, d)?;
            }
            Positions::Rope => {}
        }

        let scale = 1.0 / crate::math::sqrtf(hd as f32);
        let yarn = o.arch.rope_yarn.map_or(1.0, |y| y.attn_factor);
        for (l, layer) in self.layers.iter().enumerate() {
            // Attention.
            self.norm(&s.xb, &s.x, &layer.attn_norm, n)?;
            let in_cache = match &layer.qkv {
                Qkv::Fused(w) => {
                    // q to its buffer, k and v into the cache rows of their positions.
                    let parts = [(&s.q, qd), (&layer.k_cache, kv), (&layer.v_cache, kv)];
                    let dst = Dest {
                        parts: &parts,
                        pos: Some((&s.pos, self.n_ctx)),
                        accumulate: false,
                    };
                    matmul::matmul_to(g, w, &s.xb, n, dst)?;
                    true
                }
                Qkv::Separate { wq, wk, wv } => {
                    self.linear(wq, &s.xb, n, &s.q)?;
                    self.linear(wk, &s.xb, n, &s.k)?;
                    self.linear(wv, &s.xb, n, &s.v)?;
                    if let (Some(qn), Some(kn)) = (&layer.q_norm, &layer.k_norm) {
                        rows::rmsnorm_heads(g, &s.q, qn, n, qd, o.norm_eps)?;
                        rows::rmsnorm_heads(g, &s.k, kn, n, kv, o.norm_eps)?;
                    }
                    false
                }
            };
            let window = o.layer_window(l);
            if o.positions == Positions::Rope {
                // The sliding layers' own table follows the global one.
                let local = o.arch.rope_base_local.is_some() && window.is_some();
                let table = &self.freqs[usize::from(local)];
                let factor = if local { 1.0 } else { yarn };
                let (k, k_rows) = if in_cache {
                    (&layer.k_cache, Some(self.n_ctx))
                } else {
                    (&s.k, None)
                };
                rope::rope(g, heads, table, factor, &s.pos, n, &s.q, k, k_rows)?;
            }
            if !in_cache {
                attention::kv_store(
                    g,
                    &layer.k_cache,
                    &layer.v_cache,
                    self.n_ctx,
                    &s.k,
                    &s.v,
                    &s.pos,
                    n,
                    kv,
                )?;
            }
            let cache = LayerCache {
                k: &layer.k_cache,
                v: &layer.v_cache,
                n_ctx: self.n_ctx,
            };
            attention::attention(
                g,
                heads,
                &cache,
                &s.q,
                &s.pos,
                n,
                window.unwrap_or(usize::MAX),
                scale,
                &s.att,
            )?;
            self.residual(&layer.wo, &s.att, n, layer.attn_post_norm.as_ref())?;

            // MLP.
            self.norm(&s.xb, &s.x, &layer.mlp_norm, n)?;
            let gated = match &layer.mlp_in {
                MlpIn::Fused(w) => {
                    let parts = [(&s.hb2, f), (&s.hb, f)];
                    matmul::matmul_to(g, w, &s.xb, n, Dest::to(&parts))?;
                    true
                }
                MlpIn::Gated { gate, up } => {
                    self.linear(gate, &s.xb, n, &s.hb2)?;
                    self.linear(up, &s.xb, n, &s.hb)?;
                    true
                }
                MlpIn::Plain(up) => {
                    self.linear(up, &s.xb, n, &s.hb)?;
                    false
                }
            };
            match (o.mlp, gated) {
                (Mlp::SwiGlu, true) => act::swiglu(g, &s.hb, &s.hb2, n * f)?,
                (Mlp::GeGlu, true) => act::geglu(g, &s.hb, &s.hb2, n * f)?,
                (Mlp::Gelu, false) => act::gelu(g, &s.hb, n * f)?,
                (Mlp::Relu, false) => act::relu(g, &s.hb, n * f)?,
                (mlp, _) => {
                    return Err(CudaError::Shape(format!(
                        "{mlp:?} MLP with{} gate weights",
                        if gated { "" } else { "out" }
                    )))
                }
            }
            self.residual(&layer.down, &s.hb, n, layer.mlp_post_norm.as_ref())?;
        }

        // Final norm and classifier: every row, or the last.
        let out = self.output.as_ref().unwrap_or(&self.tok_emb);
        if all_rows {
            self.norm(&s.xb, &s.x, &self.out_norm, n)?;
            return matmul::matmul(g, out, &s.xb, n, &s.logits);
        }
        self.gpu
            .copy(&s.last, 0, &s.x, f32s((n - 1) * d), f32s(d))?;
        self.norm(&s.last, &s.last, &self.out_norm, 1)?;
        matmul::matmul(g, out, &s.last, 1, &s.logits)
    }
}
