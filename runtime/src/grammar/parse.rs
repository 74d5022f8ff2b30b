//! GBNF, llama.cpp's grammar format, parsed into a [`Grammar`]: rules made of
//! alternatives, each a sequence of character sets and rule references.
//!
//! The syntax is llama.cpp's (`grammars/README.md` there): `name ::= ...` rules,
//! `|` alternatives, `"literals"` with `\n \r \t \\ \" \[ \] \xHH \uHHHH \UHHHHHHHH`
//! escapes, `[a-z_]` / `[^"\\]` classes, `.` (any character), `( ... )` groups,
//! the repetitions `*`, `+`, `?`, `{m}`, `{m,}`, `{m,n}`, and `#` comments. A newline
//! ends a rule except inside parentheses or right after `::=` or `|`. `root` is the
//! start rule.
//!
//! Groups and repetitions become rules of their own (`name_1`, …), as in llama.cpp, so
//! the result is plain BNF. After parsing, the grammar is checked: every referenced
//! rule is defined, no rule is left-recursive (the stack machine would expand it
//! forever), every rule can produce a finite string and the language is not empty.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

/// Most repetitions a `{m,n}` bound may ask for (each one is a copy of the element).
pub const MAX_REPEAT: u32 = 10_000;

/// A set of Unicode code points: inclusive ranges, or everything outside them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CharSet {
    /// Inclusive code point ranges.
    pub ranges: Vec<(u32, u32)>,
    /// The set is the complement of `ranges` (`[^...]`; `.` is the complement of nothing).
    pub negated: bool,
}

impl CharSet {
    /// Whether code point `c` is in the set.
    pub fn contains(&self, c: u32) -> bool {
        self.ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != self.negated
    }

    /// Whether some code point in `lo..=hi` is in the set.
    pub fn intersects(&self, lo: u32, hi: u32) -> bool {
        if !self.negated {
            return self.ranges.iter().any(|&(a, b)| a <= hi && lo <= b);
        }
        // Negated: is some point of lo..=hi outside every range? Walk the points the
        // ranges cover, from lo up.
        let mut c = lo;
        loop {
            match self.ranges.iter().find(|&&(a, b)| a <= c && c <= b) {
                None => return true,
                Some(&(_, b)) if b >= hi => return false,
                Some(&(_, b)) => c = b + 1,
            }
        }
    }
}

/// One element of a sequence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Elem {
    /// One character from the set.
    Chars(CharSet),
    /// A string the rule with this index produces.
    Rule(usize),
}

/// A parsed, checked grammar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grammar {
    /// Each rule's alternatives, each a sequence (an empty one produces "").
    pub rules: Vec<Vec<Vec<Elem>>>,
    /// Each rule's name (generated rules: `parent_N`).
    pub names: Vec<String>,
    /// The index of `root`.
    pub root: usize,
}

/// What is wrong with a grammar, and where (1-based line and column; 0 when the problem
/// is not at one place, such as a missing `root`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrammarError {
    /// Line, from 1 (0: the grammar as a whole).
    pub line: usize,
    /// Column in characters, from 1 (0: the grammar as a whole).
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for GrammarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "grammar: {}", self.message)
        } else {
            write!(
                f,
                "grammar: line {}, column {}: {}",
                self.line, self.column, self.message
            )
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for GrammarError {}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    rules: Vec<Vec<Vec<Elem>>>,
    names: Vec<String>,
    /// Whether each rule has a definition (a reference alone creates an entry).
    defined: Vec<bool>,
    /// Where each rule was first referenced (for "undefined rule" errors).
    first_use: Vec<usize>,
}

