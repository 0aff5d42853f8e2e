//! The machine's fp32 peak, measured two ways, for "fraction of the physical limit" figures:
//!
//! 1. **FMA peak**: per thread, 12 independent chains of 512-bit (AVX-512, else 256-bit AVX2)
//!    fused multiply-adds on registers, no memory traffic: the core's FMA throughput.
//! 2. **GEMM peak**: a 1536³ f32 matrix product with the `gemm` crate (the engine's GEMM): what
//!    a cache-blocked kernel reaches on this machine.
//!
//! `cargo run --release -p mcufit-train --example peak_flops -- [threads...]` (default 1 2).
//! Prints one line per thread count: GFLOP/s (FLOP = 2 per multiply-add), best of 5.

use std::time::Instant;

/// Multiply-adds per call of [`fma_chains`] per lane: 12 chains × `ITERS`.
const ITERS: usize = 2_000_000;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn fma_chains_512() -> f32 {
    use std::arch::x86_64::*;
    let a = _mm512_set1_ps(0.999_999);
    let b = _mm512_set1_ps(1e-7);
    let mut acc = [_mm512_set1_ps(1.0); 12];
    for _ in 0..ITERS {
        for r in acc.iter_mut() {
            *r = _mm512_fmadd_ps(*r, a, b);
        }
    }
    let mut s = _mm512_setzero_ps();
    for r in acc {
        s = _mm512_add_ps(s, r);
    }
    _mm512_reduce_add_ps(s)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn fma_chains_256() -> f32 {
    use std::arch::x86_64::*;
    let a = _mm256_set1_ps(0.999_999);
    let b = _mm256_set1_ps(1e-7);
    let mut acc = [_mm256_set1_ps(1.0); 12];
    for _ in 0..ITERS {
        for r in acc.iter_mut() {
            *r = _mm256_fmadd_ps(*r, a, b);
        }
    }
    let mut out = [0f32; 8];
    let mut s = _mm256_setzero_ps();
    for r in acc {
        s = _mm256_add_ps(s, r);
    }
    // SAFETY: `out` holds exactly 8 f32, the width of a 256-bit store.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), s) };
    out.iter().sum()
}

/// FLOPs done by one call and the call itself, on the widest FMA this CPU has.
fn fma_kernel() -> (f64, fn() -> f32) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (checked just above).
            return ((ITERS * 12 * 16 * 2) as f64, || unsafe { fma_chains_512() });
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            return ((ITERS * 12 * 8 * 2) as f64, || unsafe { fma_chains_256() });
        }
    }
    ((ITERS * 12 * 2) as f64, || {
        let mut acc = [1f32; 12];
        for _ in 0..ITERS {
            for r in acc.iter_mut() {
                *r = r.mul_add(0.999_999, 1e-7);
            }
        }
        acc.iter().sum()
    })
}

fn best_of<F: FnMut() -> f64>(mut f: F) -> f64 {
    (0..5).map(|_| f()).fold(0.0, f64::max)
}

fn main() {
    let threads: Vec<usize> = {
        let v: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
        if v.is_empty() {
            vec![1, 2]
        } else {
            v
        }
    };
    let (flops, kernel) = fma_kernel();
    let n = 1536;
    let a: Vec<f32> = (0..n * n).map(|i| (i % 7) as f32 * 0.1).collect();
    let b: Vec<f32> = (0..n * n).map(|i| (i % 5) as f32 * 0.1).collect();
    let mut c = vec![0f32; n * n];
    for t in threads {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build().expect("a rayon pool");
        let fma = best_of(|| {
            let start = Instant::now();
            let sink: f32 = pool.install(|| {
                use rayon::prelude::*;
                (0..t).into_par_iter().map(|_| kernel()).sum()
            });
            std::hint::black_box(sink);
            flops * t as f64 / start.elapsed().as_secs_f64() / 1e9
        });
        let gemm = best_of(|| {
            let start = Instant::now();
            pool.install(|| {
                // SAFETY: a, b, c are n x n row-major (row stride n, column stride 1), non-overlapping.
                unsafe {
                    gemm::gemm(
                        n,
                        n,
                        n,
                        c.as_mut_ptr(),
                        1,
                        n as isize,
                        false,
                        a.as_ptr(),
                        1,
                        n as isize,
                        b.as_ptr(),
                        1,
                        n as isize,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::Rayon(t),
                    )
                }
            });
            std::hint::black_box(&c);
            2.0 * (n * n * n) as f64 / start.elapsed().as_secs_f64() / 1e9
        });
        println!(
            "{{\"threads\": {t}, \"fma_peak_gflops\": {fma:.1}, \"gemm_{n}_gflops\": {gemm:.1}, \"fma_width_bits\": {}}}",
            flops as usize / (ITERS * 12 * 2) * 32
        );
    }
}
