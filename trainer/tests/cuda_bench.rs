//! The device-resident GPT-2 step built from the kernels (`llm_train::cuda::bench`):
//! a small configuration must learn (the loss of a fixed batch falls over 20 steps), and
//! with `LLMRT_CUDA_BENCH=1` the GPT-2 124M shape is measured and printed (a benchmark,
//! no timing asserts). Both are `#[ignore = "needs a CUDA GPU"]`: skipped unless run with `--include-ignored`.

use llm_train::cuda::bench::{self, BenchConfig, H100_BF16_FLOPS};

mod cuda_util;
use cuda_util::device;

#[test]
#[ignore = "needs a CUDA GPU"]
fn small_gpt_step_learns_a_fixed_batch() {
    let dev = device("small gpt step");
    let cfg = BenchConfig {
        n_layers: 2,
        n_heads: 4,
        d_model: 128,
        seq: 64,
        vocab: 256,
        batch: Some(4),
        steps: 20,
    };
    let r = bench::run(&dev, cfg).expect("bench step");
    eprintln!("small step: {r:?}");
    assert!(r.first_loss.is_finite() && r.last_loss.is_finite(), "{r:?}");
    // Random tokens and 0.02-scale weights start near ln(256) = 5.55.
    assert!((r.first_loss - 256f32.ln()).abs() < 0.5, "{r:?}");
    assert!(
        r.last_loss < r.first_loss - 0.1,
        "the loss did not fall: {r:?}"
    );
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn gpt2_124m_benchmark() {
    if std::env::var_os("LLMRT_CUDA_BENCH").is_none() {
        eprintln!("gpt2 benchmark: not measured (set LLMRT_CUDA_BENCH=1 to run it)");
        return;
    }
    let dev = device("gpt2 benchmark");
    let cfg = BenchConfig::gpt2_124m();
    let r = bench::run(&dev, cfg).expect("bench");
    println!();
    println!(
        "GPT-2 124M (12 L, 12 H, C 768, T 1024, V 50304), bf16, {} ({})",
        dev.name(),
        dev.arch().name()
    );
    println!(
        "| batch | tokens/s | ms/step | peak memory | MFU (vs {:.0} TFLOP/s) | loss first→last |",
        H100_BF16_FLOPS / 1e12
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| {} | {:.0} | {:.1} | {:.1} GiB | {:.1}% | {:.3}→{:.3} |",
        r.batch,
        r.tokens_per_s,
        r.ms_per_step,
        r.peak_bytes as f64 / (1u64 << 30) as f64,
        r.mfu * 100.0,
        r.first_loss,
        r.last_loss
    );
}
