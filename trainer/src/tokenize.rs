//! Text → token shards: char-level, byte-level, or byte-level BPE trained with the
//! `tokenizers` crate to `vocab_size`; writes `train.bin` / `val.bin` (llm.c shards, the
//! last `val_fraction` of the text held out) and `tokenizer.json`, whose contents map
//! one to one onto the file's `TokenizerSpec` (GPT-2 byte-to-unicode pieces for byte and
//! BPE, `Char` pieces for char-level).

use crate::data::{write_shard, DataError};
use llm_format::{TokenizerKind, TokenizerSpec};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// GPT-2's reversible byte → printable-char table (the runtime's, so the trainer and
/// the runtime agree byte for byte).
pub fn byte_to_unicode() -> [char; 256] {
    core::array::from_fn(|b| llmrt::tokenizer::byte_to_char(b as u8))
}

/// GPT-2 pre-tokenisation: the runtime's hand-written form of GPT-2's regex (checked
/// against tiktoken), so BPE is trained on the same pieces the runtime encodes.
pub fn pretokenize(text: &str) -> Vec<&str> {
    llmrt::tokenizer::gpt2_pieces(text).collect()
}

/// A trained tokenizer, serialised as the run's `tokenizer.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TextTokenizer {
    /// `char`, `byte` or `bpe`.
    pub kind: String,
    /// Id → piece (a char; or GPT-2 byte-to-unicode text for byte/BPE).
    pub tokens: Vec<String>,
    /// BPE merges "left right", highest priority first (empty for char/byte).
    pub merges: Vec<String>,
}

impl TextTokenizer {
    /// One token per distinct char of `text`, sorted (nanoGPT's shakespeare_char).
    pub fn train_char(text: &str) -> Self {
        let mut chars: Vec<char> = text.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        TextTokenizer {
            kind: "char".into(),
            tokens: chars.iter().map(|c| c.to_string()).collect(),
            merges: Vec::new(),
        }
    }

    /// The 256 bytes, id = byte value, pieces in GPT-2's byte-to-unicode form.
    pub fn byte() -> Self {
        TextTokenizer {
            kind: "byte".into(),
            tokens: byte_to_unicode().iter().map(|c| c.to_string()).collect(),
            merges: Vec::new(),
        }
    }

    /// For shards that came without a tokenizer: the byte pieces for ids below 256,
    /// `<tokN>` placeholders above, so the exported file still has `vocab_size` pieces.
    pub fn placeholder(vocab_size: usize) -> Self {
        let table = byte_to_unicode();
        TextTokenizer {
            kind: "bpe".into(),
            tokens: (0..vocab_size)
                .map(|i| match table.get(i) {
                    Some(c) => c.to_string(),
                    None => format!("<tok{i}>"),
                })
                .collect(),
            merges: Vec::new(),
        }
    }

    /// Byte-level BPE trained on `text` with the `tokenizers` crate's BPE trainer to
    /// `vocab_size` tokens (at least the 256 byte pieces).
    pub fn train_bpe(text: &str, vocab_size: usize) -> Result<Self, DataError> {
        use tokenizers::trainers::bpe::BpeTrainer;
        use tokenizers::Trainer;
        let table = byte_to_unicode();
        let mut trainer = BpeTrainer::builder()
            .vocab_size(vocab_size.max(256))
            .initial_alphabet(table.iter().copied().collect())
            .show_progress(false)
            .build();
        let to_pieces = |s: &str| -> Vec<String> {
            pretokenize(s)
                .into_iter()
                .map(|w| w.bytes().map(|b| table[b as usize]).collect())
                .collect()
        };
        trainer
            .feed(text.lines(), |line| Ok(to_pieces(&format!("{line}\n"))))
            .map_err(|e| DataError(format!("BPE training failed: {e}")))?;
        let (vocab, merges, _) = trainer
            .train_vocab()
            .map_err(|e| DataError(format!("BPE training failed: {e}")))?;
        let mut tokens = vec![String::new(); vocab.len()];
        for (piece, id) in vocab {
            let slot = tokens
                .get_mut(id as usize)
                .ok_or_else(|| DataError(format!("BPE trainer returned id {id} out of range")))?;
            *slot = piece;
        }
        Ok(TextTokenizer {
            kind: "bpe".into(),
            tokens,
            merges: merges
                .into_iter()
                .map(|(a, b)| format!("{a} {b}"))
                .collect(),
        })
    }

