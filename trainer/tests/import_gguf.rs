//! GGUF v3 files written by this test (a small GGUF writer below): llama layout,
//! tensors in F32 / F16 / BF16 / Q8_0 / Q4_0 / Q4_1 land byte-identical in the .llm,
//! shapes reversed from ggml's `ne`, the embedded tokenizer (llama, gpt2 and bert kinds)
//! carried over; `--dtype` re-quantises the matrices only.

mod import_util;

use import_util::{scratch, write_and_check, Rng};
use llm_format::quant::{dequantize_vec, quantize};
use llm_format::{DType, LlmFile, Mlp, Norm, Positions, TokenizerKind};
use llm_train::import::{gguf, import, SourceKind};

/// A GGUF metadata value (the subset the test writes).
enum Kv {
    U32(u32),
    F32(f32),
    Bool(bool),
    Str(String),
    Strs(Vec<String>),
    F32s(Vec<f32>),
    /// Any type id with its payload, written as given.
    Raw(u32, Vec<u8>),
}

fn gguf_str(b: &mut Vec<u8>, s: &str) {
    b.extend((s.len() as u64).to_le_bytes());
    b.extend(s.as_bytes());
}

/// Writes a GGUF v3 file: `tensors` are (name, outermost-first shape, ggml type, bytes).
fn write_gguf(
    kvs: &[(&str, Kv)],
    tensors: &[(String, Vec<usize>, DType, Vec<u8>)],
    align: usize,
) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend((tensors.len() as u64).to_le_bytes());
    b.extend((kvs.len() as u64).to_le_bytes());
    for (k, v) in kvs {
        gguf_str(&mut b, k);
        match v {
            Kv::U32(x) => {
                b.extend(4u32.to_le_bytes());
                b.extend(x.to_le_bytes());
            }
            Kv::F32(x) => {
                b.extend(6u32.to_le_bytes());
                b.extend(x.to_le_bytes());
            }
            Kv::Bool(x) => {
                b.extend(7u32.to_le_bytes());
                b.push(*x as u8);
            }
            Kv::Str(s) => {
                b.extend(8u32.to_le_bytes());
                gguf_str(&mut b, s);
            }
            Kv::Strs(v) => {
                b.extend(9u32.to_le_bytes());
                b.extend(8u32.to_le_bytes());
                b.extend((v.len() as u64).to_le_bytes());
                v.iter().for_each(|s| gguf_str(&mut b, s));
            }
            Kv::F32s(v) => {
                b.extend(9u32.to_le_bytes());
                b.extend(6u32.to_le_bytes());
                b.extend((v.len() as u64).to_le_bytes());
                v.iter().for_each(|x| b.extend(x.to_le_bytes()));
            }
            Kv::Raw(ty, payload) => {
                b.extend(ty.to_le_bytes());
                b.extend(payload);
            }
        }
    }
    let mut off = 0usize;
    let mut offsets = Vec::new();
    for (name, shape, dt, data) in tensors {
        gguf_str(&mut b, name);
        b.extend((shape.len() as u32).to_le_bytes());
        for d in shape.iter().rev() {
            b.extend((*d as u64).to_le_bytes()); // ne: innermost first
        }
        b.extend(dt.to_u32().to_le_bytes());
        b.extend((off as u64).to_le_bytes());
        offsets.push(off);
        off = (off + data.len()).div_ceil(align) * align;
    }
    b.resize(b.len().div_ceil(align) * align, 0);
    let start = b.len();
    for ((_, _, _, data), o) in tensors.iter().zip(offsets) {
        b.resize(start + o, 0);
        b.extend(data);
    }
    b
}

// d_model 64, 2 layers, 4 heads, 2 kv heads (head_dim 16, kv_dim 32), d_ff 96, vocab 40.
const D: usize = 64;
const L: usize = 2;
const F: usize = 96;
const V: usize = 40;
const KV: usize = 32;

/// Random weights quantised into `dt` (real blocks with finite scales).
fn tensor(
    rng: &mut Rng,
    name: &str,
    shape: Vec<usize>,
    dt: DType,
) -> (String, Vec<usize>, DType, Vec<u8>) {
    let n: usize = shape.iter().product();
    let data = quantize(dt, &rng.vec(n)).unwrap();
    (name.to_string(), shape, dt, data)
}

