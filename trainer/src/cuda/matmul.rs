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

/// `out^T (OC x N) = W (col-major IC x OC, transposed) · inp^T (IC x N)`:
/// A = weight, B = inp, C = out.
pub fn forward_config(n: usize, ic: usize, oc: usize) -> MatmulConfig {
    config(true, false, oc, n, ic, ic, ic, oc, 0.0)
}

/// `dinp^T (IC x N) (+)= W^T (col-major IC x OC) · dout^T (OC x N)`:
/// A = weight, B = dout, C = dinp.
pub fn dinp_config(n: usize, ic: usize, oc: usize, accumulate: bool) -> MatmulConfig {
    let beta = if accumulate { 1.0 } else { 0.0 };
    config(false, false, ic, n, oc, ic, oc, ic, beta)
}

/// `dW^T (IC x OC) += inp^T (IC x N) · dout (N x OC, dout^T transposed)`:
/// A = inp, B = dout, C = dweight.
pub fn dweight_config(n: usize, ic: usize, oc: usize) -> MatmulConfig {
    config(false, true, ic, oc, n, ic, oc, ic, 1.0)
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
        dev.context().bind_to_thread()?;
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
        // cuBLASLt works in the calling thread's current context.
        self.lt.stream().context().bind_to_thread()?;
        let cfg = forward_config(n, ic, oc);
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
        self.lt.stream().context().bind_to_thread()?;
        let cfg = dinp_config(n, ic, oc, accumulate);
        // SAFETY: as in forward.
        unsafe { self.matmul(cfg, weight, dout, dinp, None, None) }?;
        let cfg = dweight_config(n, ic, oc);
        // SAFETY: as in forward.
        unsafe { self.matmul(cfg, inp, dout, dweight, None, None) }?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::linear;
    use crate::rng::Rng;

    /// cuBLAS's column-major `C = alpha op(A) op(B) + beta C`, by definition.
    fn gemm_ref(cfg: &MatmulConfig, a: &[f32], b: &[f32], c: &mut [f32]) {
        let (m, n, k) = (cfg.m as usize, cfg.n as usize, cfg.k as usize);
        let (lda, ldb, ldc) = (cfg.lda as usize, cfg.ldb as usize, cfg.ldc as usize);
        for j in 0..n {
            for i in 0..m {
                let mut s = 0.0f64;
                for kk in 0..k {
                    let x = if cfg.transa {
                        a[kk + i * lda]
                    } else {
                        a[i + kk * lda]
                    };
                    let y = if cfg.transb {
                        b[j + kk * ldb]
                    } else {
                        b[kk + j * ldb]
                    };
                    s += x as f64 * y as f64;
                }
                let o = &mut c[i + j * ldc];
                *o = (cfg.alpha as f64 * s + cfg.beta as f64 * *o as f64) as f32;
            }
        }
    }

    /// The three configurations, read as cuBLAS reads them, give the CPU linear layer.
    #[test]
    fn configs_compute_the_linear_layer() {
        let mut r = Rng::new(7);
        let (n, ic, oc) = (5usize, 7usize, 3usize);
        let mut rand = |len: usize| (0..len).map(|_| r.normal() as f32).collect::<Vec<f32>>();
        let (x, w, dout) = (rand(n * ic), rand(oc * ic), rand(n * oc));
        let (gx0, gw0) = (rand(n * ic), rand(oc * ic));
        let mut want = vec![0.0f32; n * oc];
        linear::linear_forward(&mut want, &x, &w, None, n, ic, oc);
        let mut got = vec![0.0f32; n * oc];
        gemm_ref(&forward_config(n, ic, oc), &w, &x, &mut got);
        let close = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .all(|(p, q)| (p - q).abs() <= 1e-5 * (1.0 + q.abs()))
        };
        assert!(close(&got, &want), "forward {got:?} vs {want:?}");
        let (mut gx, mut gw) = (gx0.clone(), gw0.clone());
        linear::linear_backward(&mut gx, &mut gw, None, &dout, &x, &w, n, ic, oc);
        let (mut hx, mut hw) = (gx0, gw0);
        gemm_ref(&dinp_config(n, ic, oc, true), &w, &dout, &mut hx);
        gemm_ref(&dweight_config(n, ic, oc), &x, &dout, &mut hw);
        assert!(close(&hx, &gx), "dinp {hx:?} vs {gx:?}");
        assert!(close(&hw, &gw), "dweight {hw:?} vs {gw:?}");
    }
}
