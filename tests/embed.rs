//! Embeddings: the runtime's hidden state after the final norm against the f64
//! reference decoder's, for several option combinations and batch splits, and the
//! pooled vectors against a hand computation from those states.

use llm_format::{DType, Mlp, Norm, Positions};
use llmrt::embed::{cosine, embed_until, l2_normalize, pool, Pooling};
use llmrt::{Context, ContextParams, Model};
use llmrt_suite::fixtures::*;
use llmrt_suite::reference::RefModel;
use llmrt_suite::rng::{test_seed, Rng};
use std::sync::Arc;

/// Max |a - b| over max |b| of one row.
fn rel_err(a: &[f32], b: &[f64]) -> f64 {
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-9);
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - y).abs())
        .fold(0.0, f64::max)
        / scale
}

fn random_prompt(rng: &mut Rng, n: usize, vocab: usize) -> Vec<u32> {
    (0..n).map(|_| rng.below(vocab as u64) as u32).collect()
}

/// f32 weights: the runtime computes in f32 what the reference computes in f64.
/// The hidden states are O(1) after the norm; 1e-4 of their largest entry is the
/// same bound the logits meet in tests/decoder.rs.
const TOL: f64 = 1e-4;

#[test]
fn hidden_state_after_final_norm_matches_reference() {
    let seed = test_seed(31);
    let mut rng = Rng::new(seed);
    let combos = [
        (Positions::Rope, Norm::RmsNorm, Mlp::SwiGlu, false, false, 2),
        (
            Positions::Learned,
            Norm::LayerNorm,
            Mlp::Gelu,
            true,
            true,
            4,
        ),
        (
            Positions::Sinusoidal,
            Norm::LayerNorm,
            Mlp::Relu,
            true,
            false,
            1,
        ),
    ];
    for (k, (pos, norm, mlp, bias, tied, n_kv)) in combos.into_iter().enumerate() {
        let o = opts(pos, norm, mlp, bias, tied, n_kv);
        let w = random_weights(&o, seed.wrapping_add(k as u64));
        let (bytes, held) = write_model(&o, &w, DType::F32);
        let model = Arc::new(Model::from_bytes(&bytes).expect("load"));
        let reference = RefModel::new(o.clone(), &held);
        let prompt = random_prompt(&mut rng, 17, o.vocab_size);
        let want = reference.hidden(&prompt);
        for n_batch in [1, 5, 64] {
            let params = ContextParams {
                n_ctx: 0,
                n_batch,
                threads: 2,
                cache_type: llmrt::CacheType::F32,
                n_seq: 1,
                f16_exact: false,
            };
            let mut ctx = Context::new(model.clone(), &params).expect("context");
            let mut hidden = vec![f32::NAN; 3];
            assert!(ctx
                .hidden_until(&prompt, &mut hidden, &|| false)
                .expect("hidden"));
            let d = o.d_model;
            assert_eq!(hidden.len(), prompt.len() * d);
            for (i, row) in want.iter().enumerate() {
                let e = rel_err(&hidden[i * d..(i + 1) * d], row);
                assert!(e < TOL, "{o:?} n_batch {n_batch}: position {i} error {e}");
            }
            // The last token's logits are there too, as after eval.
            let logits = reference.forward(&prompt);
            let e = rel_err(ctx.logits(), logits.last().expect("logits"));
            assert!(e < TOL, "{o:?}: logits after hidden_until, error {e}");
            assert_eq!(ctx.tokens(), &prompt[..]);
        }
    }
}

