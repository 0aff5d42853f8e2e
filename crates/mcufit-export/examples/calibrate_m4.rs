//! Calibrates the Cortex-M4 latency model of mcufit's C kernels: measures every op of a sweep of
//! single-op networks and of the given models on a Cortex-M4 (QEMU mps2-an386, `-icount shift=0`:
//! executed instructions, per op from a profiling build), fits [`KernelFit`] (weighted least squares,
//! relative error, per kernel family) and prints, per model, measured vs predicted instructions:
//! with the fitted model, with the fit left out of that model (leave-one-model-out: an honest
//! out-of-sample figure), and with the board file's current model. Ends with the TOML to paste into
//! `crates/mcufit-cost/boards.toml` under `[cores.cortex-m4.kernels]`.
//!
//! ```text
//! cargo run --release -p mcufit-export --example calibrate_m4 -- [--csv FILE] [zoo:NAME|MODEL.json ...]
//! ```
//! Needs `arm-none-eabi-gcc` and `qemu-system-arm` (`scripts/setup-verify-tools.sh`). Weights are
//! random (the kernels' instruction counts do not depend on the values, only on which kernel runs).

use mcufit_cost::{Boards, CostModel, CostOptions, KernelFit, OpWork};
use mcufit_export::verify::profile_m4;
use mcufit_export::{default_order, generate_c, CExportOptions};
use mcufit_ir::{Graph, GraphBuilder, Op, Padding, Pool2d, Shape};
use mcufit_quant::{quantize, random_weights};

fn inputs(g: &Graph, n: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let len = g.input_shape().elements();
    (0..n)
        .map(|_| {
            (0..len)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    (s % 256) as f32 / 128.0 - 1.0
                })
                .collect()
        })
        .collect()
}

fn sweep() -> Vec<Graph> {
    let mut v = Vec::new();
    let mut n = 0;
    let mut name = |s: &str| {
        n += 1;
        format!("{s}-{n}")
    };
    for &(h, cin, cout, k, s) in &[
        (16, 1, 8, 3, 1),
        (16, 3, 16, 3, 1),
        (16, 8, 16, 3, 2),
        (12, 16, 32, 3, 1),
        (8, 32, 32, 3, 1),
        (8, 64, 64, 3, 1),
        (16, 4, 24, 5, 1),
        (10, 1, 32, 5, 2),
        (12, 12, 20, 3, 1),
        (8, 48, 16, 3, 2),
    ] {
        let mut b = GraphBuilder::new(name("conv"), Shape::new(h, h, cin));
        b.conv_bn_relu(0, cout, k, s, Padding::Same);
        v.push(b.build().unwrap());
    }
    for &(h, cin, cout) in &[
        (16, 8, 16),
        (8, 64, 64),
        (8, 11, 40),
        (8, 40, 53),
        (12, 21, 61),
        (16, 16, 8),
        (4, 128, 128),
        (8, 32, 96),
        (10, 6, 12),
    ] {
        let mut b = GraphBuilder::new(name("pw"), Shape::new(h, h, cin));
        b.conv_bn_relu(0, cout, 1, 1, Padding::Same);
        v.push(b.build().unwrap());
    }
    for &(h, c, s) in &[(16, 8, 1), (8, 64, 1), (16, 32, 2), (12, 11, 1), (25, 64, 1), (8, 128, 2)] {
        let mut b = GraphBuilder::new(name("dw"), Shape::new(h, h.min(16), c));
        let x = b.dw(0, 3, s, Padding::Same);
        let x = b.bn(x);
        b.relu(x);
        v.push(b.build().unwrap());
    }
    // Random shapes beside the hand-picked ones: channel counts that are and are not multiples of 4.
    let mut r = 0x2545_F491_4F6C_DD1Du64;
    let mut pick = |lo: usize, hi: usize| {
        r ^= r << 13;
        r ^= r >> 7;
        r ^= r << 17;
        lo + (r % (hi - lo + 1) as u64) as usize
    };
    for _ in 0..40 {
        let (h, cin, cout, k, s) = (pick(1, 24), pick(1, 48), pick(2, 64), [1, 3, 3, 5][pick(0, 3)], pick(1, 2));
        let mut b = GraphBuilder::new(name(if k == 1 { "pw" } else { "conv" }), Shape::new(h, h, cin));
        b.conv_bn_relu(0, cout, k, s, Padding::Same);
        v.push(b.build().unwrap());
    }
    for _ in 0..30 {
        let (h, c, s, k) = (pick(1, 24), pick(1, 96), pick(1, 2), [3, 3, 5][pick(0, 2)]);
        let mut b = GraphBuilder::new(name("dw"), Shape::new(h, h, c));
        let x = b.dw(0, k, s, Padding::Same);
        let x = b.bn(x);
        b.relu(x);
        v.push(b.build().unwrap());
    }
    for &(i, o) in &[(64, 10), (256, 12), (1024, 10), (32, 32), (500, 64), (77, 5), (130, 3)] {
        let mut b = GraphBuilder::new(name("dense"), Shape::flat(i));
        let d = b.dense(0, o);
        b.add(Op::Softmax, &[d]);
        v.push(b.build().unwrap());
    }
    for &(h, c) in &[(16, 8), (8, 64), (24, 16), (2, 128), (4, 40), (6, 13)] {
        let mut b = GraphBuilder::new(name("pool"), Shape::new(h, h, c));
        let x = b.add(Op::MaxPool2d(Pool2d { pool: [2, 2], stride: Some([2, 2]), padding: Padding::Valid }), &[0]);
        let y = b.add(Op::AvgPool2d(Pool2d { pool: [2, 2], stride: Some([2, 2]), padding: Padding::Valid }), &[0]);
        let z = b.add(Op::Add, &[x, y]);
        let c = b.add(Op::Concat, &[z, x]);
        b.add(Op::GlobalAvgPool, &[c]);
        v.push(b.build().unwrap());
    }
    v
}

