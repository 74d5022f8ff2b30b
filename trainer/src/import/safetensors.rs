//! Hugging Face model directories: `config.json`, `model.safetensors`,
//! `tokenizer.json` (or shards named by `model.safetensors.index.json`), for the
//! model types of [`MODEL_TYPES`].
//!
//! * GPT-2 (`wte`, `wpe`, `h.N.{ln_1, attn.c_attn, attn.c_proj, ln_2, mlp.c_fc,
//!   mlp.c_proj}`, `ln_f`, with or without a `transformer.` prefix): the attention
//!   and MLP weights are `Conv1D`, stored `[in, out]`, so each is transposed to our
//!   `[out, in]`; `c_attn` (`[C, 3C]`) becomes q, k, v (rows `0..C`, `C..2C`, `2C..3C`
//!   of the transpose). GPT-2 ties its output to `wte`; an `lm_head.weight` that differs
//!   from `wte` is kept as a separate output.
//! * LLaMA (`model.embed_tokens`, `model.layers.N.{input_layernorm, self_attn.{q,k,v,o}_proj,
//!   post_attention_layernorm, mlp.{gate,up,down}_proj}`, `model.norm`, `lm_head`): linear
//!   weights are already `[out, in]`. HF stores q and k permuted for rotate-half RoPE;
//!   [`unpermute_rows`] is the inverse (llama.cpp's converter's `permute`) and gives back
//!   the adjacent-pair order.
//! * Qwen 2 (the same names, plus `self_attn.{q,k,v}_proj.bias`) and Qwen 3 (plus
//!   `self_attn.{q,k}_norm.weight [head_dim]` and `head_dim` in the config): the q/k
//!   biases and norm weights are unpermuted as the q/k rows are. A `llama3`
//!   `rope_scaling` becomes the `rope_freqs` factors ([`llama3_rope_factors`]), a
//!   `linear` one `rope_scale` (Gemma 3: on the global layers).
//!
//! Weights may be F32, F16 or BF16; all are widened to f32 exactly (`--dtype` narrows).
//!
//! Tokenizer: the BPE model of `tokenizer.json` (vocab + merges + added tokens).
//! GPT-2 → kind `gpt2` with the merges, tokens already in bytes-to-unicode form, EOS =
//! `<|endoftext|>`, no BOS. LLaMA → kind `sentencepiece`; its byte-fallback BPE has
//! merges but no scores, so the score of a token is minus the rank of the first merge
//! that creates it (the merge order is exactly the priority HF's BPE uses); tokens no
//! merge creates (single characters, `<0xXX>` bytes, specials) get `-(n_merges + 1)`,
//! below every merge. BOS `<s>`, EOS `</s>`, UNK `<unk>`, add_bos. If the model's
//! `vocab_size` is larger than the tokenizer's (padded embeddings), the extra ids get
//! placeholder pieces `<pad_N>` that no text encodes to.

use super::{file_name, map_file, read_file, slot_name, ImportError, ImportedModel, RawTensor};
use ::safetensors::{Dtype, SafeTensors};
use half::{bf16, f16};
use llm_format::options::TensorSlot;
use llm_format::{
    token_type, ArchOptions, Mlp, ModelOptions, Norm, Positions, TokenizerKind, TokenizerSpec,
};
use serde_json::Value as Json;
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

/// Reads a Hugging Face directory `dir`; `tokenizer` overrides `dir/tokenizer.json`.
pub fn import(dir: &Path, tokenizer: Option<&Path>) -> Result<ImportedModel, ImportError> {
    let cfg_path = dir.join("config.json");
    let tok_path = tokenizer
        .map(Path::to_path_buf)
        .unwrap_or_else(|| dir.join("tokenizer.json"));
    let cfg_name = cfg_path.display().to_string();
    let cfg: Json = serde_json::from_slice(&read_file(&cfg_path)?)
        .map_err(|e| ImportError::malformed(&cfg_name, format!("invalid JSON: {e}")))?;
    let tok_name = tok_path.display().to_string();
    let tok_json: Json = serde_json::from_slice(&read_file(&tok_path)?)
        .map_err(|e| ImportError::malformed(&tok_name, format!("invalid JSON: {e}")))?;
    let files = shard_files(dir)?;
    let mut buffers = Vec::with_capacity(files.len());
    for f in &files {
        buffers.push(map_file(&dir.join(f))?);
    }
    let mut shards = Vec::with_capacity(files.len());
    for (f, b) in files.iter().zip(&buffers) {
        let name = dir.join(f).display().to_string();
        let st = SafeTensors::deserialize(b.bytes())
            .map_err(|e| ImportError::malformed(&name, format!("{e}")))?;
        shards.push((name, st));
    }
    let model_type = cfg.get("model_type").and_then(Json::as_str).unwrap_or("");
    let w = Weights {
        shards: &shards,
        dir: dir.display().to_string(),
    };
    let (opts, tensors) = match model_type {
        "gpt2" => gpt2(&cfg, &cfg_name, &w)?,
        "llama" => llama_like(&cfg, &cfg_name, &w, Family::Llama)?,
        "qwen2" => llama_like(&cfg, &cfg_name, &w, Family::Qwen2)?,
        "qwen3" => llama_like(&cfg, &cfg_name, &w, Family::Qwen3)?,
        "phi3" => llama_like(&cfg, &cfg_name, &w, Family::Phi3)?,
        "gemma3_text" => llama_like(&cfg, &cfg_name, &w, Family::Gemma3)?,
        other => {
            return Err(ImportError::unsupported(
                cfg_name,
                format!(
                    "model_type '{other}' (supported: {})",
                    MODEL_TYPES.join(", ")
                ),
            ))
        }
    };
    // Qwen's tokenizers are byte-level BPE, as GPT-2's.
    let kind = if matches!(model_type, "gpt2" | "qwen2" | "qwen3") {
        TokenizerKind::Gpt2
    } else {
        TokenizerKind::SentencePiece
    };
    let mut tok = parse_tokenizer(&tok_json, kind, opts.vocab_size, &tok_name)?;
    super::hf_tokenizer::apply_config(dir, &mut tok)?;
    let source = format!("safetensors:{}", file_name(dir));
    let mut m = ImportedModel::finish(opts, tok, tensors, source)?;
    m.chat_template = chat_template(dir)?;
    Ok(m)
}

