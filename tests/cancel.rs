//! Stopping a prompt part-way: `Context::eval_until` and `generate_until` give up
//! between layers when asked, keep exactly the batches that finished, and leave a
//! context that then computes what a fresh one does.

use llm_format::{DType, Mlp, Norm, Positions};
use llmrt::generate::{generate_until, GenerateParams, StopReason};
use llmrt::{Context, ContextParams, Model};
use llmrt_suite::fixtures::*;
use llmrt_suite::rng::test_seed;
use std::cell::Cell;
use std::sync::Arc;

fn model() -> Arc<Model> {
    let o = opts(Positions::Rope, Norm::RmsNorm, Mlp::SwiGlu, false, false, 2);
    let (bytes, _) = write_model(&o, &random_weights(&o, test_seed(7)), DType::F32);
    Arc::new(Model::from_bytes(&bytes).expect("load"))
}

fn params() -> ContextParams {
    ContextParams {
        n_ctx: 0,
        n_batch: 4,
        threads: 2,
        cache_type: llmrt::CacheType::default(),
        n_seq: 1,
        f16_exact: false,
    }
}

/// A `cancelled` that says yes from its `k`-th question on, counting the questions.
fn after(k: usize, asked: &Cell<usize>) -> impl Fn() -> bool + '_ {
    move || {
        asked.set(asked.get() + 1);
        asked.get() > k
    }
}

#[test]
fn eval_until_stops_between_layers_and_keeps_finished_batches() {
    let m = model();
    let layers = m.opts.n_layers;
    assert!(layers >= 2, "the fixture needs layers to stop between");
    let vocab = m.opts.vocab_size as u32;
    let prompt: Vec<u32> = (0..10).map(|i| (i * 5 + 1) % vocab).collect();
    let mut fresh = Context::new(m.clone(), &params()).expect("context");
    let want = fresh.eval(&prompt).expect("eval").to_vec();

    // Never cancelled: the same logits as eval, asked once per layer per batch.
    let asked = Cell::new(0);
    let mut ctx = Context::new(m.clone(), &params()).expect("context");
    let got = ctx
        .eval_until(&prompt, &after(usize::MAX, &asked))
        .expect("eval");
    assert_eq!(got.map(|l| l.to_vec()), Some(want.clone()));
    assert_eq!(
        asked.get(),
        3 * layers,
        "10 tokens in batches of 4 = 3 batches"
    );

    // Cancelled inside the first batch: nothing kept.
    let asked = Cell::new(0);
    let mut ctx = Context::new(m.clone(), &params()).expect("context");
    let got = ctx.eval_until(&prompt, &after(1, &asked)).expect("eval");
    assert!(got.is_none());
    assert_eq!(asked.get(), 2, "stopped at the second layer's question");
    assert!(ctx.tokens().is_empty());

    // Cancelled inside the second batch: the first batch (4 tokens) is kept.
    let asked = Cell::new(0);
    let got = ctx
        .eval_until(&prompt, &after(layers + 1, &asked))
        .expect("eval");
    assert!(got.is_none());
    assert_eq!(ctx.tokens(), &prompt[..4]);

    // The stopped context goes on from there and ends where a fresh one does.
    let got = ctx.eval(&prompt[4..]).expect("eval").to_vec();
    assert_eq!(got, want);
}

#[test]
fn generate_until_reports_a_cancelled_prompt() {
    let m = model();
    let vocab = m.opts.vocab_size as u32;
    let prompt: Vec<u32> = (0..9).map(|i| (i * 3 + 2) % vocab).collect();
    let mut ctx = Context::new(m, &params()).expect("context");
    let asked = Cell::new(0);
    let gp = GenerateParams {
        max_tokens: 5,
        ..GenerateParams::default()
    };
    let mut pieces = 0;
    let g = generate_until(&mut ctx, &prompt, &gp, &after(1, &asked), &mut |_| {
        pieces += 1;
        true
    })
    .expect("generate");
    assert_eq!(g.reason, StopReason::Cancelled);
    assert!(g.tokens.is_empty() && g.text.is_empty());
    assert_eq!(pieces, 0);
    assert!(ctx.tokens().is_empty());
}
