//! The C export on a Cortex-M4 (QEMU mps2-an386): outputs identical to the int8 reference,
//! instruction counts, and board-size enforcement at link time.

#[path = "../../mcufit-quant/tests/common/mod.rs"]
mod common;
mod support;

use mcufit_export::verify::{self, BoardMemory, Tools, QEMU_MAX};
use mcufit_export::{default_order, generate_c, CExportOptions, ExportError, PlanOptions};
use mcufit_ir::{Graph, GraphBuilder, Op, Padding, Shape};
use mcufit_quant::{quantize, random_weights, QuantizedModel};

fn tools() -> bool {
    support::tools(Tools::Arm)
}

/// Almost all MACs in 1x1 convolutions (as in MobileNet-style blocks).
pub fn pointwise_net() -> Graph {
    let mut b = GraphBuilder::new("pointwise", Shape::new(8, 8, 64));
    let x = b.conv_bn_relu(0, 128, 1, 1, Padding::Same);
    let x = b.conv_bn_relu(x, 128, 1, 1, Padding::Same);
    let x = b.conv_bn_relu(x, 64, 1, 1, Padding::Same);
    let p = b.add(Op::GlobalAvgPool, &[x]);
    let d = b.dense(p, 10);
    b.add(Op::Softmax, &[d]);
    b.build().unwrap()
}

fn model(g: &Graph, seed: u64) -> QuantizedModel {
    let w = random_weights(g, seed).unwrap();
    quantize(g, &w, &common::image_inputs(g, 8, seed + 1)).unwrap()
}

#[test]
fn cortex_m4_outputs_and_instruction_counts() {
    if !tools() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("mcufit-m4-{}", std::process::id()));
    for (k, g) in [common::all_ops_net(), pointwise_net()].iter().enumerate() {
        let q = model(g, 5 + k as u64);
        let xs: Vec<Vec<i8>> = common::image_inputs(g, 12, 9).iter().map(|x| q.quantize_input(x)).collect();
        let src = generate_c(&q, &default_order(&q), CExportOptions::default()).unwrap();
        let (agree, run) = verify::verify_m4(&q, &src, &xs, QEMU_MAX, &dir.join(format!("m{k}"))).unwrap();
        let (mism, maxd) = (agree.mismatches, agree.max_diff);
        let macs = q.macs();
        println!(
            "{}: M4 {} inputs, {mism} mismatches; {} instructions/inference for {macs} MACs = {:.3} instr/MAC; flash {} B, RAM {} B (arena {} B)",
            g.name,
            xs.len(),
            run.instructions,
            run.instructions as f64 / macs as f64,
            run.flash_used,
            run.ram_used,
            src.plan.arena_bytes
        );
        assert_eq!(mism, 0, "{}: Cortex-M4 output differs (max diff {maxd})", g.name);
        assert!(run.instructions > macs / 4, "instruction count {} implausible for {macs} MACs", run.instructions);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn model_too_big_for_board_fails_to_link() {
    if !tools() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("mcufit-fit-{}", std::process::id()));
    let g = pointwise_net();
    let q = model(&g, 3);
    let src = generate_c(&q, &default_order(&q), CExportOptions { plan: PlanOptions::default() }).unwrap();
    let xs = vec![vec![0i8; q.input().elements()]];
    // Arena alone is 12 KiB: a 8 KiB-RAM board cannot hold it.
    let small = BoardMemory { ram_bytes: 8 * 1024, flash_bytes: 1 << 20 };
    match verify::build_m4(&src, &xs, small, &dir.join("ram")) {
        Err(e @ ExportError::DoesNotFit { what: "RAM", needed, available }) => {
            println!("{e}");
            assert!(needed > available && available == 8 * 1024);
            assert!(e.to_string().starts_with("does not fit: needs"));
        }
        other => panic!("expected a RAM overflow, got {other:?}"),
    }
    let tiny_flash = BoardMemory { ram_bytes: 1 << 20, flash_bytes: 16 * 1024 };
    match verify::build_m4(&src, &xs, tiny_flash, &dir.join("flash")) {
        Err(e @ ExportError::DoesNotFit { what: "flash", .. }) => println!("{e}"),
        other => panic!("expected a flash overflow, got {other:?}"),
    }
    // And it links with enough of both.
    verify::build_m4(&src, &xs, QEMU_MAX, &dir.join("ok")).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The cost model's Cortex-M4 latency (the kernel model fitted to mcufit's C kernels, boards.toml)
/// predicts the instructions QEMU counts for whole zoo models within 10 %.
#[test]
fn predicted_latency_matches_the_m4_instruction_count() {
    if !tools() {
        return;
    }
    let board = mcufit_cost::Boards::builtin().get("mps2-an386").unwrap().clone();
    let dir = std::env::temp_dir().join(format!("mcufit-latency-{}", std::process::id()));
    for (k, name) in ["ds-cnn", "mnist-ds", "mobilenet-v1-025-cifar"].iter().enumerate() {
        let g = mcufit_ir::zoo::get(name).unwrap();
        let q = model(&g, 11 + k as u64);
        let xs: Vec<Vec<i8>> = common::image_inputs(&g, 2, 3).iter().map(|x| q.quantize_input(x)).collect();
        let src = generate_c(&q, &default_order(&q), CExportOptions::default()).unwrap();
        let (agree, run) = verify::verify_m4(&q, &src, &xs, QEMU_MAX, &dir.join(name)).unwrap();
        assert_eq!(agree.mismatches, 0);
        let cm = mcufit_cost::CostModel::new(&g, mcufit_cost::CostOptions::default()).unwrap();
        let predicted = cm.usage(&cm.sizes(), Some(&board)).latency_cycles.unwrap();
        let err = (predicted - run.instructions as f64) / run.instructions as f64;
        println!(
            "{name}: predicted {predicted:.0} cycles, measured {} instructions ({:+.1} %)",
            run.instructions,
            100.0 * err
        );
        assert!(err.abs() <= 0.10, "{name}: latency model off by {:.1} %", 100.0 * err);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
