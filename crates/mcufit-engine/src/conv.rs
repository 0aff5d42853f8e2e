//! Windowed ops on NHWC images: the window geometry (TF padding), im2col / col2im around the
//! GEMM of an ordinary convolution (depthwise convolutions: `depthwise.rs`).

use mcufit_ir::{Padding, Shape};
use rayon::prelude::*;

use crate::elem::emit;
use crate::matmul::{matmul_segs, matmul_seq, narrow_ok, Seg, View};
use crate::simd::simd_fn;

/// Geometry of a window (conv kernel or pool) sliding over one NHWC image.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    /// Input height, width, channels.
    pub h: usize,
    pub w: usize,
    pub c: usize,
    /// Output height and width.
    pub oh: usize,
    pub ow: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    /// Padding before (top, left); TF SAME puts the odd pixel after.
    pub pt: usize,
    pub pl: usize,
}

impl Window {
    pub fn new(input: Shape, output: Shape, kernel: [usize; 2], stride: [usize; 2], padding: Padding) -> Window {
        Window {
            h: input.h,
            w: input.w,
            c: input.c,
            oh: output.h,
            ow: output.w,
            kh: kernel[0],
            kw: kernel[1],
            sh: stride[0],
            sw: stride[1],
            pt: padding.pads(input.h, kernel[0], stride[0]).0,
            pl: padding.pads(input.w, kernel[1], stride[1]).0,
        }
    }
    /// Whether the windows tile the input: stride = window, every input pixel under exactly one.
    pub fn tiles(&self) -> bool {
        self.sh == self.kh
            && self.sw == self.kw
            && (self.oh - 1) * self.sh + self.kh >= self.h + self.pt
            && (self.ow - 1) * self.sw + self.kw >= self.w + self.pl
    }
    /// Elements of one input image.
    pub fn in_image(&self) -> usize {
        self.h * self.w * self.c
    }
    /// Kernel taps of output row `oy`: `(first, end, first input row)`.
    #[inline]
    pub fn rows(&self, oy: usize) -> (usize, usize, usize) {
        span(oy, self.sh, self.pt, self.kh, self.h)
    }
    /// Kernel taps of output column `ox`: `(first, end, first input column)`.
    #[inline]
    pub fn cols(&self, ox: usize) -> (usize, usize, usize) {
        span(ox, self.sw, self.pl, self.kw, self.w)
    }
}

/// The taps `k0..k1` of a window at output position `o` that fall inside `0..len`, and the input
/// position of tap `k0`. TF padding guarantees at least one tap (the padding before is < kernel).
#[inline]
fn span(o: usize, stride: usize, pad: usize, kernel: usize, len: usize) -> (usize, usize, usize) {
    let start = (o * stride) as isize - pad as isize;
    let k0 = (-start).max(0) as usize;
    let k1 = ((len as isize - start).max(0) as usize).min(kernel);
    (k0, k1.max(k0), (start + k0 as isize) as usize)
}

/// im2col of one image: `cols[(oy, ox), (ky, kx, ci)]` = the input pixel under each tap (0 in
/// the padding). `cols` holds `oh * ow` rows of `kh * kw * c`.
fn im2col_image(g: &Window, img: &[f32], cols: &mut [f32]) {
    let (c, kk) = (g.c, g.kh * g.kw * g.c);
    for (oy, row) in cols.chunks_exact_mut(g.ow * kk).enumerate() {
        let (ky0, ky1, iy0) = g.rows(oy);
        for (ox, dst) in row.chunks_exact_mut(kk).enumerate() {
            let (kx0, kx1, ix0) = g.cols(ox);
            if ky0 > 0 || ky1 < g.kh || kx0 > 0 || kx1 < g.kw {
                dst.fill(0.0);
            }
            for ky in ky0..ky1 {
                let iy = iy0 + ky - ky0;
                // The taps kx0..kx1 of one kernel row read one contiguous run of input pixels.
                let src = &img[(iy * g.w + ix0) * c..(iy * g.w + ix0 + kx1 - kx0) * c];
                dst[(ky * g.kw + kx0) * c..(ky * g.kw + kx1) * c].copy_from_slice(src);
            }
        }
    }
}

