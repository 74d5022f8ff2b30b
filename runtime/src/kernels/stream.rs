//! Reading memory as a stream: a plain streaming read (the wrapping sum of a buffer's
//! 64-bit words with the widest loads the CPU has, which `llm-run bench` times over a
//! buffer the size of a model's weights to put a memory-bandwidth figure beside
//! generation speed), and the software prefetch generation issues ahead of each weight
//! row.

/// How far ahead (bytes) generation prefetches the weight rows: the rows are
/// contiguous, the hardware streamer stops at each 4 KiB page, and a short row is done
/// before a fetch from L3 or memory would arrive (1 and 4 KiB measured slower, PERF.md).
#[cfg(target_arch = "x86_64")]
pub(crate) const PREFETCH: usize = 2048;

/// Asks for the cache lines [`PREFETCH`] bytes past each line of `row` (the rows that
/// follow it in a matrix) into L1. Prefetches never fault, so addresses past the end
/// of the matrix are harmless.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn prefetch_ahead(row: &[u8]) {
    for off in (0..row.len()).step_by(64) {
        prefetch_line(row.as_ptr().wrapping_add(PREFETCH + off));
    }
}

/// Whether generation over float weights (F32, F16, BF16) prefetches its weight
/// streams as quantised generation does: on Intel CPUs, where it took f16 r16 tg64
/// from 94 to 110 t/s on the Sapphire Rapids guest of PERF.md (2026-12-07), and not on
/// AMD, where the same prefetch made f16 generation a third slower on the Zen 4 of
/// PERF.md (2026-12-06). `LLMRT_FLOAT_PREFETCH=1` or `=0` (std) forces it either way,
/// for measurements on other CPUs. Decided once per process.
#[cfg(target_arch = "x86_64")]
pub(crate) fn float_prefetch() -> bool {
    #[cfg(feature = "std")]
    {
        static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *ON.get_or_init(|| match std::env::var("LLMRT_FLOAT_PREFETCH").as_deref() {
            Ok("1") => true,
            Ok("0") => false,
            _ => intel(),
        })
    }
    #[cfg(not(feature = "std"))]
    intel()
}

/// CPUID's vendor string is "GenuineIntel".
#[cfg(target_arch = "x86_64")]
#[allow(unused_unsafe)] // `__cpuid` is safe from Rust 1.87 on, unsafe before
fn intel() -> bool {
    // SAFETY: CPUID is always available on x86-64.
    let r = unsafe { core::arch::x86_64::__cpuid(0) };
    // "Genu" "ineI" "ntel" in ebx, edx, ecx.
    (r.ebx, r.edx, r.ecx) == (0x756e_6547, 0x4965_6e69, 0x6c65_746e)
}

/// Asks for the cache line at `p` into L1: what [`prefetch_ahead`] does per line, for
/// kernels that interleave it with their loads (a group of `r16` rows is one long
/// stream, so each step asks for the line [`PREFETCH`] bytes past the one it reads).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn prefetch_line(p: *const u8) {
    use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    // SAFETY: SSE is part of the x86-64 baseline, and a prefetch never faults whatever
    // the address.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(p as *const i8) };
}

/// Wrapping sum of `data` read as little-endian `u64` words (a last partial word is
/// zero-padded). Same result on every path.
pub fn stream_sum(data: &[u8]) -> u64 {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512 F (checked just above).
            return unsafe { sum_avx512(data) };
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { sum_avx2(data) };
        }
    }
    sum_scalar(data)
}

/// The reference: word by word.
fn sum_scalar(data: &[u8]) -> u64 {
    let mut words = data.chunks_exact(8);
    let mut s = 0u64;
    for w in &mut words {
        s = s.wrapping_add(u64::from_le_bytes(w.try_into().expect("8 bytes")));
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        s = s.wrapping_add(u64::from_le_bytes(last));
    }
    s
}

/// 256 bytes per step into four 512-bit accumulators (four loads in flight), then
/// the tail through `sum_scalar`.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx512f")]
fn sum_avx512(data: &[u8]) -> u64 {
    use core::arch::x86_64::*;
    let mut acc = [_mm512_setzero_si512(); 4];
    let steps = data.len() / 256;
    for i in 0..steps {
        for (k, a) in acc.iter_mut().enumerate() {
            // SAFETY: i < steps, so bytes 256·i + 64·k .. + 64 lie in `data`.
            let v = unsafe { _mm512_loadu_si512(data.as_ptr().add(256 * i + 64 * k) as *const _) };
            *a = _mm512_add_epi64(*a, v);
        }
    }
    let s = _mm512_add_epi64(
        _mm512_add_epi64(acc[0], acc[1]),
        _mm512_add_epi64(acc[2], acc[3]),
    );
    (_mm512_reduce_add_epi64(s) as u64).wrapping_add(sum_scalar(&data[256 * steps..]))
}

/// 128 bytes per step into four 256-bit accumulators, then the tail.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2")]
fn sum_avx2(data: &[u8]) -> u64 {
    use core::arch::x86_64::*;
    let mut acc = [_mm256_setzero_si256(); 4];
    let steps = data.len() / 128;
    for i in 0..steps {
        for (k, a) in acc.iter_mut().enumerate() {
            // SAFETY: i < steps, so bytes 128·i + 32·k .. + 32 lie in `data`.
            let v = unsafe {
                _mm256_loadu_si256(data.as_ptr().add(128 * i + 32 * k) as *const __m256i)
            };
            *a = _mm256_add_epi64(*a, v);
        }
    }
    let s = _mm256_add_epi64(
        _mm256_add_epi64(acc[0], acc[1]),
        _mm256_add_epi64(acc[2], acc[3]),
    );
    let mut lanes = [0u64; 4];
    // SAFETY: `lanes` is 32 bytes.
    unsafe { _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, s) };
    lanes
        .iter()
        .fold(sum_scalar(&data[128 * steps..]), |a, b| a.wrapping_add(*b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn every_path_sums_like_the_reference() {
        // Odd lengths around the step sizes, random bytes (xorshift from the address of
        // a local, so runs differ), at an odd offset.
        let here = 0u8;
        let mut s = (&here as *const u8 as u64) | 1;
        let buf: Vec<u8> = (0..5000)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 32) as u8
            })
            .collect();
        for len in [0, 1, 7, 8, 9, 127, 128, 129, 255, 256, 257, 1000, 4097] {
            let d = &buf[3..3 + len];
            let want = sum_scalar(d);
            assert_eq!(stream_sum(d), want, "len {len}");
            #[cfg(all(feature = "std", target_arch = "x86_64"))]
            {
                if std::is_x86_feature_detected!("avx512f") {
                    // SAFETY: checked.
                    assert_eq!(unsafe { sum_avx512(d) }, want, "avx512 len {len}");
                }
                if std::is_x86_feature_detected!("avx2") {
                    // SAFETY: checked.
                    assert_eq!(unsafe { sum_avx2(d) }, want, "avx2 len {len}");
                }
            }
        }
        // The reference itself against u64 words summed another way.
        let d = &buf[..4096];
        let by_hand = (0..512).fold(0u64, |a, i| {
            let mut w = 0u64;
            for b in 0..8 {
                w |= (d[8 * i + b] as u64) << (8 * b);
            }
            a.wrapping_add(w)
        });
        assert_eq!(sum_scalar(d), by_hand);
    }
}
