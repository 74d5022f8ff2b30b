//! Property tests: the parser never panics. Every truncation of a valid file is an
//! error; random byte flips, insertions, deletions and word overwrites give `Ok` or
//! `Err`, never a panic. Mutated files are also "resealed" (header checksum fixed up)
//! so that the mutations reach the metadata and directory checks behind the checksum.

mod common;

use common::{random_writer, reseal, small_file, touch_everything, Rng};
use llm_format::{LlmFile, LlmWriter};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Mutation {
    Flip(usize, u8),
    Set(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    /// Overwrites 8 bytes with an interesting little-endian word.
    Word(usize, u64),
}

fn interesting() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(63),
        Just(64),
        Just(u64::MAX),
        Just(u64::MAX - 63),
        Just(1 << 32),
        Just(1 << 63),
        Just(u32::MAX as u64),
        any::<u64>(),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    // Positions are taken modulo the file length when applied.
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(p, x)| Mutation::Flip(p, x)),
        (any::<usize>(), any::<u8>()).prop_map(|(p, x)| Mutation::Set(p, x)),
        (any::<usize>(), any::<u8>()).prop_map(|(p, x)| Mutation::Insert(p, x)),
        any::<usize>().prop_map(Mutation::Delete),
        (any::<usize>(), interesting()).prop_map(|(p, w)| Mutation::Word(p, w)),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let n = bytes.len().max(1);
    match *m {
        Mutation::Flip(p, x) => {
            if let Some(b) = bytes.get_mut(p % n) {
                *b ^= x;
            }
        }
        Mutation::Set(p, x) => {
            if let Some(b) = bytes.get_mut(p % n) {
                *b = x;
            }
        }
        Mutation::Insert(p, x) => bytes.insert(p % (bytes.len() + 1), x),
        Mutation::Delete(p) => {
            if !bytes.is_empty() {
                bytes.remove(p % n);
            }
        }
        Mutation::Word(p, w) => {
            // Word-aligned positions hit the u64 fields of header and directory.
            let p = (p % n) & !7;
            let end = (p + 8).min(bytes.len());
            let src = w.to_le_bytes();
            bytes[p..end].copy_from_slice(&src[..end - p]);
        }
    }
}

fn check(bytes: &[u8]) {
    if let Ok(f) = LlmFile::parse(bytes) {
        touch_everything(&f);
        // Whatever parses rewrites to a file that parses again.
        let again = LlmWriter::from_file(&f).to_bytes().expect("rewrite");
        LlmFile::parse(&again).expect("rewritten file parses");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn every_truncation_of_a_valid_file_is_an_error(seed in any::<u64>()) {
        let mut r = Rng(seed);
        for (i, bytes) in [small_file(&mut r), random_writer(&mut r).to_bytes().unwrap()].iter().enumerate() {
            // A few of these seed the fuzz target (scripts/fuzz-corpus.sh).
            if seed % 16 == 0 {
                llm_format::testing::fuzz_seed("llm_reader", &format!("writer_{seed}_{i}"), &[bytes]);
            }
            prop_assert!(LlmFile::parse(bytes).is_ok());
            for len in 0..bytes.len() {
                prop_assert!(LlmFile::parse(&bytes[..len]).is_err(), "prefix of {} bytes parsed", len);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn random_mutations_never_panic(
        seed in any::<u64>(),
        muts in proptest::collection::vec(mutation(), 1..6),
    ) {
        let mut bytes = small_file(&mut Rng(seed));
        for m in &muts {
            apply(&mut bytes, m);
        }
        check(&bytes);
    }

    #[test]
    fn random_mutations_behind_the_checksum_never_panic(
        seed in any::<u64>(),
        muts in proptest::collection::vec(mutation(), 1..4),
    ) {
        let mut bytes = small_file(&mut Rng(seed));
        for m in &muts {
            apply(&mut bytes, m);
        }
        reseal(&mut bytes);
        check(&bytes);
    }
}

/// Single flips everywhere in the header block of a file with every value type and
/// dtype, resealed, so each field of the metadata and directory is attacked.
#[test]
fn every_resealed_single_byte_change_is_handled() {
    let mut r = Rng::fresh("every_resealed_single_byte_change_is_handled");
    let bytes = random_writer(&mut r).to_bytes().unwrap();
    let cs_off = u64::from_le_bytes(bytes[32..40].try_into().unwrap()) as usize;
    let (mut ok, mut err) = (0, 0);
    for pos in 0..cs_off {
        for x in [0x01u8, 0x80, 0xFF] {
            let mut b = bytes.clone();
            b[pos] ^= x;
            reseal(&mut b);
            match LlmFile::parse(&b) {
                Ok(f) => {
                    touch_everything(&f);
                    ok += 1;
                }
                Err(e) => {
                    assert!(!e.to_string().is_empty());
                    err += 1;
                }
            }
        }
    }
    // Most changes are caught by a structural check (some, like a changed float in a
    // value, are legitimately still valid files).
    assert!(err > ok, "{err} errors, {ok} ok");
}
