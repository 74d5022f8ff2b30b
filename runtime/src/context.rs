//! One inference stream over a shared [`Model`]: the KV cache, the scratch of the
//! forward pass (allocated once, at creation) and the per-context kernel state.
//!
//! The forward pass takes a batch of tokens: a prompt goes through as one
//! matrix × matrix product per weight, generation as one row at a time.

use crate::error::Error;
use crate::kernels::{Cpu, SharedMut, VecOps};
use crate::model::{Linear, Model, NormWeights};
use crate::ops;
use alloc::format;
use alloc::sync::Arc;
use alloc::vec::Vec;
use llm_format::{Mlp, ModelOptions, Norm, Positions};

/// How a [`Context`] is sized.
#[derive(Clone, Debug)]
pub struct ContextParams {
    /// Context length in tokens (0: the model's `max_len`).
    pub n_ctx: usize,
    /// Most tokens per forward call; longer inputs go through in chunks.
    pub n_batch: usize,
    /// Threads for the matrix products, at most [`MAX_THREADS`] (0 counts as 1;
    /// ignored without `std`).
    pub threads: usize,
}

/// Most threads one context may use (`llm-run --threads`, the C ABI's `n_threads`).
pub const MAX_THREADS: usize = 1024;

impl ContextParams {
    /// Checks the settings a caller chooses freely (`threads`); sizes are checked
    /// against the model and the machine by [`Context::new`].
    pub fn validate(&self) -> Result<(), crate::sampler::SettingError> {
        if self.threads > MAX_THREADS {
            return Err(crate::sampler::SettingError {
                setting: "threads",
                value: self.threads as f32,
                rule: "must be at most 1024 (MAX_THREADS)",
            });
        }
        Ok(())
    }
}

impl Default for ContextParams {
    fn default() -> Self {
        ContextParams {
            n_ctx: 0,
            n_batch: 64,
            threads: 1,
        }
    }
}

/// The resolved sizes of a context's buffers, in floats: what [`Context::new`]
/// allocates and [`ContextParams::bytes_needed`] counts, from one computation.
struct Sizes {
    n_ctx: usize,
    n_batch: usize,
    /// One of the two KV caches: `layers × n_ctx × kv_dim`.
    cache: usize,
    /// `n_batch × d_model`: x, xb, q, att and proj.
    rows_d: usize,
    /// `n_batch × kv_dim`: k and v.
    rows_kv: usize,
    /// `n_batch × d_ff`: the MLP hidden (and, for SwiGLU, its up branch).
    rows_ff: usize,
    /// SwiGLU's second hidden buffer (0 otherwise).
    rows_ff2: usize,
    /// `n_heads × n_ctx` attention weights.
    scores: usize,
    /// `vocab` logits.
    logits: usize,
    /// `head_dim / 2` RoPE inverse frequencies.
    freqs: usize,
    /// `n_batch × head_dim` cos/sin of the new positions.
    rope_cs: usize,
}

impl Sizes {
    /// Every buffer together, in bytes (`None` on overflow).
    fn bytes(&self) -> Option<u64> {
        let floats = [
            (2, self.cache),
            (5, self.rows_d),
            (2, self.rows_kv),
            (1, self.rows_ff),
            (1, self.rows_ff2),
            (1, self.scores),
            (1, self.logits),
            (1, self.freqs),
            (1, self.rope_cs),
        ]
        .iter()
        .try_fold(0u64, |acc, &(k, n)| {
            acc.checked_add((n as u64).checked_mul(k)?)
        })?;
        floats.checked_mul(4)
    }
}

