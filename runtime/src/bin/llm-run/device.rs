//! `--device auto|cpu|cuda` (generation, `perplexity`, `bench`): where the forward
//! pass runs. `cpu` is the CPU [`Context`]; `cuda` the first CUDA GPU
//! (`llmrt::cuda::GpuDecoder`, an f32 KV cache on the device), refused in one line
//! when there is no GPU or driver, no NVRTC, or when the model's storage types have no
//! GPU kernels or it does not fit; `auto` (the default) is the GPU when it can be used
//! and the CPU otherwise, saying which and why on stderr. Generation goes through
//! the same `llmrt::generate` on either (`llmrt::engine::Engine`), so the sampler chain, stop
//! strings, grammar and streaming are the same.

use clap::ValueEnum;
pub use llmrt::engine::Engine;
use llmrt::{Context, ContextParams, Model};
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

/// The GPU engine of `model` on the first CUDA GPU, or the one-line reason it cannot
/// be had.
fn open_gpu(model: &Arc<Model>, params: &ContextParams) -> Result<Engine, String> {
    Engine::open_gpu(model, params.n_ctx, params.n_batch).map_err(|e| e.to_string())
}

/// The context of `model` on `device` (`params` sizes it; the GPU keeps an f32 cache
/// whatever `cache_type` says, and ignores `threads` and `f16_exact`), and, when `auto`
/// fell back to the CPU, why the GPU could not be used.
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

/// [`select`], with the words that say where it runs for the start-up line: `cpu, 8
/// threads`, `cpu, 8 threads (auto: <why not the GPU>)` or `cuda: <GPU name>, f32 KV
/// cache`.
pub fn open(
    device: Device,
    model: &Arc<Model>,
    params: &ContextParams,
) -> Result<(Engine, String), String> {
    let (e, why) = select(device, model, params)?;
    let mut on = describe(&e);
    if let Some(why) = why {
        on.push_str(&format!(" (auto: {why})"));
    }
    Ok((e, on))
}

/// Where it runs: `cpu, 8 threads` or `cuda: <GPU name>, f32 KV cache`.
pub fn describe(e: &Engine) -> String {
    match e {
        Engine::Cpu(c) => format!("cpu, {} threads", c.threads()),
        #[cfg(feature = "cuda")]
        Engine::Gpu(g) => format!("cuda: {}, f32 KV cache", g.gpu().name()),
    }
}
