//! ONNX (float, as `torch.onnx.export` writes it) → IR + weights.
//!
//! The file is decoded with prost types generated from the vendored `onnx.proto` (`build.rs`), then
//! mapped node by node, one function per ONNX operator (`onnx/ops.rs`):
//!
//! | ONNX | IR |
//! |---|---|
//! | `Conv` (group 1, or any group) | `conv2d` (OHWI kernel, `groups` kept) |
//! | `Conv` with group = in channels = out channels | `depthwise_conv2d` (`[1, kh, kw, c]` kernel) |
//! | `BatchNormalization` (inference) | `batch_norm` (`epsilon` kept, running statistics) |
//! | `Relu`; `Clip(0, 6)`; `Clip(0, +inf)` | `relu`; `relu6`; `relu` (min/max as inputs, opset ≥ 11, or attributes) |
//! | `MaxPool`, `AveragePool` | `max_pool2d`, `avg_pool2d` |
//! | `GlobalAveragePool`; `GlobalMaxPool` | `global_avg_pool`; `max_pool2d` over the whole map |
//! | `ReduceMean` over axes `[2, 3]` (`x.mean((2, 3))`), `keepdims` 1 or 0 | `global_avg_pool` |
//! | `Add` of two activations | `add` |
//! | `Add` of a constant right after a `MatMul` | the dense layer's bias |
//! | `Concat` on the channel axis | `concat` |
//! | `Gemm` (`transA` 0, any `transB`, `alpha`, `beta`); `MatMul` with a constant | `dense` |
//! | `Flatten` (axis 1); `Reshape` to `[N, -1]` | `flatten` |
//! | `Transpose` `[0, 2, 3, 1]` read by a `Flatten` / `Reshape` to `[N, -1]` (`x.permute(0, 2, 3, 1).reshape(n, -1)`) | `flatten` (no weight permutation: HWC is the IR's order) |
//! | `Pad` (constant 0, H and W only) read by a `Conv` | folded into the conv's padding |
//! | `Softmax` over the class axis | `softmax` (kept: the IR has it, as the zoo models end in it) |
//! | `Identity`, `Dropout` (inference), `Cast` to float | nothing (the value passes through) |
//! | `Constant`; `Shape` of an activation | a constant (the batch dimension as the input's, 1 when symbolic) |
//! | any node whose inputs are all constants: `ConstantOfShape`, `Shape`, `Gather`, `Unsqueeze`, `Squeeze`, `Concat`, `Reshape`, `Flatten`, `Slice`, `Transpose`, `Cast`, `Range`, `Add`/`Sub`/`Mul`/`Div`, `Identity`, `Dropout` | folded at import (`onnx/fold.rs`; e.g. a `Reshape`'s target, or the `pads` that `F.pad` computes); any other op on constants is an error naming it |
//!
//! Contracts:
//! - **Layout.** ONNX activations are NCHW, the IR's NHWC (batch implicit): an `[N, C, H, W]` input
//!   becomes an `H x W x C` input, conv kernels `[M, C/g, kH, kW]` are transposed to OHWI
//!   `[M, kH, kW, C/g]` (depthwise to `[1, kH, kW, C]`), and a dense layer reading a flattened
//!   `C x H x W` map has its weight columns permuted from ONNX's CHW order to the IR's HWC order, so
//!   the imported model computes the same function on the transposed input. A flattened map that
//!   reaches the graph's output unpermuted is refused (its element order would differ). A map
//!   transposed to NHWC (`Transpose [0, 2, 3, 1]`) before its flatten is already in the IR's order:
//!   its dense layer keeps its weights as they are; any other use of that Transpose is refused.
//! - **Padding.** Explicit `pads` (plus those of a zero `Pad` right before a `Conv`, PyTorch's way
//!   to TensorFlow's `same` at stride 2: `nn.ZeroPad2d((0, 1, 0, 1))` then `padding=0`) become `valid` when all 0 and `same` when they equal TensorFlow's
//!   `same` padding for that input (odd pixel at the bottom/right); `auto_pad` `SAME_UPPER` is
//!   `same`, `SAME_LOWER` only when the padding is symmetric, `VALID` is `valid`. Anything else is an
//!   [`ImportError::Unsupported`] naming the node, as are dilations, `ceil_mode` that changes the output
//!   size, and an `AveragePool` that counts padded pixels (`count_include_pad=1`).
//! - **Shapes** come from the IR's shape inference; every shape the file states (`value_info`,
//!   graph outputs) must agree with it, in ONNX's NCHW order, or the import fails.
//! - **Weights** are float32 initializers (float64 narrowed); their element counts are checked against
//!   the bytes present before anything is allocated. The batch dimension may be symbolic or fixed.
//! - **Errors** name the node (name and op type) and the tensor: [`ImportError::Malformed`] for a
//!   file that is not a well-formed ONNX model, [`ImportError::Unsupported`] for a readable model mcufit
//!   cannot represent, with what to change.
//!
//! Names: IR nodes take the ONNX node names made identifier-safe (`/layer1/conv1/Conv` →
//! `layer1_conv1_Conv`), the input node is `input`.

