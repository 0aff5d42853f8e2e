//! The operators of the IR. Each op is a small struct that knows its own argument checks and
//! output shape; the graph only wires them together.

use serde::{Deserialize, Serialize};

use crate::error::{IrError, Result};

/// An activation tensor's shape, batch excluded, in NHWC order (the layout TFLite and CMSIS-NN use).
/// Flat tensors (after `flatten`, `global_avg_pool`, `dense`) are `[1, 1, n]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "[usize; 3]", into = "[usize; 3]")]
pub struct Shape {
    pub h: usize,
    pub w: usize,
    pub c: usize,
}

impl Shape {
    pub const fn new(h: usize, w: usize, c: usize) -> Self {
        Shape { h, w, c }
    }
    pub const fn flat(n: usize) -> Self {
        Shape { h: 1, w: 1, c: n }
    }
    pub const fn elements(&self) -> usize {
        self.h * self.w * self.c
    }
    pub const fn spatial(&self) -> usize {
        self.h * self.w
    }
    pub const fn is_flat(&self) -> bool {
        self.h == 1 && self.w == 1
    }
    /// `h·w·c`, or `None` where it overflows.
    pub fn checked_elements(&self) -> Option<u64> {
        (self.h as u64).checked_mul(self.w as u64)?.checked_mul(self.c as u64)
    }
}

/// The largest element, weight or MAC count one op may have: 2^53, the largest integer the cost
/// model's `f64` figures hold exactly. No microcontroller comes near it; shape inference refuses
/// more, so no size computed from a valid graph overflows.
pub const MAX_COUNT: u64 = 1 << 53;

impl From<[usize; 3]> for Shape {
    fn from(a: [usize; 3]) -> Self {
        Shape::new(a[0], a[1], a[2])
    }
}
impl From<Shape> for [usize; 3] {
    fn from(s: Shape) -> Self {
        [s.h, s.w, s.c]
    }
}
impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}x{}", self.h, self.w, self.c)
    }
}

/// Spatial padding, with TensorFlow semantics: `same` pads so that `out = ceil(in / stride)`, the
/// odd extra pixel going to the bottom/right; `valid` pads nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Padding {
    Same,
    #[default]
    Valid,
}

impl Padding {
    /// Output length along one axis.
    pub fn out_len(self, input: usize, kernel: usize, stride: usize) -> Option<usize> {
        if stride == 0 || kernel == 0 || input == 0 {
            return None;
        }
        match self {
            Padding::Same => Some(input.div_ceil(stride)),
            Padding::Valid => (input >= kernel).then(|| (input - kernel) / stride + 1),
        }
    }
    /// Padding before (top/left) and after (bottom/right) along one axis, as TensorFlow computes it.
    pub fn pads(self, input: usize, kernel: usize, stride: usize) -> (usize, usize) {
        match self {
            Padding::Valid => (0, 0),
            Padding::Same => {
                let out = input.div_ceil(stride);
                let total = out.saturating_sub(1).saturating_mul(stride).saturating_add(kernel).saturating_sub(input);
                (total / 2, total - total / 2)
            }
        }
    }
}

fn one() -> [usize; 2] {
    [1, 1]
}
fn one_usize() -> usize {
    1
}
fn yes() -> bool {
    true
}
fn bn_eps() -> f32 {
    1e-3
}

/// Standard (optionally grouped) 2-D convolution. Weights are OHWI: `[filters, kh, kw, in_c / groups]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conv2d {
    pub filters: usize,
    pub kernel: [usize; 2],
    #[serde(default = "one")]
    pub stride: [usize; 2],
    #[serde(default)]
    pub padding: Padding,
    #[serde(default = "one_usize")]
    pub groups: usize,
    #[serde(default = "yes")]
    pub bias: bool,
}

/// Depthwise convolution with depth multiplier 1 (the only one TFLM-class models use): one
/// `kh x kw` filter per input channel. Weights are `[1, kh, kw, c]` as in TFLite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DepthwiseConv2d {
    pub kernel: [usize; 2],
    #[serde(default = "one")]
    pub stride: [usize; 2],
    #[serde(default)]
    pub padding: Padding,
    #[serde(default = "yes")]
    pub bias: bool,
}

/// Fully connected layer on a flat `[1, 1, n]` input. Weights are `[units, n]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dense {
    pub units: usize,
    #[serde(default = "yes")]
    pub bias: bool,
}

/// Inference-time batch normalisation; always folded into the preceding conv/dense on export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchNorm {
    #[serde(default = "bn_eps")]
    pub eps: f32,
}

