//! Batch norm on a `[rows, c]` NHWC tensor (rows = N·H·W), with the channel mask of a BN mask
//! site fused in (`y = (x̂·γ + β)·m`). Statistics use fixed row chunks summed in order (f64), so
//! they do not depend on the thread count.

use rayon::prelude::*;

use crate::conv::Window;
use crate::elem::{chunk_rows, scratch, sum_partials};
use crate::simd::simd_fn;

/// What a training-mode BN keeps for its backward and for `batch_stats`, `[c]` each.
#[derive(Debug, Default)]
pub(crate) struct BnStats {
    pub mean: Vec<f32>,
    /// Biased batch variance.
    pub var: Vec<f32>,
    pub inv_std: Vec<f32>,
    /// Per-channel coefficients (scratch of 3·c).
    pub coef: Vec<f32>,
    /// Tiled copies of the coefficients the loops read (scratch).
    pub tiles: Vec<f32>,
    /// Statistics partials computed by the producer (a convolution) as it wrote the BN's input,
    /// one [`producer_stats`] record per chunk of `pre_rows` rows; `pre_rows == 0`: none (the
    /// BN computes its statistics itself). Set by each training forward of the producer, taken
    /// by the BN's.
    pub pre: Vec<f32>,
    pub pre_rows: usize,
}

/// Floats of one tiled coefficient vector for `c` channels.
pub(crate) fn tile_len(c: usize) -> usize {
    tile_reps(c) * c
}

/// Floats of one [`producer_stats`] record for `c` channels.
pub(crate) fn stats_record_len(c: usize) -> usize {
    3 * tile_reps(c) * c
}

/// The statistics partials of one chunk of `[rows, c]` rows (`y`, just written by the producer
/// and still in cache), into a record of [`stats_record_len`] floats: the chunk's shift (its
/// first row) tiled, then `Σ(y - shift)` and `Σ(y - shift)²` (their first `c` values).
pub(crate) fn producer_stats(y: &[f32], c: usize, p: &mut [f32]) {
    let t = tile_reps(c) * c;
    let (sh, rest) = p.split_at_mut(t);
    for d in sh.chunks_exact_mut(c) {
        d.copy_from_slice(&y[..c]);
    }
    stats_chunk(y, sh, rest);
    fold(rest, c, 2);
}

/// A ReLU fused onto a batch norm's output: `y = min(max(v, 0), cap)`; `None`: no ReLU.
pub(crate) type Relu = Option<f32>;

/// Rows per tile: the loops run over tiles of `reps` rows with per-channel coefficients repeated
/// `reps` times, so that a narrow channel count (11, 38, ...) still fills whole SIMD vectors, and
/// at least 64 floats (a few vectors per iteration of the row loop).
fn tile_reps(c: usize) -> usize {
    if c >= 64 {
        1
    } else {
        // lcm(c, 16), repeated up to >= 64 floats: a few vectors per row of the tile.
        let l = c / gcd(c, 16) * 16;
        64usize.div_ceil(l) * l / c
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Per-channel coefficient vectors tiled `reps` times, laid out one after the other in `buf`.
fn tiles<'a>(buf: &'a mut Vec<f32>, reps: usize, srcs: &[&[f32]]) -> Vec<&'a [f32]> {
    let c = srcs.first().map_or(0, |s| s.len());
    let t = c * reps;
    let all = scratch(buf, t * srcs.len());
    for (dst, src) in all.chunks_exact_mut(t).zip(srcs) {
        for d in dst.chunks_exact_mut(c) {
            d.copy_from_slice(src);
        }
    }
    all.chunks_exact(t).collect()
}

/// Folds the `k` tiled sums of a record (`k` runs of `t = reps·c`) onto their first `c` values.
#[inline(always)]
fn fold(p: &mut [f32], c: usize, k: usize) {
    let t = p.len() / k;
    for s in 0..k {
        let run = &mut p[s * t..(s + 1) * t];
        let (first, rest) = run.split_at_mut(c);
        for r in rest.chunks_exact(c) {
            first.iter_mut().zip(r).for_each(|(a, &b)| *a += b);
        }
    }
}

