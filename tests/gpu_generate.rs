//! `llmrt::generate` over the GPU context (`llmrt::cuda::GpuDecoder`, a
//! `llmrt::Decoder`) on the CPU emulator of the GPU kernels, against the CPU
//! `Context`: for a small f32 model with an f32 cache, the same seed and settings give
//! the same tokens and text (greedy, seeded sampling with penalties, a stop string, a
//! grammar, a context that fills up and shifts), cancellation stops between tokens,
//! bad input gives the CPU's errors, and a model whose storage types the GPU kernels
//! lack is refused naming the type (`decoder::check_model`, before any upload).
//!
//! Needs a C++20 compiler for the emulator; without one each emulated test prints
//! `skipped ...` and returns. The emulator runs this 2-layer d=64 model at a few
//! hundred ms per token, so the runs are short.

use llm_format::{DType, Mlp, ModelOptions, Norm, Positions};
use llmrt::cuda::{decoder, GpuDecoder};
use llmrt::grammar::Grammar;
use llmrt::sampler::SamplerConfig;
use llmrt::{
    generate, generate_until, CacheType, Context, ContextParams, Decoder, Error, GenerateParams,
    Generation, Model,
};
use llmrt_suite::fixtures::*;
use llmrt_suite::rng::test_seed;
use std::cell::Cell;
use std::sync::Arc;

mod gpu_util;
use gpu_util::emulator;

fn model(o: &ModelOptions, dtype: DType) -> Arc<Model> {
    let w = random_weights(o, 4242 ^ test_seed(0));
    let (bytes, _) = write_model(o, &w, dtype);
    Arc::new(Model::from_bytes(&bytes).expect("load"))
}

fn llama() -> ModelOptions {
    opts(Positions::Rope, Norm::RmsNorm, Mlp::SwiGlu, false, false, 2)
}

/// The CPU context for the comparison: f32 cache, f32 products.
fn cpu(model: &Arc<Model>, n_ctx: usize) -> Context {
    Context::new(
        model.clone(),
        &ContextParams {
            n_ctx,
            n_batch: 8,
            threads: 2,
            cache_type: CacheType::F32,
            n_seq: 1,
            f16_exact: true,
        },
    )
    .expect("cpu context")
}

fn run(d: &mut dyn Decoder, prompt: &[u32], p: &GenerateParams) -> (Generation, String) {
    let mut streamed = String::new();
    let g = generate(d, prompt, p, &mut |s| {
        streamed.push_str(s);
        true
    })
    .expect("generate");
    (g, streamed)
}

fn same(what: &str, gpu: &(Generation, String), cpu: &(Generation, String)) {
    assert_eq!(gpu.0.tokens, cpu.0.tokens, "{what}: tokens, GPU then CPU");
    assert_eq!(gpu.0.text, cpu.0.text, "{what}: text");
    assert_eq!(gpu.0.reason, cpu.0.reason, "{what}: stop reason");
    assert_eq!(gpu.1, cpu.1, "{what}: streamed pieces");
}

#[test]
fn generation_on_the_gpu_gives_the_cpus_text() {
    let Some(gpu) = emulator("generation_on_the_gpu_gives_the_cpus_text") else {
        return;
    };
    let o = llama();
    let model = model(&o, DType::F32);
    let mut g = GpuDecoder::open(gpu, model.clone(), 0, 8).expect("gpu decoder");
    let mut c = cpu(&model, 0);
    let prompt: Vec<u32> = vec![5, 17, 33, 2, 40];

    // Greedy.
    let greedy = GenerateParams {
        max_tokens: 12,
        ignore_eos: true,
        sampler: SamplerConfig {
            temperature: 0.0,
            ..Default::default()
        },
        ..Default::default()
    };
    let want = run(&mut c, &prompt, &greedy);
    same("greedy", &run(&mut g, &prompt, &greedy), &want);

    // Seeded sampling with penalties (they read the tokens the decoder holds), after
    // what the contexts already hold.
    let sampled = GenerateParams {
        max_tokens: 12,
        ignore_eos: true,
        sampler: SamplerConfig {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repeat_penalty: 1.3,
            frequency_penalty: 0.2,
            seed: 7,
            ..Default::default()
        },
        ..Default::default()
    };
    let want = run(&mut c, &[9, 9], &sampled);
    same("seeded, continued", &run(&mut g, &[9, 9], &sampled), &want);
    assert_eq!(Decoder::tokens(&g), Decoder::tokens(&c));

    // A stop string from the middle of the greedy text.
    Decoder::reset(&mut g);
    Decoder::reset(&mut c);
    let text = run(&mut c, &prompt, &greedy).0.text;
    Decoder::reset(&mut c);
    let chars: Vec<char> = text.chars().collect();
    let stop: String = chars[chars.len() / 2..chars.len() / 2 + 2].iter().collect();
    let stopped = GenerateParams {
        stop: vec![stop],
        ..greedy.clone()
    };
    let want = run(&mut c, &prompt, &stopped);
    assert_eq!(want.0.reason, llmrt::StopReason::StopString);
    same("stop string", &run(&mut g, &prompt, &stopped), &want);
}

