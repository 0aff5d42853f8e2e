//! Float weights as the training crate produces them, keyed by IR node name.
//! Layouts (TFLite's): conv OHWI `[out_c, kh, kw, in_c / groups]`, depthwise `[1, kh, kw, c]`,
//! dense `[units, in]` with `in` in NHWC flatten order.

use std::collections::BTreeMap;

use mcufit_ir::{Graph, Op};
use serde::{Deserialize, Serialize};

use crate::error::{QuantError, Result};
use crate::rng::SplitMix64;

/// The trained parameters of one IR node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NodeWeights {
    /// Conv2d, DepthwiseConv2d or Dense.
    Kernel { kernel: Vec<f32>, bias: Option<Vec<f32>> },
    /// Inference-time batch norm statistics.
    BatchNorm { gamma: Vec<f32>, beta: Vec<f32>, mean: Vec<f32>, var: Vec<f32> },
}

/// Node name → parameters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FloatWeights {
    pub nodes: BTreeMap<String, NodeWeights>,
}

/// Expected kernel length of a weighted node, from the graph's shapes.
pub(crate) fn kernel_len(op: &Op, in_shape: mcufit_ir::Shape) -> Option<usize> {
    match op {
        Op::Conv2d(c) => Some(c.filters * c.kernel[0] * c.kernel[1] * (in_shape.c / c.groups.max(1))),
        Op::DepthwiseConv2d(d) => Some(d.kernel[0] * d.kernel[1] * in_shape.c),
        Op::Dense(d) => Some(d.units * in_shape.elements()),
        _ => None,
    }
}

impl FloatWeights {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, node: &str) -> Option<&NodeWeights> {
        self.nodes.get(node)
    }

    /// Checks that every weighted node of `graph` has parameters of the right sizes, all finite,
    /// and batch-norm variances non-negative.
    pub fn check(&self, graph: &Graph) -> Result<()> {
        let shapes = graph.shapes()?;
        for (id, node) in graph.nodes.iter().enumerate() {
            let bad = |msg: String| QuantError::BadWeights { node: node.name.clone(), msg };
            let finite = |v: &[f32], what: &str| -> Result<()> {
                if v.iter().all(|x| x.is_finite()) {
                    Ok(())
                } else {
                    Err(bad(format!("{what} has a non-finite value")))
                }
            };
            let in_shape = node.inputs.first().map(|&i| shapes[i]).unwrap_or(shapes[id]);
            let out_c = shapes[id].c;
            match &node.op {
                Op::Conv2d(_) | Op::DepthwiseConv2d(_) | Op::Dense(_) => {
                    let want = kernel_len(&node.op, in_shape).unwrap_or(0);
                    match self.nodes.get(&node.name) {
                        Some(NodeWeights::Kernel { kernel, bias }) => {
                            if kernel.len() != want {
                                return Err(bad(format!("kernel has {} values, the graph needs {want}", kernel.len())));
                            }
                            finite(kernel, "kernel")?;
                            if let Some(b) = bias {
                                if b.len() != out_c {
                                    return Err(bad(format!(
                                        "bias has {} values, the layer has {out_c} outputs",
                                        b.len()
                                    )));
                                }
                                finite(b, "bias")?;
                            }
                        }
                        Some(_) => return Err(bad("expected kernel weights, found batch-norm parameters".into())),
                        None => return Err(QuantError::MissingWeights { node: node.name.clone() }),
                    }
                }
                Op::BatchNorm(_) => match self.nodes.get(&node.name) {
                    Some(NodeWeights::BatchNorm { gamma, beta, mean, var }) => {
                        for (v, what) in [(gamma, "gamma"), (beta, "beta"), (mean, "mean"), (var, "var")] {
                            if v.len() != out_c {
                                return Err(bad(format!(
                                    "{what} has {} values, the tensor has {out_c} channels",
                                    v.len()
                                )));
                            }
                            finite(v, what)?;
                        }
                        if var.iter().any(|&v| v < 0.0) {
                            return Err(bad("negative variance".into()));
                        }
                    }
                    Some(_) => return Err(bad("expected batch-norm parameters, found a kernel".into())),
                    None => return Err(QuantError::MissingWeights { node: node.name.clone() }),
                },
                _ => {}
            }
        }
        Ok(())
    }

    /// He-uniform random kernels, small random biases and plausible batch-norm statistics: lets the
    /// whole quantize/export pipeline be tested before any training.
    pub fn random(graph: &Graph, seed: u64) -> Result<Self> {
        let shapes = graph.shapes()?;
        let mut rng = SplitMix64::new(seed);
        let mut w = FloatWeights::new();
        for (id, node) in graph.nodes.iter().enumerate() {
            let in_shape = node.inputs.first().map(|&i| shapes[i]).unwrap_or(shapes[id]);
            let out_c = shapes[id].c;
            let has_bias = match &node.op {
                Op::Conv2d(c) => c.bias,
                Op::DepthwiseConv2d(d) => d.bias,
                Op::Dense(d) => d.bias,
                _ => false,
            };
            if let Some(n) = kernel_len(&node.op, in_shape) {
                let fan_in = (n / out_c.max(1)).max(1) as f32;
                let limit = (6.0 / fan_in).sqrt();
                let kernel = (0..n).map(|_| rng.uniform(-limit, limit)).collect();
                let bias = has_bias.then(|| (0..out_c).map(|_| rng.uniform(-0.1, 0.1)).collect());
                w.nodes.insert(node.name.clone(), NodeWeights::Kernel { kernel, bias });
            } else if matches!(node.op, Op::BatchNorm(_)) {
                let mut v = |lo, hi| (0..out_c).map(|_| rng.uniform(lo, hi)).collect::<Vec<f32>>();
                let gamma = v(0.5, 1.5);
                let beta = v(-0.3, 0.3);
                let mean = v(-0.3, 0.3);
                let var = v(0.5, 2.0);
                w.nodes.insert(node.name.clone(), NodeWeights::BatchNorm { gamma, beta, mean, var });
            }
        }
        Ok(w)
    }
}