simd_fn! {
    /// col2im of one image: scatter-adds `dc` (the gradient of its im2col matrix) into `dx`
    /// (written, or added to when `acc`).
    fn col2im_image(g: &Window, dc: &[f32], dx: &mut [f32], acc: bool) {
        let (c, kk) = (g.c, g.kh * g.kw * g.c);
        if !acc {
            dx.fill(0.0);
        }
        for oy in 0..g.oh {
            let (ky0, ky1, iy0) = g.rows(oy);
            for ox in 0..g.ow {
                let (kx0, kx1, ix0) = g.cols(ox);
                let src = &dc[(oy * g.ow + ox) * kk..(oy * g.ow + ox + 1) * kk];
                for ky in ky0..ky1 {
                    let iy = iy0 + ky - ky0;
                    let d = &mut dx[(iy * g.w + ix0) * c..(iy * g.w + ix0 + kx1 - kx0) * c];
                    let s = &src[(ky * g.kw + kx0) * c..(ky * g.kw + kx1) * c];
                    d.iter_mut().zip(s).for_each(|(d, &s)| *d += s);
                }
            }
        }
    }
}

/// Target size (floats) of one chunk's im2col matrix: small enough to stay in L2 between its
/// construction and the GEMM that consumes it.
const CHUNK_FLOATS: usize = 1 << 16;
/// Partial kernel-gradient buffers of a convolution backward (fixed: thread-count independent).
pub(crate) const CONV_GROUPS: usize = 8;

thread_local! {
    /// Per-thread im2col / col2im scratch of the chunked convolutions (and the per-image dY of
    /// a deferred BN backward).
    static COLS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on `len` floats of this thread's scratch (contents are garbage).
pub(crate) fn with_cols<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    COLS.with(|c| {
        let mut v = c.borrow_mut();
        if v.len() < len {
            v.resize(len, 0.0);
        }
        f(&mut v[..len])
    })
}

/// Computes image `i`'s output gradient into the slice (see [`ConvPlan::backward`] and
/// [`crate::depthwise::Depthwise::backward`]).
pub(crate) type DyOf<'a> = &'a (dyn Fn(usize, &mut [f32]) + Sync);

/// How an ordinary convolution is cut into chunks of whole images (a function of the shapes
/// only, so the partial sums and their order do not depend on the thread count).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvPlan {
    pub win: Window,
    pub cout: usize,
    /// 1x1, stride 1: the NHWC input is already the `[N·H·W, Cin]` GEMM operand.
    pub direct: bool,
}

