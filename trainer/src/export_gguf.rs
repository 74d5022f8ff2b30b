//! `llm-train export-gguf`: writes an `.llm` model as a llama.cpp GGUF (v3, llama
//! architecture), so llama.cpp and everything built on it can run a model trained or
//! quantised here.
//!
//! The blocks are copied byte for byte (our dtypes are ggml's), tensor names are the
//! inverse of the importer's map (`import::gguf::LAYER_NAMES`), shapes are written
//! innermost first, and RoPE needs no permutation (both use adjacent pairs). Only the
//! llama family can be expressed: RoPE, RMSNorm, SwiGLU, no biases; anything else is
//! refused with the option that does not fit. `--dtype` re-quantises on the way out
//! (a dtype or a K-quant mixture, as `quantize`).

use crate::import::gguf::{gguf_names, DEFAULT_ALIGNMENT, MAGIC};
use crate::import::ImportError;
use crate::recipe::QuantPlan;
use llm_format::gguf_value::write_str as put_str;
use llm_format::{LlmFile, MappedFile, Mlp, Norm, Positions, TokenizerKind, ValueType as Ty};
use std::path::{Path, PathBuf};

/// A GGUF file being assembled in memory. Type ids are the shared [`Ty`]; arrays are
/// streamed from slices under their declared element type (so an empty merge list
/// stays an array of strings, where `llm_format`'s value encoder would write u8).
#[derive(Default)]
struct GgufBuf {
    kv: Vec<u8>,
    n_kv: u64,
}

impl GgufBuf {
    fn key(&mut self, k: &str, t: Ty) -> &mut Vec<u8> {
        self.n_kv += 1;
        put_str(&mut self.kv, k);
        self.kv.extend_from_slice(&t.to_u32().to_le_bytes());
        &mut self.kv
    }
    fn u32(&mut self, k: &str, v: u32) {
        self.key(k, Ty::U32).extend_from_slice(&v.to_le_bytes());
    }
    fn f32(&mut self, k: &str, v: f32) {
        self.key(k, Ty::F32).extend_from_slice(&v.to_le_bytes());
    }
    fn bool(&mut self, k: &str, v: bool) {
        self.key(k, Ty::Bool).push(v as u8);
    }
    fn str(&mut self, k: &str, v: &str) {
        put_str(self.key(k, Ty::String), v);
    }
    fn array_header(&mut self, k: &str, elem: Ty, n: usize) -> &mut Vec<u8> {
        let out = self.key(k, Ty::Array);
        out.extend_from_slice(&elem.to_u32().to_le_bytes());
        out.extend_from_slice(&(n as u64).to_le_bytes());
        out
    }
    fn strs<'s>(&mut self, k: &str, v: impl ExactSizeIterator<Item = &'s str>) {
        let out = self.array_header(k, Ty::String, v.len());
        v.for_each(|s| put_str(out, s));
    }
    fn f32s(&mut self, k: &str, v: &[f32]) {
        let out = self.array_header(k, Ty::F32, v.len());
        v.iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
    }
    fn i32s(&mut self, k: &str, v: &[i32]) {
        let out = self.array_header(k, Ty::I32, v.len());
        v.iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
    }
}

