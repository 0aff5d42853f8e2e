//! Trained weights, backend-free: what training produces and loads, pruning slices, and the
//! quantizer and float reference read. Keyed by IR node name.
//!
//! Layouts (TFLite's, row-major f32; see [`Op::kernel_shape`]):
//! - conv2d kernel: `[filters, kh, kw, in_c / groups]` (OHWI)
//! - depthwise kernel: `[1, kh, kw, c]`
//! - dense kernel: `[units, in]`, `in` indexed in NHWC-flatten order (h, w, c)
//! - bias: `[out_c]`
//! - batch norm: `gamma`, `beta`, `mean`, `var` (running, unbiased variance), each `[c]`, and `eps`
//!
//! Channel-group masks (`masks`, by [`GroupId`]) are the training form of pruning; the deployment
//! form has them folded into the layers (see `mcufit_train::Network::export_weights`), which
//! [`Weights::check_deployable`] insists on.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{IrError, Result};
use crate::graph::Graph;
use crate::groups::GroupId;
use crate::op::Op;

/// A dense f32 tensor with its shape (row-major).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorF32 {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl TensorF32 {
    /// A tensor; `data` must hold exactly the elements `shape` implies.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        if shape.iter().product::<usize>() != data.len() {
            return Err(IrError::Weights(format!("shape {shape:?} does not hold {} values", data.len())));
        }
        Ok(TensorF32 { shape, data })
    }

    /// A 1-D tensor.
    pub fn vector(data: Vec<f32>) -> Self {
        TensorF32 { shape: vec![data.len()], data }
    }
}

/// Batch-norm parameters and running statistics of one node. `eps` is the graph's
/// ([`crate::BatchNorm::eps`]); [`Weights::check`] insists they agree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BnWeights {
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
    pub eps: f32,
}

/// The parameters of one IR node (see the module docs for layouts): a kernel and optional bias
/// for conv2d / depthwise / dense, batch-norm parameters for a batch norm.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct NodeWeights {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<TensorF32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bias: Option<Vec<f32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bn: Option<BnWeights>,
}

impl NodeWeights {
    /// True when the node carries nothing.
    pub fn is_empty(&self) -> bool {
        self.kernel.is_none() && self.bias.is_none() && self.bn.is_none()
    }
}

/// All weights of a network: node name → parameters, and channel-group masks by group id.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Weights {
    pub nodes: BTreeMap<String, NodeWeights>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub masks: BTreeMap<GroupId, Vec<f32>>,
}

impl Weights {
    pub fn get(&self, node: &str) -> Option<&NodeWeights> {
        self.nodes.get(node)
    }

    /// The kernel of `node`, if it has one.
    pub fn kernel(&self, node: &str) -> Option<&TensorF32> {
        self.get(node)?.kernel.as_ref()
    }

    /// The bias of `node`, if it has one.
    pub fn bias(&self, node: &str) -> Option<&[f32]> {
        self.get(node)?.bias.as_deref()
    }

    /// The batch-norm parameters of `node`, if it has them.
    pub fn bn(&self, node: &str) -> Option<&BnWeights> {
        self.get(node)?.bn.as_ref()
    }