impl ConvPlan {
    fn kk(&self) -> usize {
        self.win.kh * self.win.kw * self.win.c
    }
    fn rows_img(&self) -> usize {
        self.win.oh * self.win.ow
    }
    /// Images per chunk.
    fn per_chunk(&self) -> usize {
        (CHUNK_FLOATS / (self.rows_img() * self.kk()).max(1)).max(1)
    }
    /// Number of partial kernel-gradient buffers for a batch of `n` (each `kk * cout` floats).
    pub fn groups(&self, n: usize) -> usize {
        n.div_ceil(self.per_chunk()).min(CONV_GROUPS)
    }
    /// The GEMM lhs of images `i0..i0 + imgs` (`rows x kk`): the input itself (direct), or, with
    /// `bn`, the BN (+ ReLU) of the input applied into `cols` (direct only), or the input's
    /// im2col matrix built in `cols`.
    fn lhs<'a>(
        &self,
        x: &'a [f32],
        i0: usize,
        imgs: usize,
        bn: Option<&crate::pool::BnAct>,
        cols: &'a mut [f32],
    ) -> &'a [f32] {
        let (ii, ci) = (self.win.in_image(), self.rows_img() * self.kk());
        if let (true, Some(f)) = (self.direct, bn) {
            let out = &mut cols[..imgs * ii];
            crate::pool::bn_act_pixels(&x[i0 * ii..(i0 + imgs) * ii], f, out);
            out
        } else if self.direct {
            &x[i0 * ii..(i0 + imgs) * ii]
        } else {
            for i in 0..imgs {
                im2col_image(&self.win, &x[(i0 + i) * ii..(i0 + i + 1) * ii], &mut cols[i * ci..(i + 1) * ci]);
            }
            &cols[..imgs * ci]
        }
    }

    /// The direct (im2col-free) form of a convolution, where the narrow kernel takes its
    /// products (`cout` <= 64, and `cin` <= 64 for the stride-1 input gradient), and the padded
    /// image holds every input pixel.
    fn taps(&self) -> Option<Taps> {
        let g = &self.win;
        let t = Taps { g: *g, cout: self.cout };
        let (hp, wp) = t.in_dims();
        let ok = !self.direct
            && hp >= g.pt + g.h
            && wp >= g.pl + g.w
            && narrow_ok(self.cout)
            && (!t.unit_stride() || narrow_ok(g.c));
        ok.then_some(t)
    }

    /// The chunks of [`ConvPlan::forward`] for a batch of `n`: `(count, rows per chunk)` (the
    /// last chunk may be shorter).
    pub fn stat_chunks(&self, n: usize) -> (usize, usize) {
        let per = if self.taps().is_some() { 1 } else { self.per_chunk() };
        (n.div_ceil(per), per * self.rows_img())
    }

    /// `y = conv(x) + bias`, `wmat` the kernel as `[(ky, kx, ci), cout]`. Parallel over chunks.
    /// `epi`: an evaluation-mode BN (+ ReLU) applied to each chunk right after its GEMM, while it
    /// is in cache (tiled `a`, `b` of [`crate::norm::eval_coefs`] and the ReLU cap). `stats`: the
    /// statistics partials of a training-mode BN, one [`crate::norm::producer_stats`] record per
    /// chunk of [`ConvPlan::stat_chunks`], computed from each chunk right after its GEMM. `bn_in`
    /// (direct form, or a 1x1 stride-1 GEMM): `x` is the input of a training-mode BN (+ ReLU)
    /// whose output this conv's input is; the BN is applied as each image is padded, or to each
    /// chunk into a scratch (its output is never stored).
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        x: &[f32],
        wmat: &[f32],
        bias: Option<&[f32]>,
        epi: Option<(&[f32], &[f32], crate::norm::Relu)>,
        stats: Option<&mut [f32]>,
        bn_in: Option<&crate::pool::BnAct>,
        xpad: &mut Vec<f32>,
        y: &mut [f32],
    ) {
        let rec = crate::norm::stats_record_len(self.cout);
        let stat = |yc: &[f32], p: Option<&mut [f32]>| {
            if let Some(p) = p {
                crate::norm::producer_stats(yc, self.cout, p);
            }
        };
        let (kk, cout, ri) = (self.kk(), self.cout, self.rows_img());
        let pc = self.per_chunk();
        // The bias tiled over whole rows, so that each chunk is filled by a few long copies.
        let btile: Vec<f32> = bias.map_or(Vec::new(), |b| b.repeat((256 / cout).max(1)));
        let fill = |yc: &mut [f32]| {
            for r in yc.chunks_mut(btile.len()) {
                r.copy_from_slice(&btile[..r.len()]);
            }
        };
        if let Some(t) = self.taps() {
            // Direct: each image padded once into `xpad` (kept for the backward).
            let (ii, pl) = (self.win.in_image(), t.in_len());
            let n = y.len() / (ri * cout);
            crate::elem::ensure(xpad, n * pl);
            let body = |i: usize, yi: &mut [f32], xp: &mut [f32], p: Option<&mut [f32]>| {
                if bias.is_some() {
                    fill(yi);
                }
                t.pad_input(&x[i * ii..(i + 1) * ii], xp, bn_in);
                t.forward_image(xp, wmat, yi, bias.is_some());
                if let Some((a, b, relu)) = epi {
                    crate::norm::affine_inplace(yi, a, b, relu.is_some(), relu.unwrap_or(0.0));
                }
                stat(yi, p);
            };
            let it = y.par_chunks_mut(ri * cout).zip(xpad.par_chunks_mut(pl)).enumerate();
            match stats {
                Some(st) => it.zip(st.par_chunks_mut(rec)).for_each(|((i, (yi, xp)), p)| body(i, yi, xp, Some(p))),
                None => it.for_each(|(i, (yi, xp))| body(i, yi, xp, None)),
            }
            return;
        }
        assert!(bn_in.is_none() || self.direct, "bn_in needs the direct form or a 1x1 stride-1 GEMM");
        let scratch = if self.direct && bn_in.is_none() { 0 } else { pc * ri * kk };
        let body = |ch: usize, yc: &mut [f32], p: Option<&mut [f32]>| {
            let imgs = yc.len() / (ri * cout);
            let rows = imgs * ri;
            if bias.is_some() {
                fill(yc);
            }
            with_cols(scratch, |cols| {
                let lhs = self.lhs(x, ch * pc, imgs, bn_in, cols);
                matmul_seq(rows, cout, kk, yc, cout, bias.is_some(), View::rows(lhs, kk), View::rows(wmat, cout));
            });
            if let Some((a, b, relu)) = epi {
                crate::norm::affine_inplace(yc, a, b, relu.is_some(), relu.unwrap_or(0.0));
            }
            stat(yc, p);
        };
        let it = y.par_chunks_mut(pc * ri * cout).enumerate();
        match stats {
            Some(st) => it.zip(st.par_chunks_mut(rec)).for_each(|((ch, yc), p)| body(ch, yc, Some(p))),
            None => it.for_each(|(ch, yc)| body(ch, yc, None)),
        }
    }

    /// Whether the direct (im2col-free) form runs (see `Taps`).
    pub fn is_direct(&self) -> bool {
        self.taps().is_some()
    }

    /// Backward: `part` gets [`ConvPlan::groups`] partial kernel gradients (`[(ky, kx, ci), cout]`
    /// each; their sum in order is dW), `dx`, when given, is written (or added to when `acc`).
    /// Parallel over the groups, each a fixed run of chunks. `dy_of`: dY is computed image by
    /// image (`dy_of(i, dy_i)`, e.g. the deferred input gradient of the BN after this conv)
    /// into a per-thread scratch instead of read from `dy` (then unused).
    /// `db`: per-image column sums of dY (`[n, cout]`, the bias gradient's partials), with `dy_of`.
    /// `bn_in`: as in the forward; a 1x1 GEMM recomputes the BN's output of each chunk from `x`
    /// (the BN's input), the direct form reads the padded images `xpad` it kept.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        x: &[f32],
        bn_in: Option<&crate::pool::BnAct>,
        wmat: &[f32],
        xpad: &[f32],
        wflip: &mut Vec<f32>,
        dy: &[f32],
        dy_of: Option<DyOf>,
        part: &mut [f32],
        dx: Option<(&mut [f32], bool)>,
        db: Option<&mut [f32]>,
    ) {
        let (kk, cout, ri, ii) = (self.kk(), self.cout, self.rows_img(), self.win.in_image());
        let n = x.len() / ii;
        let pc = self.per_chunk();
        let nch = n.div_ceil(pc);
        let groups = self.groups(n);
        // Group k covers chunks nch·k/groups .. nch·(k+1)/groups; its images and dx are contiguous.
        let img_at = |k: usize| (nch * k / groups * pc).min(n);
        let (acc, mut dx) = match dx {
            Some((d, acc)) => (acc, Some(d)),
            None => (false, None),
        };
        let mut db = db;
        let mut jobs = Vec::with_capacity(groups);
        for (k, p) in part[..groups * kk * cout].chunks_exact_mut(kk * cout).enumerate() {
            let (i0, i1) = (img_at(k), img_at(k + 1));
            let d = dx.take().map(|d| {
                let (head, tail) = d.split_at_mut((i1 - i0) * ii);
                dx = Some(tail);
                head
            });
            let b = db.take().map(|d| {
                let (head, tail) = d.split_at_mut((i1 - i0) * cout);
                db = Some(tail);
                head
            });
            jobs.push((i0, i1, p, d, b));
        }
        if let Some(t) = self.taps() {
            // `xpad`: the padded images of the forward. The input gradient: a convolution of the
            // padded dY (stride 1), else dCols = dY · Wᵀ and col2im.
            let unit = t.unit_stride();
            if unit {
                dx_kernel(&self.win, cout, wmat, wflip);
            }
            let (xl, wflip) = (t.in_len(), &wflip[..]);
            let scratch = if unit { t.dy_len() } else { ri * kk };
            let own = if dy_of.is_some() { ri * cout } else { 0 };
            jobs.into_par_iter().for_each(|(i0, i1, p, mut d, mut b)| {
                with_cols(scratch + own, |buf| {
                    let (buf, dyb) = buf.split_at_mut(scratch);
                    for i in i0..i1 {
                        let dyi = match dy_of {
                            Some(f) => {
                                f(i, dyb);
                                &dyb[..]
                            }
                            None => &dy[i * ri * cout..(i + 1) * ri * cout],
                        };
                        if let Some(b) = b.as_deref_mut() {
                            crate::elem::col_sums_chunk(dyi, &mut b[(i - i0) * cout..(i - i0 + 1) * cout]);
                        }
                        t.kernel_grad_image(&xpad[i * xl..(i + 1) * xl], dyi, p, i > i0);
                        let Some(d) = d.as_deref_mut() else { continue };
                        let dxi = &mut d[(i - i0) * ii..(i - i0 + 1) * ii];
                        if unit {
                            t.pad_dy(dyi, buf);
                            t.dx_image(buf, wflip, dxi, acc);
                        } else {
                            let (dyv, wt) = (View::rows(dyi, cout), View::transposed(wmat, cout));
                            matmul_seq(ri, kk, cout, buf, kk, false, dyv, wt);
                            col2im_image(&self.win, buf, dxi, acc);
                        }
                    }
                });
            });
            return;
        }
        let scratch = if self.direct && bn_in.is_none() { 0 } else { pc * ri * kk };
        // With `dy_of`: a chunk's dY is computed into the scratch after the im2col part, and the
        // bias partials taken from it image by image.
        let own = if dy_of.is_some() { pc * ri * cout } else { 0 };
        jobs.into_par_iter().for_each(|(i0, i1, p, mut d, mut b)| {
            with_cols(scratch + own, |buf| {
                let (cols, dyb) = buf.split_at_mut(scratch);
                let mut i = i0;
                while i < i1 {
                    let imgs = pc.min(i1 - i);
                    let rows = imgs * ri;
                    let dyc: &[f32] = match dy_of {
                        Some(f) => {
                            for (j, dyi) in dyb[..rows * cout].chunks_exact_mut(ri * cout).enumerate() {
                                f(i + j, dyi);
                                if let Some(b) = b.as_deref_mut() {
                                    let at = (i + j - i0) * cout;
                                    crate::elem::col_sums_chunk(dyi, &mut b[at..at + cout]);
                                }
                            }
                            &dyb[..rows * cout]
                        }
                        None => &dy[i * ri * cout..(i + imgs) * ri * cout],
                    };
                    let lhs = self.lhs(x, i, imgs, bn_in, cols);
                    // dW partial (+)= colsᵀ · dY
                    matmul_seq(kk, cout, rows, p, cout, i > i0, View::transposed(lhs, kk), View::rows(dyc, cout));
                    if let Some(d) = d.as_deref_mut() {
                        let dxc = &mut d[(i - i0) * ii..(i - i0 + imgs) * ii];
                        if self.direct {
                            matmul_seq(
                                rows,
                                kk,
                                cout,
                                dxc,
                                kk,
                                acc,
                                View::rows(dyc, cout),
                                View::transposed(wmat, cout),
                            );
                        } else {
                            // dCols = dY · Wᵀ (reusing the scratch), then scatter-add onto the pixels.
                            let dc = &mut cols[..rows * kk];
                            matmul_seq(
                                rows,
                                kk,
                                cout,
                                dc,
                                kk,
                                false,
                                View::rows(dyc, cout),
                                View::transposed(wmat, cout),
                            );
                            for j in 0..imgs {
                                col2im_image(
                                    &self.win,
                                    &dc[j * ri * kk..(j + 1) * ri * kk],
                                    &mut dxc[j * ii..(j + 1) * ii],
                                    acc,
                                );
                            }
                        }
                    }
                    i += imgs;
                }
            });
        });
    }
}

