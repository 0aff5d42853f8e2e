//! Engine tests: forward against a naive f64 reference, gradients against central differences of
//! that reference (f64), zoo models, eval mode, thread-count independence, unsupported graphs.

mod common;

use common::{fields, fields_mut, random_params, reference, to64, Rng, FIELD_NAMES, P64};
use mcufit_engine::{Engine, EngineError, Mode, Params};
use mcufit_ir::{Conv2d, Graph, GraphBuilder, NodeId, Op, Padding, Pool2d, Shape};
use Padding::{Same, Valid};

fn conv(b: &mut GraphBuilder, x: NodeId, filters: usize, k: [usize; 2], s: [usize; 2], p: Padding) -> NodeId {
    b.add(Op::Conv2d(Conv2d { filters, kernel: k, stride: s, padding: p, groups: 1, bias: true }), &[x])
}
fn pool(b: &mut GraphBuilder, x: NodeId, max: bool, k: usize, s: usize, p: Padding) -> NodeId {
    let pl = Pool2d { pool: [k, k], stride: Some([s, s]), padding: p };
    b.add(if max { Op::MaxPool2d(pl) } else { Op::AvgPool2d(pl) }, &[x])
}
/// flatten → dense(5): the logits.
fn head(mut b: GraphBuilder, x: NodeId) -> Graph {
    let f = b.add(Op::Flatten, &[x]);
    b.dense(f, 5);
    b.build().unwrap()
}

fn sum_dl(y: &[f64], dl: &[f32]) -> f64 {
    y.iter().zip(dl).map(|(&y, &d)| y * d as f64).sum()
}

/// Checks the forward against the reference and every gradient tensor against a central
/// difference of the f64 reference along a random direction.
fn check_grads(g: &Graph, mask_site: Vec<Option<usize>>, n: usize, seed: u64, x_scale: f32) {
    let logits = g.output();
    let params = random_params(g, &mask_site, seed);
    let mut rng = Rng::new(seed + 1);
    let x = rng.vec(n * g.input_shape().elements(), -x_scale, x_scale);
    let mut e = Engine::new(g, logits, mask_site.clone()).unwrap();
    let out = e.forward(&params, &x, n, Mode::Train).unwrap().to_vec();
    let p64 = to64(&params);
    let r = reference(g, logits, &mask_site, &p64, &x, n, true);
    let scale = r.iter().fold(1.0f64, |a, &v| a.max(v.abs()));
    for (i, (&a, &b)) in out.iter().zip(&r).enumerate() {
        assert!((a as f64 - b).abs() <= 1e-4 * scale, "{}: logit {i}: engine {a} vs reference {b}", g.name);
    }
    let dl = rng.vec(out.len(), -1.0, 1.0);
    let grads = e.backward(&params, &dl).unwrap().clone();
    let loss = |p: &P64| sum_dl(&reference(g, logits, &mask_site, p, &x, n, true), &dl);
    let eps = 1e-5;
    let mut checked = 0;
    let mut check = |what: String, gv: &[f32], set: &dyn Fn(&mut P64, &[f64])| {
        let v: Vec<f64> = rng.vec(gv.len(), -1.0, 1.0).into_iter().map(f64::from).collect();
        let analytic: f64 = gv.iter().zip(&v).map(|(&g, &v)| g as f64 * v).sum();
        let mag: f64 = gv.iter().zip(&v).map(|(&g, &v)| (g as f64 * v).abs()).sum();
        let mut plus = p64.clone();
        set(&mut plus, &v.iter().map(|v| v * eps).collect::<Vec<_>>());
        let mut minus = p64.clone();
        set(&mut minus, &v.iter().map(|v| -v * eps).collect::<Vec<_>>());
        let numeric = (loss(&plus) - loss(&minus)) / (2.0 * eps);
        assert!(
            // The floor covers f32 rounding where the true gradient is 0 (a bias before a BN).
            (analytic - numeric).abs() <= 2e-3 * mag.max(numeric.abs()) + 1e-5,
            "{}: {what}: analytic {analytic} vs numeric {numeric} (scale {mag})",
            g.name
        );
        checked += 1;
    };
    for (id, (pn, gn)) in params.nodes.iter().zip(&grads.nodes).enumerate() {
        let (pf, gf) = (fields(pn), fields(gn));
        for f in 0..7 {
            if f >= 5 {
                assert!(gf[f].is_none(), "{}: node {id}: gradient carries {}", g.name, FIELD_NAMES[f]);
                continue;
            }
            assert_eq!(pf[f].as_ref().map(Vec::len), gf[f].as_ref().map(Vec::len), "node {id} {}", FIELD_NAMES[f]);
            let Some(gv) = gf[f] else { continue };
            check(format!("node {id} ('{}') {}", g.nodes[id].name, FIELD_NAMES[f]), gv, &|p, d| {
                p.nodes[id][f].as_mut().unwrap().iter_mut().zip(d).for_each(|(a, b)| *a += b)
            });
        }
    }
    for (gi, (pm, gm)) in params.masks.iter().zip(&grads.masks).enumerate() {
        assert_eq!(pm.as_ref().map(Vec::len), gm.as_ref().map(Vec::len), "mask {gi}");
        let Some(gv) = gm else { continue };
        check(format!("mask {gi}"), gv, &|p, d| {
            p.masks[gi].as_mut().unwrap().iter_mut().zip(d).for_each(|(a, b)| *a += b)
        });
    }
    assert!(checked > 0);
}

