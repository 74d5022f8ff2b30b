//! [`GpuContext`] as a [`Decoder`], so that [`crate::generate()`] (sampler chain, stop
//! strings, grammar, streaming) runs on the GPU exactly as on the CPU: the tokens the
//! device cache holds are kept on the host (the sampler's penalties read them), the
//! last logits too, and inputs are checked before anything runs, with the CPU
//! [`Context`](crate::Context)'s errors ([`Error::EmptyPrompt`], [`Error::ContextFull`],
//! [`Error::BadToken`]); a CUDA failure is [`Error::Device`] (or [`Error::NoMemory`]
//! when the model does not fit the device).
//!
//! The GPU pass has no per-layer cancellation: [`Decoder::eval_until`] asks between
//! chunks of [`CANCEL_CHUNK`] prompt tokens, and generation between tokens.

use super::{embed, matmul, GpuContext};
use crate::error::Error;
use crate::generate::Decoder;
use crate::model::{Model, WeightRef};
use alloc::sync::Arc;
use llmrt_cuda::Gpu;
use std::format;
use std::string::String;
use std::vec::Vec;

/// Prompt tokens evaluated between two looks at the cancel flag in
/// [`Decoder::eval_until`] and [`GpuDecoder::eval_all_until`].
pub const CANCEL_CHUNK: usize = 256;

/// Checks that the GPU kernels cover every matrix of `model` (matrix products and the
/// embedding rows); the error, [`Error::Device`], names the first storage type they
/// lack and its tensor. [`GpuContext::new`] refuses such a model too, but only when it
/// reaches the matrix, after uploading the ones before.
pub fn check_model(model: &Model) -> Result<(), Error> {
    let unsupported = |w: &WeightRef, what: String, embedding: bool| {
        let covered = if embedding {
            embed::kernel(w.dtype).is_some()
        } else {
            matmul::kernel(w.dtype).is_some()
        };
        if covered {
            Ok(())
        } else {
            Err(Error::Device(format!(
                "the GPU kernels do not cover {} weights yet ({what})",
                w.dtype.name()
            )))
        }
    };
    unsupported(&model.tok_emb, "the token embedding".into(), true)?;
    unsupported(&model.output, "the output projection".into(), false)?;
    for (i, l) in model.layers.iter().enumerate() {
        let mut mats = Vec::from([
            ("wq", &l.wq),
            ("wk", &l.wk),
            ("wv", &l.wv),
            ("wo", &l.wo),
            ("up", &l.up),
            ("down", &l.down),
        ]);
        if let Some(g) = &l.gate {
            mats.push(("gate", g));
        }
        for (name, lin) in mats {
            unsupported(&lin.w, format!("layer {i} {name}"), false)?;
        }
    }
    Ok(())
}

/// One sequence on a GPU: a [`GpuContext`] (which holds the last logits) and, on the
/// host, the tokens its cache holds. Implements [`Decoder`].
pub struct GpuDecoder {
    ctx: GpuContext,
    tokens: Vec<u32>,
}

impl core::fmt::Debug for GpuDecoder {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "GpuDecoder({:?})", self.ctx)
    }
}

impl GpuDecoder {
    /// Wraps `ctx`, emptied first (what it held is unknown here).
    pub fn new(mut ctx: GpuContext) -> GpuDecoder {
        ctx.reset();
        GpuDecoder {
            ctx,
            tokens: Vec::new(),
        }
    }

    /// Uploads `model` to `gpu` ([`GpuContext::new`]) with a cache of `n_ctx`
    /// positions (0: the model's `max_len`, as [`crate::ContextParams::n_ctx`]),
    /// after [`check_model`], and evaluates one token (then forgets it), so that every
    /// kernel of the pass is compiled (or loaded from the disk cache) here: a missing
    /// NVRTC or a kernel that fails shows now rather than at the first prompt. A
    /// model and cache too large for the device's free memory is [`Error::NoMemory`]
    /// (refused before allocating); any other refusal or failure [`Error::Device`].
    pub fn open(
        gpu: Gpu,
        model: Arc<Model>,
        n_ctx: usize,
        n_batch: usize,
    ) -> Result<GpuDecoder, Error> {
        check_model(&model)?;
        let n_ctx = if n_ctx == 0 {
            model.opts.max_len
        } else {
            n_ctx
        };
        let mut d = GpuDecoder::new(GpuContext::new(gpu, model, n_ctx, n_batch)?);
        Decoder::eval(&mut d, &[0])?;
        Decoder::reset(&mut d);
        Ok(d)
    }

    /// The GPU context.
    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// Gives the GPU context back.
    pub fn into_context(self) -> GpuContext {
        self.ctx
    }

    /// The device.
    pub fn gpu(&self) -> &Gpu {
        self.ctx.gpu()
    }

