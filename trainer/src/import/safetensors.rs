//! Hugging Face model directories: `config.json`, `model.safetensors`,
//! `tokenizer.json`, for the `gpt2` and `llama` model types.
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
use llm_format::{Mlp, ModelOptions, Norm, Positions, TokenizerKind, TokenizerSpec};
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
        "llama" => llama(&cfg, &cfg_name, &w)?,
        other => {
            return Err(ImportError::unsupported(
                cfg_name,
                format!("model_type '{other}' (expected 'gpt2' or 'llama')"),
            ))
        }
    };
    let kind = if model_type == "gpt2" {
        TokenizerKind::Gpt2
    } else {
        TokenizerKind::SentencePiece
    };
    let tok = parse_tokenizer(&tok_json, kind, opts.vocab_size, &tok_name)?;
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

fn llama(
    cfg: &Json,
    cf: &str,
    w: &Weights<'_, '_>,
) -> Result<(ModelOptions, Vec<RawTensor>), ImportError> {
    if cfg.get("rope_scaling").is_some_and(|v| !v.is_null()) {
        return Err(ImportError::unsupported(
            cf,
            "rope_scaling (only plain RoPE)",
        ));
    }
    if cfg.get("attention_bias").and_then(Json::as_bool) == Some(true)
        || cfg.get("mlp_bias").and_then(Json::as_bool) == Some(true)
    {
        return Err(ImportError::unsupported(
            cf,
            "attention_bias / mlp_bias (LLaMA has no biases)",
        ));
    }
    let act = cfg
        .get("hidden_act")
        .and_then(Json::as_str)
        .unwrap_or("silu");
    if act != "silu" {
        return Err(ImportError::unsupported(
            cf,
            format!("hidden_act '{act}' (expected 'silu')"),
        ));
    }
    let n_heads = cfg_usize(cfg, &["num_attention_heads"], cf)?;
    let opts = ModelOptions {
        vocab_size: cfg_usize(cfg, &["vocab_size"], cf)?,
        d_model: cfg_usize(cfg, &["hidden_size"], cf)?,
        n_layers: cfg_usize(cfg, &["num_hidden_layers"], cf)?,
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
            .unwrap_or(false),
        norm_eps: cfg_f32(cfg, "rms_norm_eps", 1e-6, cf)?,
        rope_base: cfg_f32(cfg, "rope_theta", 10000.0, cf)?,
    };
    opts.validate()
        .map_err(|e| ImportError::malformed(cf, format!("model options: {e}")))?;
    let (v, d, f, kv) = (opts.vocab_size, opts.d_model, opts.d_ff, opts.kv_dim());
    let mut t = Vec::new();
    let mut copy = |src: &str, dst: String, shape: Vec<usize>| -> Result<(), ImportError> {
        let x = w.f32(src, &shape)?;
        t.push(RawTensor::f32(dst, shape, &x));
        Ok(())
    };
    copy("model.embed_tokens.weight", opts.tok_emb().name, vec![v, d])?;
    for n in 0..opts.n_layers {
        let (s, b) = (format!("model.layers.{n}"), opts.layer(n));
        copy(
            &format!("{s}.input_layernorm.weight"),
            b.attn_norm.weight.name.clone(),
            vec![d],
        )?;
        copy(
            &format!("{s}.self_attn.v_proj.weight"),
            b.attn_v.weight.name.clone(),
            vec![kv, d],
        )?;
        copy(
            &format!("{s}.self_attn.o_proj.weight"),
            b.attn_out.weight.name.clone(),
            vec![d, d],
        )?;
        copy(
            &format!("{s}.post_attention_layernorm.weight"),
            b.mlp_norm.weight.name.clone(),
            vec![d],
        )?;
        let src = format!("{s}.mlp.gate_proj.weight");
        let gate = slot_name(b.mlp_gate.as_ref().map(|g| &g.weight), cf, &src)?;
        copy(&src, gate, vec![f, d])?;
        copy(
            &format!("{s}.mlp.up_proj.weight"),
            b.mlp_up.weight.name.clone(),
            vec![f, d],
        )?;
        copy(
            &format!("{s}.mlp.down_proj.weight"),
            b.mlp_down.weight.name.clone(),
            vec![d, f],
        )?;
    }
    copy("model.norm.weight", opts.out_norm().weight.name, vec![d])?;
    if let Some(output) = opts.output() {
        copy("lm_head.weight", output.name, vec![v, d])?;
    }
    // q and k: undo the rotate-half permutation (k with the kv head count).
    for n in 0..opts.n_layers {
        let (s, b) = (format!("model.layers.{n}"), opts.layer(n));
        let q = w.f32(&format!("{s}.self_attn.q_proj.weight"), &[d, d])?;
        t.push(RawTensor::f32(
            b.attn_q.weight.name.clone(),
            vec![d, d],
            &unpermute_rows(&q, opts.n_heads, d),
        ));
        let k = w.f32(&format!("{s}.self_attn.k_proj.weight"), &[kv, d])?;
        t.push(RawTensor::f32(
            b.attn_k.weight.name.clone(),
            vec![kv, d],
            &unpermute_rows(&k, opts.n_kv_heads, d),
        ));
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
    let ty = model.get("type").and_then(Json::as_str).unwrap_or("BPE");
    if ty != "BPE" {
        return Err(ImportError::unsupported(
            file,
            format!("tokenizer model type '{ty}' (expected BPE)"),
        ));
    }
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
    if let Some(added) = j.get("added_tokens").and_then(Json::as_array) {
        for a in added {
            let content = a
                .get("content")
                .and_then(Json::as_str)
                .ok_or_else(|| ImportError::malformed(file, "added token without 'content'"))?;
            add(content, a.get("id").unwrap_or(&Json::Null))?;
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
                bos: find("<s>"),
                eos: find("</s>"),
                unk: find("<unk>"),
                pad: None,
                add_bos: true,
                tokens,
                scores,
                merges: Vec::new(),
            }
        }
        _ => TokenizerSpec {
            kind,
            bos: None,
            eos: find("<|endoftext|>"),
            unk: None,
            pad: None,
            add_bos: false,
            merges: merges.into_iter().map(Cow::Owned).collect(),
            tokens,
            scores: Vec::new(),
        },
    })
}
