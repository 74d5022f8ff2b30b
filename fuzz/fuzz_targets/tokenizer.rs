//! Tokenizer encode and decode of arbitrary text, for each family the runtime has
//! (char, GPT-2 byte-level BPE under each pre-tokenizer, SentencePiece with byte
//! fallback, raw-UTF-8 BPE, WordPiece), over small vocabularies built from the input.
//!
//! Input: kind (byte 0), flags (byte 1: space prefix, parse special, add special,
//! special tokens, merge rules taken raw, add EOS, WordPiece lowercasing and accent
//! stripping), pre-tokenizer (byte 2), then the words of
//! the vocabulary (one a line), `SEP`, the text. Encoding gives ids below the
//! vocabulary size that decode; byte-level GPT-2 without special tokens decodes back
//! to the text exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llm_format::{token_type, TokenizerKind, TokenizerSpec};
use llmrt::tokenizer::{
    byte_to_char, pre_tokenizer_names, EncodeOptions, StreamDecoder, Tokenizer,
};
use std::borrow::Cow;
use std::collections::HashSet;

/// A vocabulary under construction: tokens in id order, no duplicates.
#[derive(Default)]
struct Vocab {
    tokens: Vec<Cow<'static, str>>,
    seen: HashSet<String>,
    merges: Vec<Cow<'static, str>>,
}

impl Vocab {
    fn add(&mut self, t: &str) -> bool {
        if t.is_empty() || !self.seen.insert(t.to_string()) {
            return false;
        }
        self.tokens.push(Cow::Owned(t.to_string()));
        true
    }
    /// The chars of `w` as tokens, and each prefix of `w` with the merge rule that
    /// makes it from the previous prefix and the next char.
    fn chain(&mut self, w: &[String]) {
        let mut prefix = String::new();
        for c in w {
            self.add(c);
            if !prefix.is_empty() {
                let merged = format!("{prefix}{c}");
                if self.add(&merged) {
                    self.merges.push(Cow::Owned(format!("{prefix} {c}")));
                }
            }
            prefix.push_str(c);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let (kind, flags, pre) = (data[0] % 5, data[1], data[2]);
    let p = llmrt_fuzz::parts(&data[3..], 2);
    let words_text = String::from_utf8_lossy(p[0]);
    let text = String::from_utf8_lossy(p[1]);
    let words: Vec<&str> = words_text.lines().take(64).collect();
    let (space_prefix, parse_special, add_special, specials, raw_merges) = (
        flags & 1 != 0,
        flags & 2 != 0,
        flags & 4 != 0,
        flags & 8 != 0,
        flags & 16 != 0,
    );
    let mut v = Vocab::default();
    let mut scores = Vec::new();
    let kind = match kind {
        0 => {
            for w in &words {
                for c in w.chars().take(16) {
                    v.add(c.encode_utf8(&mut [0; 4]));
                }
            }
            TokenizerKind::Char
        }
        1 => {
            for b in 0..=255u8 {
                v.add(byte_to_char(b).encode_utf8(&mut [0; 4]));
            }
            for w in &words {
                let w: Vec<String> = w
                    .bytes()
                    .take(16)
                    .map(|b| byte_to_char(b).to_string())
                    .collect();
                v.chain(&w);
            }
            TokenizerKind::Gpt2
        }
        4 => {
            // llama.cpp's WPM form: word-initial pieces with a `▁`, continuations bare.
            for w in &words {
                let cs: Vec<char> = w.chars().take(16).collect();
                for (i, c) in cs.iter().enumerate() {
                    v.add(&format!("▁{c}"));
                    v.add(c.encode_utf8(&mut [0; 4]));
                    let prefix: String = cs[..=i].iter().collect();
                    v.add(&format!("▁{prefix}"));
                }
            }
            TokenizerKind::Wpm
        }
        k => {
            for b in 0..=255u8 {
                v.add(&format!("<0x{b:02X}>"));
            }
            v.add("▁");
            for w in &words {
                let w: Vec<String> = w
                    .chars()
                    .take(16)
                    .map(|c| {
                        if c == ' ' {
                            "▁".to_string()
                        } else {
                            c.to_string()
                        }
                    })
                    .collect();
                v.chain(&w);
            }
            if k == 2 {
                v.merges.clear();
                TokenizerKind::SentencePiece
            } else {
                TokenizerKind::RawBpe
            }
        }
    };
    if raw_merges {
        v.merges = words.iter().map(|w| Cow::Owned(w.to_string())).collect();
    }
    let ids = |v: &mut Vocab, t: &str| {
        v.add(t);
        v.tokens.iter().position(|x| x == t).map(|i| i as u32)
    };
    let (bos, eos, unk) = if specials {
        (
            ids(&mut v, "<s>"),
            ids(&mut v, "</s>"),
            ids(&mut v, "<unk>"),
        )
    } else {
        (None, None, None)
    };
    if kind == TokenizerKind::SentencePiece {
        // Longer pieces score higher, ties broken by id: a deterministic merge order.
        scores = v
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| t.chars().count() as f32 - i as f32 * 1e-3)
            .collect();
    }
    let mut token_types = Vec::new();
    if specials && flags & 32 != 0 {
        token_types = v
            .tokens
            .iter()
            .map(|t| match &**t {
                "<s>" | "</s>" => token_type::CONTROL,
                "<unk>" => token_type::UNKNOWN,
                t if t.starts_with("<0x") && t.len() == 6 => token_type::BYTE,
                _ => token_type::NORMAL,
            })
            .collect();
    }
    let names: Vec<&str> = pre_tokenizer_names().collect();
    let pre = match pre as usize {
        0 => None,
        i => Some(Cow::Borrowed(names[(i - 1) % names.len()])),
    };
    let spec = TokenizerSpec {
        kind,
        tokens: v.tokens,
        scores,
        merges: v.merges,
        bos,
        eos,
        unk,
        pad: None,
        add_bos: add_special,
        add_eos: add_special && flags & 64 != 0,
        token_types,
        pre,
        add_space_prefix: space_prefix,
        lowercase: flags & 128 != 0,
        strip_accents: flags & 128 != 0,
    };
    let Ok(tok) = Tokenizer::from_spec(&spec) else {
        return;
    };
    let n = tok.vocab_size();
    let opts = EncodeOptions {
        add_special,
        parse_special,
    };
    if let Ok(ids) = tok.encode_with(&text, opts) {
        assert!(ids.iter().all(|&id| (id as usize) < n), "id out of range");
        let bytes = tok.decode_bytes(&ids).expect("ids from encode decode");
        if kind == TokenizerKind::Gpt2 && !specials && !raw_merges {
            assert_eq!(
                String::from_utf8_lossy(&bytes),
                text,
                "byte-level BPE must give the text back"
            );
        }
        let mut dec = StreamDecoder::new();
        for &id in &ids {
            dec.push(&tok, id).expect("ids from encode stream-decode");
        }
        let _ = dec.finish();
    }
    // Arbitrary ids (some out of range) give a result or an error, never a panic.
    let raw: Vec<u32> = p[1]
        .chunks(2)
        .map(|c| u32::from(c[0]) | u32::from(*c.get(1).unwrap_or(&0)) << 8)
        .map(|x| x % (n as u32 + 4))
        .collect();
    let _ = tok.decode(&raw);
    let mut dec = StreamDecoder::new();
    for &id in &raw {
        let _ = dec.push(&tok, id);
    }
    let _ = dec.finish();
});
