#![allow(dead_code)]
use mcufit_ir::{Conv2d, Graph, GraphBuilder, Op, Padding, Pool2d, Shape};
use mcufit_quant::rng::SplitMix64;

/// A small net that uses every op mcufit exports: grouped conv, depthwise, BN (folded and
/// standalone), ReLU/ReLU6, max/avg pool with SAME padding, residual add, concat, reshape,
/// global average pool, dense, softmax.
pub fn all_ops_net() -> Graph {
    let mut b = GraphBuilder::new("all-ops", Shape::new(12, 10, 3));
    let stem = b.conv_bn_relu(0, 8, 3, 1, Padding::Same);
    let g = b.add(
        Op::Conv2d(Conv2d {
            filters: 8,
            kernel: [3, 3],
            stride: [2, 2],
            padding: Padding::Same,
            groups: 2,
            bias: true,
        }),
        &[stem],
    );
    let g = b.add(Op::Relu6, &[g]); // 6x5x8
    let d = b.dw(g, 3, 1, Padding::Same);
    let d = b.bn(d);
    let d = b.relu(d);
    let p = b.conv(d, 8, 1, 1, Padding::Same);
    let s = b.add(Op::Add, &[g, p]);
    let s = b.relu(s);
    let m = b.add(Op::MaxPool2d(Pool2d { pool: [3, 3], stride: Some([1, 1]), padding: Padding::Same }), &[s]);
    let a = b.add(Op::AvgPool2d(Pool2d { pool: [2, 2], stride: Some([1, 1]), padding: Padding::Same }), &[s]);
    let c = b.add(Op::Concat, &[m, a]); // 6x5x16
    let bn = b.bn(c); // standalone: concat cannot absorb a BN
    let r = b.add(Op::Reshape { shape: Shape::new(5, 6, 16) }, &[bn]);
    let x = b.conv_bn_relu(r, 12, 3, 2, Padding::Valid); // 2x2x12
    let gp = b.add(Op::GlobalAvgPool, &[x]);
    let h = b.dense(gp, 16);
    let h = b.relu(h);
    let f = b.dense(h, 5);
    b.add(Op::Softmax, &[f]);
    b.build().unwrap()
}

/// Random image-like float inputs in the `(p - 128) / 128` range.
pub fn image_inputs(g: &Graph, n: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut r = SplitMix64::new(seed);
    let len = g.input_shape().elements();
    (0..n).map(|_| (0..len).map(|_| (r.below(256) as f32 - 128.0) / 128.0).collect()).collect()
}

/// Random layered nets from a seed: a chain of conv/dw/pool blocks with optional residual adds
/// and concats, ending in GAP or flatten + dense (+ softmax).
pub fn random_net(seed: u64) -> Graph {
    let mut r = SplitMix64::new(seed);
    let h = 6 + r.below(10) as usize;
    let w = 6 + r.below(10) as usize;
    let c = 1 + r.below(4) as usize;
    let mut n =
        Net { b: GraphBuilder::new(format!("rand-{seed}"), Shape::new(h, w, c)), shapes: vec![Shape::new(h, w, c)] };
    let mut x = 0;
    let blocks = 2 + r.below(3);
    for _ in 0..blocks {
        let s = n.shapes[x];
        let pad = if r.below(2) == 0 { Padding::Same } else { Padding::Valid };
        match r.below(5) {
            0 | 1 => {
                let f = 4 + r.below(12) as usize;
                let k = if s.h >= 3 && s.w >= 3 { 1 + 2 * r.below(2) as usize } else { 1 };
                let st = if s.h >= 4 && s.w >= 4 { 1 + r.below(2) as usize } else { 1 };
                x = n.add(
                    Op::Conv2d(Conv2d {
                        filters: f,
                        kernel: [k, k],
                        stride: [st, st],
                        padding: pad,
                        groups: 1,
                        bias: r.below(4) > 0,
                    }),
                    &[x],
                );
                if r.below(2) == 0 {
                    x = n.add(Op::BatchNorm(Default::default()), &[x]);
                }
                x = n.add(if r.below(3) == 0 { Op::Relu6 } else { Op::Relu }, &[x]);
            }
            2 => {
                let k = if s.h >= 3 && s.w >= 3 { 3 } else { 1 };
                let y = n.add(
                    Op::DepthwiseConv2d(mcufit_ir::DepthwiseConv2d {
                        kernel: [k, k],
                        stride: [1, 1],
                        padding: Padding::Same,
                        bias: true,
                    }),
                    &[x],
                );
                let y = n.add(Op::BatchNorm(Default::default()), &[y]);
                let y = n.add(Op::Relu, &[y]);
                let y = n.add(
                    Op::Conv2d(Conv2d {
                        filters: s.c,
                        kernel: [1, 1],
                        stride: [1, 1],
                        padding: Padding::Same,
                        groups: 1,
                        bias: true,
                    }),
                    &[y],
                );
                x = n.add(Op::Add, &[x, y]);
                if r.below(2) == 0 {
                    x = n.add(Op::Relu, &[x]);
                }
            }
            3 => {
                let y = n.add(
                    Op::Conv2d(Conv2d {
                        filters: 4,
                        kernel: [1, 1],
                        stride: [1, 1],
                        padding: Padding::Same,
                        groups: 1,
                        bias: true,
                    }),
                    &[x],
                );
                let y = n.add(Op::Relu, &[y]);
                let z = n.add(
                    Op::Conv2d(Conv2d {
                        filters: 3,
                        kernel: [1, 1],
                        stride: [1, 1],
                        padding: Padding::Same,
                        groups: 1,
                        bias: true,
                    }),
                    &[x],
                );
                x = n.add(Op::Concat, &[y, z]);
            }
            _ => {
                if s.h >= 2 && s.w >= 2 {
                    let p = Pool2d { pool: [2, 2], stride: None, padding: pad };
                    x = n.add(if r.below(2) == 0 { Op::MaxPool2d(p) } else { Op::AvgPool2d(p) }, &[x]);
                }
            }
        }
    }
    let x = n.add(if r.below(2) == 0 { Op::GlobalAvgPool } else { Op::Flatten }, &[x]);
    let x = n.add(Op::Dense(mcufit_ir::Dense { units: 3 + r.below(6) as usize, bias: true }), &[x]);
    if r.below(3) > 0 {
        n.add(Op::Softmax, &[x]);
    }
    n.b.build().unwrap()
}

struct Net {
    b: GraphBuilder,
    shapes: Vec<Shape>,
}
impl Net {
    fn add(&mut self, op: Op, inputs: &[usize]) -> usize {
        let ins: Vec<Shape> = inputs.iter().map(|&i| self.shapes[i]).collect();
        self.shapes.push(op.output_shape("x", &ins).unwrap());
        self.b.add(op, inputs)
    }
}
