//! Tests of the entry points for apps: every position's logits, embeddings,
//! cancelling the running call only, a context's size and threads, load progress.

use crate::context::*;
use crate::embed::*;
use crate::generate::*;
use crate::load::*;
use crate::logits::*;
use crate::model::*;
use crate::resources::*;
use crate::status::*;
use crate::tests::{context, last_error, load, model_bytes};
use std::ffi::c_void;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicBool, Ordering};

fn info(m: *const llmrt_model) -> llmrt_model_info {
    let mut i = std::mem::MaybeUninit::<llmrt_model_info>::uninit();
    // SAFETY: writable out-pointer; initialised on success.
    assert_eq!(unsafe { llmrt_model_get_info(m, i.as_mut_ptr()) }, LLMRT_OK);
    // SAFETY: written by the call above.
    unsafe { i.assume_init() }
}

fn ids(vocab: u32, n: usize, salt: u32) -> Vec<u32> {
    let seed = llm_format::testing::test_seed(0) as u32;
    (0..n as u32)
        .map(|i| (i.wrapping_mul(2654435761) ^ seed.wrapping_add(salt)) % vocab)
        .collect()
}

fn ith(c: *const llmrt_context, i: i64, vocab: usize) -> Result<Vec<f32>, i32> {
    let mut v = vec![f32::NAN; vocab];
    let mut n = 0;
    // SAFETY: `vocab` writable floats.
    let st = unsafe { llmrt_get_logits_ith(c, i, v.as_mut_ptr(), vocab, &mut n) };
    if st != LLMRT_OK {
        return Err(st);
    }
    assert_eq!(n, vocab);
    Ok(v)
}

fn max_rel(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-9);
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
        / scale
}

#[test]
fn all_logits_equal_evaluating_one_token_at_a_time() {
    let bytes = model_bytes(21);
    let m = load(&bytes);
    let vocab = info(m).vocab_size as usize;
    let toks = ids(vocab as u32, 19, 1);
    let mut p = llmrt_context_default_params();
    p.n_threads = 2;
    p.n_batch = 7; // three chunks
    let mut c = null_mut();
    // SAFETY: valid pointers.
    assert_eq!(unsafe { llmrt_context_new(m, &p, &mut c) }, LLMRT_OK);
    // SAFETY: `toks.len()` ids.
    assert_eq!(
        unsafe { llmrt_eval_all(c, toks.as_ptr(), toks.len()) },
        LLMRT_OK,
        "{}",
        last_error()
    );
    let all: Vec<Vec<f32>> = (0..toks.len())
        .map(|i| ith(c, i as i64, vocab).expect("row"))
        .collect();
    assert_eq!(ith(c, -1, vocab).expect("-1"), all[toks.len() - 1]);
    assert_eq!(ith(c, -(toks.len() as i64), vocab).expect("-n"), all[0]);
    assert_eq!(ith(c, toks.len() as i64, vocab), Err(LLMRT_ERR_INVALID_ARG));
    assert_eq!(
        ith(c, -(toks.len() as i64) - 1, vocab),
        Err(LLMRT_ERR_INVALID_ARG)
    );

    // One token at a time, each through llmrt_eval + llmrt_get_logits. The batched
    // products compute the same sums in another f32 order: on AVX-512 a prompt's
    // output is one chain of FMAs per 256 columns (16 rows interleaved, one per
    // lane), a single row's 64 partial sums. With rows of 32–64 random weights
    // (Σ|w·x| several times |Σ w·x|) and two layers that moves the logits by up to
    // about 2e-5 of their scale; 1e-4 still catches a wrong row or position. Where
    // the CPU has AMX tiles, the batch's products are three bf16 products each
    // (`Cpu::f32_tile_products`, about 2⁻¹⁶ of each term): up to about 2e-4, so 1e-3.
    let tol = if rt::kernels::Cpu::new(1).amx_prompts() {
        1e-3
    } else {
        1e-4
    };
    let one = context(m, 1);
    for (i, t) in toks.iter().enumerate() {
        // SAFETY: one id.
        assert_eq!(unsafe { llmrt_eval(one, t, 1) }, LLMRT_OK);
        let mut want = vec![0.0; vocab];
        let mut n = 0;
        // SAFETY: `vocab` floats.
        let st = unsafe { llmrt_get_logits(one, want.as_mut_ptr(), vocab, &mut n) };
        assert_eq!(st, LLMRT_OK);
        let e = max_rel(&all[i], &want);
        assert!(e < tol, "position {i}: relative error {e}");
    }
    // Distinct rows: the test would notice a row copied to every position.
    assert_ne!(all[0], all[1]);

    // After a plain llmrt_eval only the last row is kept.
    let tail = ids(vocab as u32, 3, 2);
    // SAFETY: three ids.
    assert_eq!(unsafe { llmrt_eval(c, tail.as_ptr(), 3) }, LLMRT_OK);
    assert!(ith(c, 2, vocab).is_ok());
    assert_eq!(ith(c, -1, vocab), ith(c, 2, vocab));
    assert_eq!(ith(c, 0, vocab), Err(LLMRT_ERR_NO_LOGITS));
    assert!(last_error().contains("llmrt_eval_all"));
    // Accepting a token ends the batch; -1 stays readable.
    // SAFETY: no text buffer.
    assert_eq!(
        unsafe { llmrt_accept(c, tail[0], std::ptr::null_mut(), 0, null_mut()) },
        LLMRT_OK
    );
    assert_eq!(ith(c, 0, vocab), Err(LLMRT_ERR_NO_LOGITS));
    assert!(ith(c, -1, vocab).is_ok());
    assert_eq!(llmrt_kv_reset(c), LLMRT_OK);
    assert_eq!(ith(c, -1, vocab), Err(LLMRT_ERR_NO_LOGITS));
    assert_eq!(llmrt_context_free(c), LLMRT_OK);
    assert_eq!(llmrt_context_free(one), LLMRT_OK);
    assert_eq!(llmrt_model_free(m), LLMRT_OK);
}

