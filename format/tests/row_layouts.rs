//! Tensor layouts (SPEC.md §5.2): `r16` written, read back and de-interleaved; the
//! arrangement against the formula of the spec, computed here by hand; files without
//! layouts unchanged; and layouts a reader must refuse.

mod common;

use common::Rng;
use llm_format::testing::reseal;
use llm_format::{DType, Layout, LlmFile, LlmWriter};

/// A writer with one random `[rows, cols]` tensor `w` of `dtype` (values in [-1, 1))
/// and a 1-D f32 tensor after it; returns the writer and `w`'s row-major bytes.
fn one_matrix(r: &mut Rng, dtype: DType, rows: usize, cols: usize) -> (LlmWriter, Vec<u8>) {
    let mut w = LlmWriter::new();
    let x = r.f32s(rows * cols, 1.0);
    w.add_tensor_f32("w", dtype, &[rows, cols], &x).unwrap();
    w.add_tensor_f32("b", DType::F32, &[cols], &r.f32s(cols, 1.0))
        .unwrap();
    let plain = w.tensor("w").unwrap().2.to_vec();
    (w, plain)
}

/// Byte `b` of row `r` in r16, straight from SPEC.md §5.2.
fn spec_r16(row_bytes: usize, r: usize, b: usize) -> usize {
    16 * row_bytes * (r / 16) + 4 * (16 * (b / 4) + r % 16) + b % 4
}

#[test]
fn r16_round_trips_through_a_file_and_matches_the_spec() {
    let mut rng = Rng::fresh("r16_round_trips_through_a_file_and_matches_the_spec");
    for (dtype, cols) in [(DType::F32, 16), (DType::F16, 96), (DType::BF16, 32)] {
        let rows = 16 * (1 + rng.below(3) as usize);
        let (mut w, plain) = one_matrix(&mut rng, dtype, rows, cols);
        let want = LlmFile::parse(&w.to_bytes().unwrap())
            .unwrap()
            .tensor("w")
            .unwrap()
            .to_f32_vec();
        w.set_layout("w", Layout::R16).unwrap();
        let bytes = w.to_bytes().unwrap();
        llm_format::testing::fuzz_seed("llm_reader", &format!("r16_{dtype}"), &[&bytes]);
        assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 1);
        let f = LlmFile::parse(&bytes).unwrap();
        f.verify_all().unwrap();
        let t = f.tensor("w").unwrap();
        assert_eq!(t.layout, Layout::R16);
        assert_eq!(f.tensor("b").unwrap().layout, Layout::Rows);
        let rb = cols * dtype.block_bytes();
        for r in 0..rows {
            for b in 0..rb {
                assert_eq!(
                    t.data[spec_r16(rb, r, b)],
                    plain[r * rb + b],
                    "{dtype} row {r} byte {b}"
                );
            }
        }
        assert_eq!(t.rows_data().as_ref(), plain.as_slice());
        assert_eq!(
            t.to_f32_vec(),
            want,
            "{dtype}: values after de-interleaving"
        );
        assert!(t.as_f32().is_none() && t.as_f16().is_none() && t.as_bf16().is_none());
        // Rewriting keeps the layout and the bytes.
        assert_eq!(LlmWriter::from_file(&f).to_bytes().unwrap(), bytes);
        // And back to rows gives the file without layouts, flag cleared.
        let mut back = LlmWriter::from_file(&f);
        back.set_layout("w", Layout::Rows).unwrap();
        let back = back.to_bytes().unwrap();
        assert_eq!(u32::from_le_bytes(back[8..12].try_into().unwrap()), 0);
        assert_eq!(
            LlmFile::parse(&back).unwrap().tensor("w").unwrap().data,
            plain
        );
    }
}

#[test]
fn rows_into_gives_any_run_of_rows() {
    let mut rng = Rng::fresh("rows_into_gives_any_run_of_rows");
    let (rows, cols) = (48, 64);
    let (mut w, plain) = one_matrix(&mut rng, DType::BF16, rows, cols);
    w.set_layout("w", Layout::R16).unwrap();
    let (_, _, data) = w.tensor("w").unwrap();
    let rb = cols * 2;
    let r0 = rng.below(rows as u64) as usize;
    let n = 1 + rng.below((rows - r0) as u64) as usize;
    let mut out = vec![0u8; n * rb];
    llm_format::layout::rows_into(Layout::R16, data, rb, r0, &mut out);
    assert_eq!(out, plain[r0 * rb..(r0 + n) * rb], "rows {r0}..{}", r0 + n);
}