/// A convolution computed on a zero-padded copy of each image, without im2col: for an output
/// row and a kernel row `ky`, the taps `(kx, ci)` of output pixel `ox` read `kw·c` consecutive
/// floats of the padded input row from pixel `ox·sw` on, so each product is [`matmul_segs`] with
/// one segment per kernel row (forward) or per output row (kernel gradient).
#[derive(Clone, Copy)]
struct Taps {
    g: Window,
    cout: usize,
}

impl Taps {
    /// Padded input: the `((oh - 1)·sh + kh) x ((ow - 1)·sw + kw)` pixels the windows cover,
    /// the image at `(pt, pl)`.
    fn in_dims(&self) -> (usize, usize) {
        let g = &self.g;
        ((g.oh - 1) * g.sh + g.kh, (g.ow - 1) * g.sw + g.kw)
    }
    fn unit_stride(&self) -> bool {
        self.g.sh == 1 && self.g.sw == 1
    }
    fn in_len(&self) -> usize {
        let (hp, wp) = self.in_dims();
        hp * wp * self.g.c
    }
    /// Padded output gradient: `(h + kh - 1) x (w + kw - 1)` pixels, dY at
    /// `(kh - 1 - pt, kw - 1 - pl)`.
    fn dy_dims(&self) -> (usize, usize) {
        (self.g.h + self.g.kh - 1, self.g.w + self.g.kw - 1)
    }
    fn dy_len(&self) -> usize {
        let (hq, wq) = self.dy_dims();
        hq * wq * self.cout
    }

