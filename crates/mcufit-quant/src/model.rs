//! The quantized model: int8 tensors with TFLite-style quantization parameters and one op per
//! fused op of the IR's deployed view (`Graph::fused`), plus the exact TFLM preparation of
//! requantization parameters and the bit-exact int8 reference interpreter.

use mcufit_ir::{Activation, Conv2d, Dense, DepthwiseConv2d, Op, Padding, Pool2d, Shape};
use serde::{Deserialize, Serialize};

use crate::error::{QuantError, Result};
use crate::fixedpoint::{self as fp, MultiplierError};
use crate::kernels;

/// An int8 activation tensor: `real = scale * (q - zero_point)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QTensor {
    pub name: String,
    /// Shape as the IR sees it (after any reshape/flatten folded into the producing op).
    pub shape: Shape,
    pub scale: f32,
    pub zero_point: i32,
}

impl QTensor {
    pub fn elements(&self) -> usize {
        self.shape.elements()
    }
    pub fn quantize(&self, x: f32) -> i8 {
        ((x / self.scale).round() as i64 + self.zero_point as i64).clamp(-128, 127) as i8
    }
    pub fn dequantize(&self, q: i8) -> f32 {
        self.scale * (q as i32 - self.zero_point) as f32
    }
}

/// Weights of a conv / depthwise / fully-connected op: symmetric per-output-channel int8.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QWeights {
    /// Conv: OHWI `[o, kh, kw, i/groups]`; depthwise: `[1, kh, kw, c]`; FC: `[units, in]`.
    pub filter: Vec<i8>,
    pub filter_dims: Vec<usize>,
    /// One scale per output channel (zero point 0).
    pub filter_scales: Vec<f32>,
    /// int32 bias with scale `input_scale * filter_scales[c]` (as an f32 product, as TFLite does).
    pub bias: Vec<i32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum QOpKind {
    /// The network input (op 0); computes nothing.
    Input,
    Conv2d {
        weights: QWeights,
        stride: [usize; 2],
        padding: Padding,
        activation: Activation,
    },
    DepthwiseConv2d {
        weights: QWeights,
        stride: [usize; 2],
        padding: Padding,
        activation: Activation,
    },
    FullyConnected {
        weights: QWeights,
        activation: Activation,
    },
    /// Element-wise sum of two tensors (TFLite ADD with per-input rescaling).
    Add {
        activation: Activation,
    },
    /// Channel concatenation; inputs and output share one scale/zero point (TFLM copies bytes).
    Concat {
        activation: Activation,
    },
    MaxPool {
        pool: [usize; 2],
        stride: [usize; 2],
        padding: Padding,
        activation: Activation,
    },
    /// Average pool (also global average pool); input and output share scale/zero point.
    AvgPool {
        pool: [usize; 2],
        stride: [usize; 2],
        padding: Padding,
        activation: Activation,
    },
    /// A reshape that could not be folded into its producer: a byte copy.
    Reshape,
    /// Softmax over the channel axis; output scale 1/256, zero point -128 (TFLM requires it).
    Softmax {
        beta: f32,
    },
}

impl QOpKind {
    pub fn name(&self) -> &'static str {
        match self {
            QOpKind::Input => "input",
            QOpKind::Conv2d { .. } => "conv2d",
            QOpKind::DepthwiseConv2d { .. } => "depthwise_conv2d",
            QOpKind::FullyConnected { .. } => "fully_connected",
            QOpKind::Add { .. } => "add",
            QOpKind::Concat { .. } => "concat",
            QOpKind::MaxPool { .. } => "max_pool",
            QOpKind::AvgPool { .. } => "avg_pool",
            QOpKind::Reshape => "reshape",
            QOpKind::Softmax { .. } => "softmax",
        }
    }
    pub fn activation(&self) -> Activation {
        match self {
            QOpKind::Conv2d { activation, .. }
            | QOpKind::DepthwiseConv2d { activation, .. }
            | QOpKind::FullyConnected { activation, .. }
            | QOpKind::Add { activation }
            | QOpKind::Concat { activation }
            | QOpKind::MaxPool { activation, .. }
            | QOpKind::AvgPool { activation, .. } => *activation,
            _ => Activation::None,
        }
    }
    pub fn weights(&self) -> Option<&QWeights> {
        match self {
            QOpKind::Conv2d { weights, .. }
            | QOpKind::DepthwiseConv2d { weights, .. }
            | QOpKind::FullyConnected { weights, .. } => Some(weights),
            _ => None,
        }
    }
}

