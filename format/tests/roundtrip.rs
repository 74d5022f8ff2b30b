//! Writer → reader → writer round trips, every dtype and value type, model metadata.

mod common;

use common::{every_value, random_writer, Rng};
use llm_format::dtype::BlockVisitor;
use llm_format::options::keys;
use llm_format::quant::{self, Block};
use llm_format::{
    AlignedBuf, DType, FormatError, LlmFile, LlmWriter, MappedFile, MetaReader, Mlp, ModelOptions,
    Norm, Positions, TokenizerKind, TokenizerSpec, Value,
};
use std::borrow::Cow;

/// Values are equal bit for bit (floats compared by bits).
fn same_value(a: &Value<'_>, b: &Value<'_>) -> bool {
    match (a, b) {
        (Value::F32(x), Value::F32(y)) => x.to_bits() == y.to_bits(),
        (Value::F64(x), Value::F64(y)) => x.to_bits() == y.to_bits(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_value(a, b))
        }
        _ => a == b,
    }
}

#[test]
fn write_read_write_is_byte_identical() {
    let mut r = Rng::fresh("write_read_write_is_byte_identical");
    for _ in 0..20 {
        let w = random_writer(&mut r);
        let bytes = w.to_bytes().unwrap();
        let f = LlmFile::parse(&bytes).unwrap();
        assert_eq!(f.version(), 1);
        f.verify_all().unwrap();

        // Metadata comes back in order with the same values and types.
        assert_eq!(f.metadata().len(), w.metadata().len());
        for ((k1, v1), (k2, v2)) in w.metadata().iter().zip(f.metadata()) {
            assert_eq!(k1, k2);
            assert!(same_value(v1, v2), "{k1}: {v1:?} vs {v2:?}");
            assert!(same_value(f.get(k1).unwrap(), v1));
        }
        // Tensors come back in order with the same bytes, 64-byte aligned in the file.
        let names: Vec<&str> = w.tensor_names().collect();
        assert_eq!(names.len(), f.tensors().len());
        for (name, info) in names.iter().zip(f.tensors()) {
            assert_eq!(*name, info.name);
            let (dt, shape, data) = w.tensor(name).unwrap();
            let t = f.tensor(name).unwrap();
            assert_eq!((t.dtype, t.shape.as_slice(), t.data), (dt, shape, data));
            assert_eq!((f.data_offset() + info.offset) % 64, 0);
            assert_eq!(info.checksum, xxhash_rust::xxh3::xxh3_64(data));
        }
        // Strings borrow from the buffer (zero copy).
        if let Some(Value::Str(Cow::Borrowed(s))) = f.get("t.str") {
            let range = bytes.as_ptr_range();
            assert!(range.contains(&s.as_ptr()));
        } else {
            panic!("t.str should be a borrowed string");
        }

        let again = LlmWriter::from_file(&f).to_bytes().unwrap();
        assert!(again == bytes, "rewrite differs");
    }
}

