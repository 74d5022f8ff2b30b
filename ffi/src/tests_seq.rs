//! Tests of several sequences through the C ABI: `llmrt_batch` after
//! `llmrt_seq_copy` of a shared prompt gives each sequence the logits a context of
//! its own gives (f32 cache; 1e-4 of the logits' scale, the batch's rows going
//! through the matrix × matrix kernels); the sequence calls refuse bad arguments.

use crate::context::*;
use crate::logits::*;
use crate::model::*;
use crate::resources::*;
use crate::sequences::*;
use crate::state::*;
use crate::status::*;
use crate::tests::{last_error, load, model_bytes};
use std::ptr::{null, null_mut};

fn new_ctx(m: *const llmrt_model, n_ctx: u32, n_seq: u32) -> *mut llmrt_context {
    let mut p = llmrt_context_default_params();
    p.n_threads = 2;
    p.n_ctx = n_ctx;
    p.n_seq = n_seq;
    p.cache_type = LLMRT_CACHE_F32;
    let mut c = null_mut();
    // SAFETY: valid pointers.
    let st = unsafe { llmrt_context_new(m, &p, &mut c) };
    assert_eq!(st, LLMRT_OK, "{}", last_error());
    c
}

fn vocab(m: *const llmrt_model) -> usize {
    let mut i = std::mem::MaybeUninit::<llmrt_model_info>::uninit();
    // SAFETY: writable out-pointer; initialised on success.
    assert_eq!(unsafe { llmrt_model_get_info(m, i.as_mut_ptr()) }, LLMRT_OK);
    // SAFETY: written by the call above.
    unsafe { i.assume_init() }.vocab_size as usize
}

fn seq_logits(c: *const llmrt_context, seq: u32, vocab: usize) -> Result<Vec<f32>, i32> {
    let mut v = vec![f32::NAN; vocab];
    let mut n = 0;
    // SAFETY: `vocab` writable floats.
    match unsafe { llmrt_get_logits_seq(c, seq, v.as_mut_ptr(), vocab, &mut n) } {
        LLMRT_OK => Ok(v),
        st => Err(st),
    }
}

fn ith(c: *const llmrt_context, i: i64, vocab: usize) -> Result<Vec<f32>, i32> {
    let mut v = vec![f32::NAN; vocab];
    let mut n = 0;
    // SAFETY: `vocab` writable floats.
    match unsafe { llmrt_get_logits_ith(c, i, v.as_mut_ptr(), vocab, &mut n) } {
        LLMRT_OK => Ok(v),
        st => Err(st),
    }
}

fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-9);
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
        / scale
}