#[test]
fn grammar_and_context_shift_on_the_gpu() {
    let Some(gpu) = emulator("grammar_and_context_shift_on_the_gpu") else {
        return;
    };
    let o = llama();
    let model = model(&o, DType::F32);
    // 12 positions: 5 prompt tokens and 14 generated shift the context twice.
    let mut g = GpuDecoder::open(gpu, model.clone(), 12, 8).expect("gpu decoder");
    let mut c = cpu(&model, 12);
    assert_eq!(Decoder::n_ctx(&g), 12);
    let prompt: Vec<u32> = vec![3, 1, 4, 1, 5];
    let shifted = GenerateParams {
        max_tokens: 14,
        ignore_eos: true,
        sampler: SamplerConfig {
            temperature: 0.9,
            seed: 3,
            ..Default::default()
        },
        grammar: Some(Arc::new(
            Grammar::parse("root ::= ([A-J] | \".\")+").expect("grammar"),
        )),
        ..Default::default()
    };
    let want = run(&mut c, &prompt, &shifted);
    let got = run(&mut g, &prompt, &shifted);
    same("grammar, shifted context", &got, &want);
    assert!(
        got.0
            .text
            .chars()
            .all(|ch| ('A'..='J').contains(&ch) || ch == '.'),
        "{:?}",
        got.0.text
    );
}

#[test]
fn cancellation_and_bad_input_on_the_gpu() {
    let Some(gpu) = emulator("cancellation_and_bad_input_on_the_gpu") else {
        return;
    };
    let o = llama();
    let model = model(&o, DType::F32);
    let mut g = GpuDecoder::open(gpu, model, 16, 8).expect("gpu decoder");
    let vocab = o.vocab_size as u32;

    // Asked between tokens: the third question stops it.
    let asked = Cell::new(0);
    let p = GenerateParams {
        max_tokens: 10,
        ignore_eos: true,
        ..Default::default()
    };
    let r = generate_until(
        &mut g,
        &[1, 2, 3],
        &p,
        &|| {
            asked.set(asked.get() + 1);
            asked.get() > 2
        },
        &mut |_| true,
    )
    .expect("generate");
    assert_eq!(r.reason, llmrt::StopReason::Cancelled);
    assert!(r.tokens.len() < 3, "{:?}", r.tokens);

    // The CPU context's errors, before anything changes.
    Decoder::reset(&mut g);
    Decoder::eval(&mut g, &[1, 2]).expect("eval");
    assert!(matches!(
        Decoder::eval(&mut g, &[]),
        Err(Error::EmptyPrompt)
    ));
    assert!(matches!(
        Decoder::eval(&mut g, &[1, vocab]),
        Err(Error::BadToken(v, n)) if v == vocab as u64 && n == vocab as usize
    ));
    assert!(matches!(
        Decoder::eval(&mut g, &[1; 15]),
        Err(Error::ContextFull(17, 16))
    ));
    assert_eq!(Decoder::tokens(&g), &[1, 2]);
    // Truncation evaluates the kept tokens again: the same logits as evaluating them.
    Decoder::eval(&mut g, &[7, 8, 9]).expect("eval");
    g.truncate(3).expect("truncate");
    assert_eq!(Decoder::tokens(&g), &[1, 2, 7]);
    let after = Decoder::eval(&mut g, &[4]).expect("eval").to_vec();
    Decoder::reset(&mut g);
    let fresh = Decoder::eval(&mut g, &[1, 2, 7, 4]).expect("eval").to_vec();
    let err = after
        .iter()
        .zip(&fresh)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(err < 1e-4, "truncate then eval: {err}");
}

#[test]
fn every_storage_type_is_checked_against_the_gpu_kernels() {
    // 256 columns: whole blocks of every type (K-quant blocks are 256 values).
    let o = ModelOptions {
        vocab_size: 64,
        d_model: 256,
        d_ff: 256,
        ..llama()
    };
    for dtype in DType::ALL {
        let covered = llmrt::cuda::matmul::kernel(dtype).is_some()
            && llmrt::cuda::embed::kernel(dtype).is_some();
        match (decoder::check_model(&model(&o, dtype)), covered) {
            (Ok(()), true) => {}
            (Err(e), false) => {
                assert!(matches!(e, Error::Device(_)), "{e:?}");
                assert!(e.to_string().contains(dtype.name()), "{e}");
            }
            (r, _) => panic!("{dtype}: check_model {r:?}, kernels cover it: {covered}"),
        }
    }
}