mod fold;
mod ops;
mod proto;
mod tensor;

use std::collections::{HashMap, HashSet};
use std::fmt::Display;
use std::rc::Rc;

use mcufit_ir::{Graph, Node, NodeId, NodeWeights, Op, Shape, Weights};
use prost::Message;

use crate::{ImportError, Imported, Result};
use proto::type_proto::Value as TypeValue;
use proto::{tensor_shape_proto::dimension::Value as Dim, AttributeProto, GraphProto, NodeProto, ValueInfoProto};
use tensor::Const;

const FORMAT: &str = "onnx";
/// ONNX's float32 element type (`TensorProto.DataType.FLOAT`).
const FLOAT: i32 = proto::tensor_proto::DataType::Float as i32;

pub(crate) fn malformed(msg: impl Into<String>) -> ImportError {
    ImportError::Malformed { format: FORMAT, msg: msg.into() }
}
pub(crate) fn unsupported(msg: impl Into<String>) -> ImportError {
    ImportError::Unsupported { format: FORMAT, msg: msg.into() }
}

/// Imports an ONNX model (float32, opset 7 or later); `name` becomes the graph's name.
/// Returns [`Imported::Float`] with weights that pass [`Weights::check`].
pub fn import_bytes(bytes: &[u8], name: &str) -> Result<Imported> {
    let model = proto::ModelProto::decode(bytes).map_err(|e| {
        malformed(format!("not a readable ONNX protobuf ({e}); is it an .onnx file saved whole (not truncated)?"))
    })?;
    let graph = model.graph.as_ref().ok_or_else(|| {
        malformed("the file holds no graph (an empty or non-ONNX file that happens to parse as protobuf)")
    })?;
    let opset =
        model
            .opset_import
            .iter()
            .filter(|o| matches!(o.domain(), "" | "ai.onnx"))
            .map(|o| o.version())
            .max()
            .ok_or_else(|| malformed("the model imports no version of the default ONNX operator set (opset_import)"))?;
    if opset < 7 {
        return Err(unsupported(format!(
            "opset {opset}: mcufit imports opset 7 or later; re-export with a newer opset"
        )));
    }
    let mut im = Importer::new(graph, opset)?;
    for (index, node) in graph.node.iter().enumerate() {
        im.node(&At { index, node })?;
    }
    im.finish(graph, name)
}

/// One ONNX node being mapped, for its attributes, inputs and error messages.
pub(crate) struct At<'a> {
    index: usize,
    node: &'a NodeProto,
}

impl At<'_> {
    fn op(&self) -> &str {
        self.node.op_type()
    }
    /// `node 'NAME' (OP)`, or `node #INDEX (OP)` for an unnamed node.
    fn label(&self) -> String {
        match self.node.name() {
            "" => format!("node #{} ({})", self.index, self.op()),
            n => format!("node '{n}' ({})", self.op()),
        }
    }
    fn unsupported(&self, msg: impl Display) -> ImportError {
        unsupported(format!("{}: {msg}", self.label()))
    }
    fn malformed(&self, msg: impl Display) -> ImportError {
        malformed(format!("{}: {msg}", self.label()))
    }
    /// Input `i`'s name; `None` when absent or empty (an omitted optional input).
    fn input(&self, i: usize) -> Option<&str> {
        self.node.input.get(i).map(String::as_str).filter(|s| !s.is_empty())
    }
    fn output(&self, i: usize) -> Option<&str> {
        self.node.output.get(i).map(String::as_str).filter(|s| !s.is_empty())
    }
    fn attr(&self, name: &str) -> Option<&AttributeProto> {
        self.node.attribute.iter().find(|a| a.name() == name)
    }
    fn int(&self, name: &str, default: i64) -> Result<i64> {
        match self.attr(name) {
            None => Ok(default),
            Some(a) => a.i.ok_or_else(|| self.malformed(format!("attribute '{name}' is not an int"))),
        }
    }
    fn float(&self, name: &str, default: f32) -> Result<f32> {
        match self.attr(name) {
            None => Ok(default),
            Some(a) => a.f.ok_or_else(|| self.malformed(format!("attribute '{name}' is not a float"))),
        }
    }
    fn ints(&self, name: &str) -> Option<&[i64]> {
        self.attr(name).map(|a| a.ints.as_slice())
    }
    fn string(&self, name: &str, default: &str) -> Result<String> {
        match self.attr(name) {
            None => Ok(default.to_string()),
            Some(a) => {
                a.s.as_deref()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .ok_or_else(|| self.malformed(format!("attribute '{name}' is not a string")))
            }
        }
    }
}