    /// Number of tokens.
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// Encodes `text`; a char-level tokenizer fails on chars it has not seen.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, DataError> {
        match self.kind.as_str() {
            "char" => {
                let index: HashMap<&str, u32> = self
                    .tokens
                    .iter()
                    .enumerate()
                    .map(|(i, t)| (t.as_str(), i as u32))
                    .collect();
                let mut buf = [0u8; 4];
                text.chars()
                    .map(|c| {
                        index
                            .get(&*c.encode_utf8(&mut buf))
                            .copied()
                            .ok_or_else(|| {
                                DataError(format!("character {c:?} is not in the char vocabulary"))
                            })
                    })
                    .collect()
            }
            "byte" => Ok(text.bytes().map(u32::from).collect()),
            _ => self.encode_bpe(text),
        }
    }

    fn encode_bpe(&self, text: &str) -> Result<Vec<u32>, DataError> {
        let table = byte_to_unicode();
        let index: HashMap<&str, u32> = self
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.as_str(), i as u32))
            .collect();
        let ranks: HashMap<(&str, &str), usize> = self
            .merges
            .iter()
            .enumerate()
            .filter_map(|(r, m)| m.split_once(' ').map(|p| (p, r)))
            .collect();
        let mut cache: HashMap<&str, Vec<u32>> = HashMap::new();
        let mut out = Vec::with_capacity(text.len() / 3);
        for word in pretokenize(text) {
            if let Some(ids) = cache.get(word) {
                out.extend_from_slice(ids);
                continue;
            }
            let mut syms: Vec<String> = word
                .bytes()
                .map(|b| table[b as usize].to_string())
                .collect();
            // Merge the adjacent pair of lowest rank until none applies (GPT-2's rule).
            loop {
                let best = (0..syms.len().saturating_sub(1))
                    .filter_map(|i| {
                        ranks
                            .get(&(syms[i].as_str(), syms[i + 1].as_str()))
                            .map(|r| (*r, i))
                    })
                    .min();
                let Some((_, i)) = best else { break };
                let right = syms.remove(i + 1);
                syms[i].push_str(&right);
            }
            let ids = syms
                .iter()
                .map(|s| {
                    index.get(s.as_str()).copied().ok_or_else(|| {
                        DataError(format!("BPE piece {s:?} is not in the vocabulary"))
                    })
                })
                .collect::<Result<Vec<u32>, _>>()?;
            out.extend_from_slice(&ids);
            cache.insert(word, ids);
        }
        Ok(out)
    }

    /// Decodes ids (unknown ids are skipped; invalid UTF-8 is replaced).
    pub fn decode(&self, ids: &[u32]) -> String {
        let pieces = ids.iter().filter_map(|&i| self.tokens.get(i as usize));
        if self.kind == "char" {
            return pieces.map(String::as_str).collect();
        }
        let table = byte_to_unicode();
        let rev: HashMap<char, u8> = table
            .iter()
            .enumerate()
            .map(|(b, c)| (*c, b as u8))
            .collect();
        let bytes: Vec<u8> = pieces
            .flat_map(|p| p.chars())
            .filter_map(|c| rev.get(&c).copied())
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The tokenizer as stored in a `.llm` file.
    pub fn spec(&self) -> TokenizerSpec<'static> {
        TokenizerSpec {
            kind: if self.kind == "char" {
                TokenizerKind::Char
            } else {
                TokenizerKind::Gpt2
            },
            tokens: self.tokens.iter().map(|t| Cow::Owned(t.clone())).collect(),
            scores: Vec::new(),
            merges: self.merges.iter().map(|m| Cow::Owned(m.clone())).collect(),
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
        }
    }

    /// Reads `tokenizer.json`.
    pub fn load(path: &Path) -> Result<Self, DataError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| DataError(format!("cannot read {}: {e}", path.display())))?;
        serde_json::from_str(&text).map_err(|e| DataError(format!("{}: {e}", path.display())))
    }

    /// Writes `tokenizer.json`.
    pub fn save(&self, path: &Path) -> Result<(), DataError> {
        let text = serde_json::to_string(self).map_err(|e| DataError(e.to_string()))?;
        llm_format::atomic::write_bytes(path, text.as_bytes())
            .map_err(|e| DataError(format!("cannot write {}: {e}", path.display())))
    }
}

