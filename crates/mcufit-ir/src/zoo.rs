//! Built-in models (`zoo:NAME`). The MLPerf Tiny reference models follow the reference Keras code
//! (github.com/mlcommons/tiny, `benchmark/training/*/keras_model.py`); the others are mcufit's own.

use crate::error::{IrError, Result};
use crate::graph::{Graph, GraphBuilder, NodeId};
use crate::op::{Op, Padding, Pool2d, Shape};
use Padding::{Same, Valid};

/// A zoo entry: name, one-line description, constructor.
pub struct ZooEntry {
    pub name: &'static str,
    pub description: &'static str,
    pub build: fn() -> Result<Graph>,
}

pub const ENTRIES: &[ZooEntry] = &[
    ZooEntry {
        name: "ds-cnn",
        description: "MLPerf Tiny keyword spotting DS-CNN, 49x10x1 MFCC input, 12 classes",
        build: ds_cnn,
    },
    ZooEntry {
        name: "mobilenet-v1-025",
        description: "MLPerf Tiny visual wake words MobileNetV1 (width 0.25), 96x96x3, 2 classes",
        build: mobilenet_v1_025,
    },
    ZooEntry {
        name: "mobilenet-v1-025-cifar",
        description: "MobileNetV1 (width 0.25) for CIFAR-10: 32x32x3, 10 classes (the VWW layers, smaller input)",
        build: mobilenet_v1_025_cifar,
    },
    ZooEntry {
        name: "resnet-8",
        description: "MLPerf Tiny image classification ResNet-8 (16/32/64 filters), 32x32x3, 10 classes",
        build: resnet_8,
    },
    ZooEntry {
        name: "mnist-cnn",
        description: "small CNN for 28x28x1 digits, 10 classes (conv32-pool-conv64-pool-dense128)",
        build: mnist_cnn,
    },
    ZooEntry {
        name: "mnist-wide",
        description: "over-wide all-conv net for 28x28x1, a base meant to be pruned to tiny budgets",
        build: mnist_wide,
    },
    ZooEntry {
        name: "mnist-ds",
        description:
            "over-wide depthwise-separable net for 28x28x1 (5x5/2 stem, two dw+pw blocks), a base for tiny budgets",
        build: mnist_ds,
    },
    ZooEntry {
        name: "vgg-cifar",
        description: "wide VGG-style base for 32x32x3, 10 classes, meant to be pruned",
        build: vgg_cifar,
    },
    ZooEntry {
        name: "branchy-net",
        description: "28x28x1 net with parallel paths joined by add and by concat, 10 classes",
        build: branchy_net,
    },
];

pub fn names() -> Vec<&'static str> {
    ENTRIES.iter().map(|e| e.name).collect()
}

pub fn get(name: &str) -> Result<Graph> {
    match ENTRIES.iter().find(|e| e.name == name) {
        Some(e) => (e.build)(),
        None => Err(IrError::UnknownZoo { name: name.into(), available: names().join(", ") }),
    }
}

/// The model file (`docs/model-format.md`) of zoo model `name`, e.g. for a user to save, edit
/// and pass back as `MODEL.json`; [`Graph::from_json`] reads it back to the same graph.
pub fn to_json(name: &str) -> Result<String> {
    get(name).map(|g| g.to_json())
}

fn avg_pool(b: &mut GraphBuilder, x: NodeId, h: usize, w: usize) -> NodeId {
    b.add(Op::AvgPool2d(Pool2d { pool: [h, w], stride: None, padding: Valid }), &[x])
}
fn max_pool(b: &mut GraphBuilder, x: NodeId, k: usize) -> NodeId {
    b.add(Op::MaxPool2d(Pool2d { pool: [k, k], stride: None, padding: Valid }), &[x])
}

/// MLPerf Tiny KWS DS-CNN: conv 64 (10x4, stride 2), four depthwise-separable blocks of 64,
/// average pool over the 25x5 map, dense 12. Reference: 2.66 M MACs, ~22.6 K parameters (BN folded).
pub fn ds_cnn() -> Result<Graph> {
    let mut b = GraphBuilder::new("ds-cnn", Shape::new(49, 10, 1));
    let c = b.add(
        Op::Conv2d(crate::Conv2d {
            filters: 64,
            kernel: [10, 4],
            stride: [2, 2],
            padding: Same,
            groups: 1,
            bias: true,
        }),
        &[0],
    );
    let c = b.bn(c);
    let mut x = b.relu(c);
    for _ in 0..4 {
        let d = b.dw(x, 3, 1, Same);
        let d = b.bn(d);
        let d = b.relu(d);
        x = b.conv_bn_relu(d, 64, 1, 1, Same);
    }
    let p = avg_pool(&mut b, x, 25, 5);
    let f = b.add(Op::Flatten, &[p]);
    let d = b.dense(f, 12);
    b.add(Op::Softmax, &[d]);
    b.build()
}

