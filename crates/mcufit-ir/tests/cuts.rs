//! Cut points (`cut_points`) against a brute-force reading of their definition on random DAGs,
//! and every zoo model × cut × head kind truncated into a valid graph.

use std::collections::HashSet;

use mcufit_ir::{cut_points, truncate_with_head, zoo, Graph, GraphBuilder, HeadSpec, NodeId, Op, Padding, Pool2d};
use proptest::prelude::*;

/// A random DAG from a list of (op kind, input choice, second input / width choice). Spatial
/// ops keep or halve the size; joins only pair compatible tensors; every tensor left unread is
/// pooled into the classifier at the end, so the graph always validates.
fn random_graph(steps: &[(u8, u32, u32)], one_tail_flatten: bool) -> Graph {
    let mut b = GraphBuilder::new("random", mcufit_ir::Shape::new(6, 6, 3));
    let mut shapes = vec![mcufit_ir::Shape::new(6, 6, 3)];
    let mut ids: Vec<NodeId> = vec![0];
    let mut read = vec![false];
    for &(kind, a, c) in steps {
        let len = ids.len();
        // Mostly recent tensors (chains), sometimes anything (skips, branches).
        let pick = |r: u32| match r % 6 {
            0 => (r / 6) as usize % len,
            1 => len.saturating_sub(2),
            _ => len - 1,
        };
        let x = pick(a);
        let sx = shapes[x];
        let width = if c % 2 == 0 { 4 } else { 6 };
        let (op, inputs) = match kind % 11 {
            0 => (conv(width, 3, 1), vec![x]),
            1 => (conv(width, 1, 1), vec![x]),
            2 => (dw(3, 1), vec![x]),
            3 => (Op::BatchNorm(Default::default()), vec![x]),
            4 => (Op::Relu, vec![x]),
            5 | 6 => {
                // Prefer joining a tensor nothing reads yet (closes a branch).
                let mut others: Vec<usize> = (0..len).filter(|&y| y != x && shapes[y] == sx && !read[y]).collect();
                if others.is_empty() {
                    others = (0..len).filter(|&y| y != x && shapes[y] == sx).collect();
                }
                if others.is_empty() {
                    (Op::Relu6, vec![x])
                } else {
                    (Op::Add, vec![x, others[c as usize % others.len()]])
                }
            }
            7 => {
                let fits = |y: usize| y != x && shapes[y].h == sx.h && shapes[y].w == sx.w;
                let mut others: Vec<usize> = (0..len).filter(|&y| fits(y) && !read[y]).collect();
                if others.is_empty() {
                    others = (0..len).filter(|&y| fits(y)).collect();
                }
                if others.is_empty() {
                    (conv(width, 3, 1), vec![x])
                } else {
                    (Op::Concat, vec![x, others[c as usize % others.len()]])
                }
            }
            8 => (Op::MaxPool2d(Pool2d { pool: [3, 3], stride: Some([1, 1]), padding: Padding::Same }), vec![x]),
            9 if sx.h >= 2 && sx.w >= 2 => (conv(width, 3, 2), vec![x]),
            // Can pool down to 1x1: a classifier-like op in the middle of the graph.
            10 if sx.h >= 2 && sx.w >= 2 => {
                (Op::AvgPool2d(Pool2d { pool: [2, 2], stride: None, padding: Padding::Valid }), vec![x])
            }
            _ => (dw(3, 1), vec![x]),
        };
        let ins: Vec<mcufit_ir::Shape> = inputs.iter().map(|&i| shapes[i]).collect();
        let s = op.output_shape("gen", &ins).expect("generator builds valid ops");
        let id = b.add(op, &inputs.iter().map(|&i| ids[i]).collect::<Vec<_>>());
        for &i in &inputs {
            read[i] = true;
        }
        ids.push(id);
        read.push(false);
        shapes.push(s);
    }
    // Every unread tensor goes into the classifier.
    let dangling: Vec<usize> = (0..ids.len()).filter(|&i| !read[i]).collect();
    let tail = if dangling.len() == 1 && one_tail_flatten {
        b.add(Op::Flatten, &[ids[dangling[0]]])
    } else {
        let pooled: Vec<NodeId> = dangling.iter().map(|&d| b.add(Op::GlobalAvgPool, &[ids[d]])).collect();
        if pooled.len() == 1 {
            pooled[0]
        } else {
            b.add(Op::Concat, &pooled)
        }
    };
    let d = b.dense(tail, 3);
    b.add(Op::Softmax, &[d]);
    b.build().expect("random graph validates")
}

