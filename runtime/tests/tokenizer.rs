//! GPT-2 byte-level BPE against tiktoken's `r50k_base` (the GPT-2 vocabulary that
//! `tiktoken-rs` ships), token for token, in both merge modes (token-id ranks, and
//! explicit merge rules derived from the ranks), plus round trips and streaming.

use llm_format::{TokenizerKind, TokenizerSpec};
use llmrt::tokenizer::{byte_to_char, StreamDecoder, Tokenizer};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::OnceLock;
use tiktoken_rs::CoreBPE;

mod common;

/// r50k's `<|endoftext|>`.
const EOT: u32 = 50256;

fn reference() -> &'static CoreBPE {
    static BPE: OnceLock<CoreBPE> = OnceLock::new();
    BPE.get_or_init(|| tiktoken_rs::r50k_base().expect("r50k_base loads"))
}

/// r50k's token bytes, id = rank (0..50256), plus `<|endoftext|>`.
fn r50k_bytes() -> Vec<Vec<u8>> {
    (0..=EOT)
        .map(|r| {
            reference()
                .decode_bytes(&[r])
                .expect("every r50k rank decodes")
        })
        .collect()
}

/// Our spec of r50k: pieces in GPT-2's bytes-to-unicode form, `merges` as given.
fn spec_from(bytes: &[Vec<u8>], merges: Vec<Cow<'static, str>>) -> TokenizerSpec<'static> {
    let tokens = bytes
        .iter()
        .enumerate()
        .map(|(id, b)| {
            if id as u32 == EOT {
                // Special tokens are stored as their text.
                Cow::Owned(String::from_utf8(b.clone()).unwrap())
            } else {
                Cow::Owned(b.iter().map(|&x| byte_to_char(x)).collect::<String>())
            }
        })
        .collect();
    TokenizerSpec {
        kind: TokenizerKind::Gpt2,
        tokens,
        scores: Vec::new(),
        merges,
        bos: Some(EOT),
        eos: Some(EOT),
        unk: None,
        pad: None,
        add_bos: false,
        add_eos: false,
        token_types: Vec::new(),
        pre: None,
        add_space_prefix: true,
        lowercase: false,
        strip_accents: false,
    }
}

fn ours_ranked() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| Tokenizer::from_spec(&spec_from(&r50k_bytes(), Vec::new())).unwrap())
}

/// Reference BPE written here: merge the adjacent pair whose concatenation has the
/// lowest rank below `limit`, leftmost first; returns the final parts.
fn naive_bpe<'a>(piece: &'a [u8], ranks: &HashMap<&[u8], u32>, limit: u32) -> Vec<&'a [u8]> {
    let mut parts: Vec<&[u8]> = piece.chunks(1).collect();
    loop {
        let mut best: Option<(u32, usize)> = None;
        for i in 0..parts.len().saturating_sub(1) {
            let joined =
                &piece[offset(piece, parts[i])..offset(piece, parts[i + 1]) + parts[i + 1].len()];
            if let Some(&r) = ranks.get(joined) {
                if r < limit && best.is_none_or(|(b, _)| r < b) {
                    best = Some((r, i));
                }
            }
        }
        let Some((_, i)) = best else { return parts };
        let start = offset(piece, parts[i]);
        let end = offset(piece, parts[i + 1]) + parts[i + 1].len();
        parts[i] = &piece[start..end];
        parts.remove(i + 1);
    }
}

fn offset(whole: &[u8], part: &[u8]) -> usize {
    part.as_ptr() as usize - whole.as_ptr() as usize
}

/// GPT-2's merge list recovered from the ranks: token r (≥ 256) is the merge of the two
/// parts that BPE with ranks below r leaves of its bytes.
fn ours_merged() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        let bytes = r50k_bytes();
        let ranks: HashMap<&[u8], u32> = bytes[..EOT as usize]
            .iter()
            .enumerate()
            .map(|(r, b)| (b.as_slice(), r as u32))
            .collect();
        let uni = |b: &[u8]| b.iter().map(|&x| byte_to_char(x)).collect::<String>();
        let merges = (256..EOT)
            .map(|r| {
                let parts = naive_bpe(&bytes[r as usize], &ranks, r);
                assert_eq!(parts.len(), 2, "rank {r} is not one merge");
                Cow::Owned(format!("{} {}", uni(parts[0]), uni(parts[1])))
            })
            .collect();
        Tokenizer::from_spec(&spec_from(&bytes, merges)).unwrap()
    })
}

