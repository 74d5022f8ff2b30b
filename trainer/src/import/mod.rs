//! Importers: read another tool's checkpoint and tokenizer, map them onto the
//! canonical tensor directory of [`ModelOptions::tensor_layout`], and hand the result
//! to the `.llm` writer.
//!
//! Each source module turns its files into an [`ImportedModel`] (options, tokenizer,
//! tensors under their canonical names, `[out, in]` weights, RoPE on adjacent pairs);
//! [`ImportedModel::finish`] checks the tensors against the layout and puts them in
//! file order, and [`ImportedModel::to_writer`] converts dtypes on the way out.
//! Weight files are memory-mapped (small JSON and tokenizer files are read); every
//! size is checked against the bytes actually there before anything is allocated
//! from it.

pub mod cursor;
pub mod gguf;
pub mod hf_tokenizer;
pub mod llama2c;
pub mod llmc;
pub mod provenance;
pub mod safetensors;

use crate::recipe::QuantPlan;
use llm_format::options::{LayerSlots, TensorSlot};
use llm_format::{DType, FormatError, LlmWriter, ModelOptions, TokenizerSpec, Value};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Why an import or a re-quantisation failed. `Display` is one line naming the file
/// or tensor and what was expected and found.
#[derive(Debug)]
pub enum ImportError {
    /// A file could not be read or written.
    Io {
        /// The path.
        path: String,
        /// The OS error text.
        msg: String,
    },
    /// A source file is malformed: truncated, a bad magic, a field out of range.
    Malformed {
        /// The file (name or path).
        file: String,
        /// What is wrong, with expected vs found.
        what: String,
    },
    /// A source is well-formed but uses something this importer does not support.
    Unsupported {
        /// The file.
        file: String,
        /// What is not supported.
        what: String,
    },
    /// A tensor cannot be converted to the requested dtype.
    Convert {
        /// Canonical tensor name.
        tensor: String,
        /// Why.
        what: String,
    },
    /// The `.llm` format crate refused something (layout, metadata, write).
    Format(FormatError),
}

impl ImportError {
    /// A [`ImportError::Malformed`] for `file`.
    pub fn malformed(file: impl Into<String>, what: impl Into<String>) -> Self {
        ImportError::Malformed {
            file: file.into(),
            what: what.into(),
        }
    }

    /// An [`ImportError::Unsupported`] for `file`.
    pub fn unsupported(file: impl Into<String>, what: impl Into<String>) -> Self {
        ImportError::Unsupported {
            file: file.into(),
            what: what.into(),
        }
    }

