//! The newer decoder families imported from GGUF and from Hugging Face folders give
//! the f64 reference's logits.
//!
//! Each test draws random weights, writes them the way the source tool stores them
//! (GGUF with this file's own small writer, safetensors with the `safetensors`
//! crate, under the source's own tensor names, written out below rather than taken
//! from the importer's tables), imports the file with `llm-train`'s importer and
//! compares the runtime's logits with `llmrt_suite::reference` run on the weights as
//! written. Where the source keeps q/k in rotate-half order (Hugging Face; GGUF's
//! NEOX architectures), the reference rotates the halves itself
//! (`RefModel::rotate_half`), so the importer's permutation is checked, not assumed.

mod gpu_util;

use half::f16;
use llm_format::{ArchOptions, DType, Mlp, ModelOptions, Norm, Positions};
use llm_train::import::{import, SourceKind};
use llmrt::{Context, ContextParams, Model};
use llmrt_suite::fixtures::{opts, random_weights};
use llmrt_suite::reference::RefModel;
use llmrt_suite::rng::test_seed;
use safetensors::tensor::{Dtype, TensorView};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("llmrt-arch-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

// ---------------------------------------------------------------- GGUF writing

/// A GGUF metadata value (the kinds these tests write).
enum Kv {
    U32(u32),
    F32(f32),
    Str(String),
    Strs(Vec<String>),
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    b.extend((s.len() as u64).to_le_bytes());
    b.extend(s.as_bytes());
}

/// A GGUF v3 file; `tensors` are (name, outermost-first shape, ggml type, bytes).
fn gguf_bytes(kvs: &[(String, Kv)], tensors: &[(String, Vec<usize>, DType, Vec<u8>)]) -> Vec<u8> {
    const ALIGN: usize = 32;
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend((tensors.len() as u64).to_le_bytes());
    b.extend((kvs.len() as u64).to_le_bytes());
    for (k, v) in kvs {
        put_str(&mut b, k);
        match v {
            Kv::U32(x) => {
                b.extend(4u32.to_le_bytes());
                b.extend(x.to_le_bytes());
            }
            Kv::F32(x) => {
                b.extend(6u32.to_le_bytes());
                b.extend(x.to_le_bytes());
            }
            Kv::Str(s) => {
                b.extend(8u32.to_le_bytes());
                put_str(&mut b, s);
            }
            Kv::Strs(v) => {
                b.extend(9u32.to_le_bytes());
                b.extend(8u32.to_le_bytes());
                b.extend((v.len() as u64).to_le_bytes());
                v.iter().for_each(|s| put_str(&mut b, s));
            }
        }
    }
    let mut off = 0usize;
    let mut offsets = Vec::new();
    for (name, shape, dt, data) in tensors {
        put_str(&mut b, name);
        b.extend((shape.len() as u32).to_le_bytes());
        for d in shape.iter().rev() {
            b.extend((*d as u64).to_le_bytes());
        }
        b.extend(dt.to_u32().to_le_bytes());
        b.extend((off as u64).to_le_bytes());
        offsets.push(off);
        off = (off + data.len()).div_ceil(ALIGN) * ALIGN;
    }
    b.resize(b.len().div_ceil(ALIGN) * ALIGN, 0);
    let start = b.len();
    for ((_, _, _, data), o) in tensors.iter().zip(offsets) {
        b.resize(start + o, 0);
        b.extend(data);
    }
    b
}

/// GGUF's name of one of our canonical tensors (llama.cpp's `LLM_TENSOR_NAMES`).
fn gguf_name(canonical: &str) -> String {
    match canonical {
        "tok_emb" => return "token_embd.weight".into(),
        "out_norm.weight" => return "output_norm.weight".into(),
        "out_norm.bias" => return "output_norm.bias".into(),
        "pos_emb" => return "position_embd.weight".into(),
        "rope_freqs" => return "rope_freqs.weight".into(),
        _ => {}
    }
    canonical
        .replace(".attn_out.", ".attn_output.")
        .replace(".mlp_norm.", ".ffn_norm.")
        .replace(".mlp_post_norm.", ".ffn_post_norm.")
        .replace(".mlp_gate.", ".ffn_gate.")
        .replace(".mlp_up.", ".ffn_up.")
        .replace(".mlp_down.", ".ffn_down.")
}

/// q and k projection weights: the tensors written as F16 (whole rows move when the
/// importer permutes them), everything else F32.
fn is_qk_weight(name: &str) -> bool {
    name.ends_with("attn_q.weight") || name.ends_with("attn_k.weight")
}

fn f16_round(x: &[f32]) -> Vec<f32> {
    x.iter().map(|v| f16::from_f32(*v).to_f32()).collect()
}

/// Writes `w` (canonical names, in the order the source stores q/k) as a GGUF of
/// architecture `arch`, with a byte-level BPE vocabulary; returns the path and the
/// weights as the file holds them (q/k rounded to f16).
fn write_gguf(
    dir: &Path,
    arch: &str,
    o: &ModelOptions,
    w: &HashMap<String, Vec<f32>>,
    extra_kvs: Vec<(String, Kv)>,
) -> (PathBuf, HashMap<String, Vec<f32>>) {
    let k = |s: &str| format!("{arch}.{s}");
    let mut kvs = vec![
        ("general.architecture".into(), Kv::Str(arch.into())),
        (k("embedding_length"), Kv::U32(o.d_model as u32)),
        (k("block_count"), Kv::U32(o.n_layers as u32)),
        (k("feed_forward_length"), Kv::U32(o.d_ff as u32)),
        (k("attention.head_count"), Kv::U32(o.n_heads as u32)),
        (k("attention.head_count_kv"), Kv::U32(o.n_kv_heads as u32)),
        (k("context_length"), Kv::U32(o.max_len as u32)),
        (k("rope.freq_base"), Kv::F32(o.rope_base)),
        (k("rope.dimension_count"), Kv::U32(o.head_dim() as u32)),
        (k("attention.layer_norm_rms_epsilon"), Kv::F32(o.norm_eps)),
        ("tokenizer.ggml.model".into(), Kv::Str("gpt2".into())),
        (
            "tokenizer.ggml.tokens".into(),
            Kv::Strs((0..o.vocab_size).map(|i| format!("t{i}")).collect()),
        ),
        ("tokenizer.ggml.merges".into(), Kv::Strs(vec![])),
    ];
    kvs.extend(extra_kvs);
    let mut held = HashMap::new();
    let mut tensors = Vec::new();
    for slot in o.tensor_layout() {
        let x = &w[&slot.name];
        let fused = matches!(arch, "phi3" | "gpt2");
        let (dt, data, kept) = if is_qk_weight(&slot.name) && !fused {
            let h: Vec<u8> = x
                .iter()
                .flat_map(|v| f16::from_f32(*v).to_le_bytes())
                .collect();
            (DType::F16, h, f16_round(x))
        } else {
            let b: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
            (DType::F32, b, x.clone())
        };
        held.insert(slot.name.clone(), kept);
        tensors.push((gguf_name(&slot.name), slot.shape.clone(), dt, data));
    }
    if arch == "phi3" {
        // Phi-3 fuses q, k, v into attn_qkv and gate, up into a 2·d_ff-row ffn_up.
        for l in 0..o.n_layers {
            let b = format!("blk.{l}");
            fuse_gguf(
                &mut tensors,
                &b,
                &["attn_q", "attn_k", "attn_v"],
                "attn_qkv",
                "weight",
            );
            fuse_gguf(
                &mut tensors,
                &b,
                &["ffn_gate", "ffn_up"],
                "ffn_up",
                "weight",
            );
        }
    }
    if arch == "gpt2" {
        // GPT-2 fuses q, k, v, weights and biases.
        for l in 0..o.n_layers {
            let b = format!("blk.{l}");
            for kind in ["weight", "bias"] {
                fuse_gguf(
                    &mut tensors,
                    &b,
                    &["attn_q", "attn_k", "attn_v"],
                    "attn_qkv",
                    kind,
                );
            }
        }
    }
    // llama.cpp's converter writes tensors in its own order; the importer must not care.
    tensors.reverse();
    let path = dir.join(format!("{arch}.gguf"));
    std::fs::write(&path, gguf_bytes(&kvs, &tensors)).expect("write gguf");
    (path, held)
}

/// Replaces the tensors `{b}.{part}.{kind}` (same dtype and width) by one tensor
/// `{b}.{into}.{kind}` with their rows one after the other.
fn fuse_gguf(
    tensors: &mut Vec<(String, Vec<usize>, DType, Vec<u8>)>,
    b: &str,
    parts: &[&str],
    into: &str,
    kind: &str,
) {
    let mut rows = 0;
    let mut data = Vec::new();
    let (mut rest, mut dt) = (Vec::new(), DType::F32);
    for p in parts {
        let name = format!("{b}.{p}.{kind}");
        let i = tensors.iter().position(|t| t.0 == name).expect("part");
        let (_, shape, d, bytes) = tensors.remove(i);
        rows += shape[0];
        (rest, dt) = (shape[1..].to_vec(), d);
        data.extend(bytes);
    }
    let shape = [vec![rows], rest].concat();
    tensors.push((format!("{b}.{into}.{kind}"), shape, dt, data));
}

/// [`fuse_gguf`] for Hugging Face names (`{b}.{part}.weight`, bf16 bytes).
fn fuse_hf(named: &mut Vec<(String, Vec<usize>, Vec<u8>)>, b: &str, parts: &[&str], into: &str) {
    let mut rows = 0;
    let mut data = Vec::new();
    let mut cols = 0;
    for p in parts {
        let name = format!("{b}.{p}.weight");
        let i = named.iter().position(|t| t.0 == name).expect("part");
        let (_, shape, bytes) = named.remove(i);
        rows += shape[0];
        cols = shape[1];
        data.extend(bytes);
    }
    named.push((format!("{b}.{into}.weight"), vec![rows, cols], data));
}

// ---------------------------------------------------------- Hugging Face writing

/// Hugging Face's name of one of our canonical tensors (`LlamaForCausalLM`,
/// `Qwen2ForCausalLM`, `Qwen3ForCausalLM`); `None` for `rope_freqs`, which HF
/// derives from the config.
fn hf_name(canonical: &str) -> Option<String> {
    Some(match canonical {
        "tok_emb" => "model.embed_tokens.weight".into(),
        "out_norm.weight" => "model.norm.weight".into(),
        "output.weight" => "lm_head.weight".into(),
        "rope_freqs" => return None,
        _ => {
            let (l, rest) = canonical
                .strip_prefix("blk.")
                .and_then(|r| r.split_once('.'))
                .expect("a block tensor");
            let (role, kind) = rest.rsplit_once('.').expect("weight or bias");
            let hf = match role {
                "attn_norm" => "input_layernorm",
                "attn_q" => "self_attn.q_proj",
                "attn_k" => "self_attn.k_proj",
                "attn_v" => "self_attn.v_proj",
                "attn_out" => "self_attn.o_proj",
                "attn_q_norm" => "self_attn.q_norm",
                "attn_k_norm" => "self_attn.k_norm",
                "mlp_norm" => "post_attention_layernorm",
                "attn_post_norm" | "mlp_post_norm" => "(renamed for gemma)",
                "mlp_gate" => "mlp.gate_proj",
                "mlp_up" => "mlp.up_proj",
                "mlp_down" => "mlp.down_proj",
                r => panic!("no HF name for {r}"),
            };
            format!("model.layers.{l}.{hf}.{kind}")
        }
    })
}

/// Writes `w` as a Hugging Face folder: `config.json` = `cfg`, `tokenizer.json`
/// (BPE over `vocab` pieces), and the weights as bf16 in `shards` files with
/// `model.safetensors.index.json` (one file `model.safetensors` when `shards` is 1).
/// Returns the weights as the files hold them (rounded to bf16).
fn write_hf(
    dir: &Path,
    o: &ModelOptions,
    w: &HashMap<String, Vec<f32>>,
    cfg: serde_json::Value,
    byte_level: bool,
    shards: usize,
) -> HashMap<String, Vec<f32>> {
    use half::bf16;
    // Gemma stores its RMSNorm weights as `w` for `1 + w`, and names its norms
    // around each sub-block differently.
    let gemma = cfg["model_type"] == "gemma3_text";
    let mut held = HashMap::new();
    let mut named: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for slot in o.tensor_layout() {
        let x = &w[&slot.name];
        let Some(mut name) = hf_name(&slot.name) else {
            held.insert(slot.name.clone(), x.clone());
            continue;
        };
        let shift = if gemma && slot.name.ends_with("norm.weight") {
            1.0
        } else {
            0.0
        };
        if gemma {
            for (ours, theirs) in [
                (".attn_post_norm.", ".post_attention_layernorm."),
                (".mlp_norm.", ".pre_feedforward_layernorm."),
                (".mlp_post_norm.", ".post_feedforward_layernorm."),
            ] {
                if slot.name.contains(ours) {
                    let l = slot.name.split('.').nth(1).expect("layer");
                    name = format!("model.layers.{l}{theirs}weight");
                }
            }
        }
        let b: Vec<u8> = x
            .iter()
            .flat_map(|v| bf16::from_f32(*v - shift).to_le_bytes())
            .collect();
        held.insert(
            slot.name.clone(),
            x.iter()
                .map(|v| bf16::from_f32(*v - shift).to_f32() + shift)
                .collect(),
        );
        named.push((name, slot.shape.clone(), b));
    }
    if cfg["model_type"] == "phi3" {
        for l in 0..o.n_layers {
            let b = format!("model.layers.{l}");
            fuse_hf(
                &mut named,
                &b,
                &["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"],
                "self_attn.qkv_proj",
            );
            fuse_hf(
                &mut named,
                &b,
                &["mlp.gate_proj", "mlp.up_proj"],
                "mlp.gate_up_proj",
            );
        }
    }
    let mut weight_map = serde_json::Map::new();
    let per = named.len().div_ceil(shards);
    for (s, chunk) in named.chunks(per).enumerate() {
        let file = if shards == 1 {
            "model.safetensors".to_string()
        } else {
            format!("model-{:05}-of-{:05}.safetensors", s + 1, shards)
        };
        let views: Vec<(String, TensorView<'_>)> = chunk
            .iter()
            .map(|(n, shape, b)| {
                weight_map.insert(n.clone(), file.clone().into());
                (
                    n.clone(),
                    TensorView::new(Dtype::BF16, shape.clone(), b).expect("view"),
                )
            })
            .collect();
        let bytes = safetensors::serialize(views, None).expect("serialize");
        std::fs::write(dir.join(&file), bytes).expect("write shard");
    }
    if shards > 1 {
        let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
        std::fs::write(dir.join("model.safetensors.index.json"), index.to_string())
            .expect("write index");
    }
    std::fs::write(dir.join("config.json"), cfg.to_string()).expect("write config");
    let mut vocab = serde_json::Map::new();
    for i in 0..o.vocab_size {
        vocab.insert(format!("t{i}"), i.into());
    }
    let tok = if byte_level {
        serde_json::json!({
            "version": "1.0", "added_tokens": [],
            "pre_tokenizer": {"type": "ByteLevel"}, "decoder": {"type": "ByteLevel"},
            "model": {"type": "BPE", "vocab": vocab, "merges": []}
        })
    } else {
        serde_json::json!({
            "version": "1.0", "added_tokens": [],
            "model": {"type": "BPE", "vocab": vocab, "merges": [], "byte_fallback": true}
        })
    };
    std::fs::write(dir.join("tokenizer.json"), tok.to_string()).expect("write tokenizer");
    held
}

/// The config of a llama-family folder for `o`.
fn hf_config(model_type: &str, o: &ModelOptions) -> serde_json::Value {
    serde_json::json!({
        "model_type": model_type,
        "vocab_size": o.vocab_size,
        "hidden_size": o.d_model,
        "num_hidden_layers": o.n_layers,
        "num_attention_heads": o.n_heads,
        "num_key_value_heads": o.n_kv_heads,
        "intermediate_size": o.d_ff,
        "max_position_embeddings": o.max_len,
        "rms_norm_eps": o.norm_eps,
        "rope_theta": o.rope_base,
        "tie_word_embeddings": o.tied_embeddings,
        "hidden_act": "silu",
    })
}

// ------------------------------------------------------------------- checking

/// Imports `path` as `kind`, checks the options, and compares the runtime's logits
/// on a prompt with the reference on `held` (q/k in rotate-half order when
/// `rotate_half`).
fn check(
    kind: SourceKind,
    path: &Path,
    want_opts: &ModelOptions,
    held: &HashMap<String, Vec<f32>>,
    rotate_half: bool,
) {
    let m = import(kind, path, None).unwrap_or_else(|e| panic!("import {kind:?}: {e}"));
    assert_eq!(&m.opts, want_opts, "{kind:?} options");
    let bytes = m
        .to_writer(None)
        .expect("writer")
        .to_bytes()
        .expect("bytes");
    let model = Arc::new(Model::from_bytes(&bytes).expect("load"));
    let mut reference = RefModel::new(want_opts.clone(), held);
    reference.rotate_half = rotate_half;
    let prompt: Vec<u32> = (0..24)
        .map(|i| (i * 13 + 5) % want_opts.vocab_size as u32)
        .collect();
    let want = reference.forward(&prompt);
    // f32 products for the F16 q/k weights too (not bf16 dot products), so that the
    // bound below is f32 rounding alone.
    let params = ContextParams {
        cache_type: llmrt::CacheType::F32,
        f16_exact: true,
        ..ContextParams::default()
    };
    let mut ctx = Context::new(model, &params).expect("context");
    let mut all = Vec::new();
    ctx.eval_all(&prompt, &mut all).expect("eval");
    let v = want_opts.vocab_size;
    // Weights are the same values on both sides; only f32 arithmetic differs.
    for (i, row) in want.iter().enumerate() {
        let scale = row.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        let err = all[i * v..(i + 1) * v]
            .iter()
            .zip(row)
            .map(|(a, b)| (*a as f64 - b).abs())
            .fold(0.0, f64::max);
        assert!(
            err <= 1e-4 * scale,
            "{kind:?} {}: position {i} error {err} over {}",
            path.display(),
            1e-4 * scale
        );
    }
    if want_opts.positions != Positions::Rope {
        return;
    }
    // Rotating the other pairs gives other logits (the check above can fail).
    reference.rotate_half = !rotate_half;
    let other = reference.forward(&prompt);
    let last = prompt.len() - 1;
    let diff = other[last]
        .iter()
        .zip(&want[last])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(
        diff > 1e-3,
        "the RoPE pair order does not matter here ({diff})"
    );
}

fn base(tied: bool, n_kv: usize) -> ModelOptions {
    let mut o = opts(
        Positions::Rope,
        Norm::RmsNorm,
        Mlp::SwiGlu,
        false,
        tied,
        n_kv,
    );
    o.rope_base = 1000.0;
    o.norm_eps = 1e-6;
    o
}

#[test]
fn qwen2_imports_from_gguf_and_hugging_face() {
    let mut o = base(true, 2);
    o.arch.qkv_bias = true;
    let w = random_weights(&o, 301 ^ test_seed(0));
    let dir = scratch("qwen2");
    let (path, held) = write_gguf(&dir, "qwen2", &o, &w, vec![]);
    check(SourceKind::Gguf, &path, &o, &held, true);
    let held = write_hf(&dir, &o, &w, hf_config("qwen2", &o), true, 1);
    check(SourceKind::SafeTensors, &dir, &o, &held, true);
}

#[test]
fn qwen3_imports_from_gguf_and_hugging_face() {
    // Qwen 3's head width is its own: here 32 × 4 heads = 128 over d_model 64.
    let mut o = base(false, 2);
    o.arch = ArchOptions {
        head_dim: Some(32),
        qk_norm: true,
        ..Default::default()
    };
    let w = random_weights(&o, 302 ^ test_seed(0));
    let dir = scratch("qwen3");
    let kl = vec![
        ("qwen3.attention.key_length".into(), Kv::U32(32)),
        ("qwen3.attention.value_length".into(), Kv::U32(32)),
    ];
    let (path, held) = write_gguf(&dir, "qwen3", &o, &w, kl);
    check(SourceKind::Gguf, &path, &o, &held, true);
    let mut cfg = hf_config("qwen3", &o);
    cfg["head_dim"] = 32.into();
    let held = write_hf(&dir, &o, &w, cfg, true, 1);
    check(SourceKind::SafeTensors, &dir, &o, &held, true);
}

#[test]
fn phi3_imports_from_gguf_and_hugging_face_split_at_import() {
    let o = base(false, 4);
    let w = random_weights(&o, 306 ^ test_seed(0));
    let dir = scratch("phi3");
    let (path, held) = write_gguf(&dir, "phi3", &o, &w, vec![]);
    check(SourceKind::Gguf, &path, &o, &held, true);
    let held = write_hf(&dir, &o, &w, hf_config("phi3", &o), false, 2);
    check(SourceKind::SafeTensors, &dir, &o, &held, true);
}

#[test]
fn gemma3_imports_from_gguf_and_hugging_face() {
    // GeGLU, √d embedding scale, q/k norms, post norms, head width 32 × 4 heads over
    // d_model 64, sliding window 4 on layer 0 of 2 (RoPE base 100 there, 1000 on the
    // global layer 1), over a 24-token prompt.
    // Then again with Gemma 3 4B's linear RoPE scaling (its factor 8 here 4), which
    // applies to the global layer only.
    for linear in [None, Some(4.0f32)] {
        let mut o = base(true, 2);
        o.mlp = Mlp::GeGlu;
        o.arch = ArchOptions {
            head_dim: Some(32),
            qk_norm: true,
            embed_scale: Some(8.0),
            post_norms: true,
            sliding_window: Some(4),
            sliding_window_pattern: 2,
            rope_base_local: Some(100.0),
            rope_scale: linear,
            ..Default::default()
        };
        let w = random_weights(&o, 307 ^ test_seed(0));
        let dir = scratch(&format!("gemma3-{}", linear.is_some()));
        let mut kvs = vec![
            ("gemma3.attention.key_length".into(), Kv::U32(32)),
            ("gemma3.attention.value_length".into(), Kv::U32(32)),
            ("gemma3.attention.sliding_window".into(), Kv::U32(4)),
            ("gemma3.attention.sliding_window_pattern".into(), Kv::U32(2)),
            ("gemma3.rope.freq_base_swa".into(), Kv::F32(100.0)),
        ];
        if let Some(f) = linear {
            kvs.push(("gemma3.rope.scaling.type".into(), Kv::Str("linear".into())));
            kvs.push(("gemma3.rope.scaling.factor".into(), Kv::F32(f)));
        }
        let (path, held) = write_gguf(&dir, "gemma3", &o, &w, kvs);
        check(SourceKind::Gguf, &path, &o, &held, true);
        let mut cfg = hf_config("gemma3_text", &o);
        cfg["head_dim"] = 32.into();
        cfg["hidden_act"] = "gelu_pytorch_tanh".into();
        cfg["hidden_activation"] = "gelu_pytorch_tanh".into();
        cfg["rope_local_base_freq"] = 100.0.into();
        cfg["sliding_window"] = 4.into();
        cfg["layer_types"] = serde_json::json!(["sliding_attention", "full_attention"]);
        cfg["query_pre_attn_scalar"] = 32.into();
        if let Some(f) = linear {
            cfg["rope_scaling"] = serde_json::json!({"rope_type": "linear", "factor": f});
        }
        let held = write_hf(&dir, &o, &w, cfg, false, 1);
        check(SourceKind::SafeTensors, &dir, &o, &held, true);
    }
}

#[test]
fn gpt2_imports_from_gguf() {
    // Learned positions, LayerNorm with biases, GELU; q, k, v fused with their biases.
    let o = opts(
        Positions::Learned,
        Norm::LayerNorm,
        Mlp::Gelu,
        true,
        true,
        4,
    );
    let w = random_weights(&o, 308 ^ test_seed(0));
    let dir = scratch("gpt2");
    let eps = vec![(
        "gpt2.attention.layer_norm_epsilon".into(),
        Kv::F32(o.norm_eps),
    )];
    let (path, held) = write_gguf(&dir, "gpt2", &o, &w, eps);
    check(SourceKind::Gguf, &path, &o, &held, false);
}

#[test]
fn unknown_architectures_name_the_supported_ones() {
    let o = base(true, 2);
    let w = random_weights(&o, 303);
    let dir = scratch("unknown");
    let (path, _) = write_gguf(&dir, "mamba", &o, &w, vec![]);
    let e = import(SourceKind::Gguf, &path, None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("'mamba'") && e.contains("llama") && e.contains("qwen3"),
        "{e}"
    );
    write_hf(&dir, &o, &w, hf_config("mamba", &o), true, 1);
    let e = import(SourceKind::SafeTensors, &dir, None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("'mamba'") && e.contains("llama") && e.contains("qwen2"),
        "{e}"
    );
}

/// Llama 3's scaled inverse frequencies as Hugging Face computes them
/// (`_compute_llama3_parameters`), returned as the factors dividing the plain ones.
fn llama3_factors(hd: usize, base: f64, factor: f64, low: f64, high: f64, orig: f64) -> Vec<f32> {
    (0..hd / 2)
        .map(|i| {
            let inv = base.powf(-((2 * i) as f64) / hd as f64);
            let wavelen = 2.0 * std::f64::consts::PI / inv;
            let scaled = if wavelen > orig / low {
                inv / factor
            } else {
                inv
            };
            let smooth = (orig / wavelen - low) / (high - low);
            let medium = wavelen >= orig / high && wavelen <= orig / low;
            let out = if medium {
                (1.0 - smooth) * scaled / factor + smooth * scaled
            } else {
                scaled
            };
            (inv / out) as f32
        })
        .collect()
}

#[test]
fn llama3_factors_are_llama_cpps() {
    // Llama 3.1 8B (head_dim 128, rope_theta 500000, factor 8, low 1, high 4, original
    // 8192): llama.cpp's converter (`generate_extra_tensors`, f32 frequencies) gives
    // these `rope_freqs` values.
    let f =
        llm_train::import::safetensors::llama3_rope_factors(128, 500000.0, 8.0, 1.0, 4.0, 8192.0);
    assert_eq!(f.len(), 64);
    for (i, want) in [
        (0, 1.0f32),
        (28, 1.0),
        (29, 1.207_483_9),
        (32, 2.694_53),
        (34, 5.257_327),
        (35, 8.0),
        (63, 8.0),
    ] {
        assert!(
            (f[i] - want).abs() <= 1e-5 * want,
            "factor {i}: {} vs {want}",
            f[i]
        );
    }
    let h = llama3_factors(128, 500000.0, 8.0, 1.0, 4.0, 8192.0);
    for (a, b) in f.iter().zip(&h) {
        assert!((a - b).abs() <= 1e-5 * b, "{a} vs {b}");
    }
}

#[test]
fn llama3_rope_scaling_imports_from_gguf_and_sharded_bf16_hugging_face() {
    // Small numbers that put the 8 frequencies of head_dim 16 in all three regions:
    // wavelengths 6, 22, 63 stay, 199 and 628 are smoothed, the rest divided by 8.
    let (factor, low, high, orig) = (8.0, 0.5, 4.0, 512.0);
    for tied in [false, true] {
        let mut o = base(tied, 2);
        o.rope_base = 10000.0;
        o.arch.rope_freq_factors = true;
        let mut w = random_weights(&o, 304 ^ tied as u64 ^ test_seed(0));
        let factors = llama3_factors(16, 10000.0, factor, low, high, orig);
        assert!(factors.iter().any(|f| *f > 1.0 && *f < 8.0), "{factors:?}");
        w.insert("rope_freqs".into(), factors.clone());
        let dir = scratch(&format!("llama3-{tied}"));
        // GGUF: llama.cpp's `rope_freqs.weight`, q/k already in adjacent-pair order.
        let (path, held) = write_gguf(&dir, "llama", &o, &w, vec![]);
        check(SourceKind::Gguf, &path, &o, &held, false);
        // Hugging Face: rope_scaling in the config, three bf16 shards with an index.
        let mut cfg = hf_config("llama", &o);
        cfg["rope_scaling"] = serde_json::json!({
            "rope_type": "llama3", "factor": factor, "low_freq_factor": low,
            "high_freq_factor": high, "original_max_position_embeddings": orig,
        });
        let held = write_hf(&dir, &o, &w, cfg, false, 3);
        assert!(dir.join("model-00003-of-00003.safetensors").exists());
        check(SourceKind::SafeTensors, &dir, &o, &held, true);
        // The factors matter at these positions.
        let prompt: Vec<u32> = (0..24).collect();
        let with = RefModel::new(o.clone(), &held).forward(&prompt);
        let mut plain = o.clone();
        plain.arch.rope_freq_factors = false;
        let without = RefModel::new(plain, &held).forward(&prompt);
        let d = with[23]
            .iter()
            .zip(&without[23])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(d > 1e-3, "rope factors change the logits by only {d}");
    }
}

/// Linear RoPE scaling (`rope_scale`, positions divided by the factor) from GGUF
/// (`rope.scaling.type` linear with `rope.scaling.factor`, or llama.cpp's older
/// `rope.scale_linear` with the type left to its default; type `none` never scales)
/// and from Hugging Face (`rope_scaling` of type linear).
#[test]
fn linear_rope_scaling_imports_from_gguf_and_hugging_face() {
    let mut o = base(false, 2);
    o.arch.rope_scale = Some(4.0);
    let w = random_weights(&o, 308 ^ test_seed(0));
    let dir = scratch("linear");
    let k = |s: &str| format!("llama.{s}");
    for kvs in [
        vec![
            (k("rope.scaling.type"), Kv::Str("linear".into())),
            (k("rope.scaling.factor"), Kv::F32(4.0)),
        ],
        vec![(k("rope.scale_linear"), Kv::F32(4.0))],
    ] {
        let (path, held) = write_gguf(&dir, "llama", &o, &w, kvs);
        check(SourceKind::Gguf, &path, &o, &held, false);
    }
    let mut plain = o.clone();
    plain.arch.rope_scale = None;
    let kvs = vec![
        (k("rope.scaling.type"), Kv::Str("none".into())),
        (k("rope.scaling.factor"), Kv::F32(4.0)),
    ];
    let (path, held) = write_gguf(&dir, "llama", &plain, &w, kvs);
    check(SourceKind::Gguf, &path, &plain, &held, false);
    let mut cfg = hf_config("llama", &o);
    cfg["rope_scaling"] = serde_json::json!({"type": "linear", "factor": 4.0});
    let held = write_hf(&dir, &o, &w, cfg, false, 1);
    check(SourceKind::SafeTensors, &dir, &o, &held, true);
    // The scaling matters at these positions.
    let prompt: Vec<u32> = (0..24).collect();
    let with = RefModel::new(o.clone(), &held).forward(&prompt);
    let without = RefModel::new(plain, &held).forward(&prompt);
    let d = with[23]
        .iter()
        .zip(&without[23])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(d > 1e-3, "rope_scale changes the logits by only {d}");
    // A factor that is not a positive number is refused.
    let mut cfg = hf_config("llama", &o);
    cfg["rope_scaling"] = serde_json::json!({"rope_type": "linear", "factor": -2.0});
    write_hf(&dir, &o, &w, cfg, false, 1);
    let e = import(SourceKind::SafeTensors, &dir, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("factor") && !e.contains('\n'), "{e}");
}

/// YaRN RoPE scaling from GGUF (`rope.scaling.type` yarn with llama.cpp's keys) and
/// Hugging Face (`rope_scaling` of type yarn, transformers' defaults), against the
/// reference's own YaRN (f64). Numbers that put the 8 frequencies of head_dim 16 in all
/// three regions: correction range 2..4 (pairs 0-1 extrapolated, 3 half, 4-7
/// interpolated).
#[test]
fn yarn_rope_scaling_imports_from_gguf_and_hugging_face() {
    let mut o = base(false, 2);
    o.rope_base = 10000.0;
    let yarn = llm_format::RopeYarn {
        factor: 4.0,
        original_max_len: 512,
        beta_fast: 8.0,
        beta_slow: 1.0,
        attn_factor: llm_format::RopeYarn::default_attn_factor(4.0) as f32,
    };
    o.arch.rope_yarn = Some(yarn);
    let w = random_weights(&o, 309 ^ test_seed(0));
    let dir = scratch("yarn-ok");
    let k = |s: &str| format!("llama.rope.scaling.{s}");
    let kvs = vec![
        (k("type"), Kv::Str("yarn".into())),
        (k("factor"), Kv::F32(4.0)),
        (k("original_context_length"), Kv::U32(512)),
        (k("yarn_beta_fast"), Kv::F32(8.0)),
        (k("yarn_beta_slow"), Kv::F32(1.0)),
    ];
    let (path, held) = write_gguf(&dir, "llama", &o, &w, kvs);
    check(SourceKind::Gguf, &path, &o, &held, false);
    let mut cfg = hf_config("llama", &o);
    cfg["rope_scaling"] = serde_json::json!({
        "rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 512,
        "beta_fast": 8.0, "beta_slow": 1.0,
    });
    let held = write_hf(&dir, &o, &w, cfg.clone(), false, 1);
    check(SourceKind::SafeTensors, &dir, &o, &held, true);
    // An explicit attention factor.
    cfg["rope_scaling"]["attention_factor"] = 1.5.into();
    let mut o15 = o.clone();
    o15.arch.rope_yarn = Some(llm_format::RopeYarn {
        attn_factor: 1.5,
        ..yarn
    });
    let held = write_hf(&dir, &o15, &w, cfg, false, 1);
    check(SourceKind::SafeTensors, &dir, &o15, &held, true);
    // YaRN matters at these positions: against plain RoPE, and against YaRN without its
    // attention factor.
    let prompt: Vec<u32> = (0..24).collect();
    let with = RefModel::new(o.clone(), &held).forward(&prompt);
    let mut plain = o.clone();
    plain.arch.rope_yarn = None;
    let mut unscaled = o.clone();
    unscaled.arch.rope_yarn = Some(llm_format::RopeYarn {
        attn_factor: 1.0,
        ..yarn
    });
    for other in [plain, unscaled] {
        let without = RefModel::new(other, &held).forward(&prompt);
        let d = with[23]
            .iter()
            .zip(&without[23])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(d > 1e-3, "YaRN changes the logits by only {d}");
    }
}

#[test]
fn unsupported_rope_scaling_is_refused() {
    let o = base(true, 2);
    let w = random_weights(&o, 305);
    let dir = scratch("yarn");
    let mut cfg = hf_config("llama", &o);
    cfg["rope_scaling"] = serde_json::json!({"rope_type": "longrope", "factor": 4.0});
    write_hf(&dir, &o, &w, cfg, false, 1);
    let e = import(SourceKind::SafeTensors, &dir, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("'longrope'") && e.contains("yarn"), "{e}");
    let kvs = vec![("llama.rope.scaling.type".into(), Kv::Str("longrope".into()))];
    let (path, _) = write_gguf(&dir, "llama", &o, &w, kvs);
    let e = import(SourceKind::Gguf, &path, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("'longrope'") && e.contains("yarn"), "{e}");
    // YaRN with DeepSeek's log multiplier is not run.
    let kvs = vec![
        ("llama.rope.scaling.type".into(), Kv::Str("yarn".into())),
        ("llama.rope.scaling.factor".into(), Kv::F32(4.0)),
        (
            "llama.rope.scaling.yarn_log_multiplier".into(),
            Kv::F32(0.1),
        ),
    ];
    let (path, _) = write_gguf(&dir, "llama", &o, &w, kvs);
    let e = import(SourceKind::Gguf, &path, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("yarn_log_multiplier"), "{e}");
}

/// A SmolLM2-style checkpoint (llama architecture in GGUF, tied embeddings, GQA) as
/// users import it, run on the GPU forward pass (`llmrt::cuda::GpuContext`, here on the
/// CPU emulator): its greedy tokens are the CPU context's (f32 weights and cache).
#[test]
fn an_imported_llama_gguf_decodes_on_the_gpu_path_like_the_cpu() {
    let gpu = match llmrt_cuda::Gpu::emulated() {
        Ok(g) => g,
        Err(e) => {
            eprintln!("skipped: {e}");
            return;
        }
    };
    let o = base(true, 2);
    let w = random_weights(&o, 311 ^ test_seed(0));
    let dir = scratch("smollm2-gpu");
    let (path, _) = write_gguf(&dir, "llama", &o, &w, vec![]);
    let m = import(SourceKind::Gguf, &path, None).expect("import");
    let bytes = m
        .to_writer(None)
        .expect("writer")
        .to_bytes()
        .expect("bytes");
    let model = Arc::new(Model::from_bytes(&bytes).expect("load"));
    let prompt: Vec<u32> = (0..10)
        .map(|i| (i * 13 + 5) % o.vocab_size as u32)
        .collect();
    let (cpu, on_gpu, _) = gpu_util::greedy_cpu_and_gpu(model, gpu, &prompt, 16);
    assert_eq!(
        cpu, on_gpu,
        "greedy tokens of the imported model, CPU then GPU path"
    );
}