/// One kernel call. Its output is tensor number `index` of the model (op i writes tensor i).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QOp {
    pub name: String,
    pub kind: QOpKind,
    /// Indices of the ops (= tensors) it reads.
    pub inputs: Vec<usize>,
    /// Shape the kernel itself produces (differs from the tensor's shape when a flatten/reshape
    /// was folded into this op).
    pub kernel_shape: Shape,
}

/// An int8 network. `ops[i]` writes `tensors[i]`; op 0 is the input, the last op the output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantizedModel {
    pub name: String,
    pub ops: Vec<QOp>,
    pub tensors: Vec<QTensor>,
}

/// Per-output-channel requantization of CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED, as TFLM's
/// `PopulateConvolutionQuantizationParams` computes it, with the output clamp.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelRequant {
    pub multiplier: Vec<i32>,
    pub shift: Vec<i32>,
    pub input_offset: i32,
    pub output_offset: i32,
    pub act_min: i32,
    pub act_max: i32,
}

/// Where a sliding window (conv filter, pool) reads: its stride and TFLM's top/left padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub stride: [usize; 2],
    pub pad_top: usize,
    pub pad_left: usize,
}

/// ADD with per-input rescaling (micro/kernels/add_common.cc `CalculateOpDataAdd`, int8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddParams {
    pub input1_offset: i32,
    pub input2_offset: i32,
    pub left_shift: i32,
    pub input1_multiplier: i32,
    pub input1_shift: i32,
    pub input2_multiplier: i32,
    pub input2_shift: i32,
    pub output_multiplier: i32,
    pub output_shift: i32,
    pub output_offset: i32,
    pub act_min: i32,
    pub act_max: i32,
}

/// int8 SOFTMAX (micro/kernels/softmax_common.cc `CalculateSoftmaxParams`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoftmaxParams {
    pub input_multiplier: i32,
    pub input_left_shift: i32,
    pub diff_min: i32,
}

/// One op ready to run: everything its kernel needs (weights, per-channel multipliers, offsets,
/// padding, clamp) in its own variant, computed exactly as TFLM's `Prepare` functions do. Built
/// only by [`QuantizedModel::prepare`] from the op's [`QOpKind`], so an op cannot be paired with
/// another op's parameters. Borrows the weights from the model.
#[derive(Debug, Clone, PartialEq)]
pub enum PreparedOp<'m> {
    /// The network input; computes nothing.
    Input,
    Conv2d {
        weights: &'m QWeights,
        window: Window,
        requant: ChannelRequant,
    },
    DepthwiseConv2d {
        weights: &'m QWeights,
        window: Window,
        requant: ChannelRequant,
    },
    FullyConnected {
        weights: &'m QWeights,
        requant: ChannelRequant,
    },
    Add(AddParams),
    /// A byte copy per input; a fused activation is applied as a clamp.
    Concat {
        act_min: i32,
        act_max: i32,
    },
    MaxPool {
        pool: [usize; 2],
        window: Window,
        act_min: i32,
        act_max: i32,
    },
    AvgPool {
        pool: [usize; 2],
        window: Window,
        act_min: i32,
        act_max: i32,
    },
    Reshape,
    Softmax(SoftmaxParams),
}

/// TFLM `CalculateActivationRangeQuantized` for int8 (float32 division, `roundf`).
pub fn activation_range(act: Activation, scale: f32, zero_point: i32) -> (i32, i32) {
    // Saturating: a tiny (imported) scale makes `f / scale` overflow i32.
    let q = |f: f32| zero_point.saturating_add((f / scale).round() as i32);
    match act {
        Activation::None => (-128, 127),
        Activation::Relu => ((-128).max(q(0.0)), 127),
        Activation::Relu6 => ((-128).max(q(0.0)), 127.min(q(6.0))),
    }
}

/// TFLM `ComputePaddingHeightWidth` along one axis: `(output size, top/left padding)`.
pub fn tflm_padding(padding: Padding, input: usize, filter: usize, stride: usize) -> (usize, usize) {
    let out = match padding {
        Padding::Same => input.div_ceil(stride),
        Padding::Valid => (input + stride).saturating_sub(filter) / stride,
    };
    let total = ((out.max(1) - 1) * stride + filter) as isize - input as isize;
    (out, (total.max(0) / 2) as usize)
}

