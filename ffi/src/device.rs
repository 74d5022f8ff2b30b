//! Devices: where a context's forward pass runs (`llmrt_context_params::device`).
//! `LLMRT_DEVICE_CPU` is the runtime's CPU `Context`; `LLMRT_DEVICE_CUDA` the first
//! CUDA GPU (`rt::cuda::GpuDecoder`: one sequence, an f32 KV cache on the device);
//! `LLMRT_DEVICE_AUTO` the GPU when it can serve the context, else the CPU.
//! `llmrt_device_available` says whether a device can be used here, and why not.
//!
//! A GPU context serves the step-by-step calls (eval, logits, sample, accept,
//! truncate, reset), `llmrt_eval_all` and generation; the calls it cannot serve yet
//! (several sequences, state files, embeddings, threads) return
//! `LLMRT_ERR_UNSUPPORTED` with a message naming the call.

use crate::status::{
    guard, llmrt_status, Fail, Res, LLMRT_ERR_DEVICE, LLMRT_ERR_INVALID_ARG, LLMRT_ERR_UNSUPPORTED,
};
use rt::{Context, ContextParams, Model};
use std::sync::Arc;

/// `llmrt_context_params::device`: a CUDA GPU when one can run the model (a driver,
/// NVRTC, GPU kernels for every storage type of the model, enough GPU memory) and
/// the context has one sequence; otherwise the CPU. `llmrt_context_device` tells
/// which.
pub const LLMRT_DEVICE_AUTO: u32 = 0;
/// `llmrt_context_params::device`: the CPU (the default).
pub const LLMRT_DEVICE_CPU: u32 = 1;
/// `llmrt_context_params::device`: the first CUDA GPU; `llmrt_context_new` fails
/// with `LLMRT_ERR_DEVICE` (and the reason) when it cannot be used.
pub const LLMRT_DEVICE_CUDA: u32 = 2;

/// A context's forward pass: the runtime's [`Engine`] (the CPU context or a GPU one),
/// with the C ABI's views of it ([`EngineExt`]).
pub(crate) use rt::engine::Engine;

/// The failure of a call a GPU context does not serve.
fn unsupported(what: &str) -> Fail {
    Fail::new(
        LLMRT_ERR_UNSUPPORTED,
        format!("{what} is not supported on a CUDA context yet (create the context with LLMRT_DEVICE_CPU)"),
    )
}

/// Checks a `device` value.
pub(crate) fn check_device(device: u32) -> Res<u32> {
    match device {
        LLMRT_DEVICE_AUTO | LLMRT_DEVICE_CPU | LLMRT_DEVICE_CUDA => Ok(device),
        d => Err(Fail::new(
            LLMRT_ERR_INVALID_ARG,
            format!("device is {d}; use LLMRT_DEVICE_AUTO (0), LLMRT_DEVICE_CPU (1) or LLMRT_DEVICE_CUDA (2)"),
        )),
    }
}

/// The first CUDA GPU's name when it can be used (driver, device, NVRTC), else the
/// one-line reason.
#[cfg(feature = "cuda")]
fn probe_cuda() -> Result<String, String> {
    rt::cuda::decoder::probe().map_err(|e| e.to_string())
}

#[cfg(not(feature = "cuda"))]
fn probe_cuda() -> Result<String, String> {
    Err("this libllmrt was built without CUDA support (the cuda feature)".into())
}

/// `model` on `device` (checked), sized by `params`.
pub(crate) fn open_engine(device: u32, model: Arc<Model>, params: &ContextParams) -> Res<Engine> {
    let cpu = |model: Arc<Model>| Ok(Engine::Cpu(Context::new(model, params)?));
    let gpu = |model: &Arc<Model>| Engine::open_gpu(model, params.n_ctx, params.n_batch);
    match check_device(device)? {
        LLMRT_DEVICE_CPU => cpu(model),
        LLMRT_DEVICE_CUDA => {
            if params.n_seq > 1 {
                return Err(Fail::new(
                    LLMRT_ERR_UNSUPPORTED,
                    format!(
                        "n_seq is {}: a CUDA context holds one sequence (use LLMRT_DEVICE_CPU for several)",
                        params.n_seq
                    ),
                ));
            }
            gpu(&model).map_err(|e| {
                let f = Fail::from(e);
                Fail::new(f.code, format!("LLMRT_DEVICE_CUDA: {}", f.msg))
            })
        }
        _ if params.n_seq > 1 => cpu(model),
        _ => match gpu(&model) {
            Ok(e) => Ok(e),
            Err(_) => cpu(model),
        },
    }
}

/// The C ABI's views of an [`Engine`]: which device, and the CPU context for the
/// calls only it serves (an `LLMRT_ERR_UNSUPPORTED` naming the call on a GPU).
pub(crate) trait EngineExt {
    /// `LLMRT_DEVICE_CPU` or `LLMRT_DEVICE_CUDA`.
    fn device(&self) -> u32;
    /// The CPU context, for a call (named `what`) only it serves.
    fn cpu_only(&self, what: &str) -> Res<&Context>;
    /// [`EngineExt::cpu_only`], mutable.
    fn cpu_only_mut(&mut self, what: &str) -> Res<&mut Context>;
    /// Sequences the context holds (a GPU context: 1).
    fn n_seq(&self) -> usize;
}

impl EngineExt for Engine {
    fn device(&self) -> u32 {
        if self.is_gpu() {
            LLMRT_DEVICE_CUDA
        } else {
            LLMRT_DEVICE_CPU
        }
    }

    fn cpu_only(&self, what: &str) -> Res<&Context> {
        self.cpu().ok_or_else(|| unsupported(what))
    }

    fn cpu_only_mut(&mut self, what: &str) -> Res<&mut Context> {
        self.cpu_mut().ok_or_else(|| unsupported(what))
    }

    fn n_seq(&self) -> usize {
        self.cpu().map_or(1, Context::n_seq)
    }
}

/// Whether `device` can be used on this machine: `LLMRT_OK` when it can
/// (`LLMRT_DEVICE_CPU` and `LLMRT_DEVICE_AUTO` always can: AUTO falls back to the
/// CPU); for `LLMRT_DEVICE_CUDA`, `LLMRT_ERR_DEVICE` when there is no CUDA driver or
/// GPU, NVRTC (the runtime kernel compiler) is missing, or the library was built
/// without CUDA, with the reason in `llmrt_last_error()`. It opens the GPU to look
/// (a fraction of a second) and keeps nothing. A model can still be refused by
/// `llmrt_context_new` (storage types without GPU kernels, not enough GPU memory).
/// An unknown `device` is `LLMRT_ERR_INVALID_ARG`.
#[no_mangle]
pub extern "C" fn llmrt_device_available(device: u32) -> llmrt_status {
    guard(|| match check_device(device)? {
        LLMRT_DEVICE_CUDA => probe_cuda()
            .map(|_| ())
            .map_err(|why| Fail::new(LLMRT_ERR_DEVICE, format!("LLMRT_DEVICE_CUDA: {why}"))),
        _ => Ok(()),
    })
}
