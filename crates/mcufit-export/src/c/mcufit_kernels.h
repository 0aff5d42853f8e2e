/* mcufit int8 kernels: bit-exact with TensorFlow Lite Micro's reference kernels.
 * C99, no dynamic memory, no runtime library beyond <stdint.h>.
 * Define MCUFIT_USE_SIMD=0 to disable the Cortex-M DSP (SMLAD) inner loops. */
#ifndef MCUFIT_KERNELS_H
#define MCUFIT_KERNELS_H

#include <stdint.h>

typedef struct {
    int32_t h, w, c;
} mf_shape;

/* Per-op requantization parameters (computed by mcufit exactly as TFLM's Prepare does). */
typedef struct {
    const int32_t *bias;   /* bias + input_offset * sum(filter) per output channel */
    const int32_t *mult;
    const int32_t *shift;
    int32_t input_offset;  /* -input zero point */
    int32_t output_offset; /* output zero point */
    int32_t act_min, act_max;
} mf_requant;

void mf_conv(const int8_t *in, mf_shape is, const int8_t *filter, int32_t kh, int32_t kw, int32_t fic,
             int32_t sh, int32_t sw, int32_t pad_top, int32_t pad_left, const mf_requant *q, int8_t *out,
             mf_shape os);
/* Constants of a 1x1 convolution, per pair of output channels (an odd last channel is paired with
 * a zero one) eight int32: {bias0, bias1, m0, rnd0, sw0, m1, rnd1, sw1}, where bias includes
 * input_offset * sum(filter), m is the multiplier and, with e = -shift (0..22),
 * rnd = (e ? 2^(e-1) : 0) + output_offset * 2^e and sw = e | (e ? 1 << 31 : 0). */
typedef struct {
    const int32_t *ch;
    int32_t act_min, act_max;
} mf_pw_params;

/* Convolution with groups 1 (1x1 ones included) through a two-pixel im2col: the receptive fields
 * of two output pixels are sign-extended into `scratch` (taps outside the input read `pad_value`,
 * the input zero point, which the bias fold cancels exactly), then every pair of filters runs over
 * both (SMLAD). `wint`: the OHWI filter rows ([ky][kx][ic], K = kh*kw*c values, zero-padded to a
 * multiple of 4) with output channels in pairs, per block of 4 values the first row's 4 bytes then
 * the second's; an odd last channel is paired with a zero row. `scratch`: Kp int32 words
 * (Kp = K rounded up to 4), plus Kp / 2 words when c is not a multiple of 4. */
void mf_conv_fast(const int8_t *in, mf_shape is, const int8_t *wint, int32_t kh, int32_t kw, int32_t sh, int32_t sw,
                  int32_t pad_top, int32_t pad_left, int32_t pad_value, const mf_pw_params *q, int32_t *scratch,
                  int8_t *out, mf_shape os);
/* Depthwise convolution with the same shortcut requantization. `wx`: per group of 4 channels
 * (the last one zero-padded) and tap, the words (2w0, 2w2), (2w1, 2w3) as int16 pairs; `taps`:
 * the input offsets (ky * is.w + kx) * c of the kh*kw taps; `q->ch`: per group sixteen int32
 * {2b0, 2b1, 2b2, 2b3, m0, rnd0, sw0, ..., m3, rnd3, sw3} with b = bias + input_offset *
 * sum(filter); taps outside the input read `pad_value`, the input zero point. */
void mf_depthwise_fast(const int8_t *in, mf_shape is, const int32_t *wx, const int32_t *taps, int32_t kh, int32_t kw,
                       int32_t sh, int32_t sw, int32_t pad_top, int32_t pad_left, int32_t pad_value,
                       const mf_pw_params *q, int8_t *out, mf_shape os);
void mf_depthwise(const int8_t *in, mf_shape is, const int8_t *filter, int32_t kh, int32_t kw, int32_t sh,
                  int32_t sw, int32_t pad_top, int32_t pad_left, const mf_requant *q, int8_t *out, mf_shape os);
void mf_fully_connected(const int8_t *in, int32_t depth, const int8_t *filter, int32_t units, const mf_requant *q,
                        int8_t *out);

typedef struct {
    int32_t input1_offset, input2_offset, left_shift;
    int32_t input1_multiplier, input1_shift, input2_multiplier, input2_shift;
    int32_t output_multiplier, output_shift, output_offset, act_min, act_max;
} mf_add_params;

/* ADD with the shortcut requantization (see mf_pw_params): k = {m1, rnd1, sw1, m2, rnd2, sw2, mo,
 * rndo, swo}, the output offset folded into rndo. Taken when all three shifts are in 0..22 and
 * the shifted values stay below 2^30 in magnitude. */
typedef struct {
    int32_t input1_offset, input2_offset, left_shift;
    int32_t k[9];
    int32_t act_min, act_max;
} mf_add_fast_params;

void mf_add_fast(const int8_t *a, const int8_t *b, int32_t n, const mf_add_fast_params *p, int8_t *out);
void mf_add(const int8_t *a, const int8_t *b, int32_t n, const mf_add_params *p, int8_t *out);
void mf_max_pool(const int8_t *in, mf_shape is, int32_t ph, int32_t pw, int32_t sh, int32_t sw, int32_t pad_top,
                 int32_t pad_left, int32_t act_min, int32_t act_max, int8_t *out, mf_shape os);
void mf_avg_pool(const int8_t *in, mf_shape is, int32_t ph, int32_t pw, int32_t sh, int32_t sw, int32_t pad_top,
                 int32_t pad_left, int32_t act_min, int32_t act_max, int8_t *out, mf_shape os);
/* Copies `in` (pixels x c channels) into channels [offset, offset + c) of `out` (pixels x oc). */
void mf_concat_part(const int8_t *in, int32_t pixels, int32_t c, int32_t offset, int32_t oc, int32_t act_min,
                    int32_t act_max, int8_t *out);
void mf_softmax(const int8_t *in, int32_t rows, int32_t depth, int32_t input_multiplier, int32_t input_left_shift,
                int32_t diff_min, int8_t *out);
void mf_copy(const int8_t *in, int32_t n, int8_t *out);

#endif
