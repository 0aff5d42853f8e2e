/* mcufit int8 kernels; see mcufit_kernels.h. Arithmetic follows TFLM's reference_integer_ops
 * (double-rounding MultiplyByQuantizedMultiplier) so results are bit-exact. */
#include "mcufit_kernels.h"

#ifndef MCUFIT_USE_SIMD
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#define MCUFIT_USE_SIMD 1
#else
#define MCUFIT_USE_SIMD 0
#endif
#endif

#if MCUFIT_USE_SIMD
#include <arm_acle.h>
/* Rotate right by 8; gcc folds it into the SXTB16 rotate operand. */
static inline int32_t mf_ror8(int32_t x) { return (int32_t)(((uint32_t)x >> 8) | ((uint32_t)x << 24)); }
#endif

/* gemmlowp SaturatingRoundingDoublingHighMul. (ab + nudge) / 2^31 with C truncation equals
 * floor((ab + 2^30) / 2^31) for both signs, i.e. an arithmetic shift. */
static inline int32_t mf_srdhm(int32_t a, int32_t b) {
    int64_t ab;
    if (a == b && a == INT32_MIN) return INT32_MAX;
    ab = (int64_t)a * (int64_t)b;
    return (int32_t)((ab + ((int64_t)1 << 30)) >> 31);
}

/* gemmlowp RoundingDivideByPOT: round to nearest, ties away from zero. */
static inline int32_t mf_rdbpot(int32_t x, int32_t e) {
    const int32_t mask = (int32_t)(((int64_t)1 << e) - 1);
    const int32_t rem = x & mask;
    const int32_t thr = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> e) + (rem > thr ? 1 : 0);
}

/* TFLM MultiplyByQuantizedMultiplier (int32, double rounding). */
static inline int32_t mf_mbqm(int32_t x, int32_t m, int32_t shift) {
    const int32_t ls = shift > 0 ? shift : 0;
    const int32_t rs = shift > 0 ? 0 : -shift;
    return mf_rdbpot(mf_srdhm((int32_t)((uint32_t)x << ls), m), rs);
}

/* Requantize one accumulator (bias already added). Multipliers are non-negative
 * (QuantizeMultiplier), so SRDHM's saturating case cannot occur. */
static inline int8_t mf_requant1(int32_t acc, int32_t mult, int32_t shift, int32_t out_off, int32_t act_min,
                                 int32_t act_max) {
    const int32_t x = (int32_t)((uint32_t)acc << (shift > 0 ? shift : 0));
    const int32_t hi = (int32_t)(((int64_t)x * (int64_t)mult + ((int64_t)1 << 30)) >> 31);
    acc = mf_rdbpot(hi, shift > 0 ? 0 : -shift) + out_off;
    if (acc < act_min) acc = act_min;
    if (acc > act_max) acc = act_max;
    return (int8_t)acc;
}

static inline int8_t mf_out(int32_t acc, const mf_requant *q, int32_t ch) {
    return mf_requant1(acc, q->mult[ch], q->shift[ch], q->output_offset, q->act_min, q->act_max);
}

static inline int32_t mf_load32(const int8_t *p) {
    /* Byte-wise assembly compiles to one unaligned LDR on Cortex-M3/M4 (little endian). */
    const uint8_t *u = (const uint8_t *)p;
    return (int32_t)((uint32_t)u[0] | ((uint32_t)u[1] << 8) | ((uint32_t)u[2] << 16) | ((uint32_t)u[3] << 24));
}

/* sum(a[i] * b[i]) over n int8 pairs. */
static int32_t mf_dot(const int8_t *a, const int8_t *b, int32_t n) {
    int32_t acc = 0;
    int32_t i = 0;
#if MCUFIT_USE_SIMD
    for (; i + 4 <= n; i += 4) {
        const int32_t va = mf_load32(a + i), vb = mf_load32(b + i);
        acc = __smlad(__sxtb16(va), __sxtb16(vb), acc);
        acc = __smlad(__sxtb16(mf_ror8(va)), __sxtb16(mf_ror8(vb)), acc);
    }
#endif
    for (; i < n; ++i) acc += (int32_t)a[i] * (int32_t)b[i];
    return acc;
}

static int32_t mf_sum(const int8_t *a, int32_t n) {
    int32_t s = 0, i;
    for (i = 0; i < n; ++i) s += a[i];
    return s;
}

/* ---- 1x1 convolution ------------------------------------------------------------------------
 * Per pixel pair, the two pixels' channels are sign-extended once into `scratch` as int16 pairs in
 * SMLAD order: per block of 4 channels, the words (x0,x2), (x1,x3) of the first pixel, then of the
 * second (zero padding up to a multiple of 4). The filter holds output channels in pairs, per
 * 4-channel block the 4 bytes of the first channel then of the second, so one LDRD fetches both
 * and each expanded activation word feeds two filters (CMSIS-NN's mat_mult_kernel_s8_s16 idea).
 * Requantization uses per-channel constants precomputed by the exporter; see mf_pw_out. */

static inline int32_t mf_pack16(int32_t lo, int32_t hi) {
    return (int32_t)(((uint32_t)lo & 0xFFFFu) | ((uint32_t)hi << 16));
}

