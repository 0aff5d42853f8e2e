//! Standalone C99 export: constant weight arrays, one static arena of exactly the planned size,
//! operators in the given order, `int mcufit_invoke(const int8_t *in, int8_t *out)`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use mcufit_ir::Shape;
use mcufit_quant::{AddParams, ChannelRequant, PreparedOp, QuantizedModel, SoftmaxParams, Window};

use crate::error::{ExportError, Result};
use crate::plan::{plan_arena, ArenaPlan, PlanOptions};

/// The kernel library shipped next to every export.
pub const KERNELS_C: &str = include_str!("mcufit_kernels.c");
pub const KERNELS_H: &str = include_str!("mcufit_kernels.h");

#[derive(Debug, Clone, Copy, Default)]
pub struct CExportOptions {
    pub plan: PlanOptions,
}

/// The generated sources.
#[derive(Debug, Clone)]
pub struct CSources {
    pub model_h: String,
    pub model_c: String,
    pub plan: ArenaPlan,
    /// Bytes of constant data in `model_c` (weights, biases, multipliers, shifts).
    pub const_bytes: usize,
    /// Bytes of the static convolution im2col scratch (`MCUFIT_SCRATCH_SIZE`), outside the arena.
    pub scratch_bytes: usize,
}

impl CSources {
    /// Files as (name, contents).
    pub fn files(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("mcufit_model.h", self.model_h.as_str()),
            ("mcufit_model.c", self.model_c.as_str()),
            ("mcufit_kernels.h", KERNELS_H),
            ("mcufit_kernels.c", KERNELS_C),
        ]
    }
}

fn shape_lit(s: Shape) -> String {
    format!("(mf_shape){{{}, {}, {}}}", s.h, s.w, s.c)
}

fn array<T: std::fmt::Display>(out: &mut String, ctype: &str, name: &str, vals: &[T]) -> usize {
    let _ = write!(out, "static const {ctype} {name}[{}] = {{", vals.len().max(1));
    if vals.is_empty() {
        out.push('0');
    }
    for (i, v) in vals.iter().enumerate() {
        if i % 24 == 0 {
            out.push_str("\n    ");
        }
        let _ = write!(out, "{v},");
    }
    out.push_str("\n};\n");
    vals.len()
}

fn ident(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect()
}

/// Filter layout of `mf_conv_fast`: output channels in pairs (an odd last one paired with a zero
/// row); within a pair, per block of 4 values of the flattened row (zero-padded to a multiple of
/// 4), the 4 bytes of the first row then the 4 of the second. `rows x cols` is the OHWI filter
/// with `cols = kh * kw * in_c`.
pub fn interleave_pairs(filter: &[i8], rows: usize, cols: usize) -> Vec<i8> {
    let cp = cols.div_ceil(4) * 4;
    let row = |r: usize, k: usize| -> i8 {
        if r < rows && k < cols {
            filter[r * cols + k]
        } else {
            0
        }
    };
    let mut out = Vec::with_capacity(rows.div_ceil(2) * 2 * cp);
    for r in (0..rows).step_by(2) {
        for k in (0..cp).step_by(4) {
            for rr in [r, r + 1] {
                out.extend((k..k + 4).map(|kk| row(rr, kk)));
            }
        }
    }
    out
}

/// Largest |accumulator| (bias included) the fast 1x1 requantization accepts.
const PW_ACC_LIMIT: i64 = 1 << 30;
/// Largest right shift of the fast 1x1 requantization (keeps `offset << e` and the sum in range).
const PW_MAX_SHIFT: i32 = 22;

/// The shortcut requantization constants `[bias, m, rnd, sw]` of one output channel (see
/// `mcufit_kernels.h`), or `None` outside the range where the shortcut is exact: a left shift, a
/// right shift above 22, or an accumulator (`|bias| + 128 * sum|w|`) that could reach 2^30.
fn shortcut(bias: i64, abs_w: i64, multiplier: i32, shift: i32, output_offset: i32) -> Option<[i32; 4]> {
    let e = -shift;
    if !(0..=PW_MAX_SHIFT).contains(&e) || multiplier < 0 || bias.abs() + 128 * abs_w >= PW_ACC_LIMIT {
        return None;
    }
    let half = if e > 0 { 1i64 << (e - 1) } else { 0 };
    let rnd = half + ((output_offset as i64) << e);
    let sw = (e as u32) | if e > 0 { 1u32 << 31 } else { 0 };
    Some([i32::try_from(bias).ok()?, multiplier, i32::try_from(rnd).ok()?, sw as i32])
}

