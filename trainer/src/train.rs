//! `llm-train train`: the run folder and the training loop.
//!
//! A run folder holds `config.toml` (the resolved config), `tokenizer.json`,
//! `data.json` (the shard paths), `data/` (shards tokenised from text),
//! `metrics.jsonl` (one line per step), `checkpoints/` (the last K, written
//! atomically) and, at the end, `model.llm`. `--resume` reloads the newest good
//! checkpoint — weights, AdamW moments and step, loader position, generator — and
//! continues to the same losses bit for bit: dropout masks are seeded by (seed, step,
//! micro-batch) and every CPU reduction has a fixed order.

use crate::backend::{Backend, Cpu};
use crate::checkpoint::{self, Checkpoint, CheckpointMeta, Fault};
use crate::config::{ConfigArgs, Precision, TrainConfig};
use crate::cuda::backend::{choose_backend, DeviceChoice};
use crate::data::{DataError, Loader, Shuffle};
use crate::export::export_model;
use crate::model::Model;
use crate::optim::{clip_grad_norm, AdamState, Schedule};
use crate::profile::Profiled;
use crate::rng::Rng;
use crate::runlock::RunLock;
use crate::tokenize::{tokenize_files, TextTokenizer, TokenizeArgs};
use indicatif::{ProgressBar, ProgressStyle};
use llm_format::{DType, MappedFile, TokenizerKind};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Why a run stopped early or could not start.
#[derive(Debug)]
pub struct TrainError(pub String);

impl fmt::Display for TrainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TrainError {}

macro_rules! from_err {
    ($($t:ty),*) => {$(
        impl From<$t> for TrainError {
            fn from(e: $t) -> Self { TrainError(e.to_string()) }
        }
    )*};
}
from_err!(
    crate::config::ConfigError,
    DataError,
    crate::model::ModelError,
    crate::checkpoint::CheckpointError,
    crate::export::ExportError,
    std::io::Error,
    llm_format::FormatError
);

/// Arguments of `llm-train train`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct TrainArgs {
    /// Preset, config file and `--set` overrides.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Text files / directories to tokenise, or one folder holding llm.c shards
    /// (`train.bin`, `val.bin`, optional `tokenizer.json`). Default: data/shakespeare.txt.
    #[arg(long)]
    pub data: Vec<PathBuf>,
    /// Run folder (default `runs/<preset>`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in `--out` from its newest good checkpoint (`--set` may
    /// change e.g. max_steps).
    #[arg(long)]
    pub resume: bool,
    /// Start from weights: `llm:PATH`, `llmc:PATH` or `llama2c:PATH`.
    #[arg(long)]
    pub init_from: Option<String>,
    /// Tokenizer file for `--init-from llmc:` / `llama2c:`.
    #[arg(long)]
    pub init_tokenizer: Option<PathBuf>,
    /// Dtype of the automatic export at the end.
    #[arg(long, default_value = "f32")]
    pub export_dtype: String,
    /// Skip the automatic export.
    #[arg(long)]
    pub no_export: bool,
    /// No progress bar and no samples (logs still go to metrics.jsonl).
    #[arg(long)]
    pub quiet: bool,
    /// Stop (with a checkpoint, without export) after this many steps in this
    /// invocation, leaving the schedule of max_steps intact for a later `--resume`.
    #[arg(long)]
    pub stop_after: Option<u64>,
    /// Backend: `auto` (CUDA when a GPU is present, else the CPU with a note on
    /// stderr), `cpu`, or `cuda` (an error when there is no GPU). Default: auto.
    #[arg(long, value_name = "auto|cpu|cuda", value_parser = parse_device)]
    pub device: Option<DeviceChoice>,
    /// Storage precision: `bf16` (the default on CUDA) or `fp32` (the default, and
    /// the only one, on the CPU). Recorded in the run's config.toml.
    #[arg(long, value_name = "bf16|fp32", value_parser = parse_precision)]
    pub precision: Option<Precision>,
    /// Gradient checkpointing: keep only each block's input in the forward and
    /// recompute the block in the backward (same losses, activation memory of one
    /// block, one more block forward per block; docs/PERF.md has the measured cost).
    /// Sets and records the config key `recompute`, like `--set recompute=true`.
    #[arg(long)]
    pub recompute: bool,
}

/// `--device`: `auto`, `cpu` or `cuda`.
fn parse_device(s: &str) -> Result<DeviceChoice, String> {
    DeviceChoice::parse(s).ok_or_else(|| format!("'{s}' is not one of auto|cpu|cuda"))
}

/// `--precision`: `bf16` or `fp32` (`f32` accepted).
fn parse_precision(s: &str) -> Result<Precision, String> {
    match s {
        "bf16" => Ok(Precision::Bf16),
        "fp32" | "f32" => Ok(Precision::Fp32),
        _ => Err(format!("'{s}' is not one of bf16|fp32")),
    }
}