fn no_masks(g: &Graph) -> Vec<Option<usize>> {
    vec![None; g.nodes.len()]
}

fn check(g: Graph) {
    check_grads(&g, no_masks(&g), 3, 7, 1.0);
}

const IN: Shape = Shape::new(7, 9, 3);

#[test]
fn conv_3x3_same_stride_1_and_2() {
    let mut b = GraphBuilder::new("conv-same", IN);
    let x = conv(&mut b, 0, 4, [3, 3], [1, 1], Same);
    let x = conv(&mut b, x, 5, [3, 3], [2, 2], Same);
    let x = conv(&mut b, x, 3, [3, 3], [1, 1], Same);
    check(head(b, x));
}

#[test]
fn conv_valid_and_rectangular() {
    let mut b = GraphBuilder::new("conv-valid", Shape::new(11, 8, 2));
    let x = conv(&mut b, 0, 4, [3, 3], [2, 2], Valid);
    let x = conv(&mut b, x, 5, [3, 2], [1, 1], Valid);
    let x = conv(&mut b, x, 3, [4, 3], [2, 1], Same);
    check(head(b, x));
}

#[test]
fn conv_1x1_stride_1_and_2_and_no_bias() {
    let mut b = GraphBuilder::new("conv-1x1", IN);
    let x = conv(&mut b, 0, 4, [3, 3], [1, 1], Same);
    let x = conv(&mut b, x, 6, [1, 1], [1, 1], Same);
    let x = conv(&mut b, x, 5, [1, 1], [2, 2], Same);
    let x = b.add(
        Op::Conv2d(Conv2d { filters: 4, kernel: [1, 1], stride: [1, 1], padding: Valid, groups: 1, bias: false }),
        &[x],
    );
    check(head(b, x));
}

#[test]
fn depthwise_same_stride_2_valid_and_grouped_conv() {
    let mut b = GraphBuilder::new("depthwise", IN);
    let x = conv(&mut b, 0, 4, [3, 3], [1, 1], Same);
    let x = b.dw(x, 3, 2, Same);
    let x = b.dw(x, 3, 1, Valid);
    // groups == channels == filters: a depthwise conv written as a grouped conv2d.
    let x = b.add(
        Op::Conv2d(Conv2d { filters: 4, kernel: [2, 2], stride: [1, 1], padding: Same, groups: 4, bias: true }),
        &[x],
    );
    check(head(b, x));
}

#[test]
fn dense_chain() {
    let mut b = GraphBuilder::new("dense", IN);
    let x = conv(&mut b, 0, 4, [3, 3], [2, 2], Same);
    let f = b.add(Op::Flatten, &[x]);
    let h = b.dense(f, 7);
    let h = b.relu(h);
    let h = b.dense(h, 6);
    b.dense(h, 5);
    check(b.build().unwrap());
}

#[test]
fn batch_norm_train_through_batch_stats() {
    let mut b = GraphBuilder::new("bn", IN);
    let x = b.conv_bn_relu(0, 4, 3, 1, Same);
    let x = conv(&mut b, x, 5, [3, 3], [2, 2], Same);
    let x = b.bn(x);
    check(head(b, x));
}

#[test]
fn relu_and_relu6() {
    let mut b = GraphBuilder::new("relu6", IN);
    let x = conv(&mut b, 0, 4, [3, 3], [1, 1], Same);
    let x = b.add(Op::Relu6, &[x]);
    let x = conv(&mut b, x, 5, [3, 3], [1, 1], Same);
    let x = b.relu(x);
    let g = head(b, x);
    // Inputs large enough that some pre-activations pass 6.
    check_grads(&g, no_masks(&g), 3, 11, 8.0);
}

#[test]
fn max_pool_same_odd_and_valid() {
    let mut b = GraphBuilder::new("max-pool", IN);
    let x = conv(&mut b, 0, 4, [3, 3], [1, 1], Same);
    let x = pool(&mut b, x, true, 3, 2, Same); // 7x9 -> 4x5
    let x = conv(&mut b, x, 4, [3, 3], [1, 1], Same);
    let x = pool(&mut b, x, true, 2, 2, Same); // 4x5 -> 2x3 (odd width: one padded column)
    let y = pool(&mut b, x, true, 2, 1, Valid); // 2x3 -> 1x2
    check(head(b, y));
}

