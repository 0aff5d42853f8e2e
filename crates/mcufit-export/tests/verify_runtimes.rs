//! Bit-exactness of the .tflite export against TFLite Micro (and LiteRT's reference kernels),
//! and of the C export built with the host gcc. Installs missing tools with
//! scripts/setup-verify-tools.sh (see `support`).

#[path = "../../mcufit-quant/tests/common/mod.rs"]
mod common;
mod support;

use mcufit_export::verify::{self, Runtime, Tools};
use mcufit_export::{
    default_order, export_tflite, export_tflite_with, generate_c, plan_arena, CExportOptions, PlanOptions,
};
use mcufit_ir::{Graph, GraphBuilder, Padding, Shape};
use mcufit_quant::{quantize, quantize_with, random_weights, InputQuant, QuantizeOptions, QuantizedModel};

fn model(g: &Graph, seed: u64, input: InputQuant) -> QuantizedModel {
    let w = random_weights(g, seed).unwrap();
    quantize_with(g, &w, &common::image_inputs(g, 16, seed + 100), &QuantizeOptions { input }).unwrap()
}

/// A keyword-spotting-like net: conv, depthwise-separable blocks, average pool, dense, softmax
/// (CONV + AVERAGE_POOL + FC, the pattern LiteRT's optimized kernels round differently).
fn kws_like() -> Graph {
    let mut b = GraphBuilder::new("kws-like", Shape::new(20, 10, 1));
    let x = b.conv_bn_relu(0, 16, 3, 2, Padding::Same);
    let d = b.dw(x, 3, 1, Padding::Same);
    let d = b.bn(d);
    let d = b.relu(d);
    let x = b.conv_bn_relu(d, 16, 1, 1, Padding::Same);
    let p = b.add(
        mcufit_ir::Op::AvgPool2d(mcufit_ir::Pool2d { pool: [10, 5], stride: None, padding: Padding::Valid }),
        &[x],
    );
    let f = b.add(mcufit_ir::Op::Flatten, &[p]);
    let d = b.dense(f, 6);
    b.add(mcufit_ir::Op::Softmax, &[d]);
    b.build().unwrap()
}

fn inputs(q: &QuantizedModel, g: &Graph, n: usize, seed: u64) -> Vec<Vec<i8>> {
    common::image_inputs(g, n, seed).iter().map(|x| q.quantize_input(x)).collect()
}