/// Constants of `mf_conv_fast` (per pair of output channels {bias0, bias1, m0, rnd0, sw0, m1,
/// rnd1, sw1}, an odd last channel paired with zeros; see `mcufit_kernels.h`), or `None` when a
/// channel is outside the shortcut's range ([`shortcut`]): such a conv goes through `mf_conv`.
/// `bias` already includes `input_offset * sum(filter)`; `filter` is `rows x cols` (OHWI rows).
pub fn pointwise_constants(
    bias: &[i64],
    multiplier: &[i32],
    shift: &[i32],
    filter: &[i8],
    cols: usize,
    output_offset: i32,
) -> Option<Vec<i32>> {
    let rows = bias.len();
    if multiplier.len() != rows || shift.len() != rows || filter.len() != rows * cols {
        return None;
    }
    let mut per = Vec::with_capacity(rows + 1);
    for c in 0..rows {
        let abs_w: i64 = filter[c * cols..(c + 1) * cols].iter().map(|&v| (v as i64).abs()).sum();
        per.push(shortcut(bias[c], abs_w, multiplier[c], shift[c], output_offset)?);
    }
    if rows % 2 == 1 {
        per.push([0; 4]);
    }
    let mut out = Vec::with_capacity(per.len() * 4);
    for pair in per.chunks(2) {
        out.extend([pair[0][0], pair[1][0]]);
        out.extend(&pair[0][1..]);
        out.extend(&pair[1][1..]);
    }
    Some(out)
}

/// Constants of `mf_depthwise_fast`: per group of 4 channels (the last one zero-padded)
/// {2b0, 2b1, 2b2, 2b3, m0, rnd0, sw0, ..., m3, rnd3, sw3} with b = bias + input_offset *
/// sum(filter), or `None` when a channel is outside the shortcut's range. `filter` is
/// `[1, kh, kw, c]`.
pub fn depthwise_constants(
    bias: &[i32],
    multiplier: &[i32],
    shift: &[i32],
    filter: &[i8],
    input_offset: i32,
    output_offset: i32,
) -> Option<Vec<i32>> {
    let c = bias.len();
    if c == 0 || multiplier.len() != c || shift.len() != c || !filter.len().is_multiple_of(c) {
        return None;
    }
    let mut per = Vec::with_capacity(c.div_ceil(4) * 4);
    for ch in 0..c {
        let taps = filter.iter().skip(ch).step_by(c).map(|&v| v as i64);
        let (sum, abs_w) = taps.fold((0i64, 0i64), |(s, a), v| (s + v, a + v.abs()));
        per.push(shortcut(
            bias[ch] as i64 + input_offset as i64 * sum,
            abs_w,
            multiplier[ch],
            shift[ch],
            output_offset,
        )?);
    }
    per.resize(c.div_ceil(4) * 4, [0; 4]);
    let mut out = Vec::with_capacity(per.len() * 4);
    for g in per.chunks(4) {
        // |bias| < 2^30 (checked by `shortcut`), so doubling stays in range.
        out.extend(g.iter().map(|k| 2 * k[0]));
        for k in g {
            out.extend(&k[1..]);
        }
    }
    Some(out)
}

/// Constants of `mf_add_fast` ({m1, rnd1, sw1, m2, rnd2, sw2, mo, rndo, swo}, output offset folded
/// into rndo), or `None` outside the shortcut's range: a shift outside -22..=0, or shifted inputs
/// (|input + offset| <= 255, times 2^left_shift) or their rescaled sum reaching 2^30.
pub fn add_constants(left_shift: i32, multiplier: [i32; 3], shift: [i32; 3], output_offset: i32) -> Option<[i32; 9]> {
    if !(0..=20).contains(&left_shift) || (510i64 << left_shift) >= PW_ACC_LIMIT {
        return None;
    }
    let mut k = [0i32; 9];
    for j in 0..3 {
        let off = if j == 2 { output_offset } else { 0 };
        let c = shortcut(0, 0, multiplier[j], shift[j], off)?;
        k[3 * j..3 * j + 3].copy_from_slice(&c[1..]);
    }
    Some(k)
}