/// The precision of a run on backend `be`: `--precision` when given (bf16 on the CPU
/// is an error), else the resumed run's (a bf16 run resumed on the CPU continues in
/// fp32, with a note), else bf16 on CUDA and fp32 on the CPU.
fn resolve_precision(
    be: &dyn Backend<f32>,
    asked: Option<Precision>,
    recorded: Option<Precision>,
    quiet: bool,
) -> Result<Precision, TrainError> {
    let gpu = be.name().starts_with("cuda");
    match (asked, recorded) {
        (Some(Precision::Bf16), _) if !gpu => Err(TrainError(format!(
            "--precision bf16 is not supported on the {} backend, which computes in fp32; \
             use --precision fp32 (or --device cuda on a machine with a GPU)",
            be.name()
        ))),
        (Some(p), _) => Ok(p),
        (None, Some(Precision::Bf16)) if !gpu => {
            if !quiet {
                eprintln!("note: this run was recorded as bf16; the CPU continues it in fp32");
            }
            Ok(Precision::Fp32)
        }
        (None, Some(p)) => Ok(p),
        (None, None) => Ok(if gpu {
            Precision::Bf16
        } else {
            Precision::Fp32
        }),
    }
}

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Optimizer steps done.
    pub step: u64,
    /// Mean train loss of this step's micro-batches.
    pub train_loss: f64,
    /// Validation loss, on evaluation steps.
    pub val_loss: Option<f64>,
    /// Learning rate used.
    pub lr: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    /// Training tokens per second over this step.
    pub tokens_per_s: f64,
    /// Seconds since this process started training.
    pub elapsed_s: f64,
}

