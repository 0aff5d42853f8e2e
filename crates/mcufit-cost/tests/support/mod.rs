//! Graphs shared by the cost tests and the peak-memory benchmark (`benches/peak_memory.rs`).

use mcufit_ir::{Graph, GraphBuilder, Op, Padding, Shape};

/// A stem conv, `n` parallel 1x1 convs of various widths, their concat and a classifier: `2^n`
/// downsets, past the exact search's limit from about 16 branches on.
pub fn wide(n: usize) -> Graph {
    let mut b = GraphBuilder::new(format!("wide-{n}"), Shape::new(16, 16, 3));
    let stem = b.conv(0, 16, 3, 1, Padding::Same);
    let branches: Vec<usize> = (0..n).map(|i| b.conv(stem, 4 + (i * 7) % 29, 1, 1, Padding::Same)).collect();
    let c = b.add(Op::Concat, &branches);
    let g = b.add(Op::GlobalAvgPool, &[c]);
    b.dense(g, 10);
    b.build().unwrap()
}
