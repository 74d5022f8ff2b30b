//! Hugging Face directories written by this test with the `safetensors` crate:
//! GPT-2 (Conv1D weights transposed, c_attn split into q/k/v, with and without the
//! `transformer.` prefix, F32 and F16) and LLaMA (q/k un-permuted from rotate-half
//! back to adjacent pairs, checked against the forward permutation written here).

mod import_util;

use half::f16;
use import_util::{assert_bits, f32_tensor, scratch, write_and_check, Rng};
use llm_format::{LlmFile, Mlp, Norm, Positions, TokenizerKind};
use llm_train::import::{import, SourceKind};
use safetensors::tensor::TensorView;
use safetensors::{serialize, Dtype};
use std::collections::HashMap;
use std::path::Path;

/// Writes `model.safetensors` from (name, shape, f32 values), stored as `dtype`.
fn write_st(dir: &Path, tensors: &[(String, Vec<usize>, Vec<f32>)], dtype: Dtype) {
    write_st_file(dir, "model.safetensors", tensors, dtype);
}

/// Writes one safetensors file `file` in `dir`.
fn write_st_file(dir: &Path, file: &str, tensors: &[(String, Vec<usize>, Vec<f32>)], dtype: Dtype) {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, s, x)| {
            let b = match dtype {
                Dtype::F16 => x
                    .iter()
                    .flat_map(|v| f16::from_f32(*v).to_le_bytes())
                    .collect(),
                Dtype::BF16 => x
                    .iter()
                    .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
                    .collect(),
                _ => x.iter().flat_map(|v| v.to_le_bytes()).collect(),
            };
            (n.clone(), s.clone(), b)
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = bytes
        .iter()
        .map(|(n, s, b)| (n.clone(), TensorView::new(dtype, s.clone(), b).unwrap()))
        .collect();
    std::fs::write(dir.join(file), serialize(views, None).unwrap()).unwrap();
}

const C: usize = 32;
const L: usize = 2;
const V: usize = 24;
const T: usize = 16;

fn gpt2_tokenizer_json() -> String {
    let mut vocab = serde_json::Map::new();
    // The merges' pieces and results are tokens (the import checks the tokenizer
    // loads): "Ġ" + "t" → "Ġt", "t" + "1" → "t1".
    for i in 0..V - 1 {
        let t = match i {
            0 => "\u{120}".to_string(),
            1 => "t".to_string(),
            2 => "\u{120}t".to_string(),
            4 => "1".to_string(),
            5 => "t1".to_string(),
            _ => format!("\u{120}t{i}"),
        };
        vocab.insert(t, i.into());
    }
    serde_json::json!({
        "version": "1.0",
        "added_tokens": [{"id": V - 1, "content": "<|endoftext|>", "special": true}],
        "model": {"type": "BPE", "vocab": vocab, "merges": ["\u{120} t", ["t", "1"]]}
    })
    .to_string()
}

/// Element (r, c) of a row-major `[rows, cols]` array.
fn at(x: &[f32], cols: usize, r: usize, c: usize) -> f32 {
    x[r * cols + c]
}

