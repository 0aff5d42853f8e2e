//! Run-time SIMD dispatch for the hand-written loops: the crate is compiled for baseline x86_64
//! (SSE2), so [`simd_fn!`] compiles a kernel's body a second and third time with AVX-512 and
//! AVX2 + FMA enabled and picks the best one the CPU has, once per call (a cached feature test).
//! Plain Rust arithmetic is never contracted into FMAs, so every version computes bit-identical
//! results: dispatch never changes a result, only its speed.

/// Defines `fn $name(args)` whose body is compiled for AVX-512, AVX2 and baseline x86_64 and
/// dispatched at run time. Write the body so that LLVM vectorises it (inner loops over channels,
/// `zip` / `chunks_exact` instead of indexing); everything it calls must be `#[inline]`able
/// (iterator adaptors, closures) to benefit.
macro_rules! simd_fn {
    ($(#[$attr:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $body:block) => {
        $(#[$attr])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn inner($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                fn v4($($arg: $ty),*) {
                    inner($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                fn v3($($arg: $ty),*) {
                    inner($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512vl") {
                    // SAFETY: the CPU supports every feature `v4` is compiled for.
                    return unsafe { v4($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU supports every feature `v3` is compiled for.
                    return unsafe { v3($($arg),*) };
                }
            }
            inner($($arg),*)
        }
    };
}

pub(crate) use simd_fn;