#if !MCUFIT_USE_SIMD
/* Portable SMLAD: acc + lo16(a) * lo16(b) + hi16(a) * hi16(b). */
static inline int32_t mf_smlad_c(int32_t a, int32_t b, int32_t acc) {
    const int32_t al = (int16_t)(a & 0xFFFF), ah = (int16_t)((uint32_t)a >> 16);
    const int32_t bl = (int16_t)(b & 0xFFFF), bh = (int16_t)((uint32_t)b >> 16);
    return (int32_t)((uint32_t)acc + (uint32_t)(al * bl) + (uint32_t)(ah * bh));
}
/* Portable SXTB16 of the even bytes (0, 2) and of the odd bytes (1, 3). */
static inline int32_t mf_even_c(int32_t x) { return mf_pack16((int8_t)(x & 0xFF), (int8_t)((x >> 16) & 0xFF)); }
static inline int32_t mf_odd_c(int32_t x) { return mf_pack16((int8_t)((x >> 8) & 0xFF), (int8_t)((uint32_t)x >> 24)); }
#endif

static void mf_expand_pair(const int8_t *x0, const int8_t *x1, int32_t c, int32_t *s) {
    int32_t k = 0;
    for (; k + 4 <= c; k += 4, s += 4) {
        const int32_t a = mf_load32(x0 + k), b = mf_load32(x1 + k);
#if MCUFIT_USE_SIMD
        s[0] = __sxtb16(a);
        s[1] = __sxtb16(mf_ror8(a));
        s[2] = __sxtb16(b);
        s[3] = __sxtb16(mf_ror8(b));
#else
        s[0] = mf_even_c(a);
        s[1] = mf_odd_c(a);
        s[2] = mf_even_c(b);
        s[3] = mf_odd_c(b);
#endif
    }
    if (k < c) {
        int32_t v0[4] = {0, 0, 0, 0}, v1[4] = {0, 0, 0, 0}, j;
        for (j = 0; k + j < c; ++j) {
            v0[j] = x0[k + j];
            v1[j] = x1[k + j];
        }
        s[0] = mf_pack16(v0[0], v0[2]);
        s[1] = mf_pack16(v0[1], v0[3]);
        s[2] = mf_pack16(v1[0], v1[2]);
        s[3] = mf_pack16(v1[1], v1[3]);
    }
}

/* Requantizes one accumulator with its channel's precomputed constants (m, rnd, sw; see
 * mcufit_kernels.h). The exporter only takes this path when every channel has shift <= 0,
 * e = -shift <= 22 and |acc| < 2^30, where it equals TFLM's MultiplyByQuantizedMultiplier plus
 * the output offset exactly:
 *   SRDHM(acc, m) + rnd = floor((2 acc m + 2^31) / 2^32) + rnd       (one SMMLAR)
 *   RoundingDivideByPOT(v, e) = (v + 2^(e-1) - [v < 0]) >> e, e >= 1  (sign of v = sign of acc)
 * and the output offset folds into rnd as offset << e. The result is not clamped yet. */
static inline int32_t mf_pw_rq(int32_t acc, int32_t m, int32_t rnd, int32_t sw) {
    const int32_t x = (int32_t)((uint32_t)acc << 1);
    int32_t y;
#if MCUFIT_USE_SIMD
    int32_t t;
    __asm__("smmlar %[y], %[x], %[m], %[r]\n\t"
            "and %[t], %[w], %[x], asr #31\n\t"
            "add %[y], %[y], %[t], asr #31\n\t"
            "asr %[y], %[y], %[w]"
            : [y] "=&r"(y), [t] "=&r"(t)
            : [x] "r"(x), [m] "r"(m), [r] "r"(rnd), [w] "r"(sw));
#else
    y = (int32_t)(((int64_t)x * (int64_t)m + ((int64_t)1 << 31)) >> 32) + rnd;
    if (x < 0 && (sw & (int32_t)0x80000000u)) y -= 1;
    y >>= (sw & 0xFF);
#endif
    return y;
}

static inline int32_t mf_clamp(int32_t y, int32_t lo, int32_t hi) {
    if (y < lo) y = lo;
    if (y > hi) y = hi;
    return y;
}

/* Saturates to int8 (one SSAT on the DSP path). */
static inline int32_t mf_sat8(int32_t y) {
#if MCUFIT_USE_SIMD
    return __ssat(y, 8);
#else
    return mf_clamp(y, -128, 127);
#endif
}

/* Four outputs: 2 pixels x 2 filters. */
typedef struct {
    int32_t v00, v01, v10, v11;
} mf_quad;

/* Accumulates one pair of filters (`w`, cp input channels) over the expanded pixel pair in
 * `scratch` and requantizes; `prm`: the pair's 8 constants. `full`: the activation range is all
 * of int8, so a saturation is the whole clamp. */
