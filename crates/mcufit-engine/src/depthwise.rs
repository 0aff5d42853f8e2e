//! Direct depthwise convolution (channel multiplier 1), forward and backward, NHWC.
//!
//! No padded copies: a window's taps are clipped to the image (`Window::rows` / `cols`), and the
//! output columns whose windows lie wholly inside the image go [`avx512`]'s fast way, several
//! pixels at a time, channels in 16-lane vectors held in registers across the taps (a channel
//! count that is not a multiple of 16 ends with a masked vector). The activations of a batch
//! exceed the caches, so these ops are bound by memory traffic: one read of the input and one
//! write of the output per pass is what they cost.
//!
//! Summation orders (fixed, so results do not depend on the thread count):
//! - forward: `y = bias + Σ x · k` over the valid taps in `(ky, kx)` order;
//! - kernel and bias gradient of one image: per tap over its valid output pixels in `(oy, ox)`
//!   order, in partial sums by column added in order: four in the portable loops; in the
//!   AVX-512 kernels one for a 3x3 kernel, else four (channel groups of 16) or two (wider
//!   groups); the caller sums the per-image records in image order;
//! - input gradient at stride 1: the correlation of dY with the flipped kernel (taps in `(ky, kx)`
//!   order), added to what `dx` holds when accumulating; at other strides dY · k scattered in
//!   `(oy, ox, ky, kx)` order.
//!
//! Without AVX-512 the portable loops below run (the same orders, separate multiply and add; the
//! compiler keeps their fixed-width chunks of channels and pixels in registers).

use rayon::prelude::*;

use crate::conv::{with_cols, DyOf, Window};
use crate::pool::{bn_act_pixels, BnAct};
use crate::simd::simd_fn;

/// What an output pixel starts from before the taps are added.
#[derive(Clone, Copy)]
enum Init<'a> {
    Zero,
    /// Per-channel values (the bias).
    Row(&'a [f32]),
    /// The output's current values (accumulate).
    Out,
}

/// A depthwise convolution's geometry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Depthwise {
    pub g: Window,
}

impl Depthwise {
    pub fn new(g: Window) -> Self {
        Depthwise { g }
    }

    fn out_image(&self) -> usize {
        self.g.oh * self.g.ow * self.g.c
    }

