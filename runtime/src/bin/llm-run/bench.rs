//! `llm-run bench`: prompt processing (pp) and text generation (tg) speed, in the
//! manner of llama-bench, plus generation's effective memory bandwidth beside the
//! machine's measured read bandwidth. With `--grammar` / `--json-schema`, also
//! constrained generation: the grammar's mask and accept timed apart from the model.
//!
//! `--device cuda` (or `auto` where a GPU can run the model) times the same tests on
//! the GPU context, and sets generation beside the device's copy bandwidth measured
//! in the same run (the roofline share of tg).

use clap::Args;
use llmrt::grammar::{Grammar, GrammarMatcher, TokenTrie};
use llmrt::sampler::argmax;
use llmrt::{BatchEntry, Context, ContextParams, Decoder};
use std::path::PathBuf;
use std::sync::Arc;
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
    /// Keep f32 activations and products: for F16/BF16 weights in prompts (and BF16
    /// generation) instead of bf16 dot products (which round both to bf16 where the
    /// CPU has AVX-512 BF16 or aarch64 BF16), and for F32 prompts instead of the AMX
    /// tiles' three bf16 products (about 2⁻¹⁶ relative per product). Exact f32 at
    /// half to a third of the prompt speed.
    #[arg(long, visible_alias = "exact")]
    f16_exact: bool,
    /// Skip the memory-bandwidth measurement.
    #[arg(long)]
    no_bandwidth: bool,
    /// Also time greedy generation under this GBNF grammar (mask + accept per token).
    #[arg(long, value_name = "FILE", conflicts_with = "json_schema")]
    grammar: Option<PathBuf>,
    /// Also time greedy generation under this JSON Schema.
    #[arg(long, value_name = "FILE")]
    json_schema: Option<PathBuf>,
    /// The prompt of the constrained generation.
    #[arg(
        long,
        default_value = "A list of people as JSON, with name, age and city:"
    )]
    grammar_prompt: String,
    /// Also time generation of several sequences decoded together, for each count
    /// given (comma-separated, e.g. 1,2,4,8): one context holding them, one batch of
    /// one token per sequence per step ([`Context::eval_batch`]); t/s counts every
    /// sequence's tokens. 1 is the single-sequence API (the plain tg test, which this
    /// replaces). The counts alternate within each repetition, so that a machine's
    /// drift touches them alike.
    #[arg(long, value_delimiter = ',')]
    seqs: Vec<usize>,
    /// Where the model runs: auto (a CUDA GPU when one can run the model, else the
    /// CPU), cpu, or cuda (an error without a GPU). On the GPU, --threads,
    /// --cache-type, --f16-exact and --seqs do not apply (one sequence, f32 cache).
    #[arg(long, value_enum, default_value = "auto")]
    device: crate::device::Device,
}