    /// The padded image; `bn`: of `bn(img)` (the BN before, whose output is not stored).
    fn pad_input(&self, img: &[f32], xp: &mut [f32], bn: Option<&crate::pool::BnAct>) {
        let g = &self.g;
        let (hp, wp) = self.in_dims();
        let out = &mut xp[..hp * wp * g.c];
        match bn {
            None => pad(img, g.h, g.w, g.c, hp, wp, g.pt, g.pl, out),
            Some(f) => {
                let c = g.c;
                for (r, row) in out.chunks_exact_mut(wp * c).enumerate() {
                    if r < g.pt || r >= g.pt + g.h {
                        row.fill(0.0);
                        continue;
                    }
                    let src = &img[(r - g.pt) * g.w * c..(r - g.pt + 1) * g.w * c];
                    row[..g.pl * c].fill(0.0);
                    crate::pool::bn_act_pixels(src, f, &mut row[g.pl * c..(g.pl + g.w) * c]);
                    row[(g.pl + g.w) * c..].fill(0.0);
                }
            }
        }
    }

    fn pad_dy(&self, dy: &[f32], dyp: &mut [f32]) {
        let g = &self.g;
        let (hq, wq) = self.dy_dims();
        pad(dy, g.oh, g.ow, self.cout, hq, wq, g.kh - 1 - g.pt, g.kw - 1 - g.pl, &mut dyp[..hq * wq * self.cout]);
    }

