//! The emulator's IEEE half (`cuda_emu.h`) against the `half` crate: all 65536 bit
//! patterns widened to f32 and narrowed back, and a few thousand random f32 (normal,
//! subnormal, overflowing and halfway cases) narrowed, bit-exact except NaN payloads;
//! plus `__shfl_down_sync` and a variant's macros. Needs a C++20 compiler; without one it
//! prints `skipped ...` and returns.
#![cfg(feature = "emu")]

use cudarc::driver::LaunchConfig;
use half::f16;
use llmrt_cuda::emu::{compiler, cptr, ptr, EmuArg, EmuModule};
use llmrt_cuda::source::check_declared;
use llmrt_cuda::KernelFile;

static FILE: KernelFile = KernelFile {
    name: "half_test",
    source: r#"#include <cuda_fp16.h>
extern "C" __global__ void half_to_float(float* out, const unsigned short* in, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = __half2float(__ushort_as_half(in[i]));
}

extern "C" __global__ void float_to_half(unsigned short* out, unsigned short* out2, const float* in, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        out[i] = __half_as_ushort(__float2half_rn(in[i]));
        __half h = __float2half(in[i]);
        out2[i] = __half_as_ushort(h);
    }
}

extern "C" __global__ void shfl_down(float* out, const float* in, int delta) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    out[i] = __shfl_down_sync(FULL_MASK, in[i], delta) * SCALE;
}
"#,
    functions: &["half_to_float", "float_to_half", "shfl_down"],
    hot: false,
    prelude: "#include <cuda_bf16.h>\n#define FULL_MASK 0xffffffffu\n",
};

fn config(n: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n.div_ceil(256) as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// xorshift64*: reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn module(scale: i32) -> Option<EmuModule> {
    if let Err(e) = compiler() {
        eprintln!("skipped (no C++20 compiler: {e})");
        return None;
    }
    check_declared(&FILE).unwrap();
    let variant: &'static [(&str, i32)] = match scale {
        1 => &[("SCALE", 1)],
        _ => &[("SCALE", 3)],
    };
    Some(EmuModule::build(&FILE, variant).expect("emulator build"))
}

#[test]
fn half_conversions_match_the_half_crate() {
    let Some(emu) = module(1) else { return };
    let all: Vec<u16> = (0..=u16::MAX).collect();
    let n = all.len();
    let mut wide = vec![0f32; n];
    emu.launch(
        "half_to_float",
        config(n),
        &[ptr(&mut wide), cptr(&all), EmuArg::I(n as i32)],
    );
    for (&h, &got) in all.iter().zip(&wide) {
        let want = f16::from_bits(h).to_f32();
        if want.is_nan() {
            assert!(got.is_nan(), "{h:#06x}: {got}");
            assert_eq!(got.is_sign_negative(), want.is_sign_negative(), "{h:#06x}");
        } else {
            assert_eq!(got.to_bits(), want.to_bits(), "{h:#06x}: {got} vs {want}");
        }
    }

    // Narrowing: every half value back (exact), then random floats across the range.
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let mut floats: Vec<f32> = wide.clone();
    for _ in 0..4000 {
        // Exponents from deep subnormal (2^-30) to past the overflow (2^17).
        let exp = (r.next() % 48) as i32 - 30;
        let mant = 1.0 + (r.next() >> 40) as f32 / (1u64 << 24) as f32;
        let sign = if r.next() & 1 == 1 { -1.0 } else { 1.0 };
        floats.push(sign * mant * 2f32.powi(exp));
        // Exactly halfway between two neighbouring halves, including subnormal ones.
        let h = f16::from_bits((r.next() % 0x7c00) as u16);
        let next = f16::from_bits(h.to_bits() + 1);
        floats.push((h.to_f32() as f64 / 2.0 + next.to_f32() as f64 / 2.0) as f32);
    }
    floats.extend([
        0.0,
        -0.0,
        65504.0,
        65519.99,
        65520.0,
        1e10,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        5.960_464_5e-8,
        2.980_232_2e-8,
        2.980_233e-8,
        f32::MIN_POSITIVE,
    ]);
    let n = floats.len();
    let (mut narrow, mut narrow2) = (vec![0u16; n], vec![0u16; n]);
    emu.launch(
        "float_to_half",
        config(n),
        &[
            ptr(&mut narrow),
            ptr(&mut narrow2),
            cptr(&floats),
            EmuArg::I(n as i32),
        ],
    );
    assert_eq!(narrow, narrow2, "__float2half and __float2half_rn differ");
    for (&x, &got) in floats.iter().zip(&narrow) {
        let want = f16::from_f32(x);
        let got = f16::from_bits(got);
        if want.is_nan() {
            assert!(got.is_nan(), "{x:e}: {got:?}");
            assert_eq!(got.is_sign_negative(), want.is_sign_negative(), "{x:e}");
        } else {
            assert_eq!(got.to_bits(), want.to_bits(), "{x:e}: {got} vs {want}");
        }
    }
}

#[test]
fn shfl_down_reads_lane_plus_delta_within_the_warp() {
    let Some(emu) = module(3) else { return };
    let n = 64;
    let input: Vec<f32> = (0..n).map(|i| i as f32).collect();
    for delta in [1, 5, 16, 31] {
        let mut out = vec![0f32; n];
        emu.launch(
            "shfl_down",
            LaunchConfig {
                grid_dim: (1, 1, 1),
                block_dim: (n as u32, 1, 1),
                shared_mem_bytes: 0,
            },
            &[ptr(&mut out), cptr(&input), EmuArg::I(delta)],
        );
        for (i, &got) in out.iter().enumerate() {
            let lane = i % 32;
            let src = if lane + (delta as usize) < 32 {
                i + delta as usize
            } else {
                i
            };
            assert_eq!(got, 3.0 * src as f32, "delta {delta} thread {i}");
        }
    }
}