impl Grammar {
    /// Parses and checks GBNF text.
    pub fn parse(src: &str) -> Result<Grammar, GrammarError> {
        let mut p = Parser {
            src,
            pos: 0,
            rules: Vec::new(),
            names: Vec::new(),
            defined: Vec::new(),
            first_use: Vec::new(),
        };
        p.grammar()?;
        for (i, d) in p.defined.iter().enumerate() {
            if !d {
                return Err(p.err_at(
                    p.first_use[i],
                    format!("rule '{}' is used but never defined", p.names[i]),
                ));
            }
        }
        let root = p
            .names
            .iter()
            .position(|n| n == "root")
            .ok_or_else(|| whole("there is no 'root' rule"))?;
        let g = Grammar {
            rules: p.rules,
            names: p.names,
            root,
        };
        g.check()?;
        Ok(g)
    }

    /// The index of the rule named `name`.
    pub fn rule_index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// Which rules can produce the empty string (a fixpoint over the rules).
    pub fn nullable(&self) -> Vec<bool> {
        let mut null = vec![false; self.rules.len()];
        loop {
            let mut changed = false;
            for (r, alts) in self.rules.iter().enumerate() {
                if !null[r]
                    && alts
                        .iter()
                        .any(|seq| seq.iter().all(|e| matches!(e, Elem::Rule(x) if null[*x])))
                {
                    null[r] = true;
                    changed = true;
                }
            }
            if !changed {
                return null;
            }
        }
    }

