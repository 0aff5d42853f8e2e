//! Behaviour of the pruning crate on burn: masks get gradients, removal preserves outputs,
//! coupled groups stay coupled, infeasible budgets fail fast, and compress meets its budget.

use mcufit_cost::{Budget, CostModel, CostOptions, Resource};
use mcufit_ir::{zoo, Graph, GraphBuilder, Op, Padding, Shape, Weights};
use mcufit_prune::baselines::prune_network;
use mcufit_prune::masks::MaskState;
use mcufit_prune::{compress, remove_channels, zero_channels, CompressConfig, PruneError};
use mcufit_train::burn::module::Module;
use mcufit_train::burn::tensor::{Tensor, TensorData};
use mcufit_train::{default_device, ops, Mode, Network, SplitMix64, TrainConfig};

/// Random weights with non-trivial biases and BN statistics (so constants really propagate).
fn random_network(graph: &Graph, seed: u64) -> Network {
    let device = default_device();
    let net = Network::new(graph, &device, seed).unwrap();
    let mut w: Weights = net.to_weights().unwrap();
    let mut r = SplitMix64::new(seed ^ 0xABCD);
    for lw in w.nodes.values_mut() {
        if let Some(b) = &mut lw.bias {
            b.iter_mut().for_each(|x| *x = r.uniform(-0.5, 0.5));
        }
        if let Some(bn) = &mut lw.bn {
            bn.gamma.iter_mut().for_each(|x| *x = r.uniform(0.5, 1.5));
            bn.beta.iter_mut().for_each(|x| *x = r.uniform(-0.5, 0.5));
            bn.mean.iter_mut().for_each(|x| *x = r.uniform(-0.3, 0.3));
            bn.var.iter_mut().for_each(|x| *x = r.uniform(0.5, 2.0));
        }
    }
    Network::from_weights(graph, &w, &device).unwrap()
}

fn input(graph: &Graph, n: usize, seed: u64) -> Vec<f32> {
    let mut r = SplitMix64::new(seed);
    (0..n * graph.input_shape().elements()).map(|_| r.uniform(-1.0, 1.0)).collect()
}

