//! Several sequences in one context: a batch of tokens of several sequences gives
//! the logits that separate single-sequence contexts give for the same tokens
//! (random models, random prompts of different lengths, the exact f32 cache), also
//! after `seq_copy` of a shared prefix, `seq_remove` and `seq_truncate`; bad batches
//! are refused before anything changes; the state file holds sequence 0 only.
//!
//! Tolerance: 1e-4 of the logits' scale. A batch's rows go through the prompt's
//! matrix × matrix kernels where a lone token goes through the matrix × vector ones,
//! so the sums are the same products in another f32 order (and, for quantised
//! weights, the same integer dots); attention and everything row-wise is the same
//! code on the same cache rows.

use llm_format::{DType, Mlp, ModelOptions, Norm, Positions};
use llmrt::{BatchEntry, CacheType, Context, ContextParams, Error, Model};
use llmrt_suite::fixtures::*;
use llmrt_suite::rng::{test_seed, Rng};
use std::sync::Arc;

const TOL: f64 = 1e-4;

/// Max |a - b| over max |b|.
fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-9) as f64;
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() as f64)
        .fold(0.0, f64::max)
        / scale
}

/// The model options under test: RoPE with GQA and SwiGLU (llama), and learned
/// positions with LayerNorm and biases (GPT-2), whose positions enter at the
/// embedding, so each row's own position is checked twice over.
fn models(seed: u64) -> Vec<(&'static str, Arc<Model>)> {
    // Head size 32 (every cache type applies), grouped attention.
    let llama = ModelOptions {
        d_model: 128,
        max_len: 256,
        ..opts(Positions::Rope, Norm::RmsNorm, Mlp::SwiGlu, false, false, 2)
    };
    let gpt2 = ModelOptions {
        max_len: 64,
        ..opts(
            Positions::Learned,
            Norm::LayerNorm,
            Mlp::Gelu,
            true,
            true,
            4,
        )
    };
    [
        ("llama q8_0", llama, DType::Q8_0),
        ("gpt2 f32", gpt2, DType::F32),
    ]
    .into_iter()
    .map(|(name, o, dt)| {
        let (bytes, _) = write_model(&o, &random_weights(&o, seed), dt);
        (name, Arc::new(Model::from_bytes(&bytes).expect("load")))
    })
    .collect()
}

fn ctx(m: &Arc<Model>, n_ctx: usize, n_seq: usize, n_batch: usize) -> Context {
    let p = ContextParams {
        n_ctx,
        n_batch,
        threads: 2,
        cache_type: CacheType::F32,
        n_seq,
        f16_exact: true,
    };
    Context::new(m.clone(), &p).expect("context")
}

fn random_tokens(rng: &mut Rng, n: usize, vocab: usize) -> Vec<u32> {
    (0..n).map(|_| rng.below(vocab as u64) as u32).collect()
}

/// One sequence's reference: a context of its own, fed token by token (the
/// single-sequence API, matrix × vector), keeping the logits after each token.
struct Single {
    ctx: Context,
    logits: Vec<Vec<f32>>,
}

impl Single {
    fn new(m: &Arc<Model>, n_ctx: usize) -> Single {
        Single {
            ctx: ctx(m, n_ctx, 1, 16),
            logits: Vec::new(),
        }
    }

    fn feed(&mut self, tokens: &[u32]) {
        for &t in tokens {
            let l = self.ctx.eval(&[t]).expect("eval").to_vec();
            self.logits.push(l);
        }
    }

    fn last(&self) -> &[f32] {
        self.logits.last().expect("fed")
    }
}

fn entry(token: u32, seq: usize, logits: bool) -> BatchEntry {
    BatchEntry { token, seq, logits }
}

