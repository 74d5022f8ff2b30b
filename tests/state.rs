//! Saving and restoring a context's state: a context restored from a saved state
//! gives exactly the logits of the context it was saved from, for the next tokens
//! too, with every cache type; a state that does not belong (another model, cache
//! type, version, a context too small, a truncated or corrupt file) is refused with
//! one line and leaves the context as it was.

use llm_format::{DType, Mlp, ModelOptions, Norm, Positions};
use llmrt::{CacheType, Context, ContextParams, Model};
use llmrt_suite::fixtures::*;
use llmrt_suite::rng::test_seed;
use std::sync::Arc;

fn model(seed: u64) -> Arc<Model> {
    // Head size 32, so that every cache type applies; grouped attention.
    let o = ModelOptions {
        n_heads: 2,
        max_len: 400,
        ..opts(Positions::Rope, Norm::RmsNorm, Mlp::SwiGlu, false, false, 1)
    };
    let (bytes, _) = write_model(&o, &random_weights(&o, seed), DType::Q8_0);
    Arc::new(Model::from_bytes(&bytes).expect("load"))
}

fn ctx(m: &Arc<Model>, n_ctx: usize, cache_type: CacheType) -> Context {
    let p = ContextParams {
        n_ctx,
        n_batch: 16,
        threads: 2,
        cache_type,
        n_seq: 1,
        f16_exact: false,
    };
    Context::new(m.clone(), &p).expect("context")
}

fn tokens(seed: u64, n: usize, vocab: usize) -> Vec<u32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % vocab as u64) as u32
        })
        .collect()
}

#[test]
fn a_restored_context_continues_exactly() {
    let seed = test_seed(1);
    let m = model(seed);
    let vocab = m.opts.vocab_size;
    // A prompt that crosses a block of the cache (256), then 5 more tokens.
    let toks = tokens(seed, 300 + 5, vocab);
    let (prompt, next) = toks.split_at(300);
    for ty in CacheType::ALL {
        let mut a = ctx(&m, 400, ty);
        a.eval(prompt).expect("eval");
        let mut saved = Vec::new();
        a.save_state(&mut saved).expect("save");
        // A fresh context of another length and batch size, through a file.
        let path = temp_file(&format!("state-{ty}.kv"), &[]);
        a.save_state_file(&path).expect("save file");
        assert_eq!(std::fs::read(&path).expect("read"), saved);
        let mut b = ctx(&m, 320, ty);
        b.eval(&toks[..7]).expect("something to replace");
        b.load_state_file(&path).expect("load");
        assert_eq!(b.tokens(), prompt);
        assert_eq!(b.logits(), a.logits(), "{ty}: the saved logits");
        for (i, &t) in next.iter().enumerate() {
            let want = a.eval(&[t]).expect("eval").to_vec();
            let got = b.eval(&[t]).expect("eval").to_vec();
            // Bit for bit: the same cache rows, the same arithmetic.
            assert_eq!(
                got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                "{ty}: token {i} after the restore"
            );
        }
        // An empty context saves and restores too.
        let mut e = Vec::new();
        ctx(&m, 16, ty).save_state(&mut e).expect("save empty");
        b.load_state(&mut e.as_slice()).expect("load empty");
        assert!(b.tokens().is_empty());
    }
}

#[test]
fn a_state_that_does_not_belong_is_refused_and_changes_nothing() {
    let seed = test_seed(2);
    let m = model(seed);
    let vocab = m.opts.vocab_size;
    let mut a = ctx(&m, 64, CacheType::F16);
    a.eval(&tokens(seed, 40, vocab)).expect("eval");
    let mut good = Vec::new();
    a.save_state(&mut good).expect("save");

    let mut b = ctx(&m, 64, CacheType::F16);
    let before = tokens(seed ^ 9, 5, vocab);
    b.eval(&before).expect("eval");
    let logits = b.logits().to_vec();
    let refuse = |b: &mut Context, bytes: &[u8], want: &str| {
        let e = b.load_state(&mut &bytes[..]).expect_err(want).to_string();
        assert!(e.contains(want) && !e.contains('\n'), "{want}: got '{e}'");
    };
    let mut bad = good.clone();
    bad[0] ^= 1;
    refuse(&mut b, &bad, "bad magic");
    let mut bad = good.clone();
    bad[8] = 2;
    refuse(&mut b, &bad, "version 2");
    refuse(&mut b, &good[..good.len() - 1], "truncated");
    refuse(&mut b, &good[..30], "truncated");
    let mut long = good.clone();
    long.push(0);
    refuse(&mut b, &long, "past its end");
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x40;
    refuse(&mut b, &bad, "checksum");
    // Another model (other weights), another cache type, a smaller context.
    let other = model(seed ^ 0x5555);
    refuse(&mut ctx(&other, 64, CacheType::F16), &good, "another model");
    refuse(
        &mut ctx(&m, 64, CacheType::Q8_0),
        &good,
        "cache type is f16",
    );
    refuse(&mut ctx(&m, 32, CacheType::F16), &good, "do not fit");
    // b is untouched by all of this.
    assert_eq!(b.tokens(), before);
    assert_eq!(b.logits(), logits);
    b.load_state(&mut good.as_slice())
        .expect("the good one loads");
    assert_eq!(b.logits(), a.logits());
    // A missing file names itself.
    let e = b
        .load_state_file(std::path::Path::new("/nonexistent/x.kv"))
        .expect_err("missing");
    assert!(e.to_string().starts_with("/nonexistent/x.kv: "), "{e}");
}
