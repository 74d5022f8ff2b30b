//! Token masks: which tokens of a vocabulary may come next under a grammar.
//!
//! The tokens' bytes go into a trie once per vocabulary ([`TokenTrie`]). A mask is a
//! depth-first walk of the trie that carries the grammar's state (a set of stacks and
//! a partial UTF-8 character): a subtree is skipped as soon as its prefix is not UTF-8
//! or no stack can read it, so tokens that share a prefix share its work, and the
//! machine's transition cache makes each edge a look-up after the first steps. A
//! token may end inside a character (byte-fallback and byte-level vocabularies): it is
//! allowed when some stack can read a character that begins with those bytes, and the
//! partial character carries over to the next token. Such a token is allowed only when
//! some token of the vocabulary can then complete the character (checked by a second,
//! short walk), so the output cannot get stuck inside a character.
//!
//! End tokens (EOS, a chat template's end-of-turn) are allowed only when the grammar
//! can stop here; control tokens and tokens with no bytes are never allowed.

use super::machine::{Machine, SetId, Utf8State, Utf8Step};
use super::parse::Grammar;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use hashbrown::HashMap;

/// The tokens of a vocabulary by their bytes, as a trie.
#[derive(Clone, Debug)]
pub struct TokenTrie {
    /// Per node: (first edge, edge count, first token, token count).
    nodes: Vec<(u32, u32, u32, u32)>,
    /// Edges (byte, child), each node's contiguous and sorted by byte.
    edges: Vec<(u8, u32)>,
    /// Token ids ending at nodes, each node's contiguous.
    ends: Vec<u32>,
    /// Tokens that end generation when the grammar allows it.
    end_tokens: Vec<u32>,
    /// The vocabulary size.
    vocab: usize,
}

impl TokenTrie {
    /// A trie of `tokens[id]` (the bytes each id decodes to; `None` or empty: never
    /// allowed, e.g. control tokens); `end_tokens` are allowed when the grammar can end.
    pub fn new(tokens: &[Option<&[u8]>], end_tokens: &[u32]) -> TokenTrie {
        let mut items: Vec<(&[u8], u32)> = tokens
            .iter()
            .enumerate()
            .filter(|(id, _)| !end_tokens.contains(&(*id as u32)))
            .filter_map(|(id, b)| b.filter(|b| !b.is_empty()).map(|b| (b, id as u32)))
            .collect();
        items.sort_unstable();
        let mut t = TokenTrie {
            nodes: Vec::new(),
            edges: Vec::new(),
            ends: Vec::new(),
            end_tokens: end_tokens.to_vec(),
            vocab: tokens.len(),
        };
        t.build(&items, 0);
        t
    }

    /// Builds the node for `items` (sorted, all sharing their first `depth` bytes).
    fn build(&mut self, items: &[(&[u8], u32)], depth: usize) -> u32 {
        let id = self.nodes.len() as u32;
        self.nodes.push((0, 0, 0, 0));
        let n_end = items.iter().take_while(|(b, _)| b.len() == depth).count();
        let first_end = self.ends.len() as u32;
        self.ends.extend(items[..n_end].iter().map(|&(_, t)| t));
        let mut children = Vec::new();
        let mut rest = &items[n_end..];
        while let Some(&(b, _)) = rest.first() {
            let byte = b[depth];
            let n = rest.iter().take_while(|(b, _)| b[depth] == byte).count();
            let child = self.build(&rest[..n], depth + 1);
            children.push((byte, child));
            rest = &rest[n..];
        }
        let first_edge = self.edges.len() as u32;
        self.edges.extend_from_slice(&children);
        self.nodes[id as usize] = (first_edge, children.len() as u32, first_end, n_end as u32);
        id
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.vocab
    }

    /// Nodes in the trie (the root included).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the trie has no tokens.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

/// Why a token could not be accepted, or no token can come next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GrammarStepError {
    /// The token does not continue a string of the grammar.
    TokenNotAllowed(u32),
    /// No token of the vocabulary continues the string (nor may it end here).
    DeadEnd,
}

