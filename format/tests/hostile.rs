//! Hand-made hostile files, built with the test's own encoder (not the writer) and a
//! correct header checksum, so each one reaches the check it targets. Each must give
//! an error that names the problem; none may panic or allocate by a lying count.

mod common;

use common::{assemble, strle, u32le, u64le, RawTensor, Rng};
use llm_format::{DType, FormatError, LlmFile, LlmWriter, Value};

fn f32_tensor(name: &str, n: u64, offset: u64) -> RawTensor {
    RawTensor {
        name: name.as_bytes().to_vec(),
        dtype: 0,
        dims: vec![n],
        offset,
        size: 4 * n,
        checksum: 0,
    }
}

/// A file with the given directory entries over `data`.
fn with_tensors(ts: &[RawTensor], data: &[u8]) -> Vec<u8> {
    let mut dir = Vec::new();
    for t in ts {
        t.encode(&mut dir);
    }
    assemble(0, &[], ts.len() as u64, &dir, data)
}

fn err(bytes: &[u8]) -> String {
    match LlmFile::parse(bytes) {
        Ok(_) => panic!("hostile file parsed"),
        Err(e) => e.to_string(),
    }
}

fn assert_err_has(bytes: &[u8], needles: &[&str]) {
    let e = err(bytes);
    for n in needles {
        assert!(e.contains(n), "error '{e}' should mention '{n}'");
    }
}

#[test]
fn hand_made_valid_file_parses() {
    // The encoder itself is right: a valid hand-made file parses to what it says.
    let mut r = Rng::fresh("hand_made_valid_file_parses");
    let data: Vec<u8> = [r.bytes(12), vec![0; 52], r.bytes(8)].concat();
    let mut meta = Vec::new();
    strle(&mut meta, b"k");
    u32le(&mut meta, 8);
    strle(&mut meta, "v▁".as_bytes());
    let mut dir = Vec::new();
    f32_tensor("a", 3, 0).encode(&mut dir);
    f32_tensor("b", 2, 64).encode(&mut dir);
    let f = assemble(1, &meta, 2, &dir, &data);
    let p = LlmFile::parse(&f).unwrap();
    assert_eq!(p.get("k").and_then(|v| v.as_str()), Some("v▁"));
    assert_eq!(p.tensor("b").unwrap().data, &data[64..72]);
}

#[test]
fn tensor_offset_past_the_end() {
    let data = vec![0u8; 16];
    for off in [64u64, 1 << 40, u64::MAX - 63] {
        let f = with_tensors(&[f32_tensor("w", 4, off)], &data);
        assert_err_has(&f, &["'w'", "past the end"]);
    }
}

#[test]
fn size_overflow_from_huge_dims() {
    for dims in [
        vec![u64::MAX],
        vec![u64::MAX, u64::MAX],
        vec![1 << 32, 1 << 32],
        vec![1 << 62],
    ] {
        let t = RawTensor {
            name: b"big".to_vec(),
            dtype: 0,
            dims,
            offset: 0,
            size: 4,
            checksum: 0,
        };
        let f = with_tensors(&[t], &[0; 4]);
        assert_err_has(&f, &["'big'"]);
    }
    // The size field itself near u64::MAX, with a matching (absurd) shape is
    // impossible; a size that just lies is a dtype/shape disagreement.
    let mut t = f32_tensor("s", 1, 0);
    t.size = u64::MAX;
    assert_err_has(&with_tensors(&[t], &[0; 4]), &["'s'", "4 bytes"]);
}

