//! Inference over a shared [`Model`]: the KV cache, the scratch of the forward pass
//! (allocated once, at creation) and the per-context kernel state.
//!
//! The forward pass takes a batch of tokens: a prompt goes through as one
//! matrix × matrix product per weight, generation as one row at a time.
//!
//! A context holds up to `n_seq` sequences ([`ContextParams::n_seq`]), each with
//! its own region of the one KV cache budget (`n_ctx / n_seq` positions). The
//! single-stream API ([`Context::eval`] and the rest) works on sequence 0;
//! [`Context::eval_batch`] evaluates tokens of several sequences in one pass, so
//! that each weight matrix is read once for all of them (the rows go through the
//! prompt's matrix × matrix path) while each row attends over its own sequence.

use crate::error::Error;
use crate::kernels::{AttendRun, Cpu, SharedMut, VecOps};
use crate::kv_cache::{CacheType, KvCache, LayerKv};
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
    /// How the KV cache stores keys and values.
    pub cache_type: CacheType,
    /// Sequences the context holds, at most [`MAX_SEQ`] (0 counts as 1). They share
    /// the `n_ctx` positions of the KV cache: each holds up to `n_ctx / n_seq` tokens.
    pub n_seq: usize,
    /// F16/BF16 weights: keep f32 activations and f32 products in prompts, and in
    /// generation over BF16 weights (`true`), instead of bf16 dot products (`false`,
    /// the default: bf16 dot products where the CPU has them and they are faster
    /// than f32 FMAs, activations and F16 weights rounded to bf16, at most 2⁻⁸
    /// relative each); and F32 prompts on f32 FMAs instead of the AMX tiles' three
    /// bf16 products (about 2⁻¹⁶ relative each). See
    /// [`Cpu::set_f16_exact`](crate::kernels::Cpu::set_f16_exact) and
    /// [`Cpu::f32_tile_products`](crate::kernels::Cpu::f32_tile_products).
    pub f16_exact: bool,
}

/// Most threads one context may use (`llm-run --threads`, the C ABI's `n_threads`).
pub const MAX_THREADS: usize = 1024;

/// Most sequences one context may hold ([`ContextParams::n_seq`]).
pub const MAX_SEQ: usize = 256;

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
        if self.n_seq > MAX_SEQ {
            return Err(crate::sampler::SettingError {
                setting: "n_seq",
                value: self.n_seq as f32,
                rule: "must be at most 256 (MAX_SEQ)",
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
            cache_type: CacheType::default(),
            n_seq: 1,
            f16_exact: false,
        }
    }
}

/// The resolved sizes of a context's buffers, in floats: what [`Context::new`]
/// allocates and [`ContextParams::bytes_needed`] counts, from one computation.
struct Sizes {
    /// Positions of the whole cache (read by the std-only memory check).
    #[cfg_attr(not(feature = "std"), allow(dead_code))]
    n_ctx: usize,
    /// Sequences, and the positions each holds (`n_ctx / n_seq`).
    n_seq: usize,
    seq_ctx: usize,
    n_batch: usize,
    /// Bytes of every sequence's KV cache grown to `seq_ctx` ([`KvCache::bytes_for`]).
    cache_bytes: u64,
    /// `n_batch × d_model`: x, xb and proj.
    rows_d: usize,
    /// `n_batch × q_dim`: q and att.
    rows_q: usize,
    /// `n_batch × kv_dim`: k and v.
    rows_kv: usize,
    /// `n_batch × d_ff`: the MLP hidden (and, for SwiGLU, its up branch).
    rows_ff: usize,
    /// SwiGLU's second hidden buffer (0 otherwise).
    rows_ff2: usize,
    /// `n_heads × seq_ctx` attention weights.
    scores: usize,
    /// `n_heads ×` the scratch of blocked prompt attention (`kernels::attend`).
    attn_blocks: usize,
    /// `n_seq × vocab` logits: each sequence's last.
    logits: usize,
    /// `head_dim / 2` RoPE inverse frequencies per table (global, and local when
    /// the sliding layers have their own base).
    freqs: usize,
    /// `n_batch × head_dim` cos/sin of the new positions, per table.
    rope_cs: usize,
}

impl Sizes {
    /// Every buffer together, in bytes (`None` on overflow).
    fn bytes(&self) -> Option<u64> {
        let floats = [
            (3, self.rows_d),
            (2, self.rows_q),
            (2, self.rows_kv),
            (1, self.rows_ff),
            (1, self.rows_ff2),
            (1, self.scores),
            (1, self.attn_blocks),
            (1, self.logits),
            (1, self.freqs),
            (1, self.rope_cs),
            // The row plan: each row's sequence, position and token (u32, as wide
            // as f32) and whether its logits are wanted (a byte; one float covers it).
            (4, self.n_batch),
        ]
        .iter()
        .try_fold(0u64, |acc, &(k, n)| {
            acc.checked_add((n as u64).checked_mul(k)?)
        })?;
        floats.checked_mul(4)?.checked_add(self.cache_bytes)
    }
}