#[test]
fn batched_sequences_equal_separate_contexts() {
    let seed = test_seed(31);
    for (name, m) in models(seed) {
        let vocab = m.opts.vocab_size;
        let seq_ctx = m.opts.max_len.min(64);
        let n_seq = 4;
        let mut rng = Rng::new(seed ^ 0x5e9);
        // n_batch 8: the interleaved prompts go through in several chunks.
        let mut b = ctx(&m, n_seq * seq_ctx, n_seq, 8);
        assert_eq!((b.n_seq(), b.n_ctx()), (n_seq, seq_ctx));
        let lens = [5, 17, 1, 11];
        let prompts: Vec<Vec<u32>> = lens
            .iter()
            .map(|&n| random_tokens(&mut rng, n, vocab))
            .collect();
        let mut refs: Vec<Single> = (0..n_seq).map(|_| Single::new(&m, seq_ctx)).collect();
        for (r, p) in refs.iter_mut().zip(&prompts) {
            r.feed(p);
        }

        // The prompts interleaved round-robin in one batch; logits for every entry
        // of sequences 1 and 3, the last one only of the others.
        let mut batch = Vec::new();
        for i in 0..*lens.iter().max().expect("lens") {
            for (s, p) in prompts.iter().enumerate() {
                if let Some(&t) = p.get(i) {
                    batch.push(entry(t, s, s % 2 == 1 || i + 1 == p.len()));
                }
            }
        }
        b.eval_batch(&batch).expect("batch");
        let mut seen = vec![0; n_seq];
        for (i, e) in batch.iter().enumerate() {
            let at = seen[e.seq];
            seen[e.seq] += 1;
            match b.batch_logits(i) {
                Some(got) => {
                    assert!(e.logits, "{name}: logits nobody asked for");
                    let err = rel_err(got, &refs[e.seq].logits[at]);
                    assert!(
                        err < TOL,
                        "{name}: entry {i} (seq {} pos {at}): {err}",
                        e.seq
                    );
                }
                None => assert!(!e.logits, "{name}: entry {i} lost its logits"),
            }
        }
        for (s, r) in refs.iter().enumerate() {
            assert_eq!(b.seq_tokens(s).expect("seq"), &prompts[s][..]);
            let err = rel_err(b.seq_logits(s).expect("seq").expect("logits"), r.last());
            assert!(err < TOL, "{name}: seq {s} after the prompt: {err}");
        }
        assert_eq!(b.logits(), b.seq_logits(0).expect("seq").expect("logits"));

        // Decoding: one token per sequence per batch, logits on, different tokens.
        let decode = |b: &mut Context, refs: &mut [Single], rng: &mut Rng, steps: usize| {
            for step in 0..steps {
                let toks = random_tokens(rng, n_seq, vocab);
                let batch: Vec<_> = toks
                    .iter()
                    .enumerate()
                    .map(|(s, &t)| entry(t, s, true))
                    .collect();
                b.eval_batch(&batch).expect("decode");
                for (s, r) in refs.iter_mut().enumerate() {
                    r.feed(&toks[s..s + 1]);
                    let got = b.batch_logits(s).expect("asked");
                    assert_eq!(Some(got), b.seq_logits(s).expect("seq"));
                    let err = rel_err(got, r.last());
                    assert!(err < TOL, "{name}: step {step} seq {s}: {err}");
                }
            }
        };
        decode(&mut b, &mut refs, &mut rng, 6);

        // seq_copy: sequence 2 becomes a copy of sequence 1 (a shared prefix), and
        // the two go on with different tokens. Its reference is sequence 1's history.
        b.seq_copy(1, 2).expect("copy");
        assert_eq!(b.seq_tokens(2).expect("seq"), b.seq_tokens(1).expect("seq"));
        assert_eq!(b.seq_logits(2).expect("seq"), b.seq_logits(1).expect("seq"));
        let mut copy = Single::new(&m, seq_ctx);
        copy.feed(b.seq_tokens(1).expect("seq"));
        let err = rel_err(b.seq_logits(2).expect("seq").expect("copied"), copy.last());
        assert!(err < TOL, "{name}: copied logits: {err}");
        refs[2] = copy;

        // seq_remove: sequence 0 starts again with a new prompt; seq_truncate:
        // sequence 3 keeps its first 4 tokens.
        b.seq_remove(0).expect("remove");
        assert!(b.seq_tokens(0).expect("seq").is_empty());
        assert_eq!(b.seq_logits(0).expect("seq"), None);
        let fresh = random_tokens(&mut rng, 9, vocab);
        b.eval(&fresh)
            .expect("sequence 0 through the single-sequence API");
        refs[0] = Single::new(&m, seq_ctx);
        refs[0].feed(&fresh);
        let kept = b.seq_tokens(3).expect("seq")[..4].to_vec();
        b.seq_truncate(3, 4).expect("truncate");
        assert_eq!(b.seq_tokens(3).expect("seq"), &kept[..]);
        assert_eq!(b.seq_logits(3).expect("seq"), None);
        refs[3] = Single::new(&m, seq_ctx);
        refs[3].feed(&kept);
        // One batch with several tokens for sequence 3 (re-growing it) and one for
        // each other sequence.
        let more = random_tokens(&mut rng, 5, vocab);
        let mut batch: Vec<_> = more.iter().map(|&t| entry(t, 3, true)).collect();
        let others = random_tokens(&mut rng, 3, vocab);
        for (s, &t) in others.iter().enumerate() {
            batch.insert(2 * s, entry(t, s, true));
        }
        b.eval_batch(&batch).expect("batch");
        refs[3].feed(&more);
        for s in 0..3 {
            refs[s].feed(&others[s..s + 1]);
        }
        for (s, r) in refs.iter().enumerate() {
            let err = rel_err(b.seq_logits(s).expect("seq").expect("logits"), r.last());
            assert!(
                err < TOL,
                "{name}: seq {s} after copy/remove/truncate: {err}"
            );
        }
        decode(&mut b, &mut refs, &mut rng, 3);
        // Every logits row computed along the way is distinct between sequences.
        assert_ne!(refs[1].last(), refs[2].last());
    }
}