impl QuantizedModel {
    pub fn input(&self) -> &QTensor {
        &self.tensors[0]
    }
    pub fn output(&self) -> &QTensor {
        &self.tensors[self.tensors.len() - 1]
    }
    pub fn output_index(&self) -> usize {
        self.tensors.len() - 1
    }

    /// Checks internal consistency (indices, shapes, weight sizes, quantization parameters), so
    /// that a model read from a file cannot make a kernel index out of bounds.
    pub fn validate(&self) -> Result<()> {
        let bad = |op: &QOp, m: String| Err(QuantError::Model(format!("op '{}': {m}", op.name)));
        if self.ops.is_empty() || self.ops.len() != self.tensors.len() {
            return Err(QuantError::Model(format!("{} ops for {} tensors", self.ops.len(), self.tensors.len())));
        }
        if !matches!(self.ops[0].kind, QOpKind::Input) {
            return Err(QuantError::Model("op 0 must be the input".into()));
        }
        for (i, (op, t)) in self.ops.iter().zip(&self.tensors).enumerate() {
            if !(t.scale.is_finite() && t.scale > 0.0 && (-128..=127).contains(&t.zero_point)) {
                return bad(op, format!("bad quantization (scale {}, zero point {})", t.scale, t.zero_point));
            }
            if t.shape.elements() == 0 || op.kernel_shape.elements() != t.shape.elements() {
                return bad(op, format!("tensor shape {} vs kernel shape {}", t.shape, op.kernel_shape));
            }
            if i > 0 && matches!(op.kind, QOpKind::Input) {
                return bad(op, "only op 0 may be the input".into());
            }
            if let Some(&j) = op.inputs.iter().find(|&&j| j >= i) {
                return bad(op, format!("reads tensor {j}, which is not computed before it"));
            }
            let ins: Vec<Shape> = op.inputs.iter().map(|&j| self.tensors[j].shape).collect();
            let arity = match op.kind {
                QOpKind::Input => 0,
                QOpKind::Add { .. } => 2,
                QOpKind::Concat { .. } => usize::MAX,
                _ => 1,
            };
            if (arity == usize::MAX && ins.len() < 2) || (arity != usize::MAX && ins.len() != arity) {
                return bad(op, format!("has {} inputs", ins.len()));
            }
            let ks = op.kernel_shape;
            let check_w = |w: &QWeights, dims: [usize; 4], out_c: usize| -> Result<()> {
                let n: usize = dims.iter().product();
                if w.filter_dims.iter().product::<usize>() != n || w.filter.len() != n {
                    return bad(op, format!("filter has {} values, expected {n}", w.filter.len()));
                }
                if w.filter_scales.len() != out_c || w.bias.len() != out_c {
                    return bad(
                        op,
                        format!("{} scales / {} biases for {out_c} channels", w.filter_scales.len(), w.bias.len()),
                    );
                }
                if w.filter_scales.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
                    return bad(op, "non-positive filter scale".into());
                }
                Ok(())
            };
            let window_ok = |x: Shape, k: [usize; 2], s: [usize; 2], p: Padding| -> bool {
                k.iter().chain(&s).all(|&v| v > 0)
                    && tflm_padding(p, x.h, k[0], s[0]).0 == ks.h
                    && tflm_padding(p, x.w, k[1], s[1]).0 == ks.w
            };
            match &op.kind {
                QOpKind::Input => {}
                QOpKind::Conv2d { weights, stride, padding, .. } => {
                    let x = ins[0];
                    let d = &weights.filter_dims;
                    if d.len() != 4
                        || d[0] != ks.c
                        || d[3] == 0
                        || !x.c.is_multiple_of(d[3])
                        || ks.c % (x.c / d[3]) != 0
                    {
                        return bad(op, format!("filter dims {d:?} do not fit input {x} / output {ks}"));
                    }
                    check_w(weights, [d[0], d[1], d[2], d[3]], ks.c)?;
                    if !window_ok(x, [d[1], d[2]], *stride, *padding) {
                        return bad(op, format!("output {ks} does not match input {x}"));
                    }
                }
                QOpKind::DepthwiseConv2d { weights, stride, padding, .. } => {
                    let x = ins[0];
                    let d = &weights.filter_dims;
                    if d.len() != 4 || d[0] != 1 || d[3] != x.c || ks.c != x.c {
                        return bad(op, format!("filter dims {d:?} do not fit input {x}"));
                    }
                    check_w(weights, [1, d[1], d[2], d[3]], ks.c)?;
                    if !window_ok(x, [d[1], d[2]], *stride, *padding) {
                        return bad(op, format!("output {ks} does not match input {x}"));
                    }
                }
                QOpKind::FullyConnected { weights, .. } => {
                    let d = &weights.filter_dims;
                    if d.len() != 2 || d[0] != ks.elements() || d[1] != ins[0].elements() {
                        return bad(op, format!("filter dims {d:?} do not fit input {} / output {ks}", ins[0]));
                    }
                    check_w(weights, [d[0], d[1], 1, 1], d[0])?;
                }
                QOpKind::Add { .. } => {
                    if ins[0].elements() != ks.elements() || ins[1].elements() != ks.elements() {
                        return bad(op, "inputs and output differ in size".into());
                    }
                }
                QOpKind::Concat { .. } => {
                    if ins.iter().any(|s| s.h != ks.h || s.w != ks.w) || ins.iter().map(|s| s.c).sum::<usize>() != ks.c
                    {
                        return bad(op, "inputs do not concatenate to the output".into());
                    }
                }
                QOpKind::MaxPool { pool, stride, padding, .. } | QOpKind::AvgPool { pool, stride, padding, .. } => {
                    if ins[0].c != ks.c || !window_ok(ins[0], *pool, *stride, *padding) {
                        return bad(op, format!("output {ks} does not match input {}", ins[0]));
                    }
                }
                QOpKind::Reshape | QOpKind::Softmax { .. } => {
                    if ins[0].elements() != ks.elements() {
                        return bad(op, "input and output differ in size".into());
                    }
                }
            }
            // Ops that move bytes without rescaling need identical quantization on both sides.
            let same_q = matches!(
                op.kind,
                QOpKind::Concat { .. } | QOpKind::MaxPool { .. } | QOpKind::AvgPool { .. } | QOpKind::Reshape
            );
            if same_q {
                for &j in &op.inputs {
                    let u = &self.tensors[j];
                    if u.scale != t.scale || u.zero_point != t.zero_point {
                        return bad(op, format!("input '{}' is quantized differently from the output", u.name));
                    }
                }
            }
            if let QOpKind::Softmax { beta } = op.kind {
                if t.scale != 1.0 / 256.0 || t.zero_point != -128 || !(beta.is_finite() && beta > 0.0) {
                    return bad(op, "softmax output must have scale 1/256 and zero point -128".into());
                }
            }
        }
        Ok(())
    }

    /// TFLM's per-op preparation (multipliers, shifts, offsets, clamps, padding), one
    /// [`PreparedOp`] per op. Validates first.
    pub fn prepare(&self) -> Result<Vec<PreparedOp<'_>>> {
        self.validate()?;
        self.ops.iter().enumerate().map(|(i, op)| self.prepare_op(i, op)).collect()
    }

    fn prepare_op<'m>(&'m self, i: usize, op: &'m QOp) -> Result<PreparedOp<'m>> {
        let t = &self.tensors[i];
        let err = |e: MultiplierError| QuantError::Multiplier { op: op.name.clone(), source: e };
        let (act_min, act_max) = activation_range(op.kind.activation(), t.scale, t.zero_point);
        let input = op.inputs.first().map(|&j| &self.tensors[j]);
        let x = input.map_or(t.shape, |x| x.shape);
        let window = |size: [usize; 2], stride: [usize; 2], padding: Padding| Window {
            stride,
            pad_top: tflm_padding(padding, x.h, size[0], stride[0]).1,
            pad_left: tflm_padding(padding, x.w, size[1], stride[1]).1,
        };
        let requant = |w: &QWeights| -> Result<ChannelRequant> {
            let (multiplier, shift) =
                per_channel(input.map_or(1.0, |x| x.scale), &w.filter_scales, t.scale).map_err(err)?;
            Ok(ChannelRequant {
                multiplier,
                shift,
                input_offset: -input.map_or(0, |x| x.zero_point),
                output_offset: t.zero_point,
                act_min,
                act_max,
            })
        };
        Ok(match &op.kind {
            QOpKind::Input => PreparedOp::Input,
            QOpKind::Reshape => PreparedOp::Reshape,
            QOpKind::Conv2d { weights, stride, padding, .. } => PreparedOp::Conv2d {
                weights,
                window: window([weights.filter_dims[1], weights.filter_dims[2]], *stride, *padding),
                requant: requant(weights)?,
            },
            QOpKind::DepthwiseConv2d { weights, stride, padding, .. } => PreparedOp::DepthwiseConv2d {
                weights,
                window: window([weights.filter_dims[1], weights.filter_dims[2]], *stride, *padding),
                requant: requant(weights)?,
            },
            QOpKind::FullyConnected { weights, .. } => {
                PreparedOp::FullyConnected { weights, requant: requant(weights)? }
            }
            QOpKind::Add { .. } => {
                // micro/kernels/add_common.cc CalculateOpDataAdd (int8: left_shift 20).
                let a = &self.tensors[op.inputs[0]];
                let b = &self.tensors[op.inputs[1]];
                let left_shift = 20;
                let twice_max_input_scale = 2.0 * (a.scale.max(b.scale) as f64);
                let real1 = a.scale as f64 / twice_max_input_scale;
                let real2 = b.scale as f64 / twice_max_input_scale;
                let real_out = twice_max_input_scale / ((1i64 << left_shift) as f64 * t.scale as f64);
                let (m1, s1) = fp::quantize_multiplier_smaller_than_one(real1).map_err(err)?;
                let (m2, s2) = fp::quantize_multiplier_smaller_than_one(real2).map_err(err)?;
                let (mo, so) = fp::quantize_multiplier_smaller_than_one(real_out).map_err(err)?;
                PreparedOp::Add(AddParams {
                    input1_offset: -a.zero_point,
                    input2_offset: -b.zero_point,
                    left_shift,
                    input1_multiplier: m1,
                    input1_shift: s1,
                    input2_multiplier: m2,
                    input2_shift: s2,
                    output_multiplier: mo,
                    output_shift: so,
                    output_offset: t.zero_point,
                    act_min,
                    act_max,
                })
            }
            QOpKind::Concat { .. } => PreparedOp::Concat { act_min, act_max },
            QOpKind::MaxPool { pool, stride, padding, .. } => {
                PreparedOp::MaxPool { pool: *pool, window: window(*pool, *stride, *padding), act_min, act_max }
            }
            QOpKind::AvgPool { pool, stride, padding, .. } => {
                PreparedOp::AvgPool { pool: *pool, window: window(*pool, *stride, *padding), act_min, act_max }
            }
            QOpKind::Softmax { beta } => {
                // micro/kernels/softmax_common.cc CalculateSoftmaxParams (int8 -> int8).
                let in_scale = input.map_or(1.0, |x| x.scale);
                let (input_multiplier, input_left_shift) =
                    fp::preprocess_softmax_scaling(*beta as f64, in_scale as f64, 5).map_err(err)?;
                let diff_min = -fp::calculate_input_radius(5, input_left_shift);
                PreparedOp::Softmax(SoftmaxParams { input_multiplier, input_left_shift, diff_min })
            }
        })
    }

    /// Runs the bit-exact int8 reference on one input; returns the output tensor.
    pub fn run_int8(&self, input: &[i8]) -> Result<Vec<i8>> {
        let prepared = self.prepare()?;
        let mut all = self.run_prepared(&prepared, input)?;
        Ok(all.pop().unwrap_or_default())
    }

    /// Runs many inputs, preparing once.
    pub fn run_int8_batch(&self, inputs: &[Vec<i8>]) -> Result<Vec<Vec<i8>>> {
        let prepared = self.prepare()?;
        inputs.iter().map(|x| self.run_prepared(&prepared, x).map(|mut v| v.pop().unwrap_or_default())).collect()
    }

    /// Runs the model and returns every tensor (index = op index).
    pub fn run_int8_all(&self, input: &[i8]) -> Result<Vec<Vec<i8>>> {
        let prepared = self.prepare()?;
        self.run_prepared(&prepared, input)
    }

    fn run_prepared(&self, prepared: &[PreparedOp<'_>], input: &[i8]) -> Result<Vec<Vec<i8>>> {
        let n_in = self.tensors[0].elements();
        if input.len() != n_in {
            return Err(QuantError::InputSize { expected: n_in, got: input.len() });
        }
        let mut vals: Vec<Vec<i8>> = Vec::with_capacity(self.ops.len());
        for (op, p) in self.ops.iter().zip(prepared) {
            let y = kernels::eval(self, op, p, input, &vals);
            vals.push(y);
        }
        Ok(vals)
    }

    /// Quantizes a float input with the input tensor's parameters.
    pub fn quantize_input(&self, x: &[f32]) -> Vec<i8> {
        let t = self.input();
        x.iter().map(|&v| t.quantize(v)).collect()
    }

    /// Dequantizes an output vector.
    pub fn dequantize_output(&self, q: &[i8]) -> Vec<f32> {
        let t = self.output();
        q.iter().map(|&v| t.dequantize(v)).collect()
    }

    /// Bytes of constant data (filters + int32 biases).
    pub fn weight_bytes(&self) -> usize {
        self.ops.iter().filter_map(|o| o.kind.weights()).map(|w| w.filter.len() + 4 * w.bias.len()).sum()
    }

    /// The IR op that op `i` computes (its fused activation dropped): a conv is a conv with
    /// `groups = input channels / filter depth`, a fully-connected layer a dense on the flat
    /// input, a global average pool an average pool over the whole map.
    pub fn ir_op(&self, i: usize) -> Op {
        let op = &self.ops[i];
        let in_c = op.inputs.first().map_or(0, |&j| self.tensors[j].shape.c);
        let pool =
            |pool: [usize; 2], stride: [usize; 2], padding: Padding| Pool2d { pool, stride: Some(stride), padding };
        match &op.kind {
            QOpKind::Input => Op::Input { shape: self.tensors[i].shape },
            QOpKind::Conv2d { weights: w, stride, padding, .. } => {
                let d = &w.filter_dims;
                Op::Conv2d(Conv2d {
                    filters: d[0],
                    kernel: [d[1], d[2]],
                    stride: *stride,
                    padding: *padding,
                    groups: in_c.checked_div(d[3]).unwrap_or(1),
                    bias: true,
                })
            }
            QOpKind::DepthwiseConv2d { weights: w, stride, padding, .. } => Op::DepthwiseConv2d(DepthwiseConv2d {
                kernel: [w.filter_dims[1], w.filter_dims[2]],
                stride: *stride,
                padding: *padding,
                bias: true,
            }),
            QOpKind::FullyConnected { weights: w, .. } => Op::Dense(Dense { units: w.filter_dims[0], bias: true }),
            QOpKind::Add { .. } => Op::Add,
            QOpKind::Concat { .. } => Op::Concat,
            QOpKind::MaxPool { pool: p, stride, padding, .. } => Op::MaxPool2d(pool(*p, *stride, *padding)),
            QOpKind::AvgPool { pool: p, stride, padding, .. } => Op::AvgPool2d(pool(*p, *stride, *padding)),
            QOpKind::Reshape => Op::Reshape { shape: self.tensors[i].shape },
            QOpKind::Softmax { .. } => Op::Softmax,
        }
    }

    /// Multiply-accumulates of op `i` ([`Op::macs`] of its IR op on the kernel's input and output
    /// shapes: conv, depthwise and fully-connected only).
    pub fn op_macs(&self, i: usize) -> u64 {
        let op = &self.ops[i];
        let input = op.inputs.first().map_or(op.kernel_shape, |&j| self.tensors[j].shape);
        self.ir_op(i).macs(input, op.kernel_shape)
    }

    /// True when op `i` is a pointwise convolution (1x1, groups 1).
    pub fn is_pointwise(&self, i: usize) -> bool {
        self.ir_op(i).is_pointwise()
    }

    /// Multiply-accumulates of one inference (the sum of [`QuantizedModel::op_macs`]).
    pub fn macs(&self) -> u64 {
        (0..self.ops.len()).map(|i| self.op_macs(i)).sum()
    }
}

/// Per-channel `QuantizeMultiplier(input_scale * filter_scale / output_scale)`, in double as
/// TFLM's `PopulateConvolutionQuantizationParams` computes it from the float32 scales.
fn per_channel(
    input_scale: f32,
    filter_scales: &[f32],
    output_scale: f32,
) -> Result<(Vec<i32>, Vec<i32>), MultiplierError> {
    let mut m = Vec::with_capacity(filter_scales.len());
    let mut s = Vec::with_capacity(filter_scales.len());
    for &fs in filter_scales {
        let eff = input_scale as f64 * fs as f64 / output_scale as f64;
        let (q, sh) = fp::quantize_multiplier(eff)?;
        m.push(q);
        s.push(sh);
    }
    Ok((m, s))
}
