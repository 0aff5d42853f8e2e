//! One mapping per ONNX operator (see the table in the parent module's docs).

use std::rc::Rc;

use mcufit_ir::layout::{oihw_to_ohwi, transpose};
use mcufit_ir::{BnWeights, Conv2d, Dense, DepthwiseConv2d, NodeWeights, Op, Padding, Pool2d, Shape, TensorF32};

use super::tensor::{self, Const, Data};
use super::{fold, Act, At, Importer, Layout, Value};
use crate::Result;

/// The operators [`Importer::node`] maps, for the error that lists them.
const SUPPORTED: &str =
    "Conv, Pad (before a Conv), BatchNormalization, Relu, Clip, MaxPool, AveragePool, GlobalAveragePool, \
     GlobalMaxPool, ReduceMean (over H and W), Add, Concat, Gemm, MatMul, Flatten, Reshape, Transpose (NCHW to NHWC \
     before a flatten), Softmax, Identity, Dropout, Cast, Constant, and on constants ConstantOfShape, Shape, Gather, \
     Unsqueeze, Squeeze, Slice, Range, Sub, Mul, Div";

impl Importer {
    /// Maps one ONNX node.
    pub(super) fn node(&mut self, at: &At) -> Result<()> {
        if !matches!(at.node.domain(), "" | "ai.onnx") {
            return Err(at.unsupported(format!(
                "operator domain '{}' is not the standard ONNX one; mcufit imports standard operators only",
                at.node.domain()
            )));
        }
        if at.op() != "Constant" && self.all_const(at) {
            return self.fold(at);
        }
        match at.op() {
            "Conv" => self.conv(at),
            "Pad" => self.pad(at),
            "BatchNormalization" => self.batch_norm(at),
            "Relu" => self.activation(at, Op::Relu),
            "Clip" => self.clip(at),
            "MaxPool" => self.pool(at, true),
            "AveragePool" => self.pool(at, false),
            "GlobalAveragePool" => self.global_pool(at, false),
            "GlobalMaxPool" => self.global_pool(at, true),
            "ReduceMean" => self.reduce_mean(at),
            "Add" => self.add(at),
            "Concat" => self.concat(at),
            "Gemm" => self.gemm(at),
            "MatMul" => self.matmul(at),
            "Flatten" => self.flatten(at),
            "Reshape" => self.reshape(at),
            "Transpose" => self.transpose(at),
            "Softmax" => self.softmax(at),
            "Identity" | "Dropout" => self.pass_through(at),
            "Cast" => self.cast(at),
            "Constant" => self.constant(at),
            "Shape" => self.shape(at),
            op @ ("ConstantOfShape" | "Gather" | "Unsqueeze" | "Squeeze" | "Slice" | "Range" | "Sub" | "Mul"
            | "Div") => Err(at.unsupported(format!(
                "{op} of a computed tensor; mcufit evaluates {op} on constants only (shape arithmetic, folded at \
                 import)"
            ))),
            other => Err(at.unsupported(format!(
                "mcufit does not import the ONNX operator {other}; it imports {SUPPORTED} (a float CNN as \
                 torch.onnx.export writes it)"
            ))),
        }
    }

    // ---- convolutions and pooling ---------------------------------------------------------------

    /// `Conv`: group 1 (or any group) → conv2d, group = in = out channels → depthwise_conv2d.
    fn conv(&mut self, at: &At) -> Result<()> {
        let (x, pre) = match self.value(at, 0)? {
            Value::Padded(a, p) => (*a, *p),
            _ => (self.act(at, 0)?, [0; 4]),
        };
        let xs = self.nchw(at, x)?;
        let (w, wname) = self.floats(at, 1)?;
        let [m, cg, kh, kw] = w.dims[..] else {
            return Err(at.unsupported(format!(
                "weight '{wname}' has dims {:?}; mcufit imports 2-D convolutions (weights [M, C/group, kH, kW])",
                w.dims
            )));
        };
        if [m, kh, kw].contains(&0) {
            return Err(at.malformed(format!("weight '{wname}' has an empty dimension in {:?}", w.dims)));
        }
        let group = positive(at, "group", at.int("group", 1)?)?;
        if cg.checked_mul(group) != Some(xs.c) {
            return Err(at.malformed(format!(
                "weight '{wname}' [{m}, {cg}, {kh}, {kw}] with group {group} does not read the input's {} channels",
                xs.c
            )));
        }
        if let Some(k) = at.ints("kernel_shape") {
            if k != [kh as i64, kw as i64] {
                return Err(at.malformed(format!("kernel_shape {k:?} differs from weight '{wname}' [{kh}, {kw}]")));
            }
        }
        no_dilation(at)?;
        let stride = strides(at)?;
        let pads = padding(at, xs, [kh, kw], stride, pre)?;
        let bias = match at.input(2) {
            Some(_) => Some(self.vector(at, 2, m)?),
            None => None,
        };
        let wd = w.floats().unwrap_or_default();
        let (op, kernel) = if group > 1 && group == xs.c && m == xs.c {
            // [C, 1, kh, kw] → [1, kh, kw, C]
            let k = transpose(wd, m, kh * kw);
            let op = DepthwiseConv2d { kernel: [kh, kw], stride, padding: pads.0, bias: bias.is_some() };
            (Op::DepthwiseConv2d(op), TensorF32 { shape: vec![1, kh, kw, m], data: k })
        } else {
            // [M, C/g, kh, kw] → OHWI [M, kh, kw, C/g]
            let k = oihw_to_ohwi(wd, [m, cg, kh, kw]);
            let op =
                Conv2d { filters: m, kernel: [kh, kw], stride, padding: pads.0, groups: group, bias: bias.is_some() };
            (Op::Conv2d(op), TensorF32 { shape: vec![m, kh, kw, cg], data: k })
        };
        let nw = NodeWeights { kernel: Some(kernel), bias, bn: None };
        let id = self.push(at, op, &[x.node], Some(nw))?;
        self.check_window(at, xs, id, [kh, kw], stride, pads.1, false)?;
        self.set(at, 0, Value::Act(Act { node: id, layout: Layout::Nchw }))
    }

