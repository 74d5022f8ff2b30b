//! Pre-tokenizers: how byte-level BPE text is cut into words before merging, one per
//! `tokenizer.ggml.pre` name that llama.cpp knows, with llama.cpp's regexes
//! (`llama-vocab.cpp`, `llm_tokenizer_bpe`).
//!
//! A pre-tokenizer is a list of steps applied in turn, as llama.cpp's
//! `unicode_regex_split`: each step cuts every piece of the previous step into its
//! matches and the text between them (both kept). GPT-2's regex and `\p{N}` (one digit
//! per piece) are hand-written scanners, so the pre-tokenizers made only of them (gpt-2,
//! mpt, olmo, starcoder, refact, command-r, smollm, ...) work without `std`; the others
//! run their regexes through `fancy-regex` (the `std` feature).
//!
//! Not supported as pre-tokenizer names of a byte-level vocabulary (an error when a
//! file names them): llama.cpp's raw-UTF-8 BPE ones (`gemma4`, which is the `raw-bpe`
//! kind instead, `granite-embed-multi-311m`, `sarvam-moe`, `whitespace`) and the two
//! with custom splitters (`kimi-k2`, `afmoe`).

use super::error::TokenizerError;
use super::gpt2::{gpt2_pieces, is_number};
use alloc::string::ToString;
use alloc::vec::Vec;

/// One step of a pre-tokenizer as written in the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// GPT-2's regex, `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`,
    /// as the hand-written scanner [`gpt2_pieces`].
    Gpt2,
    /// `\p{N}`: every number char alone.
    Digit,
    /// Any other regex (std only).
    Re(&'static str),
}

/// A named pre-tokenizer and the vocabulary flags llama.cpp sets with it.
#[derive(Clone, Copy, Debug)]
pub struct PreSpec {
    /// The `tokenizer.ggml.pre` names that select it.
    pub names: &'static [&'static str],
    pub(super) steps: &'static [Step],
    /// A word that is itself a token is that token, without merging (llama.cpp's
    /// `ignore_merges`).
    pub ignore_merges: bool,
    /// llama.cpp adds BOS for these unless the file says otherwise.
    pub add_bos: bool,
}

/// The name of GPT-2's pre-tokenizer, what a gpt2-kind file without `tokenizer.pre`
/// uses.
pub const GPT2_NAME: &str = "gpt-2";

/// Names llama.cpp knows that this runtime does not support, with why.
pub const UNSUPPORTED: &[(&str, &str)] = &[
    ("gemma4", "raw-UTF-8 BPE"),
    ("granite-embed-multi-311m", "raw-UTF-8 BPE"),
    ("sarvam-moe", "raw-UTF-8 BPE"),
    ("whitespace", "raw-UTF-8 BPE"),
    ("kimi-k2", "a custom splitter"),
    ("afmoe", "a custom digit splitter"),
];

/// The pre-tokenizer named `name` (llama.cpp's `tokenizer.ggml.pre`), if supported.
pub fn pre_tokenizer(name: &str) -> Option<&'static PreSpec> {
    PRE_TOKENIZERS.iter().find(|p| p.names.contains(&name))
}

/// Every supported name.
pub fn pre_tokenizer_names() -> impl Iterator<Item = &'static str> {
    PRE_TOKENIZERS.iter().flat_map(|p| p.names.iter().copied())
}

/// A compiled pre-tokenizer.
#[derive(Clone, Debug)]
pub(super) struct PreTokenizer {
    steps: Vec<Compiled>,
}

#[derive(Clone, Debug)]
enum Compiled {
    Gpt2,
    Digit,
    #[cfg(feature = "std")]
    Re(fancy_regex::Regex),
}

impl PreTokenizer {
    /// GPT-2's.
    pub(super) fn gpt2() -> PreTokenizer {
        PreTokenizer {
            steps: alloc::vec![Compiled::Gpt2],
        }
    }