    /// `y = conv(x) (+ bias)` for all images; `k` is `[kh·kw, c]`. Parallel over images. `epi`: an
    /// evaluation-mode BN (+ ReLU) applied to each image's output right after it is written, while
    /// it is in cache (tiled `a`, `b` of [`crate::norm::eval_coefs`] and the ReLU cap). `stats`:
    /// the statistics partials of a training-mode BN, one [`crate::norm::producer_stats`] record
    /// per image, computed from the image's output right after it is written. `bn_in`: `x` is the
    /// input of a training-mode BN (+ ReLU) whose output this conv's input is; the BN is applied
    /// to each image into a per-thread scratch (its output is never stored).
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        x: &[f32],
        k: &[f32],
        bias: Option<&[f32]>,
        epi: Option<(&[f32], &[f32], crate::norm::Relu)>,
        stats: Option<&mut [f32]>,
        bn_in: Option<&BnAct>,
        y: &mut [f32],
    ) {
        let g = &self.g;
        let init = bias.map_or(Init::Zero, Init::Row);
        let image = |yi: &mut [f32], xi: &[f32], p: Option<&mut [f32]>| {
            match bn_in {
                Some(f) => with_cols(g.in_image(), |xs| {
                    bn_act_pixels(xi, f, xs);
                    correlate(g, xs, k, init, yi)
                }),
                None => correlate(g, xi, k, init, yi),
            }
            if let Some((a, b, relu)) = epi {
                crate::norm::affine_inplace(yi, a, b, relu.is_some(), relu.unwrap_or(0.0));
            }
            if let Some(p) = p {
                crate::norm::producer_stats(yi, g.c, p);
            }
        };
        let (ys, xs) = (y.par_chunks_mut(self.out_image()), x.par_chunks(g.in_image()));
        match stats {
            Some(st) => {
                let rec = crate::norm::stats_record_len(g.c);
                ys.zip(xs).zip(st.par_chunks_mut(rec)).for_each(|((yi, xi), p)| image(yi, xi, Some(p)));
            }
            None => ys.zip(xs).for_each(|(yi, xi)| image(yi, xi, None)),
        }
    }

    /// Backward for all images. `part` gets one record per image of `kh·kw·c` kernel gradient
    /// sums then `c` bias gradient sums (summed over images by the caller, in order); `dx`, when
    /// given, is written (or added to when `acc`). `kflip` is scratch. `dy_of`: dY is computed
    /// image by image (`dy_of(i, dy_i)`, the deferred input gradient of the BN after this conv)
    /// into a per-thread scratch instead of read from `dy` (then unused). `bn_in`: as in the
    /// forward (`x` the BN's input; each image's BN output recomputed into the scratch).
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        x: &[f32],
        k: &[f32],
        dy: &[f32],
        dy_of: Option<DyOf>,
        bn_in: Option<&BnAct>,
        part: &mut [f32],
        dx: Option<(&mut [f32], bool)>,
        kflip: &mut Vec<f32>,
    ) {
        let g = &self.g;
        let (c, taps) = (g.c, g.kh * g.kw);
        let rec = (taps + 1) * c;
        let (inn, out) = (g.in_image(), self.out_image());
        // Image `i`'s input and dY: read from `x` and `dy`, or computed into the thread's scratch.
        let (own_dy, own_x) = (if dy_of.is_some() { out } else { 0 }, if bn_in.is_some() { inn } else { 0 });
        let with_img = |i: usize, f: &mut dyn FnMut(&[f32], &[f32])| {
            with_cols(own_dy + own_x, |buf| {
                let (dyb, xb) = buf.split_at_mut(own_dy);
                let dyi: &[f32] = match dy_of {
                    Some(d) => {
                        d(i, dyb);
                        dyb
                    }
                    None => &dy[i * out..(i + 1) * out],
                };
                let xi: &[f32] = match bn_in {
                    Some(b) => {
                        bn_act_pixels(&x[i * inn..(i + 1) * inn], b, xb);
                        xb
                    }
                    None => &x[i * inn..(i + 1) * inn],
                };
                f(xi, dyi)
            })
        };
        let Some((dx, acc)) = dx else {
            part.par_chunks_mut(rec)
                .enumerate()
                .for_each(|(i, p)| with_img(i, &mut |xi, dyi| param_grads(g, xi, dyi, p)));
            return;
        };
        // Stride 1: dX is the correlation of dY with the flipped kernel, padded by
        // (kh - 1 - pt, kw - 1 - pl).
        let unit = g.sh == 1 && g.sw == 1;
        let flipped = Window {
            h: g.oh,
            w: g.ow,
            c,
            oh: g.h,
            ow: g.w,
            kh: g.kh,
            kw: g.kw,
            sh: 1,
            sw: 1,
            pt: g.kh - 1 - g.pt,
            pl: g.kw - 1 - g.pl,
        };
        if unit {
            kflip.clear();
            for t in (0..taps).rev() {
                kflip.extend_from_slice(&k[t * c..(t + 1) * c]);
            }
        }
        let kflip = &kflip[..];
        part.par_chunks_mut(rec).zip(dx.par_chunks_mut(inn)).enumerate().for_each(|(i, (p, dxi))| {
            with_img(i, &mut |xi, dyi| {
                param_grads(g, xi, dyi, p);
                if unit {
                    correlate(&flipped, dyi, kflip, if acc { Init::Out } else { Init::Zero }, dxi);
                } else {
                    if !acc {
                        dxi.fill(0.0);
                    }
                    scatter(g, dyi, k, dxi);
                }
            })
        });
    }
}

/// `out[oy, ox, c] = init + Σ src[iy, ix, c] · k[(ky, kx), c]` over the taps of each window of
/// `g` inside the image; `k` is `[kh·kw, c]`.
fn correlate(g: &Window, src: &[f32], k: &[f32], init: Init<'_>, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if avx512::available() {
        // SAFETY: AVX-512F is available; the kernel asserts its bounds.
        unsafe { avx512::correlate(g, src, k, init, out) };
        return;
    }
    correlate_portable(g, src, k, init, out);
}

simd_fn! {
    /// Channels in chunks ([`chunk_len`]) whose sums stay in registers across the taps, and
    /// where the windows have all their column taps, [`PIXELS`] output pixels at a time; per
    /// output value the same operations in the same order as one channel and pixel at a time.
    fn correlate_portable(g: &Window, src: &[f32], k: &[f32], init: Init<'_>, out: &mut [f32]) {
        let c = g.c;
        let (lo, hi) = full_cols(g);
        for (oy, orow) in out.chunks_exact_mut(g.ow * c).enumerate() {
            let rows = g.rows(oy);
            let mut ox = 0;
            while ox < g.ow {
                let p = if ox >= lo && ox + PIXELS <= hi { PIXELS } else { 1 };
                let (o, cols) = (&mut orow[ox * c..(ox + p) * c], g.cols(ox));
                let mut c0 = 0;
                while c0 < c {
                    let n = chunk_len(c - c0);
                    match (p, n) {
                        (PIXELS, LANES) => correlate_chunk::<PIXELS, LANES>(g, src, k, init, o, c0, rows, cols),
                        (PIXELS, 8) => correlate_chunk::<PIXELS, 8>(g, src, k, init, o, c0, rows, cols),
                        (PIXELS, _) => correlate_chunk::<PIXELS, 1>(g, src, k, init, o, c0, rows, cols),
                        (_, LANES) => correlate_chunk::<1, LANES>(g, src, k, init, o, c0, rows, cols),
                        (_, 8) => correlate_chunk::<1, 8>(g, src, k, init, o, c0, rows, cols),
                        _ => correlate_chunk::<1, 1>(g, src, k, init, o, c0, rows, cols),
                    }
                    c0 += n;
                }
                ox += p;
            }
        }
    }
}

