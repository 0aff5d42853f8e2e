//! Times one training step (forward + backward) of the engine at a fixed batch size and prints
//! images/s and where the time goes, by op kind.
//!
//! ```text
//! cargo run --release -p mcufit-engine --example engine_bench -- [MODEL...] [--batch 64] [--threads 2] [--reps 30] [--eval]
//! ```
//! `--eval`: time an evaluation forward (`Mode::Eval`, running statistics) instead of a step.
//! MODEL is `zoo:NAME` or a model.json path (default: zoo:mnist-cnn zoo:ds-cnn zoo:resnet-8).
//! Synthetic data and parameters; warm-up steps are excluded; the step time is the median.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mcufit_engine::{Engine, Mode, NodeParams, Params};
use mcufit_ir::{Graph, Op};

fn main() {
    let mut models = Vec::new();
    let (mut batch, mut threads, mut reps, mut eval) = (64usize, 0usize, 30usize, false);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = |what: &str| -> usize {
            args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{what} needs a number"))
        };
        match a.as_str() {
            "--batch" => batch = num("--batch"),
            "--threads" => threads = num("--threads"),
            "--reps" => reps = num("--reps").max(1),
            "--eval" => eval = true,
            _ => models.push(a),
        }
    }
    if models.is_empty() {
        models = ["zoo:mnist-cnn", "zoo:ds-cnn", "zoo:resnet-8"].map(String::from).to_vec();
    }
    if threads > 0 {
        rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().expect("rayon global pool");
    }
    println!(
        "batch {batch}, {} rayon threads, median of {reps} steps after 3 warm-up steps",
        rayon::current_num_threads()
    );
    for spec in &models {
        let g = mcufit_ir::load_model(spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
        bench(spec, &g, batch, reps, eval);
    }
}

