//! The trainer's forward against the independent f64 reference decoder
//! (`llmrt_suite::reference`): the logits of `llm_train::model::Model<f64>` equal the
//! reference's within 1e-9 of each row's largest logit (both in f64, so only the order
//! of the additions differs), on random weights, for each newer-family setting the
//! trainer trains (q/k norm, GeGLU, a head width other than `d_model / n_heads`, post
//! norms, embedding scale, q/k/v biases) and for all of them together.

use llm_format::{ArchOptions, Mlp, ModelOptions, Norm, Positions};
use llm_train::backend::Cpu;
use llm_train::model::Model;
use llmrt_suite::reference::RefModel;
use llmrt_suite::rng::{test_seed, Rng};
use std::collections::HashMap;

fn opts(pos: Positions, norm: Norm, mlp: Mlp, bias: bool, tied: bool, kvh: usize) -> ModelOptions {
    ModelOptions {
        vocab_size: 37,
        d_model: 32,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: kvh,
        d_ff: 48,
        max_len: 16,
        positions: pos,
        norm,
        mlp,
        bias,
        tied_embeddings: tied,
        norm_eps: 1e-5,
        rope_base: 10000.0,
        arch: ArchOptions::default(),
    }
}

/// Random f32 weights (norm weights around 1, the rest uniform in ±0.3), the trainer's
/// forward in f64 on them, and the reference's.
fn check(o: &ModelOptions, seed: u64) {
    let mut r = Rng::new(seed ^ test_seed(0));
    let mut m = Model::<f64>::new(o.clone(), true).unwrap();
    let mut held: HashMap<String, Vec<f32>> = HashMap::new();
    for s in m.table.slots.clone() {
        let x: Vec<f32> = (0..s.len)
            .map(|_| {
                let u = (r.uniform() * 2.0 - 1.0) * 0.3;
                if s.name.contains("norm") && s.name.ends_with(".weight") {
                    1.0 + u
                } else {
                    u
                }
            })
            .collect();
        m.param_mut(&s.name)
            .unwrap()
            .iter_mut()
            .zip(&x)
            .for_each(|(p, &v)| *p = v as f64);
        held.insert(s.name.clone(), x);
    }
    let t = 13;
    let tokens: Vec<u32> = (0..t).map(|_| r.below(37) as u32).collect();
    m.forward(&Cpu, &tokens, None, 1, t, None).unwrap();
    let got = m.logits();
    let want = RefModel::new(o.clone(), &held).forward(&tokens);
    for (i, row) in want.iter().enumerate() {
        let scale = row.iter().fold(0f64, |a, &b| a.max(b.abs())).max(1e-3);
        for (j, &w) in row.iter().enumerate() {
            let g = got[i * 37 + j];
            assert!(
                (g - w).abs() <= 1e-9 * scale,
                "{o:?}: position {i} logit {j}: trainer {g} vs reference {w}"
            );
        }
    }
}

#[test]
fn trainer_forward_matches_the_reference_with_the_newer_options() {
    let rope = || opts(Positions::Rope, Norm::RmsNorm, Mlp::SwiGlu, false, false, 2);
    let classic = || {
        opts(
            Positions::Learned,
            Norm::LayerNorm,
            Mlp::Gelu,
            true,
            true,
            4,
        )
    };
    let mut cases = vec![rope(), classic()];
    for base in [rope, classic] {
        let mut o = base();
        o.arch.qk_norm = true;
        cases.push(o);
        let mut o = base();
        o.mlp = Mlp::GeGlu;
        cases.push(o);
        let mut o = base();
        o.arch.head_dim = Some(12); // q width 48 over d = 32
        cases.push(o);
        let mut o = base();
        o.arch.head_dim = Some(4); // narrower than d / n_heads = 8
        cases.push(o);
        let mut o = base();
        o.arch.post_norms = true;
        cases.push(o);
        let mut o = base();
        o.arch.qkv_bias = true;
        cases.push(o);
    }
    let mut o = rope();
    o.arch.embed_scale = Some(32f32.sqrt());
    cases.push(o);
    // Qwen 3-like and Gemma 3-like (without its run-only sliding window).
    let mut o = opts(Positions::Rope, Norm::RmsNorm, Mlp::SwiGlu, false, false, 2);
    o.arch = ArchOptions {
        head_dim: Some(16),
        qk_norm: true,
        ..Default::default()
    };
    cases.push(o);
    let mut o = opts(Positions::Rope, Norm::RmsNorm, Mlp::GeGlu, false, true, 1);
    o.arch = ArchOptions {
        head_dim: Some(16),
        qkv_bias: true,
        qk_norm: true,
        post_norms: true,
        embed_scale: Some(32f32.sqrt()),
        ..Default::default()
    };
    cases.push(o);
    for (i, o) in cases.iter().enumerate() {
        check(o, 900 + i as u64);
    }
}