#[test]
fn embeddings_are_the_runtimes() {
    let bytes = model_bytes(22);
    let m = load(&bytes);
    let d = info(m).d_model as usize;
    let c = context(m, 1);
    let text = "the cat sat on é日";
    let mut n = 0;
    // The size first.
    // SAFETY: no output buffer, cap 0.
    let st = unsafe {
        llmrt_embed(
            c,
            text.as_ptr().cast(),
            text.len(),
            LLMRT_POOLING_MEAN,
            1,
            null_mut(),
            0,
            &mut n,
        )
    };
    assert_eq!(st, LLMRT_ERR_BUFFER_TOO_SMALL);
    assert_eq!(n, d);
    let model = std::sync::Arc::new(rt::Model::from_bytes(&bytes).expect("model"));
    let toks = model.tokenizer.encode(text, false).expect("encode");
    for (pooling, p) in [
        (LLMRT_POOLING_MEAN, rt::embed::Pooling::Mean),
        (LLMRT_POOLING_LAST, rt::embed::Pooling::Last),
        (LLMRT_POOLING_FIRST, rt::embed::Pooling::First),
    ] {
        for normalize in [0, 1] {
            let mut got = vec![f32::NAN; d + 3];
            // SAFETY: `d + 3` writable floats.
            let st = unsafe {
                llmrt_embed(
                    c,
                    text.as_ptr().cast(),
                    text.len(),
                    pooling,
                    normalize,
                    got.as_mut_ptr(),
                    got.len(),
                    &mut n,
                )
            };
            assert_eq!(st, LLMRT_OK, "{}", last_error());
            assert_eq!(n, d);
            assert!(got[d].is_nan(), "wrote past d_model");
            let mut ctx = rt::Context::new(
                model.clone(),
                &rt::ContextParams {
                    n_ctx: 0,
                    n_batch: 64,
                    threads: 1,
                    cache_type: rt::CacheType::default(),
                    n_seq: 1,
                    f16_exact: false,
                },
            )
            .expect("ctx");
            let want = rt::embed::embed_until(
                &mut ctx,
                &toks,
                p,
                normalize != 0,
                &mut Vec::new(),
                &|| false,
            )
            .expect("embed")
            .expect("done");
            assert_eq!(&got[..d], &want[..]);
            // The token variant gives the same.
            let mut got2 = vec![0.0; d];
            // SAFETY: valid buffers.
            let st = unsafe {
                llmrt_embed_tokens(
                    c,
                    toks.as_ptr(),
                    toks.len(),
                    pooling,
                    normalize,
                    got2.as_mut_ptr(),
                    d,
                    &mut n,
                )
            };
            assert_eq!(st, LLMRT_OK);
            assert_eq!(got2, want);
        }
    }
    // The cache holds the text; the logits are its last token's.
    let mut nt = 0;
    // SAFETY: count only.
    let st = unsafe { llmrt_context_tokens(c, null_mut(), 0, &mut nt) };
    assert!(st == LLMRT_ERR_BUFFER_TOO_SMALL && nt == toks.len());
    let mut tok = 0;
    // SAFETY: writable id.
    assert_eq!(unsafe { llmrt_sample(c, &mut tok) }, LLMRT_OK);
    // Bad pooling, and a failed embedding leaves the cache alone.
    let mut v = vec![0.0; d];
    // SAFETY: valid buffers.
    let st = unsafe { llmrt_embed(c, "a".as_ptr().cast(), 1, 7, 0, v.as_mut_ptr(), d, &mut n) };
    assert_eq!(st, LLMRT_ERR_INVALID_ARG);
    let bad = [u32::MAX];
    // SAFETY: valid buffers.
    let st = unsafe { llmrt_embed_tokens(c, bad.as_ptr(), 1, 0, 0, v.as_mut_ptr(), d, &mut n) };
    assert_eq!(st, LLMRT_ERR_BAD_TOKEN);
    // SAFETY: count only.
    let _ = unsafe { llmrt_context_tokens(c, null_mut(), 0, &mut nt) };
    assert_eq!(nt, toks.len());
    assert_eq!(llmrt_context_free(c), LLMRT_OK);
    assert_eq!(llmrt_model_free(m), LLMRT_OK);
}

