//! The grammar sampler against independent references.
//!
//! * A backtracking matcher written here over the parsed grammar (rules → alternatives
//!   → sequences), which shares nothing with the stack machine: it decides whether a
//!   string is in the language, or a prefix of a string in it.
//! * Random grammars (literals with multi-byte characters, classes, negation, groups,
//!   `* + ? {m,n}`, recursion) and random small vocabularies (tokens that split a
//!   character's bytes included): many outputs sampled with random logits; every token
//!   the mask allows keeps the output a prefix of the language, every token it refuses
//!   breaks it, EOS comes only on a complete string, and the trie mask equals the naive
//!   one-token-at-a-time check in every state.
//! * llama.cpp-style grammars (json, arithmetic, list) parse and constrain; errors have
//!   line and column; unsatisfiable and left-recursive grammars are refused.

use llmrt::grammar::parse::{CharSet, Elem};
use llmrt::grammar::{Grammar, GrammarMatcher, GrammarStepError, TokenTrie};
use llmrt::sampler::Rng;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

mod common;

/// The reference: the positions where `rule` can end when it starts at `pos` of `s`.
/// In prefix mode the end of `s` matches anything still to come (all rules are
/// productive, which `Grammar::parse` checks).
struct Reference<'a> {
    g: &'a Grammar,
    s: &'a [char],
    prefix: bool,
    memo: HashMap<(usize, usize), BTreeSet<usize>>,
}

impl Reference<'_> {
    fn rule(&mut self, r: usize, pos: usize) -> BTreeSet<usize> {
        if let Some(v) = self.memo.get(&(r, pos)) {
            return v.clone();
        }
        // Re-entry at the same position would be left recursion (refused by the parser).
        self.memo.insert((r, pos), BTreeSet::new());
        let mut out = BTreeSet::new();
        for seq in self.g.rules[r].clone() {
            out.extend(self.seq(&seq, 0, pos));
        }
        self.memo.insert((r, pos), out.clone());
        out
    }

    fn seq(&mut self, seq: &[Elem], i: usize, pos: usize) -> BTreeSet<usize> {
        if self.prefix && pos == self.s.len() {
            return BTreeSet::from([pos]);
        }
        let Some(e) = seq.get(i) else {
            return BTreeSet::from([pos]);
        };
        let mut out = BTreeSet::new();
        match e {
            Elem::Chars(c) => {
                if pos < self.s.len() && c.contains(self.s[pos] as u32) {
                    out.extend(self.seq(seq, i + 1, pos + 1));
                }
            }
            Elem::Rule(r) => {
                for p in self.rule(*r, pos) {
                    out.extend(self.seq(seq, i + 1, p));
                }
            }
        }
        out
    }
}

/// Whether `s` is in the language (`prefix`: a prefix of a string in it).
fn reference(g: &Grammar, s: &str, prefix: bool) -> bool {
    let chars: Vec<char> = s.chars().collect();
    let mut r = Reference {
        g,
        s: &chars,
        prefix,
        memo: HashMap::new(),
    };
    r.rule(g.root, 0).contains(&chars.len())
}

const ALPHABET: [char; 6] = ['a', 'b', 'c', 'x', 'é', '日'];

fn pick<T: Copy>(rng: &mut Rng, xs: &[T]) -> T {
    xs[rng.next_u32() as usize % xs.len()]
}

fn escape_char(c: char) -> String {
    match c {
        '"' | '\\' | '[' | ']' | '-' | '^' => format!("\\{c}"),
        c => c.to_string(),
    }
}

