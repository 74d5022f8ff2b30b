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
use rt::generate::Decoder;
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

/// A context's forward pass: on the CPU, or on a GPU (one per context, behind its
/// handle: the variants' sizes do not matter).
#[allow(clippy::large_enum_variant)]
pub(crate) enum Engine {
    /// The CPU context.
    Cpu(Context),
    /// A GPU context (one sequence).
    #[cfg(feature = "cuda")]
    Gpu(GpuCtx),
}

/// A GPU context that may move between threads (a C context is used by one thread at
/// a time, not always the same one).
#[cfg(feature = "cuda")]
pub(crate) struct GpuCtx(pub(crate) rt::cuda::GpuDecoder);

/// The failure of a call a GPU context does not serve.
#[cfg(feature = "cuda")]
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

/// `model` on the first CUDA GPU, sized by `params`, or the one-line reason it cannot be.
#[cfg(feature = "cuda")]
fn open_gpu(model: &Arc<Model>, params: &ContextParams) -> Result<Engine, rt::Error> {
    let gpu = rt::cuda::Gpu::cuda(0)?;
    rt::cuda::GpuDecoder::open(gpu, model.clone(), params.n_ctx, params.n_batch)
        .map(|g| Engine::Gpu(GpuCtx(g)))
}

#[cfg(not(feature = "cuda"))]
fn open_gpu(_: &Arc<Model>, _: &ContextParams) -> Result<Engine, rt::Error> {
    Err(rt::Error::Device(
        "this libllmrt was built without CUDA support (the cuda feature)".into(),
    ))
}

impl Engine {
    /// The context of `model` on `device` (checked), sized by `params`.
    pub fn open(device: u32, model: Arc<Model>, params: &ContextParams) -> Res<Engine> {
        let cpu = |model: Arc<Model>| Ok(Engine::Cpu(Context::new(model, params)?));
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
                open_gpu(&model, params).map_err(|e| {
                    let f = Fail::from(e);
                    Fail::new(f.code, format!("LLMRT_DEVICE_CUDA: {}", f.msg))
                })
            }
            _ if params.n_seq > 1 => cpu(model),
            _ => match open_gpu(&model, params) {
                Ok(e) => Ok(e),
                Err(_) => cpu(model),
            },
        }
    }

    /// `LLMRT_DEVICE_CPU` or `LLMRT_DEVICE_CUDA`.
    pub fn device(&self) -> u32 {
        match self {
            Engine::Cpu(_) => LLMRT_DEVICE_CPU,
            #[cfg(feature = "cuda")]
            Engine::Gpu(_) => LLMRT_DEVICE_CUDA,
        }
    }

    /// The CPU context, for a call (named `what`) only it serves.
    pub fn cpu(&self, what: &str) -> Res<&Context> {
        let _ = what;
        match self {
            Engine::Cpu(c) => Ok(c),
            #[cfg(feature = "cuda")]
            Engine::Gpu(_) => Err(unsupported(what)),
        }
    }

    /// [`Engine::cpu`], mutable.
    pub fn cpu_mut(&mut self, what: &str) -> Res<&mut Context> {
        let _ = what;
        match self {
            Engine::Cpu(c) => Ok(c),
            #[cfg(feature = "cuda")]
            Engine::Gpu(_) => Err(unsupported(what)),
        }
    }

    fn decoder(&self) -> &dyn Decoder {
        match self {
            Engine::Cpu(c) => c,
            #[cfg(feature = "cuda")]
            Engine::Gpu(g) => &g.0,
        }
    }

    fn decoder_mut(&mut self) -> &mut dyn Decoder {
        match self {
            Engine::Cpu(c) => c,
            #[cfg(feature = "cuda")]
            Engine::Gpu(g) => &mut g.0,
        }
    }

    /// The model.
    pub fn model(&self) -> &Arc<Model> {
        self.decoder().model()
    }

    /// Positions one sequence holds.
    pub fn n_ctx(&self) -> usize {
        self.decoder().n_ctx()
    }

    /// Sequences the context holds (a GPU context: 1).
    pub fn n_seq(&self) -> usize {
        match self {
            Engine::Cpu(c) => c.n_seq(),
            #[cfg(feature = "cuda")]
            Engine::Gpu(_) => 1,
        }
    }

    /// Sequence 0's tokens.
    pub fn tokens(&self) -> &[u32] {
        self.decoder().tokens()
    }

    /// Sequence 0's last logits (`[vocab]`; empty on a GPU context before the first
    /// evaluation, which the callers check first with `has_logits`).
    pub fn logits(&self) -> &[f32] {
        match self {
            Engine::Cpu(c) => c.logits(),
            #[cfg(feature = "cuda")]
            Engine::Gpu(g) => g.0.logits(),
        }
    }

    /// Empties every sequence.
    pub fn reset(&mut self) {
        self.decoder_mut().reset();
    }

    /// Keeps the first `n` tokens of sequence 0 (a GPU context evaluates them again).
    pub fn truncate(&mut self, n: usize) -> Result<(), rt::Error> {
        match self {
            Engine::Cpu(c) => {
                c.truncate(n);
                Ok(())
            }
            #[cfg(feature = "cuda")]
            Engine::Gpu(g) => g.0.truncate(n),
        }
    }

    /// Appends `tokens` to sequence 0; the last one's logits.
    pub fn eval(&mut self, tokens: &[u32]) -> Result<&[f32], rt::Error> {
        self.decoder_mut().eval(tokens)
    }

    /// [`Engine::eval`], stopped early (`Ok(None)`) by `cancelled`.
    pub fn eval_until(
        &mut self,
        tokens: &[u32],
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Option<&[f32]>, rt::Error> {
        self.decoder_mut().eval_until(tokens, cancelled)
    }

    /// Appends `tokens` and writes every one's logits into `out`; `Ok(false)` when
    /// `cancelled` stopped it.
    pub fn eval_all_until(
        &mut self,
        tokens: &[u32],
        out: &mut Vec<f32>,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<bool, rt::Error> {
        match self {
            Engine::Cpu(c) => c.eval_all_until(tokens, out, cancelled),
            #[cfg(feature = "cuda")]
            Engine::Gpu(g) => g.0.eval_all_until(tokens, out, cancelled),
        }
    }
}

/// Generation (`rt::generate_until`) over either device.
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

    fn eval(&mut self, tokens: &[u32]) -> Result<&[f32], rt::Error> {
        self.decoder_mut().eval(tokens)
    }

    fn eval_until(
        &mut self,
        tokens: &[u32],
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Option<&[f32]>, rt::Error> {
        self.decoder_mut().eval_until(tokens, cancelled)
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