impl ContextParams {
    /// Checks the sizes against the model and resolves them (`n_ctx` 0 → `max_len`,
    /// `n_seq` 0 → 1, `n_batch` clamped to `1..=n_ctx`).
    fn sizes(&self, o: &ModelOptions) -> Result<Sizes, Error> {
        self.validate()
            .map_err(|e| Error::Invalid(alloc::string::ToString::to_string(&e)))?;
        let n_ctx = if self.n_ctx == 0 {
            o.max_len
        } else {
            self.n_ctx
        };
        let n_seq = self.n_seq.max(1);
        let seq_ctx = n_ctx / n_seq;
        if seq_ctx == 0 {
            return Err(Error::Invalid(format!(
                "context length {n_ctx} is shorter than its {n_seq} sequences (one position each at least)"
            )));
        }
        if seq_ctx > o.max_len && o.positions == Positions::Learned {
            return Err(Error::Invalid(format!(
                "context length {seq_ctx} per sequence exceeds the model's {} learned positions",
                o.max_len
            )));
        }
        if n_ctx > (1 << 24) {
            return Err(Error::Invalid(format!(
                "context length {n_ctx} is out of range"
            )));
        }
        let n_batch = self.n_batch.clamp(1, n_ctx);
        let (d, kv, f) = (o.d_model, o.kv_dim(), o.d_ff);
        if self.cache_type == CacheType::Q8_0 && o.head_dim() % 32 != 0 {
            return Err(Error::Invalid(format!(
                "cache type q8_0 needs a head size that is a multiple of 32, not {}",
                o.head_dim()
            )));
        }
        let cache_bytes = KvCache::bytes_for(self.cache_type, o, seq_ctx)
            .and_then(|b| b.checked_mul(n_seq as u64))
            .ok_or_else(|| Error::Invalid("KV cache size overflows".into()))?;
        let rows = |w: usize| {
            n_batch
                .checked_mul(w)
                .ok_or_else(|| Error::Invalid("context scratch size overflows".into()))
        };
        Ok(Sizes {
            n_ctx,
            n_seq,
            seq_ctx,
            n_batch,
            cache_bytes,
            rows_d: rows(d)?,
            rows_q: rows(o.q_dim())?,
            rows_kv: rows(kv)?,
            rows_ff: rows(f)?,
            rows_ff2: if o.mlp.gated() { rows(f)? } else { 0 },
            scores: o
                .n_heads
                .checked_mul(seq_ctx)
                .ok_or_else(|| Error::Invalid("attention scores size overflows".into()))?,
            attn_blocks: o
                .n_heads
                .checked_mul(crate::kernels::attend_scratch_len(o.head_dim()))
                .ok_or_else(|| Error::Invalid("attention scratch size overflows".into()))?,
            logits: o
                .vocab_size
                .checked_mul(n_seq)
                .ok_or_else(|| Error::Invalid("logits size overflows".into()))?,
            freqs: o.head_dim() / 2 * rope_tables(o),
            rope_cs: rows(o.head_dim())? * rope_tables(o),
        })
    }

    /// Bytes a [`Context`] with these parameters over a model with options `o`
    /// allocates at most: the KV cache grown to the whole context (every sequence's
    /// region full; it starts empty and grows in blocks) plus every scratch buffer of
    /// the forward pass and each sequence's last logits. (The logits that
    /// [`Context::eval_all`] and [`Context::eval_batch`] keep for several rows are
    /// allocated by those calls, as many as asked for.)
    /// [`Context::new`] (with `std`) refuses a context that needs more than the
    /// system has available; a caller can ask first. Errors are those of
    /// [`Context::new`] for out-of-range sizes.
    pub fn bytes_needed(&self, o: &ModelOptions) -> Result<u64, Error> {
        self.sizes(o)?
            .bytes()
            .ok_or_else(|| Error::Invalid("context size overflows".into()))
    }
}

/// RoPE tables: the global one, and one for the sliding layers' own base.
/// The RoPE inverse frequencies of `model`, `head_dim / 2` per table: the global
/// table (YaRN's or the plain one, divided by the linear `rope_scale`), then the
/// sliding layers' own table when they have their own base; each divided by the
/// model's frequency factors. One function for the CPU context and the GPU path.
pub fn rope_freq_tables(model: &Model) -> Vec<f32> {
    let o = &model.opts;
    let mut freqs = match &o.arch.rope_yarn {
        Some(y) => ops::yarn_freqs(o.head_dim(), o.rope_base, y),
        None => ops::rope_freqs(o.head_dim(), o.rope_base),
    };
    // Linear position interpolation on the global table: `pos / scale` is
    // `pos · (freq / scale)`.
    if let Some(scale) = o.arch.rope_scale {
        freqs.iter_mut().for_each(|f| *f /= scale);
    }
    if let Some(base) = o.arch.rope_base_local {
        freqs.extend(ops::rope_freqs(o.head_dim(), base));
    }
    if let Some(factors) = &model.rope_freqs {
        let factors = factors.iter().cycle();
        freqs.iter_mut().zip(factors).for_each(|(f, k)| *f /= k);
    }
    freqs
}

fn rope_tables(o: &ModelOptions) -> usize {
    1 + o.arch.rope_base_local.is_some() as usize
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

/// Refuses a context of `bytes` (its KV cache grown to the whole context) that the
/// system could not give (Linux `MemAvailable`, and the process's address-space
/// limit), before anything is allocated: an overcommitting kernel would otherwise
/// hand the memory out and kill the process when it is touched.
#[cfg(feature = "std")]
fn check_available(n_ctx: usize, bytes: u64) -> Result<(), Error> {
    match crate::sys::memory_for_process() {
        Some(avail) if bytes > avail => Err(Error::NoMemory {
            what: format!("a context of {n_ctx} tokens"),
            needed: bytes,
            available: Some(avail),
        }),
        _ => Ok(()),
    }
}

/// One token of a batch for [`Context::eval_batch`]: it goes after the tokens of
/// sequence `seq` (its position is that sequence's length).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchEntry {
    /// The token id.
    pub token: u32,
    /// Its sequence, below [`Context::n_seq`].
    pub seq: usize,
    /// Whether to compute its logits ([`Context::batch_logits`], and
    /// [`Context::seq_logits`] when it is its sequence's last).
    pub logits: bool,
}

/// One sequence of a context: its tokens and its region of the KV cache.
struct Seq {
    /// Tokens whose keys and values are in `cache`, in order.
    tokens: Vec<u32>,
    cache: KvCache,
    /// Whether the context's logits row of this sequence belongs to its last token.
    has_logits: bool,
}

