//! The grammar run as llama.cpp runs it: a set of pushdown stacks, advanced one code
//! point at a time.
//!
//! A stack holds positions in the rules' sequences; its top is a character set the next
//! code point must match, and below it the places to continue when the rules above
//! end. An empty stack means the input so far is a complete string of the language.
//! Reading a code point keeps the stacks whose top matches, moves each past its
//! top, and expands rule references on top until each stack shows a character set
//! again (or is empty).
//!
//! Why it is fast enough to run for every node of a token trie:
//! * stack nodes are hash-consed (`(position, parent)` → id), so a stack is one `u32`,
//!   equal stacks have equal ids, and a stack shares its tail with others;
//! * a reference in tail position continues with the parent directly, so `x*`
//!   (`r ::= x r | ""`) does not grow the stack;
//! * sets of stacks are interned as well, and the transition (set, code point) → set is
//!   cached, so after the first steps most of the work is table look-ups.

use super::parse::{CharSet, Elem, Grammar};
use alloc::vec;
use alloc::vec::Vec;
use hashbrown::HashMap;

/// No node: the empty stack (or "no parent").
const NONE: u32 = u32::MAX;

/// A set of stacks, by id; [`Machine::DEAD`] is the empty set.
pub type SetId = u32;

/// One flattened element.
#[derive(Clone, Debug)]
enum Flat {
    /// Index into `Machine::sets`.
    Chars(u32),
    Rule(u32),
    /// The end of an alternative.
    End,
}

/// A grammar compiled for the stack machine, with its caches.
#[derive(Clone, Debug)]
pub struct Machine {
    /// Every alternative of every rule, each followed by `End`.
    flat: Vec<Flat>,
    /// Each rule's alternatives' start positions in `flat`.
    alts: Vec<Vec<u32>>,
    /// Character sets, by index.
    charsets: Vec<CharSet>,
    /// Stack nodes: (position in `flat`, parent node or `NONE`).
    nodes: Vec<(u32, u32)>,
    node_ids: HashMap<(u32, u32), u32>,
    /// Expansion of a node: the stacks with a character set on top (or empty) it stands for.
    expanded: HashMap<u32, Vec<u32>>,
    /// Interned sets of expanded stacks, sorted.
    sets: Vec<Vec<u32>>,
    set_ids: HashMap<Vec<u32>, SetId>,
    /// (set, code point) → set.
    step_cache: HashMap<(SetId, u32), SetId>,
    /// For each set, its transitions on ASCII code points (`u32::MAX` not yet known).
    ascii: Vec<Option<alloc::boxed::Box<[SetId; 128]>>>,
    /// The initial set.
    start: SetId,
}

/// Cached transitions kept before the cache is cleared (memory bound).
const STEP_CACHE_MAX: usize = 1 << 20;

impl Machine {
    /// The empty set of stacks: no string continues from here.
    pub const DEAD: SetId = 0;

    /// Compiles a checked grammar (no left recursion: [`Grammar::parse`] refuses it).
    pub fn new(g: &Grammar) -> Machine {
        let mut flat = Vec::new();
        let mut charsets = Vec::new();
        let mut alts = Vec::with_capacity(g.rules.len());
        for rule in &g.rules {
            let mut starts = Vec::with_capacity(rule.len());
            for seq in rule {
                starts.push(flat.len() as u32);
                for e in seq {
                    flat.push(match e {
                        Elem::Chars(c) => {
                            charsets.push(c.clone());
                            Flat::Chars(charsets.len() as u32 - 1)
                        }
                        Elem::Rule(r) => Flat::Rule(*r as u32),
                    });
                }
                flat.push(Flat::End);
            }
            alts.push(starts);
        }
        let mut m = Machine {
            flat,
            alts,
            charsets,
            nodes: Vec::new(),
            node_ids: HashMap::new(),
            expanded: HashMap::new(),
            sets: Vec::new(),
            set_ids: HashMap::new(),
            step_cache: HashMap::new(),
            ascii: Vec::new(),
            start: 0,
        };
        let dead = m.intern(Vec::new());
        debug_assert_eq!(dead, Self::DEAD);
        let mut leaves = Vec::new();
        for a in m.alts[g.root].clone() {
            let n = m.node(a, NONE);
            leaves.extend_from_slice(&m.expand(n));
        }
        m.start = m.intern(leaves);
        m
    }

    /// The set of stacks before any input.
    pub fn start(&self) -> SetId {
        self.start
    }

    /// Whether the input read so far is a complete string (some stack is empty).
    pub fn accepts(&self, s: SetId) -> bool {
        // Sorted, and NONE is the largest id.
        self.sets[s as usize].last() == Some(&NONE)
    }

    /// Whether some stack of `s` can read a code point in `lo..=hi` (a character whose
    /// first UTF-8 bytes are known).
    pub fn can_read_in(&self, s: SetId, lo: u32, hi: u32) -> bool {
        self.sets[s as usize].iter().any(|&n| {
            n != NONE && {
                let Flat::Chars(c) = self.flat[self.nodes[n as usize].0 as usize] else {
                    return false;
                };
                self.charsets[c as usize].intersects(lo, hi)
            }
        })
    }