/// The GGUF bytes of a parsed `.llm` file (llama family only).
pub fn to_gguf(file: &LlmFile<'_>, name: &str) -> Result<Vec<u8>, ImportError> {
    let o = file.options()?;
    let refuse = |what: String| ImportError::convert("export-gguf", what);
    if o.positions != Positions::Rope || o.norm != Norm::RmsNorm || o.mlp != Mlp::SwiGlu || o.bias {
        return Err(refuse(format!(
            "GGUF's llama architecture needs positions rope, norm rmsnorm, mlp swiglu and no \
             biases; this model has positions {}, norm {}, mlp {}, bias {}",
            o.positions.name(),
            o.norm.name(),
            o.mlp.name(),
            o.bias
        )));
    }
    if o.arch != llm_format::ArchOptions::default() {
        return Err(refuse(format!(
            "GGUF export writes the plain llama architecture; this model has {:?}",
            o.arch
        )));
    }
    let tok = file.tokenizer()?;
    let mut g = GgufBuf::default();
    g.str("general.architecture", "llama");
    g.str("general.name", name);
    g.u32("general.alignment", DEFAULT_ALIGNMENT as u32);
    g.u32("llama.context_length", o.max_len as u32);
    g.u32("llama.embedding_length", o.d_model as u32);
    g.u32("llama.block_count", o.n_layers as u32);
    g.u32("llama.feed_forward_length", o.d_ff as u32);
    g.u32("llama.attention.head_count", o.n_heads as u32);
    g.u32("llama.attention.head_count_kv", o.n_kv_heads as u32);
    g.u32("llama.rope.dimension_count", o.head_dim() as u32);
    g.f32("llama.attention.layer_norm_rms_epsilon", o.norm_eps);
    g.f32("llama.rope.freq_base", o.rope_base);
    let special = [tok.bos, tok.eos, tok.unk, tok.pad];
    match tok.kind {
        TokenizerKind::SentencePiece => {
            g.str("tokenizer.ggml.model", "llama");
            g.strs("tokenizer.ggml.tokens", tok.tokens.iter().map(|t| &**t));
            g.f32s("tokenizer.ggml.scores", &tok.scores);
            // llama.cpp's token types: 1 normal, 2 unknown, 3 control, 6 byte.
            let types: Vec<i32> = (0..tok.tokens.len())
                .map(|i| {
                    let t = &tok.tokens[i];
                    if Some(i as u32) == tok.unk {
                        2
                    } else if special.contains(&Some(i as u32)) {
                        3
                    } else if t.len() == 6 && t.starts_with("<0x") && t.ends_with('>') {
                        6
                    } else {
                        1
                    }
                })
                .collect();
            g.i32s("tokenizer.ggml.token_type", &types);
        }
        TokenizerKind::Gpt2 => {
            g.str("tokenizer.ggml.model", "gpt2");
            g.str(
                "tokenizer.ggml.pre",
                tok.pre.as_deref().unwrap_or(llmrt::tokenizer::GPT2_NAME),
            );
            g.strs("tokenizer.ggml.tokens", tok.tokens.iter().map(|t| &**t));
            g.strs("tokenizer.ggml.merges", tok.merges.iter().map(|t| &**t));
        }
        TokenizerKind::RawBpe => {
            g.str("tokenizer.ggml.model", "gemma4");
            g.strs("tokenizer.ggml.tokens", tok.tokens.iter().map(|t| &**t));
            g.strs("tokenizer.ggml.merges", tok.merges.iter().map(|t| &**t));
        }
        TokenizerKind::Wpm => {
            g.str("tokenizer.ggml.model", "bert");
            g.strs("tokenizer.ggml.tokens", tok.tokens.iter().map(|t| &**t));
            if !tok.token_types.is_empty() {
                let types: Vec<i32> = tok.token_types.iter().map(|&t| t as i32).collect();
                g.i32s("tokenizer.ggml.token_type", &types);
            }
            g.bool("tokenizer.ggml.normalizer.lowercase", tok.lowercase);
            g.bool("tokenizer.ggml.normalizer.strip_accents", tok.strip_accents);
        }
        TokenizerKind::Char => {
            return Err(refuse(
                "a character-level tokenizer has no GGUF equivalent; train with \
                 --set tokenizer=byte or bpe"
                    .into(),
            ))
        }
    }
    // A WPM text ends with [SEP], which llama.cpp reads as the separator, not EOS.
    let eos_key = match tok.kind {
        TokenizerKind::Wpm => "tokenizer.ggml.seperator_token_id",
        _ => "tokenizer.ggml.eos_token_id",
    };
    let ids = [
        ("tokenizer.ggml.bos_token_id", tok.bos),
        (eos_key, tok.eos),
        ("tokenizer.ggml.unknown_token_id", tok.unk),
        ("tokenizer.ggml.padding_token_id", tok.pad),
    ];
    for (k, v) in ids {
        if let Some(v) = v {
            g.u32(k, v);
        }
    }
    g.bool("tokenizer.ggml.add_bos_token", tok.add_bos);
    let chat = llm_format::options::keys::TOK_CHAT_TEMPLATE;
    if let Some(t) = file.get(chat).and_then(|v| v.as_str()) {
        g.str("tokenizer.chat_template", t);
    }

    // Tensor directory, then data, each tensor at a multiple of the alignment.
    let align = DEFAULT_ALIGNMENT as usize;
    let mut infos = Vec::new();
    let mut data = Vec::new();
    let mut n_tensors = 0u64;
    let names = gguf_names(&o);
    for slot in o.tensor_layout() {
        let t = file
            .tensor(&slot.name)
            .ok_or_else(|| ImportError::convert(&slot.name, "missing from the input file"))?;
        let gname = names.get(&slot.name).ok_or_else(|| {
            ImportError::convert(&slot.name, "has no place in GGUF's llama layout")
        })?;
        put_str(&mut infos, gname);
        infos.extend_from_slice(&(t.shape.len() as u32).to_le_bytes());
        for d in t.shape.iter().rev() {
            infos.extend_from_slice(&(*d as u64).to_le_bytes());
        }
        infos.extend_from_slice(&t.dtype.to_u32().to_le_bytes());
        infos.extend_from_slice(&(data.len() as u64).to_le_bytes());
        // GGUF rows are plain: a tensor in another layout is de-interleaved.
        data.extend_from_slice(&t.rows_data());
        data.resize(data.len().next_multiple_of(align), 0);
        n_tensors += 1;
    }
    let mut out = Vec::with_capacity(data.len() + g.kv.len() + infos.len() + 64);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&n_tensors.to_le_bytes());
    out.extend_from_slice(&g.n_kv.to_le_bytes());
    out.extend_from_slice(&g.kv);
    out.extend_from_slice(&infos);
    out.resize(out.len().next_multiple_of(align), 0);
    out.extend_from_slice(&data);
    Ok(out)
}