/// Training forward: batch mean and biased variance over the rows, `x̂ = (x - mean) / sqrt(var
/// + eps)`, `y = relu((x̂·gamma + beta)·mask)` (x̂ is not stored: the backward recomputes it).
/// `y == None`: only the statistics and the coefficients (`st.coef[..2·c]` = `γ·m`, `β·m`); the
/// consumer computes the output with [`act`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn bn_train_forward(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    mask: Option<&[f32]>,
    eps: f32,
    relu: Relu,
    y: Option<&mut [f32]>,
    st: &mut BnStats,
    part: &mut Vec<f32>,
) {
    let c = gamma.len();
    let rows = x.len() / c;
    let cr = chunk_rows(c);
    let reps = tile_reps(c);
    let m = rows as f64;
    if st.pre_rows > 0 {
        // Partials of the producer's chunks (each shifted by its own first row): re-centred on
        // the first row of the batch and summed in chunk order (f64).
        let (rec, t) = (stats_record_len(c), reps * c);
        let pr = std::mem::take(&mut st.pre_rows);
        for ch in 0..c {
            let s0 = st.pre[ch] as f64;
            let (mut s1, mut s2) = (0.0f64, 0.0f64);
            for (k, r) in st.pre[..rows.div_ceil(pr) * rec].chunks_exact(rec).enumerate() {
                let nk = (rows - k * pr).min(pr) as f64;
                let dk = r[ch] as f64 - s0;
                let (a, b) = (r[t + ch] as f64, r[2 * t + ch] as f64);
                s1 += a + nk * dk;
                s2 += b + 2.0 * dk * a + nk * dk * dk;
            }
            let d = s1 / m;
            let v = (s2 / m - d * d).max(0.0);
            st.mean[ch] = (s0 + d) as f32;
            st.var[ch] = v as f32;
            st.inv_std[ch] = (1.0 / (v + eps as f64).sqrt()) as f32;
        }
    } else {
        let nch = rows.div_ceil(cr);
        let t = reps * c;
        // Sums shifted by the first row keep E[x²] - E[x]² accurate when |mean| >> std.
        let shift = &x[..c];
        let shift_t = tiles(&mut st.tiles, reps, &[shift])[0];
        let part = scratch(part, nch * 2 * t);
        part.par_chunks_mut(2 * t).zip(x.par_chunks(cr * c)).for_each(|(p, x)| {
            stats_chunk(x, shift_t, p);
            fold(p, c, 2);
        });
        let (mean, var, inv_std) = (&mut st.mean, &mut st.var, &mut st.inv_std);
        sum_partials(part, c, 0, 2 * reps, mean, false);
        sum_partials(part, c, reps, 2 * reps, var, false);
        for ch in 0..c {
            let d = mean[ch] as f64 / m;
            let v = (var[ch] as f64 / m - d * d).max(0.0);
            mean[ch] = (shift[ch] as f64 + d) as f32;
            var[ch] = v as f32;
            inv_std[ch] = (1.0 / (v + eps as f64).sqrt()) as f32;
        }
    }
    let (ga, gb) = st.coef[..2 * c].split_at_mut(c);
    affine_coefs(gamma, beta, mask, ga, gb);
    let tl = tiles(&mut st.tiles, reps, &[&st.mean, &st.inv_std, ga, gb]);
    // Without `y` the consumer applies the BN (see `act`), from the stats and `coef[..2·c]`, or
    // the tiles `st.tiles[..4·t]` (`[mean, inv_std, ga, gb]`).
    let Some(y) = y else { return };
    let (mean, inv_std, ga, gb) = (tl[0], tl[1], tl[2], tl[3]);
    y.par_chunks_mut(cr * c)
        .zip(x.par_chunks(cr * c))
        .for_each(|(y, x)| normalize_chunk(x, mean, inv_std, ga, gb, relu.is_some(), relu.unwrap_or(0.0), y));
}

