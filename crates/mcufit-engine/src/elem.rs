//! Element-wise and per-channel kernels on NHWC activations viewed as `[rows, c]`: ReLU, ReLU6,
//! add, concat, channel masks, and the deterministic per-channel reductions the backward pass needs.
//!
//! Parallel loops split the data into fixed chunks (sizes that depend on the tensor only), so a
//! reduction's partial sums, and the order they are added in, do not depend on the thread count.

use rayon::prelude::*;

use crate::simd::simd_fn;

/// Elements per task of an element-wise loop.
pub(crate) const EW_CHUNK: usize = 1 << 14;
/// Elements per partial sum of a per-channel reduction.
const RED_CHUNK: usize = 4096;

/// Rows per reduction chunk of a `[rows, c]` tensor (at least one).
pub(crate) fn chunk_rows(c: usize) -> usize {
    (RED_CHUNK / c.max(1)).max(1)
}

/// Resizes `v` to exactly `len` (no allocation once it has been that large).
pub(crate) fn ensure<T: Copy + Default>(v: &mut Vec<T>, len: usize) {
    if v.len() != len {
        v.clear();
        v.resize(len, T::default());
    }
}

/// The first `len` elements of `v`, grown if needed (scratch space; contents are garbage).
pub(crate) fn scratch(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if v.len() < len {
        v.resize(len, 0.0);
    }
    &mut v[..len]
}

/// Writes (`acc == false`) or adds (`acc == true`) the values of `src` into `dst`.
#[inline(always)]
pub(crate) fn emit(acc: bool, dst: &mut [f32], src: impl Iterator<Item = f32>) {
    if acc {
        dst.iter_mut().zip(src).for_each(|(d, v)| *d += v);
    } else {
        dst.iter_mut().zip(src).for_each(|(d, v)| *d = v);
    }
}

/// `dst (+)= src`.
pub(crate) fn copy_into(acc: bool, dst: &mut [f32], src: &[f32]) {
    if !acc && dst.len() < EW_CHUNK {
        dst.copy_from_slice(src);
        return;
    }
    dst.par_chunks_mut(EW_CHUNK).zip(src.par_chunks(EW_CHUNK)).for_each(|(d, s)| copy_chunk(acc, d, s));
}

simd_fn! {
    fn copy_chunk(acc: bool, d: &mut [f32], s: &[f32]) {
        emit(acc, d, s.iter().copied())
    }
}

/// `y = min(max(x, 0), cap)` (`cap` = infinity for ReLU).
pub(crate) fn relu_forward(x: &[f32], y: &mut [f32], cap: f32) {
    y.par_chunks_mut(EW_CHUNK).zip(x.par_chunks(EW_CHUNK)).for_each(|(y, x)| relu_chunk(x, y, cap));
}

simd_fn! {
    fn relu_chunk(x: &[f32], y: &mut [f32], cap: f32) {
        y.iter_mut().zip(x).for_each(|(y, &x)| *y = x.max(0.0).min(cap));
    }
}

/// `dx (+)= dy` where `0 < y < cap`, else 0 (`y` = the ReLU's output).
pub(crate) fn relu_backward(y: &[f32], dy: &[f32], dx: &mut [f32], acc: bool, cap: f32) {
    dx.par_chunks_mut(EW_CHUNK)
        .zip(dy.par_chunks(EW_CHUNK))
        .zip(y.par_chunks(EW_CHUNK))
        .for_each(|((dx, dy), y)| relu_backward_chunk(y, dy, dx, acc, cap));
}

simd_fn! {
    fn relu_backward_chunk(y: &[f32], dy: &[f32], dx: &mut [f32], acc: bool, cap: f32) {
        // `&`, not `&&`: a branch-free select the compiler vectorises.
        emit(acc, dx, dy.iter().zip(y).map(|(&d, &y)| if (y > 0.0) & (y < cap) { d } else { 0.0 }));
    }
}

/// `y = a + b`, or `min(max(a + b, 0), cap)` with a fused ReLU.
pub(crate) fn add_forward(a: &[f32], b: &[f32], y: &mut [f32], relu: Option<f32>) {
    y.par_chunks_mut(EW_CHUNK).zip(a.par_chunks(EW_CHUNK)).zip(b.par_chunks(EW_CHUNK)).for_each(
        |((y, a), b)| match relu {
            None => add_chunk(a, b, y),
            Some(cap) => add_relu_chunk(a, b, y, cap),
        },
    );
}

