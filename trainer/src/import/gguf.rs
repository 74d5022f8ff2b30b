//! llama.cpp GGUF (v2/v3 layout), the architectures of [`ARCHITECTURES`], with its
//! embedded tokenizer.
//!
//! Layout: `"GGUF"`, u32 version, u64 tensor count, u64 kv count; kv pairs (string
//! key, u32 value type, value; decoded by [`llm_format::gguf_value`]); tensor
//! infos (string name, u32 n_dims, u64 ne[n_dims] innermost first, u32 ggml type,
//! u64 offset from the data section); the data section starts at the next multiple
//! of `general.alignment` (default 32). Our shapes are outermost first, so `ne` is
//! reversed. Our dtype ids are ggml's and our blocks are ggml's bytes, so tensors are
//! copied block for block. For `llama` llama.cpp already stores q/k in its
//! adjacent-pair RoPE order, so nothing is permuted; the architectures it runs with
//! NEOX (rotate-half) RoPE keep Hugging Face's row order, so their q/k rows (and
//! q/k biases and norm weights) are permuted at import ([`unpermute_bytes`]).

use super::cursor::Cursor;
use super::{file_name, map_file, ImportError, ImportedModel, LayerPick, RawTensor};
use llm_format::gguf_value::ValueReader;
use llm_format::options::TensorSlot;
use llm_format::{
    ArchOptions, DType, Mlp, ModelOptions, Norm, Positions, TokenizerKind, TokenizerSpec, Value,
};
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
pub const LAYER_NAMES: [(&str, LayerPick); 21] = [
    ("attn_norm.weight", |s| Some(&s.attn_norm.weight)),
    ("attn_norm.bias", |s| s.attn_norm.bias.as_ref()),
    ("attn_output.bias", |s| s.attn_out.bias.as_ref()),
    ("ffn_norm.bias", |s| s.mlp_norm.bias.as_ref()),
    ("ffn_up.bias", |s| s.mlp_up.bias.as_ref()),
    ("ffn_down.bias", |s| s.mlp_down.bias.as_ref()),
    ("attn_q.weight", |s| Some(&s.attn_q.weight)),
    ("attn_q.bias", |s| s.attn_q.bias.as_ref()),
    ("attn_k.weight", |s| Some(&s.attn_k.weight)),
    ("attn_k.bias", |s| s.attn_k.bias.as_ref()),
    ("attn_v.weight", |s| Some(&s.attn_v.weight)),
    ("attn_v.bias", |s| s.attn_v.bias.as_ref()),
    ("attn_q_norm.weight", |s| s.attn_q_norm.as_ref()),
    ("attn_k_norm.weight", |s| s.attn_k_norm.as_ref()),
    ("attn_output.weight", |s| Some(&s.attn_out.weight)),
    ("attn_post_norm.weight", |s| {
        s.attn_post_norm.as_ref().map(|n| &n.weight)
    }),
    ("ffn_post_norm.weight", |s| {
        s.mlp_post_norm.as_ref().map(|n| &n.weight)
    }),
    ("ffn_norm.weight", |s| Some(&s.mlp_norm.weight)),
    ("ffn_gate.weight", |s| {
        s.mlp_gate.as_ref().map(|g| &g.weight)
    }),
    ("ffn_up.weight", |s| Some(&s.mlp_up.weight)),
    ("ffn_down.weight", |s| Some(&s.mlp_down.weight)),
];

/// The GGUF architectures the importer reads, each with whether llama.cpp runs it
/// with NEOX (rotate-half) RoPE, so that its q/k rows are in Hugging Face's order.
/// Everything else is read from the file's keys and tensors, except Gemma 3's
/// GeGLU, √d embedding scale and sliding-window defaults ([`gemma3`]).
pub const ARCHITECTURES: [(&str, bool); 6] = [
    ("gpt2", false),
    ("llama", false),
    ("qwen2", true),
    ("qwen3", true),
    ("phi3", true),
    ("gemma3", true),
];