#[test]
fn every_dtype_round_trips_through_the_writer() {
    let mut r = Rng::fresh("every_dtype_round_trips_through_the_writer");
    for dt in DType::ALL {
        let shape = [3usize, 256];
        let x = r.f32s(3 * 256, 4.0);
        let mut w = LlmWriter::new();
        w.add_tensor_f32("x", dt, &shape, &x).unwrap();
        let raw = quant::quantize(dt, &x).unwrap();
        let bytes = w.to_bytes().unwrap();
        let buf = AlignedBuf::from_slice(&bytes);
        let f = LlmFile::parse(&buf).unwrap();
        let t = f.require("x", &[dt], &shape).unwrap();
        assert_eq!(t.data, raw.as_slice(), "{dt}: bytes differ from quantize()");
        assert_eq!((t.rows(), t.cols(), t.n_elements()), (3, 256, 768));
        // Dequantised values equal the reference dequantiser exactly, and x within the
        // dtype's budget (relative to each block's max |x|).
        let y = t.to_f32_vec();
        assert_eq!(y, quant::dequantize_vec(dt, &raw, x.len()).unwrap());
        // The round-trip error budget per dtype is the unit test
        // `quant::tests::round_trip_error_within_budget`; here: the in-place view of
        // an aligned buffer has one block per `block_len` values.
        struct Blocks<'t, 'a>(&'t llm_format::Tensor<'a>);
        impl BlockVisitor for Blocks<'_, '_> {
            type Out = Option<usize>;
            fn visit<B: Block>(self) -> Option<usize> {
                self.0.as_blocks::<B>().map(|b| b.len() * B::LEN)
            }
        }
        if dt.is_quantized() {
            assert_eq!(dt.visit(Blocks(&t)), Some(x.len()), "{dt}");
        }
        match dt {
            DType::F32 => assert_eq!(t.as_f32().unwrap(), x.as_slice()),
            DType::F16 => assert_eq!(t.as_f16().unwrap().len(), x.len()),
            DType::BF16 => assert_eq!(t.as_bf16().unwrap().len(), x.len()),
            _ => {}
        }
        if dt != DType::F32 {
            assert!(t.as_f32().is_none());
        }
    }
}

#[test]
fn misaligned_buffer_gives_no_f32_view_but_still_reads() {
    let mut r = Rng::fresh("misaligned_buffer");
    let x = r.f32s(16, 1.0);
    let mut w = LlmWriter::new();
    w.add_tensor_f32("x", DType::F32, &[16], &x).unwrap();
    let bytes = w.to_bytes().unwrap();
    // Copy into an aligned buffer so that slicing at +1 is certainly misaligned.
    let buf = AlignedBuf::from_slice(&[&[0u8][..], &bytes[..]].concat());
    let f = LlmFile::parse(&buf[1..]).unwrap();
    let t = f.tensor("x").unwrap();
    assert!(t.as_f32().is_none());
    assert_eq!(t.to_f32_vec(), x);
}

#[test]
fn add_meta_replaces_in_place() {
    let mut w = LlmWriter::new();
    w.add_meta("a", Value::U32(1));
    w.add_meta("b", Value::U32(2));
    w.add_meta("a", Value::from("three"));
    let keys: Vec<&str> = w.metadata().iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["a", "b"]);
    let bytes = w.to_bytes().unwrap();
    let f = LlmFile::parse(&bytes).unwrap();
    assert_eq!(f.get("a").and_then(|v| v.as_str()), Some("three"));
    assert!(w.clone().remove_meta("a"));
}

#[test]
fn writer_rejects_bad_tensors_and_values() {
    let mut w = LlmWriter::new();
    w.add_tensor("t", DType::F32, &[2], vec![1; 8]).unwrap();
    let msg = |e: FormatError| e.to_string();
    assert!(msg(w.add_tensor("t", DType::F32, &[2], vec![1; 8]).unwrap_err()).contains("twice"));
    assert!(msg(w.add_tensor("u", DType::F32, &[2], vec![1; 7]).unwrap_err()).contains("8 bytes"));
    assert!(w.add_tensor("u", DType::F32, &[], vec![]).is_err());
    assert!(w
        .add_tensor("u", DType::F32, &[1, 1, 1, 1, 1], vec![1; 4])
        .is_err());
    assert!(w.add_tensor("u", DType::F32, &[2, 0], vec![]).is_err());
    assert!(w.add_tensor("", DType::F32, &[1], vec![1; 4]).is_err());
    let e = w
        .add_tensor("q", DType::Q8_0, &[31], vec![1; 34])
        .unwrap_err();
    assert!(msg(e).contains("multiple of 32"));
    assert!(w
        .add_tensor("q", DType::Q8_0, &[usize::MAX, 32], vec![])
        .is_err());
    assert!(w
        .add_tensor_f32("q", DType::F32, &[3], &[1.0, 2.0])
        .is_err());

    // Arrays nest at most three deep (the reader's limit too).
    let deep = |levels: usize| {
        (0..levels).fold(Value::Array(vec![Value::U8(1)]), |v, _| {
            Value::Array(vec![v])
        })
    };
    let mut m = LlmWriter::new();
    m.add_meta("nested", deep(2));
    let bytes = m.to_bytes().unwrap();
    assert_eq!(
        LlmFile::parse(&bytes).unwrap().get("nested"),
        Some(&deep(2))
    );
    let mut m = LlmWriter::new();
    m.add_meta("nested", deep(3));
    assert!(msg(m.to_bytes().unwrap_err()).contains("'nested': arrays nested"));
    let mut m = LlmWriter::new();
    m.add_meta("mixed", Value::Array(vec![Value::U8(1), Value::U16(1)]));
    assert!(msg(m.to_bytes().unwrap_err()).contains("mixes"));
    let mut m = LlmWriter::new();
    m.add_meta("", Value::U8(1));
    assert!(m.to_bytes().is_err());
}

