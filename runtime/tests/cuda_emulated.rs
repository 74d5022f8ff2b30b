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
            EmuArg::I(c.rows as i32),
            EmuArg::I(c.cols as i32),
            EmuArg::I(c.n as i32),
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