/// Every file under `inputs` (files as given, directories walked in sorted order).
pub fn collect_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, DataError> {
    let mut out = Vec::new();
    fn walk(p: &Path, out: &mut Vec<PathBuf>) -> Result<(), DataError> {
        let meta = std::fs::metadata(p)
            .map_err(|e| DataError(format!("cannot read {}: {e}", p.display())))?;
        if meta.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| DataError(format!("cannot list {}: {e}", p.display())))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            entries.sort();
            for e in entries {
                walk(&e, out)?;
            }
        } else {
            out.push(p.to_path_buf());
        }
        Ok(())
    }
    for p in inputs {
        walk(p, &mut out)?;
    }
    if out.is_empty() {
        return Err(DataError("no input files".into()));
    }
    Ok(out)
}

/// Arguments of `llm-train tokenize`.
#[derive(clap::Args, Clone, Debug)]
pub struct TokenizeArgs {
    /// Text files or directories (walked recursively).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Output folder for train.bin, val.bin and tokenizer.json.
    #[arg(long, short)]
    pub out: PathBuf,
    /// char, byte or bpe.
    #[arg(long, default_value = "char")]
    pub tokenizer: String,
    /// Target vocabulary size for BPE.
    #[arg(long, default_value_t = 4096)]
    pub vocab_size: usize,
    /// Fraction of the text (from the end) held out for validation.
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f64,
}

/// What `tokenize` produced.
#[derive(Clone, Debug)]
pub struct Tokenized {
    /// The tokenizer.
    pub tokenizer: TextTokenizer,
    /// `train.bin`.
    pub train: PathBuf,
    /// `val.bin`.
    pub val: PathBuf,
    /// Tokens in each split.
    pub counts: (usize, usize),
}