static inline mf_quad mf_pw_pair(const int32_t *scratch, const int8_t *w, int32_t cp, const int32_t *prm, int full,
                                 int32_t amin, int32_t amax) {
    int32_t a00 = prm[0], a01 = prm[1];
    int32_t a10 = a00, a11 = a01;
    const int32_t *s = scratch;
    mf_quad r;
#if MCUFIT_USE_SIMD
    int32_t n = cp >> 3, x0e, x0o, x1e, x1o, wa, wb, t;
    /* 4 channels x 2 pixels x 2 filters: 3 LDRD, 4 SXTB16, 8 SMLAD. */
#define MF_PW_BLOCK                                  \
    "ldrd %[x0e], %[x0o], [%[s]], #8\n\t"            \
    "ldrd %[x1e], %[x1o], [%[s]], #8\n\t"            \
    "ldrd %[wa], %[wb], [%[w]], #8\n\t"              \
    "sxtb16 %[t], %[wa]\n\t"                         \
    "smlad %[a00], %[x0e], %[t], %[a00]\n\t"         \
    "smlad %[a10], %[x1e], %[t], %[a10]\n\t"         \
    "sxtb16 %[wa], %[wa], ror #8\n\t"                \
    "smlad %[a00], %[x0o], %[wa], %[a00]\n\t"        \
    "smlad %[a10], %[x1o], %[wa], %[a10]\n\t"        \
    "sxtb16 %[t], %[wb]\n\t"                         \
    "smlad %[a01], %[x0e], %[t], %[a01]\n\t"         \
    "smlad %[a11], %[x1e], %[t], %[a11]\n\t"         \
    "sxtb16 %[wb], %[wb], ror #8\n\t"                \
    "smlad %[a01], %[x0o], %[wb], %[a01]\n\t"        \
    "smlad %[a11], %[x1o], %[wb], %[a11]\n\t"
#define MF_PW_OPERANDS                                                                                     \
    : [a00] "+r"(a00), [a01] "+r"(a01), [a10] "+r"(a10), [a11] "+r"(a11), [s] "+r"(s), [w] "+r"(w),      \
      [n] "+r"(n), [x0e] "=&r"(x0e), [x0o] "=&r"(x0o), [x1e] "=&r"(x1e), [x1o] "=&r"(x1o), [wa] "=&r"(wa), \
      [wb] "=&r"(wb), [t] "=&r"(t)                                                                         \
    :                                                                                                      \
    : "memory", "cc"
    if (cp & 4) {
        __asm__ volatile(MF_PW_BLOCK MF_PW_OPERANDS);
    }
    if (n > 0) {
        __asm__ volatile("1:\n\t" MF_PW_BLOCK MF_PW_BLOCK "subs %[n], %[n], #1\n\t"
                         "bne 1b" MF_PW_OPERANDS);
    }
#undef MF_PW_BLOCK
#undef MF_PW_OPERANDS
#else
    int32_t k;
    for (k = 0; k < cp; k += 4, s += 4, w += 8) {
        const int32_t wa = mf_load32(w), wb = mf_load32(w + 4);
        const int32_t wae = mf_even_c(wa), wao = mf_odd_c(wa), wbe = mf_even_c(wb), wbo = mf_odd_c(wb);
        a00 = mf_smlad_c(s[1], wao, mf_smlad_c(s[0], wae, a00));
        a10 = mf_smlad_c(s[3], wao, mf_smlad_c(s[2], wae, a10));
        a01 = mf_smlad_c(s[1], wbo, mf_smlad_c(s[0], wbe, a01));
        a11 = mf_smlad_c(s[3], wbo, mf_smlad_c(s[2], wbe, a11));
    }
#endif
    r.v00 = mf_pw_rq(a00, prm[2], prm[3], prm[4]);
    r.v10 = mf_pw_rq(a10, prm[2], prm[3], prm[4]);
    r.v01 = mf_pw_rq(a01, prm[5], prm[6], prm[7]);
    r.v11 = mf_pw_rq(a11, prm[5], prm[6], prm[7]);
    if (full) {
        r.v00 = mf_sat8(r.v00);
        r.v10 = mf_sat8(r.v10);
        r.v01 = mf_sat8(r.v01);
        r.v11 = mf_sat8(r.v11);
    } else {
        r.v00 = mf_clamp(r.v00, amin, amax);
        r.v10 = mf_clamp(r.v10, amin, amax);
        r.v01 = mf_clamp(r.v01, amin, amax);
        r.v11 = mf_clamp(r.v11, amin, amax);
    }
    return r;
}

#if MCUFIT_USE_SIMD
#define MF_EVEN(x) __sxtb16(x)
#define MF_ODD(x) __sxtb16(mf_ror8(x))
#else
#define MF_EVEN(x) mf_even_c(x)
#define MF_ODD(x) mf_odd_c(x)
#endif

/* Expands the receptive fields of two output pixels (input corners (iy0, ix0) and (iy1, ix1))
 * straight from the input when c is a multiple of 4 (a 4-channel block never straddles two
 * taps); taps outside the input read `padw` (the input zero point in all four bytes). */
static void mf_expand_taps(const int8_t *in, mf_shape is, int32_t kh, int32_t kw, int32_t iy0, int32_t ix0,
                           int32_t iy1, int32_t ix1, int32_t padw, int32_t *s) {
    const int32_t c = is.c;
    int32_t ky, kx, k;
    for (ky = 0; ky < kh; ++ky) {
        const int32_t ya = iy0 + ky, yb = iy1 + ky;
        const int va = ya >= 0 && ya < is.h, vb = yb >= 0 && yb < is.h;
        for (kx = 0; kx < kw; ++kx) {
            const int32_t xa = ix0 + kx, xb = ix1 + kx;
            const int8_t *pa = (va && xa >= 0 && xa < is.w) ? in + (ya * is.w + xa) * c : 0;
            const int8_t *pb = (vb && xb >= 0 && xb < is.w) ? in + (yb * is.w + xb) * c : 0;
            if (pa && pb) {
                for (k = 0; k < c; k += 4, s += 4) {
                    const int32_t a = mf_load32(pa + k), b = mf_load32(pb + k);
                    s[0] = MF_EVEN(a);
                    s[1] = MF_ODD(a);
                    s[2] = MF_EVEN(b);
                    s[3] = MF_ODD(b);
                }
            } else {
                for (k = 0; k < c; k += 4, s += 4) {
                    const int32_t a = pa ? mf_load32(pa + k) : padw, b = pb ? mf_load32(pb + k) : padw;
                    s[0] = MF_EVEN(a);
                    s[1] = MF_ODD(a);
                    s[2] = MF_EVEN(b);
                    s[3] = MF_ODD(b);
                }
            }
        }
    }
}