/// What a finished run reports.
#[derive(Clone, Debug)]
pub struct TrainOutcome {
    /// The run folder.
    pub run_dir: PathBuf,
    /// Every step logged by this process.
    pub metrics: Vec<Metrics>,
    /// The last validation loss.
    pub final_val_loss: Option<f64>,
    /// The exported model, if any.
    pub model_path: Option<PathBuf>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct DataFiles {
    pub(crate) train: Vec<PathBuf>,
    pub(crate) val: Vec<PathBuf>,
}

fn shards_in(dir: &Path) -> Option<DataFiles> {
    let (t, v) = (dir.join("train.bin"), dir.join("val.bin"));
    (t.is_file() && v.is_file()).then(|| DataFiles {
        train: vec![t],
        val: vec![v],
    })
}

/// Weights and tokenizer of `--init-from`.
pub(crate) struct Init {
    pub(crate) opts: llm_format::ModelOptions,
    tokenizer: TextTokenizer,
    pub(crate) tensors: Vec<(String, Vec<f32>)>,
}

fn tokenizer_from_spec(spec: &llm_format::TokenizerSpec<'_>) -> TextTokenizer {
    let tokens: Vec<String> = spec.tokens.iter().map(|t| t.to_string()).collect();
    let kind = match spec.kind {
        TokenizerKind::Char => "char",
        _ if spec.merges.is_empty() && tokens.len() == 256 => "byte",
        _ => "bpe",
    };
    TextTokenizer {
        kind: kind.into(),
        tokens,
        merges: spec.merges.iter().map(|m| m.to_string()).collect(),
    }
}

pub(crate) fn load_init(spec: &str, tok: Option<&Path>) -> Result<Init, TrainError> {
    let (kind, path) = spec
        .split_once(':')
        .ok_or_else(|| TrainError(format!("--init-from expects KIND:PATH, got '{spec}'")))?;
    let path = Path::new(path);
    if kind == "llm" {
        let map = MappedFile::open(path)?;
        let f = map.parse()?;
        let opts = f.options()?;
        f.check_layout(&opts)?;
        let tokenizer = tokenizer_from_spec(&f.tokenizer()?);
        let tensors = opts
            .tensor_layout()
            .into_iter()
            .map(|s| {
                let t = f.tensor(&s.name).ok_or_else(|| {
                    TrainError(format!("{}: no tensor {}", path.display(), s.name))
                })?;
                Ok((s.name, t.to_f32_vec()))
            })
            .collect::<Result<_, TrainError>>()?;
        return Ok(Init {
            opts,
            tokenizer,
            tensors,
        });
    }
    let source = match kind {
        "llmc" => crate::import::SourceKind::Llmc,
        "llama2c" => crate::import::SourceKind::Llama2c,
        "safetensors" => crate::import::SourceKind::SafeTensors,
        "gguf" => crate::import::SourceKind::Gguf,
        k => {
            return Err(TrainError(format!(
                "--init-from kind '{k}' is not llm, llmc or llama2c"
            )))
        }
    };
    let mut m = crate::import::import(source, path, tok).map_err(|e| TrainError(e.to_string()))?;
    m.convert(Some(DType::F32.into()))
        .map_err(|e| TrainError(e.to_string()))?;
    let tokenizer = tokenizer_from_spec(&m.tokenizer);
    let tensors = m
        .tensors
        .iter()
        .map(|t| {
            let x = t
                .data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            (t.name.clone(), x)
        })
        .collect();
    Ok(Init {
        opts: m.opts,
        tokenizer,
        tensors,
    })
}

/// Loads a `.llm` file into an f32 training model and its tokenizer.
pub fn load_llm(path: &Path) -> Result<(Model<f32>, TextTokenizer), TrainError> {
    let init = load_init(&format!("llm:{}", path.display()), None)?;
    let mut model = Model::<f32>::new(init.opts, true)?;
    for (name, x) in &init.tensors {
        let p = model
            .param_mut(name)
            .ok_or_else(|| TrainError(format!("{}: unexpected tensor {name}", path.display())))?;
        if p.len() != x.len() {
            return Err(TrainError(format!(
                "{}: tensor {name} has the wrong size",
                path.display()
            )));
        }
        p.copy_from_slice(x);
    }
    Ok((model, init.tokenizer))
}

pub(crate) fn apply_options(cfg: &mut TrainConfig, o: &llm_format::ModelOptions) {
    cfg.vocab_size = o.vocab_size;
    cfg.d_model = o.d_model;
    cfg.n_layers = o.n_layers;
    cfg.n_heads = o.n_heads;
    cfg.n_kv_heads = o.n_kv_heads;
    cfg.d_ff = o.d_ff;
    // The file's max_len is the model's; a shorter configured one becomes the window.
    if cfg.seq() < o.max_len {
        cfg.seq_len = cfg.seq();
    }
    cfg.max_len = o.max_len;
    cfg.positions = o.positions;
    cfg.norm = o.norm;
    cfg.mlp = o.mlp;
    cfg.bias = o.bias;
    cfg.tied_embeddings = o.tied_embeddings;
    cfg.norm_eps = o.norm_eps as f64;
    cfg.rope_base = o.rope_base as f64;
    cfg.rope_scale = o.arch.rope_scale.map_or(1.0, f64::from);
    cfg.head_dim = o.arch.head_dim.unwrap_or(0);
    cfg.qkv_bias = o.arch.qkv_bias;
    cfg.qk_norm = o.arch.qk_norm;
    cfg.post_norms = o.arch.post_norms;
    cfg.embed_scale = o.arch.embed_scale.map_or(1.0, f64::from);
}

/// Writes a small run file atomically (temp file, fsync, rename); the error names it.
fn write_file(path: &Path, text: String) -> Result<(), TrainError> {
    llm_format::atomic::write_bytes(path, text.as_bytes()).map_err(|e| TrainError(e.to_string()))
}

/// Prepares the run folder for a fresh run: data, tokenizer, resolved config.
pub(crate) fn prepare(
    args: &TrainArgs,
    dir: &Path,
) -> Result<(TrainConfig, Option<Init>), TrainError> {
    let mut cfg = args.config.resolve()?;
    let mut init = match &args.init_from {
        Some(s) => Some(load_init(s, args.init_tokenizer.as_deref())?),
        None => None,
    };
    if let Some(i) = &mut init {
        // A setting the trainer cannot train (and the config cannot hold) is refused
        // here, not silently dropped from the model.
        crate::model::check_trainable(&i.opts)
            .map_err(|e| TrainError(format!("--init-from: {e}")))?;
        // The file's options win, except a longer max_len and a rope_scale given
        // explicitly (--set or the config file): those extend the context.
        let (want_len, want_scale) = (cfg.max_len, cfg.rope_scale);
        let scale = args.config.sets_key("rope_scale").then_some(want_scale);
        apply_options(&mut cfg, &i.opts);
        if args.config.sets_key("max_len") && want_len > i.opts.max_len {
            let note =
                crate::extend::extend_init(&mut cfg, &mut i.opts, &mut i.tensors, want_len, scale)
                    .map_err(TrainError)?;
            if !args.quiet {
                eprintln!("{note}");
            }
        } else if let Some(s) = scale {
            cfg.rope_scale = s;
        }
    }
    std::fs::create_dir_all(dir)?;
    let inputs = if args.data.is_empty() {
        vec![PathBuf::from("data/shakespeare.txt")]
    } else {
        args.data.clone()
    };
    let shard_dir = match inputs.as_slice() {
        [one] => shards_in(one),
        _ => None,
    };
    let (files, tok) = match shard_dir {
        Some(files) => {
            let tok_path = inputs[0].join("tokenizer.json");
            let tok = match &init {
                Some(i) => i.tokenizer.clone(),
                None if tok_path.is_file() => TextTokenizer::load(&tok_path)?,
                None => {
                    eprintln!(
                        "note: {} has no tokenizer.json; using {} placeholder pieces",
                        inputs[0].display(),
                        cfg.vocab_size
                    );
                    TextTokenizer::placeholder(cfg.vocab_size)
                }
            };
            (files, tok)
        }
        None => {
            let data_dir = dir.join("data");
            let tok = match &init {
                Some(i) => {
                    let mut text = String::new();
                    for f in crate::tokenize::collect_files(&inputs)? {
                        text.push_str(&crate::tokenize::read_text(&f)?);
                    }
                    let ids = i.tokenizer.encode(&text)?;
                    let split = ids.len() - ids.len() / 10;
                    let to16 = |v: &[u32]| v.iter().map(|&x| x as u16).collect::<Vec<u16>>();
                    std::fs::create_dir_all(&data_dir)?;
                    crate::data::write_shard(&data_dir.join("train.bin"), &to16(&ids[..split]))?;
                    crate::data::write_shard(&data_dir.join("val.bin"), &to16(&ids[split..]))?;
                    i.tokenizer.clone()
                }
                None => {
                    let t = tokenize_files(&TokenizeArgs {
                        inputs: inputs.clone(),
                        out: data_dir.clone(),
                        tokenizer: cfg.tokenizer.clone(),
                        vocab_size: cfg.vocab_size,
                        val_fraction: 0.1,
                    })?;
                    t.tokenizer
                }
            };
            (
                DataFiles {
                    train: vec![data_dir.join("train.bin")],
                    val: vec![data_dir.join("val.bin")],
                },
                tok,
            )
        }
    };
    if init.is_none() {
        cfg.vocab_size = tok.vocab_size();
    }
    cfg.validate()?;
    tok.save(&dir.join("tokenizer.json"))?;
    let files = DataFiles {
        train: files
            .train
            .iter()
            .map(std::path::absolute)
            .collect::<Result<_, _>>()?,
        val: files
            .val
            .iter()
            .map(std::path::absolute)
            .collect::<Result<_, _>>()?,
    };
    write_file(
        &dir.join("data.json"),
        serde_json::to_string_pretty(&files).map_err(|e| TrainError(e.to_string()))?,
    )?;
    write_file(&dir.join("config.toml"), cfg.to_toml())?;
    Ok((cfg, init))
}

/// Draws `n` tokens after `prompt` (temperature 1, the whole distribution).
pub fn sample(
    model: &mut Model<f32>,
    be: &dyn Backend<f32>,
    prompt: &[u32],
    n: usize,
    rng: &mut Rng,
) -> Result<Vec<u32>, TrainError> {
    sample_at(model, be, prompt, n, rng, 1.0)
}

/// Draws `n` tokens after `prompt` from the whole distribution at `temperature`,
/// which the runtime's `SamplerConfig::validate` has accepted; below
/// `llmrt::sampler::GREEDY_BELOW` greedy (the runtime's rule).
pub fn sample_at(
    model: &mut Model<f32>,
    be: &dyn Backend<f32>,
    prompt: &[u32],
    n: usize,
    rng: &mut Rng,
    temperature: f32,
) -> Result<Vec<u32>, TrainError> {
    let greedy = temperature.is_nan() || temperature < llmrt::sampler::GREEDY_BELOW;
    let mut ctx: Vec<u32> = prompt.to_vec();
    if ctx.is_empty() {
        ctx.push(0);
    }
    let (v, max) = (model.opts.vocab_size, model.opts.max_len);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let start = ctx.len().saturating_sub(max);
        let window = &ctx[start..];
        let t = window.len();
        model.forward(be, window, None, 1, t, None)?;
        let logits = &model.logits()[(t - 1) * v..t * v];
        let maxv = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if greedy {
            let pick = llmrt::sampler::argmax(logits) as u32;
            ctx.push(pick);
            out.push(pick);
            continue;
        }
        let inv_t = 1.0 / temperature as f64;
        let probs: Vec<f64> = logits
            .iter()
            .map(|&l| ((l - maxv) as f64 * inv_t).exp())
            .collect();
        let total: f64 = probs.iter().sum();
        let mut coin = rng.uniform() * total;
        let mut pick = v - 1;
        for (i, p) in probs.iter().enumerate() {
            if coin < *p {
                pick = i;
                break;
            }
            coin -= p;
        }
        ctx.push(pick as u32);
        out.push(pick as u32);
    }
    Ok(out)
}

