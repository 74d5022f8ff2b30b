//! llama.cpp GGUF (v2/v3 layout), `llama` architecture, with its embedded tokenizer.
//!
//! Layout: `"GGUF"`, u32 version, u64 tensor count, u64 kv count; kv pairs (string
//! key, u32 value type, value; decoded by [`llm_format::gguf_value`]); tensor
//! infos (string name, u32 n_dims, u64 ne[n_dims] innermost first, u32 ggml type,
//! u64 offset from the data section); the data section starts at the next multiple
//! of `general.alignment` (default 32). Our shapes are outermost first, so `ne` is
//! reversed. Our dtype ids are ggml's and our blocks are ggml's bytes, so tensors are
//! copied block for block. llama.cpp already stores q/k in its adjacent-pair RoPE
//! order, so nothing is permuted.

use super::cursor::Cursor;
use super::{file_name, map_file, ImportError, ImportedModel, LayerPick, RawTensor};
use llm_format::gguf_value::ValueReader;
use llm_format::options::TensorSlot;
use llm_format::{DType, Mlp, ModelOptions, Norm, Positions, TokenizerKind, TokenizerSpec, Value};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

/// File magic.
pub const MAGIC: &[u8; 4] = b"GGUF";
/// Alignment of the data section when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// A parsed GGUF header: metadata and tensor directory, borrowing from the bytes.
pub struct Gguf<'a> {
    /// Format version (2 or 3).
    pub version: u32,
    /// Key → value.
    pub meta: HashMap<&'a str, Value<'a>>,
    /// Tensor infos in file order.
    pub tensors: Vec<GgufTensor<'a>>,
}

/// One tensor of a GGUF file.
pub struct GgufTensor<'a> {
    /// GGUF name (`blk.0.attn_q.weight`).
    pub name: &'a str,
    /// Shape, outermost first (GGUF's `ne` reversed).
    pub shape: Vec<usize>,
    /// Storage type.
    pub dtype: DType,
    /// The tensor's bytes (checked to lie inside the file).
    pub data: &'a [u8],
}

/// Reads a GGUF file.
pub fn import(model: &Path) -> Result<ImportedModel, ImportError> {
    let name = file_name(model);
    let map = map_file(model)?;
    let g = parse(map.bytes(), &name)?;
    to_model(&g, &name)
}

fn string<'a>(c: &mut Cursor<'a>, what: &str, file: &str) -> Result<&'a str, ImportError> {
    let n = c.u64(what)?;
    let raw = c.take_n(n, 1, what)?;
    std::str::from_utf8(raw).map_err(|_| {
        ImportError::malformed(file, format!("{what} at byte {} is not UTF-8", c.pos()))
    })
}

/// One metadata value (type id and payload) through `llm_format`'s GGUF value codec,
/// the one the `.llm` reader uses; its error names the key, this adds the file.
fn meta_value<'a>(c: &mut Cursor<'a>, key: &str, file: &str) -> Result<Value<'a>, ImportError> {
    let mut r = ValueReader::new(c.buf(), c.pos());
    let v = r
        .typed_value(key)
        .map_err(|e| ImportError::malformed(file, e.to_string()))?;
    c.seek(r.pos(), key)?;
    Ok(v)
}