/// `llm-train export-gguf`: an `.llm` model as a llama.cpp GGUF.
#[derive(clap::Args, Debug)]
pub struct ExportGgufArgs {
    /// Input `.llm` file.
    #[arg(long = "in")]
    pub input: PathBuf,
    /// Output `.gguf` file (written atomically).
    #[arg(long)]
    pub out: PathBuf,
    /// Re-quantise the matrices first: a dtype or a K-quant mixture (`q4_k_m`, ...).
    #[arg(long, value_parser = QuantPlan::parse)]
    pub dtype: Option<QuantPlan>,
}

/// Runs `llm-train export-gguf`.
pub fn run_export_gguf(a: ExportGgufArgs) -> Result<(), Box<dyn std::error::Error>> {
    let mapped = MappedFile::open(&a.input)?;
    let file = mapped.parse()?;
    let name = a
        .input
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let bytes = match a.dtype {
        None => to_gguf(&file, &name)?,
        Some(plan) => {
            let requant = crate::quantize::requantize(&file, plan)?.to_bytes()?;
            let buf = llm_format::AlignedBuf::from_slice(&requant);
            to_gguf(&LlmFile::parse(&buf)?, &name)?
        }
    };
    write_file(&a.out, &bytes)?;
    eprintln!("wrote {} ({} bytes)", a.out.display(), bytes.len());
    Ok(())
}

/// Writes `bytes` to `path` atomically (temp file, fsync, rename).
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ImportError> {
    crate::checkpoint::write_atomic(path, bytes, None)
        .map_err(|e| ImportError::convert(path.display().to_string(), e.to_string()))
}