/// The depthwise filter `[1, kh, kw, c]` as `mf_depthwise_fast` reads it: per group of 4 channels
/// (zero-padded) and tap, the int32 words (2w0 | 2w2 << 16) and (2w1 | 2w3 << 16).
pub fn depthwise_expanded(filter: &[i8], c: usize) -> Vec<i32> {
    let taps = filter.len().checked_div(c).unwrap_or(0);
    let w = |t: usize, ch: usize| -> i32 {
        if ch < c {
            2 * filter[t * c + ch] as i32
        } else {
            0
        }
    };
    let pack = |lo: i32, hi: i32| ((lo as u32 & 0xFFFF) | ((hi as u32) << 16)) as i32;
    let mut out = Vec::with_capacity(c.div_ceil(4) * taps * 2);
    for g in 0..c.div_ceil(4) {
        let ch = 4 * g;
        for t in 0..taps {
            out.push(pack(w(t, ch), w(t, ch + 2)));
            out.push(pack(w(t, ch + 1), w(t, ch + 3)));
        }
    }
    out
}

/// Generates the model sources for `order` (op indices; op 0 optional).
pub fn generate_c(model: &QuantizedModel, order: &[usize], opts: CExportOptions) -> Result<CSources> {
    let prepared = model.prepare()?;
    let plan = plan_arena(model, order, opts.plan)?;
    let n = model.ops.len();
    let out_i = n - 1;
    let mut consts = String::new();
    let mut body = String::new();
    let mut const_bytes = 0usize;
    // int32 words of the conv im2col scratch (the largest over the ops that use it).
    let mut scratch_words = 0usize;
    let ptr = |i: usize| -> String {
        match plan.offsets[i] {
            Some(o) => format!("(A + {o})"),
            None => "in".to_string(),
        }
    };
    for &i in plan.order.iter().skip(1) {
        let op = &model.ops[i];
        let t = &model.tensors[i];
        let ks = op.kernel_shape;
        let _ = writeln!(
            body,
            "    /* {} ({}) -> {} bytes at {:?} */",
            op.name,
            op.kind.name(),
            t.elements(),
            plan.offsets[i]
        );
        let x = op.inputs.first().map(|&j| ptr(j)).unwrap_or_default();
        let xs = op.inputs.first().map(|&j| model.tensors[j].shape).unwrap_or(ks);
        let y = ptr(i);
        let p = &prepared[i];
        match p {
            PreparedOp::Input => {
                return Err(ExportError::Unsupported { op: op.name.clone(), msg: "the input must be op 0".into() });
            }
            PreparedOp::Conv2d { weights: w, requant, .. }
            | PreparedOp::DepthwiseConv2d { weights: w, requant, .. }
            | PreparedOp::FullyConnected { weights: w, requant } => {
                let ChannelRequant { multiplier, shift, input_offset, output_offset, act_min, act_max } = requant;
                let depthwise = matches!(p, PreparedOp::DepthwiseConv2d { .. });
                // Conv and FC fold input_offset * sum(filter) into the bias; depthwise applies the
                // offset per valid tap.
                let channels = w.bias.len();
                let per = w.filter.len() / channels.max(1);
                let bias: Vec<i64> = (0..channels)
                    .map(|c| {
                        if depthwise {
                            w.bias[c] as i64
                        } else {
                            let s: i64 = w.filter[c * per..(c + 1) * per].iter().map(|&v| v as i64).sum();
                            w.bias[c] as i64 + *input_offset as i64 * s
                        }
                    })
                    .collect();
                if bias.iter().any(|&b| b < i32::MIN as i64 || b > i32::MAX as i64) {
                    return Err(ExportError::Unsupported {
                        op: op.name.clone(),
                        msg: "folded bias overflows int32".into(),
                    });
                }
                let id = format!("op{i}");
                let d = &w.filter_dims;
                // Convs with groups 1 (1x1 included) take the two-pixel im2col kernel when every
                // channel's requantization fits its shortcut.
                let dense_conv = matches!(p, PreparedOp::Conv2d { .. }) && d[3] == xs.c;
                let k = if dense_conv { d[1] * d[2] * d[3] } else { 0 };
                let pw = if dense_conv {
                    pointwise_constants(&bias, multiplier, shift, &w.filter, k, *output_offset)
                } else {
                    None
                };
                if let (Some(pw), PreparedOp::Conv2d { window: Window { stride, pad_top, pad_left }, .. }) = (&pw, p) {
                    scratch_words = scratch_words.max(conv_scratch_bytes(k, xs.c) / 4);
                    const_bytes +=
                        array(&mut consts, "int8_t", &format!("{id}_w"), &interleave_pairs(&w.filter, d[0], k));
                    const_bytes += 4 * array(&mut consts, "int32_t", &format!("{id}_pw"), pw);
                    let _ = writeln!(consts, "static const mf_pw_params {id}_q = {{{id}_pw, {act_min}, {act_max}}};");
                    let _ = writeln!(
                        body,
                        "    mf_conv_fast({x}, {}, {id}_w, {}, {}, {}, {}, {pad_top}, {pad_left}, {}, &{id}_q, mcufit_scratch, {y}, {});",
                        shape_lit(xs),
                        d[1],
                        d[2],
                        stride[0],
                        stride[1],
                        -input_offset,
                        shape_lit(ks)
                    );
                    let _ = writeln!(body, "    MCUFIT_OP_DONE({i});");
                    continue;
                }
                let dw = match p {
                    PreparedOp::DepthwiseConv2d { .. } => {
                        depthwise_constants(&w.bias, multiplier, shift, &w.filter, *input_offset, *output_offset)
                    }
                    _ => None,
                };
                if let (Some(dw), PreparedOp::DepthwiseConv2d { window: Window { stride, pad_top, pad_left }, .. }) =
                    (&dw, p)
                {
                    let taps: Vec<usize> =
                        (0..d[1]).flat_map(|ky| (0..d[2]).map(move |kx| (ky * xs.w + kx) * xs.c)).collect();
                    const_bytes +=
                        4 * array(&mut consts, "int32_t", &format!("{id}_wx"), &depthwise_expanded(&w.filter, xs.c));
                    const_bytes += 4 * array(&mut consts, "int32_t", &format!("{id}_taps"), &taps);
                    const_bytes += 4 * array(&mut consts, "int32_t", &format!("{id}_dw"), dw);
                    let _ = writeln!(consts, "static const mf_pw_params {id}_q = {{{id}_dw, {act_min}, {act_max}}};");
                    let _ = writeln!(
                        body,
                        "    mf_depthwise_fast({x}, {}, {id}_wx, {id}_taps, {}, {}, {}, {}, {pad_top}, {pad_left}, {}, &{id}_q, {y}, {});",
                        shape_lit(xs),
                        d[1],
                        d[2],
                        stride[0],
                        stride[1],
                        -input_offset,
                        shape_lit(ks)
                    );
                    let _ = writeln!(body, "    MCUFIT_OP_DONE({i});");
                    continue;
                }
                const_bytes += array(&mut consts, "int8_t", &format!("{id}_w"), &w.filter);
                const_bytes += 4 * array(&mut consts, "int32_t", &format!("{id}_b"), &bias);
                const_bytes += 4 * array(&mut consts, "int32_t", &format!("{id}_m"), multiplier);
                const_bytes += 4 * array(&mut consts, "int32_t", &format!("{id}_s"), shift);
                let _ = writeln!(
                    consts,
                    "static const mf_requant {id}_q = {{{id}_b, {id}_m, {id}_s, {input_offset}, {output_offset}, {act_min}, {act_max}}};"
                );
                match p {
                    PreparedOp::Conv2d { window: Window { stride, pad_top, pad_left }, .. } => {
                        let _ = writeln!(
                            body,
                            "    mf_conv({x}, {}, {id}_w, {}, {}, {}, {}, {}, {pad_top}, {pad_left}, &{id}_q, {y}, {});",
                            shape_lit(xs),
                            d[1],
                            d[2],
                            d[3],
                            stride[0],
                            stride[1],
                            shape_lit(ks)
                        );
                    }
                    PreparedOp::DepthwiseConv2d { window: Window { stride, pad_top, pad_left }, .. } => {
                        let _ = writeln!(
                            body,
                            "    mf_depthwise({x}, {}, {id}_w, {}, {}, {}, {}, {pad_top}, {pad_left}, &{id}_q, {y}, {});",
                            shape_lit(xs),
                            d[1],
                            d[2],
                            stride[0],
                            stride[1],
                            shape_lit(ks)
                        );
                    }
                    _ => {
                        let _ =
                            writeln!(body, "    mf_fully_connected({x}, {}, {id}_w, {}, &{id}_q, {y});", d[1], d[0]);
                    }
                }
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
            }) => {
                if let Some(k) = add_constants(
                    *left_shift,
                    [*input1_multiplier, *input2_multiplier, *output_multiplier],
                    [*input1_shift, *input2_shift, *output_shift],
                    *output_offset,
                ) {
                    let k: Vec<String> = k.iter().map(|v| v.to_string()).collect();
                    let _ = writeln!(
                        consts,
                        "static const mf_add_fast_params op{i}_p = {{{input1_offset}, {input2_offset}, {left_shift}, {{{}}}, {act_min}, {act_max}}};",
                        k.join(", ")
                    );
                    let _ =
                        writeln!(body, "    mf_add_fast({x}, {}, {}, &op{i}_p, {y});", ptr(op.inputs[1]), t.elements());
                    let _ = writeln!(body, "    MCUFIT_OP_DONE({i});");
                    continue;
                }
                let _ = writeln!(
                    consts,
                    "static const mf_add_params op{i}_p = {{{input1_offset}, {input2_offset}, {left_shift}, {input1_multiplier}, {input1_shift}, {input2_multiplier}, {input2_shift}, {output_multiplier}, {output_shift}, {output_offset}, {act_min}, {act_max}}};"
                );
                let _ = writeln!(body, "    mf_add({x}, {}, {}, &op{i}_p, {y});", ptr(op.inputs[1]), t.elements());
            }
            PreparedOp::Concat { act_min, act_max } => {
                let mut off = 0;
                for &j in &op.inputs {
                    let c = model.tensors[j].shape.c;
                    let _ = writeln!(
                        body,
                        "    mf_concat_part({}, {}, {c}, {off}, {}, {act_min}, {act_max}, {y});",
                        ptr(j),
                        ks.h * ks.w,
                        ks.c
                    );
                    off += c;
                }
            }
            PreparedOp::MaxPool { pool, window: Window { stride, pad_top, pad_left }, act_min, act_max }
            | PreparedOp::AvgPool { pool, window: Window { stride, pad_top, pad_left }, act_min, act_max } => {
                let f = if matches!(p, PreparedOp::MaxPool { .. }) { "mf_max_pool" } else { "mf_avg_pool" };
                let _ = writeln!(
                    body,
                    "    {f}({x}, {}, {}, {}, {}, {}, {pad_top}, {pad_left}, {act_min}, {act_max}, {y}, {});",
                    shape_lit(xs),
                    pool[0],
                    pool[1],
                    stride[0],
                    stride[1],
                    shape_lit(ks)
                );
            }
            PreparedOp::Reshape => {
                let _ = writeln!(body, "    mf_copy({x}, {}, {y});", t.elements());
            }
            PreparedOp::Softmax(SoftmaxParams { input_multiplier, input_left_shift, diff_min }) => {
                let _ = writeln!(
                    body,
                    "    mf_softmax({x}, {}, {}, {input_multiplier}, {input_left_shift}, {diff_min}, {y});",
                    ks.elements() / ks.c.max(1),
                    ks.c
                );
            }
        }
        let _ = writeln!(body, "    MCUFIT_OP_DONE({i});");
    }
    let inp = &model.tensors[0];
    let outp = &model.tensors[out_i];
    let guard = "MCUFIT_MODEL_H";
    let model_h = format!(
        "/* Generated by mcufit for model '{name}'. Standalone C99, no dynamic memory. */\n\
#ifndef {guard}\n#define {guard}\n\n#include <stdint.h>\n\n\
#define MCUFIT_INPUT_SIZE {isz}\n#define MCUFIT_OUTPUT_SIZE {osz}\n\
/* Activation arena: the planned peak of live tensors for the exported operator order. */\n\
#define MCUFIT_ARENA_SIZE {arena}\n\
/* Static scratch of the convolutions (two pixels' receptive fields, sign-extended), bytes. */\n\
#define MCUFIT_SCRATCH_SIZE {scratch}\n\
#define MCUFIT_NUM_OPS {n}\n\
/* real = scale * (q - zero_point) */\n\
#define MCUFIT_INPUT_SCALE {is:e}f\n#define MCUFIT_INPUT_ZERO_POINT {iz}\n\
#define MCUFIT_OUTPUT_SCALE {os:e}f\n#define MCUFIT_OUTPUT_ZERO_POINT {oz}\n\n\
/* Runs one inference. `in`: MCUFIT_INPUT_SIZE int8 values (NHWC); `out`: MCUFIT_OUTPUT_SIZE.\n\
 * Returns 0, or -1 on a null pointer. Not reentrant (one static arena). */\n\
int mcufit_invoke(const int8_t *in, int8_t *out);\n\n#endif\n",
        name = model.name.replace("*/", "* /"),
        isz = inp.elements(),
        osz = outp.elements(),
        arena = plan.arena_bytes,
        scratch = 4 * scratch_words,
        is = inp.scale,
        iz = inp.zero_point,
        os = outp.scale,
        oz = outp.zero_point,
    );
    let mut model_c = String::new();
    let _ =
        writeln!(model_c, "/* Generated by mcufit for model '{}': {} ops. */", model.name.replace("*/", "* /"), n - 1);
    model_c.push_str("#include \"mcufit_model.h\"\n#include \"mcufit_kernels.h\"\n\n");
    let _ = writeln!(
        model_c,
        "/* One static arena, {} bytes = the peak of simultaneously live tensors ({}). */",
        plan.arena_bytes,
        if plan.optimal { "placement meets the bound" } else { "placement above the bound" }
    );
    let _ =
        writeln!(model_c, "static union {{ int8_t b[{}]; int32_t align; }} mcufit_arena;\n", plan.arena_bytes.max(1));
    model_c.push_str(
        "/* Profiling hook: MCUFIT_PROFILE builds call mcufit_prof(op) after every op. */\n\
#ifdef MCUFIT_PROFILE\nvoid mcufit_prof(int op);\n#define MCUFIT_OP_DONE(op) mcufit_prof(op)\n\
#else\n#define MCUFIT_OP_DONE(op) ((void)0)\n#endif\n\n",
    );
    if scratch_words > 0 {
        let _ = writeln!(model_c, "static int32_t mcufit_scratch[{scratch_words}];\n");
    }
    model_c.push_str(&consts);
    model_c.push_str("\nint mcufit_invoke(const int8_t *in, int8_t *out) {\n    int8_t *const A = mcufit_arena.b;\n");
    model_c.push_str("    if (in == 0 || out == 0) return -1;\n    (void)A;\n");
    if let Some(o) = plan.offsets[0] {
        let _ = writeln!(model_c, "    mf_copy(in, {}, A + {o});", inp.elements());
    }
    model_c.push_str(&body);
    let _ = writeln!(model_c, "    mf_copy({}, {}, out);\n    return 0;\n}}", ptr(out_i), outp.elements());
    let _ = ident;
    Ok(CSources { model_h, model_c, plan, const_bytes, scratch_bytes: 4 * scratch_words })
}