/* The receptive field of one output pixel as kh*kw*c bytes ([ky][kx][ic], the filter's order),
 * `pad` outside the input. A kernel row that lies inside the input is kw*c contiguous bytes of
 * it: copied in one run (the common case; per-tap checks only on border rows). */
static void mf_patch(const int8_t *in, mf_shape is, int32_t kh, int32_t kw, int32_t iy0, int32_t ix0, int8_t pad,
                     int8_t *dst) {
    const int32_t c = is.c, row = kw * c;
    const int cols_inside = ix0 >= 0 && ix0 + kw <= is.w;
    int32_t ky, kx, k;
    for (ky = 0; ky < kh; ++ky) {
        const int32_t iy = iy0 + ky;
        if (iy < 0 || iy >= is.h) {
            for (k = 0; k < row; ++k) *dst++ = pad;
        } else if (cols_inside) {
            const int8_t *src = in + (iy * is.w + ix0) * c;
            for (k = 0; k < row; ++k) dst[k] = src[k];
            dst += row;
        } else {
            for (kx = 0; kx < kw; ++kx) {
                const int32_t ix = ix0 + kx;
                if (ix >= 0 && ix < is.w) {
                    const int8_t *src = in + (iy * is.w + ix) * c;
                    for (k = 0; k < c; ++k) *dst++ = src[k];
                } else {
                    for (k = 0; k < c; ++k) *dst++ = pad;
                }
            }
        }
    }
}

void mf_conv_fast(const int8_t *in, mf_shape is, const int8_t *wint, int32_t kh, int32_t kw, int32_t sh, int32_t sw,
                  int32_t pad_top, int32_t pad_left, int32_t pad_value, const mf_pw_params *q, int32_t *scratch,
                  int8_t *out, mf_shape os) {
    const int32_t c = is.c, kk = kh * kw * c, kp = (kk + 3) & ~3, oc_n = os.c, npix = os.h * os.w;
    const int32_t amin = q->act_min, amax = q->act_max;
    const int full = amin == -128 && amax == 127;
    const int32_t padw = (int32_t)(((uint32_t)pad_value & 0xFFu) * 0x01010101u);
    int8_t *const patch = (int8_t *)(scratch + kp);
    int32_t p, oy = 0, ox = 0;
    for (p = 0; p < npix; p += 2) {
        const int8_t *w = wint;
        const int32_t *prm = q->ch;
        int8_t *y0 = out + p * oc_n, *y1;
        int32_t oc, iy0, ix0, iy1, ix1;
        mf_quad r;
        iy0 = oy * sh - pad_top;
        ix0 = ox * sw - pad_left;
        if (++ox == os.w) { ox = 0; ++oy; }
        if (p + 1 < npix) {
            iy1 = oy * sh - pad_top;
            ix1 = ox * sw - pad_left;
            if (++ox == os.w) { ox = 0; ++oy; }
            y1 = y0 + oc_n;
        } else {
            /* A last lone pixel is computed twice and stored twice in place. */
            iy1 = iy0;
            ix1 = ix0;
            y1 = y0;
        }
        if ((c & 3) == 0) {
            mf_expand_taps(in, is, kh, kw, iy0, ix0, iy1, ix1, padw, scratch);
        } else {
            mf_patch(in, is, kh, kw, iy0, ix0, (int8_t)pad_value, patch);
            mf_patch(in, is, kh, kw, iy1, ix1, (int8_t)pad_value, patch + kp);
            mf_expand_pair(patch, patch + kp, kk, scratch);
        }
        for (oc = 0; oc < oc_n; oc += 2, w += 2 * kp, prm += 8) {
            r = mf_pw_pair(scratch, w, kp, prm, full, amin, amax);
            y0[oc] = (int8_t)r.v00;
            y1[oc] = (int8_t)r.v10;
            if (oc + 1 < oc_n) {
                y0[oc + 1] = (int8_t)r.v01;
                y1[oc + 1] = (int8_t)r.v11;
            }
        }
    }
}

void mf_conv(const int8_t *in, mf_shape is, const int8_t *filter, int32_t kh, int32_t kw, int32_t fic,
             int32_t sh, int32_t sw, int32_t pad_top, int32_t pad_left, const mf_requant *q, int8_t *out,
             mf_shape os) {
    const int32_t groups = is.c / fic;
    const int32_t per_group = os.c / groups;
    int32_t oy, ox, oc, ky, kx;
    for (oy = 0; oy < os.h; ++oy) {
        const int32_t iy0 = oy * sh - pad_top;
        for (ox = 0; ox < os.w; ++ox) {
            const int32_t ix0 = ox * sw - pad_left;
            const int interior = iy0 >= 0 && ix0 >= 0 && iy0 + kh <= is.h && ix0 + kw <= is.w;
            for (oc = 0; oc < os.c; ++oc) {
                const int32_t g = oc / per_group;
                /* q->bias already holds input_offset * sum(filter[oc]); taps outside the image
                 * contribute nothing in TFLM, so remove their share at the border. */
                int32_t acc = q->bias[oc];
                for (ky = 0; ky < kh; ++ky) {
                    const int32_t iy = iy0 + ky;
                    for (kx = 0; kx < kw; ++kx) {
                        const int32_t ix = ix0 + kx;
                        const int8_t *w = filter + ((oc * kh + ky) * kw + kx) * fic;
                        if (interior || (iy >= 0 && iy < is.h && ix >= 0 && ix < is.w)) {
                            acc += mf_dot(w, in + (iy * is.w + ix) * is.c + g * fic, fic);
                        } else {
                            acc -= q->input_offset * mf_sum(w, fic);
                        }
                    }
                }
                out[(oy * os.w + ox) * os.c + oc] = mf_out(acc, q, oc);
            }
        }
    }
}

