//! Edge cases of the C export's fast kernels (`mf_conv_fast`, `mf_depthwise_fast`): every right
//! shift the shortcut requantization accepts (0..=22, forced per channel), the fallback beyond it,
//! odd pixel and channel counts, depths that are not a multiple of 4, strides, SAME padding with
//! uneven pads, narrow activation ranges. Host gcc (portable C) and Cortex-M4 under QEMU (DSP
//! assembly) must both equal the int8 reference byte for byte.

#[path = "../../mcufit-quant/tests/common/mod.rs"]
mod common;
mod support;

use mcufit_export::verify::{self, Tools, QEMU_MAX};
use mcufit_export::{default_order, generate_c, CExportOptions};
use mcufit_ir::{Conv2d, DepthwiseConv2d, Graph, GraphBuilder, Op, Padding, Shape};
use mcufit_quant::rng::SplitMix64;
use mcufit_quant::{quantize, random_weights, QOpKind, QuantizedModel};

/// One conv-like op on an input, optionally followed by ReLU.
fn net(name: &str, input: Shape, op: Op, relu: bool) -> Graph {
    let mut b = GraphBuilder::new(name, input);
    let mut x = b.add(op, &[0]);
    if relu {
        x = b.relu(x);
    }
    let _ = x;
    b.build().unwrap()
}

/// input -> 1x1 conv -> ADD(input, conv) -> ReLU.
fn residual() -> Graph {
    let mut b = GraphBuilder::new("residual", Shape::new(5, 6, 12));
    let c = b.add(conv(12, [1, 1], 1, Padding::Same), &[0]);
    let a = b.add(Op::Add, &[0, c]);
    b.relu(a);
    b.build().unwrap()
}

fn conv(filters: usize, k: [usize; 2], s: usize, padding: Padding) -> Op {
    Op::Conv2d(Conv2d { filters, kernel: k, stride: [s, s], padding, groups: 1, bias: true })
}

fn dw(k: usize, s: usize, padding: Padding) -> Op {
    Op::DepthwiseConv2d(DepthwiseConv2d { kernel: [k, k], stride: [s, s], padding, bias: true })
}

/// Quantizes `g` with random weights, then rewrites the first op's per-channel filter scales so
/// that channel `c` gets the right shift `shifts[c % shifts.len()]` (effective scale 0.75 * 2^-e),
/// thins the filters of low-shift channels (so their outputs do not all saturate) and, with
/// `zero_point`, moves the output zero point (a narrower ReLU range: the general clamp path).
fn forced(g: &Graph, seed: u64, shifts: &[i32], zero_point: Option<i32>) -> QuantizedModel {
    let w = random_weights(g, seed).unwrap();
    let mut q = quantize(g, &w, &common::image_inputs(g, 8, seed + 1)).unwrap();
    if let Some(zp) = zero_point {
        q.tensors[1].zero_point = zp;
    }
    let s_in = q.tensors[0].scale as f64;
    let s_out = q.tensors[1].scale as f64;
    let mut rng = SplitMix64::new(seed);
    let depthwise = matches!(q.ops[1].kind, QOpKind::DepthwiseConv2d { .. });
    let weights = match &mut q.ops[1].kind {
        QOpKind::Conv2d { weights, .. } | QOpKind::DepthwiseConv2d { weights, .. } => weights,
        _ => panic!("first op is not a conv"),
    };
    let channels = weights.filter_scales.len();
    let per = weights.filter.len() / channels;
    for c in 0..channels {
        let e = shifts[c % shifts.len()];
        weights.filter_scales[c] = (0.75 * 2f64.powi(-e) * s_out / s_in) as f32;
        weights.bias[c] = rng.below(41) as i32 - 20;
        if e < 8 {
            // Keep one small tap: |acc| stays within a few hundred, outputs stay in range.
            let keep = rng.below(per as u64) as usize;
            for t in 0..per {
                let idx = if depthwise { t * channels + c } else { c * per + t };
                weights.filter[idx] = if t == keep { rng.below(5) as i8 - 2 } else { 0 };
            }
        }
    }
    q.prepare().unwrap();
    q
}

fn random_inputs(q: &QuantizedModel, n: usize, seed: u64) -> Vec<Vec<i8>> {
    let mut r = SplitMix64::new(seed);
    (0..n).map(|_| (0..q.input().elements()).map(|_| r.below(256) as i32 as i8).collect()).collect()
}

struct Case {
    graph: Graph,
    shifts: Vec<i32>,
    zero_point: Option<i32>,
    /// The C function the op must go through.
    kernel: &'static str,
}

