//! `.tflite` → IR (float) or IR + [`QuantizedModel`] (int8).
//!
//! The file is parsed by `mcufit_export::tflite::read` (bounds-checked: a truncated file, a wrong
//! `TFL3` identifier or an offset outside the buffer is an [`ImportError::Malformed`], never a panic
//! or a huge allocation). Then one mapping per builtin operator builds IR nodes in the file's
//! operator order:
//!
//! | TFLite | IR |
//! |---|---|
//! | CONV_2D | `conv2d` (groups = input channels / filter depth) |
//! | DEPTHWISE_CONV_2D (depth multiplier 1) | `depthwise_conv2d` |
//! | FULLY_CONNECTED | `dense` (a `flatten` first when its input is not flat) |
//! | ADD (equal shapes) | `add` |
//! | CONCATENATION (last axis) | `concat` |
//! | MAX_POOL_2D / AVERAGE_POOL_2D | `max_pool2d` / `avg_pool2d` |
//! | RESHAPE | `flatten` (to `[1, n]`) or `reshape` |
//! | SOFTMAX | `softmax` |
//!
//! A fused activation (RELU, RELU6) becomes a `relu` / `relu6` node after the op, which the IR's
//! deployed view folds back. Every output shape is inferred by the IR's own shape inference and must
//! equal the file's dims. Padding SAME / VALID is TensorFlow's in both.
//!
//! **Int8** (the input tensor is int8): activations int8 per tensor, weights int8 symmetric per
//! output channel (a per-tensor scale is broadcast to every channel, which is what TFLM's
//! `PopulateConvolutionQuantizationParams` does), biases int32 (absent: zeros). The
//! [`QuantizedModel`] is built op by op from the graph's fused view (`Graph::fused`), so its op `i`
//! is fused op `i` of the graph and everything mcufit does with a quantized model (reference,
//! C export, `.tflite` export, memory order) works on it; its computation is TFLM's for the file.
//! The graph's convs and dense layers all have a bias (the deployed model stores one, zeros where
//! the file has none).
//!
//! **Float** (the input tensor is float32): activations float32; weights float32, or int8 with
//! per-channel or per-tensor scales (the converter's weight-only quantization), which are
//! dequantized `scale * (q - zero_point)`; biases float32 (absent: the IR op has `bias: false`).
//! Softmax must have beta 1.
//!
//! Anything else (another builtin or custom op, several subgraphs, dilation, a fused activation
//! other than RELU/RELU6, broadcasting, a weight axis or zero point the kernels do not take, dims
//! that disagree with the IR) is an [`ImportError::Unsupported`] naming the operator (index and
//! type) and the tensor.

use std::collections::HashMap;

use mcufit_export::tflite::schema::{self, op, ttype};
use mcufit_export::tflite::{TflModel, TflOperator, TflOptions, TflTensor};
use mcufit_export::ExportError;
use mcufit_ir::{
    Activation, Conv2d, Dense, DepthwiseConv2d, Graph, Node, NodeId, NodeWeights, Op, Padding, Pool2d, Shape,
    TensorF32, Weights,
};
use mcufit_quant::{QOp, QOpKind, QTensor, QWeights, QuantizedModel};

use crate::{ImportError, Imported, Result};

const FORMAT: &str = "tflite";

/// Imports a `.tflite` flatbuffer; `name` becomes the graph's name.
pub fn import_bytes(bytes: &[u8], name: &str) -> Result<Imported> {
    let m = mcufit_export::tflite::read(bytes).map_err(|e| match e {
        ExportError::Malformed(msg) => ImportError::Malformed { format: FORMAT, msg },
        other => ImportError::Export(other),
    })?;
    import_model(&m, name)
}

