//! llama2.c checkpoints (legacy header with shared and separate classifier, v1
//! "ak42" header) and tokenizer.bin: every f32 lands bit-exact under its canonical
//! name, checked in this test's own index arithmetic over the arrays it wrote.

mod import_util;

use import_util::{assert_bits, f32_tensor, le, scratch, write_and_check, Rng};
use llm_format::{LlmFile, Mlp, Norm, Positions, TokenizerKind};
use llm_train::import::{import, SourceKind};
use std::path::Path;

/// (dim, hidden, layers, heads, kv_heads, vocab, seq_len)
const CFG: (usize, usize, usize, usize, usize, usize, usize) = (64, 96, 2, 4, 2, 37, 16);

/// The random weights of one checkpoint, as flat stacks in llama2.c's shapes.
struct Weights {
    emb: Vec<f32>,       // (V, D)
    rms_att: Vec<f32>,   // (L, D)
    wq: Vec<f32>,        // (L, D, D)
    wk: Vec<f32>,        // (L, KV, D)
    wv: Vec<f32>,        // (L, KV, D)
    wo: Vec<f32>,        // (L, D, D)
    rms_ffn: Vec<f32>,   // (L, D)
    w1: Vec<f32>,        // (L, F, D)
    w2: Vec<f32>,        // (L, D, F)
    w3: Vec<f32>,        // (L, F, D)
    rms_final: Vec<f32>, // (D)
    freq: Vec<f32>,      // (2, T, hs/2), unused
    wcls: Vec<f32>,      // (V, D)
}

fn weights(rng: &mut Rng) -> Weights {
    let (d, f, l, h, kvh, v, t) = CFG;
    let kv = kvh * d / h;
    Weights {
        emb: rng.vec(v * d),
        rms_att: rng.vec(l * d),
        wq: rng.vec(l * d * d),
        wk: rng.vec(l * kv * d),
        wv: rng.vec(l * kv * d),
        wo: rng.vec(l * d * d),
        rms_ffn: rng.vec(l * d),
        w1: rng.vec(l * f * d),
        w2: rng.vec(l * d * f),
        w3: rng.vec(l * f * d),
        rms_final: rng.vec(d),
        freq: rng.vec(t * (d / h)),
        wcls: rng.vec(v * d),
    }
}

fn header_ints(shared: bool, legacy: bool) -> Vec<u8> {
    let (d, f, l, h, kvh, v, t) = CFG;
    let vocab = if legacy && !shared {
        -(v as i32)
    } else {
        v as i32
    };
    [
        d as i32, f as i32, l as i32, h as i32, kvh as i32, vocab, t as i32,
    ]
    .iter()
    .flat_map(|x| x.to_le_bytes())
    .collect()
}

fn legacy_bytes(w: &Weights, shared: bool) -> Vec<u8> {
    let mut b = header_ints(shared, true);
    for x in [
        &w.emb,
        &w.rms_att,
        &w.wq,
        &w.wk,
        &w.wv,
        &w.wo,
        &w.rms_ffn,
        &w.w1,
        &w.w2,
        &w.w3,
        &w.rms_final,
        &w.freq,
    ] {
        b.extend(le(x));
    }
    if !shared {
        b.extend(le(&w.wcls));
    }
    b
}

fn v1_bytes(w: &Weights, shared: bool) -> Vec<u8> {
    let mut b = 0x616b_3432u32.to_le_bytes().to_vec();
    b.extend(1i32.to_le_bytes());
    b.extend(header_ints(shared, false));
    b.push(shared as u8);
    b.resize(256, 0);
    for x in [
        &w.rms_att,
        &w.rms_ffn,
        &w.rms_final,
        &w.emb,
        &w.wq,
        &w.wk,
        &w.wv,
        &w.wo,
        &w.w1,
        &w.w2,
        &w.w3,
    ] {
        b.extend(le(x));
    }
    if !shared {
        b.extend(le(&w.wcls));
    }
    b
}

/// Token 0 `<unk>`, 1 and 2 as llama2.c exports BOS/EOS, then byte tokens and words
/// whose SentencePiece `▁` llama2.c wrote as a space.
fn tokenizer_bytes(rng: &mut Rng) -> (Vec<u8>, Vec<String>, Vec<f32>) {
    let v = CFG.5;
    let mut pieces: Vec<String> = vec!["<unk>".into(), "\n<s>\n".into(), "\n</s>\n".into()];
    for i in 0..8 {
        pieces.push(format!("<0x{i:02X}>"));
    }
    let words = [" the", "a", " b", "é", " über", "ab", " ", "x y"];
    while pieces.len() < v {
        let w = words[pieces.len() % words.len()];
        pieces.push(format!("{w}{}", pieces.len()));
    }
    let scores: Vec<f32> = (0..v).map(|_| rng.f32() * 10.0).collect();
    let mut b = 16i32.to_le_bytes().to_vec();
    for (p, s) in pieces.iter().zip(&scores) {
        b.extend(s.to_le_bytes());
        b.extend((p.len() as i32).to_le_bytes());
        b.extend(p.as_bytes());
    }
    (b, pieces, scores)
}

