//! The trained-weights → quantizer bridge against burn: eval-mode logits of the training network
//! and the float reference on the network's deployed weights agree, on built-in and real data.

use std::path::{Path, PathBuf};

use mcufit_ir::Graph;
use mcufit_pipeline::deploy::{deployed_weights, samples};
use mcufit_quant::random_weights;
use mcufit_train::burn::tensor::Tensor;
use mcufit_train::{default_device, Mode, Network};

/// The real-data directory beside the repository (or /work/shared), if present.
/// Says why a check does not run; under `CI` a skip is a failure.
fn skip(why: &str) {
    assert!(std::env::var_os("CI").is_none(), "{why} (a skip is a failure under CI)");
    eprintln!("\n!!!!!!!! SKIPPING {why}\n");
}

fn shared_datasets() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    [root.join("../shared/datasets"), PathBuf::from("/work/shared/datasets")].into_iter().find(|p| p.is_dir())
}

/// burn eval-mode logits vs mcufit-quant's float reference on the network's weights, on real
/// inputs: catches OHWI / depthwise / NHWC-flatten / SAME-padding layout mistakes.
fn check_bridge(g: &Graph, spec: &str, n: usize) {
    // Random weights with random BN statistics too, so BN folding is exercised.
    let w = random_weights(g, 11).unwrap();
    let device = default_device();
    let net = Network::from_weights(g, &w, &device).unwrap();
    let fw = deployed_weights(&net).unwrap();
    // The network hands back exactly the weights it was built from (no masks to fold).
    assert_eq!(fw, w);
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
        skip("bridge_matches_burn_on_real_speech_and_mnist: no shared/datasets beside the repo or in /work");
        return;
    };
    let speech = root.join("speech_commands_v0.02_test");
    let mnist = root.join("mnist");
    if speech.is_dir() {
        // ds-cnn: 10x4 stride-2 SAME conv (asymmetric padding), depthwise, pointwise, BN.
        check_bridge(&mcufit_ir::zoo::ds_cnn().unwrap(), &format!("speech-commands:{}", speech.display()), 4);
    } else {
        skip(&format!("ds-cnn bridge check: {} missing", speech.display()));
    }
    if mnist.is_dir() {
        // resnet-8: stride-2 SAME convs, 1x1 shortcut convs, residual adds; MNIST as RGB.
        check_bridge(&mcufit_ir::zoo::resnet_8().unwrap(), &format!("mnist:{}", mnist.display()), 4);
    } else {
        skip(&format!("resnet-8 bridge check: {} missing", mnist.display()));
    }
}

#[test]
fn masks_must_be_folded_and_shapes_must_match() {
    let g = mcufit_ir::zoo::mnist_cnn().unwrap();
    let mut w = random_weights(&g, 3).unwrap();
    assert!(w.check_deployable(&g).is_ok());
    let groups = g.channel_groups().unwrap();
    w.masks.insert(0, vec![1.0; groups.groups[0].size]);
    assert!(w.check(&g).is_ok());
    assert!(w.check_deployable(&g).unwrap_err().to_string().contains("masks"));
    // A network carrying a mask: deployed_weights folds it away.
    let net = Network::from_weights(&g, &w, &default_device()).unwrap();
    assert!(deployed_weights(&net).unwrap().masks.is_empty());
    w.masks.clear();
    let (name, k) = w.nodes.iter_mut().find_map(|(n, l)| Some((n.clone(), l.kernel.as_mut()?))).unwrap();
    k.data.pop();
    k.shape = vec![k.data.len()];
    let e = w.check(&g).unwrap_err().to_string();
    assert!(e.contains(&name) && e.contains("kernel shape"), "{e}");
    let e = Network::from_weights(&g, &w, &default_device()).unwrap_err().to_string();
    assert!(e.contains(&name), "{e}");
}