impl ContextParams {
    /// Checks the sizes against the model and resolves them (`n_ctx` 0 → `max_len`,
    /// `n_batch` clamped to `1..=n_ctx`).
    fn sizes(&self, o: &ModelOptions) -> Result<Sizes, Error> {
        let n_ctx = if self.n_ctx == 0 {
            o.max_len
        } else {
            self.n_ctx
        };
        if n_ctx > o.max_len && o.positions == Positions::Learned {
            return Err(Error::Invalid(format!(
                "context length {n_ctx} exceeds the model's {} learned positions",
                o.max_len
            )));
        }
        if n_ctx > (1 << 24) {
            return Err(Error::Invalid(format!(
                "context length {n_ctx} is out of range"
            )));
        }
        let n_batch = self.n_batch.clamp(1, n_ctx);
        let (d, kv, f, l) = (o.d_model, o.kv_dim(), o.d_ff, o.n_layers);
        let cache = l
            .checked_mul(n_ctx)
            .and_then(|v| v.checked_mul(kv))
            .ok_or_else(|| Error::Invalid("KV cache size overflows".into()))?;
        let rows = |w: usize| {
            n_batch
                .checked_mul(w)
                .ok_or_else(|| Error::Invalid("context scratch size overflows".into()))
        };
        Ok(Sizes {
            n_ctx,
            n_batch,
            cache,
            rows_d: rows(d)?,
            rows_kv: rows(kv)?,
            rows_ff: rows(f)?,
            rows_ff2: if o.mlp == Mlp::SwiGlu { rows(f)? } else { 0 },
            scores: o
                .n_heads
                .checked_mul(n_ctx)
                .ok_or_else(|| Error::Invalid("attention scores size overflows".into()))?,
            logits: o.vocab_size,
            freqs: o.head_dim() / 2,
            rope_cs: rows(o.head_dim())?,
        })
    }

    /// Bytes a [`Context`] with these parameters over a model with options `o`
    /// allocates: both KV caches plus every scratch buffer of the forward pass.
    /// [`Context::new`] (with `std`) refuses a context that needs more than the
    /// system has available; a caller can ask first. Errors are those of
    /// [`Context::new`] for out-of-range sizes.
    pub fn bytes_needed(&self, o: &ModelOptions) -> Result<u64, Error> {
        self.sizes(o)?
            .bytes()
            .ok_or_else(|| Error::Invalid("context size overflows".into()))
    }
}

/// Allocates `n` zeroed floats, or reports that memory ran out.
fn buffer(n: usize, what: &str) -> Result<Vec<f32>, Error> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| Error::NoMemory {
        what: format!("the {what}"),
        needed: (n as u64).saturating_mul(4),
        available: None,
    })?;
    v.resize(n, 0.0);
    Ok(v)
}

/// Refuses a context of `bytes` that the system could not give (Linux
/// `MemAvailable`), before anything is allocated: an overcommitting kernel would
/// otherwise hand the memory out and kill the process when it is touched.
#[cfg(feature = "std")]
fn check_available(n_ctx: usize, bytes: u64) -> Result<(), Error> {
    match crate::sys::mem_available() {
        Some(avail) if bytes > avail => Err(Error::NoMemory {
            what: format!("a context of {n_ctx} tokens"),
            needed: bytes,
            available: Some(avail),
        }),
        _ => Ok(()),
    }
}

/// The state of one generation stream.
pub struct Context {
    model: Arc<Model>,
    cpu: Cpu,
    n_ctx: usize,
    n_batch: usize,
    /// Tokens whose keys and values are in the cache, in order.
    tokens: Vec<u32>,
    k_cache: Vec<f32>, // (layer, kv_head, n_ctx, head_dim)
    v_cache: Vec<f32>, // (layer, kv_head, n_ctx, head_dim)
    x: Vec<f32>,       // (n_batch, d) residual stream
    xb: Vec<f32>,      // (n_batch, d) normalised input of a sub-block
    q: Vec<f32>,       // (n_batch, d)
    k: Vec<f32>,       // (n_batch, kv_dim)
    v: Vec<f32>,       // (n_batch, kv_dim)
    att: Vec<f32>,     // (n_batch, d) attention output before the projection
    proj: Vec<f32>,    // (n_batch, d) output of a projection, added to x
    hb: Vec<f32>,      // (n_batch, d_ff)
    hb2: Vec<f32>,     // (n_batch, d_ff) SwiGLU's up branch
    scores: Vec<f32>,  // (n_heads, n_ctx) attention weights, one row per head
    logits: Vec<f32>,  // (vocab,) of the last token evaluated
    freqs: Vec<f32>,   // (head_dim/2,) RoPE inverse frequencies
    rope_cs: Vec<f32>, // (n_batch, head_dim) cos/sin of each new position
}

