//! `llm-train quantize` (library and binary): matrices re-quantised with the
//! reference quantiser, norms and biases untouched f32, metadata carried over,
//! provenance refreshed; rows that are not whole blocks give a one-line error.

mod import_util;

use import_util::{scratch, Rng};
use llm_format::quant::{dequantize_vec, quantize};
use llm_format::{
    DType, Layout, LlmFile, Mlp, ModelOptions, Norm, Positions, TokenizerKind, TokenizerSpec,
};
use llm_train::import::{ImportedModel, RawTensor};
use llm_train::quantize::requantize_file;
use std::borrow::Cow;
use std::path::Path;
use std::process::Command;

fn opts(d_ff: usize) -> ModelOptions {
    ModelOptions {
        vocab_size: 20,
        d_model: 64,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: 2,
        d_ff,
        max_len: 32,
        positions: Positions::Learned,
        norm: Norm::LayerNorm,
        mlp: Mlp::SwiGlu,
        bias: true,
        tied_embeddings: false,
        norm_eps: 1e-5,
        rope_base: 10000.0,
        arch: Default::default(),
    }
}

/// A model with random f32 tensors in every layout slot.
fn model(o: ModelOptions, rng: &mut Rng) -> ImportedModel {
    let tensors = o
        .tensor_layout()
        .into_iter()
        .map(|s| {
            let n = s.shape.iter().product();
            RawTensor::f32(s.name, s.shape, &rng.vec(n))
        })
        .collect();
    let tok = TokenizerSpec {
        kind: TokenizerKind::Gpt2,
        // "t" + "2" → "t2": a merge rule whose pieces are tokens (the import checks
        // the tokenizer loads).
        tokens: (0..o.vocab_size)
            .map(|i| match i {
                0 => Cow::Borrowed("t"),
                1 => Cow::Borrowed("2"),
                _ => Cow::Owned(format!("t{i}")),
            })
            .collect(),
        scores: Vec::new(),
        merges: vec![Cow::Borrowed("t 2")],
        bos: None,
        eos: Some(3),
        unk: None,
        pad: None,
        add_bos: false,
        add_eos: false,
        token_types: Vec::new(),
        pre: None,
        add_space_prefix: true,
        lowercase: false,
        strip_accents: false,
    };
    ImportedModel::finish(o, tok, tensors, "test:random".into()).unwrap()
}

fn write(m: &ImportedModel, dtype: Option<DType>, path: &Path) {
    m.to_writer(dtype.map(Into::into))
        .unwrap()
        .write_to(path)
        .unwrap();
}

/// Checks `out` against `src` requantised to `dtype`.
fn check(src: &[u8], out: &[u8], dtype: DType) {
    let a = LlmFile::parse(src).unwrap();
    let b = LlmFile::parse(out).unwrap();
    let o = a.options().unwrap();
    assert_eq!(b.options().unwrap(), o);
    b.check_layout(&o).unwrap();
    b.verify_all().unwrap();
    assert_eq!(b.tokenizer().unwrap(), a.tokenizer().unwrap());
    let s = |f: &LlmFile<'_>, k: &str| f.get(k).and_then(|v| v.as_str()).unwrap().to_string();
    assert_eq!(s(&b, "provenance.source"), "test:random");
    let date = s(&b, "provenance.date");
    assert!(
        date.len() == 20 && date.ends_with('Z') && date.as_bytes()[10] == b'T',
        "{date}"
    );
    assert!(s(&b, "provenance.tool").starts_with("llm-train "));
    for slot in o.tensor_layout() {
        let (x, y) = (a.tensor(&slot.name).unwrap(), b.tensor(&slot.name).unwrap());
        if slot.matrix {
            assert_eq!(y.dtype, dtype, "{}", slot.name);
            let f = dequantize_vec(x.dtype, x.data, x.n_elements()).unwrap();
            assert!(
                y.data == quantize(dtype, &f).unwrap().as_slice(),
                "{}",
                slot.name
            );
        } else {
            assert_eq!(y.dtype, DType::F32);
            assert!(y.data == x.data, "{} must stay byte-identical", slot.name);
        }
    }
}

