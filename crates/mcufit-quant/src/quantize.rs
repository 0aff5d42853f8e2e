//! Post-training quantization in the TFLite int8 scheme, on the IR's fused view.

use mcufit_ir::{Activation, FusedGraph, Graph, Op, Padding, Shape, TensorF32, Weights};

use crate::error::{QuantError, Result};
use crate::float_ref::run_float_all;
use crate::model::{QOp, QOpKind, QTensor, QWeights, QuantizedModel};

/// How the network input is quantized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputQuant {
    /// Images arrive as float `(p - 128) / 128`: scale 1/128, zero point 0, so `q = p - 128`.
    #[default]
    Image,
    /// Scale and zero point from the calibration range (e.g. MFCC features).
    Calibrated,
}

#[derive(Debug, Clone, Default)]
pub struct QuantizeOptions {
    pub input: InputQuant,
}

/// Quantizes with image input (scale 1/128, zero point 0). See [`quantize_with`].
pub fn quantize(graph: &Graph, weights: &Weights, calibration: &[Vec<f32>]) -> Result<QuantizedModel> {
    quantize_with(graph, weights, calibration, &QuantizeOptions::default())
}

/// Min/max of a value set, always including 0 so that 0 is exactly representable.
#[derive(Debug, Clone, Copy)]
struct Range {
    min: f32,
    max: f32,
}

impl Range {
    const EMPTY: Range = Range { min: 0.0, max: 0.0 };
    fn add(&mut self, v: &[f32]) {
        for &x in v {
            if x.is_finite() {
                self.min = self.min.min(x);
                self.max = self.max.max(x);
            }
        }
    }
    fn union(self, o: Range) -> Range {
        Range { min: self.min.min(o.min), max: self.max.max(o.max) }
    }
    /// Asymmetric int8 parameters as the TFLite converter chooses them (nudged zero point).
    fn qparams(self) -> (f32, i32) {
        let min = self.min.min(0.0);
        // A tensor that is constantly 0 would get scale 0; any scale represents it exactly.
        let max = self.max.max(0.0).max(min + 1e-6);
        let scale = (max - min) / 255.0;
        let zp = (-128.0 - min / scale).round().clamp(-128.0, 127.0) as i32;
        (scale, zp)
    }
}

struct UnionFind(Vec<usize>);
impl UnionFind {
    fn find(&mut self, i: usize) -> usize {
        let mut r = i;
        while self.0[r] != r {
            r = self.0[r];
        }
        let mut i = i;
        while self.0[i] != r {
            let n = self.0[i];
            self.0[i] = r;
            i = n;
        }
        r
    }
    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.0[rb] = ra;
        }
    }
}