#[test]
fn a_batch_of_copied_sequences_equals_separate_contexts() {
    let bytes = model_bytes(41);
    let m = load(&bytes);
    let vocab = vocab(m);
    let n_seq = 3;
    let c = new_ctx(m, 3 * 64, n_seq);
    let seed = llm_format::testing::test_seed(41) as u32;
    let prompt: Vec<u32> = (0..9u32)
        .map(|i| (i.wrapping_mul(2654435761) ^ seed) % vocab as u32)
        .collect();
    // The prompt once, in sequence 0, then copied to the others.
    // SAFETY: `prompt.len()` ids.
    assert_eq!(
        unsafe { llmrt_eval(c, prompt.as_ptr(), prompt.len()) },
        LLMRT_OK
    );
    for s in 1..n_seq {
        assert_eq!(llmrt_seq_copy(c, 0, s), LLMRT_OK, "{}", last_error());
        let mut p = llmrt_sampler_default_params();
        p.seed = 100 + s as u64;
        p.temperature = 1.5;
        // SAFETY: readable params.
        assert_eq!(unsafe { llmrt_seq_set_sampler(c, s, &p) }, LLMRT_OK);
    }
    let mut n = 0;
    // SAFETY: count only (too small a buffer, which reports the size).
    assert_eq!(
        unsafe { llmrt_seq_tokens(c, 2, null_mut(), 0, &mut n) },
        LLMRT_ERR_BUFFER_TOO_SMALL
    );
    assert_eq!(n, prompt.len());
    // One context per sequence, fed the same tokens one at a time.
    let refs: Vec<_> = (0..n_seq).map(|_| new_ctx(m, 64, 1)).collect();
    let mut hist: Vec<Vec<u32>> = vec![prompt.clone(); n_seq as usize];
    for r in &refs {
        // SAFETY: `prompt.len()` ids.
        assert_eq!(
            unsafe { llmrt_eval(*r, prompt.as_ptr(), prompt.len()) },
            LLMRT_OK
        );
    }
    let mut differ = false;
    for step in 0..8 {
        let mut toks = Vec::new();
        for s in 0..n_seq {
            let mut t = 0;
            // SAFETY: writable token.
            assert_eq!(
                unsafe { llmrt_sample_seq(c, s, &mut t) },
                LLMRT_OK,
                "{}",
                last_error()
            );
            toks.push(t);
        }
        differ |= toks.windows(2).any(|w| w[0] != w[1]);
        let seqs: Vec<u32> = (0..n_seq).collect();
        // SAFETY: `n_seq` ids and sequence ids; logits NULL (each sequence's last).
        let st = unsafe { llmrt_batch(c, toks.as_ptr(), seqs.as_ptr(), null(), toks.len()) };
        assert_eq!(st, LLMRT_OK, "{}", last_error());
        for (s, r) in refs.iter().enumerate() {
            hist[s].push(toks[s]);
            // SAFETY: one id.
            assert_eq!(unsafe { llmrt_eval(*r, &toks[s], 1) }, LLMRT_OK);
            let want = seq_logits(*r, 0, vocab).expect("reference");
            let got = seq_logits(c, s as u32, vocab).expect("sequence logits");
            assert_eq!(ith(c, s as i64, vocab), Ok(got.clone()));
            let e = rel_err(&got, &want);
            assert!(e < 1e-4, "step {step} sequence {s}: relative error {e}");
        }
    }
    assert!(differ, "different seeds sampled the same tokens every time");
    for s in 0..n_seq {
        let mut got = vec![0u32; 64];
        let mut n = 0;
        // SAFETY: 64 writable ids.
        assert_eq!(
            unsafe { llmrt_seq_tokens(c, s, got.as_mut_ptr(), 64, &mut n) },
            LLMRT_OK
        );
        assert_eq!(&got[..n], &hist[s as usize][..]);
    }
    // Sequence 0's single-sequence view follows the batch.
    let mut l0 = vec![0.0; vocab];
    // SAFETY: `vocab` floats.
    assert_eq!(
        unsafe { llmrt_get_logits(c, l0.as_mut_ptr(), vocab, &mut n) },
        LLMRT_OK
    );
    assert_eq!(Ok(l0), seq_logits(c, 0, vocab));
    // Logits asked for one entry only.
    let toks = [1u32, 2, 3];
    let (seqs, want) = ([1u32, 1, 2], [1u8, 0, 0]);
    // SAFETY: three of each.
    let st = unsafe { llmrt_batch(c, toks.as_ptr(), seqs.as_ptr(), want.as_ptr(), 3) };
    assert_eq!(st, LLMRT_OK);
    assert!(ith(c, 0, vocab).is_ok());
    assert_eq!(ith(c, 1, vocab), Err(LLMRT_ERR_NO_LOGITS));
    assert_eq!(ith(c, 3, vocab), Err(LLMRT_ERR_INVALID_ARG));
    assert_eq!(seq_logits(c, 1, vocab), Err(LLMRT_ERR_NO_LOGITS));
    assert_eq!(seq_logits(c, 2, vocab), Err(LLMRT_ERR_NO_LOGITS));
    let mut t = 0;
    // SAFETY: writable token.
    assert_eq!(
        unsafe { llmrt_sample_seq(c, 2, &mut t) },
        LLMRT_ERR_NO_LOGITS
    );
    assert!(
        seq_logits(c, 0, vocab).is_ok(),
        "sequence 0 was not in the batch"
    );

    // The state file holds sequence 0 only.
    let path = std::env::temp_dir().join(format!("llmrt-seq-{}.kv", std::process::id()));
    let cpath = std::ffi::CString::new(path.to_str().expect("utf-8")).expect("path");
    // SAFETY: NUL-terminated path.
    assert_eq!(
        unsafe { llmrt_state_save(c, cpath.as_ptr()) },
        LLMRT_ERR_INVALID_ARG
    );
    assert!(
        last_error().contains("sequence 1 holds tokens"),
        "{}",
        last_error()
    );
    for s in 1..n_seq {
        assert_eq!(llmrt_seq_remove(c, s), LLMRT_OK);
        assert_eq!(seq_logits(c, s, vocab), Err(LLMRT_ERR_NO_LOGITS));
    }
    // SAFETY: NUL-terminated path.
    assert_eq!(
        unsafe { llmrt_state_save(c, cpath.as_ptr()) },
        LLMRT_OK,
        "{}",
        last_error()
    );
    let _ = std::fs::remove_file(&path);
    for r in refs {
        assert_eq!(llmrt_context_free(r), LLMRT_OK);
    }
    assert_eq!(llmrt_context_free(c), LLMRT_OK);
    assert_eq!(llmrt_model_free(m), LLMRT_OK);
}