simd_fn! {
    /// Tiled `Σ(x - shift)` and `Σ(x - shift)²` of `[rows, c]` rows into `p` (`[2, t]`,
    /// `t = shift.len()`, a whole number of rows).
    fn stats_chunk(x: &[f32], shift: &[f32], p: &mut [f32]) {
        let t = shift.len();
        p.fill(0.0);
        let (s1, s2) = p.split_at_mut(t);
        for r in x.chunks(t) {
            for (((a, b), &v), &k) in s1.iter_mut().zip(s2.iter_mut()).zip(r).zip(shift) {
                let d = v - k;
                *a += d;
                *b += d * d;
            }
        }
    }
}

/// `y = relu(bn(xa) + xb)` (`tb == None`) or `relu(bn(xa) + bn'(xb))`: an add (with its fused
/// ReLU) of training-mode BN outputs that are never stored, computed from the BNs' inputs and
/// their tiled coefficients `ta`, `tb` (`st.tiles[..4·t]` of a BN forward without output), with
/// the operations of [`normalize_chunk`] and the add (so bit for bit the unfused result).
#[allow(clippy::too_many_arguments)]
pub(crate) fn add_bn_forward(
    xa: &[f32],
    ta: &[f32],
    xb: &[f32],
    tb: Option<&[f32]>,
    c: usize,
    relu: Relu,
    y: &mut [f32],
) {
    let cr = chunk_rows(c);
    let (has, cap) = (relu.is_some(), relu.unwrap_or(0.0));
    y.par_chunks_mut(cr * c).zip(xa.par_chunks(cr * c)).zip(xb.par_chunks(cr * c)).for_each(|((y, a), b)| match tb {
        None => add_bn_chunk(a, ta, b, has, cap, y),
        Some(tb) => add_bn2_chunk(a, ta, b, tb, has, cap, y),
    });
}

simd_fn! {
    /// `y = relu(bn(xa) + xb)` (tiled coefficients `ta` = `[mean, inv_std, ga, gb]`).
    fn add_bn_chunk(xa: &[f32], ta: &[f32], xb: &[f32], relu: bool, cap: f32, y: &mut [f32]) {
        let t = ta.len() / 4;
        let (mu, is, ga, gb) = (&ta[..t], &ta[t..2 * t], &ta[2 * t..3 * t], &ta[3 * t..]);
        for ((yr, ar), br) in y.chunks_mut(t).zip(xa.chunks(t)).zip(xb.chunks(t)) {
            let vals = yr.iter_mut().zip(ar.iter().zip(br)).zip(mu.iter().zip(is).zip(ga.iter().zip(gb)));
            if relu {
                for ((y, (&a, &b)), ((&mu, &is), (&ga, &gb))) in vals {
                    *y = (act(a, mu, is, ga, gb, false, 0.0) + b).max(0.0).min(cap);
                }
            } else {
                for ((y, (&a, &b)), ((&mu, &is), (&ga, &gb))) in vals {
                    *y = act(a, mu, is, ga, gb, false, 0.0) + b;
                }
            }
        }
    }
}

simd_fn! {
    /// `y = relu(bn(xa) + bn'(xb))` (tiled coefficients `ta`, `tb`).
    fn add_bn2_chunk(xa: &[f32], ta: &[f32], xb: &[f32], tb: &[f32], relu: bool, cap: f32, y: &mut [f32]) {
        let t = ta.len() / 4;
        let (mu, is, ga, gb) = (&ta[..t], &ta[t..2 * t], &ta[2 * t..3 * t], &ta[3 * t..]);
        let (mu2, is2, ga2, gb2) = (&tb[..t], &tb[t..2 * t], &tb[2 * t..3 * t], &tb[3 * t..]);
        for ((yr, ar), br) in y.chunks_mut(t).zip(xa.chunks(t)).zip(xb.chunks(t)) {
            let ca = mu.iter().zip(is).zip(ga.iter().zip(gb));
            let cb = mu2.iter().zip(is2).zip(ga2.iter().zip(gb2));
            for ((y, (&a, &b)), (((&m, &s), (&g, &h)), ((&m2, &s2), (&g2, &h2)))) in
                yr.iter_mut().zip(ar.iter().zip(br)).zip(ca.zip(cb))
            {
                let v = act(a, m, s, g, h, false, 0.0) + act(b, m2, s2, g2, h2, false, 0.0);
                *y = if relu { v.max(0.0).min(cap) } else { v };
            }
        }
    }
}