/// Where row `r` of a forward pass belongs: `NONE` in `Context::batch_rows`.
const NONE: usize = usize::MAX;

/// The state of up to `n_seq` generation streams (one by default).
pub struct Context {
    model: Arc<Model>,
    cpu: Cpu,
    /// Positions each sequence holds.
    n_ctx: usize,
    n_batch: usize,
    seqs: Vec<Seq>,
    /// The rows of the forward pass being planned: sequence, position, and whether
    /// its logits are wanted (`eval_batch`), `[n_batch]` each.
    row_seq: Vec<u32>,
    row_pos: Vec<u32>,
    row_want: Vec<bool>,
    /// Per sequence (`[n_seq]`): its entries in the batch being checked or planned,
    /// then its length after the forward pass.
    counts: Vec<usize>,
    /// The logits rows the last [`Context::eval_batch`] kept, and for each of its
    /// entries the row (`NONE`: not asked for, or no batch since).
    batch_logits: Vec<f32>,
    batch_rows: Vec<usize>,
    /// The token ids of a batch chunk (`[n_batch]`).
    row_tokens: Vec<u32>,
    x: Vec<f32>,           // (n_batch, d) residual stream
    xb: Vec<f32>,          // (n_batch, d) normalised input of a sub-block
    q: Vec<f32>,           // (n_batch, q_dim)
    k: Vec<f32>,           // (n_batch, kv_dim)
    v: Vec<f32>,           // (n_batch, kv_dim)
    att: Vec<f32>,         // (n_batch, q_dim) attention output before the projection
    proj: Vec<f32>,        // (n_batch, d) output of a projection, added to x
    hb: Vec<f32>,          // (n_batch, d_ff)
    hb2: Vec<f32>,         // (n_batch, d_ff) SwiGLU's up branch
    scores: Vec<f32>,      // (n_heads, n_ctx) attention weights, one row per head
    attn_blocks: Vec<f32>, // (n_heads, attend_scratch_len) blocked prompt attention
    logits: Vec<f32>,      // (n_seq, vocab) of each sequence's last token
    freqs: Vec<f32>,       // (tables, head_dim/2) RoPE inverse frequencies
    rope_cs: Vec<f32>,     // (tables, n_batch, head_dim) cos/sin of each new position
}

