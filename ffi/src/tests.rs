//! Unit tests of the boundary, calling the exported functions as C would. The C and
//! C++ programs that exercise the built library are in `tests/ffi_c.rs` (workspace root).

use llm_format::testing::test_seed;

use crate::context::*;
use crate::generate::*;
use crate::model::*;
use crate::status::*;
use crate::version::*;
use llm_format::{
    quant, DType, LlmWriter, Mlp, ModelOptions, Norm, Positions, TokenizerKind, TokenizerSpec,
};
use std::borrow::Cow;
use std::ffi::{c_char, c_void, CStr};
use std::ptr::{null, null_mut};

#[test]
fn header_is_current() {
    let generated = include_str!(concat!(env!("OUT_DIR"), "/llmrt.h"));
    let checked_in = include_str!("../include/llmrt.h");
    assert!(
        generated == checked_in,
        "ffi/include/llmrt.h is stale: run `make -C ffi header` \
         (or LLMRT_WRITE_HEADER=1 cargo build -p libllmrt) and commit it"
    );
    assert!(checked_in.contains("#ifdef __cplusplus\nextern \"C\" {"));
}

#[test]
fn version_matches_the_crate() {
    let v = |s: &str| s.parse::<u32>().expect("version number");
    assert_eq!(LLMRT_VERSION_MAJOR, v(env!("CARGO_PKG_VERSION_MAJOR")));
    assert_eq!(LLMRT_VERSION_MINOR, v(env!("CARGO_PKG_VERSION_MINOR")));
    assert_eq!(LLMRT_VERSION_PATCH, v(env!("CARGO_PKG_VERSION_PATCH")));
    assert_eq!(llmrt_version_number(), LLMRT_VERSION_NUMBER);
    // SAFETY: a static NUL-terminated string.
    let s = unsafe { CStr::from_ptr(llmrt_version()) };
    assert_eq!(s.to_str(), Ok(env!("CARGO_PKG_VERSION")));
}

pub(crate) fn last_error() -> String {
    // SAFETY: llmrt_last_error returns a NUL-terminated string valid until the next failure.
    unsafe { CStr::from_ptr(llmrt_last_error()) }
        .to_string_lossy()
        .into_owned()
}

#[test]
fn a_panic_becomes_a_status_and_a_message() {
    let st = guard(|| panic!("boom {}", 42));
    assert_eq!(st, LLMRT_ERR_INTERNAL);
    assert_eq!(last_error(), "internal error: boom 42");
    // A later success leaves the message; a later failure replaces it.
    assert_eq!(guard(|| Ok(())), LLMRT_OK);
    assert_eq!(last_error(), "internal error: boom 42");
    assert_eq!(
        guard(|| Err(Fail::new(LLMRT_ERR_UTF8, "a\0b"))),
        LLMRT_ERR_UTF8
    );
    assert_eq!(last_error(), "a b");
}