    /// An [`ImportError::Convert`] for `tensor`.
    pub fn convert(tensor: impl Into<String>, what: impl Into<String>) -> Self {
        ImportError::Convert {
            tensor: tensor.into(),
            what: what.into(),
        }
    }
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportError::Io { path, msg } => write!(f, "{path}: {msg}"),
            ImportError::Malformed { file, what } => write!(f, "{file}: {what}"),
            ImportError::Unsupported { file, what } => write!(f, "{file}: unsupported: {what}"),
            ImportError::Convert { tensor, what } => write!(f, "tensor '{tensor}': {what}"),
            ImportError::Format(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ImportError {}

impl From<FormatError> for ImportError {
    fn from(e: FormatError) -> Self {
        ImportError::Format(e)
    }
}

/// Reads a whole file, naming the path in the error.
pub fn read_file(path: &Path) -> Result<Vec<u8>, ImportError> {
    std::fs::read(path).map_err(|e| ImportError::Io {
        path: path.display().to_string(),
        msg: e.to_string(),
    })
}

/// Maps a (possibly large) weights file read-only: the importers copy each tensor
/// once into its output buffer, so the source never sits in memory twice. The file
/// must not change while it is imported.
pub fn map_file(path: &Path) -> Result<llm_format::MappedFile, ImportError> {
    // The error text already names the path.
    Ok(llm_format::MappedFile::open(path)?)
}

/// The last component of `path`, for provenance and error messages.
pub fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// One tensor as imported: canonical name, storage dtype, shape (outermost first)
/// and its bytes in that dtype.
#[derive(Clone, Debug, PartialEq)]
pub struct RawTensor {
    /// Canonical name (`blk.0.attn_q.weight`, ...).
    pub name: String,
    /// Storage dtype of `data`.
    pub dtype: DType,
    /// Shape, outermost first (`[out, in]` for matrices).
    pub shape: Vec<usize>,
    /// Little-endian bytes: `dtype.bytes_for(shape.product())` of them.
    pub data: Vec<u8>,
}

impl RawTensor {
    /// An f32 tensor from values.
    pub fn f32(name: impl Into<String>, shape: Vec<usize>, x: &[f32]) -> Self {
        RawTensor {
            name: name.into(),
            dtype: DType::F32,
            shape,
            data: cursor::f32s_to_le(x),
        }
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Picks one tensor out of a block's typed slots, e.g. `|s| Some(&s.attn_q.weight)` or
/// `|s| s.mlp_gate.as_ref().map(|g| &g.weight)`: how importers name a per-layer role.
pub type LayerPick = fn(&LayerSlots) -> Option<&TensorSlot>;

/// The canonical name of an optional slot of the typed layout (a bias, the SwiGLU
/// gate) that the importer's own options always have; an error naming `file` and
/// `what` if they do not (a bug in the importer, not in the input).
pub(crate) fn slot_name(
    slot: Option<&TensorSlot>,
    file: &str,
    what: &str,
) -> Result<String, ImportError> {
    slot.map(|s| s.name.clone()).ok_or_else(|| {
        ImportError::malformed(
            file,
            format!("internal: the model options have no tensor for {what}"),
        )
    })
}

/// Which importer to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SourceKind {
    /// llama2.c `.bin` checkpoint (legacy or v1 header) + `tokenizer.bin`.
    #[value(name = "llama2c")]
    Llama2c,
    /// llm.c GPT-2 checkpoint (v3 fp32 / v5 bf16) + llm.c tokenizer file.
    #[value(name = "llmc")]
    Llmc,
    /// Hugging Face directory: `config.json`, `model.safetensors`, `tokenizer.json`.
    #[value(name = "safetensors")]
    SafeTensors,
    /// llama.cpp GGUF v3 (llama architecture) with its embedded tokenizer.
    #[value(name = "gguf")]
    Gguf,
}

impl SourceKind {
    /// The name used on the command line and in provenance.
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::Llama2c => "llama2c",
            SourceKind::Llmc => "llmc",
            SourceKind::SafeTensors => "safetensors",
            SourceKind::Gguf => "gguf",
        }
    }
}

/// A model read from another tool, ready to be written as `.llm`.
#[derive(Clone, Debug)]
pub struct ImportedModel {
    /// Model options (validated).
    pub opts: ModelOptions,
    /// The tokenizer.
    pub tokenizer: TokenizerSpec<'static>,
    /// Tensors under their canonical names; after [`ImportedModel::finish`], in
    /// `tensor_layout()` order with checked shapes and sizes.
    pub tensors: Vec<RawTensor>,
    /// Provenance source, e.g. `llama2c:stories15M.bin`.
    pub source: String,
    /// The model's Jinja chat template, when the source has one (GGUF
    /// `tokenizer.chat_template`, Hugging Face `tokenizer_config.json`).
    pub chat_template: Option<String>,
}

impl ImportedModel {
    /// Validates the options and the tokenizer against each other, checks every
    /// tensor against `opts.tensor_layout()` (names, shapes, byte sizes, nothing
    /// missing or extra) and sorts the tensors into layout order.
    pub fn finish(
        opts: ModelOptions,
        tokenizer: TokenizerSpec<'static>,
        tensors: Vec<RawTensor>,
        source: String,
    ) -> Result<ImportedModel, ImportError> {
        opts.validate()?;
        check_tokenizer(&opts, &tokenizer, &source)?;
        // Every layer has tensors of its own: more layers than the file has tensors is
        // refused before the directory of that many layers is built (a block count of
        // millions would otherwise cost seconds and gigabytes to reject).
        if opts.n_layers > tensors.len() {
            return Err(ImportError::malformed(
                &source,
                format!(
                    "{} layers declared, but the file has only {} tensors",
                    opts.n_layers,
                    tensors.len()
                ),
            ));
        }
        let layout = opts.tensor_layout();
        let mut by_name: HashMap<String, RawTensor> = HashMap::with_capacity(tensors.len());
        for t in tensors {
            let name = t.name.clone();
            if by_name.insert(name.clone(), t).is_some() {
                return Err(ImportError::malformed(
                    &source,
                    format!("tensor '{name}' appears twice"),
                ));
            }
        }
        let mut out = Vec::with_capacity(layout.len());
        for slot in &layout {
            let t = by_name.remove(&slot.name).ok_or_else(|| {
                ImportError::malformed(&source, format!("missing tensor '{}'", slot.name))
            })?;
            if t.shape != slot.shape {
                return Err(ImportError::malformed(
                    &source,
                    format!(
                        "tensor '{}' has shape {:?}, expected {:?}",
                        slot.name, t.shape, slot.shape
                    ),
                ));
            }
            let want = t.dtype.bytes_for(t.numel() as u64);
            if want != Some(t.data.len() as u64) {
                return Err(ImportError::malformed(
                    &source,
                    format!(
                        "tensor '{}' ({}, {:?}) has {} bytes, expected {:?}",
                        slot.name,
                        t.dtype,
                        t.shape,
                        t.data.len(),
                        want
                    ),
                ));
            }
            out.push(t);
        }
        if let Some(extra) = by_name.keys().min() {
            return Err(ImportError::malformed(
                &source,
                format!("unexpected tensor '{extra}' not in the model layout"),
            ));
        }
        Ok(ImportedModel {
            opts,
            tokenizer,
            tensors: out,
            source,
            chat_template: None,
        })
    }

