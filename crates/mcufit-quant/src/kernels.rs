//! Int8 reference kernels, transcribed from TFLM's `reference_integer_ops` / `reference_ops`
//! (conv.h, depthwise_conv.h, fully_connected.h, add.h, pooling.h, softmax.h, concatenation.h).
//! Shapes were checked by `QuantizedModel::validate`, so indexing cannot go out of bounds.

use crate::fixedpoint as fp;
use crate::model::{AddParams, ChannelRequant, PreparedOp, QOp, QuantizedModel, SoftmaxParams, Window};

/// Runs op `op` of `model`, prepared as `p`, on the network input and the tensors computed so far.
pub(crate) fn eval(model: &QuantizedModel, op: &QOp, p: &PreparedOp<'_>, input: &[i8], vals: &[Vec<i8>]) -> Vec<i8> {
    let out_shape = op.kernel_shape;
    let x = |k: usize| vals[op.inputs[k]].as_slice();
    let xs = |k: usize| model.tensors[op.inputs[k]].shape;
    match p {
        PreparedOp::Input => input.to_vec(),
        PreparedOp::Conv2d {
            weights,
            window: Window { stride, pad_top, pad_left },
            requant: ChannelRequant { multiplier, shift, input_offset, output_offset, act_min, act_max },
        } => {
            let s = xs(0);
            let d = &weights.filter_dims;
            let (oc_n, kh, kw, fic) = (d[0], d[1], d[2], d[3]);
            let groups = s.c / fic;
            let filters_per_group = oc_n / groups;
            let mut y = vec![0i8; out_shape.elements()];
            let xin = x(0);
            for oy in 0..out_shape.h {
                let iy0 = (oy * stride[0]) as isize - *pad_top as isize;
                for ox in 0..out_shape.w {
                    let ix0 = (ox * stride[1]) as isize - *pad_left as isize;
                    for oc in 0..oc_n {
                        let g = oc / filters_per_group;
                        let mut acc: i32 = 0;
                        for ky in 0..kh {
                            let iy = iy0 + ky as isize;
                            if iy < 0 || iy >= s.h as isize {
                                continue;
                            }
                            for kx in 0..kw {
                                let ix = ix0 + kx as isize;
                                if ix < 0 || ix >= s.w as isize {
                                    continue;
                                }
                                let xo = (iy as usize * s.w + ix as usize) * s.c + g * fic;
                                let fo = ((oc * kh + ky) * kw + kx) * fic;
                                for ic in 0..fic {
                                    acc = acc.wrapping_add(
                                        weights.filter[fo + ic] as i32 * (xin[xo + ic] as i32 + input_offset),
                                    );
                                }
                            }
                        }
                        y[(oy * out_shape.w + ox) * oc_n + oc] = requant(
                            acc,
                            weights.bias[oc],
                            multiplier[oc],
                            shift[oc],
                            *output_offset,
                            *act_min,
                            *act_max,
                        );
                    }
                }
            }
            y
        }
        PreparedOp::DepthwiseConv2d {
            weights,
            window: Window { stride, pad_top, pad_left },
            requant: ChannelRequant { multiplier, shift, input_offset, output_offset, act_min, act_max },
        } => {
            let s = xs(0);
            let d = &weights.filter_dims;
            let (kh, kw, c) = (d[1], d[2], d[3]);
            let mut y = vec![0i8; out_shape.elements()];
            let xin = x(0);
            for oy in 0..out_shape.h {
                let iy0 = (oy * stride[0]) as isize - *pad_top as isize;
                for ox in 0..out_shape.w {
                    let ix0 = (ox * stride[1]) as isize - *pad_left as isize;
                    for ch in 0..c {
                        let mut acc: i32 = 0;
                        for ky in 0..kh {
                            let iy = iy0 + ky as isize;
                            if iy < 0 || iy >= s.h as isize {
                                continue;
                            }
                            for kx in 0..kw {
                                let ix = ix0 + kx as isize;
                                if ix < 0 || ix >= s.w as isize {
                                    continue;
                                }
                                let xv = xin[(iy as usize * s.w + ix as usize) * c + ch] as i32;
                                let fv = weights.filter[(ky * kw + kx) * c + ch] as i32;
                                acc = acc.wrapping_add(fv * (xv + input_offset));
                            }
                        }
                        y[(oy * out_shape.w + ox) * c + ch] = requant(
                            acc,
                            weights.bias[ch],
                            multiplier[ch],
                            shift[ch],
                            *output_offset,
                            *act_min,
                            *act_max,
                        );
                    }
                }
            }
            y
        }
        PreparedOp::FullyConnected {
            weights,
            requant: ChannelRequant { multiplier, shift, input_offset, output_offset, act_min, act_max },
        } => {
            let xin = x(0);
            let (units, depth) = (weights.filter_dims[0], weights.filter_dims[1]);
            (0..units)
                .map(|u| {
                    let row = &weights.filter[u * depth..(u + 1) * depth];
                    let acc = row
                        .iter()
                        .zip(xin)
                        .fold(0i32, |a, (&w, &v)| a.wrapping_add(w as i32 * (v as i32 + input_offset)));
                    requant(acc, weights.bias[u], multiplier[u], shift[u], *output_offset, *act_min, *act_max)
                })
                .collect()
        }
        PreparedOp::Add(AddParams {
            input1_offset,
            input2_offset,
            left_shift,
            input1_multiplier,
            input1_shift,
            input2_multiplier,
            input2_shift,
            output_multiplier,
            output_shift,
            output_offset,
            act_min,
            act_max,
        }) => x(0)
            .iter()
            .zip(x(1))
            .map(|(&a, &b)| {
                let v1 = (input1_offset + a as i32).wrapping_mul(1 << left_shift);
                let v2 = (input2_offset + b as i32).wrapping_mul(1 << left_shift);
                let s1 =
                    fp::multiply_by_quantized_multiplier_smaller_than_one_exp(v1, *input1_multiplier, *input1_shift);
                let s2 =
                    fp::multiply_by_quantized_multiplier_smaller_than_one_exp(v2, *input2_multiplier, *input2_shift);
                let raw = fp::multiply_by_quantized_multiplier_smaller_than_one_exp(
                    s1.wrapping_add(s2),
                    *output_multiplier,
                    *output_shift,
                )
                .wrapping_add(*output_offset);
                raw.clamp(*act_min, *act_max) as i8
            })
            .collect(),
        PreparedOp::Concat { act_min, act_max } => {
            let mut y = vec![0i8; out_shape.elements()];
            let mut off = 0;
            for (k, &t) in op.inputs.iter().enumerate() {
                let c = model.tensors[t].shape.c;
                let src = x(k);
                for p in 0..out_shape.h * out_shape.w {
                    for ch in 0..c {
                        // TFLM copies bytes; a fused activation (mcufit exports it as a separate
                        // clamp op) is applied here.
                        y[p * out_shape.c + off + ch] = (src[p * c + ch] as i32).clamp(*act_min, *act_max) as i8;
                    }
                }
                off += c;
            }
            y
        }
        PreparedOp::MaxPool { pool, window: Window { stride, pad_top, pad_left }, act_min, act_max }
        | PreparedOp::AvgPool { pool, window: Window { stride, pad_top, pad_left }, act_min, act_max } => {
            let is_max = matches!(p, PreparedOp::MaxPool { .. });
            let s = xs(0);
            let xin = x(0);
            let mut y = vec![0i8; out_shape.elements()];
            for oy in 0..out_shape.h {
                for ox in 0..out_shape.w {
                    let iy0 = (oy * stride[0]) as isize - *pad_top as isize;
                    let ix0 = (ox * stride[1]) as isize - *pad_left as isize;
                    let fy0 = (-iy0).max(0) as usize;
                    let fy1 = (pool[0] as isize).min(s.h as isize - iy0).max(0) as usize;
                    let fx0 = (-ix0).max(0) as usize;
                    let fx1 = (pool[1] as isize).min(s.w as isize - ix0).max(0) as usize;
                    for ch in 0..s.c {
                        let mut acc: i32 = if is_max { -128 } else { 0 };
                        let mut count: i32 = 0;
                        for fy in fy0..fy1 {
                            for fx in fx0..fx1 {
                                let iy = (iy0 + fy as isize) as usize;
                                let ix = (ix0 + fx as isize) as usize;
                                let v = xin[(iy * s.w + ix) * s.c + ch] as i32;
                                if is_max {
                                    acc = acc.max(v);
                                } else {
                                    acc += v;
                                }
                                count += 1;
                            }
                        }
                        if !is_max {
                            // Round to nearest, ties away from zero (integer division truncates).
                            let count = count.max(1);
                            acc = if acc > 0 { (acc + count / 2) / count } else { (acc - count / 2) / count };
                        }
                        y[(oy * out_shape.w + ox) * s.c + ch] = acc.clamp(*act_min, *act_max) as i8;
                    }
                }
            }
            y
        }
        PreparedOp::Reshape => x(0).to_vec(),
        PreparedOp::Softmax(SoftmaxParams { input_multiplier, input_left_shift, diff_min }) => {
            softmax_int8(x(0), out_shape.c, *input_multiplier, *input_left_shift, *diff_min)
        }
    }
}