/// Imports a parsed model (see the module docs).
pub fn import_model(m: &TflModel, name: &str) -> Result<Imported> {
    if m.subgraphs != 1 {
        return Err(unsupported(format!(
            "the model has {} subgraphs; mcufit imports single-subgraph models (no control flow)",
            m.subgraphs
        )));
    }
    let ([input], [output]) = (m.inputs.as_slice(), m.outputs.as_slice()) else {
        return Err(unsupported(format!(
            "the model has {} inputs and {} outputs; mcufit imports models with one of each",
            m.inputs.len(),
            m.outputs.len()
        )));
    };
    let it = tensor(m, *input)?;
    let int8 = match it.ttype {
        ttype::INT8 => true,
        ttype::FLOAT32 => false,
        t => {
            return Err(unsupported(format!(
                "input tensor '{}' is {}; mcufit imports int8 models (as TFLite Micro runs them) and float32 models",
                it.name,
                type_name(t)
            )))
        }
    };
    let mut b = Builder::new(m, int8);
    let shape = act_shape(it).map_err(|msg| unsupported(format!("input tensor: {msg}")))?;
    b.check_act_type(it, None)?;
    let node = b.push(None, name_of("input", None), Op::Input { shape }, vec![], *input)?;
    b.value[*input as usize] = Some(node);
    for (i, o) in m.operators.iter().enumerate() {
        b.operator(i, o)?;
    }
    let out_node = b.value.get(*output as usize).copied().flatten();
    if out_node != Some(b.nodes.len() - 1) {
        return Err(unsupported(format!(
            "the subgraph output '{}' is not the last operator's output; mcufit needs the classifier output last",
            tensor(m, *output)?.name
        )));
    }
    let graph = Graph::new(name, b.nodes.clone()).map_err(|e| unsupported(format!("the imported graph: {e}")))?;
    if int8 {
        let model = b.quantized(&graph, name)?;
        Ok(Imported::Int8 { graph, model })
    } else {
        b.weights.check(&graph)?;
        Ok(Imported::Float { graph, weights: b.weights })
    }
}

fn unsupported(msg: String) -> ImportError {
    ImportError::Unsupported { format: FORMAT, msg }
}

fn tensor(m: &TflModel, i: i32) -> Result<&TflTensor> {
    usize::try_from(i).ok().and_then(|i| m.tensors.get(i)).ok_or_else(|| ImportError::Malformed {
        format: FORMAT,
        msg: format!("tensor index {i} out of range ({} tensors)", m.tensors.len()),
    })
}

/// The IR shape of an activation tensor: `[1, h, w, c]` or `[1, n]` (batch 1).
fn act_shape(t: &TflTensor) -> std::result::Result<Shape, String> {
    let pos = |v: i32| usize::try_from(v).ok().filter(|&v| v > 0);
    let bad = || format!("tensor '{}' has dims {:?}; mcufit takes [1, h, w, c] or [1, n] (batch 1)", t.name, t.dims);
    match t.dims.as_slice() {
        [1, h, w, c] => match (pos(*h), pos(*w), pos(*c)) {
            (Some(h), Some(w), Some(c)) => Ok(Shape::new(h, w, c)),
            _ => Err(bad()),
        },
        [1, n] => pos(*n).map(Shape::flat).ok_or_else(bad),
        _ => Err(bad()),
    }
}

fn type_name(t: i8) -> &'static str {
    match t {
        0 => "float32",
        1 => "float16",
        2 => "int32",
        3 => "uint8",
        4 => "int64",
        6 => "bool",
        7 => "int16",
        9 => "int8",
        10 => "float64",
        17 => "int4",
        _ => "of an unknown type",
    }
}

/// `BuiltinOperator` names (schema.fbs), for messages.
pub fn builtin_name(code: i32) -> String {
    const NAMES: [&str; 127] = [
        "ADD",
        "AVERAGE_POOL_2D",
        "CONCATENATION",
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "DEPTH_TO_SPACE",
        "DEQUANTIZE",
        "EMBEDDING_LOOKUP",
        "FLOOR",
        "FULLY_CONNECTED",
        "HASHTABLE_LOOKUP",
        "L2_NORMALIZATION",
        "L2_POOL_2D",
        "LOCAL_RESPONSE_NORMALIZATION",
        "LOGISTIC",
        "LSH_PROJECTION",
        "LSTM",
        "MAX_POOL_2D",
        "MUL",
        "RELU",
        "RELU_N1_TO_1",
        "RELU6",
        "RESHAPE",
        "RESIZE_BILINEAR",
        "RNN",
        "SOFTMAX",
        "SPACE_TO_DEPTH",
        "SVDF",
        "TANH",
        "CONCAT_EMBEDDINGS",
        "SKIP_GRAM",
        "CALL",
        "CUSTOM",
        "EMBEDDING_LOOKUP_SPARSE",
        "PAD",
        "UNIDIRECTIONAL_SEQUENCE_RNN",
        "GATHER",
        "BATCH_TO_SPACE_ND",
        "SPACE_TO_BATCH_ND",
        "TRANSPOSE",
        "MEAN",
        "SUB",
        "DIV",
        "SQUEEZE",
        "UNIDIRECTIONAL_SEQUENCE_LSTM",
        "STRIDED_SLICE",
        "BIDIRECTIONAL_SEQUENCE_RNN",
        "EXP",
        "TOPK_V2",
        "SPLIT",
        "LOG_SOFTMAX",
        "DELEGATE",
        "BIDIRECTIONAL_SEQUENCE_LSTM",
        "CAST",
        "PRELU",
        "MAXIMUM",
        "ARG_MAX",
        "MINIMUM",
        "LESS",
        "NEG",
        "PADV2",
        "GREATER",
        "GREATER_EQUAL",
        "LESS_EQUAL",
        "SELECT",
        "SLICE",
        "SIN",
        "TRANSPOSE_CONV",
        "SPARSE_TO_DENSE",
        "TILE",
        "EXPAND_DIMS",
        "EQUAL",
        "NOT_EQUAL",
        "LOG",
        "SUM",
        "SQRT",
        "RSQRT",
        "SHAPE",
        "POW",
        "ARG_MIN",
        "FAKE_QUANT",
        "REDUCE_PROD",
        "REDUCE_MAX",
        "PACK",
        "LOGICAL_OR",
        "ONE_HOT",
        "LOGICAL_AND",
        "LOGICAL_NOT",
        "UNPACK",
        "REDUCE_MIN",
        "FLOOR_DIV",
        "REDUCE_ANY",
        "SQUARE",
        "ZEROS_LIKE",
        "FILL",
        "FLOOR_MOD",
        "RANGE",
        "RESIZE_NEAREST_NEIGHBOR",
        "LEAKY_RELU",
        "SQUARED_DIFFERENCE",
        "MIRROR_PAD",
        "ABS",
        "SPLIT_V",
        "UNIQUE",
        "CEIL",
        "REVERSE_V2",
        "ADD_N",
        "GATHER_ND",
        "COS",
        "WHERE",
        "RANK",
        "ELU",
        "REVERSE_SEQUENCE",
        "MATRIX_DIAG",
        "QUANTIZE",
        "MATRIX_SET_DIAG",
        "ROUND",
        "HARD_SWISH",
        "IF",
        "WHILE",
        "NON_MAX_SUPPRESSION_V4",
        "NON_MAX_SUPPRESSION_V5",
        "SCATTER_ND",
        "SELECT_V2",
        "DENSIFY",
        "SEGMENT_SUM",
        "BATCH_MATMUL",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|c| NAMES.get(c))
        .map_or_else(|| format!("builtin op {code}"), |n| n.to_string())
}