/// One output value of a training-mode BN (+ ReLU), exactly as [`normalize_chunk`] computes it.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn act(x: f32, mu: f32, is: f32, a: f32, b: f32, relu: bool, cap: f32) -> f32 {
    let z = ((x - mu) * is) * a + b;
    if relu {
        z.max(0.0).min(cap)
    } else {
        z
    }
}

simd_fn! {
    /// `y = ((x - mean)·inv_std)·a + b` (tiled coefficients), clamped to `[0, cap]` when `relu`.
    fn normalize_chunk(x: &[f32], mean: &[f32], inv_std: &[f32], ga: &[f32], gb: &[f32], relu: bool, cap: f32, y: &mut [f32]) {
        let t = mean.len();
        for (yr, xr) in y.chunks_mut(t).zip(x.chunks(t)) {
            let vals = yr.iter_mut().zip(xr).zip(mean.iter().zip(inv_std)).zip(ga.iter().zip(gb));
            if relu {
                for (((y, &x), (&mu, &is)), (&a, &b)) in vals {
                    *y = (((x - mu) * is) * a + b).max(0.0).min(cap);
                }
            } else {
                for (((y, &x), (&mu, &is)), (&a, &b)) in vals {
                    *y = ((x - mu) * is) * a + b;
                }
            }
        }
    }
}

simd_fn! {
    /// `y = x·a + b` (tiled coefficients), clamped to `[0, cap]` when `relu`.
    fn affine_chunk(x: &[f32], a: &[f32], b: &[f32], relu: bool, cap: f32, y: &mut [f32]) {
        let t = a.len();
        for (yr, xr) in y.chunks_mut(t).zip(x.chunks(t)) {
            let vals = yr.iter_mut().zip(xr).zip(a.iter().zip(b));
            if relu {
                for ((y, &x), (&a, &b)) in vals {
                    *y = (x * a + b).max(0.0).min(cap);
                }
            } else {
                for ((y, &x), (&a, &b)) in vals {
                    *y = x * a + b;
                }
            }
        }
    }
}

simd_fn! {
    /// In place `y = y·a + b` (tiled coefficients), clamped to `[0, cap]` when `relu`: an
    /// evaluation-mode BN folded into the write of the convolution before it.
    pub(crate) fn affine_inplace(y: &mut [f32], a: &[f32], b: &[f32], relu: bool, cap: f32) {
        let t = a.len();
        for yr in y.chunks_mut(t) {
            let vals = yr.iter_mut().zip(a.iter().zip(b));
            if relu {
                for (y, (&a, &b)) in vals {
                    *y = (*y * a + b).max(0.0).min(cap);
                }
            } else {
                for (y, (&a, &b)) in vals {
                    *y = *y * a + b;
                }
            }
        }
    }
}

/// The running-statistics affine map of an evaluation-mode BN, `y = x·a + b` with `a = γ·m /
/// sqrt(rv + eps)`, `b = (β - rm·γ / sqrt(rv + eps))·m`: `coef` gets `[a, b]` (`2·c`), `tiles`
/// the two tiled for the loops; returns the tiled `(a, b)`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn eval_coefs<'a>(
    gamma: &[f32],
    beta: &[f32],
    rmean: &[f32],
    rvar: &[f32],
    mask: Option<&[f32]>,
    eps: f32,
    coef: &mut [f32],
    tiles_buf: &'a mut Vec<f32>,
) -> (&'a [f32], &'a [f32]) {
    let c = gamma.len();
    let (a, b) = coef[..2 * c].split_at_mut(c);
    for ch in 0..c {
        let mk = mask.map_or(1.0, |m| m[ch]);
        let s = gamma[ch] / (rvar[ch] + eps).sqrt();
        a[ch] = s * mk;
        b[ch] = (beta[ch] - rmean[ch] * s) * mk;
    }
    let tl = tiles(tiles_buf, tile_reps(c), &[a, b]);
    (tl[0], tl[1])
}