impl Context {
    /// Creates a context with its KV cache and scratch; fails cleanly when memory
    /// is short or the sizes are out of range.
    pub fn new(model: Arc<Model>, params: &ContextParams) -> Result<Context, Error> {
        params
            .validate()
            .map_err(|e| Error::Invalid(alloc::string::ToString::to_string(&e)))?;
        let o = &model.opts;
        let s = params.sizes(o)?;
        #[cfg(feature = "std")]
        check_available(
            s.n_ctx,
            s.bytes()
                .ok_or_else(|| Error::Invalid("context size overflows".into()))?,
        )?;
        let freqs = ops::rope_freqs(o.head_dim(), o.rope_base);
        debug_assert_eq!(freqs.len(), s.freqs);
        Ok(Context {
            cpu: Cpu::new(params.threads.max(1)),
            n_ctx: s.n_ctx,
            n_batch: s.n_batch,
            tokens: Vec::new(),
            k_cache: buffer(s.cache, "KV cache")?,
            v_cache: buffer(s.cache, "KV cache")?,
            x: buffer(s.rows_d, "activations")?,
            xb: buffer(s.rows_d, "activations")?,
            q: buffer(s.rows_d, "activations")?,
            k: buffer(s.rows_kv, "activations")?,
            v: buffer(s.rows_kv, "activations")?,
            att: buffer(s.rows_d, "activations")?,
            proj: buffer(s.rows_d, "activations")?,
            hb: buffer(s.rows_ff, "activations")?,
            hb2: buffer(s.rows_ff2, "activations")?,
            scores: buffer(s.scores, "attention scores")?,
            logits: buffer(s.logits, "logits")?,
            freqs,
            rope_cs: buffer(s.rope_cs, "activations")?,
            model,
        })
    }