#[test]
fn avg_pool_same_odd_and_valid() {
    let mut b = GraphBuilder::new("avg-pool", IN);
    let x = conv(&mut b, 0, 4, [3, 3], [1, 1], Same);
    let x = pool(&mut b, x, false, 3, 2, Same);
    let x = conv(&mut b, x, 4, [3, 3], [1, 1], Same);
    let x = pool(&mut b, x, false, 2, 2, Same);
    let x = pool(&mut b, x, false, 2, 1, Valid);
    check(head(b, x));
}

#[test]
fn global_avg_pool() {
    let mut b = GraphBuilder::new("gap", IN);
    let x = conv(&mut b, 0, 4, [3, 3], [2, 2], Same);
    let x = conv(&mut b, x, 6, [3, 3], [1, 1], Same);
    let p = b.add(Op::GlobalAvgPool, &[x]);
    b.dense(p, 5);
    check(b.build().unwrap());
}

#[test]
fn residual_add_and_three_way_add() {
    let mut b = GraphBuilder::new("add", IN);
    let x = b.conv_bn_relu(0, 4, 3, 1, Same);
    let y = conv(&mut b, x, 4, [3, 3], [1, 1], Same);
    let s = b.add(Op::Add, &[x, y]);
    let s = b.relu(s);
    let z = conv(&mut b, s, 4, [1, 1], [1, 1], Same);
    let t = b.add(Op::Add, &[s, z, x]);
    check(head(b, t));
}

#[test]
fn concat_channels() {
    let mut b = GraphBuilder::new("concat", IN);
    let x = conv(&mut b, 0, 4, [3, 3], [1, 1], Same);
    let a = conv(&mut b, x, 3, [1, 1], [1, 1], Same);
    let c = conv(&mut b, x, 5, [3, 3], [1, 1], Same);
    let cat = b.add(Op::Concat, &[a, c, x]);
    let y = conv(&mut b, cat, 4, [3, 3], [2, 2], Same);
    check(head(b, y));
}

#[test]
fn flatten_and_reshape_share_data() {
    let mut b = GraphBuilder::new("reshape", IN);
    let x = conv(&mut b, 0, 4, [3, 3], [1, 1], Same);
    let r = b.add(Op::Reshape { shape: Shape::new(9, 7, 4) }, &[x]);
    let y = conv(&mut b, r, 3, [3, 3], [2, 2], Same);
    let f = b.add(Op::Flatten, &[y]);
    let r2 = b.add(Op::Reshape { shape: Shape::new(1, 1, 5 * 4 * 3) }, &[f]);
    b.dense(r2, 5);
    check(b.build().unwrap());
}

#[test]
fn masks_on_bn_conv_relu_and_dense_sites() {
    let mut b = GraphBuilder::new("masks", IN);
    let c1 = conv(&mut b, 0, 4, [3, 3], [1, 1], Same);
    let n1 = b.bn(c1);
    let r1 = b.relu(n1);
    let c2 = conv(&mut b, r1, 4, [3, 3], [1, 1], Same);
    let s = b.add(Op::Add, &[c2, r1]);
    let r2 = b.relu(s);
    let f = b.add(Op::Flatten, &[r2]);
    let d = b.dense(f, 6);
    let d = b.relu(d);
    b.dense(d, 5);
    let g = b.build().unwrap();
    let mut sites = no_masks(&g);
    sites[n1] = Some(0); // BN site (fused into the BN)
    sites[c2] = Some(0); // same group at a conv output (tied by the add)
    sites[r2] = Some(1); // a ReLU output: its backward must use the pre-mask value
    sites[d - 1] = Some(2); // the dense layer
    check_grads(&g, sites, 3, 5, 1.0);
}

#[test]
fn bn_mask_site_feeding_an_add() {
    let mut b = GraphBuilder::new("bn-masks", IN);
    let x = b.conv_bn_relu(0, 4, 3, 1, Same);
    let c = conv(&mut b, x, 4, [3, 3], [1, 1], Same);
    let n = b.bn(c);
    let s = b.add(Op::Add, &[n, x]);
    let s = b.relu(s);
    let g = head(b, s);
    let mut sites = no_masks(&g);
    sites[2] = Some(0);
    sites[n] = Some(1);
    check_grads(&g, sites, 4, 9, 1.0);
}

// ---- zoo, eval mode, determinism, unsupported ----------------------------------------------

/// The logits node (input of a final softmax) and mask sites as mcufit-train places them.
fn zoo_plan(g: &Graph) -> (NodeId, Vec<Option<usize>>) {
    let out = g.output();
    let logits = if matches!(g.nodes[out].op, Op::Softmax) { g.nodes[out].inputs[0] } else { out };
    let consumers = g.consumers();
    let mut sites = vec![None; g.nodes.len()];
    for grp in &g.channel_groups().unwrap().groups {
        for &p in &grp.producers {
            let site = match consumers[p].as_slice() {
                [c] if matches!(g.nodes[*c].op, Op::BatchNorm(_)) => *c,
                _ => p,
            };
            sites[site] = Some(grp.id);
        }
    }
    (logits, sites)
}