simd_fn! {
    fn add_chunk(a: &[f32], b: &[f32], y: &mut [f32]) {
        y.iter_mut().zip(a.iter().zip(b)).for_each(|(y, (&a, &b))| *y = a + b);
    }
}

simd_fn! {
    fn add_relu_chunk(a: &[f32], b: &[f32], y: &mut [f32], cap: f32) {
        y.iter_mut().zip(a.iter().zip(b)).for_each(|(y, (&a, &b))| *y = (a + b).max(0.0).min(cap));
    }
}

/// In place `y = min(max(y, 0), cap)`.
pub(crate) fn relu_inplace(y: &mut [f32], cap: f32) {
    y.par_chunks_mut(EW_CHUNK).for_each(|y| relu_inplace_chunk(y, cap));
}

simd_fn! {
    fn relu_inplace_chunk(y: &mut [f32], cap: f32) {
        y.iter_mut().for_each(|y| *y = y.max(0.0).min(cap));
    }
}

/// In place `dy = 0` where `y` (a ReLU's output) is not in `(0, cap)`.
pub(crate) fn relu_mask_inplace(y: &[f32], dy: &mut [f32], cap: f32) {
    dy.par_chunks_mut(EW_CHUNK).zip(y.par_chunks(EW_CHUNK)).for_each(|(d, y)| relu_mask_chunk(y, d, cap));
}

simd_fn! {
    fn relu_mask_chunk(y: &[f32], dy: &mut [f32], cap: f32) {
        // `&`, not `&&`: a branch-free select the compiler vectorises.
        dy.iter_mut().zip(y).for_each(|(d, &y)| *d = if (y > 0.0) & (y < cap) { *d } else { 0.0 });
    }
}

/// [`relu_mask_inplace`] and `dst (+)= dy` (the masked `dy`) in one pass.
pub(crate) fn relu_mask_copy(y: &[f32], dy: &mut [f32], dst: &mut [f32], acc: bool, cap: f32) {
    dy.par_chunks_mut(EW_CHUNK)
        .zip(y.par_chunks(EW_CHUNK))
        .zip(dst.par_chunks_mut(EW_CHUNK))
        .for_each(|((d, y), o)| relu_mask_copy_chunk(y, d, o, acc, cap));
}

simd_fn! {
    fn relu_mask_copy_chunk(y: &[f32], dy: &mut [f32], dst: &mut [f32], acc: bool, cap: f32) {
        let vals = dy.iter_mut().zip(y).map(|(d, &y)| {
            *d = if (y > 0.0) & (y < cap) { *d } else { 0.0 };
            *d
        });
        emit(acc, dst, vals);
    }
}

/// `y += a`.
pub(crate) fn add_assign(a: &[f32], y: &mut [f32]) {
    copy_into(true, y, a);
}

/// Writes input `x` (`[rows, cx]`) into channels `off..off + cx` of `y` (`[rows, cy]`).
pub(crate) fn concat_forward(x: &[f32], cx: usize, y: &mut [f32], cy: usize, off: usize) {
    let rows_per = (EW_CHUNK / cy).max(1);
    y.par_chunks_mut(rows_per * cy).zip(x.par_chunks(rows_per * cx)).for_each(|(y, x)| {
        for (yr, xr) in y.chunks_exact_mut(cy).zip(x.chunks_exact(cx)) {
            yr[off..off + cx].copy_from_slice(xr);
        }
    });
}

/// `dx (+)= dy[:, off..off + cx]`, the concat's backward for one input.
pub(crate) fn concat_backward(dy: &[f32], cy: usize, off: usize, dx: &mut [f32], cx: usize, acc: bool) {
    let rows_per = (EW_CHUNK / cy).max(1);
    dx.par_chunks_mut(rows_per * cx).zip(dy.par_chunks(rows_per * cy)).for_each(|(dx, dy)| {
        for (xr, yr) in dx.chunks_exact_mut(cx).zip(dy.chunks_exact(cy)) {
            emit(acc, xr, yr[off..off + cx].iter().copied());
        }
    });
}

/// Channel mask on a `[rows, c]` tensor: `pre = y; y *= m`.
pub(crate) fn mask_forward(y: &mut [f32], pre: &mut [f32], m: &[f32]) {
    let c = m.len();
    let rows_per = (EW_CHUNK / c).max(1);
    y.par_chunks_mut(rows_per * c).zip(pre.par_chunks_mut(rows_per * c)).for_each(|(y, pre)| mask_chunk(y, pre, m));
}