    /// Left recursion, rules that produce no finite string, an empty language.
    fn check(&self) -> Result<(), GrammarError> {
        // Productive: some alternative made of characters and productive rules.
        let n = self.rules.len();
        let mut productive = vec![false; n];
        loop {
            let mut changed = false;
            for (r, alts) in self.rules.iter().enumerate() {
                if !productive[r]
                    && alts.iter().any(|seq| {
                        seq.iter().all(|e| match e {
                            Elem::Chars(_) => true,
                            Elem::Rule(x) => productive[*x],
                        })
                    })
                {
                    productive[r] = true;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        if let Some(r) = (0..n).find(|&r| !productive[r]) {
            return Err(whole(format!(
                "rule '{}' can never produce a finite string (every alternative refers to itself \
                 or to such a rule), so the grammar cannot be satisfied",
                self.names[r]
            )));
        }
        // Left recursion: a rule reachable from itself through leftmost positions
        // (references that only nullable elements precede).
        let null = self.nullable();
        let left: Vec<Vec<usize>> = self
            .rules
            .iter()
            .map(|alts| {
                let mut out = Vec::new();
                for seq in alts {
                    for e in seq {
                        match e {
                            Elem::Chars(_) => break,
                            Elem::Rule(x) => {
                                out.push(*x);
                                if !null[*x] {
                                    break;
                                }
                            }
                        }
                    }
                }
                out
            })
            .collect();
        // Iterative DFS with colours: 0 new, 1 on the path, 2 done.
        let mut colour = vec![0u8; n];
        for start in 0..n {
            if colour[start] != 0 {
                continue;
            }
            let mut stack = vec![(start, 0usize)];
            colour[start] = 1;
            while let Some(&mut (r, ref mut i)) = stack.last_mut() {
                if let Some(&next) = left[r].get(*i) {
                    *i += 1;
                    match colour[next] {
                        0 => {
                            colour[next] = 1;
                            stack.push((next, 0));
                        }
                        1 => {
                            return Err(whole(format!(
                                "rule '{}' is left-recursive (it can begin with itself), which \
                                 this grammar engine cannot run (as llama.cpp's); rewrite it with \
                                 repetition, e.g. a ::= b (\"+\" b)*. A repeated item that can be \
                                 empty, like (\"a\"?)*, is left-recursive too (rules named \
                                 'rule-N' are made from rule 'rule's groups and repetitions)",
                                self.names[next]
                            )))
                        }
                        _ => {}
                    }
                } else {
                    colour[r] = 2;
                    stack.pop();
                }
            }
        }
        Ok(())
    }
}

fn whole(message: impl Into<String>) -> GrammarError {
    GrammarError {
        line: 0,
        column: 0,
        message: message.into(),
    }
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

impl Parser<'_> {
    fn err_at(&self, pos: usize, message: impl Into<String>) -> GrammarError {
        let before = &self.src[..pos.min(self.src.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
        GrammarError {
            line,
            column,
            message: message.into(),
        }
    }

    fn err(&self, message: impl Into<String>) -> GrammarError {
        self.err_at(self.pos, message)
    }

    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    /// Skips spaces, tabs and comments, and newlines too when `newlines`.
    fn space(&mut self, newlines: bool) {
        while let Some(c) = self.peek() {
            match c {
                ' ' | '\t' => {
                    self.pos += 1;
                }
                '\r' | '\n' if newlines => {
                    self.pos += 1;
                }
                '#' => {
                    while let Some(c) = self.peek() {
                        if c == '\n' {
                            break;
                        }
                        self.pos += c.len_utf8();
                    }
                }
                _ => break,
            }
        }
    }

    fn name(&mut self) -> Result<String, GrammarError> {
        let start = self.pos;
        while self.peek().is_some_and(is_word) {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(match self.peek() {
                Some(c) => self.err(format!("expected a rule name, found '{c}'")),
                None => self.err("expected a rule name, found the end of the grammar"),
            });
        }
        Ok(self.src[start..self.pos].to_string())
    }

    /// The index of rule `name`, creating an undefined entry on first use.
    fn rule_id(&mut self, name: &str, at: usize) -> usize {
        if let Some(i) = self.names.iter().position(|n| n == name) {
            return i;
        }
        self.new_rule(name.to_string(), at)
    }

    fn new_rule(&mut self, name: String, at: usize) -> usize {
        self.names.push(name);
        self.rules.push(Vec::new());
        self.defined.push(false);
        self.first_use.push(at);
        self.rules.len() - 1
    }

    /// A fresh rule name for a group or repetition inside `parent`.
    fn generated(&mut self, parent: usize, body: Vec<Vec<Elem>>) -> usize {
        let base = self.names[parent].clone();
        let mut k = self.rules.len();
        let mut name = format!("{base}-{k}");
        while self.names.contains(&name) {
            k += 1;
            name = format!("{base}-{k}");
        }
        let at = self.pos;
        let id = self.new_rule(name, at);
        self.rules[id] = body;
        self.defined[id] = true;
        id
    }

    fn grammar(&mut self) -> Result<(), GrammarError> {
        self.space(true);
        if self.peek().is_none() {
            return Err(whole(
                "the grammar is empty (it needs at least 'root ::= ...')",
            ));
        }
        while self.peek().is_some() {
            self.rule()?;
            self.space(true);
        }
        Ok(())
    }

    fn rule(&mut self) -> Result<(), GrammarError> {
        let at = self.pos;
        let name = self.name()?;
        let id = self.rule_id(&name, at);
        if self.defined[id] {
            return Err(self.err_at(at, format!("rule '{name}' is defined twice")));
        }
        self.defined[id] = true;
        self.space(false);
        if !self.src[self.pos..].starts_with("::=") {
            return Err(self.err(format!("expected '::=' after the rule name '{name}'")));
        }
        self.pos += 3;
        self.space(true);
        let alts = self.alternates(id, false)?;
        self.rules[id] = alts;
        match self.peek() {
            None | Some('\n') | Some('\r') => Ok(()),
            Some(c) => Err(self.err(format!("unexpected '{c}' (expected the end of the line)"))),
        }
    }

    fn alternates(&mut self, rule: usize, nested: bool) -> Result<Vec<Vec<Elem>>, GrammarError> {
        let mut alts = vec![self.sequence(rule, nested)?];
        while self.peek() == Some('|') {
            self.pos += 1;
            self.space(true);
            alts.push(self.sequence(rule, nested)?);
        }
        Ok(alts)
    }

    fn sequence(&mut self, rule: usize, nested: bool) -> Result<Vec<Elem>, GrammarError> {
        let mut seq: Vec<Elem> = Vec::new();
        // Where the last symbol (a literal may be several elements) begins.
        let mut last_start: Option<usize> = None;
        while let Some(c) = self.peek() {
            let sym_start = seq.len();
            match c {
                '"' => {
                    self.pos += 1;
                    loop {
                        match self.peek() {
                            None | Some('\n') => {
                                return Err(self.err("unterminated string literal"));
                            }
                            Some('"') => {
                                self.pos += 1;
                                break;
                            }
                            Some(_) => {
                                let c = self.char_in_literal()?;
                                seq.push(Elem::Chars(CharSet {
                                    ranges: vec![(c, c)],
                                    negated: false,
                                }));
                            }
                        }
                    }
                    last_start = Some(sym_start);
                }
                '[' => {
                    self.pos += 1;
                    let negated = self.peek() == Some('^');
                    if negated {
                        self.pos += 1;
                    }
                    let mut ranges = Vec::new();
                    loop {
                        match self.peek() {
                            None | Some('\n') => {
                                return Err(self.err("unterminated character class"));
                            }
                            Some(']') => {
                                self.pos += 1;
                                break;
                            }
                            Some(_) => {
                                let lo = self.char_in_literal()?;
                                let src = self.src.as_bytes();
                                let hi = if src.get(self.pos) == Some(&b'-')
                                    && src.get(self.pos + 1).is_some_and(|&b| b != b']')
                                {
                                    self.pos += 1;
                                    let at = self.pos;
                                    let hi = self.char_in_literal()?;
                                    if hi < lo {
                                        return Err(self.err_at(
                                            at,
                                            format!("range {lo:#x}-{hi:#x} is backwards"),
                                        ));
                                    }
                                    hi
                                } else {
                                    lo
                                };
                                ranges.push((lo, hi));
                            }
                        }
                    }
                    seq.push(Elem::Chars(CharSet { ranges, negated }));
                    last_start = Some(sym_start);
                }
                '.' => {
                    self.pos += 1;
                    seq.push(Elem::Chars(CharSet {
                        ranges: Vec::new(),
                        negated: true,
                    }));
                    last_start = Some(sym_start);
                }
                '(' => {
                    self.pos += 1;
                    self.space(true);
                    let alts = self.alternates(rule, true)?;
                    if self.peek() != Some(')') {
                        return Err(self.err("expected ')'"));
                    }
                    self.pos += 1;
                    let id = self.generated(rule, alts);
                    seq.push(Elem::Rule(id));
                    last_start = Some(sym_start);
                }
                '*' | '+' | '?' | '{' => {
                    let Some(start) = last_start else {
                        return Err(self.err(format!("'{c}' with nothing before it to repeat")));
                    };
                    let (min, max) = self.repetition()?;
                    let body: Vec<Elem> = seq.split_off(start);
                    let item = if body.len() == 1 {
                        body.into_iter().next().unwrap_or(Elem::Rule(rule))
                    } else {
                        Elem::Rule(self.generated(rule, vec![body]))
                    };
                    self.repeat(rule, &mut seq, item, min, max);
                    last_start = None;
                }
                c if is_word(c) => {
                    let at = self.pos;
                    let name = self.name()?;
                    // `name ::=` starts the next rule: this sequence has ended.
                    let save = self.pos;
                    self.space(false);
                    if self.src[self.pos..].starts_with("::=") {
                        return Err(self.err_at(
                            at,
                            format!("'{name} ::=' starts a new rule inside the previous one (missing newline?)"),
                        ));
                    }
                    self.pos = save;
                    let id = self.rule_id(&name, at);
                    seq.push(Elem::Rule(id));
                    last_start = Some(sym_start);
                }
                _ => break,
            }
            self.space(nested);
        }
        Ok(seq)
    }

    /// `*`, `+`, `?` or `{m}`, `{m,}`, `{m,n}` → (min, max; `None` unbounded).
    fn repetition(&mut self) -> Result<(u32, Option<u32>), GrammarError> {
        match self.bump() {
            Some('*') => Ok((0, None)),
            Some('+') => Ok((1, None)),
            Some('?') => Ok((0, Some(1))),
            _ => {
                self.space(false);
                let min = self.number()?;
                self.space(false);
                let max = if self.peek() == Some(',') {
                    self.pos += 1;
                    self.space(false);
                    if self.peek() == Some('}') {
                        None
                    } else {
                        Some(self.number()?)
                    }
                } else {
                    Some(min)
                };
                self.space(false);
                if self.peek() != Some('}') {
                    return Err(self.err("expected '}' to end the repetition"));
                }
                self.pos += 1;
                if let Some(m) = max {
                    if m < min {
                        return Err(self.err(format!("repetition {{{min},{m}}}: max below min")));
                    }
                }
                Ok((min, max))
            }
        }
    }

    fn number(&mut self) -> Result<u32, GrammarError> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        let s = &self.src[start..self.pos];
        match s.parse::<u32>() {
            Ok(n) if n <= MAX_REPEAT => Ok(n),
            Ok(_) | Err(_) if !s.is_empty() => {
                Err(self.err_at(start, format!("repetition count {s} is above {MAX_REPEAT}")))
            }
            _ => Err(self.err("expected a number")),
        }
    }

    /// Appends `item` repeated min..=max times to `seq` (through generated rules for the
    /// optional part: `x*` is `r ::= x r | ""`, `x{0,2}` is `r ::= x r' | ""`, …).
    fn repeat(&mut self, rule: usize, seq: &mut Vec<Elem>, item: Elem, min: u32, max: Option<u32>) {
        for _ in 0..min {
            seq.push(item.clone());
        }
        match max {
            None => {
                let id = self.generated(rule, Vec::new());
                self.rules[id] = vec![vec![item, Elem::Rule(id)], Vec::new()];
                seq.push(Elem::Rule(id));
            }
            Some(max) if max > min => {
                // Innermost first: opt_k ::= item opt_{k-1} | "".
                let mut inner: Option<usize> = None;
                for _ in min..max {
                    let mut body = vec![item.clone()];
                    if let Some(i) = inner {
                        body.push(Elem::Rule(i));
                    }
                    inner = Some(self.generated(rule, vec![body, Vec::new()]));
                }
                if let Some(i) = inner {
                    seq.push(Elem::Rule(i));
                }
            }
            Some(_) => {}
        }
    }

    /// One character of a literal or class, escapes decoded, as a code point.
    fn char_in_literal(&mut self) -> Result<u32, GrammarError> {
        let at = self.pos;
        let c = self.bump().ok_or_else(|| self.err("unexpected end"))?;
        if c != '\\' {
            return Ok(c as u32);
        }
        let e = self
            .bump()
            .ok_or_else(|| self.err("unexpected end after '\\'"))?;
        let hex = |p: &mut Self, n: usize| -> Result<u32, GrammarError> {
            let s = p.src.get(p.pos..p.pos + n).unwrap_or("");
            if s.len() != n || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(p.err_at(at, format!("'\\{e}' needs {n} hex digits")));
            }
            p.pos += n;
            let v = u32::from_str_radix(s, 16).map_err(|_| p.err_at(at, "bad hex escape"))?;
            if v > 0x10FFFF {
                return Err(p.err_at(at, format!("{v:#x} is not a Unicode code point")));
            }
            Ok(v)
        };
        Ok(match e {
            'n' => '\n' as u32,
            'r' => '\r' as u32,
            't' => '\t' as u32,
            '\\' | '"' | '[' | ']' | '-' | '^' | '/' => e as u32,
            'x' => hex(self, 2)?,
            'u' => hex(self, 4)?,
            'U' => hex(self, 8)?,
            _ => return Err(self.err_at(at, format!("unknown escape '\\{e}'"))),
        })
    }
}