/// The `mf_*` function the generated code calls for op `i` (the last call before its
/// `MCUFIT_OP_DONE(i)`).
fn kernel_of(model_c: &str, i: usize) -> String {
    let done = format!("MCUFIT_OP_DONE({i});");
    let Some(end) = model_c.find(&done) else { return "-".into() };
    let before = &model_c[..end];
    let Some(start) = before.rfind("\n    mf_") else { return "-".into() };
    before[start + 5..].split('(').next().unwrap_or("-").to_string()
}

/// One measured op.
struct Row {
    net: usize,
    kind: &'static str,
    work: OpWork,
    instructions: f64,
}

/// Runs `g` on the Cortex-M4 and returns its ops' measurements.
fn measure(g: &Graph, net: usize, dir: &std::path::Path, csv: &mut Option<String>) -> Vec<Row> {
    let w = random_weights(g, 7 + net as u64).unwrap();
    let xs = inputs(g, 8, net as u64);
    let q = quantize(g, &w, &xs).unwrap();
    let tests: Vec<Vec<i8>> = xs.iter().take(2).map(|x| q.quantize_input(x)).collect();
    let src = generate_c(&q, &default_order(&q), CExportOptions::default()).unwrap();
    let run = profile_m4(&src, &tests, &dir.join(format!("n{net}"))).unwrap();
    let cm = CostModel::new(g, CostOptions::default()).unwrap();
    let costs = cm.op_costs(&cm.sizes());
    let mut rows = Vec::new();
    for &(i, instr) in &run.op_instructions {
        let c = &costs[i];
        assert_eq!(q.op_macs(i) as f64, c.macs, "{}: op {i} is not the cost model's op {i}", g.name);
        if let Some(out) = csv.as_mut() {
            let w = &c.work;
            out.push_str(&format!(
                "\"{net}:{}\",{},{},{},{},{},{},{},{},{},{},{}\n",
                g.name,
                c.name,
                c.kind,
                kernel_of(&src.model_c, i),
                w.macs,
                w.elementwise,
                w.outputs,
                w.pixels,
                w.interior_pixels,
                w.in_channels,
                w.out_channels,
                w.taps
            ));
            out.pop();
            out.push_str(&format!(",{instr}\n"));
        }
        rows.push(Row { net, kind: c.kind, work: c.work, instructions: instr as f64 });
    }
    rows
}