/// Writes the C library (model + kernels) into `dir` with the default plan (input in the arena,
/// no in-place ADD: the same memory model as `mcufit-cost`'s default); returns the sources.
pub fn export_c(model: &QuantizedModel, order: &[usize], dir: impl AsRef<Path>) -> Result<(CSources, Vec<PathBuf>)> {
    export_c_with(model, order, dir, CExportOptions::default())
}

/// [`export_c`] with explicit planning options.
pub fn export_c_with(
    model: &QuantizedModel,
    order: &[usize],
    dir: impl AsRef<Path>,
    opts: CExportOptions,
) -> Result<(CSources, Vec<PathBuf>)> {
    let dir = dir.as_ref();
    std::fs::create_dir_all(dir).map_err(|e| ExportError::io(dir, e))?;
    let src = generate_c(model, order, opts)?;
    let mut paths = Vec::new();
    for (name, text) in src.files() {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| ExportError::io(&p, e))?;
        paths.push(p);
    }
    Ok((src, paths))
}

/// Bytes of the static im2col scratch one group-1 convolution needs in the C kernels: two pixels'
/// receptive fields of `k = kh * kw * in_c` values, as int32 words padded to a multiple of 4, plus
/// half again when `in_c` is not a multiple of 4 (the patch copy). The C export sizes
/// `MCUFIT_SCRATCH_SIZE` as the largest over its convolutions; budgets use the same formula.
pub fn conv_scratch_bytes(k: usize, in_c: usize) -> usize {
    let kp = k.div_ceil(4) * 4;
    4 * (kp + if in_c.is_multiple_of(4) { 0 } else { kp / 2 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcufit_quant::fixedpoint::multiply_by_quantized_multiplier;

    /// The C shortcut (`mf_pw_rq`) in wide arithmetic.
    fn apply(acc: i32, k: [i32; 4]) -> i32 {
        let x = (acc as i64) << 1;
        let mut y = ((x * k[1] as i64 + (1i64 << 31)) >> 32) + k[2] as i64;
        if x < 0 && k[3] < 0 {
            y -= 1;
        }
        (y >> (k[3] & 0xFF)) as i32
    }

    #[test]
    fn shortcut_equals_tflm_requantization() {
        let mut rng = mcufit_quant::rng::SplitMix64::new(7);
        let mut checked = 0u64;
        for e in 0..=PW_MAX_SHIFT {
            for m in [1 << 30, i32::MAX, (1 << 30) + 12345, 1_518_500_250, rng.below(1 << 30) as i32 + (1 << 30)] {
                for off in [-128, -1, 0, 5, 127] {
                    let k = shortcut(0, 0, m, -e, off).unwrap();
                    // Every accumulator near 0 (ties included) and a spread of large ones.
                    let small = -20_000..=20_000;
                    let large = (0..2_000).map(|_| rng.below(1 << 31) as i32 - (1 << 30));
                    for acc in small.chain(large) {
                        let want = multiply_by_quantized_multiplier(acc, m, -e) as i64 + off as i64;
                        assert_eq!(apply(acc, k) as i64, want, "acc {acc} m {m} e {e} offset {off}");
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 5_000_000);
    }

    #[test]
    fn shortcut_refuses_what_it_cannot_do_exactly() {
        assert!(shortcut(0, 0, 1 << 30, 1, 0).is_none(), "left shift");
        assert!(shortcut(0, 0, 1 << 30, -23, 0).is_none(), "right shift above 22");
        assert!(shortcut(1 << 29, (1 << 22) + 1, 1 << 30, -3, 0).is_none(), "accumulator may reach 2^30");
        assert!(shortcut(0, 100, 1 << 30, -22, -128).is_some());
        // Odd channel counts pair the last channel with zeros.
        let c = pointwise_constants(&[1, 2, 3], &[1 << 30; 3], &[-1; 3], &[1; 3], 1, 0).unwrap();
        assert_eq!(c.len(), 16);
        assert_eq!(&c[8..10], &[3, 0]);
        assert_eq!(&c[13..], &[0, 0, 0]);
    }

    #[test]
    fn interleaved_filter_layout() {
        // 3 rows x 5 cols: pairs (0, 1) and (2, zero row); blocks of 4 columns, zero-padded.
        let f: Vec<i8> = (1..=15).collect();
        let v = interleave_pairs(&f, 3, 5);
        assert_eq!(v.len(), 4 * 8);
        assert_eq!(&v[..8], &[1, 2, 3, 4, 6, 7, 8, 9]);
        assert_eq!(&v[8..16], &[5, 0, 0, 0, 10, 0, 0, 0]);
        assert_eq!(&v[16..24], &[11, 12, 13, 14, 0, 0, 0, 0]);
        assert_eq!(&v[24..], &[15, 0, 0, 0, 0, 0, 0, 0]);
    }
}