    /// `y (+)= conv(x)` of one image, `xp` its padded copy (`acc`: `y` holds the bias).
    fn forward_image(&self, xp: &[f32], wmat: &[f32], y: &mut [f32], acc: bool) {
        let (g, cout) = (&self.g, self.cout);
        let (_, wp) = self.in_dims();
        let run = g.kw * g.c;
        let mut segs = vec![Seg { a: 0, b: 0, k: run }; g.kh];
        for (oy, yr) in y.chunks_exact_mut(g.ow * cout).enumerate() {
            for (ky, s) in segs.iter_mut().enumerate() {
                *s = Seg { a: (oy * g.sh + ky) * wp * g.c, b: ky * run, k: run };
            }
            matmul_segs(g.ow, cout, &segs, xp, g.sw * g.c, 1, wmat, cout, yr, cout, acc);
        }
    }

    /// Kernel gradient of one image, `[(ky, kx, ci), cout]`, written or added to (`acc`): for
    /// each `ky`, rows `(kx, ci)` = `kw·c` consecutive floats of the padded input, reduced over the
    /// output pixels, one segment per output row.
    fn kernel_grad_image(&self, xp: &[f32], dy: &[f32], dw: &mut [f32], acc: bool) {
        let (g, cout) = (&self.g, self.cout);
        let (_, wp) = self.in_dims();
        let run = g.kw * g.c;
        let mut segs = vec![Seg { a: 0, b: 0, k: g.ow }; g.oh];
        for ky in 0..g.kh {
            for (oy, s) in segs.iter_mut().enumerate() {
                *s = Seg { a: (oy * g.sh + ky) * wp * g.c, b: oy * g.ow, k: g.ow };
            }
            matmul_segs(run, cout, &segs, xp, 1, g.sw * g.c, dy, cout, &mut dw[ky * run * cout..], cout, acc);
        }
    }

