//! The trained-weights → quantizer bridge against burn: eval-mode logits of the training network
//! and the float reference on the converted weights agree, on built-in and real data.

use std::path::{Path, PathBuf};

use mcufit_ir::Graph;
use mcufit_pipeline::deploy::{network_float_weights, samples, to_float_weights};
use mcufit_quant::{FloatWeights, NodeWeights};
use mcufit_train::burn::tensor::Tensor;
use mcufit_train::{default_device, BnWeights, LayerWeights, Mode, Network, TensorF32, Weights};

/// The real-data directory beside the repository (or /work/shared), if present.
fn shared_datasets() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    [root.join("../shared/datasets"), PathBuf::from("/work/shared/datasets")].into_iter().find(|p| p.is_dir())
}

/// Trained-layout weights from the quantizer's random ones (random BN statistics too, so BN
/// folding is exercised), as the training crate would hold them.
fn train_weights(g: &Graph, seed: u64) -> Weights {
    let fw = FloatWeights::random(g, seed).unwrap();
    let shapes = g.shapes().unwrap();
    let mut w = Weights::default();
    for (id, node) in g.nodes.iter().enumerate() {
        let in_s = node.inputs.first().map(|&i| shapes[i]).unwrap_or(shapes[id]);
        match (fw.get(&node.name), &node.op) {
            (Some(NodeWeights::Kernel { kernel, bias }), op) => {
                let shape = match op {
                    mcufit_ir::Op::Conv2d(c) => vec![c.filters, c.kernel[0], c.kernel[1], in_s.c / c.groups],
                    mcufit_ir::Op::DepthwiseConv2d(d) => vec![1, d.kernel[0], d.kernel[1], in_s.c],
                    mcufit_ir::Op::Dense(d) => vec![d.units, in_s.elements()],
                    _ => unreachable!(),
                };
                let kernel = Some(TensorF32::new(shape, kernel.clone()).unwrap());
                w.layers.insert(node.name.clone(), LayerWeights { kernel, bias: bias.clone(), bn: None });
            }
            (Some(NodeWeights::BatchNorm { gamma, beta, mean, var }), mcufit_ir::Op::BatchNorm(b)) => {
                let bn = BnWeights {
                    gamma: gamma.clone(),
                    beta: beta.clone(),
                    mean: mean.clone(),
                    var: var.clone(),
                    eps: b.eps,
                };
                w.layers.insert(node.name.clone(), LayerWeights { kernel: None, bias: None, bn: Some(bn) });
            }
            _ => {}
        }
    }
    w
}

/// burn eval-mode logits vs mcufit-quant's float reference on the converted weights, on real
/// inputs: catches OHWI / depthwise / NHWC-flatten / SAME-padding layout mistakes.
fn check_bridge(g: &Graph, spec: &str, n: usize) {
    let w = train_weights(g, 11);
    let device = default_device();
    let net = Network::from_weights(g, &w, &device).unwrap();
    let fw = network_float_weights(&net).unwrap();
    let s = g.input_shape();
    let opts =
        mcufit_data::LoadOptions { seed: 1, target_shape: Some([s.h, s.w, s.c]), limit: Some(n), ..Default::default() };
    let splits = mcufit_data::load(spec, &opts).unwrap();
    let (xs, _) = samples(&splits.test, &(0..n.min(splits.test.len())).collect::<Vec<_>>()).unwrap();
    assert!(!xs.is_empty());
    // The node feeding the softmax holds the logits.
    let logits_node = g.nodes.last().map(|nd| nd.inputs[0]).unwrap();
    let flat: Vec<f32> = xs.concat();
    let t = net.input_from_nhwc(&flat, xs.len(), &device).unwrap();
    let burn: Tensor<2> = net.forward_mode(t, Mode::Eval).unwrap();
    let [rows, k] = burn.dims();
    let burn: Vec<f32> = burn.into_data().try_into_vec_as::<f32>().unwrap();
    assert_eq!(rows, xs.len());
    let mut worst = 0f32;
    for (r, x) in xs.iter().enumerate() {
        let all = mcufit_quant::run_float_all(g, &fw, x).unwrap();
        let ours = &all[logits_node];
        assert_eq!(ours.len(), k);
        let scale = ours.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-3);
        for (a, b) in ours.iter().zip(&burn[r * k..(r + 1) * k]) {
            worst = worst.max((a - b).abs() / scale);
        }
    }
    println!("{}: {} real inputs from {spec}, max |float ref - burn| / max|logit| = {worst:.2e}", g.name, xs.len());
    assert!(worst < 1e-4, "{}: float reference and burn differ by {worst:e} (relative)", g.name);
}

#[test]
fn bridge_matches_burn_on_built_in_digits() {
    // Always available: the UCI digits are compiled in. mnist-cnn covers conv (SAME), max
    // pool, NHWC flatten + dense; branchy-net covers add and concat.
    check_bridge(&mcufit_ir::zoo::mnist_cnn().unwrap(), "digits", 16);
    check_bridge(&mcufit_ir::zoo::branchy_net().unwrap(), "digits", 16);
}

#[test]
fn bridge_matches_burn_on_real_speech_and_mnist() {
    let Some(root) = shared_datasets() else {
        eprintln!("\n!!!!!!!! SKIPPING bridge_matches_burn_on_real_speech_and_mnist: no shared/datasets beside the repo or in /work\n");
        return;
    };
    let speech = root.join("speech_commands_v0.02_test");
    let mnist = root.join("mnist");
    if speech.is_dir() {
        // ds-cnn: 10x4 stride-2 SAME conv (asymmetric padding), depthwise, pointwise, BN.
        check_bridge(&mcufit_ir::zoo::ds_cnn().unwrap(), &format!("speech-commands:{}", speech.display()), 4);
    } else {
        eprintln!("!!!!!!!! SKIPPING ds-cnn bridge check: {} missing", speech.display());
    }
    if mnist.is_dir() {
        // resnet-8: stride-2 SAME convs, 1x1 shortcut convs, residual adds; MNIST as RGB.
        check_bridge(&mcufit_ir::zoo::resnet_8().unwrap(), &format!("mnist:{}", mnist.display()), 4);
    } else {
        eprintln!("!!!!!!!! SKIPPING resnet-8 bridge check: {} missing", mnist.display());
    }
}

#[test]
fn masks_must_be_folded_and_shapes_must_match() {
    let g = mcufit_ir::zoo::mnist_cnn().unwrap();
    let mut w = train_weights(&g, 3);
    assert!(to_float_weights(&g, &w).is_ok());
    w.masks.insert(0, vec![1.0; 4]);
    assert!(to_float_weights(&g, &w).unwrap_err().to_string().contains("masks"));
    w.masks.clear();
    let k = w.layers.values_mut().find_map(|l| l.kernel.as_mut()).unwrap();
    k.data.pop();
    k.shape = vec![k.data.len()];
    let e = to_float_weights(&g, &w).unwrap_err();
    assert!(format!("{e:#}").contains("values"), "{e:#}");
}