    /// Compiles `spec`. Without `std`, a regex step is an error.
    pub(super) fn new(name: &str, spec: &PreSpec) -> Result<PreTokenizer, TokenizerError> {
        let steps = spec
            .steps
            .iter()
            .map(|s| match *s {
                Step::Gpt2 => Ok(Compiled::Gpt2),
                Step::Digit => Ok(Compiled::Digit),
                #[cfg(feature = "std")]
                Step::Re(re) => fancy_regex::Regex::new(re).map(Compiled::Re).map_err(|e| {
                    TokenizerError::PreTokenizer {
                        name: name.to_string(),
                        reason: alloc::format!("regex {re:?}: {e}"),
                    }
                }),
                #[cfg(not(feature = "std"))]
                Step::Re(_) => Err(TokenizerError::PreTokenizer {
                    name: name.to_string(),
                    reason: "needs regexes, which this build (without std) lacks".to_string(),
                }),
            })
            .collect::<Result<_, _>>()?;
        Ok(PreTokenizer { steps })
    }

    /// The words of `text`, in order; they concatenate back to `text`.
    pub(super) fn split<'t>(&self, text: &'t str) -> Result<Vec<&'t str>, TokenizerError> {
        let mut pieces = alloc::vec![text];
        let mut next = Vec::new();
        for step in &self.steps {
            next.clear();
            for &p in &pieces {
                match step {
                    Compiled::Gpt2 => next.extend(gpt2_pieces(p)),
                    Compiled::Digit => split_digits(p, &mut next),
                    #[cfg(feature = "std")]
                    Compiled::Re(re) => split_regex(re, p, &mut next)?,
                }
            }
            core::mem::swap(&mut pieces, &mut next);
        }
        Ok(pieces)
    }
}

/// `\p{N}` as a step: each number char alone, the runs between them kept.
fn split_digits<'t>(s: &'t str, out: &mut Vec<&'t str>) {
    let mut start = 0;
    for (i, c) in s.char_indices() {
        if is_number(c) {
            if start < i {
                out.push(&s[start..i]);
            }
            let end = i + c.len_utf8();
            out.push(&s[i..end]);
            start = end;
        }
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
}

/// A regex step: the matches and the non-empty text between them.
#[cfg(feature = "std")]
pub(super) fn split_regex<'t>(
    re: &fancy_regex::Regex,
    s: &'t str,
    out: &mut Vec<&'t str>,
) -> Result<(), TokenizerError> {
    let mut last = 0;
    for m in re.find_iter(s) {
        let m = m.map_err(|e| TokenizerError::PreTokenizer {
            name: re.as_str().to_string(),
            reason: e.to_string(),
        })?;
        if m.start() > last {
            out.push(&s[last..m.start()]);
        }
        if m.end() > m.start() {
            out.push(m.as_str());
        }
        last = m.end();
    }
    if last < s.len() {
        out.push(&s[last..]);
    }
    Ok(())
}

