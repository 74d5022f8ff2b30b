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

/// Read bandwidth in GB/s: `threads` threads each summing their share of a 1 GiB
/// buffer (touched first, so the pages exist), best of 3.
fn read_bandwidth(threads: usize) -> f64 {
    const BYTES: usize = 1 << 30;
    let buf: Vec<u64> = (0..BYTES / 8).map(|i| i as u64).collect();
    let chunk = buf.len().div_ceil(threads);
    let mut best = 0.0f64;
    for _ in 0..3 {
        let t = Instant::now();
        let total: u64 = std::thread::scope(|s| {
            let hs: Vec<_> = buf
                .chunks(chunk)
                .map(|c| {
                    s.spawn(move || {
                        // Four independent sums so the adds don't serialise the loads.
                        let mut acc = [0u64; 4];
                        for q in c.chunks_exact(4) {
                            for k in 0..4 {
                                acc[k] = acc[k].wrapping_add(q[k]);
                            }
                        }
                        acc.iter().fold(0u64, |a, b| a.wrapping_add(*b))
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().unwrap_or(0))
                .fold(0u64, |a, b| a.wrapping_add(b))
        });
        std::hint::black_box(total);
        best = best.max(BYTES as f64 / t.elapsed().as_secs_f64() / 1e9);
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
        "model: {} ({} params, {}, {:.1} MiB of matrices read per token)",
        a.model.display(),
        model.opts.n_params(),
        model.main_dtype,
        wbytes / (1 << 20) as f64
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
        let bw = read_bandwidth(t);
        println!(
            "machine read bandwidth: {bw:.1} GB/s ({t} threads, sum over 1 GiB) -> tg limit {:.1} t/s",
            bw * 1e9 / wbytes
        );
    }
    Ok(())
}
