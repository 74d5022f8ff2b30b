//! How a tensor's rows are arranged in the file: the one table of layouts and the
//! one codec between them and plain rows.
//!
//! Every tensor is row-major ([`Layout::Rows`]) unless its directory entry says
//! otherwise. [`Layout::R16`] stores a matrix of 4- or 2-byte floats (F32, F16,
//! BF16) as groups of 16 rows interleaved in 4-byte units: unit `k` (bytes
//! `4k..4k + 4` of a row: one f32, or two consecutive 16-bit values) of the group's
//! 16 rows lie side by side, so 64 consecutive bytes hold the same unit of 16 rows,
//! one row per 32-bit lane of a 512-bit register. That is the order the prompt
//! kernels otherwise build per chunk with a transposition (`avx512_rows16` in the
//! runtime) and ik_llama.cpp's `_r16` types build at load; in the file it is read
//! through the memory map as it is, with no copy and no shuffle. A 256-bit register
//! holds the same unit of 8 of the rows, a 128-bit one of 4, so the layout serves
//! narrower vectors too.
//!
//! A reader that does not know layouts refuses such a file: it sets header flag
//! [`crate::header::FLAG_LAYOUTS`] (SPEC.md §3, §5.2), which version-1 readers
//! before layouts reject.

use crate::dtype::DType;
use alloc::vec::Vec;

/// Rows interleaved per group of [`Layout::R16`].
pub const R16_ROWS: usize = 16;
/// Bytes per interleaved unit of [`Layout::R16`] (one 32-bit lane).
pub const R16_UNIT: usize = 4;

macro_rules! layouts {
    ($( $(#[$doc:meta])* $v:ident = $id:literal, $name:literal; )*) => {
        /// A tensor's arrangement of rows in the file. The discriminant is the on-disk id.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
        #[repr(u32)]
        pub enum Layout {
            /// Row-major: row `r` is bytes `r·row_bytes..(r + 1)·row_bytes`.
            #[default]
            Rows = 0,
            $( $(#[$doc])* $v = $id, )*
        }

        impl Layout {
            /// Every layout.
            pub const ALL: [Layout; 1 + [$( stringify!($v) ),*].len()] =
                [Layout::Rows, $( Layout::$v ),*];

            /// The layout with on-disk id `id`, if there is one.
            pub fn from_u32(id: u32) -> Option<Layout> {
                match id {
                    0 => Some(Layout::Rows),
                    $( $id => Some(Layout::$v), )*
                    _ => None,
                }
            }

            /// Lower-case name as used on the command line and by `llm-run info`.
            pub fn name(self) -> &'static str {
                match self {
                    Layout::Rows => "rows",
                    $( Layout::$v => $name, )*
                }
            }
        }
    };
}

layouts! {
    /// Groups of 16 rows interleaved in 4-byte units (module docs).
    R16 = 1, "r16";
}

impl Layout {
    /// The on-disk id.
    pub fn to_u32(self) -> u32 {
        self as u32
    }

    /// Parses a name as printed by [`Layout::name`] (case-insensitive).
    pub fn from_name(s: &str) -> Option<Layout> {
        Layout::ALL
            .into_iter()
            .find(|l| l.name().eq_ignore_ascii_case(s))
    }

    /// Why a tensor of `dtype` and `shape` cannot be stored in this layout, or `None`
    /// if it can. [`Layout::R16`] takes F32, F16 and BF16 tensors of at least two
    /// dimensions whose row count (the product of all but the last) is a multiple of
    /// 16 and whose rows are whole 64-byte lines.
    pub fn unfit(self, dtype: DType, shape: &[usize]) -> Option<alloc::string::String> {
        use alloc::format;
        match self {
            Layout::Rows => None,
            Layout::R16 => {
                if !matches!(dtype, DType::F32 | DType::F16 | DType::BF16) {
                    return Some(format!("layout r16 takes f32, f16 or bf16, not {dtype}"));
                }
                let (rows, cols) = split(shape);
                if shape.len() < 2 || rows % R16_ROWS != 0 {
                    return Some(format!(
                        "layout r16 needs a matrix of a multiple of {R16_ROWS} rows, shape is {shape:?}"
                    ));
                }
                let row_bytes = cols.saturating_mul(dtype.block_bytes());
                if row_bytes % 64 != 0 {
                    return Some(format!(
                        "layout r16 needs rows of whole 64-byte lines, {dtype} rows of {cols} are {row_bytes} bytes"
                    ));
                }
                None
            }
        }
    }
}

/// `(rows, cols)` of `shape`: the product of all dimensions but the last, and the
/// last (`(1, 1)` for no dimensions).
fn split(shape: &[usize]) -> (usize, usize) {
    match shape.split_last() {
        Some((&cols, outer)) => (outer.iter().product(), cols),
        None => (1, 1),
    }
}

/// Byte offset, in `layout`, of byte `b` of row `r` of a tensor whose rows are
/// `row_bytes` long (both arguments inside the tensor, the tensor fit for the layout).
#[inline]
pub fn offset(layout: Layout, row_bytes: usize, r: usize, b: usize) -> usize {
    match layout {
        Layout::Rows => r * row_bytes + b,
        Layout::R16 => {
            let (g, j) = (r / R16_ROWS, r % R16_ROWS);
            g * R16_ROWS * row_bytes + (b / R16_UNIT * R16_ROWS + j) * R16_UNIT + b % R16_UNIT
        }
    }
}

/// The bytes of a row-major tensor (`rows` rows of `row_bytes`) rearranged into
/// `layout`. The caller has checked the tensor fits ([`Layout::unfit`]).
pub fn from_rows(layout: Layout, rows_data: &[u8], row_bytes: usize) -> Vec<u8> {
    let mut out = alloc::vec![0u8; rows_data.len()];
    if row_bytes == 0 {
        return out;
    }
    for (r, row) in rows_data.chunks_exact(row_bytes).enumerate() {
        for (u, unit) in row.chunks(R16_UNIT).enumerate() {
            let at = offset(layout, row_bytes, r, u * R16_UNIT);
            out[at..at + unit.len()].copy_from_slice(unit);
        }
    }
    out
}

/// The bytes of a tensor stored in `layout` (rows of `row_bytes`) as plain rows.
pub fn to_rows(layout: Layout, data: &[u8], row_bytes: usize) -> Vec<u8> {
    let mut out = alloc::vec![0u8; data.len()];
    rows_into(layout, data, row_bytes, 0, &mut out);
    out
}

/// Rows `r0..r0 + n` (any rows; `n` is `out.len() / row_bytes`) of a tensor
/// stored in `layout`, as plain rows into `out` (`n · row_bytes` bytes): the
/// de-interleaving a reader without a kernel for the layout does per group.
pub fn rows_into(layout: Layout, data: &[u8], row_bytes: usize, r0: usize, out: &mut [u8]) {
    if row_bytes == 0 {
        return;
    }
    for (i, row) in out.chunks_exact_mut(row_bytes).enumerate() {
        match layout {
            Layout::Rows => {
                let at = (r0 + i) * row_bytes;
                row.copy_from_slice(&data[at..at + row_bytes]);
            }
            Layout::R16 => {
                let r = r0 + i;
                let base = r / R16_ROWS * R16_ROWS * row_bytes + r % R16_ROWS * R16_UNIT;
                for (u, unit) in row.chunks_exact_mut(R16_UNIT).enumerate() {
                    let at = base + u * R16_ROWS * R16_UNIT;
                    unit.copy_from_slice(&data[at..at + R16_UNIT]);
                }
            }
        }
    }
}