/// How an activation's elements are ordered, relative to the IR's NHWC tensor of the same node.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Layout {
    /// A rank-4 `[N, C, H, W]` ONNX tensor; the IR holds it as `H x W x C`.
    Nchw,
    /// A rank-2 `[N, K]` ONNX tensor. `chw`: it is the flatten of this `H x W x C` map, so ONNX orders
    /// its elements C, H, W and the IR H, W, C (`None`: both orders agree).
    Flat { chw: Option<Shape> },
}

/// An activation: the IR node computing it and its ONNX layout.
#[derive(Debug, Clone, Copy)]
struct Act {
    node: NodeId,
    layout: Layout,
}

/// An ONNX value: computed by the graph, or constant (initializer, `Constant`, folded).
#[derive(Debug, Clone)]
enum Value {
    Act(Act),
    Const(Rc<Const>),
    /// The zero-padded `[top, left, bottom, right]` result of a `Pad` of an NCHW activation: only a
    /// `Conv` may read it, and folds the padding into its own.
    Padded(Act, [usize; 4]),
    /// `Transpose(perm = [0, 2, 3, 1])` of an NCHW activation: the `[N, H, W, C]` tensor whose element
    /// order is the IR's own. Only a flatten (`Flatten`, `Reshape` to `[N, -1]`) may read it, which then
    /// needs no weight permutation (PyTorch's `x.permute(0, 2, 3, 1).reshape(n, -1)`).
    Nhwc(Act),
}

/// The import in progress: IR nodes and weights so far, ONNX values by name.
struct Importer {
    opset: i64,
    nodes: Vec<Node>,
    shapes: Vec<Shape>,
    weights: Weights,
    names: HashSet<String>,
    values: HashMap<String, Value>,
    /// The label of the node that produced each value (for messages).
    producer: HashMap<String, String>,
    /// How many node inputs and graph outputs read each value.
    uses: HashMap<String, usize>,
    /// The batch dimension of the input; `None` when symbolic.
    batch: Option<i64>,
}

impl Importer {
    /// Reads the initializers and the one graph input.
    fn new(g: &GraphProto, opset: i64) -> Result<Self> {
        let mut im = Importer {
            opset,
            nodes: Vec::new(),
            shapes: Vec::new(),
            weights: Weights::default(),
            names: HashSet::new(),
            values: HashMap::new(),
            producer: HashMap::new(),
            uses: HashMap::new(),
            batch: None,
        };
        for t in &g.initializer {
            let name = t.name();
            let c = tensor::decode(t, &format!("initializer '{name}'"))?;
            if im.values.insert(name.to_string(), Value::Const(Rc::new(c))).is_some() {
                return Err(malformed(format!("initializer '{name}' is defined twice")));
            }
        }
        if !g.sparse_initializer.is_empty() {
            return Err(unsupported("sparse initializers: save the model with dense weights"));
        }
        for n in &g.node {
            for i in n.input.iter().filter(|s| !s.is_empty()) {
                *im.uses.entry(i.clone()).or_default() += 1;
            }
        }
        for o in &g.output {
            *im.uses.entry(o.name().to_string()).or_default() += 1;
        }
        let inputs: Vec<&ValueInfoProto> = g.input.iter().filter(|v| !im.values.contains_key(v.name())).collect();
        let [input] = inputs[..] else {
            let names: Vec<&str> = inputs.iter().map(|v| v.name()).collect();
            return Err(unsupported(format!(
                "the graph takes {} inputs {names:?}; mcufit models take exactly one (the image or feature map)",
                inputs.len()
            )));
        };
        im.input(input)?;
        Ok(im)
    }