#[test]
fn a_cancel_made_while_idle_does_not_stop_the_next_call() {
    let bytes = model_bytes(23);
    let m = load(&bytes);
    let vocab = info(m).vocab_size;
    let c = context(m, 4);
    assert_eq!(llmrt_cancel(c), LLMRT_OK);
    let toks = ids(vocab, 10, 3);
    // SAFETY: ten ids.
    assert_eq!(unsafe { llmrt_eval(c, toks.as_ptr(), 10) }, LLMRT_OK);
    assert_eq!(llmrt_cancel(c), LLMRT_OK);
    let mut gp = llmrt_generate_default_params();
    gp.n_predict = 6;
    gp.ignore_eos = 1;
    let mut g = llmrt_generation::default();
    // SAFETY: valid pointers.
    let st = unsafe { llmrt_generate_tokens(c, toks.as_ptr(), 3, &gp, None, null_mut(), &mut g) };
    assert_eq!(st, LLMRT_OK);
    assert_eq!(g.stop_reason, LLMRT_STOP_MAX_TOKENS);
    assert_eq!(g.n_generated, 6);
    assert_eq!(llmrt_context_free(c), LLMRT_OK);
    assert_eq!(llmrt_model_free(m), LLMRT_OK);
}

#[test]
fn llmrt_eval_can_be_cancelled_from_another_thread() {
    let bytes = model_bytes(24);
    let m = load(&bytes);
    let vocab = info(m).vocab_size;
    let mut p = llmrt_context_default_params();
    p.n_threads = 1;
    p.n_batch = 1; // one chunk per token: a cancel keeps a prefix of whole chunks
    let mut c = null_mut();
    // SAFETY: valid pointers.
    assert_eq!(unsafe { llmrt_context_new(m, &p, &mut c) }, LLMRT_OK);
    let toks = ids(vocab, 64, 4);
    let stop = AtomicBool::new(false);
    let handle = c as usize;
    let mut cancelled = 0;
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Acquire) {
                assert_eq!(llmrt_cancel(handle as *const llmrt_context), LLMRT_OK);
                std::thread::yield_now();
            }
        });
        // The other thread cancels without pause; an evaluation that ends before it
        // gets a turn is fine, but most should be stopped.
        for _ in 0..20 {
            assert_eq!(llmrt_kv_reset(c), LLMRT_OK);
            // SAFETY: 64 ids.
            let st = unsafe { llmrt_eval(c, toks.as_ptr(), toks.len()) };
            let mut kept = vec![0u32; 64];
            let mut nk = 0;
            // SAFETY: 64 writable ids.
            let r = unsafe { llmrt_context_tokens(c, kept.as_mut_ptr(), 64, &mut nk) };
            assert_eq!(r, LLMRT_OK);
            assert_eq!(&kept[..nk], &toks[..nk], "the cache keeps a prefix");
            match st {
                LLMRT_OK => assert_eq!(nk, 64),
                LLMRT_ERR_CANCELLED => {
                    assert!(nk < 64);
                    assert!(last_error().contains("cancel"));
                    cancelled += 1;
                }
                other => panic!("llmrt_eval gave {other}"),
            }
        }
        stop.store(true, Ordering::Release);
    });
    assert!(cancelled > 0, "no evaluation was cancelled in 20 tries");
    assert_eq!(llmrt_context_free(c), LLMRT_OK);
    assert_eq!(llmrt_model_free(m), LLMRT_OK);
}

