//! Linear layer `out = inp · wᵀ + b` with `w` stored `[out, in]` (the file's layout),
//! and the one place the CPU backend multiplies matrices (through the `gemm` crate).
//! Parameter and input gradients are accumulated (`+=`).

use crate::scalar::Real;
use gemm::Parallelism;

/// A strided matrix operand: element `(r, c)` sits at `r * rs + c * cs`.
#[derive(Clone, Copy, Debug)]
pub struct Strides {
    /// Row stride in elements.
    pub rs: usize,
    /// Column stride in elements.
    pub cs: usize,
}

/// Row-major `[rows, cols]`.
pub fn row_major(cols: usize) -> Strides {
    Strides { rs: cols, cs: 1 }
}

/// The transpose of a row-major `[cols, rows]` matrix.
pub fn transposed(rows_of_stored: usize) -> Strides {
    Strides {
        rs: 1,
        cs: rows_of_stored,
    }
}

fn fits(len: usize, rows: usize, cols: usize, s: Strides) -> bool {
    rows == 0 || cols == 0 || (rows - 1) * s.rs + (cols - 1) * s.cs < len
}

/// `dst[m, n] (+)= a[m, k] · b[k, n]`; `accumulate` keeps what `dst` held.
///
/// Panics if an operand is too short for its shape: callers size every buffer from the
/// model options, so a short buffer is a bug in the trainer, not bad input.
#[allow(clippy::too_many_arguments)]
pub fn matmul<T: Real>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    ds: Strides,
    accumulate: bool,
    a: &[T],
    as_: Strides,
    b: &[T],
    bs: Strides,
) {
    assert!(fits(dst.len(), m, n, ds), "matmul: dst too short");
    assert!(fits(a.len(), m, k, as_), "matmul: lhs too short");
    assert!(fits(b.len(), k, n, bs), "matmul: rhs too short");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                for c in 0..n {
                    dst[r * ds.rs + c * ds.cs] = T::zero();
                }
            }
        }
        return;
    }
    let par = if m * n * k >= 1 << 18 {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    };
    // SAFETY: the three asserts above prove every element (r, c) addressed through the
    // given strides lies inside its slice; `dst` is borrowed mutably and cannot alias
    // `a` or `b`; T is f32 or f64, both supported by gemm.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            ds.cs as isize,
            ds.rs as isize,
            accumulate,
            a.as_ptr(),
            as_.cs as isize,
            as_.rs as isize,
            b.as_ptr(),
            bs.cs as isize,
            bs.rs as isize,
            T::one(),
            T::one(),
            false,
            false,
            false,
            par,
        );
    }
}

/// `out[N, O] = inp[N, I] · w[O, I]ᵀ + bias[O]`.
pub fn linear_forward<T: Real>(
    out: &mut [T],
    inp: &[T],
    w: &[T],
    bias: Option<&[T]>,
    n: usize,
    i: usize,
    o: usize,
) {
    matmul(
        n,
        o,
        i,
        out,
        row_major(o),
        false,
        inp,
        row_major(i),
        w,
        transposed(i),
    );
    if let Some(b) = bias {
        for row in out.chunks_exact_mut(o).take(n) {
            for (y, bb) in row.iter_mut().zip(b) {
                *y += *bb;
            }
        }
    }
}

/// Inverts `linear_forward`: `dinp += dout·w`, `dw += doutᵀ·inp`, `dbias += Σ_n dout`.
#[allow(clippy::too_many_arguments)]
pub fn linear_backward<T: Real>(
    dinp: &mut [T],
    dw: &mut [T],
    dbias: Option<&mut [T]>,
    dout: &[T],
    inp: &[T],
    w: &[T],
    n: usize,
    i: usize,
    o: usize,
) {
    matmul(
        n,
        i,
        o,
        dinp,
        row_major(i),
        true,
        dout,
        row_major(o),
        w,
        row_major(i),
    );
    matmul(
        o,
        i,
        n,
        dw,
        row_major(i),
        true,
        dout,
        transposed(o),
        inp,
        row_major(i),
    );
    if let Some(db) = dbias {
        for row in dout.chunks_exact(o).take(n) {
            for (g, d) in db.iter_mut().zip(row) {
                *g += *d;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testutil::{check_grads, rand_vec};

    #[test]
    fn matmul_matches_naive_f32() {
        // Odd sizes so no kernel tile divides them; large enough to take the threaded path.
        let (m, n, k) = (67, 129, 45);
        let a = rand_vec::<f32>(m * k, 1);
        let b = rand_vec::<f32>(k * n, 2);
        let mut d = rand_vec::<f32>(m * n, 3);
        let d0 = d.clone();
        matmul(
            m,
            n,
            k,
            &mut d,
            row_major(n),
            true,
            &a,
            row_major(k),
            &b,
            row_major(n),
        );
        for r in 0..m {
            for c in 0..n {
                let want: f64 = d0[r * n + c] as f64
                    + (0..k)
                        .map(|j| a[r * k + j] as f64 * b[j * n + c] as f64)
                        .sum::<f64>();
                assert!((d[r * n + c] as f64 - want).abs() < 1e-5 * (1.0 + want.abs()));
            }
        }
    }

    #[test]
    fn linear_gradients() {
        let (n, i, o) = (5, 7, 3);
        let inputs = vec![
            rand_vec::<f64>(n * i, 4),
            rand_vec(o * i, 5),
            rand_vec(o, 6),
        ];
        check_grads(
            &inputs,
            n * o,
            1e-7,
            |x, out| linear_forward(out, &x[0], &x[1], Some(&x[2]), n, i, o),
            |x, dout, g| {
                let (g0, rest) = g.split_at_mut(1);
                let (g1, g2) = rest.split_at_mut(1);
                linear_backward(
                    &mut g0[0],
                    &mut g1[0],
                    Some(&mut g2[0]),
                    dout,
                    &x[0],
                    &x[1],
                    n,
                    i,
                    o,
                )
            },
        );
    }
}