/// Evaluation forward with running statistics: `y = relu(((x - rm) / sqrt(rv + eps)·gamma +
/// beta)·mask)`, one pass of `y = x·a + b`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn bn_eval_forward(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    rmean: &[f32],
    rvar: &[f32],
    mask: Option<&[f32]>,
    eps: f32,
    relu: Relu,
    y: &mut [f32],
    st: &mut BnStats,
) {
    let c = gamma.len();
    let (a, b) = eval_coefs(gamma, beta, rmean, rvar, mask, eps, &mut st.coef, &mut st.tiles);
    let rows_per = chunk_rows(c);
    y.par_chunks_mut(rows_per * c)
        .zip(x.par_chunks(rows_per * c))
        .for_each(|(y, x)| affine_chunk(x, a, b, relu.is_some(), relu.unwrap_or(0.0), y));
}

/// Gradients of one training-mode BN (with its fused mask and ReLU): `dgamma`, `dbeta`
/// (written), `dmask` (added to), and `dx` when given (written, or added to when `acc`). `dy` is
/// the gradient of the output (after the mask and the ReLU); `x` is the BN's input: x̂ and the
/// ReLU's input are recomputed from it with the stats of the forward, bit for bit (the same
/// operations), which saves reading x̂ and the output.
#[allow(clippy::too_many_arguments)]
pub(crate) fn bn_backward(
    dy: Dy,
    x: &[f32],
    relu: Relu,
    gamma: &[f32],
    beta: &[f32],
    mask: Option<(&[f32], &mut [f32])>,
    st: &mut BnStats,
    dgamma: &mut [f32],
    dbeta: &mut [f32],
    dx: Option<(&mut [f32], bool)>,
    defer: bool,
    part: &mut Vec<f32>,
) {
    let c = gamma.len();
    let rows = x.len() / c;
    let cr = chunk_rows(c);
    let reps = tile_reps(c);
    let t = reps * c;
    let part = match dy {
        Dy::Full(_) => scratch(part, rows.div_ceil(cr) * 3 * t),
        // One record per output row of the pooling.
        Dy::Pooled(g, ..) => scratch(part, rows / (g.h * g.w) * g.oh * 3 * t),
    };
    let m = mask.as_ref().map(|(m, _)| *m);
    let (cap, has_relu) = (relu.unwrap_or(0.0), relu.is_some());
    {
        // Without a mask the third slot is unused (gamma stands in).
        let mk = m.unwrap_or(gamma);
        let (ga, gb) = st.coef[..2 * c].split_at_mut(c);
        affine_coefs(gamma, beta, m, ga, gb);
        let tl = tiles(&mut st.tiles, reps, &[&st.mean, &st.inv_std, mk, gamma, beta, ga, gb]);
        let fwd = Fwd { mean: tl[0], inv_std: tl[1], ga: tl[5], gb: tl[6], relu: has_relu, cap };
        // Pass 1: per chunk Σg, Σg·x̂ (g = dy·relu'·m, the gradient of the unmasked output) and
        // Σ dy·relu'·y_pre (the mask's gradient).
        let sums = |p: &mut [f32], dy: &[f32], x: &[f32]| {
            match m {
                None => bwd_sums_chunk(dy, x, &fwd, p),
                Some(_) => bwd_sums_masked_chunk(dy, x, &fwd, tl[2], tl[3], tl[4], p),
            }
            fold(p, c, 3);
        };
        match dy {
            Dy::Full(dy) => part
                .par_chunks_mut(3 * t)
                .zip(dy.par_chunks(cr * c))
                .zip(x.par_chunks(cr * c))
                .for_each(|((p, dy), x)| sums(p, dy, x)),
            Dy::Pooled(g, dyp, arg) => {
                let (ii, oi) = (g.in_image(), g.oh * g.ow * c);
                part.par_chunks_mut(g.oh * 3 * t).enumerate().for_each(|(img, pr)| {
                    with_band(g, |band| {
                        for (oy, p) in pr.chunks_exact_mut(3 * t).enumerate() {
                            let (x, band) = pooled_band(
                                g,
                                oy,
                                &x[img * ii..(img + 1) * ii],
                                &dyp[img * oi..],
                                &arg[img * oi..],
                                band,
                            );
                            sums(p, band, x);
                        }
                    })
                });
            }
        }
    }
    sum_partials(part, c, 0, 3 * reps, dbeta, false);
    sum_partials(part, c, reps, 3 * reps, dgamma, false);
    if let Some((_, dmask)) = mask {
        sum_partials(part, c, 2 * reps, 3 * reps, dmask, true);
    }
    if dx.is_none() && !defer {
        return;
    }
    // Pass 2: dx = γ·inv_std·(g - Σg/M - x̂·Σg·x̂/M) = a·dy·relu' + b·x̂ + k.
    let inv_m = 1.0 / rows as f32;
    let (a, rest) = st.coef[..5 * c].split_at_mut(c);
    let (b, rest) = rest.split_at_mut(c);
    let (k, rest) = rest.split_at_mut(c);
    let (ga, gb) = rest.split_at_mut(c);
    for ch in 0..c {
        let s = gamma[ch] * st.inv_std[ch];
        a[ch] = s * m.map_or(1.0, |m| m[ch]);
        b[ch] = -s * dgamma[ch] * inv_m;
        k[ch] = -s * dbeta[ch] * inv_m;
    }
    affine_coefs(gamma, beta, m, ga, gb);
    let tl = tiles(&mut st.tiles, reps, &[&st.mean, &st.inv_std, a, b, k, ga, gb]);
    let fwd = Fwd { mean: tl[0], inv_std: tl[1], ga: tl[5], gb: tl[6], relu: has_relu, cap };
    let (a, b, k) = (tl[2], tl[3], tl[4]);
    // Deferred: the consumer of dx computes it image by image with `bn_dx_image`.
    let Some((dx, acc)) = dx else { return };
    match dy {
        Dy::Full(dy) => dx
            .par_chunks_mut(cr * c)
            .zip(dy.par_chunks(cr * c))
            .zip(x.par_chunks(cr * c))
            .for_each(|((dx, dy), x)| bwd_dx_chunk(dy, x, &fwd, a, b, k, acc, dx)),
        Dy::Pooled(g, dyp, arg) => {
            let (ii, oi) = (g.in_image(), g.oh * g.ow * c);
            dx.par_chunks_mut(ii).zip(x.par_chunks(ii)).enumerate().for_each(|(img, (dx, x))| {
                with_band(g, |band| {
                    for oy in 0..g.oh {
                        let (lo, hi) = band_rows(g, oy);
                        let (xb, band) = pooled_band(g, oy, x, &dyp[img * oi..], &arg[img * oi..], band);
                        bwd_dx_chunk(band, xb, &fwd, a, b, k, acc, &mut dx[lo * g.w * c..hi * g.w * c]);
                    }
                })
            });
        }
    }
}

