//! Auxiliary classifier heads for depth pruning: a network truncated at a [`Cut`] plus a small
//! head is an ordinary [`Graph`], so the cost model, training, width pruning, int8 and export
//! treat it like any other model.
//!
//! Head forms ([`HeadSpec`], written as on the command line):
//! - `ds:W1,W2,...` (default `ds:32,16`): per width `W`, a depthwise-separable block
//!   `DW3x3 (stride 1, same) → BN → ReLU → PW W → BN → ReLU`, then global average pool → dense;
//! - `gap`: global average pool → dense;
//! - `conv:C`: pointwise conv `C` → BN → ReLU → global average pool → dense;
//!
//! each followed by a softmax, as the zoo models end.

use std::fmt;
use std::str::FromStr;

use crate::cuts::{check_cut, Cut};
use crate::error::{IrError, Result};
use crate::graph::{Graph, Node, NodeId};
use crate::op::{BatchNorm, Conv2d, Dense, DepthwiseConv2d, Op, Padding};

/// The accepted head forms, for error messages and help text.
pub const HEAD_FORMS: &str = "ds:W1,W2,... (depthwise-separable blocks of those widths, then pooling + dense; \
     default ds:32,16), gap (global average pool + dense), conv:C (1x1 conv of C channels + BN + ReLU, \
     then pooling + dense)";

/// Largest channel count a head layer may ask for (a typo guard, not a hardware limit).
const MAX_WIDTH: usize = 65_536;

/// An auxiliary classifier head (see the module docs). Parse with `"ds:32,16".parse()`; its
/// `Display` gives the same text back.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum HeadSpec {
    /// Depthwise-separable blocks with these pointwise widths (at least one), then GAP + dense.
    Ds(Vec<usize>),
    /// Global average pool + dense.
    Gap,
    /// Pointwise conv of this many channels + BN + ReLU, then GAP + dense.
    Conv(usize),
}

impl Default for HeadSpec {
    /// `ds:32,16`.
    fn default() -> Self {
        HeadSpec::Ds(vec![32, 16])
    }
}

impl fmt::Display for HeadSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadSpec::Ds(w) => {
                write!(f, "ds:{}", w.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(","))
            }
            HeadSpec::Gap => write!(f, "gap"),
            HeadSpec::Conv(c) => write!(f, "conv:{c}"),
        }
    }
}

/// A head spec that does not parse: names the spec, what is wrong and the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadSpecError {
    pub spec: String,
    pub reason: String,
}

impl fmt::Display for HeadSpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "head '{}': {}; accepted forms: {HEAD_FORMS}", self.spec, self.reason)
    }
}

impl std::error::Error for HeadSpecError {}

impl From<HeadSpecError> for IrError {
    fn from(e: HeadSpecError) -> Self {
        IrError::Graph(e.to_string())
    }
}

fn width(spec: &str, text: &str) -> std::result::Result<usize, HeadSpecError> {
    let err = |reason: String| HeadSpecError { spec: spec.to_string(), reason };
    let t = text.trim();
    let v: usize = t.parse().map_err(|_| err(format!("'{t}' is not a channel count")))?;
    if v == 0 || v > MAX_WIDTH {
        return Err(err(format!("channel count {v} must be between 1 and {MAX_WIDTH}")));
    }
    Ok(v)
}

impl FromStr for HeadSpec {
    type Err = HeadSpecError;

    fn from_str(spec: &str) -> std::result::Result<Self, HeadSpecError> {
        let s = spec.trim();
        let err = |reason: &str| HeadSpecError { spec: spec.to_string(), reason: reason.to_string() };
        let lower = s.to_ascii_lowercase();
        if lower == "gap" {
            return Ok(HeadSpec::Gap);
        }
        match lower.split_once(':') {
            Some(("ds", rest)) => {
                if rest.trim().is_empty() {
                    return Err(err("ds needs at least one width, e.g. ds:32,16"));
                }
                rest.split(',').map(|w| width(spec, w)).collect::<std::result::Result<Vec<_>, _>>().map(HeadSpec::Ds)
            }
            Some(("conv", rest)) => {
                if rest.contains(',') {
                    return Err(err("conv takes one channel count, e.g. conv:32"));
                }
                width(spec, rest).map(HeadSpec::Conv)
            }
            Some(("gap", _)) => Err(err("gap takes no argument")),
            Some((kind, _)) => Err(err(&format!("unknown head kind '{kind}'"))),
            None if lower == "ds" || lower == "conv" => Err(err(&format!("{lower} needs its channel count(s)"))),
            None => Err(err("unknown head")),
        }
    }
}

impl From<HeadSpec> for String {
    fn from(h: HeadSpec) -> String {
        h.to_string()
    }
}