/// llama.cpp's pre-tokenizers (generated from `llama-vocab.cpp`: the names of
/// `llama_vocab::impl::load`, the regexes of `llm_tokenizer_bpe`).
static PRE_TOKENIZERS: &[PreSpec] = &[
    PreSpec {
        names: &["default"],
        steps: &[Step::Re("[\\p{P}\\$\\+<=>\\^~\\|]+"), Step::Gpt2, Step::Re("\\p{N}+"), Step::Re("[0-9][0-9][0-9]")],
        ignore_merges: false,
        add_bos: false,
    },
    PreSpec {
        names: &["minicpm5"],
        steps: &[Step::Re("\\p{N}{1,3}"), Step::Re("(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}+| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")],
        ignore_merges: true,
        add_bos: false,
    },
    PreSpec {
        names: &["llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano"],
        steps: &[Step::Re("(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")],
        ignore_merges: true,
        add_bos: true,
    },
    PreSpec {
        names: &["deepseek-llm"],
        steps: &[Step::Re("[\r\n]"), Step::Re("\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+"), Step::Re("\\s?[!-/:-~！-／：-～‘-‟　-。]+"), Step::Re("\\s+$"), Step::Re("[一-龥ࠀ-一가-퟿]+"), Step::Re("\\p{N}+")],
        ignore_merges: false,
        add_bos: false,
    },
    PreSpec {
        names: &["deepseek-coder"],
        steps: &[Step::Re("[\r\n]"), Step::Re("\\s?\\p{L}+"), Step::Re("\\s?\\p{P}+"), Step::Re("[一-龥ࠀ-一가-퟿]+"), Step::Digit],
        ignore_merges: false,
        add_bos: false,
    },
    PreSpec {
        names: &["deepseek-v3", "hunyuan-dense", "hy_v4", "joyai-llm"],
        steps: &[Step::Re("\\p{N}{1,3}"), Step::Re("[一-龥぀-ゟ゠-ヿ]+"), Step::Re("[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+")],
        ignore_merges: false,
        add_bos: false,
    },
    PreSpec {
        names: &["spark2_5"],
        steps: &[Step::Re("\\p{N}{1,3}"), Step::Re("[一-龥぀-ゟ゠-ヿ]+"), Step::Re("[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+|[\r\n]|\\s+(?!\\S)|\\s+"), Step::Digit],
        ignore_merges: false,
        add_bos: false,
    },
    PreSpec {
        names: &["youtu"],
        steps: &[Step::Re("[가-힣ㄱ-ㆎ]+|[！…“”‘’—：；，、-〿︰-﹏]+|[ㄅ-ㄯ]+|[一-龥぀-ゟ゠-ヿ]+"), Step::Re("[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")],
        ignore_merges: true,
        add_bos: false,
    },
    PreSpec {
        names: &["falcon"],
        steps: &[Step::Re("[\\p{P}\\$\\+<=>\\^~\\|`]+"), Step::Gpt2, Step::Re("[0-9][0-9][0-9]")],
        ignore_merges: false,
        add_bos: false,
    },
    PreSpec {
        names: &["mpt", "gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0", "mellum", "modern-bert", "jina-v1-en", "jina-v2-code", "roberta-bpe", "olmo", "jais", "exaone4", "trillion", "granite-docling"],
        steps: &[Step::Gpt2],
        ignore_merges: false,
        add_bos: false,
    },
    PreSpec {
        names: &["starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b", "mellum2"],
        steps: &[Step::Digit, Step::Gpt2],
        ignore_merges: false,
        add_bos: false,
    },
    PreSpec {
        names: &["jais-2"],
        steps: &[Step::Re("(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s{512}(?!\\S)|\\s{256}(?!\\S)|\\s{128}(?!\\S)|\\s{64}(?!\\S)|\\s{32}(?!\\S)|\\s{16}(?!\\S)|\\s{8}(?!\\S)|\\s{4}(?!\\S)|\\s{1,2}(?!\\S)|\\s{1}")],
        ignore_merges: false,
        add_bos: false,
    },
    PreSpec {
        names: &["qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "stablelm2", "megrez", "hunyuan", "grok-2", "solar-open"],
        steps: &[Step::Re("(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")],
        ignore_merges: false,
        add_bos: false,
    },
    PreSpec {
        names: &["qwen35"],
        steps: &[Step::Re("(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")],
        ignore_merges: false,
        add_bos: false,
    },
    PreSpec {
        names: &["dbrx", "smaug-bpe", "chatglm-bpe"],
        steps: &[Step::Re("(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")],
        ignore_merges: false,
        add_bos: false,
    },
    PreSpec {
        names: &["poro-chat", "bloom", "gpt3-finnish"],
        steps: &[Step::Re(" ?[^(\\s|.,!?…。，、।۔،)]+")],
        ignore_merges: false,
        add_bos: false,
    },
    PreSpec {
        names: &["glm4", "glm5"],
        steps: &[Step::Re("(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")],
        ignore_merges: true,
        add_bos: false,
    },
    PreSpec {
        names: &["viking"],
        steps: &[Step::Re(" ?[^(\\s|.,!?…。，、।۔،)]+"), Step::Digit],
        ignore_merges: false,
        add_bos: false,
    },
    PreSpec {
        names: &["tekken"],
        steps: &[Step::Re("[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")],
        ignore_merges: true,
        add_bos: true,
    },
    PreSpec {
        names: &["exaone-moe"],
        steps: &[Step::Re("(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?(?:\\p{L}\\p{M}*(?: \\p{L}\\p{M}*)*)+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]?|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+")],
        ignore_merges: false,
        add_bos: false,
    },
    PreSpec {
        names: &["chameleon"],
        steps: &[Step::Re("<sentinel:[0-9]+>"), Step::Re("(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z"), Step::Re("([\\t\\n]|    |  )"), Step::Digit, Step::Re("[\\p{P}!-/:-@\\[-`{-~]"), Step::Gpt2],
        ignore_merges: false,
        add_bos: true,
    },
    PreSpec {
        names: &["gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2"],
        steps: &[Step::Re("[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")],
        ignore_merges: false,
        add_bos: false,
    },
    PreSpec {
        names: &["granite-embed-multi-97m"],
        steps: &[Step::Re("[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}\\p{M}])([^a-z]))*((?=[\\p{L}\\p{M}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}\\p{M}])([^a-z]))+((?=[\\p{L}\\p{M}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")],
        ignore_merges: true,
        add_bos: false,
    },
    PreSpec {
        names: &["tiny_aya", "cohere2moe"],
        steps: &[Step::Re("\\d{1,3}(?=(?:\\d{3})*\\b)"), Step::Re("[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")],
        ignore_merges: false,
        add_bos: false,
    },
    PreSpec {
        names: &["superbpe"],
        steps: &[Step::Re("\\p{N}+"), Step::Re("(?=(\\d{3})+(?!\\d))")],
        ignore_merges: false,
        add_bos: false,
    },
    PreSpec {
        names: &["bailingmoe", "bailingmoe2", "llada-moe"],
        steps: &[Step::Re("'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+")],
        ignore_merges: false,
        add_bos: false,
    },
    PreSpec {
        names: &["seed-coder"],
        steps: &[Step::Re("(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")],
        ignore_merges: false,
        add_bos: false,
    },
    PreSpec {
        names: &["ufakzeka"],
        steps: &[Step::Re("[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")],
        ignore_merges: false,
        add_bos: false,
    },
    PreSpec {
        names: &["laguna"],
        steps: &[Step::Re("[^\\n]+|[\\n]+"), Step::Re("(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")],
        ignore_merges: false,
        add_bos: false,
    },
];

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    /// GPT-2's regex with the final `|\s+` HF has: llama.cpp's lacks it, the text
    /// between matches is kept instead, which comes to the same.
    const GPT2_RE: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";

    fn random_text(rnd: &mut impl FnMut(usize) -> usize) -> alloc::string::String {
        const ALPHABET: &[&str] = &[
            "a", "Z", "é", "ж", "中", "3", "٣", "½", " ", " ", "  ", "\t", "\n", "\r", "\u{a0}",
            "\u{3000}", "'", "'s", "'LL", "!", ".", "(", "$", "🦙", "\u{301}", "_", "-",
        ];
        (0..rnd(30))
            .map(|_| ALPHABET[rnd(ALPHABET.len())])
            .collect()
    }

    #[test]
    fn hand_scanners_agree_with_the_regexes() {
        let seed = llm_format::testing::test_seed(0x9e7e70);
        let mut x = seed | 1;
        let mut rnd = move |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        let gpt2 = fancy_regex::Regex::new(GPT2_RE).unwrap();
        let digit = fancy_regex::Regex::new(r"\p{N}").unwrap();
        for _ in 0..5000 {
            let text = random_text(&mut rnd);
            let mut want = Vec::new();
            split_regex(&gpt2, &text, &mut want).unwrap();
            let got: Vec<&str> = gpt2_pieces(&text).collect();
            assert_eq!(got, want, "gpt2 on {text:?}");
            let mut want = Vec::new();
            split_regex(&digit, &text, &mut want).unwrap();
            let mut got = Vec::new();
            split_digits(&text, &mut got);
            assert_eq!(got, want, "digits on {text:?}");
        }
    }

    #[test]
    fn every_pre_tokenizer_compiles_and_covers_its_text() {
        let text = "Hello, y'all! How are you 😁 ?我想在apple工作1314151天～ 3333 \n\n\t x";
        for spec in PRE_TOKENIZERS {
            let p = PreTokenizer::new(spec.names[0], spec).unwrap();
            let words = p.split(text).unwrap();
            assert_eq!(words.concat(), text, "{}", spec.names[0]);
            assert!(words.iter().all(|w| !w.is_empty()));
        }
        for (name, _) in UNSUPPORTED {
            assert!(pre_tokenizer(name).is_none());
        }
    }

    #[test]
    fn llama3_splits_numbers_in_threes() {
        let p = PreTokenizer::new("llama-bpe", pre_tokenizer("llama-bpe").unwrap()).unwrap();
        assert_eq!(p.split(" 2024 (x").unwrap(), [" ", "202", "4", " (", "x"]);
    }
}