/// A short, unique IR node name: `KIND_OPINDEX` (the TFLite operator's index in the file).
fn name_of(kind: &str, op_index: Option<usize>) -> String {
    match op_index {
        Some(i) => format!("{kind}_{i}"),
        None => kind.to_string(),
    }
}

fn padding(p: i8) -> Option<Padding> {
    match p {
        schema::PADDING_SAME => Some(Padding::Same),
        schema::PADDING_VALID => Some(Padding::Valid),
        _ => None,
    }
}

fn activation_name(a: i8) -> &'static str {
    match a {
        0 => "NONE",
        1 => "RELU",
        2 => "RELU_N1_TO_1",
        3 => "RELU6",
        4 => "TANH",
        5 => "SIGN_BIT",
        _ => "unknown",
    }
}

/// Per-anchor data of the int8 model the fused view cannot hold.
#[derive(Default, Clone)]
struct Anchor {
    weights: Option<QWeights>,
    softmax_beta: f32,
}

/// The graph under construction.
struct Builder<'a> {
    m: &'a TflModel,
    int8: bool,
    nodes: Vec<Node>,
    shapes: Vec<Shape>,
    /// The TFLite tensor holding each node's value.
    node_tensor: Vec<i32>,
    /// The IR node holding each TFLite tensor's value (activations computed so far).
    value: Vec<Option<NodeId>>,
    /// Float weights by node name.
    weights: Weights,
    /// Int8 weights and options of anchor nodes.
    anchors: HashMap<NodeId, Anchor>,
}

/// The operator being mapped, for messages.
struct At<'o> {
    index: usize,
    op: &'o TflOperator,
}

impl At<'_> {
    fn err(&self, m: &TflModel, msg: impl std::fmt::Display) -> ImportError {
        let out = self
            .op
            .outputs
            .first()
            .and_then(|&t| usize::try_from(t).ok())
            .and_then(|t| m.tensors.get(t))
            .map(|t| format!(" (output '{}')", t.name))
            .unwrap_or_default();
        unsupported(format!("operator #{} {}{out}: {msg}", self.index, builtin_name(self.op.code)))
    }
}

impl<'a> Builder<'a> {
    fn new(m: &'a TflModel, int8: bool) -> Self {
        Builder {
            m,
            int8,
            nodes: Vec::new(),
            shapes: Vec::new(),
            node_tensor: Vec::new(),
            value: vec![None; m.tensors.len()],
            weights: Weights::default(),
            anchors: HashMap::new(),
        }
    }