fn zoo_input(g: &Graph, n: usize, seed: u64) -> Vec<f32> {
    Rng::new(seed).vec(n * g.input_shape().elements(), -1.0, 1.0)
}

#[test]
fn every_zoo_model_runs_forward_and_backward() {
    for name in mcufit_ir::zoo::names() {
        let g = mcufit_ir::zoo::get(name).unwrap();
        let (logits, sites) = zoo_plan(&g);
        let params = random_params(&g, &sites, 3);
        let x = zoo_input(&g, 2, 4);
        let mut e = Engine::new(&g, logits, sites).unwrap();
        for mode in [Mode::Train, Mode::Eval] {
            let y = e.forward(&params, &x, 2, mode).unwrap();
            assert_eq!(y.len(), 2 * g.num_outputs(), "{name}");
            assert!(y.iter().all(|v| v.is_finite()), "{name} {mode:?}: {y:?}");
        }
        e.forward(&params, &x, 2, Mode::Train).unwrap();
        let dl = vec![0.1; 2 * g.num_outputs()];
        let grads = e.backward(&params, &dl).unwrap();
        let finite = grads.nodes.iter().flat_map(|n| fields(n).into_iter().flatten()).flatten().all(|v| v.is_finite());
        assert!(finite, "{name}: non-finite gradient");
    }
}

#[test]
fn small_zoo_models_match_the_reference() {
    for name in ["mnist-cnn", "ds-cnn", "resnet-8", "branchy-net", "mnist-ds"] {
        let g = mcufit_ir::zoo::get(name).unwrap();
        let (logits, sites) = zoo_plan(&g);
        let params = random_params(&g, &sites, 3);
        let x = zoo_input(&g, 2, 4);
        let mut e = Engine::new(&g, logits, sites.clone()).unwrap();
        for mode in [Mode::Train, Mode::Eval] {
            let y = e.forward(&params, &x, 2, mode).unwrap();
            let r = reference(&g, logits, &sites, &to64(&params), &x, 2, mode == Mode::Train);
            let scale = r.iter().fold(1.0f64, |a, &v| a.max(v.abs()));
            for (&a, &b) in y.iter().zip(&r) {
                assert!((a as f64 - b).abs() <= 1e-3 * scale, "{name} {mode:?}: {a} vs {b}");
            }
        }
    }
}

#[test]
fn eval_mode_uses_running_stats() {
    let g = mcufit_ir::zoo::get("resnet-8").unwrap();
    let (logits, sites) = zoo_plan(&g);
    let mut params = random_params(&g, &sites, 21);
    let x = zoo_input(&g, 4, 22);
    let mut e = Engine::new(&g, logits, sites).unwrap();
    let train = e.forward(&params, &x, 4, Mode::Train).unwrap().to_vec();
    // With the running statistics set to this batch's statistics, eval reproduces train.
    for id in 0..g.nodes.len() {
        if let Some((m, v)) = e.batch_stats(id) {
            params.nodes[id].running_mean = Some(m.to_vec());
            params.nodes[id].running_var = Some(v.to_vec());
        } else {
            assert!(!matches!(g.nodes[id].op, Op::BatchNorm(_)), "no batch stats for BN node {id}");
        }
    }
    let eval = e.forward(&params, &x, 4, Mode::Eval).unwrap().to_vec();
    assert!(e.batch_stats(1).is_none(), "batch stats after an eval forward");
    for (a, b) in train.iter().zip(&eval) {
        assert!((a - b).abs() <= 1e-3 * (1.0 + a.abs()), "{a} vs {b}");
    }
    // Different running statistics give different logits.
    for p in params.nodes.iter_mut().filter(|p| p.running_var.is_some()) {
        p.running_var.as_mut().unwrap().iter_mut().for_each(|v| *v *= 4.0);
    }
    let other = e.forward(&params, &x, 4, Mode::Eval).unwrap();
    assert!(other.iter().zip(&eval).any(|(a, b)| (a - b).abs() > 1e-3));
    // Backward needs a training forward.
    assert!(matches!(e.backward(&params, &[0.0; 40]), Err(EngineError::Invalid(_))));
}

fn step(g: &Graph, threads: usize, n: usize) -> (Vec<f32>, Params) {
    let (logits, sites) = zoo_plan(g);
    let params = random_params(g, &sites, 31);
    let x = zoo_input(g, n, 32);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        let mut e = Engine::new(g, logits, sites).unwrap();
        let y = e.forward(&params, &x, n, Mode::Train).unwrap().to_vec();
        let dl: Vec<f32> = y.iter().map(|v| v.sin()).collect();
        let grads = e.backward(&params, &dl).unwrap().clone();
        (y, grads)
    })
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    for name in ["resnet-8", "ds-cnn", "branchy-net", "mnist-cnn"] {
        let g = mcufit_ir::zoo::get(name).unwrap();
        let one = step(&g, 1, 16);
        for threads in [2, 3] {
            let other = step(&g, threads, 16);
            assert!(one.0 == other.0, "{name}: logits differ between 1 and {threads} threads");
            assert!(one.1 == other.1, "{name}: gradients differ between 1 and {threads} threads");
        }
    }
}