/// Greedy generation of `ng` tokens after `prompt` under `g`, `reps` times after a
/// warm-up, each with a fresh matcher (cold caches, as each generation has): prints
/// tokens/s and the grammar's share (mask + accept) per token; `label` fills the
/// table's first column (the threads, or the device).
fn bench_grammar(
    ctx: &mut dyn Decoder,
    label: &str,
    g: &Arc<Grammar>,
    prompt: &[u32],
    ng: usize,
    reps: usize,
) -> Result<(), String> {
    let model = ctx.model().clone();
    let tok = &model.tokenizer;
    let ends: Vec<u32> = tok.eos().into_iter().collect();
    let s = Instant::now();
    let trie = Arc::new(TokenTrie::for_tokenizer(tok, &ends));
    let build_ms = s.elapsed().as_secs_f64() * 1e3;
    let mut rates = Vec::new();
    let mut per_token_ms = Vec::new();
    let mut allowed = Vec::new();
    let mut produced = 0;
    for rep in 0..=reps {
        ctx.reset();
        let mut m = GrammarMatcher::new(g, trie.clone());
        let mut logits = ctx.eval(prompt).map_err(|e| e.to_string())?.to_vec();
        let start = Instant::now();
        let mut in_grammar = std::time::Duration::ZERO;
        let mut n = 0;
        while n < ng {
            let t = Instant::now();
            m.apply(&mut logits, &mut allowed)
                .map_err(|e| e.to_string())?;
            let next = argmax(&logits) as u32;
            m.accept(next, tok.token_bytes(next))
                .map_err(|e| e.to_string())?;
            in_grammar += t.elapsed();
            if ends.contains(&next) {
                break;
            }
            n += 1;
            logits.copy_from_slice(ctx.eval(&[next]).map_err(|e| e.to_string())?);
        }
        if rep > 0 && n > 0 {
            rates.push(n as f64 / start.elapsed().as_secs_f64());
            per_token_ms.push(in_grammar.as_secs_f64() * 1e3 / n as f64);
            produced = n;
        }
    }
    if rates.is_empty() {
        return Err("the grammar ended generation before the first token".into());
    }
    let (m, sd) = mean_sd(&rates);
    let (gm, gsd) = mean_sd(&per_token_ms);
    println!(
        "| {label:>7} | tg{produced:<4}+grammar | {m:>10.1} | {sd:>7.1} | grammar {gm:.3} ± {gsd:.3} ms/token, trie {build_ms:.0} ms |"
    );
    Ok(())
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
    let grammar = crate::sampling::read_grammar(a.grammar.as_ref(), a.json_schema.as_ref())?;
    let model = crate::load(&a.model)?;
    let threads = if a.threads.is_empty() {
        vec![crate::default_threads()]
    } else {
        a.threads.clone()
    };
    let reps = a.reps.max(1);
    let vocab = model.opts.vocab_size as u32;
    let wbytes = model.weight_bytes_per_token() as f64;
    let need = a
        .n_prompt
        .iter()
        .chain(&a.n_gen)
        .copied()
        .max()
        .unwrap_or(1)
        + 1;
    let params = |t: usize| ContextParams {
        n_ctx: (need + 64).min(model.opts.max_len).max(2),
        n_batch: 512,
        threads: t,
        cache_type: a.cache_type,
        n_seq: 1,
        f16_exact: a.f16_exact,
    };
    let mut fallback = None;
    if a.device != crate::device::Device::Cpu {
        let (engine, why) = crate::device::select(a.device, &model, &params(threads[0]))?;
        #[cfg(feature = "cuda")]
        if let crate::device::Engine::Gpu(g) = engine {
            return gpu::run(&a, &model, grammar.as_ref(), g, need);
        }
        drop(engine);
        fallback = why;
    }
    println!(
        "model: {} ({} params, {}, {:.1} MiB of matrices read per token), {} KV cache",
        a.model.display(),
        model.opts.n_params(),
        model.main_dtype,
        wbytes / (1 << 20) as f64,
        a.cache_type
    );
    if let Some(why) = fallback {
        println!("device: cpu (auto: {why})");
    }
    let mut cpu = llmrt::kernels::Cpu::new(1);
    if a.f16_exact {
        cpu.set_f16_exact(true);
    }
    println!(
        "kernels: {}; F16/BF16 prompts: {}; F32 and K-quant prompts: {}",
        cpu.path(),
        if cpu.amx_prompts() {
            "bf16 on AMX tiles"
        } else if cpu.bf16_prompts() {
            "bf16 dot products"
        } else {
            "f32 products"
        },
        if cpu.amx_prompts() {
            "bf16x3 / dequantised bf16 on AMX tiles"
        } else {
            "f32 products / Q8_K integer dots"
        }
    );
    println!("| threads | test   |        t/s |      sd | GB/s (weights) |");
    println!("|--------:|:-------|-----------:|--------:|---------------:|");
    for &t in &threads {
        let mut ctx = Context::new(model.clone(), &params(t)).map_err(|e| e.to_string())?;
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
        // With --seqs, generation is timed by `parallel` (its 1 is this test).
        for &ng in a.n_gen.iter().filter(|&&n| n > 0 && a.seqs.is_empty()) {
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
            if let Some(g) = &grammar {
                let prompt = model
                    .tokenizer
                    .encode(&a.grammar_prompt, model.tokenizer.add_bos())
                    .map_err(|e| e.to_string())?;
                if prompt.is_empty() || prompt.len() + ng + 1 > ctx.n_ctx() {
                    return Err("--grammar-prompt and -n do not fit the context".into());
                }
                bench_grammar(&mut ctx, &t.to_string(), g, &prompt, ng, reps)?;
            }
        }
    }
    if !a.seqs.is_empty() {
        parallel(&a, &model, &threads)?;
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

/// Aggregate generation speed of `a.seqs` sequences decoded together (see
/// [`BenchArgs::seqs`]): after one token in each sequence, `n` steps of one batch
/// holding the next token of every sequence, logits on; the counts interleaved
/// within each repetition, the first repetition a warm-up.
fn parallel(
    a: &BenchArgs,
    model: &std::sync::Arc<llmrt::Model>,
    threads: &[usize],
) -> Result<(), String> {
    let vocab = model.opts.vocab_size as u32;
    let wbytes = model.weight_bytes_per_token() as f64;
    let reps = a.reps.max(1);
    println!();
    println!("| threads | test     | seqs |    t/s (all) |      sd |   ratio | GB/s (weights) |");
    println!("|--------:|:---------|-----:|-------------:|--------:|--------:|---------------:|");
    for &t in threads {
        for &ng in a.n_gen.iter().filter(|&&n| n > 0) {
            let mut ctxs = Vec::new();
            for &ns in &a.seqs {
                let ns = ns.max(1);
                let per = (ng + 1).min(model.opts.max_len);
                if ng + 1 > per {
                    return Err(format!(
                        "-n {ng} exceeds the model's context {}",
                        model.opts.max_len
                    ));
                }
                let params = ContextParams {
                    n_ctx: per * ns,
                    n_batch: ns.max(8),
                    threads: t,
                    cache_type: a.cache_type,
                    n_seq: ns,
                    f16_exact: a.f16_exact,
                };
                ctxs.push((
                    ns,
                    Context::new(model.clone(), &params).map_err(|e| e.to_string())?,
                ));
            }
            let mut rates = vec![Vec::new(); ctxs.len()];
            for rep in 0..=reps {
                for ((ns, ctx), rates) in ctxs.iter_mut().zip(&mut rates) {
                    let ns = *ns;
                    ctx.reset();
                    let tok = |i: usize, s: usize| ((i * 7919 + s * 104729 + 13) as u32) % vocab;
                    let step = |ctx: &mut Context, i: usize| -> Result<(), String> {
                        if ns == 1 {
                            ctx.eval(&[tok(i, 0)]).map(|_| ())
                        } else {
                            let batch: Vec<BatchEntry> = (0..ns)
                                .map(|s| BatchEntry {
                                    token: tok(i, s),
                                    seq: s,
                                    logits: true,
                                })
                                .collect();
                            ctx.eval_batch(&batch)
                        }
                        .map_err(|e| e.to_string())
                    };
                    step(ctx, 0)?;
                    let start = Instant::now();
                    for i in 0..ng {
                        step(ctx, i + 1)?;
                    }
                    if rep > 0 {
                        rates.push((ng * ns) as f64 / start.elapsed().as_secs_f64());
                    }
                }
            }
            let base = mean_sd(&rates[0]).0;
            for ((ns, _), r) in ctxs.iter().zip(&rates) {
                let (m, sd) = mean_sd(r);
                let test = format!("tg{ng}");
                println!(
                    "| {t:>7} | {test:<8} | {ns:>4} | {m:>12.1} | {sd:>7.1} | {:>7.2} | {:>14.1} |",
                    m / base,
                    m / *ns as f64 * wbytes / 1e9
                );
            }
        }
    }
    Ok(())
}

/// `llm-run bench` on a GPU context: the CPU bench's pp and tg tests (and the grammar
/// test), timed around `eval` (which returns once the logits are read back, so it is
/// synchronous), then tg beside the device's copy bandwidth measured in this run.
#[cfg(feature = "cuda")]
mod gpu {
    use super::{bench_grammar, mean_sd, BenchArgs};
    use llmrt::cuda::{Gpu, GpuDecoder};
    use llmrt::grammar::Grammar;
    use llmrt::{Decoder, Model};
    use std::sync::Arc;
    use std::time::Instant;

    /// Bytes each timed copy moves (read from one buffer, written to another).
    const COPY_BYTES: usize = 256 << 20;

    /// Device-to-device copy bandwidth in GB/s: `COPY_BYTES` copied from one device
    /// buffer to another, each copy timed from launch to `synchronize`, best of 5
    /// after a warm-up; every copy counts its bytes twice (read + write), as
    /// llama.cpp and nvbandwidth count device copies.
    pub fn copy_bandwidth(gpu: &Gpu) -> Result<f64, String> {
        let e = |e: llmrt::cuda::CudaError| format!("copy bandwidth: {e}");
        let src = gpu.alloc(COPY_BYTES).map_err(e)?;
        let dst = gpu.alloc(COPY_BYTES).map_err(e)?;
        gpu.copy(&dst, 0, &src, 0, COPY_BYTES).map_err(e)?;
        gpu.synchronize().map_err(e)?;
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            gpu.copy(&dst, 0, &src, 0, COPY_BYTES).map_err(e)?;
            gpu.synchronize().map_err(e)?;
            best = best.min(t.elapsed().as_secs_f64());
        }
        Ok(2.0 * COPY_BYTES as f64 / best.max(1e-12) / 1e9)
    }

    /// Runs the bench on `g` (sized for `need` tokens).
    pub fn run(
        a: &BenchArgs,
        model: &Arc<Model>,
        grammar: Option<&Arc<Grammar>>,
        mut g: GpuDecoder,
        need: usize,
    ) -> Result<(), String> {
        if !a.seqs.is_empty() {
            return Err(
                "--seqs: the GPU context holds one sequence; use --device cpu for --seqs".into(),
            );
        }
        let reps = a.reps.max(1);
        let vocab = model.opts.vocab_size as u32;
        let wbytes = model.weight_bytes_per_token() as f64;
        println!(
            "model: {} ({} params, {}, {:.1} MiB of matrices read per token), f32 KV cache",
            a.model.display(),
            model.opts.n_params(),
            model.main_dtype,
            wbytes / (1 << 20) as f64,
        );
        println!(
            "device: cuda: {} (--threads, --cache-type and --f16-exact apply to the CPU only)",
            g.gpu().name()
        );
        println!("| device  | test   |        t/s |      sd | GB/s (weights) |");
        println!("|--------:|:-------|-----------:|--------:|---------------:|");
        let label = "cuda";
        let err = |e: llmrt::Error| e.to_string();
        let toks: Vec<u32> = (0..need as u32).map(|i| (i * 7919 + 13) % vocab).collect();
        for &np in a.n_prompt.iter().filter(|&&n| n > 0) {
            if np > g.n_ctx() {
                return Err(format!("-p {np} exceeds the model's context {}", g.n_ctx()));
            }
            g.reset();
            g.eval(&toks[..np]).map_err(err)?; // warm-up
            let mut rates = Vec::new();
            for _ in 0..reps {
                g.reset();
                let s = Instant::now();
                g.eval(&toks[..np]).map_err(err)?;
                rates.push(np as f64 / s.elapsed().as_secs_f64());
            }
            let (m, sd) = mean_sd(&rates);
            println!("| {label:>7} | pp{np:<4} | {m:>10.1} | {sd:>7.1} |              - |");
        }
        let mut tg = Vec::new();
        for &ng in a.n_gen.iter().filter(|&&n| n > 0) {
            if ng + 1 > g.n_ctx() {
                return Err(format!("-n {ng} exceeds the model's context {}", g.n_ctx()));
            }
            let mut rates = Vec::new();
            for rep in 0..=reps {
                g.reset();
                g.eval(&toks[..1]).map_err(err)?;
                let s = Instant::now();
                for i in 0..ng {
                    g.eval(&toks[i + 1..i + 2]).map_err(err)?;
                }
                if rep > 0 {
                    rates.push(ng as f64 / s.elapsed().as_secs_f64());
                }
            }
            let (m, sd) = mean_sd(&rates);
            println!(
                "| {label:>7} | tg{ng:<4} | {m:>10.1} | {sd:>7.1} | {:>14.1} |",
                m * wbytes / 1e9
            );
            tg.push((ng, m));
            if let Some(gr) = grammar {
                let prompt = model
                    .tokenizer
                    .encode(&a.grammar_prompt, model.tokenizer.add_bos())
                    .map_err(|e| e.to_string())?;
                if prompt.is_empty() || prompt.len() + ng + 1 > g.n_ctx() {
                    return Err("--grammar-prompt and -n do not fit the context".into());
                }
                bench_grammar(&mut g, label, gr, &prompt, ng, reps)?;
            }
        }
        if !a.no_bandwidth {
            let bw = copy_bandwidth(g.gpu())?;
            println!(
                "device copy bandwidth: {bw:.1} GB/s (best of 5 device-to-device copies of a \
                 {} MiB buffer, read + write bytes counted: 2 × {} MiB per copy, as llama.cpp \
                 and nvbandwidth count them) -> tg limit {:.1} t/s",
                COPY_BYTES >> 20,
                COPY_BYTES >> 20,
                bw * 1e9 / wbytes
            );
            for (ng, m) in tg {
                println!(
                    "tg{ng} roofline share: {:.1}% ({:.1} MiB of matrices per token × {m:.1} t/s \
                     = {:.1} GB/s of the {bw:.1} GB/s copy bandwidth)",
                    100.0 * m * wbytes / (bw * 1e9),
                    wbytes / (1 << 20) as f64,
                    m * wbytes / 1e9
                );
            }
        }
        Ok(())
    }
}