#[test]
fn tflm_bit_exact_and_litert_max_diff() {
    if !support::tools(Tools::Python) {
        return;
    }
    let cases: Vec<(Graph, usize, InputQuant)> = vec![
        (common::all_ops_net(), 400, InputQuant::Image),
        (kws_like(), 200, InputQuant::Calibrated),
        (common::random_net(101), 150, InputQuant::Image),
        (common::random_net(202), 150, InputQuant::Image),
        (common::random_net(303), 150, InputQuant::Calibrated),
    ];
    let dir = std::env::temp_dir().join(format!("mcufit-rt-{}", std::process::id()));
    let mut total = 0;
    let mut total_mismatch = 0;
    println!(
        "{:<12} {:>6} {:>10} {:>12} {:>11} {:>11} {:>11} {:>10}",
        "model", "inputs", "tflm_mism", "litert_maxd", "tflm_head", "greedy_head", "mcufit_peak", "tflm_total"
    );
    for (k, (g, n, iq)) in cases.iter().enumerate() {
        let q = model(g, 11 + k as u64, *iq);
        let order = default_order(&q);
        let bytes = export_tflite(&q, &order).unwrap();
        let xs = inputs(&q, g, *n, 1000 + k as u64);
        let want = q.run_int8_batch(&xs).unwrap();
        let (agree, arena) =
            verify::verify_tflite(&q, &bytes, &xs, Runtime::Tflm, &dir.join(format!("tflm{k}"))).unwrap();
        let mism = agree.mismatches;
        let lite = verify::run_tflite(&bytes, &xs, Runtime::LiteRtRef, &dir.join(format!("lite{k}"))).unwrap();
        let (_, lite_maxd) = verify::compare(&want, &lite.outputs);
        let plan = plan_arena(&q, &order, PlanOptions::default()).unwrap();
        let (ttotal, head, _) = arena.expect("TFLM reports its arena");
        // The same model without the offline plan: TFLM's own greedy planner.
        let unplanned = export_tflite_with(&q, &order, None).unwrap();
        let (agree_u, arena_u) =
            verify::verify_tflite(&q, &unplanned, &xs[..8], Runtime::Tflm, &dir.join(format!("tflmu{k}"))).unwrap();
        let greedy_head = arena_u.map_or(0, |a| a.1);
        println!(
            "{:<12} {:>6} {:>10} {:>12} {:>11} {:>11} {:>11} {:>10}",
            g.name, n, mism, lite_maxd, head, greedy_head, plan.peak_bytes, ttotal
        );
        total += n;
        total_mismatch += mism;
        assert_eq!(mism, 0, "{}: TFLM differs from the int8 reference on {mism} of {n} inputs", g.name);
        assert_eq!(agree_u.mismatches, 0, "{}: TFLM (own planner) differs from the int8 reference", g.name);
        // With mcufit's plan embedded, TFLM puts every tensor at mcufit's offset: its head is the
        // planned arena, except that TFLM's planner rounds each buffer's size up to 16 bytes
        // (so the head can exceed the plan by at most 15 B, past the last byte any tensor uses).
        let m = mcufit_export::tflite::read(&bytes).unwrap();
        let off = mcufit_export::tflite::offline_plan(&m).expect("offline plan embedded");
        let tflm_rule = (0..m.tensors.len())
            .filter(|&t| off[t] >= 0)
            .map(|t| off[t] as usize + m.tensors[t].elements().div_ceil(16) * 16)
            .max()
            .unwrap();
        assert_eq!(head, tflm_rule, "{}: TFLM arena head {head} B, mcufit's offsets give {tflm_rule} B", g.name);
        assert!(
            head >= plan.arena_bytes && head < plan.arena_bytes + 16,
            "{}: head {head} B vs plan {} B",
            g.name,
            plan.arena_bytes
        );
    }
    println!("TFLM: {total_mismatch} mismatches over {total} inputs");
    assert!(total >= 1000);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn host_gcc_c_export_matches_reference() {
    let gcc_ok =
        std::process::Command::new("gcc").arg("--version").output().map(|o| o.status.success()).unwrap_or(false);
    if !gcc_ok {
        assert!(std::env::var_os("CI").is_none(), "no host gcc (a skip is a failure under CI)");
        eprintln!("\n!!!!!!!! SKIPPING: no host gcc\n");
        return;
    }
    let dir = std::env::temp_dir().join(format!("mcufit-host-{}", std::process::id()));
    let cases =
        [common::all_ops_net(), kws_like(), common::random_net(7), common::random_net(8), common::random_net(9)];
    for (k, g) in cases.iter().enumerate() {
        let q = model(g, 40 + k as u64, InputQuant::Image);
        let xs = inputs(&q, g, 200, 77 + k as u64);
        let want = q.run_int8_batch(&xs).unwrap();
        for in_place in [false, true] {
            let opts = CExportOptions { plan: PlanOptions { count_input: !in_place, in_place_add: in_place } };
            let src = generate_c(&q, &default_order(&q), opts).unwrap();
            let got = verify::run_host_c(&src, &xs, &dir.join(format!("m{k}{in_place}"))).unwrap();
            let (mism, maxd) = verify::compare(&want, &got);
            println!(
                "{}: C export (arena {} B, peak {} B, in-place add {in_place}): {mism} mismatches over {} inputs",
                g.name,
                src.plan.arena_bytes,
                src.plan.peak_bytes,
                xs.len()
            );
            assert_eq!(mism, 0, "{}: C differs (max diff {maxd})", g.name);
            assert_eq!(src.plan.arena_bytes, src.plan.peak_bytes, "{}: arena above the peak", g.name);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn quantize_default_is_image() {
    let g = kws_like();
    let w = random_weights(&g, 1).unwrap();
    let q = quantize(&g, &w, &common::image_inputs(&g, 2, 1)).unwrap();
    assert_eq!(q.input().zero_point, 0);
}