    /// The model this context runs.
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// Context length in tokens.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Tokens in the cache.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Logits of the last token evaluated (`[vocab]`).
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }

    /// Empties the KV cache.
    pub fn reset(&mut self) {
        self.tokens.clear();
    }

    /// Keeps the first `n` tokens of the cache (a shared prompt prefix) and drops the rest.
    pub fn truncate(&mut self, n: usize) {
        self.tokens.truncate(n);
    }

    /// Runs `tokens` after those already in the cache; the logits of the last one
    /// are then in [`Context::logits`].
    pub fn eval(&mut self, tokens: &[u32]) -> Result<&[f32], Error> {
        self.check(tokens)?;
        for chunk in tokens.chunks(self.n_batch) {
            self.forward(chunk, None, &|| false)?;
        }
        Ok(&self.logits)
    }

    /// [`Context::eval`] that stops early, with `Ok(None)`, when `cancelled()` returns
    /// `true`; it is asked before every layer of every batch, so a long prompt stops
    /// within one layer's work (e.g. an atomic flag another thread sets). The cache
    /// then holds the tokens of the batches that finished, and nothing of the one
    /// that was stopped.
    pub fn eval_until(
        &mut self,
        tokens: &[u32],
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Option<&[f32]>, Error> {
        self.check(tokens)?;
        for chunk in tokens.chunks(self.n_batch) {
            if !self.forward(chunk, None, cancelled)? {
                return Ok(None);
            }
        }
        Ok(Some(&self.logits))
    }

    /// Runs `tokens` and writes the logits of every one of them into `out`
    /// (`[tokens.len(), vocab]`, resized), as perplexity needs.
    pub fn eval_all(&mut self, tokens: &[u32], out: &mut Vec<f32>) -> Result<(), Error> {
        self.check(tokens)?;
        let vocab = self.model.opts.vocab_size;
        out.clear();
        out.resize(tokens.len() * vocab, 0.0);
        let mut done = 0;
        for chunk in tokens.chunks(self.n_batch) {
            let dst = &mut out[done * vocab..(done + chunk.len()) * vocab];
            self.forward(chunk, Some(dst), &|| false)?;
            done += chunk.len();
        }
        Ok(())
    }

    fn check(&self, tokens: &[u32]) -> Result<(), Error> {
        if tokens.is_empty() {
            return Err(Error::EmptyPrompt);
        }
        let need = self.tokens.len() + tokens.len();
        if need > self.n_ctx {
            return Err(Error::ContextFull(need, self.n_ctx));
        }
        let vocab = self.model.opts.vocab_size;
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::BadToken(bad as u64, vocab));
        }
        Ok(())
    }

    /// One forward pass over `tokens.len() <= n_batch` new tokens; `false` (and the
    /// tokens not added to the cache) if `cancelled()` said so before a layer.
    fn forward(
        &mut self,
        tokens: &[u32],
        all_logits: Option<&mut [f32]>,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<bool, Error> {
        let model = self.model.clone();
        let o = &model.opts;
        let (n, d, kv, f) = (tokens.len(), o.d_model, o.kv_dim(), o.d_ff);
        let (hd, n_heads, n_kv) = (o.head_dim(), o.n_heads, o.n_kv_heads);
        let pos0 = self.tokens.len();
        let norm = |out: &mut [f32], x: &[f32], w: &NormWeights| match o.norm {
            Norm::LayerNorm => ops::layernorm(out, x, &w.w, w.b.as_deref(), o.norm_eps),
            Norm::RmsNorm => ops::rmsnorm(out, x, &w.w, o.norm_eps),
        };

        if o.positions == Positions::Rope {
            for (i, cs) in self.rope_cs.chunks_exact_mut(hd).take(n).enumerate() {
                ops::rope_table(cs, &self.freqs, pos0 + i);
            }
        }

        // Embedding (+ absolute positions).
        for (i, &t) in tokens.iter().enumerate() {
            let row = &mut self.x[i * d..(i + 1) * d];
            model.embed(t, row)?;
            match o.positions {
                Positions::Learned => model.add_pos_emb(pos0 + i, row),
                Positions::Sinusoidal => ops::add_sinusoidal(row, pos0 + i),
                Positions::Rope => {}
            }
        }

        let (x, xb) = (&mut self.x[..n * d], &mut self.xb[..n * d]);
        let (q, k, v) = (
            &mut self.q[..n * d],
            &mut self.k[..n * kv],
            &mut self.v[..n * kv],
        );
        let (att, proj) = (&mut self.att[..n * d], &mut self.proj[..n * d]);
        let cpu = &mut self.cpu;
        let layer_stride = n_kv * self.n_ctx * hd;
        let scale = 1.0 / crate::math::sqrtf(hd as f32);
        // Row-wise work between the products, split by rows across the threads (for a
        // prompt; one token is one range on the caller).
        let pnorm = |cpu: &Cpu, out: &mut [f32], x: &[f32], w: &NormWeights| {
            let so = SharedMut::new(out);
            for_row_ranges(cpu, n, &|i0, i1| {
                // SAFETY: rows i0..i1 of `out`, disjoint between parts; `out` outlives
                // the call.
                let o = unsafe { so.slice(i0 * d, (i1 - i0) * d) };
                norm(o, &x[i0 * d..i1 * d], w);
            });
        };
        let padd = |cpu: &Cpu, x: &mut [f32], y: &[f32]| {
            let sx = SharedMut::new(x);
            for_row_ranges(cpu, n, &|i0, i1| {
                // SAFETY: as in `pnorm`.
                let xr = unsafe { sx.slice(i0 * d, (i1 - i0) * d) };
                ops::add(xr, &y[i0 * d..i1 * d]);
            });
        };
        for (l, layer) in model.layers.iter().enumerate() {
            if cancelled() {
                return Ok(false);
            }
            // Attention: q, k, v projections of the normalised input.
            pnorm(cpu, xb, x, &layer.attn_norm);
            linear_many(
                cpu,
                &model,
                [&layer.wq, &layer.wk, &layer.wv],
                xb,
                n,
                [&mut *q, &mut *k, &mut *v],
            );
            if o.positions == Positions::Rope {
                let (sq, sk) = (SharedMut::new(q), SharedMut::new(k));
                let rope_cs = &self.rope_cs;
                for_row_ranges(cpu, n, &|i0, i1| {
                    for i in i0..i1 {
                        let cs = &rope_cs[i * hd..(i + 1) * hd];
                        // SAFETY: row i of q and of k, written by this part only.
                        let (qi, ki) = unsafe { (sq.slice(i * d, d), sk.slice(i * kv, kv)) };
                        ops::rope(qi, cs);
                        ops::rope(ki, cs);
                    }
                });
            }
            // Store keys and values: cache[l][kv_head][pos][..head_dim].
            let (kc, vc) = (
                &mut self.k_cache[l * layer_stride..(l + 1) * layer_stride],
                &mut self.v_cache[l * layer_stride..(l + 1) * layer_stride],
            );
            for i in 0..n {
                for h in 0..n_kv {
                    let dst = (h * self.n_ctx + pos0 + i) * hd;
                    let src = i * kv + h * hd;
                    kc[dst..dst + hd].copy_from_slice(&k[src..src + hd]);
                    vc[dst..dst + hd].copy_from_slice(&v[src..src + hd]);
                }
            }
            // Causal attention of each new token over the cache up to itself, one
            // head per part across the threads.
            let shape = AttnShape {
                n,
                pos0,
                d,
                hd,
                n_ctx: self.n_ctx,
                group: n_heads / n_kv,
                scale,
            };
            let out = SharedMut::new(att);
            let scores = SharedMut::new(&mut self.scores);
            let (q, kc, vc) = (&*q, &*kc, &*vc);
            let vec = cpu.vecops();
            cpu.parallel(n_heads, &|h| {
                // SAFETY: part h takes only row h of `scores` (n_heads × n_ctx), which
                // outlives `parallel` (it returns after every part).
                let sc = unsafe { scores.slice(h * shape.n_ctx, shape.n_ctx) };
                attend_head(vec, &shape, h, q, kc, vc, sc, out);
            });
            linear(cpu, &model, &layer.wo, att, n, proj);
            padd(cpu, x, proj);

            // MLP.
            pnorm(cpu, xb, x, &layer.mlp_norm);
            let hb = &mut self.hb[..n * f];
            let shb = SharedMut::new(hb);
            // SAFETY (the activations below): part (i0, i1) takes rows i0..i1 of `hb`
            // only; `hb` outlives the call.
            let hb_rows = |i0: usize, i1: usize| unsafe { shb.slice(i0 * f, (i1 - i0) * f) };
            match (o.mlp, &layer.gate) {
                (Mlp::SwiGlu, Some(g)) => {
                    let gate = &mut self.hb2[..n * f];
                    linear_many(cpu, &model, [g, &layer.up], xb, n, [&mut *gate, &mut *hb]);
                    let gate = &*gate;
                    let vec = cpu.vecops();
                    for_row_ranges(cpu, n, &|i0, i1| {
                        vec.swiglu(hb_rows(i0, i1), &gate[i0 * f..i1 * f])
                    });
                }
                (Mlp::SwiGlu, None) => {
                    return Err(Error::Invalid("swiglu model without gate weights".into()))
                }
                (Mlp::Gelu, _) => {
                    linear(cpu, &model, &layer.up, xb, n, hb);
                    for_row_ranges(cpu, n, &|i0, i1| ops::gelu(hb_rows(i0, i1)));
                }
                (Mlp::Relu, _) => {
                    linear(cpu, &model, &layer.up, xb, n, hb);
                    for_row_ranges(cpu, n, &|i0, i1| ops::relu(hb_rows(i0, i1)));
                }
            }
            linear(cpu, &model, &layer.down, hb, n, proj);
            padd(cpu, x, proj);
        }
        self.tokens.extend_from_slice(tokens);

        // Final norm and classifier: every row when asked, else the last row only.
        let out_w = model.matrix(&model.output);
        match all_logits {
            Some(dst) => {
                norm(xb, x, &model.out_norm);
                cpu.matmul(&out_w, xb, n, dst);
                let vocab = o.vocab_size;
                self.logits.copy_from_slice(&dst[(n - 1) * vocab..]);
            }
            None => {
                let last = &x[(n - 1) * d..];
                norm(&mut xb[..d], last, &model.out_norm);
                cpu.matmul(&out_w, &xb[..d], 1, &mut self.logits);
            }
        }
        Ok(true)
    }
}