    fn node(&mut self, pos: u32, parent: u32) -> u32 {
        if let Some(&id) = self.node_ids.get(&(pos, parent)) {
            return id;
        }
        let id = self.nodes.len() as u32;
        self.nodes.push((pos, parent));
        self.node_ids.insert((pos, parent), id);
        id
    }

    fn intern(&mut self, mut stacks: Vec<u32>) -> SetId {
        stacks.sort_unstable();
        stacks.dedup();
        if let Some(&id) = self.set_ids.get(&stacks) {
            return id;
        }
        let id = self.sets.len() as SetId;
        self.sets.push(stacks.clone());
        self.set_ids.insert(stacks, id);
        self.ascii.push(None);
        id
    }

    /// The stacks with a character set on top (or empty) that stack `n` stands for.
    fn expand(&mut self, n: u32) -> Vec<u32> {
        if n == NONE {
            return vec![NONE];
        }
        if let Some(v) = self.expanded.get(&n) {
            return v.clone();
        }
        let (pos, parent) = self.nodes[n as usize];
        let out = match self.flat[pos as usize] {
            Flat::Chars(_) => vec![n],
            Flat::End => self.expand(parent),
            Flat::Rule(r) => {
                // Tail position: continue with the parent itself.
                let cont = match self.flat[pos as usize + 1] {
                    Flat::End => parent,
                    _ => self.node(pos + 1, parent),
                };
                let mut out = Vec::new();
                for a in self.alts[r as usize].clone() {
                    let child = match self.flat[a as usize] {
                        Flat::End => cont,
                        _ => self.node(a, cont),
                    };
                    out.extend(self.expand(child));
                }
                out.sort_unstable();
                out.dedup();
                out
            }
        };
        self.expanded.insert(n, out.clone());
        out
    }

    /// The set after reading code point `c` in `s` ([`Machine::DEAD`]: `c` cannot come next).
    pub fn step(&mut self, s: SetId, c: u32) -> SetId {
        if c < 128 {
            if let Some(t) = &self.ascii[s as usize] {
                let r = t[c as usize];
                if r != u32::MAX {
                    return r;
                }
            }
        } else if let Some(&r) = self.step_cache.get(&(s, c)) {
            return r;
        }
        let mut next = Vec::new();
        for i in 0..self.sets[s as usize].len() {
            let n = self.sets[s as usize][i];
            if n == NONE {
                continue;
            }
            let (pos, parent) = self.nodes[n as usize];
            let Flat::Chars(cs) = self.flat[pos as usize] else {
                continue;
            };
            if self.charsets[cs as usize].contains(c) {
                let after = match self.flat[pos as usize + 1] {
                    Flat::End => parent,
                    _ => self.node(pos + 1, parent),
                };
                next.extend(self.expand(after));
            }
        }
        let r = self.intern(next);
        if c < 128 {
            let t = self.ascii[s as usize]
                .get_or_insert_with(|| alloc::boxed::Box::new([u32::MAX; 128]));
            t[c as usize] = r;
        } else {
            if self.step_cache.len() >= STEP_CACHE_MAX {
                self.step_cache.clear();
            }
            self.step_cache.insert((s, c), r);
        }
        r
    }
}

/// Incremental UTF-8 decoding of a byte stream into code points, for input that may end
/// (and a token may end) inside a character.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Utf8State {
    /// Bits of the character so far.
    value: u32,
    /// Continuation bytes still expected (0: between characters).
    remaining: u8,
}

/// What one byte did to a [`Utf8State`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Utf8Step {
    /// A character is complete.
    Char(u32),
    /// Part of a character; more bytes expected.
    Partial,
    /// Not UTF-8 here.
    Invalid,
}

impl Utf8State {
    /// Whether the state is between characters.
    pub fn is_clear(&self) -> bool {
        self.remaining == 0
    }

    /// Reads one byte.
    pub fn push(&mut self, b: u8) -> Utf8Step {
        if self.remaining == 0 {
            let (v, n) = match b {
                0x00..=0x7F => return Utf8Step::Char(b as u32),
                0xC2..=0xDF => (b & 0x1F, 1),
                0xE0..=0xEF => (b & 0x0F, 2),
                0xF0..=0xF4 => (b & 0x07, 3),
                _ => return Utf8Step::Invalid,
            };
            self.value = v as u32;
            self.remaining = n;
            return Utf8Step::Partial;
        }
        if b & 0xC0 != 0x80 {
            return Utf8Step::Invalid;
        }
        self.value = (self.value << 6) | (b & 0x3F) as u32;
        self.remaining -= 1;
        if self.remaining > 0 {
            return Utf8Step::Partial;
        }
        let c = self.value;
        self.value = 0;
        // Overlong forms, surrogates and values above U+10FFFF are not characters.
        if c < 0x80 || (0xD800..=0xDFFF).contains(&c) || c > 0x10FFFF {
            return Utf8Step::Invalid;
        }
        Utf8Step::Char(c)
    }

    /// The code points a partial character can still become (`None` between characters).
    pub fn pending_range(&self) -> Option<(u32, u32)> {
        if self.remaining == 0 {
            return None;
        }
        let shift = 6 * self.remaining as u32;
        let lo = self.value << shift;
        Some((lo, (lo | ((1 << shift) - 1)).min(0x10FFFF)))
    }
}
