//! Matrix products through cuBLASLt, fp32 accumulation for both storage types (fp32
//! compute in fp32 mode, not TF32, so results match the CPU within 1e-5). Row-major
//! conventions of the trainer: `inp [N, IC]`, linear weight `[OC, IC]`, `out [N, OC]`.
//! cuBLASLt is column-major, so each product is written for the transposes
//! (a row-major `[r, c]` matrix is a column-major `c x r` one).

use super::device::CudaDevice;
use super::error::CudaError;
use super::kernels::GpuFloat;
use super::launch::check_len;
use cudarc::cublaslt::{sys, CudaBlasLT, Matmul as LtMatmul, MatmulConfig, MatmulShared};
use cudarc::driver::{CudaSlice, CudaStream};
use half::bf16;
use std::sync::Arc;

/// A cuBLASLt handle whose products accumulate in full fp32 (cudarc's own f32 path
/// uses TF32).
pub struct Blas {
    lt: CudaBlasLT,
}

impl MatmulShared for Blas {
    fn handle(&self) -> &sys::cublasLtHandle_t {
        self.lt.handle()
    }
    fn workspace(&self) -> &cudarc::cublaslt::Workspace {
        self.lt.workspace()
    }
    fn stream(&self) -> &Arc<CudaStream> {
        self.lt.stream()
    }
}

impl LtMatmul<f32> for Blas {
    fn matrix_type() -> sys::cudaDataType {
        sys::cudaDataType_t::CUDA_R_32F
    }
    fn compute_type() -> sys::cublasComputeType_t {
        sys::cublasComputeType_t::CUBLAS_COMPUTE_32F
    }
}

impl LtMatmul<bf16> for Blas {
    fn matrix_type() -> sys::cudaDataType {
        sys::cudaDataType_t::CUDA_R_16BF
    }
    fn compute_type() -> sys::cublasComputeType_t {
        sys::cublasComputeType_t::CUBLAS_COMPUTE_32F
    }
}

/// A column-major product `C (m x n) = beta C + op(A) op(B)` with inner size k.
#[allow(clippy::too_many_arguments)]
fn config(
    transa: bool,
    transb: bool,
    m: usize,
    n: usize,
    k: usize,
    lda: usize,
    ldb: usize,
    ldc: usize,
    beta: f32,
) -> MatmulConfig {
    MatmulConfig {
        transa,
        transb,
        transc: false,
        m: m as u64,
        n: n as u64,
        k: k as u64,
        alpha: 1.0,
        lda: lda as i64,
        ldb: ldb as i64,
        beta,
        ldc: ldc as i64,
        stride_a: None,
        stride_b: None,
        stride_c: None,
        stride_bias: None,
        batch_size: None,
    }
}

impl Blas {
    /// A handle on the device's stream; a missing `libcublasLt` is an error, not a panic.
    pub fn new(dev: &CudaDevice) -> Result<Self, CudaError> {
        // SAFETY: only tries to dlopen the candidate names; no symbol is called.
        if !unsafe { sys::is_culib_present() } {
            return Err(CudaError::Blas(
                "libcublasLt.so could not be loaded (install the CUDA toolkit's cuBLAS)".into(),
            ));
        }
        Ok(Blas {
            lt: CudaBlasLT::new(dev.stream().clone())?,
        })
    }

    /// `out[N, OC] = inp[N, IC] · weight[OC, IC]^T (+ bias[OC])`.
    #[allow(clippy::too_many_arguments)]
    pub fn forward<T: GpuFloat>(
        &self,
        out: &mut CudaSlice<T>,
        inp: &CudaSlice<T>,
        weight: &CudaSlice<T>,
        bias: Option<&CudaSlice<T>>,
        n: usize,
        ic: usize,
        oc: usize,
    ) -> Result<(), CudaError>
    where
        Blas: LtMatmul<T>,
    {
        check_len("matmul out", out.len(), n * oc)?;
        check_len("matmul inp", inp.len(), n * ic)?;
        check_len("matmul weight", weight.len(), oc * ic)?;
        if let Some(b) = bias {
            check_len("matmul bias", b.len(), oc)?;
        }
        // out^T (OC x N) = W (col-major IC x OC, transposed) · inp^T (IC x N).
        let cfg = config(true, false, oc, n, ic, ic, ic, oc, 0.0);
        // SAFETY: the lengths were checked against m, n, k and the leading dimensions.
        unsafe { self.matmul(cfg, weight, inp, out, bias, None) }?;
        Ok(())
    }

    /// `dinp[N, IC] (= or += with accumulate) dout[N, OC] · weight[OC, IC]` and
    /// `dweight[OC, IC] += dout^T · inp`.
    #[allow(clippy::too_many_arguments)]
    pub fn backward<T: GpuFloat>(
        &self,
        dinp: &mut CudaSlice<T>,
        dweight: &mut CudaSlice<T>,
        dout: &CudaSlice<T>,
        inp: &CudaSlice<T>,
        weight: &CudaSlice<T>,
        n: usize,
        ic: usize,
        oc: usize,
        accumulate: bool,
    ) -> Result<(), CudaError>
    where
        Blas: LtMatmul<T>,
    {
        check_len("matmul dinp", dinp.len(), n * ic)?;
        check_len("matmul dweight", dweight.len(), oc * ic)?;
        check_len("matmul dout", dout.len(), n * oc)?;
        check_len("matmul inp", inp.len(), n * ic)?;
        check_len("matmul weight", weight.len(), oc * ic)?;
        // dinp^T (IC x N) = W^T (col-major IC x OC) · dout^T (OC x N).
        let beta = if accumulate { 1.0 } else { 0.0 };
        let cfg = config(false, false, ic, n, oc, ic, oc, ic, beta);
        // SAFETY: as in forward.
        unsafe { self.matmul(cfg, weight, dout, dinp, None, None) }?;
        // dW^T (IC x OC) += inp^T (IC x N) · dout (N x OC, dout^T transposed).
        let cfg = config(false, true, ic, oc, n, ic, oc, ic, 1.0);
        // SAFETY: as in forward.
        unsafe { self.matmul(cfg, inp, dout, dweight, None, None) }?;
        Ok(())
    }
}
