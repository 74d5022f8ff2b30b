//! The runtime's GPU matmul runs on the CPU through the emulator
//! (`llmrt_cuda::emu`: one std::thread per CUDA thread), with the launcher's own
//! geometry, against an f64 reference on the weights the format crate dequantises,
//! on fresh random inputs (the seed is printed; `LLMRT_TEST_SEED` replays it). This
//! checks the kernels' decoding, indexing and sums on machines without a GPU;
//! `cuda_kernels.rs` runs the same cases on a GPU.
//!
//! Needs a C++20 compiler (`$CXX`, default `g++`); without one the test prints
//! `skipped ...` and returns.
#![cfg(feature = "cuda")]

mod common;
mod cuda_common;

use common::Rng;
use cuda_common::{matmul_shapes, Aligned, MatmulCase, MATMUL_DTYPES, MATMUL_FLOAT_ODD};
use llm_format::DType;
use llmrt::cuda::matmul;
use llmrt_cuda::emu::{self, EmuArg, EmuModule};
use llmrt_cuda::Gpu;

/// Runs one case with the activations `x_offset` bytes past a 16-byte boundary (4
/// sends every type down the byte-wise path).
fn run(m: &EmuModule, c: &MatmulCase, x_offset: usize) -> Vec<f32> {
    let mut w = Aligned::new(&c.bytes, 0);
    let mut x = Aligned::of_f32(&c.x, x_offset);
    let mut y = Aligned::of_f32(&vec![f32::NAN; c.n * c.rows], 0);
    let cfg = matmul::config(c.rows, c.n).expect("geometry");
    m.launch(
        matmul::kernel(c.dtype).expect("a kernel"),
        cfg,
        &[
            w.arg(0),
            x.arg(x_offset),
            y.arg(0),
            EmuArg::P(std::ptr::null_mut()),
            EmuArg::P(std::ptr::null_mut()),
            EmuArg::I(c.rows as i32),
            EmuArg::I(c.cols as i32),
            EmuArg::I(c.n as i32),
            EmuArg::I(c.rows as i32),
            EmuArg::I(c.rows as i32),
            EmuArg::P(std::ptr::null_mut()),
            EmuArg::I(c.n as i32),
            EmuArg::I(0),
        ],
    );
    y.f32s(c.n * c.rows)
}

#[test]
fn matmul_matches_dequantised_reference() {
    if let Err(e) = emu::compiler() {
        eprintln!("skipped matmul: no C++20 compiler ({e})");
        return;
    }
    let mut r = Rng::fresh();
    let m = EmuModule::build(&matmul::FILE, &[]).expect("emulator build");
    for dtype in MATMUL_DTYPES {
        for shape in matmul_shapes(dtype) {
            let c = MatmulCase::random(&mut r, dtype, shape);
            c.check("emulated matmul", &run(&m, &c, 0));
        }
        // Three blocks of the type's own length: 96 columns, or 768 for super-blocks.
        let c = MatmulCase::random(&mut r, dtype, (9, 3 * dtype.block_len().max(32), 3));
        c.check("emulated matmul, x off 16 bytes", &run(&m, &c, 4));
    }
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        let c = MatmulCase::random(&mut r, dtype, MATMUL_FLOAT_ODD);
        c.check("emulated matmul, odd row length", &run(&m, &c, 0));
    }
}

/// The same cases through the launchers and [`Gpu`]'s emulated buffers (the path a
/// GPU run takes, with the emulator underneath).
#[test]
fn matmul_launcher_on_the_emulator() {
    let Ok(g) = Gpu::emulated() else {
        eprintln!("skipped: no C++20 compiler");
        return;
    };
    cuda_common::matmul_cases(&g, &mut Rng::fresh());
    cuda_common::matmul_refuses_bad_shapes(&g);
}

/// One product split three ways as the fused q/k/v product stores it: the first rows
/// to their own buffer, the other two parts into cache-like buffers at the rows of
/// the activation rows' positions (one position outside them, not written), added to
/// what was there; against the plain product of the same case.
#[test]
fn matmul_parts_positions_and_accumulation() {
    let Ok(g) = Gpu::emulated() else {
        eprintln!("skipped: no C++20 compiler");
        return;
    };
    let mut r = Rng::fresh();
    for dtype in [DType::F32, DType::Q4_K] {
        let (rows, cols, n, ctx) = (24, if dtype == DType::F32 { 64 } else { 256 }, 3, 10);
        let c = MatmulCase::random(&mut r, dtype, (rows, cols, n));
        let plain = cuda_common::run_matmul(&g, &c).expect("plain");
        let (a, b) = (8, 6); // parts of 8, 6 and 10 rows
        let w = matmul::DeviceMatrix::upload(&g, dtype, &c.bytes, rows, cols).expect("w");
        let x = g.upload_f32(&c.x).expect("x");
        // Part 0 accumulates too: it starts at zero.
        let y0 = g.upload_f32(&vec![0.0; n * a]).expect("y0");
        let before: Vec<f32> = r.vec(ctx * (rows - a));
        let y1 = g.upload_f32(&before[..ctx * b]).expect("y1");
        let y2 = g.upload_f32(&before[ctx * b..]).expect("y2");
        let pos = [7i32, 2, ctx as i32];
        let mut pbuf = g.alloc(12).expect("pos");
        let pb: Vec<u8> = pos.iter().flat_map(|p| p.to_le_bytes()).collect();
        g.write(&mut pbuf, 0, &pb).expect("pos");
        let parts = [(&y0, a), (&y1, b), (&y2, rows - a - b)];
        let dst = |parts| matmul::Dest {
            parts,
            pos: Some((&pbuf, ctx)),
            accumulate: true,
        };
        let e = matmul::matmul_to(&g, &w, &x, n, dst(&parts[..2]));
        assert!(e.is_err(), "parts must cover the rows");
        matmul::matmul_to(&g, &w, &x, n, dst(&parts)).expect("split");
        let got0 = g.read_f32(&y0, 0, n * a).expect("y0");
        let got1 = g.read_f32(&y1, 0, ctx * b).expect("y1");
        let got2 = g.read_f32(&y2, 0, ctx * (rows - a - b)).expect("y2");
        let (w1, w2) = (b, rows - a - b);
        let mut want1 = before[..ctx * b].to_vec();
        let mut want2 = before[ctx * b..].to_vec();
        for (j, &p) in pos.iter().enumerate() {
            for i in 0..rows {
                let v = plain[j * rows + i];
                if i < a {
                    assert_eq!(got0[j * a + i], v, "{dtype} part 0 [{j}, {i}]");
                } else if (p as usize) < ctx && i < a + b {
                    want1[p as usize * w1 + i - a] += v;
                } else if (p as usize) < ctx {
                    want2[p as usize * w2 + i - a - b] += v;
                }
            }
        }
        assert_eq!(got1, want1, "{dtype} part 1 at the positions, added");
        assert_eq!(got2, want2, "{dtype} part 2 at the positions, added");
    }
}

#[test]
fn every_declared_kernel_is_in_its_file() {
    for f in llmrt::cuda::ALL {
        llmrt_cuda::source::check_declared(f).unwrap_or_else(|e| panic!("{e}"));
    }
    for dtype in MATMUL_DTYPES {
        let name = matmul::kernel(dtype).expect("covered");
        assert!(matmul::FILE.functions.contains(&name), "{name}");
        assert_eq!(name, format!("matmul_{}", dtype.name()));
    }
    // The tests cover every storage type of the format.
    for dtype in DType::ALL {
        assert!(
            MATMUL_DTYPES.contains(&dtype),
            "{} not tested",
            dtype.name()
        );
    }
}