/// Mean validation loss over the validation loader's first `iters` batches (the
/// same batches at every evaluation).
fn evaluate(
    model: &mut Model<f32>,
    be: &dyn Backend<f32>,
    val: &mut Loader,
    iters: usize,
    b: usize,
    t: usize,
) -> Result<f64, TrainError> {
    val.reset();
    let mut sum = 0.0;
    let n = iters.min(val.batches_per_epoch()).max(1);
    for _ in 0..n {
        let batch = val.next_batch()?;
        sum += model
            .forward(be, &batch.inputs, Some(&batch.targets), b, t, None)?
            .unwrap_or(f64::NAN);
    }
    Ok(sum / n as f64)
}

fn crash_fault(step: u64, bytes_hint: usize) -> Option<Fault> {
    let want: u64 = std::env::var("LLM_TRAIN_CRASH_IN_SAVE")
        .ok()?
        .parse()
        .ok()?;
    (want == step).then_some(Fault::AbortAfter(bytes_hint / 2))
}

/// Trains per `args` on the CPU backend; the library entry point behind `llm-train train`.
pub fn train(args: &TrainArgs) -> Result<TrainOutcome, TrainError> {
    train_with(args, &Cpu)
}

/// Trains per `args` on any backend (the model calls nothing else).
pub fn train_with(args: &TrainArgs, be: &dyn Backend<f32>) -> Result<TrainOutcome, TrainError> {
    // LLM_TRAIN_PROFILE=1: time every backend op and print the table at the end.
    let profiled = std::env::var_os("LLM_TRAIN_PROFILE").map(|_| Profiled::new(be));
    let be: &dyn Backend<f32> = match &profiled {
        Some(p) => p,
        None => be,
    };
    let out = train_loop(args, be);
    if let Some(p) = &profiled {
        eprint!("{}", p.table());
    }
    out
}

/// The whole run: open (or resume) it, train until `max_steps` (or `--stop-after`),
/// then finish it.
fn train_loop(args: &TrainArgs, be: &dyn Backend<f32>) -> Result<TrainOutcome, TrainError> {
    let mut run = Run::open(args, be)?;
    let stop_at = args.stop_after.map_or(run.max_steps as u64, |n| {
        (run.step + n).min(run.max_steps as u64)
    });
    while run.step < stop_at {
        run.train_step()?;
    }
    run.finish()
}