/// The chat template of a Hugging Face folder, as `transformers` finds it:
/// `chat_template.jinja` when present, else `tokenizer_config.json`'s `chat_template`,
/// a string or a list of `{name, template}` of which the one named `default` is taken.
/// `None` when the folder has neither.
pub fn chat_template(dir: &Path) -> Result<Option<String>, ImportError> {
    let jinja = dir.join("chat_template.jinja");
    if jinja.exists() {
        let name = jinja.display().to_string();
        let text = String::from_utf8(read_file(&jinja)?)
            .map_err(|_| ImportError::malformed(&name, "not UTF-8"))?;
        return Ok(Some(text));
    }
    let cfg = dir.join("tokenizer_config.json");
    if !cfg.exists() {
        return Ok(None);
    }
    let name = cfg.display().to_string();
    let j: Json = serde_json::from_slice(&read_file(&cfg)?)
        .map_err(|e| ImportError::malformed(&name, format!("invalid JSON: {e}")))?;
    chat_template_from_config(&j, &name)
}

/// The `chat_template` entry of a parsed `tokenizer_config.json` (see [`chat_template`]).
pub fn chat_template_from_config(j: &Json, file: &str) -> Result<Option<String>, ImportError> {
    match j.get("chat_template") {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => Ok(Some(s.clone())),
        Some(Json::Array(list)) => {
            let mut names = Vec::new();
            for t in list {
                let (Some(n), Some(text)) = (
                    t.get("name").and_then(Json::as_str),
                    t.get("template").and_then(Json::as_str),
                ) else {
                    return Err(ImportError::malformed(
                        file,
                        "'chat_template' list entries should be {\"name\": ..., \"template\": ...}",
                    ));
                };
                if n == "default" {
                    return Ok(Some(text.to_string()));
                }
                names.push(n);
            }
            Err(ImportError::unsupported(
                file,
                format!(
                    "'chat_template' names no 'default' template (it has: {})",
                    names.join(", ")
                ),
            ))
        }
        Some(other) => Err(ImportError::malformed(
            file,
            format!(
                "'chat_template' should be a string or a list, found {}",
                match other {
                    Json::Bool(_) => "a bool",
                    Json::Number(_) => "a number",
                    _ => "an object",
                }
            ),
        )),
    }
}

/// The safetensors files of `dir`: `model.safetensors`, or the shards named by
/// `model.safetensors.index.json`'s `weight_map` (each once, in first-use order).
fn shard_files(dir: &Path) -> Result<Vec<String>, ImportError> {
    if dir.join("model.safetensors").exists() {
        return Ok(vec!["model.safetensors".into()]);
    }
    let idx = dir.join("model.safetensors.index.json");
    if !idx.exists() {
        return Err(ImportError::Io {
            path: dir.join("model.safetensors").display().to_string(),
            msg: "not found (nor model.safetensors.index.json)".into(),
        });
    }
    let name = idx.display().to_string();
    let j: Json = serde_json::from_slice(&read_file(&idx)?)
        .map_err(|e| ImportError::malformed(&name, format!("invalid JSON: {e}")))?;
    let map = j
        .get("weight_map")
        .and_then(Json::as_object)
        .ok_or_else(|| ImportError::malformed(&name, "missing object 'weight_map'"))?;
    let mut files: Vec<String> = Vec::new();
    for v in map.values() {
        let f = v
            .as_str()
            .filter(|f| !f.contains('/') && !f.contains('\\') && *f != "..")
            .ok_or_else(|| ImportError::malformed(&name, format!("bad shard file name {v}")))?;
        if !files.iter().any(|x| x == f) {
            files.push(f.to_string());
        }
    }
    Ok(files)
}

/// Typed access to the tensors of one model's safetensors files.
struct Weights<'a, 'b> {
    /// (path, parsed file) per shard.
    shards: &'a [(String, SafeTensors<'b>)],
    /// The model directory, for errors about missing tensors.
    dir: String,
}

impl<'b> Weights<'_, 'b> {
    /// The shard holding `name` and its view.
    fn find(&self, name: &str) -> Option<(&str, ::safetensors::tensor::TensorView<'b>)> {
        self.shards
            .iter()
            .find_map(|(f, st)| st.tensor(name).ok().map(|t| (f.as_str(), t)))
    }

    fn has(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    /// Tensor `name` widened to f32; its shape must be `shape`.
    fn f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, ImportError> {
        let (file, t) = self
            .find(name)
            .ok_or_else(|| ImportError::malformed(&self.dir, format!("missing tensor '{name}'")))?;
        if t.shape() != shape {
            return Err(ImportError::malformed(
                file,
                format!(
                    "tensor '{name}' has shape {:?}, expected {shape:?}",
                    t.shape()
                ),
            ));
        }
        let n: usize = shape.iter().product();
        let data = t.data();
        let esz = match t.dtype() {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::BF16 => 2,
            d => {
                return Err(ImportError::unsupported(
                    file,
                    format!("tensor '{name}' has dtype {d:?} (expected F32, F16 or BF16)"),
                ))
            }
        };
        if data.len() != n * esz {
            return Err(ImportError::malformed(
                file,
                format!(
                    "tensor '{name}' has {} bytes, expected {}",
                    data.len(),
                    n * esz
                ),
            ));
        }
        Ok(match t.dtype() {
            Dtype::F32 => super::cursor::f32s_from_le(data),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            _ => data
                .chunks_exact(2)
                .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
        })
    }
}