#[test]
fn batch_size_changes_and_repeated_steps_agree() {
    let g = mcufit_ir::zoo::get("branchy-net").unwrap();
    let (logits, sites) = zoo_plan(&g);
    let params = random_params(&g, &sites, 41);
    let mut e = Engine::new(&g, logits, sites).unwrap();
    let x4 = zoo_input(&g, 4, 42);
    let first = e.forward(&params, &x4, 4, Mode::Train).unwrap().to_vec();
    let g1 = e.backward(&params, &[0.5; 40]).unwrap().clone();
    e.forward(&params, &x4[..g.input_shape().elements() * 3], 3, Mode::Train).unwrap();
    e.backward(&params, &[0.5; 30]).unwrap();
    assert_eq!(e.forward(&params, &x4, 4, Mode::Train).unwrap(), &first[..]);
    assert_eq!(e.backward(&params, &[0.5; 40]).unwrap(), &g1);
}

#[test]
fn grouped_conv_is_unsupported_and_bad_inputs_are_invalid() {
    let mut b = GraphBuilder::new("grouped", Shape::new(6, 6, 4));
    let x = b.add(
        Op::Conv2d(Conv2d { filters: 4, kernel: [3, 3], stride: [1, 1], padding: Same, groups: 2, bias: true }),
        &[0],
    );
    let g = head(b, x);
    let e = Engine::new(&g, g.output(), no_masks(&g));
    assert!(matches!(e, Err(EngineError::Unsupported(m)) if m.contains("groups=2")));

    let mut b = GraphBuilder::new("ok", IN);
    let x = conv(&mut b, 0, 4, [3, 3], [1, 1], Same);
    let g = head(b, x);
    assert!(matches!(Engine::new(&g, 1, no_masks(&g)), Err(EngineError::Invalid(_))), "non-flat logits");
    let mut e = Engine::new(&g, g.output(), no_masks(&g)).unwrap();
    let params = random_params(&g, &no_masks(&g), 1);
    assert!(matches!(e.forward(&params, &[0.0; 10], 1, Mode::Train), Err(EngineError::Invalid(_))));
    assert!(matches!(e.backward(&params, &[0.0; 5]), Err(EngineError::Invalid(_))), "backward before forward");
    let mut missing = params.clone();
    fields_mut(&mut missing.nodes[1])[0].take();
    let x = vec![0.0; IN.elements()];
    let err = e.forward(&missing, &x, 1, Mode::Train).unwrap_err().to_string();
    assert!(err.contains("kernel"), "{err}");
}

/// `Engine::output`: the logits node's output is what `forward` returned; a ReLU fused into its
/// BN or add is readable, the fused BN / add itself and (in eval mode) a conv with its BN folded
/// in are not (`None`), nor in training a BN (+ ReLU) whose only reader (a 3x3 conv here, or an
/// add) computes its output on the fly; nothing is readable before a forward.
#[test]
fn outputs_are_readable_exactly_where_they_are_materialised() {
    let g = mcufit_ir::zoo::get("resnet-8").unwrap();
    let (logits, sites) = zoo_plan(&g);
    let params = random_params(&g, &sites, 5);
    let x = zoo_input(&g, 2, 6);
    let mut e = Engine::new(&g, logits, sites).unwrap();
    assert!(e.output(logits).is_none());
    for mode in [Mode::Train, Mode::Eval] {
        let y = e.forward(&params, &x, 2, mode).unwrap().to_vec();
        assert_eq!(e.output(logits).unwrap(), &y[..]);
        let consumers = g.consumers();
        for (id, node) in g.nodes.iter().enumerate().take(logits + 1).skip(1) {
            let fused_into_relu = consumers[id].len() == 1
                && matches!(node.op, Op::BatchNorm(_) | Op::Add)
                && matches!(g.nodes[consumers[id][0]].op, Op::Relu | Op::Relu6);
            let folded = mode == Mode::Eval
                && matches!(node.op, Op::Conv2d(_))
                && consumers[id].len() == 1
                && matches!(g.nodes[consumers[id][0]].op, Op::BatchNorm(_));
            let bn_out = |i: NodeId| matches!(g.nodes[i].op, Op::BatchNorm(_)) && consumers[i].len() == 1;
            let by_reader = mode == Mode::Train
                && consumers[id].len() == 1
                && match &g.nodes[consumers[id][0]].op {
                    Op::Conv2d(c) => {
                        mcufit_engine::direct_convs() && c.kernel == [3, 3] && (bn_out(id) || bn_out(node.inputs[0]))
                    }
                    Op::Add => bn_out(id),
                    _ => false,
                };
            let out = e.output(id);
            if fused_into_relu || folded || by_reader {
                assert!(out.is_none(), "{mode:?} node {id} ({}) is not materialised", node.name);
            } else if matches!(node.op, Op::Relu | Op::Relu6 | Op::Add) {
                let out = out.unwrap_or_else(|| panic!("{mode:?} node {id} ({}) must be readable", node.name));
                assert_eq!(out.len(), 2 * g.shapes().unwrap()[id].elements());
                assert!(out.iter().all(|v| v.is_finite() && *v >= 0.0 || matches!(node.op, Op::Add)));
            }
        }
    }
}