    /// Adds a node; its shape comes from the IR's shape inference.
    fn push(&mut self, at: Option<&At>, name: String, op: Op, inputs: Vec<NodeId>, t: i32) -> Result<NodeId> {
        let ins: Vec<Shape> = inputs.iter().map(|&i| self.shapes[i]).collect();
        let shape = op.output_shape(&name, &ins).map_err(|e| match at {
            Some(at) => at.err(self.m, e),
            None => unsupported(e.to_string()),
        })?;
        self.nodes.push(Node { name, op, inputs });
        self.shapes.push(shape);
        self.node_tensor.push(t);
        Ok(self.nodes.len() - 1)
    }

    /// Activation tensors are int8 in an int8 model, float32 in a float one.
    fn check_act_type(&self, t: &TflTensor, at: Option<&At>) -> Result<()> {
        let want = if self.int8 { ttype::INT8 } else { ttype::FLOAT32 };
        if t.ttype == want {
            return Ok(());
        }
        let msg = format!(
            "activation tensor '{}' is {} in a{} model; mcufit imports models whose activations are all {}",
            t.name,
            type_name(t.ttype),
            if self.int8 { "n int8" } else { " float32" },
            type_name(want)
        );
        Err(match at {
            Some(at) => at.err(self.m, msg),
            None => unsupported(msg),
        })
    }

    /// The node computing the activation tensor `t` (an operator input).
    fn input(&self, at: &At, k: usize) -> Result<NodeId> {
        let t = at.op.inputs.get(k).copied().unwrap_or(-1);
        if t < 0 {
            return Err(at.err(self.m, format!("input {k} is missing")));
        }
        let tt = tensor(self.m, t)?;
        match self.value.get(t as usize).copied().flatten() {
            Some(n) => Ok(n),
            None if tt.data.is_some() => Err(at.err(
                self.m,
                format!("input {k} ('{}') is a constant; mcufit takes constants only as weights and biases", tt.name),
            )),
            None => Err(at.err(self.m, format!("input {k} ('{}') is not computed by an earlier operator", tt.name))),
        }
    }