/// The run's config: read back from `config.toml` (with `--set` applied) on
/// `--resume`, else resolved while the run folder is prepared (data, tokenizer,
/// `--init-from`); then the precision and `--recompute` are settled and the result is
/// written back as the run's record.
fn open_config(
    args: &TrainArgs,
    be: &dyn Backend<f32>,
    dir: &Path,
    ck_dir: &Path,
) -> Result<(TrainConfig, Option<Init>), TrainError> {
    let (mut cfg, init) = if args.resume {
        let text = std::fs::read_to_string(dir.join("config.toml")).map_err(|e| {
            TrainError(format!(
                "--resume: cannot read {}/config.toml: {e}",
                dir.display()
            ))
        })?;
        let mut cfg = TrainConfig::from_toml(&text)?;
        for s in &args.config.set {
            cfg.set(s)?;
        }
        cfg.validate()?;
        cfg.precision = resolve_precision(be, args.precision, Some(cfg.precision), args.quiet)?;
        (cfg, None)
    } else {
        if checkpoint::list(ck_dir).last().is_some() {
            return Err(TrainError(format!(
                "{} already holds checkpoints: pass --resume to continue it or choose another --out",
                dir.display()
            )));
        }
        // Checked before the data is prepared, so a refused precision costs nothing.
        let precision = resolve_precision(be, args.precision, None, args.quiet)?;
        let (mut cfg, init) = prepare(args, dir)?;
        cfg.precision = precision;
        (cfg, init)
    };
    if args.recompute {
        cfg.recompute = true;
    }
    // The resolved config, precision and recompute included, is the run's record.
    write_file(&dir.join("config.toml"), cfg.to_toml())?;
    if cfg.precision == Precision::Bf16 && !args.quiet {
        eprintln!(
            "note: precision bf16 recorded; the trainer's CUDA backend keeps fp32 storage \
             behind the Backend trait (bf16 kernels run in the device-resident benchmark)"
        );
    }
    Ok((cfg, init))
}

/// Prints the memory estimate and refuses a run that does not fit: on the device
/// (a backend with its own memory), then in host memory (`MemAvailable`), before
/// anything large is allocated.
fn check_memory(cfg: &TrainConfig, be: &dyn Backend<f32>, quiet: bool) -> Result<(), TrainError> {
    let est = cfg.estimate()?;
    if !quiet {
        println!("{}: {est}", be.name());
    }
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    // Without checkpointing, a refusal says what --recompute would need.
    let hint = if cfg.recompute {
        String::new()
    } else {
        let mut r = cfg.clone();
        r.recompute = true;
        format!(
            " (with --recompute: about {:.1} GiB)",
            gib(r.estimate()?.total_bytes() as u64)
        )
    };
    // A device with its own memory (CUDA) refuses an over-large run here, before the
    // first allocation; the CPU accepts, and host memory is checked just below.
    be.check_fits(
        "this run (weights, gradients, AdamW state, activations)",
        est.total_bytes(),
    )
    .map_err(|e| TrainError(format!("{e}{hint}")))?;
    if let Some(avail) = llmrt::sys::mem_available() {
        if est.total_bytes() as u64 > avail {
            return Err(TrainError(format!(
                "this run needs about {:.1} GiB{hint} but only {:.1} GiB are available; \
                 lower batch_size, max_len, d_model or n_layers (e.g. --set batch_size=...)",
                gib(est.total_bytes() as u64),
                gib(avail)
            )));
        }
    }
    Ok(())
}

/// The model of a run: GPT-2 initialisation from the config's seed, then the
/// `--init-from` weights, if any.
pub(crate) fn new_model(cfg: &TrainConfig, init: Option<&Init>) -> Result<Model<f32>, TrainError> {
    let mut model = Model::<f32>::new(cfg.model_options()?, cfg.decay_embeddings)?;
    model.dropout = cfg.dropout;
    model.recompute = cfg.recompute;
    model.init_gpt2(cfg.seed);
    if let Some(i) = init {
        for (name, x) in &i.tensors {
            let p = model
                .param_mut(name)
                .ok_or_else(|| TrainError(format!("--init-from: unexpected tensor {name}")))?;
            if p.len() != x.len() {
                return Err(TrainError(format!(
                    "--init-from: tensor {name} has the wrong size"
                )));
            }
            p.copy_from_slice(x);
        }
    }
    Ok(model)
}

/// What a checkpoint restores besides the weights, AdamW state and loader position.
struct Restored {
    step: u64,
    best_loss: f64,
    rng: Rng,
}

