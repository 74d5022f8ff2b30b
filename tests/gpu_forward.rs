//! The runtime's GPU forward pass (`llmrt::cuda::GpuContext`) on the CPU emulator,
//! against the independent f64 reference and the CPU context: every combination of
//! model options, the architecture options of Qwen, Llama 3 and Gemma 3, every
//! storage type the GPU kernels cover, and greedy tokens equal to the CPU's. The
//! emulator runs the same launches, buffers and offsets as a GPU, so this checks the
//! whole pass without one; `runtime/tests/cuda_kernels.rs` and `scripts/gpu-check.sh`
//! confirm it on a GPU.
//!
//! Needs a C++20 compiler for the emulator (`$CXX`, default `g++`); without one each
//! emulated test prints `skipped ...` and returns. Each check also has a twin on a
//! real GPU, `#[ignore = "needs a CUDA GPU"]` (run with `--include-ignored`, as
//! `scripts/gpu-check.sh` does), and a GPU-only test compares graph replay with direct
//! launches.

use llm_format::{DType, Mlp, ModelOptions, Norm, Positions};
use llmrt::cuda::GpuContext;
use llmrt::Model;
use llmrt_cuda::{CudaError, Gpu};
use llmrt_suite::fixtures::*;
use llmrt_suite::reference::RefModel;
use llmrt_suite::rng::test_seed;
use std::sync::Arc;

mod gpu_util;
use gpu_util::emulator;

/// Max |a - b| over max |b|: the error relative to the logits' scale.
fn rel_err(a: &[f32], b: &[f64]) -> f64 {
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-9);
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - y).abs())
        .fold(0.0, f64::max)
        / scale
}

fn prompt(o: &ModelOptions) -> Vec<u32> {
    (0..13).map(|i| (i * 7 + 3) % o.vocab_size as u32).collect()
}

/// The model of options `o` with random weights of `seed` stored as `dtype` on the
/// emulated GPU: the first 9 prompt tokens as one call with the logits of every row
/// (batches of 5 and 4), then the rest one at a time through the cache; the logits of
/// every position against the reference within `tol` of the logits' scale.
fn check(gpu: Gpu, o: &ModelOptions, dtype: DType, tol: f64, seed: u64) -> Gpu {
    let w = random_weights(o, seed);
    let (bytes, held) = write_model(o, &w, dtype);
    let model = Arc::new(Model::from_bytes(&bytes).expect("load"));
    let want = RefModel::new(o.clone(), &held).forward(&prompt(o));
    let mut ctx = GpuContext::new(gpu, model, o.max_len, 5).expect("gpu context");
    let p = prompt(o);
    let mut all = Vec::new();
    ctx.eval_all(&p[..9], &mut all).expect("eval_all");
    let vocab = o.vocab_size;
    let mut got: Vec<(usize, Vec<f32>)> = (0..9)
        .map(|i| (i, all[i * vocab..(i + 1) * vocab].to_vec()))
        .collect();
    for (i, &t) in p.iter().enumerate().skip(9) {
        got.push((i, ctx.eval(&[t]).expect("eval").to_vec()));
    }
    for (i, logits) in got {
        let e = rel_err(&logits, &want[i]);
        assert!(
            e < tol,
            "{o:?} {dtype}: position {i} error {e} over {tol} (seed {seed})"
        );
    }
    into_gpu(ctx)
}

/// Takes the device back from a context (one emulator for a whole test, so each
/// kernel file is built once).
fn into_gpu(ctx: GpuContext) -> Gpu {
    ctx.into_gpu()
}

fn every_option_combination_matches_reference_f32(mut gpu: Gpu) {
    // Every (positions, norm, MLP) triple, each with one of the three (bias, tied,
    // kv heads) settings in turn, so that each setting meets each value of the others.
    let mut seed = 1;
    let settings = [(true, true, 4), (false, false, 2), (true, false, 1)];
    for positions in [Positions::Learned, Positions::Sinusoidal, Positions::Rope] {
        for norm in [Norm::LayerNorm, Norm::RmsNorm] {
            for mlp in [Mlp::Gelu, Mlp::Relu, Mlp::SwiGlu] {
                let (bias, tied, n_kv) = settings[seed % 3];
                let o = opts(positions, norm, mlp, bias, tied, n_kv);
                seed += 1;
                gpu = check(gpu, &o, DType::F32, 1e-4, seed as u64 ^ test_seed(0));
            }
        }
    }
}