#[test]
fn set_and_remove_tensor_keep_order() {
    let mut r = Rng::fresh("set_and_remove_tensor_keep_order");
    let mut w = LlmWriter::new();
    for n in ["a", "b", "c"] {
        w.add_tensor_f32(n, DType::F32, &[32], &r.f32s(32, 1.0))
            .unwrap();
    }
    let x = r.f32s(64, 1.0);
    w.set_tensor(
        "b",
        DType::Q4_0,
        &[2, 32],
        quant::quantize(DType::Q4_0, &x).unwrap(),
    )
    .unwrap();
    assert!(w.remove_tensor("a"));
    assert!(!w.remove_tensor("a"));
    let bytes = w.to_bytes().unwrap();
    let f = LlmFile::parse(&bytes).unwrap();
    let names: Vec<&str> = f.tensors().iter().map(|t| t.name).collect();
    assert_eq!(names, ["b", "c"]);
    assert_eq!(f.tensor("b").unwrap().dtype, DType::Q4_0);
}

fn tiny_options(
    positions: Positions,
    norm: Norm,
    mlp: Mlp,
    bias: bool,
    tied: bool,
) -> ModelOptions {
    ModelOptions {
        vocab_size: 40,
        d_model: 64,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: 2,
        d_ff: 96,
        max_len: 16,
        positions,
        norm,
        mlp,
        bias,
        tied_embeddings: tied,
        norm_eps: 1e-5,
        rope_base: 10000.0,
        arch: Default::default(),
    }
}

fn tokenizer() -> TokenizerSpec<'static> {
    TokenizerSpec {
        kind: TokenizerKind::SentencePiece,
        tokens: (0..40).map(|i| Cow::Owned(format!("▁t{i}"))).collect(),
        scores: (0..40).map(|i| -(i as f32) / 3.0).collect(),
        merges: vec![],
        bos: Some(1),
        eos: Some(2),
        unk: Some(0),
        pad: None,
        add_bos: true,
        add_eos: false,
        token_types: Vec::new(),
        pre: None,
        add_space_prefix: true,
        lowercase: false,
        strip_accents: false,
    }
}