/// `--resume`: loads the newest good checkpoint into `model`, `adam` and `loader`,
/// and drops the lines of `metrics_path` logged after it (they are about to be redone).
fn restore(
    ck_dir: &Path,
    metrics_path: &Path,
    model: &mut Model<f32>,
    adam: &mut AdamState<f32>,
    loader: &mut Loader,
    quiet: bool,
) -> Result<Restored, TrainError> {
    let (ck, path) = checkpoint::load_latest(ck_dir)?;
    if ck.params.len() != model.params.len() {
        return Err(TrainError(format!(
            "{}: {} parameters, the config needs {}",
            path.display(),
            ck.params.len(),
            model.params.len()
        )));
    }
    model.params = ck.params;
    adam.m = ck.m;
    adam.v = ck.v;
    adam.step = ck.meta.adam_step;
    let step = ck.meta.step;
    loader.set_state(ck.meta.loader);
    // Forget metrics logged after that checkpoint: they are about to be redone.
    if let Ok(text) = std::fs::read_to_string(metrics_path) {
        let kept: String = text
            .lines()
            .filter(|l| serde_json::from_str::<Metrics>(l).is_ok_and(|m| m.step <= step))
            .map(|l| format!("{l}\n"))
            .collect();
        write_file(metrics_path, kept)?;
    }
    if !quiet {
        println!("resumed from {} at step {step}", path.display());
    }
    Ok(Restored {
        step,
        best_loss: ck.meta.best_loss,
        rng: ck.meta.rng,
    })
}

/// A run between its steps: what [`Run::open`] prepares or restores, each
/// [`Run::train_step`] advances, and [`Run::finish`] saves and exports.
struct Run<'a> {
    /// The run folder's lock, held until the run ends.
    _lock: RunLock,
    args: &'a TrainArgs,
    be: &'a dyn Backend<f32>,
    /// The run folder.
    dir: PathBuf,
    /// Its `checkpoints/`.
    ck_dir: PathBuf,
    /// The resolved config, as recorded in `config.toml`.
    cfg: TrainConfig,
    tok: TextTokenizer,
    /// Sequences per micro-batch (B).
    b: usize,
    /// Training window (T).
    t: usize,
    train_data: Loader,
    val_data: Loader,
    /// Optimizer steps of the whole run (the schedule's length).
    max_steps: usize,
    model: Model<f32>,
    adam: AdamState<f32>,
    /// Draws the samples printed at evaluations; saved in checkpoints.
    rng: Rng,
    /// Optimizer steps done.
    step: u64,
    /// Lowest train loss so far (the explosion check's reference).
    best_loss: f64,
    sched: Schedule,
    /// AdamW's parameter ranges: (offset, length, decays).
    ranges: Vec<(usize, usize, bool)>,
    metrics_file: std::fs::File,
    pb: ProgressBar,
    /// When this process started training.
    started: Instant,
    /// Every step logged by this process.
    logged: Vec<Metrics>,
    last_val: Option<f64>,
    /// Step of the newest checkpoint on disk.
    saved_at: Option<u64>,
}