fn gpt2(prefix: &str, dtype: Dtype, seed: u64) {
    let mut rng = Rng::new(seed);
    let dir = scratch(&format!("st_gpt2_{}{dtype:?}", prefix.len()));
    let round = |x: Vec<f32>| -> Vec<f32> {
        match dtype {
            Dtype::F16 => x.iter().map(|v| f16::from_f32(*v).to_f32()).collect(),
            _ => x,
        }
    };
    let mut t: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut add = |name: String, shape: Vec<usize>, rng: &mut Rng| {
        let n = shape.iter().product();
        t.push((name, shape, round(rng.vec(n))));
    };
    add(format!("{prefix}wte.weight"), vec![V, C], &mut rng);
    add(format!("{prefix}wpe.weight"), vec![T, C], &mut rng);
    for l in 0..L {
        let h = format!("{prefix}h.{l}");
        add(format!("{h}.ln_1.weight"), vec![C], &mut rng);
        add(format!("{h}.ln_1.bias"), vec![C], &mut rng);
        add(format!("{h}.attn.c_attn.weight"), vec![C, 3 * C], &mut rng);
        add(format!("{h}.attn.c_attn.bias"), vec![3 * C], &mut rng);
        add(format!("{h}.attn.c_proj.weight"), vec![C, C], &mut rng);
        add(format!("{h}.attn.c_proj.bias"), vec![C], &mut rng);
        add(format!("{h}.ln_2.weight"), vec![C], &mut rng);
        add(format!("{h}.ln_2.bias"), vec![C], &mut rng);
        add(format!("{h}.mlp.c_fc.weight"), vec![C, 4 * C], &mut rng);
        add(format!("{h}.mlp.c_fc.bias"), vec![4 * C], &mut rng);
        add(format!("{h}.mlp.c_proj.weight"), vec![4 * C, C], &mut rng);
        add(format!("{h}.mlp.c_proj.bias"), vec![C], &mut rng);
        // The causal-mask buffer some exports carry is not a weight.
    }
    add(format!("{prefix}ln_f.weight"), vec![C], &mut rng);
    add(format!("{prefix}ln_f.bias"), vec![C], &mut rng);
    write_st(&dir, &t, dtype);
    let cfg = serde_json::json!({
        "model_type": "gpt2", "n_embd": C, "n_layer": L, "n_head": 4, "n_positions": T,
        "vocab_size": V, "n_inner": null, "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new"
    });
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    std::fs::write(dir.join("tokenizer.json"), gpt2_tokenizer_json()).unwrap();
    // The folder seeds the fuzz target (scripts/fuzz-corpus.sh).
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    llm_format::testing::fuzz_seed(
        "safetensors_import",
        &format!("gpt2_{}{dtype:?}", prefix.len()),
        &[
            &read("config.json"),
            &read("tokenizer.json"),
            &read("model.safetensors"),
        ],
    );

    let m = import(SourceKind::SafeTensors, &dir, None).unwrap();
    let o = &m.opts;
    assert_eq!(
        (
            o.d_model,
            o.n_layers,
            o.n_heads,
            o.d_ff,
            o.vocab_size,
            o.max_len
        ),
        (C, L, 4, 4 * C, V, T)
    );
    assert_eq!(
        (o.positions, o.norm, o.mlp, o.bias, o.tied_embeddings),
        (Positions::Learned, Norm::LayerNorm, Mlp::Gelu, true, true)
    );
    let out = write_and_check(&m, None);
    let f = LlmFile::parse(&out).unwrap();
    let src: HashMap<&str, &Vec<f32>> = t.iter().map(|(n, _, x)| (n.as_str(), x)).collect();
    let s = |n: String| *src.get(n.as_str()).unwrap();
    assert_bits(
        &f32_tensor(&f, "tok_emb"),
        s(format!("{prefix}wte.weight")),
        "tok_emb",
    );
    assert_bits(
        &f32_tensor(&f, "pos_emb"),
        s(format!("{prefix}wpe.weight")),
        "pos_emb",
    );
    for l in 0..L {
        let h = format!("{prefix}h.{l}");
        let b = format!("blk.{l}");
        let c_attn = s(format!("{h}.attn.c_attn.weight")); // [C in, 3C out]
        let c_attn_b = s(format!("{h}.attn.c_attn.bias"));
        for (j, n) in ["attn_q", "attn_k", "attn_v"].iter().enumerate() {
            let w = f32_tensor(&f, &format!("{b}.{n}.weight")); // [C out, C in]
            for o in 0..C {
                for i in 0..C {
                    assert_eq!(
                        at(&w, C, o, i).to_bits(),
                        at(c_attn, 3 * C, i, j * C + o).to_bits(),
                        "{b}.{n}[{o},{i}]"
                    );
                }
            }
            assert_bits(
                &f32_tensor(&f, &format!("{b}.{n}.bias")),
                &c_attn_b[j * C..(j + 1) * C],
                n,
            );
        }
        for (ours, theirs, i_n, o_n) in [
            ("attn_out", "attn.c_proj", C, C),
            ("mlp_up", "mlp.c_fc", C, 4 * C),
            ("mlp_down", "mlp.c_proj", 4 * C, C),
        ] {
            let w = f32_tensor(&f, &format!("{b}.{ours}.weight"));
            let x = s(format!("{h}.{theirs}.weight"));
            for o in 0..o_n {
                for i in 0..i_n {
                    assert_eq!(
                        at(&w, i_n, o, i).to_bits(),
                        at(x, o_n, i, o).to_bits(),
                        "{b}.{ours}[{o},{i}]"
                    );
                }
            }
            assert_bits(
                &f32_tensor(&f, &format!("{b}.{ours}.bias")),
                s(format!("{h}.{theirs}.bias")),
                ours,
            );
        }
        assert_bits(
            &f32_tensor(&f, &format!("{b}.attn_norm.weight")),
            s(format!("{h}.ln_1.weight")),
            "ln_1",
        );
        assert_bits(
            &f32_tensor(&f, &format!("{b}.mlp_norm.bias")),
            s(format!("{h}.ln_2.bias")),
            "ln_2",
        );
    }
    assert_bits(
        &f32_tensor(&f, "out_norm.bias"),
        s(format!("{prefix}ln_f.bias")),
        "ln_f",
    );
    let tk = f.tokenizer().unwrap();
    assert_eq!(tk.kind, TokenizerKind::Gpt2);
    assert_eq!(
        (tk.bos, tk.eos, tk.add_bos),
        (None, Some(V as u32 - 1), false)
    );
    assert_eq!(tk.tokens[3], "\u{120}t3");
    assert_eq!(tk.merges, vec!["\u{120} t", "t 1"]);
}

