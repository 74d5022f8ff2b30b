//! `llm-run chat`: an interactive conversation in the model's chat template, and the
//! one-turn prompt of `llm-run -p TEXT --chat`.
//!
//! Each turn renders the whole conversation, tokenizes it and evaluates only the
//! tokens after the prefix the KV cache already holds, so earlier turns are not
//! evaluated again. Answers stream to stdout and end at the template's end-of-turn
//! token (or EOS), which is not printed. Ctrl-C stops the current answer; at the
//! prompt it leaves, as Ctrl-D and `/exit` do.
//!
//! `/save FILE` writes the KV cache state to `FILE` ([`Context::save_state_file`]) and
//! the conversation to `FILE.json`; `/load FILE` reads both back, so the next turn
//! evaluates only its own message. Should the two files not belong together, the next
//! turn still answers right: it keeps only the cached tokens the rendered
//! conversation starts with.

use crate::{default_threads, load};
use clap::Args;
use llmrt::chat::{builtin, common_prefix, ChatTemplate, Message};
use llmrt::sampler::SamplerConfig;
use llmrt::{generate_until, Context, ContextParams, GenerateParams, Model, StopReason};
use serde_json::{json, Value};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Arguments of `llm-run chat`.
#[derive(Args)]
pub struct ChatArgs {
    /// Model file (.llm).
    #[arg(short = 'm', long)]
    model: PathBuf,
    /// A system message that opens the conversation (kept by /clear).
    #[arg(long)]
    system: Option<String>,
    /// Chat template: chatml, llama3, gemma or a Jinja FILE (default: the model's own).
    #[arg(long, value_name = "chatml|llama3|gemma|FILE")]
    chat_template: Option<String>,
    /// Most tokens per answer.
    #[arg(short = 'n', long, default_value_t = 512)]
    n_predict: usize,
    #[command(flatten)]
    sampler: crate::sampling::SamplerArgs,
    /// Random seed (default: a fresh one, printed on stderr).
    #[arg(short = 's', long)]
    seed: Option<u64>,
    /// Threads for the matrix products (default: physical cores).
    #[arg(short = 't', long)]
    threads: Option<usize>,
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
    /// Where the model runs: chat runs on the CPU only for now (auto and cpu; cuda is
    /// an error, see `llm-run -p TEXT --chat --device cuda` for one turn on a GPU).
    #[arg(long, value_enum, default_value = "auto")]
    device: crate::device::Device,
}

/// The template `choice` names (a built-in name or a Jinja file), or the model's own.
pub(crate) fn template(model: &Model, choice: Option<&str>) -> Result<ChatTemplate, String> {
    let text = match choice {
        None => None,
        Some(name) if builtin::by_name(name).is_some() => Some(name.to_string()),
        Some(file) => Some(std::fs::read_to_string(file).map_err(|e| {
            format!(
                "--chat-template: '{file}' is not one of {} nor a readable file ({e})",
                builtin::ALL.map(|(n, _)| n).join(", ")
            )
        })?),
    };
    ChatTemplate::for_model(model, text.as_deref()).map_err(|e| match choice {
        None => format!("{e} with --chat-template"),
        Some(_) => e.to_string(),
    })
}

/// The prompt of one chat turn and what ends the answer.
pub(crate) struct OneTurn {
    /// Prompt token ids.
    pub ids: Vec<u32>,
    /// End-of-turn token ids.
    pub stop_tokens: Vec<u32>,
    /// End-of-turn texts.
    pub stop: Vec<String>,
}

/// The one-turn chat prompt of `llm-run -p TEXT --chat`.
pub(crate) fn one_turn(
    model: &Model,
    text: &str,
    system: Option<&str>,
    choice: Option<&str>,
) -> Result<OneTurn, String> {
    let t = template(model, choice)?;
    let mut messages: Vec<Message> = system
        .map(|s| Message::new("system", s))
        .into_iter()
        .collect();
    messages.push(Message::new("user", text));
    let ids = t
        .tokenize(&model.tokenizer, &messages, true)
        .map_err(|e| e.to_string())?;
    let (stop_tokens, stop) = t.end_of_turn(&model.tokenizer);
    Ok(OneTurn {
        ids,
        stop_tokens,
        stop,
    })
}

/// Set while an answer is generated: Ctrl-C then stops the answer instead of leaving.
static ANSWERING: AtomicBool = AtomicBool::new(false);
/// Set by Ctrl-C during an answer; read before each token.
static STOP: AtomicBool = AtomicBool::new(false);

