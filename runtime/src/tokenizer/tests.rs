//! SentencePiece on a hand-made scored vocabulary (the merge order is derived by hand in
//! each test), byte fallback, char-level vocabularies, streaming and spec errors.
//! GPT-2 against tiktoken lives in `runtime/tests/tokenizer.rs`.

use super::*;
use alloc::borrow::Cow;
use alloc::format;
use alloc::string::ToString;
use alloc::vec;

const UNK: u32 = 0;
const BOS: u32 = 1;
const EOS: u32 = 2;
/// `<0xXX>` is id `BYTE0 + XX`, as in LLaMA's vocabulary.
const BYTE0: u32 = 3;

/// `<unk> <s> </s> <0x00>..<0xFF>` then scored pieces.
fn sp_spec(with_bytes: bool, unk: Option<u32>) -> TokenizerSpec<'static> {
    let mut tokens: Vec<Cow<'static, str>> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut scores = vec![0.0, 0.0, 0.0];
    if with_bytes {
        for b in 0..=255u8 {
            tokens.push(format!("<0x{b:02X}>").into());
            scores.push(0.0);
        }
    }
    for (t, s) in [
        ("▁", -1.0),
        ("h", -2.0),
        ("e", -2.0),
        ("l", -2.0),
        ("o", -2.0),
        ("w", -2.0),
        ("r", -2.0),
        ("d", -2.0),
        ("a", -2.0),
        ("ll", 5.0),
        ("el", 4.5),
        ("he", 4.0),
        ("or", 3.5),
        ("▁he", 3.0),
        ("▁w", 3.0),
        ("llo", 2.5),
        ("▁wor", 2.0),
        ("ld", 1.5),
        ("▁hello", 1.0),
        ("lo", 0.5),
        ("▁world", 0.2),
        ("aa", 1.0),
    ] {
        tokens.push(t.into());
        scores.push(s);
    }
    TokenizerSpec {
        kind: TokenizerKind::SentencePiece,
        tokens,
        scores,
        merges: Vec::new(),
        bos: Some(BOS),
        eos: Some(EOS),
        unk,
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

fn id_of(spec: &TokenizerSpec<'_>, piece: &str) -> u32 {
    spec.tokens.iter().position(|t| t == piece).unwrap() as u32
}

#[test]
fn sentencepiece_merges_highest_score_first() {
    let spec = sp_spec(true, Some(UNK));
    let tok = Tokenizer::from_spec(&spec).unwrap();
    let id = |p| id_of(&spec, p);
    // ▁ h e l l o: ll(5) beats el(4.5) → ▁ h e ll o; he(4) → ▁ he ll o; ▁he(3) beats
    // llo(2.5) → ▁he ll o; llo → ▁he llo; ▁hello(1).
    assert_eq!(tok.encode("hello", true).unwrap(), vec![BOS, id("▁hello")]);
    // ▁ w o r l d: or(3.5) → ▁w(3) → ▁wor(2) → ld(1.5) → ▁world(0.2).
    assert_eq!(
        tok.encode("hello world", false).unwrap(),
        vec![id("▁hello"), id("▁world")]
    );
    // Equal scores: the leftmost pair merges first. ▁ a a a → ▁ aa a.
    assert_eq!(
        tok.encode("aaa", false).unwrap(),
        vec![id("▁"), id("aa"), id("a")]
    );
    // Runs of spaces are ▁ each; "▁▁" is no piece.
    assert_eq!(
        tok.encode(" a", false).unwrap(),
        vec![id("▁"), id("▁"), id("a")]
    );
    assert_eq!(tok.encode("", true).unwrap(), vec![BOS]);
    assert_eq!(tok.encode("", false).unwrap(), Vec::<u32>::new());
}

#[test]
fn sentencepiece_byte_fallback_and_decode() {
    let spec = sp_spec(true, Some(UNK));
    let tok = Tokenizer::from_spec(&spec).unwrap();
    let id = |p| id_of(&spec, p);
    // 'é' (C3 A9) and '!' (21) have no piece: their bytes stand in.
    let ids = tok.encode("hé!", true).unwrap();
    assert_eq!(
        ids,
        vec![
            BOS,
            id("▁"),
            id("h"),
            BYTE0 + 0xC3,
            BYTE0 + 0xA9,
            BYTE0 + 0x21
        ]
    );
    // After BOS the dummy-prefix space is dropped; without BOS it stays.
    assert_eq!(tok.decode(&ids).unwrap(), "hé!");
    assert_eq!(tok.decode(&ids[1..]).unwrap(), " hé!");
    let ids = tok.encode("hello world", true).unwrap();
    assert_eq!(tok.decode(&ids).unwrap(), "hello world");
    // EOS decodes to nothing; a <0x20> byte right after BOS keeps its space.
    assert_eq!(
        tok.decode(&[BOS, BYTE0 + 0x20, id("a"), EOS]).unwrap(),
        " a"
    );
    assert_eq!(tok.token_bytes(BYTE0 + 0xC3), Some(&[0xC3u8][..]));
    assert_eq!(tok.token_bytes(id("▁wor")), Some(&b" wor"[..]));
    assert_eq!(
        tok.decode(&[9999]),
        Err(TokenizerError::UnknownToken {
            id: 9999,
            vocab: tok.vocab_size()
        })
    );
}

#[test]
fn sentencepiece_without_byte_pieces_uses_unk_or_fails() {
    let spec = sp_spec(false, Some(UNK));
    let tok = Tokenizer::from_spec(&spec).unwrap();
    // "é" has no piece and no bytes: one unk per byte, as llama2.c's fallback would give.
    assert_eq!(
        tok.encode("é", false).unwrap(),
        vec![id_of(&spec, "▁"), UNK, UNK]
    );
    let tok = Tokenizer::from_spec(&sp_spec(false, None)).unwrap();
    let err = tok.encode("hé", false).unwrap_err();
    assert_eq!(err, TokenizerError::UnknownChar('é'));
    assert!(err.to_string().contains("U+00E9"));
}

#[test]
fn stream_decoder_never_splits_a_char() {
    let tok = Tokenizer::from_spec(&sp_spec(true, Some(UNK))).unwrap();
    // 👋 = F0 9F 91 8B, all through byte fallback.
    let ids = tok.encode("a👋a", true).unwrap();
    let mut dec = StreamDecoder::new();
    let mut pieces = Vec::new();
    for &id in &ids {
        if let Some(p) = dec.push(&tok, id).unwrap() {
            pieces.push(p.to_string());
        }
    }
    assert_eq!(dec.finish(), None);
    // BOS and the prefix ▁ give nothing, then "a", then 👋 only once complete, then "a".
    assert_eq!(pieces, vec!["a", "👋", "a"]);
    // An invalid byte in the middle becomes U+FFFD at once, as from_utf8_lossy does.
    let ids = [BYTE0 + 0x61, BYTE0 + 0xFF, BYTE0 + 0xE2, BYTE0 + 0x82];
    let mut out = String::new();
    for &id in &ids {
        if let Some(p) = dec.push(&tok, id).unwrap() {
            out.push_str(p);
        }
    }
    assert_eq!(out, "a\u{fffd}");
    assert_eq!(dec.pending_len(), 2);
    out.push_str(dec.finish().unwrap());
    assert_eq!(out, tok.decode(&ids).unwrap());
}

fn char_spec(unk: Option<u32>) -> TokenizerSpec<'static> {
    TokenizerSpec {
        kind: TokenizerKind::Char,
        tokens: ["<s>", "a", "b", "é", "\n", " ", "?"]
            .iter()
            .map(|&s| s.into())
            .collect(),
        scores: Vec::new(),
        merges: Vec::new(),
        bos: Some(0),
        eos: None,
        unk,
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

#[test]
fn char_level_encode_decode() {
    let tok = Tokenizer::from_spec(&char_spec(None)).unwrap();
    assert_eq!(tok.kind(), TokenizerKind::Char);
    let ids = tok.encode("ab é\n", true).unwrap();
    assert_eq!(ids, vec![0, 1, 2, 5, 3, 4]);
    assert_eq!(tok.decode(&ids).unwrap(), "ab é\n");
    assert_eq!(
        tok.encode("abc", false),
        Err(TokenizerError::UnknownChar('c'))
    );
    let tok = Tokenizer::from_spec(&char_spec(Some(6))).unwrap();
    assert_eq!(tok.encode("abc", false).unwrap(), vec![1, 2, 6]);
    // Multi-char pieces never come from text.
    assert_eq!(tok.encode("<s>", false).unwrap(), vec![6, 6, 6]);
}

#[test]
fn bad_specs_are_named_errors() {
    let mut spec = char_spec(None);
    spec.eos = Some(7);
    let err = Tokenizer::from_spec(&spec).unwrap_err();
    assert_eq!(
        err,
        TokenizerError::IdOutOfRange {
            what: "eos",
            id: 7,
            vocab: 7
        }
    );
    assert_eq!(
        err.to_string(),
        "tokenizer eos id 7 is not below the vocabulary size 7"
    );

    let mut spec = sp_spec(false, None);
    spec.scores.pop();
    assert!(matches!(
        Tokenizer::from_spec(&spec),
        Err(TokenizerError::ScoresMismatch { .. })
    ));

    let mut spec = char_spec(None);
    spec.tokens.clear();
    spec.bos = None;
    assert_eq!(
        Tokenizer::from_spec(&spec).unwrap_err(),
        TokenizerError::EmptyVocab
    );

    // GPT-2 merges: all 256 byte chars, then "ab".
    let mut tokens: Vec<Cow<'static, str>> = (0..=255u8)
        .map(|b| byte_to_char(b).to_string().into())
        .collect();
    tokens.push("ab".into());
    let gpt2 = |merges: &[&'static str]| TokenizerSpec {
        kind: TokenizerKind::Gpt2,
        tokens: tokens.clone(),
        scores: Vec::new(),
        merges: merges.iter().map(|&m| m.into()).collect(),
        bos: None,
        eos: None,
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
    let tok = Tokenizer::from_spec(&gpt2(&["a b"])).unwrap();
    assert_eq!(tok.encode("abab", false).unwrap(), vec![256, 256]);
    for bad in ["ab", "a c!", "b a"] {
        let err = Tokenizer::from_spec(&gpt2(&[bad])).unwrap_err();
        assert!(
            matches!(err, TokenizerError::BadMerge { index: 0, .. }),
            "{bad}: {err}"
        );
        assert!(!err.to_string().contains('\n'));
    }
}

/// A tiny xorshift for test inputs (independent of the code under test).
struct TestRng(u64);

impl TestRng {
    /// A generator from the test's seed (`default`, or `LLMRT_TEST_SEED`).
    fn new(default: u64) -> TestRng {
        TestRng(crate::test_common::test_seed(default).max(1))
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// llama2.c's `encode` merge loop, literally: rescan all pairs after every merge, take
/// the highest score (strictly greater, so the leftmost on ties).
fn naive_sentencepiece(spec: &TokenizerSpec<'_>, text: &str) -> Vec<u32> {
    let find = |s: &str| {
        spec.tokens
            .iter()
            .enumerate()
            .position(|(i, t)| t == s && ![UNK, BOS, EOS].contains(&(i as u32)))
            .map(|i| i as u32)
    };
    let mut ids = Vec::new();
    for c in core::iter::once('▁').chain(text.chars().map(|c| if c == ' ' { '▁' } else { c })) {
        match find(c.encode_utf8(&mut [0; 4])) {
            Some(id) => ids.push(id),
            None => ids.extend(c.to_string().bytes().map(|b| BYTE0 + b as u32)),
        }
    }
    loop {
        let mut best: Option<(f32, usize, u32)> = None;
        for i in 0..ids.len().saturating_sub(1) {
            let joined = format!(
                "{}{}",
                spec.tokens[ids[i] as usize],
                spec.tokens[ids[i + 1] as usize]
            );
            if let Some(id) = find(&joined) {
                let score = spec.scores[id as usize];
                if best.is_none_or(|(s, _, _)| score > s) {
                    best = Some((score, i, id));
                }
            }
        }
        let Some((_, i, id)) = best else { return ids };
        ids[i] = id;
        ids.remove(i + 1);
    }
}

#[test]
fn sentencepiece_heap_merge_equals_llama2c_loop() {
    let spec = sp_spec(true, Some(UNK));
    let tok = Tokenizer::from_spec(&spec).unwrap();
    let pool: Vec<char> = "helowrda  é!".chars().collect();
    let mut rng = TestRng::new(0x1234_5678_9ABC_DEF1);
    for len in [1, 2, 3, 7, 20, 60, 300] {
        for _ in 0..30 {
            let text: String = (0..len).map(|_| pool[rng.below(pool.len())]).collect();
            assert_eq!(
                tok.encode(&text, false).unwrap(),
                naive_sentencepiece(&spec, &text),
                "{text:?}"
            );
            let ids = tok.encode(&text, true).unwrap();
            assert_eq!(tok.decode(&ids).unwrap(), text);
        }
    }
}

#[test]
fn stream_equals_lossy_decode_on_random_bytes() {
    let tok = Tokenizer::from_spec(&sp_spec(true, Some(UNK))).unwrap();
    let mut rng = TestRng::new(0xFEED_F00D_1234_5678);
    // Mostly valid multi-byte text split into byte tokens, with some random bytes mixed in.
    let text = "aé€👋中ß";
    for _ in 0..500 {
        let mut ids = vec![BOS];
        for _ in 0..rng.below(12) {
            if rng.below(4) == 0 {
                ids.push(BYTE0 + rng.below(256) as u32);
            } else {
                let c = text.chars().nth(rng.below(6)).unwrap();
                ids.extend(c.to_string().bytes().map(|b| BYTE0 + b as u32));
            }
        }
        let mut dec = StreamDecoder::new();
        let mut out = String::new();
        for &id in &ids {
            if let Some(p) = dec.push(&tok, id).unwrap() {
                assert!(!p.is_empty());
                out.push_str(p);
            }
            assert!(dec.pending_len() <= 3);
        }
        if let Some(p) = dec.finish() {
            out.push_str(p);
        }
        assert_eq!(out, tok.decode(&ids).unwrap(), "{ids:?}");
    }
}

#[test]
fn stream_starting_after_bos_drops_the_prefix_space() {
    let spec = sp_spec(true, Some(UNK));
    let tok = Tokenizer::from_spec(&spec).unwrap();
    let world = id_of(&spec, "▁world");
    let mut dec = StreamDecoder::starting_after(Some(BOS));
    assert_eq!(dec.push(&tok, world).unwrap(), Some("world"));
    let mut dec = StreamDecoder::starting_after(Some(world));
    assert_eq!(dec.push(&tok, world).unwrap(), Some(" world"));
}

#[test]
fn byte_level_vocabulary_is_gpt2_with_256_tokens() {
    // Token b is byte b, in bytes-to-unicode form, with no merges: text → its bytes.
    let spec = TokenizerSpec {
        kind: TokenizerKind::Gpt2,
        tokens: (0..=255u8)
            .map(|b| byte_to_char(b).to_string().into())
            .collect(),
        scores: Vec::new(),
        merges: Vec::new(),
        bos: None,
        eos: None,
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
    let tok = Tokenizer::from_spec(&spec).unwrap();
    let text = "héllo,  wörld!\n\t👋 'll 42";
    let ids = tok.encode(text, true).unwrap();
    let want: Vec<u32> = text.bytes().map(u32::from).collect();
    assert_eq!(ids, want);
    assert_eq!(tok.decode(&ids).unwrap(), text);
    assert_eq!(tok.token_bytes(b' ' as u32), Some(&b" "[..]));
}

#[test]
fn encode_with_parses_specials_and_adds_bos_eos_as_asked() {
    let mut spec = sp_spec(true, Some(UNK));
    spec.add_eos = true;
    let tok = Tokenizer::from_spec(&spec).unwrap();
    let ids = spec.clone();
    let id = |p| id_of(&ids, p);
    let opts = |add_special, parse_special| EncodeOptions {
        add_special,
        parse_special,
    };
    let hello = [id("▁hello")];
    // `<s>` in the text is BOS with parse_special, and the text after it gets the space
    // prefix again (llama.cpp's SPM).
    assert_eq!(
        tok.encode_with("hello<s>hello", opts(false, true)).unwrap(),
        [hello[0], BOS, hello[0]]
    );
    assert_eq!(
        tok.encode_with("hello", opts(true, true)).unwrap(),
        [BOS, hello[0], EOS]
    );
    // Without parse_special `<s>` is spelled out: ▁ < s > as byte tokens after hello.
    let spelled = tok.encode_with("hello<s>", opts(false, false)).unwrap();
    assert_eq!(spelled[0], hello[0]);
    assert!(!spelled.contains(&BOS) && spelled.len() == 4, "{spelled:?}");
    assert_eq!(tok.encode("hello<s>", false).unwrap(), spelled);
    // A user-defined token is cut out even without parse_special.
    spec.token_types = (0..spec.tokens.len() as u32)
        .map(|i| match i {
            UNK => token_type::UNKNOWN,
            BOS | EOS => token_type::CONTROL,
            _ if i == id("aa") => token_type::USER_DEFINED,
            _ => token_type::NORMAL,
        })
        .collect();
    spec.add_space_prefix = false;
    let tok = Tokenizer::from_spec(&spec).unwrap();
    assert_eq!(
        tok.encode_with("heaahe", opts(false, false)).unwrap(),
        [id("he"), id("aa"), id("he")]
    );
    assert_eq!(tok.token_type(id("aa")), Some(token_type::USER_DEFINED));
    assert_eq!(tok.pre_tokenizer(), None);
}

#[test]
fn unknown_pre_tokenizer_is_an_error() {
    let mut spec = char_spec(None);
    spec.kind = TokenizerKind::Gpt2;
    for name in ["no-such-pre", "gemma4"] {
        spec.pre = Some(name.into());
        let e = Tokenizer::from_spec(&spec).unwrap_err().to_string();
        assert!(e.contains(name), "{e}");
    }
}

/// A small BERT vocabulary in Hugging Face's form (`##` marks a continuation piece).
const WP_VOCAB: &[&str] = &[
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "he", "##llo", "wor", "##ld",
    "cafe", "deja", "vu", "un", "##aff", "##able", "a", "b", "c", "##b", "##c", "!", ",", ".", "+",
    "=", "$", "5", "##5", "€", "中", "国", "x", "##y", "##z", "the", "##re", "'", "s", "i", "##i",
    "-", "(", ")", "Hello", "Café", "##é", "é", "¿", "ü", "##ü", "naive", "na", "##ive", "ß", "1",
    "##2", "12", "½",
];

/// A WPM spec of a Hugging Face vocabulary, stored as llama.cpp's converter
/// (`conversion/bert.py`, `phantom`) stores it: control tokens as they are, `##x` as `x`,
/// the others as `▁x`. The first five tokens are [PAD] [UNK] [CLS] [SEP] [MASK].
fn wpm_spec(hf: &[&str], lowercase: bool) -> TokenizerSpec<'static> {
    let tokens = hf
        .iter()
        .enumerate()
        .map(|(i, t)| match (i, t.strip_prefix("##")) {
            (0..=4, _) => t.to_string(),
            (_, Some(rest)) => rest.to_string(),
            _ => format!("▁{t}"),
        })
        .map(Cow::Owned)
        .collect();
    TokenizerSpec {
        kind: TokenizerKind::Wpm,
        tokens,
        scores: Vec::new(),
        merges: Vec::new(),
        bos: Some(2),
        eos: Some(3),
        unk: Some(1),
        pad: Some(0),
        add_bos: true,
        add_eos: true,
        token_types: (0..hf.len())
            .map(|i| match i {
                0..=4 => token_type::CONTROL,
                _ => token_type::NORMAL,
            })
            .collect(),
        pre: None,
        add_space_prefix: true,
        lowercase,
        strip_accents: lowercase,
    }
}

#[test]
fn wpm_equals_hugging_face_bert_wordpiece() {
    // Recorded from Hugging Face `tokenizers` 0.23.3: `models.WordPiece(WP_VOCAB,
    // unk_token="[UNK]")`, `normalizers.BertNormalizer(lowercase=L)` (strip_accents
    // following it), `pre_tokenizers.BertPreTokenizer()`, `add_special_tokens=False`.
    // (text, ids with L = true, ids with L = false)
    #[rustfmt::skip]
    let cases: &[(&str, &[u32], &[u32])] = &[
        ("Hello world", &[5, 6], &[45, 6]),
        ("  hello\tworld\n", &[5, 6], &[5, 6]),
        ("Hello, World!", &[5, 23, 6, 22], &[45, 23, 1, 22]),
        ("unaffable", &[14, 15, 16], &[14, 15, 16]),
        ("Café déjà vu", &[11, 12, 13], &[46, 1, 13]),
        ("a+b=c", &[17, 25, 18, 26, 19], &[17, 25, 18, 26, 19]),
        ("$5 and €5", &[27, 28, 1, 30, 29], &[27, 28, 1, 30, 29]),
        ("中国x中", &[31, 32, 33, 31], &[31, 32, 33, 31]),
        ("xyz xy xzz", &[33, 34, 35, 33, 34, 33, 35, 35], &[33, 34, 35, 33, 34, 33, 35, 35]),
        ("there's", &[36, 37, 38, 39], &[36, 37, 38, 39]),
        ("(hello)-world", &[43, 5, 44, 42, 6], &[43, 5, 44, 42, 6]),
        ("¿naïve?", &[49, 52, 1], &[49, 1, 1]),
        ("NAÏVE naive", &[52, 52], &[1, 52]),
        ("12 1 122 ½", &[58, 56, 58, 57, 59], &[58, 56, 58, 57, 59]),
        ("hello\u{7}world", &[1], &[1]),
        ("a\u{200d}b", &[17, 20], &[17, 20]),
        ("straße", &[1], &[1]),
        ("ÜBER über", &[1, 1], &[1, 1]),
        ("héllo wörld", &[5, 6], &[1, 1]),
        ("", &[], &[]),
        ("   ", &[], &[]),
        ("hello!!!world", &[5, 22, 22, 22, 6], &[5, 22, 22, 22, 6]),
        ("x\u{a0}y", &[33, 1], &[33, 1]),
        ("Ⅻ", &[1], &[1]),
        ("a\u{301}b", &[17, 20], &[1]),
    ];
    for lowercase in [true, false] {
        let tok = Tokenizer::from_spec(&wpm_spec(WP_VOCAB, lowercase)).unwrap();
        let no_special = EncodeOptions {
            add_special: false,
            parse_special: false,
        };
        for &(text, lower, cased) in cases {
            let want = if lowercase { lower } else { cased };
            assert_eq!(
                tok.encode_with(text, no_special).unwrap(),
                want,
                "{text:?}, lowercase {lowercase}"
            );
        }
        // With add_special: [CLS] … [SEP], as llama.cpp's WPM.
        assert_eq!(tok.encode("hello", true).unwrap(), [2, 5]);
        let special = EncodeOptions {
            add_special: true,
            parse_special: true,
        };
        assert_eq!(tok.encode_with("hello", special).unwrap(), [2, 5, 3]);
        assert_eq!(tok.encode_with("[SEP]", special).unwrap(), [2, 3, 3]);
        // `▁` decodes as a space, control tokens as nothing.
        assert_eq!(tok.decode(&[2, 14, 15, 16, 22, 3]).unwrap(), " unaffable !");
    }
}

#[test]
fn wpm_without_unk_names_the_word() {
    let mut spec = wpm_spec(WP_VOCAB, true);
    spec.unk = None;
    spec.token_types[1] = token_type::NORMAL;
    let tok = Tokenizer::from_spec(&spec).unwrap();
    assert_eq!(tok.encode("hello", false).unwrap(), [5]);
    let e = tok.encode("hello qq", false).unwrap_err().to_string();
    assert!(e.contains("\"qq\"") && !e.contains('\n'), "{e}");
}

/// Hugging Face's BERT tokenizer on the alphabet of [`wpm_matches_bert_reference`],
/// written plainly: each char's class is spelled out by hand (no Unicode tables), then
/// whitespace/punctuation splitting and greedy longest-first WordPiece with `##`
/// continuations on the Hugging Face vocabulary.
fn naive_bert(hf: &[&str], lowercase: bool, text: &str) -> Vec<u32> {
    let mut words: Vec<String> = vec![String::new()];
    for c in text.chars() {
        match c {
            ' ' | '\t' | '\n' => words.push(String::new()),
            '\u{7}' | '\u{200d}' => {}
            ',' | '!' | '+' | '中' => {
                words.push(c.to_string());
                words.push(String::new());
            }
            'é' if lowercase => words.last_mut().unwrap().push('e'),
            'A'..='E' if lowercase => words.last_mut().unwrap().push(c.to_ascii_lowercase()),
            _ => words.last_mut().unwrap().push(c),
        }
    }
    let id = |s: &str| hf.iter().position(|t| *t == s).map(|i| i as u32);
    let mut out = Vec::new();
    for w in words.iter().filter(|w| !w.is_empty()) {
        let chars: Vec<char> = w.chars().collect();
        let mut ids = Vec::new();
        let mut start = 0;
        while start < chars.len() {
            let piece = (start + 1..=chars.len()).rev().find_map(|end| {
                let s: String = chars[start..end].iter().collect();
                let s = if start > 0 { format!("##{s}") } else { s };
                id(&s).map(|i| (end, i))
            });
            match piece {
                Some((end, i)) => {
                    ids.push(i);
                    start = end;
                }
                None => {
                    ids = vec![1];
                    break;
                }
            }
        }
        out.extend(ids);
    }
    out
}

#[test]
fn wpm_matches_bert_reference() {
    let mut rng = TestRng::new(0x5EED_0B0E_27AA_1234);
    let letters = ['a', 'b', 'c', 'd', 'e', 'é'];
    let alphabet: Vec<char> = "abcdeABCDEé ,!+中\t\n\u{7}\u{200d}€".chars().collect();
    for round in 0..40 {
        // A random vocabulary: the specials, then distinct pieces of 1..=4 letters, half
        // of them continuations.
        let mut hf: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ",", "!", "+"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for _ in 0..(10 + rng.below(40)) {
            let len = 1 + rng.below(4);
            let mut p: String = (0..len)
                .map(|_| letters[rng.below(letters.len())])
                .collect();
            if rng.below(2) == 0 {
                p.insert_str(0, "##");
            }
            if !hf.contains(&p) {
                hf.push(p);
            }
        }
        let hf: Vec<&str> = hf.iter().map(|s| s.as_str()).collect();
        for lowercase in [true, false] {
            let tok = Tokenizer::from_spec(&wpm_spec(&hf, lowercase)).unwrap();
            for _ in 0..20 {
                let len = rng.below(30);
                let text: String = (0..len)
                    .map(|_| alphabet[rng.below(alphabet.len())])
                    .collect();
                assert_eq!(
                    tok.encode(&text, false).unwrap(),
                    naive_bert(&hf, lowercase, &text),
                    "round {round}, lowercase {lowercase}, {text:?}, vocabulary {hf:?}"
                );
            }
        }
    }
}

#[cfg(feature = "std")]
fn streamed(tok: &Tokenizer, text: &str, chunk: usize) -> Vec<u32> {
    let mut s = StreamEncoder::new(tok, text.as_bytes(), chunk, 1 << 20);
    let mut ids = Vec::new();
    while let Some(part) = s.next_ids().unwrap() {
        ids.extend(part);
    }
    ids
}

/// Random lines over the hand-made vocabularies' characters, with the blanks a cut
/// must respect (`\n\n`, ` \n`, `\r\n`, leading spaces).
#[cfg(feature = "std")]
fn cut_texts() -> Vec<String> {
    let pool: Vec<&str> = vec![
        "hello", "world", "he", "ll", "o", "a", "aa", "é", "?", " ", " ", "\n", "\n", "\n\n",
        " \n", "\r\n", "\n ", "b",
    ];
    let mut rng = TestRng::new(0xC07);
    (0..20)
        .map(|_| (0..200).map(|_| pool[rng.below(pool.len())]).collect())
        .collect()
}

#[cfg(feature = "std")]
#[test]
fn streamed_pieces_encode_to_the_whole_texts_ids() {
    let mut sp_no_prefix = sp_spec(true, Some(UNK));
    sp_no_prefix.add_space_prefix = false;
    let mut char_vocab = char_spec(Some(6));
    char_vocab.tokens.push("h".into());
    for (what, spec) in [
        ("sentencepiece", sp_spec(true, Some(UNK))),
        ("sentencepiece without the space prefix", sp_no_prefix),
        ("char", char_vocab),
    ] {
        let tok = Tokenizer::from_spec(&spec).unwrap();
        assert!(tok.can_cut(), "{what}");
        for text in cut_texts() {
            let whole = tok.encode(&text, false).unwrap();
            let cuts = text.matches('\n').count();
            assert!(cuts > 10);
            for chunk in [1, 5, 64] {
                assert_eq!(
                    streamed(&tok, &text, chunk),
                    whole,
                    "{what}, chunk {chunk}: {text:?}"
                );
            }
        }
    }
    // A token that spells a line break and a letter could be merged across a cut:
    // such a vocabulary is read whole.
    let mut spec = sp_spec(true, Some(UNK));
    spec.tokens.push("\na".into());
    spec.scores.push(9.0);
    let tok = Tokenizer::from_spec(&spec).unwrap();
    assert!(!tok.can_cut());
    let text = "a\na\na";
    assert_eq!(streamed(&tok, text, 1), tok.encode(text, false).unwrap());
}

#[cfg(feature = "std")]
#[test]
fn a_stream_without_a_cut_is_bounded() {
    let tok = Tokenizer::from_spec(&sp_spec(true, Some(UNK))).unwrap();
    use std::io::Read;
    let zeros = std::io::repeat(0).take(1 << 30);
    let mut s = StreamEncoder::new(&tok, zeros, 4096, 100_000);
    match s.next_ids() {
        Err(StreamError::NoCut { held, at: 0 }) => assert_eq!(held, 100_000),
        other => panic!("{other:?}"),
    }
    assert!(s.bytes_read() <= 100_000);
    // Invalid UTF-8 is named with its offset in the whole text.
    let text = b"ab\nab\nab\xff";
    let mut s = StreamEncoder::new(&tok, &text[..], 2, 100);
    let err = loop {
        match s.next_ids() {
            Ok(Some(_)) => continue,
            r => break r,
        }
    };
    assert!(matches!(err, Err(StreamError::NotUtf8(8))), "{err:?}");
}