/// Least squares `min |A c - b|` by Householder QR (A: rows x n, full column rank).
#[allow(clippy::needless_range_loop)] // row-and-column index arithmetic reads clearer here
fn lstsq(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Vec<f64> {
    let (m, n) = (a.len(), a[0].len());
    for k in 0..n.min(m) {
        let norm = (k..m).map(|i| a[i][k] * a[i][k]).sum::<f64>().sqrt();
        if norm == 0.0 {
            continue;
        }
        let alpha = if a[k][k] > 0.0 { -norm } else { norm };
        let mut v: Vec<f64> = (k..m).map(|i| a[i][k]).collect();
        v[0] -= alpha;
        let vn = v.iter().map(|x| x * x).sum::<f64>();
        if vn == 0.0 {
            continue;
        }
        for j in k..n {
            let d = (k..m).map(|i| v[i - k] * a[i][j]).sum::<f64>() * 2.0 / vn;
            for i in k..m {
                a[i][j] -= d * v[i - k];
            }
        }
        let d = (k..m).map(|i| v[i - k] * b[i]).sum::<f64>() * 2.0 / vn;
        for i in k..m {
            b[i] -= d * v[i - k];
        }
    }
    let mut c = vec![0.0; n];
    for k in (0..n).rev() {
        let s = b[k] - (k + 1..n).map(|j| a[k][j] * c[j]).sum::<f64>();
        c[k] = if a[k][k].abs() > 1e-12 { s / a[k][k] } else { 0.0 };
    }
    c
}

/// Fits every family on `rows` (relative error: each row divided by its measurement). A family
/// without rows keeps `base`'s coefficients.
fn fit(rows: &[&Row], base: &KernelFit) -> KernelFit {
    let mut out = base.clone();
    for family in KernelFit::FAMILIES {
        let mut a = Vec::new();
        let mut b = Vec::new();
        for r in rows {
            if let Some((f, x)) = KernelFit::features(r.kind, &r.work) {
                if f == family && r.instructions > 0.0 {
                    a.push(x.iter().map(|v| v / r.instructions).collect::<Vec<_>>());
                    b.push(1.0);
                }
            }
        }
        let n = out.coefficients(family).len();
        if a.len() < n {
            continue;
        }
        // Column scaling keeps the QR well conditioned (features span 1 to 10^7).
        let scale: Vec<f64> = (0..n).map(|j| a.iter().map(|r| r[j].abs()).fold(0.0, f64::max).max(1e-300)).collect();
        for r in &mut a {
            for j in 0..n {
                r[j] /= scale[j];
            }
        }
        let c = lstsq(a, b);
        for (dst, (v, s)) in out.coefficients_mut(family).unwrap().iter_mut().zip(c.iter().zip(&scale)) {
            *dst = v / s;
        }
    }
    out
}

fn predict(fit: &KernelFit, rows: &[&Row]) -> f64 {
    rows.iter().map(|r| fit.instructions(r.kind, &r.work)).sum()
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut csv = None;
    let mut csv_path = None;
    if let Some(i) = args.iter().position(|a| a == "--csv") {
        csv_path = Some(args.get(i + 1).expect("--csv FILE").clone());
        args.drain(i..i + 2);
        csv = Some(String::from(
            "net,op,kind,kernel,macs,elementwise,outputs,pixels,interior_pixels,in_c,out_c,taps,instructions\n",
        ));
    }
    let models: Vec<Graph> =
        args.iter().map(|a| mcufit_ir::load_model(a).unwrap_or_else(|e| panic!("{a}: {e}"))).collect();
    let sweep = sweep();
    let dir = std::env::temp_dir().join(format!("mcufit-calibrate-{}", std::process::id()));
    let mut rows = Vec::new();
    for (k, g) in sweep.iter().chain(&models).enumerate() {
        rows.extend(measure(g, k, &dir, &mut csv));
    }
    let _ = std::fs::remove_dir_all(&dir);
    if let (Some(text), Some(path)) = (&csv, &csv_path) {
        std::fs::write(path, text).expect("write the CSV");
    }
    let current = Boards::builtin().get("mps2-an386").expect("built-in board").cycles.clone();
    let base = current.kernels.clone().unwrap_or(KernelFit {
        cycles_per_instruction: 1.0,
        conv: [0.0; 6],
        depthwise: [0.0; 6],
        dense: [0.0; 3],
        max_pool: [0.0; 3],
        avg_pool: [0.0; 3],
        global_avg_pool: [0.0; 3],
        add: [0.0; 3],
        concat: [0.0; 3],
        softmax: [0.0; 3],
        source: String::new(),
    });
    let all: Vec<&Row> = rows.iter().collect();
    let fitted = fit(&all, &base);
    println!(
        "{:<34} {:>12} {:>12} {:>8} {:>15} {:>13}",
        "model", "measured", "fitted", "error", "leave-one-out", "boards.toml"
    );
    for k in 0..models.len() {
        let net = sweep.len() + k;
        let mine: Vec<&Row> = rows.iter().filter(|r| r.net == net).collect();
        let others: Vec<&Row> = rows.iter().filter(|r| r.net != net).collect();
        let measured: f64 = mine.iter().map(|r| r.instructions).sum();
        let pct = |p: f64| format!("{:+.1} %", 100.0 * (p - measured) / measured);
        let loo = predict(&fit(&others, &base), &mine);
        let now: f64 = mine.iter().map(|r| current.cycles(r.kind, &r.work)).sum();
        let label = format!("{} ({} ops)", args[k], mine.len());
        println!(
            "{label:<34} {measured:>12.0} {:>12.0} {:>8} {:>15} {:>13}",
            predict(&fitted, &mine),
            pct(predict(&fitted, &mine)),
            pct(loo),
            pct(now)
        );
    }
    println!("\n[cores.cortex-m4.kernels]");
    println!("cycles_per_instruction = 1.0");
    for family in KernelFit::FAMILIES {
        let c: Vec<String> = fitted.coefficients(family).iter().map(|v| format!("{v:.4}")).collect();
        println!("{family} = [{}]", c.join(", "));
    }
    eprintln!("{} ops measured ({} sweep networks, {} models)", rows.len(), sweep.len(), models.len());
}
