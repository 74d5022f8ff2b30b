//! What the kernels read and write: the activations in every quantised form
//! ([`Acts`]), the rows of the output a part owns ([`OutRows`]), and buffers that
//! parallel parts write in disjoint ranges ([`SharedMut`]).

use super::act::{Q8Act, Q8Quad, Q8K};

/// The activations of one product in every form the kernels read: the f32 rows (float
/// weights), their 32-blocks and quads (weights whose `act_quant` is Q8_0/Q8_1) and
/// their 256-blocks (Q8_K). Only the form the weight type needs is filled; the others
/// are empty.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Acts<'a> {
    /// `n` rows of `cols` values.
    pub(crate) x: &'a [f32],
    /// `n · cols/32` blocks.
    pub(crate) a: &'a [Q8Act],
    /// The blocks rearranged in quads of 4 (engines that use them).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // only x86-64 paths read it
    pub(crate) quads: &'a [Q8Quad],
    /// `n · cols/256` super-blocks.
    pub(crate) k: &'a [Q8K],
    /// `n` rows of the activations rounded to bf16 (bits), each padded with zeros to
    /// a multiple of 32 columns: filled for F16/BF16 prompts on a path with bf16 dot
    /// products (`avx512_bf16`) unless the context keeps f32 products.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // only x86-64 paths read it
    pub(crate) xb: &'a [u16],
}

/// The outputs of rows `r0..r1` for all `n` activations: `y[i·rows + r]`.
///
/// Several of these over disjoint row ranges of one `y` are written by several
/// threads at once, hence the raw pointer; every write is bounds-checked.
/// Invariant: `ptr` is `y`'s start, or `y[b]` for an [`OutRows::renumbered`] one with
/// `b + r1 <= rows`, so every `ptr + i·rows + r` with `i < n`, `r < r1` is in `y`.
pub(crate) struct OutRows<'y> {
    ptr: *mut f32,
    /// Rows of the whole matrix (the stride between activations in `y`).
    rows: usize,
    /// Activations.
    n: usize,
    /// First row of this part.
    pub(crate) r0: usize,
    /// One past the last row of this part.
    pub(crate) r1: usize,
    _y: core::marker::PhantomData<&'y mut [f32]>,
}

impl<'y> OutRows<'y> {
    /// All rows of `y` (`y.len() == n·rows`).
    pub(crate) fn whole(y: &'y mut [f32], rows: usize, n: usize) -> OutRows<'y> {
        assert_eq!(Some(y.len()), rows.checked_mul(n));
        OutRows {
            ptr: y.as_mut_ptr(),
            rows,
            n,
            r0: 0,
            r1: rows,
            _y: core::marker::PhantomData,
        }
    }

    /// Rows `r0..r1` of the same `y`.
    ///
    /// # Safety
    /// No two `OutRows` alive at the same time may cover a common row, and the
    /// `OutRows` this comes from must not be written while the part is alive.
    #[cfg(feature = "std")]
    pub(crate) unsafe fn part(&self, r0: usize, r1: usize) -> OutRows<'y> {
        assert!(self.r0 <= r0 && r0 <= r1 && r1 <= self.r1);
        OutRows {
            ptr: self.ptr,
            rows: self.rows,
            n: self.n,
            r0,
            r1,
            _y: core::marker::PhantomData,
        }
    }