impl<'a> Run<'a> {
    /// Opens the run: the config ([`open_config`]), the memory check, data,
    /// tokenizer, model and optimiser state, restored from the newest good checkpoint
    /// on `--resume`, the metrics log and the progress bar.
    fn open(args: &'a TrainArgs, be: &'a dyn Backend<f32>) -> Result<Run<'a>, TrainError> {
        let preset = args.config.preset.clone().unwrap_or_else(|| "tiny".into());
        let dir = args
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from("runs").join(&preset));
        let ck_dir = dir.join("checkpoints");
        // One writer per run folder, from before its first file is touched.
        let (lock, note) = RunLock::acquire(&dir).map_err(TrainError)?;
        if let Some(n) = note {
            eprintln!("note: {n}");
        }
        let (cfg, init) = open_config(args, be, &dir, &ck_dir)?;
        // A backend that lacks an option (CUDA: the newer families' settings) says so
        // before anything large is allocated.
        be.check_options(&cfg.model_options()?)
            .map_err(|e| TrainError(format!("{}: {e}", be.name())))?;
        check_memory(&cfg, be, args.quiet)?;
        let files: DataFiles =
            serde_json::from_str(&std::fs::read_to_string(dir.join("data.json"))?)
                .map_err(|e| TrainError(format!("{}/data.json: {e}", dir.display())))?;
        let tok = TextTokenizer::load(&dir.join("tokenizer.json"))?;
        let (b, t) = (cfg.batch_size, cfg.seq());
        let mut train_data =
            Loader::open(&files.train, b, t, cfg.vocab_size, cfg.shuffle, cfg.seed)?;
        // Validation reads random windows of the whole split when training does
        // (nanoGPT's estimate_loss), the same ones at every evaluation; else the
        // split's first `eval_iters` batches.
        let val_mode = match cfg.shuffle {
            Shuffle::Random => Shuffle::Random,
            _ => Shuffle::Off,
        };
        let val_data = Loader::open(&files.val, b, t, cfg.vocab_size, val_mode, cfg.seed ^ 0x7A1)
            .map_err(|e| TrainError(format!("validation split: {e}")))?;
        let max_steps = if cfg.max_steps > 0 {
            cfg.max_steps
        } else {
            (cfg.num_epochs * train_data.batches_per_epoch() / cfg.grad_accum).max(1)
        };

        let mut model = new_model(&cfg, init.as_ref())?;
        let mut adam = AdamState::<f32>::new(model.table.total);
        let metrics_path = dir.join("metrics.jsonl");
        let Restored {
            step,
            best_loss,
            rng,
        } = if args.resume {
            // Held lock: nobody else is saving, so any *.tmp is an interrupted save.
            let stale = checkpoint::remove_stale_tmp(&ck_dir);
            if stale > 0 && !args.quiet {
                eprintln!(
                    "note: removed {stale} unfinished checkpoint file(s) from {}",
                    ck_dir.display()
                );
            }
            if checkpoint::list(&ck_dir).is_empty() {
                // Stopped before its first checkpoint was finished: nothing to lose.
                eprintln!(
                    "note: --resume: {} holds no finished checkpoint (the run stopped before \
                     its first one was written); starting from step 0",
                    ck_dir.display()
                );
                let _ = std::fs::remove_file(&metrics_path);
                Restored {
                    step: 0,
                    best_loss: f64::INFINITY,
                    rng: Rng::new(cfg.seed ^ 0x5A3C),
                }
            } else {
                restore(
                    &ck_dir,
                    &metrics_path,
                    &mut model,
                    &mut adam,
                    &mut train_data,
                    args.quiet,
                )?
            }
        } else {
            let _ = std::fs::remove_file(&metrics_path);
            Restored {
                step: 0,
                best_loss: f64::INFINITY,
                rng: Rng::new(cfg.seed ^ 0x5A3C),
            }
        };
        let metrics_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&metrics_path)?;
        let sched = Schedule {
            lr: cfg.lr,
            min_lr: cfg.min_lr,
            warmup: cfg.warmup_steps,
            max_steps,
        };
        let pb = if args.quiet {
            ProgressBar::hidden()
        } else {
            let pb = ProgressBar::new(max_steps as u64);
            pb.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} ETA {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            pb
        };
        pb.set_position(step);
        let ranges = model.table.ranges();
        let saved_at = checkpoint::list(&ck_dir).last().map(|x| x.0);
        Ok(Run {
            _lock: lock,
            args,
            be,
            dir,
            ck_dir,
            cfg,
            tok,
            b,
            t,
            train_data,
            val_data,
            max_steps,
            model,
            adam,
            rng,
            step,
            best_loss,
            sched,
            ranges,
            metrics_file,
            pb,
            started: Instant::now(),
            logged: Vec::new(),
            last_val: None,
            saved_at,
        })
    }

    /// One optimizer step: forward and backward over `grad_accum` micro-batches, the
    /// explosion check, clipping, the AdamW update, an evaluation (and sample) when
    /// due, one line of metrics, and a checkpoint when due.
    fn train_step(&mut self) -> Result<(), TrainError> {
        let (cfg, be, b, t) = (&self.cfg, self.be, self.b, self.t);
        let step = self.step;
        let t0 = Instant::now();
        let lr = self.sched.lr_at(step as usize);
        self.model.zero_grad();
        let mut loss = 0.0;
        for micro in 0..cfg.grad_accum {
            let batch = self.train_data.next_batch()?;
            let seed = cfg.seed ^ (step << 8 | micro as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let l = self
                .model
                .forward(be, &batch.inputs, Some(&batch.targets), b, t, Some(seed))?
                .unwrap_or(f64::NAN);
            self.model.backward(be, 1.0 / cfg.grad_accum as f64)?;
            loss += l / cfg.grad_accum as f64;
        }
        let best_loss = self.best_loss;
        let exploded = loss > cfg.explode_factor * best_loss && step > cfg.warmup_steps as u64 / 2;
        if !loss.is_finite() || exploded {
            self.pb.abandon();
            let last = checkpoint::list(&self.ck_dir)
                .last()
                .map(|x| x.1.display().to_string());
            return Err(TrainError(format!(
                "training stopped at step {}: the loss {} ({}). Lower lr (now {lr:.3e}) or raise \
                 warmup_steps, set grad_clip (now {}), or lower dropout; the last good checkpoint is {}",
                step + 1,
                if loss.is_finite() { "exploded" } else { "became NaN/inf" },
                if loss.is_finite() { format!("{loss:.3} > {} × best {best_loss:.3}", cfg.explode_factor) } else { format!("{loss}") },
                cfg.grad_clip,
                last.unwrap_or_else(|| "none (no checkpoint was saved yet)".into())
            )));
        }
        self.best_loss = best_loss.min(loss);
        let grad_norm = clip_grad_norm(be, &mut self.model.grads, cfg.grad_clip);
        self.adam.update(
            be,
            &mut self.model.params,
            &self.model.grads,
            &self.ranges,
            lr,
            cfg.beta1,
            cfg.beta2,
            cfg.adam_eps,
            cfg.weight_decay,
        );
        self.step += 1;
        let step = self.step;
        let last_step = step as usize == self.max_steps;
        let val_loss =
            if last_step || (cfg.eval_interval > 0 && step % cfg.eval_interval as u64 == 0) {
                Some(self.evaluate_and_sample()?)
            } else {
                None
            };
        let dt = t0.elapsed().as_secs_f64();
        let m = Metrics {
            step,
            train_loss: loss,
            val_loss,
            lr,
            grad_norm,
            tokens_per_s: (b * t * self.cfg.grad_accum) as f64 / dt.max(1e-9),
            elapsed_s: self.started.elapsed().as_secs_f64(),
        };
        let line = serde_json::to_string(&m).map_err(|e| TrainError(e.to_string()))?;
        writeln!(self.metrics_file, "{line}")?;
        self.pb.set_position(step);
        self.pb
            .set_message(format!("loss {loss:.4} {:.0} tok/s", m.tokens_per_s));
        self.logged.push(m);
        let save_interval = self.cfg.save_interval;
        if last_step || (save_interval > 0 && step % save_interval as u64 == 0) {
            self.save()?;
        }
        Ok(())
    }

    /// The validation loss now, and (unless quiet) a sample printed beside it.
    fn evaluate_and_sample(&mut self) -> Result<f64, TrainError> {
        let (cfg, be, step) = (&self.cfg, self.be, self.step);
        let v = evaluate(
            &mut self.model,
            be,
            &mut self.val_data,
            cfg.eval_iters,
            self.b,
            self.t,
        )?;
        self.last_val = Some(v);
        if !self.args.quiet && cfg.sample_len > 0 {
            let prompt = self.tok.encode("\n").unwrap_or_default();
            let ids = sample(&mut self.model, be, &prompt, cfg.sample_len, &mut self.rng)?;
            let text = self.tok.decode(&ids);
            self.pb
                .suspend(|| println!("step {step}: val loss {v:.4}\n---\n{text}\n---"));
        }
        Ok(v)
    }

    /// Writes a checkpoint of the current step (weights, AdamW state, loader
    /// position, generator) and keeps the newest `keep_checkpoints`.
    fn save(&mut self) -> Result<PathBuf, TrainError> {
        let ck = Checkpoint {
            meta: CheckpointMeta {
                step: self.step,
                config: self.cfg.to_toml(),
                loader: self.train_data.state(),
                rng: self.rng.clone(),
                adam_step: self.adam.step,
                n_params: self.model.params.len() as u64,
                best_loss: self.best_loss,
            },
            params: self.model.params.clone(),
            m: self.adam.m.clone(),
            v: self.adam.v.clone(),
        };
        let fault = crash_fault(self.step, 12 * self.model.params.len());
        let path = checkpoint::save(&self.ck_dir, &ck, self.cfg.keep_checkpoints, fault)?;
        self.saved_at = Some(self.step);
        Ok(path)
    }

    /// Ends this invocation: a checkpoint of the last step (unless one was just
    /// written), the export when the run is complete, and the final messages.
    fn finish(mut self) -> Result<TrainOutcome, TrainError> {
        if self.saved_at != Some(self.step) {
            self.save()?;
        }
        self.pb.finish_and_clear();
        let step = self.step;
        let model_path = if self.args.no_export || (step as usize) < self.max_steps {
            None
        } else {
            let plan =
                crate::recipe::QuantPlan::parse(&self.args.export_dtype).map_err(TrainError)?;
            let path = self.dir.join("model.llm");
            export_model(
                &self.model,
                &self.tok.spec(),
                Some(&self.cfg.to_toml()),
                "llm-train",
                plan,
                &path,
            )?;
            Some(path)
        };
        if !self.args.quiet {
            if let Some(v) = self.last_val {
                println!("step {step}: final val loss {v:.4}");
            }
            if let Some(p) = &model_path {
                println!("exported {}", p.display());
            }
        }
        Ok(TrainOutcome {
            run_dir: self.dir,
            metrics: self.logged,
            final_val_loss: self.last_val,
            model_path,
        })
    }
}