    /// `Pad` with zeros on H and W of an NCHW activation: held for the `Conv` that reads it.
    fn pad(&mut self, at: &At) -> Result<()> {
        let x = self.act(at, 0)?;
        self.nchw(at, x)?;
        if at.string("mode", "constant")? != "constant" {
            return Err(at.unsupported("a reflect/edge Pad; mcufit pads with zeros (mode 'constant') only"));
        }
        let (pads, value) = if self.opset < 11 {
            (at.ints("pads").unwrap_or_default().to_vec(), at.float("value", 0.0)?)
        } else {
            if at.input(3).is_some() {
                return Err(at.unsupported("a Pad with 'axes'; export it with pads for all four axes"));
            }
            let p = self.konst(at, 1)?;
            let pads = p.ints().ok_or_else(|| at.malformed("pads are not integers"))?.to_vec();
            let value = match self.opt_konst(at, 2)? {
                Some(c) if c.len() == 1 => c.to_f32()[0],
                Some(c) => return Err(at.malformed(format!("constant_value has dims {:?}, expected a scalar", c.dims))),
                None => 0.0,
            };
            (pads, value)
        };
        let p: Option<Vec<usize>> = pads.iter().map(|&v| usize::try_from(v).ok()).collect();
        match p.as_deref() {
            Some(&[0, 0, t, l, 0, 0, b, r]) if value == 0.0 => self.set(at, 0, Value::Padded(x, [t, l, b, r])),
            _ => Err(at.unsupported(format!(
                "Pad {pads:?} with {value}; mcufit folds only a zero, non-negative Pad of H and W into the next Conv"
            ))),
        }
    }

    /// `MaxPool` / `AveragePool` → max_pool2d / avg_pool2d.
    fn pool(&mut self, at: &At, max: bool) -> Result<()> {
        let x = self.act(at, 0)?;
        let xs = self.nchw(at, x)?;
        let k = match at.ints("kernel_shape") {
            Some(&[h, w]) => [positive(at, "kernel_shape", h)?, positive(at, "kernel_shape", w)?],
            other => {
                return Err(at.unsupported(format!(
                    "kernel_shape {other:?}: mcufit imports 2-D pooling (kernel_shape [kH, kW])"
                )))
            }
        };
        no_dilation(at)?;
        let stride = strides(at)?;
        let pads = padding(at, xs, k, stride, [0; 4])?;
        if !max && at.int("count_include_pad", 0)? != 0 && pads.1.iter().any(|&p| p > 0) {
            return Err(at.unsupported(
                "count_include_pad=1 averages padded zeros in; mcufit's (and TFLite's) average pool averages only \
                 the input pixels: export with count_include_pad=False or without padding",
            ));
        }
        let p = Pool2d { pool: k, stride: (stride != k).then_some(stride), padding: pads.0 };
        let id = self.push(at, if max { Op::MaxPool2d(p) } else { Op::AvgPool2d(p) }, &[x.node], None)?;
        self.check_window(at, xs, id, k, stride, pads.1, at.int("ceil_mode", 0)? != 0)?;
        self.only_first_output(at)?;
        self.set(at, 0, Value::Act(Act { node: id, layout: Layout::Nchw }))
    }

