//! `llm-run`: generate text from a `.llm` model, inspect it, tokenize, measure
//! perplexity. Text goes to stdout as it is generated; diagnostics go to stderr;
//! any error is one line on stderr and exit code 1.

mod bench;
mod chat;
mod compare;
mod device;
mod embed;
mod info;
mod perplexity;
mod sampling;

use clap::{Args, Parser, Subcommand};
use llmrt::sampler::SettingError;
use llmrt::{generate, ContextParams, Decoder, GenerateParams, Model};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "llm-run",
    version,
    about = "Run .llm language models on the CPU or a CUDA GPU: generate text, inspect files, tokenize, measure perplexity",
    args_conflicts_with_subcommands = true,
    allow_negative_numbers = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    gen: GenArgs,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print a model's options, tokenizer and tensors; --verify checks every tensor's checksum.
    Info(info::InfoArgs),
    /// Print the token ids of a text, space-separated.
    Tokenize(TokenizeArgs),
    /// Perplexity of a text file, in windows of --ctx tokens.
    Perplexity(perplexity::PplArgs),
    /// Prompt-processing and generation speed (tokens/s), like llama-bench.
    Bench(bench::BenchArgs),
    /// Chat interactively in the model's chat template (lines from stdin).
    Chat(chat::ChatArgs),
    /// Sentence embeddings of a file's lines, one vector per line.
    Embed(embed::EmbedArgs),
    /// Rank a file's lines by cosine similarity of their embeddings to --query.
    Similar(embed::SimilarArgs),
    /// The same prompts under several sampling settings: samples side by side and
    /// per setting distinct-1/2, 4-gram repetition, mean log-probability, tokens/s.
    Compare(compare::CompareArgs),
}

/// Generation (the default command).
#[derive(Args)]
struct GenArgs {
    /// Model file (.llm).
    #[arg(short = 'm', long)]
    model: Option<PathBuf>,
    /// Prompt text.
    #[arg(short = 'p', long, conflicts_with_all = ["file", "prompt_ids"])]
    prompt: Option<String>,
    /// Read the prompt from this file.
    #[arg(short = 'f', long, conflicts_with = "prompt_ids")]
    file: Option<PathBuf>,
    /// Prompt as token ids, space-separated ("1 2 3"), used as given (no BOS added).
    #[arg(long)]
    prompt_ids: Option<String>,
    /// Tokens to generate.
    #[arg(short = 'n', long, default_value_t = 128)]
    n_predict: usize,
    #[command(flatten)]
    sampler: sampling::SamplerArgs,
    /// Random seed; the same seed and flags give the same text on every machine
    /// (default: a fresh seed, printed on stderr).
    #[arg(short = 's', long)]
    seed: Option<u64>,
    /// Threads for the matrix products, at most 1024 (default: physical cores).
    #[arg(short = 't', long)]
    threads: Option<usize>,
    /// Where the model runs: auto (a CUDA GPU when one can run the model, else the
    /// CPU; the start-up line says which), cpu, or cuda (an error without a GPU).
    #[arg(long, value_enum, default_value = "auto")]
    device: device::Device,
    /// Stop before this text (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// Keep generating after the end-of-sequence token.
    #[arg(long)]
    ignore_eos: bool,
    /// Context length (default: the model's).
    #[arg(short = 'c', long, default_value_t = 0)]
    ctx_size: usize,
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
    /// Print the generated token ids, space-separated, instead of text.
    #[arg(long)]
    print_ids: bool,
    /// Do not prepend BOS to a text prompt even if the tokenizer asks for it.
    #[arg(long)]
    no_bos: bool,
    /// Spell out special tokens written in the prompt (`<|im_start|>`) as text.
    #[arg(long)]
    no_parse_special: bool,
    /// One chat turn: the prompt is the user's message in the model's chat template.
    #[arg(long, conflicts_with = "prompt_ids")]
    chat: bool,
    /// With --chat: a system message before the prompt.
    #[arg(long, requires = "chat")]
    system: Option<String>,
    /// With --chat: chatml, llama3, gemma or a Jinja FILE (default: the model's own).
    #[arg(long, requires = "chat", value_name = "chatml|llama3|gemma|FILE")]
    chat_template: Option<String>,
}

