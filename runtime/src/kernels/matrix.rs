//! A weight matrix as the kernels see it: dtype, bytes, rows and columns, checked
//! once at construction, and the shape contract of every product.

use core::fmt;
use llm_format::{DType, Layout};

/// Why a [`Matrix`] could not be built. `Display` names the problem and the numbers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelError {
    /// `rows·cols` elements of `dtype` need `expected` bytes but `got` were given.
    Length {
        /// The weight dtype.
        dtype: DType,
        /// Bytes that `rows·cols` elements need.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// A block dtype needs `cols` to be a multiple of 32.
    PartialBlock {
        /// The weight dtype.
        dtype: DType,
        /// The number of columns given.
        cols: usize,
    },
    /// The layout does not take a matrix of this dtype and shape
    /// ([`Layout::unfit`]).
    Layout {
        /// The layout asked for.
        layout: Layout,
        /// The weight dtype.
        dtype: DType,
        /// Rows given.
        rows: usize,
        /// Columns given.
        cols: usize,
    },
    /// `rows·cols` (or its byte size) overflows `usize`.
    Overflow {
        /// Rows given.
        rows: usize,
        /// Columns given.
        cols: usize,
    },
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelError::Length {
                dtype,
                expected,
                got,
            } => write!(
                f,
                "{dtype} weight matrix needs {expected} bytes but {got} were given"
            ),
            KernelError::PartialBlock { dtype, cols } => write!(
                f,
                "{dtype} weight matrix has {cols} columns, not a multiple of the block size 32"
            ),
            KernelError::Layout {
                layout,
                dtype,
                rows,
                cols,
            } => write!(
                f,
                "layout {} does not fit a {dtype} weight matrix of {rows}x{cols}",
                layout.name()
            ),
            KernelError::Overflow { rows, cols } => {
                write!(
                    f,
                    "weight matrix of {rows}x{cols} overflows the address space"
                )
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for KernelError {}

/// A weight matrix `[rows, cols]` in `dtype`'s bytes (rows = out features, cols = in
/// features), row-major or in another [`Layout`] of the file; for block dtypes
/// `cols % 32 == 0`. `data` may have any alignment (it comes from an mmap or a
/// caller's buffer).
#[derive(Clone, Copy, Debug)]
pub struct Matrix<'a> {
    /// Storage type of the elements.
    pub dtype: DType,
    /// Arrangement of the rows in `data` ([`Layout::Rows`] from [`Matrix::new`]).
    /// Kernels that do not read a layout get its rows de-interleaved per part.
    pub layout: Layout,
    /// `rows · row_bytes` bytes, little-endian.
    pub data: &'a [u8],
    /// Output features.
    pub rows: usize,
    /// Input features.
    pub cols: usize,
}

impl<'a> Matrix<'a> {
    /// Checks that `data` holds exactly `rows × cols` elements of `dtype`.
    pub fn new(
        dtype: DType,
        data: &'a [u8],
        rows: usize,
        cols: usize,
    ) -> Result<Matrix<'a>, KernelError> {
        if !cols.is_multiple_of(dtype.block_len()) {
            return Err(KernelError::PartialBlock { dtype, cols });
        }
        let expected = rows
            .checked_mul(cols / dtype.block_len())
            .and_then(|b| b.checked_mul(dtype.block_bytes()))
            .ok_or(KernelError::Overflow { rows, cols })?;
        if data.len() != expected {
            return Err(KernelError::Length {
                dtype,
                expected,
                got: data.len(),
            });
        }
        Ok(Matrix {
            dtype,
            layout: Layout::Rows,
            data,
            rows,
            cols,
        })
    }

    /// The same matrix with its bytes read as stored in `layout` (the tensor's
    /// layout in the file), checked to fit the dtype and shape.
    pub fn with_layout(self, layout: Layout) -> Result<Matrix<'a>, KernelError> {
        match layout.unfit(self.dtype, &[self.rows, self.cols]) {
            None => Ok(Matrix { layout, ..self }),
            Some(_) => Err(KernelError::Layout {
                layout,
                dtype: self.dtype,
                rows: self.rows,
                cols: self.cols,
            }),
        }
    }

    /// Bytes of one row.
    #[inline]
    pub fn row_bytes(&self) -> usize {
        self.cols / self.dtype.block_len() * self.dtype.block_bytes()
    }

    /// The bytes of row `r` (row-major matrices only).
    ///
    /// # Panics
    /// If `r >= rows` or the fields were changed after [`Matrix::new`] so that `data`
    /// is too short; in debug builds, if the layout is not [`Layout::Rows`].
    #[inline]
    pub fn row(&self, r: usize) -> &'a [u8] {
        debug_assert_eq!(
            self.layout,
            Layout::Rows,
            "Matrix::row of an interleaved matrix"
        );
        let rb = self.row_bytes();
        &self.data[r * rb..(r + 1) * rb]
    }

    /// Panics unless the public fields are still consistent (they are `pub`, so a
    /// caller may have changed them after [`Matrix::new`]).
    pub(crate) fn check(&self) {
        if let Err(e) = Matrix::new(self.dtype, self.data, self.rows, self.cols)
            .and_then(|m| m.with_layout(self.layout))
        {
            panic!("inconsistent Matrix: {e}");
        }
    }
}

/// Panics unless `x` and `y` fit `w` and `n` (the documented slice contract).
pub(crate) fn check_shapes(w: &Matrix<'_>, x: &[f32], n: usize, y: &[f32]) {
    w.check();
    assert_eq!(
        Some(x.len()),
        n.checked_mul(w.cols),
        "matmul: x must hold n·cols = {n}·{} values",
        w.cols
    );
    assert_eq!(
        Some(y.len()),
        n.checked_mul(w.rows),
        "matmul: y must hold n·rows = {n}·{} values",
        w.rows
    );
}