// ---- fused kernels: BN statistics in the conv, BN (+ ReLU) inside a max pooling --------------

/// BN + ReLU / ReLU6 / no ReLU feeding a max pooling (computed on the fly by the pooling in
/// training): windows that tile the input (odd sizes: partial last windows; the BN backward then
/// reads the pooling's gradient directly) and overlapping ones (fused forward only), with and
/// without mask sites, against the unfused f64 reference and its central differences. The convs
/// before the BNs compute the BNs' input gradients image by image (deferred BN backward).
#[test]
fn bn_relu_max_pool_fused() {
    let mut b = GraphBuilder::new("bn-pool", Shape::new(9, 11, 3));
    let c0 = conv(&mut b, 0, 4, [3, 3], [1, 1], Same);
    let c1 = conv(&mut b, c0, 5, [3, 3], [1, 1], Same); // its dY: the BN's, from the pooling's
    let n1 = b.bn(c1);
    let r1 = b.relu(n1);
    let p1 = pool(&mut b, r1, true, 2, 2, Same); // 9x11 -> 5x6, tiled (partial last row / column)
    let c2 = conv(&mut b, p1, 4, [3, 3], [1, 1], Same);
    let n2 = b.bn(c2);
    let p2 = pool(&mut b, n2, true, 3, 2, Same); // no ReLU, overlapping windows: 5x6 -> 3x3
    let c3 = conv(&mut b, p2, 6, [1, 1], [1, 1], Same);
    let n3 = b.bn(c3);
    let r3 = b.add(Op::Relu6, &[n3]);
    let p3 = pool(&mut b, r3, true, 2, 1, Valid); // 3x3 -> 2x2, stride 1
    let g = head(b, p3);
    check_grads(&g, no_masks(&g), 3, 21, 1.0);
    check_grads(&g, no_masks(&g), 2, 22, 8.0); // some ReLU6 inputs pass 6
    let mut sites = no_masks(&g);
    sites[n1] = Some(0);
    sites[n2] = Some(1);
    sites[p3] = Some(2);
    check_grads(&g, sites, 3, 23, 1.0);
    // The BN / ReLU outputs a pooling computes are not materialised in training, only in eval.
    let params = random_params(&g, &no_masks(&g), 24);
    let x = Rng::new(25).vec(2 * g.input_shape().elements(), -1.0, 1.0);
    let mut e = Engine::new(&g, g.output(), no_masks(&g)).unwrap();
    e.forward(&params, &x, 2, Mode::Train).unwrap();
    for id in [n1, r1, n2, n3, r3] {
        assert!(e.output(id).is_none(), "node {id} is computed by its pooling in training");
    }
    assert!(e.output(p1).is_some() && e.output(c1).is_some());
    e.forward(&params, &x, 2, Mode::Eval).unwrap();
    assert!([r1, n2, r3].iter().all(|&id| e.output(id).is_some()));
}

/// The BN statistics a conv computes as it writes its output (chunks shifted by their own first
/// row, re-centred and summed in f64) match the mean and variance of that output, also when the
/// mean is far larger than the deviation (a large bias).
#[test]
fn bn_stats_fused_into_the_conv_match_its_output() {
    let mut b = GraphBuilder::new("bn-stats", Shape::new(12, 10, 3));
    let c1 = conv(&mut b, 0, 7, [3, 3], [1, 1], Same); // direct (padded) convolution
    let n1 = b.bn(c1);
    let r1 = b.relu(n1);
    let c2 = conv(&mut b, r1, 5, [3, 3], [2, 2], Same); // im2col chunks
    let n2 = b.bn(c2);
    let c3 = conv(&mut b, n2, 70, [1, 1], [1, 1], Same); // 1x1 GEMM, wide
    let n3 = b.bn(c3);
    let g = head(b, n3);
    let mut params = random_params(&g, &no_masks(&g), 51);
    for id in [c1, c2, c3] {
        params.nodes[id].bias.as_mut().unwrap().iter_mut().enumerate().for_each(|(i, v)| *v = 100.0 + i as f32);
    }
    let n = 5;
    let x = Rng::new(52).vec(n * g.input_shape().elements(), -1.0, 1.0);
    let mut e = Engine::new(&g, g.output(), no_masks(&g)).unwrap();
    e.forward(&params, &x, n, Mode::Train).unwrap();
    for (conv_id, bn) in [(c1, n1), (c2, n2), (c3, n3)] {
        assert_batch_stats(&e, conv_id, bn);
    }
}

