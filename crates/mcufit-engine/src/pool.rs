//! Max, average and global average pooling on NHWC images (TF semantics: max pooling never
//! selects a padded pixel, average pooling divides by the valid pixels only).

use rayon::prelude::*;

use crate::conv::Window;
use crate::elem::emit;
use crate::simd::simd_fn;

/// Max pooling forward; `arg` gets, per output element, the input pixel index (`iy * w + ix`
/// within its image) that won (the first maximum in window order).
pub(crate) fn max_forward(g: &Window, x: &[f32], y: &mut [f32], arg: &mut [u32]) {
    let c = g.c;
    y.par_chunks_mut(g.ow * c).zip(arg.par_chunks_mut(g.ow * c)).enumerate().for_each(|(r, (yrow, arow))| {
        let (n, oy) = (r / g.oh, r % g.oh);
        max_row(g, &x[n * g.in_image()..(n + 1) * g.in_image()], oy, yrow, arow);
    });
}

simd_fn! {
    /// Output row `oy` of a max pooling of image `img`.
    fn max_row(g: &Window, img: &[f32], oy: usize, yrow: &mut [f32], arow: &mut [u32]) {
        let c = g.c;
        let (ky0, ky1, iy0) = g.rows(oy);
        for (ox, (out, idx)) in yrow.chunks_exact_mut(c).zip(arow.chunks_exact_mut(c)).enumerate() {
            let (kx0, kx1, ix0) = g.cols(ox);
            let first = iy0 * g.w + ix0;
            out.copy_from_slice(&img[first * c..(first + 1) * c]);
            idx.fill(first as u32);
            for iy in iy0..iy0 + ky1 - ky0 {
                for ix in ix0..ix0 + kx1 - kx0 {
                    let p = iy * g.w + ix;
                    let xs = &img[p * c..(p + 1) * c];
                    // Branch-free selects (vectorised; a data-dependent branch mispredicts).
                    for ((o, i), &v) in out.iter_mut().zip(idx.iter_mut()).zip(xs) {
                        let gt = v > *o;
                        *o = if gt { v } else { *o };
                        *i = if gt { p as u32 } else { *i };
                    }
                }
            }
        }
    }
}

/// A training-mode batch norm (+ ReLU) applied to the max pooling's input on the fly (the BN's
/// output is never stored): per-channel `mean`, `inv_std`, `ga`, `gb` (`[c]` each, see
/// [`crate::norm::act`]).
pub(crate) struct BnAct<'a> {
    pub mean: &'a [f32],
    pub inv_std: &'a [f32],
    pub ga: &'a [f32],
    pub gb: &'a [f32],
    pub relu: bool,
    pub cap: f32,
}

simd_fn! {
    /// `y = bn(x)` over whole pixels (`[pixels, c]`), e.g. into a convolution's padded input.
    pub(crate) fn bn_act_pixels(x: &[f32], f: &BnAct, y: &mut [f32]) {
        let c = f.mean.len();
        let (relu, cap) = (f.relu, f.cap);
        for (yr, xr) in y.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
            let coefs = f.mean.iter().zip(f.inv_std).zip(f.ga.iter().zip(f.gb));
            for ((y, &x), ((&mu, &is), (&a, &b))) in yr.iter_mut().zip(xr).zip(coefs) {
                *y = crate::norm::act(x, mu, is, a, b, relu, cap);
            }
        }
    }
}

/// Max pooling of `bn(x)`: the same outputs and winners as [`max_forward`] of the BN's output,
/// reading the BN's input `x` once instead of writing and reading the BN's output.
pub(crate) fn max_forward_bn(g: &Window, x: &[f32], bn: &BnAct, y: &mut [f32], arg: &mut [u32]) {
    let c = g.c;
    y.par_chunks_mut(g.ow * c).zip(arg.par_chunks_mut(g.ow * c)).enumerate().for_each(|(r, (yrow, arow))| {
        let (n, oy) = (r / g.oh, r % g.oh);
        max_row_bn(g, &x[n * g.in_image()..(n + 1) * g.in_image()], bn, oy, yrow, arow);
    });
}