#[test]
fn status_names_are_distinct() {
    let codes = (-17..=0).collect::<Vec<i32>>();
    let names: std::collections::HashSet<String> = codes
        .iter()
        // SAFETY: static strings.
        .map(|&c| {
            unsafe { CStr::from_ptr(llmrt_status_name(c)) }
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(names.len(), codes.len());
    assert!(!names.contains("unknown status"));
}

/// A small random model (char vocabulary, RoPE, RMSNorm, SwiGLU, GQA) as file bytes,
/// with weights of case `seed` (`seed ^ test_seed(0)`: exactly `seed` unless
/// `LLMRT_TEST_SEED` is set).
pub(crate) fn model_bytes(seed: u64) -> Vec<u8> {
    let chars: Vec<Cow<'static, str>> = std::iter::once(Cow::Borrowed("<eos>"))
        .chain(
            "abcdefghijklmnopqrstuvwxyz .,é日"
                .chars()
                .map(|c| Cow::Owned(c.to_string())),
        )
        .collect();
    let tok = TokenizerSpec {
        kind: TokenizerKind::Char,
        tokens: chars,
        scores: vec![],
        merges: vec![],
        bos: None,
        eos: Some(0),
        unk: None,
        pad: None,
        add_bos: false,
        add_eos: false,
        token_types: Vec::new(),
        pre: None,
        add_space_prefix: true,
        lowercase: false,
        strip_accents: false,
    };
    let o = ModelOptions {
        vocab_size: tok.tokens.len(),
        d_model: 32,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: 2,
        d_ff: 64,
        max_len: 64,
        positions: Positions::Rope,
        norm: Norm::RmsNorm,
        mlp: Mlp::SwiGlu,
        bias: false,
        tied_embeddings: false,
        norm_eps: 1e-5,
        rope_base: 10000.0,
        arch: Default::default(),
    };
    // SplitMix64 for the weights.
    let mut state = seed ^ test_seed(0);
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    };
    let mut w = LlmWriter::new();
    w.extend_meta(o.to_meta());
    w.extend_meta(tok.to_meta());
    for slot in o.tensor_layout() {
        let n: usize = slot.shape.iter().product();
        let v: Vec<f32> = if slot.name.ends_with("norm.weight") {
            (0..n).map(|_| 1.0 + 0.2 * next()).collect()
        } else {
            (0..n).map(|_| 0.3 * next()).collect()
        };
        let bytes = quant::quantize(DType::F32, &v).expect("f32");
        w.add_tensor(slot.name.clone(), DType::F32, &slot.shape, bytes)
            .expect("tensor");
    }
    w.to_bytes().expect("serialise")
}

pub(crate) fn load(bytes: &[u8]) -> *mut llmrt_model {
    let mut m = null_mut();
    // SAFETY: valid buffer and out-pointer.
    let st = unsafe { llmrt_model_load_from_buffer(bytes.as_ptr().cast(), bytes.len(), &mut m) };
    assert_eq!(st, LLMRT_OK, "{}", last_error());
    m
}

pub(crate) fn context(m: *const llmrt_model, seed: u64) -> *mut llmrt_context {
    let mut p = llmrt_context_default_params();
    p.n_threads = 1;
    p.sampler.seed = seed;
    let mut c = null_mut();
    // SAFETY: valid pointers.
    let st = unsafe { llmrt_context_new(m, &p, &mut c) };
    assert_eq!(st, LLMRT_OK, "{}", last_error());
    c
}

#[test]
fn logits_are_the_runtimes_and_generation_matches_it() {
    let bytes = model_bytes(3);
    let m = load(&bytes);
    let c = context(m, 9);
    let prompt = "the cat é";
    let mut ids = [0u32; 32];
    let mut n = 0usize;
    // SAFETY: valid buffers with their capacities.
    let st = unsafe {
        llmrt_tokenize(
            m,
            prompt.as_ptr().cast(),
            prompt.len(),
            0,
            ids.as_mut_ptr(),
            32,
            &mut n,
        )
    };
    assert_eq!(st, LLMRT_OK);
    // SAFETY: `n` ids.
    assert_eq!(unsafe { llmrt_eval(c, ids.as_ptr(), n) }, LLMRT_OK);
    let mut logits = vec![0.0f32; 64];
    let mut nv = 0usize;
    // SAFETY: valid buffer.
    assert_eq!(
        unsafe { llmrt_get_logits(c, logits.as_mut_ptr(), 64, &mut nv) },
        LLMRT_OK
    );

    // The runtime directly, on the same bytes.
    let model = std::sync::Arc::new(rt::Model::from_bytes(&bytes).expect("model"));
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
    let want = ctx.eval(&ids[..n]).expect("eval").to_vec();
    assert_eq!(
        &logits[..nv],
        &want[..],
        "the ABI must return the runtime's logits unchanged"
    );

    // One-call generation gives the runtime's text for the same seed.
    let c2 = context(m, 9);
    let (text, g) = generate(c2, prompt, 30);
    let mut ctx = rt::Context::new(
        model,
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
    let params = rt::GenerateParams {
        max_tokens: 30,
        stop: vec![],
        ignore_eos: true,
        stop_tokens: Vec::new(),
        sampler: rt::sampler::SamplerConfig {
            seed: 9,
            ..Default::default()
        },
        grammar: None,
    };
    let want = rt::generate(&mut ctx, &ids[..n], &params, &mut |_| true).expect("generate");
    assert_eq!(text, want.text);
    assert_eq!(g.n_generated as usize, want.tokens.len());
    assert_eq!(g.stop_reason, LLMRT_STOP_MAX_TOKENS);

    assert_eq!(llmrt_context_free(c), LLMRT_OK);
    assert_eq!(llmrt_context_free(c2), LLMRT_OK);
    assert_eq!(llmrt_model_free(m), LLMRT_OK);
    assert_eq!(llmrt_model_free(m), LLMRT_ERR_BAD_HANDLE);
    assert!(last_error().contains("not a live model handle"));
}

#[test]
fn handles_of_one_type_are_not_the_other() {
    let bytes = model_bytes(5);
    let m = load(&bytes);
    let c = context(m, 1);
    assert_eq!(llmrt_context_free(m.cast()), LLMRT_ERR_BAD_HANDLE);
    assert_eq!(llmrt_model_free(c.cast()), LLMRT_ERR_BAD_HANDLE);
    assert_eq!(
        llmrt_cancel(0x10 as *const llmrt_context),
        LLMRT_ERR_BAD_HANDLE
    );
    assert_eq!(llmrt_kv_reset(null_mut()), LLMRT_ERR_NULL);
    // The model outlives its handle while a context uses it.
    assert_eq!(llmrt_model_free(m), LLMRT_OK);
    let t = 1u32;
    // SAFETY: one id.
    assert_eq!(unsafe { llmrt_eval(c, &t, 1) }, LLMRT_OK);
    assert_eq!(llmrt_context_free(c), LLMRT_OK);
    let _ = null::<u8>();
}

#[test]
fn sampler_settings_are_checked() {
    let ok = llmrt_sampler_default_params();
    // SAFETY: no arrays.
    assert!(unsafe { sampler_config(&ok, 10) }.is_ok());
    for bad in [
        llmrt_sampler_params {
            temperature: f32::NAN,
            ..ok
        },
        llmrt_sampler_params {
            top_p: f32::NAN,
            ..ok
        },
        llmrt_sampler_params {
            repeat_penalty: 0.0,
            ..ok
        },
        llmrt_sampler_params {
            repeat_penalty: f32::INFINITY,
            ..ok
        },
        llmrt_sampler_params {
            presence_penalty: f32::NAN,
            ..ok
        },
        // issue 16: the runtime's validation, not a looser copy of it.
        llmrt_sampler_params {
            temperature: -1.0,
            ..ok
        },
        llmrt_sampler_params {
            temperature: f32::INFINITY,
            ..ok
        },
        llmrt_sampler_params { top_p: 1.5, ..ok },
        llmrt_sampler_params { min_p: -0.5, ..ok },
    ] {
        // SAFETY: no arrays.
        let e = unsafe { sampler_config(&bad, 10) }.err().expect("rejected");
        assert_eq!(e.code, LLMRT_ERR_INVALID_ARG);
    }
}

/// The logit-bias list and the grammar of `llmrt_sampler_params`: read into the
/// runtime's settings; ids outside the vocabulary, NaN and +inf biases, unknown kinds,
/// bad grammars and schemas refused with their codes.
#[test]
fn sampler_bias_and_grammar_are_read_and_checked() {
    let ok = llmrt_sampler_default_params();
    let bias = [
        llmrt_logit_bias {
            token: 3,
            bias: f32::NEG_INFINITY,
        },
        llmrt_logit_bias {
            token: 9,
            bias: 1.5,
        },
    ];
    let gbnf = "root ::= [a-c]+";
    let p = llmrt_sampler_params {
        logit_bias: bias.as_ptr(),
        n_logit_bias: 2,
        grammar_kind: LLMRT_GRAMMAR_GBNF,
        grammar: gbnf.as_ptr().cast(),
        grammar_len: gbnf.len(),
        ..ok
    };
    // SAFETY: the arrays above, alive for the call.
    let s = unsafe { sampler_config(&p, 10) }.expect("accepted");
    assert_eq!(s.cfg.logit_bias, vec![(3, f32::NEG_INFINITY), (9, 1.5)]);
    assert!(s.grammar.is_some());
    // SAFETY: as above.
    let e = unsafe { sampler_config(&p, 9) }.err().expect("id 9 of 9");
    assert_eq!(e.code, LLMRT_ERR_INVALID_ARG);
    for (kind, text, code) in [
        (7, "", LLMRT_ERR_INVALID_ARG),
        (LLMRT_GRAMMAR_GBNF, "root ::= (", LLMRT_ERR_GRAMMAR),
        (LLMRT_GRAMMAR_GBNF, "root ::= \"a\" root", LLMRT_ERR_GRAMMAR),
        (
            LLMRT_GRAMMAR_JSON_SCHEMA,
            "{\"allOf\": []}",
            LLMRT_ERR_GRAMMAR,
        ),
        (LLMRT_GRAMMAR_JSON_SCHEMA, "{", LLMRT_ERR_GRAMMAR),
    ] {
        let q = llmrt_sampler_params {
            grammar_kind: kind,
            grammar: text.as_ptr().cast(),
            grammar_len: text.len(),
            ..ok
        };
        // SAFETY: `text` alive for the call.
        let e = unsafe { sampler_config(&q, 10) }.err().expect(text);
        assert_eq!(e.code, code, "{text}: {}", e.msg);
    }
    for b in [f32::NAN, f32::INFINITY] {
        let one = [llmrt_logit_bias { token: 0, bias: b }];
        let q = llmrt_sampler_params {
            logit_bias: one.as_ptr(),
            n_logit_bias: 1,
            ..ok
        };
        // SAFETY: `one` alive for the call.
        let e = unsafe { sampler_config(&q, 10) }.err().expect("bad bias");
        assert_eq!(e.code, LLMRT_ERR_INVALID_ARG);
    }
}

/// `llmrt_tokenize_special` parses a special token written in the text into its id
/// (here EOS, `<eos>`, a control token), and only with `parse_special`: without it the
/// text is spelled out, and this char vocabulary has no `<` to spell it with.
#[test]
fn special_tokens_parse_only_when_asked() {
    let bytes = model_bytes(4);
    let m = load(&bytes);
    let tokenize = |text: &str, parse: i32, add_bos: i32| {
        let mut ids = [u32::MAX; 16];
        let mut n = 0usize;
        // SAFETY: valid buffers with their capacities.
        let st = unsafe {
            llmrt_tokenize_special(
                m,
                text.as_ptr().cast(),
                text.len(),
                add_bos,
                parse,
                ids.as_mut_ptr(),
                16,
                &mut n,
            )
        };
        (st, ids[..n].to_vec())
    };
    let (st, ids) = tokenize("a<eos>b", 1, 0);
    assert_eq!(st, LLMRT_OK, "{}", last_error());
    let (_, a) = tokenize("a", 0, 0);
    let (_, b) = tokenize("b", 0, 0);
    assert_eq!(ids, [a[0], 0, b[0]]);
    let (st, _) = tokenize("a<eos>b", 0, 0);
    assert_eq!(
        st, LLMRT_ERR_INVALID_ARG,
        "spelled out without parse_special"
    );
    // llmrt_tokenize is llmrt_tokenize_special without parsing.
    let mut n = 0usize;
    let mut ids = [0u32; 16];
    // SAFETY: valid buffers with their capacities.
    let st = unsafe { llmrt_tokenize(m, c"a<eos>b".as_ptr(), 7, 0, ids.as_mut_ptr(), 16, &mut n) };
    assert_eq!(st, LLMRT_ERR_INVALID_ARG);
    assert_eq!(llmrt_model_free(m), LLMRT_OK);
}

unsafe extern "C" fn collect(piece: *const c_char, len: usize, user: *mut c_void) -> i32 {
    // SAFETY: `user` is a String of the caller's; `piece` holds `len` bytes of UTF-8.
    let s = unsafe { &mut *(user as *mut String) };
    // SAFETY: as above.
    let b = unsafe { std::slice::from_raw_parts(piece.cast::<u8>(), len) };
    s.push_str(std::str::from_utf8(b).expect("whole UTF-8"));
    0
}

/// `llmrt_generate` of `prompt` for `n` tokens on `c`: the text and the result.
pub(crate) fn generate(c: *mut llmrt_context, prompt: &str, n: u32) -> (String, llmrt_generation) {
    let mut text = String::new();
    let mut gp = llmrt_generate_default_params();
    gp.n_predict = n;
    gp.ignore_eos = 1;
    let mut g = llmrt_generation::default();
    // SAFETY: valid pointers; the callback gets our String.
    let st = unsafe {
        llmrt_generate(
            c,
            prompt.as_ptr().cast(),
            prompt.len(),
            &gp,
            Some(collect),
            (&mut text as *mut String).cast(),
            &mut g,
        )
    };
    assert_eq!(st, LLMRT_OK, "{}", last_error());
    (text, g)
}