/// MLPerf Tiny VWW MobileNetV1 with width multiplier 0.25 on 96x96x3. Reference: 7.49 M MACs,
/// ~210.9 K parameters. The reference pads stride-2 depthwise convs with ZeroPadding2D((0,1),(0,1))
/// then `valid`, which on even inputs is exactly TF `same`.
pub fn mobilenet_v1_025() -> Result<Graph> {
    mobilenet_v1_025_at("mobilenet-v1-025", Shape::new(96, 96, 3), 2)
}

/// MobileNetV1 (width 0.25) at 32x32x3 with 10 classes, the CIFAR-10 form the depth-pruning papers use.
pub fn mobilenet_v1_025_cifar() -> Result<Graph> {
    mobilenet_v1_025_at("mobilenet-v1-025-cifar", Shape::new(32, 32, 3), 10)
}

fn mobilenet_v1_025_at(name: &str, input: Shape, classes: usize) -> Result<Graph> {
    let mut b = GraphBuilder::new(name, input);
    let mut x = b.conv_bn_relu(0, 8, 3, 2, Same);
    let blocks: [(usize, usize); 13] = [
        (16, 1),
        (32, 2),
        (32, 1),
        (64, 2),
        (64, 1),
        (128, 2),
        (128, 1),
        (128, 1),
        (128, 1),
        (128, 1),
        (128, 1),
        (256, 2),
        (256, 1),
    ];
    for (filters, stride) in blocks {
        let d = b.dw(x, 3, stride, Same);
        let d = b.bn(d);
        let d = b.relu(d);
        x = b.conv_bn_relu(d, filters, 1, 1, Same);
    }
    let p = b.add(Op::GlobalAvgPool, &[x]);
    let d = b.dense(p, classes);
    b.add(Op::Softmax, &[d]);
    b.build()
}

/// MLPerf Tiny IC ResNet-8: conv 16, three residual stacks (16, 32, 64 filters; the 2nd and 3rd
/// downsample, with a 1x1 stride-2 conv on the shortcut, no BN there), 8x8 average pool, dense 10.
/// Reference: 12.5 M MACs, ~77.7 K parameters.
pub fn resnet_8() -> Result<Graph> {
    let mut b = GraphBuilder::new("resnet-8", Shape::new(32, 32, 3));
    let mut x = b.conv_bn_relu(0, 16, 3, 1, Same);
    for (filters, stride) in [(16, 1), (32, 2), (64, 2)] {
        let y = b.conv_bn_relu(x, filters, 3, stride, Same);
        let y = b.conv(y, filters, 3, 1, Same);
        let y = b.bn(y);
        let shortcut = if stride == 1 { x } else { b.conv(x, filters, 1, stride, Same) };
        let s = b.add(Op::Add, &[shortcut, y]);
        x = b.relu(s);
    }
    let p = avg_pool(&mut b, x, 8, 8);
    let f = b.add(Op::Flatten, &[p]);
    let d = b.dense(f, 10);
    b.add(Op::Softmax, &[d]);
    b.build()
}

/// A classic small MNIST CNN that reaches >99 % test accuracy in a few epochs.
pub fn mnist_cnn() -> Result<Graph> {
    let mut b = GraphBuilder::new("mnist-cnn", Shape::new(28, 28, 1));
    let x = b.conv_bn_relu(0, 32, 3, 1, Same);
    let x = max_pool(&mut b, x, 2);
    let x = b.conv_bn_relu(x, 64, 3, 1, Same);
    let x = max_pool(&mut b, x, 2);
    let f = b.add(Op::Flatten, &[x]);
    let h = b.dense(f, 128);
    let h = b.relu(h);
    let d = b.dense(h, 10);
    b.add(Op::Softmax, &[d]);
    b.build()
}