fn conv(filters: usize, k: usize, s: usize) -> Op {
    Op::Conv2d(mcufit_ir::Conv2d {
        filters,
        kernel: [k, k],
        stride: [s, s],
        padding: Padding::Same,
        groups: 1,
        bias: true,
    })
}

fn dw(k: usize, s: usize) -> Op {
    Op::DepthwiseConv2d(mcufit_ir::DepthwiseConv2d {
        kernel: [k, k],
        stride: [s, s],
        padding: Padding::Same,
        bias: true,
    })
}

/// Whether `to` is reachable from `from` without visiting `avoid`.
fn reachable_avoiding(g: &Graph, from: NodeId, to: NodeId, avoid: NodeId) -> bool {
    let consumers = g.consumers();
    let mut seen = vec![false; g.nodes.len()];
    let mut stack = vec![from];
    while let Some(v) = stack.pop() {
        if v == avoid || seen[v] {
            continue;
        }
        if v == to {
            return true;
        }
        seen[v] = true;
        stack.extend(consumers[v].iter().copied());
    }
    false
}

fn ancestors(g: &Graph, v: NodeId) -> HashSet<NodeId> {
    let mut out = HashSet::new();
    let mut stack = vec![v];
    while let Some(x) = stack.pop() {
        if out.insert(x) {
            stack.extend(g.nodes[x].inputs.iter().copied());
        }
    }
    out
}