/// Quantizes `graph` with `weights`: BN folding and activation fusion follow `Graph::fused`,
/// activations are calibrated with min/max over `calibration` (float NHWC inputs). `weights` must
/// pass [`Weights::check_deployable`] (channel-group masks folded, every value finite).
pub fn quantize_with(
    graph: &Graph,
    weights: &Weights,
    calibration: &[Vec<f32>],
    opts: &QuantizeOptions,
) -> Result<QuantizedModel> {
    weights.check_deployable(graph)?;
    if calibration.is_empty() {
        return Err(QuantError::Calibration("no calibration samples".into()));
    }
    let shapes = graph.shapes()?;
    let fused: FusedGraph = graph.fused();
    let n = fused.ops.len();

    // 1. Calibrate: the float value of every fused op's output node.
    let mut ranges = vec![Range::EMPTY; n];
    for (k, sample) in calibration.iter().enumerate() {
        let vals = run_float_all(graph, weights, sample).map_err(|e| match e {
            QuantError::InputSize { expected, got } => {
                QuantError::Calibration(format!("sample {k} has {got} values, the model takes {expected}"))
            }
            other => other,
        })?;
        for (i, fop) in fused.ops.iter().enumerate() {
            ranges[i].add(&vals[fop.output]);
        }
    }

    // 2. Ops that move bytes without rescaling force one quantization on all their tensors.
    let mut uf = UnionFind((0..n).collect());
    for (i, fop) in fused.ops.iter().enumerate() {
        let tie = match &graph.nodes[fop.anchor].op {
            Op::MaxPool2d(_) | Op::AvgPool2d(_) | Op::GlobalAvgPool | Op::Concat | Op::Flatten | Op::Reshape { .. } => {
                true
            }
            Op::Relu | Op::Relu6 => true, // exported as a 1x1 max pool with a fused clamp
            _ => false,
        };
        if tie {
            for &j in &fop.inputs {
                uf.union(i, j);
            }
        }
    }
    let mut group_range: Vec<Option<Range>> = vec![None; n];
    let mut group_fixed: Vec<Option<(f32, i32)>> = vec![None; n];
    for (i, &range) in ranges.iter().enumerate() {
        let r = uf.find(i);
        group_range[r] = Some(group_range[r].map_or(range, |g| g.union(range)));
        let fixed = if i == 0 && opts.input == InputQuant::Image {
            Some((1.0 / 128.0, 0))
        } else if matches!(graph.nodes[fused.ops[i].anchor].op, Op::Softmax) {
            Some((1.0 / 256.0, -128))
        } else {
            None
        };
        if let Some(f) = fixed {
            if let Some(prev) = group_fixed[r] {
                if prev != f {
                    return Err(QuantError::Unsupported {
                        node: graph.nodes[fused.ops[i].anchor].name.clone(),
                        msg: "two tensors with fixed, different quantizations must share one (e.g. the input and a softmax output joined by a concat)".into(),
                    });
                }
            }
            group_fixed[r] = Some(f);
        }
    }
    let mut tensors = Vec::with_capacity(n);
    for (i, fop) in fused.ops.iter().enumerate() {
        let r = uf.find(i);
        let (scale, zero_point) = group_fixed[r].unwrap_or_else(|| group_range[r].unwrap_or(ranges[i]).qparams());
        tensors.push(QTensor { name: graph.nodes[fop.output].name.clone(), shape: fop.shape, scale, zero_point });
    }

    // 3. Ops, with folded and quantized weights.
    let mut ops = Vec::with_capacity(n);
    for (i, fop) in fused.ops.iter().enumerate() {
        let anchor = &graph.nodes[fop.anchor];
        let unsupported = |msg: &str| QuantError::Unsupported { node: anchor.name.clone(), msg: msg.into() };
        let kernel_shape = shapes[fop.anchor];
        let in_scale = fop.inputs.first().map_or(1.0, |&j| tensors[j].scale);
        let in_shape = anchor.inputs.first().map_or(kernel_shape, |&j| shapes[j]);
        let bn = fop.batch_norm.map(|b| bn_fold(graph, weights, b)).transpose()?;
        let act = fop.activation;
        let kind = match &anchor.op {
            Op::Input { .. } => QOpKind::Input,
            Op::Conv2d(c) => {
                let (k, b) = kernel_of(weights, &anchor.name)?;
                let w = quantize_weights(&k.data, b, &k.shape, 0, bn.as_ref(), in_scale);
                QOpKind::Conv2d { weights: w, stride: c.stride, padding: c.padding, activation: act }
            }
            Op::DepthwiseConv2d(d) => {
                let (k, b) = kernel_of(weights, &anchor.name)?;
                let w = quantize_weights(&k.data, b, &k.shape, 3, bn.as_ref(), in_scale);
                QOpKind::DepthwiseConv2d { weights: w, stride: d.stride, padding: d.padding, activation: act }
            }
            Op::Dense(_) => {
                let (k, b) = kernel_of(weights, &anchor.name)?;
                let w = quantize_weights(&k.data, b, &k.shape, 0, bn.as_ref(), in_scale);
                QOpKind::FullyConnected { weights: w, activation: act }
            }
            Op::BatchNorm(_) => {
                // A batch norm with nothing to fold into becomes a 1x1 depthwise conv.
                let (scale, shift) = bn_fold(graph, weights, fop.anchor)?;
                let c = kernel_shape.c;
                let ones = vec![1.0f32; c];
                let dims = vec![1, 1, 1, c];
                let w = quantize_weights(&ones, None, &dims, 3, Some(&(scale, shift)), in_scale);
                QOpKind::DepthwiseConv2d { weights: w, stride: [1, 1], padding: Padding::Valid, activation: act }
            }
            Op::Relu | Op::Relu6 => {
                let a = if matches!(anchor.op, Op::Relu) { Activation::Relu } else { Activation::Relu6 };
                QOpKind::MaxPool { pool: [1, 1], stride: [1, 1], padding: Padding::Valid, activation: a }
            }
            Op::MaxPool2d(p) => {
                QOpKind::MaxPool { pool: p.pool, stride: p.strides(), padding: p.padding, activation: act }
            }
            Op::AvgPool2d(p) => {
                QOpKind::AvgPool { pool: p.pool, stride: p.strides(), padding: p.padding, activation: act }
            }
            Op::GlobalAvgPool => QOpKind::AvgPool {
                pool: [in_shape.h, in_shape.w],
                stride: [1, 1],
                padding: Padding::Valid,
                activation: act,
            },
            Op::Add => {
                if anchor.inputs.len() != 2 {
                    return Err(unsupported(
                        "add of more than two tensors (TFLite ADD is binary); split it into a chain of adds",
                    ));
                }
                QOpKind::Add { activation: act }
            }
            Op::Concat => QOpKind::Concat { activation: act },
            Op::Flatten | Op::Reshape { .. } => QOpKind::Reshape,
            Op::Softmax => QOpKind::Softmax { beta: 1.0 },
        };
        ops.push(QOp { name: anchor.name.clone(), kind, inputs: fop.inputs.clone(), kernel_shape });
        let _ = i;
    }
    let model = QuantizedModel { name: graph.name.clone(), ops, tensors };
    // Catch anything the fused view allows but the int8 kernels cannot do (and compute the
    // multipliers once, so an unrepresentable one fails here rather than at run time).
    model.prepare()?;
    Ok(model)
}