impl fmt::Display for GrammarStepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GrammarStepError::TokenNotAllowed(t) => {
                write!(f, "grammar: token {t} is not allowed here")
            }
            GrammarStepError::DeadEnd => write!(
                f,
                "grammar: no token of the vocabulary can continue the output here (and the \
                 grammar cannot end); the grammar needs characters the vocabulary cannot spell"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for GrammarStepError {}

/// Where a [`GrammarMatcher`] is in its grammar: small and `Copy`, to undo an accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatcherState {
    set: SetId,
    utf8: Utf8State,
}

/// A grammar's state over one output, with the vocabulary's trie: masks the logits
/// and advances on each accepted token.
#[derive(Clone, Debug)]
pub struct GrammarMatcher {
    machine: Machine,
    trie: Arc<TokenTrie>,
    set: SetId,
    utf8: Utf8State,
    /// Scratch for the walk: (node, set, utf8).
    walk: Vec<(u32, SetId, Utf8State)>,
    /// Whether a state inside a character can be completed (per mask).
    completable: HashMap<(SetId, Utf8State), bool>,
}

impl GrammarMatcher {
    /// A matcher at the start of `grammar`'s language.
    pub fn new(grammar: &Grammar, trie: Arc<TokenTrie>) -> GrammarMatcher {
        let machine = Machine::new(grammar);
        let set = machine.start();
        GrammarMatcher {
            machine,
            trie,
            set,
            utf8: Utf8State::default(),
            walk: Vec::new(),
            completable: HashMap::new(),
        }
    }

    /// The current state (to return to with [`GrammarMatcher::restore`]).
    pub fn state(&self) -> MatcherState {
        MatcherState {
            set: self.set,
            utf8: self.utf8,
        }
    }

    /// Returns to a state this matcher was in.
    pub fn restore(&mut self, s: MatcherState) {
        self.set = s.set;
        self.utf8 = s.utf8;
    }

    /// Back to the start of the language.
    pub fn reset(&mut self) {
        self.set = self.machine.start();
        self.utf8 = Utf8State::default();
    }

    /// Whether the output so far is a complete string of the language.
    pub fn can_end(&self) -> bool {
        self.utf8.is_clear() && self.machine.accepts(self.set)
    }

    /// Whether the state can still be continued or ended (false after a bad byte).
    fn alive(&self, set: SetId, utf8: &Utf8State) -> bool {
        if set == Machine::DEAD {
            return false;
        }
        match utf8.pending_range() {
            None => true,
            Some((lo, hi)) => self.machine.can_read_in(set, lo, hi),
        }
    }

    /// Reads `bytes` from (`set`, `utf8`); `None` when they leave the language.
    fn read(
        &mut self,
        mut set: SetId,
        mut utf8: Utf8State,
        bytes: &[u8],
    ) -> Option<(SetId, Utf8State)> {
        for &b in bytes {
            match utf8.push(b) {
                Utf8Step::Char(c) => {
                    set = self.machine.step(set, c);
                    if set == Machine::DEAD {
                        return None;
                    }
                }
                Utf8Step::Partial => {}
                Utf8Step::Invalid => return None,
            }
        }
        self.alive(set, &utf8).then_some((set, utf8))
    }