/* Depthwise convolution, 4 channels at a time. The exporter stores the filter sign-extended and
 * doubled as int16 pairs in SMLAxy order, per group of 4 channels and tap the words
 * (2w0, 2w2), (2w1, 2w3), so a tap costs one input word, two SXTB16 and four 16x16
 * multiply-accumulates (SMLABB/SMLATT), and the accumulators hold 2 * acc, which the shortcut
 * requantization takes directly. Taps outside the input read `pad_value` (the input zero point),
 * cancelled exactly by the folded bias. `taps`: input offsets (ky * is.w + kx) * c of the kh*kw
 * taps. Constants per group: {2b0, 2b1, 2b2, 2b3, m0, rnd0, sw0, ..., m3, rnd3, sw3}. */
static inline int32_t mf_rq2(int32_t x2, int32_t m, int32_t rnd, int32_t sw) {
    int32_t y;
#if MCUFIT_USE_SIMD
    int32_t t;
    __asm__("smmlar %[y], %[x], %[m], %[r]\n\t"
            "and %[t], %[w], %[x], asr #31\n\t"
            "add %[y], %[y], %[t], asr #31\n\t"
            "asr %[y], %[y], %[w]"
            : [y] "=&r"(y), [t] "=&r"(t)
            : [x] "r"(x2), [m] "r"(m), [r] "r"(rnd), [w] "r"(sw));
#else
    y = (int32_t)(((int64_t)x2 * (int64_t)m + ((int64_t)1 << 31)) >> 32) + rnd;
    if (x2 < 0 && (sw & (int32_t)0x80000000u)) y -= 1;
    y >>= (sw & 0xFF);
#endif
    return y;
}