/// Parses the header, metadata and tensor directory; every tensor's bytes are
/// checked to lie inside `bytes`.
pub fn parse<'a>(bytes: &'a [u8], file: &str) -> Result<Gguf<'a>, ImportError> {
    let mut c = Cursor::new(bytes, file);
    if c.take(4, "magic")? != MAGIC {
        return Err(ImportError::malformed(file, "bad magic, expected \"GGUF\""));
    }
    let version = c.u32("version")?;
    if !(2..=3).contains(&version) {
        return Err(ImportError::unsupported(
            file,
            format!("GGUF version {version} (expected 2 or 3)"),
        ));
    }
    let n_tensors = c.u64("tensor count")?;
    let n_kv = c.u64("kv count")?;
    // A kv pair takes at least 13 bytes, a tensor info at least 24.
    if n_kv > c.remaining() as u64 / 13 || n_tensors > c.remaining() as u64 / 24 {
        return Err(ImportError::malformed(
            file,
            format!(
                "{n_kv} kv pairs and {n_tensors} tensors cannot fit in {} bytes",
                bytes.len()
            ),
        ));
    }
    let mut meta = HashMap::with_capacity(n_kv as usize);
    for _ in 0..n_kv {
        let key = string(&mut c, "metadata key", file)?;
        let v = meta_value(&mut c, key, file)?;
        if meta.insert(key, v).is_some() {
            return Err(ImportError::malformed(
                file,
                format!("key '{key}' appears twice"),
            ));
        }
    }
    let align = match meta.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(v) => match v.as_u64() {
            Some(a) if a > 0 && a.is_power_of_two() && a <= 1 << 20 => a,
            _ => {
                return Err(ImportError::malformed(
                    file,
                    format!("general.alignment = {v:?}, expected a power of two"),
                ))
            }
        },
    };
    struct Info<'a> {
        name: &'a str,
        shape: Vec<usize>,
        dtype: DType,
        offset: u64,
        size: u64,
    }
    let mut infos = Vec::with_capacity(n_tensors as usize);
    for _ in 0..n_tensors {
        let name = string(&mut c, "tensor name", file)?;
        let n_dims = c.u32(name)?;
        if !(1..=4).contains(&n_dims) {
            return Err(ImportError::malformed(
                file,
                format!("tensor '{name}' has {n_dims} dimensions, expected 1..=4"),
            ));
        }
        let mut ne = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            ne.push(c.u64(name)?);
        }
        let ty = c.u32(name)?;
        let offset = c.u64(name)?;
        let dtype = DType::from_u32(ty).map_err(|_| {
            ImportError::unsupported(
                file,
                format!(
                    "tensor '{name}' has ggml type {} (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1)",
                    ggml_type_name(ty)
                ),
            )
        })?;
        let bad = |what: String| ImportError::malformed(file, format!("tensor '{name}': {what}"));
        let numel = ne
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .filter(|&n| n > 0)
            .ok_or_else(|| bad(format!("dimensions {ne:?} are empty or overflow")))?;
        if ne[0] % dtype.block_len() as u64 != 0 {
            return Err(bad(format!(
                "row length {} is not a multiple of {}'s block of {}",
                ne[0],
                dtype,
                dtype.block_len()
            )));
        }
        let size = dtype
            .bytes_for(numel)
            .ok_or_else(|| bad(format!("{numel} elements of {dtype} overflow")))?;
        if offset % align != 0 {
            return Err(bad(format!(
                "offset {offset} is not a multiple of the alignment {align}"
            )));
        }
        let shape = ne
            .iter()
            .rev()
            .map(|&d| usize::try_from(d))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| bad(format!("dimensions {ne:?} do not fit this machine")))?;
        infos.push(Info {
            name,
            shape,
            dtype,
            offset,
            size,
        });
    }
    let start = (c.pos() as u64).div_ceil(align) * align;
    let data_len = (bytes.len() as u64).saturating_sub(start);
    let mut tensors = Vec::with_capacity(infos.len());
    for i in infos {
        let end = i.offset.checked_add(i.size).filter(|&e| e <= data_len).ok_or_else(|| {
            ImportError::malformed(
                file,
                format!(
                    "truncated: tensor '{}' ({} bytes at data offset {}) runs past the end of the data section ({data_len} bytes)",
                    i.name, i.size, i.offset
                ),
            )
        })?;
        // start + end <= bytes.len() (checked above), so both fit usize.
        let lo = (start + i.offset) as usize;
        let hi = (start + end) as usize;
        tensors.push(GgufTensor {
            name: i.name,
            shape: i.shape,
            dtype: i.dtype,
            data: &bytes[lo..hi],
        });
    }
    Ok(Gguf {
        version,
        meta,
        tensors,
    })
}

/// A ggml type id with its name, for errors about types we do not store.
fn ggml_type_name(id: u32) -> String {
    const NAMES: [&str; 31] = [
        "F32", "F16", "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K",
        "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL",
        "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64", "IQ1_M", "BF16",
    ];
    match NAMES.get(id as usize) {
        Some(n) => format!("{id} ({n})"),
        None => id.to_string(),
    }
}

/// GGUF's per-layer tensor names (after `blk.N.`) beside our slot for each: the one
/// table both the importer and `export-gguf` read.
pub const LAYER_NAMES: [(&str, LayerPick); 9] = [
    ("attn_norm.weight", |s| Some(&s.attn_norm.weight)),
    ("attn_q.weight", |s| Some(&s.attn_q.weight)),
    ("attn_k.weight", |s| Some(&s.attn_k.weight)),
    ("attn_v.weight", |s| Some(&s.attn_v.weight)),
    ("attn_output.weight", |s| Some(&s.attn_out.weight)),
    ("ffn_norm.weight", |s| Some(&s.mlp_norm.weight)),
    ("ffn_gate.weight", |s| {
        s.mlp_gate.as_ref().map(|g| &g.weight)
    }),
    ("ffn_up.weight", |s| Some(&s.mlp_up.weight)),
    ("ffn_down.weight", |s| Some(&s.mlp_down.weight)),
];

/// Picks one of the tensors outside the layers.
pub type GlobalPick = fn(&ModelOptions) -> Option<TensorSlot>;