#[test]
fn bytes_needed_and_threads() {
    let bytes = model_bytes(25);
    let m = load(&bytes);
    let mut p = llmrt_context_default_params();
    p.n_ctx = 48;
    p.n_batch = 16;
    let mut need = 0u64;
    // SAFETY: valid pointers.
    assert_eq!(
        unsafe { llmrt_context_bytes_needed(m, &p, &mut need) },
        LLMRT_OK
    );
    let model = rt::Model::from_bytes(&bytes).expect("model");
    let rt_need = rt::ContextParams {
        n_ctx: 48,
        n_batch: 16,
        threads: 1,
        cache_type: rt::CacheType::default(),
        n_seq: 1,
        f16_exact: false,
    }
    .bytes_needed(&model.opts)
    .expect("size");
    assert_eq!(need, rt_need + model.opts.vocab_size as u64 * 4);
    // A longer context costs more, by its KV cache at least.
    let mut p2 = p;
    p2.n_ctx = 64;
    let mut need2 = 0;
    // SAFETY: valid pointers.
    assert_eq!(
        unsafe { llmrt_context_bytes_needed(m, &p2, &mut need2) },
        LLMRT_OK
    );
    let o = &model.opts;
    assert!(need2 >= need + 2 * 16 * (o.n_layers * o.kv_dim()) as u64 * 4);
    // Bad sizes and arguments: the statuses of llmrt_context_new.
    let mut bad = p;
    bad.n_threads = 5000;
    // SAFETY: valid pointers.
    assert_eq!(
        unsafe { llmrt_context_bytes_needed(m, &bad, &mut need) },
        LLMRT_ERR_INVALID_ARG
    );
    // SAFETY: NULL out.
    assert_eq!(
        unsafe { llmrt_context_bytes_needed(m, &p, null_mut()) },
        LLMRT_ERR_NULL
    );

    // Threads on a live context: same logits before and after.
    let c = context(m, 1);
    let mut t = 0;
    // SAFETY: writable.
    assert_eq!(unsafe { llmrt_get_threads(c, &mut t) }, LLMRT_OK);
    assert_eq!(t, 1);
    let toks = ids(info(m).vocab_size, 8, 5);
    // SAFETY: 4 ids.
    assert_eq!(unsafe { llmrt_eval(c, toks.as_ptr(), 4) }, LLMRT_OK);
    assert_eq!(llmrt_set_threads(c, 3), LLMRT_OK);
    // SAFETY: writable.
    assert_eq!(unsafe { llmrt_get_threads(c, &mut t) }, LLMRT_OK);
    assert_eq!(t, 3);
    assert_eq!(llmrt_set_threads(c, 5000), LLMRT_ERR_INVALID_ARG);
    // SAFETY: 4 ids.
    assert_eq!(unsafe { llmrt_eval(c, toks[4..].as_ptr(), 4) }, LLMRT_OK);
    let vocab = info(m).vocab_size as usize;
    let got = ith(c, -1, vocab).expect("logits");
    let one = context(m, 1);
    // SAFETY: 8 ids.
    assert_eq!(unsafe { llmrt_eval(one, toks.as_ptr(), 8) }, LLMRT_OK);
    let want = ith(one, -1, vocab).expect("logits");
    let e = max_rel(&got, &want);
    assert!(e < 1e-5, "threads changed the result by {e}");
    assert_eq!(llmrt_set_threads(null_mut(), 1), LLMRT_ERR_NULL);
    assert_eq!(llmrt_context_free(c), LLMRT_OK);
    assert_eq!(llmrt_context_free(one), LLMRT_OK);
    assert_eq!(llmrt_model_free(m), LLMRT_OK);
}