/// A kernel (its shape checked against the graph's by [`Weights::check`]) and its bias.
fn kernel_of<'a>(weights: &'a Weights, name: &str) -> Result<(&'a TensorF32, Option<&'a [f32]>)> {
    let k = weights.kernel(name).ok_or_else(|| QuantError::MissingWeights { node: name.into() })?;
    Ok((k, weights.bias(name)))
}

/// Batch norm as a per-channel affine map `y = x * scale + shift`.
fn bn_fold(graph: &Graph, weights: &Weights, node: usize) -> Result<(Vec<f32>, Vec<f32>)> {
    let n = &graph.nodes[node];
    let eps = match &n.op {
        Op::BatchNorm(b) => b.eps,
        _ => return Err(QuantError::Model(format!("'{}' is not a batch norm", n.name))),
    };
    let w = weights.bn(&n.name).ok_or_else(|| QuantError::MissingWeights { node: n.name.clone() })?;
    let scale: Vec<f32> = w.gamma.iter().zip(&w.var).map(|(g, v)| g / (v + eps).sqrt()).collect();
    let shift = w.beta.iter().zip(&w.mean).zip(&scale).map(|((b, m), s)| b - m * s).collect();
    Ok((scale, shift))
}

/// Folds an optional batch norm into a kernel and quantizes it per output channel.
/// `channel_axis` is 0 for OHWI / `[units, in]` and 3 for depthwise `[1, kh, kw, c]`.
fn quantize_weights(
    kernel: &[f32],
    bias: Option<&[f32]>,
    dims: &[usize],
    channel_axis: usize,
    bn: Option<&(Vec<f32>, Vec<f32>)>,
    input_scale: f32,
) -> QWeights {
    let channels = dims[channel_axis];
    let inner: usize = dims[channel_axis + 1..].iter().product();
    let channel_of = |i: usize| (i / inner) % channels;
    let mut w: Vec<f32> = kernel.to_vec();
    let mut b: Vec<f32> = bias.map_or_else(|| vec![0.0; channels], |b| b.to_vec());
    if let Some((scale, shift)) = bn {
        for (i, v) in w.iter_mut().enumerate() {
            *v *= scale[channel_of(i)];
        }
        for c in 0..channels {
            b[c] = b[c] * scale[c] + shift[c];
        }
    }
    let mut max_abs = vec![0f32; channels];
    for (i, v) in w.iter().enumerate() {
        let c = channel_of(i);
        max_abs[c] = max_abs[c].max(v.abs());
    }
    // An all-zero channel gets scale 1: its weights are 0 in any scale. A channel whose bias would
    // not fit in int32 at `input_scale * scale` (a near-constant input, e.g. a dead ReLU, has a tiny
    // scale) gets a coarser filter scale instead, as the TFLite converter does
    // (`AdjustWeightsForBiasScale`); half of int32 leaves room for the C export's fold of
    // `input_offset * sum(filter)` into the bias.
    const BIAS_LIMIT: f64 = (1u64 << 30) as f64;
    let filter_scales: Vec<f32> = max_abs
        .iter()
        .zip(&b)
        .map(|(&m, &bias)| {
            let s = if m > 0.0 { m / 127.0 } else { 1.0 };
            let min = (bias.abs() as f64 / (input_scale as f64 * BIAS_LIMIT)) as f32;
            if s < min {
                // Rounded up so that the f32 product `input_scale * s` keeps the bias in range.
                min * (1.0 + 1e-3)
            } else {
                s
            }
        })
        .collect();
    let filter = w
        .iter()
        .enumerate()
        .map(|(i, v)| (v / filter_scales[channel_of(i)]).round().clamp(-127.0, 127.0) as i8)
        .collect();
    let bias = b
        .iter()
        .zip(&filter_scales)
        .map(|(&v, &s)| {
            let bias_scale = input_scale * s; // f32 product, as stored in the .tflite bias tensor
            (v as f64 / bias_scale as f64).round().clamp(i32::MIN as f64, i32::MAX as f64) as i32
        })
        .collect();
    QWeights { filter, filter_dims: dims.to_vec(), filter_scales, bias }
}