    /// `GlobalAveragePool` → global_avg_pool; `GlobalMaxPool` → max_pool2d over the whole map.
    /// The ONNX result stays `[N, C, 1, 1]`.
    fn global_pool(&mut self, at: &At, max: bool) -> Result<()> {
        let x = self.act(at, 0)?;
        let xs = self.nchw(at, x)?;
        let op = if max {
            Op::MaxPool2d(Pool2d { pool: [xs.h, xs.w], stride: None, padding: Padding::Valid })
        } else {
            Op::GlobalAvgPool
        };
        let id = self.push(at, op, &[x.node], None)?;
        self.set(at, 0, Value::Act(Act { node: id, layout: Layout::Nchw }))
    }

    /// `ReduceMean` over H and W (axes `[2, 3]` / `[-2, -1]`) of an NCHW activation → global_avg_pool;
    /// `keepdims=1` leaves `[N, C, 1, 1]`, `keepdims=0` `[N, C]` (the IR's pooled vector either way).
    fn reduce_mean(&mut self, at: &At) -> Result<()> {
        let x = self.act(at, 0)?;
        self.nchw(at, x)?;
        let axes: Option<Vec<i64>> = if self.opset < 18 {
            at.ints("axes").map(<[i64]>::to_vec)
        } else {
            match self.opt_konst(at, 1)? {
                Some(c) => Some(c.ints().ok_or_else(|| at.malformed("axes are not integers"))?.to_vec()),
                None => None,
            }
        };
        let mut norm: Vec<i64> = axes.iter().flatten().map(|&a| if a < 0 { a + 4 } else { a }).collect();
        norm.sort_unstable();
        if norm != [2, 3] {
            return Err(at.unsupported(format!(
                "ReduceMean over axes {axes:?}; mcufit imports the mean over H and W (axes [2, 3]), a global \
                 average pool"
            )));
        }
        let layout = match at.int("keepdims", 1)? {
            0 => Layout::Flat { chw: None },
            _ => Layout::Nchw,
        };
        let id = self.push(at, Op::GlobalAvgPool, &[x.node], None)?;
        self.set(at, 0, Value::Act(Act { node: id, layout }))
    }

    /// The IR's output size must be ONNX's for these pads (`ceil_mode` rounds up, as ONNX and
    /// PyTorch do, dropping a last window that would start in the bottom/right padding).
    #[allow(clippy::too_many_arguments)]
    fn check_window(
        &self,
        at: &At,
        xs: Shape,
        id: usize,
        k: [usize; 2],
        s: [usize; 2],
        pads: [usize; 4],
        ceil: bool,
    ) -> Result<()> {
        let len = |input: usize, k: usize, s: usize, before: usize, after: usize| -> i128 {
            let span = input as i128 + before as i128 + after as i128 - k as i128;
            if span < 0 {
                return 0;
            }
            let s = s as i128;
            let mut out = if ceil { (span + s - 1) / s + 1 } else { span / s + 1 };
            if ceil && (out - 1) * s >= input as i128 + before as i128 {
                out -= 1;
            }
            out
        };
        let want = (len(xs.h, k[0], s[0], pads[0], pads[2]), len(xs.w, k[1], s[1], pads[1], pads[3]));
        let got = self.shapes[id];
        if want != (got.h as i128, got.w as i128) {
            return Err(at.unsupported(format!(
                "ONNX computes a {}x{} output from the {}x{} input{}, mcufit's same/valid padding {}x{}; export \
                 without ceil_mode (or with pads that give the same size)",
                want.0,
                want.1,
                xs.h,
                xs.w,
                if ceil { " with ceil_mode=1" } else { "" },
                got.h,
                got.w
            )));
        }
        Ok(())
    }

    // ---- normalisation and activations --------------------------------------------------------

    /// `BatchNormalization` (inference form) → batch_norm with the running statistics.
    fn batch_norm(&mut self, at: &At) -> Result<()> {
        let x = self.act(at, 0)?;
        if let Layout::Flat { chw: Some(s) } = x.layout {
            return Err(at.unsupported(format!(
                "batch norm over a flattened {s} map (ONNX and mcufit order its features differently)"
            )));
        }
        if at.int("training_mode", 0)? != 0 {
            return Err(at.unsupported("training_mode=1; export the model in eval mode (model.eval())"));
        }
        if at.int("spatial", 1)? != 1 {
            return Err(at.unsupported("spatial=0 (per-pixel statistics); mcufit's batch norm is per channel"));
        }
        let eps = at.float("epsilon", 1e-5)?;
        let c = self.shapes[x.node].c;
        let bn = BnWeights {
            gamma: self.vector(at, 1, c)?,
            beta: self.vector(at, 2, c)?,
            mean: self.vector(at, 3, c)?,
            var: self.vector(at, 4, c)?,
            eps,
        };
        self.only_first_output(at)?;
        let nw = NodeWeights { bn: Some(bn), ..Default::default() };
        let id = self.push(at, Op::BatchNorm(mcufit_ir::BatchNorm { eps }), &[x.node], Some(nw))?;
        self.set(at, 0, Value::Act(Act { node: id, layout: x.layout }))
    }