#[test]
fn sequence_calls_refuse_bad_arguments() {
    let bytes = model_bytes(42);
    let m = load(&bytes);
    let vocab = vocab(m);
    let c = new_ctx(m, 2 * 8, 2);
    let mut n = 0;
    // SAFETY: the checked out-pointer.
    assert_eq!(unsafe { llmrt_context_n_ctx(c, &mut n) }, LLMRT_OK);
    assert_eq!(n, 8, "each of 2 sequences holds half of 16");
    let toks = [1u32, 2, 3];
    let bad_seq = [0u32, 2, 0];
    // SAFETY (the calls below): arrays of the lengths given, or NULL.
    unsafe {
        assert_eq!(
            llmrt_batch(c, toks.as_ptr(), bad_seq.as_ptr(), null(), 3),
            LLMRT_ERR_INVALID_ARG
        );
        assert!(last_error().contains("sequence 2"), "{}", last_error());
        assert_eq!(
            llmrt_batch(c, toks.as_ptr(), null(), null(), 0),
            LLMRT_ERR_INVALID_ARG
        );
        assert_eq!(llmrt_batch(c, null(), null(), null(), 3), LLMRT_ERR_NULL);
        assert_eq!(
            llmrt_batch(null_mut(), toks.as_ptr(), null(), null(), 3),
            LLMRT_ERR_NULL
        );
        let junk = 0x1234usize as *mut llmrt_context;
        assert_eq!(
            llmrt_batch(junk, toks.as_ptr(), null(), null(), 3),
            LLMRT_ERR_BAD_HANDLE
        );
        assert_eq!(
            llmrt_batch(c, toks.as_ptr(), null(), null(), usize::MAX),
            LLMRT_ERR_INVALID_ARG
        );
        let oov = [vocab as u32];
        assert_eq!(
            llmrt_batch(c, oov.as_ptr(), null(), null(), 1),
            LLMRT_ERR_BAD_TOKEN
        );
        let nine = [1u32; 9];
        assert_eq!(
            llmrt_batch(c, nine.as_ptr(), null(), null(), 9),
            LLMRT_ERR_CONTEXT_FULL
        );
        // Nothing evaluated by the refused calls.
        assert_eq!(llmrt_seq_tokens(c, 0, null_mut(), 0, &mut n), LLMRT_OK);
        assert_eq!(n, 0);
        assert_eq!(
            llmrt_seq_tokens(c, 2, null_mut(), 0, &mut n),
            LLMRT_ERR_INVALID_ARG
        );
        assert_eq!(
            llmrt_seq_tokens(c, 0, null_mut(), 0, null_mut()),
            LLMRT_ERR_NULL
        );
        // seq_ids NULL: every entry in sequence 0.
        assert_eq!(llmrt_batch(c, toks.as_ptr(), null(), null(), 3), LLMRT_OK);
        assert_eq!(
            llmrt_seq_tokens(c, 0, null_mut(), 0, &mut n),
            LLMRT_ERR_BUFFER_TOO_SMALL
        );
        assert_eq!(n, 3);
        let mut small = [0u32; 2];
        assert_eq!(
            llmrt_seq_tokens(c, 0, small.as_mut_ptr(), 2, &mut n),
            LLMRT_ERR_BUFFER_TOO_SMALL
        );
        let mut t = 0;
        assert_eq!(llmrt_sample_seq(c, 1, &mut t), LLMRT_ERR_NO_LOGITS);
        assert_eq!(llmrt_sample_seq(c, 0, null_mut()), LLMRT_ERR_NULL);
        assert_eq!(llmrt_sample_seq(c, 5, &mut t), LLMRT_ERR_INVALID_ARG);
        assert_eq!(llmrt_sample_seq(c, 0, &mut t), LLMRT_OK);
        assert!((t as usize) < vocab);
        let p = llmrt_sampler_default_params();
        assert_eq!(llmrt_seq_set_sampler(c, 1, null()), LLMRT_ERR_NULL);
        assert_eq!(llmrt_seq_set_sampler(c, 2, &p), LLMRT_ERR_INVALID_ARG);
        let mut bad = p;
        bad.temperature = f32::NAN;
        assert_eq!(llmrt_seq_set_sampler(c, 1, &bad), LLMRT_ERR_INVALID_ARG);
        // A grammar belongs to the single-sequence calls.
        let g = b"root ::= [a-z]+";
        let mut gp = p;
        gp.grammar_kind = LLMRT_GRAMMAR_GBNF;
        gp.grammar = g.as_ptr().cast();
        gp.grammar_len = g.len();
        assert_eq!(llmrt_seq_set_sampler(c, 1, &gp), LLMRT_ERR_INVALID_ARG);
        assert!(last_error().contains("single-sequence"), "{}", last_error());
        assert_eq!(llmrt_set_sampler(c, &gp), LLMRT_OK, "{}", last_error());
        assert_eq!(llmrt_sample_seq(c, 0, &mut t), LLMRT_ERR_INVALID_ARG);
        assert!(last_error().contains("grammar"), "{}", last_error());
        assert_eq!(llmrt_seq_set_sampler(c, 0, &p), LLMRT_OK);
        assert_eq!(llmrt_sample_seq(c, 0, &mut t), LLMRT_OK, "grammar cleared");
        let mut l = vec![0.0f32; vocab];
        assert_eq!(
            llmrt_get_logits_seq(c, 0, l.as_mut_ptr(), vocab - 1, &mut n),
            LLMRT_ERR_BUFFER_TOO_SMALL
        );
        assert_eq!(n, vocab);
        assert_eq!(
            llmrt_get_logits_seq(c, 9, l.as_mut_ptr(), vocab, &mut n),
            LLMRT_ERR_INVALID_ARG
        );
        assert_eq!(
            llmrt_get_logits_seq(null(), 0, l.as_mut_ptr(), vocab, &mut n),
            LLMRT_ERR_NULL
        );
    }
    assert_eq!(llmrt_seq_copy(c, 0, 2), LLMRT_ERR_INVALID_ARG);
    assert_eq!(llmrt_seq_copy(c, 7, 0), LLMRT_ERR_INVALID_ARG);
    assert_eq!(llmrt_seq_copy(null_mut(), 0, 1), LLMRT_ERR_NULL);
    assert_eq!(llmrt_seq_remove(c, 2), LLMRT_ERR_INVALID_ARG);
    assert_eq!(llmrt_seq_remove(null_mut(), 0), LLMRT_ERR_NULL);
    assert_eq!(llmrt_seq_truncate(c, 0, 4), LLMRT_ERR_INVALID_ARG);
    assert_eq!(llmrt_seq_truncate(c, 3, 0), LLMRT_ERR_INVALID_ARG);
    assert_eq!(llmrt_seq_copy(c, 0, 1), LLMRT_OK);
    assert_eq!(llmrt_seq_truncate(c, 1, 1), LLMRT_OK);
    // SAFETY: count only.
    assert_eq!(
        unsafe { llmrt_seq_tokens(c, 1, null_mut(), 0, &mut n) },
        LLMRT_ERR_BUFFER_TOO_SMALL
    );
    assert_eq!(n, 1);
    assert_eq!(llmrt_kv_reset(c), LLMRT_OK);
    // SAFETY: count only.
    assert_eq!(
        unsafe { llmrt_seq_tokens(c, 1, null_mut(), 0, &mut n) },
        LLMRT_OK
    );
    assert_eq!(n, 0, "reset empties every sequence");

    // Sizes: more sequences than MAX_SEQ or than positions; what bytes_needed counts.
    let mut p = llmrt_context_default_params();
    let mut out = null_mut();
    for (n_ctx, n_seq) in [(64, 257), (3, 4)] {
        p.n_ctx = n_ctx;
        p.n_seq = n_seq;
        // SAFETY: valid pointers.
        assert_eq!(
            unsafe { llmrt_context_new(m, &p, &mut out) },
            LLMRT_ERR_INVALID_ARG
        );
        assert!(out.is_null());
    }
    let need = |n_seq| {
        let mut p = llmrt_context_default_params();
        p.n_ctx = 64;
        p.n_seq = n_seq;
        let mut b = 0u64;
        // SAFETY: valid pointers.
        assert_eq!(
            unsafe { llmrt_context_bytes_needed(m, &p, &mut b) },
            LLMRT_OK
        );
        b
    };
    // The model has 4 heads: four sequences add three rows of logits and shorten the
    // attention scratch to a quarter of the context (the cache bytes are the same).
    assert_eq!(need(0), need(1));
    assert_eq!(need(4) + 4 * 4 * 48, need(1) + 3 * 4 * vocab as u64);
    assert_eq!(llmrt_context_free(c), LLMRT_OK);
    assert_eq!(llmrt_model_free(m), LLMRT_OK);
}