    /// Checks the weights against `graph`: every conv2d / depthwise / dense node has a kernel of
    /// exactly [`Op::kernel_shape`] and a bias of its output channels iff the op has one, every
    /// batch norm has its four vectors at the channel count, a non-negative variance and the graph's
    /// eps; no other node and no unknown name carries anything; every mask names a channel group
    /// and has its size. Errors name the node (or the group).
    pub fn check(&self, graph: &Graph) -> Result<()> {
        for name in self.nodes.keys() {
            if graph.find(name).is_none() {
                return Err(IrError::node(name, "weights given, but the graph has no node of that name"));
            }
        }
        let shapes = graph.shapes()?;
        let empty = NodeWeights::default();
        for (id, node) in graph.nodes.iter().enumerate() {
            let err = |m: String| IrError::node(&node.name, m);
            let w = self.nodes.get(&node.name).unwrap_or(&empty);
            let input = node.inputs.first().map_or(shapes[id], |&i| shapes[i]);
            let out_c = shapes[id].c;
            if let Some(want) = node.op.kernel_shape(input) {
                let k = w.kernel.as_ref().ok_or_else(|| err("missing kernel".into()))?;
                if k.shape != want {
                    return Err(err(format!("kernel shape {:?}, expected {want:?}", k.shape)));
                }
                if k.data.len() != want.iter().product::<usize>() {
                    return Err(err(format!("kernel has {} values for shape {want:?}", k.data.len())));
                }
                match (node.op.has_bias(), &w.bias) {
                    (true, Some(b)) if b.len() != out_c => {
                        return Err(err(format!("bias has {} values, expected {out_c}", b.len())))
                    }
                    (true, None) => return Err(err("missing bias".into())),
                    (false, Some(_)) => return Err(err("has a bias but the op has bias=false".into())),
                    _ => {}
                }
                if w.bn.is_some() {
                    return Err(err(format!("batch-norm parameters given for a {} op", node.op.kind())));
                }
            } else if let Op::BatchNorm(b) = &node.op {
                let bn = w.bn.as_ref().ok_or_else(|| err("missing batch-norm parameters".into()))?;
                for (what, v) in [("gamma", &bn.gamma), ("beta", &bn.beta), ("mean", &bn.mean), ("var", &bn.var)] {
                    if v.len() != out_c {
                        return Err(err(format!("bn {what} has {} values, expected {out_c}", v.len())));
                    }
                }
                if bn.var.iter().any(|v| v.is_nan() || *v < 0.0) {
                    return Err(err("bn running variance has negative or NaN entries".into()));
                }
                if bn.eps.to_bits() != b.eps.to_bits() {
                    return Err(err(format!("bn eps {} differs from the graph's {}", bn.eps, b.eps)));
                }
                if w.kernel.is_some() || w.bias.is_some() {
                    return Err(err("kernel or bias given for a batch norm".into()));
                }
            } else if !w.is_empty() {
                return Err(err(format!("op {} has no weights", node.op.kind())));
            }
        }
        if !self.masks.is_empty() {
            let groups = graph.channel_groups()?;
            for (&g, m) in &self.masks {
                let size = groups
                    .groups
                    .get(g)
                    .map(|gr| gr.size)
                    .ok_or_else(|| IrError::Weights(format!("mask for channel group {g}, which does not exist")))?;
                if m.len() != size {
                    return Err(IrError::Weights(format!("mask {g} has {} values, the group has {size}", m.len())));
                }
            }
        }
        Ok(())
    }