    /// An element-wise activation: the layout passes through.
    fn activation(&mut self, at: &At, op: Op) -> Result<()> {
        let x = self.act(at, 0)?;
        let id = self.push(at, op, &[x.node], None)?;
        self.set(at, 0, Value::Act(Act { node: id, layout: x.layout }))
    }

    /// `Clip(0, 6)` → relu6, `Clip(0, +inf)` → relu; bounds from inputs (opset ≥ 11) or attributes.
    fn clip(&mut self, at: &At) -> Result<()> {
        let bound = |i: usize, attr: &str, default: f32| -> Result<f32> {
            if self.opset < 11 {
                return at.float(attr, default);
            }
            match self.opt_konst(at, i)? {
                None => Ok(default),
                Some(c) if c.len() == 1 => Ok(c.to_f32()[0]),
                Some(c) => Err(at.malformed(format!("{attr} has dims {:?}, expected a scalar", c.dims))),
            }
        };
        let lo = bound(1, "min", f32::NEG_INFINITY)?;
        let hi = bound(2, "max", f32::INFINITY)?;
        let op = if lo == 0.0 && hi == 6.0 {
            Op::Relu6
        } else if lo == 0.0 && hi == f32::INFINITY {
            Op::Relu
        } else {
            return Err(
                at.unsupported(format!("Clip({lo}, {hi}): mcufit has ReLU (Clip(0, inf)) and ReLU6 (Clip(0, 6)) only"))
            );
        };
        self.activation(at, op)
    }

    /// `Softmax` over the class axis → softmax.
    fn softmax(&mut self, at: &At) -> Result<()> {
        let x = self.act(at, 0)?;
        let s = self.shapes[x.node];
        let rank = if x.layout == Layout::Nchw { 4 } else { 2 };
        let axis = at.int("axis", if self.opset < 13 { 1 } else { -1 })?;
        let axis = if axis < 0 { axis + rank } else { axis };
        // A 2-D [N, K] softmax over K; a [N, C, 1, 1] one over C (both mcufit's: over the channels).
        let ok = match x.layout {
            Layout::Flat { .. } => axis == 1,
            Layout::Nchw => s.is_flat() && (axis == 1 || (self.opset < 13 && axis <= 1)),
        };
        if !ok {
            return Err(at.unsupported(format!(
                "softmax over axis {axis} of {:?}; mcufit's softmax is over the classes of a [N, K] (or [N, C, 1, 1]) \
                 tensor",
                self.onnx_dims(x)
            )));
        }
        self.activation(at, Op::Softmax)
    }

    // ---- element-wise, concatenation ----------------------------------------------------------

    /// `Add` of two equal-shaped activations → add; of a constant right after a `MatMul` → its bias.
    fn add(&mut self, at: &At) -> Result<()> {
        let a = self.value(at, 0)?.clone();
        let b = self.value(at, 1)?.clone();
        let odd = |v: &Value| matches!(v, Value::Padded(..) | Value::Nhwc(_));
        if odd(&a) || odd(&b) {
            let i = if odd(&a) { 0 } else { 1 };
            return self.act(at, i).map(|_| ());
        }
        match (a, b) {
            (Value::Act(a), Value::Act(b)) => {
                let (da, db) = (self.onnx_dims(a), self.onnx_dims(b));
                if da != db || a.layout != b.layout {
                    return Err(at.unsupported(format!(
                        "Add of {da:?} and {db:?}: mcufit's add takes two tensors of one shape and layout (no \
                         broadcasting)"
                    )));
                }
                let id = self.push(at, Op::Add, &[a.node, b.node], None)?;
                self.set(at, 0, Value::Act(Act { node: id, layout: a.layout }))
            }
            (Value::Act(x), Value::Const(c)) | (Value::Const(c), Value::Act(x)) => {
                let side = if matches!(self.value(at, 0)?, Value::Act(_)) { 0 } else { 1 };
                let reads = at.input(side).and_then(|n| self.uses.get(n)).copied().unwrap_or(0);
                let unbiased_dense = matches!(&self.nodes[x.node].op, Op::Dense(d) if !d.bias);
                if !unbiased_dense || reads != 1 {
                    return Err(at.unsupported(format!(
                        "Add of the constant '{}' to an activation: mcufit has no element-wise bias op; a constant \
                         is only folded as the bias of the MatMul right before it",
                        at.input(1 - side).unwrap_or_default()
                    )));
                }
                let units = self.shapes[x.node].c;
                let bias = broadcast_bias(at, &c, units, 1.0)?;
                let node = &mut self.nodes[x.node];
                node.op = Op::Dense(Dense { units, bias: true });
                self.weights.nodes.entry(node.name.clone()).or_default().bias = Some(bias);
                self.set(at, 0, Value::Act(x))
            }
            (Value::Const(_), Value::Const(_))
            | (Value::Padded(..) | Value::Nhwc(_), _)
            | (_, Value::Padded(..) | Value::Nhwc(_)) => {
                Err(at.unsupported("Add of two constants; fold constants before export (do_constant_folding=True)"))
            }
        }
    }