fn bench(spec: &str, g: &Graph, batch: usize, reps: usize, eval: bool) {
    let out = g.output();
    let logits = if matches!(g.nodes[out].op, Op::Softmax) { g.nodes[out].inputs[0] } else { out };
    let params = init(g);
    let mut engine = Engine::new(g, logits, vec![None; g.nodes.len()]).unwrap_or_else(|e| panic!("{spec}: {e}"));
    let mut seed = 1u32;
    let x: Vec<f32> = (0..batch * g.input_shape().elements())
        .map(|_| {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect();
    let classes = g.shapes().expect("valid graph")[logits].c;
    let dl = vec![1.0 / (batch * classes) as f32; batch * classes];
    let mut steps = Vec::with_capacity(reps);
    let mut by_kind: BTreeMap<&'static str, (Duration, Duration)> = BTreeMap::new();
    let mut by_node = vec![(Duration::ZERO, Duration::ZERO); engine.node_times().len().max(g.nodes.len())];
    let mut cpu_steps = Vec::with_capacity(reps);
    for rep in 0..reps + 3 {
        let c0 = cpu_time();
        let t0 = Instant::now();
        if eval {
            engine.forward(&params, &x, batch, Mode::Eval).expect("forward");
        } else {
            engine.forward(&params, &x, batch, Mode::Train).expect("forward");
            engine.backward(&params, &dl).expect("backward");
        }
        let dt = t0.elapsed();
        let cdt = cpu_time() - c0;
        if rep >= 3 {
            steps.push(dt);
            cpu_steps.push(cdt);
            for (id, &(f, b)) in engine.node_times().iter().enumerate() {
                let e = by_kind.entry(g.nodes[id].op.kind()).or_default();
                e.0 += f;
                e.1 += b;
                by_node[id].0 += f;
                by_node[id].1 += b;
            }
        }
    }
    steps.sort();
    cpu_steps.sort();
    let med = steps[steps.len() / 2];
    println!(
        "\n{spec}: {:.2} ms/step ({}), {:.0} images/s",
        med.as_secs_f64() * 1e3,
        if eval { "eval forward" } else { "fwd+bwd" },
        batch as f64 / med.as_secs_f64()
    );
    println!("  process CPU time per step (median): {:.2} ms", cpu_steps[cpu_steps.len() / 2].as_secs_f64() * 1e3);
    let total: f64 = by_kind.values().map(|(f, b)| (*f + *b).as_secs_f64()).sum();
    let mut rows: Vec<_> = by_kind.into_iter().collect();
    rows.sort_by_key(|(_, (f, b))| std::cmp::Reverse(*f + *b));
    println!("  {:<18} {:>9} {:>9} {:>6}", "op kind", "fwd ms", "bwd ms", "share");
    for (kind, (f, b)) in rows {
        let per = |d: Duration| d.as_secs_f64() * 1e3 / reps as f64;
        println!("  {kind:<18} {:>9.3} {:>9.3} {:>5.1}%", per(f), per(b), 100.0 * (f + b).as_secs_f64() / total);
    }
    if std::env::var_os("ENGINE_BENCH_NODES").is_some() {
        println!("  {:<28} {:>9} {:>9}", "node", "fwd ms", "bwd ms");
        for (id, (f, b)) in by_node.iter().enumerate().take(engine.node_times().len()) {
            let per = |d: Duration| d.as_secs_f64() * 1e3 / reps as f64;
            println!(
                "  {:<28} {:>9.3} {:>9.3}",
                format!("{} ({})", g.nodes[id].name, engine.node_kind(id)),
                per(*f),
                per(*b)
            );
        }
    }
}

/// Kaiming-uniform-like synthetic parameters, BN gamma 1 / beta 0.
fn init(g: &Graph) -> Params {
    let shapes = g.shapes().expect("valid graph");
    let mut state = 7u64;
    let mut uni = |n: usize, bound: f32| -> Vec<f32> {
        (0..n)
            .map(|_| {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * bound
            })
            .collect()
    };
    let nodes = g
        .nodes
        .iter()
        .enumerate()
        .map(|(id, node)| {
            let inp = node.inputs.first().map(|&i| shapes[i]);
            let mut p = NodeParams::default();
            match &node.op {
                Op::Conv2d(c) => {
                    let fan = inp.map_or(1, |s| s.c / c.groups) * c.kernel[0] * c.kernel[1];
                    p.kernel = Some(uni(c.filters * fan, (6.0 / fan as f32).sqrt()));
                    p.bias = c.bias.then(|| vec![0.0; c.filters]);
                }
                Op::DepthwiseConv2d(d) => {
                    let (c, fan) = (inp.map_or(1, |s| s.c), d.kernel[0] * d.kernel[1]);
                    p.kernel = Some(uni(c * fan, (6.0 / fan as f32).sqrt()));
                    p.bias = d.bias.then(|| vec![0.0; c]);
                }
                Op::Dense(d) => {
                    let nin = inp.map_or(1, |s| s.elements());
                    p.weight = Some(uni(nin * d.units, (6.0 / (nin + d.units) as f32).sqrt()));
                    p.bias = d.bias.then(|| vec![0.0; d.units]);
                }
                Op::BatchNorm(_) => {
                    p.gamma = Some(vec![1.0; shapes[id].c]);
                    p.beta = Some(vec![0.0; shapes[id].c]);
                    p.running_mean = Some(vec![0.0; shapes[id].c]);
                    p.running_var = Some(vec![1.0; shapes[id].c]);
                }
                _ => {}
            }
            p
        })
        .collect();
    Params { nodes, masks: Vec::new() }
}

/// CPU time of the whole process (all threads): unlike wall time, not inflated while the
/// benchmark is descheduled on a loaded machine.
fn cpu_time() -> Duration {
    #[repr(C)]
    struct Timespec {
        sec: i64,
        nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
    }
    const CLOCK_PROCESS_CPUTIME_ID: i32 = 2;
    let mut t = Timespec { sec: 0, nsec: 0 };
    // SAFETY: `t` is a valid, writable timespec; Linux x86_64 layout (two 64-bit fields).
    unsafe { clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    Duration::new(t.sec as u64, t.nsec as u32)
}