#[test]
fn dtype_shape_disagreement() {
    // Q8_0 [2, 32] is 68 bytes; the directory says 64.
    let t = RawTensor {
        name: b"q".to_vec(),
        dtype: 8,
        dims: vec![2, 32],
        offset: 0,
        size: 64,
        checksum: 0,
    };
    assert_err_has(&with_tensors(&[t], &[0; 64]), &["'q'", "68 bytes", "64"]);
    // A quantised last dimension that is not a whole number of blocks.
    let t = RawTensor {
        name: b"q".to_vec(),
        dtype: 2,
        dims: vec![32, 16],
        offset: 0,
        size: 288,
        checksum: 0,
    };
    assert_err_has(&with_tensors(&[t], &[0; 288]), &["'q'", "multiple of 32"]);
    // A K-quant row of 288 values (not a whole super-block of 256), and a Q4_K tensor
    // one byte short of its super-blocks (a truncated block).
    let t = RawTensor {
        name: b"k".to_vec(),
        dtype: 12,
        dims: vec![2, 288],
        offset: 0,
        size: 288,
        checksum: 0,
    };
    assert_err_has(&with_tensors(&[t], &[0; 288]), &["'k'", "multiple of 256"]);
    let t = RawTensor {
        name: b"k".to_vec(),
        dtype: 12,
        dims: vec![2, 256],
        offset: 0,
        size: 287,
        checksum: 0,
    };
    assert_err_has(&with_tensors(&[t], &[0; 287]), &["'k'", "288 bytes", "287"]);
}

/// A block whose f16 scale is NaN or infinite cannot be written: every importer,
/// `quantize` and export go through the writer, so no `.llm` holds one.
#[test]
fn writer_refuses_nan_and_infinite_scales() {
    let mut r = Rng::fresh("writer_refuses_nan_and_infinite_scales");
    let x = r.f32s(512, 1.0);
    for dt in [
        DType::Q4_K,
        DType::Q6_K,
        DType::Q8_0,
        DType::Q5_1,
        DType::IQ4_XS,
    ] {
        let good = llm_format::quant::quantize(dt, &x).unwrap();
        let mut w = LlmWriter::new();
        w.add_tensor("ok", dt, &[2, 256], good.clone()).unwrap();
        // The second block's d (Q4_K/Q8_0/Q5_1/IQ4_XS: the first field; Q6_K: the
        // last two bytes of the block) set to NaN, then to +inf.
        for bits in [0x7e00u16, 0x7c00] {
            let mut bad = good.clone();
            let bb = dt.block_bytes();
            let at = if dt == DType::Q6_K { 2 * bb - 2 } else { bb };
            bad[at..at + 2].copy_from_slice(&bits.to_le_bytes());
            let e = w
                .add_tensor("bad", dt, &[2, 256], bad)
                .unwrap_err()
                .to_string();
            assert!(e.contains("'bad'") && e.contains("block 1"), "{dt}: {e}");
        }
    }
}

#[test]
fn unknown_dtype() {
    let mut t = f32_tensor("x", 1, 0);
    for id in [4u32, 5, 15, 29, 31, u32::MAX] {
        t.dtype = id;
        let f = with_tensors(std::slice::from_ref(&t), &[0; 4]);
        assert_eq!(
            LlmFile::parse(&f).unwrap_err(),
            FormatError::UnknownDType(id)
        );
    }
}

#[test]
fn non_utf8_names_keys_and_strings() {
    let mut t = f32_tensor("x", 1, 0);
    t.name = vec![b'a', 0xFF, 0xFE];
    assert_err_has(&with_tensors(&[t], &[0; 4]), &["tensor name", "UTF-8"]);

    let mut meta = Vec::new();
    strle(&mut meta, &[0xC3, 0x28]);
    u32le(&mut meta, 0);
    meta.push(1);
    assert_err_has(&assemble(1, &meta, 0, &[], &[]), &["metadata key", "UTF-8"]);

    let mut meta = Vec::new();
    strle(&mut meta, b"k");
    u32le(&mut meta, 8);
    strle(&mut meta, &[0xE2, 0x82]);
    assert_err_has(&assemble(1, &meta, 0, &[], &[]), &["string", "UTF-8"]);
}

