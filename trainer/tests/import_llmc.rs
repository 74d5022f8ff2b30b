//! llm.c GPT-2 checkpoints (v3 fp32 and v5 bf16, padded vocab) and the llm.c
//! tokenizer: qkv split into q/k/v, padded rows dropped, bytes kept exactly.

mod import_util;

use half::bf16;
use import_util::{assert_bits, f32_tensor, scratch, write_and_check, Rng};
use llm_format::{DType, LlmFile, Mlp, Norm, Positions, TokenizerKind};
use llm_train::import::{import, SourceKind};

/// (max_seq_len, vocab, padded vocab, layers, heads, channels)
const CFG: (usize, usize, usize, usize, usize, usize) = (8, 50, 64, 2, 4, 32);

/// The parameter tensors in `fill_in_parameter_sizes` order with their element counts.
fn sizes() -> Vec<(&'static str, usize)> {
    let (t, _, vp, l, _, c) = CFG;
    vec![
        ("wte", vp * c),
        ("wpe", t * c),
        ("ln1w", l * c),
        ("ln1b", l * c),
        ("qkvw", l * 3 * c * c),
        ("qkvb", l * 3 * c),
        ("attprojw", l * c * c),
        ("attprojb", l * c),
        ("ln2w", l * c),
        ("ln2b", l * c),
        ("fcw", l * 4 * c * c),
        ("fcb", l * 4 * c),
        ("fcprojw", l * c * 4 * c),
        ("fcprojb", l * c),
        ("lnfw", c),
        ("lnfb", c),
    ]
}

/// Writes a checkpoint; returns its bytes and each parameter as the f32 values the
/// file holds (bf16-rounded for version 5).
fn checkpoint(rng: &mut Rng, version: i32) -> (Vec<u8>, Vec<Vec<f32>>) {
    let (t, v, vp, l, nh, c) = CFG;
    let mut header = [0i32; 256];
    header[..8].copy_from_slice(&[
        20240326, version, t as i32, v as i32, l as i32, nh as i32, c as i32, vp as i32,
    ]);
    let mut b: Vec<u8> = header.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut params = Vec::new();
    for (_, n) in sizes() {
        let x = rng.vec(n);
        if version == 3 {
            b.extend(x.iter().flat_map(|v| v.to_le_bytes()));
            params.push(x);
        } else {
            let h: Vec<bf16> = x.iter().map(|v| bf16::from_f32(*v)).collect();
            b.extend(h.iter().flat_map(|v| v.to_le_bytes()));
            params.push(h.iter().map(|v| v.to_f32()).collect());
        }
    }
    (b, params)
}

/// GPT-2's bytes_to_unicode, written the Python way (lists, then the leftovers).
fn bytes_to_unicode() -> Vec<char> {
    let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xa1..=0xac)
        .chain(0xae..=0xff)
        .collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    let mut table = vec!['\0'; 256];
    for (b, c) in bs.iter().zip(&cs) {
        table[*b as usize] = char::from_u32(*c).unwrap();
    }
    table
}

fn tokenizer(rng: &mut Rng) -> (Vec<u8>, Vec<Vec<u8>>) {
    let v = CFG.1;
    let mut header = [0u32; 256];
    header[..4].copy_from_slice(&[20240328, 2, v as u32, (v - 1) as u32]);
    let mut b: Vec<u8> = header.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut toks = Vec::new();
    for i in 0..v {
        let tok: Vec<u8> = match i {
            0 => b" the".to_vec(),
            1 => b"\n\n".to_vec(),
            2 => vec![0xff, 0x00, 0xad],
            _ => (0..1 + rng.below(5))
                .map(|_| rng.below(256) as u8)
                .collect(),
        };
        b.push(tok.len() as u8);
        b.extend(&tok);
        toks.push(tok);
    }
    (b, toks)
}

