//! `--device auto|cpu|cuda` (generation, `perplexity`, `bench`): where the forward
//! pass runs. `cpu` is the CPU [`Context`]; `cuda` the first CUDA GPU
//! (`llmrt::cuda::GpuDecoder`, an f32 KV cache on the device), refused in one line
//! when there is no GPU or driver, no NVRTC, or when the model's storage types have no
//! GPU kernels or it does not fit; `auto` (the default) is the GPU when it can be used
//! and the CPU otherwise, saying which and why on stderr. Generation goes through
//! the same `llmrt::generate` on either ([`Decoder`]), so the sampler chain, stop
//! strings, grammar and streaming are the same.

use clap::ValueEnum;
use llmrt::generate::Decoder;
use llmrt::{Context, ContextParams, Error, Model};
use std::sync::Arc;

/// The `--device` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Device {
    /// The first CUDA GPU when it can run the model, else the CPU.
    Auto,
    /// The CPU.
    Cpu,
    /// The first CUDA GPU (an error without one).
    Cuda,
}

/// One sequence on the device chosen (one per run: the variants' sizes do not matter).
#[allow(clippy::large_enum_variant)]
pub enum Engine {
    /// The CPU context.
    Cpu(Context),
    /// A GPU context.
    #[cfg(feature = "cuda")]
    Gpu(llmrt::cuda::GpuDecoder),
}

/// The GPU decoder of `model` on the first CUDA GPU, or the one-line reason it cannot
/// be had.
#[cfg(feature = "cuda")]
fn open_gpu(model: &Arc<Model>, params: &ContextParams) -> Result<Engine, String> {
    use llmrt::cuda::{Gpu, GpuDecoder};
    let gpu = Gpu::cuda(0).map_err(|e| e.to_string())?;
    GpuDecoder::open(gpu, model.clone(), params.n_ctx, params.n_batch)
        .map(Engine::Gpu)
        .map_err(|e| e.to_string())
}

#[cfg(not(feature = "cuda"))]
fn open_gpu(_: &Arc<Model>, _: &ContextParams) -> Result<Engine, String> {
    Err("this llm-run was built without the cuda feature".into())
}

impl Engine {
    /// The context of `model` on `device` (`params` sizes it; the GPU keeps an f32
    /// cache whatever `cache_type` says, and ignores `threads` and `f16_exact`), and,
    /// when `auto` fell back to the CPU, why the GPU could not be used.
    pub fn select(
        device: Device,
        model: &Arc<Model>,
        params: &ContextParams,
    ) -> Result<(Engine, Option<String>), String> {
        let cpu = || {
            Context::new(model.clone(), params)
                .map(Engine::Cpu)
                .map_err(|e| e.to_string())
        };
        match device {
            Device::Cpu => Ok((cpu()?, None)),
            Device::Cuda => Ok((
                open_gpu(model, params).map_err(|e| format!("--device cuda: {e}"))?,
                None,
            )),
            Device::Auto => match open_gpu(model, params) {
                Ok(e) => Ok((e, None)),
                Err(why) => Ok((cpu()?, Some(why))),
            },
        }
    }

    /// [`Engine::select`], with the words that say where it runs for the start-up
    /// line: `cpu, 8 threads`, `cpu, 8 threads (auto: <why not the GPU>)` or
    /// `cuda: <GPU name>, f32 KV cache`.
    pub fn open(
        device: Device,
        model: &Arc<Model>,
        params: &ContextParams,
    ) -> Result<(Engine, String), String> {
        let (e, why) = Engine::select(device, model, params)?;
        let mut on = e.describe();
        if let Some(why) = why {
            on.push_str(&format!(" (auto: {why})"));
        }
        Ok((e, on))
    }

    /// Where it runs: `cpu, 8 threads` or `cuda: <GPU name>, f32 KV cache`.
    pub fn describe(&self) -> String {
        match self {
            Engine::Cpu(c) => format!("cpu, {} threads", c.threads()),
            #[cfg(feature = "cuda")]
            Engine::Gpu(g) => format!("cuda: {}, f32 KV cache", g.gpu().name()),
        }
    }

    /// Appends `tokens` and writes every one's logits into `out` (perplexity).
    pub fn eval_all(&mut self, tokens: &[u32], out: &mut Vec<f32>) -> Result<(), Error> {
        match self {
            Engine::Cpu(c) => c.eval_all(tokens, out),
            #[cfg(feature = "cuda")]
            Engine::Gpu(g) => g.eval_all(tokens, out),
        }
    }

    /// The generation trait object behind it.
    fn decoder(&self) -> &dyn Decoder {
        match self {
            Engine::Cpu(c) => c,
            #[cfg(feature = "cuda")]
            Engine::Gpu(g) => g,
        }
    }

    /// [`Engine::decoder`], mutable.
    fn decoder_mut(&mut self) -> &mut dyn Decoder {
        match self {
            Engine::Cpu(c) => c,
            #[cfg(feature = "cuda")]
            Engine::Gpu(g) => g,
        }
    }
}

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