    /// [`Weights::check`], plus what inference needs: no unfolded masks and every value finite.
    pub fn check_deployable(&self, graph: &Graph) -> Result<()> {
        self.check(graph)?;
        if !self.masks.is_empty() {
            return Err(IrError::Weights(format!(
                "the weights still carry {} channel-group masks; fold them first (Network::export_weights)",
                self.masks.len()
            )));
        }
        for (name, w) in &self.nodes {
            let mut parts: Vec<(&str, &[f32])> = Vec::new();
            if let Some(k) = &w.kernel {
                parts.push(("kernel", &k.data));
            }
            if let Some(b) = &w.bias {
                parts.push(("bias", b));
            }
            if let Some(bn) = &w.bn {
                parts.extend([("bn gamma", &bn.gamma[..]), ("bn beta", &bn.beta), ("bn mean", &bn.mean)]);
                parts.push(("bn var", &bn.var));
            }
            if let Some((what, _)) = parts.iter().find(|(_, v)| !v.iter().all(|x| x.is_finite())) {
                return Err(IrError::node(name, format!("{what} has a non-finite value")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GraphBuilder, Padding, Shape};

    /// input 6x6x2 → conv 3 (3x3, s2, same) → bn → relu → dw 3x3 → flatten → dense 4.
    fn graph() -> Graph {
        let mut b = GraphBuilder::new("w", Shape::new(6, 6, 2));
        let c = b.named("conv").conv(0, 3, 3, 2, Padding::Same);
        let n = b.named("bn").bn(c);
        let r = b.relu(n);
        let d = b.named("dw").dw(r, 3, 1, Padding::Same);
        let f = b.add(Op::Flatten, &[d]);
        b.named("fc").dense(f, 4);
        b.build().unwrap()
    }

    fn weights(g: &Graph) -> Weights {
        let k = |shape: Vec<usize>| TensorF32::new(shape.clone(), vec![0.5; shape.iter().product()]).unwrap();
        let mut w = Weights::default();
        let node = |kernel, bias| NodeWeights { kernel: Some(kernel), bias: Some(bias), bn: None };
        w.nodes.insert("conv".into(), node(k(vec![3, 3, 3, 2]), vec![0.0; 3]));
        w.nodes.insert("dw".into(), node(k(vec![1, 3, 3, 3]), vec![0.0; 3]));
        w.nodes.insert("fc".into(), node(k(vec![4, 27]), vec![0.0; 4]));
        let eps = match &g.nodes[g.find("bn").unwrap()].op {
            Op::BatchNorm(b) => b.eps,
            _ => unreachable!(),
        };
        let v = vec![1.0; 3];
        let bn = BnWeights { gamma: v.clone(), beta: v.clone(), mean: v.clone(), var: v, eps };
        w.nodes.insert("bn".into(), NodeWeights { bn: Some(bn), ..Default::default() });
        w
    }

    fn fails(g: &Graph, w: &Weights, words: &[&str]) {
        let e = w.check(g).unwrap_err().to_string();
        assert!(words.iter().all(|x| e.contains(x)), "{e}");
    }

    #[test]
    fn check_accepts_the_graphs_shapes_and_names_the_node_otherwise() {
        let g = graph();
        let good = weights(&g);
        good.check(&g).unwrap();
        good.check_deployable(&g).unwrap();
        let mut w = good.clone();
        w.nodes.get_mut("conv").unwrap().kernel = Some(TensorF32::new(vec![3, 3, 2, 3], vec![0.0; 54]).unwrap());
        fails(&g, &w, &["'conv'", "kernel shape [3, 3, 2, 3], expected [3, 3, 3, 2]"]);
        let mut w = good.clone();
        w.nodes.get_mut("fc").unwrap().kernel.as_mut().unwrap().data.pop();
        fails(&g, &w, &["'fc'", "107 values"]);
        let mut w = good.clone();
        w.nodes.get_mut("dw").unwrap().bias = None;
        fails(&g, &w, &["'dw'", "missing bias"]);
        let mut w = good.clone();
        w.nodes.get_mut("fc").unwrap().bias = Some(vec![0.0; 3]);
        fails(&g, &w, &["'fc'", "bias has 3 values, expected 4"]);
        let mut w = good.clone();
        w.nodes.remove("conv");
        fails(&g, &w, &["'conv'", "missing kernel"]);
        let mut w = good.clone();
        w.nodes.get_mut("bn").unwrap().bn.as_mut().unwrap().eps = 1e-5;
        fails(&g, &w, &["'bn'", "eps"]);
        let mut w = good.clone();
        w.nodes.get_mut("bn").unwrap().bn.as_mut().unwrap().var[1] = -1.0;
        fails(&g, &w, &["'bn'", "variance"]);
        let mut w = good.clone();
        w.nodes.get_mut("bn").unwrap().bn.as_mut().unwrap().mean.push(0.0);
        fails(&g, &w, &["'bn'", "mean has 4 values"]);
        let mut w = good.clone();
        w.nodes.insert("nope".into(), NodeWeights::default());
        fails(&g, &w, &["'nope'", "no node"]);
        let mut w = good.clone();
        let relu = g.nodes[3].name.clone();
        w.nodes.insert(relu.clone(), NodeWeights { bias: Some(vec![0.0; 3]), ..Default::default() });
        fails(&g, &w, &[&relu, "relu has no weights"]);
    }

    #[test]
    fn masks_are_checked_and_refused_for_deployment() {
        let g = graph();
        let mut w = weights(&g);
        let conv_group = g.channel_groups().unwrap().groups.iter().find(|gr| gr.size == 3).unwrap().id;
        w.masks.insert(conv_group, vec![1.0, 0.0, 1.0]);
        w.check(&g).unwrap();
        assert!(w.check_deployable(&g).unwrap_err().to_string().contains("masks"));
        w.masks.insert(conv_group, vec![1.0; 2]);
        assert!(w.check(&g).unwrap_err().to_string().contains("mask"));
        w.masks.clear();
        w.masks.insert(99, vec![1.0]);
        assert!(w.check(&g).unwrap_err().to_string().contains("group 99"));
        let mut w = weights(&g);
        w.nodes.get_mut("dw").unwrap().kernel.as_mut().unwrap().data[4] = f32::NAN;
        w.check(&g).unwrap();
        let e = w.check_deployable(&g).unwrap_err().to_string();
        assert!(e.contains("'dw'") && e.contains("non-finite"), "{e}");
    }

    #[test]
    fn weights_round_trip_through_serde() {
        let g = graph();
        let mut w = weights(&g);
        w.masks.insert(0, vec![1.0, 0.0]);
        let back: Weights = serde_json::from_str(&serde_json::to_string(&w).unwrap()).unwrap();
        assert_eq!(back, w);
        assert!(TensorF32::new(vec![2, 2], vec![0.0; 3]).is_err());
        assert_eq!(TensorF32::vector(vec![1.0, 2.0]).shape, vec![2]);
    }
}