#[test]
fn requantise_f32_and_q8_0_inputs() {
    let mut rng = Rng::new(51);
    let dir = scratch("quant_lib");
    let m = model(opts(96), &mut rng);
    for (from, to) in [
        (None, DType::Q4_0),
        (Some(DType::Q8_0), DType::Q4_1),
        (None, DType::BF16),
    ] {
        let (a, b) = (dir.join("a.llm"), dir.join("b.llm"));
        write(&m, from, &a);
        requantize_file(&a, &b, Some(to.into()), Layout::Rows).unwrap();
        check(&std::fs::read(&a).unwrap(), &std::fs::read(&b).unwrap(), to);
    }
}

#[test]
fn binary_quantize_and_errors() {
    let exe = env!("CARGO_BIN_EXE_llm-train");
    let mut rng = Rng::new(52);
    let dir = scratch("quant_bin");
    let (a, b) = (dir.join("a.llm"), dir.join("b.llm"));
    write(&model(opts(96), &mut rng), None, &a);
    let r = Command::new(exe)
        .args([
            "quantize",
            "--in",
            a.to_str().unwrap(),
            "--out",
            b.to_str().unwrap(),
            "--dtype",
            "q8_0",
        ])
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    check(
        &std::fs::read(&a).unwrap(),
        &std::fs::read(&b).unwrap(),
        DType::Q8_0,
    );

    // d_ff = 48: mlp_down rows hold 48 values, not whole blocks of 32.
    let c = dir.join("c.llm");
    write(&model(opts(48), &mut rng), None, &c);
    let r = Command::new(exe)
        .args([
            "quantize",
            "--in",
            c.to_str().unwrap(),
            "--out",
            b.to_str().unwrap(),
            "--dtype",
            "q4_0",
        ])
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("blk.0.mlp_down.weight") && err.contains("48") && err.contains("q4_0"),
        "{err}"
    );

    // A truncated input file: one line, exit 1.
    let bytes = std::fs::read(&a).unwrap();
    std::fs::write(&c, &bytes[..bytes.len() / 2]).unwrap();
    let r = Command::new(exe)
        .args([
            "quantize",
            "--in",
            c.to_str().unwrap(),
            "--out",
            b.to_str().unwrap(),
            "--dtype",
            "q4_0",
        ])
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&r.stderr)
            .trim_end()
            .lines()
            .count(),
        1
    );
}