fn logits(net: &Network, x: &[f32], n: usize) -> Vec<f32> {
    let t = net.input_from_nhwc(x, n, &net.device()).unwrap();
    net.forward_mode(t, Mode::Eval).unwrap().into_data().try_into_vec_as::<f32>().unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Random keep sets: each prunable group keeps a random non-empty subset.
fn random_keep(graph: &Graph, seed: u64) -> Vec<Vec<usize>> {
    let groups = graph.channel_groups().unwrap();
    let mut r = SplitMix64::new(seed);
    groups
        .groups
        .iter()
        .map(|g| {
            if !g.prunable() {
                return (0..g.size).collect();
            }
            let mut k: Vec<usize> = (0..g.size).filter(|_| r.next_f64() < 0.5).collect();
            if k.is_empty() {
                k.push(r.below(g.size));
            }
            k
        })
        .collect()
}

#[test]
fn removal_keeps_outputs_equal() {
    for (name, seed) in [("branchy-net", 1u64), ("ds-cnn", 2), ("resnet-8", 3), ("mnist-wide", 4)] {
        let graph = zoo::get(name).unwrap();
        let net = random_network(&graph, seed);
        let keep = random_keep(&graph, seed);
        let w = net.to_weights().unwrap();
        let masked_w = zero_channels(&graph, &w, &keep).unwrap();
        let masked = Network::from_weights(&graph, &masked_w, &net.device()).unwrap();
        let (g2, w2, report) = remove_channels(&graph, &masked_w, &keep).unwrap();
        let pruned = Network::from_weights(&g2, &w2, &net.device()).unwrap();
        let x = input(&graph, 3, seed);
        let (a, b) = (logits(&masked, &x, 3), logits(&pruned, &x, 3));
        let d = max_diff(&a, &b);
        assert!(d < 1e-4, "{name}: masked vs pruned differ by {d}");
        // The pruned model really is smaller, and actually different from the unmasked one.
        assert_eq!(report.sizes_after, keep.iter().map(Vec::len).collect::<Vec<_>>());
        assert!(max_diff(&logits(&net, &x, 3), &a) > 1e-4, "{name}: masking changed nothing");
        if name == "ds-cnn" || name == "branchy-net" {
            // Depthwise biases + BN after the mask site make removed channels non-zero constants.
            assert!(report.folded_constants > 0, "{name}: no constant folded");
        }
    }
}

#[test]
fn removal_rejects_channels_that_still_carry_data() {
    let graph = zoo::mnist_wide().unwrap();
    let net = random_network(&graph, 5);
    let keep = random_keep(&graph, 5);
    // Not zeroed first: the dropped channels are live, so slicing them would change the outputs.
    let err = remove_channels(&graph, &net.to_weights().unwrap(), &keep).unwrap_err();
    assert!(matches!(err, PruneError::Removal(_)), "{err}");
    assert!(err.to_string().contains("still carries data"), "{err}");
}

#[test]
fn gradient_flows_to_the_masks_and_the_forward_mask_is_hard() {
    let graph = zoo::branchy_net().unwrap();
    let device = default_device().autodiff();
    let net = random_network(&graph, 7).fork(&device).train();
    let mut state = MaskState::new(&net);
    assert!(!state.groups.is_empty());
    // Shrink every group to about 60 % so masks hold zeros too.
    for gm in &mut state.groups {
        gm.width = (gm.size as f64 * 0.6).max(1.5);
    }
    let net = state.attach(net, true).unwrap();
    for gm in &state.groups {
        let m = net.group_mask(gm.group).unwrap().into_data().try_into_vec_as::<f32>().unwrap();
        assert!(m.iter().all(|&v| v == 0.0 || v == 1.0), "mask is not hard: {m:?}");
        assert_eq!(m.iter().filter(|&&v| v == 1.0).count(), gm.count());
        let keep = gm.keep();
        for (i, &v) in m.iter().enumerate() {
            assert_eq!(v == 1.0, keep.contains(&i));
        }
    }
    let n = 4;
    let x = net.input_from_nhwc(&input(&graph, n, 8), n, &device).unwrap();
    let mut oh = vec![0f32; n * 10];
    for i in 0..n {
        oh[i * 10 + i] = 1.0;
    }
    let t = Tensor::<2>::from_data(TensorData::new(oh, [n, 10]), &device);
    let loss = ops::cross_entropy(net.forward_mode(x, Mode::Train).unwrap(), t);
    let grads = loss.backward();
    for gm in &state.groups {
        let gate = net.masks[gm.group].as_ref().unwrap().reparameterization::<mcufit_prune::WidthGate>().unwrap();
        let g = gate.width.val().grad(&grads).expect("the width gets a gradient");
        let g = g.into_data().try_into_vec_as::<f32>().unwrap()[0];
        assert!(g.is_finite() && g != 0.0, "group {}: width gradient {g}", gm.group);
    }
}

#[test]
fn coupled_groups_stay_coupled_through_add_and_depthwise() {
    let graph = zoo::branchy_net().unwrap();
    let groups = graph.channel_groups().unwrap();
    let add = graph.nodes.iter().position(|n| matches!(n.op, Op::Add)).unwrap();
    let add_group = groups.layouts[add].segments[0];
    // The residual add ties its two producers (the 3x3 conv and the depthwise-separable path's 1x1).
    assert_eq!(groups.groups[add_group].producers.len(), 2);
    let dw = graph.nodes.iter().position(|n| matches!(n.op, Op::DepthwiseConv2d(_))).unwrap();
    let stem_group = groups.layouts[dw].segments[0];
    let net = random_network(&graph, 9);
    let mut state = MaskState::new(&net);
    for gm in &mut state.groups {
        gm.width = gm.size as f64 / 2.0;
        // A salience that differs per channel so the kept set is not just a prefix.
        let s: Vec<f32> = (0..gm.size).map(|i| ((i * 7 + gm.group * 3) % gm.size) as f32).collect();
        gm.set_salience(s);
    }
    let masked = state.attach(net, false).unwrap();
    // One mask per group, applied at both producers' sites.
    assert_eq!(masked.mask_nodes(add_group).len(), 2);
    let keep = state.keep_sets(&groups.sizes());
    let (pruned, report) = prune_network(&masked, &keep).unwrap();
    let pg = pruned.graph();
    let shapes = pg.shapes().unwrap();
    let producers = &groups.groups[add_group].producers;
    let kept = keep[add_group].len();
    for &p in producers {
        assert_eq!(shapes[p].c, kept, "producer '{}'", graph.nodes[p].name);
    }
    assert_eq!(shapes[add].c, kept);
    assert_eq!(shapes[dw].c, keep[stem_group].len(), "the depthwise conv follows its input group");
    // And the pruned network computes what the masked one did (the same channels left both paths).
    let x = input(&graph, 2, 10);
    let d = max_diff(&logits(&masked, &x, 2), &logits(&pruned, &x, 2));
    assert!(d < 1e-4, "masked vs pruned differ by {d}");
    assert!(report.sizes_after[add_group] < report.sizes_before[add_group]);
}

fn digits_net() -> Graph {
    let mut b = GraphBuilder::new("digits-net", Shape::new(8, 8, 1));
    let x = b.conv_bn_relu(0, 16, 3, 1, Padding::Same);
    let x = b.conv_bn_relu(x, 24, 3, 2, Padding::Same);
    let d = b.dw(x, 3, 1, Padding::Same);
    let d = b.bn(d);
    let d = b.relu(d);
    let x = b.conv_bn_relu(d, 24, 1, 1, Padding::Same);
    let p = b.add(Op::GlobalAvgPool, &[x]);
    let d = b.dense(p, 10);
    b.add(Op::Softmax, &[d]);
    b.build().unwrap()
}

fn digits() -> mcufit_data::Splits {
    mcufit_data::load("digits", &mcufit_data::LoadOptions { seed: 0, ..Default::default() }).unwrap()
}

fn quick(epochs: usize) -> TrainConfig {
    TrainConfig::new().with_epochs(epochs).with_batch_size(32).with_lr(0.05).with_progress(false).with_seed(3)
}

#[test]
fn infeasible_budget_fails_fast_with_the_achievable_minimum() {
    let graph = digits_net();
    let splits = digits();
    let m = CostModel::new(&graph, CostOptions::default()).unwrap();
    let least = m.usage(&mcufit_prune::minimal_sizes(&m), None);
    let budget = Budget { peak_memory: Some(least.peak_memory - 1.0), ..Default::default() };
    let t = std::time::Instant::now();
    let err = compress(&graph, &splits, &CompressConfig::new(budget, quick(100))).unwrap_err();
    assert!(t.elapsed().as_secs_f64() < 5.0, "took {:?}: it trained first", t.elapsed());
    match &err {
        PruneError::Infeasible(s) => {
            assert_eq!(s.len(), 1);
            assert_eq!(s[0].resource, Resource::PeakMemory);
            assert_eq!(s[0].minimum, least.peak_memory);
        }
        other => panic!("expected Infeasible, got {other}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("peak memory") && msg.contains(&format!("{:.0}", least.peak_memory)), "{msg}");
}

#[test]
fn compress_meets_the_budget_and_writes_a_loadable_model() {
    let graph = digits_net();
    let splits = digits();
    let m = CostModel::new(&graph, CostOptions::default()).unwrap();
    let start = m.usage(&m.sizes(), None);
    let budget = Budget {
        peak_memory: Some((start.peak_memory * 0.5).round()),
        macs: Some((start.macs * 0.4).round()),
        ..Default::default()
    };
    let dir = std::env::temp_dir().join(format!("mcufit-prune-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cfg = CompressConfig::new(budget, quick(4));
    cfg.out_dir = Some(dir.clone());
    cfg.prune_every = Some(5);
    cfg.warmup_epochs = Some(1);
    cfg.finetune_epochs = Some(1);
    let r = compress(&graph, &splits, &cfg).unwrap();
    for f in r.resources.iter().filter(|f| f.limit.is_some()) {
        assert!(f.fits && f.after.unwrap() <= f.limit.unwrap(), "{f:?}");
    }
    assert!(r.pruning_steps > 5, "{}", r.pruning_steps);
    assert!(r.group_sizes_after.iter().sum::<usize>() < r.group_sizes_before.iter().sum::<usize>());
    // The returned model is what the report describes, and it still classifies digits.
    let pruned = r.network.as_ref().unwrap();
    let lm = CostModel::new(pruned.graph(), CostOptions::default()).unwrap();
    let u = lm.usage(&lm.sizes(), None);
    assert!(u.peak_memory <= budget.peak_memory.unwrap() && u.macs <= budget.macs.unwrap());
    assert!(r.accuracy_after.test > 0.5, "test accuracy {}", r.accuracy_after.test);
    let report = serde_json::to_value(&r).unwrap();
    assert!(report["resources"].as_array().unwrap().len() == 4 && report["channels"].as_array().unwrap().len() == 5);
    assert!(mcufit_prune::summary(&r).contains("peak memory"));
    // Checkpoints went under the directory given (the pruned model's is what a resume reloads).
    assert!(dir.join("checkpoints/pruned/model.json").is_file());
    let _ = std::fs::remove_dir_all(&dir);
}