impl TryFrom<String> for HeadSpec {
    type Error = HeadSpecError;
    fn try_from(s: String) -> std::result::Result<Self, HeadSpecError> {
        s.parse()
    }
}

/// A name prefix for the head's nodes that no trunk node uses: `head_`, else `head2_`, ...
fn head_prefix(trunk: &[Node]) -> String {
    (1..)
        .map(|i| if i == 1 { "head_".to_string() } else { format!("head{i}_") })
        .find(|p| !trunk.iter().any(|n| n.name.starts_with(p.as_str())))
        .expect("some prefix is free")
}

/// Appends the head's nodes after `from` (the cut tensor's node) to `nodes`.
fn append_head(nodes: &mut Vec<Node>, from: NodeId, head: &HeadSpec, num_classes: usize, prefix: &str) {
    let mut x = from;
    let push = |nodes: &mut Vec<Node>, name: String, op: Op, input: NodeId| -> NodeId {
        nodes.push(Node { name: format!("{prefix}{name}"), op, inputs: vec![input] });
        nodes.len() - 1
    };
    let pw = |c: usize| {
        Op::Conv2d(Conv2d { filters: c, kernel: [1, 1], stride: [1, 1], padding: Padding::Same, groups: 1, bias: true })
    };
    let bn_relu = |nodes: &mut Vec<Node>, name: &str, x: NodeId| -> NodeId {
        let b = push(nodes, format!("{name}_bn"), Op::BatchNorm(BatchNorm::default()), x);
        push(nodes, format!("{name}_relu"), Op::Relu, b)
    };
    match head {
        HeadSpec::Ds(widths) => {
            for (i, &w) in widths.iter().enumerate() {
                let k = i + 1;
                let dw = Op::DepthwiseConv2d(DepthwiseConv2d {
                    kernel: [3, 3],
                    stride: [1, 1],
                    padding: Padding::Same,
                    bias: true,
                });
                let d = push(nodes, format!("dw{k}"), dw, x);
                let d = bn_relu(nodes, &format!("dw{k}"), d);
                let p = push(nodes, format!("pw{k}"), pw(w), d);
                x = bn_relu(nodes, &format!("pw{k}"), p);
            }
        }
        HeadSpec::Gap => {}
        HeadSpec::Conv(c) => {
            let p = push(nodes, "pw".into(), pw(*c), x);
            x = bn_relu(nodes, "pw", p);
        }
    }
    let g = push(nodes, "gap".into(), Op::GlobalAvgPool, x);
    let d = push(nodes, "dense".into(), Op::Dense(Dense { units: num_classes, bias: true }), g);
    push(nodes, "softmax".into(), Op::Softmax, d);
}

fn check_classes(num_classes: usize) -> Result<()> {
    if num_classes == 0 {
        return Err(IrError::Graph("a head needs at least one class".into()));
    }
    Ok(())
}

/// `graph` cut at `cut` with `head` on top: the trunk is nodes `0..=cut.node` unchanged (same
/// ids and names, so trained trunk weights load by name), followed by the head's fresh nodes
/// (names prefixed `head_`, or `head2_`... if the trunk already uses that prefix) ending in a
/// dense layer of `num_classes` units and a softmax. Named `"{graph}@{cut}+{head}"`.
/// Errors when `cut` is not one of `graph`'s cut points or `num_classes` is 0.
pub fn truncate_with_head(graph: &Graph, cut: &Cut, head: &HeadSpec, num_classes: usize) -> Result<Graph> {
    check_cut(graph, cut)?;
    check_classes(num_classes)?;
    let mut nodes = graph.nodes[..=cut.node].to_vec();
    let prefix = head_prefix(&nodes);
    append_head(&mut nodes, cut.node, head, num_classes, &prefix);
    Graph::new(format!("{}@{}+{head}", graph.name, cut.name), nodes)
}

