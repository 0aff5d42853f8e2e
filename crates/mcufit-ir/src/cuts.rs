//! Cut points for depth pruning: where a network can be truncated and given a new classifier
//! head ([`crate::truncate_with_head`]).
//!
//! ## Definition
//! A cut is a tensor of the deployed (fused, [`Graph::fused`]) view such that
//! 1. every input → output path passes through it: at that point of the network nothing else is
//!    live beside it, so the trunk before it is self-contained and a head can replace everything
//!    after it (a branch of a residual or inception block is never a cut);
//! 2. it is the output of a whole fused op (conv + BN + ReLU, add + ReLU, pool, ...), so a cut
//!    never splits a conv from its batch norm and activation; an absorbed flatten / reshape at
//!    the end of the op is not part of the cut (the cut is the tensor before it);
//! 3. at least one conv / depthwise / dense kernel comes before it;
//! 4. it comes before the classifier: no dense, global pooling, flatten, flat reshape, softmax, or
//!    pooling down to 1×1 on the way to it;
//! 5. it is not the output of a depthwise conv: a depthwise conv mixes no channels and forms one
//!    separable layer with the pointwise conv after it, so a block ends after the pointwise conv.
//!
//! Condition 1 is checked on the fused graph in topological order: op `k` lies on every path iff no
//! tensor edge `u → w` jumps over it (`u < k < w`), because every op lies on some input → output
//! path in a validated graph and a path visits ops in increasing order.
//!
//! On the zoo: `ds-cnn` 5 (after conv1 and each DS block), `mobilenet-v1-025` 14 (after conv1 and
//! each of the 13 DS blocks), `resnet-8` 4 (after the stem conv and each of the 3 residual
//! blocks: the stem output is read by the first block's conv and its identity shortcut, and
//! nothing else is live beside it), `branchy-net` 5 (stem, residual add + ReLU, concat, the max
//! pool after it, the last conv; nothing inside the add's or the concat's branches).

use serde::{Deserialize, Serialize};

use crate::error::{IrError, Result};
use crate::fuse::FusedGraph;
use crate::graph::{Graph, NodeId};
use crate::op::{Op, Shape};

/// A point where a network can be cut (see the module docs for the definition).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cut {
    /// The IR node whose output is the cut tensor (e.g. the ReLU after a conv + BN). The trunk
    /// is nodes `0..=node`, unchanged.
    pub node: NodeId,
    /// That node's name.
    pub name: String,
    /// The cut tensor's shape (NHWC, batch excluded).
    pub shape: Shape,
    /// Index of the block this cut ends, 0-based and in network order: the cut after the first
    /// block is 0, and `cut_points(g)[i].block == i`.
    pub block: usize,
    /// Conv, depthwise and dense kernels in the trunk (the network's depth up to the cut).
    pub layers: usize,
}

/// True for the ops that start the classifier (see condition 4): everything from them on is not
/// a cut. `shape` is the node's output shape.
pub(crate) fn starts_classifier(op: &Op, shape: Shape) -> bool {
    match op {
        Op::Dense(_) | Op::GlobalAvgPool | Op::Softmax | Op::Flatten => true,
        Op::Reshape { shape } => shape.is_flat(),
        Op::MaxPool2d(_) | Op::AvgPool2d(_) => shape.is_flat(),
        _ => false,
    }
}

/// True for the ops that compute (condition 3).
pub(crate) fn is_kernel(op: &Op) -> bool {
    matches!(op, Op::Conv2d(_) | Op::DepthwiseConv2d(_) | Op::Dense(_))
}

/// The IR node holding fused op `k`'s cut tensor: its output without a trailing flatten /
/// reshape (condition 2).
pub(crate) fn cut_node_of(graph: &Graph, fused: &FusedGraph, k: usize) -> NodeId {
    let op = &fused.ops[k];
    let mut node = op.anchor;
    for &a in &op.absorbed {
        if matches!(graph.nodes[a].op, Op::Flatten | Op::Reshape { .. }) {
            break;
        }
        node = a;
    }
    node
}

/// The cut points of `graph`, in network order (see the module docs for the definition).
/// Errors only on an invalid graph; an empty list means the graph has no cut (e.g. nothing but
/// pooling before its classifier). The last cut is the end of the feature extractor: truncating
/// there replaces only the classifier.
pub fn cut_points(graph: &Graph) -> Result<Vec<Cut>> {
    graph.validate()?;
    let shapes = graph.shapes()?;
    let fused = graph.fused();
    let n = fused.ops.len();
    // Per IR node: whether a kernel / a classifier op is among its ancestors (itself included).
    let mut kernel_before = vec![false; graph.nodes.len()];
    let mut in_classifier = vec![false; graph.nodes.len()];
    for (id, node) in graph.nodes.iter().enumerate() {
        kernel_before[id] = is_kernel(&node.op) || node.inputs.iter().any(|&i| kernel_before[i]);
        in_classifier[id] = starts_classifier(&node.op, shapes[id]) || node.inputs.iter().any(|&i| in_classifier[i]);
    }
    let consumers = fused.consumers();
    let mut cuts = Vec::new();
    let mut reach = 0usize; // the furthest consumer of any op before `k`
    let mut layers = 0usize;
    for (k, (op, readers)) in fused.ops.iter().zip(&consumers).enumerate() {
        if is_kernel(&graph.nodes[op.anchor].op) {
            layers += 1;
        }
        let dominates = reach <= k;
        reach = reach.max(readers.iter().copied().max().unwrap_or(k));
        if !dominates || k == n - 1 {
            continue;
        }
        let node = cut_node_of(graph, &fused, k);
        if !kernel_before[node]
            || in_classifier[node]
            || matches!(graph.nodes[op.anchor].op, Op::DepthwiseConv2d(_) | Op::Input { .. })
        {
            continue;
        }
        cuts.push(Cut { node, name: graph.nodes[node].name.clone(), shape: shapes[node], block: cuts.len(), layers });
    }
    Ok(cuts)
}