/// Arguments of `llm-run tokenize`.
#[derive(Args)]
struct TokenizeArgs {
    /// Model file (.llm).
    #[arg(short = 'm', long)]
    model: PathBuf,
    /// Text to tokenize.
    #[arg(short = 'p', long)]
    prompt: String,
    /// Do not prepend BOS even if the tokenizer asks for it.
    #[arg(long)]
    no_bos: bool,
    /// Spell out special tokens written in the text (`<|im_start|>`) as text.
    #[arg(long)]
    no_parse_special: bool,
}

/// The default thread count: physical cores, or logical ones where that is unknown.
pub(crate) fn default_threads() -> usize {
    let logical = std::thread::available_parallelism().map_or(1, |n| n.get());
    physical_cores().unwrap_or(logical).clamp(1, logical)
}

fn physical_cores() -> Option<usize> {
    // Linux: count distinct (physical id, core id) pairs.
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mut cores = std::collections::HashSet::new();
    let mut phys = "";
    for line in info.lines() {
        let mut kv = line.splitn(2, ':');
        let (k, v) = (kv.next()?.trim(), kv.next().unwrap_or("").trim());
        match k {
            "physical id" => phys = v,
            "core id" => {
                cores.insert((phys.to_string(), v.to_string()));
            }
            _ => {}
        }
    }
    (!cores.is_empty()).then_some(cores.len())
}

/// Parses `--cache-type`.
pub(crate) fn parse_cache_type(s: &str) -> Result<llmrt::CacheType, String> {
    llmrt::CacheType::from_name(s)
        .ok_or_else(|| format!("'{s}' is not a cache type (f16, q8_0, f32)"))
}

