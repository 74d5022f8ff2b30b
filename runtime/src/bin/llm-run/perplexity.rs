//! `llm-run perplexity`: exp of the mean negative log-likelihood of a text, scored
//! in consecutive windows of `--ctx` tokens (each window starts with a fresh cache,
//! so its first token is context only). `--second-half` scores only the second half
//! of each window, as `llama-perplexity` does, so the two print the same figure for
//! the same model, text and context (the BOS llama.cpp puts first in a window is
//! matched when the model adds one).
//!
//! The file is streamed: read in pieces cut where the tokenizer gives the ids of the
//! whole text (`Tokenizer::last_safe_cut`, a line break between two non-blank
//! characters), each piece tokenized and its windows scored before the next is read,
//! so memory stays constant whatever the file's size. A stretch of text with no such
//! cut is held whole, up to a bound.

use clap::Args;
use llmrt::tokenizer::StreamEncoder;
use llmrt::{ops, ContextParams, Decoder};
use std::io::Read;
use std::path::{Path, PathBuf};

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
    /// Where the model runs: auto (a CUDA GPU when one can run the model, else the
    /// CPU), cpu, or cuda (an error without a GPU).
    #[arg(long, value_enum, default_value = "auto")]
    device: crate::device::Device,
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
    /// Score only the second half of each window, every token with at least
    /// `ctx/2` tokens of context (llama-perplexity's method).
    #[arg(long)]
    second_half: bool,
    /// Refuse a text larger than this many bytes (default: no limit; the file is
    /// streamed in pieces cut at line breaks, in constant memory).
    #[arg(long)]
    max_bytes: Option<u64>,
    /// Bytes read at a time (tests use small pieces to check that streaming gives the
    /// whole text's figure).
    #[arg(long, default_value_t = 1 << 20, hide = true)]
    piece_bytes: usize,
}

/// The most text held at once when a file has no place to cut it (a line break
/// between two non-blank characters), unless the memory available is smaller.
const MAX_UNCUT: u64 = 64 << 20;

/// Opens `path`, refusing a regular file over `--max-bytes` from its size.
fn open(path: &Path, max_bytes: Option<u64>) -> Result<std::fs::File, String> {
    let name = path.display();
    let file = std::fs::File::open(path).map_err(|e| format!("{name}: {e}"))?;
    if let (Some(cap), Ok(m)) = (max_bytes, file.metadata()) {
        if m.is_file() && m.len() > cap {
            return Err(format!(
                "{name} is {} MiB, more than --max-bytes {cap} allows",
                m.len() >> 20
            ));
        }
    }
    Ok(file)
}

/// Runs the command.
pub fn run(a: PplArgs) -> Result<(), String> {
    let model = crate::load(&a.model)?;
    let tok = &model.tokenizer;
    let n_ctx = a.ctx.unwrap_or(model.opts.max_len.min(512));
    if n_ctx < 2 {
        return Err(format!(
            "--ctx {n_ctx} is too small: a window needs 2 tokens at least"
        ));
    }
    let name = a.file.display();
    let file = open(&a.file, a.max_bytes)?;
    // One byte over the cap is read, to tell a text of exactly the cap from a longer one.
    let file = file.take(a.max_bytes.map_or(u64::MAX, |c| c.saturating_add(1)));
    let mem = llmrt::sys::mem_available().map_or(MAX_UNCUT, |m| (m / 16).max(1 << 20));
    let max_held = MAX_UNCUT.min(mem) as usize;
    let mut pieces = StreamEncoder::new(tok, file, a.piece_bytes, max_held);
    let params = ContextParams {
        n_ctx,
        n_batch: n_ctx.min(128),
        threads: a.threads.unwrap_or_else(crate::default_threads),
        cache_type: a.cache_type,
        n_seq: 1,
        f16_exact: a.f16_exact,
    };
    let (mut ctx, on) = crate::device::open(a.device, &model, &params)?;
    eprintln!(
        "llm-run: {}, windows of {n_ctx} tokens, {on}",
        a.model.display()
    );
    let vocab = model.opts.vocab_size;
    let max_windows = if a.chunks > 0 { a.chunks } else { usize::MAX };
    let mut logits = Vec::new();
    let (mut nll, mut count, mut windows, mut n_tokens) = (0.0f64, 0usize, 0usize, 0usize);
    let first = if a.second_half { n_ctx / 2 } else { 0 };
    // Tokens not yet scored: less than a window, plus one piece's.
    let mut pending: Vec<u32> = Vec::new();
    while windows < max_windows {
        let next = pieces.next_ids();
        if let Some(cap) = a.max_bytes.filter(|&c| pieces.bytes_read() > c) {
            return Err(format!("{name} holds more than {cap} bytes (--max-bytes)"));
        }
        let Some(ids) = next.map_err(|e| format!("{name}: {e}"))? else {
            break;
        };
        n_tokens += ids.len();
        pending.extend_from_slice(&ids);
        let mut used = 0;
        while pending.len() - used >= n_ctx && windows < max_windows {
            let win = &mut pending[used..used + n_ctx];
            if let (true, true, Some(bos)) = (a.second_half, tok.add_bos(), tok.bos()) {
                // llama-perplexity replaces each window's first token with BOS.
                win[0] = bos;
            }
            ctx.reset();
            ctx.eval_all(win, &mut logits).map_err(|e| e.to_string())?;
            for i in first..n_ctx - 1 {
                let row = &logits[i * vocab..(i + 1) * vocab];
                nll -= ops::log_prob(row, win[i + 1] as usize) as f64;
                count += 1;
            }
            used += n_ctx;
            windows += 1;
            eprintln!(
                "[{windows}] perplexity so far {:.4}",
                (nll / count as f64).exp()
            );
        }
        pending.drain(..used);
    }
    if windows == 0 {
        return Err(format!(
            "{name} holds {n_tokens} tokens, fewer than one window of {n_ctx}"
        ));
    }
    println!("perplexity: {:.4}", (nll / count as f64).exp());
    Ok(())
}