/// The float shape helper re-exported for tests.
pub fn flat(n: usize) -> Shape {
    Shape::flat(n)
}

#[cfg(test)]
mod bias_scale_tests {
    use super::quantize_weights;

    #[test]
    fn a_tiny_input_scale_coarsens_the_filter_scale_instead_of_overflowing_the_bias() {
        // A dense layer [2 units, 3 inputs] reading a near-constant input (scale 4e-9, as a dead ReLU's
        // calibration range gives): at the weights' own scale the bias would be 1e14 steps.
        let kernel = [0.5, -0.25, 0.1, 0.02, 0.01, -0.03];
        let bias = [0.4f32, -0.001];
        let q = quantize_weights(&kernel, Some(&bias), &[2, 3], 0, None, 4e-9);
        for (c, (&b, &s)) in q.bias.iter().zip(&q.filter_scales).enumerate() {
            assert!((b as i64).abs() <= 1 << 30, "channel {c}: bias {b} not below 2^30");
            let back = b as f64 * 4e-9f32 as f64 * s as f64;
            let want = bias[c] as f64;
            assert!((back - want).abs() <= 1e-3 * want.abs(), "channel {c}: bias {back} vs {want}");
        }
        // Channel 0's scale grew (its filter is coarser, same signs); channel 1's did not need to.
        assert!(q.filter_scales[0] > 20.0 * (0.5 / 127.0), "{:?}", q.filter_scales);
        assert_eq!(&q.filter[..3], &[5, -3, 1]);
        assert_eq!(q.filter_scales[1], 0.03 / 127.0);
        // Normal inputs keep the max-abs scales exactly.
        let q = quantize_weights(&kernel, Some(&bias), &[2, 3], 0, None, 1.0 / 128.0);
        assert_eq!(q.filter_scales, vec![0.5 / 127.0, 0.03 / 127.0]);
        assert_eq!(q.filter[0], 127);
    }
}