/// Output pixels per block of the portable kernels where windows are whole along x.
const PIXELS: usize = 4;

/// The output columns `lo..hi` whose windows have every column tap inside the image.
fn full_cols(g: &Window) -> (usize, usize) {
    let full = |ox: usize| g.cols(ox).1 - g.cols(ox).0 == g.kw;
    let lo = (0..g.ow).find(|&ox| full(ox)).unwrap_or(g.ow);
    let hi = (lo..g.ow).find(|&ox| !full(ox)).unwrap_or(g.ow);
    (lo, hi)
}

/// Channels per register-held chunk of the portable kernels (two AVX2 or one AVX-512 vector).
const LANES: usize = 16;

/// The length of the next channel chunk when `rest` channels are left: [`LANES`], then 8, then
/// single channels. (The portable kernels are loops over fixed-width chunks, with no closures:
/// a closure would not be compiled for the SIMD level [`simd_fn!`] picks.)
#[inline(always)]
fn chunk_len(rest: usize) -> usize {
    if rest >= LANES {
        LANES
    } else if rest >= 8 {
        8
    } else {
        1
    }
}

/// Channels `c0..c0 + N` of the `P` output pixels in `o` (the first's window taps `rows`,
/// `cols`; with `P > 1` every window has all its column taps) of [`correlate_portable`].
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn correlate_chunk<const P: usize, const N: usize>(
    g: &Window,
    src: &[f32],
    k: &[f32],
    init: Init<'_>,
    o: &mut [f32],
    c0: usize,
    (ky0, ky1, iy0): (usize, usize, usize),
    (kx0, kx1, ix0): (usize, usize, usize),
) {
    let c = g.c;
    let mut acc: [[f32; N]; P] = std::array::from_fn(|j| match init {
        Init::Zero => [0.0; N],
        Init::Row(b) => lanes(b, c0),
        Init::Out => lanes(o, j * c + c0),
    });
    for ky in ky0..ky1 {
        let row = (iy0 + ky - ky0) * g.w + ix0;
        for kx in kx0..kx1 {
            let ks = lanes::<N>(k, (ky * g.kw + kx) * c + c0);
            for (j, a) in acc.iter_mut().enumerate() {
                let xs = lanes::<N>(src, (row + kx - kx0 + j * g.sw) * c + c0);
                (0..N).for_each(|l| a[l] += xs[l] * ks[l]);
            }
        }
    }
    for (j, a) in acc.iter().enumerate() {
        o[j * c + c0..j * c + c0 + N].copy_from_slice(a);
    }
}

/// `v[at..at + N]` as an array.
#[inline(always)]
fn lanes<const N: usize>(v: &[f32], at: usize) -> [f32; N] {
    v[at..at + N].try_into().expect("N lanes")
}

/// The kernel and bias gradient sums of one image into `part` (`[kh·kw, c]` then `[c]`).
fn param_grads(g: &Window, x: &[f32], dy: &[f32], part: &mut [f32]) {
    let c = g.c;
    let (dk, db) = part.split_at_mut(g.kh * g.kw * c);
    bias_grads(c, dy, db);
    #[cfg(target_arch = "x86_64")]
    if avx512::available() {
        // SAFETY: AVX-512F is available; the kernel asserts its bounds.
        unsafe { avx512::kernel_grads(g, x, dy, dk) };
        return;
    }
    kernel_grads_portable(g, x, dy, dk);
}

simd_fn! {
    /// Σ dY over the pixels, in order.
    fn bias_grads(c: usize, dy: &[f32], db: &mut [f32]) {
        db.fill(0.0);
        for d in dy.chunks_exact(c) {
            db.iter_mut().zip(d).for_each(|(b, &d)| *b += d);
        }
    }
}