fn llama_tensors(rng: &mut Rng, tied: bool) -> Vec<(String, Vec<usize>, DType, Vec<u8>)> {
    let mut t = vec![tensor(rng, "token_embd.weight", vec![V, D], DType::Q8_0)];
    for l in 0..L {
        let b = format!("blk.{l}");
        // Every dtype appears; the layers use different assignments.
        let (q, k, v, o) = if l == 0 {
            (DType::Q4_0, DType::Q4_1, DType::F16, DType::F32)
        } else {
            (DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_1)
        };
        t.push(tensor(
            rng,
            &format!("{b}.attn_norm.weight"),
            vec![D],
            DType::F32,
        ));
        t.push(tensor(rng, &format!("{b}.attn_q.weight"), vec![D, D], q));
        t.push(tensor(rng, &format!("{b}.attn_k.weight"), vec![KV, D], k));
        t.push(tensor(rng, &format!("{b}.attn_v.weight"), vec![KV, D], v));
        t.push(tensor(
            rng,
            &format!("{b}.attn_output.weight"),
            vec![D, D],
            o,
        ));
        t.push(tensor(
            rng,
            &format!("{b}.ffn_norm.weight"),
            vec![D],
            DType::F32,
        ));
        t.push(tensor(
            rng,
            &format!("{b}.ffn_gate.weight"),
            vec![F, D],
            DType::Q8_0,
        ));
        t.push(tensor(
            rng,
            &format!("{b}.ffn_up.weight"),
            vec![F, D],
            DType::Q4_1,
        ));
        t.push(tensor(
            rng,
            &format!("{b}.ffn_down.weight"),
            vec![D, F],
            DType::Q4_0,
        ));
    }
    t.push(tensor(rng, "output_norm.weight", vec![D], DType::F32));
    if !tied {
        t.push(tensor(rng, "output.weight", vec![V, D], DType::F16));
    }
    t
}

/// The llama metadata; `general.alignment` is written only when it is not the default 32.
fn llama_kvs(tok_model: &str, align: u32) -> Vec<(&'static str, Kv)> {
    let tokens: Vec<String> = (0..V)
        .map(|i| match i {
            0 => "<unk>".into(),
            1 => "<s>".into(),
            2 => "</s>".into(),
            3 => "<0x0A>".into(),
            _ => format!("\u{2581}w{i}"),
        })
        .collect();
    let mut kvs = vec![
        ("general.architecture", Kv::Str("llama".into())),
        ("llama.embedding_length", Kv::U32(D as u32)),
        ("llama.block_count", Kv::U32(L as u32)),
        ("llama.feed_forward_length", Kv::U32(F as u32)),
        ("llama.attention.head_count", Kv::U32(4)),
        ("llama.attention.head_count_kv", Kv::U32(2)),
        ("llama.context_length", Kv::U32(128)),
        ("llama.rope.freq_base", Kv::F32(500000.0)),
        ("llama.attention.layer_norm_rms_epsilon", Kv::F32(1e-6)),
        ("tokenizer.ggml.model", Kv::Str(tok_model.into())),
        ("tokenizer.ggml.tokens", Kv::Strs(tokens)),
        ("tokenizer.ggml.bos_token_id", Kv::U32(1)),
        ("tokenizer.ggml.eos_token_id", Kv::U32(2)),
        ("tokenizer.ggml.unknown_token_id", Kv::U32(0)),
        (
            "tokenizer.ggml.add_bos_token",
            Kv::Bool(tok_model == "llama"),
        ),
    ];
    if align != 32 {
        kvs.push(("general.alignment", Kv::U32(align)));
    }
    if tok_model == "llama" {
        kvs.push((
            "tokenizer.ggml.scores",
            Kv::F32s((0..V).map(|i| -(i as f32) * 0.5).collect()),
        ));
    } else {
        kvs.push((
            "tokenizer.ggml.merges",
            Kv::Strs(vec!["\u{2581} w".into(), "w 1".into()]),
        ));
    }
    kvs
}

fn canonical(gguf_name: &str) -> String {
    gguf_name
        .replace("token_embd.weight", "tok_emb")
        .replace("attn_output", "attn_out")
        .replace("ffn_norm", "mlp_norm")
        .replace("ffn_gate", "mlp_gate")
        .replace("ffn_up", "mlp_up")
        .replace("ffn_down", "mlp_down")
        .replace("output_norm", "out_norm")
}