/// Runs `llm-run chat`.
pub fn run(a: ChatArgs) -> Result<(), String> {
    if a.device == crate::device::Device::Cuda {
        return Err(
            "--device cuda: llm-run chat runs on the CPU only for now (/save and /load \
                    keep the CPU's KV cache); llm-run -p TEXT --chat --device cuda answers one \
                    turn on the GPU"
                .into(),
        );
    }
    let model = load(&a.model)?;
    let sampler = a.sampler.config(0)?;
    sampler
        .validate_for_vocab(model.opts.vocab_size)
        .map_err(crate::flag_error)?;
    let grammar = a.sampler.grammar()?;
    let tmpl = template(&model, a.chat_template.as_deref())?;
    let tok = &model.tokenizer;
    let threads = a.threads.unwrap_or_else(default_threads);
    let mut ctx = Context::new(
        model.clone(),
        &ContextParams {
            n_ctx: a.ctx_size,
            n_batch: 64,
            threads,
            cache_type: a.cache_type,
            n_seq: 1,
            f16_exact: a.f16_exact,
        },
    )
    .map_err(|e| e.to_string())?;
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    let (stop_tokens, stop) = tmpl.end_of_turn(tok);
    let mut gp = GenerateParams {
        max_tokens: a.n_predict,
        stop,
        ignore_eos: false,
        stop_tokens,
        sampler: SamplerConfig { seed, ..sampler },
        grammar,
    };
    ctrlc::set_handler(|| {
        if ANSWERING.load(Ordering::SeqCst) {
            STOP.store(true, Ordering::SeqCst);
        } else {
            eprintln!();
            std::process::exit(130);
        }
    })
    .map_err(|e| format!("installing the Ctrl-C handler: {e}"))?;
    let source = match &a.chat_template {
        Some(c) => c.as_str(),
        None => "the model's own",
    };
    eprintln!(
        "llm-run chat: {} ({} params), template: {source}, seed {seed}, context {} tokens",
        a.model.display(),
        model.opts.n_params(),
        ctx.n_ctx()
    );
    eprintln!(
        "/clear starts over, /save FILE and /load FILE keep a conversation, /exit (or Ctrl-D) leaves; Ctrl-C stops an answer"
    );
    let system: Vec<Message> = a
        .system
        .iter()
        .map(|s| Message::new("system", s.as_str()))
        .collect();
    let mut messages = system.clone();
    let stdin = std::io::stdin();
    let mut line = String::new();
    let mut turn = 0u64;
    loop {
        eprint!("> ");
        line.clear();
        if stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("reading stdin: {e}"))?
            == 0
        {
            eprintln!();
            return Ok(());
        }
        let text = line.trim_end_matches(['\n', '\r']);
        match text.trim() {
            "" => continue,
            "/exit" | "/quit" => return Ok(()),
            "/clear" => {
                messages = system.clone();
                ctx.reset();
                eprintln!("(conversation cleared)");
                continue;
            }
            "/save" | "/load" => {
                eprintln!("error: /save and /load need a file: /save FILE, /load FILE");
                continue;
            }
            c if c.starts_with("/save ") => {
                let file = Path::new(c["/save ".len()..].trim());
                match save(&ctx, &messages, file) {
                    Ok(()) => eprintln!(
                        "(saved {} messages and {} cached tokens to {} and {})",
                        messages.len(),
                        ctx.tokens().len(),
                        file.display(),
                        transcript_path(file).display()
                    ),
                    Err(e) => eprintln!("error: /save: {e}"),
                }
                continue;
            }
            c if c.starts_with("/load ") => {
                let file = Path::new(c["/load ".len()..].trim());
                // The transcript first: the context changes only once both are good.
                match read_transcript(file).and_then(|m| {
                    ctx.load_state_file(file).map_err(|e| e.to_string())?;
                    Ok(m)
                }) {
                    Ok(m) => {
                        messages = m;
                        eprintln!(
                            "(loaded {} messages and {} cached tokens from {})",
                            messages.len(),
                            ctx.tokens().len(),
                            file.display()
                        );
                    }
                    Err(e) => eprintln!("error: /load: {e}"),
                }
                continue;
            }
            c if c.starts_with('/') && !c.contains(' ') => {
                eprintln!("(unknown command {c}: /clear, /save FILE, /load FILE, /exit)");
                continue;
            }
            _ => {}
        }
        messages.push(Message::new("user", text));
        // The system message(s) opening the conversation (--system's, or a loaded one's).
        let n_fixed = messages.iter().take_while(|m| m.role == "system").count();
        let ids = match fit(
            &tmpl,
            &model,
            &mut messages,
            n_fixed,
            ctx.n_ctx(),
            a.n_predict,
        ) {
            Ok(ids) => ids,
            Err(e) => {
                messages.pop();
                eprintln!("error: {e}");
                continue;
            }
        };
        // Keep what the cache shares with the new prompt; evaluate at least one token.
        let keep = common_prefix(ctx.tokens(), &ids).min(ids.len() - 1);
        ctx.truncate(keep);
        turn += 1;
        gp.sampler.seed = seed.wrapping_add(turn);
        let out = std::io::stdout();
        let mut out = out.lock();
        STOP.store(false, Ordering::SeqCst);
        ANSWERING.store(true, Ordering::SeqCst);
        let start = Instant::now();
        let g = generate_until(
            &mut ctx,
            &ids[keep..],
            &gp,
            &|| STOP.load(Ordering::SeqCst),
            &mut |piece| {
                out.write_all(piece.as_bytes())
                    .and_then(|_| out.flush())
                    .is_ok()
            },
        );
        ANSWERING.store(false, Ordering::SeqCst);
        let g = g.map_err(|e| e.to_string())?;
        let _ = writeln!(out);
        let _ = out.flush();
        let secs = start.elapsed().as_secs_f64();
        if g.reason == StopReason::Cancelled {
            eprintln!("(stopped)");
        }
        eprintln!(
            "[{} tokens, {:.1} tok/s; prompt: {} new, {keep} cached]",
            g.tokens.len(),
            g.tokens.len() as f64 / secs.max(1e-9),
            ids.len() - keep
        );
        messages.push(Message::new("assistant", g.text));
    }
}