#if MCUFIT_USE_SIMD
/* SXTB16 of the odd bytes, the rotation folded into the instruction. */
static inline int32_t mf_sxtb16_odd(int32_t x) {
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
#define MF_DW_MAC(xv, we, wo)                      \
    do {                                           \
        const int32_t xe_ = __sxtb16(xv);          \
        const int32_t xo_ = mf_sxtb16_odd(xv);     \
        a0 = __smlabb(xe_, (we), a0);              \
        a2 = __smlatt(xe_, (we), a2);              \
        a1 = __smlabb(xo_, (wo), a1);              \
        a3 = __smlatt(xo_, (wo), a3);              \
    } while (0)
#else
#define MF_DW_MAC(xv, we, wo)                                                                    \
    do {                                                                                         \
        const int32_t xe_ = mf_even_c(xv), xo_ = mf_odd_c(xv);                                  \
        a0 += (int32_t)(int16_t)(xe_ & 0xFFFF) * (int32_t)(int16_t)((we) & 0xFFFF);             \
        a2 += (int32_t)(int16_t)((uint32_t)xe_ >> 16) * (int32_t)(int16_t)((uint32_t)(we) >> 16); \
        a1 += (int32_t)(int16_t)(xo_ & 0xFFFF) * (int32_t)(int16_t)((wo) & 0xFFFF);             \
        a3 += (int32_t)(int16_t)((uint32_t)xo_ >> 16) * (int32_t)(int16_t)((uint32_t)(wo) >> 16); \
    } while (0)
#endif

/* The last group of fewer than 4 channels (and kernels above 32 taps): per tap and bounds check. */
static void mf_dw_slow(const int8_t *in, mf_shape is, const int32_t *f, const int32_t *taps, int32_t kh, int32_t kw,
                       int32_t ch, int32_t base, int32_t ky0, int32_t ky1, int32_t kx0, int32_t kx1, int32_t padw,
                       const int32_t *prm, int32_t amin, int32_t amax, int8_t *y) {
    const int32_t c = is.c;
    int32_t a0 = prm[0], a1 = prm[1], a2 = prm[2], a3 = prm[3], ky, kx, j;
    for (ky = 0; ky < kh; ++ky) {
        for (kx = 0; kx < kw; ++kx, ++taps, f += 2) {
            int32_t xv = padw;
            if (ky >= ky0 && ky < ky1 && kx >= kx0 && kx < kx1) {
                xv = 0;
                for (j = 0; j < 4 && ch + j < c; ++j)
                    xv |= (int32_t)(((uint32_t)(uint8_t)in[base + ch + j + *taps]) << (8 * j));
            }
            MF_DW_MAC(xv, f[0], f[1]);
        }
    }
    y[0] = (int8_t)mf_clamp(mf_rq2(a0, prm[4], prm[5], prm[6]), amin, amax);
    if (ch + 1 < c) y[1] = (int8_t)mf_clamp(mf_rq2(a1, prm[7], prm[8], prm[9]), amin, amax);
    if (ch + 2 < c) y[2] = (int8_t)mf_clamp(mf_rq2(a2, prm[10], prm[11], prm[12]), amin, amax);
    if (ch + 3 < c) y[3] = (int8_t)mf_clamp(mf_rq2(a3, prm[13], prm[14], prm[15]), amin, amax);
}

void mf_depthwise_fast(const int8_t *in, mf_shape is, const int32_t *wx, const int32_t *taps, int32_t kh, int32_t kw,
                       int32_t sh, int32_t sw, int32_t pad_top, int32_t pad_left, int32_t pad_value,
                       const mf_pw_params *q, int8_t *out, mf_shape os) {
    const int32_t c = is.c, whole = c >> 2, nt = kh * kw;
    const int32_t amin = q->act_min, amax = q->act_max;
    const int full = amin == -128 && amax == 127;
    const int32_t padw = (int32_t)(((uint32_t)pad_value & 0xFFu) * 0x01010101u);
    int32_t oy, ox, g;
    for (oy = 0; oy < os.h; ++oy) {
        const int32_t iy0 = oy * sh - pad_top;
        const int32_t ky0 = iy0 < 0 ? -iy0 : 0, ky1 = is.h - iy0 < kh ? is.h - iy0 : kh;
        for (ox = 0; ox < os.w; ++ox) {
            const int32_t ix0 = ox * sw - pad_left;
            const int32_t kx0 = ix0 < 0 ? -ix0 : 0, kx1 = is.w - ix0 < kw ? is.w - ix0 : kw;
            const int interior = ky0 == 0 && kx0 == 0 && ky1 == kh && kx1 == kw;
            const int32_t base = (iy0 * is.w + ix0) * c;
            int8_t *y = out + (oy * os.w + ox) * c;
            const int32_t *f = wx, *prm = q->ch;
            /* Bit t of `mask`: tap t lies inside the input (border pixels, up to 32 taps). */
            uint32_t mask = 0;
            if (!interior && nt <= 32) {
                int32_t ky, kx;
                for (ky = ky0; ky < ky1; ++ky)
                    for (kx = kx0; kx < kx1; ++kx) mask |= 1u << (ky * kw + kx);
            }
            for (g = 0; g < whole; ++g, prm += 16, y += 4) {
                int32_t a0 = prm[0], a1 = prm[1], a2 = prm[2], a3 = prm[3], r0, r1, r2, r3;
                if (interior) {
                    const int8_t *x = in + base + 4 * g;
                    const int32_t *t = taps, *t_end = taps + nt;
                    while (t < t_end) {
                        const int32_t xv = mf_load32(x + *t++);
                        MF_DW_MAC(xv, f[0], f[1]);
                        f += 2;
                    }
                } else if (nt <= 32) {
                    int32_t t;
                    for (t = 0; t < nt; ++t, f += 2) {
                        const int32_t xv = (mask >> t) & 1u ? mf_load32(in + (base + 4 * g + taps[t])) : padw;
                        MF_DW_MAC(xv, f[0], f[1]);
                    }
                } else {
                    mf_dw_slow(in, is, f, taps, kh, kw, 4 * g, base, ky0, ky1, kx0, kx1, padw, prm, amin, amax, y);
                    f += 2 * nt;
                    continue;
                }
                r0 = mf_rq2(a0, prm[4], prm[5], prm[6]);
                r1 = mf_rq2(a1, prm[7], prm[8], prm[9]);
                r2 = mf_rq2(a2, prm[10], prm[11], prm[12]);
                r3 = mf_rq2(a3, prm[13], prm[14], prm[15]);
                if (full) {
                    y[0] = (int8_t)mf_sat8(r0);
                    y[1] = (int8_t)mf_sat8(r1);
                    y[2] = (int8_t)mf_sat8(r2);
                    y[3] = (int8_t)mf_sat8(r3);
                } else {
                    y[0] = (int8_t)mf_clamp(r0, amin, amax);
                    y[1] = (int8_t)mf_clamp(r1, amin, amax);
                    y[2] = (int8_t)mf_clamp(r2, amin, amax);
                    y[3] = (int8_t)mf_clamp(r3, amin, amax);
                }
            }
            if (whole * 4 < c) mf_dw_slow(in, is, f, taps, kh, kw, whole * 4, base, ky0, ky1, kx0, kx1, padw, prm, amin, amax, y);
        }
    }
}
#undef MF_DW_MAC

void mf_depthwise(const int8_t *in, mf_shape is, const int8_t *filter, int32_t kh, int32_t kw, int32_t sh,
                  int32_t sw, int32_t pad_top, int32_t pad_left, const mf_requant *q, int8_t *out, mf_shape os) {
    const int32_t c = is.c;
    int32_t oy, ox, ch, ky, kx;
    for (oy = 0; oy < os.h; ++oy) {
        const int32_t iy0 = oy * sh - pad_top;
        for (ox = 0; ox < os.w; ++ox) {
            const int32_t ix0 = ox * sw - pad_left;
            int8_t *y = out + (oy * os.w + ox) * c;
            for (ch = 0; ch < c; ++ch) {
                /* Raw bias here: input_offset is applied per valid tap, as in TFLM. */
                int32_t acc = q->bias[ch];
                for (ky = 0; ky < kh; ++ky) {
                    const int32_t iy = iy0 + ky;
                    if (iy < 0 || iy >= is.h) continue;
                    for (kx = 0; kx < kw; ++kx) {
                        const int32_t ix = ix0 + kx;
                        if (ix < 0 || ix >= is.w) continue;
                        acc += (int32_t)filter[(ky * kw + kx) * c + ch] *
                               ((int32_t)in[(iy * is.w + ix) * c + ch] + q->input_offset);
                    }
                }
                y[ch] = mf_out(acc, q, ch);
            }
        }
    }
}

void mf_fully_connected(const int8_t *in, int32_t depth, const int8_t *filter, int32_t units, const mf_requant *q,
                        int8_t *out) {
    int32_t u;
    for (u = 0; u < units; ++u) out[u] = mf_out(q->bias[u] + mf_dot(filter + u * depth, in, depth), q, u);
}

void mf_add_fast(const int8_t *a, const int8_t *b, int32_t n, const mf_add_fast_params *p, int8_t *out) {
    const int32_t off1 = p->input1_offset, off2 = p->input2_offset, ls = p->left_shift + 1;
    const int32_t *k = p->k;
    const int32_t amin = p->act_min, amax = p->act_max;
    int32_t i;
    for (i = 0; i < n; ++i) {
        /* mf_rq2 takes twice the value: (input + offset) << (left_shift + 1). */
        const int32_t x1 = (int32_t)((uint32_t)(off1 + a[i]) << ls);
        const int32_t x2 = (int32_t)((uint32_t)(off2 + b[i]) << ls);
        const int32_t s = mf_rq2(x1, k[0], k[1], k[2]) + mf_rq2(x2, k[3], k[4], k[5]);
        out[i] = (int8_t)mf_clamp(mf_rq2((int32_t)((uint32_t)s << 1), k[6], k[7], k[8]), amin, amax);
    }
}

void mf_add(const int8_t *a, const int8_t *b, int32_t n, const mf_add_params *p, int8_t *out) {
    int32_t i;
    for (i = 0; i < n; ++i) {
        const int32_t v1 = (int32_t)((uint32_t)(p->input1_offset + a[i]) << p->left_shift);
        const int32_t v2 = (int32_t)((uint32_t)(p->input2_offset + b[i]) << p->left_shift);
        const int32_t s1 = mf_rdbpot(mf_srdhm(v1, p->input1_multiplier), -p->input1_shift);
        const int32_t s2 = mf_rdbpot(mf_srdhm(v2, p->input2_multiplier), -p->input2_shift);
        int32_t r = mf_rdbpot(mf_srdhm(s1 + s2, p->output_multiplier), -p->output_shift) + p->output_offset;
        if (r < p->act_min) r = p->act_min;
        if (r > p->act_max) r = p->act_max;
        out[i] = (int8_t)r;
    }
}

static void mf_pool(const int8_t *in, mf_shape is, int32_t ph, int32_t pw, int32_t sh, int32_t sw, int32_t pad_top,
                    int32_t pad_left, int32_t act_min, int32_t act_max, int8_t *out, mf_shape os, int is_max) {
    int32_t oy, ox, ch, fy, fx;
    for (oy = 0; oy < os.h; ++oy) {
        const int32_t iy0 = oy * sh - pad_top;
        const int32_t fy0 = iy0 < 0 ? -iy0 : 0;
        const int32_t fy1 = ph < is.h - iy0 ? ph : is.h - iy0;
        for (ox = 0; ox < os.w; ++ox) {
            const int32_t ix0 = ox * sw - pad_left;
            const int32_t fx0 = ix0 < 0 ? -ix0 : 0;
            const int32_t fx1 = pw < is.w - ix0 ? pw : is.w - ix0;
            for (ch = 0; ch < is.c; ++ch) {
                int32_t acc = is_max ? -128 : 0, count = 0;
                for (fy = fy0; fy < fy1; ++fy) {
                    for (fx = fx0; fx < fx1; ++fx) {
                        const int32_t v = in[((iy0 + fy) * is.w + ix0 + fx) * is.c + ch];
                        if (is_max) {
                            if (v > acc) acc = v;
                        } else {
                            acc += v;
                        }
                        ++count;
                    }
                }
                if (!is_max) {
                    if (count == 0) count = 1;
                    acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
                }
                if (acc < act_min) acc = act_min;
                if (acc > act_max) acc = act_max;
                out[(oy * os.w + ox) * is.c + ch] = (int8_t)acc;
            }
        }
    }
}

void mf_max_pool(const int8_t *in, mf_shape is, int32_t ph, int32_t pw, int32_t sh, int32_t sw, int32_t pad_top,
                 int32_t pad_left, int32_t act_min, int32_t act_max, int8_t *out, mf_shape os) {
    mf_pool(in, is, ph, pw, sh, sw, pad_top, pad_left, act_min, act_max, out, os, 1);
}

void mf_avg_pool(const int8_t *in, mf_shape is, int32_t ph, int32_t pw, int32_t sh, int32_t sw, int32_t pad_top,
                 int32_t pad_left, int32_t act_min, int32_t act_max, int8_t *out, mf_shape os) {
    mf_pool(in, is, ph, pw, sh, sw, pad_top, pad_left, act_min, act_max, out, os, 0);
}

void mf_concat_part(const int8_t *in, int32_t pixels, int32_t c, int32_t offset, int32_t oc, int32_t act_min,
                    int32_t act_max, int8_t *out) {
    int32_t p, ch;
    for (p = 0; p < pixels; ++p) {
        for (ch = 0; ch < c; ++ch) {
            int32_t v = in[p * c + ch];
            if (v < act_min) v = act_min;
            if (v > act_max) v = act_max;
            out[p * oc + offset + ch] = (int8_t)v;
        }
    }
}

void mf_copy(const int8_t *in, int32_t n, int8_t *out) {
    int32_t i;
    if (in == out) return;
    for (i = 0; i < n; ++i) out[i] = in[i];
}

/* ---- int8 softmax: gemmlowp fixed point, as reference_ops::Softmax<int8_t, int8_t> ---- */

static inline int32_t mf_sat_shl(int32_t x, int32_t e) {
    const int32_t thr = (int32_t)(((int64_t)1 << (31 - e)) - 1);
    if (x > thr) return INT32_MAX;
    if (x < -thr) return INT32_MIN;
    return (int32_t)((uint32_t)x << e);
}

static int32_t mf_exp_quarter(int32_t a) {
    const int32_t constant_term = 1895147668, one_third = 715827883;
    const int32_t x = (int32_t)((uint32_t)a + (1u << 28));
    const int32_t x2 = mf_srdhm(x, x), x3 = mf_srdhm(x2, x), x4 = mf_srdhm(x2, x2);
    const int32_t x4_over_4 = mf_rdbpot(x4, 2);
    const int32_t poly = mf_rdbpot((int32_t)((uint32_t)mf_srdhm((int32_t)((uint32_t)x4_over_4 + (uint32_t)x3), one_third) + (uint32_t)x2), 1);
    return (int32_t)((uint32_t)constant_term + (uint32_t)mf_srdhm(constant_term, (int32_t)((uint32_t)x + (uint32_t)poly)));
}

/* exp_on_negative_values for Q5.26 input; Q0.31 result. */
static int32_t mf_exp_neg_q5(int32_t a) {
    static const int32_t mult[7] = {1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242};
    const int32_t one_quarter = 1 << 24, mask = one_quarter - 1;
    const int32_t amq = (int32_t)((uint32_t)(a & mask) - (uint32_t)one_quarter);
    int32_t result = mf_exp_quarter(mf_sat_shl(amq, 5));
    const int32_t remainder = (int32_t)((uint32_t)amq - (uint32_t)a);
    int32_t i;
    for (i = 0; i < 7; ++i) {
        if (remainder & (1 << (24 + i))) result = mf_srdhm(result, mult[i]);
    }
    if (a == 0) result = INT32_MAX;
    return result;
}

static int32_t mf_one_over_one_plus_x(int32_t a) {
    const int64_t sum = (int64_t)a + INT32_MAX;
    const int32_t half_denominator = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
    int32_t x = (int32_t)((uint32_t)1515870810 + (uint32_t)mf_srdhm(half_denominator, -1010580540));
    int i;
    for (i = 0; i < 3; ++i) {
        const int32_t hdx = mf_srdhm(half_denominator, x);
        const int32_t one_minus = (int32_t)((uint32_t)(1 << 29) - (uint32_t)hdx);
        x = (int32_t)((uint32_t)x + (uint32_t)mf_sat_shl(mf_srdhm(x, one_minus), 2));
    }
    return mf_sat_shl(x, 1);
}

void mf_softmax(const int8_t *in, int32_t rows, int32_t depth, int32_t input_multiplier, int32_t input_left_shift,
                int32_t diff_min, int8_t *out) {
    int32_t r, c;
    for (r = 0; r < rows; ++r) {
        const int8_t *x = in + r * depth;
        int8_t *y = out + r * depth;
        int32_t max_in_row = -128, sum = 0, headroom, bits_over_unit, shifted_scale, exponent;
        uint32_t shifted;
        for (c = 0; c < depth; ++c)
            if (x[c] > max_in_row) max_in_row = x[c];
        for (c = 0; c < depth; ++c) {
            const int32_t diff = x[c] - max_in_row;
            if (diff >= diff_min) {
                const int32_t rescaled = mf_srdhm((int32_t)((uint32_t)diff << input_left_shift), input_multiplier);
                sum = (int32_t)((uint32_t)sum + (uint32_t)mf_rdbpot(mf_exp_neg_q5(rescaled), 12));
            }
        }
        headroom = 0;
        while (headroom < 32 && !(((uint32_t)sum << headroom) & 0x80000000u)) ++headroom;
        bits_over_unit = 12 - headroom;
        shifted = headroom >= 32 ? 0u : ((uint32_t)sum << headroom);
        shifted_scale = mf_one_over_one_plus_x((int32_t)(shifted - 0x80000000u));
        exponent = bits_over_unit + 31 - 8;
        if (exponent < 0) exponent = 0;
        if (exponent > 31) exponent = 31;
        for (c = 0; c < depth; ++c) {
            const int32_t diff = x[c] - max_in_row;
            if (diff >= diff_min) {
                const int32_t rescaled = mf_srdhm((int32_t)((uint32_t)diff << input_left_shift), input_multiplier);
                int32_t v = mf_rdbpot(mf_srdhm(shifted_scale, mf_exp_neg_q5(rescaled)), exponent) - 128;
                if (v < -128) v = -128;
                if (v > 127) v = 127;
                y[c] = (int8_t)v;
            } else {
                y[c] = -128;
            }
        }
    }
}
