//! What the GPU kernel tests share whether the kernels run in the emulator
//! (`cuda_emulated.rs`) or on a GPU (`cuda_kernels.rs`): the cases, their random
//! inputs and the f64 reference each output is checked against.
#![allow(dead_code)] // each test binary uses a part

use super::common::Rng;
use llm_format::quant::{dequantize_vec, quantize};
use llm_format::DType;
use llmrt::cuda::matmul::{self, DeviceMatrix};
use llmrt_cuda::emu::EmuArg;
use llmrt_cuda::{CudaError, Gpu};

/// The storage types the GPU matmul covers: every one of the format.
pub const MATMUL_DTYPES: [DType; DType::ALL.len()] = DType::ALL;

/// `(rows, cols, n)` for the float types and the blocks of 32: one row; rows not a
/// multiple of the 4 per block; 2176 columns; n over the 8 per block with a partial
/// group; n = 8.
pub const MATMUL_SHAPES: [(usize, usize, usize); 4] =
    [(1, 32, 1), (37, 2176, 1), (13, 256, 11), (6, 64, 8)];

/// The same for the super-blocks of 256 (columns a multiple of 256; 2304 = 9 of them,
/// more than one warp step per lane).
pub const MATMUL_SHAPES_256: [(usize, usize, usize); 4] =
    [(1, 256, 1), (37, 2304, 1), (13, 512, 11), (6, 256, 8)];

/// The shapes for `dtype`: [`MATMUL_SHAPES_256`] for the super-block types,
/// [`MATMUL_SHAPES`] otherwise.
pub fn matmul_shapes(dtype: DType) -> [(usize, usize, usize); 4] {
    if dtype.block_len() == 256 {
        MATMUL_SHAPES_256
    } else {
        MATMUL_SHAPES
    }
}

/// `(rows, cols, n)` for float types only: a row length that is not a multiple of 8.
pub const MATMUL_FLOAT_ODD: (usize, usize, usize) = (5, 70, 3);

/// One matmul case: random weights stored as `dtype`, their dequantised values (the
/// format crate's, not the kernel's), and random activations.
pub struct MatmulCase {
    /// Storage type.
    pub dtype: DType,
    /// Weight rows.
    pub rows: usize,
    /// Weight columns.
    pub cols: usize,
    /// Activation rows.
    pub n: usize,
    /// The weights as the file stores them.
    pub bytes: Vec<u8>,
    /// Their values.
    pub deq: Vec<f32>,
    /// `n × cols` activations.
    pub x: Vec<f32>,
}

impl MatmulCase {
    /// Fresh random weights and activations.
    pub fn random(r: &mut Rng, dtype: DType, (rows, cols, n): (usize, usize, usize)) -> Self {
        let w = r.vec(rows * cols);
        let bytes = quantize(dtype, &w).expect("whole blocks");
        let deq = dequantize_vec(dtype, &bytes, rows * cols).expect("same size");
        let x = r.vec(n * cols);
        MatmulCase {
            dtype,
            rows,
            cols,
            n,
            bytes,
            deq,
            x,
        }
    }

    /// Checks `got` (`n × rows`) against the f64 product of the dequantised weights
    /// and the activations. The kernel sums exact weights' f32 products: per output a
    /// worst-case bound of (terms per lane + 8 per item + the warp's 5 levels)
    /// roundings of Σ|w·x|, doubled.
    #[track_caller]
    pub fn check(&self, what: &str, got: &[f32]) {
        let (rows, cols) = (self.rows, self.cols);
        assert_eq!(got.len(), self.n * rows, "{what}: output length");
        let levels = (cols / 256 + 5 + 8) as f64;
        for j in 0..self.n {
            for i in 0..rows {
                let (mut want, mut mag) = (0.0f64, 0.0f64);
                for c in 0..cols {
                    let p = self.deq[i * cols + c] as f64 * self.x[j * cols + c] as f64;
                    want += p;
                    mag += p.abs();
                }
                let g = got[j * rows + i] as f64;
                let tol = 2.0 * levels * f32::EPSILON as f64 * mag;
                assert!(
                    (g - want).abs() <= tol,
                    "{what} {} {rows}x{cols} n={}: y[{j}, {i}] = {g}, want {want} \
                     (tolerance {tol:.3e})",
                    self.dtype.name(),
                    self.n
                );
            }
        }
    }
}

