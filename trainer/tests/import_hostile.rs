//! Truncated, corrupted and hostile llama2.c / llm.c checkpoints and tokenizers:
//! every truncation is an error naming the file, random byte flips never panic, and
//! huge header fields are refused before anything is allocated from them.

mod import_util;

use import_util::{le, Rng};
use llm_train::import::{llama2c, llmc, ImportError};

fn llama2c_v1(rng: &mut Rng) -> Vec<u8> {
    // dim 32, hidden 64, 1 layer, 4 heads, 4 kv heads, vocab 10, seq 8; separate classifier.
    let (d, f, v) = (32usize, 64usize, 10usize);
    let mut b = 0x616b_3432u32.to_le_bytes().to_vec();
    b.extend(1i32.to_le_bytes());
    for x in [d, f, 1, 4, 4, v, 8] {
        b.extend((x as i32).to_le_bytes());
    }
    b.push(0);
    b.resize(256, 0);
    let n = 2 * d + d + v * d + 4 * d * d + 3 * f * d + v * d;
    b.extend(le(&rng.vec(n)));
    b
}

fn llama2c_tokenizer(rng: &mut Rng, v: usize) -> Vec<u8> {
    let mut b = 8i32.to_le_bytes().to_vec();
    for i in 0..v {
        b.extend(rng.f32().to_le_bytes());
        let s = format!("t{i}");
        b.extend((s.len() as i32).to_le_bytes());
        b.extend(s.as_bytes());
    }
    b
}

fn llmc_model(rng: &mut Rng) -> Vec<u8> {
    // T 4, V 10, Vp 16, L 1, NH 2, C 8.
    let (t, v, vp, l, nh, c) = (4usize, 10usize, 16usize, 1usize, 2usize, 8usize);
    let mut h = [0i32; 256];
    h[..8].copy_from_slice(&[
        20240326, 3, t as i32, v as i32, l as i32, nh as i32, c as i32, vp as i32,
    ]);
    let mut b: Vec<u8> = h.iter().flat_map(|x| x.to_le_bytes()).collect();
    let n = vp * c + t * c + l * (12 * c * c + 13 * c) + 2 * c;
    b.extend(le(&rng.vec(n)));
    b
}

fn llmc_tokenizer(v: usize) -> Vec<u8> {
    let mut h = [0u32; 256];
    h[..4].copy_from_slice(&[20240328, 2, v as u32, 0]);
    let mut b: Vec<u8> = h.iter().flat_map(|x| x.to_le_bytes()).collect();
    for i in 0..v {
        b.push(2);
        b.extend([b'a' + i as u8, 0xc3]);
    }
    b
}

/// Every strict prefix is an error whose text starts with the file name; `n_flips`
/// random corruptions (bits, or 4 random bytes) return without panicking.
fn hostile<T>(
    bytes: &[u8],
    file: &str,
    parse: impl Fn(&[u8]) -> Result<T, ImportError>,
    rng: &mut Rng,
) {
    assert!(parse(bytes).is_ok(), "{file}: the valid file must parse");
    for cut in 0..bytes.len() {
        match parse(&bytes[..cut]) {
            Ok(_) => panic!("{file}: truncated at {cut} parsed"),
            Err(e) => assert!(e.to_string().starts_with(file), "{file} at {cut}: {e}"),
        }
    }
    for i in 0..2000 {
        let mut b = bytes.to_vec();
        // Mostly the header, where the sizes live.
        let at = rng.below(if i % 4 == 0 {
            b.len()
        } else {
            1100.min(b.len())
        });
        if i % 2 == 0 && at + 4 <= b.len() {
            b[at..at + 4].copy_from_slice(&(rng.next_u64() as u32).to_le_bytes());
        } else {
            b[at] ^= 1 << rng.below(8);
        }
        let _ = parse(&b);
    }
}

#[test]
fn llama2c_checkpoint_and_tokenizer() {
    let mut rng = Rng::new(61);
    let m = llama2c_v1(&mut rng);
    hostile(
        &m,
        "m.bin",
        |b| llama2c::parse_checkpoint(b, "m.bin"),
        &mut rng,
    );
    let t = llama2c_tokenizer(&mut rng, 10);
    // The same small pair seeds the fuzz target (scripts/fuzz-corpus.sh).
    llm_format::testing::fuzz_seed("llama2c_import", "v1", &[&m, &t]);
    hostile(
        &t,
        "tok.bin",
        |b| llama2c::parse_tokenizer(b, 10, "tok.bin"),
        &mut rng,
    );
}

#[test]
fn llmc_checkpoint_and_tokenizer() {
    let mut rng = Rng::new(62);
    let m = llmc_model(&mut rng);
    hostile(
        &m,
        "gpt2.bin",
        |b| llmc::parse_checkpoint(b, "gpt2.bin"),
        &mut rng,
    );
    let t = llmc_tokenizer(10);
    llm_format::testing::fuzz_seed("llmc_import", "v3", &[&m, &t]);
    hostile(
        &t,
        "tok.bin",
        |b| llmc::parse_tokenizer(b, "tok.bin"),
        &mut rng,
    );
}

#[test]
fn huge_fields_are_refused_before_allocation() {
    // Legacy header with every size at i32::MAX: rejected by the option bounds.
    let h: Vec<u8> = [i32::MAX; 7].iter().flat_map(|x| x.to_le_bytes()).collect();
    let e = llama2c::parse_checkpoint(&h, "m.bin")
        .unwrap_err()
        .to_string();
    assert!(e.contains("out of range") || e.contains("bytes"), "{e}");
    // A legal-looking header whose weights would be ~2^40 bytes: the size check says so.
    let h: Vec<u8> = [1 << 16, 1 << 16, 64, 64, 64, 1 << 16, 1 << 12]
        .iter()
        .flat_map(|x: &i32| x.to_le_bytes())
        .collect();
    let e = llama2c::parse_checkpoint(&h, "m.bin")
        .unwrap_err()
        .to_string();
    assert!(e.contains("the header implies"), "{e}");
    // A tokenizer claiming 2^28 tokens in a few bytes.
    let e = llama2c::parse_tokenizer(&8i32.to_le_bytes(), 1 << 28, "tok.bin")
        .unwrap_err()
        .to_string();
    assert!(e.contains("truncated"), "{e}");
    // llm.c tokenizer with vocab_size u32::MAX.
    let mut t = llmc_tokenizer(3);
    t[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(llmc::parse_tokenizer(&t, "tok.bin").is_err());
    // llm.c wrong magic and unknown version.
    let mut rng = Rng::new(63);
    let mut m = llmc_model(&mut rng);
    m[4..8].copy_from_slice(&4i32.to_le_bytes());
    let e = llmc::parse_checkpoint(&m, "gpt2.bin")
        .unwrap_err()
        .to_string();
    assert!(e.contains("version 4"), "{e}");
    m[0] = 0;
    let e = llmc::parse_checkpoint(&m, "gpt2.bin")
        .unwrap_err()
        .to_string();
    assert!(e.contains("bad magic"), "{e}");
}