/// Image `img` of the input gradient of a BN whose backward was deferred (`defer`, see
/// [`bn_backward`], whose tiled pass-2 coefficients `st.tiles` still holds): written to `dx`
/// (`rows_img · c` floats), with the same operations as `bn_backward`'s pass 2. `x`: the BN's
/// whole input; `dy` its output gradient.
pub(crate) fn bn_dx_image(st: &BnStats, relu: Relu, dy: Dy, x: &[f32], img: usize, dx: &mut [f32]) {
    let c = st.mean.len();
    let t = tile_reps(c) * c;
    let tl = |i: usize| &st.tiles[i * t..(i + 1) * t];
    let fwd = Fwd { mean: tl(0), inv_std: tl(1), ga: tl(5), gb: tl(6), relu: relu.is_some(), cap: relu.unwrap_or(0.0) };
    let (a, b, k) = (tl(2), tl(3), tl(4));
    let ii = dx.len();
    let x = &x[img * ii..(img + 1) * ii];
    match dy {
        Dy::Full(dy) => bwd_dx_chunk(&dy[img * ii..(img + 1) * ii], x, &fwd, a, b, k, false, dx),
        Dy::Pooled(g, dyp, arg) => {
            let oi = g.oh * g.ow * c;
            with_band(g, |band| {
                for oy in 0..g.oh {
                    let (lo, hi) = band_rows(g, oy);
                    let (xb, band) = pooled_band(g, oy, x, &dyp[img * oi..], &arg[img * oi..], band);
                    bwd_dx_chunk(band, xb, &fwd, a, b, k, false, &mut dx[lo * g.w * c..hi * g.w * c]);
                }
            })
        }
    }
}