/// A random GBNF grammar over `ALPHABET`: rule i refers only to rules after it
/// (or to itself after a literal), so it is neither left-recursive nor unproductive.
fn random_grammar(rng: &mut Rng) -> String {
    let n = 1 + rng.next_u32() as usize % 4;
    let mut out = String::new();
    for i in 0..n {
        let name = if i == 0 {
            "root".to_string()
        } else {
            format!("r{i}")
        };
        let n_alts = 1 + rng.next_u32() as usize % 3;
        let mut alts = Vec::new();
        for a in 0..n_alts {
            let len = rng.next_u32() as usize % 4;
            let mut items: Vec<String> = Vec::new();
            for _ in 0..len {
                let mut item = match rng.next_u32() % 7 {
                    0 | 1 => {
                        let k = 1 + rng.next_u32() as usize % 3;
                        let s: String = (0..k).map(|_| escape_char(pick(rng, &ALPHABET))).collect();
                        format!("\"{s}\"")
                    }
                    2 => {
                        let neg = rng.next_u32() % 3 == 0;
                        let k = 1 + rng.next_u32() as usize % 3;
                        let mut s: String =
                            (0..k).map(|_| escape_char(pick(rng, &ALPHABET))).collect();
                        if rng.next_u32() % 3 == 0 {
                            s.push_str("a-c");
                        }
                        format!("[{}{s}]", if neg { "^" } else { "" })
                    }
                    3 if i + 1 < n => format!("r{}", i + 1 + rng.next_u32() as usize % (n - i - 1)),
                    4 => {
                        let k = 1 + rng.next_u32() as usize % 2;
                        let inner: Vec<String> = (0..k)
                            .map(|_| format!("\"{}\"", escape_char(pick(rng, &ALPHABET))))
                            .collect();
                        format!("({})", inner.join(" | "))
                    }
                    // Self-reference only after a plain literal: never leftmost.
                    5 if a > 0
                        && items
                            .last()
                            .is_some_and(|l| l.starts_with('"') && l.ends_with('"')) =>
                    {
                        name.clone()
                    }
                    _ => format!("\"{}\"", escape_char(pick(rng, &ALPHABET))),
                };
                // Not on a rule reference: a rule may be nullable, and a repeated
                // nullable item is left-recursive (refused, as llama.cpp does).
                if rng.next_u32() % 4 == 0 && !item.starts_with('r') {
                    item.push_str(pick(rng, &["*", "+", "?", "{2}", "{1,3}", "{0,2}", "{2,}"]));
                }
                items.push(item);
            }
            alts.push(items.join(" "));
        }
        // An alternative without self-reference keeps the rule productive.
        alts.push(format!("\"{}\"", escape_char(pick(rng, &ALPHABET))));
        out.push_str(&format!("{name} ::= {}  # rule {i}\n", alts.join(" | ")));
    }
    out
}

/// A random vocabulary over `ALPHABET`: every single character, random strings, and the
/// bytes of multi-byte characters split across tokens; the last id is EOS.
fn random_vocab(rng: &mut Rng) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = ALPHABET
        .iter()
        .map(|c| c.to_string().into_bytes())
        .collect();
    for _ in 0..20 {
        let k = 2 + rng.next_u32() as usize % 4;
        let s: String = (0..k).map(|_| pick(rng, &ALPHABET)).collect();
        v.push(s.into_bytes());
    }
    for c in ['é', '日'] {
        let b = c.to_string().into_bytes();
        let cut = 1 + rng.next_u32() as usize % (b.len() - 1);
        v.push(b[..cut].to_vec());
        v.push(b[cut..].to_vec());
        // A token that ends inside a character after a whole one.
        let mut t = b"a".to_vec();
        t.extend_from_slice(&b[..cut]);
        v.push(t);
    }
    v.push(vec![0xFF]); // never UTF-8
    v.push(Vec::new()); // EOS (no bytes)
    v
}