/// A varied sample: scripts, whitespace runs, digits, contractions, emoji, punctuation.
fn samples() -> Vec<String> {
    let mut v: Vec<String> = [
        "",
        " ",
        "Hello, world!",
        "Hello world, it's 2024 and I'm here; we'll see, they've gone, you're right, I'd go.",
        "Don't SHOUT: IT'S 'QUOTED' 'll 're 've",
        "a  b   c    d\t\te\n\nf\r\n g \n",
        "    leading and trailing    ",
        "tabs\there\tand\tthere\t",
        "\n\n\n",
        "numbers 0 12 345 6789 1234567890 3.14159 1,000,000 ½ ² ٣٤٥ Ⅻ",
        "emoji 👋 👋🏽 👨‍👩‍👧‍👦 🇫🇷 🤖🤖 ❤️",
        "punctuation!!! ??? ... --- *** ((( ))) [] {} <|endoftext|> @#$%^&*",
        "Ελληνικά κείμενα, русский текст, עברית, العربية, हिन्दी, ไทย",
        "日本語のテキストと中文文本和한국어 텍스트",
        "mixed: naïve café résumé Zürich Ångström ß œ Æ",
        "combining: e\u{301} a\u{308}\u{323} \u{200b}zero\u{200d}width\u{a0}nbsp\u{2003}em",
        "code: fn main() { println!(\"{}\", x + 1); } // comment",
        "   \t  \n  x",
        "'s",
        "''''s 's's x'x'x",
        "\u{0}\u{1}\u{7f}\u{85}\u{1c}\u{1f} controls",
        "The quick brown fox jumps over the lazy dog.",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Random strings over a pool that mixes every character class, from a seeded LCG.
    let pool: Vec<char> = "ab Zé1 9\t\n  ',.!?'sll'veрус中文👋🏽\u{a0}\u{301}½_-\r\u{2028}"
        .chars()
        .collect();
    let mut state: u64 = common::test_seed(0x9E37_79B9_7F4A_7C15);
    for len in [5, 17, 40, 80, 200] {
        for _ in 0..8 {
            let s: String = (0..len)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    pool[(state >> 33) as usize % pool.len()]
                })
                .collect();
            v.push(s);
        }
    }
    v
}

#[test]
fn gpt2_ranks_match_tiktoken_r50k() {
    let tok = ours_ranked();
    assert_eq!(tok.vocab_size(), 50257);
    for s in samples() {
        let want = reference().encode_ordinary(&s);
        let got = tok.encode(&s, false).unwrap();
        assert_eq!(got, want, "encoding {s:?}");
        assert_eq!(tok.decode(&got).unwrap(), s, "round trip of {s:?}");
    }
}

#[test]
fn gpt2_merge_rules_match_tiktoken_r50k() {
    let tok = ours_merged();
    for s in samples() {
        let want = reference().encode_ordinary(&s);
        assert_eq!(tok.encode(&s, false).unwrap(), want, "encoding {s:?}");
    }
}

#[test]
fn gpt2_long_pieces_match_tiktoken() {
    // tiktoken switches to a heap-based merge for pieces of 100 bytes or more.
    let tok = ours_ranked();
    let mut state: u64 = 7;
    let mut letters = String::new();
    for _ in 0..5000 {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
        letters.push((b'a' + (state >> 60) as u8) as char);
    }
    for s in [
        "a".repeat(3000),
        "1234567890".repeat(300),
        "👋🏽".repeat(400),
        "!?".repeat(700),
        " ".repeat(1000) + "x",
        letters,
    ] {
        assert_eq!(
            tok.encode(&s, false).unwrap(),
            reference().encode_ordinary(&s)
        );
        assert_eq!(
            ours_merged().encode(&s, false).unwrap(),
            reference().encode_ordinary(&s)
        );
    }
}