/// The output gradient of a BN: the whole tensor, or, for a BN whose only consumer is a max
/// pooling whose windows tile the input ([`Window::tiles`]), that pooling's output gradient and
/// winners (`arg`, see [`crate::pool::max_forward`]): the BN's gradient is expanded one band of
/// input rows (one output row of the pooling) at a time into a small scratch, instead of being
/// written whole by the pooling's backward and read twice.
#[derive(Clone, Copy)]
pub(crate) enum Dy<'a> {
    Full(&'a [f32]),
    Pooled(&'a Window, &'a [f32], &'a [u32]),
}

thread_local! {
    /// Per-thread scratch of one band of a pooled BN's output gradient.
    static BAND: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's band scratch (`kh` input rows of the pooling `g`).
fn with_band(g: &Window, f: impl FnOnce(&mut [f32])) {
    BAND.with(|b| {
        let mut v = b.borrow_mut();
        let len = g.kh * g.w * g.c;
        if v.len() < len {
            v.resize(len, 0.0);
        }
        f(&mut v[..len])
    })
}

/// The input rows `lo..hi` under output row `oy` of a pooling whose windows tile the input.
fn band_rows(g: &Window, oy: usize) -> (usize, usize) {
    let (ky0, ky1, iy0) = g.rows(oy);
    (iy0, iy0 + ky1 - ky0)
}

/// The band of output row `oy` of a tiling max pooling of one image: the image's input rows
/// under it (`img`: the image) and the BN's output gradient there, expanded into `band` from the
/// pooling's `dy` and winners `arg` (both from the image's first output pixel on).
fn pooled_band<'a, 'b>(
    g: &Window,
    oy: usize,
    img: &'a [f32],
    dy: &[f32],
    arg: &[u32],
    band: &'b mut [f32],
) -> (&'a [f32], &'b [f32]) {
    let (lo, hi) = band_rows(g, oy);
    let row = g.ow * g.c;
    let band = &mut band[..(hi - lo) * g.w * g.c];
    crate::pool::expand_row(g, oy, &dy[oy * row..(oy + 1) * row], &arg[oy * row..(oy + 1) * row], band);
    (&img[lo * g.w * g.c..hi * g.w * g.c], band)
}

/// `ga = gamma·mask`, `gb = beta·mask`: the affine part of the forward, with the mask folded in.
fn affine_coefs(gamma: &[f32], beta: &[f32], mask: Option<&[f32]>, ga: &mut [f32], gb: &mut [f32]) {
    for ch in 0..gamma.len() {
        let mk = mask.map_or(1.0, |m| m[ch]);
        ga[ch] = gamma[ch] * mk;
        gb[ch] = beta[ch] * mk;
    }
}

/// The tiled coefficients of a training forward, to recompute x̂ and the ReLU's input.
struct Fwd<'a> {
    mean: &'a [f32],
    inv_std: &'a [f32],
    ga: &'a [f32],
    gb: &'a [f32],
    relu: bool,
    cap: f32,
}

/// The output gradient through the fused ReLU: `dy` where `0 < z < cap`, else 0, `z` the ReLU's
/// input (`x̂·ga + gb`, exactly as the forward computed it).
#[inline(always)]
fn through_relu(has_relu: bool, cap: f32, d: f32, h: f32, ga: f32, gb: f32) -> f32 {
    if has_relu {
        let z = h * ga + gb;
        // `&`, not `&&`: a branch-free select the compiler vectorises.
        if (z > 0.0) & (z < cap) {
            d
        } else {
            0.0
        }
    } else {
        d
    }
}

simd_fn! {
    /// Pass 1 of the BN backward without a mask: `p = [Σg, Σg·x̂, 0]` (tiled, `[3, t]`).
    fn bwd_sums_chunk(dy: &[f32], x: &[f32], f: &Fwd, p: &mut [f32]) {
        let t = f.mean.len();
        p.fill(0.0);
        let (sg, rest) = p.split_at_mut(t);
        let sgx = &mut rest[..t];
        let coefs = f.mean.iter().zip(f.inv_std).zip(f.ga.iter().zip(f.gb));
        for (dr, xr) in dy.chunks(t).zip(x.chunks(t)) {
            for (((a, b), (&d, &x)), ((&mu, &is), (&ga, &gb))) in
                sg.iter_mut().zip(sgx.iter_mut()).zip(dr.iter().zip(xr)).zip(coefs.clone())
            {
                let h = (x - mu) * is;
                let g = through_relu(f.relu, f.cap, d, h, ga, gb);
                *a += g;
                *b += g * h;
            }
        }
    }
}

simd_fn! {
    /// Pass 1 of the BN backward with a mask `m`: `p = [Σg, Σg·x̂, Σd·(x̂·γ + β)]` (tiled), `d`
    /// the gradient of the masked output, `g = d·m`.
    fn bwd_sums_masked_chunk(dy: &[f32], x: &[f32], f: &Fwd, m: &[f32], gamma: &[f32], beta: &[f32], p: &mut [f32]) {
        let t = f.mean.len();
        p.fill(0.0);
        let (sg, rest) = p.split_at_mut(t);
        let (sgx, sm) = rest.split_at_mut(t);
        let coefs = f.mean.iter().zip(f.inv_std).zip(f.ga.iter().zip(f.gb)).zip(m.iter().zip(gamma).zip(beta));
        for (dr, xr) in dy.chunks(t).zip(x.chunks(t)) {
            for ((((a, b), s), (&d, &x)), (((&mu, &is), (&fa, &fb)), ((&mk, &ga), &be))) in
                sg.iter_mut().zip(sgx.iter_mut()).zip(sm.iter_mut()).zip(dr.iter().zip(xr)).zip(coefs.clone())
            {
                let h = (x - mu) * is;
                let d = through_relu(f.relu, f.cap, d, h, fa, fb);
                let gd = d * mk;
                *a += gd;
                *b += gd * h;
                *s += d * (h * ga + be);
            }
        }
    }
}

simd_fn! {
    /// Pass 2 of the BN backward: `dx (+)= a·dy·relu' + b·x̂ + k` (tiled coefficients).
    fn bwd_dx_chunk(dy: &[f32], x: &[f32], f: &Fwd, a: &[f32], b: &[f32], k: &[f32], acc: bool, dx: &mut [f32]) {
        let t = f.mean.len();
        let coefs = f.mean.iter().zip(f.inv_std).zip(f.ga.iter().zip(f.gb)).zip(a.iter().zip(b).zip(k));
        for ((xo, dr), xr) in dx.chunks_mut(t).zip(dy.chunks(t)).zip(x.chunks(t)) {
            let vals = dr.iter().zip(xr).zip(coefs.clone()).map(|((&d, &x), (((&mu, &is), (&fa, &fb)), ((&a, &b), &k)))| {
                let h = (x - mu) * is;
                a * through_relu(f.relu, f.cap, d, h, fa, fb) + b * h + k
            });
            crate::elem::emit(acc, xo, vals);
        }
    }
}