/// `llm-train train`: picks the backend per `--device` (auto: CUDA when a GPU opens,
/// else the CPU with a one-line note on stderr), then trains.
pub fn run_train(args: TrainArgs) -> Result<(), Box<dyn std::error::Error>> {
    let choice = args.device.unwrap_or(DeviceChoice::Auto);
    let (be, note) = choose_backend(choice).map_err(|e| TrainError(format!("--device: {e}")))?;
    if let Some(n) = note {
        eprintln!("note: {n}");
    }
    train_with(&args, be.as_ref())?;
    Ok(())
}

/// Arguments of `llm-train sample`.
#[derive(clap::Args, Clone, Debug)]
pub struct SampleArgs {
    /// The run folder.
    #[arg(long)]
    pub run: PathBuf,
    /// Text to continue.
    #[arg(long, short, default_value = "\n")]
    pub prompt: String,
    /// Tokens to draw.
    #[arg(long, short = 'n', default_value_t = 200)]
    pub tokens: usize,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 1337)]
    pub seed: u64,
    /// Temperature, >= 0; below 1e-6 (0 included) greedy.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub temperature: f32,
}

/// `llm-train sample`: continues a prompt with the run's latest checkpoint.
pub fn run_sample(args: SampleArgs) -> Result<(), Box<dyn std::error::Error>> {
    // The runtime's one validation of sampler settings (only the temperature is a
    // setting here: the rest of the chain is off).
    llmrt::sampler::SamplerConfig::pure(args.temperature, args.seed)
        .validate()
        .map_err(|e| {
            TrainError(format!(
                "--{} is {}: it {}",
                e.setting.replace('_', "-"),
                e.value,
                e.rule
            ))
        })?;
    let (_, mut model, tok) = crate::export::load_run(&args.run)?;
    let prompt = tok.encode(&args.prompt)?;
    let ids = sample_at(
        &mut model,
        &Cpu,
        &prompt,
        args.tokens,
        &mut Rng::new(args.seed),
        args.temperature,
    )?;
    println!("{}{}", args.prompt, tok.decode(&ids));
    Ok(())
}