fn check(
    dir: &Path,
    model_bytes: &[u8],
    w: &Weights,
    shared: bool,
    tok: (Vec<u8>, Vec<String>, Vec<f32>),
) {
    let (d, f, l, h, kvh, v, t) = CFG;
    let kv = kvh * d / h;
    let mp = dir.join("model.bin");
    let tp = dir.join("tokenizer.bin");
    std::fs::write(&mp, model_bytes).unwrap();
    std::fs::write(&tp, &tok.0).unwrap();
    let m = import(SourceKind::Llama2c, &mp, Some(&tp)).unwrap();
    let o = &m.opts;
    assert_eq!(
        (
            o.d_model,
            o.d_ff,
            o.n_layers,
            o.n_heads,
            o.n_kv_heads,
            o.vocab_size,
            o.max_len
        ),
        (d, f, l, h, kvh, v, t)
    );
    assert_eq!(
        (o.positions, o.norm, o.mlp, o.bias),
        (Positions::Rope, Norm::RmsNorm, Mlp::SwiGlu, false)
    );
    assert_eq!(o.tied_embeddings, shared);
    assert_eq!((o.norm_eps, o.rope_base), (1e-5, 10000.0));
    assert_eq!(m.source, "llama2c:model.bin");

    let bytes = write_and_check(&m, None);
    let file = LlmFile::parse(&bytes).unwrap();
    assert_bits(&f32_tensor(&file, "tok_emb"), &w.emb, "tok_emb");
    assert_bits(
        &f32_tensor(&file, "out_norm.weight"),
        &w.rms_final,
        "out_norm",
    );
    for li in 0..l {
        // (name, stack, rows, cols) with the stack laid out (L, rows, cols).
        for (name, stack, rows, cols) in [
            ("attn_norm", &w.rms_att, 1, d),
            ("attn_q", &w.wq, d, d),
            ("attn_k", &w.wk, kv, d),
            ("attn_v", &w.wv, kv, d),
            ("attn_out", &w.wo, d, d),
            ("mlp_norm", &w.rms_ffn, 1, d),
            ("mlp_gate", &w.w1, f, d),
            ("mlp_down", &w.w2, d, f),
            ("mlp_up", &w.w3, f, d),
        ] {
            let got = f32_tensor(&file, &format!("blk.{li}.{name}.weight"));
            assert_eq!(got.len(), rows * cols);
            // Spot-check value by value at element (r, c): stack[li·rows·cols + r·cols + c].
            for r in 0..rows {
                for c in 0..cols {
                    let want = stack[li * rows * cols + r * cols + c];
                    assert_eq!(
                        got[r * cols + c].to_bits(),
                        want.to_bits(),
                        "blk.{li}.{name}[{r},{c}]"
                    );
                }
            }
        }
    }
    if shared {
        assert!(file.tensor("output.weight").is_none());
    } else {
        assert_bits(&f32_tensor(&file, "output.weight"), &w.wcls, "output");
    }

    let tk = file.tokenizer().unwrap();
    assert_eq!(tk.kind, TokenizerKind::SentencePiece);
    assert_eq!(
        (tk.bos, tk.eos, tk.unk, tk.add_bos),
        (Some(1), Some(2), Some(0), true)
    );
    assert_eq!(tk.tokens[1], "<s>");
    assert_eq!(tk.tokens[2], "</s>");
    for i in 3..v {
        assert_eq!(tk.tokens[i], tok.1[i].replace(' ', "\u{2581}"), "token {i}");
        assert_eq!(tk.scores[i].to_bits(), tok.2[i].to_bits(), "score {i}");
    }
    assert_eq!(tk.tokens[3], "<0x00>");
    assert!(tk.tokens.iter().any(|t| t.starts_with("\u{2581}the")));
}

#[test]
fn legacy_shared_classifier() {
    let mut rng = Rng::new(11);
    let w = weights(&mut rng);
    let tok = tokenizer_bytes(&mut rng);
    check(
        &scratch("l2c_legacy_shared"),
        &legacy_bytes(&w, true),
        &w,
        true,
        tok,
    );
}

#[test]
fn legacy_separate_classifier() {
    let mut rng = Rng::new(12);
    let w = weights(&mut rng);
    let tok = tokenizer_bytes(&mut rng);
    check(
        &scratch("l2c_legacy_sep"),
        &legacy_bytes(&w, false),
        &w,
        false,
        tok,
    );
}

#[test]
fn v1_shared_and_separate() {
    for (i, shared) in [true, false].into_iter().enumerate() {
        let mut rng = Rng::new(13 + i as u64);
        let w = weights(&mut rng);
        let tok = tokenizer_bytes(&mut rng);
        check(
            &scratch(&format!("l2c_v1_{shared}")),
            &v1_bytes(&w, shared),
            &w,
            shared,
            tok,
        );
    }
}

#[test]
fn wrong_classifier_flag_is_a_size_error() {
    let mut rng = Rng::new(14);
    let w = weights(&mut rng);
    // A separate classifier's bytes under a "shared" header: the size check names it.
    let mut b = legacy_bytes(&w, false);
    b[20..24].copy_from_slice(&(CFG.5 as i32).to_le_bytes());
    let e = llm_train::import::llama2c::parse_checkpoint(&b, "m.bin")
        .unwrap_err()
        .to_string();
    assert!(e.contains("m.bin") && e.contains("bytes"), "{e}");
}