/// GGUF's names of the tensors outside the layers beside our slot for each.
pub const GLOBAL_NAMES: [(&str, GlobalPick); 3] = [
    ("token_embd.weight", |o| Some(o.tok_emb())),
    ("output_norm.weight", |o| Some(o.out_norm().weight)),
    ("output.weight", |o| o.output()),
];

/// GGUF tensor name → our canonical name under `opts`; `None` for tensors we do not
/// keep. A block number past `opts.n_layers` still maps (the layout check refuses it).
pub fn canonical(opts: &ModelOptions, name: &str) -> Option<String> {
    if let Some((_, pick)) = GLOBAL_NAMES.iter().find(|g| g.0 == name) {
        return pick(opts).map(|s| s.name);
    }
    let (layer, tail) = name.strip_prefix("blk.")?.split_once('.')?;
    let l: usize = layer.parse().ok()?;
    let (_, pick) = LAYER_NAMES.iter().find(|t| t.0 == tail)?;
    pick(&opts.layer(l)).map(|s| s.name.clone())
}

/// Canonical tensor name → GGUF's, for every tensor of `opts` that GGUF's llama
/// layout has (it has no position tables and no biases).
pub fn gguf_names(opts: &ModelOptions) -> HashMap<String, String> {
    let mut m = HashMap::new();
    for (g, pick) in GLOBAL_NAMES {
        if let Some(s) = pick(opts) {
            m.insert(s.name, g.to_string());
        }
    }
    for l in 0..opts.n_layers {
        let slots = opts.layer(l);
        for (g, pick) in LAYER_NAMES {
            if let Some(s) = pick(&slots) {
                m.insert(s.name.clone(), format!("blk.{l}.{g}"));
            }
        }
    }
    m
}

/// Maps a parsed `llama` GGUF onto options, tokenizer and canonical tensors.
pub fn to_model(g: &Gguf<'_>, file: &str) -> Result<ImportedModel, ImportError> {
    let get = |k: &str| g.meta.get(k);
    let arch = get("general.architecture")
        .and_then(|v| v.as_str())
        .ok_or_else(|| ImportError::malformed(file, "missing string key 'general.architecture'"))?;
    if arch != "llama" {
        return Err(ImportError::unsupported(
            file,
            format!("architecture '{arch}' (only 'llama')"),
        ));
    }
    let req = |k: &str| -> Result<usize, ImportError> {
        let v = get(k).ok_or_else(|| ImportError::malformed(file, format!("missing key '{k}'")))?;
        v.as_u64()
            .and_then(|x| usize::try_from(x).ok())
            .ok_or_else(|| {
                ImportError::malformed(
                    file,
                    format!("key '{k}' should be a non-negative integer, found {v:?}"),
                )
            })
    };
    let opt_f32 = |k: &str, default: f32| -> Result<f32, ImportError> {
        match get(k) {
            None => Ok(default),
            Some(v) => v.as_f32().ok_or_else(|| {
                ImportError::malformed(file, format!("key '{k}' should be a float, found {v:?}"))
            }),
        }
    };
    let n_heads = req("llama.attention.head_count")?;
    let n_kv_heads = match get("llama.attention.head_count_kv") {
        None => n_heads,
        Some(_) => req("llama.attention.head_count_kv")?,
    };
    let emb = g
        .tensors
        .iter()
        .find(|t| t.name == "token_embd.weight")
        .ok_or_else(|| ImportError::malformed(file, "missing tensor 'token_embd.weight'"))?;
    let vocab_size = emb.shape.first().copied().unwrap_or(0);
    let tied = !g.tensors.iter().any(|t| t.name == "output.weight");
    let opts = ModelOptions {
        vocab_size,
        d_model: req("llama.embedding_length")?,
        n_layers: req("llama.block_count")?,
        n_heads,
        n_kv_heads,
        d_ff: req("llama.feed_forward_length")?,
        max_len: req("llama.context_length")?,
        positions: Positions::Rope,
        norm: Norm::RmsNorm,
        mlp: Mlp::SwiGlu,
        bias: false,
        tied_embeddings: tied,
        norm_eps: opt_f32("llama.attention.layer_norm_rms_epsilon", 1e-5)?,
        rope_base: opt_f32("llama.rope.freq_base", 10000.0)?,
    };
    opts.validate()
        .map_err(|e| ImportError::malformed(file, format!("model options: {e}")))?;
    if let Some(rd) = get("llama.rope.dimension_count").and_then(|v| v.as_u64()) {
        if rd != opts.head_dim() as u64 {
            return Err(ImportError::unsupported(
                file,
                format!(
                    "partial rotary: rope.dimension_count {rd}, head_dim {}",
                    opts.head_dim()
                ),
            ));
        }
    }
    let mut tensors = Vec::with_capacity(g.tensors.len());
    for t in &g.tensors {
        let Some(name) = canonical(&opts, t.name) else {
            if t.name == "rope_freqs.weight" {
                continue;
            }
            return Err(ImportError::unsupported(
                file,
                format!("tensor '{}' has no place in the llama layout", t.name),
            ));
        };
        tensors.push(RawTensor {
            name,
            dtype: t.dtype,
            shape: t.shape.clone(),
            data: t.data.to_vec(),
        });
    }
    let tok = tokenizer(g, file)?;
    let mut m = ImportedModel::finish(opts, tok, tensors, format!("gguf:{file}"))?;
    m.chat_template = chat_template(g, file)?;
    Ok(m)
}