#[test]
fn bad_batches_change_nothing() {
    let seed = test_seed(32);
    let (_, m) = models(seed).remove(0);
    let vocab = m.opts.vocab_size;
    let mut b = ctx(&m, 3 * 10, 3, 4);
    assert_eq!(b.n_ctx(), 10);
    let mut rng = Rng::new(seed);
    let toks = random_tokens(&mut rng, 8, vocab);
    let batch: Vec<_> = toks
        .iter()
        .enumerate()
        .map(|(i, &t)| entry(t, i % 3, true))
        .collect();
    b.eval_batch(&batch).expect("batch");
    let lens = |b: &Context| {
        (0..3)
            .map(|s| b.seq_tokens(s).expect("seq").len())
            .collect::<Vec<_>>()
    };
    let before = lens(&b);
    assert_eq!(before, [3, 3, 2]);
    let logits = b.seq_logits(1).expect("seq").expect("logits").to_vec();

    let e = b.eval_batch(&[entry(toks[0], 0, true), entry(toks[1], 3, true)]);
    assert!(
        matches!(&e, Err(Error::Invalid(m)) if m.contains("sequence 3")),
        "{e:?}"
    );
    let e = b.eval_batch(&[entry(toks[0], 0, true), entry(vocab as u32, 1, true)]);
    assert!(matches!(e, Err(Error::BadToken(..))), "{e:?}");
    let e = b.eval_batch(&[]);
    assert!(matches!(e, Err(Error::EmptyPrompt)), "{e:?}");
    // Sequence 1 holds 3 of its 10: 8 more do not fit, even though the context's
    // other regions are nearly empty.
    let full: Vec<_> = (0..8).map(|i| entry(toks[i], 1, false)).collect();
    let e = b.eval_batch(&full);
    assert!(matches!(e, Err(Error::ContextFull(11, 10))), "{e:?}");
    assert!(matches!(b.seq_copy(0, 3), Err(Error::Invalid(_))));
    assert!(matches!(b.seq_remove(7), Err(Error::Invalid(_))));
    assert!(b.seq_logits(3).is_err() && b.seq_tokens(3).is_err());
    assert_eq!(lens(&b), before, "a refused batch changed the cache");
    assert_eq!(b.seq_logits(1).expect("seq").expect("logits"), &logits[..]);
    // Only the last batch's rows are kept: after a refused one, the old ones stay;
    // an evaluation of sequence 0 ends them.
    assert!(b.batch_logits(0).is_some());
    b.eval(&toks[..1]).expect("eval");
    assert!(b.batch_logits(0).is_none());
    assert_eq!(
        b.seq_copy(1, 1).map(|_| lens(&b)).expect("self copy"),
        [4, 3, 2]
    );

    // Sizes: more sequences than positions, more than MAX_SEQ.
    for (n_ctx, n_seq) in [(3, 4), (4096, llmrt::context::MAX_SEQ + 1)] {
        let p = ContextParams {
            n_ctx,
            n_seq,
            ..ContextParams::default()
        };
        assert!(Context::new(m.clone(), &p).is_err(), "{n_ctx} {n_seq}");
        assert!(p.bytes_needed(&m.opts).is_err());
    }
}

