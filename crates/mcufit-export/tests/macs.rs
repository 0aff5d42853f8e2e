//! One MAC formula (`mcufit_ir::Op::macs_at`): the quantized model's per-op MACs
//! (`QuantizedModel::op_macs`) equal the cost model's on every zoo model and on the test nets, the
//! totals match MLPerf Tiny's figures, and `is_pointwise` finds exactly the 1x1 group-1 convs.

#[path = "../../mcufit-quant/tests/common/mod.rs"]
mod common;

use mcufit_cost::{CostModel, CostOptions};
use mcufit_ir::{zoo, Graph};
use mcufit_quant::{quantize, random_weights, QuantizedModel};

fn quantized(g: &Graph) -> QuantizedModel {
    let w = random_weights(g, 5).unwrap();
    quantize(g, &w, &common::image_inputs(g, 2, 6)).unwrap()
}

fn check(g: &Graph) -> u64 {
    let q = quantized(g);
    let cost = CostModel::new(g, CostOptions::default()).unwrap();
    let ops = cost.op_costs(&cost.sizes());
    assert_eq!(ops.len(), q.ops.len(), "{}: fused ops", g.name);
    for (i, o) in ops.iter().enumerate() {
        // A batch norm with nothing to fold into is a 1x1 depthwise conv once quantized; the cost
        // model counts it as an element-wise pass.
        if o.kind != "batch_norm" {
            assert_eq!(q.op_macs(i), o.macs as u64, "{}: op {i} ({})", g.name, o.name);
        }
        assert_eq!(q.is_pointwise(i), o.kind == "conv2d_1x1", "{}: op {i} ({})", g.name, o.name);
    }
    assert_eq!(q.macs(), (0..q.ops.len()).map(|i| q.op_macs(i)).sum::<u64>());
    q.macs()
}

#[test]
fn quantized_macs_equal_the_cost_model() {
    for name in zoo::names() {
        let macs = check(&zoo::get(name).unwrap());
        match name {
            "ds-cnn" => assert_eq!(macs, 2_656_768),
            "mobilenet-v1-025" => assert_eq!(macs, 7_489_664),
            "resnet-8" => assert_eq!(macs, 12_501_632),
            _ => {}
        }
    }
    check(&common::all_ops_net());
    for seed in [3, 4, 5, 6] {
        check(&common::random_net(seed));
    }
}