#[test]
fn blocks_land_byte_identical() {
    for (seed, tied) in [(31u64, false), (32, true)] {
        let mut rng = Rng::new(seed);
        let tensors = llama_tensors(&mut rng, tied);
        let bytes = write_gguf(&llama_kvs("llama", 64), &tensors, 64);
        // Seeds the fuzz target (scripts/fuzz-corpus.sh).
        llm_format::testing::fuzz_seed("gguf_import", &format!("llama_{tied}"), &[&bytes]);
        let dir = scratch(&format!("gguf_{tied}"));
        let p = dir.join("m.gguf");
        std::fs::write(&p, &bytes).unwrap();
        let m = import(SourceKind::Gguf, &p, None).unwrap();
        let o = &m.opts;
        assert_eq!(
            (
                o.d_model,
                o.n_layers,
                o.n_heads,
                o.n_kv_heads,
                o.d_ff,
                o.vocab_size,
                o.max_len
            ),
            (D, L, 4, 2, F, V, 128)
        );
        assert_eq!(
            (o.positions, o.norm, o.mlp, o.bias, o.tied_embeddings),
            (Positions::Rope, Norm::RmsNorm, Mlp::SwiGlu, false, tied)
        );
        assert_eq!((o.rope_base, o.norm_eps), (500000.0, 1e-6));
        let out = write_and_check(&m, None);
        let f = LlmFile::parse(&out).unwrap();
        for (name, shape, dt, data) in &tensors {
            let t = f
                .tensor(&canonical(name))
                .unwrap_or_else(|| panic!("{name}"));
            assert_eq!(t.dtype, *dt, "{name}");
            assert_eq!(&t.shape, shape, "{name}");
            assert!(t.data == data.as_slice(), "{name}: bytes differ");
        }
        assert_eq!(f.tensors().len(), tensors.len());
        let tk = f.tokenizer().unwrap();
        assert_eq!(tk.kind, TokenizerKind::SentencePiece);
        assert_eq!(
            (tk.bos, tk.eos, tk.unk, tk.add_bos),
            (Some(1), Some(2), Some(0), true)
        );
        assert_eq!(tk.tokens[5], "\u{2581}w5");
        assert_eq!(tk.scores[7], -3.5);
    }
}

#[test]
fn gpt2_tokenizer_kind() {
    let mut rng = Rng::new(33);
    let bytes = write_gguf(&llama_kvs("gpt2", 32), &llama_tensors(&mut rng, true), 32);
    llm_format::testing::fuzz_seed("gguf_import", "gpt2_tokenizer", &[&bytes]);
    let g = gguf::parse(&bytes, "m.gguf").unwrap();
    let tk = gguf::tokenizer(&g, "m.gguf").unwrap();
    assert_eq!(tk.kind, TokenizerKind::Gpt2);
    assert_eq!(tk.merges, vec!["\u{2581} w", "w 1"]);
    assert!(!tk.add_bos);
    assert!(tk.scores.is_empty());
}

#[test]
fn dtype_requantises_matrices_only() {
    let mut rng = Rng::new(34);
    let tensors = llama_tensors(&mut rng, false);
    let bytes = write_gguf(&llama_kvs("llama", 64), &tensors, 64);
    let g = gguf::parse(&bytes, "m.gguf").unwrap();
    let m = gguf::to_model(&g, "m.gguf").unwrap();
    for target in [DType::Q8_0, DType::Q4_0, DType::F16] {
        let out = write_and_check(&m, Some(target));
        let f = LlmFile::parse(&out).unwrap();
        for (name, shape, dt, data) in &tensors {
            let t = f.tensor(&canonical(name)).unwrap();
            if shape.len() == 1 {
                // Norms stay f32, bytes untouched.
                assert_eq!(t.dtype, DType::F32);
                assert!(t.data == data.as_slice());
                continue;
            }
            assert_eq!(t.dtype, target, "{name}");
            if *dt == target {
                assert!(
                    t.data == data.as_slice(),
                    "{name}: same dtype must stay byte-identical"
                );
            } else {
                // Dequantise the source, quantise with the reference: must match exactly.
                let n: usize = shape.iter().product();
                let x = dequantize_vec(*dt, data, n).unwrap();
                assert!(
                    t.data == quantize(target, &x).unwrap().as_slice(),
                    "{name} as {target}"
                );
            }
        }
    }
}