simd_fn! {
    /// Per tap, over the output pixels whose window has that tap inside the image (a rectangle,
    /// `tap_range`) in `(oy, ox)` order, [`PIXELS`] partial sums by column ([`tap_grad`]),
    /// channels in register-held chunks ([`chunk_len`]).
    fn kernel_grads_portable(g: &Window, x: &[f32], dy: &[f32], dk: &mut [f32]) {
        let c = g.c;
        for ky in 0..g.kh {
            let ys = tap_range(g.oh, ky, |o| g.rows(o));
            for kx in 0..g.kw {
                let xs = tap_range(g.ow, kx, |o| g.cols(o));
                let mut c0 = 0;
                while c0 < c {
                    let n = chunk_len(c - c0);
                    match n {
                        LANES => tap_grad::<LANES>(g, x, dy, dk, (ky, kx), ys, xs, c0),
                        8 => tap_grad::<8>(g, x, dy, dk, (ky, kx), ys, xs, c0),
                        _ => tap_grad::<1>(g, x, dy, dk, (ky, kx), ys, xs, c0),
                    }
                    c0 += n;
                }
            }
        }
    }
}

/// Channels `c0..c0 + N` of tap `(ky, kx)`'s kernel gradient over output rows `ys` and columns
/// `xs` in order, in [`PIXELS`] partial sums (column `xs.0 + PIXELS·i + j` goes to sum `j`) added
/// in order at the end (see [`kernel_grads_portable`]).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn tap_grad<const N: usize>(
    g: &Window,
    x: &[f32],
    dy: &[f32],
    dk: &mut [f32],
    (ky, kx): (usize, usize),
    ys: (usize, usize),
    xs: (usize, usize),
    c0: usize,
) {
    let c = g.c;
    let mut acc = [[0f32; N]; PIXELS];
    for oy in ys.0..ys.1 {
        let iy = oy * g.sh + ky - g.pt;
        let (drow, xrow) = ((oy * g.ow) * c + c0, (iy * g.w + kx - g.pl) * c + c0);
        let mut ox = xs.0;
        while ox < xs.1 {
            // A fixed-length loop (the sums indexed statically, so kept in registers); the row's
            // last block may be partial.
            for (j, a) in acc.iter_mut().enumerate() {
                let ox = ox + j;
                if ox < xs.1 {
                    let (d, v) = (lanes::<N>(dy, drow + ox * c), lanes::<N>(x, xrow + ox * g.sw * c));
                    (0..N).for_each(|l| a[l] += d[l] * v[l]);
                }
            }
            ox += PIXELS;
        }
    }
    let mut sum = acc[0];
    for a in &acc[1..] {
        (0..N).for_each(|j| sum[j] += a[j]);
    }
    let tap = (ky * g.kw + kx) * c + c0;
    dk[tap..tap + N].copy_from_slice(&sum);
}

/// The output positions `lo..hi` (of `n`) whose window has tap `tap` inside the image (`span`:
/// [`Window::rows`] or [`Window::cols`]): a range, since the windows slide monotonically.
#[inline(always)]
fn tap_range(n: usize, tap: usize, span: impl Fn(usize) -> (usize, usize, usize)) -> (usize, usize) {
    let has = |o: usize| {
        let (k0, k1, _) = span(o);
        (k0..k1).contains(&tap)
    };
    let lo = (0..n).find(|&o| has(o)).unwrap_or(n);
    let hi = (lo..n).find(|&o| !has(o)).unwrap_or(n);
    (lo, hi)
}

simd_fn! {
    /// `dx[iy, ix] += dy[oy, ox] · k[ky, kx]` over the valid taps, in `(oy, ox, ky, kx)` order.
    fn scatter(g: &Window, dy: &[f32], k: &[f32], dx: &mut [f32]) {
        let c = g.c;
        for (p, d) in dy.chunks_exact(c).enumerate() {
            let (oy, ox) = (p / g.ow, p % g.ow);
            let (ky0, ky1, iy0) = g.rows(oy);
            let (kx0, kx1, ix0) = g.cols(ox);
            for ky in ky0..ky1 {
                let iy = iy0 + ky - ky0;
                for kx in kx0..kx1 {
                    let at = (iy * g.w + ix0 + kx - kx0) * c;
                    let ks = &k[(ky * g.kw + kx) * c..(ky * g.kw + kx + 1) * c];
                    dx[at..at + c].iter_mut().zip(d.iter().zip(ks)).for_each(|(s, (&d, &w))| *s += d * w);
                }
            }
        }
    }
}

