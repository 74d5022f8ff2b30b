//! Special tokens in text, as llama.cpp's `tokenizer_st_partition`: before the
//! tokenizer runs, the text is cut at every occurrence of a special token's text, longest
//! token first. User-defined tokens are always cut out; control and unknown tokens only
//! when the caller asks to parse special tokens.

use alloc::vec::Vec;
use llm_format::token_type;

/// One piece of partitioned text: ordinary text for the tokenizer, or a token already
/// recognised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Fragment<'t> {
    /// Text to encode.
    Text(&'t str),
    /// A special token's id.
    Token(u32),
}

/// The special tokens of a vocabulary, longest text first (ties: lower id first).
#[derive(Clone, Debug, Default)]
pub(super) struct Specials {
    /// (id, text, whether it is parsed only on request: control / unknown).
    tokens: Vec<(u32, alloc::boxed::Box<str>, bool)>,
}

impl Specials {
    /// Collects the control, user-defined and unknown tokens with non-empty text.
    pub(super) fn new(tokens: &[impl AsRef<str>], types: &[u8]) -> Specials {
        let mut v: Vec<(u32, alloc::boxed::Box<str>, bool)> = tokens
            .iter()
            .zip(types)
            .enumerate()
            .filter_map(|(id, (t, &ty))| {
                let t = t.as_ref();
                let on_request = match ty {
                    token_type::CONTROL | token_type::UNKNOWN => true,
                    token_type::USER_DEFINED => false,
                    _ => return None,
                };
                (!t.is_empty()).then(|| (id as u32, alloc::boxed::Box::from(t), on_request))
            })
            .collect();
        v.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
        Specials { tokens: v }
    }

    /// Cuts `text` at the special tokens (control and unknown ones only when
    /// `parse_special`). Empty text gives no fragments.
    pub(super) fn partition<'t>(&self, text: &'t str, parse_special: bool) -> Vec<Fragment<'t>> {
        let mut frags = Vec::new();
        if text.is_empty() {
            return frags;
        }
        frags.push(Fragment::Text(text));
        let mut next = Vec::new();
        for (id, tok, on_request) in &self.tokens {
            if *on_request && !parse_special {
                continue;
            }
            let tok: &str = tok;
            let hit = frags
                .iter()
                .any(|f| matches!(f, Fragment::Text(t) if t.contains(tok)));
            if !hit {
                continue;
            }
            next.clear();
            for f in &frags {
                let Fragment::Text(mut rest) = *f else {
                    next.push(*f);
                    continue;
                };
                while let Some(at) = rest.find(tok) {
                    if at > 0 {
                        next.push(Fragment::Text(&rest[..at]));
                    }
                    next.push(Fragment::Token(*id));
                    rest = &rest[at + tok.len()..];
                }
                if !rest.is_empty() {
                    next.push(Fragment::Text(rest));
                }
            }
            core::mem::swap(&mut frags, &mut next);
        }
        frags
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use token_type::{CONTROL as C, NORMAL as N, USER_DEFINED as U};

    fn specials() -> (Vec<&'static str>, Specials) {
        let toks = vec!["a", "<s>", "<|im_start|>", "<|im", "  ", "   ", "b"];
        let types = [N, C, C, U, U, U, N];
        let s = Specials::new(&toks, &types);
        (toks, s)
    }

    #[test]
    fn cuts_longest_first_and_user_defined_always() {
        use Fragment::{Text as T, Token as K};
        let (_, s) = specials();
        // Control tokens only when asked; the longer `<|im_start|>` wins over `<|im`.
        assert_eq!(
            s.partition("x<|im_start|>y", true),
            vec![T("x"), K(2), T("y")]
        );
        assert_eq!(
            s.partition("x<|im_start|>y", false),
            vec![T("x"), K(3), T("_start|>y")]
        );
        assert_eq!(s.partition("<s><s>", true), vec![K(1), K(1)]);
        assert_eq!(s.partition("<s><s>", false), vec![T("<s><s>")]);
        // Three spaces is one token, then the remaining two.
        assert_eq!(
            s.partition("a     b", false),
            vec![T("a"), K(5), K(4), T("b")]
        );
        assert_eq!(s.partition("", true), vec![]);
        assert_eq!(s.partition("plain", true), vec![T("plain")]);
    }

    #[test]
    fn cuts_agree_with_a_naive_scan_on_random_text() {
        // With no token a substring of another, llama.cpp's longest-first passes equal a
        // left-to-right scan that takes the longest token starting at each position.
        let seed = llm_format::testing::test_seed(0x5bec1a1);
        let mut x = seed | 1;
        let mut rnd = move |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        let toks = vec!["<s>", "</s>", "<|x|>", "é!", "zz"];
        let types = [C, C, C, U, U];
        let s = Specials::new(&toks, &types);
        let alphabet = ["<", "s", ">", "/", "|", "x", "é", "!", "z", " "];
        for _ in 0..2000 {
            let text: alloc::string::String = (0..rnd(24)).map(|_| alphabet[rnd(10)]).collect();
            let got = s.partition(&text, true);
            let mut want = Vec::new();
            let (mut i, mut start) = (0, 0);
            while i < text.len() {
                let hit = toks
                    .iter()
                    .enumerate()
                    .find(|(_, t)| text[i..].starts_with(**t));
                match hit {
                    Some((id, t)) => {
                        if start < i {
                            want.push(Fragment::Text(&text[start..i]));
                        }
                        want.push(Fragment::Token(id as u32));
                        i += t.len();
                        start = i;
                    }
                    None => i += text[i..].chars().next().map_or(1, char::len_utf8),
                }
            }
            if start < text.len() {
                want.push(Fragment::Text(&text[start..]));
            }
            assert_eq!(got, want, "text {text:?}");
        }
    }
}