/// The batch statistics of BN `bn` after a training forward are the mean and biased variance of
/// its producer's output (`producer`, materialised in training), per channel.
fn assert_batch_stats(e: &Engine, producer: NodeId, bn: NodeId) {
    let y = e.output(producer).unwrap();
    let (mean, var) = e.batch_stats(bn).unwrap();
    let c = mean.len();
    let rows = (y.len() / c) as f64;
    for ch in 0..c {
        let m: f64 = y.iter().skip(ch).step_by(c).map(|&v| v as f64).sum::<f64>() / rows;
        let v: f64 = y.iter().skip(ch).step_by(c).map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / rows;
        assert!((mean[ch] as f64 - m).abs() <= 1e-5 * m.abs(), "node {bn} ch {ch}: mean {} vs {m}", mean[ch]);
        assert!((var[ch] as f64 - v).abs() <= 1e-3 * v + 1e-6, "node {bn} ch {ch}: var {} vs {v}", var[ch]);
    }
}

/// BN outputs read only by an add (one BN + another input, or two BNs; with and without the
/// add's ReLU, with mask sites) are computed by the add in training and never stored, against
/// the unfused f64 reference and its central differences.
#[test]
fn bn_outputs_computed_by_their_add() {
    let mut b = GraphBuilder::new("bn-add", IN);
    let x = b.conv_bn_relu(0, 4, 3, 1, Same);
    let c1 = conv(&mut b, x, 4, [3, 3], [1, 1], Same);
    let n1 = b.bn(c1);
    let s1 = b.add(Op::Add, &[x, n1]); // raw + BN, no ReLU
    let c2 = conv(&mut b, s1, 6, [3, 3], [2, 2], Same);
    let n2 = b.bn(c2);
    let c3 = conv(&mut b, s1, 6, [1, 1], [2, 2], Same);
    let n3 = b.bn(c3);
    let s2 = b.add(Op::Add, &[n2, n3]); // BN + BN, ReLU6
    let r2 = b.add(Op::Relu6, &[s2]);
    let g = head(b, r2);
    check_grads(&g, no_masks(&g), 3, 61, 1.0);
    check_grads(&g, no_masks(&g), 2, 62, 6.0);
    let mut sites = no_masks(&g);
    sites[n1] = Some(0);
    sites[n2] = Some(1);
    sites[n3] = Some(1);
    check_grads(&g, sites, 3, 63, 1.0);
    let params = random_params(&g, &no_masks(&g), 64);
    let xs = Rng::new(65).vec(2 * IN.elements(), -1.0, 1.0);
    let mut e = Engine::new(&g, g.output(), no_masks(&g)).unwrap();
    e.forward(&params, &xs, 2, Mode::Train).unwrap();
    assert!([n1, n2, n3].iter().all(|&id| e.output(id).is_none()));
    assert!(e.output(s1).is_some());
    e.forward(&params, &xs, 2, Mode::Eval).unwrap();
    assert!(e.output(s1).is_some());
}

/// BN (+ ReLU6 / no ReLU) outputs read only by a direct 3x3 conv (stride 1 and 2) are applied as
/// the conv pads its input in training (never stored), with and without a BN mask site, against
/// the unfused f64 reference and its central differences.
#[test]
fn bn_outputs_computed_by_the_next_conv() {
    let mut b = GraphBuilder::new("bn-conv", IN);
    let c1 = conv(&mut b, 0, 5, [3, 3], [1, 1], Same);
    let n1 = b.bn(c1);
    let r1 = b.add(Op::Relu6, &[n1]);
    let c2 = conv(&mut b, r1, 4, [3, 3], [1, 1], Same);
    let n2 = b.bn(c2);
    let c3 = conv(&mut b, n2, 6, [3, 3], [2, 2], Valid);
    let g = head(b, c3);
    check_grads(&g, no_masks(&g), 3, 71, 1.0);
    check_grads(&g, no_masks(&g), 2, 72, 6.0);
    let mut sites = no_masks(&g);
    sites[n1] = Some(0);
    sites[n2] = Some(1);
    check_grads(&g, sites, 3, 73, 1.0);
    let params = random_params(&g, &no_masks(&g), 74);
    let xs = Rng::new(75).vec(2 * IN.elements(), -1.0, 1.0);
    let mut e = Engine::new(&g, g.output(), no_masks(&g)).unwrap();
    e.forward(&params, &xs, 2, Mode::Train).unwrap();
    // Without the direct conv kernels (no AVX-512) the 3x3 convs run as im2col + GEMM and the
    // BN outputs are stored (n1 never is: its ReLU6 computes it); the gradients above hold
    // either way.
    let fused = mcufit_engine::direct_convs();
    assert!(e.output(n1).is_none() && [r1, n2].iter().all(|&id| e.output(id).is_none() == fused));
    e.forward(&params, &xs, 2, Mode::Eval).unwrap();
    assert!([r1, n2].iter().all(|&id| e.output(id).is_some()));
}