simd_fn! {
    fn mask_chunk(y: &mut [f32], pre: &mut [f32], m: &[f32]) {
        let c = m.len();
        for (yr, pr) in y.chunks_exact_mut(c).zip(pre.chunks_exact_mut(c)) {
            for ((y, p), &m) in yr.iter_mut().zip(pr.iter_mut()).zip(m) {
                *p = *y;
                *y *= m;
            }
        }
    }
}

/// Mask backward, in place: `dmask[c] += Σ dy·pre` and `dy *= m`. `part` is scratch.
pub(crate) fn mask_backward(dy: &mut [f32], pre: &[f32], m: &[f32], dmask: &mut [f32], part: &mut Vec<f32>) {
    let c = m.len();
    let cr = chunk_rows(c);
    let nch = (dy.len() / c).div_ceil(cr);
    let part = scratch(part, nch * c);
    part.par_chunks_mut(c)
        .zip(dy.par_chunks_mut(cr * c))
        .zip(pre.par_chunks(cr * c))
        .for_each(|((p, dy), pre)| mask_backward_chunk(dy, pre, m, p));
    sum_partials(part, c, 0, 1, dmask, true);
}

/// Per-channel sums of a `[rows, c]` tensor into `out` (overwritten).
pub(crate) fn col_sums(x: &[f32], c: usize, out: &mut [f32], part: &mut Vec<f32>) {
    let cr = chunk_rows(c);
    let nch = (x.len() / c).div_ceil(cr);
    let part = scratch(part, nch * c);
    part.par_chunks_mut(c).zip(x.par_chunks(cr * c)).for_each(|(p, x)| col_sums_chunk(x, p));
    sum_partials(part, c, 0, 1, out, false);
}

simd_fn! {
    fn mask_backward_chunk(dy: &mut [f32], pre: &[f32], m: &[f32], p: &mut [f32]) {
        let c = m.len();
        p.fill(0.0);
        for (dr, pr) in dy.chunks_exact_mut(c).zip(pre.chunks_exact(c)) {
            for (((p, d), &x), &m) in p.iter_mut().zip(dr.iter_mut()).zip(pr).zip(m) {
                *p += *d * x;
                *d *= m;
            }
        }
    }
}

simd_fn! {
    /// Per-channel sums of `[rows, c]` rows into `p` (`[c]`, overwritten).
    pub(crate) fn col_sums_chunk(x: &[f32], p: &mut [f32]) {
        let c = p.len();
        p.fill(0.0);
        for r in x.chunks_exact(c) {
            p.iter_mut().zip(r).for_each(|(p, &v)| *p += v);
        }
    }
}

/// Adds up partial sums in chunk order, in f64: `part` holds one record of `stride * c` values
/// per chunk; the `c` values at `slot * c` of each record are summed into `out` (written, or
/// added to it when `acc`).
pub(crate) fn sum_partials(part: &[f32], c: usize, slot: usize, stride: usize, out: &mut [f32], acc: bool) {
    sum_records(part, stride * c, slot * c, &mut out[..c], acc);
}

/// Adds up records in order, in f64: `part` holds records of `rec` values; the `out.len()`
/// values from `off` of each record are summed into `out` (written, or added to it when `acc`).
/// Each sum starts at -0.0 and takes the records in order (as `Iterator::sum` would), walking
/// each record contiguously.
pub(crate) fn sum_records(part: &[f32], rec: usize, off: usize, out: &mut [f32], acc: bool) {
    let len = out.len();
    SUMS.with(|s| {
        let mut s = s.borrow_mut();
        s.clear();
        s.resize(len, -0.0);
        for r in part.chunks_exact(rec) {
            add_f64(&mut s, &r[off..off + len]);
        }
        for (o, &v) in out.iter_mut().zip(s.iter()) {
            *o = if acc { *o + v as f32 } else { v as f32 };
        }
    })
}

thread_local! {
    /// Per-thread f64 accumulators of [`sum_records`].
    static SUMS: std::cell::RefCell<Vec<f64>> = const { std::cell::RefCell::new(Vec::new()) };
}

simd_fn! {
    /// `s += x` (widened to f64).
    fn add_f64(s: &mut [f64], x: &[f32]) {
        s.iter_mut().zip(x).for_each(|(s, &x)| *s += x as f64);
    }
}