fn run(version: i32, seed: u64) {
    let (t, v, _, l, nh, c) = CFG;
    let mut rng = Rng::new(seed);
    let (model, p) = checkpoint(&mut rng, version);
    let (tok, raw_toks) = tokenizer(&mut rng);
    let dir = scratch(&format!("llmc_v{version}"));
    let (mp, tp) = (dir.join("gpt2.bin"), dir.join("tok.bin"));
    std::fs::write(&mp, &model).unwrap();
    std::fs::write(&tp, &tok).unwrap();
    let m = import(SourceKind::Llmc, &mp, Some(&tp)).unwrap();
    let o = &m.opts;
    assert_eq!(
        (
            o.max_len,
            o.vocab_size,
            o.n_layers,
            o.n_heads,
            o.n_kv_heads,
            o.d_model,
            o.d_ff
        ),
        (t, v, l, nh, nh, c, 4 * c)
    );
    assert_eq!(
        (o.positions, o.norm, o.mlp, o.bias, o.tied_embeddings),
        (Positions::Learned, Norm::LayerNorm, Mlp::Gelu, true, true)
    );
    let bytes = write_and_check(&m, None);
    let f = LlmFile::parse(&bytes).unwrap();

    // Matrices keep the source dtype; read them back as f32 for comparison.
    let mat_dtype = if version == 3 {
        DType::F32
    } else {
        DType::BF16
    };
    let mat = |name: &str| -> Vec<f32> {
        let t = f.tensor(name).unwrap();
        assert_eq!(t.dtype, mat_dtype, "{name}");
        llm_format::quant::dequantize_vec(t.dtype, t.data, t.n_elements()).unwrap()
    };
    let idx = |name: &str| sizes().iter().position(|(n, _)| *n == name).unwrap();
    let wte = &p[idx("wte")];
    // Padded rows V..Vp are dropped.
    assert_bits(&mat("tok_emb"), &wte[..v * c], "tok_emb");
    assert_bits(&f32_tensor(&f, "pos_emb"), &p[idx("wpe")], "pos_emb");
    for li in 0..l {
        let qkvw = &p[idx("qkvw")];
        let qkvb = &p[idx("qkvb")];
        for (j, n) in ["attn_q", "attn_k", "attn_v"].iter().enumerate() {
            let w = mat(&format!("blk.{li}.{n}.weight"));
            for r in 0..c {
                for col in 0..c {
                    // qkvw (L, 3C, C): row j·C + r of layer li.
                    let want = qkvw[li * 3 * c * c + (j * c + r) * c + col];
                    assert_eq!(
                        w[r * c + col].to_bits(),
                        want.to_bits(),
                        "blk.{li}.{n}[{r},{col}]"
                    );
                }
            }
            let bias = f32_tensor(&f, &format!("blk.{li}.{n}.bias"));
            assert_bits(
                &bias,
                &qkvb[li * 3 * c + j * c..li * 3 * c + (j + 1) * c],
                n,
            );
        }
        let layer = |name: &str, per: usize| p[idx(name)][li * per..(li + 1) * per].to_vec();
        assert_bits(
            &mat(&format!("blk.{li}.attn_out.weight")),
            &layer("attprojw", c * c),
            "attn_out",
        );
        assert_bits(
            &mat(&format!("blk.{li}.mlp_up.weight")),
            &layer("fcw", 4 * c * c),
            "mlp_up",
        );
        assert_bits(
            &mat(&format!("blk.{li}.mlp_down.weight")),
            &layer("fcprojw", 4 * c * c),
            "mlp_down",
        );
        for (ours, theirs, n) in [
            ("attn_norm.weight", "ln1w", c),
            ("attn_norm.bias", "ln1b", c),
            ("attn_out.bias", "attprojb", c),
            ("mlp_norm.weight", "ln2w", c),
            ("mlp_norm.bias", "ln2b", c),
            ("mlp_up.bias", "fcb", 4 * c),
            ("mlp_down.bias", "fcprojb", c),
        ] {
            assert_bits(
                &f32_tensor(&f, &format!("blk.{li}.{ours}")),
                &layer(theirs, n),
                ours,
            );
        }
    }
    assert_bits(&f32_tensor(&f, "out_norm.weight"), &p[idx("lnfw")], "lnfw");
    assert_bits(&f32_tensor(&f, "out_norm.bias"), &p[idx("lnfb")], "lnfb");

    let tk = f.tokenizer().unwrap();
    assert_eq!(tk.kind, TokenizerKind::Gpt2);
    assert_eq!(
        (tk.bos, tk.eos, tk.add_bos),
        (None, Some(v as u32 - 1), false)
    );
    let table = bytes_to_unicode();
    for (i, raw) in raw_toks.iter().enumerate() {
        let want: String = raw.iter().map(|b| table[*b as usize]).collect();
        assert_eq!(tk.tokens[i], want, "token {i}");
    }
    assert_eq!(tk.tokens[0], "\u{120}the");
    assert_eq!(tk.tokens[1], "\u{10a}\u{10a}");
}

#[test]
fn v3_fp32_padded_vocab() {
    run(3, 21);
}

#[test]
fn v5_bf16_padded_vocab() {
    run(5, 22);
}