/// Bias add, per-channel requantization, output offset and activation clamp (TFLM conv epilogue).
#[inline]
pub fn requant(acc: i32, bias: i32, multiplier: i32, shift: i32, output_offset: i32, act_min: i32, act_max: i32) -> i8 {
    let acc =
        fp::multiply_by_quantized_multiplier(acc.wrapping_add(bias), multiplier, shift).wrapping_add(output_offset);
    acc.clamp(act_min, act_max) as i8
}

/// `reference_ops::Softmax<int8_t, int8_t>` (gemmlowp fixed point, Q5.26 differences, Q12.19 sum).
pub fn softmax_int8(x: &[i8], depth: usize, input_multiplier: i32, input_left_shift: i32, diff_min: i32) -> Vec<i8> {
    const SCALED_DIFF_INTEGER_BITS: i32 = 5;
    const ACCUMULATION_INTEGER_BITS: i32 = 12;
    let mut y = vec![0i8; x.len()];
    for (xr, yr) in x.chunks(depth.max(1)).zip(y.chunks_mut(depth.max(1))) {
        let max_in_row = xr.iter().copied().max().unwrap_or(i8::MIN) as i32;
        let mut sum_of_exps: i32 = 0;
        for &v in xr {
            let diff = v as i32 - max_in_row;
            if diff >= diff_min {
                let rescaled =
                    fp::multiply_by_quantized_multiplier_greater_than_one(diff, input_multiplier, input_left_shift);
                let e = fp::exp_on_negative_values(rescaled, SCALED_DIFF_INTEGER_BITS);
                sum_of_exps =
                    sum_of_exps.wrapping_add(fp::saturating_rounding_multiply_by_pot(e, -ACCUMULATION_INTEGER_BITS));
            }
        }
        let (shifted_scale, num_bits_over_unit) = fp::get_reciprocal(sum_of_exps, ACCUMULATION_INTEGER_BITS);
        let exponent = (num_bits_over_unit + 31 - 8).clamp(0, 31);
        for (o, &v) in yr.iter_mut().zip(xr) {
            let diff = v as i32 - max_in_row;
            *o = if diff >= diff_min {
                let rescaled =
                    fp::multiply_by_quantized_multiplier_greater_than_one(diff, input_multiplier, input_left_shift);
                let e = fp::exp_on_negative_values(rescaled, SCALED_DIFF_INTEGER_BITS);
                let unsat =
                    fp::rounding_divide_by_pot(fp::saturating_rounding_doubling_high_mul(shifted_scale, e), exponent);
                (unsat - 128).clamp(-128, 127) as i8
            } else {
                -128
            };
        }
    }
    y
}