/// A depthwise conv whose only consumer is a BN: in training it computes the BN's statistics as
/// it writes each image and the BN's input gradient image by image in its own backward (also
/// when a tiling max pooling reads the BN); in evaluation it applies the BN as it writes. A
/// depthwise conv that is the only reader of a BN (+ ReLU / ReLU6) computes that BN's output
/// image by image in training, forward and backward. Against the unfused f64 reference and its
/// central differences, with and without mask sites, in both modes, and the statistics against
/// the depthwise output (a large bias: mean >> deviation).
#[test]
fn depthwise_computes_its_bn() {
    let mut b = GraphBuilder::new("dw-bn", Shape::new(9, 11, 3));
    let x = b.conv_bn_relu(0, 6, 3, 1, Same);
    let d1 = b.dw(x, 3, 1, Same);
    let n1 = b.bn(d1);
    let r1 = b.relu(n1);
    let c1 = conv(&mut b, r1, 5, [1, 1], [1, 1], Same);
    let n2 = b.bn(c1);
    let r2 = b.add(Op::Relu6, &[n2]);
    let d2 = b.dw(r2, 3, 2, Same); // 9x11 -> 5x6
    let n3 = b.bn(d2);
    let r3 = b.relu(n3);
    let p3 = pool(&mut b, r3, true, 2, 2, Same); // tiles: the BN reads the pooling's dY
    let d3 = b.dw(p3, 2, 1, Valid);
    let n4 = b.bn(d3); // no ReLU, straight into the head
    let g = head(b, n4);
    check_grads(&g, no_masks(&g), 3, 61, 1.0);
    check_grads(&g, no_masks(&g), 2, 62, 8.0);
    // Masks on BNs read by a 1x1 conv (n1), by a depthwise conv (n2), by a pooling (n3), and on
    // the last one (n4).
    let mut sites = no_masks(&g);
    sites[n1] = Some(0);
    sites[n2] = Some(1);
    sites[n3] = Some(2);
    sites[n4] = Some(3);
    check_grads(&g, sites.clone(), 3, 63, 1.0);
    for mask_site in [no_masks(&g), sites] {
        let mut params = random_params(&g, &mask_site, 64);
        for id in [d1, d2, d3] {
            params.nodes[id].bias.as_mut().unwrap().iter_mut().enumerate().for_each(|(i, v)| *v = 50.0 + i as f32);
        }
        let n = 3;
        let x = Rng::new(65).vec(n * g.input_shape().elements(), -1.0, 1.0);
        let mut e = Engine::new(&g, g.output(), mask_site.clone()).unwrap();
        e.forward(&params, &x, n, Mode::Train).unwrap();
        for (dw, bn) in [(d1, n1), (d2, n3), (d3, n4)] {
            assert_batch_stats(&e, dw, bn);
        }
        let logits = g.output();
        let y = e.forward(&params, &x, n, Mode::Eval).unwrap().to_vec();
        let r = reference(&g, logits, &mask_site, &to64(&params), &x, n, false);
        let scale = r.iter().fold(1.0f64, |a, &v| a.max(v.abs()));
        for (&a, &b) in y.iter().zip(&r) {
            assert!((a as f64 - b).abs() <= 1e-4 * scale, "eval: {a} vs reference {b}");
        }
        // Folded in evaluation: the depthwise buffers hold the BNs' outputs.
        assert!([d1, d2, d3].iter().all(|&id| e.output(id).is_none()));
        assert!(e.output(n4).is_some());
    }
}

/// Convs of the GEMM forms (1x1 on the input itself, im2col at stride 2, a wide 1x1) whose only
/// consumer is a training-mode BN: the BN leaves its input gradient to the conv, which computes it
/// chunk by chunk in its backward (the bias gradient from it image by image), also when a tiling
/// max pooling reads the BN. Against the f64 reference's central differences, with mask sites.
#[test]
fn gemm_convs_compute_their_bn_input_gradient() {
    let mut b = GraphBuilder::new("gemm-bn", Shape::new(10, 9, 3));
    let c0 = conv(&mut b, 0, 6, [1, 1], [1, 1], Same); // direct GEMM on the input
    let n0 = b.bn(c0);
    let r0 = b.relu(n0);
    let c1 = conv(&mut b, r0, 5, [3, 3], [2, 2], Same); // im2col: 10x9 -> 5x5
    let n1 = b.bn(c1);
    let r1 = b.relu(n1);
    let p1 = pool(&mut b, r1, true, 2, 2, Same); // tiles: 5x5 -> 3x3
    let c2 = conv(&mut b, p1, 70, [1, 1], [1, 1], Same); // wide 1x1
    let n2 = b.bn(c2);
    let r2 = b.add(Op::Relu6, &[n2]);
    let g = head(b, r2);
    check_grads(&g, no_masks(&g), 3, 71, 1.0);
    check_grads(&g, no_masks(&g), 2, 72, 8.0);
    let mut sites = no_masks(&g);
    sites[n0] = Some(0);
    sites[n1] = Some(1);
    sites[n2] = Some(2);
    check_grads(&g, sites, 4, 73, 1.0);
}