/// The head of [`truncate_with_head`] alone, as a graph whose input (named `input`, of the cut
/// tensor's shape) stands for the cut tensor: the same head node names as in the truncated
/// graph, so weights trained on it load into that graph by name. This is what depth pruning
/// trains while the trunk stays frozen. Named `"{graph}@{cut}+{head}:head"`.
pub fn head_graph(graph: &Graph, cut: &Cut, head: &HeadSpec, num_classes: usize) -> Result<Graph> {
    check_cut(graph, cut)?;
    check_classes(num_classes)?;
    let prefix = head_prefix(&graph.nodes[..=cut.node]);
    let mut nodes = vec![Node { name: "input".into(), op: Op::Input { shape: cut.shape }, inputs: vec![] }];
    append_head(&mut nodes, 0, head, num_classes, &prefix);
    Graph::new(format!("{}@{}+{head}:head", graph.name, cut.name), nodes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{cut_points, zoo, Shape};

    #[test]
    fn specs_parse_and_print_back() {
        for (text, spec) in [
            ("ds:32,16", HeadSpec::Ds(vec![32, 16])),
            ("ds:8", HeadSpec::Ds(vec![8])),
            ("gap", HeadSpec::Gap),
            ("conv:24", HeadSpec::Conv(24)),
        ] {
            let p: HeadSpec = text.parse().unwrap();
            assert_eq!(p, spec);
            assert_eq!(p.to_string(), text);
        }
        assert_eq!(" DS:32, 16 ".parse::<HeadSpec>().unwrap(), HeadSpec::default());
        assert_eq!(HeadSpec::default().to_string(), "ds:32,16");
        let json = serde_json::to_string(&HeadSpec::Conv(8)).unwrap();
        assert_eq!(json, "\"conv:8\"");
        assert_eq!(serde_json::from_str::<HeadSpec>(&json).unwrap(), HeadSpec::Conv(8));
    }

    #[test]
    fn bad_specs_name_the_spec_and_the_forms() {
        for bad in ["", "ds", "ds:", "ds:32,,16", "ds:0", "ds:x", "conv:", "conv:8,8", "gap:3", "mlp:32", "dense"] {
            let e = bad.parse::<HeadSpec>().unwrap_err().to_string();
            assert!(e.contains(&format!("head '{bad}'")), "{e}");
            assert!(e.contains("accepted forms: ds:W1,W2") && e.contains("gap") && e.contains("conv:C"), "{e}");
        }
        assert!("mlp:32".parse::<HeadSpec>().unwrap_err().reason.contains("unknown head kind 'mlp'"));
    }

    #[test]
    fn ds_head_layers() {
        let g = zoo::ds_cnn().unwrap();
        let cut = &cut_points(&g).unwrap()[1];
        let t = truncate_with_head(&g, cut, &HeadSpec::default(), 12).unwrap();
        let head: Vec<(&str, &str)> = t.nodes[cut.node + 1..].iter().map(|n| (n.name.as_str(), n.op.kind())).collect();
        assert_eq!(
            head,
            [
                ("head_dw1", "depthwise_conv2d"),
                ("head_dw1_bn", "batch_norm"),
                ("head_dw1_relu", "relu"),
                ("head_pw1", "conv2d_1x1"),
                ("head_pw1_bn", "batch_norm"),
                ("head_pw1_relu", "relu"),
                ("head_dw2", "depthwise_conv2d"),
                ("head_dw2_bn", "batch_norm"),
                ("head_dw2_relu", "relu"),
                ("head_pw2", "conv2d_1x1"),
                ("head_pw2_bn", "batch_norm"),
                ("head_pw2_relu", "relu"),
                ("head_gap", "global_avg_pool"),
                ("head_dense", "dense"),
                ("head_softmax", "softmax"),
            ]
        );
        let s = t.shapes().unwrap();
        assert_eq!(s[t.find("head_pw1").unwrap()], Shape::new(25, 5, 32));
        assert_eq!(s[t.find("head_pw2").unwrap()], Shape::new(25, 5, 16));
        assert_eq!(t.name, "ds-cnn@relu_9+ds:32,16");
        // The head alone has the same head names, on an input of the cut's shape.
        let h = head_graph(&g, cut, &HeadSpec::default(), 12).unwrap();
        assert_eq!(h.input_shape(), cut.shape);
        let names: Vec<&str> = h.nodes[1..].iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, head.iter().map(|x| x.0).collect::<Vec<_>>());
    }

    #[test]
    fn truncating_twice_picks_a_free_prefix() {
        let g = zoo::mnist_ds().unwrap();
        let c = cut_points(&g).unwrap().pop().unwrap();
        let t = truncate_with_head(&g, &c, &HeadSpec::Conv(8), 10).unwrap();
        let c2 = cut_points(&t).unwrap().pop().unwrap();
        assert_eq!(c2.name, "head_pw_relu");
        let t2 = truncate_with_head(&t, &c2, &HeadSpec::Gap, 10).unwrap();
        assert_eq!(t2.nodes.last().unwrap().name, "head2_softmax");
    }

    #[test]
    fn foreign_cuts_and_zero_classes_are_errors() {
        let g = zoo::ds_cnn().unwrap();
        let c = cut_points(&g).unwrap()[0].clone();
        assert!(truncate_with_head(&g, &c, &HeadSpec::Gap, 0).unwrap_err().to_string().contains("at least one class"));
        let r = zoo::resnet_8().unwrap();
        assert!(truncate_with_head(&r, &c, &HeadSpec::Gap, 10).is_err());
    }
}
