//! Devices through the C ABI: the availability query, CUDA refused in one message
//! without a GPU (not a crash), AUTO falling back to the CPU, and a GPU context (on the
//! CPU emulator of the GPU kernels) serving evaluation and generation as the CPU does
//! and refusing what it cannot serve with `LLMRT_ERR_UNSUPPORTED`.

use crate::context::*;
use crate::device::*;
use crate::embed::*;
use crate::logits::*;
use crate::model::*;
use crate::resources::*;
use crate::sequences::*;
use crate::state::*;
use crate::status::*;
use crate::tests::{generate, last_error, load, model_bytes};
use std::ptr::{null, null_mut};

/// Whether this machine has a usable CUDA GPU (then the no-GPU checks are skipped).
fn have_gpu() -> bool {
    rt::cuda::decoder::probe().is_ok()
}

fn params(device: u32, seed: u64) -> llmrt_context_params {
    let mut p = llmrt_context_default_params();
    p.n_threads = 1;
    p.sampler.seed = seed;
    p.device = device;
    p
}

fn new_ctx(m: *const llmrt_model, p: &llmrt_context_params) -> Result<*mut llmrt_context, i32> {
    let mut c = null_mut();
    // SAFETY: valid pointers.
    match unsafe { llmrt_context_new(m, p, &mut c) } {
        LLMRT_OK => Ok(c),
        st => {
            assert!(
                c.is_null(),
                "a failed llmrt_context_new must leave *out NULL"
            );
            Err(st)
        }
    }
}

fn device_of(c: *const llmrt_context) -> u32 {
    let mut d = 99;
    // SAFETY: valid pointers.
    assert_eq!(unsafe { llmrt_context_device(c, &mut d) }, LLMRT_OK);
    d
}

#[test]
fn device_query_and_cuda_refused_without_a_gpu() {
    assert_eq!(llmrt_device_available(LLMRT_DEVICE_CPU), LLMRT_OK);
    assert_eq!(llmrt_device_available(LLMRT_DEVICE_AUTO), LLMRT_OK);
    assert_eq!(llmrt_device_available(7), LLMRT_ERR_INVALID_ARG);
    assert!(last_error().contains("device is 7"), "{}", last_error());

    let bytes = model_bytes(3);
    let m = load(&bytes);
    // An unknown device, and several sequences on CUDA, are refused whatever the machine.
    assert_eq!(new_ctx(m, &params(9, 1)), Err(LLMRT_ERR_INVALID_ARG));
    assert!(last_error().contains("device is 9"), "{}", last_error());
    let mut two = params(LLMRT_DEVICE_CUDA, 1);
    two.n_seq = 2;
    assert_eq!(new_ctx(m, &two), Err(LLMRT_ERR_UNSUPPORTED));
    assert!(last_error().contains("one sequence"), "{}", last_error());
    let mut bytes_needed = 0u64;
    // SAFETY: valid pointers.
    let st =
        unsafe { llmrt_context_bytes_needed(m, &params(LLMRT_DEVICE_CUDA, 1), &mut bytes_needed) };
    assert_eq!(st, LLMRT_ERR_UNSUPPORTED);
    // SAFETY: valid pointers.
    let st =
        unsafe { llmrt_context_bytes_needed(m, &params(LLMRT_DEVICE_AUTO, 1), &mut bytes_needed) };
    assert_eq!(st, LLMRT_OK);

    // AUTO: the CPU here (or the GPU where there is one), the CPU's text either way on
    // this f32 model with greedy sampling and an f32 cache.
    let mut greedy_auto = params(LLMRT_DEVICE_AUTO, 5);
    greedy_auto.sampler.temperature = 0.0;
    greedy_auto.cache_type = LLMRT_CACHE_F32;
    let mut greedy_cpu = greedy_auto;
    greedy_cpu.device = LLMRT_DEVICE_CPU;
    let auto = new_ctx(m, &greedy_auto).expect("an AUTO context");
    let cpu = new_ctx(m, &greedy_cpu).expect("a CPU context");
    assert_eq!(device_of(cpu), LLMRT_DEVICE_CPU);
    assert_eq!(
        generate(auto, "the cat", 20).0,
        generate(cpu, "the cat", 20).0
    );

    if have_gpu() {
        eprintln!("a CUDA GPU is present: the no-GPU refusals are not checked");
        assert_eq!(device_of(auto), LLMRT_DEVICE_CUDA);
    } else {
        assert_eq!(device_of(auto), LLMRT_DEVICE_CPU);
        assert_eq!(llmrt_device_available(LLMRT_DEVICE_CUDA), LLMRT_ERR_DEVICE);
        let why = last_error();
        assert!(why.starts_with("LLMRT_DEVICE_CUDA: "), "{why}");
        assert!(!why.contains('\n'), "one line: {why}");
        assert_eq!(
            new_ctx(m, &params(LLMRT_DEVICE_CUDA, 1)),
            Err(LLMRT_ERR_DEVICE)
        );
        let msg = last_error();
        assert!(msg.starts_with("LLMRT_DEVICE_CUDA: "), "{msg}");
        assert!(!msg.contains("panic") && !msg.contains('\n'), "{msg}");
    }
    assert_eq!(llmrt_context_free(auto), LLMRT_OK);
    assert_eq!(llmrt_context_free(cpu), LLMRT_OK);
    assert_eq!(llmrt_model_free(m), LLMRT_OK);
}

