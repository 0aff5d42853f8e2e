//! Benchmark of the exact peak-memory search: every zoo model and a generated 60-op branchy graph.
//! Run: `cargo bench -p mcufit-cost --bench peak_memory`

use std::time::Instant;

use mcufit_cost::{CostModel, CostOptions, MemoryOptions, SearchLimits};
use mcufit_ir::{zoo, Graph, GraphBuilder, Op, Padding, Shape};
use support::wide;

#[path = "../tests/support/mod.rs"]
mod support;

/// 60 kernels: an inception-like chain of blocks, each with 3 parallel branches of 1-3 convs
/// joined alternately by a residual add and by a concat (+1x1 conv to restore the width).
fn branchy_60() -> Graph {
    let mut b = GraphBuilder::new("branchy-60", Shape::new(32, 32, 3));
    let mut x = b.conv(0, 16, 3, 1, Padding::Same);
    let mut kernels = 1;
    let mut block = 0;
    while kernels < 58 {
        let mut outs = Vec::new();
        for branch in 0..3 {
            let mut y = x;
            for _ in 0..=branch {
                y = if branch == 1 { b.dw(y, 3, 1, Padding::Same) } else { b.conv(y, 16, 3, 1, Padding::Same) };
                kernels += 1;
            }
            outs.push(y);
        }
        x = if block % 2 == 0 {
            b.add(Op::Add, &outs)
        } else {
            let c = b.add(Op::Concat, &outs);
            kernels += 1;
            b.conv(c, 16, 1, 1, Padding::Same)
        };
        kernels += 1;
        block += 1;
    }
    let g = b.add(Op::GlobalAvgPool, &[x]);
    b.dense(g, 10);
    b.build().unwrap()
}

fn main() {
    let mut models: Vec<Graph> = zoo::names().iter().map(|n| zoo::get(n).unwrap()).collect();
    models.push(branchy_60());
    models.extend([12, 20, 24, 40].map(wide));
    println!(
        "{:<18} {:>5} {:>8} {:>12} {:>12} {:>14}  exact / gap to lower bound",
        "model", "ops", "states", "peak (B)", "in-place (B)", "time / solve"
    );
    for g in &models {
        let mut m = CostModel::new(g, CostOptions::default()).unwrap();
        let sizes = m.sizes();
        // Warm up, then time enough repetitions for at least ~0.3 s.
        let plan = m.memory_plan(&sizes);
        let mut reps = 1;
        let elapsed = loop {
            let t = Instant::now();
            for _ in 0..reps {
                std::hint::black_box(m.memory_plan(std::hint::black_box(&sizes)));
            }
            let e = t.elapsed();
            if e.as_secs_f64() > 0.3 || reps >= 1 << 16 {
                break e.as_secs_f64() / reps as f64;
            }
            reps *= 4;
        };
        m.options.memory = MemoryOptions { in_place_add: true, ..m.options.memory };
        let inplace = m.memory_plan(&sizes).peak;
        let searched = plan.states < SearchLimits::default().max_states;
        let exact = match (plan.exact, searched) {
            (true, true) => "exact (search finished)".to_string(),
            (true, false) => "exact (bounded search: order meets the lower bound)".to_string(),
            (false, _) => format!("upper bound, gap {:.0} B", plan.gap()),
        };
        println!(
            "{:<18} {:>5} {:>8} {:>12.0} {:>12.0} {:>11.3} ms  {exact} (lower bound {:.0})",
            g.name,
            m.fused.ops.len(),
            plan.states,
            plan.peak,
            inplace,
            elapsed * 1e3,
            plan.lower_bound,
        );
    }
}