    /// `Concat` of activations on the channel axis → concat (of constants: folded).
    fn concat(&mut self, at: &At) -> Result<()> {
        let n = at.node.input.len();
        let axis = at.int("axis", 0)?;
        let acts: Vec<Act> = (0..n).map(|i| self.act(at, i)).collect::<Result<_>>()?;
        let layout = acts[0].layout;
        let rank = if layout == Layout::Nchw { 4 } else { 2 };
        let axis = if axis < 0 { axis + rank } else { axis };
        let natural = matches!(layout, Layout::Nchw | Layout::Flat { chw: None });
        if axis != 1 || !natural || acts.iter().any(|a| a.layout != layout) {
            return Err(at.unsupported(format!(
                "Concat along axis {axis} of {:?}: mcufit concatenates along the channel axis (1) only",
                acts.iter().map(|a| self.onnx_dims(*a)).collect::<Vec<_>>()
            )));
        }
        let ids: Vec<usize> = acts.iter().map(|a| a.node).collect();
        let id = self.push(at, Op::Concat, &ids, None)?;
        self.set(at, 0, Value::Act(Act { node: id, layout }))
    }

    // ---- dense layers and reshapes ------------------------------------------------------------

    /// `Gemm`: `alpha · A · B(ᵀ) + beta · C` with a constant B (and C) → dense.
    fn gemm(&mut self, at: &At) -> Result<()> {
        let x = self.act(at, 0)?;
        if at.int("transA", 0)? != 0 {
            return Err(at.unsupported("transA=1 (the activation transposed); mcufit's dense reads [N, K] inputs"));
        }
        let trans_b = at.int("transB", 0)? != 0;
        let (alpha, beta) = (at.float("alpha", 1.0)?, at.float("beta", 1.0)?);
        let (w, wname) = self.floats(at, 1)?;
        let k = self.flat_len(at, x)?;
        let (units, kk) = match w.dims[..] {
            [a, b] if trans_b => (a, b),
            [a, b] => (b, a),
            _ => return Err(at.malformed(format!("weight '{wname}' has dims {:?}, expected 2-D", w.dims))),
        };
        if kk != k {
            return Err(at.malformed(format!("weight '{wname}' {:?} takes {kk} inputs, the input has {k}", w.dims)));
        }
        let wd = w.floats().unwrap_or_default();
        let kernel =
            dense_kernel(x.layout, units, k, |u, j| alpha * if trans_b { wd[u * k + j] } else { wd[j * units + u] });
        let bias = match self.opt_konst(at, 2)? {
            Some(c) => Some(broadcast_bias(at, &c, units, beta)?),
            None => None,
        };
        let op = Op::Dense(Dense { units, bias: bias.is_some() });
        let id = self.push(at, op, &[x.node], Some(NodeWeights { kernel: Some(kernel), bias, bn: None }))?;
        self.set(at, 0, Value::Act(Act { node: id, layout: Layout::Flat { chw: None } }))
    }

    /// `MatMul` of an activation `[N, K]` and a constant `[K, units]` → dense without bias (a
    /// following `Add` of a constant becomes its bias).
    fn matmul(&mut self, at: &At) -> Result<()> {
        let x = self.act(at, 0)?;
        let (w, wname) = self.floats(at, 1)?;
        let k = self.flat_len(at, x)?;
        let [kk, units] = w.dims[..] else {
            return Err(at.unsupported(format!("weight '{wname}' has dims {:?}; mcufit imports 2-D MatMul", w.dims)));
        };
        if kk != k {
            return Err(at.malformed(format!("weight '{wname}' {:?} takes {kk} inputs, the input has {k}", w.dims)));
        }
        let wd = w.floats().unwrap_or_default();
        let kernel = dense_kernel(x.layout, units, k, |u, j| wd[j * units + u]);
        let op = Op::Dense(Dense { units, bias: false });
        let id = self.push(at, op, &[x.node], Some(NodeWeights { kernel: Some(kernel), bias: None, bn: None }))?;
        self.set(at, 0, Value::Act(Act { node: id, layout: Layout::Flat { chw: None } }))
    }