    /// Looks a tensor up by canonical name.
    pub fn tensor(&self, name: &str) -> Option<&RawTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Converts in place: every `matrix` slot to the dtype `plan` gives it (if
    /// given), every other tensor (norms, biases, position tables) to f32. A tensor
    /// already in its target dtype is left byte for byte as it is.
    pub fn convert(&mut self, plan: Option<QuantPlan>) -> Result<(), ImportError> {
        let layout = self.opts.tensor_layout();
        for (t, slot) in self.tensors.iter_mut().zip(&layout) {
            let target = target_dtype(plan, &self.opts, slot, t.dtype);
            crate::quantize::convert_tensor(t, target)?;
        }
        Ok(())
    }

    /// All metadata entries: options, tokenizer, provenance (source, date, tool).
    pub fn metadata(&self) -> Vec<(String, Value<'static>)> {
        let mut m = self.opts.to_meta();
        m.extend(self.tokenizer.to_meta());
        if let Some(t) = &self.chat_template {
            m.push((
                llm_format::options::keys::TOK_CHAT_TEMPLATE.into(),
                Value::Str(std::borrow::Cow::Owned(t.clone())),
            ));
        }
        m.extend(provenance::entries(&self.source));
        m
    }

    /// A writer holding the metadata and the tensors, matrices converted as `plan`
    /// says when given (norms and biases always f32). Copies the tensors; see
    /// [`ImportedModel::into_writer`] to move them instead.
    pub fn to_writer(&self, plan: Option<QuantPlan>) -> Result<LlmWriter, ImportError> {
        self.clone().into_writer(plan)
    }

    /// [`ImportedModel::to_writer`], moving the tensor bytes into the writer (one
    /// tensor converted at a time, so peak memory stays near one model's size).
    pub fn into_writer(self, plan: Option<QuantPlan>) -> Result<LlmWriter, ImportError> {
        let mut w = LlmWriter::new();
        w.extend_meta(self.metadata());
        let layout = self.opts.tensor_layout();
        for (mut t, slot) in self.tensors.into_iter().zip(&layout) {
            let target = target_dtype(plan, &self.opts, slot, t.dtype);
            crate::quantize::convert_tensor(&mut t, target)?;
            w.add_tensor(t.name, t.dtype, &t.shape, t.data)?;
        }
        Ok(w)
    }
}

/// The dtype a tensor of `slot` converts to: the plan's for a matrix (its own dtype
/// without a plan), f32 for everything else.
fn target_dtype(
    plan: Option<QuantPlan>,
    opts: &ModelOptions,
    slot: &llm_format::options::TensorSlot,
    current: DType,
) -> DType {
    if !slot.matrix {
        return DType::F32;
    }
    let cols = slot.shape.last().copied().unwrap_or(1);
    plan.map_or(current, |p| p.dtype_for(&slot.name, cols, opts))
}

/// The tokenizer must cover exactly the model's vocabulary, and its special ids
/// must be tokens.
pub(crate) fn check_tokenizer(
    opts: &ModelOptions,
    tok: &TokenizerSpec<'_>,
    source: &str,
) -> Result<(), ImportError> {
    if tok.tokens.len() != opts.vocab_size {
        return Err(ImportError::malformed(
            source,
            format!(
                "tokenizer has {} tokens, the model's vocab_size is {}",
                tok.tokens.len(),
                opts.vocab_size
            ),
        ));
    }
    if !tok.scores.is_empty() && tok.scores.len() != tok.tokens.len() {
        return Err(ImportError::malformed(
            source,
            format!(
                "tokenizer has {} tokens but {} scores",
                tok.tokens.len(),
                tok.scores.len()
            ),
        ));
    }
    for (what, id) in [
        ("bos", tok.bos),
        ("eos", tok.eos),
        ("unk", tok.unk),
        ("pad", tok.pad),
    ] {
        if let Some(i) = id {
            if i as usize >= tok.tokens.len() {
                return Err(ImportError::malformed(
                    source,
                    format!(
                        "tokenizer {what} id {i} is not below the vocabulary size {}",
                        tok.tokens.len()
                    ),
                ));
            }
        }
    }
    // The runtime's own check (merge rules, byte tokens, …): a file that imports
    // also loads.
    llmrt::tokenizer::Tokenizer::from_spec(tok).map_err(|e| {
        ImportError::malformed(source, format!("the tokenizer would not load: {e}"))
    })?;
    Ok(())
}

/// Runs the importer `from` on `model` (a file, or a directory for safetensors) and
/// `tokenizer` (required for llama2c and llmc; ignored by gguf; optional override of
/// `DIR/tokenizer.json` for safetensors).
pub fn import(
    from: SourceKind,
    model: &Path,
    tokenizer: Option<&Path>,
) -> Result<ImportedModel, ImportError> {
    let need_tok = |what: &str| {
        tokenizer.ok_or_else(|| {
            ImportError::unsupported(
                file_name(model),
                format!("--from {what} needs --tokenizer PATH"),
            )
        })
    };
    match from {
        SourceKind::Llama2c => llama2c::import(model, need_tok("llama2c")?),
        SourceKind::Llmc => llmc::import(model, need_tok("llmc")?),
        SourceKind::SafeTensors => safetensors::import(model, tokenizer),
        SourceKind::Gguf => gguf::import(model),
    }
}

/// `llm-train import`: convert another tool's model to `.llm`.
#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// Source format.
    #[arg(long, value_enum)]
    pub from: SourceKind,
    /// The checkpoint file (llama2c, llmc, gguf) or model directory (safetensors).
    #[arg(long)]
    pub model: PathBuf,
    /// Tokenizer file: llama2.c `tokenizer.bin`, llm.c tokenizer `.bin`, or a
    /// `tokenizer.json` replacing DIR/tokenizer.json (safetensors). GGUF embeds its own.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Output `.llm` file (written atomically).
    #[arg(long)]
    pub out: PathBuf,
    /// Store the weight matrices as this dtype (norms and biases stay f32). Default:
    /// the source's own dtype (f32 for safetensors, whose weights are widened).
    #[arg(long, value_parser = QuantPlan::parse)]
    pub dtype: Option<QuantPlan>,
}

/// Runs `llm-train import`.
pub fn run_import(a: ImportArgs) -> Result<(), Box<dyn std::error::Error>> {
    let m = import(a.from, &a.model, a.tokenizer.as_deref())?;
    let (source, n_tensors, n_params) = (m.source.clone(), m.tensors.len(), m.opts.n_params());
    m.into_writer(a.dtype)?.write_to(&a.out)?;
    eprintln!(
        "imported {source} ({n_tensors} tensors, {n_params} parameters) -> {}",
        a.out.display()
    );
    Ok(())
}