/// Gemma 3's settings that llama.cpp takes from the architecture rather than the
/// file: GeGLU, the embedding scaled by √d, and sliding-window attention on five
/// layers of six (`attention.sliding_window_pattern`, default 6) with RoPE base
/// `rope.freq_base_swa` (default 10000) on those layers. The norm weights already
/// hold Gemma's `1 + w` (llama.cpp's converter adds the 1).
fn gemma3(o: &mut ModelOptions, g: &Gguf<'_>, file: &str) -> Result<(), ImportError> {
    let get = |k: &str| g.meta.get(k);
    let num = |k: &str| -> Result<Option<f64>, ImportError> {
        let key = format!("gemma3.{k}");
        match get(&key) {
            None => Ok(None),
            Some(v) => v
                .as_f32()
                .map(f64::from)
                .or_else(|| v.as_u64().map(|x| x as f64))
                .map(Some)
                .ok_or_else(|| {
                    ImportError::unsupported(
                        file,
                        format!("key '{key}' = {v:?} (expected a number)"),
                    )
                }),
        }
    };
    if num("final_logit_softcapping")?.is_some_and(|c| c != 0.0) {
        return Err(ImportError::unsupported(file, "final_logit_softcapping"));
    }
    if o.n_layers == 62 {
        return Err(ImportError::unsupported(
            file,
            "Gemma 3 27B's attention scale 1/√(d/n_heads)",
        ));
    }
    o.mlp = Mlp::GeGlu;
    o.arch.embed_scale = Some((o.d_model as f32).sqrt());
    if let Some(w) = num("attention.sliding_window")?.filter(|w| *w > 0.0) {
        o.arch.sliding_window = Some(w as usize);
        o.arch.sliding_window_pattern =
            num("attention.sliding_window_pattern")?.unwrap_or(6.0) as usize;
        o.arch.rope_base_local = Some(num("rope.freq_base_swa")?.unwrap_or(10000.0) as f32);
    }
    Ok(())
}

/// Undoes the rotate-half order of the rows of a q or k tensor held as bytes
/// (`rows` rows of `data.len() / rows` bytes, whole quantisation blocks each, in
/// `n_heads` heads): within each head, row `2i + j` of the result is row
/// `j·hd/2 + i` of the input, as [`super::safetensors::unpermute_rows`] does for f32.
/// A bias or a norm weight is the same with one-element rows.
pub fn unpermute_bytes(data: &[u8], rows: usize, n_heads: usize) -> Vec<u8> {
    let rb = data.len() / rows;
    let hd = rows / n_heads;
    let mut out = vec![0u8; data.len()];
    for h in 0..n_heads {
        for i in 0..hd / 2 {
            for j in 0..2 {
                let dst = h * hd + 2 * i + j;
                let src = h * hd + j * (hd / 2) + i;
                out[dst * rb..(dst + 1) * rb].copy_from_slice(&data[src * rb..(src + 1) * rb]);
            }
        }
    }
    out
}

/// Picks one of the tensors outside the layers.
pub type GlobalPick = fn(&ModelOptions) -> Option<TensorSlot>;

