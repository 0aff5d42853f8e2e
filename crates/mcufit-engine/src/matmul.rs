//! The one GEMM entry point: a bounds-checked wrapper around `gemm::gemm` (f32, AVX-512 kernels
//! picked at run time). gemm splits the work over M and N only, never over the reduction K, and
//! its blocking does not depend on the thread count, so results are thread-count independent.

use gemm::{gemm, Parallelism};

/// Below this many multiply-adds a product runs on the calling thread (rayon hand-off costs more).
const PAR_WORK: usize = 1 << 16;

/// A strided matrix view: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> View<'a> {
    /// Row-major view with `cols` columns.
    pub fn rows(data: &'a [f32], cols: usize) -> Self {
        View { data, rs: cols, cs: 1 }
    }
    /// The transpose of a row-major matrix with `cols` columns.
    pub fn transposed(data: &'a [f32], cols: usize) -> Self {
        View { data, rs: 1, cs: cols }
    }
    fn covers(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }
}

/// `dst[m x n] = lhs[m x k] · rhs[k x n]`, or `+=` when `acc`. `dst` is row-major with row
/// stride `dst_rs` (column stride 1).
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(m: usize, n: usize, k: usize, dst: &mut [f32], dst_rs: usize, acc: bool, lhs: View, rhs: View) {
    let par = if m * n * k >= PAR_WORK { Parallelism::Rayon(0) } else { Parallelism::None };
    product(m, n, k, dst, dst_rs, acc, lhs, rhs, par);
}

/// [`matmul`] on the calling thread only (for products inside a parallel loop).
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_seq(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    acc: bool,
    lhs: View,
    rhs: View,
) {
    product(m, n, k, dst, dst_rs, acc, lhs, rhs, Parallelism::None);
}

#[allow(clippy::too_many_arguments)]
fn product(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    acc: bool,
    lhs: View,
    rhs: View,
    par: Parallelism,
) {
    assert!(
        lhs.covers(m, k) && rhs.covers(k, n) && (m == 0 || n == 0 || (m - 1) * dst_rs + n <= dst.len()),
        "matmul operands out of bounds: m={m} n={n} k={k}"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !acc {
            dst.chunks_mut(dst_rs).take(m).for_each(|r| r[..n].fill(0.0));
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if matches!(par, Parallelism::None) && rhs.cs == 1 && narrow::available() {
        let seg = [Seg { a: 0, b: 0, k }];
        let (a, b, c) = (lhs.data.as_ptr(), rhs.data.as_ptr(), dst.as_mut_ptr());
        if lhs.rs == 1 && m >= 16 && n <= 16 {
            // SAFETY: AVX-512F is available, and the assert above keeps every access in bounds.
            unsafe { narrow::product_tall(m, n, &seg, a, lhs.cs, b, rhs.rs, c, dst_rs, acc) };
            return;
        }
        // At 64 columns gemm's own kernel is as fast (measured); the narrow one wins below.
        if n <= 48 {
            // SAFETY: as above.
            unsafe { narrow::product(m, n, &seg, a, lhs.rs, lhs.cs, b, rhs.rs, c, dst_rs, acc) };
            return;
        }
    }
    // SAFETY: the assert above keeps every element gemm reads or writes inside the three slices,
    // and `dst` is a unique borrow, so it cannot alias `lhs` or `rhs`.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            acc,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}

/// Whether [`matmul_segs`] with this `n` runs on the narrow kernel (else gemm per segment).
pub(crate) fn narrow_ok(n: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        n <= narrow::MAX_N && narrow::available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = n;
        false
    }
}

/// One run of a segmented product: rows `b..b + k` of `rhs` against `k` columns of `lhs` that
/// start at element offset `a` (see [`matmul_segs`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Seg {
    pub a: usize,
    pub b: usize,
    pub k: usize,
}

/// A segmented product: `dst[i, j] (+)= Σ_seg Σ_{p < seg.k} lhs[seg.a + i·ars + p·acs] ·
/// rhs[(seg.b + p)·brs + j]`, `dst` row-major with row stride `crs`. A direct convolution is one:
/// a segment per kernel tap (or per image row), `lhs` the (padded) image itself, no im2col.
/// Sequential. Uses the narrow kernel where it can (`n <= 64`, AVX-512), else gemm per segment.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_segs(
    m: usize,
    n: usize,
    segs: &[Seg],
    lhs: &[f32],
    ars: usize,
    acs: usize,
    rhs: &[f32],
    brs: usize,
    dst: &mut [f32],
    crs: usize,
    acc: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!((m - 1) * crs + n <= dst.len() && n <= brs, "matmul_segs: dst out of bounds (m={m} n={n})");
    for s in segs.iter().filter(|s| s.k > 0) {
        assert!(
            s.a + (m - 1) * ars + (s.k - 1) * acs < lhs.len() && (s.b + s.k - 1) * brs + n <= rhs.len(),
            "matmul_segs: segment {s:?} out of bounds (m={m} n={n})"
        );
    }
    #[cfg(target_arch = "x86_64")]
    // Tall tiles only pay where narrow ones would have a single vector per row (n <= 16).
    let tall = ars == 1 && m >= 16 && n <= 16;
    if narrow::available() && (tall || n <= narrow::MAX_N) {
        let (a, b, c) = (lhs.as_ptr(), rhs.as_ptr(), dst.as_mut_ptr());
        // SAFETY: AVX-512F is available, and the asserts above keep every access in bounds.
        unsafe {
            if tall {
                narrow::product_tall(m, n, segs, a, acs, b, brs, c, crs, acc)
            } else {
                narrow::product(m, n, segs, a, ars, acs, b, brs, c, crs, acc)
            }
        };
        return;
    }
    let mut first = true;
    for s in segs.iter().filter(|s| s.k > 0) {
        let l = View { data: &lhs[s.a..], rs: ars, cs: acs };
        let r = View { data: &rhs[s.b * brs..], rs: brs, cs: 1 };
        product(m, n, s.k, dst, crs, acc || !first, l, r, Parallelism::None);
        first = false;
    }
    if first && !acc {
        dst.chunks_mut(crs).take(m).for_each(|r| r[..n].fill(0.0));
    }
}