#[test]
fn sequences_share_one_cache_budget() {
    let seed = test_seed(33);
    let (_, m) = models(seed).remove(0);
    let vocab = m.opts.vocab_size;
    let n_ctx = 256;
    for ty in CacheType::ALL {
        let p = |n_seq| ContextParams {
            n_ctx,
            n_batch: 32,
            threads: 1,
            cache_type: ty,
            n_seq,
            f16_exact: false,
        };
        let one = p(1).bytes_needed(&m.opts).expect("size");
        let four = p(4).bytes_needed(&m.opts).expect("size");
        let cache = llmrt::kv_cache::KvCache::bytes_for(ty, &m.opts, n_ctx).expect("cache");
        let quarter = llmrt::kv_cache::KvCache::bytes_for(ty, &m.opts, n_ctx / 4).expect("cache");
        // Four regions of a quarter each: the same cache bytes as one sequence, plus
        // three more rows of logits, less the attention scratch of the shorter rows.
        assert_eq!(4 * quarter, cache, "{ty}");
        let h = m.opts.n_heads as u64;
        assert_eq!(
            four + h * (n_ctx as u64 * 3 / 4) * 4,
            one + 3 * vocab as u64 * 4,
            "{ty}"
        );
        // Every region full: what bytes_needed counted for the cache.
        let mut c = Context::new(m.clone(), &p(4)).expect("context");
        let mut rng = Rng::new(seed);
        for s in 0..4 {
            let batch: Vec<_> = random_tokens(&mut rng, n_ctx / 4, vocab)
                .into_iter()
                .map(|t| entry(t, s, false))
                .collect();
            c.eval_batch(&batch).expect("fill");
        }
        assert_eq!(c.kv_bytes(), cache, "{ty}");
    }
}