/// One case through the launchers on `gpu`: upload, multiply, read back.
pub fn run_matmul(gpu: &Gpu, c: &MatmulCase) -> Result<Vec<f32>, CudaError> {
    let w = DeviceMatrix::upload(gpu, c.dtype, &c.bytes, c.rows, c.cols)?;
    let x = gpu.upload_f32(&c.x)?;
    let y = gpu.upload_f32(&vec![f32::NAN; c.n * c.rows])?;
    matmul::matmul(gpu, &w, &x, c.n, &y)?;
    gpu.read_f32(&y, 0, c.n * c.rows)
}

/// Every matmul case on `gpu`, through the launchers, against the f64 reference.
pub fn matmul_cases(gpu: &Gpu, r: &mut Rng) {
    let what = format!("matmul on {}", gpu.name());
    for dtype in MATMUL_DTYPES {
        for shape in matmul_shapes(dtype) {
            let c = MatmulCase::random(r, dtype, shape);
            c.check(&what, &run_matmul(gpu, &c).expect("launch"));
        }
    }
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        let c = MatmulCase::random(r, dtype, MATMUL_FLOAT_ODD);
        c.check(&what, &run_matmul(gpu, &c).expect("launch"));
    }
}

/// The matmul launcher refuses shapes that do not match its buffers.
pub fn matmul_refuses_bad_shapes(gpu: &Gpu) {
    let bytes = vec![0u8; 34 * 4];
    let e = DeviceMatrix::upload(gpu, DType::Q8_0, &bytes, 2, 48).err();
    assert!(matches!(e, Some(CudaError::Shape(_))), "{e:?}");
    let w = DeviceMatrix::upload(gpu, DType::Q8_0, &bytes, 2, 64).expect("2 × 64");
    let x = gpu.upload_f32(&[1.0f32; 63]).expect("upload");
    let y = gpu.alloc(8).expect("alloc");
    assert!(matches!(
        matmul::matmul(gpu, &w, &x, 1, &y),
        Err(CudaError::Shape(_))
    ));
}

/// A host buffer for the emulator, 16-byte aligned as device allocations are.
pub struct Aligned {
    words: Vec<u128>,
    bytes: usize,
}

impl Aligned {
    /// `b` copied `offset` bytes past a 16-byte boundary.
    pub fn new(b: &[u8], offset: usize) -> Aligned {
        let mut a = Aligned {
            words: vec![0; (b.len() + offset).div_ceil(16) + 1],
            bytes: b.len() + offset,
        };
        // SAFETY: `words` holds at least `bytes` initialised bytes; u8 has no alignment.
        let all =
            unsafe { std::slice::from_raw_parts_mut(a.words.as_mut_ptr().cast::<u8>(), a.bytes) };
        all[offset..].copy_from_slice(b);
        a
    }
    pub fn of_f32(v: &[f32], offset: usize) -> Aligned {
        let b: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        Aligned::new(&b, offset)
    }
    /// The buffer's address plus `offset` bytes, as a kernel pointer argument.
    pub fn arg(&mut self, offset: usize) -> EmuArg {
        EmuArg::P(
            self.words
                .as_mut_ptr()
                .cast::<u8>()
                .wrapping_add(offset)
                .cast(),
        )
    }
    /// `n` f32 values from byte 0.
    pub fn f32s(&self, n: usize) -> Vec<f32> {
        assert!(4 * n <= self.bytes);
        // SAFETY: as in `new`; 4·n ≤ bytes.
        let b = unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), 4 * n) };
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }
}