/// A register-blocked product for a narrow, row-major `rhs` (`n <= 64`: the output channels of
/// the small convolutions), which gemm handles poorly: it transposes a row-major `dst`, so `n`
/// becomes its vector dimension (a 16-wide kernel for 16 channels) and it packs the long operand
/// for a single use. Here each tile of `R` dst rows keeps `R x ceil(n / 16)` accumulators in
/// registers over the whole reduction (all segments), broadcasting `lhs` (any strides, no
/// packing) against the rows of `rhs`. The reduction runs in order, then adds to `dst` (`acc`).
#[cfg(target_arch = "x86_64")]
mod narrow {
    use std::arch::x86_64::*;

    use super::Seg;

    pub const MAX_N: usize = 64;

    pub fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx512f")
    }

    /// The most rows per tile with `nv` vectors per row (accumulators + rhs + broadcast <= 32).
    fn max_rows(nv: usize) -> usize {
        [16, 14, 9, 6][nv - 1]
    }

    /// One tile: `dst[R, 16·NV] (+)= Σ_seg a[R, k] · b[k, 16·NV]`, the last vector masked.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile<const NV: usize, const R: usize>(
        segs: &[Seg],
        a: *const f32,
        ars: usize,
        acs: usize,
        b: *const f32,
        brs: usize,
        mask: __mmask16,
        c: *mut f32,
        crs: usize,
        acc: bool,
    ) {
        // SAFETY (whole body): the caller guarantees `a`, `b` and `c` cover the tile.
        unsafe {
            let mut s = [[_mm512_setzero_ps(); NV]; R];
            for seg in segs {
                let (a, b) = (a.add(seg.a), b.add(seg.b * brs));
                for p in 0..seg.k {
                    let bp = b.add(p * brs);
                    let mut bv = [_mm512_setzero_ps(); NV];
                    for (v, x) in bv.iter_mut().enumerate() {
                        let mv = if v + 1 == NV { mask } else { 0xffff };
                        *x = _mm512_maskz_loadu_ps(mv, bp.add(16 * v));
                    }
                    let ap = a.add(p * acs);
                    for (r, sr) in s.iter_mut().enumerate() {
                        let x = _mm512_set1_ps(*ap.add(r * ars));
                        for (sv, &bx) in sr.iter_mut().zip(&bv) {
                            *sv = _mm512_fmadd_ps(x, bx, *sv);
                        }
                    }
                }
            }
            for (r, sr) in s.iter().enumerate() {
                for (v, &sv) in sr.iter().enumerate() {
                    let cp = c.add(r * crs + 16 * v);
                    let mv = if v + 1 == NV { mask } else { 0xffff };
                    let out = if acc { _mm512_add_ps(_mm512_maskz_loadu_ps(mv, cp), sv) } else { sv };
                    _mm512_mask_storeu_ps(cp, mv, out);
                }
            }
        }
    }

    /// One tile of a product whose `lhs` columns are contiguous (`ars == 1`, e.g. the kernel
    /// gradient `colsᵀ · dY`): vectors run down `16·MV` dst rows (the last masked by `mask`),
    /// `J` rhs values are broadcast per step, `MV x J` accumulators.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile_tall<const MV: usize, const J: usize>(
        segs: &[Seg],
        a: *const f32,
        acs: usize,
        b: *const f32,
        brs: usize,
        mask: __mmask16,
        c: *mut f32,
        crs: usize,
        acc: bool,
    ) {
        // SAFETY (whole body): the caller guarantees `a`, `b` and `c` cover the tile (masked-off
        // lanes are neither read nor written).
        unsafe {
            let mut s = [[_mm512_setzero_ps(); J]; MV];
            for seg in segs {
                let (a, b) = (a.add(seg.a), b.add(seg.b * brs));
                for p in 0..seg.k {
                    let ap = a.add(p * acs);
                    let mut av = [_mm512_setzero_ps(); MV];
                    for (v, x) in av.iter_mut().enumerate() {
                        let mv = if v + 1 == MV { mask } else { 0xffff };
                        *x = _mm512_maskz_loadu_ps(mv, ap.add(16 * v));
                    }
                    let bp = b.add(p * brs);
                    for j in 0..J {
                        let x = _mm512_set1_ps(*bp.add(j));
                        for (sv, &ax) in s.iter_mut().zip(&av) {
                            sv[j] = _mm512_fmadd_ps(ax, x, sv[j]);
                        }
                    }
                }
            }
            let mut tmp = [0.0f32; 16];
            for (v, sv) in s.iter().enumerate() {
                let rows = if v + 1 == MV { mask.count_ones() as usize } else { 16 };
                for (j, &x) in sv.iter().enumerate() {
                    _mm512_storeu_ps(tmp.as_mut_ptr(), x);
                    for (l, &t) in tmp.iter().enumerate().take(rows) {
                        let d = c.add((16 * v + l) * crs + j);
                        *d = if acc { *d + t } else { t };
                    }
                }
            }
        }
    }

    /// `dst[m x n] (+)= Σ_seg lhs · rhs` with `lhs[i, p] = a[seg.a + i + p·acs]` (contiguous
    /// columns), any `n`: tiles of 48 rows x 8 columns.
    ///
    /// # Safety
    /// AVX-512F must be available and the operands must cover the product (checked by the caller).
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn product_tall(
        m: usize,
        n: usize,
        segs: &[Seg],
        a: *const f32,
        acs: usize,
        b: *const f32,
        brs: usize,
        c: *mut f32,
        crs: usize,
        acc: bool,
    ) {
        let mut i = 0;
        while i < m {
            let rows = (m - i).min(48);
            let mv = rows.div_ceil(16);
            let last = rows - 16 * (mv - 1);
            let mask: __mmask16 = if last == 16 { 0xffff } else { ((1u32 << last) - 1) as __mmask16 };
            let mut j = 0;
            while j < n {
                let cols = (n - j).min(8);
                let (a, b, c) = (a.wrapping_add(i), b.wrapping_add(j), c.wrapping_add(i * crs + j));
                macro_rules! go {
                    ($($mv:literal: [$($j:literal)*])*) => {
                        match (mv, cols) {
                            // SAFETY: forwarded from the caller; the tile lies inside dst.
                            $($(($mv, $j) => unsafe { tile_tall::<$mv, $j>(segs, a, acs, b, brs, mask, c, crs, acc) },)*)*
                            _ => unreachable!("tile of {mv} vectors x {cols} columns"),
                        }
                    };
                }
                go! {
                    1: [1 2 3 4 5 6 7 8]
                    2: [1 2 3 4 5 6 7 8]
                    3: [1 2 3 4 5 6 7 8]
                }
                j += cols;
            }
            i += rows;
        }
    }

    /// `dst[m x n] (+)= Σ_seg lhs · rhs` for `1 <= n <= 64` (see [`super::matmul_segs`]).
    ///
    /// # Safety
    /// AVX-512F must be available and the operands must cover the product (checked by the caller).
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn product(
        m: usize,
        n: usize,
        segs: &[Seg],
        a: *const f32,
        ars: usize,
        acs: usize,
        b: *const f32,
        brs: usize,
        c: *mut f32,
        crs: usize,
        acc: bool,
    ) {
        let nv = n.div_ceil(16);
        let mask: __mmask16 = if n.is_multiple_of(16) { 0xffff } else { ((1u32 << (n % 16)) - 1) as __mmask16 };
        // Balanced tiles: e.g. 32 rows of 16 channels as 2 x 16, not 16 + 16 + 0 or 14 + 14 + 4.
        let tiles = m.div_ceil(max_rows(nv));
        let r = m.div_ceil(tiles);
        let mut i = 0;
        while i < m {
            let rows = r.min(m - i);
            let (a, c) = (a.wrapping_add(i * ars), c.wrapping_add(i * crs));
            macro_rules! go {
                ($($nv:literal: [$($r:literal)*])*) => {
                    match (nv, rows) {
                        // SAFETY: forwarded from the caller; the tile lies inside the `m` rows.
                        $($(($nv, $r) => unsafe { tile::<$nv, $r>(segs, a, ars, acs, b, brs, mask, c, crs, acc) },)*)*
                        _ => unreachable!("tile of {rows} rows x {nv} vectors"),
                    }
                };
            }
            go! {
                1: [1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16]
                2: [1 2 3 4 5 6 7 8 9 10 11 12 13 14]
                3: [1 2 3 4 5 6 7 8 9]
                4: [1 2 3 4 5 6]
            }
            i += rows;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `matmul_seq` (the narrow kernel where the CPU has AVX-512) against a naive f64 product,
    /// over narrow and wide `n`, row tails, strided / transposed lhs and accumulation.
    #[test]
    fn matmul_seq_matches_naive() {
        let mut seed = 7u32;
        let mut rnd = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        for &(m, n, k) in &[
            (1, 1, 1),
            (13, 16, 9),
            (29, 5, 27),
            (40, 33, 70),
            (15, 64, 3),
            (31, 48, 144),
            (7, 70, 5),
            (100, 20, 30),
            (64, 9, 2),
        ] {
            for trans in [false, true] {
                for acc in [false, true] {
                    let a: Vec<f32> = (0..m * k).map(|_| rnd()).collect();
                    let b: Vec<f32> = (0..k * n).map(|_| rnd()).collect();
                    let d0: Vec<f32> = (0..m * (n + 3)).map(|_| rnd()).collect();
                    // lhs[i, p] = a[i * k + p], or a[p * m + i] (transposed storage).
                    let lhs = if trans { View::transposed(&a, m) } else { View::rows(&a, k) };
                    let at = |i: usize, p: usize| if trans { a[p * m + i] } else { a[i * k + p] };
                    let mut d = d0.clone();
                    matmul_seq(m, n, k, &mut d, n + 3, acc, lhs, View::rows(&b, n));
                    for i in 0..m {
                        for j in 0..n + 3 {
                            let got = d[i * (n + 3) + j];
                            if j >= n {
                                assert_eq!(got, d0[i * (n + 3) + j], "padding column written");
                                continue;
                            }
                            let mut e: f64 = (0..k).map(|p| at(i, p) as f64 * b[p * n + j] as f64).sum();
                            if acc {
                                e += d0[i * (n + 3) + j] as f64;
                            }
                            assert!(
                                (got as f64 - e).abs() < 1e-4,
                                "m={m} n={n} k={k} trans={trans} acc={acc}: {got} vs {e}"
                            );
                        }
                    }
                }
            }
        }
    }
}