/// A CUDA context over the model of `m` on the CPU emulator, registered as
/// `llmrt_context_new` registers one; `None` (and a note) without a C++ compiler.
fn emulated_ctx(bytes: &[u8], p: &llmrt_context_params) -> Option<*mut llmrt_context> {
    let gpu = match llmrt_cuda::Gpu::emulated() {
        Ok(g) => g,
        Err(e) => {
            eprintln!("skipped: {e}");
            return None;
        }
    };
    let model = std::sync::Arc::new(rt::Model::from_bytes(bytes).expect("model"));
    let vocab = model.opts.vocab_size;
    let rp = runtime_params(p).expect("params");
    let g = rt::cuda::GpuDecoder::open(gpu, model, rp.n_ctx, rp.n_batch).expect("emulated GPU");
    // SAFETY: the settings' arrays are NULL.
    let sampling = unsafe { sampler_config(&p.sampler, vocab) }.expect("sampler");
    let h = register(Engine::Gpu(g), sampling).expect("register");
    Some(h as *mut llmrt_context)
}

#[test]
fn emulated_gpu_context_serves_generation_and_refuses_the_rest() {
    let bytes = model_bytes(3);
    let m = load(&bytes);
    let mut p = params(LLMRT_DEVICE_CPU, 11);
    p.cache_type = LLMRT_CACHE_F32;
    p.n_ctx = 48;
    p.sampler.temperature = 0.0;
    let Some(gpu) = emulated_ctx(&bytes, &p) else {
        return;
    };
    let cpu = new_ctx(m, &p).expect("cpu");
    assert_eq!(device_of(gpu), LLMRT_DEVICE_CUDA);

    // The step API: eval, logits close to the CPU's.
    let ids = [5u32, 9, 14, 3, 22];
    let logits = |c: *mut llmrt_context| {
        let mut l = vec![0.0f32; 64];
        let mut n = 0usize;
        // SAFETY: valid buffer and pointers.
        let st = unsafe { llmrt_get_logits(c, l.as_mut_ptr(), l.len(), &mut n) };
        assert_eq!(st, LLMRT_OK, "{}", last_error());
        l.truncate(n);
        l
    };
    for c in [gpu, cpu] {
        // SAFETY: 5 ids.
        assert_eq!(unsafe { llmrt_eval(c, ids.as_ptr(), ids.len()) }, LLMRT_OK);
    }
    let (lg, lc) = (logits(gpu), logits(cpu));
    assert_eq!(lg.len(), lc.len());
    let scale = lc.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let err = lg
        .iter()
        .zip(&lc)
        .fold(0.0f32, |a, (x, y)| a.max((x - y).abs()));
    assert!(err <= 1e-4 * scale.max(1.0), "GPU logits off by {err}");

    // Errors the CPU gives, before anything changes: a bad id, a full context.
    // SAFETY: one id.
    assert_eq!(
        unsafe { llmrt_eval(gpu, [999u32].as_ptr(), 1) },
        LLMRT_ERR_BAD_TOKEN
    );
    let long = vec![1u32; 60];
    // SAFETY: 60 ids.
    assert_eq!(
        unsafe { llmrt_eval(gpu, long.as_ptr(), long.len()) },
        LLMRT_ERR_CONTEXT_FULL
    );

    // Truncation (evaluated again on the GPU), then the same continuation.
    for c in [gpu, cpu] {
        assert_eq!(llmrt_kv_truncate(c, 3), LLMRT_OK, "{}", last_error());
        // SAFETY: 2 ids.
        assert_eq!(unsafe { llmrt_eval(c, [7u32, 8].as_ptr(), 2) }, LLMRT_OK);
    }
    let (lg, lc) = (logits(gpu), logits(cpu));
    let err = lg
        .iter()
        .zip(&lc)
        .fold(0.0f32, |a, (x, y)| a.max((x - y).abs()));
    assert!(
        err <= 1e-4 * scale.max(1.0),
        "after truncation: off by {err}"
    );

    // Generation: the same greedy text as the CPU context.
    for c in [gpu, cpu] {
        assert_eq!(llmrt_kv_reset(c), LLMRT_OK);
    }
    let (tg, g) = generate(gpu, "the cat é", 12);
    let (tc, _) = generate(cpu, "the cat é", 12);
    assert_eq!(tg, tc);
    assert_eq!(g.n_generated, 12);

    // What a GPU context does not serve: LLMRT_ERR_UNSUPPORTED naming the call.
    let unsupported = |st: i32, what: &str| {
        assert_eq!(st, LLMRT_ERR_UNSUPPORTED, "{what}: {}", last_error());
        let msg = last_error();
        assert!(msg.contains(what) && msg.contains("CUDA"), "{msg}");
    };
    // SAFETY: a NUL-terminated path.
    unsupported(
        unsafe { llmrt_state_save(gpu, c"/tmp/llmrt-never-written.state".as_ptr()) },
        "llmrt_state_save",
    );
    // SAFETY: as above.
    unsupported(
        unsafe { llmrt_state_load(gpu, c"/tmp/llmrt-never-written.state".as_ptr()) },
        "llmrt_state_load",
    );
    // SAFETY: one id, NULL sequence ids and logits flags.
    unsupported(
        unsafe { llmrt_batch(gpu, [4u32].as_ptr(), null(), null(), 1) },
        "llmrt_batch",
    );
    let mut out = vec![0.0f32; 64];
    let mut n = 0usize;
    // SAFETY: valid buffers.
    unsupported(
        unsafe {
            llmrt_embed(
                gpu,
                c"the".as_ptr(),
                3,
                LLMRT_POOLING_MEAN,
                0,
                out.as_mut_ptr(),
                out.len(),
                &mut n,
            )
        },
        "embedding",
    );
    unsupported(llmrt_set_threads(gpu, 2), "llmrt_set_threads");
    let mut t = 0u32;
    // SAFETY: valid pointer.
    unsupported(
        unsafe { llmrt_get_threads(gpu, &mut t) },
        "llmrt_get_threads",
    );
    unsupported(llmrt_seq_copy(gpu, 0, 0), "llmrt_seq_copy");
    // ... and the context still works afterwards.
    let (again, _) = {
        assert_eq!(llmrt_kv_reset(gpu), LLMRT_OK);
        generate(gpu, "the cat é", 12)
    };
    assert_eq!(again, tc);

    // llmrt_eval_all: every row, as the CPU's.
    let mut all_g = vec![0.0f32; 5 * lc.len()];
    let mut all_c = all_g.clone();
    for (c, out) in [(gpu, &mut all_g), (cpu, &mut all_c)] {
        assert_eq!(llmrt_kv_reset(c), LLMRT_OK);
        // SAFETY: 5 ids.
        assert_eq!(
            unsafe { llmrt_eval_all(c, ids.as_ptr(), ids.len()) },
            LLMRT_OK
        );
        for (i, row) in out.chunks_mut(lc.len()).enumerate() {
            let mut n = 0usize;
            // SAFETY: valid buffer.
            let st =
                unsafe { llmrt_get_logits_ith(c, i as i64, row.as_mut_ptr(), row.len(), &mut n) };
            assert_eq!(st, LLMRT_OK, "{}", last_error());
        }
    }
    let err = all_g
        .iter()
        .zip(&all_c)
        .fold(0.0f32, |a, (x, y)| a.max((x - y).abs()));
    assert!(err <= 1e-4 * scale.max(1.0), "eval_all rows off by {err}");

    assert_eq!(llmrt_context_free(gpu), LLMRT_OK);
    assert_eq!(llmrt_context_free(cpu), LLMRT_OK);
    assert_eq!(llmrt_model_free(m), LLMRT_OK);
}
