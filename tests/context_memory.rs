//! What a context costs before it is made: `ContextParams::bytes_needed` counts the
//! KV caches and every scratch buffer, and `Context::new` refuses, with the typed
//! `Error::NoMemory`, a context larger than the memory the system has available,
//! before allocating any of it.

use llm_format::{DType, Mlp, ModelOptions, Norm, Positions};
use llmrt::{CacheType, Context, ContextParams, Error, Model};
use llmrt_suite::fixtures::*;
use llmrt_suite::rng::test_seed;
use std::sync::Arc;

fn params(n_ctx: usize, n_batch: usize) -> ContextParams {
    ContextParams {
        n_ctx,
        n_batch,
        threads: 1,
        cache_type: CacheType::default(),
        n_seq: 1,
        f16_exact: false,
    }
}

#[test]
fn bytes_needed_counts_the_caches_and_every_scratch_buffer() {
    let o = opts(Positions::Rope, Norm::RmsNorm, Mlp::SwiGlu, false, false, 2);
    let (l, d, kv, f, h, hd, v) = (
        o.n_layers,
        o.d_model,
        o.kv_dim(),
        o.d_ff,
        o.n_heads,
        o.head_dim(),
        o.vocab_size,
    );
    // The default f16 cache grown to the whole context: k and v of every layer at 2
    // bytes a value, plus one layer's k and v converted to f32 for attention.
    let cache = |n_ctx: usize| 2 * l * n_ctx * kv * 2 + 2 * n_ctx * kv * 4;
    let floats = |n_ctx: usize, nb: usize| {
        // x, xb, q, att, proj; k, v; hidden and SwiGLU's up branch; scores; logits;
        // RoPE frequencies and cos/sin rows; the row plan (sequence, position,
        // token and logits flag of each row, a float's room each); per head, the
        // blocked prompt attention's Sᵀ (256 keys × 32 queries), Qᵀ, O and P·V
        // (hd × 32 each) and five rows of 32 (`kernels/attend.rs`), whatever n_ctx.
        5 * nb * d
            + 2 * nb * kv
            + 2 * nb * f
            + h * n_ctx
            + v
            + hd / 2
            + nb * hd
            + 4 * nb
            + h * (256 * 32 + 3 * hd * 32 + 5 * 32)
    };
    let need = |n_ctx, nb| params(n_ctx, nb).bytes_needed(&o).expect("in range");
    let bytes = |n_ctx, nb| (4 * floats(n_ctx, nb) + cache(n_ctx)) as u64;
    assert_eq!(need(32, 4), bytes(32, 4));
    // n_ctx 0 is the model's max_len; n_batch is clamped to the context.
    assert_eq!(need(0, 4), bytes(o.max_len, 4));
    assert_eq!(need(8, 64), bytes(8, 8));
    // The f32 cache takes 4 bytes a value and no conversion scratch; q8_0 34 bytes
    // per 32 values (when the head size allows it).
    let with = |ty| ContextParams {
        cache_type: ty,
        ..params(32, 4)
    };
    let f32_need = with(CacheType::F32).bytes_needed(&o).expect("in range");
    assert_eq!(f32_need, (4 * floats(32, 4) + 2 * l * 32 * kv * 4) as u64);
    match with(CacheType::Q8_0).bytes_needed(&o) {
        Ok(b) => {
            assert_eq!(hd % 32, 0);
            let q8 = 2 * l * 32 * kv / 32 * 34 + 2 * 32 * kv * 4;
            assert_eq!(b, (4 * floats(32, 4) + q8) as u64);
        }
        Err(e) => {
            assert_ne!(hd % 32, 0);
            assert!(e.to_string().contains("multiple of 32"), "{e}");
        }
    }
    // Four sequences: four caches of a quarter of the context each (the same
    // bytes), a row of logits each, attention scores as long as one sequence.
    let four = ContextParams {
        n_seq: 4,
        ..params(32, 4)
    };
    assert_eq!(
        four.bytes_needed(&o).expect("in range"),
        bytes(32, 4) + 4 * (3 * v) as u64 - 4 * (h * 24) as u64
    );
    // GELU has no second hidden buffer.
    let g = ModelOptions {
        mlp: Mlp::Gelu,
        ..o.clone()
    };
    assert_eq!(
        params(32, 4).bytes_needed(&g).expect("in range"),
        bytes(32, 4) - 4 * 4 * f as u64
    );
    // Out-of-range sizes are the errors `Context::new` gives.
    let learned = ModelOptions {
        positions: Positions::Learned,
        ..o.clone()
    };
    let e = params(o.max_len + 1, 4).bytes_needed(&learned).unwrap_err();
    assert!(e.to_string().contains("learned positions"), "{e}");
    assert!(params(1 << 25, 4).bytes_needed(&o).is_err());
}

#[test]
fn a_context_larger_than_available_memory_is_refused_before_allocating() {
    // Rope allows 2^24 positions: a KV cache of 2 · 2 layers · 2^24 · 512 floats
    // (128 GiB) that no test machine can give.
    let o = ModelOptions {
        d_model: 512,
        n_heads: 8,
        n_kv_heads: 8,
        ..opts(Positions::Rope, Norm::RmsNorm, Mlp::SwiGlu, false, false, 8)
    };
    let p = params(1 << 24, 64);
    let need = p.bytes_needed(&o).expect("in range");
    let Some(avail) = llmrt::sys::mem_available() else {
        eprintln!("SKIP: MemAvailable is unknown on this machine");
        return;
    };
    if need <= avail {
        eprintln!("SKIP: this machine has {avail} bytes available, more than the {need} asked");
        return;
    }
    let (bytes, _) = write_model(&o, &random_weights(&o, test_seed(3)), DType::F32);
    let m = Arc::new(Model::from_bytes(&bytes).expect("load"));
    match Context::new(m, &p) {
        Err(e @ Error::NoMemory { .. }) => {
            let msg = e.to_string();
            let Error::NoMemory {
                needed, available, ..
            } = e
            else {
                unreachable!()
            };
            assert_eq!(needed, need);
            // MemAvailable moves between readings; it was below the need when refused.
            assert!(available.is_some_and(|a| a < need), "{available:?}");
            assert!(
                msg.starts_with("a context of 16777216 tokens needs") && !msg.contains('\n'),
                "{msg}"
            );
        }
        Err(e) => panic!("expected NoMemory, got {e}"),
        Ok(_) => panic!("a context of {need} bytes was allocated"),
    }
}