/// The definition, read literally: (node, kernels in the trunk) of every cut.
fn brute_force_cuts(g: &Graph) -> Vec<(NodeId, usize)> {
    let shapes = g.shapes().unwrap();
    let fused = g.fused();
    let (input, output) = (g.input(), g.output());
    let mut out = Vec::new();
    for op in &fused.ops {
        // The op's output, minus a trailing flatten / reshape.
        let chain: Vec<NodeId> = std::iter::once(op.anchor).chain(op.absorbed.iter().copied()).collect();
        let end = chain
            .iter()
            .position(|&n| matches!(g.nodes[n].op, Op::Flatten | Op::Reshape { .. }))
            .unwrap_or(chain.len());
        let v = chain[end - 1];
        if v == input || v == output {
            continue;
        }
        // On every input -> output path: removing it disconnects the output.
        if reachable_avoiding(g, input, output, v) {
            continue;
        }
        let anc = ancestors(g, v);
        let kernels = anc
            .iter()
            .filter(|&&a| matches!(g.nodes[a].op, Op::Conv2d(_) | Op::DepthwiseConv2d(_) | Op::Dense(_)))
            .count();
        if kernels == 0 {
            continue;
        }
        let classifier = anc.iter().any(|&a| match &g.nodes[a].op {
            Op::Dense(_) | Op::GlobalAvgPool | Op::Softmax | Op::Flatten => true,
            Op::Reshape { shape } => shape.h == 1 && shape.w == 1,
            Op::MaxPool2d(_) | Op::AvgPool2d(_) => shapes[a].h == 1 && shapes[a].w == 1,
            _ => false,
        });
        if classifier || matches!(g.nodes[op.anchor].op, Op::DepthwiseConv2d(_)) {
            continue;
        }
        out.push((v, kernels));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn cut_points_match_the_brute_force_definition(
        steps in proptest::collection::vec((0u8..11, any::<u32>(), any::<u32>()), 1..18),
        flatten in any::<bool>(),
    ) {
        let g = random_graph(&steps, flatten);
        let cuts = cut_points(&g).unwrap();
        let fast: Vec<(NodeId, usize)> = cuts.iter().map(|c| (c.node, c.layers)).collect();
        prop_assert_eq!(&fast, &brute_force_cuts(&g), "graph:\n{}", g.to_json());
        let shapes = g.shapes().unwrap();
        for (i, c) in cuts.iter().enumerate() {
            prop_assert_eq!(c.block, i);
            prop_assert_eq!(&c.name, &g.nodes[c.node].name);
            prop_assert_eq!(c.shape, shapes[c.node]);
            // Every head kind makes a valid graph with the right classes at every cut.
            for spec in ["gap", "conv:5", "ds:4,3"] {
                let head: HeadSpec = spec.parse().unwrap();
                let t = truncate_with_head(&g, c, &head, 7).unwrap();
                prop_assert_eq!(t.num_outputs(), 7);
                prop_assert_eq!(&t.nodes[..=c.node], &g.nodes[..=c.node]);
            }
        }
    }
}

#[test]
fn zoo_cuts_match_the_brute_force_definition() {
    for name in zoo::names() {
        let g = zoo::get(name).unwrap();
        let fast: Vec<(NodeId, usize)> = cut_points(&g).unwrap().iter().map(|c| (c.node, c.layers)).collect();
        assert_eq!(fast, brute_force_cuts(&g), "{name}");
    }
}

#[test]
fn every_zoo_cut_takes_every_head_kind() {
    let heads: Vec<HeadSpec> = ["ds:32,16", "gap", "conv:24", "ds:8"].iter().map(|s| s.parse().unwrap()).collect();
    let mut total = 0;
    for name in zoo::names() {
        let g = zoo::get(name).unwrap();
        let classes = g.num_outputs() + 3;
        for cut in cut_points(&g).unwrap() {
            for head in &heads {
                let t = truncate_with_head(&g, &cut, head, classes).unwrap();
                let shapes = t.shapes().unwrap();
                assert_eq!(t.num_outputs(), classes, "{}", t.name);
                assert!(matches!(t.nodes[t.output()].op, Op::Softmax), "{}", t.name);
                // The trunk is the original prefix; the head reads the cut tensor.
                assert_eq!(&t.nodes[..=cut.node], &g.nodes[..=cut.node], "{}", t.name);
                assert_eq!(t.nodes[cut.node + 1].inputs, vec![cut.node], "{}", t.name);
                // Spatial size is kept until the pooling; ds / conv heads end at their last width.
                let gap = t.find("head_gap").unwrap();
                let pooled = shapes[t.nodes[gap].inputs[0]];
                assert_eq!((pooled.h, pooled.w), (cut.shape.h, cut.shape.w), "{}", t.name);
                let c = match head {
                    HeadSpec::Ds(w) => *w.last().unwrap(),
                    HeadSpec::Conv(c) => *c,
                    HeadSpec::Gap => cut.shape.c,
                };
                assert_eq!(pooled.c, c, "{}", t.name);
                // The head alone: same names and shapes after its input.
                let h = mcufit_ir::head_graph(&g, &cut, head, classes).unwrap();
                let hs = h.shapes().unwrap();
                assert_eq!(h.nodes.len() - 1, t.nodes.len() - cut.node - 1);
                for (i, n) in h.nodes.iter().enumerate().skip(1) {
                    let j = cut.node + i;
                    assert_eq!(n.name, t.nodes[j].name);
                    assert_eq!(hs[i], shapes[j]);
                }
                total += 1;
            }
        }
    }
    // ds-cnn, mobilenet-v1-025, mobilenet-v1-025-cifar, resnet-8, mnist-cnn, mnist-wide, mnist-ds, vgg-cifar, branchy-net.
    assert_eq!(total, 4 * (5 + 14 + 14 + 4 + 4 + 3 + 3 + 9 + 5));
}