fn every_storage_type_matches_reference(mut gpu: Gpu) {
    // The GPU keeps the activations in f32 (no 8-bit blocks as on the CPU), so every
    // storage type meets f32 rounding against the reference on the same weights.
    let llama = opts(Positions::Rope, Norm::RmsNorm, Mlp::SwiGlu, false, false, 2);
    let gpt2 = opts(
        Positions::Learned,
        Norm::LayerNorm,
        Mlp::Gelu,
        true,
        true,
        4,
    );
    for o in [llama, gpt2] {
        for dtype in [
            DType::F32,
            DType::F16,
            DType::BF16,
            DType::Q8_0,
            DType::Q4_0,
            DType::Q4_1,
        ] {
            gpu = check(gpu, &o, dtype, 1e-4, 99 ^ test_seed(0));
        }
    }
}

fn arch_options_match_reference(mut gpu: Gpu) {
    // Qwen 2/3, Llama 3.1 and Gemma 3's settings, as in tests/decoder.rs.
    let base = || opts(Positions::Rope, Norm::RmsNorm, Mlp::SwiGlu, false, false, 2);
    let mut cases = Vec::new();
    let mut o = base();
    o.arch.qkv_bias = true;
    cases.push(o);
    let mut o = base();
    o.arch.qk_norm = true;
    o.arch.head_dim = Some(24);
    cases.push(o);
    let mut o = base();
    o.arch.rope_freq_factors = true;
    o.arch.rope_scale = Some(2.5);
    cases.push(o);
    let mut o = opts(Positions::Rope, Norm::RmsNorm, Mlp::GeGlu, false, true, 1);
    o.arch = llm_format::ArchOptions {
        head_dim: Some(32),
        qk_norm: true,
        embed_scale: Some(8.0),
        post_norms: true,
        sliding_window: Some(4),
        sliding_window_pattern: 2,
        rope_base_local: Some(100.0),
        rope_scale: Some(3.0),
        ..Default::default()
    };
    cases.push(o);
    let mut o = base();
    o.arch.sliding_window = Some(4);
    cases.push(o);
    for (i, o) in cases.iter().enumerate() {
        gpu = check(gpu, o, DType::F32, 1e-4, (200 + i as u64) ^ test_seed(0));
    }
}

/// Greedy decoding: the GPU's tokens are the CPU context's (f32 weights and cache),
/// for a llama2.c-shaped and a GPT-2-shaped model.
fn greedy_tokens_equal_the_cpu(mut gpu: Gpu) {
    let llama = opts(Positions::Rope, Norm::RmsNorm, Mlp::SwiGlu, false, false, 2);
    let gpt2 = opts(
        Positions::Learned,
        Norm::LayerNorm,
        Mlp::Gelu,
        true,
        true,
        4,
    );
    for (k, o) in [llama, gpt2].into_iter().enumerate() {
        let w = random_weights(&o, (31 + k as u64) ^ test_seed(0));
        let (bytes, _) = write_model(&o, &w, DType::F32);
        let model = Arc::new(Model::from_bytes(&bytes).expect("load"));
        let (cpu, on_gpu, g) = gpu_util::greedy_cpu_and_gpu(model, gpu, &prompt(&o), 20);
        assert_eq!(cpu, on_gpu, "{o:?}: greedy tokens, CPU then GPU");
        gpu = g;
    }
}

/// Each check on the emulator (always) and on a GPU (`--include-ignored`).
macro_rules! on_both {
    ($($body:ident: $emu:ident, $cuda:ident;)*) => {$(
        #[test]
        fn $emu() {
            if let Some(g) = emulator(stringify!($body)) {
                $body(g);
            }
        }

        #[test]
        #[ignore = "needs a CUDA GPU"]
        fn $cuda() {
            $body(cuda(stringify!($body)));
        }
    )*};
}