/// The optional `tokenizer.chat_template` (a Jinja string); another type is an error.
pub fn chat_template(g: &Gguf<'_>, file: &str) -> Result<Option<String>, ImportError> {
    let key = "tokenizer.chat_template";
    match g.meta.get(key) {
        None => Ok(None),
        Some(v) => v.as_str().map(|s| Some(s.to_string())).ok_or_else(|| {
            ImportError::malformed(
                file,
                format!("key '{key}' should be a string, found {}", v.type_name()),
            )
        }),
    }
}

/// The embedded tokenizer: `tokenizer.ggml.model` `llama` (tokens + scores) or
/// `gpt2` (tokens + merges), and the special ids.
pub fn tokenizer(g: &Gguf<'_>, file: &str) -> Result<TokenizerSpec<'static>, ImportError> {
    let get = |k: &str| g.meta.get(k);
    let model = get("tokenizer.ggml.model")
        .and_then(|v| v.as_str())
        .ok_or_else(|| ImportError::malformed(file, "missing string key 'tokenizer.ggml.model'"))?;
    let strs = |k: &str| -> Result<Vec<Cow<'static, str>>, ImportError> {
        let arr = get(k)
            .and_then(|v| v.as_array())
            .ok_or_else(|| ImportError::malformed(file, format!("missing array key '{k}'")))?;
        arr.iter()
            .map(|v| {
                v.as_str()
                    .map(|s| Cow::Owned(s.to_string()))
                    .ok_or_else(|| {
                        ImportError::malformed(file, format!("key '{k}' must hold strings"))
                    })
            })
            .collect()
    };
    let tokens = strs("tokenizer.ggml.tokens")?;
    let (kind, scores, merges, default_bos) = match model {
        "llama" => {
            let scores = match get("tokenizer.ggml.scores") {
                None => (0..tokens.len()).map(|i| -(i as f32)).collect(),
                Some(v) => v
                    .as_array()
                    .ok_or_else(|| {
                        ImportError::malformed(file, "key 'tokenizer.ggml.scores' must be an array")
                    })?
                    .iter()
                    .map(|s| {
                        s.as_f32().ok_or_else(|| {
                            ImportError::malformed(
                                file,
                                "key 'tokenizer.ggml.scores' must hold floats",
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            };
            (TokenizerKind::SentencePiece, scores, Vec::new(), true)
        }
        "gpt2" => {
            let merges = match get("tokenizer.ggml.merges") {
                None => Vec::new(),
                Some(_) => strs("tokenizer.ggml.merges")?,
            };
            (TokenizerKind::Gpt2, Vec::new(), merges, false)
        }
        m => {
            return Err(ImportError::unsupported(
                file,
                format!("tokenizer.ggml.model '{m}' (expected 'llama' or 'gpt2')"),
            ))
        }
    };
    let id = |k: &str| -> Result<Option<u32>, ImportError> {
        match get(k) {
            None => Ok(None),
            Some(v) => match v.as_i64() {
                Some(x) if x < 0 => Ok(None),
                Some(x) => u32::try_from(x).map(Some).map_err(|_| {
                    ImportError::malformed(file, format!("key '{k}' = {x} is not a token id"))
                }),
                None => Err(ImportError::malformed(
                    file,
                    format!("key '{k}' should be an integer"),
                )),
            },
        }
    };
    let add_bos = match get("tokenizer.ggml.add_bos_token") {
        None => default_bos,
        Some(v) => v.as_bool().ok_or_else(|| {
            ImportError::malformed(file, "key 'tokenizer.ggml.add_bos_token' should be a bool")
        })?,
    };
    Ok(TokenizerSpec {
        kind,
        tokens,
        scores,
        merges,
        bos: id("tokenizer.ggml.bos_token_id")?,
        eos: id("tokenizer.ggml.eos_token_id")?,
        unk: id("tokenizer.ggml.unknown_token_id")?,
        pad: id("tokenizer.ggml.padding_token_id")?,
        add_bos,
    })
}