    /// The same rows numbered from 0 (row `r0 + r` of `y` is row `r` of the result),
    /// for a kernel that runs on a copy of just these rows of the matrix
    /// (`Engine::rows` for a layout its path does not read).
    pub(crate) fn renumbered(&mut self) -> OutRows<'_> {
        OutRows {
            // Row r of the result is y[i·rows + r0 + r]: with r < r1 − r0 that is the
            // original row r0 + r < r1 <= rows, inside `y` as before; the borrow of
            // `self` keeps the two from being written at once.
            ptr: self.ptr.wrapping_add(self.r0),
            rows: self.rows,
            n: self.n,
            r0: 0,
            r1: self.r1 - self.r0,
            _y: core::marker::PhantomData,
        }
    }

    /// Activations.
    pub(crate) fn n(&self) -> usize {
        self.n
    }

    /// `y[i·rows + r] = v`.
    ///
    /// # Panics
    /// If `r` is outside `r0..r1` or `i >= n`.
    #[inline(always)]
    pub(crate) fn set(&mut self, i: usize, r: usize, v: f32) {
        assert!(i < self.n && r >= self.r0 && r < self.r1);
        // SAFETY: i < n and r < rows, so the index is inside the `n·rows` values of
        // `y` (checked in `whole`); no other live `OutRows` covers row r (`part`).
        unsafe { *self.ptr.add(i * self.rows + r) = v };
    }

    /// `y[i·rows + r .. i·rows + r + len]`: a run of this part's rows of activation
    /// `i`, for kernels that write several at once.
    ///
    /// # Panics
    /// If `i >= n` or the run is not inside `r0..r1`.
    #[inline(always)]
    #[allow(dead_code)] // not every target has a path that uses it
    pub(crate) fn span(&mut self, i: usize, r: usize, len: usize) -> &mut [f32] {
        assert!(i < self.n && r >= self.r0 && r + len <= self.r1);
        // SAFETY: as in `set`, for each of the `len` values (r + len <= r1 <= rows);
        // the borrow of `self` keeps other writes through it out while the slice lives.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.add(i * self.rows + r), len) }
    }

    /// `y[i·rows + r] += v`.
    ///
    /// # Panics
    /// As [`OutRows::set`].
    #[inline(always)]
    #[allow(dead_code)] // not every target has a path that uses it
    pub(crate) fn add(&mut self, i: usize, r: usize, v: f32) {
        assert!(i < self.n && r >= self.r0 && r < self.r1);
        // SAFETY: as in `set`.
        unsafe { *self.ptr.add(i * self.rows + r) += v };
    }
}

// SAFETY: an `OutRows` is a unique borrow of its rows of `y` (see `part`), like a
// `&mut [f32]`, which is `Send`.
unsafe impl Send for OutRows<'_> {}
// SAFETY: through a shared `&OutRows` nothing can be written (`set` takes `&mut`,
// `part` is unsafe with the disjointness contract), so sharing it is sound.
unsafe impl Sync for OutRows<'_> {}

/// A buffer that parallel parts write in disjoint places (rows of a prompt, heads):
/// the raw pointer and length of a `&mut [T]`, handed to every part, each of which
/// takes only its own range through [`SharedMut::slice`].
pub(crate) struct SharedMut<T>(*mut T, usize);

impl<T> Clone for SharedMut<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SharedMut<T> {}
// SAFETY: a `SharedMut` only hands out `&mut` ranges through the unsafe `slice`, whose
// callers guarantee that no two live ranges overlap (like a `&mut [T]` split in parts),
// so sending or sharing it is as safe as sending the parts.
unsafe impl<T: Send> Sync for SharedMut<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for SharedMut<T> {}

impl<T> SharedMut<T> {
    /// The whole of `buf`; it must outlive every slice taken.
    pub(crate) fn new(buf: &mut [T]) -> SharedMut<T> {
        SharedMut(buf.as_mut_ptr(), buf.len())
    }

    /// Elements `start..start + len` of the buffer.
    ///
    /// # Panics
    /// If the range is not inside the buffer.
    ///
    /// # Safety
    /// The buffer outlives the slice, and no other live slice covers any of these
    /// elements.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn slice(&self, start: usize, len: usize) -> &mut [T] {
        assert!(start.checked_add(len).is_some_and(|end| end <= self.1));
        // SAFETY: in bounds (checked); exclusive and alive by the caller's contract.
        unsafe { core::slice::from_raw_parts_mut(self.0.add(start), len) }
    }
}
