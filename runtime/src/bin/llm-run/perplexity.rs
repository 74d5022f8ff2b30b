//! `llm-run perplexity`: exp of the mean negative log-likelihood of a text, scored
//! in consecutive windows of `--ctx` tokens (each window starts with a fresh cache,
//! so its first token is context only). `--second-half` scores only the second half
//! of each window, as `llama-perplexity` does, so the two print the same figure for
//! the same model, text and context (the BOS llama.cpp puts first in a window is
//! matched when the model adds one).

use clap::Args;
use llmrt::{ops, Context, ContextParams};
use std::path::PathBuf;

/// Arguments of `llm-run perplexity`.
#[derive(Args)]
pub struct PplArgs {
    /// Model file (.llm).
    #[arg(short = 'm', long)]
    model: PathBuf,
    /// Text file to score.
    #[arg(short = 'f', long)]
    file: PathBuf,
    /// Window length in tokens (default: min(512, the model's context)).
    #[arg(long)]
    ctx: Option<usize>,
    /// Score at most this many windows (0: all).
    #[arg(long, default_value_t = 0)]
    chunks: usize,
    /// Threads (default: physical cores).
    #[arg(short = 't', long)]
    threads: Option<usize>,
    /// KV cache type: f16, q8_0 or f32.
    #[arg(long, default_value = "f16", value_parser = crate::parse_cache_type)]
    cache_type: llmrt::CacheType,
    /// F16/BF16 weights: keep f32 activations and products in prompts instead of
    /// the bf16 dot products (which round both to bf16 where the CPU has AVX-512
    /// BF16; this keeps f32 accuracy at about half the prompt speed).
    #[arg(long)]
    f16_exact: bool,
    /// Score only the second half of each window, every token with at least
    /// `ctx/2` tokens of context (llama-perplexity's method).
    #[arg(long)]
    second_half: bool,
    /// Refuse a text larger than this many bytes (default: a sixteenth of the memory
    /// available; the text, its tokens and the tokenizer's work must fit).
    #[arg(long)]
    max_bytes: Option<u64>,
}

/// Reads at most `cap` bytes of `path` as UTF-8 text; more is an error naming the
/// file, so a device or a huge file (`-f /dev/zero`) never grows memory without bound.
fn read_bounded(path: &std::path::Path, cap: u64) -> Result<String, String> {
    use std::io::Read;
    let name = path.display();
    let f = std::fs::File::open(path).map_err(|e| format!("{name}: {e}"))?;
    if let Ok(m) = f.metadata() {
        if m.is_file() && m.len() > cap {
            return Err(format!(
                "{name} is {} MiB, more than the {} MiB this machine can score at once (--max-bytes)",
                m.len() >> 20,
                cap >> 20
            ));
        }
    }
    let mut bytes = Vec::new();
    f.take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{name}: {e}"))?;
    if bytes.len() as u64 > cap {
        return Err(format!(
            "{name} holds more than {cap} bytes, the most this machine can score at once (--max-bytes)"
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "{name}: not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })
}

/// Runs the command.
pub fn run(a: PplArgs) -> Result<(), String> {
    let model = crate::load(&a.model)?;
    let cap = a
        .max_bytes
        .unwrap_or_else(|| llmrt::sys::mem_available().map_or(1 << 30, |m| (m / 16).max(1 << 20)));
    let text = read_bounded(&a.file, cap)?;
    let tokens = model
        .tokenizer
        .encode(&text, false)
        .map_err(|e| e.to_string())?;
    let n_ctx = a.ctx.unwrap_or(model.opts.max_len.min(512));
    if n_ctx < 2 {
        return Err(format!(
            "--ctx {n_ctx} is too small: a window needs 2 tokens at least"
        ));
    }
    if tokens.len() < n_ctx {
        return Err(format!(
            "{} holds {} tokens, fewer than one window of {n_ctx}",
            a.file.display(),
            tokens.len()
        ));
    }
    let params = ContextParams {
        n_ctx,
        n_batch: n_ctx.min(128),
        threads: a.threads.unwrap_or_else(crate::default_threads),
        cache_type: a.cache_type,
        n_seq: 1,
        f16_exact: a.f16_exact,
    };
    let mut ctx = Context::new(model.clone(), &params).map_err(|e| e.to_string())?;
    let vocab = model.opts.vocab_size;
    let mut windows = tokens.len() / n_ctx;
    if a.chunks > 0 {
        windows = windows.min(a.chunks);
    }
    let mut logits = Vec::new();
    let (mut nll, mut count) = (0.0f64, 0usize);
    let first = if a.second_half { n_ctx / 2 } else { 0 };
    let mut win = Vec::with_capacity(n_ctx);
    for w in 0..windows {
        win.clear();
        win.extend_from_slice(&tokens[w * n_ctx..(w + 1) * n_ctx]);
        if let (true, true, Some(bos)) = (
            a.second_half,
            model.tokenizer.add_bos(),
            model.tokenizer.bos(),
        ) {
            // llama-perplexity replaces each window's first token with BOS.
            win[0] = bos;
        }
        ctx.reset();
        ctx.eval_all(&win, &mut logits).map_err(|e| e.to_string())?;
        for i in first..n_ctx - 1 {
            let row = &logits[i * vocab..(i + 1) * vocab];
            nll -= ops::log_prob(row, win[i + 1] as usize) as f64;
            count += 1;
        }
        eprintln!(
            "[{}/{windows}] perplexity so far {:.4}",
            w + 1,
            (nll / count as f64).exp()
        );
    }
    println!("perplexity: {:.4}", (nll / count as f64).exp());
    Ok(())
}