/// `w` of shape `[rows, cols]` → its transpose `[cols, rows]`.
pub fn transpose(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; w.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = w[r * cols + c];
        }
    }
    out
}

/// Undoes HF's rotate-half permutation of a q or k projection `[n_heads·hd, cols]`:
/// within each head, row `2i + j` of the result is HF row `j·hd/2 + i` (`i < hd/2`,
/// `j ∈ {0, 1}`), so the rotate-half pair `(i, i + hd/2)` becomes the adjacent pair
/// `(2i, 2i+1)`. This is llama.cpp's `permute(w, n_head, n_head_kv)`.
pub fn unpermute_rows(w: &[f32], n_heads: usize, cols: usize) -> Vec<f32> {
    let rows = w.len() / cols;
    let hd = rows / n_heads;
    let mut out = vec![0.0f32; w.len()];
    for h in 0..n_heads {
        for i in 0..hd / 2 {
            for j in 0..2 {
                let dst = h * hd + 2 * i + j;
                let src = h * hd + j * (hd / 2) + i;
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&w[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

fn cfg_usize(cfg: &Json, keys: &[&str], file: &str) -> Result<usize, ImportError> {
    for k in keys {
        if let Some(v) = cfg.get(*k).filter(|v| !v.is_null()) {
            return v
                .as_u64()
                .and_then(|x| usize::try_from(x).ok())
                .ok_or_else(|| {
                    ImportError::malformed(
                        file,
                        format!("'{k}' should be a non-negative integer, found {v}"),
                    )
                });
        }
    }
    Err(ImportError::malformed(
        file,
        format!("missing key '{}'", keys.join("' or '")),
    ))
}

fn cfg_f32(cfg: &Json, key: &str, default: f32, file: &str) -> Result<f32, ImportError> {
    match cfg.get(key).filter(|v| !v.is_null()) {
        None => Ok(default),
        Some(v) => v.as_f64().map(|x| x as f32).ok_or_else(|| {
            ImportError::malformed(file, format!("'{key}' should be a number, found {v}"))
        }),
    }
}

fn gpt2(
    cfg: &Json,
    cf: &str,
    w: &Weights<'_, '_>,
) -> Result<(ModelOptions, Vec<RawTensor>), ImportError> {
    let c = cfg_usize(cfg, &["n_embd"], cf)?;
    let act = cfg
        .get("activation_function")
        .and_then(Json::as_str)
        .unwrap_or("gelu_new");
    if !matches!(act, "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast") {
        return Err(ImportError::unsupported(
            cf,
            format!("activation_function '{act}' (the runtime's GELU is the tanh approximation: gelu_new)"),
        ));
    }
    let mut opts = ModelOptions {
        vocab_size: cfg_usize(cfg, &["vocab_size"], cf)?,
        d_model: c,
        n_layers: cfg_usize(cfg, &["n_layer"], cf)?,
        n_heads: cfg_usize(cfg, &["n_head"], cf)?,
        n_kv_heads: 0,
        d_ff: match cfg.get("n_inner").filter(|v| !v.is_null()) {
            None => c.saturating_mul(4),
            Some(_) => cfg_usize(cfg, &["n_inner"], cf)?,
        },
        max_len: cfg_usize(cfg, &["n_positions", "n_ctx"], cf)?,
        positions: Positions::Learned,
        norm: Norm::LayerNorm,
        mlp: Mlp::Gelu,
        bias: true,
        tied_embeddings: true,
        norm_eps: cfg_f32(cfg, "layer_norm_epsilon", 1e-5, cf)?,
        rope_base: 10000.0,
        arch: Default::default(),
    };
    opts.n_kv_heads = opts.n_heads;
    opts.validate()
        .map_err(|e| ImportError::malformed(cf, format!("model options: {e}")))?;
    let (v, f, l, t_max) = (opts.vocab_size, opts.d_ff, opts.n_layers, opts.max_len);
    let p = if w.has("transformer.wte.weight") {
        "transformer."
    } else {
        ""
    };
    let mut t = Vec::new();
    let wte = w.f32(&format!("{p}wte.weight"), &[v, c])?;
    t.push(RawTensor::f32(opts.tok_emb().name, vec![v, c], &wte));
    let wpe = w.f32(&format!("{p}wpe.weight"), &[t_max, c])?;
    let pos_emb = slot_name(opts.pos_emb().as_ref(), cf, "wpe")?;
    t.push(RawTensor::f32(pos_emb, vec![t_max, c], &wpe));
    let vec1 =
        |src: &str, dst: String, n: usize, t: &mut Vec<RawTensor>| -> Result<(), ImportError> {
            let x = w.f32(src, &[n])?;
            t.push(RawTensor::f32(dst, vec![n], &x));
            Ok(())
        };
    // A Conv1D weight [in, out] → our [out, in].
    let conv = |src: &str,
                dst: String,
                i: usize,
                o: usize,
                t: &mut Vec<RawTensor>|
     -> Result<(), ImportError> {
        let x = w.f32(src, &[i, o])?;
        t.push(RawTensor::f32(dst, vec![o, i], &transpose(&x, i, o)));
        Ok(())
    };
    // Biases: GPT-2's options have them on every linear layer and norm.
    let bias = |b: &Option<TensorSlot>, src: &str| slot_name(b.as_ref(), cf, src);
    for n in 0..l {
        let (s, b) = (format!("{p}h.{n}"), opts.layer(n));
        let src = format!("{s}.ln_1.weight");
        vec1(&src, b.attn_norm.weight.name.clone(), c, &mut t)?;
        let src = format!("{s}.ln_1.bias");
        vec1(&src, bias(&b.attn_norm.bias, &src)?, c, &mut t)?;
        // c_attn: [C, 3C] → transpose [3C, C] = [q; k; v].
        let qkv = transpose(
            &w.f32(&format!("{s}.attn.c_attn.weight"), &[c, 3 * c])?,
            c,
            3 * c,
        );
        let src = format!("{s}.attn.c_attn.bias");
        let qkv_b = w.f32(&src, &[3 * c])?;
        for (j, lin) in [&b.attn_q, &b.attn_k, &b.attn_v].into_iter().enumerate() {
            t.push(RawTensor::f32(
                lin.weight.name.clone(),
                vec![c, c],
                &qkv[j * c * c..(j + 1) * c * c],
            ));
            t.push(RawTensor::f32(
                bias(&lin.bias, &src)?,
                vec![c],
                &qkv_b[j * c..(j + 1) * c],
            ));
        }
        let src = format!("{s}.attn.c_proj.weight");
        conv(&src, b.attn_out.weight.name.clone(), c, c, &mut t)?;
        let src = format!("{s}.attn.c_proj.bias");
        vec1(&src, bias(&b.attn_out.bias, &src)?, c, &mut t)?;
        let src = format!("{s}.ln_2.weight");
        vec1(&src, b.mlp_norm.weight.name.clone(), c, &mut t)?;
        let src = format!("{s}.ln_2.bias");
        vec1(&src, bias(&b.mlp_norm.bias, &src)?, c, &mut t)?;
        let src = format!("{s}.mlp.c_fc.weight");
        conv(&src, b.mlp_up.weight.name.clone(), c, f, &mut t)?;
        let src = format!("{s}.mlp.c_fc.bias");
        vec1(&src, bias(&b.mlp_up.bias, &src)?, f, &mut t)?;
        let src = format!("{s}.mlp.c_proj.weight");
        conv(&src, b.mlp_down.weight.name.clone(), f, c, &mut t)?;
        let src = format!("{s}.mlp.c_proj.bias");
        vec1(&src, bias(&b.mlp_down.bias, &src)?, c, &mut t)?;
    }
    let out_norm = opts.out_norm();
    let src = format!("{p}ln_f.weight");
    vec1(&src, out_norm.weight.name.clone(), c, &mut t)?;
    let src = format!("{p}ln_f.bias");
    vec1(&src, bias(&out_norm.bias, &src)?, c, &mut t)?;
    if w.has("lm_head.weight") {
        let head = w.f32("lm_head.weight", &[v, c])?;
        if head != wte {
            opts.tied_embeddings = false;
            let output = slot_name(opts.output().as_ref(), cf, "lm_head.weight")?;
            t.push(RawTensor::f32(output, vec![v, c], &head));
        }
    }
    Ok((opts, t))
}

/// The model types of the llama family that [`llama_like`] reads, and what each adds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    /// `LlamaForCausalLM` (also SmolLM, Llama 3.x).
    Llama,
    /// `Qwen2ForCausalLM`: biases on q, k and v.
    Qwen2,
    /// `Qwen3ForCausalLM`: per-head RMSNorm of q and k, an explicit head width.
    Qwen3,
    /// `Phi3ForCausalLM`: q, k, v fused in `qkv_proj`, gate and up in `gate_up_proj`.
    Phi3,
    /// `Gemma3ForCausalLM` (`gemma3_text`): GeGLU, √d embedding scale, q/k norms,
    /// post norms, norm weights stored as `w` for `1 + w`, sliding-window layers.
    Gemma3,
}

/// Gemma 3's RoPE bases (global, sliding layers) and the linear scaling of the global
/// layers, from transformers 4's `rope_theta` / `rope_local_base_freq` /
/// `rope_scaling` or transformers 5's per-layer-type `rope_parameters`; other scaling
/// types, and any scaling of the sliding layers, are refused.
fn gemma3_rope(cfg: &Json, cf: &str) -> Result<(f32, f32, Option<f32>), ImportError> {
    let scale = |p: &Json, what: &str| -> Result<Option<f32>, ImportError> {
        match p
            .get("rope_type")
            .or_else(|| p.get("type"))
            .and_then(Json::as_str)
            .unwrap_or("default")
        {
            "default" => Ok(None),
            "linear" if what == "global" => linear_factor(p, cf).map(Some),
            t => Err(ImportError::unsupported(
                cf,
                format!(
                    "rope type '{t}' on Gemma 3's {what} layers (supported: default{})",
                    if what == "global" { ", linear" } else { "" }
                ),
            )),
        }
    };
    let params = cfg.get("rope_parameters").filter(|v| v.is_object());
    if let Some((full, sliding)) =
        params.and_then(|p| Some((p.get("full_attention")?, p.get("sliding_attention")?)))
    {
        let factor = scale(full, "global")?;
        scale(sliding, "sliding")?;
        return Ok((
            cfg_f32(full, "rope_theta", 1e6, cf)?,
            cfg_f32(sliding, "rope_theta", 10000.0, cf)?,
            factor,
        ));
    }
    let factor = match cfg.get("rope_scaling").filter(|v| !v.is_null()) {
        Some(p) => scale(p, "global")?,
        None => None,
    };
    Ok((
        cfg_f32(cfg, "rope_theta", 1e6, cf)?,
        cfg_f32(cfg, "rope_local_base_freq", 10000.0, cf)?,
        factor,
    ))
}

/// Gemma 3's sliding-window layers as (window, pattern): from `layer_types`
/// (`sliding_attention` / `full_attention`), which must follow one
/// [`llm_format::ArchOptions::sliding_window_pattern`], or `sliding_window_pattern`
/// (default 6).
fn gemma3_window(
    cfg: &Json,
    cf: &str,
    n_layers: usize,
) -> Result<Option<(usize, usize)>, ImportError> {
    let Some(window) = cfg.get("sliding_window").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let window = window
        .as_u64()
        .filter(|&w| w > 0)
        .ok_or_else(|| ImportError::malformed(cf, format!("'sliding_window' = {window}")))?
        as usize;
    let Some(types) = cfg.get("layer_types").and_then(Json::as_array) else {
        let p = match cfg.get("sliding_window_pattern").filter(|v| !v.is_null()) {
            None => 6,
            Some(_) => cfg_usize(cfg, &["sliding_window_pattern"], cf)?,
        };
        return Ok(Some((window, p)));
    };
    let sliding: Vec<bool> = types
        .iter()
        .map(|t| t.as_str() == Some("sliding_attention"))
        .collect();
    if sliding.len() != n_layers {
        return Err(ImportError::malformed(
            cf,
            format!(
                "layer_types has {} entries for {n_layers} layers",
                sliding.len()
            ),
        ));
    }
    (0..=n_layers + 1)
        .find(|&p| {
            sliding
                .iter()
                .enumerate()
                .all(|(l, &s)| s == (p == 0 || l % p != p - 1))
        })
        .map(|p| Some((window, p)))
        .ok_or_else(|| {
            ImportError::unsupported(cf, "layer_types that follow no every-N-th-global pattern")
        })
}

/// The `model_type`s this importer reads.
pub const MODEL_TYPES: [&str; 6] = ["gpt2", "llama", "qwen2", "qwen3", "phi3", "gemma3_text"];

/// Llama 3's RoPE frequency factors (`rope_scaling.rope_type == "llama3"`), one per
/// frequency `base^(−2i/head_dim)`: 1 for wavelengths below
/// `original / high_freq_factor`, `factor` above `original / low_freq_factor`, and
/// between them `1 / ((1 − s)/factor + s)` with `s = (original/λ − low) / (high − low)`
/// (Hugging Face's `_compute_llama3_parameters`, llama.cpp's `rope_freqs`).
pub fn llama3_rope_factors(
    head_dim: usize,
    base: f32,
    factor: f64,
    low: f64,
    high: f64,
    original: f64,
) -> Vec<f32> {
    let (low_wl, high_wl) = (original / low, original / high);
    (0..head_dim / 2)
        .map(|i| {
            let freq = 1.0 / (base as f64).powf((2 * i) as f64 / head_dim as f64);
            let wl = 2.0 * std::f64::consts::PI / freq;
            let f = if wl < high_wl {
                1.0
            } else if wl > low_wl {
                factor
            } else {
                let s = (original / wl - low) / (high - low);
                1.0 / ((1.0 - s) / factor + s)
            };
            f as f32
        })
        .collect()
}

/// A `llama3` `rope_scaling`: `factor`, `low_freq_factor`, `high_freq_factor`,
/// `original_max_position_embeddings`.
#[derive(Clone, Copy, Debug)]
struct Llama3Scaling {
    factor: f64,
    low: f64,
    high: f64,
    original: f64,
}

/// A `rope_scaling` the runtime runs.
#[derive(Clone, Copy, Debug)]
enum RopeScaling {
    /// `llama3`: per-frequency factors.
    Llama3(Llama3Scaling),
    /// `linear`: positions divided by `factor` ([`ArchOptions::rope_scale`]).
    Linear(f32),
}

/// `rope_scaling.factor` of a `linear` scaling: a finite number above 0.
fn linear_factor(p: &Json, cf: &str) -> Result<f32, ImportError> {
    match p.get("factor").and_then(Json::as_f64) {
        Some(f) if f.is_finite() && f > 0.0 => Ok(f as f32),
        _ => Err(ImportError::malformed(
            cf,
            format!(
                "rope_scaling of type linear needs a positive 'factor', found {}",
                p.get("factor").unwrap_or(&Json::Null)
            ),
        )),
    }
}

/// The RoPE settings of a llama-family config: `rope_theta` (top level, or in
/// transformers 5's `rope_parameters`) and a `llama3` or `linear` `rope_scaling`; any
/// other scaling type is refused.
fn rope_config(cfg: &Json, cf: &str) -> Result<(f32, Option<RopeScaling>), ImportError> {
    let params = ["rope_scaling", "rope_parameters"]
        .iter()
        .find_map(|k| cfg.get(*k).filter(|v| v.is_object()));
    let base = match params.filter(|p| p.get("rope_theta").is_some()) {
        Some(p) => cfg_f32(p, "rope_theta", 10000.0, cf)?,
        None => cfg_f32(cfg, "rope_theta", 10000.0, cf)?,
    };
    let Some(p) = params else {
        return Ok((base, None));
    };
    let ty = p
        .get("rope_type")
        .or_else(|| p.get("type"))
        .and_then(Json::as_str)
        .unwrap_or("default");
    match ty {
        "default" => Ok((base, None)),
        "llama3" => {
            let num = |k: &str, default: f64| -> Result<f64, ImportError> {
                match p.get(k).filter(|v| !v.is_null()) {
                    None => Ok(default),
                    Some(v) => v
                        .as_f64()
                        .filter(|x| x.is_finite() && *x > 0.0)
                        .ok_or_else(|| {
                            ImportError::malformed(
                                cf,
                                format!("rope_scaling.{k} should be a positive number, found {v}"),
                            )
                        }),
                }
            };
            let (low, high) = (num("low_freq_factor", 1.0)?, num("high_freq_factor", 4.0)?);
            if high <= low {
                return Err(ImportError::malformed(
                    cf,
                    format!(
                        "rope_scaling: high_freq_factor {high} is not above low_freq_factor {low}"
                    ),
                ));
            }
            let scaling = Llama3Scaling {
                factor: num("factor", 8.0)?,
                low,
                high,
                original: num("original_max_position_embeddings", 8192.0)?,
            };
            Ok((base, Some(RopeScaling::Llama3(scaling))))
        }
        "linear" => Ok((base, Some(RopeScaling::Linear(linear_factor(p, cf)?)))),
        other => Err(ImportError::unsupported(
            cf,
            format!("rope_scaling type '{other}' (supported: default, linear, llama3)"),
        )),
    }
}

/// LLaMA, Qwen 2 and Qwen 3 (see [`Family`]).
fn llama_like(
    cfg: &Json,
    cf: &str,
    w: &Weights<'_, '_>,
    family: Family,
) -> Result<(ModelOptions, Vec<RawTensor>), ImportError> {
    let flag = |k: &str| cfg.get(k).and_then(Json::as_bool) == Some(true);
    if family != Family::Qwen2 && flag("attention_bias") {
        return Err(ImportError::unsupported(
            cf,
            "attention_bias (biases on q, k, v and the output projection)",
        ));
    }
    if flag("mlp_bias") {
        return Err(ImportError::unsupported(cf, "mlp_bias"));
    }
    if let Some(p) = cfg.get("partial_rotary_factor").and_then(Json::as_f64) {
        if p != 1.0 {
            return Err(ImportError::unsupported(
                cf,
                format!("partial_rotary_factor {p} (RoPE on part of each head)"),
            ));
        }
    }
    if flag("use_sliding_window") {
        return Err(ImportError::unsupported(cf, "use_sliding_window"));
    }
    let gemma = family == Family::Gemma3;
    let (act_key, want_act) = if gemma {
        ("hidden_activation", "gelu_pytorch_tanh")
    } else {
        ("hidden_act", "silu")
    };
    let act = cfg
        .get(act_key)
        .or_else(|| cfg.get("hidden_act"))
        .and_then(Json::as_str)
        .unwrap_or(want_act);
    if act != want_act {
        return Err(ImportError::unsupported(
            cf,
            format!("{act_key} '{act}' (expected '{want_act}')"),
        ));
    }
    for k in ["final_logit_softcapping", "attn_logit_softcapping"] {
        if cfg.get(k).is_some_and(|v| !v.is_null()) {
            return Err(ImportError::unsupported(cf, k));
        }
    }
    let n_heads = cfg_usize(cfg, &["num_attention_heads"], cf)?;
    let d_model = cfg_usize(cfg, &["hidden_size"], cf)?;
    let head_dim = match cfg.get("head_dim").filter(|v| !v.is_null()) {
        None => None,
        Some(_) => Some(cfg_usize(cfg, &["head_dim"], cf)?)
            .filter(|&hd| n_heads == 0 || hd * n_heads != d_model),
    };
    let (rope_base, scaling, rope_local) = if gemma {
        let (global, local, factor) = gemma3_rope(cfg, cf)?;
        (global, factor.map(RopeScaling::Linear), Some(local))
    } else {
        let (b, s) = rope_config(cfg, cf)?;
        (b, s, None)
    };
    let n_layers = cfg_usize(cfg, &["num_hidden_layers"], cf)?;
    let window = if gemma {
        gemma3_window(cfg, cf, n_layers)?
    } else {
        None
    };
    let mut opts = ModelOptions {
        vocab_size: cfg_usize(cfg, &["vocab_size"], cf)?,
        d_model,
        n_layers,
        n_heads,
        n_kv_heads: match cfg.get("num_key_value_heads").filter(|v| !v.is_null()) {
            None => n_heads,
            Some(_) => cfg_usize(cfg, &["num_key_value_heads"], cf)?,
        },
        d_ff: cfg_usize(cfg, &["intermediate_size"], cf)?,
        max_len: cfg_usize(cfg, &["max_position_embeddings"], cf)?,
        positions: Positions::Rope,
        norm: Norm::RmsNorm,
        mlp: Mlp::SwiGlu,
        bias: false,
        tied_embeddings: cfg
            .get("tie_word_embeddings")
            .and_then(Json::as_bool)
            .unwrap_or(gemma),
        norm_eps: cfg_f32(cfg, "rms_norm_eps", 1e-6, cf)?,
        rope_base,
        arch: ArchOptions {
            head_dim,
            qkv_bias: family == Family::Qwen2,
            qk_norm: matches!(family, Family::Qwen3 | Family::Gemma3),
            rope_freq_factors: matches!(scaling, Some(RopeScaling::Llama3(_))),
            rope_scale: match scaling {
                Some(RopeScaling::Linear(f)) if f != 1.0 => Some(f),
                _ => None,
            },
            ..Default::default()
        },
    };
    if gemma {
        opts.mlp = Mlp::GeGlu;
        opts.arch.embed_scale = Some((d_model as f32).sqrt());
        opts.arch.post_norms = true;
        if let Some((w, p)) = window {
            opts.arch.sliding_window = Some(w);
            opts.arch.sliding_window_pattern = p;
            opts.arch.rope_base_local = rope_local;
        }
        let hd = opts.head_dim();
        if let Some(q) = cfg.get("query_pre_attn_scalar").and_then(Json::as_f64) {
            if q != hd as f64 {
                return Err(ImportError::unsupported(
                    cf,
                    format!("query_pre_attn_scalar {q} (the attention scale is 1/√head_dim, {hd})"),
                ));
            }
        }
    }
    // Gemma's RMSNorm multiplies by `1 + w`: the stored weight gets its 1 here.
    let shift = if gemma { 1.0 } else { 0.0 };
    opts.validate()
        .map_err(|e| ImportError::malformed(cf, format!("model options: {e}")))?;
    let (v, d, f, kv, qd) = (
        opts.vocab_size,
        opts.d_model,
        opts.d_ff,
        opts.kv_dim(),
        opts.q_dim(),
    );
    let hd = opts.head_dim();
    let mut t = Vec::new();
    if let (Some(slot), Some(RopeScaling::Llama3(sc))) = (opts.rope_freqs(), scaling) {
        let x = llama3_rope_factors(hd, rope_base, sc.factor, sc.low, sc.high, sc.original);
        t.push(RawTensor::f32(slot.name, slot.shape, &x));
    }
    let mut copy = |src: &str, dst: String, shape: Vec<usize>| -> Result<(), ImportError> {
        let x = w.f32(src, &shape)?;
        t.push(RawTensor::f32(dst, shape, &x));
        Ok(())
    };
    copy("model.embed_tokens.weight", opts.tok_emb().name, vec![v, d])?;
    if let Some(output) = opts.output() {
        copy("lm_head.weight", output.name, vec![v, d])?;
    }
    let x = w.f32("model.norm.weight", &[d])?;
    let x: Vec<f32> = x.iter().map(|v| v + shift).collect();
    t.push(RawTensor::f32(opts.out_norm().weight.name, vec![d], &x));
    let fused = family == Family::Phi3;
    for n in 0..opts.n_layers {
        let (s, b) = (format!("model.layers.{n}"), opts.layer(n));
        let get = |src: &str, shape: &[usize]| w.f32(&format!("{s}.{src}"), shape);
        // q, k, v and gate, up: separate, or the row blocks of Phi-3's fused matrices.
        let (q, k, v_w) = if fused {
            let x = get("self_attn.qkv_proj.weight", &[qd + 2 * kv, d])?;
            let (q, rest) = x.split_at(qd * d);
            let (k, v_w) = rest.split_at(kv * d);
            (q.to_vec(), k.to_vec(), v_w.to_vec())
        } else {
            (
                get("self_attn.q_proj.weight", &[qd, d])?,
                get("self_attn.k_proj.weight", &[kv, d])?,
                get("self_attn.v_proj.weight", &[kv, d])?,
            )
        };
        let (gate, up) = if fused {
            let x = get("mlp.gate_up_proj.weight", &[2 * f, d])?;
            let (g, u) = x.split_at(f * d);
            (g.to_vec(), u.to_vec())
        } else {
            (
                get("mlp.gate_proj.weight", &[f, d])?,
                get("mlp.up_proj.weight", &[f, d])?,
            )
        };
        let gate_name = slot_name(b.mlp_gate.as_ref().map(|g| &g.weight), cf, "gate_proj")?;
        // q and k: undo the rotate-half permutation (k with the kv head count), of the
        // weights, the biases and the per-head norm weights alike.
        let unperm = |x: &[f32], heads: usize, cols: usize| unpermute_rows(x, heads, cols);
        let mut put = |name: &str, shape: Vec<usize>, x: &[f32]| {
            t.push(RawTensor::f32(name, shape, x));
        };
        put(
            &b.attn_q.weight.name,
            vec![qd, d],
            &unperm(&q, opts.n_heads, d),
        );
        put(
            &b.attn_k.weight.name,
            vec![kv, d],
            &unperm(&k, opts.n_kv_heads, d),
        );
        put(&b.attn_v.weight.name, vec![kv, d], &v_w);
        put(&gate_name, vec![f, d], &gate);
        put(&b.mlp_up.weight.name, vec![f, d], &up);
        if let (Some(qb), Some(kb), Some(vb)) = (&b.attn_q.bias, &b.attn_k.bias, &b.attn_v.bias) {
            let x = get("self_attn.q_proj.bias", &[qd])?;
            put(&qb.name, vec![qd], &unperm(&x, opts.n_heads, 1));
            let x = get("self_attn.k_proj.bias", &[kv])?;
            put(&kb.name, vec![kv], &unperm(&x, opts.n_kv_heads, 1));
            put(&vb.name, vec![kv], &get("self_attn.v_proj.bias", &[kv])?);
        }
        let shifted = |x: Vec<f32>| -> Vec<f32> { x.iter().map(|v| v + shift).collect() };
        if let (Some(qn), Some(kn)) = (&b.attn_q_norm, &b.attn_k_norm) {
            let x = shifted(get("self_attn.q_norm.weight", &[hd])?);
            put(&qn.name, vec![hd], &unperm(&x, 1, 1));
            let x = shifted(get("self_attn.k_norm.weight", &[hd])?);
            put(&kn.name, vec![hd], &unperm(&x, 1, 1));
        }
        put(
            &b.attn_out.weight.name,
            vec![d, qd],
            &get("self_attn.o_proj.weight", &[d, qd])?,
        );
        put(
            &b.mlp_down.weight.name,
            vec![d, f],
            &get("mlp.down_proj.weight", &[d, f])?,
        );
        // Norms: Gemma has a pre- and a post-norm around each sub-block, and its
        // `post_attention_layernorm` is the attention's post-norm, not the MLP's norm.
        let mut norms = vec![("input_layernorm.weight", &b.attn_norm.weight.name)];
        match (&b.attn_post_norm, &b.mlp_post_norm) {
            (Some(pa), Some(pm)) => norms.extend([
                ("post_attention_layernorm.weight", &pa.weight.name),
                ("pre_feedforward_layernorm.weight", &b.mlp_norm.weight.name),
                ("post_feedforward_layernorm.weight", &pm.weight.name),
            ]),
            _ => norms.push(("post_attention_layernorm.weight", &b.mlp_norm.weight.name)),
        }
        for (src, dst) in norms {
            put(dst, vec![d], &shifted(get(src, &[d])?));
        }
    }
    Ok((opts, t))
}

/// Reads the BPE model of a `tokenizer.json` (see the module docs for scores and ids).
pub fn parse_tokenizer(
    j: &Json,
    kind: TokenizerKind,
    vocab_size: usize,
    file: &str,
) -> Result<TokenizerSpec<'static>, ImportError> {
    let model = j
        .get("model")
        .ok_or_else(|| ImportError::malformed(file, "missing 'model'"))?;
    // tokenizer.json's own pre-tokenizer / decoder / byte_fallback decide the kind when
    // they say; `kind` (from the model type) is the fallback.
    let (kind, pre) = match super::hf_tokenizer::kind_and_pre(j, file)? {
        Some((k, pre)) => (k, pre),
        None => (kind, None),
    };
    let vocab = model
        .get("vocab")
        .and_then(Json::as_object)
        .ok_or_else(|| ImportError::malformed(file, "missing object 'model.vocab'"))?;
    let mut by_id: HashMap<usize, String> = HashMap::with_capacity(vocab.len());
    let mut add = |tok: &str, id: &Json| -> Result<(), ImportError> {
        let id = id
            .as_u64()
            .and_then(|x| usize::try_from(x).ok())
            .filter(|&x| x < vocab_size.max(1 << 24))
            .ok_or_else(|| {
                ImportError::malformed(file, format!("token '{tok}' has a bad id {id}"))
            })?;
        match by_id.get(&id) {
            Some(prev) if prev != tok => Err(ImportError::malformed(
                file,
                format!("id {id} is both '{prev}' and '{tok}'"),
            )),
            _ => {
                by_id.insert(id, tok.to_string());
                Ok(())
            }
        }
    };
    for (tok, id) in vocab {
        add(tok, id)?;
    }
    // Added tokens: special ones are control tokens, the others user-defined (as
    // llama.cpp's converter types them).
    let mut added_types: HashMap<usize, u8> = HashMap::new();
    if let Some(added) = j.get("added_tokens").and_then(Json::as_array) {
        for a in added {
            let content = a
                .get("content")
                .and_then(Json::as_str)
                .ok_or_else(|| ImportError::malformed(file, "added token without 'content'"))?;
            let id = a.get("id").unwrap_or(&Json::Null);
            add(content, id)?;
            let special = a.get("special").and_then(Json::as_bool).unwrap_or(false);
            if let Some(id) = id.as_u64().and_then(|x| usize::try_from(x).ok()) {
                let ty = if special {
                    token_type::CONTROL
                } else {
                    token_type::USER_DEFINED
                };
                added_types.insert(id, ty);
            }
        }
    }
    let n = by_id.keys().max().map_or(0, |m| m + 1);
    if n > vocab_size {
        return Err(ImportError::malformed(
            file,
            format!(
                "tokenizer has ids up to {}, the model's vocab_size is {vocab_size}",
                n - 1
            ),
        ));
    }
    let mut tokens: Vec<Cow<'static, str>> = Vec::with_capacity(vocab_size);
    for id in 0..vocab_size {
        tokens.push(match by_id.remove(&id) {
            Some(s) => Cow::Owned(s),
            None if id >= n => Cow::Owned(format!("<pad_{id}>")),
            None => {
                return Err(ImportError::malformed(
                    file,
                    format!("no token has id {id}"),
                ))
            }
        });
    }
    let merges: Vec<String> = match model.get("merges").and_then(Json::as_array) {
        None => Vec::new(),
        Some(ms) => ms
            .iter()
            .map(|m| match m {
                Json::String(s) => Ok(s.clone()),
                Json::Array(p) => match (
                    p.first().and_then(Json::as_str),
                    p.get(1).and_then(Json::as_str),
                ) {
                    (Some(a), Some(b)) if p.len() == 2 => Ok(format!("{a} {b}")),
                    _ => Err(ImportError::malformed(file, format!("bad merge {m}"))),
                },
                _ => Err(ImportError::malformed(file, format!("bad merge {m}"))),
            })
            .collect::<Result<_, _>>()?,
    };
    let find = |s: &str| tokens.iter().position(|t| t == s).map(|i| i as u32);
    let mut token_types: Vec<u8> = (0..tokens.len())
        .map(|id| added_types.get(&id).copied().unwrap_or(token_type::NORMAL))
        .collect();
    if kind == TokenizerKind::SentencePiece {
        for (t, ty) in tokens.iter().zip(token_types.iter_mut()) {
            if *ty == token_type::NORMAL && llmrt::tokenizer::is_byte_piece(t) {
                *ty = token_type::BYTE;
            }
        }
    }
    let (bos, eos, unk) = match kind {
        TokenizerKind::SentencePiece => (find("<s>"), find("</s>"), find("<unk>")),
        _ => (None, find("<|endoftext|>"), None),
    };
    for id in [bos, eos].into_iter().flatten() {
        token_types[id as usize] = token_type::CONTROL;
    }
    if let Some(id) = unk {
        token_types[id as usize] = token_type::UNKNOWN;
    }
    Ok(match kind {
        TokenizerKind::SentencePiece => {
            let index: HashMap<&str, usize> = tokens
                .iter()
                .enumerate()
                .map(|(i, t)| (t.as_ref(), i))
                .collect();
            let floor = -(merges.len() as f32 + 1.0);
            let mut scores = vec![floor; tokens.len()];
            // Later merges never override the first (highest-priority) one.
            for (rank, m) in merges.iter().enumerate().rev() {
                let joined: String = m.split(' ').collect();
                if let Some(&i) = index.get(joined.as_str()) {
                    scores[i] = -(rank as f32);
                }
            }
            TokenizerSpec {
                kind,
                bos,
                eos,
                unk,
                pad: None,
                add_bos: true,
                add_eos: false,
                token_types,
                pre: None,
                add_space_prefix: true,
                lowercase: false,
                strip_accents: false,
                tokens,
                scores,
                merges: Vec::new(),
            }
        }
        _ => TokenizerSpec {
            kind,
            bos,
            eos,
            unk,
            pad: None,
            add_bos: false,
            add_eos: false,
            token_types,
            pre: pre.map(Cow::Owned),
            add_space_prefix: true,
            lowercase: false,
            strip_accents: false,
            merges: merges.into_iter().map(Cow::Owned).collect(),
            tokens,
            scores: Vec::new(),
        },
    })
}
