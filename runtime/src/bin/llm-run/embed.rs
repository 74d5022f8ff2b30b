//! `llm-run embed` and `llm-run similar`: sentence embeddings of the lines of a
//! file (the hidden states after the final norm, pooled), and the lines ranked by
//! cosine similarity to a query, the small demo of what embeddings are for.

use clap::{Args, ValueEnum};
use llmrt::embed::{cosine, embed_until, Pooling};
use llmrt::{Context, ContextParams, Model};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

/// How the token states become one vector.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PoolArg {
    /// The mean over every token.
    Mean,
    /// The last token's state.
    Last,
    /// The first token's state (CLS; with a BOS the same for every text of a causal model).
    First,
}

impl From<PoolArg> for Pooling {
    fn from(p: PoolArg) -> Pooling {
        match p {
            PoolArg::Mean => Pooling::Mean,
            PoolArg::Last => Pooling::Last,
            PoolArg::First => Pooling::First,
        }
    }
}

/// How `embed` prints a vector.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    /// One JSON array per line (JSON Lines).
    Json,
    /// Values separated by tabs.
    Tsv,
}

/// What `embed` and `similar` share.
#[derive(Args)]
pub struct Common {
    /// Model file (.llm).
    #[arg(short = 'm', long)]
    model: PathBuf,
    /// Pooling of the token states.
    #[arg(long, value_enum, default_value_t = PoolArg::Mean)]
    pooling: PoolArg,
    /// Threads (default: physical cores).
    #[arg(short = 't', long)]
    threads: Option<usize>,
    /// Context length, the longest line in tokens (default: the model's).
    #[arg(short = 'c', long, default_value_t = 0)]
    ctx_size: usize,
    /// KV-cache storage: f16, q8_0 or f32.
    #[arg(long, default_value = "f16", value_parser = crate::parse_cache_type)]
    cache_type: llmrt::CacheType,
    /// Keep f32 activations and products: for F16/BF16 weights in prompts (and BF16
    /// generation) instead of bf16 dot products (which round both to bf16 where the
    /// CPU has AVX-512 BF16 or aarch64 BF16), and for F32 prompts instead of the AMX
    /// tiles' three bf16 products (about 2⁻¹⁶ relative per product). Exact f32 at
    /// half to a third of the prompt speed.
    #[arg(long, visible_alias = "exact")]
    f16_exact: bool,
    /// Do not prepend BOS even if the tokenizer asks for it.
    #[arg(long)]
    no_bos: bool,
}

/// Arguments of `llm-run embed`.
#[derive(Args)]
pub struct EmbedArgs {
    #[command(flatten)]
    common: Common,
    /// Text file: one text per line (blank lines are skipped).
    #[arg(short = 'f', long)]
    file: PathBuf,
    /// Scale each vector to unit length.
    #[arg(long)]
    normalize: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
}

/// Arguments of `llm-run similar`.
#[derive(Args)]
pub struct SimilarArgs {
    #[command(flatten)]
    common: Common,
    /// The text to compare every line with.
    #[arg(long)]
    query: String,
    /// Corpus file: one text per line (blank lines are skipped).
    #[arg(short = 'f', long)]
    file: PathBuf,
    /// Print the best N lines (0: all).
    #[arg(long, default_value_t = 0)]
    top: usize,
}

/// A model and a context to embed with.
struct Embedder {
    model: Arc<Model>,
    ctx: Context,
    pooling: Pooling,
    bos: bool,
    scratch: Vec<f32>,
}

impl Embedder {
    fn new(c: &Common) -> Result<Embedder, String> {
        let model = crate::load(&c.model)?;
        let params = ContextParams {
            n_ctx: c.ctx_size,
            n_batch: 64,
            threads: c.threads.unwrap_or_else(crate::default_threads),
            cache_type: c.cache_type,
            n_seq: 1,
            f16_exact: c.f16_exact,
        };
        let ctx = Context::new(model.clone(), &params).map_err(|e| e.to_string())?;
        Ok(Embedder {
            bos: model.tokenizer.add_bos() && !c.no_bos,
            model,
            ctx,
            pooling: c.pooling.into(),
            scratch: Vec::new(),
        })
    }

    fn embed(&mut self, text: &str, normalize: bool) -> Result<Vec<f32>, String> {
        let ids = self
            .model
            .tokenizer
            .encode(text, self.bos)
            .map_err(|e| e.to_string())?;
        embed_until(
            &mut self.ctx,
            &ids,
            self.pooling,
            normalize,
            &mut self.scratch,
            &|| false,
        )
        .map_err(|e| format!("{text:?}: {e}"))?
        .ok_or_else(|| "cancelled".to_string())
    }
}

/// The non-blank lines of a file.
fn lines(path: &PathBuf) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let v: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(String::from)
        .collect();
    if v.is_empty() {
        return Err(format!("{} has no non-blank line", path.display()));
    }
    Ok(v)
}

/// Writes to stdout, ending quietly when the reader has gone (a closed pipe).
fn write_out(out: &mut impl Write, s: &str) -> Result<bool, String> {
    match out.write_all(s.as_bytes()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(format!("writing to stdout: {e}")),
    }
}

/// Runs `llm-run embed`.
pub fn run_embed(a: EmbedArgs) -> Result<(), String> {
    let texts = lines(&a.file)?;
    let mut e = Embedder::new(&a.common)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for t in &texts {
        let v = e.embed(t, a.normalize)?;
        let vals: Vec<String> = v.iter().map(|x| x.to_string()).collect();
        let line = match a.format {
            Format::Json => format!("[{}]\n", vals.join(",")),
            Format::Tsv => format!("{}\n", vals.join("\t")),
        };
        if !write_out(&mut out, &line)? {
            return Ok(());
        }
    }
    out.flush().map_err(|e| format!("writing to stdout: {e}"))
}

/// Runs `llm-run similar`: prints `score<TAB>line`, best first.
pub fn run_similar(a: SimilarArgs) -> Result<(), String> {
    let texts = lines(&a.file)?;
    let mut e = Embedder::new(&a.common)?;
    let q = e.embed(&a.query, false)?;
    let mut scored = Vec::with_capacity(texts.len());
    for t in &texts {
        let v = e.embed(t, false)?;
        scored.push((cosine(&q, &v), t));
    }
    // Best first; ties keep the file's order.
    scored.sort_by(|x, y| y.0.total_cmp(&x.0));
    let n = if a.top == 0 { scored.len() } else { a.top };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for (s, t) in scored.iter().take(n) {
        if !write_out(&mut out, &format!("{s:.6}\t{t}\n"))? {
            return Ok(());
        }
    }
    out.flush().map_err(|e| format!("writing to stdout: {e}"))
}