/// The prompt tokens of `messages`, dropping the oldest turns after the first
/// `n_fixed` (the system message) until the prompt and an answer fit the context.
fn fit(
    tmpl: &ChatTemplate,
    model: &Model,
    messages: &mut Vec<Message>,
    n_fixed: usize,
    n_ctx: usize,
    n_predict: usize,
) -> Result<Vec<u32>, String> {
    let room = n_predict.min(n_ctx / 4).max(1);
    loop {
        let ids = tmpl
            .tokenize(&model.tokenizer, messages, true)
            .map_err(|e| e.to_string())?;
        if ids.len() + room <= n_ctx {
            return Ok(ids);
        }
        if messages.len() <= n_fixed + 1 {
            return Err(format!(
                "the message needs {} tokens with the template, the context holds {n_ctx}",
                ids.len() + room
            ));
        }
        // Drop the oldest user message and the answer to it.
        messages.remove(n_fixed);
        if messages.len() > n_fixed + 1 && messages[n_fixed].role == "assistant" {
            messages.remove(n_fixed);
        }
        eprintln!("(context full: the oldest turn is dropped)");
    }
}

/// The name and version that open a transcript file.
const TRANSCRIPT_FORMAT: &str = "llm-run chat transcript";
const TRANSCRIPT_VERSION: u64 = 1;

/// Where `/save FILE` puts the conversation: `FILE.json`.
fn transcript_path(file: &Path) -> PathBuf {
    let mut s = file.as_os_str().to_owned();
    s.push(".json");
    PathBuf::from(s)
}

/// `/save FILE`: the KV cache state to `FILE` and the conversation to `FILE.json`, each
/// written atomically.
fn save(ctx: &Context, messages: &[Message], file: &Path) -> Result<(), String> {
    let list: Vec<Value> = messages
        .iter()
        .map(|m| json!({ "role": m.role, "content": m.content }))
        .collect();
    let doc = json!({
        "format": TRANSCRIPT_FORMAT,
        "version": TRANSCRIPT_VERSION,
        "messages": list,
    });
    let mut text = serde_json::to_vec_pretty(&doc).map_err(|e| e.to_string())?;
    text.push(b'\n');
    ctx.save_state_file(file).map_err(|e| e.to_string())?;
    llm_format::atomic::write_atomic(&transcript_path(file), &mut |w| {
        w.write_all(&text)
            .map_err(|e| llm_format::FormatError::Io(format!("write failed: {e}")))
    })
    .map_err(|e| e.to_string())
}

/// The conversation that `/save FILE` wrote to `FILE.json`.
fn read_transcript(file: &Path) -> Result<Vec<Message>, String> {
    let path = transcript_path(file);
    let bad = |m: String| format!("{}: {m}", path.display());
    let text = std::fs::read(&path).map_err(|e| bad(e.to_string()))?;
    let doc: Value = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
    if doc.get("format").and_then(Value::as_str) != Some(TRANSCRIPT_FORMAT) {
        return Err(bad(format!(
            "not an llm-run chat transcript (no \"format\": \"{TRANSCRIPT_FORMAT}\")"
        )));
    }
    let version = doc.get("version").and_then(Value::as_u64);
    if version != Some(TRANSCRIPT_VERSION) {
        return Err(bad(format!(
            "transcript version {}, this llm-run reads version {TRANSCRIPT_VERSION}",
            doc.get("version").unwrap_or(&Value::Null)
        )));
    }
    let list = doc
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no \"messages\" list".into()))?;
    list.iter()
        .enumerate()
        .map(|(i, m)| {
            let field = |k: &str| {
                m.get(k)
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad(format!("message {i} has no text \"{k}\"")))
            };
            Ok(Message::new(field("role")?, field("content")?))
        })
        .collect()
}