#[test]
fn gpt2_f32_with_prefix() {
    gpt2("transformer.", Dtype::F32, 41);
}

#[test]
fn gpt2_f16_without_prefix() {
    gpt2("", Dtype::F16, 42);
}

#[test]
fn llama_sharded_qk_unpermuted() {
    let (d, f, l, nh, nkv, v) = (64usize, 96usize, 2usize, 4usize, 2usize, 20usize);
    let hd = d / nh;
    let kv = nkv * hd;
    let mut rng = Rng::new(43);
    let dir = scratch("st_llama");
    // HF's convert_llama_weights_to_hf permute: Meta's adjacent-pair rows → rotate-half:
    // HF row h·hd + j·hd/2 + i = Meta row h·hd + 2i + j.
    let to_hf = |w: &[f32], heads: usize| -> Vec<f32> {
        let mut out = vec![0.0; w.len()];
        for h in 0..heads {
            for i in 0..hd / 2 {
                for j in 0..2 {
                    let (hf, meta) = (h * hd + j * hd / 2 + i, h * hd + 2 * i + j);
                    out[hf * d..(hf + 1) * d].copy_from_slice(&w[meta * d..(meta + 1) * d]);
                }
            }
        }
        out
    };
    let mut t: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut meta_q = Vec::new();
    let mut meta_k = Vec::new();
    t.push((
        "model.embed_tokens.weight".into(),
        vec![v, d],
        rng.vec(v * d),
    ));
    for li in 0..l {
        let p = format!("model.layers.{li}");
        let q = rng.vec(d * d);
        let k = rng.vec(kv * d);
        t.push((
            format!("{p}.self_attn.q_proj.weight"),
            vec![d, d],
            to_hf(&q, nh),
        ));
        t.push((
            format!("{p}.self_attn.k_proj.weight"),
            vec![kv, d],
            to_hf(&k, nkv),
        ));
        meta_q.push(q);
        meta_k.push(k);
        t.push((
            format!("{p}.self_attn.v_proj.weight"),
            vec![kv, d],
            rng.vec(kv * d),
        ));
        t.push((
            format!("{p}.self_attn.o_proj.weight"),
            vec![d, d],
            rng.vec(d * d),
        ));
        t.push((
            format!("{p}.mlp.gate_proj.weight"),
            vec![f, d],
            rng.vec(f * d),
        ));
        t.push((
            format!("{p}.mlp.up_proj.weight"),
            vec![f, d],
            rng.vec(f * d),
        ));
        t.push((
            format!("{p}.mlp.down_proj.weight"),
            vec![d, f],
            rng.vec(d * f),
        ));
        t.push((format!("{p}.input_layernorm.weight"), vec![d], rng.vec(d)));
        t.push((
            format!("{p}.post_attention_layernorm.weight"),
            vec![d],
            rng.vec(d),
        ));
    }
    t.push(("model.norm.weight".into(), vec![d], rng.vec(d)));
    t.push(("lm_head.weight".into(), vec![v, d], rng.vec(v * d)));
    // Two shards and an index, as HF writes larger checkpoints.
    let (a, b) = t.split_at(t.len() / 2);
    let names = [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ];
    write_st_file(&dir, names[0], a, Dtype::F32);
    write_st_file(&dir, names[1], b, Dtype::BF16);
    let mut map = serde_json::Map::new();
    for (part, file) in [(a, names[0]), (b, names[1])] {
        for x in part {
            map.insert(x.0.clone(), file.into());
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    // The second shard is BF16: compare against the bf16-rounded values.
    let split = a.len();
    let bf = |x: &[f32]| -> Vec<f32> {
        x.iter()
            .map(|v| half::bf16::from_f32(*v).to_f32())
            .collect()
    };
    for x in t.iter_mut().skip(split) {
        x.2 = bf(&x.2);
    }
    for li in 0..l {
        let pos = |n: &str| {
            t.iter()
                .position(|x| x.0 == format!("model.layers.{li}.self_attn.{n}"))
                .unwrap()
        };
        if pos("q_proj.weight") >= split {
            meta_q[li] = bf(&meta_q[li]);
        }
        if pos("k_proj.weight") >= split {
            meta_k[li] = bf(&meta_k[li]);
        }
    }
    let cfg = serde_json::json!({
        "model_type": "llama", "hidden_size": d, "intermediate_size": f, "num_hidden_layers": l,
        "num_attention_heads": nh, "num_key_value_heads": nkv, "vocab_size": v,
        "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "tie_word_embeddings": false, "hidden_act": "silu"
    });
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    // Byte-fallback BPE: "▁a" + "b" → "▁ab" is merge rank 1.
    let mut vocab = serde_json::Map::new();
    for (i, s) in [
        "<unk>",
        "<s>",
        "</s>",
        "<0x0A>",
        "\u{2581}",
        "a",
        "b",
        "\u{2581}a",
        "\u{2581}ab",
    ]
    .iter()
    .enumerate()
    {
        vocab.insert(s.to_string(), i.into());
    }
    for i in 9..v {
        vocab.insert(format!("x{i}"), i.into());
    }
    let tok = serde_json::json!({"model": {"type": "BPE", "byte_fallback": true, "vocab": vocab,
        "merges": ["\u{2581} a", "\u{2581}a b", "\u{2581}a b"]}});
    std::fs::write(dir.join("tokenizer.json"), tok.to_string()).unwrap();

    let m = import(SourceKind::SafeTensors, &dir, None).unwrap();
    let o = &m.opts;
    assert_eq!(
        (
            o.d_model,
            o.n_heads,
            o.n_kv_heads,
            o.d_ff,
            o.tied_embeddings
        ),
        (d, nh, nkv, f, false)
    );
    assert_eq!(
        (o.positions, o.norm, o.mlp),
        (Positions::Rope, Norm::RmsNorm, Mlp::SwiGlu)
    );
    let out = write_and_check(&m, None);
    let file = LlmFile::parse(&out).unwrap();
    for li in 0..l {
        assert_bits(
            &f32_tensor(&file, &format!("blk.{li}.attn_q.weight")),
            &meta_q[li],
            "q",
        );
        assert_bits(
            &f32_tensor(&file, &format!("blk.{li}.attn_k.weight")),
            &meta_k[li],
            "k",
        );
        let src = |n: &str| {
            t.iter()
                .find(|x| x.0 == format!("model.layers.{li}.{n}"))
                .unwrap()
                .2
                .clone()
        };
        assert_bits(
            &f32_tensor(&file, &format!("blk.{li}.attn_v.weight")),
            &src("self_attn.v_proj.weight"),
            "v",
        );
        assert_bits(
            &f32_tensor(&file, &format!("blk.{li}.mlp_gate.weight")),
            &src("mlp.gate_proj.weight"),
            "gate",
        );
        assert_bits(
            &f32_tensor(&file, &format!("blk.{li}.mlp_down.weight")),
            &src("mlp.down_proj.weight"),
            "down",
        );
    }
    let tk = file.tokenizer().unwrap();
    assert_eq!(tk.kind, TokenizerKind::SentencePiece);
    assert_eq!(
        (tk.unk, tk.bos, tk.eos, tk.add_bos),
        (Some(0), Some(1), Some(2), true)
    );
    // Scores: minus the rank of the first creating merge; others below every merge.
    assert_eq!(tk.scores[7], 0.0);
    assert_eq!(tk.scores[8], -1.0);
    assert_eq!(tk.scores[5], -4.0);
}

#[test]
fn missing_and_misshapen_tensors_are_errors() {
    let dir = scratch("st_bad");
    let cfg = serde_json::json!({"model_type": "gpt2", "n_embd": C, "n_layer": 1, "n_head": 4, "n_positions": T, "vocab_size": V});
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    std::fs::write(dir.join("tokenizer.json"), gpt2_tokenizer_json()).unwrap();
    let mut rng = Rng::new(44);
    write_st(
        &dir,
        &[("wte.weight".into(), vec![V, C + 1], rng.vec(V * (C + 1)))],
        Dtype::F32,
    );
    let e = import(SourceKind::SafeTensors, &dir, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("wte.weight") && e.contains("shape"), "{e}");
    write_st(
        &dir,
        &[("wte.weight".into(), vec![V, C], rng.vec(V * C))],
        Dtype::F32,
    );
    let e = import(SourceKind::SafeTensors, &dir, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing tensor 'wpe.weight'"), "{e}");
    // A corrupted safetensors header.
    let p = dir.join("model.safetensors");
    let mut b = std::fs::read(&p).unwrap();
    b[0] = 0xff;
    b[7] = 0x7f;
    std::fs::write(&p, &b).unwrap();
    let e = import(SourceKind::SafeTensors, &dir, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("model.safetensors"), "{e}");
}

#[test]
fn truncated_weights_and_json_are_errors() {
    gpt2("", Dtype::F32, 45); // writes and checks import_st_gpt2_0F32
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("import_st_gpt2_0F32");
    let st = dir.join("model.safetensors");
    let good = std::fs::read(&st).unwrap();
    let mut rng = Rng::new(46);
    let mut cuts: Vec<usize> = (0..64).collect();
    cuts.extend((0..60).map(|_| rng.below(good.len())));
    for cut in cuts {
        std::fs::write(&st, &good[..cut]).unwrap();
        let e = import(SourceKind::SafeTensors, &dir, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("model.safetensors"), "cut {cut}: {e}");
    }
    std::fs::write(&st, &good).unwrap();
    let tj = dir.join("tokenizer.json");
    let tok = std::fs::read(&tj).unwrap();
    for cut in [0, 1, tok.len() / 2, tok.len() - 1] {
        std::fs::write(&tj, &tok[..cut]).unwrap();
        let e = import(SourceKind::SafeTensors, &dir, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tokenizer.json") && e.contains("JSON"),
            "cut {cut}: {e}"
        );
    }
}

#[test]
fn chat_template_from_tokenizer_config_and_jinja_file() {
    use llm_train::import::safetensors::chat_template;
    let dir = scratch("st_chat_template");
    let _ = std::fs::remove_file(dir.join("chat_template.jinja"));
    let cfg = |j: &str| std::fs::write(dir.join("tokenizer_config.json"), j).unwrap();
    let _ = std::fs::remove_file(dir.join("tokenizer_config.json"));
    assert_eq!(chat_template(&dir).unwrap(), None, "no config file");
    cfg(r#"{"bos_token": "<s>"}"#);
    assert_eq!(chat_template(&dir).unwrap(), None, "no chat_template key");
    cfg(r#"{"chat_template": "{{ messages[0].content }}"}"#);
    assert_eq!(
        chat_template(&dir).unwrap().as_deref(),
        Some("{{ messages[0].content }}")
    );
    cfg(
        r#"{"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}"#,
    );
    assert_eq!(chat_template(&dir).unwrap().as_deref(), Some("D"));
    cfg(
        r#"{"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "rag", "template": "R"}]}"#,
    );
    let e = chat_template(&dir).unwrap_err().to_string();
    assert!(
        e.contains("no 'default'") && e.contains("tool_use, rag"),
        "{e}"
    );
    cfg(r#"{"chat_template": 7}"#);
    let e = chat_template(&dir).unwrap_err().to_string();
    assert!(
        e.contains("should be a string or a list, found a number"),
        "{e}"
    );
    cfg(r#"{"chat_template": [{"name": "default"}]}"#);
    assert!(chat_template(&dir).is_err());
    cfg("{not json");
    assert!(chat_template(&dir)
        .unwrap_err()
        .to_string()
        .contains("invalid JSON"));
    // transformers prefers chat_template.jinja over the config's key.
    cfg(r#"{"chat_template": "old"}"#);
    std::fs::write(dir.join("chat_template.jinja"), "new {{ x }}\n").unwrap();
    assert_eq!(
        chat_template(&dir).unwrap().as_deref(),
        Some("new {{ x }}\n")
    );
}