    /// Whether some token read from (`set`, `utf8`), a state inside a character, ends
    /// alive between characters: a walk of the trie that stops at the first such token.
    fn can_complete(&mut self, set: SetId, utf8: Utf8State) -> bool {
        if utf8.is_clear() {
            return true;
        }
        if let Some(&b) = self.completable.get(&(set, utf8)) {
            return b;
        }
        let trie = Arc::clone(&self.trie);
        let mut stack = alloc::vec![(0u32, set, utf8)];
        let mut found = false;
        'walk: while let Some((node, set, utf8)) = stack.pop() {
            let (e0, ne, _, _) = trie.nodes[node as usize];
            for &(b, child) in &trie.edges[e0 as usize..(e0 + ne) as usize] {
                let mut u = utf8;
                let next = match u.push(b) {
                    Utf8Step::Char(c) => self.machine.step(set, c),
                    Utf8Step::Partial if self.alive(set, &u) => set,
                    _ => continue,
                };
                if next == Machine::DEAD {
                    continue;
                }
                if u.is_clear() && trie.nodes[child as usize].3 > 0 {
                    found = true;
                    break 'walk;
                }
                stack.push((child, next, u));
            }
        }
        self.completable.insert((set, utf8), found);
        found
    }

    /// Whether token `id` (with these bytes) may come next. The reference the mask is
    /// tested against: one token's bytes read through the machine.
    pub fn allows_bytes(&mut self, id: u32, bytes: Option<&[u8]>) -> bool {
        if self.trie.end_tokens.contains(&id) {
            return self.can_end();
        }
        self.completable.clear();
        match bytes {
            Some(b) if !b.is_empty() => match self.read(self.set, self.utf8, b) {
                Some((set, utf8)) => self.can_complete(set, utf8),
                None => false,
            },
            _ => false,
        }
    }

    /// Sets `allowed[id]` for each token that may come next (cleared first, resized to
    /// the vocabulary); returns how many.
    pub fn fill_mask(&mut self, allowed: &mut Vec<bool>) -> usize {
        allowed.clear();
        allowed.resize(self.trie.vocab, false);
        let trie = Arc::clone(&self.trie);
        let mut count = 0;
        if self.can_end() {
            for &t in &trie.end_tokens {
                if let Some(a) = allowed.get_mut(t as usize) {
                    *a = true;
                    count += 1;
                }
            }
        }
        self.completable.clear();
        let mut walk = core::mem::take(&mut self.walk);
        walk.clear();
        walk.push((0, self.set, self.utf8));
        while let Some((node, set, utf8)) = walk.pop() {
            let (e0, ne, t0, nt) = trie.nodes[node as usize];
            if node != 0 && nt > 0 && self.can_complete(set, utf8) {
                for &t in &trie.ends[t0 as usize..(t0 + nt) as usize] {
                    allowed[t as usize] = true;
                }
                count += nt as usize;
            }
            for &(b, child) in &trie.edges[e0 as usize..(e0 + ne) as usize] {
                let mut u = utf8;
                let next = match u.push(b) {
                    Utf8Step::Char(c) => self.machine.step(set, c),
                    Utf8Step::Partial => {
                        if !self.alive(set, &u) {
                            continue;
                        }
                        set
                    }
                    Utf8Step::Invalid => continue,
                };
                if next != Machine::DEAD {
                    walk.push((child, next, u));
                }
            }
        }
        self.walk = walk;
        count
    }

    /// Sets the logits of the tokens that may not come next to `-inf`; `allowed` is
    /// scratch. [`GrammarStepError::DeadEnd`] when no token may come next.
    pub fn apply(
        &mut self,
        logits: &mut [f32],
        allowed: &mut Vec<bool>,
    ) -> Result<(), GrammarStepError> {
        if self.fill_mask(allowed) == 0 {
            return Err(GrammarStepError::DeadEnd);
        }
        for (l, &ok) in logits.iter_mut().zip(allowed.iter()) {
            if !ok {
                *l = f32::NEG_INFINITY;
            }
        }
        Ok(())
    }

    /// Advances past token `id`, whose bytes are `bytes`; an end token is accepted when
    /// the grammar can end (the state does not change).
    pub fn accept(&mut self, id: u32, bytes: Option<&[u8]>) -> Result<(), GrammarStepError> {
        if self.trie.end_tokens.contains(&id) {
            return if self.can_end() {
                Ok(())
            } else {
                Err(GrammarStepError::TokenNotAllowed(id))
            };
        }
        let b = bytes.filter(|b| !b.is_empty());
        match b.and_then(|b| self.read(self.set, self.utf8, b)) {
            Some((set, utf8)) => {
                self.set = set;
                self.utf8 = utf8;
                Ok(())
            }
            None => Err(GrammarStepError::TokenNotAllowed(id)),
        }
    }

    /// Advances past the characters of `text` (e.g. a forced prefix); `false` if it
    /// leaves the language (the state is then unchanged).
    pub fn accept_str(&mut self, text: &str) -> bool {
        match self.read(self.set, self.utf8, text.as_bytes()) {
            Some((set, utf8)) => {
                self.set = set;
                self.utf8 = utf8;
                true
            }
            None => false,
        }
    }
}