#[test]
fn model_options_tokenizer_and_layout_round_trip() {
    let mut r = Rng::fresh("model_options_tokenizer_and_layout_round_trip");
    for (pos, norm, mlp, bias, tied) in [
        (Positions::Rope, Norm::RmsNorm, Mlp::SwiGlu, false, false),
        (Positions::Learned, Norm::LayerNorm, Mlp::Gelu, true, true),
        (
            Positions::Sinusoidal,
            Norm::LayerNorm,
            Mlp::Relu,
            true,
            false,
        ),
    ] {
        let opts = tiny_options(pos, norm, mlp, bias, tied);
        let tok = tokenizer();
        let mut w = LlmWriter::new();
        w.extend_meta(opts.to_meta());
        w.extend_meta(tok.to_meta());
        w.add_meta(keys::PROV_SOURCE, Value::from("test"));
        for slot in opts.tensor_layout() {
            let n: usize = slot.shape.iter().product();
            let dt = if slot.matrix { DType::Q8_0 } else { DType::F32 };
            w.add_tensor_f32(&slot.name, dt, &slot.shape, &r.f32s(n, 1.0))
                .unwrap();
        }
        let bytes = w.to_bytes().unwrap();
        let f = LlmFile::parse(&bytes).unwrap();
        assert_eq!(f.options().unwrap(), opts);
        assert_eq!(f.tokenizer().unwrap(), tok);
        assert_eq!(f.meta_reader().str(keys::PROV_SOURCE).unwrap(), "test");
        f.check_layout(&opts).unwrap();

        // A layout check names the problem: wrong dtype on a norm, missing tensor,
        // wrong shape.
        let mut bad = LlmWriter::from_file(&f);
        bad.set_tensor_f32_for_test("out_norm.weight", DType::F16, &[64], &r);
        let b = bad.to_bytes().unwrap();
        let e = LlmFile::parse(&b).unwrap().check_layout(&opts).unwrap_err();
        assert!(
            e.to_string().contains("out_norm.weight") && e.to_string().contains("f16"),
            "{e}"
        );

        let mut bad = LlmWriter::from_file(&f);
        bad.remove_tensor("blk.1.attn_k.weight");
        let b = bad.to_bytes().unwrap();
        let e = LlmFile::parse(&b).unwrap().check_layout(&opts).unwrap_err();
        assert_eq!(e, FormatError::MissingTensor("blk.1.attn_k.weight".into()));

        // issue 16: a tensor the options do not use is an error too; so is a file
        // whose llm.n_layers is one less than the layers it holds.
        let mut bad = LlmWriter::from_file(&f);
        bad.add_tensor_f32("blk.9.extra", DType::F32, &[4], &r.f32s(4, 1.0))
            .unwrap();
        let b = bad.to_bytes().unwrap();
        let e = LlmFile::parse(&b).unwrap().check_layout(&opts).unwrap_err();
        assert!(e.to_string().contains("'blk.9.extra' is not used"), "{e}");
        let fewer = ModelOptions {
            n_layers: opts.n_layers - 1,
            ..opts.clone()
        };
        let e = f.check_layout(&fewer).unwrap_err();
        assert!(
            e.to_string()
                .contains(&format!("blk.{}.", opts.n_layers - 1)),
            "{e}"
        );

        // Fuzzing (capi_load): a layer count the file cannot hold is refused before a
        // layout of that size is built (2^28 layers took over 20 s and gigabytes).
        let huge = ModelOptions {
            n_layers: 1 << 28,
            ..opts.clone()
        };
        let e = f.check_layout(&huge).unwrap_err();
        assert!(e.to_string().contains("llm.n_layers = 268435456"), "{e}");

        let e = f.require("tok_emb", &[], &[41, 64]).unwrap_err();
        assert!(
            e.to_string().contains("tok_emb") && e.to_string().contains("[41, 64]"),
            "{e}"
        );
    }
}

/// Test-only convenience.
trait SetF32 {
    fn set_tensor_f32_for_test(&mut self, name: &str, dt: DType, shape: &[usize], r: &Rng);
}
impl SetF32 for LlmWriter {
    fn set_tensor_f32_for_test(&mut self, name: &str, dt: DType, shape: &[usize], r: &Rng) {
        let mut r = Rng(r.0 ^ 0x55);
        let n: usize = shape.iter().product();
        let data = quant::quantize(dt, &r.f32s(n, 1.0)).unwrap();
        self.set_tensor(name, dt, shape, data).unwrap();
    }
}

#[test]
fn every_value_type_has_its_gguf_id() {
    let mut r = Rng::fresh("every_value_type_has_its_gguf_id");
    let vals = every_value(&mut r);
    let mut w = LlmWriter::new();
    w.extend_meta(vals.clone());
    let bytes = w.to_bytes().unwrap();
    let f = LlmFile::parse(&bytes).unwrap();
    let mut ids: Vec<u32> = f.metadata().iter().map(|(_, v)| v.type_id()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids, (0..=12).collect::<Vec<u32>>());
    // The first entry sits right after the 56-byte header: key length, key, type id.
    assert_eq!(&bytes[56..64], &4u64.to_le_bytes());
    assert_eq!(&bytes[64..68], b"t.u8");
    assert_eq!(&bytes[68..72], &0u32.to_le_bytes());
}