#[test]
fn truncated_and_corrupted_files_are_errors() {
    let mut rng = Rng::new(35);
    let bytes = write_gguf(&llama_kvs("llama", 32), &llama_tensors(&mut rng, false), 32);
    let run = |b: &[u8]| gguf::parse(b, "m.gguf").and_then(|g| gguf::to_model(&g, "m.gguf"));
    assert!(run(&bytes).is_ok());
    // Every truncation: header and directory byte by byte, the data section sampled.
    let mut cut = 0;
    while cut < bytes.len() {
        let e = run(&bytes[..cut])
            .err()
            .unwrap_or_else(|| panic!("truncated at {cut} parsed"));
        assert!(e.to_string().starts_with("m.gguf"), "{e}");
        cut += if cut < 4096 { 1 } else { 61 };
    }
    // Random byte flips and random 8-byte garbage: an Ok or an error, never a panic.
    for i in 0..3000 {
        let mut b = bytes.clone();
        let at = rng.below(if i % 2 == 0 {
            4096.min(b.len())
        } else {
            b.len()
        });
        if i % 3 == 0 && at + 8 <= b.len() {
            b[at..at + 8].copy_from_slice(&rng.next_u64().to_le_bytes());
        } else {
            b[at] ^= 1 << rng.below(8);
        }
        let _ = run(&b);
    }
    // Hostile counts: a huge tensor count and a huge array length.
    let mut b = bytes.clone();
    b[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(run(&b).unwrap_err().to_string().contains("cannot fit"));
    // A block count of millions (found by the fuzzer, which timed out building the
    // tensor directory of that many layers): refused at once, naming the counts.
    let mut kvs = llama_kvs("llama", 32);
    for kv in kvs.iter_mut().filter(|kv| kv.0 == "llama.block_count") {
        kv.1 = Kv::U32(4_456_706);
    }
    let b = write_gguf(&kvs, &llama_tensors(&mut rng, false), 32);
    let e = run(&b).unwrap_err().to_string();
    assert!(
        e.contains("4456706 layers declared, but the file has only"),
        "{e}"
    );
}

#[test]
fn nested_metadata_arrays_follow_the_format_rule() {
    // An array of one-element arrays, `levels` arrays deep, around one u8.
    let nested = |levels: usize| {
        let mut p = Vec::new();
        for _ in 1..levels {
            p.extend(9u32.to_le_bytes());
            p.extend(1u64.to_le_bytes());
        }
        p.extend(0u32.to_le_bytes());
        p.extend(1u64.to_le_bytes());
        p.push(7);
        Kv::Raw(9, p)
    };
    let mut rng = Rng::new(37);
    let tensors = llama_tensors(&mut rng, false);
    let run = |levels: usize| {
        let mut kvs = llama_kvs("llama", 32);
        kvs.push(("x.nested", nested(levels)));
        let bytes = write_gguf(&kvs, &tensors, 32);
        gguf::parse(&bytes, "m.gguf").map(|g| g.meta["x.nested"].clone().into_owned())
    };
    // Arrays of arrays (llama.cpp writes one level) read as they are, three deep at most,
    // the `.llm` reader's rule; deeper is an error naming the file and the key.
    assert!(run(2).is_ok());
    assert!(run(3).is_ok());
    let e = run(4).unwrap_err().to_string();
    assert!(
        e.starts_with("m.gguf: metadata key 'x.nested'") && e.contains("nested more than 3 deep"),
        "{e}"
    );
}

#[test]
fn binary_import_with_dtype() {
    let mut rng = Rng::new(36);
    let tensors = llama_tensors(&mut rng, false);
    let dir = scratch("gguf_bin");
    let (p, out) = (dir.join("m.gguf"), dir.join("m.llm"));
    std::fs::write(&p, write_gguf(&llama_kvs("llama", 32), &tensors, 32)).unwrap();
    let r = std::process::Command::new(env!("CARGO_BIN_EXE_llm-train"))
        .args(["import", "--from", "gguf", "--model", p.to_str().unwrap()])
        .args(["--out", out.to_str().unwrap(), "--dtype", "q4_1"])
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let bytes = std::fs::read(&out).unwrap();
    let f = LlmFile::parse(&bytes).unwrap();
    let o = f.options().unwrap();
    f.check_layout(&o).unwrap();
    for slot in o.tensor_layout() {
        let want = if slot.matrix { DType::Q4_1 } else { DType::F32 };
        assert_eq!(f.tensor(&slot.name).unwrap().dtype, want, "{}", slot.name);
    }
    let src = f.get("provenance.source").and_then(|v| v.as_str()).unwrap();
    assert_eq!(src, "gguf:m.gguf");
}

#[test]
fn chat_template_present_absent_and_wrong_type() {
    const KEY: &str = "tokenizer.chat_template";
    let template =
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}";
    let mut rng = Rng::new(35);
    let tensors = llama_tensors(&mut rng, true);
    let import_with = |kv: Option<Kv>| {
        let mut kvs = llama_kvs("gpt2", 32);
        // No merge rules: the fixture's rules are SentencePiece pieces, which a gpt2
        // vocabulary refuses at import since the tokenizer check runs there.
        for (k, v) in kvs.iter_mut() {
            if *k == "tokenizer.ggml.merges" {
                *v = Kv::Strs(Vec::new());
            }
        }
        if let Some(kv) = kv {
            kvs.push((KEY, kv));
        }
        let dir = scratch("gguf_chat_template");
        let p = dir.join("m.gguf");
        std::fs::write(&p, write_gguf(&kvs, &tensors, 32)).unwrap();
        import(SourceKind::Gguf, &p, None)
    };
    // Present: carried into the .llm under the same key, byte for byte.
    let m = import_with(Some(Kv::Str(template.into()))).unwrap();
    assert_eq!(m.chat_template.as_deref(), Some(template));
    let out = write_and_check(&m, None);
    let f = LlmFile::parse(&out).unwrap();
    assert_eq!(
        f.get(llm_format::options::keys::TOK_CHAT_TEMPLATE)
            .and_then(|v| v.as_str()),
        Some(template)
    );
    // Absent: no key in the .llm.
    let m = import_with(None).unwrap();
    assert_eq!(m.chat_template, None);
    let out = write_and_check(&m, None);
    let f = LlmFile::parse(&out).unwrap();
    assert!(f
        .get(llm_format::options::keys::TOK_CHAT_TEMPLATE)
        .is_none());
    // Wrong type: a one-line error naming the key and the type found.
    let e = match import_with(Some(Kv::U32(7))) {
        Ok(_) => panic!("a u32 chat template was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains(KEY) && e.contains("should be a string") && e.contains("u32"),
        "{e}"
    );
}

/// issue 16: a corrupt merge rule used to import with exit 0 into a file that would
/// not load; the runtime's tokenizer check now runs at import.
#[test]
fn a_corrupt_merge_rule_fails_import() {
    let mut rng = Rng::new(37);
    let tensors = llama_tensors(&mut rng, true);
    let dir = scratch("gguf_bad_merge");
    // Rules whose pieces are tokens (or none at all) load; a rule without its
    // separator does not.
    let with_merges = |m: Vec<String>| {
        let mut kvs = llama_kvs("gpt2", 32);
        for (k, v) in kvs.iter_mut() {
            if *k == "tokenizer.ggml.merges" {
                *v = Kv::Strs(m.clone());
            }
        }
        kvs
    };
    let kvs = with_merges(vec!["w1".into()]);
    let (p, out) = (dir.join("m.gguf"), dir.join("m.llm"));
    std::fs::write(&p, write_gguf(&kvs, &tensors, 32)).unwrap();
    let e = import(SourceKind::Gguf, &p, None).unwrap_err().to_string();
    assert!(e.contains("tokenizer would not load"), "{e}");
    let r = std::process::Command::new(env!("CARGO_BIN_EXE_llm-train"))
        .args(["import", "--from", "gguf", "--model", p.to_str().unwrap()])
        .args(["--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(1));
    assert!(!out.exists(), "nothing written");
    // The same file with no merge rules imports and loads.
    std::fs::write(&p, write_gguf(&with_merges(vec![]), &tensors, 32)).unwrap();
    let m = import(SourceKind::Gguf, &p, None).unwrap();
    let bytes = m.into_writer(None).unwrap().to_bytes().unwrap();
    llmrt::Model::from_bytes(&bytes).unwrap();
}

/// A BERT vocabulary as llama.cpp's converter stores it (`▁` on word-initial pieces):
/// [PAD] [UNK] [CLS] [SEP] [MASK], then pieces, filled up to `V`.
fn bert_kvs(extra: Vec<(&'static str, Kv)>) -> Vec<(&'static str, Kv)> {
    let pieces = ["▁hello", "▁world", "▁he", "llo", "▁,", "▁!", "▁wor", "ld"];
    let tokens: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .into_iter()
        .chain(pieces)
        .map(String::from)
        .chain((13..V).map(|i| format!("\u{2581}w{i}")))
        .collect();
    let mut kvs: Vec<_> = llama_kvs("bert", 32)
        .into_iter()
        .filter(|(k, _)| !k.starts_with("tokenizer."))
        .collect();
    kvs.push(("tokenizer.ggml.model", Kv::Str("bert".into())));
    kvs.push(("tokenizer.ggml.tokens", Kv::Strs(tokens)));
    kvs.extend(extra);
    kvs
}

/// GGUF's `bert` tokenizer imports as WPM: [CLS]/[SEP] as BOS/EOS, added with the
/// special tokens; the normaliser keys carried into the `.llm`; the runtime tokenizes
/// the imported file as llama.cpp's WPM.
#[test]
fn bert_tokenizer_imports_as_wpm() {
    let mut rng = Rng::new(38);
    let tensors = llama_tensors(&mut rng, true);
    let kvs = bert_kvs(vec![
        ("tokenizer.ggml.bos_token_id", Kv::U32(2)),
        ("tokenizer.ggml.seperator_token_id", Kv::U32(3)),
        ("tokenizer.ggml.unknown_token_id", Kv::U32(1)),
        ("tokenizer.ggml.padding_token_id", Kv::U32(0)),
        ("tokenizer.ggml.normalizer.lowercase", Kv::Bool(false)),
    ]);
    let dir = scratch("gguf_bert");
    let (p, out) = (dir.join("m.gguf"), dir.join("m.llm"));
    std::fs::write(&p, write_gguf(&kvs, &tensors, 32)).unwrap();
    let r = std::process::Command::new(env!("CARGO_BIN_EXE_llm-train"))
        .args(["import", "--from", "gguf", "--model", p.to_str().unwrap()])
        .args(["--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let bytes = std::fs::read(&out).unwrap();
    let tk = LlmFile::parse(&bytes).unwrap().tokenizer().unwrap();
    assert_eq!(tk.kind, TokenizerKind::Wpm);
    assert_eq!(
        (tk.bos, tk.eos, tk.unk, tk.pad, tk.add_bos, tk.add_eos),
        (Some(2), Some(3), Some(1), Some(0), true, true)
    );
    assert_eq!((tk.lowercase, tk.strip_accents), (false, false));
    assert_eq!(tk.tokens[5], "\u{2581}hello");
    let tok = llmrt::tokenizer::Tokenizer::from_spec(&tk).unwrap();
    let special = llmrt::tokenizer::EncodeOptions {
        add_special: true,
        parse_special: true,
    };
    // [CLS] hello , world ld ! [SEP] (longest piece first); cased, "Hello" has no piece.
    assert_eq!(
        tok.encode_with("hello,worldld !", special).unwrap(),
        [2, 5, 9, 6, 12, 10, 3]
    );
    assert_eq!(tok.encode("Hello", false).unwrap(), [1]);

    // Without the keys: llama.cpp's defaults (ids 101/102/100 are outside this
    // vocabulary, so none; [PAD] 0), lowercase and accents stripped.
    let bytes = write_gguf(&bert_kvs(vec![]), &tensors, 32);
    let g = gguf::parse(&bytes, "m.gguf").unwrap();
    let tk = gguf::tokenizer(&g, "m.gguf").unwrap();
    assert_eq!(
        (
            tk.bos,
            tk.eos,
            tk.unk,
            tk.pad,
            tk.lowercase,
            tk.strip_accents
        ),
        (None, None, None, Some(0), true, true)
    );
    let tok = llmrt::tokenizer::Tokenizer::from_spec(&tk).unwrap();
    assert_eq!(tok.encode("Hélló", false).unwrap(), [5]);
}