/// GGUF's names of the tensors outside the layers beside our slot for each.
pub const GLOBAL_NAMES: [(&str, GlobalPick); 6] = [
    ("token_embd.weight", |o| Some(o.tok_emb())),
    ("position_embd.weight", |o| o.pos_emb()),
    ("output_norm.bias", |o| o.out_norm().bias),
    ("rope_freqs.weight", |o| o.rope_freqs()),
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

/// Maps a parsed GGUF of one of the [`ARCHITECTURES`] onto options, tokenizer and
/// canonical tensors.
pub fn to_model(g: &Gguf<'_>, file: &str) -> Result<ImportedModel, ImportError> {
    let get = |k: &str| g.meta.get(k);
    let arch = get("general.architecture")
        .and_then(|v| v.as_str())
        .ok_or_else(|| ImportError::malformed(file, "missing string key 'general.architecture'"))?;
    let Some(&(_, neox)) = ARCHITECTURES.iter().find(|a| a.0 == arch) else {
        let names: Vec<&str> = ARCHITECTURES.iter().map(|a| a.0).collect();
        return Err(ImportError::unsupported(
            file,
            format!("architecture '{arch}' (supported: {})", names.join(", ")),
        ));
    };
    let key = |k: &str| format!("{arch}.{k}");
    let req = |k: &str| -> Result<usize, ImportError> {
        let k = key(k);
        let v =
            get(&k).ok_or_else(|| ImportError::malformed(file, format!("missing key '{k}'")))?;
        v.as_u64()
            .and_then(|x| usize::try_from(x).ok())
            .ok_or_else(|| {
                ImportError::malformed(
                    file,
                    format!("key '{k}' should be a non-negative integer, found {v:?}"),
                )
            })
    };
    let opt = |k: &str| -> Result<Option<usize>, ImportError> {
        match get(&key(k)) {
            None => Ok(None),
            Some(_) => req(k).map(Some),
        }
    };
    let opt_f32 = |k: &str, default: f32| -> Result<f32, ImportError> {
        let k = key(k);
        match get(&k) {
            None => Ok(default),
            Some(v) => v.as_f32().ok_or_else(|| {
                ImportError::malformed(file, format!("key '{k}' should be a float, found {v:?}"))
            }),
        }
    };
    let has = |name: &str| g.tensors.iter().any(|t| t.name == name);
    // GPT-2: learned positions, LayerNorm, GELU and biases everywhere.
    let gpt2 = arch == "gpt2";
    let n_heads = req("attention.head_count")?;
    let n_kv_heads = opt("attention.head_count_kv")?.unwrap_or(n_heads);
    let emb = g
        .tensors
        .iter()
        .find(|t| t.name == "token_embd.weight")
        .ok_or_else(|| ImportError::malformed(file, "missing tensor 'token_embd.weight'"))?;
    let vocab_size = emb.shape.first().copied().unwrap_or(0);
    let d_model = req("embedding_length")?;
    // The head width: `attention.key_length` when it is not d_model / n_heads (Qwen 3).
    let head_dim = match (opt("attention.key_length")?, opt("attention.value_length")?) {
        (Some(k), Some(v)) if k != v => {
            return Err(ImportError::unsupported(
                file,
                format!("attention.key_length {k} differs from attention.value_length {v}"),
            ))
        }
        (Some(k), _) if n_heads == 0 || k * n_heads != d_model => Some(k),
        _ => None,
    };
    let mut opts = ModelOptions {
        vocab_size,
        d_model,
        n_layers: req("block_count")?,
        n_heads,
        n_kv_heads,
        d_ff: req("feed_forward_length")?,
        max_len: req("context_length")?,
        positions: if gpt2 {
            Positions::Learned
        } else {
            Positions::Rope
        },
        norm: if gpt2 { Norm::LayerNorm } else { Norm::RmsNorm },
        mlp: if gpt2 { Mlp::Gelu } else { Mlp::SwiGlu },
        bias: gpt2,
        tied_embeddings: !has("output.weight"),
        norm_eps: if gpt2 {
            opt_f32("attention.layer_norm_epsilon", 1e-5)?
        } else {
            opt_f32("attention.layer_norm_rms_epsilon", 1e-5)?
        },
        rope_base: opt_f32("rope.freq_base", 10000.0)?,
        arch: ArchOptions {
            head_dim,
            qkv_bias: has("blk.0.attn_q.bias"),
            qk_norm: has("blk.0.attn_q_norm.weight"),
            rope_freq_factors: has("rope_freqs.weight"),
            post_norms: has("blk.0.attn_post_norm.weight"),
            ..Default::default()
        },
    };
    if arch == "gemma3" {
        gemma3(&mut opts, g, file)?;
    }
    // RoPE scaling as llama.cpp reads it: the type defaults to `linear`, its factor is
    // `rope.scaling.factor` (or the older `rope.scale_linear`), 0 or 1 meaning none;
    // `none` never scales. Llama 3's scaling comes as the `rope_freqs` tensor instead.
    let scaling = match get(&key("rope.scaling.type")) {
        None => "linear",
        Some(v) => v.as_str().ok_or_else(|| {
            ImportError::malformed(
                file,
                format!("key '{arch}.rope.scaling.type' should be a string, found {v:?}"),
            )
        })?,
    };
    match scaling {
        "none" => {}
        "linear" if !gpt2 => {
            let factor = match get(&key("rope.scaling.factor")) {
                Some(_) => opt_f32("rope.scaling.factor", 0.0)?,
                None => opt_f32("rope.scale_linear", 0.0)?,
            };
            if factor != 0.0 && factor != 1.0 {
                opts.arch.rope_scale = Some(factor);
            }
        }
        "linear" => {}
        v => {
            return Err(ImportError::unsupported(
                file,
                format!(
                    "{arch}.rope.scaling.type '{v}' (supported: none, linear, or llama3's \
                     rope_freqs)"
                ),
            ))
        }
    }
    opts.validate()
        .map_err(|e| ImportError::malformed(file, format!("model options: {e}")))?;
    if let Some(rd) = opt("rope.dimension_count")? {
        if rd != opts.head_dim() {
            return Err(ImportError::unsupported(
                file,
                format!(
                    "partial rotary: rope.dimension_count {rd}, head_dim {}",
                    opts.head_dim()
                ),
            ));
        }
    }
    if let Some(t) = g
        .tensors
        .iter()
        .find(|t| t.name.starts_with("rope_factors_"))
    {
        return Err(ImportError::unsupported(
            file,
            format!("tensor '{}': LongRoPE scaling", t.name),
        ));
    }
    // Fused tensors (Phi-3's attn_qkv and gate+up ffn_up) become their parts.
    let mut pieces: Vec<Piece<'_>> = Vec::with_capacity(g.tensors.len());
    for t in &g.tensors {
        split_fused(&opts, t, file, &mut pieces)?;
    }
    let mut tensors = Vec::with_capacity(pieces.len());
    for t in &pieces {
        let t = GgufTensor {
            name: &t.name,
            shape: t.shape.clone(),
            dtype: t.dtype,
            data: t.data,
        };
        let Some(name) = canonical(&opts, t.name) else {
            return Err(ImportError::unsupported(
                file,
                format!("tensor '{}' has no place in the {arch} layout", t.name),
            ));
        };
        // NEOX RoPE: q/k rows (weights, biases, per-head norm weights) to adjacent pairs.
        let tail = t.name.split_once('.').map_or("", |(_, r)| r);
        let tail = tail.split_once('.').map_or("", |(_, r)| r);
        let heads = match tail {
            "attn_q.weight" | "attn_q.bias" => Some(opts.n_heads),
            "attn_k.weight" | "attn_k.bias" => Some(opts.n_kv_heads),
            "attn_q_norm.weight" | "attn_k_norm.weight" => Some(1),
            _ => None,
        };
        let data = match heads {
            Some(h) if neox && t.name.starts_with("blk.") => {
                let rows = t.shape.first().copied().unwrap_or(1);
                if rows % (2 * h) != 0 || (t.shape.len() == 1 && t.dtype.block_len() != 1) {
                    return Err(ImportError::malformed(
                        file,
                        format!(
                            "tensor '{}' cannot be split into {h} heads of pairs",
                            t.name
                        ),
                    ));
                }
                unpermute_bytes(t.data, rows, h)
            }
            _ => t.data.to_vec(),
        };
        tensors.push(RawTensor {
            name,
            dtype: t.dtype,
            shape: t.shape.clone(),
            data,
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

/// A tensor of the file, or a row range of a fused one, under its GGUF name.
struct Piece<'a> {
    name: String,
    shape: Vec<usize>,
    dtype: DType,
    data: &'a [u8],
}

/// Pushes `t` onto `out`, split into its parts when it is fused: `attn_qkv.weight`
/// `[q_dim + 2·kv_dim, d]` (and its bias) into `attn_q`, `attn_k`, `attn_v` (Phi-3,
/// GPT-2), and an `ffn_up.weight`
/// of `2·d_ff` rows into `ffn_gate` (the first half, as ggml's `swiglu` reads it) and
/// `ffn_up` (Phi-3). Rows are whole blocks, so the parts are byte ranges.
fn split_fused<'a>(
    o: &ModelOptions,
    t: &GgufTensor<'a>,
    file: &str,
    out: &mut Vec<Piece<'a>>,
) -> Result<(), ImportError> {
    let whole = |out: &mut Vec<Piece<'a>>| {
        out.push(Piece {
            name: t.name.to_string(),
            shape: t.shape.clone(),
            dtype: t.dtype,
            data: t.data,
        })
    };
    let Some((stem, tail)) = t
        .name
        .strip_prefix("blk.")
        .and_then(|r| r.split_once('.'))
        .map(|(l, tail)| (format!("blk.{l}"), tail))
    else {
        whole(out);
        return Ok(());
    };
    let qkv_rows = o.q_dim() + 2 * o.kv_dim();
    let parts: Vec<(&str, usize)> = match (tail, t.shape.as_slice()) {
        ("attn_qkv.weight", [rows, _]) if *rows == qkv_rows => vec![
            ("attn_q.weight", o.q_dim()),
            ("attn_k.weight", o.kv_dim()),
            ("attn_v.weight", o.kv_dim()),
        ],
        ("attn_qkv.bias", [rows]) if *rows == qkv_rows && t.dtype.block_len() == 1 => vec![
            ("attn_q.bias", o.q_dim()),
            ("attn_k.bias", o.kv_dim()),
            ("attn_v.bias", o.kv_dim()),
        ],
        ("attn_qkv.weight" | "attn_qkv.bias", [rows, ..]) => {
            return Err(ImportError::malformed(
                file,
                format!(
                    "tensor '{}' has {rows} rows, expected q {} + 2 × kv {}",
                    t.name,
                    o.q_dim(),
                    o.kv_dim()
                ),
            ))
        }
        ("ffn_up.weight", [rows, _]) if *rows == 2 * o.d_ff => {
            vec![("ffn_gate.weight", o.d_ff), ("ffn_up.weight", o.d_ff)]
        }
        _ => {
            whole(out);
            return Ok(());
        }
    };
    let rb = t.data.len() / t.shape[0];
    let mut row = 0;
    for (name, rows) in parts {
        let mut shape = t.shape.clone();
        shape[0] = rows;
        out.push(Piece {
            name: format!("{stem}.{name}"),
            shape,
            dtype: t.dtype,
            data: &t.data[row * rb..(row + rows) * rb],
        });
        row += rows;
    }
    Ok(())
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
        // llama.cpp adds BOS for Gemma 4 whatever the file says.
        "gemma4" => (
            TokenizerKind::RawBpe,
            Vec::new(),
            strs("tokenizer.ggml.merges")?,
            true,
        ),
        // llama.cpp's WPM always adds [CLS] … [SEP] with `add_special`.
        "bert" => (TokenizerKind::Wpm, Vec::new(), Vec::new(), true),
        m => {
            return Err(ImportError::unsupported(
                file,
                format!(
                    "tokenizer.ggml.model '{m}' (expected 'llama', 'gpt2', 'gemma4' or 'bert')"
                ),
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
    let flag = |k: &str| -> Result<Option<bool>, ImportError> {
        get(k)
            .map(|v| {
                v.as_bool().ok_or_else(|| {
                    ImportError::malformed(file, format!("key '{k}' should be a bool"))
                })
            })
            .transpose()
    };
    // llama.cpp: a BPE vocabulary without `tokenizer.ggml.pre` uses its 'default'
    // pre-tokenizer; an unknown one is an error.
    let pre = match kind {
        TokenizerKind::Gpt2 => {
            let name = match get("tokenizer.ggml.pre") {
                None => "default",
                Some(v) => v.as_str().ok_or_else(|| {
                    ImportError::malformed(file, "key 'tokenizer.ggml.pre' should be a string")
                })?,
            };
            let spec = llmrt::tokenizer::pre_tokenizer(name).ok_or_else(|| {
                let why = llmrt::tokenizer::UNSUPPORTED
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map_or("unknown to llama.cpp", |(_, why)| why);
                ImportError::unsupported(file, format!("pre-tokenizer '{name}' ({why})"))
            })?;
            Some((name.to_string(), spec.add_bos))
        }
        _ => None,
    };
    let default_bos = default_bos || pre.as_ref().is_some_and(|p| p.1);
    let types = match get("tokenizer.ggml.token_type") {
        None => Vec::new(),
        Some(v) => v
            .as_array()
            .ok_or_else(|| {
                ImportError::malformed(file, "key 'tokenizer.ggml.token_type' must be an array")
            })?
            .iter()
            .map(|t| match t.as_i64() {
                Some(t) if (0..=6).contains(&t) => Ok(t as u8),
                _ => Err(ImportError::malformed(
                    file,
                    "key 'tokenizer.ggml.token_type' must hold types 0..=6",
                )),
            })
            .collect::<Result<Vec<u8>, _>>()?,
    };
    if !types.is_empty() && types.len() != tokens.len() {
        return Err(ImportError::malformed(
            file,
            format!("{} tokens but {} token types", tokens.len(), types.len()),
        ));
    }
    let wpm = kind == TokenizerKind::Wpm;
    // WPM, as llama.cpp's `bert` vocabulary: BOS is [CLS] (101), the text ends with [SEP]
    // (102, stored as EOS), [UNK] is 100 and [PAD] 0, unless the file names others.
    let n = tokens.len() as u32;
    let wpm_default = |v: u32| (wpm && v < n).then_some(v);
    let or_default = |k: &str, v: u32| -> Result<Option<u32>, ImportError> {
        Ok(match get(k) {
            None => wpm_default(v),
            Some(_) => id(k)?,
        })
    };
    let (bos, eos) = if wpm {
        (
            or_default("tokenizer.ggml.bos_token_id", 101)?,
            or_default("tokenizer.ggml.seperator_token_id", 102)?,
        )
    } else {
        (
            id("tokenizer.ggml.bos_token_id")?,
            id("tokenizer.ggml.eos_token_id")?,
        )
    };
    // llama.cpp's BertNormalizer options: lowercase unless the file says not, accents
    // stripped as lowercase says unless the file says.
    let lowercase = wpm && flag("tokenizer.ggml.normalizer.lowercase")?.unwrap_or(true);
    let strip_accents =
        wpm && flag("tokenizer.ggml.normalizer.strip_accents")?.unwrap_or(lowercase);
    Ok(TokenizerSpec {
        kind,
        tokens,
        scores,
        merges,
        bos,
        eos,
        unk: or_default("tokenizer.ggml.unknown_token_id", 100)?,
        pad: or_default("tokenizer.ggml.padding_token_id", 0)?,
        add_bos: flag("tokenizer.ggml.add_bos_token")?.unwrap_or(default_bos)
            || kind == TokenizerKind::RawBpe
            || wpm,
        add_eos: flag("tokenizer.ggml.add_eos_token")?.unwrap_or(false) || wpm,
        token_types: types,
        pre: pre.map(|p| Cow::Owned(p.0)),
        // Only SentencePiece reads it (Gemma 4's raw BPE never prefixes).
        add_space_prefix: kind != TokenizerKind::SentencePiece
            || flag("tokenizer.ggml.add_space_prefix")?.unwrap_or(true),
        lowercase,
        strip_accents,
    })
}