    /// The length K of a 2-D `[N, K]` activation (a dense layer's input).
    fn flat_len(&self, at: &At, x: Act) -> Result<usize> {
        match x.layout {
            Layout::Flat { .. } => Ok(self.shapes[x.node].elements()),
            Layout::Nchw => Err(at.unsupported(format!(
                "needs a 2-D [N, K] input, got {:?}; put a Flatten before it",
                self.onnx_dims(x)
            ))),
        }
    }

    /// `Flatten` (axis 1) → flatten (nothing for an input that is already 2-D).
    fn flatten(&mut self, at: &At) -> Result<()> {
        let (x, nhwc) = self.flatten_input(at)?;
        let rank = if matches!(x.layout, Layout::Nchw) { 4 } else { 2 };
        let axis = at.int("axis", 1)?;
        if (if axis < 0 { axis + rank } else { axis }) != 1 {
            return Err(at.unsupported(format!(
                "Flatten with axis {axis}; mcufit flattens everything but the batch dimension (axis 1)"
            )));
        }
        self.flatten_to_2d(at, x, nhwc)
    }

    /// Input 0 of a flatten: an activation, or (`true`) the NHWC Transpose of an NCHW one.
    fn flatten_input(&self, at: &At) -> Result<(Act, bool)> {
        match self.value(at, 0)? {
            Value::Nhwc(a) => Ok((*a, true)),
            _ => Ok((self.act(at, 0)?, false)),
        }
    }

    /// Flattens `x` to `[N, K]`. An NCHW map flattens in ONNX's C, H, W order (the dense layer reading
    /// it permutes its weights); its NHWC transpose (`nhwc`) in H, W, C order, the IR's own.
    fn flatten_to_2d(&mut self, at: &At, x: Act, nhwc: bool) -> Result<()> {
        if x.layout != Layout::Nchw {
            return self.set(at, 0, Value::Act(x));
        }
        let s = self.shapes[x.node];
        let id = self.push(at, Op::Flatten, &[x.node], None)?;
        let chw = (s.spatial() > 1 && s.c > 1 && !nhwc).then_some(s);
        self.set(at, 0, Value::Act(Act { node: id, layout: Layout::Flat { chw } }))
    }

    /// `Transpose`: the identity passes through; perm `[0, 2, 3, 1]` of an NCHW activation is held
    /// for the flatten that reads it (and `[0, 3, 1, 2]` undoes it); anything else is refused.
    fn transpose(&mut self, at: &At) -> Result<()> {
        let v = self.value(at, 0)?.clone();
        let rank = self.value_dims(&v).len();
        let perm: Vec<i64> = at.ints("perm").map_or_else(|| (0..rank as i64).rev().collect(), <[i64]>::to_vec);
        if perm.iter().copied().eq(0..rank as i64) {
            return self.set(at, 0, v);
        }
        match (&v, &perm[..]) {
            (Value::Act(a @ Act { layout: Layout::Nchw, .. }), [0, 2, 3, 1]) => self.set(at, 0, Value::Nhwc(*a)),
            (Value::Nhwc(a), [0, 3, 1, 2]) => self.set(at, 0, Value::Act(*a)),
            _ => Err(at.unsupported(format!(
                "Transpose with perm {perm:?} of {:?}; mcufit imports only the NCHW to NHWC permutation [0, 2, 3, 1] \
                 right before a flatten to [N, -1] (PyTorch's x.permute(0, 2, 3, 1).reshape(n, -1) before a \
                 Linear layer)",
                self.value_dims(&v)
            ))),
        }
    }

    /// `Reshape` to `[N, -1]` (or to the input's own shape) with a constant target.
    fn reshape(&mut self, at: &At) -> Result<()> {
        let (x, nhwc) = self.flatten_input(at)?;
        let target = self.konst(at, 1)?;
        let Some(target) = target.ints() else {
            return Err(at.malformed("the target shape is not an integer tensor"));
        };
        let dims: Vec<usize> = self.value_dims(self.value(at, 0)?).iter().map(|&d| d as usize).collect();
        let out = fold::reshape_dims(at, &dims, target, at.int("allowzero", 0)? != 0)?;
        if out == dims {
            let same = if nhwc { Value::Nhwc(x) } else { Value::Act(x) };
            return self.set(at, 0, same);
        }
        if out.len() == 2 && out[0] == dims[0] {
            return self.flatten_to_2d(at, x, nhwc);
        }
        Err(at.unsupported(format!(
            "Reshape of {dims:?} to {out:?}; mcufit imports a Reshape only as a flatten to [N, -1]"
        )))
    }

