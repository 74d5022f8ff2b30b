//! `llm-run bench`: prompt processing (pp) and text generation (tg) speed, in the
//! manner of llama-bench, plus generation's effective memory bandwidth beside the
//! machine's measured read bandwidth.

use clap::Args;
use llmrt::{Context, ContextParams};
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `llm-run bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// Model file (.llm).
    #[arg(short = 'm', long)]
    model: PathBuf,
    /// Prompt lengths to time (comma-separated; 0 skips pp).
    #[arg(short = 'p', long, default_value = "64", value_delimiter = ',')]
    n_prompt: Vec<usize>,
    /// Generated lengths to time (comma-separated; 0 skips tg).
    #[arg(short = 'n', long, default_value = "64", value_delimiter = ',')]
    n_gen: Vec<usize>,
    /// Thread counts (comma-separated; default: physical cores).
    #[arg(short = 't', long, value_delimiter = ',')]
    threads: Vec<usize>,
    /// Repetitions of each test.
    #[arg(short = 'r', long, default_value_t = 5)]
    reps: usize,
    /// KV cache type: f16, q8_0 or f32.
    #[arg(long, default_value = "f16", value_parser = crate::parse_cache_type)]
    cache_type: llmrt::CacheType,
    /// F16/BF16 weights: keep f32 activations and products in prompts instead of
    /// the bf16 dot products (which round both to bf16 where the CPU has AVX-512
    /// BF16; this keeps f32 accuracy at about half the prompt speed).
    #[arg(long)]
    f16_exact: bool,
    /// Skip the memory-bandwidth measurement.
    #[arg(long)]
    no_bandwidth: bool,
}

fn mean_sd(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}

/// Read bandwidth in GB/s as generation meets it: a buffer of `bytes` (the matrix
/// bytes a token reads, so that it fits the caches exactly as much as the model does)
/// split into `threads` contiguous parts, each summed by its thread with the widest
/// loads the CPU has ([`llmrt::kernels::stream_sum`]); passes over the buffer repeat
/// until at least 1 GiB has been read; best of 5.
fn read_bandwidth(threads: usize, bytes: usize) -> f64 {
    let bytes = bytes.max(1 << 20).next_multiple_of(4096);
    let buf: Vec<u8> = (0..bytes).map(|i| (i * 131 + 7) as u8).collect();
    let passes = (1usize << 30).div_ceil(bytes).max(1);
    let chunk = bytes.div_ceil(threads.max(1)).next_multiple_of(256);
    let mut best = 0.0f64;
    for _ in 0..5 {
        let t = Instant::now();
        let total: u64 = std::thread::scope(|s| {
            let hs: Vec<_> = buf
                .chunks(chunk)
                .map(|c| {
                    s.spawn(move || {
                        (0..passes).fold(0u64, |a, _| {
                            a.wrapping_add(llmrt::kernels::stream_sum(std::hint::black_box(c)))
                        })
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().unwrap_or(0))
                .fold(0u64, |a, b| a.wrapping_add(b))
        });
        std::hint::black_box(total);
        best = best.max((bytes * passes) as f64 / t.elapsed().as_secs_f64() / 1e9);
    }
    best
}

/// Runs the command.
pub fn run(a: BenchArgs) -> Result<(), String> {
    let model = crate::load(&a.model)?;
    let threads = if a.threads.is_empty() {
        vec![crate::default_threads()]
    } else {
        a.threads.clone()
    };
    let reps = a.reps.max(1);
    let vocab = model.opts.vocab_size as u32;
    let wbytes = model.weight_bytes_per_token() as f64;
    println!(
        "model: {} ({} params, {}, {:.1} MiB of matrices read per token), {} KV cache",
        a.model.display(),
        model.opts.n_params(),
        model.main_dtype,
        wbytes / (1 << 20) as f64,
        a.cache_type
    );
    let mut cpu = llmrt::kernels::Cpu::new(1);
    if a.f16_exact {
        cpu.set_f16_exact(true);
    }
    println!(
        "kernels: {}; F16/BF16 prompts: {}",
        cpu.path(),
        if cpu.bf16_prompts() {
            "bf16 dot products"
        } else {
            "f32 products"
        }
    );
    println!("| threads | test   |        t/s |      sd | GB/s (weights) |");
    println!("|--------:|:-------|-----------:|--------:|---------------:|");
    for &t in &threads {
        let need = a
            .n_prompt
            .iter()
            .chain(&a.n_gen)
            .copied()
            .max()
            .unwrap_or(1)
            + 1;
        let params = ContextParams {
            n_ctx: need.min(model.opts.max_len).max(2),
            n_batch: 512,
            threads: t,
            cache_type: a.cache_type,
            f16_exact: a.f16_exact,
        };
        let mut ctx = Context::new(model.clone(), &params).map_err(|e| e.to_string())?;
        // Fixed pseudo-random tokens: the same work for every rep.
        let toks: Vec<u32> = (0..need as u32).map(|i| (i * 7919 + 13) % vocab).collect();
        for &np in a.n_prompt.iter().filter(|&&n| n > 0) {
            if np > ctx.n_ctx() {
                return Err(format!(
                    "-p {np} exceeds the model's context {}",
                    ctx.n_ctx()
                ));
            }
            ctx.reset();
            ctx.eval(&toks[..np]).map_err(|e| e.to_string())?; // warm-up
            let mut rates = Vec::new();
            for _ in 0..reps {
                ctx.reset();
                let s = Instant::now();
                ctx.eval(&toks[..np]).map_err(|e| e.to_string())?;
                rates.push(np as f64 / s.elapsed().as_secs_f64());
            }
            let (m, sd) = mean_sd(&rates);
            println!("| {t:>7} | pp{np:<4} | {m:>10.1} | {sd:>7.1} |              - |");
        }
        for &ng in a.n_gen.iter().filter(|&&n| n > 0) {
            if ng + 1 > ctx.n_ctx() {
                return Err(format!(
                    "-n {ng} exceeds the model's context {}",
                    ctx.n_ctx()
                ));
            }
            let mut rates = Vec::new();
            for rep in 0..=reps {
                ctx.reset();
                ctx.eval(&toks[..1]).map_err(|e| e.to_string())?;
                let s = Instant::now();
                for i in 0..ng {
                    ctx.eval(&toks[i + 1..i + 2]).map_err(|e| e.to_string())?;
                }
                if rep > 0 {
                    rates.push(ng as f64 / s.elapsed().as_secs_f64());
                }
            }
            let (m, sd) = mean_sd(&rates);
            println!(
                "| {t:>7} | tg{ng:<4} | {m:>10.1} | {sd:>7.1} | {:>14.1} |",
                m * wbytes / 1e9
            );
        }
    }
    if !a.no_bandwidth {
        let t = *threads.iter().max().unwrap_or(&1);
        let bw = read_bandwidth(t, wbytes as usize);
        println!(
            "machine read bandwidth: {bw:.1} GB/s ({t} threads streaming a buffer the size of the \
             matrices, {:.1} MiB) -> tg limit {:.1} t/s",
            wbytes / (1 << 20) as f64,
            bw * 1e9 / wbytes
        );
    }
    Ok(())
}