#[test]
fn state_files_hold_sequence_zero() {
    let seed = test_seed(34);
    let (_, m) = models(seed).remove(0);
    let vocab = m.opts.vocab_size;
    let mut rng = Rng::new(seed);
    let mut b = ctx(&m, 2 * 64, 2, 16);
    let toks = random_tokens(&mut rng, 12, vocab);
    b.eval(&toks[..7]).expect("eval");
    b.seq_copy(0, 1).expect("copy");
    let mut saved = Vec::new();
    let e = b.save_state(&mut saved);
    assert!(
        matches!(&e, Err(Error::Invalid(m)) if m.contains("sequence 1 holds tokens")),
        "{e:?}"
    );
    assert!(saved.is_empty());
    b.seq_remove(1).expect("remove");
    b.save_state(&mut saved).expect("save");
    // Into a single-sequence context, and back into a two-sequence one whose
    // sequence 1 held tokens: sequence 0 restored, the others emptied.
    let mut one = ctx(&m, 64, 1, 16);
    one.load_state(&mut saved.as_slice()).expect("load");
    let mut two = ctx(&m, 2 * 64, 2, 16);
    two.eval_batch(&[entry(toks[8], 1, true)]).expect("seq 1");
    two.load_state(&mut saved.as_slice()).expect("load");
    assert!(two.seq_tokens(1).expect("seq").is_empty());
    assert_eq!(two.seq_logits(1).expect("seq"), None);
    for c in [&mut one, &mut two] {
        assert_eq!(c.tokens(), &toks[..7]);
        assert_eq!(c.logits(), b.logits());
    }
    let want = b.eval(&toks[7..]).expect("eval").to_vec();
    for c in [&mut one, &mut two] {
        let got = c.eval(&toks[7..]).expect("eval");
        assert_eq!(got, &want[..], "the same rows, the same arithmetic");
    }
}

/// Writes a random-weight model of the stories110M shape (dim 768, hidden 2048, 12
/// layers, 12 heads, vocab 32000, untied output; the shape of `benches/e2e.rs` and
/// `scripts/bench-vs-llamacpp.sh`) to `$LLMRT_BENCH_MODEL`, its matrices in
/// `$LLMRT_BENCH_DTYPE` (default q8_0), for `llm-run bench --seqs` (docs/PERF.md);
/// with `LLMRT_BENCH_SHAPE=smollm2`, SmolLM2-135M's shape instead (dim 576, hidden
/// 1536, 30 layers, 9 heads over 3 KV heads, vocab 49152, tied), for the GPU bench
/// of `scripts/gpu-check.sh`, where no model can be downloaded:
///
/// `LLMRT_BENCH_MODEL=/tmp/110m-q8_0.llm cargo test --release --test sequences -- --ignored`
#[test]
#[ignore = "writes a 110M model for benchmarks; run with --ignored"]
fn write_110m_bench_model() {
    let Ok(path) = std::env::var("LLMRT_BENCH_MODEL") else {
        eprintln!("SKIP write_110m_bench_model: LLMRT_BENCH_MODEL is not set");
        return;
    };
    let dtype = std::env::var("LLMRT_BENCH_DTYPE").unwrap_or_else(|_| "q8_0".into());
    let dtype = DType::from_name(&dtype).expect("LLMRT_BENCH_DTYPE: a dtype name");
    let base = opts(
        Positions::Rope,
        Norm::RmsNorm,
        Mlp::SwiGlu,
        false,
        false,
        12,
    );
    let o = match std::env::var("LLMRT_BENCH_SHAPE").as_deref() {
        Ok("smollm2") => ModelOptions {
            vocab_size: 49152,
            d_model: 576,
            n_layers: 30,
            n_heads: 9,
            n_kv_heads: 3,
            d_ff: 1536,
            max_len: 2048,
            tied_embeddings: true,
            rope_base: 100000.0,
            ..base
        },
        Ok("110m") | Err(_) => ModelOptions {
            vocab_size: 32000,
            d_model: 768,
            n_layers: 12,
            n_heads: 12,
            n_kv_heads: 12,
            d_ff: 2048,
            max_len: 1024,
            ..base
        },
        Ok(other) => panic!("LLMRT_BENCH_SHAPE: 110m or smollm2, not {other}"),
    };
    let (bytes, _) = write_model(&o, &random_weights(&o, 0x5eed), dtype);
    std::fs::write(&path, &bytes).expect("write the model");
    Model::from_bytes(&bytes).expect("it loads");
    eprintln!("wrote {path} ({} MiB, {dtype})", bytes.len() >> 20);
}