/// `llm-train quantize --layout r16`, with and without `--dtype`: the matrices the
/// layout takes are stored in it with the same values, the others stay rows, and
/// `--layout rows` gives back the input byte for byte.
#[test]
fn binary_quantize_layout_r16_and_back() {
    let exe = env!("CARGO_BIN_EXE_llm-train");
    let mut rng = Rng::new(53);
    let dir = scratch("quant_layout");
    let (a, b, c) = (dir.join("a.llm"), dir.join("b.llm"), dir.join("c.llm"));
    write(&model(opts(96), &mut rng), None, &a);
    let quantize = |input: &Path, out: &Path, extra: &[&str]| {
        let mut args = vec!["quantize", "--in", input.to_str().unwrap()];
        args.extend(["--out", out.to_str().unwrap()]);
        args.extend(extra);
        Command::new(exe).args(&args).output().unwrap()
    };
    for dtype in [None, Some("bf16")] {
        let mut extra = vec!["--layout", "r16"];
        if let Some(d) = dtype {
            extra.extend(["--dtype", d]);
        }
        let r = quantize(&a, &b, &extra);
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(r.status.success(), "{err}");
        // 2 layers × 7 matrices fit; the [20, 64] embedding and output do not.
        assert!(
            err.contains("14 matrices in layout r16") && err.contains("2 left in rows"),
            "{err}"
        );
        let (x, y) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        let (x, y) = (LlmFile::parse(&x).unwrap(), LlmFile::parse(&y).unwrap());
        y.verify_all().unwrap();
        let o = x.options().unwrap();
        for slot in o.tensor_layout() {
            let (tx, ty) = (x.tensor(&slot.name).unwrap(), y.tensor(&slot.name).unwrap());
            let fits = slot.matrix && slot.shape[0] % 16 == 0;
            let want = if fits { Layout::R16 } else { Layout::Rows };
            assert_eq!(ty.layout, want, "{}", slot.name);
            let (vx, vy) = (tx.to_f32_vec(), ty.to_f32_vec());
            if dtype.is_none() || !slot.matrix {
                assert_eq!(vx, vy, "{}: values kept", slot.name);
            } else {
                let q = quantize_ref(DType::BF16, &vx);
                assert_eq!(q, vy, "{}: the bf16 values", slot.name);
            }
        }
    }
    // Back to rows, dtypes kept: the input file itself.
    let r = quantize(&a, &b, &["--layout", "r16"]);
    assert!(r.status.success());
    let r = quantize(&b, &c, &["--layout", "rows"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(std::fs::read(&a).unwrap() == std::fs::read(&c).unwrap());

    let r = quantize(&a, &b, &["--layout", "r8"]);
    assert_eq!(r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains("unknown layout 'r8' (one of: rows, r16)"));
}

/// `x` stored as `dtype` and read back.
fn quantize_ref(dtype: DType, x: &[f32]) -> Vec<f32> {
    dequantize_vec(dtype, &quantize(dtype, x).unwrap(), x.len()).unwrap()
}

#[test]
fn binary_import_errors_are_one_line() {
    let exe = env!("CARGO_BIN_EXE_llm-train");
    let dir = scratch("import_bin_err");
    let m = dir.join("model.bin");
    let t = dir.join("tokenizer.bin");
    // A legacy header promising more weights than the file holds.
    let header: Vec<u8> = [64i32, 96, 2, 4, 2, 37, 16]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    std::fs::write(&m, &header).unwrap();
    std::fs::write(&t, 16i32.to_le_bytes()).unwrap();
    let out = dir.join("x.llm");
    let run = |args: &[&str]| Command::new(exe).args(args).output().unwrap();
    let r = run(&[
        "import",
        "--from",
        "llama2c",
        "--model",
        m.to_str().unwrap(),
        "--tokenizer",
        t.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("model.bin") && err.contains("bytes"), "{err}");
    assert!(!out.exists());
    // llama2c without --tokenizer.
    let r = run(&[
        "import",
        "--from",
        "llama2c",
        "--model",
        m.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("--tokenizer"));
    // A missing file names the path.
    let r = run(&[
        "import",
        "--from",
        "gguf",
        "--model",
        "/nonexistent/m.gguf",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("/nonexistent/m.gguf"));
}

/// issue 16: quantize verifies its input first. A flipped data byte (which `llm-run
/// info --verify` catches) and metadata that contradicts the tensors used to be
/// "quantized" into a file whose checksums pass.
#[test]
fn quantize_refuses_a_corrupt_or_inconsistent_input() {
    let exe = env!("CARGO_BIN_EXE_llm-train");
    let mut rng = Rng::new(53);
    let dir = scratch("quant_verify");
    let a = dir.join("a.llm");
    write(&model(opts(96), &mut rng), None, &a);
    let good = std::fs::read(&a).unwrap();
    let quantize = |input: &std::path::Path, out: &std::path::Path, dtype: &str| {
        Command::new(exe)
            .args(["quantize", "--in", input.to_str().unwrap()])
            .args(["--out", out.to_str().unwrap(), "--dtype", dtype])
            .output()
            .unwrap()
    };
    // One flipped byte in the middle of the first matrix's data.
    let f = LlmFile::parse(&good).unwrap();
    let t = f.tensor("tok_emb").unwrap();
    let at = t.data.as_ptr() as usize - good.as_ptr() as usize + t.data.len() / 2;
    let mut flipped = good.clone();
    flipped[at] ^= 0x10;
    let c = dir.join("flipped.llm");
    std::fs::write(&c, &flipped).unwrap();
    for dtype in ["q8_0", "f32"] {
        let out = dir.join(format!("out_{dtype}.llm"));
        let r = quantize(&c, &out, dtype);
        let err = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(1), "{err}");
        assert!(err.contains("checksum") && err.contains("tok_emb"), "{err}");
        assert!(!out.exists(), "nothing written");
    }
    // llm.vocab_size = 3 over a larger embedding.
    let mut w = llm_format::LlmWriter::from_file(&f);
    w.add_meta(
        llm_format::options::keys::VOCAB_SIZE,
        llm_format::Value::U32(3),
    );
    let d = dir.join("meta.llm");
    w.write_to(&d).unwrap();
    let out = dir.join("out_meta.llm");
    let r = quantize(&d, &out, "q8_0");
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert!(err.contains("tok_emb"), "{err}");
    assert!(!out.exists());
    // The untouched input still converts.
    let r = quantize(&a, &out, "q8_0");
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
}