    fn operator(&mut self, index: usize, o: &'a TflOperator) -> Result<()> {
        let at = At { index, op: o };
        let m = self.m;
        let [out] = o.outputs.as_slice() else {
            return Err(at.err(m, format!("{} outputs; mcufit takes operators with one", o.outputs.len())));
        };
        let ot = tensor(m, *out)?;
        self.check_act_type(ot, Some(&at))?;
        let want = act_shape(ot).map_err(|e| at.err(m, e))?;
        let (node, act) = match (o.code, &o.options) {
            (op::CONV_2D, TflOptions::Conv2D { padding: p, stride_w, stride_h, activation, dilation_w, dilation_h }) => {
                if (*dilation_h, *dilation_w) != (1, 1) {
                    return Err(at.err(m, format!("dilation {dilation_h}x{dilation_w}; mcufit supports dilation 1")));
                }
                let x = self.input(&at, 0)?;
                let (dims, fname) = self.filter_dims(&at, 4)?;
                let in_c = self.shapes[x].c;
                if dims[3] == 0 || !in_c.is_multiple_of(dims[3]) {
                    return Err(at.err(m, format!("filter '{fname}' depth {} does not divide the {in_c} input channels", dims[3])));
                }
                let bias = self.has_bias(&at);
                let conv = Op::Conv2d(Conv2d {
                    filters: dims[0],
                    kernel: [dims[1], dims[2]],
                    stride: self.stride(&at, *stride_h, *stride_w)?,
                    padding: padding(*p).ok_or_else(|| at.err(m, format!("padding {p}")))?,
                    groups: in_c / dims[3],
                    bias: bias || self.int8,
                });
                let n = self.push(Some(&at), name_of("conv2d", Some(index)), conv, vec![x], *out)?;
                self.weights_of(&at, n, 0)?;
                (n, *activation)
            }
            (
                op::DEPTHWISE_CONV_2D,
                TflOptions::DepthwiseConv2D {
                    padding: p,
                    stride_w,
                    stride_h,
                    depth_multiplier,
                    activation,
                    dilation_w,
                    dilation_h,
                },
            ) => {
                if (*dilation_h, *dilation_w) != (1, 1) {
                    return Err(at.err(m, format!("dilation {dilation_h}x{dilation_w}; mcufit supports dilation 1")));
                }
                let x = self.input(&at, 0)?;
                let (dims, fname) = self.filter_dims(&at, 4)?;
                let in_c = self.shapes[x].c;
                if dims[0] != 1 || dims[3] != in_c || *depth_multiplier > 1 {
                    return Err(at.err(
                        m,
                        format!(
                            "filter '{fname}' dims {dims:?} on {in_c} input channels (depth multiplier {depth_multiplier}); \
                             mcufit supports depth multiplier 1"
                        ),
                    ));
                }
                let dw = Op::DepthwiseConv2d(DepthwiseConv2d {
                    kernel: [dims[1], dims[2]],
                    stride: self.stride(&at, *stride_h, *stride_w)?,
                    padding: padding(*p).ok_or_else(|| at.err(m, format!("padding {p}")))?,
                    bias: self.has_bias(&at) || self.int8,
                });
                let n = self.push(Some(&at), name_of("depthwise_conv2d", Some(index)), dw, vec![x], *out)?;
                self.weights_of(&at, n, 3)?;
                (n, *activation)
            }
            (op::FULLY_CONNECTED, TflOptions::FullyConnected { activation, weights_format, keep_num_dims }) => {
                if *weights_format != 0 {
                    return Err(at.err(m, format!("weights format {weights_format}; mcufit takes the default (0)")));
                }
                if *keep_num_dims && !want.is_flat() {
                    return Err(at.err(m, "keep_num_dims with a non-flat output"));
                }
                let mut x = self.input(&at, 0)?;
                if !self.shapes[x].is_flat() {
                    // TFLite flattens the input itself (NHWC order, as the IR's flatten).
                    let t = at.op.inputs[0];
                    x = self.push(Some(&at), name_of("flatten", Some(index)), Op::Flatten, vec![x], t)?;
                }
                let (dims, _) = self.filter_dims(&at, 2)?;
                let dense = Op::Dense(Dense { units: dims[0], bias: self.has_bias(&at) || self.int8 });
                let n = self.push(Some(&at), name_of("dense", Some(index)), dense, vec![x], *out)?;
                self.weights_of(&at, n, 0)?;
                (n, *activation)
            }
            (op::ADD, TflOptions::Add { activation }) => {
                if o.inputs.len() != 2 {
                    return Err(at.err(m, format!("{} inputs", o.inputs.len())));
                }
                let (a, b) = (self.input(&at, 0)?, self.input(&at, 1)?);
                if self.shapes[a] != self.shapes[b] {
                    return Err(at.err(
                        m,
                        format!("inputs of shapes {} and {}: mcufit supports ADD without broadcasting", self.shapes[a], self.shapes[b]),
                    ));
                }
                (self.push(Some(&at), name_of("add", Some(index)), Op::Add, vec![a, b], *out)?, *activation)
            }
            (op::CONCATENATION, TflOptions::Concatenation { axis, activation }) => {
                let rank = ot.dims.len() as i32;
                if *axis != rank - 1 && *axis != -1 {
                    return Err(at.err(m, format!("axis {axis} of a rank-{rank} tensor; mcufit concatenates channels (the last axis)")));
                }
                if *activation != schema::ACT_NONE {
                    return Err(at.err(
                        m,
                        format!("fused activation {}: TFLite Micro's CONCATENATION takes none", activation_name(*activation)),
                    ));
                }
                let ins = (0..o.inputs.len()).map(|k| self.input(&at, k)).collect::<Result<Vec<_>>>()?;
                if ins.len() < 2 {
                    return Err(at.err(m, "fewer than two inputs"));
                }
                (self.push(Some(&at), name_of("concat", Some(index)), Op::Concat, ins, *out)?, schema::ACT_NONE)
            }
            (
                op::MAX_POOL_2D | op::AVERAGE_POOL_2D,
                TflOptions::Pool2D { padding: p, stride_w, stride_h, filter_w, filter_h, activation },
            ) => {
                let x = self.input(&at, 0)?;
                let pool = Pool2d {
                    pool: self.stride(&at, *filter_h, *filter_w)?,
                    stride: Some(self.stride(&at, *stride_h, *stride_w)?),
                    padding: padding(*p).ok_or_else(|| at.err(m, format!("padding {p}")))?,
                };
                let (kind, op) = if o.code == op::MAX_POOL_2D {
                    ("max_pool2d", Op::MaxPool2d(pool))
                } else {
                    ("avg_pool2d", Op::AvgPool2d(pool))
                };
                (self.push(Some(&at), name_of(kind, Some(index)), op, vec![x], *out)?, *activation)
            }
            (op::RESHAPE, _) => {
                let x = self.input(&at, 0)?;
                let (kind, op) =
                    if want.is_flat() { ("flatten", Op::Flatten) } else { ("reshape", Op::Reshape { shape: want }) };
                (self.push(Some(&at), name_of(kind, Some(index)), op, vec![x], *out)?, schema::ACT_NONE)
            }
            (op::SOFTMAX, TflOptions::Softmax { beta }) => {
                if !self.int8 && *beta != 1.0 {
                    return Err(at.err(m, format!("beta {beta}; mcufit's float softmax has beta 1")));
                }
                let x = self.input(&at, 0)?;
                let n = self.push(Some(&at), name_of("softmax", Some(index)), Op::Softmax, vec![x], *out)?;
                self.anchors.entry(n).or_default().softmax_beta = *beta;
                (n, schema::ACT_NONE)
            }
            (
                code @ (op::CONV_2D
                | op::DEPTHWISE_CONV_2D
                | op::FULLY_CONNECTED
                | op::ADD
                | op::CONCATENATION
                | op::MAX_POOL_2D
                | op::AVERAGE_POOL_2D
                | op::SOFTMAX),
                opts,
            ) => {
                return Err(at.err(m, format!("options {opts:?} do not belong to a {}", builtin_name(code))));
            }
            (op::QUANTIZE | op::DEQUANTIZE, _) => {
                return Err(at.err(
                    m,
                    "a model with float inputs or outputs around int8 operators (or float16 weights); \
                     convert it fully to int8 (inference_input_type and inference_output_type tf.int8) or keep it float32",
                ))
            }
            (code, _) => {
                return Err(at.err(
                    m,
                    format!(
                        "{} is not supported; mcufit imports CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, ADD, \
                         CONCATENATION, MAX_POOL_2D, AVERAGE_POOL_2D, RESHAPE and SOFTMAX",
                        builtin_name(code)
                    ),
                ))
            }
        };
        let node = match act {
            schema::ACT_NONE => node,
            schema::ACT_RELU => self.push(Some(&at), name_of("relu", Some(index)), Op::Relu, vec![node], *out)?,
            schema::ACT_RELU6 => self.push(Some(&at), name_of("relu6", Some(index)), Op::Relu6, vec![node], *out)?,
            a => {
                return Err(
                    at.err(m, format!("fused activation {}; mcufit supports NONE, RELU and RELU6", activation_name(a)))
                )
            }
        };
        if self.shapes[node] != want {
            return Err(at.err(
                m,
                format!(
                    "output tensor '{}' has dims {:?} but the IR's shape inference gives {}",
                    ot.name, ot.dims, self.shapes[node]
                ),
            ));
        }
        self.value[*out as usize] = Some(node);
        Ok(())
    }