#[test]
fn write_to_is_atomic_and_maps_back() {
    let mut r = Rng::fresh("write_to_is_atomic_and_maps_back");
    let dir = std::env::temp_dir().join(format!(
        "llm-format-test-{}-{}",
        std::process::id(),
        r.next_u64()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.llm");
    std::fs::write(&path, b"old contents").unwrap();
    let w = random_writer(&mut r);
    w.write_to(&path).unwrap();
    let map = MappedFile::open(&path).unwrap();
    assert_eq!(map.bytes(), w.to_bytes().unwrap().as_slice());
    assert_eq!(map.bytes().as_ptr() as usize % 64, 0);
    let f = map.parse().unwrap();
    f.verify_all().unwrap();
    // Only the file itself is left: no temporary files.
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("m.llm")]);
    // Errors name the path.
    let missing = dir.join("missing.llm");
    let e = MappedFile::open(&missing).unwrap_err();
    assert!(e.to_string().contains("missing.llm"), "{e}");
    let e = w
        .write_to(&dir.join("no-such-dir").join("x.llm"))
        .unwrap_err();
    assert!(e.to_string().contains("no-such-dir"), "{e}");
    // An empty file maps and fails to parse with an error, not a panic.
    std::fs::write(dir.join("empty.llm"), b"").unwrap();
    let m = MappedFile::open(dir.join("empty.llm")).unwrap();
    assert!(m.parse().is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn aligned_buf_copies_and_aligns() {
    let mut r = Rng::fresh("aligned_buf_copies_and_aligns");
    for n in [0usize, 1, 63, 64, 65, 1000] {
        let v = r.bytes(n);
        let b = AlignedBuf::from_slice(&v);
        assert_eq!(b.as_bytes(), v.as_slice());
        assert_eq!(b.len(), n);
        assert_eq!(b.as_ptr() as usize % 64, 0);
    }
}

/// A wpm tokenizer keeps its normaliser settings; absent keys read as lowercase on and
/// `strip_accents` following `lowercase`; other kinds hold both off.
#[test]
fn wpm_normaliser_settings_round_trip_with_defaults() {
    let mut tok = tokenizer();
    tok.kind = TokenizerKind::Wpm;
    tok.scores.clear();
    for (lowercase, strip_accents) in [(true, false), (false, true), (false, false)] {
        (tok.lowercase, tok.strip_accents) = (lowercase, strip_accents);
        let meta = tok.to_meta();
        let entries: Vec<(&str, Value<'static>)> =
            meta.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        let back = TokenizerSpec::from_meta(&MetaReader::from_entries(&entries)).unwrap();
        assert_eq!(back, tok);
    }
    let read = |drop: &[&str], set_lowercase: Option<bool>| {
        let meta = tok.to_meta();
        let mut entries: Vec<(&str, Value<'static>)> = meta
            .iter()
            .filter(|(k, _)| !drop.contains(&k.as_str()))
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        if let Some(l) = set_lowercase {
            entries.retain(|(k, _)| *k != keys::TOK_LOWERCASE);
            entries.push((keys::TOK_LOWERCASE, Value::Bool(l)));
        }
        let t = TokenizerSpec::from_meta(&MetaReader::from_entries(&entries)).unwrap();
        (t.lowercase, t.strip_accents)
    };
    let both = [keys::TOK_LOWERCASE, keys::TOK_STRIP_ACCENTS];
    assert_eq!(read(&both, None), (true, true));
    assert_eq!(
        read(&[keys::TOK_STRIP_ACCENTS], Some(false)),
        (false, false)
    );
    // Another kind: the keys are not written, and read back as off.
    let sp = tokenizer();
    assert!(!sp.to_meta().iter().any(|(k, _)| both.contains(&k.as_str())));
}