#[test]
fn files_without_layouts_have_no_flag_and_no_layout_field() {
    let mut rng = Rng::fresh("files_without_layouts_have_no_flag_and_no_layout_field");
    let (w, _) = one_matrix(&mut rng, DType::F16, 16, 32);
    let bytes = w.to_bytes().unwrap();
    assert_eq!(&bytes[8..12], &[0, 0, 0, 0]);
    let f = LlmFile::parse(&bytes).unwrap();
    assert!(f.tensors().iter().all(|t| t.layout == Layout::Rows));
    // The directory is exactly the version-1 encoding: name, dtype, ndim, dims, ...
    let at = bytes
        .windows(9)
        .position(|s| s == b"\x01\0\0\0\0\0\0\0w")
        .unwrap()
        + 9;
    assert_eq!(u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()), 1); // f16
    assert_eq!(
        u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()),
        2
    ); // ndim
}

#[test]
fn layouts_that_do_not_fit_are_refused_by_the_writer() {
    let mut rng = Rng::fresh("layouts_that_do_not_fit_are_refused_by_the_writer");
    for (dtype, rows, cols, needle) in [
        (DType::Q8_0, 16, 32, "not q8_0"),
        (DType::F32, 8, 16, "multiple of 16 rows"),
        (DType::F16, 16, 16, "64-byte lines"),
    ] {
        let (mut w, _) = one_matrix(&mut rng, dtype, rows, cols);
        let e = w.set_layout("w", Layout::R16).unwrap_err().to_string();
        assert!(e.contains("'w'") && e.contains(needle), "{e}");
    }
    let (mut w, _) = one_matrix(&mut rng, DType::F32, 16, 16);
    let e = w.set_layout("b", Layout::R16).unwrap_err().to_string();
    assert!(e.contains("multiple of 16 rows"), "1-D tensor: {e}");
}

/// The file of a 16 × 16 f32 `w` in r16 (and `b`), and the position of `w`'s layout
/// id in it.
fn r16_file(rng: &mut Rng) -> (Vec<u8>, usize) {
    let (mut w, _) = one_matrix(rng, DType::F32, 16, 16);
    w.set_layout("w", Layout::R16).unwrap();
    let bytes = w.to_bytes().unwrap();
    let at = layout_field(&bytes, b'w');
    assert_eq!(u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()), 1);
    (bytes, at)
}

/// Where the layout id of the one-letter tensor `name` sits in a file's directory:
/// after its u64 name length 1, the name and the u32 dtype.
fn layout_field(bytes: &[u8], name: u8) -> usize {
    let mut entry = 1u64.to_le_bytes().to_vec();
    entry.push(name);
    bytes.windows(9).position(|s| s == entry).unwrap() + 9 + 4
}

fn parse_err(bytes: &[u8]) -> String {
    match LlmFile::parse(bytes) {
        Ok(_) => panic!("a file a reader must refuse parsed"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_reader_refuses_unknown_flags_and_layouts_that_do_not_fit() {
    let mut rng = Rng::fresh("a_reader_refuses_unknown_flags_and_layouts_that_do_not_fit");
    let (good, at) = r16_file(&mut rng);

    let mut b = good.clone();
    b[8] = 3; // an unknown flag beside LAYOUTS
    reseal(&mut b);
    assert!(parse_err(&b).contains("header flags are 0x3"));

    let mut b = good.clone();
    b[at] = 9; // no such layout
    reseal(&mut b);
    let e = parse_err(&b);
    assert!(
        e.contains("'w'") && e.contains("unknown layout id 9"),
        "{e}"
    );

    // Layout r16 on the 1-D tensor `b`: the second entry's layout field.
    let mut b = good.clone();
    let at_b = layout_field(&b, b'b');
    b[at_b] = 1;
    reseal(&mut b);
    let e = parse_err(&b);
    assert!(
        e.contains("'b'") && e.contains("multiple of 16 rows"),
        "{e}"
    );

    // Without the flag, the layout field is read as ndim: refused, never misread.
    let mut b = good;
    b[8] = 0;
    reseal(&mut b);
    parse_err(&b);
}