pub(crate) fn load(path: &Path) -> Result<Arc<Model>, String> {
    Model::load(path)
        .map(Arc::new)
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn parse_ids(s: &str) -> Result<Vec<u32>, String> {
    s.split_whitespace()
        .map(|t| {
            t.parse::<u32>()
                .map_err(|_| format!("--prompt-ids: '{t}' is not a token id"))
        })
        .collect()
}

/// A setting's error as the command line names it: `--top-p is 2: it must be …`.
pub(crate) fn flag_error(e: SettingError) -> String {
    format!(
        "--{} is {}: it {}",
        e.setting.replace('_', "-"),
        e.value,
        e.rule
    )
}

fn run_generate(a: GenArgs) -> Result<(), String> {
    let path = a
        .model
        .as_deref()
        .ok_or("no model given: use -m MODEL (see llm-run --help)")?;
    let mut sampler = a.sampler.config(0)?;
    let grammar = a.sampler.grammar()?;
    let threads = a.threads.unwrap_or_else(default_threads);
    let params = ContextParams {
        n_ctx: a.ctx_size,
        n_batch: 64,
        threads,
        cache_type: a.cache_type,
        n_seq: 1,
        f16_exact: a.f16_exact,
    };
    params.validate().map_err(flag_error)?;
    let model = load(path)?;
    sampler
        .validate_for_vocab(model.opts.vocab_size)
        .map_err(flag_error)?;
    let tok = &model.tokenizer;
    let mut stop = a.stop.clone();
    let mut stop_tokens = Vec::new();
    let prompt: Vec<u32> = if let Some(ids) = &a.prompt_ids {
        parse_ids(ids)?
    } else {
        let text = match (&a.prompt, &a.file) {
            (Some(p), _) => p.clone(),
            (None, Some(f)) => {
                std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?
            }
            (None, None) => {
                return Err("no prompt given: use -p TEXT, -f FILE or --prompt-ids".into())
            }
        };
        if a.chat {
            let turn = chat::one_turn(
                &model,
                &text,
                a.system.as_deref(),
                a.chat_template.as_deref(),
            )?;
            stop_tokens = turn.stop_tokens;
            stop.extend(turn.stop);
            turn.ids
        } else {
            tok.encode_with(&text, encode_options(a.no_bos, a.no_parse_special))
                .map_err(|e| e.to_string())?
        }
    };
    if prompt.is_empty() {
        return Err("the prompt is empty: give some text or token ids".into());
    }
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    sampler.seed = seed;
    let (mut ctx, on) = device::open(a.device, &model, &params)?;
    if prompt.len() >= ctx.n_ctx() {
        return Err(format!(
            "the prompt has {} tokens but the context holds {}",
            prompt.len(),
            ctx.n_ctx()
        ));
    }
    let gp = GenerateParams {
        max_tokens: a.n_predict,
        stop,
        ignore_eos: a.ignore_eos,
        stop_tokens,
        sampler,
        grammar,
    };
    eprintln!(
        "llm-run: {} ({} params, {}), {} prompt tokens, seed {seed}, {on}",
        path.display(),
        model.opts.n_params(),
        model.main_dtype,
        prompt.len()
    );
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let print_text = !a.print_ids;
    let start = Instant::now();
    let mut write_err = None;
    let g = generate(&mut ctx, &prompt, &gp, &mut |piece| {
        if print_text {
            if let Err(e) = out.write_all(piece.as_bytes()).and_then(|_| out.flush()) {
                write_err = Some(e);
                return false;
            }
        }
        true
    })
    .map_err(|e| e.to_string())?;
    if let Some(e) = write_err {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(format!("writing to stdout: {e}"));
        }
    }
    if a.print_ids {
        let ids: Vec<String> = g.tokens.iter().map(|t| t.to_string()).collect();
        writeln!(out, "{}", ids.join(" ")).map_err(|e| e.to_string())?;
    } else {
        writeln!(out).map_err(|e| e.to_string())?;
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "llm-run: {} tokens in {secs:.2} s ({:.1} tok/s, prompt included), stop: {:?}",
        g.tokens.len(),
        g.tokens.len() as f64 / secs.max(1e-9),
        g.reason
    );
    Ok(())
}

/// BOS/EOS as the file says unless `--no-bos`; special tokens parsed unless
/// `--no-parse-special`.
fn encode_options(no_bos: bool, no_parse_special: bool) -> llmrt::tokenizer::EncodeOptions {
    llmrt::tokenizer::EncodeOptions {
        add_special: !no_bos,
        parse_special: !no_parse_special,
    }
}

fn run_tokenize(a: TokenizeArgs) -> Result<(), String> {
    let model = load(&a.model)?;
    let tok = &model.tokenizer;
    let ids = tok
        .encode_with(&a.prompt, encode_options(a.no_bos, a.no_parse_special))
        .map_err(|e| e.to_string())?;
    let ids: Vec<String> = ids.iter().map(|t| t.to_string()).collect();
    println!("{}", ids.join(" "));
    Ok(())
}

fn main() -> ExitCode {
    llmrt::sys::restore_sigpipe();
    let cli = Cli::parse();
    let r = match cli.cmd {
        None => run_generate(cli.gen),
        Some(Cmd::Info(a)) => info::run(a),
        Some(Cmd::Tokenize(a)) => run_tokenize(a),
        Some(Cmd::Perplexity(a)) => perplexity::run(a),
        Some(Cmd::Bench(a)) => bench::run(a),
        Some(Cmd::Chat(a)) => chat::run(a),
        Some(Cmd::Embed(a)) => embed::run_embed(a),
        Some(Cmd::Similar(a)) => embed::run_similar(a),
        Some(Cmd::Compare(a)) => compare::run(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