/// Deliberately wide MNIST net, the base from which `compress` reaches μNAS-class budgets (a few
/// KB of SRAM and flash): a 5x5 stride-2 valid stem (12x12, so the largest tensors are small once
/// pruned), a 3x3 stride-2 valid conv (5x5), then a depthwise-separable block and global pooling.
/// About 27 K parameters; pruned to roughly 10/24/40 channels it fits 2.5 KB RAM + 4.5 KB model.
pub fn mnist_wide() -> Result<Graph> {
    let mut b = GraphBuilder::new("mnist-wide", Shape::new(28, 28, 1));
    let x = b.conv_bn_relu(0, 32, 5, 2, Valid); // 12x12
    let x = b.conv_bn_relu(x, 64, 3, 2, Valid); // 5x5
    let d = b.dw(x, 3, 1, Same);
    let d = b.bn(d);
    let d = b.relu(d);
    let x = b.conv_bn_relu(d, 96, 1, 1, Same);
    let p = b.add(Op::GlobalAvgPool, &[x]);
    let d = b.dense(p, 10);
    b.add(Op::Softmax, &[d]);
    b.build()
}

/// Like [`mnist_wide`] but the 3x3 stride-2 conv becomes depthwise + pointwise and a second
/// dw+pw block follows: at a few KB of weights, separable layers buy more channels per byte.
pub fn mnist_ds() -> Result<Graph> {
    let mut b = GraphBuilder::new("mnist-ds", Shape::new(28, 28, 1));
    let mut x = b.conv_bn_relu(0, 32, 5, 2, Valid); // 12x12
    for (filters, stride, pad) in [(64, 2, Valid), (128, 1, Same)] {
        let d = b.dw(x, 3, stride, pad); // 5x5
        let d = b.bn(d);
        let d = b.relu(d);
        x = b.conv_bn_relu(d, filters, 1, 1, Same);
    }
    let p = b.add(Op::GlobalAvgPool, &[x]);
    let d = b.dense(p, 10);
    b.add(Op::Softmax, &[d]);
    b.build()
}

/// A wide VGG-style base for 32x32x3 (64-64-pool-128-128-pool-256-256-pool-GAP-dense).
pub fn vgg_cifar() -> Result<Graph> {
    let mut b = GraphBuilder::new("vgg-cifar", Shape::new(32, 32, 3));
    let mut x = 0;
    for filters in [64, 128, 256] {
        x = b.conv_bn_relu(x, filters, 3, 1, Same);
        x = b.conv_bn_relu(x, filters, 3, 1, Same);
        x = max_pool(&mut b, x, 2);
    }
    let p = b.add(Op::GlobalAvgPool, &[x]);
    let d = b.dense(p, 10);
    b.add(Op::Softmax, &[d]);
    b.build()
}

/// Parallel paths: a residual add of a 3x3 conv path and a depthwise-separable path, then a
/// concat of a 1x1 path and a 3x3 path. Exercises coupled groups and concat offsets.
pub fn branchy_net() -> Result<Graph> {
    let mut b = GraphBuilder::new("branchy-net", Shape::new(28, 28, 1));
    let stem = b.conv_bn_relu(0, 16, 3, 2, Same); // 14x14x16
    let a = b.conv(stem, 16, 3, 1, Same);
    let a = b.bn(a);
    let d = b.dw(stem, 3, 1, Same);
    let d = b.bn(d);
    let d = b.relu(d);
    let p = b.conv(d, 16, 1, 1, Same);
    let p = b.bn(p);
    let s = b.add(Op::Add, &[a, p]);
    let s = b.relu(s);
    let c1 = b.conv_bn_relu(s, 16, 1, 1, Same);
    let c3 = b.conv_bn_relu(s, 24, 3, 1, Same);
    let cat = b.add(Op::Concat, &[c1, c3]); // 14x14x40
    let m = max_pool(&mut b, cat, 2); // 7x7x40
    let x = b.conv_bn_relu(m, 32, 3, 1, Same);
    let g = b.add(Op::GlobalAvgPool, &[x]);
    let dn = b.dense(g, 10);
    b.add(Op::Softmax, &[dn]);
    b.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_files_load_back_to_the_same_graph() {
        for e in ENTRIES {
            let text = to_json(e.name).unwrap();
            assert!(text.starts_with("{") && text.contains("\"format\": \"mcufit-model\""), "{}", e.name);
            assert_eq!(Graph::from_json(&text).unwrap(), get(e.name).unwrap(), "{}", e.name);
        }
        assert!(matches!(to_json("nope"), Err(IrError::UnknownZoo { .. })));
    }
}
