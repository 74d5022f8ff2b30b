//! Export of a trained model to `.llm`: the model options, the tokenizer and the
//! provenance (source, date, tool, the training config) as metadata, then every
//! tensor of the layout in order. `--dtype` applies to the matrices only; norms,
//! biases and position tables stay f32 (the file's contract), and a matrix whose rows
//! are not a multiple of the 32-wide quantisation block is kept f32 with a notice.

use crate::checkpoint::{self, CheckpointError};
use crate::config::TrainConfig;
use crate::model::Model;
use crate::recipe::QuantPlan;
use crate::tokenize::TextTokenizer;
use llm_format::options::keys;
use llm_format::{DType, Layout, LlmWriter, TokenizerSpec, Value};
use std::path::{Path, PathBuf};

/// An export problem.
#[derive(Debug)]
pub struct ExportError(pub String);

impl std::fmt::Display for ExportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "export: {}", self.0)
    }
}

impl std::error::Error for ExportError {}

impl From<CheckpointError> for ExportError {
    fn from(e: CheckpointError) -> Self {
        ExportError(e.to_string())
    }
}

/// Writes `model` to `path` (atomically) with `dtype` for the matrices, their rows
/// plain.
pub fn export_model(
    model: &Model<f32>,
    tokenizer: &TokenizerSpec<'_>,
    config_toml: Option<&str>,
    source: &str,
    plan: QuantPlan,
    path: &Path,
) -> Result<(), ExportError> {
    let w = export_writer(model, tokenizer, config_toml, source, plan, path)?;
    w.write_to(path)
        .map_err(|e| ExportError(format!("{}: {e}", path.display())))
}

/// The writer [`export_model`] fills (`path` only names the file in errors).
fn export_writer(
    model: &Model<f32>,
    tokenizer: &TokenizerSpec<'_>,
    config_toml: Option<&str>,
    source: &str,
    plan: QuantPlan,
    path: &Path,
) -> Result<LlmWriter, ExportError> {
    let fail = |e: llm_format::FormatError| ExportError(format!("{}: {e}", path.display()));
    let mut w = LlmWriter::new();
    w.extend_meta(model.opts.to_meta());
    w.extend_meta(tokenizer.to_meta());
    w.extend_meta(crate::import::provenance::entries(source));
    if let Some(c) = config_toml {
        w.add_meta(keys::PROV_CONFIG, Value::from(c));
    }
    for s in &model.table.slots {
        let x = &model.params[s.range()];
        let cols = s.shape.last().copied().unwrap_or(0);
        let dtype = plan.dtype_for(&s.name, cols, &model.opts);
        let dt = if !s.matrix {
            DType::F32
        } else if dtype.is_quantized() && cols % dtype.block_len() != 0 {
            eprintln!(
                "note: {} has rows of {cols}, not a multiple of {}; kept as f32",
                s.name,
                dtype.block_len()
            );
            DType::F32
        } else {
            dtype
        };
        w.add_tensor_f32(s.name.clone(), dt, &s.shape, x)
            .map_err(fail)?;
    }
    Ok(w)
}

/// A run folder's config, latest checkpoint's weights and tokenizer.
pub fn load_run(dir: &Path) -> Result<(TrainConfig, Model<f32>, TextTokenizer), ExportError> {
    let cfg_path = dir.join("config.toml");
    let text = std::fs::read_to_string(&cfg_path)
        .map_err(|e| ExportError(format!("cannot read {}: {e}", cfg_path.display())))?;
    let cfg = TrainConfig::from_toml(&text).map_err(|e| ExportError(e.to_string()))?;
    let opts = cfg
        .model_options()
        .map_err(|e| ExportError(e.to_string()))?;
    let (ck, _) = checkpoint::load_latest(&dir.join("checkpoints"))?;
    let mut model =
        Model::<f32>::new(opts, cfg.decay_embeddings).map_err(|e| ExportError(e.to_string()))?;
    if ck.params.len() != model.params.len() {
        return Err(ExportError(format!(
            "checkpoint holds {} parameters, the config needs {}",
            ck.params.len(),
            model.params.len()
        )));
    }
    model.params = ck.params;
    let tok =
        TextTokenizer::load(&dir.join("tokenizer.json")).map_err(|e| ExportError(e.to_string()))?;
    Ok((cfg, model, tok))
}

/// Arguments of `llm-train export`.
#[derive(clap::Args, Clone, Debug)]
pub struct ExportArgs {
    /// The run folder (holds config.toml, tokenizer.json, checkpoints/).
    #[arg(long)]
    pub run: PathBuf,
    /// Output `.llm` file.
    #[arg(long, short)]
    pub out: PathBuf,
    /// Matrix dtype (f32, f16, bf16, q8_0, q4_0, q5_0, iq4_nl, ...) or a llama.cpp
    /// K-quant mixture (q4_k_m, q5_k_m, q6_k, ...).
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// How the matrices' rows are stored, as for `llm-train quantize --layout`:
    /// `rows` (plain) or `r16` (F32/F16/BF16 matrices, 16 rows interleaved).
    #[arg(long, default_value = "rows", value_parser = crate::quantize::parse_layout)]
    pub layout: Layout,
}

/// Whether `out` lies inside the folder `run`.
fn writes_into(out: &Path, run: &Path) -> bool {
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let parent = abs(out).parent().map(Path::to_path_buf).unwrap_or_default();
    let (parent, run) = (
        parent.canonicalize().unwrap_or(parent),
        abs(run).canonicalize().unwrap_or_else(|_| abs(run)),
    );
    parent.starts_with(run)
}

/// `llm-train export`.
pub fn run_export(args: ExportArgs) -> Result<(), Box<dyn std::error::Error>> {
    let plan = QuantPlan::parse(&args.dtype).map_err(ExportError)?;
    // Writing into the run folder: hold its lock, as training does.
    let _lock = if writes_into(&args.out, &args.run) {
        let (lock, note) = crate::runlock::RunLock::acquire(&args.run).map_err(ExportError)?;
        if let Some(n) = note {
            eprintln!("note: {n}");
        }
        Some(lock)
    } else {
        None
    };
    let (cfg, model, tok) = load_run(&args.run)?;
    let mut w = export_writer(
        &model,
        &tok.spec(),
        Some(&cfg.to_toml()),
        &format!("llm-train:{}", args.run.display()),
        plan,
        &args.out,
    )?;
    let (done, kept) = crate::quantize::set_matrix_layouts(&mut w, &model.opts, args.layout)?;
    w.write_to(&args.out)
        .map_err(|e| ExportError(format!("{}: {e}", args.out.display())))?;
    match args.layout {
        Layout::Rows => println!("wrote {} ({plan})", args.out.display()),
        l => println!(
            "wrote {} ({plan}, {done} matrices in layout {}, {kept} left in rows)",
            args.out.display(),
            l.name()
        ),
    }
    Ok(())
}