    /// `dx (+)=` the input gradient of one image: the convolution of the padded dY with the
    /// flipped, transposed kernel `wflip` ([`dx_kernel`]).
    fn dx_image(&self, dyp: &[f32], wflip: &[f32], dx: &mut [f32], acc: bool) {
        let (g, cout) = (&self.g, self.cout);
        let (_, wq) = self.dy_dims();
        let run = g.kw * cout;
        let mut segs = vec![Seg { a: 0, b: 0, k: run }; g.kh];
        for (iy, xr) in dx.chunks_exact_mut(g.w * g.c).enumerate() {
            for (ky, s) in segs.iter_mut().enumerate() {
                *s = Seg { a: (iy + ky) * wq * cout, b: ky * run, k: run };
            }
            matmul_segs(g.w, g.c, &segs, dyp, cout, 1, wflip, g.c, xr, g.c, acc);
        }
    }
}

/// Copies an `h x w x c` image into a zeroed `hp x wp x c` one at `(top, left)`.
#[allow(clippy::too_many_arguments)]
fn pad(img: &[f32], h: usize, w: usize, c: usize, hp: usize, wp: usize, top: usize, left: usize, out: &mut [f32]) {
    for (r, row) in out.chunks_exact_mut(wp * c).enumerate().take(hp) {
        if r < top || r >= top + h {
            row.fill(0.0);
            continue;
        }
        let src = &img[(r - top) * w * c..(r - top + 1) * w * c];
        row[..left * c].fill(0.0);
        row[left * c..(left + w) * c].copy_from_slice(src);
        row[(left + w) * c..].fill(0.0);
    }
}

/// The kernel of the input gradient of a stride-1 convolution: `[(ky, kx, co), ci]` =
/// `wmat[(kh - 1 - ky, kw - 1 - kx, ci), co]`.
fn dx_kernel(g: &Window, cout: usize, wmat: &[f32], f: &mut Vec<f32>) {
    let (c, taps) = (g.c, g.kh * g.kw);
    crate::elem::ensure(f, taps * cout * c);
    for t in 0..taps {
        let src = taps - 1 - t;
        for ci in 0..c {
            for co in 0..cout {
                f[(t * cout + co) * c + ci] = wmat[(src * c + ci) * cout + co];
            }
        }
    }
}

/// `out = Σ_k part[k]` over `groups` records of `out.len()` floats, in record order.
pub(crate) fn sum_groups(part: &[f32], groups: usize, out: &mut [f32]) {
    let len = out.len();
    out.par_chunks_mut(crate::elem::EW_CHUNK).enumerate().for_each(|(j, o)| {
        let off = j * crate::elem::EW_CHUNK;
        o.copy_from_slice(&part[off..off + o.len()]);
        for k in 1..groups {
            let p = &part[k * len + off..k * len + off + o.len()];
            o.iter_mut().zip(p).for_each(|(o, &p)| *o += p);
        }
    });
}

/// Re-lays a burn `[out, in, kh, kw]` kernel as the GEMM matrix `[(ky, kx, in), out]`.
pub(crate) fn kernel_to_matrix(kernel: &[f32], out: usize, cin: usize, kh: usize, kw: usize, m: &mut [f32]) {
    for o in 0..out {
        for ci in 0..cin {
            for t in 0..kh * kw {
                m[(t * cin + ci) * out + o] = kernel[(o * cin + ci) * kh * kw + t];
            }
        }
    }
}

/// The inverse of [`kernel_to_matrix`]: a `[(ky, kx, in), out]` gradient back to burn's layout.
pub(crate) fn matrix_to_kernel(m: &[f32], out: usize, cin: usize, kh: usize, kw: usize, kernel: &mut [f32]) {
    for o in 0..out {
        for ci in 0..cin {
            for t in 0..kh * kw {
                kernel[(o * cin + ci) * kh * kw + t] = m[(t * cin + ci) * out + o];
            }
        }
    }
}

/// `emit` of a row-broadcast bias: each `[c]` row of `y` is set to `b`.
pub(crate) fn fill_rows(y: &mut [f32], b: &[f32]) {
    let c = b.len();
    let rows_per = (crate::elem::EW_CHUNK / c).max(1);
    y.par_chunks_mut(rows_per * c).for_each(|y| {
        for r in y.chunks_exact_mut(c) {
            emit(false, r, b.iter().copied());
        }
    });
}