#[test]
fn huge_counts_are_bounded_before_allocating() {
    // Header counts.
    for n in [u64::MAX, 1 << 60, 1 << 20] {
        assert_err_has(&assemble(n, &[], 0, &[], &[]), &["metadata count"]);
        assert_err_has(&assemble(0, &[], n, &[], &[]), &["tensor count"]);
    }
    // An array that claims u64::MAX elements, and one that claims more strings than
    // the bytes left could hold.
    for (elem, n) in [(0u32, u64::MAX), (8, 1 << 40), (12, 1 << 61)] {
        let mut meta = Vec::new();
        strle(&mut meta, b"arr");
        u32le(&mut meta, 9);
        u32le(&mut meta, elem);
        u64le(&mut meta, n);
        assert_err_has(&assemble(1, &meta, 0, &[], &[]), &["array length"]);
    }
    // String and name lengths past the end.
    let mut meta = Vec::new();
    u64le(&mut meta, u64::MAX);
    meta.extend_from_slice(&[0; 8]);
    assert_err_has(&assemble(1, &meta, 0, &[], &[]), &["metadata key"]);
    let mut meta = Vec::new();
    strle(&mut meta, b"k");
    u32le(&mut meta, 8);
    u64le(&mut meta, 1 << 50);
    assert_err_has(
        &assemble(1, &meta, 0, &[], &[]),
        &["truncated", "metadata string"],
    );
}

#[test]
fn bad_dimension_counts_and_zero_dims() {
    for (dims, needle) in [
        (vec![], "0 dimensions"),
        (vec![1, 1, 1, 1, 1], "5 dimensions"),
        (vec![4, 0], "zero dimension"),
    ] {
        let t = RawTensor {
            name: b"d".to_vec(),
            dtype: 0,
            dims,
            offset: 0,
            size: 4,
            checksum: 0,
        };
        // Trailing slack so the tensor-count bound (which assumes one dimension) passes
        // and the entry itself is checked.
        let mut dir = Vec::new();
        t.encode(&mut dir);
        dir.extend_from_slice(&[0; 16]);
        assert_err_has(&assemble(0, &[], 1, &dir, &[0; 4]), &["'d'", needle]);
    }
    // ndim = u32::MAX must not make the reader loop or allocate.
    let mut dir = Vec::new();
    strle(&mut dir, b"d");
    u32le(&mut dir, 0);
    u32le(&mut dir, u32::MAX);
    dir.extend_from_slice(&[0; 48]);
    assert_err_has(&assemble(0, &[], 1, &dir, &[]), &["'d'", "dimensions"]);
}

#[test]
fn misaligned_overlapping_and_gapped_tensors() {
    let data = vec![0u8; 256];
    let f = with_tensors(
        &[f32_tensor("a", 4, 0), f32_tensor("b", 4, 32)],
        &data[..48],
    );
    assert_err_has(&f, &["'b'", "multiple of 64"]);
    let f = with_tensors(
        &[f32_tensor("a", 32, 0), f32_tensor("b", 4, 64)],
        &data[..144],
    );
    assert_err_has(&f, &["'b'", "overlaps"]);
    let f = with_tensors(
        &[f32_tensor("a", 4, 0), f32_tensor("b", 4, 128)],
        &data[..144],
    );
    assert_err_has(&f, &["'b'", "should be 64"]);
    // Out of order: the second tensor before the first.
    let f = with_tensors(
        &[f32_tensor("a", 4, 64), f32_tensor("b", 4, 0)],
        &data[..80],
    );
    assert!(LlmFile::parse(&f).is_err());
    // Duplicate names.
    let f = with_tensors(
        &[f32_tensor("a", 4, 0), f32_tensor("a", 4, 64)],
        &data[..80],
    );
    assert_err_has(&f, &["'a'", "twice"]);
    // Data section longer than the tensors.
    let f = with_tensors(&[f32_tensor("a", 4, 0)], &data[..20]);
    assert_err_has(&f, &["data section"]);
}