on_both! {
    every_option_combination_matches_reference_f32: options_emulated, options_on_the_gpu;
    every_storage_type_matches_reference: storage_types_emulated, storage_types_on_the_gpu;
    arch_options_match_reference: arch_options_emulated, arch_options_on_the_gpu;
    greedy_tokens_equal_the_cpu: greedy_emulated, greedy_on_the_gpu;
}

/// The first GPU; these tests are ignored unless asked for, so without one they fail
/// here with the reason.
fn cuda(test: &str) -> Gpu {
    match Gpu::cuda(0) {
        Ok(g) => g,
        Err(e) => panic!("{test}: needs a CUDA GPU: {e}"),
    }
}

/// One-token steps replayed from a captured CUDA graph give the logits of the same
/// steps launched one by one (`LLMRT_CUDA_GRAPHS=0`), bit for bit: the graph holds the
/// same launches, with the token and position read from device memory.
#[test]
#[ignore = "needs a CUDA GPU"]
fn graph_replay_equals_direct_launches_on_the_gpu() {
    let o = opts(Positions::Rope, Norm::RmsNorm, Mlp::SwiGlu, false, false, 2);
    let w = random_weights(&o, 77 ^ test_seed(0));
    let (bytes, _) = write_model(&o, &w, DType::Q4_0);
    let model = Arc::new(Model::from_bytes(&bytes).expect("load"));
    let run = |graphs: bool| {
        let mut ctx = GpuContext::new(cuda("graphs"), model.clone(), o.max_len, 8).expect("ctx");
        ctx.set_graphs(graphs);
        let mut out = vec![ctx.eval(&prompt(&o)).expect("prompt").to_vec()];
        for t in 0..12u32 {
            out.push(
                ctx.eval(&[(t * 5 + 1) % o.vocab_size as u32])
                    .expect("step")
                    .to_vec(),
            );
        }
        out
    };
    let (with, without) = (run(true), run(false));
    assert_eq!(with, without, "graph replay against direct launches");
}

#[test]
fn bad_input_is_an_error_not_a_crash() {
    let Some(gpu) = emulator("bad input") else {
        return;
    };
    // Heads wider than the attention kernel takes (256): refused before any upload.
    let wide = ModelOptions {
        d_model: 320,
        n_heads: 1,
        n_kv_heads: 1,
        ..opts(Positions::Rope, Norm::RmsNorm, Mlp::SwiGlu, false, false, 1)
    };
    let (bytes, _) = write_model(&wide, &random_weights(&wide, 5), DType::F32);
    let model = Arc::new(Model::from_bytes(&bytes).expect("load"));
    let e = GpuContext::new(gpu, model, 16, 4).expect_err("head of 320");
    assert!(e.to_string().contains("320"), "{e}");

    let gpu = emulator("bad input").expect("emulator");
    let o = opts(Positions::Rope, Norm::RmsNorm, Mlp::SwiGlu, false, false, 2);
    let w = random_weights(&o, 5);
    let (bytes, _) = write_model(&o, &w, DType::F32);
    let model = Arc::new(Model::from_bytes(&bytes).expect("load"));
    let mut ctx = GpuContext::new(gpu, model, 16, 4).expect("gpu context");
    let e = ctx
        .eval(&[3, o.vocab_size as u32])
        .expect_err("token outside the vocabulary");
    assert!(matches!(e, CudaError::Shape(_)), "{e}");
    assert_eq!(ctx.n_past(), 0, "a refused call changes nothing");
    ctx.eval(&[1; 10]).expect("10 of 16");
    let e = ctx.eval(&[1; 7]).expect_err("17 of 16");
    assert!(e.to_string().contains("do not fit"), "{e}");
    assert_eq!(ctx.n_past(), 10);
    assert!(ctx.eval(&[]).is_err());
}