    /// The logits of the last token evaluated (`[vocab]`; empty before the first
    /// evaluation since creation or [`Decoder::reset`]).
    pub fn logits(&self) -> &[f32] {
        self.ctx.logits()
    }

    /// Keeps the first `n` tokens and drops the rest (`n` at or above their number:
    /// nothing changes). The GPU cache cannot be cut in place, so the kept tokens are
    /// evaluated again (a prompt's work); the logits are then the `n`-th token's.
    pub fn truncate(&mut self, n: usize) -> Result<(), Error> {
        if n >= self.tokens.len() {
            return Ok(());
        }
        let keep: Vec<u32> = self.tokens[..n].to_vec();
        Decoder::reset(self);
        if !keep.is_empty() {
            Decoder::eval(self, &keep)?;
        }
        Ok(())
    }

    /// Appends `tokens` and writes the logits of every one of them into `out`
    /// (`[tokens.len(), vocab]`, resized), as [`crate::Context::eval_all`].
    pub fn eval_all(&mut self, tokens: &[u32], out: &mut Vec<f32>) -> Result<(), Error> {
        self.eval_all_until(tokens, out, &|| false).map(|_| ())
    }

    /// [`GpuDecoder::eval_all`] that stops early, with `Ok(false)`, when `cancelled()`
    /// returns `true`, asked before every chunk of [`CANCEL_CHUNK`] tokens; `out` then
    /// holds the rows of the chunks that finished, zeros after them.
    pub fn eval_all_until(
        &mut self,
        tokens: &[u32],
        out: &mut Vec<f32>,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<bool, Error> {
        self.check(tokens)?;
        let vocab = self.ctx.model().opts.vocab_size;
        out.clear();
        out.resize(tokens.len() * vocab, 0.0);
        let mut rows = Vec::new();
        for (i, chunk) in tokens.chunks(CANCEL_CHUNK).enumerate() {
            if cancelled() {
                return Ok(false);
            }
            let before = self.ctx.n_past();
            let r = self.ctx.eval_all(chunk, &mut rows);
            self.sync(chunk, before);
            r?;
            let at = i * CANCEL_CHUNK * vocab;
            out[at..at + rows.len()].copy_from_slice(&rows);
        }
        Ok(true)
    }

    /// Refuses what [`crate::Context`] refuses, with its errors, before anything runs.
    fn check(&self, tokens: &[u32]) -> Result<(), Error> {
        if tokens.is_empty() {
            return Err(Error::EmptyPrompt);
        }
        let need = self.tokens.len() + tokens.len();
        let n_ctx = self.ctx.n_ctx();
        if need > n_ctx {
            return Err(Error::ContextFull(need, n_ctx));
        }
        let vocab = self.ctx.model().opts.vocab_size;
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::BadToken(bad as u64, vocab));
        }
        Ok(())
    }

    /// After an evaluation of `chunk` that started at `before` positions: the host's
    /// tokens follow the device cache, which keeps the batches that finished even
    /// when a later one failed (the context then holds no logits).
    fn sync(&mut self, chunk: &[u32], before: usize) {
        let done = self.ctx.n_past().saturating_sub(before).min(chunk.len());
        self.tokens.extend_from_slice(&chunk[..done]);
    }

    /// Evaluates one chunk; the context keeps its logits.
    fn eval_chunk(&mut self, chunk: &[u32]) -> Result<(), Error> {
        let before = self.ctx.n_past();
        let r = self.ctx.eval(chunk).map(|_| ());
        self.sync(chunk, before);
        Ok(r?)
    }
}

impl Decoder for GpuDecoder {
    fn model(&self) -> &Arc<Model> {
        self.ctx.model()
    }

    fn n_ctx(&self) -> usize {
        self.ctx.n_ctx()
    }

    fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    fn reset(&mut self) {
        self.ctx.reset();
        self.tokens.clear();
    }

    fn eval(&mut self, tokens: &[u32]) -> Result<&[f32], Error> {
        self.check(tokens)?;
        self.eval_chunk(tokens)?;
        Ok(self.ctx.logits())
    }

    fn eval_until(
        &mut self,
        tokens: &[u32],
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Option<&[f32]>, Error> {
        self.check(tokens)?;
        for chunk in tokens.chunks(CANCEL_CHUNK) {
            if cancelled() {
                return Ok(None);
            }
            self.eval_chunk(chunk)?;
        }
        Ok(Some(self.ctx.logits()))
    }
}

/// The first CUDA GPU's name when the GPU path can run here (a driver and a device,
/// and NVRTC with the CUDA headers to compile the kernels), else [`Error::Device`]
/// with the reason. Opens the device to look and keeps nothing.
pub fn probe() -> Result<String, Error> {
    let gpu = Gpu::cuda(0)?;
    if let Some(why) = llmrt_cuda::nvrtc::unavailable() {
        return Err(Error::Device(why));
    }
    Ok(gpu.name())
}