simd_fn! {
    /// Output row `oy` of a max pooling of `bn(img)`.
    fn max_row_bn(g: &Window, img: &[f32], f: &BnAct, oy: usize, yrow: &mut [f32], arow: &mut [u32]) {
        let c = g.c;
        let (relu, cap) = (f.relu, f.cap);
        let coefs = || f.mean.iter().zip(f.inv_std).zip(f.ga.iter().zip(f.gb));
        let (ky0, ky1, iy0) = g.rows(oy);
        for (ox, (out, idx)) in yrow.chunks_exact_mut(c).zip(arow.chunks_exact_mut(c)).enumerate() {
            let (kx0, kx1, ix0) = g.cols(ox);
            let first = iy0 * g.w + ix0;
            let xs = &img[first * c..(first + 1) * c];
            for ((o, &x), ((&mu, &is), (&a, &b))) in out.iter_mut().zip(xs).zip(coefs()) {
                *o = crate::norm::act(x, mu, is, a, b, relu, cap);
            }
            idx.fill(first as u32);
            for iy in iy0..iy0 + ky1 - ky0 {
                for ix in ix0..ix0 + kx1 - kx0 {
                    let p = iy * g.w + ix;
                    if p == first {
                        continue;
                    }
                    let xs = &img[p * c..(p + 1) * c];
                    for (((o, i), &x), ((&mu, &is), (&a, &b))) in out.iter_mut().zip(idx.iter_mut()).zip(xs).zip(coefs()) {
                        let v = crate::norm::act(x, mu, is, a, b, relu, cap);
                        let gt = v > *o;
                        *o = if gt { v } else { *o };
                        *i = if gt { p as u32 } else { *i };
                    }
                }
            }
        }
    }
}

/// Max pooling backward: routes each output gradient to its winning input pixel.
pub(crate) fn max_backward(g: &Window, dy: &[f32], arg: &[u32], dx: &mut [f32], acc: bool) {
    let c = g.c;
    if g.sh >= g.kh && g.sw >= g.kw {
        // Windows do not overlap: each input pixel gets at most one output's gradient, so each
        // window is written in one vectorised pass (no scatter).
        let out_img = g.oh * g.ow * c;
        dx.par_chunks_mut(g.in_image())
            .zip(dy.par_chunks(out_img).zip(arg.par_chunks(out_img)))
            .for_each(|(dx, (dy, arg))| max_backward_disjoint(g, dy, arg, dx, acc));
        return;
    }
    let out_img = g.oh * g.ow * c;
    dx.par_chunks_mut(g.in_image()).zip(dy.par_chunks(out_img).zip(arg.par_chunks(out_img))).for_each(
        |(dx, (dy, arg))| {
            if !acc {
                dx.fill(0.0);
            }
            for (d, a) in dy.chunks_exact(c).zip(arg.chunks_exact(c)) {
                for (ch, (&d, &p)) in d.iter().zip(a).enumerate() {
                    dx[p as usize * c + ch] += d;
                }
            }
        },
    );
}

simd_fn! {
    /// Max pooling backward of one image whose windows do not overlap.
    fn max_backward_disjoint(g: &Window, dy: &[f32], arg: &[u32], dx: &mut [f32], acc: bool) {
        let c = g.c;
        // Whether the windows cover every pixel (else the pixels outside them get 0 first).
        let covered = g.sh == g.kh
            && g.sw == g.kw
            && (g.oh - 1) * g.sh + g.kh >= g.h + g.pt
            && (g.ow - 1) * g.sw + g.kw >= g.w + g.pl;
        if !acc && !covered {
            dx.fill(0.0);
        }
        let assign = !acc && covered;
        for oy in 0..g.oh {
            let (ky0, ky1, iy0) = g.rows(oy);
            for ox in 0..g.ow {
                let (kx0, kx1, ix0) = g.cols(ox);
                let o = (oy * g.ow + ox) * c;
                let (d, a) = (&dy[o..o + c], &arg[o..o + c]);
                for iy in iy0..iy0 + ky1 - ky0 {
                    for ix in ix0..ix0 + kx1 - kx0 {
                        let p = iy * g.w + ix;
                        let pu = p as u32;
                        // Branch-free select (vectorised).
                        let vals = d.iter().zip(a).map(|(&d, &a)| if a == pu { d } else { 0.0 });
                        emit(!assign, &mut dx[p * c..(p + 1) * c], vals);
                    }
                }
            }
        }
    }
}