/// Reads a training text file: an empty file, or one that is not UTF-8 text (a binary
/// file), is an error naming the file, as `llm-run perplexity` refuses it too.
pub fn read_text(path: &Path) -> Result<String, DataError> {
    let bytes = std::fs::read(path)
        .map_err(|e| DataError(format!("cannot read {}: {e}", path.display())))?;
    if bytes.is_empty() {
        return Err(DataError(format!(
            "{} is empty: there is no text to train on",
            path.display()
        )));
    }
    String::from_utf8(bytes).map_err(|e| {
        DataError(format!(
            "{} is not UTF-8 text (invalid byte at offset {}): training reads text files",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })
}

/// Tokenizes the inputs into `out/`.
pub fn tokenize_files(args: &TokenizeArgs) -> Result<Tokenized, DataError> {
    if !(0.0..1.0).contains(&args.val_fraction) {
        return Err(DataError(format!(
            "val_fraction {} must be in [0, 1)",
            args.val_fraction
        )));
    }
    let mut text = String::new();
    for f in collect_files(&args.inputs)? {
        text.push_str(&read_text(&f)?);
    }
    let tok = match args.tokenizer.as_str() {
        "char" => TextTokenizer::train_char(&text),
        "byte" => TextTokenizer::byte(),
        "bpe" => TextTokenizer::train_bpe(&text, args.vocab_size)?,
        k => {
            return Err(DataError(format!(
                "unknown tokenizer '{k}' (char, byte or bpe)"
            )))
        }
    };
    if tok.vocab_size() > 1 << 16 {
        return Err(DataError(format!(
            "{} tokens do not fit llm.c's u16 shards",
            tok.vocab_size()
        )));
    }
    let ids = tok.encode(&text)?;
    let n_val = (ids.len() as f64 * args.val_fraction) as usize;
    let split = ids.len() - n_val;
    let to16 = |v: &[u32]| v.iter().map(|&x| x as u16).collect::<Vec<u16>>();
    std::fs::create_dir_all(&args.out)
        .map_err(|e| DataError(format!("cannot create {}: {e}", args.out.display())))?;
    let train = args.out.join("train.bin");
    let val = args.out.join("val.bin");
    write_shard(&train, &to16(&ids[..split]))?;
    write_shard(&val, &to16(&ids[split..]))?;
    tok.save(&args.out.join("tokenizer.json"))?;
    Ok(Tokenized {
        tokenizer: tok,
        train,
        val,
        counts: (split, n_val),
    })
}

/// `llm-train tokenize`.
pub fn run_tokenize(args: TokenizeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let t = tokenize_files(&args)?;
    println!(
        "{} tokenizer with {} tokens: {} train tokens → {}, {} val tokens → {}",
        t.tokenizer.kind,
        t.tokenizer.vocab_size(),
        t.counts.0,
        t.train.display(),
        t.counts.1,
        t.val.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak. We're 42 citizens, aren't we?  Yes!\n";

    #[test]
    fn byte_table_is_gpt2s() {
        let t = byte_to_unicode();
        assert_eq!(t[b'A' as usize], 'A');
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        let mut all: Vec<char> = t.to_vec();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 256);
    }

    #[test]
    fn pretokenize_covers_text_like_gpt2() {
        let words = pretokenize("Hello world, it's 2024!  ok\n");
        assert_eq!(words.concat(), "Hello world, it's 2024!  ok\n");
        assert_eq!(
            words,
            vec!["Hello", " world", ",", " it", "'s", " 2024", "!", " ", " ok", "\n"]
        );
    }

    #[test]
    fn char_byte_and_bpe_round_trip() {
        for tok in [
            TextTokenizer::train_char(TEXT),
            TextTokenizer::byte(),
            TextTokenizer::train_bpe(&TEXT.repeat(20), 300).unwrap(),
        ] {
            let ids = tok.encode(TEXT).unwrap();
            assert_eq!(tok.decode(&ids), TEXT, "{}", tok.kind);
            assert!(ids.iter().all(|&i| (i as usize) < tok.vocab_size()));
            if tok.kind == "bpe" {
                assert!(ids.len() < TEXT.len(), "BPE should compress");
                assert!(tok.vocab_size() > 256 && tok.vocab_size() <= 300);
                assert!(!tok.merges.is_empty());
            }
        }
        assert!(TextTokenizer::train_char("abc").encode("abd").is_err());
    }

    #[test]
    fn tokenize_writes_split_shards() {
        let d = std::env::temp_dir().join(format!("llm-train-tok-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let f = d.join("in.txt");
        std::fs::write(&f, TEXT.repeat(10)).unwrap();
        let args = TokenizeArgs {
            inputs: vec![f],
            out: d.join("out"),
            tokenizer: "char".into(),
            vocab_size: 0,
            val_fraction: 0.1,
        };
        let t = tokenize_files(&args).unwrap();
        let n = TEXT.chars().count() * 10;
        assert_eq!(t.counts, (n - n / 10, n / 10));
        let train = crate::data::Shard::open(&t.train).unwrap().tokens();
        let val = crate::data::Shard::open(&t.val).unwrap().tokens();
        let all: Vec<u32> = train.iter().chain(&val).map(|&x| x as u32).collect();
        assert_eq!(t.tokenizer.decode(&all), TEXT.repeat(10));
        let back = TextTokenizer::load(&d.join("out/tokenizer.json")).unwrap();
        assert_eq!(back, t.tokenizer);
    }
}
