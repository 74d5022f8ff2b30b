//! Flipped bits: the header checksum catches any change to header, metadata or
//! directory; the per-tensor checksums catch changes to tensor data.

mod common;

use common::{random_writer, Rng};
use llm_format::{FormatError, LlmFile};

#[test]
fn header_checksum_catches_every_flipped_bit_in_header_metadata_and_directory() {
    let mut r = Rng::fresh("header_checksum_catches_every_flipped_bit");
    let bytes = random_writer(&mut r).to_bytes().unwrap();
    let cs_off = u64::from_le_bytes(bytes[32..40].try_into().unwrap()) as usize;
    let mut checked = 0;
    for pos in 16..cs_off {
        // The checksum offset field (32..40) says where the checksum is; changing it
        // points the reader elsewhere, which is caught too but not always as Checksum.
        let bit = 1u8 << r.below(8);
        let mut bad = bytes.clone();
        bad[pos] ^= bit;
        let e = LlmFile::parse(&bad).unwrap_err();
        if (32..40).contains(&pos) {
            continue;
        }
        assert_eq!(
            e,
            FormatError::Checksum("header, metadata and directory".into()),
            "byte {pos}"
        );
        checked += 1;
    }
    assert!(checked > 500, "only {checked} bytes checked");
    // The stored checksum itself.
    for pos in cs_off..cs_off + 8 {
        let mut bad = bytes.clone();
        bad[pos] ^= 0x10;
        assert!(matches!(
            LlmFile::parse(&bad),
            Err(FormatError::Checksum(_))
        ));
    }
}

#[test]
fn fixed_header_fields_give_their_own_errors() {
    let mut r = Rng::fresh("fixed_header_fields_give_their_own_errors");
    let bytes = random_writer(&mut r).to_bytes().unwrap();
    let with = |pos: usize, v: u8| {
        let mut b = bytes.clone();
        b[pos] = v;
        LlmFile::parse(&b).unwrap_err()
    };
    assert_eq!(with(0, b'X'), FormatError::BadMagic);
    assert_eq!(with(4, 2), FormatError::UnsupportedVersion(2));
    // Bit 0 is FLAG_LAYOUTS (known); bit 1 is not, and must be refused by name.
    assert!(with(8, 2).to_string().contains("flags"));
    assert!(with(12, 32).to_string().contains("alignment"));
}

#[test]
fn verify_all_catches_every_flipped_data_byte() {
    let mut r = Rng::fresh("verify_all_catches_every_flipped_data_byte");
    let bytes = random_writer(&mut r).to_bytes().unwrap();
    let f = LlmFile::parse(&bytes).unwrap();
    f.verify_all().unwrap();
    let base = f.data_offset() as usize;
    for t in f.tensors() {
        for pos in 0..t.size as usize {
            let mut bad = bytes.clone();
            bad[base + t.offset as usize + pos] ^= 1u8 << r.below(8);
            // Data is not covered by the header checksum: the file parses, and the
            // tensor's own checksum names it.
            let g = LlmFile::parse(&bad).unwrap();
            let want = FormatError::Checksum(format!("tensor '{}'", t.name));
            assert_eq!(g.verify_all().unwrap_err(), want);
            assert_eq!(g.verify_tensor(t.name).unwrap_err(), want);
            for other in f.tensors().iter().filter(|o| o.name != t.name) {
                g.verify_tensor(other.name).unwrap();
            }
        }
    }
}

#[test]
fn nonzero_padding_is_rejected() {
    let mut r = Rng::fresh("nonzero_padding_is_rejected");
    let bytes = random_writer(&mut r).to_bytes().unwrap();
    let f = LlmFile::parse(&bytes).unwrap();
    let base = f.data_offset() as usize;
    let mut gaps = 0;
    for w in f.tensors().windows(2) {
        let end = (w[0].offset + w[0].size) as usize;
        for pos in end..w[1].offset as usize {
            let mut bad = bytes.clone();
            bad[base + pos] = 0xAA;
            let e = LlmFile::parse(&bad).unwrap_err();
            assert!(e.to_string().contains("padding"), "{e}");
            gaps += 1;
        }
    }
    let cs_end = u64::from_le_bytes(bytes[32..40].try_into().unwrap()) as usize + 8;
    for pos in cs_end..base {
        let mut bad = bytes.clone();
        bad[pos] = 1;
        assert!(LlmFile::parse(&bad)
            .unwrap_err()
            .to_string()
            .contains("padding"));
        gaps += 1;
    }
    assert!(gaps > 0);
}