fn cases() -> Vec<Case> {
    let all: Vec<i32> = (0..=22).collect();
    let case = |graph, shifts: &[i32], zero_point, kernel| Case { graph, shifts: shifts.to_vec(), zero_point, kernel };
    vec![
        // 1x1: 25 pixels (a lone last one), depth 7 (not a multiple of 4), 23 filters (odd).
        case(
            net("pw-odd", Shape::new(5, 5, 7), conv(23, [1, 1], 1, Padding::Same), false),
            &all,
            None,
            "mf_conv_fast(",
        ),
        // 1x1 stride 2, ReLU with the output zero point moved: the general clamp.
        case(
            net("pw-s2-relu", Shape::new(9, 7, 8), conv(24, [1, 1], 2, Padding::Same), true),
            &all,
            Some(-40),
            "mf_conv_fast(",
        ),
        // 3x3 SAME on one channel (byte patches), stride 1.
        case(
            net("c3-1ch", Shape::new(6, 7, 1), conv(23, [3, 3], 1, Padding::Same), false),
            &all,
            None,
            "mf_conv_fast(",
        ),
        // 3x3 SAME stride 2 on 8 channels (direct expansion with padding on both pixels).
        case(
            net("c3-s2", Shape::new(7, 9, 8), conv(22, [3, 3], 2, Padding::Same), true),
            &all,
            Some(-100),
            "mf_conv_fast(",
        ),
        // DS-CNN's first layer shape: 10x4, stride 2, uneven SAME pads, 3 channels.
        case(
            net("c10x4", Shape::new(13, 6, 3), conv(23, [10, 4], 2, Padding::Same), false),
            &all,
            None,
            "mf_conv_fast(",
        ),
        // Depthwise: 6 channels (one group of 4 + 2 left), stride 2, SAME.
        case(
            net("dw-6", Shape::new(7, 6, 6), dw(3, 2, Padding::Same), false),
            &[0, 3, 9, 22, 1, 15],
            None,
            "mf_depthwise_fast(",
        ),
        case(net("dw-24", Shape::new(5, 5, 24), dw(3, 1, Padding::Valid), true), &all, Some(-60), "mf_depthwise_fast("),
        // Whole groups at the borders (SAME, stride 1; DS-CNN's 25x5 maps are mostly border).
        case(net("dw-8-same", Shape::new(6, 5, 8), dw(3, 1, Padding::Same), false), &all, None, "mf_depthwise_fast("),
        // A residual ADD after the conv (the ADD takes its own shortcut kernel).
        case(residual(), &all, None, "mf_add_fast("),
        // A shift beyond 22 on one channel: the whole op falls back to the generic kernels.
        case(
            net("pw-fallback", Shape::new(4, 4, 8), conv(6, [1, 1], 1, Padding::Same), false),
            &[3, 4, 26, 5],
            None,
            "mf_conv(",
        ),
        case(net("dw-fallback", Shape::new(4, 4, 8), dw(3, 1, Padding::Same), false), &[3, 27], None, "mf_depthwise("),
    ]
}

#[test]
fn fast_kernels_match_the_reference_at_every_shift() {
    let arm = support::tools(Tools::Arm);
    let dir = std::env::temp_dir().join(format!("mcufit-edges-{}", std::process::id()));
    for (k, case) in cases().iter().enumerate() {
        let q = forced(&case.graph, 100 + k as u64, &case.shifts, case.zero_point);
        let src = generate_c(&q, &default_order(&q), CExportOptions::default()).unwrap();
        assert!(src.model_c.contains(case.kernel), "{}: expected a call to {}", case.graph.name, case.kernel);
        // The reference's outputs must not be all saturated, or the check would say little.
        let xs = random_inputs(&q, 300, 7 + k as u64);
        let want = q.run_int8_batch(&xs).unwrap();
        let inside = want.iter().flatten().filter(|&&v| v > -128 && v < 127).count();
        assert!(inside * 4 > want.len() * want[0].len(), "{}: outputs mostly saturated", case.graph.name);
        let host = verify::verify_c_host(&q, &src, &xs, &dir.join(format!("h{k}"))).unwrap();
        assert_eq!(host.mismatches, 0, "{}: host C differs (max diff {})", case.graph.name, host.max_diff);
        let mut line = format!("{}: host {} inputs 0 mismatches", case.graph.name, xs.len());
        if arm {
            let (m4, _) = verify::verify_m4(&q, &src, &xs[..16], QEMU_MAX, &dir.join(format!("m{k}"))).unwrap();
            assert_eq!(m4.mismatches, 0, "{}: Cortex-M4 differs (max diff {})", case.graph.name, m4.max_diff);
            line.push_str(&format!(", M4 {} inputs 0 mismatches", m4.inputs));
        }
        println!("{line}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