simd_fn! {
    /// The input gradient of output row `oy` of a max pooling whose windows tile the input
    /// ([`Window::tiles`]): `band` (the input rows under it, all written) gets `dy` at each
    /// window's winner and 0 elsewhere. `dy`, `arg`: that output row.
    pub(crate) fn expand_row(g: &Window, oy: usize, dy: &[f32], arg: &[u32], band: &mut [f32]) {
        let c = g.c;
        let (ky0, ky1, iy0) = g.rows(oy);
        for ox in 0..g.ow {
            let (kx0, kx1, ix0) = g.cols(ox);
            let (d, a) = (&dy[ox * c..(ox + 1) * c], &arg[ox * c..(ox + 1) * c]);
            for iy in iy0..iy0 + ky1 - ky0 {
                for ix in ix0..ix0 + kx1 - kx0 {
                    let pu = (iy * g.w + ix) as u32;
                    let q = (iy - iy0) * g.w + ix;
                    // Branch-free select (vectorised).
                    let vals = d.iter().zip(a).map(|(&d, &a)| if a == pu { d } else { 0.0 });
                    emit(false, &mut band[q * c..(q + 1) * c], vals);
                }
            }
        }
    }
}

/// Average pooling forward over the valid pixels of each window.
pub(crate) fn avg_forward(g: &Window, x: &[f32], y: &mut [f32]) {
    let c = g.c;
    y.par_chunks_mut(g.ow * c).enumerate().for_each(|(r, yrow)| {
        let (n, oy) = (r / g.oh, r % g.oh);
        let img = &x[n * g.in_image()..(n + 1) * g.in_image()];
        let (ky0, ky1, iy0) = g.rows(oy);
        for (ox, out) in yrow.chunks_exact_mut(c).enumerate() {
            let (kx0, kx1, ix0) = g.cols(ox);
            out.fill(0.0);
            for iy in iy0..iy0 + ky1 - ky0 {
                let run = &img[(iy * g.w + ix0) * c..(iy * g.w + ix0 + kx1 - kx0) * c];
                for xs in run.chunks_exact(c) {
                    out.iter_mut().zip(xs).for_each(|(o, &v)| *o += v);
                }
            }
            let inv = 1.0 / ((ky1 - ky0) * (kx1 - kx0)) as f32;
            out.iter_mut().for_each(|o| *o *= inv);
        }
    });
}

/// Average pooling backward: each valid pixel of a window gets `dy / count`.
pub(crate) fn avg_backward(g: &Window, dy: &[f32], dx: &mut [f32], acc: bool) {
    let c = g.c;
    let out_img = g.oh * g.ow * c;
    dx.par_chunks_mut(g.in_image()).zip(dy.par_chunks(out_img)).for_each(|(dx, dy)| {
        if !acc {
            dx.fill(0.0);
        }
        for oy in 0..g.oh {
            let (ky0, ky1, iy0) = g.rows(oy);
            for ox in 0..g.ow {
                let (kx0, kx1, ix0) = g.cols(ox);
                let inv = 1.0 / ((ky1 - ky0) * (kx1 - kx0)) as f32;
                let d = &dy[(oy * g.ow + ox) * c..(oy * g.ow + ox + 1) * c];
                for iy in iy0..iy0 + ky1 - ky0 {
                    let run = &mut dx[(iy * g.w + ix0) * c..(iy * g.w + ix0 + kx1 - kx0) * c];
                    for xs in run.chunks_exact_mut(c) {
                        xs.iter_mut().zip(d).for_each(|(x, &d)| *x += d * inv);
                    }
                }
            }
        }
    });
}

/// Global average pooling: `y[n, c]` = mean over the `hw` pixels of image `n`.
pub(crate) fn gap_forward(x: &[f32], hw: usize, c: usize, y: &mut [f32]) {
    let inv = 1.0 / hw as f32;
    y.par_chunks_mut(c).zip(x.par_chunks(hw * c)).for_each(|(out, img)| gap_image(img, inv, out));
}

simd_fn! {
    fn gap_image(img: &[f32], inv: f32, out: &mut [f32]) {
        let c = out.len();
        out.fill(0.0);
        for px in img.chunks_exact(c) {
            out.iter_mut().zip(px).for_each(|(o, &v)| *o += v);
        }
        out.iter_mut().for_each(|o| *o *= inv);
    }
}

/// Global average pooling backward: every pixel gets `dy / hw`.
pub(crate) fn gap_backward(dy: &[f32], hw: usize, c: usize, dx: &mut [f32], acc: bool) {
    let inv = 1.0 / hw as f32;
    dx.par_chunks_mut(hw * c).zip(dy.par_chunks(c)).for_each(|(img, d)| gap_backward_image(d, inv, img, acc));
}

simd_fn! {
    fn gap_backward_image(d: &[f32], inv: f32, img: &mut [f32], acc: bool) {
        let c = d.len();
        for px in img.chunks_exact_mut(c) {
            emit(acc, px, d.iter().map(|&d| d * inv));
        }
    }
}