#[test]
fn pooling_equals_a_hand_computation() {
    let seed = test_seed(32);
    let mut rng = Rng::new(seed);
    let o = opts(Positions::Rope, Norm::RmsNorm, Mlp::SwiGlu, false, false, 2);
    let (bytes, held) = write_model(&o, &random_weights(&o, seed), DType::F32);
    let model = Arc::new(Model::from_bytes(&bytes).expect("load"));
    let reference = RefModel::new(o.clone(), &held);
    let d = o.d_model;
    let params = ContextParams {
        n_ctx: 0,
        n_batch: 4,
        threads: 1,
        cache_type: llmrt::CacheType::F32,
        n_seq: 1,
        f16_exact: false,
    };
    let mut ctx = Context::new(model, &params).expect("context");
    // Something already in the cache: embedding starts a new sequence regardless.
    ctx.eval(&random_prompt(&mut rng, 5, o.vocab_size))
        .expect("eval");
    let mut scratch = Vec::new();
    for len in [1, 2, 11] {
        let prompt = random_prompt(&mut rng, len, o.vocab_size);
        let h = reference.hidden(&prompt);
        for pooling in Pooling::ALL {
            // By hand, in f64, from the reference's states.
            let mut want: Vec<f64> = match pooling {
                Pooling::First => h[0].clone(),
                Pooling::Last => h[len - 1].clone(),
                Pooling::Mean => (0..d)
                    .map(|j| h.iter().map(|r| r[j]).sum::<f64>() / len as f64)
                    .collect(),
            };
            let got = embed_until(&mut ctx, &prompt, pooling, false, &mut scratch, &|| false)
                .expect("embed")
                .expect("not cancelled");
            let e = rel_err(&got, &want);
            assert!(e < TOL, "{pooling:?} len {len}: error {e}");
            assert_eq!(ctx.tokens(), &prompt[..], "the cache holds the text");

            let norm = want.iter().map(|v| v * v).sum::<f64>().sqrt();
            for v in &mut want {
                *v /= norm;
            }
            let got = embed_until(&mut ctx, &prompt, pooling, true, &mut scratch, &|| false)
                .expect("embed")
                .expect("not cancelled");
            let e = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (*a as f64 - b).abs())
                .fold(0.0, f64::max);
            assert!(e < TOL, "{pooling:?} len {len} normalised: error {e}");
            let len2: f64 = got.iter().map(|v| (*v as f64).powi(2)).sum();
            assert!((len2 - 1.0).abs() < 1e-5, "unit length: {len2}");
        }
    }

    // `pool` itself on a random matrix, exactly as written by hand.
    let (n, d) = (7, 5);
    let m = rng.vec(n * d, 3.0);
    let mut out = vec![0.0; d];
    pool(&m, d, Pooling::Mean, &mut out);
    for j in 0..d {
        let s: f64 = (0..n).map(|i| m[i * d + j] as f64).sum();
        assert_eq!(out[j], (s / n as f64) as f32);
    }
    pool(&m, d, Pooling::Last, &mut out);
    assert_eq!(out, m[(n - 1) * d..]);
    pool(&m, d, Pooling::First, &mut out);
    assert_eq!(out, m[..d]);

    // Cosine: of a vector with itself 1, with its negation -1, scale-free.
    let a = rng.vec(d, 1.0);
    let b = rng.vec(d, 1.0);
    let mut an = a.clone();
    l2_normalize(&mut an);
    let neg: Vec<f32> = a.iter().map(|v| -2.5 * v).collect();
    assert!((cosine(&a, &a) - 1.0).abs() < 1e-6);
    assert!((cosine(&a, &neg) + 1.0).abs() < 1e-6);
    assert!((cosine(&a, &b) - cosine(&an, &b)).abs() < 1e-6);
    assert_eq!(cosine(&a, &vec![0.0; d]), 0.0);
}

#[test]
fn a_cancelled_embedding_returns_none() {
    let o = opts(Positions::Rope, Norm::RmsNorm, Mlp::SwiGlu, false, false, 2);
    let (bytes, _) = write_model(&o, &random_weights(&o, test_seed(33)), DType::F32);
    let model = Arc::new(Model::from_bytes(&bytes).expect("load"));
    let params = ContextParams {
        n_ctx: 0,
        n_batch: 2,
        threads: 1,
        cache_type: llmrt::CacheType::F32,
        n_seq: 1,
        f16_exact: false,
    };
    let mut ctx = Context::new(model, &params).expect("context");
    let prompt: Vec<u32> = (0..9).map(|i| (i * 7 + 1) % o.vocab_size as u32).collect();
    let mut scratch = Vec::new();
    let got = embed_until(
        &mut ctx,
        &prompt,
        Pooling::Mean,
        true,
        &mut scratch,
        &|| true,
    )
    .expect("embed");
    assert!(got.is_none());
    assert!(ctx.tokens().is_empty());
}