#[test]
fn bad_metadata_values() {
    let entry = |key: &[u8], ty: u32, payload: &[u8]| {
        let mut m = Vec::new();
        strle(&mut m, key);
        u32le(&mut m, ty);
        m.extend_from_slice(payload);
        m
    };
    assert_err_has(
        &assemble(1, &entry(b"b", 7, &[2]), 0, &[], &[]),
        &["bool", "0 or 1"],
    );
    assert_err_has(
        &assemble(1, &entry(b"t", 13, &[0; 8]), 0, &[], &[]),
        &["value type 13"],
    );
    // Nested arrays: three deep (an array of arrays of arrays of u8) is allowed,
    // a fourth level is not; element types that are not value types are errors.
    let nest = |levels: usize| {
        let mut v = Vec::new();
        for _ in 0..levels {
            u32le(&mut v, 9);
            u64le(&mut v, 1);
        }
        u32le(&mut v, 0);
        u64le(&mut v, 1);
        v.push(7);
        v
    };
    let f = assemble(1, &entry(b"n", 9, &nest(2)), 0, &[], &[]);
    let p = LlmFile::parse(&f).unwrap();
    let arr = |v: Vec<Value<'static>>| Value::Array(v);
    assert_eq!(
        p.get("n"),
        Some(&arr(vec![arr(vec![arr(vec![Value::U8(7)])])]))
    );
    assert_err_has(
        &assemble(1, &entry(b"n", 9, &nest(3)), 0, &[], &[]),
        &["'n'", "nested more than 3 deep"],
    );
    let mut bad_elem = Vec::new();
    u32le(&mut bad_elem, 13);
    u64le(&mut bad_elem, 0);
    assert_err_has(
        &assemble(1, &entry(b"e", 9, &bad_elem), 0, &[], &[]),
        &["'e'", "element type 13"],
    );
    // Duplicate keys.
    let two = [entry(b"k", 0, &[1]), entry(b"k", 0, &[2])].concat();
    assert_err_has(&assemble(2, &two, 0, &[], &[]), &["'k'", "twice"]);
    // Empty key.
    assert_err_has(
        &assemble(1, &entry(b"", 0, &[1, 0]), 0, &[], &[]),
        &["metadata key"],
    );
    // Fewer entries than the count says, and more bytes than the entries.
    let one = entry(b"k", 0, &[1]);
    assert!(LlmFile::parse(&assemble(
        2,
        &[one.clone(), vec![0; 14]].concat(),
        0,
        &[],
        &[]
    ))
    .is_err());
    assert_err_has(&assemble(0, &one, 0, &[], &[]), &["directory ends"]);
}

#[test]
fn broken_fixed_header() {
    let good = assemble(0, &[], 0, &[], &[]);
    assert!(LlmFile::parse(&good).is_ok());
    assert_eq!(
        LlmFile::parse(&[]).unwrap_err(),
        FormatError::Truncated {
            what: "magic",
            offset: 0
        }
    );
    assert_eq!(
        LlmFile::parse(b"LL").unwrap_err(),
        FormatError::Truncated {
            what: "magic",
            offset: 0
        }
    );
    assert_eq!(
        LlmFile::parse(b"GGUF\x03\0\0\0").unwrap_err(),
        FormatError::BadMagic
    );
    assert!(matches!(
        LlmFile::parse(&good[..20]),
        Err(FormatError::Truncated { .. })
    ));
    let patch = |at: usize, v: u64| {
        let mut b = good.clone();
        b[at..at + 8].copy_from_slice(&v.to_le_bytes());
        b
    };
    // Checksum offset inside the header, past the end, overflowing.
    assert_err_has(&patch(32, 8), &["inside the header"]);
    assert!(matches!(
        LlmFile::parse(&patch(32, 1 << 40)),
        Err(FormatError::Truncated { .. })
    ));
    assert!(matches!(
        LlmFile::parse(&patch(32, u64::MAX)),
        Err(FormatError::Truncated { .. })
    ));
    // Data offset / size lies (the checksum is fixed up so these checks are reached).
    let mut b = patch(40, 128);
    common::reseal(&mut b);
    assert_err_has(&b, &["data offset"]);
    let mut b = patch(48, u64::MAX);
    common::reseal(&mut b);
    assert!(LlmFile::parse(&b).is_err());
    let mut b = patch(48, 64);
    common::reseal(&mut b);
    assert!(matches!(
        LlmFile::parse(&b),
        Err(FormatError::Truncated {
            what: "data section",
            ..
        })
    ));
    // Trailing bytes.
    let mut b = good.clone();
    b.push(0);
    assert_err_has(&b, &["trailing"]);
}
