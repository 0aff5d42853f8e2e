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
#if MCUFIT_USE_SIMD
        r.v00 = __ssat(r.v00, 8);
        r.v10 = __ssat(r.v10, 8);
        r.v01 = __ssat(r.v01, 8);
        r.v11 = __ssat(r.v11, 8);
#else
        r.v00 = mf_clamp(r.v00, -128, 127);
        r.v10 = mf_clamp(r.v10, -128, 127);
        r.v01 = mf_clamp(r.v01, -128, 127);
        r.v11 = mf_clamp(r.v11, -128, 127);
#endif
    } else {
        r.v00 = mf_clamp(r.v00, amin, amax);
        r.v10 = mf_clamp(r.v10, amin, amax);
        r.v01 = mf_clamp(r.v01, amin, amax);
        r.v11 = mf_clamp(r.v11, amin, amax);
    }
    return r;
}

void mf_pointwise(const int8_t *in, mf_shape is, const int8_t *wint, int32_t sh, int32_t sw, const mf_pw_params *q,
                  int32_t *scratch, int8_t *out, mf_shape os) {
    const int32_t c = is.c, cp = (c + 3) & ~3, oc_n = os.c, npix = os.h * os.w;
    const int32_t amin = q->act_min, amax = q->act_max;
    const int full = amin == -128 && amax == 127;
    int32_t p, oy = 0, ox = 0;
    for (p = 0; p < npix; p += 2) {
        const int8_t *x0, *x1, *w = wint;
        const int32_t *prm = q->ch;
        int8_t *y0 = out + p * oc_n, *y1;
        int32_t oc;
        mf_quad r;
        x0 = in + (oy * sh * is.w + ox * sw) * c;
        if (++ox == os.w) { ox = 0; ++oy; }
        if (p + 1 < npix) {
            x1 = in + (oy * sh * is.w + ox * sw) * c;
            if (++ox == os.w) { ox = 0; ++oy; }
            y1 = y0 + oc_n;
        } else {
            /* A last lone pixel is computed twice and stored twice in place. */
            x1 = x0;
            y1 = y0;
        }
        mf_expand_pair(x0, x1, c, scratch);
        for (oc = 0; oc < oc_n; oc += 2, w += 2 * cp, prm += 8) {
            r = mf_pw_pair(scratch, w, cp, prm, full, amin, amax);
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
