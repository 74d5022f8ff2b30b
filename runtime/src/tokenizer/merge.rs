//! The BPE merge loop shared by GPT-2 and SentencePiece: repeatedly merge the adjacent
//! pair with the best key (smallest; ties go to the leftmost pair) until no pair merges.
//!
//! Symbols live in a doubly linked list over a vector and candidate pairs in a binary
//! heap ordered by (key, left position), so a word of n symbols costs O(n log n) rather
//! than the O(n²) of rescanning after every merge; a SentencePiece prompt is one "word".
//! Heap entries carry the versions of their two symbols and are dropped when popped stale.

use alloc::collections::BinaryHeap;
use alloc::vec::Vec;
use core::cmp::{Ordering, Reverse};

/// One symbol: token `id` covering `text[start..end]` of the word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Sym {
    pub id: u32,
    pub start: usize,
    pub end: usize,
}

/// A SentencePiece score as a merge key: a higher score is a smaller key.
#[derive(Clone, Copy, Debug)]
pub(super) struct Score(pub f32);

impl PartialEq for Score {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Score {}
impl PartialOrd for Score {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Score {
    fn cmp(&self, o: &Self) -> Ordering {
        o.0.total_cmp(&self.0)
    }
}

/// Merges `syms` in place. `pair(left, right)` gives the key and the merged id of two
/// adjacent symbols, or `None` when they do not merge.
pub(super) fn merge<K: Ord + Copy>(
    syms: &mut Vec<Sym>,
    mut pair: impl FnMut(&Sym, &Sym) -> Option<(K, u32)>,
) {
    let n = syms.len();
    if n < 2 {
        return;
    }
    const NONE: usize = usize::MAX;
    // Linked list: prev/next index, and a version bumped at every change of a symbol
    // (a merged-away symbol gets NONE as its version).
    let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect();
    let mut next: Vec<usize> = (1..=n).map(|i| if i == n { NONE } else { i }).collect();
    let mut ver: Vec<usize> = alloc::vec![0; n];
    // Min-heap of (key, left index, left version, right index, right version, merged id):
    // ties on the key go to the smaller left index, i.e. the leftmost pair.
    let mut heap = BinaryHeap::new();
    let mut push = |heap: &mut BinaryHeap<_>, syms: &[Sym], ver: &[usize], l: usize, r: usize| {
        if let (Some(a), Some(b)) = (syms.get(l), syms.get(r)) {
            if let Some((k, id)) = pair(a, b) {
                heap.push(Reverse((k, l, ver[l], r, ver[r], id)));
            }
        }
    };
    for i in 0..n - 1 {
        push(&mut heap, syms, &ver, i, i + 1);
    }
    while let Some(Reverse((_, l, lv, r, rv, id))) = heap.pop() {
        // Stale: one side merged since (or merged away).
        if ver[l] != lv || ver[r] != rv || next[l] != r {
            continue;
        }
        syms[l] = Sym {
            id,
            start: syms[l].start,
            end: syms[r].end,
        };
        ver[l] += 1;
        ver[r] = NONE;
        next[l] = next[r];
        if next[r] != NONE {
            prev[next[r]] = l;
        }
        if prev[l] != NONE {
            push(&mut heap, syms, &ver, prev[l], l);
        }
        if next[l] != NONE {
            push(&mut heap, syms, &ver, l, next[l]);
        }
    }
    // Keep the live symbols, in order.
    let mut w = 0;
    for i in 0..n {
        if ver[i] != NONE {
            syms[w] = syms[i];
            w += 1;
        }
    }
    syms.truncate(w);
}
