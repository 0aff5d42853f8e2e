//! The deployed view of a graph. As in TFLite / TFLM deployment, batch norm folds into the
//! preceding conv/dense, ReLU/ReLU6 become the fused activation of the op before them, and a
//! flatten/reshape is an alias of its input. What is left is one "fused op" per real kernel
//! call, each producing one int8 tensor in the arena. The cost model, quantizer and exporters all
//! work on this view, so they agree on what a layer is.

use crate::graph::{Graph, NodeId};
use crate::op::{Op, Shape};

/// Activation fused into a kernel's output clamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    None,
    Relu,
    Relu6,
}

/// One kernel call of the deployed network.
#[derive(Debug, Clone, PartialEq)]
pub struct FusedOp {
    /// The IR node that does the work (conv, dense, pool, add, ... or the input).
    pub anchor: NodeId,
    /// IR nodes folded into it, in order (batch norm, activation, flatten/reshape).
    pub absorbed: Vec<NodeId>,
    /// Fused ops whose tensors it reads.
    pub inputs: Vec<usize>,
    /// The IR node whose value this op's tensor holds (the last absorbed node, or the anchor).
    pub output: NodeId,
    pub shape: Shape,
    pub activation: Activation,
    /// The batch norm folded into this op, if any.
    pub batch_norm: Option<NodeId>,
}

impl FusedOp {
    /// Bytes of its int8 output tensor.
    pub fn output_bytes(&self) -> usize {
        self.shape.elements()
    }
}

/// The graph as deployed: fused ops in topological order; op 0 is the network input.
#[derive(Debug, Clone, PartialEq)]
pub struct FusedGraph {
    pub ops: Vec<FusedOp>,
    /// For every IR node, the fused op that computes (or absorbed) it.
    pub op_of_node: Vec<usize>,
}

impl FusedGraph {
    pub fn consumers(&self) -> Vec<Vec<usize>> {
        let mut out = vec![Vec::new(); self.ops.len()];
        for (i, op) in self.ops.iter().enumerate() {
            for &j in &op.inputs {
                if !out[j].contains(&i) {
                    out[j].push(i);
                }
            }
        }
        out
    }
    pub fn output(&self) -> usize {
        self.ops.len() - 1
    }
}

impl Graph {
    /// Folds batch norms, activations and reshapes into the kernels that precede them.
    /// A node is folded only when its input is read by nothing else (otherwise the unfused value is
    /// still needed and the node stays a kernel of its own).
    pub fn fused(&self) -> FusedGraph {
        let shapes = self.shapes().expect("graph was validated");
        let consumers = self.consumers();
        let mut ops: Vec<FusedOp> = Vec::new();
        let mut op_of_node = vec![usize::MAX; self.nodes.len()];
        for (id, node) in self.nodes.iter().enumerate() {
            if let Some(&src) = node.inputs.first() {
                let target = op_of_node[src];
                let sole_reader = node.inputs.len() == 1 && consumers[src].len() == 1;
                let t = &ops[target];
                // Only the current output of a fused op can absorb, and only if nothing else reads it.
                let absorbable = sole_reader && t.output == src && !matches!(self.nodes[t.anchor].op, Op::Input { .. });
                let anchor = &self.nodes[t.anchor].op;
                let has_weights = matches!(anchor, Op::Conv2d(_) | Op::DepthwiseConv2d(_) | Op::Dense(_));
                let reshaped = t.absorbed.iter().any(|&a| matches!(self.nodes[a].op, Op::Flatten | Op::Reshape { .. }));
                let fold = absorbable
                    && match &node.op {
                        Op::BatchNorm(_) => {
                            has_weights && t.batch_norm.is_none() && t.activation == Activation::None && !reshaped
                        }
                        Op::Relu | Op::Relu6 => {
                            t.activation == Activation::None
                                && (has_weights
                                    || matches!(anchor, Op::Add | Op::MaxPool2d(_) | Op::AvgPool2d(_) | Op::Concat))
                        }
                        Op::Flatten | Op::Reshape { .. } => true,
                        _ => false,
                    };
                if fold {
                    let t = &mut ops[target];
                    t.absorbed.push(id);
                    t.output = id;
                    t.shape = shapes[id];
                    match node.op {
                        Op::BatchNorm(_) => t.batch_norm = Some(id),
                        Op::Relu => t.activation = Activation::Relu,
                        Op::Relu6 => t.activation = Activation::Relu6,
                        _ => {}
                    }
                    op_of_node[id] = target;
                    continue;
                }
            }
            op_of_node[id] = ops.len();
            ops.push(FusedOp {
                anchor: id,
                absorbed: vec![],
                inputs: node.inputs.iter().map(|&i| op_of_node[i]).collect(),
                output: id,
                shape: shapes[id],
                activation: Activation::None,
                batch_norm: None,
            });
        }
        FusedGraph { ops, op_of_node }
    }
}
