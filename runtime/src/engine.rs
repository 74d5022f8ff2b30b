//! One sequence's forward pass on the device chosen: the CPU [`Context`], or (feature
//! `cuda`) the GPU's [`crate::cuda::GpuDecoder`]. The front ends that let a user pick
//! the device (`llm-run --device`, the C ABI's `llmrt_context_params::device`) hold
//! an [`Engine`]: generation runs over it as a [`Decoder`], and the calls both devices
//! serve (all rows' logits, truncation, the last logits) are here once.

use crate::generate::Decoder;
use crate::{Context, Error, Model};
use alloc::sync::Arc;
use alloc::vec::Vec;

/// Where a sequence runs (one per context: the variants' sizes do not matter).
#[allow(clippy::large_enum_variant)]
pub enum Engine {
    /// The CPU context (sequence 0 for the calls here).
    Cpu(Context),
    /// A GPU context (one sequence).
    #[cfg(feature = "cuda")]
    Gpu(crate::cuda::GpuDecoder),
}

impl Engine {
    /// `model` on the first CUDA GPU with a cache of `n_ctx` positions and prompt
    /// batches of `n_batch`, or the one-line reason it cannot be had (no driver or
    /// GPU, no NVRTC, a model the GPU cannot hold).
    #[cfg(feature = "cuda")]
    pub fn open_gpu(model: &Arc<Model>, n_ctx: usize, n_batch: usize) -> Result<Engine, Error> {
        let gpu = crate::cuda::Gpu::cuda(0)?;
        crate::cuda::GpuDecoder::open(gpu, model.clone(), n_ctx, n_batch).map(Engine::Gpu)
    }

    /// Without the `cuda` feature there is no GPU to open.
    #[cfg(not(feature = "cuda"))]
    pub fn open_gpu(_: &Arc<Model>, _: usize, _: usize) -> Result<Engine, Error> {
        Err(Error::Device("built without the cuda feature".into()))
    }

    /// Whether this is a GPU context.
    pub fn is_gpu(&self) -> bool {
        !matches!(self, Engine::Cpu(_))
    }

    /// The CPU context, when this is one.
    pub fn cpu(&self) -> Option<&Context> {
        match self {
            Engine::Cpu(c) => Some(c),
            #[cfg(feature = "cuda")]
            Engine::Gpu(_) => None,
        }
    }

    /// [`Engine::cpu`], mutable.
    pub fn cpu_mut(&mut self) -> Option<&mut Context> {
        match self {
            Engine::Cpu(c) => Some(c),
            #[cfg(feature = "cuda")]
            Engine::Gpu(_) => None,
        }
    }

    /// The generation view of either device.
    pub fn decoder(&self) -> &dyn Decoder {
        match self {
            Engine::Cpu(c) => c,
            #[cfg(feature = "cuda")]
            Engine::Gpu(g) => g,
        }
    }

    /// [`Engine::decoder`], mutable.
    pub fn decoder_mut(&mut self) -> &mut dyn Decoder {
        match self {
            Engine::Cpu(c) => c,
            #[cfg(feature = "cuda")]
            Engine::Gpu(g) => g,
        }
    }

    /// The last logits (`[vocab]`; empty on a GPU context before its first
    /// evaluation).
    pub fn logits(&self) -> &[f32] {
        match self {
            Engine::Cpu(c) => c.logits(),
            #[cfg(feature = "cuda")]
            Engine::Gpu(g) => g.logits(),
        }
    }

    /// Keeps the first `n` tokens (a GPU context evaluates them again).
    pub fn truncate(&mut self, n: usize) -> Result<(), Error> {
        match self {
            Engine::Cpu(c) => {
                c.truncate(n);
                Ok(())
            }
            #[cfg(feature = "cuda")]
            Engine::Gpu(g) => g.truncate(n),
        }
    }

    /// Appends `tokens` and writes every one's logits into `out` (perplexity).
    pub fn eval_all(&mut self, tokens: &[u32], out: &mut Vec<f32>) -> Result<(), Error> {
        self.eval_all_until(tokens, out, &|| false).map(|_| ())
    }

    /// [`Engine::eval_all`], stopped early (`Ok(false)`) by `cancelled`.
    pub fn eval_all_until(
        &mut self,
        tokens: &[u32],
        out: &mut Vec<f32>,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<bool, Error> {
        match self {
            Engine::Cpu(c) => c.eval_all_until(tokens, out, cancelled),
            #[cfg(feature = "cuda")]
            Engine::Gpu(g) => g.eval_all_until(tokens, out, cancelled),
        }
    }
}

/// Generation (`generate`, `generate_until`) over either device.
impl Decoder for Engine {
    fn model(&self) -> &Arc<Model> {
        self.decoder().model()
    }

    fn n_ctx(&self) -> usize {
        self.decoder().n_ctx()
    }

    fn tokens(&self) -> &[u32] {
        self.decoder().tokens()
    }

    fn reset(&mut self) {
        self.decoder_mut().reset();
    }

    fn eval(&mut self, tokens: &[u32]) -> Result<&[f32], Error> {
        self.decoder_mut().eval(tokens)
    }

    fn eval_until(
        &mut self,
        tokens: &[u32],
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Option<&[f32]>, Error> {
        self.decoder_mut().eval_until(tokens, cancelled)
    }
}