    // ---- pass-through and constant folding ----------------------------------------------------

    /// `Identity`, `Dropout` (inference): the value passes through.
    fn pass_through(&mut self, at: &At) -> Result<()> {
        self.only_first_output(at)?;
        let v = self.value(at, 0)?.clone();
        self.set(at, 0, v)
    }

    /// `Cast` of an activation: to float32 it passes through (of a constant: folded).
    fn cast(&mut self, at: &At) -> Result<()> {
        use super::proto::tensor_proto::DataType as T;
        let to = at.int("to", 0)?;
        let to = T::try_from(to as i32).map_err(|_| at.malformed(format!("unknown target type {to}")))?;
        match (self.value(at, 0)?.clone(), to) {
            (v @ Value::Act(_), T::Float) => self.set(at, 0, v),
            (_, to) => Err(at.unsupported(format!("Cast to {}; mcufit imports float32 models", to.as_str_name()))),
        }
    }

    /// `Constant`: its `value` tensor (or `value_float(s)` / `value_int(s)`).
    fn constant(&mut self, at: &At) -> Result<()> {
        let c = if let Some(t) = at.attr("value").and_then(|a| a.t.as_ref()) {
            tensor::decode(t, &format!("{} value", at.label()))?
        } else if let Some(a) = at.attr("value_float") {
            Const { dims: vec![], data: Data::F32(vec![a.f.unwrap_or_default()]) }
        } else if let Some(a) = at.attr("value_floats") {
            Const { dims: vec![a.floats.len()], data: Data::F32(a.floats.clone()) }
        } else if let Some(a) = at.attr("value_int") {
            Const { dims: vec![], data: Data::I64(vec![a.i.unwrap_or_default()]) }
        } else if let Some(a) = at.attr("value_ints") {
            Const { dims: vec![a.ints.len()], data: Data::I64(a.ints.clone()) }
        } else {
            return Err(at.unsupported("a Constant without a value tensor (sparse or string constants)"));
        };
        self.set(at, 0, Value::Const(Rc::new(c)))
    }

    /// `Shape` of an activation (batch as the input's, 1 when symbolic) → int64 constant (of a
    /// constant: folded).
    fn shape(&mut self, at: &At) -> Result<()> {
        let dims = self.value_dims(self.value(at, 0)?);
        let r = dims.len() as i64;
        let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
        let start = clamp(at.int("start", 0)?);
        let end = clamp(at.int("end", r)?).max(start);
        let v = dims[start..end].to_vec();
        self.set(at, 0, Value::Const(Rc::new(Const { dims: vec![v.len()], data: Data::I64(v) })))
    }

    /// True when every input present is a constant (so the node is folded). A node without inputs
    /// other than `Constant` is not: its handler reports it.
    fn all_const(&self, at: &At) -> bool {
        let mut names = at.node.input.iter().filter(|s| !s.is_empty()).peekable();
        names.peek().is_some() && names.all(|n| matches!(self.values.get(n), Some(Value::Const(_))))
    }

    /// Evaluates a node on constants (see `fold.rs`).
    fn fold(&mut self, at: &At) -> Result<()> {
        let ins: Vec<Option<Rc<Const>>> = (0..at.node.input.len())
            .map(|i| match at.input(i).and_then(|n| self.values.get(n)) {
                Some(Value::Const(c)) => Some(c.clone()),
                _ => None,
            })
            .collect();
        self.only_first_output(at)?;
        let c = fold::fold(at, self.opset, &ins)?;
        self.set(at, 0, Value::Const(Rc::new(c)))
    }
}

/// A positive size attribute as `usize`.
fn positive(at: &At, what: &str, v: i64) -> Result<usize> {
    usize::try_from(v).ok().filter(|&v| v > 0).ok_or_else(|| at.malformed(format!("{what} {v} must be positive")))
}

/// `dilations` must be absent or all 1.
fn no_dilation(at: &At) -> Result<()> {
    match at.ints("dilations") {
        Some(d) if d.iter().any(|&x| x != 1) => {
            Err(at.unsupported(format!("dilations {d:?}; mcufit's convolutions and pools are undilated")))
        }
        _ => Ok(()),
    }
}

/// `strides`, default `[1, 1]`.
fn strides(at: &At) -> Result<[usize; 2]> {
    match at.ints("strides") {
        None => Ok([1, 1]),
        Some(&[h, w]) => Ok([positive(at, "stride", h)?, positive(at, "stride", w)?]),
        Some(s) => Err(at.unsupported(format!("strides {s:?}; mcufit imports 2-D windows"))),
    }
}