/// Checks that `cut` is one of `graph`'s cut points (same node, name and shape), so a cut computed
/// on another graph is not applied by mistake.
pub fn check_cut(graph: &Graph, cut: &Cut) -> Result<()> {
    let cuts = cut_points(graph)?;
    if cuts.iter().any(|c| c.node == cut.node && c.name == cut.name && c.shape == cut.shape) {
        return Ok(());
    }
    let names: Vec<&str> = cuts.iter().map(|c| c.name.as_str()).collect();
    Err(IrError::Graph(format!(
        "'{}' is not a cut point of '{}' (its cut points: {})",
        cut.name,
        graph.name,
        if names.is_empty() { "none".to_string() } else { names.join(", ") }
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zoo;

    fn names(g: &Graph) -> Vec<String> {
        cut_points(g).unwrap().into_iter().map(|c| c.name).collect()
    }

    #[test]
    fn zoo_cut_counts() {
        let count = |n: &str| cut_points(&zoo::get(n).unwrap()).unwrap().len();
        assert_eq!(count("ds-cnn"), 5);
        assert_eq!(count("mobilenet-v1-025"), 14);
        // Stem + 3 residual blocks (the issue counted only the blocks; the stem output is a
        // tensor every path passes through, exactly like DS-CNN's conv1).
        assert_eq!(count("resnet-8"), 4);
        assert_eq!(count("branchy-net"), 5);
        assert_eq!(count("mnist-cnn"), 4); // conv, pool, conv, pool (before the flatten)
        assert_eq!(count("mnist-ds"), 3);
        assert_eq!(count("mnist-wide"), 3);
        assert_eq!(count("vgg-cifar"), 9);
    }

    #[test]
    fn cuts_sit_after_the_activation_and_blocks_are_numbered() {
        let g = zoo::ds_cnn().unwrap();
        let cuts = cut_points(&g).unwrap();
        for (i, c) in cuts.iter().enumerate() {
            assert_eq!(c.block, i);
            assert!(matches!(g.nodes[c.node].op, Op::Relu), "{} is a {}", c.name, g.nodes[c.node].op.kind());
            assert_eq!(c.shape, Shape::new(25, 5, 64));
        }
        // conv1, then dw + pw per block.
        assert_eq!(cuts.iter().map(|c| c.layers).collect::<Vec<_>>(), vec![1, 3, 5, 7, 9]);
        let r = zoo::resnet_8().unwrap();
        let rc = cut_points(&r).unwrap();
        // Every residual block's cut is the ReLU after its add.
        for c in &rc[1..] {
            assert!(matches!(r.nodes[r.nodes[c.node].inputs[0]].op, Op::Add), "{}", c.name);
        }
        assert_eq!(rc.iter().map(|c| c.shape.c).collect::<Vec<_>>(), vec![16, 16, 32, 64]);
        // mnist-cnn: the last cut is the pool before the flatten, not the flatten itself.
        let m = zoo::mnist_cnn().unwrap();
        let last = cut_points(&m).unwrap().pop().unwrap();
        assert!(matches!(m.nodes[last.node].op, Op::MaxPool2d(_)));
        assert_eq!(last.shape, Shape::new(7, 7, 64));
    }

    #[test]
    fn branches_get_no_cut() {
        // Stem, the residual add (+ReLU), the concat, the max pool after it, the last conv; no node
        // of either branch of the add or of the concat.
        let g = zoo::branchy_net().unwrap();
        assert_eq!(names(&g), ["relu_3", "relu_12", "concat_19", "max_pool2d_20", "relu_23"]);
        let add = g.nodes.iter().position(|n| matches!(n.op, Op::Add)).unwrap();
        let cat = g.nodes.iter().position(|n| matches!(n.op, Op::Concat)).unwrap();
        for c in cut_points(&g).unwrap() {
            for joint in [add, cat] {
                assert!(!g.nodes[joint].inputs.contains(&c.node), "{} feeds a join", c.name);
            }
        }
    }

    #[test]
    fn check_cut_rejects_foreign_cuts() {
        let g = zoo::ds_cnn().unwrap();
        let c = cut_points(&g).unwrap()[2].clone();
        check_cut(&g, &c).unwrap();
        let other = zoo::resnet_8().unwrap();
        let e = check_cut(&other, &c).unwrap_err().to_string();
        assert!(e.contains("not a cut point of 'resnet-8'"), "{e}");
    }
}