impl Default for BatchNorm {
    fn default() -> Self {
        BatchNorm { eps: bn_eps() }
    }
}

/// Max or average pooling window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pool2d {
    pub pool: [usize; 2],
    /// Defaults to the pool size, as in Keras.
    #[serde(default)]
    pub stride: Option<[usize; 2]>,
    #[serde(default)]
    pub padding: Padding,
}

impl Pool2d {
    pub fn strides(&self) -> [usize; 2] {
        self.stride.unwrap_or(self.pool)
    }
}

/// One IR operator. Serialised with an `"op"` tag, e.g. `{"op": "conv2d", "filters": 8, ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// The network input; exactly one, first in the graph.
    Input {
        shape: Shape,
    },
    Conv2d(Conv2d),
    DepthwiseConv2d(DepthwiseConv2d),
    Dense(Dense),
    BatchNorm(BatchNorm),
    Relu,
    Relu6,
    MaxPool2d(Pool2d),
    AvgPool2d(Pool2d),
    GlobalAvgPool,
    /// Element-wise sum of two or more tensors of equal shape.
    Add,
    /// Concatenation along the channel axis.
    Concat,
    /// NHWC flatten to `[1, 1, h*w*c]`.
    Flatten,
    Reshape {
        shape: Shape,
    },
    Softmax,
}

/// A number the cost formulas ([`Op::weight_count`], [`Op::macs_at`]) are evaluated in: `u64`
/// for exact counts, `f64` for the cost model's fractional channel counts.
pub trait Count: Copy + std::ops::Mul<Output = Self> + std::ops::Div<Output = Self> {
    /// A size (kernel area, group count) in this type.
    fn of(n: usize) -> Self;
}

impl Count for u64 {
    fn of(n: usize) -> Self {
        n as u64
    }
}

impl Count for f64 {
    fn of(n: usize) -> Self {
        n as f64
    }
}

/// How many inputs an op takes.
enum Arity {
    Exactly(usize),
    AtLeast(usize),
}