impl Context {
    /// Creates a context with its scratch and an empty KV cache (which grows as
    /// tokens are evaluated); fails cleanly when memory is short, the sizes are out
    /// of range or the model cannot use the cache type.
    pub fn new(model: Arc<Model>, params: &ContextParams) -> Result<Context, Error> {
        let o = &model.opts;
        let s = params.sizes(o)?;
        #[cfg(feature = "std")]
        check_available(
            s.n_ctx,
            s.bytes()
                .ok_or_else(|| Error::Invalid("context size overflows".into()))?,
        )?;
        let freqs = rope_freq_tables(&model);
        debug_assert_eq!(freqs.len(), s.freqs);
        let mut seqs = Vec::new();
        seqs.try_reserve_exact(s.n_seq)
            .map_err(|_| Error::NoMemory {
                what: "the sequences".into(),
                needed: s.n_seq as u64 * 64,
                available: None,
            })?;
        for _ in 0..s.n_seq {
            seqs.push(Seq {
                tokens: Vec::new(),
                cache: KvCache::new(params.cache_type, o, s.seq_ctx)?,
                has_logits: false,
            });
        }
        Ok(Context {
            cpu: {
                let mut cpu = Cpu::new(params.threads.max(1));
                if params.f16_exact {
                    cpu.set_f16_exact(true);
                }
                cpu
            },
            n_ctx: s.seq_ctx,
            n_batch: s.n_batch,
            seqs,
            row_seq: alloc::vec![0; s.n_batch],
            row_pos: alloc::vec![0; s.n_batch],
            row_want: alloc::vec![false; s.n_batch],
            counts: alloc::vec![0; s.n_seq],
            batch_logits: Vec::new(),
            batch_rows: Vec::new(),
            row_tokens: alloc::vec![0; s.n_batch],
            x: buffer(s.rows_d, "activations")?,
            xb: buffer(s.rows_d, "activations")?,
            q: buffer(s.rows_q, "activations")?,
            k: buffer(s.rows_kv, "activations")?,
            v: buffer(s.rows_kv, "activations")?,
            att: buffer(s.rows_q, "activations")?,
            proj: buffer(s.rows_d, "activations")?,
            hb: buffer(s.rows_ff, "activations")?,
            hb2: buffer(s.rows_ff2, "activations")?,
            scores: buffer(s.scores, "attention scores")?,
            attn_blocks: buffer(s.attn_blocks, "attention scratch")?,
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

    /// Tokens one sequence holds: the context length, divided among the sequences
    /// when there are several.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Sequences the context holds ([`ContextParams::n_seq`]).
    pub fn n_seq(&self) -> usize {
        self.seqs.len()
    }

    /// Sequence 0's KV cache (its type, and what it holds allocated now); every
    /// sequence's cache has the same type and size limit.
    pub fn kv_cache(&self) -> &KvCache {
        &self.seqs[0].cache
    }

    /// Bytes the KV caches of every sequence hold allocated now.
    pub fn kv_bytes(&self) -> u64 {
        self.seqs.iter().map(|s| s.cache.bytes()).sum()
    }

    /// Tokens in sequence 0's cache.
    pub fn tokens(&self) -> &[u32] {
        &self.seqs[0].tokens
    }

    /// Logits of sequence 0's last token evaluated (`[vocab]`).
    pub fn logits(&self) -> &[f32] {
        &self.logits[..self.model.opts.vocab_size]
    }

    /// Empties the KV cache of every sequence.
    pub fn reset(&mut self) {
        for s in &mut self.seqs {
            s.tokens.clear();
            s.has_logits = false;
        }
    }

    /// Keeps the first `n` tokens of sequence 0 (a shared prompt prefix) and drops the rest.
    pub fn truncate(&mut self, n: usize) {
        let s = &mut self.seqs[0];
        if n < s.tokens.len() {
            s.tokens.truncate(n);
            s.has_logits = false;
        }
    }

    /// Tokens in the cache of sequence `seq`.
    ///
    /// # Errors
    /// [`Error::Invalid`] when `seq` is not below [`Context::n_seq`].
    pub fn seq_tokens(&self, seq: usize) -> Result<&[u32], Error> {
        Ok(&self.seqs[self.seq_index(seq)?].tokens)
    }

    /// Logits of the last token of sequence `seq` when they were computed (by
    /// [`Context::eval`] and the rest for sequence 0, or by [`Context::eval_batch`] for
    /// an entry that asked for them and was its sequence's last), else `None`.
    ///
    /// # Errors
    /// [`Error::Invalid`] when `seq` is not below [`Context::n_seq`].
    pub fn seq_logits(&self, seq: usize) -> Result<Option<&[f32]>, Error> {
        let i = self.seq_index(seq)?;
        let vocab = self.model.opts.vocab_size;
        Ok(self.seqs[i]
            .has_logits
            .then(|| &self.logits[i * vocab..(i + 1) * vocab]))
    }

    /// Keeps the first `n` tokens of sequence `seq` and drops the rest (`n` at or
    /// above its length: nothing changes).
    ///
    /// # Errors
    /// [`Error::Invalid`] when `seq` is not below [`Context::n_seq`].
    pub fn seq_truncate(&mut self, seq: usize, n: usize) -> Result<(), Error> {
        let i = self.seq_index(seq)?;
        let s = &mut self.seqs[i];
        if n < s.tokens.len() {
            s.tokens.truncate(n);
            s.has_logits = false;
        }
        Ok(())
    }

    /// Empties sequence `seq` ([`Context::seq_truncate`] to 0).
    ///
    /// # Errors
    /// As [`Context::seq_truncate`].
    pub fn seq_remove(&mut self, seq: usize) -> Result<(), Error> {
        self.seq_truncate(seq, 0)
    }

    /// Makes sequence `dst` a copy of sequence `src`: its tokens, its cache rows and
    /// its last logits (so `dst` can be sampled at once), replacing what `dst` held.
    /// A shared prompt is evaluated once and copied to each sequence that continues
    /// it. `src == dst` changes nothing.
    ///
    /// # Errors
    /// [`Error::Invalid`] when a sequence is not below [`Context::n_seq`];
    /// [`Error::NoMemory`] when `dst`'s cache cannot grow (`dst` is then unchanged).
    pub fn seq_copy(&mut self, src: usize, dst: usize) -> Result<(), Error> {
        let (si, di) = (self.seq_index(src)?, self.seq_index(dst)?);
        if si == di {
            return Ok(());
        }
        let (from, to) = if si < di {
            let (a, b) = self.seqs.split_at_mut(di);
            (&a[si], &mut b[0])
        } else {
            let (a, b) = self.seqs.split_at_mut(si);
            (&b[0], &mut a[di])
        };
        let n = from.tokens.len();
        to.tokens
            .try_reserve(n.saturating_sub(to.tokens.len()))
            .map_err(|_| Error::NoMemory {
                what: "the tokens of a sequence".into(),
                needed: n as u64 * 4,
                available: None,
            })?;
        to.cache.copy_prefix(&from.cache, n)?;
        to.tokens.clear();
        to.tokens.extend_from_slice(&from.tokens);
        to.has_logits = from.has_logits;
        let vocab = self.model.opts.vocab_size;
        self.logits
            .copy_within(si * vocab..(si + 1) * vocab, di * vocab);
        Ok(())
    }

    fn seq_index(&self, seq: usize) -> Result<usize, Error> {
        if seq < self.seqs.len() {
            Ok(seq)
        } else {
            Err(Error::Invalid(format!(
                "sequence {seq} is out of range (the context holds {})",
                self.seqs.len()
            )))
        }
    }

    /// Runs `tokens` after those already in sequence 0's cache; the logits of the
    /// last one are then in [`Context::logits`].
    pub fn eval(&mut self, tokens: &[u32]) -> Result<&[f32], Error> {
        self.check(tokens)?;
        self.batch_rows.clear();
        for chunk in tokens.chunks(self.n_batch) {
            self.plan_seq0(chunk.len());
            self.forward(chunk, Rows::Last, &|| false)?;
        }
        Ok(self.logits())
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
        self.batch_rows.clear();
        for chunk in tokens.chunks(self.n_batch) {
            self.plan_seq0(chunk.len());
            if !self.forward(chunk, Rows::Last, cancelled)? {
                return Ok(None);
            }
        }
        Ok(Some(self.logits()))
    }

    /// Runs `tokens` and writes the logits of every one of them into `out`
    /// (`[tokens.len(), vocab]`, resized), as perplexity needs.
    pub fn eval_all(&mut self, tokens: &[u32], out: &mut Vec<f32>) -> Result<(), Error> {
        self.eval_all_until(tokens, out, &|| false).map(|_| ())
    }

    /// [`Context::eval_all`] that stops early, with `Ok(false)`, when `cancelled()`
    /// returns `true` (asked as in [`Context::eval_until`]); `out` then holds the rows
    /// of the batches that finished, zeros after them.
    pub fn eval_all_until(
        &mut self,
        tokens: &[u32],
        out: &mut Vec<f32>,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<bool, Error> {
        let vocab = self.model.opts.vocab_size;
        self.eval_rows(tokens, out, vocab, |r| Rows::Logits(r), cancelled)
    }

    /// Runs `tokens` and writes the hidden state of every one of them after the
    /// final norm (the classifier's input, what sentence embeddings pool) into `out`
    /// (`[tokens.len(), d_model]`, resized). The logits of the last token are
    /// computed too, as after [`Context::eval`]. Stops early, with `Ok(false)`, when
    /// `cancelled()` returns `true` (as [`Context::eval_all_until`]).
    pub fn hidden_until(
        &mut self,
        tokens: &[u32],
        out: &mut Vec<f32>,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<bool, Error> {
        let d = self.model.opts.d_model;
        self.eval_rows(tokens, out, d, |r| Rows::Hidden(r), cancelled)
    }

    /// Evaluates the tokens of several sequences in one pass (in chunks of
    /// `n_batch` entries): each entry goes after the tokens of its sequence (entries
    /// of one sequence in order), every weight matrix is read once for the whole
    /// chunk, and each row attends over its own sequence only. The logits of the
    /// entries that ask for them are then in [`Context::batch_logits`], and each
    /// sequence's last ones in [`Context::seq_logits`].
    ///
    /// # Errors
    /// Before anything changes: [`Error::EmptyPrompt`] for an empty batch,
    /// [`Error::Invalid`] for a sequence out of range, [`Error::BadToken`],
    /// [`Error::ContextFull`] when a sequence's tokens would not fit in its
    /// [`Context::n_ctx`], [`Error::NoMemory`] when the wanted logits do not fit.
    pub fn eval_batch(&mut self, batch: &[BatchEntry]) -> Result<(), Error> {
        self.eval_batch_until(batch, &|| false).map(|_| ())
    }

    /// [`Context::eval_batch`] that stops early, with `Ok(false)`, when `cancelled()`
    /// returns `true` (asked before every layer): the caches then hold the chunks
    /// that finished, and [`Context::batch_logits`] gives nothing.
    pub fn eval_batch_until(
        &mut self,
        batch: &[BatchEntry],
        cancelled: &dyn Fn() -> bool,
    ) -> Result<bool, Error> {
        self.check_batch(batch)?;
        let vocab = self.model.opts.vocab_size;
        let wanted = batch.iter().filter(|e| e.logits).count();
        let mut out = core::mem::take(&mut self.batch_logits);
        out.clear();
        let oom = |n: usize| Error::NoMemory {
            what: format!("the logits of {n} batch entries"),
            needed: (n as u64).saturating_mul(vocab as u64 * 4),
            available: None,
        };
        out.try_reserve_exact(wanted.saturating_mul(vocab))
            .map_err(|_| oom(wanted))?;
        out.resize(wanted * vocab, 0.0);
        self.batch_rows.clear();
        self.batch_rows
            .try_reserve(batch.len())
            .map_err(|_| oom(batch.len()))?;
        let mut row = 0;
        for chunk in batch.chunks(self.n_batch) {
            let m = chunk.iter().filter(|e| e.logits).count();
            for (i, e) in chunk.iter().enumerate() {
                self.row_seq[i] = e.seq as u32;
                self.row_want[i] = e.logits;
            }
            self.plan_positions(chunk.len());
            self.tokens_of(chunk);
            let tokens = core::mem::take(&mut self.row_tokens);
            let done = self.forward(
                &tokens[..chunk.len()],
                Rows::Batch(&mut out[row * vocab..(row + m) * vocab]),
                cancelled,
            );
            self.row_tokens = tokens;
            if !done? {
                self.batch_rows.clear();
                self.batch_logits = out;
                return Ok(false);
            }
            for e in chunk {
                self.batch_rows.push(if e.logits { row } else { NONE });
                row += e.logits as usize;
            }
        }
        self.batch_logits = out;
        Ok(true)
    }

    /// Logits of entry `i` of the last [`Context::eval_batch`] when it asked for
    /// them (`[vocab]`); `None` otherwise, or when another evaluation came since.
    pub fn batch_logits(&self, i: usize) -> Option<&[f32]> {
        let vocab = self.model.opts.vocab_size;
        match self.batch_rows.get(i) {
            Some(&r) if r != NONE => Some(&self.batch_logits[r * vocab..(r + 1) * vocab]),
            _ => None,
        }
    }

    /// Changes the number of threads the matrix products use (at least 1; ignored
    /// without `std`). The KV cache and everything evaluated so far are kept.
    pub fn set_threads(&mut self, threads: usize) {
        if threads.max(1) != self.cpu.threads() {
            let exact = self.cpu.f16_exact();
            self.cpu = Cpu::new(threads.max(1));
            self.cpu.set_f16_exact(exact);
        }
    }

    /// Threads the matrix products use.
    pub fn threads(&self) -> usize {
        self.cpu.threads()
    }

    /// Runs `tokens` in chunks, writing `width` floats per token into `out`.
    fn eval_rows(
        &mut self,
        tokens: &[u32],
        out: &mut Vec<f32>,
        width: usize,
        kind: fn(&mut [f32]) -> Rows<'_>,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<bool, Error> {
        self.check(tokens)?;
        self.batch_rows.clear();
        out.clear();
        out.resize(tokens.len() * width, 0.0);
        let mut done = 0;
        for chunk in tokens.chunks(self.n_batch) {
            let dst = &mut out[done * width..(done + chunk.len()) * width];
            self.plan_seq0(chunk.len());
            if !self.forward(chunk, kind(dst), cancelled)? {
                return Ok(false);
            }
            done += chunk.len();
        }
        Ok(true)
    }

    /// Plans `n` rows of sequence 0 after its tokens (the single-stream API).
    fn plan_seq0(&mut self, n: usize) {
        self.row_seq[..n].fill(0);
        self.row_want[..n].fill(false);
        self.plan_positions(n);
    }

    /// Fills the positions of rows `0..n` from their sequences (`row_seq`): each
    /// row goes after its sequence's tokens and the rows of it before.
    fn plan_positions(&mut self, n: usize) {
        self.counts.fill(0);
        for i in 0..n {
            let s = self.row_seq[i] as usize;
            self.row_pos[i] = (self.seqs[s].tokens.len() + self.counts[s]) as u32;
            self.counts[s] += 1;
        }
    }

    /// Copies the chunk's token ids into `row_tokens`.
    fn tokens_of(&mut self, chunk: &[BatchEntry]) {
        for (t, e) in self.row_tokens.iter_mut().zip(chunk) {
            *t = e.token;
        }
    }

    /// Replaces the state with a checked saved one (`state.rs`): `tokens`, the
    /// last logits as little-endian f32 bytes (empty when there are no tokens) and
    /// the cache rows, `per` bytes for each of every layer's keys and values. The
    /// state is sequence 0's; the other sequences are emptied.
    #[cfg(feature = "std")]
    pub(crate) fn restore(
        &mut self,
        tokens: &[u32],
        logits: &[u8],
        rows: &[u8],
        per: usize,
    ) -> Result<(), Error> {
        let n = tokens.len();
        let cache = &mut self.seqs[0].cache;
        cache.reserve(n)?;
        for l in 0..self.model.opts.n_layers {
            for (i, values) in [(2 * l, false), (2 * l + 1, true)] {
                cache.get_rows(l, values, n, &rows[i * per..(i + 1) * per]);
            }
        }
        self.reset();
        self.batch_rows.clear();
        self.seqs[0].tokens.extend_from_slice(tokens);
        self.seqs[0].has_logits = n > 0;
        let vocab = self.model.opts.vocab_size;
        self.logits[..vocab].fill(0.0);
        for (x, b) in self.logits[..vocab].iter_mut().zip(logits.chunks_exact(4)) {
            *x = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        Ok(())
    }

    fn check(&self, tokens: &[u32]) -> Result<(), Error> {
        if tokens.is_empty() {
            return Err(Error::EmptyPrompt);
        }
        let need = self.seqs[0].tokens.len() + tokens.len();
        if need > self.n_ctx {
            return Err(Error::ContextFull(need, self.n_ctx));
        }
        let vocab = self.model.opts.vocab_size;
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::BadToken(bad as u64, vocab));
        }
        Ok(())
    }

    /// [`Context::check`] for a batch: its sequences, its tokens, and room in each
    /// sequence for its entries.
    fn check_batch(&mut self, batch: &[BatchEntry]) -> Result<(), Error> {
        if batch.is_empty() {
            return Err(Error::EmptyPrompt);
        }
        let vocab = self.model.opts.vocab_size;
        self.counts.fill(0);
        for e in batch {
            self.seq_index(e.seq)?;
            if e.token as usize >= vocab {
                return Err(Error::BadToken(e.token as u64, vocab));
            }
            self.counts[e.seq] += 1;
        }
        for (s, &c) in self.seqs.iter().zip(&self.counts) {
            let need = s.tokens.len() + c;
            if need > self.n_ctx {
                return Err(Error::ContextFull(need, self.n_ctx));
            }
        }
        Ok(())
    }

    /// One forward pass over `tokens.len() <= n_batch` new tokens, row `i` of
    /// sequence `row_seq[i]` at position `row_pos[i]` (planned by the caller, after
    /// checking that they fit); `false` (and the tokens not added to the cache) if
    /// `cancelled()` said so before a layer.
    fn forward(
        &mut self,
        tokens: &[u32],
        rows: Rows<'_>,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<bool, Error> {
        let model = self.model.clone();
        let o = &model.opts;
        let (n, d, kv, f, qd) = (tokens.len(), o.d_model, o.kv_dim(), o.d_ff, o.q_dim());
        let (hd, n_heads, n_kv) = (o.head_dim(), o.n_heads, o.n_kv_heads);
        let (row_seq, row_pos) = (&self.row_seq[..n], &self.row_pos[..n]);
        // Each sequence's length after this pass (0: not in it), and room for it.
        let ends = &mut self.counts;
        ends.fill(0);
        for (&s, &p) in row_seq.iter().zip(row_pos) {
            ends[s as usize] = ends[s as usize].max(p as usize + 1);
        }
        for (seq, &end) in self.seqs.iter_mut().zip(ends.iter()) {
            seq.cache.reserve(end)?;
        }
        let ends = &*ends;
        // An f16 cache is read as it is by the one-query attention where the path
        // can; runs that go in blocks (`attend_head`) need f32 rows.
        let f16_ok = self.cpu.vecops().reads_f16() && !has_blocked_run(row_seq, row_pos);
        let norm = |out: &mut [f32], x: &[f32], w: &NormWeights| match o.norm {
            Norm::LayerNorm => ops::layernorm(out, x, &w.w, w.b.as_deref(), o.norm_eps),
            Norm::RmsNorm => ops::rmsnorm(out, x, &w.w, o.norm_eps),
        };

        if o.positions == Positions::Rope {
            let per = self.n_batch * hd;
            // YaRN's attention factor scales the global table (the first) only.
            let yarn = o.arch.rope_yarn.map_or(1.0, |y| y.attn_factor);
            for (t, (cs, freqs)) in self
                .rope_cs
                .chunks_exact_mut(per)
                .zip(self.freqs.chunks(hd / 2))
                .enumerate()
            {
                let scale = if t == 0 { yarn } else { 1.0 };
                for (cs, &p) in cs.chunks_exact_mut(hd).zip(row_pos) {
                    ops::rope_table(cs, freqs, p as usize, scale);
                }
            }
        }

        // Embedding (+ absolute positions).
        for (i, &t) in tokens.iter().enumerate() {
            let row = &mut self.x[i * d..(i + 1) * d];
            model.embed(t, row)?;
            if let Some(scale) = o.arch.embed_scale {
                row.iter_mut().for_each(|v| *v *= scale);
            }
            let pos = row_pos[i] as usize;
            match o.positions {
                Positions::Learned => model.add_pos_emb(pos, row),
                Positions::Sinusoidal => ops::add_sinusoidal(row, pos),
                Positions::Rope => {}
            }
        }

        let (x, xb) = (&mut self.x[..n * d], &mut self.xb[..n * d]);
        let (q, k, v) = (
            &mut self.q[..n * qd],
            &mut self.k[..n * kv],
            &mut self.v[..n * kv],
        );
        let (att, proj) = (&mut self.att[..n * qd], &mut self.proj[..n * d]);
        let cpu = &mut self.cpu;
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
            let rope = o.positions == Positions::Rope;
            if rope || layer.q_norm.is_some() {
                let (sq, sk) = (SharedMut::new(q), SharedMut::new(k));
                // The sliding layers' own table follows the global one.
                let local = o.arch.rope_base_local.is_some() && o.layer_window(l).is_some();
                let rope_cs = &self.rope_cs[local as usize * self.n_batch * hd..];
                for_row_ranges(cpu, n, &|i0, i1| {
                    for i in i0..i1 {
                        // SAFETY: row i of q and of k, written by this part only.
                        let (qi, ki) = unsafe { (sq.slice(i * qd, qd), sk.slice(i * kv, kv)) };
                        if let (Some(qn), Some(kn)) = (&layer.q_norm, &layer.k_norm) {
                            ops::rmsnorm_in_place(qi, qn, o.norm_eps);
                            ops::rmsnorm_in_place(ki, kn, o.norm_eps);
                        }
                        if rope {
                            let cs = &rope_cs[i * hd..(i + 1) * hd];
                            ops::rope(qi, cs);
                            ops::rope(ki, cs);
                        }
                    }
                });
            }
            // Store the new keys and values, each run of consecutive positions of one
            // sequence at once, then make each sequence's layer readable as f32.
            let mut i = 0;
            while i < n {
                let s = row_seq[i];
                let mut j = i + 1;
                while j < n && row_seq[j] == s && row_pos[j] == row_pos[j - 1] + 1 {
                    j += 1;
                }
                let (kr, vr) = (&k[i * kv..j * kv], &v[i * kv..j * kv]);
                self.seqs[s as usize]
                    .cache
                    .write(l, row_pos[i] as usize, kr, vr);
                i = j;
            }
            for (seq, &end) in self.seqs.iter_mut().zip(ends) {
                if end > 0 {
                    seq.cache.prepare(cpu, l, end, f16_ok);
                }
            }
            // Causal attention of each new token over its sequence's cache up to
            // itself, one head per part across the threads.
            let shape = AttnShape {
                d: qd,
                hd,
                n_ctx: self.n_ctx,
                group: n_heads / n_kv,
                scale,
                window: o.layer_window(l).unwrap_or(usize::MAX),
            };
            let out = SharedMut::new(att);
            let scores = SharedMut::new(&mut self.scores);
            let per_head = self.attn_blocks.len() / n_heads;
            let blocks = SharedMut::new(&mut self.attn_blocks);
            let (q, seqs) = (&*q, &self.seqs);
            let view = |s: u32| seqs[s as usize].cache.view(l, f16_ok);
            let vec = cpu.vecops();
            cpu.parallel(n_heads, &|h| {
                // SAFETY: part h takes only row h of `scores` (n_heads × n_ctx) and of
                // `attn_blocks` (n_heads × per_head), which outlive `parallel` (it
                // returns after every part).
                let (sc, blk) = unsafe {
                    (
                        scores.slice(h * shape.n_ctx, shape.n_ctx),
                        blocks.slice(h * per_head, per_head),
                    )
                };
                attend_head(vec, &shape, h, q, row_seq, row_pos, &view, sc, blk, out);
            });
            linear(cpu, &model, &layer.wo, att, n, proj);
            if let Some(post) = &layer.attn_post_norm {
                pnorm(cpu, xb, proj, post);
                proj.copy_from_slice(xb);
            }
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
                (Mlp::GeGlu, Some(g)) => {
                    let gate = &mut self.hb2[..n * f];
                    linear_many(cpu, &model, [g, &layer.up], xb, n, [&mut *gate, &mut *hb]);
                    let sg = SharedMut::new(gate);
                    for_row_ranges(cpu, n, &|i0, i1| {
                        // SAFETY: rows i0..i1 of the gate, as of `hb` above.
                        let gr = unsafe { sg.slice(i0 * f, (i1 - i0) * f) };
                        ops::geglu(hb_rows(i0, i1), gr)
                    });
                }
                (Mlp::SwiGlu | Mlp::GeGlu, None) => {
                    return Err(Error::Invalid("gated MLP without gate weights".into()))
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
            if let Some(post) = &layer.mlp_post_norm {
                pnorm(cpu, xb, proj, post);
                proj.copy_from_slice(xb);
            }
            padd(cpu, x, proj);
        }
        for (&s, &t) in row_seq.iter().zip(tokens) {
            self.seqs[s as usize].tokens.push(t);
        }

        // Final norm and classifier: every row when asked, the wanted rows of a
        // batch, else the last row only.
        let out_w = model.matrix(&model.output);
        let vocab = o.vocab_size;
        let seq0 = &mut self.logits[..vocab];
        match rows {
            Rows::Logits(dst) => {
                norm(xb, x, &model.out_norm);
                cpu.matmul(&out_w, xb, n, dst);
                seq0.copy_from_slice(&dst[(n - 1) * vocab..]);
            }
            Rows::Hidden(dst) => {
                norm(dst, x, &model.out_norm);
                cpu.matmul(&out_w, &dst[(n - 1) * d..], 1, seq0);
            }
            Rows::Last => {
                let last = &x[(n - 1) * d..];
                norm(&mut xb[..d], last, &model.out_norm);
                cpu.matmul(&out_w, &xb[..d], 1, seq0);
            }
            Rows::Batch(dst) => {
                // Gather the wanted rows, then one product over them.
                let want = &self.row_want[..n];
                let mut m = 0;
                for i in (0..n).filter(|&i| want[i]) {
                    proj[m * d..(m + 1) * d].copy_from_slice(&x[i * d..(i + 1) * d]);
                    m += 1;
                }
                if m > 0 {
                    norm(&mut xb[..m * d], &proj[..m * d], &model.out_norm);
                    cpu.matmul(&out_w, &xb[..m * d], m, dst);
                }
                // Each sequence's logits: its last row's, when that row has them.
                let mut r = 0;
                for i in 0..n {
                    let s = row_seq[i] as usize;
                    self.seqs[s].has_logits = want[i];
                    if want[i] {
                        self.logits[s * vocab..(s + 1) * vocab]
                            .copy_from_slice(&dst[r * vocab..(r + 1) * vocab]);
                        r += 1;
                    }
                }
                return Ok(true);
            }
        }
        self.seqs[0].has_logits = true;
        Ok(true)
    }
}

/// What a forward pass writes for its rows besides the last row's logits.
enum Rows<'a> {
    /// Nothing.
    Last,
    /// The logits of every row (`[n, vocab]`).
    Logits(&'a mut [f32]),
    /// The hidden state of every row after the final norm (`[n, d_model]`).
    Hidden(&'a mut [f32]),
    /// The logits of the rows that `row_want` marks (`[wanted, vocab]`), each also
    /// its sequence's when it is that sequence's last row.
    Batch(&'a mut [f32]),
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

/// The sizes attention needs, for one layer.
struct AttnShape {
    /// Row width of `q` and `att`: `q_dim`.
    d: usize,
    hd: usize,
    /// Positions a sequence holds (the scratch `sc` of [`attend_head`]).
    n_ctx: usize,
    group: usize,
    scale: f32,
    /// Keys a query sees, itself included (`usize::MAX`: all before it).
    window: usize,
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

/// Rows in a run (one sequence, consecutive positions) from which a head's queries
/// are attended in blocks (`kernels::attend`) rather than one by one.
const BLOCKED_RUN: usize = 8;

/// Whether some run of rows (one sequence, consecutive positions) is at least
/// [`BLOCKED_RUN`] long, so that `attend_head` takes it in blocks.
fn has_blocked_run(seq: &[u32], pos: &[u32]) -> bool {
    let mut run = 0;
    for i in 0..seq.len() {
        run = if i > 0 && seq[i] == seq[i - 1] && pos[i] == pos[i - 1] + 1 {
            run + 1
        } else {
            1
        };
        if run >= BLOCKED_RUN {
            return true;
        }
    }
    false
}

/// Query head `h` of each new row `i` attends over the cached keys and values of
/// its KV head in its sequence `seq[i]` (rows of `view(seq[i])`, position-major) up
/// to its own position `pos[i]`; writes head h's columns of `att` (`[n, d]`) and
/// nothing else of it. Runs of at least [`BLOCKED_RUN`] rows of one sequence at
/// consecutive positions (a prompt) go in blocks, with `blk` as scratch; other rows
/// one at a time, with `sc` (`n_ctx` floats).
#[allow(clippy::too_many_arguments)]
fn attend_head<'a>(
    vec: VecOps,
    s: &AttnShape,
    h: usize,
    q: &[f32],
    seq: &[u32],
    pos: &[u32],
    view: &(dyn Fn(u32) -> LayerKv<'a> + Sync),
    sc: &mut [f32],
    blk: &mut [f32],
    att: SharedMut<f32>,
) {
    let hd = s.hd;
    let kvh = h / s.group;
    let mut i = 0;
    while i < seq.len() {
        let mut j = i + 1;
        while j < seq.len() && seq[j] == seq[i] && pos[j] == pos[j - 1] + 1 {
            j += 1;
        }
        let kvs = view(seq[i]);
        let head = kvh * kvs.stride..(kvh + 1) * kvs.stride;
        // The f16 cache as it is, or f32 rows (`KvCache::prepare`); runs that go in
        // blocks always have f32 rows (`has_blocked_run`).
        let f16 = !kvs.k16.is_empty();
        if !f16 && j - i >= BLOCKED_RUN {
            let run = AttendRun {
                q: &q[i * s.d + h * hd..],
                q_stride: s.d,
                n: j - i,
                hd,
                keys: &kvs.k[head.clone()],
                vals: &kvs.v[head],
                p0: pos[i] as usize,
                window: s.window,
                scale: s.scale,
            };
            vec.attend_run(&run, blk, &mut |r, row| {
                // SAFETY: head h's columns of row i + r: no other part writes them,
                // and `att` outlives the call.
                let out = unsafe { att.slice((i + r) * s.d + h * hd, hd) };
                out.copy_from_slice(row);
            });
            i = j;
            continue;
        }
        for (r, &p) in pos.iter().enumerate().take(j).skip(i) {
            let p = p as usize;
            let qh = &q[r * s.d + h * hd..r * s.d + (h + 1) * hd];
            // SAFETY: head h's columns of row r: no other part writes them, and `att`
            // outlives the call.
            let out = unsafe { att.slice(r * s.d + h * hd, hd) };
            let lo = (p + 1).saturating_sub(s.window);
            let rows = head.start + lo * hd..head.end;
            let sc = &mut sc[..=p - lo];
            if f16 {
                let (k, v) = (&kvs.k16[rows.clone()], &kvs.v16[rows]);
                vec.attend_f16(qh, k, v, s.scale, sc, out);
            } else {
                vec.attend(qh, &kvs.k[rows.clone()], &kvs.v[rows], s.scale, sc, out);
            }
        }
        i = j;
    }
}