/// Checks the mask in the matcher's current state against the naive per-token check,
/// and, where the output stays whole UTF-8, against the reference.
fn check_state(
    g: &Grammar,
    m: &mut GrammarMatcher,
    vocab: &[Vec<u8>],
    out: &[u8],
    allowed: &mut Vec<bool>,
    ctx: &str,
) {
    m.fill_mask(allowed);
    let eos = vocab.len() as u32 - 1;
    for (id, bytes) in vocab.iter().enumerate() {
        let id = id as u32;
        let naive = m.allows_bytes(id, Some(bytes));
        assert_eq!(
            allowed[id as usize], naive,
            "{ctx}: trie mask vs naive, token {id} {bytes:?}"
        );
        if id == eos {
            if let Ok(s) = std::str::from_utf8(out) {
                assert_eq!(naive, reference(g, s, false), "{ctx}: EOS after {s:?}");
            }
            continue;
        }
        let mut after = out.to_vec();
        after.extend_from_slice(bytes);
        if let Ok(s) = std::str::from_utf8(&after) {
            assert_eq!(
                naive,
                reference(g, s, true),
                "{ctx}: token {bytes:?} after {out:?} ({s:?})"
            );
        }
    }
}

#[test]
fn random_grammars_against_the_reference() {
    let seed = common::test_seed(0x6AB);
    let mut rng = Rng::new(seed);
    let mut finished = 0;
    for case in 0..150 {
        let src = random_grammar(&mut rng);
        let g = Grammar::parse(&src).unwrap_or_else(|e| panic!("case {case}: {e}\n{src}"));
        let vocab = random_vocab(&mut rng);
        let eos = vocab.len() as u32 - 1;
        let bytes: Vec<Option<&[u8]>> = vocab.iter().map(|b| Some(b.as_slice())).collect();
        let trie = Arc::new(TokenTrie::new(&bytes, &[eos]));
        let g = Arc::new(g);
        for sample in 0..4 {
            let ctx = format!("case {case} sample {sample} (seed {seed})\n{src}");
            let mut m = GrammarMatcher::new(&g, trie.clone());
            let mut out = Vec::new();
            let mut allowed = Vec::new();
            for _ in 0..25 {
                check_state(&g, &mut m, &vocab, &out, &mut allowed, &ctx);
                let mut logits: Vec<f32> = (0..vocab.len()).map(|_| rng.next_f32() * 4.0).collect();
                match m.apply(&mut logits, &mut allowed) {
                    Ok(()) => {}
                    Err(GrammarStepError::DeadEnd) => panic!("{ctx}: dead end after {out:?}"),
                    Err(e) => panic!("{ctx}: {e}"),
                }
                let next = llmrt::sampler::argmax(&logits) as u32;
                assert!(logits[next as usize].is_finite(), "{ctx}");
                m.accept(next, Some(&vocab[next as usize]))
                    .expect("allowed token accepted");
                if next == eos {
                    let s = std::str::from_utf8(&out).expect("complete UTF-8 at EOS");
                    assert!(
                        reference(&g, s, false),
                        "{ctx}: {s:?} ended but is not in the language"
                    );
                    finished += 1;
                    break;
                }
                out.extend_from_slice(&vocab[next as usize]);
            }
        }
    }
    assert!(finished > 100, "only {finished} of 600 samples finished");
}