    /// The graph input: `[N, C, H, W]` (or `[N, K]`) float32 with fixed C, H, W.
    fn input(&mut self, vi: &ValueInfoProto) -> Result<()> {
        let name = vi.name();
        let Some(TypeValue::TensorType(t)) = vi.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
            return Err(unsupported(format!("input '{name}' is not a tensor")));
        };
        if t.elem_type() != FLOAT {
            return Err(unsupported(format!(
                "input '{name}' has element type {}; mcufit imports float32 models (export the float model)",
                t.elem_type()
            )));
        }
        let dims: Vec<Option<i64>> = t
            .shape
            .as_ref()
            .map(|s| {
                s.dim
                    .iter()
                    .map(|d| if let Some(Dim::DimValue(v)) = d.value { Some(v).filter(|&v| v > 0) } else { None })
                    .collect()
            })
            .ok_or_else(|| unsupported(format!("input '{name}' has no shape; export with a fixed input size")))?;
        let fixed = |i: usize| -> Result<usize> {
            dims[i].and_then(|v| usize::try_from(v).ok()).ok_or_else(|| {
                unsupported(format!(
                    "input '{name}' has a symbolic or unknown dimension {i} ({dims:?}); only the batch dimension may \
                     vary: export with a fixed input size"
                ))
            })
        };
        let (shape, layout) = match dims.len() {
            4 => (Shape::new(fixed(2)?, fixed(3)?, fixed(1)?), Layout::Nchw),
            2 => (Shape::flat(fixed(1)?), Layout::Flat { chw: None }),
            r => {
                return Err(unsupported(format!(
                    "input '{name}' has rank {r}; mcufit imports NCHW image inputs [N, C, H, W] (or flat [N, K])"
                )))
            }
        };
        self.batch = dims[0];
        let op = Op::Input { shape };
        let shape = op.output_shape("input", &[]).map_err(|e| unsupported(format!("input '{name}': {e}")))?;
        self.names.insert("input".into());
        self.nodes.push(Node { name: "input".into(), op, inputs: vec![] });
        self.shapes.push(shape);
        self.values.insert(name.to_string(), Value::Act(Act { node: 0, layout }));
        self.producer.insert(name.to_string(), format!("the graph input '{name}'"));
        Ok(())
    }

    /// The batch size used where a shape is computed (`Shape` nodes): the input's, 1 when symbolic.
    fn batch(&self) -> i64 {
        self.batch.unwrap_or(1)
    }

    /// The ONNX dims of an activation (batch included).
    fn onnx_dims(&self, a: Act) -> Vec<i64> {
        let s = self.shapes[a.node];
        match a.layout {
            Layout::Nchw => vec![self.batch(), s.c as i64, s.h as i64, s.w as i64],
            Layout::Flat { .. } => vec![self.batch(), s.elements() as i64],
        }
    }

    /// The value read as input `i` (which must be present).
    fn value(&self, at: &At, i: usize) -> Result<&Value> {
        let name = at.input(i).ok_or_else(|| at.malformed(format!("input #{i} is missing")))?;
        self.values.get(name).ok_or_else(|| {
            at.malformed(format!(
                "input '{name}' is produced by no earlier node, initializer or graph input (nodes must be in \
                 topological order)"
            ))
        })
    }

    /// The ONNX dims of a value.
    fn value_dims(&self, v: &Value) -> Vec<i64> {
        match v {
            Value::Act(a) => self.onnx_dims(*a),
            Value::Const(c) => c.dims.iter().map(|&d| d as i64).collect(),
            Value::Padded(a, p) => {
                let d = self.onnx_dims(*a);
                let grow = |n: i64, x: usize, y: usize| {
                    n.saturating_add(i64::try_from(x).unwrap_or(i64::MAX))
                        .saturating_add(i64::try_from(y).unwrap_or(i64::MAX))
                };
                vec![d[0], d[1], grow(d[2], p[0], p[2]), grow(d[3], p[1], p[3])]
            }
            Value::Nhwc(a) => {
                let d = self.onnx_dims(*a);
                vec![d[0], d[2], d[3], d[1]]
            }
        }
    }

    /// Input `i` as an activation.
    fn act(&self, at: &At, i: usize) -> Result<Act> {
        match self.value(at, i)? {
            Value::Act(a) => Ok(*a),
            Value::Padded(..) => Err(at.unsupported(format!(
                "input '{}' is the output of a Pad; mcufit folds a zero Pad only into the Conv that reads it",
                at.input(i).unwrap_or_default()
            ))),
            Value::Nhwc(_) => Err(at.unsupported(format!(
                "input '{}' is an NCHW->NHWC Transpose (perm [0, 2, 3, 1]); mcufit imports that Transpose only \
                 right before a flatten (Flatten, or Reshape to [N, -1]) feeding a dense layer",
                at.input(i).unwrap_or_default()
            ))),
            Value::Const(_) => Err(at.unsupported(format!(
                "input '{}' is a constant; mcufit imports this op on activations only (fold constants before export)",
                at.input(i).unwrap_or_default()
            ))),
        }
    }

    /// Input `i` as a constant (an initializer, a `Constant` node or a folded value).
    fn konst(&self, at: &At, i: usize) -> Result<Rc<Const>> {
        match self.value(at, i)? {
            Value::Const(c) => Ok(c.clone()),
            Value::Act(_) | Value::Padded(..) | Value::Nhwc(_) => Err(at.unsupported(format!(
                "input '{}' must be a constant (an initializer), but the graph computes it",
                at.input(i).unwrap_or_default()
            ))),
        }
    }

    /// Optional input `i` as a constant; `None` when omitted.
    fn opt_konst(&self, at: &At, i: usize) -> Result<Option<Rc<Const>>> {
        at.input(i).map(|_| self.konst(at, i)).transpose()
    }

    /// Input `i` as float32 values, with the tensor's name for messages.
    fn floats(&self, at: &At, i: usize) -> Result<(Rc<Const>, String)> {
        let c = self.konst(at, i)?;
        let name = at.input(i).unwrap_or_default().to_string();
        if c.floats().is_none() {
            return Err(at.unsupported(format!("tensor '{name}' holds integers where float32 weights are expected")));
        }
        Ok((c, name))
    }

    /// Input `i` as a vector of `n` floats (biases, batch-norm parameters).
    fn vector(&self, at: &At, i: usize, n: usize) -> Result<Vec<f32>> {
        let (c, name) = self.floats(at, i)?;
        if c.len() != n || c.dims.len() != 1 {
            return Err(at.malformed(format!("tensor '{name}' has dims {:?}, expected [{n}]", c.dims)));
        }
        Ok(c.to_f32())
    }

    /// The IR shape of an NCHW activation, or an error for a flat one.
    fn nchw(&self, at: &At, a: Act) -> Result<Shape> {
        match a.layout {
            Layout::Nchw => Ok(self.shapes[a.node]),
            Layout::Flat { .. } => {
                Err(at.unsupported(format!("needs a 4-D NCHW input, got a 2-D one {:?}", self.onnx_dims(a))))
            }
        }
    }

    /// A fresh, identifier-safe IR node name for `at` (its ONNX name, else its output's, else its op).
    fn fresh_name(&mut self, at: &At) -> String {
        let base = [at.node.name(), at.output(0).unwrap_or_default(), at.op()]
            .iter()
            .map(|s| sanitize(s))
            .find(|s| !s.is_empty())
            .unwrap_or_else(|| "node".to_string());
        let mut name = base.clone();
        let mut k = 2;
        while self.names.contains(&name) {
            name = format!("{base}_{k}");
            k += 1;
        }
        self.names.insert(name.clone());
        name
    }

    /// Appends an IR node for `at`; its shape comes from the IR's shape inference.
    fn push(&mut self, at: &At, op: Op, inputs: &[NodeId], weights: Option<NodeWeights>) -> Result<NodeId> {
        let name = self.fresh_name(at);
        let ins: Vec<Shape> = inputs.iter().map(|&i| self.shapes[i]).collect();
        let shape = op.output_shape(&name, &ins).map_err(|e| at.unsupported(e))?;
        if let Some(w) = weights {
            self.weights.nodes.insert(name.clone(), w);
        }
        self.nodes.push(Node { name, op, inputs: inputs.to_vec() });
        self.shapes.push(shape);
        Ok(self.nodes.len() - 1)
    }

    /// Binds output `i` of `at` to `v`.
    fn set(&mut self, at: &At, i: usize, v: Value) -> Result<()> {
        let name = at.output(i).ok_or_else(|| at.malformed(format!("output #{i} is missing")))?;
        if self.values.insert(name.to_string(), v).is_some() {
            return Err(at.malformed(format!("output '{name}' is already defined by an earlier node or initializer")));
        }
        self.producer.insert(name.to_string(), at.label());
        Ok(())
    }

    /// Refuses a node whose outputs after the first (batch-norm statistics, pool indices, dropout
    /// masks) are read: mcufit computes only the first.
    fn only_first_output(&self, at: &At) -> Result<()> {
        for i in 1..at.node.output.len() {
            if let Some(o) = at.output(i).filter(|o| self.uses.get(*o).copied().unwrap_or(0) > 0) {
                return Err(at.unsupported(format!(
                    "its output #{i} '{o}' is read; mcufit imports inference graphs that use only the first output"
                )));
            }
        }
        Ok(())
    }

    /// Checks the graph output and every shape the file states, and builds the IR graph.
    fn finish(self, g: &GraphProto, name: &str) -> Result<Imported> {
        let [out] = &g.output[..] else {
            let names: Vec<&str> = g.output.iter().map(|v| v.name()).collect();
            return Err(unsupported(format!(
                "the graph has {} outputs {names:?}; mcufit models have exactly one (the classifier's)",
                g.output.len()
            )));
        };
        let out_name = out.name();
        let act = match self.values.get(out_name) {
            Some(Value::Act(a)) => *a,
            Some(Value::Const(_) | Value::Padded(..) | Value::Nhwc(_)) => {
                return Err(unsupported(format!(
                    "the graph output '{out_name}' is a constant, a Pad or a Transpose; mcufit models end in a computed tensor"
                )))
            }
            None => return Err(malformed(format!("the graph output '{out_name}' is produced by no node"))),
        };
        if let Layout::Flat { chw: Some(s) } = act.layout {
            return Err(unsupported(format!(
                "the graph output '{out_name}' is a flattened {s} map, which ONNX orders C, H, W and mcufit H, W, C; \
                 end the model in a Gemm/MatMul classifier or a pooled vector"
            )));
        }
        for vi in g.value_info.iter().chain(&g.output) {
            self.check_stated_shape(vi)?;
        }
        let last = self.nodes.len() - 1;
        if act.node != last {
            return Err(unsupported(format!(
                "the graph output '{out_name}' is computed by IR node '{}', but node '{}' comes after it and leads \
                 nowhere; mcufit models have one output and no unused branches",
                self.nodes[act.node].name, self.nodes[last].name
            )));
        }
        let graph = Graph::new(name, self.nodes).map_err(|e| unsupported(e.to_string()))?;
        self.weights.check(&graph)?;
        Ok(Imported::Float { graph, weights: self.weights })
    }

    /// A `value_info` or graph output shape must agree with the IR's (in ONNX order); symbolic
    /// dimensions and a symbolic batch are not compared.
    fn check_stated_shape(&self, vi: &ValueInfoProto) -> Result<()> {
        let name = vi.name();
        let Some(TypeValue::TensorType(t)) = vi.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
            return Ok(());
        };
        let Some(v) = self.values.get(name) else { return Ok(()) };
        let (ours, act) = (self.value_dims(v), !matches!(v, Value::Const(_)));
        let from = self.producer.get(name).map(|p| format!(" (from {p})")).unwrap_or_default();
        if act && t.elem_type.is_some_and(|e| e != FLOAT) {
            return Err(unsupported(format!(
                "tensor '{name}'{from} has element type {}; mcufit imports float32 models",
                t.elem_type()
            )));
        }
        let Some(shape) = &t.shape else { return Ok(()) };
        let stated: Vec<Option<i64>> =
            shape.dim.iter().map(|d| if let Some(Dim::DimValue(v)) = d.value { Some(v) } else { None }).collect();
        let agrees = stated.len() == ours.len()
            && stated.iter().zip(&ours).enumerate().all(|(i, (s, o))| match s {
                Some(s) => (act && i == 0 && self.batch.is_none()) || s == o,
                None => true,
            });
        if !agrees {
            let fmt = |d: &Option<i64>| d.map_or("?".to_string(), |v| v.to_string());
            return Err(malformed(format!(
                "the file gives tensor '{name}'{from} the shape [{}], mcufit's shape inference gives {ours:?}; \
                 the stated shapes disagree with the operators (re-export, or run onnx.shape_inference to check)",
                stated.iter().map(fmt).collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(())
    }
}

/// `/layer1/layer1.0/conv1/Conv` → `layer1_layer1_0_conv1_Conv`: ASCII letters, digits and single
/// underscores, so names are safe in C identifiers and weight keys.
fn sanitize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        let c = if ch.is_ascii_alphanumeric() { ch } else { '_' };
        if !(c == '_' && (out.is_empty() || out.ends_with('_'))) {
            out.push(c);
        }
    }
    out.trim_end_matches('_').to_string()
}

#[cfg(test)]
mod tests;