/// y_i = x·W_iᵀ (+ b_i) for `n` rows, for matrices that read the same input (one
/// quantisation of `x`, one hand-off to the threads).
fn linear_many<const K: usize>(
    cpu: &mut Cpu,
    model: &Model,
    ws: [&Linear; K],
    x: &[f32],
    n: usize,
    mut ys: [&mut [f32]; K],
) {
    let mats = ws.map(|w| model.matrix(&w.w));
    cpu.matmul_many(&mats, x, n, &mut ys);
    for (w, y) in ws.iter().zip(ys.iter_mut()) {
        if let Some(b) = &w.b {
            ops::add_bias(y, b);
        }
    }
}

/// y = x·Wᵀ (+ b) for `n` rows.
fn linear(cpu: &mut Cpu, model: &Model, w: &Linear, x: &[f32], n: usize, y: &mut [f32]) {
    cpu.matmul(&model.matrix(&w.w), x, n, y);
    if let Some(b) = &w.b {
        ops::add_bias(y, b);
    }
}

/// The sizes attention needs, for one layer and one batch of new tokens.
struct AttnShape {
    n: usize,
    pos0: usize,
    d: usize,
    hd: usize,
    n_ctx: usize,
    group: usize,
    scale: f32,
}

/// Runs `f(i0, i1)` over `n` rows split into one contiguous range per thread (one
/// range, on the caller, for a single row): the row-wise work between the products
/// (norms, RoPE, activations, residual adds), which would otherwise leave the other
/// threads waiting while the caller does it alone.
fn for_row_ranges(cpu: &Cpu, n: usize, f: &(dyn Fn(usize, usize) + Sync)) {
    let parts = cpu.threads().min(n).max(1);
    cpu.parallel(parts, &|k| {
        let (i0, i1) = crate::kernels::part_range(k, parts, n, 1);
        if i0 < i1 {
            f(i0, i1);
        }
    });
}

/// Query head `h` of each new row attends over the cached keys and values of its
/// KV head (cache layout (kv_head, pos, head_dim)) up to its own position; writes
/// head h's columns of `att` (`[n, d]`) and nothing else of it. `sc` is scratch of `n_ctx`.
#[allow(clippy::too_many_arguments)]
fn attend_head(
    vec: VecOps,
    s: &AttnShape,
    h: usize,
    q: &[f32],
    kc: &[f32],
    vc: &[f32],
    sc: &mut [f32],
    att: SharedMut<f32>,
) {
    let hd = s.hd;
    let kvh = h / s.group;
    let keys = &kc[kvh * s.n_ctx * hd..(kvh + 1) * s.n_ctx * hd];
    let vals = &vc[kvh * s.n_ctx * hd..(kvh + 1) * s.n_ctx * hd];
    for i in 0..s.n {
        let p = s.pos0 + i;
        let qh = &q[i * s.d + h * hd..i * s.d + (h + 1) * hd];
        // SAFETY: head h's columns of row i: no other part writes them, and `att`
        // outlives the call.
        let out = unsafe { att.slice(i * s.d + h * hd, hd) };
        vec.attend(qh, keys, vals, s.scale, &mut sc[..=p], out);
    }
}