#[test]
fn gpt2_bos_and_special_tokens() {
    let tok = ours_ranked();
    let ids = tok.encode("hi", true).unwrap();
    assert_eq!(ids.first(), Some(&EOT));
    // The special token's text is ordinary text when encoding...
    let ids = tok.encode("<|endoftext|>", false).unwrap();
    assert!(!ids.contains(&EOT));
    assert_eq!(ids, reference().encode_ordinary("<|endoftext|>"));
    // ...and decodes as tiktoken does.
    assert_eq!(tok.decode(&[EOT]).unwrap(), "<|endoftext|>");
    assert!(tok.decode(&[50257]).is_err());
    assert_eq!(tok.token_bytes(50257), None);
}

#[test]
fn stream_decoder_holds_back_split_characters() {
    let tok = ours_ranked();
    // 👋 is F0 9F 91 8B; r50k's single-byte tokens are the ranks of one-byte strings.
    let bytes = r50k_bytes();
    let byte_id = |b: u8| bytes.iter().position(|t| t[..] == [b]).unwrap() as u32;
    let ids: Vec<u32> = "👋".bytes().map(byte_id).collect();
    assert_eq!(reference().decode_bytes(&ids).unwrap(), "👋".as_bytes());
    let mut dec = StreamDecoder::new();
    for &id in &ids[..3] {
        assert_eq!(dec.push(tok, id).unwrap(), None);
    }
    assert_eq!(dec.pending_len(), 3);
    assert_eq!(dec.push(tok, ids[3]).unwrap(), Some("👋"));
    assert_eq!(dec.pending_len(), 0);

    // Every sample, streamed token by token, concatenates to the text.
    for s in samples() {
        let mut out = String::new();
        let mut dec = StreamDecoder::new();
        for id in tok.encode(&s, false).unwrap() {
            if let Some(piece) = dec.push(tok, id).unwrap() {
                out.push_str(piece);
            }
        }
        assert_eq!(dec.finish(), None, "nothing left for {s:?}");
        assert_eq!(out, s);
    }

    // A truncated character is flushed as U+FFFD at the end.
    let mut dec = StreamDecoder::new();
    assert_eq!(dec.push(tok, ids[0]).unwrap(), None);
    assert_eq!(dec.finish(), Some("\u{fffd}"));
    assert!(dec.push(tok, 50300).is_err());
}

/// Every sample and random text joined by lines, encoded whole and as a stream read
/// `chunk` bytes at a time (so cut at many line breaks).
fn assert_stream_equals_whole(tok: &Tokenizer, what: &str) {
    use llmrt::tokenizer::StreamEncoder;
    let text = samples().join("\n") + "\nend\nof\ntext.\r\nA\n\nB \nC\n D";
    let whole = tok.encode(&text, false).unwrap();
    for chunk in [1, 7, 64, 1000] {
        let mut s = StreamEncoder::new(tok, text.as_bytes(), chunk, 1 << 20);
        let (mut ids, mut pieces) = (Vec::new(), 0);
        while let Some(part) = s.next_ids().unwrap() {
            ids.extend(part);
            pieces += 1;
        }
        assert!(chunk > 64 || pieces > 50, "{what}: only {pieces} pieces");
        assert_eq!(ids, whole, "{what}, chunk {chunk}: streamed ids differ");
    }
}

#[test]
fn streamed_pieces_encode_to_the_whole_texts_ids_under_every_pre_tokenizer() {
    // r50k's vocabulary under each pre-tokenizer family (its first name), merges by rank.
    let bytes = r50k_bytes();
    assert_stream_equals_whole(ours_ranked(), "gpt-2");
    let mut seen = std::collections::HashSet::new();
    for name in llmrt::tokenizer::pre_tokenizer_names() {
        let p = llmrt::tokenizer::pre_tokenizer(name).unwrap();
        if !seen.insert(p.names[0]) {
            continue;
        }
        let mut spec = spec_from(&bytes, Vec::new());
        spec.pre = Some(Cow::Borrowed(name));
        let tok = Tokenizer::from_spec(&spec).unwrap();
        if tok.can_cut() {
            assert_stream_equals_whole(&tok, name);
        }
    }
}