/// The IR padding of a window op and its pads `[top, left, bottom, right]` (see the module docs);
/// `pre`: those of a `Pad` folded into it.
fn padding(at: &At, xs: Shape, k: [usize; 2], s: [usize; 2], pre: [usize; 4]) -> Result<(Padding, [usize; 4])> {
    let (sh, sw) = (Padding::Same.pads(xs.h, k[0], s[0]), Padding::Same.pads(xs.w, k[1], s[1]));
    let same = [sh.0, sw.0, sh.1, sw.1];
    let auto = at.string("auto_pad", "NOTSET")?;
    if pre != [0; 4] && !matches!(auto.as_str(), "NOTSET" | "") {
        return Err(at.unsupported(format!("auto_pad {auto} after a Pad; give the Conv explicit pads")));
    }
    match auto.as_str() {
        "VALID" => return Ok((Padding::Valid, [0; 4])),
        "SAME_UPPER" => return Ok((Padding::Same, same)),
        "SAME_LOWER" if sh.0 == sh.1 && sw.0 == sw.1 => return Ok((Padding::Same, same)),
        "SAME_LOWER" => {
            return Err(at.unsupported(
                "auto_pad SAME_LOWER puts the odd padding pixel at the top/left; mcufit's 'same' puts it at the \
                 bottom/right, as TensorFlow does: export with SAME_UPPER or explicit pads",
            ))
        }
        "NOTSET" | "" => {}
        other => return Err(at.malformed(format!("auto_pad '{other}' is not NOTSET, SAME_UPPER, SAME_LOWER or VALID"))),
    }
    let pads = at.ints("pads").unwrap_or(&[0, 0, 0, 0]);
    let [t, l, b, r] = pads[..] else {
        return Err(at.unsupported(format!("pads {pads:?}; a 2-D window takes [top, left, bottom, right]")));
    };
    let p: Vec<usize> =
        [t, l, b, r].iter().map(|&v| usize::try_from(v)).collect::<std::result::Result<_, _>>().map_err(|_| {
            at.unsupported(format!("negative pads {pads:?} (cropping); mcufit pads with 'same' or 'valid' only"))
        })?;
    let p: Vec<usize> = p.iter().zip(pre).map(|(&a, b)| a.saturating_add(b)).collect();
    let p = [p[0], p[1], p[2], p[3]];
    let [t, l, b, r] = p;
    if p == [0; 4] {
        Ok((Padding::Valid, p))
    } else if p == same {
        Ok((Padding::Same, p))
    } else {
        let pad_op = if pre != [0; 4] { " (with the Pad before it)" } else { "" };
        Err(at.unsupported(format!(
            "pads{pad_op} [top {t}, left {l}, bottom {b}, right {r}] on the {}x{} input are neither 'valid' (all 0) nor \
             TensorFlow's 'same' (here [{}, {}, {}, {}]: output = ceil(input / stride), the odd pixel at the \
             bottom/right), the two paddings mcufit and the int8 kernels have; change the model's padding \
             (padding=k//2 with an odd kernel is 'same' at stride 1; at stride 2 use nn.ZeroPad2d to pad the \
             bottom/right, then padding=0)",
            xs.h, xs.w, same[0], same[1], same[2], same[3]
        )))
    }
}

/// A dense kernel `[units, k]` in the IR's input order: `w(u, j)` is the weight of ONNX input
/// element `j`; an input flattened from a `H x W x C` map is permuted from CHW to HWC order.
fn dense_kernel(layout: Layout, units: usize, k: usize, w: impl Fn(usize, usize) -> f32) -> TensorF32 {
    let onnx_index: Box<dyn Fn(usize) -> usize> = match layout {
        Layout::Flat { chw: Some(s) } => Box::new(move |j: usize| {
            let (hw, c) = (j / s.c, j % s.c);
            c * s.spatial() + hw
        }),
        _ => Box::new(|j| j),
    };
    let mut data = Vec::with_capacity(units * k);
    for u in 0..units {
        data.extend((0..k).map(|j| w(u, onnx_index(j))));
    }
    TensorF32 { shape: vec![units, k], data }
}

/// A bias constant broadcast to `units` (dims `[]`, `[1]`, `[units]` or `[1, units]`), times `scale`.
fn broadcast_bias(at: &At, c: &Const, units: usize, scale: f32) -> Result<Vec<f32>> {
    let v = c.to_f32();
    let dims = &c.dims[..];
    let fits = matches!(dims, [] | [1]) || matches!(dims, [n] | [1, n] if *n == units);
    if !fits || c.floats().is_none() {
        return Err(at.unsupported(format!("bias dims {dims:?}: expected [{units}] (or a broadcast scalar)")));
    }
    Ok(if v.len() == 1 { vec![v[0] * scale; units] } else { v.iter().map(|x| x * scale).collect() })
}
