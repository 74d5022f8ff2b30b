//! Criterion benchmarks of whole forward passes (`llmrt::Context`): prompt
//! processing and generation speed, as `llama-bench` reports them.
//!
//! `e2e/<shape>/<dtype>/t<threads>/{pp64,tg64}` for a stories15M-shaped model (dim
//! 288, hidden 768, 6 layers, 6 heads) and a stories110M-shaped one (dim 768, hidden
//! 2048, 12 layers, 12 heads), both LLaMA-style (RoPE, RMSNorm, SwiGLU, no biases)
//! with vocab 32000 and a separate output matrix (as llama.cpp stores them), random
//! weights written here through `llmrt_suite::fixtures`, every matrix in the dtype.
//!
//! * `pp64`: one `eval` of 64 tokens on an empty cache (one batched pass);
//! * `tg64`: 64 one-token `eval`s from an empty cache, as llama-bench's tg64.
//!
//! Throughput is 64 elements per iteration, so criterion's `elem/s` is tokens/s.
//! Threads: `LLMRT_E2E_THREADS` (default: the machine's available parallelism).
//! `LLMRT_E2E_SHAPES` (`15m,110m`) and `LLMRT_E2E_DTYPES` (`f32,f16,bf16,q8_0,q4_0,q4_1`)
//! restrict what is built: making a 110M model takes seconds, so a criterion filter
//! alone still pays for every model. Example:
//! `LLMRT_E2E_SHAPES=110m LLMRT_E2E_DTYPES=q4_0 cargo bench --bench e2e`.

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use llm_format::{DType, Mlp, ModelOptions, Norm, Positions};
use llmrt::{Context, ContextParams, Model};
use llmrt_suite::fixtures::{random_weights, write_model};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

/// Tokens per pp and tg test.
const N: usize = 64;

/// `(name, dim, hidden, layers, heads)` of the two model shapes.
const SHAPES: [(&str, usize, usize, usize, usize); 2] =
    [("15m", 288, 768, 6, 6), ("110m", 768, 2048, 12, 12)];

/// A LLaMA-style model of the given shape with vocab 32000 and an untied output.
fn llama_opts(d_model: usize, d_ff: usize, n_layers: usize, n_heads: usize) -> ModelOptions {
    ModelOptions {
        vocab_size: 32000,
        d_model,
        n_layers,
        n_heads,
        n_kv_heads: n_heads,
        d_ff,
        max_len: 1024,
        positions: Positions::Rope,
        norm: Norm::RmsNorm,
        mlp: Mlp::SwiGlu,
        bias: false,
        tied_embeddings: false,
        norm_eps: 1e-5,
        rope_base: 10000.0,
        arch: Default::default(),
    }
}

/// The comma-separated list in `var`, or `None` when unset (everything).
fn env_list(var: &str) -> Option<Vec<String>> {
    std::env::var(var)
        .ok()
        .map(|s| s.split(',').map(|x| x.trim().to_lowercase()).collect())
}

fn threads() -> usize {
    std::env::var("LLMRT_E2E_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn e2e(c: &mut Criterion) {
    let shapes = env_list("LLMRT_E2E_SHAPES");
    let dtypes = env_list("LLMRT_E2E_DTYPES");
    let t = threads();
    for (name, d, f, l, h) in SHAPES {
        if shapes
            .as_ref()
            .is_some_and(|s| !s.iter().any(|x| x == name))
        {
            continue;
        }
        let o = llama_opts(d, f, l, h);
        // One set of random weights per shape, quantised per dtype.
        let w = random_weights(&o, 0x5eed);
        for dtype in DType::ALL {
            if dtypes
                .as_ref()
                .is_some_and(|s| !s.iter().any(|x| x == dtype.name()))
            {
                continue;
            }
            let model = {
                let (bytes, _held) = write_model(&o, &w, dtype);
                Arc::new(Model::from_bytes(&bytes).expect("the fixture loads"))
            };
            let params = ContextParams {
                n_ctx: N + 1,
                n_batch: N,
                threads: t,
                cache_type: llmrt::CacheType::default(),
                n_seq: 1,
                f16_exact: false,
            };
            let mut ctx = Context::new(model, &params).expect("context");
            // Fixed pseudo-random tokens spread over the vocabulary.
            let toks: Vec<u32> = (0..N as u32).map(|i| (i * 7919 + 13) % 32000).collect();

            let mut g = c.benchmark_group(format!("e2e/{name}/{dtype}/t{t}"));
            g.throughput(Throughput::Elements(N as u64));
            // An iteration of the 110M model in f32 takes most of a second: take
            // few, equal-sized samples.
            g.sampling_mode(SamplingMode::Flat);
            g.bench_function(format!("pp{N}"), |b| {
                b.iter(|| {
                    ctx.reset();
                    black_box(ctx.eval(black_box(&toks)).expect("eval")[0])
                })
            });
            g.bench_function(format!("tg{N}"), |b| {
                b.iter(|| {
                    ctx.reset();
                    for tok in toks.chunks(1) {
                        black_box(ctx.eval(black_box(tok)).expect("eval")[0]);
                    }
                })
            });
            g.finish();
        }
    }
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = e2e
}
criterion_main!(benches);