unsafe extern "C" fn record(progress: f32, user: *mut c_void) -> i32 {
    // SAFETY: `user` is the (Vec, stop-after) pair of the test.
    let (seen, stop_after) = unsafe { &mut *(user as *mut (Vec<f32>, usize)) };
    seen.push(progress);
    i32::from(seen.len() > *stop_after)
}

#[test]
fn load_progress_goes_from_0_to_1_and_can_stop_the_load() {
    let bytes = model_bytes(26);
    let dir = std::env::temp_dir().join(format!("llmrt-ffi-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("m.llm");
    std::fs::write(&path, &bytes).expect("write");
    let cpath = std::ffi::CString::new(path.to_str().expect("utf-8")).expect("path");
    let mut state: (Vec<f32>, usize) = (Vec::new(), usize::MAX);
    let mut p = llmrt_model_default_params();
    p.progress = Some(record);
    p.progress_user_data = (&mut state as *mut (Vec<f32>, usize)).cast();
    let mut m = null_mut();
    // SAFETY: valid pointers; the callback gets `state`.
    let st = unsafe { llmrt_model_load_with_params(cpath.as_ptr(), &p, &mut m) };
    assert_eq!(st, LLMRT_OK, "{}", last_error());
    let seen = state.0.clone();
    assert!(seen.len() >= 3, "{seen:?}");
    assert_eq!(seen.first(), Some(&0.0));
    assert_eq!(seen.last(), Some(&1.0));
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    assert_eq!(info(m).file_size, bytes.len() as u64);
    assert_eq!(llmrt_model_free(m), LLMRT_OK);

    // Stop after the second call.
    state = (Vec::new(), 1);
    p.progress_user_data = (&mut state as *mut (Vec<f32>, usize)).cast();
    m = std::ptr::dangling_mut::<llmrt_model>();
    // SAFETY: as above.
    let st = unsafe { llmrt_model_load_with_params(cpath.as_ptr(), &p, &mut m) };
    assert_eq!(st, LLMRT_ERR_CANCELLED);
    assert!(m.is_null());
    assert_eq!(state.0.len(), 2);
    // No callback: a plain load; NULL params too.
    // SAFETY: valid pointers.
    let st = unsafe { llmrt_model_load_with_params(cpath.as_ptr(), std::ptr::null(), &mut m) };
    assert_eq!(st, LLMRT_OK);
    assert_eq!(llmrt_model_free(m), LLMRT_OK);
    // SAFETY: NULL path.
    let st = unsafe { llmrt_model_load_with_params(std::ptr::null(), &p, &mut m) };
    assert_eq!(st, LLMRT_ERR_NULL);
    let _ = std::fs::remove_dir_all(&dir);
}