/// The AVX-512 kernels (FMA, masked loads for a channel tail) of [`correlate`] and of the
/// kernel gradient; FMA rounds once where the portable loops round twice, so their results
/// differ in the last bits.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::Init;
    use crate::conv::Window;

    pub fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx512f")
    }

    fn lane_mask(lanes: usize) -> __mmask16 {
        if lanes >= 16 {
            0xffff
        } else {
            ((1u32 << lanes) - 1) as __mmask16
        }
    }

    /// Channels per group: up to four 16-lane vectors.
    const GROUP: usize = 64;

    /// As `correlate_portable`, with FMA: channels in groups of up to four vectors, and where the
    /// windows lie wholly inside the image along x, several output pixels at a time (about
    /// eight accumulators in all).
    ///
    /// # Safety
    /// AVX-512F available.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn correlate(g: &Window, src: &[f32], k: &[f32], init: Init<'_>, out: &mut [f32]) {
        let c = g.c;
        assert!(src.len() >= g.h * g.w * c && k.len() >= g.kh * g.kw * c && out.len() >= g.oh * g.ow * c);
        if let Init::Row(b) = init {
            assert!(b.len() >= c);
        }
        let (lo, hi) = super::full_cols(g);
        let a = Args { g, src: src.as_ptr(), k: k.as_ptr(), init, out: out.as_mut_ptr() };
        // SAFETY (whole body): every tap `block` reads is inside the image (Window::rows / cols),
        // every output inside `out`, by the asserts above.
        unsafe {
            for oy in 0..g.oh {
                let rows = g.rows(oy);
                for c0 in (0..c).step_by(GROUP) {
                    let cg = (c - c0).min(GROUP);
                    let (nv, m) = (cg.div_ceil(16), lane_mask(cg - 16 * ((cg - 1) / 16)));
                    let mut ox = 0;
                    while ox < g.ow {
                        let room = if ox >= lo && ox < hi { hi - ox } else { 1 };
                        let p = [8, 4, 2, 1].into_iter().find(|&p| p * nv <= 8 && p <= room).unwrap_or(1);
                        macro_rules! go {
                            ($(($p:literal, $v:literal)),*) => {
                                match (p, nv) {
                                    $(($p, $v) => block::<$p, $v>(&a, rows, oy, ox, c0, m),)*
                                    _ => unreachable!("p * nv <= 8, nv <= 4"),
                                }
                            };
                        }
                        go!((8, 1), (4, 1), (2, 1), (1, 1), (4, 2), (2, 2), (1, 2), (2, 3), (1, 3), (2, 4), (1, 4));
                        ox += p;
                    }
                }
            }
        }
    }

    struct Args<'a> {
        g: &'a Window,
        src: *const f32,
        k: *const f32,
        init: Init<'a>,
        out: *mut f32,
    }

    /// `P` output pixels from `(oy, ox)`, channels `c0..` in `V` vectors (the last masked by
    /// `m`); `P > 1` only where every pixel's window has all its column taps.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn block<const P: usize, const V: usize>(
        a: &Args<'_>,
        (ky0, ky1, iy0): (usize, usize, usize),
        oy: usize,
        ox: usize,
        c0: usize,
        m: __mmask16,
    ) {
        let g = a.g;
        let c = g.c;
        let (kx0, kx1, ix0) = g.cols(ox);
        let mask = |v: usize| if v + 1 == V { m } else { 0xffff };
        // SAFETY (whole body): the caller's bounds.
        unsafe {
            let op = a.out.add((oy * g.ow + ox) * c + c0);
            let mut acc = [[_mm512_setzero_ps(); V]; P];
            for (j, r) in acc.iter_mut().enumerate() {
                for (v, x) in r.iter_mut().enumerate() {
                    match a.init {
                        Init::Zero => {}
                        Init::Row(b) => *x = _mm512_maskz_loadu_ps(mask(v), b.as_ptr().add(c0 + 16 * v)),
                        Init::Out => *x = _mm512_maskz_loadu_ps(mask(v), op.add(j * c + 16 * v)),
                    }
                }
            }
            let step = g.sw * c;
            for ky in ky0..ky1 {
                let row = a.src.add(((iy0 + ky - ky0) * g.w + ix0) * c + c0);
                for kx in kx0..kx1 {
                    let kt = a.k.add((ky * g.kw + kx) * c + c0);
                    let mut kv = [_mm512_setzero_ps(); V];
                    for (v, x) in kv.iter_mut().enumerate() {
                        *x = _mm512_maskz_loadu_ps(mask(v), kt.add(16 * v));
                    }
                    let at = row.add((kx - kx0) * c);
                    for (j, r) in acc.iter_mut().enumerate() {
                        for (v, x) in r.iter_mut().enumerate() {
                            let xv = _mm512_maskz_loadu_ps(mask(v), at.add(j * step + 16 * v));
                            *x = _mm512_fmadd_ps(xv, kv[v], *x);
                        }
                    }
                }
            }
            for (j, r) in acc.iter().enumerate() {
                for (v, x) in r.iter().enumerate() {
                    _mm512_mask_storeu_ps(op.add(j * c + 16 * v), mask(v), *x);
                }
            }
        }
    }

    /// The kernel gradient sums (`dk`, `[kh·kw, c]`) of one image: per tap and channel group,
    /// over the output pixels whose window has that tap inside the image, in `P` partial sums
    /// (column `ox0 + P·i + j` goes to sum `j`) added in order.
    ///
    /// # Safety
    /// AVX-512F available.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn kernel_grads(g: &Window, x: &[f32], dy: &[f32], dk: &mut [f32]) {
        let c = g.c;
        assert!(x.len() >= g.h * g.w * c && dy.len() >= g.oh * g.ow * c && dk.len() >= g.kh * g.kw * c);
        if g.kh * g.kw == 9 {
            // SAFETY: as this function's.
            unsafe { kernel_grads_3x3(g, x, dy, dk) };
            return;
        }
        // SAFETY (whole body): input pixel (oy·sh − pt + ky, ox·sw − pl + kx) is inside the image
        // for oy, ox in the tap's ranges; the rest by the asserts above.
        unsafe {
            for ky in 0..g.kh {
                let ys = super::tap_range(g.oh, ky, |o| g.rows(o));
                for kx in 0..g.kw {
                    let xs = super::tap_range(g.ow, kx, |o| g.cols(o));
                    for c0 in (0..c).step_by(GROUP) {
                        let cg = (c - c0).min(GROUP);
                        let (nv, m) = (cg.div_ceil(16), lane_mask(cg - 16 * ((cg - 1) / 16)));
                        let t = Tap { g, x: x.as_ptr(), dy: dy.as_ptr(), ky, kx, ys, xs, c0, m };
                        let d = dk.as_mut_ptr().add((ky * g.kw + kx) * c + c0);
                        match nv {
                            1 => tap_sum::<4, 1>(&t, d),
                            2 => tap_sum::<2, 2>(&t, d),
                            3 => tap_sum::<2, 3>(&t, d),
                            _ => tap_sum::<2, 4>(&t, d),
                        }
                    }
                }
            }
        }
    }

    thread_local! {
        /// One zero-padded image per thread (the 3x3 kernel gradient), reused, with the
        /// geometry `(hp, wp, c, h, w, pt, pl)` its zero border was laid out for.
        static PADDED: std::cell::RefCell<(Vec<f32>, [usize; 7])> =
            const { std::cell::RefCell::new((Vec::new(), [0; 7])) };
    }

    /// [`kernel_grads`] of a 3x3 (9-tap) kernel: the image zero-padded into a per-thread buffer
    /// (so every window has its 9 taps; a padded tap adds an exact 0), then one pass over dY per
    /// 16 channels with the 9 tap sums in registers, pixels in `(oy, ox)` order.
    ///
    /// # Safety
    /// AVX-512F available; the slices as [`kernel_grads`] asserts.
    #[target_feature(enable = "avx512f")]
    unsafe fn kernel_grads_3x3(g: &Window, x: &[f32], dy: &[f32], dk: &mut [f32]) {
        let c = g.c;
        let (hp, wp) = ((g.oh - 1) * g.sh + g.kh, (g.ow - 1) * g.sw + g.kw);
        PADDED.with_borrow_mut(|(xp, laid)| {
            // The border is written only here, so it stays zero while the geometry is the same.
            let key = [hp, wp, c, g.h, g.w, g.pt, g.pl];
            if *laid != key {
                xp.clear();
                xp.resize(hp * wp * c, 0.0);
                *laid = key;
            }
            for (r, row) in xp.chunks_exact_mut(wp * c).enumerate() {
                let Some(iy) = r.checked_sub(g.pt).filter(|&iy| iy < g.h) else { continue };
                let cols = g.w.min(wp.saturating_sub(g.pl));
                row[g.pl * c..(g.pl + cols) * c].copy_from_slice(&x[iy * g.w * c..(iy * g.w + cols) * c]);
            }
            let mut off = [0usize; 9];
            for (t, o) in off.iter_mut().enumerate() {
                *o = ((t / g.kw) * wp + t % g.kw) * c;
            }
            let (xq, dq) = (xp.as_ptr(), dy.as_ptr());
            // SAFETY: window (oy, ox) of the padded image covers rows oy·sh .. oy·sh + 3 and
            // columns ox·sw .. ox·sw + 3, inside hp x wp; dY and dk by the caller's asserts.
            unsafe {
                for c0 in (0..c).step_by(16) {
                    let m = lane_mask(c - c0);
                    let mut acc = [_mm512_setzero_ps(); 9];
                    for oy in 0..g.oh {
                        let row = xq.add(oy * g.sh * wp * c + c0);
                        let drow = dq.add(oy * g.ow * c + c0);
                        for ox in 0..g.ow {
                            let d = _mm512_maskz_loadu_ps(m, drow.add(ox * c));
                            let base = row.add(ox * g.sw * c);
                            for (a, &o) in acc.iter_mut().zip(&off) {
                                *a = _mm512_fmadd_ps(d, _mm512_maskz_loadu_ps(m, base.add(o)), *a);
                            }
                        }
                    }
                    for (t, a) in acc.iter().enumerate() {
                        _mm512_mask_storeu_ps(dk.as_mut_ptr().add(t * c + c0), m, *a);
                    }
                }
            }
        });
    }

    struct Tap<'a> {
        g: &'a Window,
        x: *const f32,
        dy: *const f32,
        ky: usize,
        kx: usize,
        ys: (usize, usize),
        xs: (usize, usize),
        c0: usize,
        m: __mmask16,
    }

    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn tap_sum<const P: usize, const V: usize>(t: &Tap<'_>, dk: *mut f32) {
        let (g, c) = (t.g, t.g.c);
        let mask = |v: usize| if v + 1 == V { t.m } else { 0xffff };
        // SAFETY (whole body): the caller's bounds.
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); V]; P];
            let (ox0, ox1) = t.xs;
            for oy in t.ys.0..t.ys.1 {
                let drow = t.dy.add(oy * g.ow * c + t.c0);
                let xrow = t.x.add(((oy * g.sh + t.ky - g.pt) * g.w) * c + t.c0);
                let px = |ox: usize| xrow.add((ox * g.sw + t.kx - g.pl) * c);
                let mut ox = ox0;
                while ox + P <= ox1 {
                    for (j, r) in acc.iter_mut().enumerate() {
                        let (d, xp) = (drow.add((ox + j) * c), px(ox + j));
                        for (v, a) in r.iter_mut().enumerate() {
                            let dv = _mm512_maskz_loadu_ps(mask(v), d.add(16 * v));
                            *a = _mm512_fmadd_ps(dv, _mm512_maskz_loadu_ps(mask(v), xp.add(16 * v)), *a);
                        }
                    }
                    ox += P;
                }
                while ox < ox1 {
                    let r = &mut acc[(ox - ox0) % P];
                    let (d, xp) = (drow.add(ox * c), px(ox));
                    for (v, a) in r.iter_mut().enumerate() {
                        let dv = _mm512_maskz_loadu_ps(mask(v), d.add(16 * v));
                        *a = _mm512_fmadd_ps(dv, _mm512_maskz_loadu_ps(mask(v), xp.add(16 * v)), *a);
                    }
                    ox += 1;
                }
            }
            for v in 0..V {
                let mut s = acc[0][v];
                for r in &acc[1..] {
                    s = _mm512_add_ps(s, r[v]);
                }
                _mm512_mask_storeu_ps(dk.add(16 * v), mask(v), s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcufit_ir::{Padding, Shape};

    fn lcg(seed: u64, n: usize) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// The straightforward loops: every valid tap, in `(oy, ox, ky, kx)` order, f64 sums.
    fn reference(g: &Window, n: usize, x: &[f32], k: &[f32], b: &[f32], dy: &[f32]) -> [Vec<f64>; 4] {
        let c = g.c;
        let mut y = vec![0f64; n * g.oh * g.ow * c];
        let mut dx = vec![0f64; x.len()];
        let mut dk = vec![0f64; k.len()];
        let mut db = vec![0f64; c];
        for i in 0..n {
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    for ch in 0..c {
                        let o = ((i * g.oh + oy) * g.ow + ox) * c + ch;
                        y[o] = b[ch] as f64;
                        db[ch] += dy[o] as f64;
                        for ky in 0..g.kh {
                            for kx in 0..g.kw {
                                let iy = (oy * g.sh + ky) as isize - g.pt as isize;
                                let ix = (ox * g.sw + kx) as isize - g.pl as isize;
                                if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                    continue;
                                }
                                let xi = ((i * g.h + iy as usize) * g.w + ix as usize) * c + ch;
                                let t = (ky * g.kw + kx) * c + ch;
                                y[o] += x[xi] as f64 * k[t] as f64;
                                dk[t] += dy[o] as f64 * x[xi] as f64;
                                dx[xi] += dy[o] as f64 * k[t] as f64;
                            }
                        }
                    }
                }
            }
        }
        [y, dx, dk, db]
    }

    fn close(what: &str, got: &[f32], want: &[f64]) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            assert!((g as f64 - w).abs() <= 1e-4 * (1.0 + w.abs()), "{what}[{i}]: {g} vs {w}");
        }
    }

    #[test]
    fn matches_the_reference_loops() {
        // Channel counts below, at and above one block, with a tail; strides 1 and 2; SAME and
        // VALID; non-square kernels; widths below and above a pixel block.
        let cases = [
            (5, 7, 3, [3, 3], [1, 1], Padding::Same),
            (25, 5, 64, [3, 3], [1, 1], Padding::Same),
            (8, 9, 37, [3, 3], [2, 2], Padding::Same),
            (9, 8, 16, [3, 3], [2, 2], Padding::Valid),
            (6, 11, 20, [5, 3], [1, 2], Padding::Same),
            (7, 7, 33, [1, 1], [1, 1], Padding::Valid),
            (10, 6, 17, [4, 4], [1, 1], Padding::Same),
            (4, 13, 25, [3, 3], [1, 1], Padding::Same),
        ];
        for (h, w, c, kernel, stride, padding) in cases {
            let input = Shape::new(h, w, c);
            let oh = padding.out_len(h, kernel[0], stride[0]).unwrap();
            let ow = padding.out_len(w, kernel[1], stride[1]).unwrap();
            let g = Window::new(input, Shape::new(oh, ow, c), kernel, stride, padding);
            let n = 3;
            let taps = kernel[0] * kernel[1];
            let x = lcg(1, n * h * w * c);
            let k = lcg(2, taps * c);
            let b = lcg(3, c);
            let dy = lcg(4, n * oh * ow * c);
            let want = reference(&g, n, &x, &k, &b, &dy);
            let d = Depthwise::new(g);
            let mut y = vec![0f32; n * oh * ow * c];
            d.forward(&x, &k, Some(&b), None, None, None, &mut y);
            close("y", &y, &want[0]);
            let rec = (taps + 1) * c;
            let mut part = vec![0f32; n * rec];
            let mut kflip = Vec::new();
            for acc in [false, true] {
                let mut dx = vec![if acc { 1.0 } else { f32::NAN }; x.len()];
                d.backward(&x, &k, &dy, None, None, &mut part, Some((&mut dx, acc)), &mut kflip);
                let want_dx: Vec<f64> = want[1].iter().map(|v| v + if acc { 1.0 } else { 0.0 }).collect();
                close("dx", &dx, &want_dx);
            }
            let mut dk = vec![0f32; taps * c];
            let mut db = vec![0f32; c];
            for r in part.chunks_exact(rec) {
                dk.iter_mut().zip(&r[..taps * c]).for_each(|(a, &b)| *a += b);
                db.iter_mut().zip(&r[taps * c..]).for_each(|(a, &b)| *a += b);
            }
            close("dk", &dk, &want[2]);
            close("db", &db, &want[3]);
            // Without dx: the same parameter gradients, bit for bit.
            let mut part2 = vec![0f32; n * rec];
            d.backward(&x, &k, &dy, None, None, &mut part2, None, &mut kflip);
            assert_eq!(part, part2);
            // dY computed image by image (a deferred BN's input gradient): the same, bit for bit.
            let oi = oh * ow * c;
            let of = |i: usize, out: &mut [f32]| out.copy_from_slice(&dy[i * oi..(i + 1) * oi]);
            let (mut dx1, mut dx2) = (vec![0f32; x.len()], vec![0f32; x.len()]);
            d.backward(&x, &k, &dy, None, None, &mut part, Some((&mut dx1, false)), &mut kflip);
            d.backward(&x, &k, &[], Some(&of), None, &mut part2, Some((&mut dx2, false)), &mut kflip);
            assert_eq!((&part, &dx1), (&part2, &dx2));
            d.backward(&x, &k, &[], Some(&of), None, &mut part2, None, &mut kflip);
            assert_eq!(part, part2);
        }
    }

    /// The portable kernels (what runs without AVX-512) against the reference on every CPU:
    /// chunks of 16, 8 and 1 channels, whole and partial pixel blocks, strides 1 and 2.
    #[test]
    fn portable_kernels_match_the_reference() {
        for (h, w, c, stride) in [(6, 13, 25, 1), (7, 17, 41, 2), (3, 4, 16, 1), (5, 3, 9, 1)] {
            let input = Shape::new(h, w, c);
            let (oh, ow) = (Padding::Same.out_len(h, 3, stride).unwrap(), Padding::Same.out_len(w, 3, stride).unwrap());
            let g = Window::new(input, Shape::new(oh, ow, c), [3, 3], [stride, stride], Padding::Same);
            let (x, k, b, dy) = (lcg(5, h * w * c), lcg(6, 9 * c), lcg(7, c), lcg(8, oh * ow * c));
            let want = reference(&g, 1, &x, &k, &b, &dy);
            let mut y = vec![f32::NAN; oh * ow * c];
            correlate_portable(&g, &x, &k, Init::Row(&b), &mut y);
            close("portable y", &y, &want[0]);
            let mut y2 = vec![1.0; oh * ow * c];
            correlate_portable(&g, &x, &k, Init::Out, &mut y2);
            let want2: Vec<f64> = want[0].iter().enumerate().map(|(i, v)| v - b[i % c] as f64 + 1.0).collect();
            close("portable y (accumulate)", &y2, &want2);
            let mut dk = vec![f32::NAN; 9 * c];
            kernel_grads_portable(&g, &x, &dy, &mut dk);
            close("portable dk", &dk, &want[2]);
        }
    }
}