    fn stride(&self, at: &At, h: i32, w: i32) -> Result<[usize; 2]> {
        match (usize::try_from(h), usize::try_from(w)) {
            (Ok(h), Ok(w)) if h > 0 && w > 0 => Ok([h, w]),
            _ => Err(at.err(self.m, format!("window or stride {h}x{w} (must be positive)"))),
        }
    }

    /// The filter tensor (input 1): its dims (rank `rank`, every one positive) and name.
    fn filter_dims(&self, at: &At, rank: usize) -> Result<(Vec<usize>, String)> {
        let f = self.constant(at, 1)?.ok_or_else(|| at.err(self.m, "has no filter tensor"))?;
        let dims: Vec<usize> = f.dims.iter().filter_map(|&d| usize::try_from(d).ok().filter(|&d| d > 0)).collect();
        if dims.len() != rank || f.dims.len() != rank {
            return Err(at.err(self.m, format!("filter '{}' has dims {:?} (expected rank {rank})", f.name, f.dims)));
        }
        Ok((dims, f.name.clone()))
    }

    /// Constant input `k` (`None` when absent, index -1); an error when it is not a constant.
    fn constant(&self, at: &At, k: usize) -> Result<Option<&'a TflTensor>> {
        let i = at.op.inputs.get(k).copied().unwrap_or(-1);
        if i < 0 {
            return Ok(None);
        }
        let t = tensor(self.m, i)?;
        if t.data.is_none() {
            return Err(at.err(self.m, format!("input {k} ('{}') must be a constant (weights or bias)", t.name)));
        }
        Ok(Some(t))
    }

    fn has_bias(&self, at: &At) -> bool {
        at.op.inputs.get(2).is_some_and(|&b| b >= 0)
    }

    /// Reads the filter and bias of weighted node `n`; `axis` is the filter's output-channel axis.
    fn weights_of(&mut self, at: &At, n: NodeId, axis: usize) -> Result<()> {
        let m = self.m;
        let x = self.nodes[n].inputs[0];
        let want = self.nodes[n].op.kernel_shape(self.shapes[x]).unwrap_or_default();
        let f = self.constant(at, 1)?.ok_or_else(|| at.err(m, "has no filter tensor"))?;
        let fdims: Vec<usize> = f.dims.iter().map(|&d| d.max(0) as usize).collect();
        if fdims != want {
            return Err(at.err(m, format!("filter '{}' has dims {:?}, the IR expects {want:?}", f.name, f.dims)));
        }
        let channels = fdims[axis];
        let count = fdims.iter().product::<usize>();
        let bias = self.constant(at, 2)?;
        let elem = |t: &TflTensor, size: usize| t.data.as_ref().map_or(0, |d| d.len()) == size;
        if self.int8 {
            if f.ttype != ttype::INT8 || !elem(f, count) {
                return Err(at.err(
                    m,
                    format!("filter '{}' must be int8 with {count} values (it is {})", f.name, type_name(f.ttype)),
                ));
            }
            let scales = self.filter_scales(at, f, axis, channels)?;
            let bias = match bias {
                None => vec![0; channels],
                Some(b) if b.ttype == ttype::INT32 && elem(b, 4 * channels) => b
                    .data
                    .as_deref()
                    .unwrap_or_default()
                    .chunks_exact(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                Some(b) => {
                    return Err(at.err(
                        m,
                        format!(
                            "bias '{}' must be int32 with {channels} values (it is {} with dims {:?})",
                            b.name,
                            type_name(b.ttype),
                            b.dims
                        ),
                    ))
                }
            };
            let filter = f.data.as_deref().unwrap_or_default().iter().map(|&v| v as i8).collect();
            self.anchors.entry(n).or_default().weights =
                Some(QWeights { filter, filter_dims: fdims, filter_scales: scales, bias });
            return Ok(());
        }
        let data = f.data.as_deref().unwrap_or_default();
        let kernel: Vec<f32> = match f.ttype {
            ttype::FLOAT32 if elem(f, 4 * count) => floats(data),
            ttype::INT8 if elem(f, count) => {
                // Weight-only quantization: dequantize along the quantized dimension.
                let q = f.quant.as_ref().ok_or_else(|| at.err(m, format!("int8 filter '{}' has no scales", f.name)))?;
                let qd = usize::try_from(q.quantized_dimension).unwrap_or(usize::MAX);
                let per = q.scale.len();
                if per != 1 && (qd >= fdims.len() || per != fdims[qd]) {
                    return Err(at.err(
                        m,
                        format!(
                            "filter '{}' has {per} scales on dimension {} of {:?}",
                            f.name, q.quantized_dimension, f.dims
                        ),
                    ));
                }
                if !(q.zero_point.len() == per || q.zero_point.is_empty()) {
                    return Err(at.err(
                        m,
                        format!("filter '{}' has {} zero points for {per} scales", f.name, q.zero_point.len()),
                    ));
                }
                let inner: usize = if per == 1 { 1 } else { fdims[qd + 1..].iter().product() };
                data.iter()
                    .enumerate()
                    .map(|(i, &v)| {
                        let c = if per == 1 { 0 } else { (i / inner) % per };
                        let zp = q.zero_point.get(c).copied().unwrap_or(0) as f32;
                        q.scale[c] * (v as i8 as f32 - zp)
                    })
                    .collect()
            }
            t => {
                return Err(at.err(
                    m,
                    format!(
                    "filter '{}' is {} with {} bytes for dims {:?}; mcufit takes float32 or int8 (dequantized) weights",
                    f.name,
                    type_name(t),
                    data.len(),
                    f.dims
                ),
                ))
            }
        };
        if !kernel.iter().all(|v| v.is_finite()) {
            return Err(at.err(m, format!("filter '{}' has a non-finite value", f.name)));
        }
        let bias = match bias {
            None => None,
            Some(b) if b.ttype == ttype::FLOAT32 && elem(b, 4 * channels) => {
                Some(floats(b.data.as_deref().unwrap_or_default()))
            }
            Some(b) => {
                return Err(at.err(
                    m,
                    format!(
                        "bias '{}' must be float32 with {channels} values (it is {} with dims {:?})",
                        b.name,
                        type_name(b.ttype),
                        b.dims
                    ),
                ))
            }
        };
        let kernel = TensorF32::new(fdims, kernel)?;
        self.weights.nodes.insert(self.nodes[n].name.clone(), NodeWeights { kernel: Some(kernel), bias, bn: None });
        Ok(())
    }

    /// One positive scale per output channel (a single per-tensor scale is broadcast, as TFLM does),
    /// zero points 0.
    fn filter_scales(&self, at: &At, f: &TflTensor, axis: usize, channels: usize) -> Result<Vec<f32>> {
        let m = self.m;
        let q = f.quant.as_ref().ok_or_else(|| at.err(m, format!("int8 filter '{}' has no quantization", f.name)))?;
        if q.zero_point.iter().any(|&z| z != 0) {
            return Err(
                at.err(m, format!("filter '{}' has a nonzero zero point; TFLite int8 weights are symmetric", f.name))
            );
        }
        let scales = match q.scale.len() {
            1 => vec![q.scale[0]; channels],
            n if n == channels && q.quantized_dimension as usize == axis => q.scale.clone(),
            n => {
                return Err(at.err(
                    m,
                    format!(
                        "filter '{}' has {n} scales on dimension {}; mcufit takes one per output channel (dimension {axis}, {channels} channels) or one per tensor",
                        f.name, q.quantized_dimension
                    ),
                ))
            }
        };
        if let Some(s) = scales.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(at.err(m, format!("filter '{}' has scale {s}", f.name)));
        }
        Ok(scales)
    }

    /// `(scale, zero point)` of an int8 activation tensor (per tensor).
    fn act_quant(&self, t: &TflTensor, what: &str) -> Result<(f32, i32)> {
        match &t.quant {
            Some(q) if q.scale.len() == 1 && q.zero_point.len() == 1 => {
                let (s, z) = (q.scale[0], q.zero_point[0]);
                if !(s.is_finite() && s > 0.0 && (-128..=127).contains(&z)) {
                    return Err(unsupported(format!("{what}: tensor '{}' has scale {s}, zero point {z}", t.name)));
                }
                Ok((s, z as i32))
            }
            _ => Err(unsupported(format!(
                "{what}: tensor '{}' is not quantized per tensor (one scale, one zero point)",
                t.name
            ))),
        }
    }

    /// The int8 model: one op per fused op of `graph` (see the module docs).
    fn quantized(&self, graph: &Graph, name: &str) -> Result<QuantizedModel> {
        let fused = graph.fused();
        let mut ops = Vec::with_capacity(fused.ops.len());
        let mut tensors = Vec::with_capacity(fused.ops.len());
        for fop in &fused.ops {
            let anchor = &graph.nodes[fop.anchor];
            let what = format!("node '{}'", anchor.name);
            let t = tensor(self.m, self.node_tensor[fop.output])?;
            let (scale, zero_point) = self.act_quant(t, &what)?;
            // A folded reshape/flatten moves bytes: its input must be quantized as its output.
            for &n in std::iter::once(&fop.anchor).chain(&fop.absorbed) {
                let u = tensor(self.m, self.node_tensor[n])?;
                if self.act_quant(u, &what)? != (scale, zero_point) {
                    return Err(unsupported(format!(
                        "{what}: tensor '{}' and '{}' differ in quantization across a reshape",
                        u.name, t.name
                    )));
                }
            }
            let a = self.anchors.get(&fop.anchor).cloned().unwrap_or_default();
            let w = || a.weights.clone().ok_or_else(|| unsupported(format!("{what}: no int8 weights")));
            let act = fop.activation;
            let kind = match &anchor.op {
                Op::Input { .. } => QOpKind::Input,
                Op::Conv2d(c) => {
                    QOpKind::Conv2d { weights: w()?, stride: c.stride, padding: c.padding, activation: act }
                }
                Op::DepthwiseConv2d(d) => {
                    QOpKind::DepthwiseConv2d { weights: w()?, stride: d.stride, padding: d.padding, activation: act }
                }
                Op::Dense(_) => QOpKind::FullyConnected { weights: w()?, activation: act },
                Op::Add => QOpKind::Add { activation: act },
                Op::Concat => QOpKind::Concat { activation: act },
                Op::MaxPool2d(p) => {
                    QOpKind::MaxPool { pool: p.pool, stride: p.strides(), padding: p.padding, activation: act }
                }
                Op::AvgPool2d(p) => {
                    QOpKind::AvgPool { pool: p.pool, stride: p.strides(), padding: p.padding, activation: act }
                }
                Op::Flatten | Op::Reshape { .. } => QOpKind::Reshape,
                Op::Softmax => QOpKind::Softmax { beta: a.softmax_beta },
                Op::Relu | Op::Relu6 => {
                    let activation = if matches!(anchor.op, Op::Relu) { Activation::Relu } else { Activation::Relu6 };
                    QOpKind::MaxPool { pool: [1, 1], stride: [1, 1], padding: Padding::Valid, activation }
                }
                other => return Err(unsupported(format!("{what}: {} has no int8 kernel", other.kind()))),
            };
            // Named after the kernel's own output (a folded reshape's view shares its bytes).
            let name = tensor(self.m, self.node_tensor[fop.anchor])?.name.clone();
            tensors.push(QTensor { name, shape: fop.shape, scale, zero_point });
            ops.push(QOp {
                name: anchor.name.clone(),
                kind,
                inputs: fop.inputs.clone(),
                kernel_shape: self.shapes[fop.anchor],
            });
        }
        let model = QuantizedModel { name: name.to_string(), ops, tensors };
        // TFLM's preparation (multipliers, shifts): one that cannot be represented fails here.
        model.prepare()?;
        Ok(model)
    }
}

fn floats(d: &[u8]) -> Vec<f32> {
    d.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}
