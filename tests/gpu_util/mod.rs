//! What the suite's GPU-path tests share: the emulator (or why a test is skipped), and
//! greedy decoding of one model on the CPU context (f32 cache, f32 products) and on
//! `GpuContext`, token for token. Each test binary uses part of it.
#![allow(dead_code)]

use llmrt::cuda::GpuContext;
use llmrt::{CacheType, Context, ContextParams, Model};
use llmrt_cuda::Gpu;
use std::sync::Arc;

/// The index of the largest logit (the first of equals).
fn argmax(l: &[f32]) -> u32 {
    l.iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |b, (i, &v)| if v > b.1 { (i, v) } else { b },
        )
        .0 as u32
}

/// `steps + 1` greedy tokens after `prompt` from the CPU context and from the GPU
/// path on `gpu`, in that order, and the device back.
pub fn greedy_cpu_and_gpu(
    model: Arc<Model>,
    gpu: Gpu,
    prompt: &[u32],
    steps: usize,
) -> (Vec<u32>, Vec<u32>, Gpu) {
    let p = ContextParams {
        n_ctx: 0,
        n_batch: 8,
        threads: 2,
        n_seq: 1,
        f16_exact: true,
        cache_type: CacheType::F32,
    };
    let max_len = model.opts.max_len;
    let mut cpu = Context::new(model.clone(), &p).expect("cpu context");
    let mut gctx = GpuContext::new(gpu, model, max_len, 8).expect("gpu context");
    let (mut a, mut b) = (
        argmax(cpu.eval(prompt).expect("cpu")),
        argmax(gctx.eval(prompt).expect("gpu")),
    );
    let (mut ta, mut tb) = (vec![a], vec![b]);
    for _ in 0..steps {
        a = argmax(cpu.eval(&[a]).expect("cpu"));
        b = argmax(gctx.eval(&[b]).expect("gpu"));
        ta.push(a);
        tb.push(b);
    }
    (ta, tb, gctx.into_gpu())
}

/// The emulator, or `None` after printing why `test` is skipped.
pub fn emulator(test: &str) -> Option<Gpu> {
    match Gpu::emulated() {
        Ok(g) => Some(g),
        Err(e) => {
            eprintln!("skipped {test}: {e}");
            None
        }
    }
}