impl Op {
    /// Short kind name used in tables and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Input { .. } => "input",
            Op::Conv2d(_) if self.is_pointwise() => "conv2d_1x1",
            Op::Conv2d(_) => "conv2d",
            Op::DepthwiseConv2d(_) => "depthwise_conv2d",
            Op::Dense(_) => "dense",
            Op::BatchNorm(_) => "batch_norm",
            Op::Relu => "relu",
            Op::Relu6 => "relu6",
            Op::MaxPool2d(_) => "max_pool2d",
            Op::AvgPool2d(_) => "avg_pool2d",
            Op::GlobalAvgPool => "global_avg_pool",
            Op::Add => "add",
            Op::Concat => "concat",
            Op::Flatten => "flatten",
            Op::Reshape { .. } => "reshape",
            Op::Softmax => "softmax",
        }
    }

    fn arity(&self) -> Arity {
        match self {
            Op::Input { .. } => Arity::Exactly(0),
            Op::Add | Op::Concat => Arity::AtLeast(2),
            _ => Arity::Exactly(1),
        }
    }

    /// True for a pointwise convolution: a 1x1 conv2d with groups 1.
    pub fn is_pointwise(&self) -> bool {
        matches!(self, Op::Conv2d(c) if c.kernel == [1, 1] && c.groups == 1)
    }

    /// Weights of the op (biases excluded) with `in_c` input and `out_c` output channels:
    /// conv `kh * kw * in_c / groups * out_c`, depthwise `kh * kw * out_c`, dense `in_c * out_c`
    /// (`in_c` = the flat input's length), 0 for every other op. Generic so that the cost model can
    /// evaluate it at fractional channel counts (`f64`) and the exporters exactly (`u64`).
    pub fn weight_count<T: Count>(&self, in_c: T, out_c: T) -> T {
        match self {
            Op::Conv2d(c) => T::of(c.kernel[0] * c.kernel[1]) * in_c / T::of(c.groups) * out_c,
            Op::DepthwiseConv2d(d) => T::of(d.kernel[0] * d.kernel[1]) * out_c,
            Op::Dense(_) => in_c * out_c,
            _ => T::of(0),
        }
    }

    /// Multiply-accumulates of one inference, as MLPerf Tiny counts them: conv, depthwise and
    /// dense only, each weight used once per output pixel (`out_pixels` = output height x width;
    /// 1 for dense). The one MAC formula of mcufit: the cost model, the quantized model and the
    /// exporters all call it. See [`Op::weight_count`] for `in_c` / `out_c`.
    pub fn macs_at<T: Count>(&self, out_pixels: T, in_c: T, out_c: T) -> T {
        out_pixels * self.weight_count(in_c, out_c)
    }

    /// Exact MACs of one inference for these input and output shapes (see [`Op::macs_at`]).
    pub fn macs(&self, input: Shape, output: Shape) -> u64 {
        let in_c = if matches!(self, Op::Dense(_)) { input.elements() } else { input.c };
        self.macs_at(output.spatial() as u64, in_c as u64, output.c as u64)
    }

    /// The kernel's shape in TFLite layout for an op reading `input`: conv2d OHWI
    /// `[filters, kh, kw, in_c / groups]`, depthwise `[1, kh, kw, c]`, dense `[units, n]` (`n` = the
    /// flat input's length, NHWC order); `None` for ops without a kernel.
    pub fn kernel_shape(&self, input: Shape) -> Option<Vec<usize>> {
        match self {
            Op::Conv2d(c) => Some(vec![c.filters, c.kernel[0], c.kernel[1], input.c / c.groups.max(1)]),
            Op::DepthwiseConv2d(d) => Some(vec![1, d.kernel[0], d.kernel[1], input.c]),
            Op::Dense(d) => Some(vec![d.units, input.elements()]),
            _ => None,
        }
    }

    /// True for a conv, depthwise conv or dense layer with a bias.
    pub fn has_bias(&self) -> bool {
        match self {
            Op::Conv2d(c) => c.bias,
            Op::DepthwiseConv2d(d) => d.bias,
            Op::Dense(d) => d.bias,
            _ => false,
        }
    }

    /// True for ops that carry weights (and so create new output channels, except depthwise).
    pub fn has_weights(&self) -> bool {
        matches!(self, Op::Conv2d(_) | Op::DepthwiseConv2d(_) | Op::Dense(_) | Op::BatchNorm(_))
    }

    /// Element-wise activations, fused into the producer on deployment.
    pub fn is_activation(&self) -> bool {
        matches!(self, Op::Relu | Op::Relu6)
    }

    /// Checks the op's own arguments and infers its output shape from its input shapes.
    /// `name` is only used in error messages. Sizes are checked, never overflowed: a tensor, a
    /// kernel or a MAC count over [`MAX_COUNT`] is an error naming the node.
    pub fn output_shape(&self, name: &str, inputs: &[Shape]) -> Result<Shape> {
        let err = |m: String| IrError::node(name, m);
        let too_big = |what: &str| err(format!("{what} is too large: more than 2^53 (the largest exact count)"));
        let count_ok = |n: Option<u128>| n.is_some_and(|n| n <= MAX_COUNT as u128);
        if let Some(x) = inputs.iter().find(|x| !count_ok(x.checked_elements().map(u128::from))) {
            return Err(too_big(&format!("input tensor {x}")));
        }
        if let Op::Input { shape } = self {
            if !count_ok(shape.checked_elements().map(u128::from)) {
                return Err(too_big(&format!("input shape {shape}")));
            }
        }
        if let Op::Reshape { shape } = self {
            if !count_ok(shape.checked_elements().map(u128::from)) {
                return Err(too_big(&format!("reshape target {shape}")));
            }
        }
        let out = self.infer_shape(name, inputs)?;
        if !count_ok(out.checked_elements().map(u128::from)) {
            return Err(too_big(&format!("output tensor {out}")));
        }
        // Kernel weights and MACs (pool windows for pools) at these shapes, in u128: each factor is
        // below 2^64, and a product that overflows even u128 is too large all the same.
        let mul = |xs: &[usize]| xs.iter().try_fold(1u128, |a, &x| a.checked_mul(x as u128));
        let pixels = out.spatial();
        let (weights, work) = match self {
            Op::Conv2d(c) => {
                let w = mul(&[c.kernel[0], c.kernel[1], inputs[0].c / c.groups.max(1), c.filters]);
                (w, w.and_then(|w| w.checked_mul(pixels as u128)))
            }
            Op::DepthwiseConv2d(d) => {
                let w = mul(&[d.kernel[0], d.kernel[1], out.c]);
                (w, w.and_then(|w| w.checked_mul(pixels as u128)))
            }
            Op::Dense(d) => {
                let w = mul(&[inputs[0].c, d.units]);
                (w, w)
            }
            Op::MaxPool2d(p) | Op::AvgPool2d(p) => (Some(0), mul(&[p.pool[0], p.pool[1], out.h, out.w, out.c])),
            _ => (Some(0), Some(0)),
        };
        if !count_ok(weights) {
            return Err(too_big(&format!("{} kernel (weights) for the {out} output", self.kind())));
        }
        if !count_ok(work) {
            return Err(too_big(&format!("{} work (MACs / window elements) for the {out} output", self.kind())));
        }
        Ok(out)
    }

    fn infer_shape(&self, name: &str, inputs: &[Shape]) -> Result<Shape> {
        let err = |m: String| IrError::node(name, m);
        match self.arity() {
            Arity::Exactly(n) if inputs.len() != n => {
                return Err(err(format!("{} takes {} input(s), got {}", self.kind(), n, inputs.len())))
            }
            Arity::AtLeast(n) if inputs.len() < n => {
                return Err(err(format!("{} takes at least {} inputs, got {}", self.kind(), n, inputs.len())))
            }
            _ => {}
        }
        let spatial = |x: Shape, k: [usize; 2], s: [usize; 2], p: Padding, what: &str| -> Result<(usize, usize)> {
            if k.contains(&0) || s.contains(&0) {
                return Err(err(format!("{what} kernel/stride must be positive, got kernel {k:?} stride {s:?}")));
            }
            match (p.out_len(x.h, k[0], s[0]), p.out_len(x.w, k[1], s[1])) {
                (Some(h), Some(w)) => Ok((h, w)),
                _ => Err(err(format!("{what} {}x{} window does not fit the {x} input with valid padding", k[0], k[1]))),
            }
        };
        match self {
            Op::Input { shape } => {
                if shape.elements() == 0 {
                    return Err(err(format!("input shape {shape} has a zero dimension")));
                }
                Ok(*shape)
            }
            Op::Conv2d(c) => {
                let x = inputs[0];
                if c.filters == 0 || c.groups == 0 {
                    return Err(err("conv2d needs filters > 0 and groups > 0".into()));
                }
                if !x.c.is_multiple_of(c.groups) || !c.filters.is_multiple_of(c.groups) {
                    return Err(err(format!(
                        "conv2d groups={} must divide input channels ({}) and filters ({})",
                        c.groups, x.c, c.filters
                    )));
                }
                let (h, w) = spatial(x, c.kernel, c.stride, c.padding, "conv2d")?;
                Ok(Shape::new(h, w, c.filters))
            }
            Op::DepthwiseConv2d(d) => {
                let x = inputs[0];
                let (h, w) = spatial(x, d.kernel, d.stride, d.padding, "depthwise_conv2d")?;
                Ok(Shape::new(h, w, x.c))
            }
            Op::Dense(d) => {
                let x = inputs[0];
                if !x.is_flat() {
                    return Err(err(format!(
                        "dense needs a flat [1,1,n] input, got {x}; add a flatten or global_avg_pool"
                    )));
                }
                if d.units == 0 {
                    return Err(err("dense needs units > 0".into()));
                }
                Ok(Shape::flat(d.units))
            }
            Op::BatchNorm(b) => {
                // A literal beyond f32's range (1e39) reads as infinity: refused like NaN and <= 0.
                if !b.eps.is_finite() || b.eps <= 0.0 {
                    return Err(err(format!(
                        "batch_norm eps must be a positive finite number (e.g. 0.001), got {}",
                        b.eps
                    )));
                }
                Ok(inputs[0])
            }
            Op::Relu | Op::Relu6 | Op::Softmax => Ok(inputs[0]),
            Op::MaxPool2d(p) | Op::AvgPool2d(p) => {
                let x = inputs[0];
                let (h, w) = spatial(x, p.pool, p.strides(), p.padding, self.kind())?;
                Ok(Shape::new(h, w, x.c))
            }
            Op::GlobalAvgPool => Ok(Shape::flat(inputs[0].c)),
            Op::Add => {
                let first = inputs[0];
                if let Some(other) = inputs.iter().find(|s| **s != first) {
                    return Err(err(format!("add needs inputs of equal shape, got {first} and {other}")));
                }
                Ok(first)
            }
            Op::Concat => {
                let first = inputs[0];
                if let Some(other) = inputs.iter().find(|s| s.h != first.h || s.w != first.w) {
                    return Err(err(format!("concat needs inputs of equal height and width, got {first} and {other}")));
                }
                let c = inputs.iter().try_fold(0usize, |a, s| a.checked_add(s.c));
                let c = c.ok_or_else(|| err(format!("concat of {} inputs has too many channels", inputs.len())))?;
                Ok(Shape::new(first.h, first.w, c))
            }
            Op::Flatten => Ok(Shape::flat(inputs[0].elements())),
            Op::Reshape { shape } => {
                if shape.elements() != inputs[0].elements() {
                    return Err(err(format!(
                        "reshape from {} ({} elements) to {shape} ({} elements)",
                        inputs[0],
                        inputs[0].elements(),
                        shape.elements()
                    )));
                }
                Ok(*shape)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(filters: usize, kernel: [usize; 2], groups: usize) -> Op {
        Op::Conv2d(Conv2d { filters, kernel, stride: [1, 1], padding: Padding::Same, groups, bias: true })
    }

    #[test]
    fn macs_of_each_weighted_op() {
        let x = Shape::new(10, 8, 6);
        // Grouped 3x3 conv, 12 filters, groups 2: each output uses 3*3*3 inputs.
        assert_eq!(conv(12, [3, 3], 2).macs(x, Shape::new(10, 8, 12)), 80 * 12 * 27);
        let dw =
            Op::DepthwiseConv2d(DepthwiseConv2d { kernel: [3, 3], stride: [2, 2], padding: Padding::Same, bias: true });
        assert_eq!(dw.macs(x, Shape::new(5, 4, 6)), 20 * 6 * 9);
        // Dense reads its whole (flat) input.
        assert_eq!(Op::Dense(Dense { units: 7, bias: true }).macs(Shape::flat(480), Shape::flat(7)), 480 * 7);
        let pool = Op::MaxPool2d(Pool2d { pool: [2, 2], stride: None, padding: Padding::Valid });
        assert_eq!(pool.macs(x, Shape::new(5, 4, 6)), 0);
        assert_eq!(Op::Add.macs(x, x), 0);
        // The f64 form (the cost model's) agrees at integer channel counts.
        assert_eq!(conv(12, [3, 3], 2).macs_at(80.0, 6.0, 12.0), (80 * 12 * 27) as f64);
        assert_eq!(conv(12, [3, 3], 2).weight_count(6u64, 12), 12 * 27);
    }

    #[test]
    fn pointwise_is_a_1x1_conv_with_groups_1() {
        assert!(conv(8, [1, 1], 1).is_pointwise());
        assert_eq!(conv(8, [1, 1], 1).kind(), "conv2d_1x1");
        assert!(!conv(8, [1, 1], 2).is_pointwise());
        assert!(!conv(8, [3, 3], 1).is_pointwise());
        assert!(!Op::DepthwiseConv2d(DepthwiseConv2d {
            kernel: [1, 1],
            stride: [1, 1],
            padding: Padding::Same,
            bias: true
        })
        .is_pointwise());
    }

    #[test]
    fn absurd_sizes_are_errors_naming_the_node_not_overflows() {
        let big = usize::MAX;
        let input = Op::Input { shape: Shape::new(big, big, 3) };
        let e = input.output_shape("in", &[]).unwrap_err().to_string();
        assert!(e.contains("'in'") && e.contains("too large"), "{e}");
        let x = Shape::new(8, 8, 3);
        let deep = Shape::new(1, 1, 1024);
        for (op, ins, what) in [
            (conv(big, [1, 1], 1), x, "output tensor"),
            (conv(1 << 46, [3, 3], 1), deep, "kernel"),
            (conv(8, [big, 1], 1), x, "kernel"),
            (conv(1 << 40, [3, 3], 1), Shape::new(64, 64, 3), "work"),
            (Op::MaxPool2d(Pool2d { pool: [big, 1], stride: Some([1, 1]), padding: Padding::Same }), x, "work"),
            (Op::Dense(Dense { units: big, bias: true }), Shape::flat(192), "output tensor"),
            (Op::Dense(Dense { units: 1 << 45, bias: true }), Shape::flat(1 << 20), "kernel"),
            (Op::Reshape { shape: Shape::new(big, 2, 2) }, x, "reshape target"),
        ] {
            let e = op.output_shape("layer", &[ins]).unwrap_err().to_string();
            assert!(e.contains("'layer'") && e.contains(what), "{op:?}: {e}");
        }
        let e = Op::Concat.output_shape("cat", &[Shape::new(1, 1, big / 2 + 1); 2]).unwrap_err().to_string();
        assert!(e.contains("'cat'"), "{e}");
        // Large but countable sizes are fine.
        assert_eq!(conv(1_000_000, [1, 1], 1).output_shape("c", &[x]).unwrap(), Shape::new(8, 8, 1_000_000));
    }
}
