//! Criterion benchmarks of the CPU matrix kernels (`llmrt::kernels`).
//!
//! `matmul/<dtype>/<path>/t<threads>/<rows>x<cols>/n<n>` for every dtype, every path
//! this CPU has and 1 or 2 threads, at the matrix shapes of a stories15M-sized model
//! (dim 288, hidden 768, vocab 32000) and a stories110M-sized one (dim 768, hidden
//! 2048, vocab 32000), with random weights made here. For `n = 1` (generation) the
//! throughput is in weight bytes, so criterion prints the GB/s read from the matrix;
//! for `n = 64` (a prompt) it is in multiply-adds.
//!
//! `dispatch/*` measures what splitting one product across 2 threads costs: the
//! kernel pool against `rayon::join`, with an empty job and with a small product.
//!
//! Run a subset with a filter, e.g. `cargo bench --bench kernels -- 'matmul/q4_0/.*/n1$'`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use llm_format::quant::quantize;
use llm_format::DType;
use llmrt::kernels::pool::Pool;
use llmrt::kernels::{Cpu, KernelPath, Matrix};
use std::hint::black_box;
use std::time::Duration;

/// `[rows, cols]` of the model's matrices: q/k/v/o, w1/w3, w2, classifier.
const SHAPES: [(usize, usize); 8] = [
    (288, 288),
    (768, 288),
    (288, 768),
    (32000, 288),
    (768, 768),
    (2048, 768),
    (768, 2048),
    (32000, 768),
];

/// Deterministic pseudo-random values in [-1, 1) (xorshift; never all zero).
fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn matmul(c: &mut Criterion) {
    let paths = KernelPath::available();
    for dtype in DType::ALL {
        let mut g = c.benchmark_group(format!("matmul/{dtype}"));
        for (rows, cols) in SHAPES {
            let bytes =
                quantize(dtype, &random(rows * cols, (rows * cols) as u64)).expect("whole blocks");
            let w = Matrix::new(dtype, &bytes, rows, cols).expect("valid matrix");
            for n in [1usize, 64] {
                let x = random(n * cols, 7 + n as u64);
                let mut y = vec![0.0f32; n * rows];
                g.throughput(if n == 1 {
                    Throughput::Bytes(bytes.len() as u64)
                } else {
                    Throughput::Elements((n * rows * cols) as u64)
                });
                for &path in &paths {
                    // The scalar reference at prompt size takes seconds per call.
                    if path == KernelPath::Scalar && n > 1 {
                        continue;
                    }
                    for threads in [1, 2] {
                        let Some(mut cpu) = Cpu::with_path(threads, path) else {
                            continue;
                        };
                        let id = BenchmarkId::new(
                            format!("{path}/t{threads}/{rows}x{cols}"),
                            format!("n{n}"),
                        );
                        g.bench_function(id, |b| {
                            b.iter(|| cpu.matmul(&w, black_box(&x), n, black_box(&mut y)))
                        });
                    }
                }
            }
        }
        g.finish();
    }
}

fn dispatch(c: &mut Criterion) {
    let mut g = c.benchmark_group("dispatch");
    let pool = Pool::new(1);
    g.bench_function("empty/pool", |b| {
        b.iter(|| {
            pool.run(2, &|k| {
                black_box(k);
            })
        })
    });
    g.bench_function("empty/rayon", |b| {
        b.iter(|| rayon::join(|| black_box(0), || black_box(1)))
    });
    // A 768x288 Q8_0 product (generation size) split in two: the pool inside `Cpu`
    // against rayon::join over two one-thread contexts on the two halves of the rows.
    let (rows, cols) = (768, 288);
    let bytes = quantize(DType::Q8_0, &random(rows * cols, 3)).expect("whole blocks");
    let x = random(cols, 5);
    let mut y = vec![0.0f32; rows];
    let w = Matrix::new(DType::Q8_0, &bytes, rows, cols).expect("valid");
    let half = bytes.len() / 2;
    let top = Matrix::new(DType::Q8_0, &bytes[..half], rows / 2, cols).expect("valid");
    let bottom = Matrix::new(DType::Q8_0, &bytes[half..], rows / 2, cols).expect("valid");
    let mut one = Cpu::new(1);
    let mut two = Cpu::new(2);
    let (mut ca, mut cb) = (Cpu::new(1), Cpu::new(1));
    g.bench_function("q8_0_768x288/t1", |b| {
        b.iter(|| one.matmul(&w, &x, 1, &mut y))
    });
    g.bench_function("q8_0_768x288/t2_pool", |b| {
        b.iter(|| two.matmul(&w, &x, 1, &mut y))
    });
    g.bench_function("q8_0_768x288/t2_rayon", |b| {
        b.iter(|| {
            let (ya, yb) = y.split_at_mut(rows / 2);
            rayon::join(
                || ca.matmul(&top, &x, 1, ya),
                || cb.matmul(&bottom, &x, 1, yb),
            )
        })
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(700))
}

criterion_group! {
    name = benches;
    config = config();
    targets = dispatch, matmul
}
criterion_main!(benches);