#[test]
fn refused_tokens_are_refused_by_accept() {
    let g = Arc::new(Grammar::parse(r#"root ::= "ab" [0-9]+"#).expect("parse"));
    let vocab: Vec<&[u8]> = vec![b"a", b"b", b"ab", b"1", b"12", b"x", b""];
    let bytes: Vec<Option<&[u8]>> = vocab.iter().map(|b| Some(*b)).collect();
    let trie = Arc::new(TokenTrie::new(&bytes, &[6]));
    let mut m = GrammarMatcher::new(&g, trie);
    assert_eq!(
        m.accept(3, Some(b"1")),
        Err(GrammarStepError::TokenNotAllowed(3))
    );
    assert_eq!(m.accept(6, None), Err(GrammarStepError::TokenNotAllowed(6)));
    m.accept(2, Some(b"ab")).expect("ab");
    assert!(!m.can_end());
    m.accept(4, Some(b"12")).expect("12");
    assert!(m.can_end());
    m.accept(6, None).expect("EOS once complete");
}

#[test]
fn a_dead_end_is_an_error_not_a_hang() {
    // The vocabulary cannot spell "z".
    let g = Arc::new(Grammar::parse(r#"root ::= "a" "z""#).expect("parse"));
    let bytes: Vec<Option<&[u8]>> = vec![Some(b"a"), Some(b"b"), Some(b"")];
    let mut m = GrammarMatcher::new(&g, Arc::new(TokenTrie::new(&bytes, &[2])));
    let mut logits = vec![0.0; 3];
    let mut allowed = Vec::new();
    m.apply(&mut logits, &mut allowed).expect("a is allowed");
    assert_eq!(logits, [0.0, f32::NEG_INFINITY, f32::NEG_INFINITY]);
    m.accept(0, Some(b"a")).expect("a");
    let mut logits = vec![0.0; 3];
    assert_eq!(
        m.apply(&mut logits, &mut allowed),
        Err(GrammarStepError::DeadEnd)
    );
}

fn err_of(src: &str) -> String {
    Grammar::parse(src).expect_err(src).to_string()
}

#[test]
fn errors_name_the_place() {
    let e = err_of("root ::= \"a\"\nfoo ::= [a-z\n");
    assert!(
        e.contains("line 2, column 13") && e.contains("character class"),
        "{e}"
    );
    let e = err_of("root ::= \"a\" bar\n");
    assert!(
        e.contains("line 1, column 14") && e.contains("'bar'"),
        "{e}"
    );
    let e = err_of("start ::= \"a\"\n");
    assert!(e.contains("no 'root'"), "{e}");
    let e = err_of("root ::= \"a\" )\n");
    assert!(e.contains("line 1, column 14"), "{e}");
    let e = err_of("root ::= \"\\q\"\n");
    assert!(e.contains("unknown escape"), "{e}");
    let e = err_of("root ::= [z-a]\n");
    assert!(e.contains("backwards"), "{e}");
    let e = err_of("root ::= \"a\"{3,1}\n");
    assert!(e.contains("max below min"), "{e}");
    let e = err_of("root ::= * \"a\"\n");
    assert!(e.contains("nothing before it"), "{e}");
    let e = err_of("");
    assert!(e.contains("empty"), "{e}");
}

#[test]
fn unsatisfiable_and_left_recursive_grammars_are_refused() {
    // Never terminates: every alternative needs itself.
    let e = err_of("root ::= \"a\" root\n");
    assert!(e.contains("never produce a finite string"), "{e}");
    let e = err_of("root ::= x\nx ::= \"(\" x \")\" | y\ny ::= \"y\" x\n");
    assert!(e.contains("never produce"), "{e}");
    let e = err_of("root ::= root \"a\" | \"b\"\n");
    assert!(e.contains("left-recursive"), "{e}");
    // Indirect, through a nullable prefix.
    let e = err_of("root ::= e a\ne ::= \"x\"?\na ::= root \"b\" | \"c\"\n");
    assert!(e.contains("left-recursive"), "{e}");
    // Right recursion is fine.
    Grammar::parse("root ::= \"a\" root | \"b\"\n").expect("right recursion");
}

/// llama.cpp's grammars/json.gbnf.
const JSON_GBNF: &str = r#"
root   ::= object
value  ::= object | array | string | number | ("true" | "false" | "null") ws

object ::=
  "{" ws (
            string ":" ws value
    ("," ws string ":" ws value)*
  )? "}" ws

array  ::=
  "[" ws (
            value
    ("," ws value)*
  )? "]" ws

string ::=
  "\"" (
    [^"\\\x7F\x00-\x1F] |
    "\\" (["\\bfnrt] | "u" [0-9a-fA-F]{4}) # escapes
  )* "\"" ws

number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws

# Optional space: by convention, applied in this grammar after literal chars when allowed
ws ::= | " " | "\n" [ \t]{0,20}
"#;

/// llama.cpp's grammars/arithmetic.gbnf.
const ARITHMETIC_GBNF: &str = r#"
root  ::= (expr "=" ws term "\n")+
expr  ::= term ([-+*/] term)*
term  ::= ident | num | "(" ws expr ")" ws
ident ::= [a-z] [a-z0-9_]* ws
num   ::= [0-9]+ ws
ws    ::= [ \t\n]*
"#;

/// llama.cpp's grammars/list.gbnf.
const LIST_GBNF: &str = r#"
root ::= item+

# Excludes various line break characters
item ::= "- " [^\r\n\x0b\x0c\x85\u2028\u2029]+ "\n"
"#;

#[test]
fn llama_cpp_grammars_parse_and_constrain() {
    for (name, src, good, bad) in [
        (
            "json",
            JSON_GBNF,
            &[r#"{"a": [1, -2.5e3, "x\n"], "b": {"c": null}}"#, "{}"][..],
            &[r#"{"a" 1}"#, "[1]", r#"{"a": 01}"#][..],
        ),
        (
            "arithmetic",
            ARITHMETIC_GBNF,
            &["1+2=3\n", "(a*b)=c\nx=1\n"][..],
            &["1+=3\n", "1+2=3"][..],
        ),
        (
            "list",
            LIST_GBNF,
            &["- one\n- two\n"][..],
            &["- \n", "one\n"][..],
        ),
    ] {
        let g = Arc::new(Grammar::parse(src).unwrap_or_else(|e| panic!("{name}: {e}")));
        // Every character of the tests as a token, and EOS last.
        let mut chars: Vec<char> = good.iter().chain(bad).flat_map(|s| s.chars()).collect();
        chars.sort();
        chars.dedup();
        let vocab: Vec<Vec<u8>> = chars
            .iter()
            .map(|c| c.to_string().into_bytes())
            .chain([Vec::new()])
            .collect();
        let eos = vocab.len() as u32 - 1;
        let bytes: Vec<Option<&[u8]>> = vocab.iter().map(|b| Some(b.as_slice())).collect();
        let trie = Arc::new(TokenTrie::new(&bytes, &[eos]));
        let run = |s: &str| {
            let mut m = GrammarMatcher::new(&g, trie.clone());
            for c in s.chars() {
                let id = chars.iter().position(|&x| x == c).expect("in vocab") as u32;
                if m.accept(id, Some(c.to_string().as_bytes())).is_err() {
                    return false;
                }
            }
            m.can_end()
        };
        for s in good {
            assert!(run(s), "{name}: {s:?} should match");
            assert!(reference(&g, s, false), "{name}: reference on {s:?}");
        }
        for s in bad {
            assert!(!run(s), "{name}: {s:?} should not match");
            assert!(!reference(&g, s, false), "{name}: reference on {s:?}");
        }
    }
}

#[test]
fn repetition_bounds_are_exact() {
    let g = Grammar::parse("root ::= \"a\"{2,4} [bc]{3} \"d\"{1,} \"e\"{0,1}\n").expect("parse");
    for (s, want) in [
        ("aabbbd", true),
        ("aaaabcbdde", true),
        ("abbbd", false),
        ("aaaaabbbd", false),
        ("aabbd", false),
        ("aabbb", false),
        ("aabbbdee", false),
    ] {
        assert_eq!(reference(&g, s, false), want, "reference on {s}");
        let mut m =
            GrammarMatcher::new(&g, Arc::new(TokenTrie::new(&[Some(b"x".as_slice())], &[])));
        assert_eq!(m.accept_str(s) && m.can_end(), want, "machine on {s}");
    }
    // The parsed form: a char set per literal character.
    let g = Grammar::parse("root ::= [^a-c]\n").expect("parse");
    assert_eq!(
        g.rules[g.root],
        vec![vec![Elem::Chars(CharSet {
            ranges: vec![('a' as u32, 'c' as u32)],
            negated: true
        })]]
    );
}
