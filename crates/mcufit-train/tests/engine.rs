//! Engine tests: op gradients vs finite differences, forward vs a naive reference, training,
//! save/load and resume. All seeded and small (the CI has 2 cores).

use std::path::PathBuf;

use mcufit_ir::{Conv2d, Dense, Graph, GraphBuilder, Op, Padding, Pool2d, Shape};
use mcufit_train::burn::tensor::{Device, Tensor, TensorData};
use mcufit_train::*;

// ---- helpers -----------------------------------------------------------------------------

fn dev() -> Device {
    Device::flex()
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mcufit-train-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn rand_vec(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut r = SplitMix64::new(seed);
    (0..n).map(|_| r.uniform(lo, hi)).collect()
}

fn host(t: Tensor<1>) -> Vec<f32> {
    t.into_data().try_into_vec_as::<f32>().unwrap()
}

fn t1(v: &[f32], d: &Device) -> Tensor<1> {
    Tensor::from_data(TensorData::new(v.to_vec(), [v.len()]), d)
}

/// Checks d(sum(f(inputs) * r))/d(input_i) from autodiff against central finite differences.
/// `f` maps flat input tensors to a flat output; inputs are reshaped inside `f`.
fn gradcheck(name: &str, inputs: &[Vec<f32>], f: &dyn Fn(&[Tensor<1>]) -> Tensor<1>, eps: f32, tol: f32) {
    let ad = dev().autodiff();
    let plain = dev();
    // Output size from a plain forward.
    let ts: Vec<Tensor<1>> = inputs.iter().map(|v| t1(v, &plain)).collect();
    let out_n = f(&ts).dims()[0];
    let r = rand_vec(out_n, 999, -1.0, 1.0);
    let loss_plain = |vals: &[Vec<f32>]| -> f64 {
        let ts: Vec<Tensor<1>> = vals.iter().map(|v| t1(v, &plain)).collect();
        let y = host(f(&ts));
        y.iter().zip(&r).map(|(a, b)| *a as f64 * *b as f64).sum()
    };
    let leaves: Vec<Tensor<1>> = inputs.iter().map(|v| t1(v, &ad).require_grad()).collect();
    let y = f(&leaves);
    let loss = (y * t1(&r, &ad)).sum();
    let grads = loss.backward();
    for (i, leaf) in leaves.iter().enumerate() {
        let g = host(leaf.grad(&grads).unwrap_or_else(|| panic!("{name}: no gradient for input {i}")));
        let mut vals = inputs.to_vec();
        for j in 0..inputs[i].len() {
            let orig = vals[i][j];
            vals[i][j] = orig + eps;
            let lp = loss_plain(&vals);
            vals[i][j] = orig - eps;
            let lm = loss_plain(&vals);
            vals[i][j] = orig;
            let num = ((lp - lm) / (2.0 * eps as f64)) as f32;
            let a = g[j];
            assert!(
                (a - num).abs() <= tol * a.abs().max(num.abs()) + tol * 0.1,
                "{name}: input {i} element {j}: autodiff {a} vs finite difference {num}"
            );
        }
    }
}

fn r4(t: &Tensor<1>, d: [usize; 4]) -> Tensor<4> {
    t.clone().reshape(d)
}

// ---- gradient checks -----------------------------------------------------------------------

#[test]
fn grad_conv2d_stride2_same_asymmetric_and_grouped() {
    // 6x6 input, k3, s2, SAME: total pad 1 → (0, 1), the TF bottom/right case.
    assert_eq!(Padding::Same.pads(6, 3, 2), (0, 1));
    let x = rand_vec(2 * 3 * 6 * 6, 1, -1.0, 1.0);
    let w = rand_vec(4 * 3 * 3 * 3, 2, -0.5, 0.5);
    let b = rand_vec(4, 3, -0.5, 0.5);
    gradcheck(
        "conv2d s2 same",
        &[x.clone(), w, b],
        &|t| {
            let y = ops::conv2d(
                r4(&t[0], [2, 3, 6, 6]),
                r4(&t[1], [4, 3, 3, 3]),
                Some(t[2].clone()),
                [2, 2],
                Padding::Same,
                1,
            );
            assert_eq!(y.dims(), [2, 4, 3, 3]);
            y.reshape([2 * 4 * 9])
        },
        1e-2,
        2e-2,
    );
    // Even kernel, stride 1, SAME: total pad 1 → (0, 1) again; grouped (2 groups), no bias.
    let x = rand_vec(4 * 5 * 5, 4, -1.0, 1.0); // batch of 1
    let w = rand_vec(6 * 2 * 2 * 2, 5, -0.5, 0.5);
    gradcheck(
        "conv2d k2 same grouped",
        &[x, w],
        &|t| {
            let y = ops::conv2d(r4(&t[0], [1, 4, 5, 5]), r4(&t[1], [6, 2, 2, 2]), None, [1, 1], Padding::Same, 2);
            assert_eq!(y.dims(), [1, 6, 5, 5]);
            y.reshape([6 * 25])
        },
        1e-2,
        2e-2,
    );
}

#[test]
fn grad_conv2d_both_kernels_agree() {
    // Same conv through the direct and the im2col kernel: equal outputs, correct gradients.
    assert_eq!(Padding::Same.pads(7, 3, 2), (1, 1));
    let x = rand_vec(2 * 2 * 7, 31, -1.0, 1.0).repeat(7);
    let w = rand_vec(3 * 2 * 3 * 3, 32, -0.5, 0.5);
    let b = rand_vec(3, 33, -0.5, 0.5);
    for (name, im2col) in [("direct", false), ("im2col", true)] {
        let f = move |t: &[Tensor<1>]| {
            let (x, w, b) = (r4(&t[0], [2, 2, 7, 7]), r4(&t[1], [3, 2, 3, 3]), Some(t[2].clone()));
            let y = if im2col {
                ops::conv2d_im2col(x, w, b, [2, 1], Padding::Same)
            } else {
                ops::conv2d_direct(x, w, b, [2, 1], Padding::Same, 1)
            };
            assert_eq!(y.dims(), [2, 3, 4, 7]);
            y.reshape([2 * 3 * 28])
        };
        gradcheck(name, &[x.clone(), w.clone(), b.clone()], &f, 1e-2, 2e-2);
    }
    let ts: Vec<Tensor<1>> = [&x, &w, &b].iter().map(|v| t1(v, &dev())).collect();
    let a = ops::conv2d_direct(
        r4(&ts[0], [2, 2, 7, 7]),
        r4(&ts[1], [3, 2, 3, 3]),
        Some(ts[2].clone()),
        [2, 2],
        Padding::Same,
        1,
    );
    let c = ops::conv2d_im2col(
        r4(&ts[0], [2, 2, 7, 7]),
        r4(&ts[1], [3, 2, 3, 3]),
        Some(ts[2].clone()),
        [2, 2],
        Padding::Same,
    );
    let d = host((a - c).abs().reshape([2 * 3 * 16]));
    assert!(d.iter().all(|v| *v < 1e-5), "direct vs im2col differ: {d:?}");
}

#[test]
fn grad_depthwise_and_dense() {
    let x = rand_vec(2 * 3 * 5 * 5, 6, -1.0, 1.0);
    let w = rand_vec(3 * 3 * 3, 7, -0.5, 0.5);
    let b = rand_vec(3, 8, -0.5, 0.5);
    gradcheck(
        "depthwise s2 same",
        &[x, w, b],
        &|t| {
            let y = ops::depthwise_conv2d(
                r4(&t[0], [2, 3, 5, 5]),
                r4(&t[1], [3, 1, 3, 3]),
                Some(t[2].clone()),
                [2, 2],
                Padding::Same,
            );
            assert_eq!(y.dims(), [2, 3, 3, 3]);
            y.reshape([2 * 27])
        },
        1e-2,
        2e-2,
    );
    let x = rand_vec(3 * 7, 9, -1.0, 1.0);
    let w = rand_vec(7 * 4, 10, -0.5, 0.5);
    let b = rand_vec(4, 11, -0.5, 0.5);
    gradcheck(
        "dense",
        &[x, w, b],
        &|t| ops::dense(r4(&t[0], [3, 7, 1, 1]), t[1].clone().reshape([7, 4]), Some(t[2].clone())).reshape([12]),
        1e-2,
        2e-2,
    );
}

#[test]
fn grad_batch_norm_train_mode() {
    let x = rand_vec(4 * 3 * 2 * 2, 12, -2.0, 2.0);
    let g = rand_vec(3, 13, 0.5, 1.5);
    let b = rand_vec(3, 14, -0.5, 0.5);
    gradcheck(
        "batch_norm train",
        &[x, g, b],
        &|t| {
            let (y, _, _) = ops::batch_norm_train(r4(&t[0], [4, 3, 2, 2]), t[1].clone(), t[2].clone(), 1e-3);
            y.reshape([48])
        },
        1e-2,
        3e-2,
    );
}

/// Values bounded away from the activation kinks (0 and 6) by more than eps.
fn away_from_kinks(n: usize, seed: u64) -> Vec<f32> {
    rand_vec(n, seed, -8.0, 8.0)
        .into_iter()
        .map(|v| if v.abs() < 0.1 || (v - 6.0).abs() < 0.1 { v + 0.3 } else { v })
        .collect()
}

#[test]
fn grad_activations_softmax_and_cross_entropy() {
    let x = away_from_kinks(2 * 3 * 2 * 2, 15);
    gradcheck("relu", std::slice::from_ref(&x), &|t| ops::relu(r4(&t[0], [2, 3, 2, 2])).reshape([24]), 1e-2, 1e-2);
    gradcheck("relu6", &[x], &|t| ops::relu6(r4(&t[0], [2, 3, 2, 2])).reshape([24]), 1e-2, 1e-2);
    let z = rand_vec(2 * 5, 16, -2.0, 2.0);
    gradcheck(
        "softmax",
        std::slice::from_ref(&z),
        &|t| ops::softmax_channels(r4(&t[0], [2, 5, 1, 1])).reshape([10]),
        1e-2,
        2e-2,
    );
    let mut onehot = vec![0f32; 10];
    onehot[3] = 1.0;
    onehot[5 + 1] = 1.0;
    gradcheck(
        "cross_entropy",
        &[z],
        &|t| {
            let target = Tensor::<2>::from_data(TensorData::new(onehot.clone(), [2, 5]), &t[0].device());
            ops::cross_entropy(t[0].clone().reshape([2, 5]), target)
        },
        1e-2,
        2e-2,
    );
}

#[test]
fn grad_pools_same_asymmetric() {
    // 5x5, pool 2, stride 2, SAME: out 3, total pad 1 → (0, 1).
    assert_eq!(Padding::Same.pads(5, 2, 2), (0, 1));
    // Distinct values spaced well over 2*eps so the max never switches under perturbation.
    let mut x: Vec<f32> = (0..2 * 2 * 25).map(|i| i as f32 * 0.1).collect();
    SplitMix64::new(17).shuffle(&mut x);
    gradcheck(
        "max_pool same",
        &[x.clone()],
        &|t| {
            let y = ops::max_pool2d(r4(&t[0], [2, 2, 5, 5]), [2, 2], [2, 2], Padding::Same);
            assert_eq!(y.dims(), [2, 2, 3, 3]);
            y.reshape([36])
        },
        1e-2,
        1e-2,
    );
    gradcheck(
        "avg_pool same",
        &[x.clone()],
        &|t| ops::avg_pool2d(r4(&t[0], [2, 2, 5, 5]), [2, 2], [2, 2], Padding::Same).reshape([36]),
        1e-2,
        1e-2,
    );
    gradcheck("gap", &[x], &|t| ops::global_avg_pool(r4(&t[0], [2, 2, 5, 5])).reshape([4]), 1e-2, 1e-2);
}

#[test]
fn grad_add_concat_flatten_reshape_mask() {
    let a = rand_vec(2 * 2 * 3 * 3, 18, -1.0, 1.0);
    let b = rand_vec(2 * 2 * 3 * 3, 19, -1.0, 1.0);
    let c = rand_vec(2 * 3 * 3, 20, -1.0, 1.0); // 1 channel
    gradcheck(
        "add",
        &[a.clone(), b.clone()],
        &|t| (r4(&t[0], [2, 2, 3, 3]) + r4(&t[1], [2, 2, 3, 3])).reshape([36]),
        1e-2,
        1e-2,
    );
    gradcheck(
        "concat",
        &[a.clone(), c],
        &|t| Tensor::cat(vec![r4(&t[0], [2, 2, 3, 3]), r4(&t[1], [2, 1, 3, 3])], 1).reshape([54]),
        1e-2,
        1e-2,
    );
    gradcheck(
        "flatten",
        std::slice::from_ref(&a),
        &|t| ops::flatten_nhwc(r4(&t[0], [2, 2, 3, 3])).reshape([36]),
        1e-2,
        1e-2,
    );
    gradcheck(
        "reshape",
        std::slice::from_ref(&a),
        &|t| ops::reshape_nhwc(r4(&t[0], [2, 2, 3, 3]), Shape::new(3, 1, 6)).reshape([36]),
        1e-2,
        1e-2,
    );
    let m = rand_vec(2, 21, 0.0, 1.0);
    gradcheck(
        "channel mask",
        &[a, m],
        &|t| ops::channel_scale(r4(&t[0], [2, 2, 3, 3]), t[1].clone()).reshape([36]),
        1e-2,
        1e-2,
    );
}

#[test]
fn flatten_and_reshape_use_nhwc_order() {
    // NCHW [1, 2, 1, 2]: channel 0 = [1, 2], channel 1 = [10, 20]. NHWC order: 1, 10, 2, 20.
    let x = Tensor::<4>::from_data(TensorData::new(vec![1f32, 2., 10., 20.], [1, 2, 1, 2]), &dev());
    assert_eq!(host(ops::flatten_nhwc(x.clone()).reshape([4])), vec![1., 10., 2., 20.]);
    // Reshape to 2x1x2 (h, w, c) in NHWC order keeps the NHWC sequence: pixel 0 = (1, 10).
    let y = ops::reshape_nhwc(x, Shape::new(2, 1, 2));
    assert_eq!(y.dims(), [1, 2, 2, 1]);
    assert_eq!(host(ops::flatten_nhwc(y).reshape([4])), vec![1., 10., 2., 20.]);
}

// ---- forward vs naive reference ------------------------------------------------------------

/// input 6x6x2 → conv 3 filters k3 s2 SAME (pads (0,1)) → relu → flatten → dense 4.
fn conv_dense_graph() -> Graph {
    let mut b = GraphBuilder::new("ref", Shape::new(6, 6, 2));
    let c = b.add(
        Op::Conv2d(Conv2d {
            filters: 3,
            kernel: [3, 3],
            stride: [2, 2],
            padding: Padding::Same,
            groups: 1,
            bias: true,
        }),
        &[0],
    );
    let r = b.relu(c);
    let f = b.add(Op::Flatten, &[r]);
    b.add(Op::Dense(Dense { units: 4, bias: true }), &[f]);
    b.build().unwrap()
}

#[test]
fn forward_matches_naive_reference() {
    let g = conv_dense_graph();
    let mut net = Network::new(&g, &dev(), 5).unwrap();
    // Non-zero biases so their placement is checked too.
    let mut w = net.to_weights().unwrap();
    let cname = &g.nodes[1].name;
    let dname = &g.nodes[4].name;
    w.nodes.get_mut(cname).unwrap().bias = Some(vec![0.1, -0.2, 0.3]);
    w.nodes.get_mut(dname).unwrap().bias = Some(vec![0.5, -0.5, 0.25, 0.0]);
    net = Network::from_weights(&g, &w, &dev()).unwrap();
    let w = net.export_weights().unwrap();
    let ck = w.nodes[cname].kernel.clone().unwrap(); // OHWI [3, 3, 3, 2]
    let cb = w.nodes[cname].bias.clone().unwrap();
    let dk = w.nodes[dname].kernel.clone().unwrap(); // [4, 27]
    let db = w.nodes[dname].bias.clone().unwrap();
    assert_eq!(ck.shape, vec![3, 3, 3, 2]);
    assert_eq!(dk.shape, vec![4, 27]);

    let n = 2;
    let x = rand_vec(n * 6 * 6 * 2, 30, -1.0, 1.0); // NHWC
    let got = host(net.forward_mode(net.input_from_nhwc(&x, n, &dev()).unwrap(), Mode::Eval).unwrap().reshape([n * 4]));

    let (h, wd, ci, co, k, s) = (6usize, 6usize, 2usize, 3usize, 3usize, 2usize);
    let (pt, pl) = (0usize, 0usize); // TF SAME for 6, k3, s2: (0, 1) → top/left 0.
    let oh = 3;
    let mut want = Vec::new();
    for b in 0..n {
        // conv + relu, NHWC output [3, 3, 3] flattened h, w, c.
        let mut feat = vec![0f32; oh * oh * co];
        for oy in 0..oh {
            for ox in 0..oh {
                for o in 0..co {
                    let mut acc = cb[o];
                    for ky in 0..k {
                        for kx in 0..k {
                            let iy = (oy * s + ky) as isize - pt as isize;
                            let ix = (ox * s + kx) as isize - pl as isize;
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                continue;
                            }
                            for c in 0..ci {
                                let xv = x[((b * h + iy as usize) * wd + ix as usize) * ci + c];
                                acc += xv * ck.data[((o * k + ky) * k + kx) * ci + c];
                            }
                        }
                    }
                    feat[(oy * oh + ox) * co + o] = acc.max(0.0);
                }
            }
        }
        for (u, &bias) in db.iter().enumerate().take(4) {
            let mut acc = bias;
            for (i, f) in feat.iter().enumerate() {
                acc += f * dk.data[u * 27 + i];
            }
            want.push(acc);
        }
    }
    for (a, b) in got.iter().zip(&want) {
        assert!((a - b).abs() < 1e-4, "forward {got:?} vs reference {want:?}");
    }
}

#[test]
fn pools_match_tf_same_semantics() {
    // 1 channel 3x3, pool 2 stride 2 SAME → 2x2 output, padding only bottom/right.
    let v: Vec<f32> = (1..=9).map(|i| i as f32).collect();
    let x = Tensor::<4>::from_data(TensorData::new(v, [1, 1, 3, 3]), &dev());
    let mx = host(ops::max_pool2d(x.clone(), [2, 2], [2, 2], Padding::Same).reshape([4]));
    assert_eq!(mx, vec![5., 6., 8., 9.]);
    let av = host(ops::avg_pool2d(x, [2, 2], [2, 2], Padding::Same).reshape([4]));
    // TF averages over valid pixels only: [1,2,4,5]/4, [3,6]/2, [7,8]/2, [9]/1.
    assert_eq!(av, vec![3., 4.5, 7.5, 9.]);
    // The 2x2/2 VALID inference fast path agrees with the autodiff (burn kernel) path.
    let v = rand_vec(2 * 3 * 4 * 6, 40, -1.0, 1.0);
    let fast = ops::max_pool2d(
        Tensor::<4>::from_data(TensorData::new(v.clone(), [2, 3, 4, 6]), &dev()),
        [2, 2],
        [2, 2],
        Padding::Valid,
    );
    let slow = ops::max_pool2d(
        Tensor::<4>::from_data(TensorData::new(v, [2, 3, 4, 6]), &dev().autodiff()),
        [2, 2],
        [2, 2],
        Padding::Valid,
    );
    assert_eq!(host(fast.reshape([36])), host(slow.reshape([36]).without_autodiff()));
}

// ---- errors --------------------------------------------------------------------------------

#[test]
fn bad_inputs_are_errors_not_panics() {
    let g = conv_dense_graph();
    let net = Network::new(&g, &dev(), 1).unwrap();
    let wrong = Tensor::<4>::zeros([1, 3, 6, 6], &dev());
    assert!(matches!(net.forward(wrong), Err(TrainError::Data(_))));
    assert!(net.input_from_nhwc(&[0.0; 5], 1, &dev()).is_err());
    let mut w = net.to_weights().unwrap();
    w.nodes.get_mut(&g.nodes[1].name).unwrap().bias = Some(vec![0.0; 2]);
    assert!(matches!(Network::from_weights(&g, &w, &dev()), Err(TrainError::Weights(_))));
    let mut w = net.to_weights().unwrap();
    w.nodes.insert("nope".into(), mcufit_ir::NodeWeights::default());
    assert!(Network::from_weights(&g, &w, &dev()).is_err());
    let mut n2 = net.clone();
    assert!(n2.set_group_mask(0, t1(&[1.0; 7], &dev()), false).is_err());
    assert!(n2.set_group_mask(99, t1(&[1.0], &dev()), false).is_err());
    assert!(TrainConfig::new().with_batch_size(0).validate().is_err());
    assert!(TrainConfig::new().with_lr(-1.0).validate().is_err());
    // A non-classifier output is refused.
    let mut b = GraphBuilder::new("conv-out", Shape::new(4, 4, 1));
    b.conv(0, 2, 3, 1, Padding::Same);
    assert!(matches!(Network::new(&b.build().unwrap(), &dev(), 0), Err(TrainError::Graph(_))));
    // Corrupt weights file.
    let d = tmpdir("corrupt");
    net.save(&d).unwrap();
    std::fs::write(d.join("weights.safetensors"), b"\x10\0\0\0\0\0\0\0{not json").unwrap();
    assert!(Network::load(&d, &dev()).is_err());
    let _ = std::fs::remove_dir_all(&d);
}

// ---- training ------------------------------------------------------------------------------

/// Two classes of 6x6x1 images: bright left half vs bright right half, plus noise.
fn separable(n: usize, seed: u64) -> InMemory {
    let mut r = SplitMix64::new(seed);
    let mut images = Vec::with_capacity(n * 36);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let y = (i % 2) as u32;
        for _row in 0..6 {
            for col in 0..6 {
                let lit = (col < 3) == (y == 0);
                images.push(if lit { 0.8 } else { 0.0 } + r.uniform(-0.3, 0.3));
            }
        }
        labels.push(y);
    }
    InMemory::new([6, 6, 1], 2, images, labels).unwrap()
}

fn small_cnn() -> Graph {
    let mut b = GraphBuilder::new("small", Shape::new(6, 6, 1));
    let x = b.conv_bn_relu(0, 4, 3, 1, Padding::Same);
    let p = b.add(Op::MaxPool2d(Pool2d { pool: [2, 2], stride: None, padding: Padding::Valid }), &[x]);
    let x = b.conv_bn_relu(p, 6, 3, 1, Padding::Same);
    let g = b.add(Op::GlobalAvgPool, &[x]);
    let d = b.dense(g, 2);
    b.add(Op::Softmax, &[d]);
    b.build().unwrap()
}

fn quiet(epochs: usize) -> TrainConfig {
    TrainConfig::new().with_epochs(epochs).with_batch_size(16).with_lr(0.1).with_progress(false).with_threads(2)
}

#[test]
fn training_reduces_loss_and_learns() {
    let (tr, va) = (separable(128, 1), separable(64, 2));
    let g = small_cnn();
    let before = evaluate(&Network::new(&g, &dev(), 42).unwrap(), &va, 64).unwrap();
    let report = train(&g, &Splits { train: &tr, val: Some(&va) }, &quiet(6)).unwrap();
    let h = &report.summary.history;
    assert_eq!(h.len(), 6);
    assert!(h.last().unwrap().train_loss < 0.5 * h[0].train_loss, "loss did not drop: {h:?}");
    let after = evaluate(&report.network, &va, 64).unwrap();
    assert!(after.accuracy >= 0.95, "val accuracy {} (before {})", after.accuracy, before.accuracy);
    assert!(after.loss < before.loss);
    assert_eq!(after.confusion.iter().flatten().sum::<usize>(), 64);
    assert_eq!(after.class_counts, vec![32, 32]);
    // Adam + step schedule also trains.
    let cfg = quiet(4)
        .with_lr(0.01)
        .with_optimizer(OptimizerKind::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8 })
        .with_schedule(LrSchedule::Step { every: 2, gamma: 0.5 });
    let r = train(&g, &Splits { train: &tr, val: Some(&va) }, &cfg).unwrap();
    assert!(r.summary.best_accuracy.unwrap() >= 0.9, "adam: {:?}", r.summary.history);
}

#[test]
fn save_load_round_trip_and_bn_fusion() {
    let (tr, va) = (separable(64, 3), separable(32, 4));
    let g = small_cnn();
    let report = train(&g, &Splits { train: &tr, val: None }, &quiet(2)).unwrap();
    let net = report.network;
    let d = tmpdir("roundtrip");
    net.save(&d).unwrap();
    let back = Network::load(&d, &dev()).unwrap();
    let mut imgs = Vec::new();
    let mut labels = Vec::new();
    va.batch(&(0..32).collect::<Vec<_>>(), &mut imgs, &mut labels).unwrap();
    let x = net.input_from_nhwc(&imgs, 32, &dev()).unwrap();
    let a = net.forward_mode(x.clone(), Mode::Eval).unwrap().reshape([64]);
    let b = back.forward_mode(x.clone(), Mode::Eval).unwrap().reshape([64]);
    assert_eq!(host(a.clone()), host(b), "reloaded network differs");
    assert_eq!(net.to_weights().unwrap(), back.to_weights().unwrap());
    // BN statistics are trained values, not the init ones.
    let bn = &net.to_weights().unwrap().nodes[&g.nodes[2].name];
    assert!(bn.bn.as_ref().unwrap().mean.iter().any(|m| m.abs() > 1e-4));
    // Folding BN into the convs gives the same outputs.
    let fused = net.fuse_bn().unwrap();
    let c = host(fused.forward_mode(x.clone(), Mode::Eval).unwrap().reshape([64]));
    for (p, q) in host(a).iter().zip(&c) {
        assert!((p - q).abs() < 1e-4, "fused BN output {q} vs {p}");
    }
    assert!(fused.forward_mode(x, Mode::Train).is_err());
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn resume_matches_uninterrupted_run() {
    let (tr, va) = (separable(64, 5), separable(32, 6));
    let g = small_cnn();
    let splits = Splits { train: &tr, val: Some(&va) };
    let da = tmpdir("resume-a");
    let db = tmpdir("resume-b");
    let full = quiet(4).with_out_dir(Some(da.display().to_string()));
    let a = train(&g, &splits, &full).unwrap();
    // Interrupted run: same config, "killed" (a hook error) in the middle of epoch 3, after the
    // epoch-2 checkpoint was written.
    struct Kill;
    impl TrainHook for Kill {
        fn after_step(&mut self, _: &mut Network, ctx: &StepContext) -> Result<()> {
            if ctx.epoch == 2 {
                return Err(TrainError::Config("killed".into()));
            }
            Ok(())
        }
    }
    let part = quiet(4).with_out_dir(Some(db.display().to_string()));
    assert!(train_with_hook(&g, &splits, &part, &mut Kill).is_err());
    let state: TrainState =
        serde_json::from_str(&std::fs::read_to_string(db.join("last/state.json")).unwrap()).unwrap();
    assert_eq!(state.epoch, 2);
    let b = train(&g, &splits, &quiet(4).with_out_dir(Some(db.display().to_string())).with_resume(true)).unwrap();
    assert_eq!(b.summary.history.len(), 4);
    // The first two epochs were restored from the checkpoint, not re-run (timings are per run).
    assert_eq!(b.summary.history[..2], state.history[..]);
    for (x, y) in a.summary.history.iter().zip(&b.summary.history) {
        assert!((x.train_loss - y.train_loss).abs() < 1e-5, "epoch {}: {} vs {}", x.epoch, x.train_loss, y.train_loss);
        assert_eq!(x.val_accuracy, y.val_accuracy);
    }
    let la = Network::load(da.join("last"), &dev()).unwrap().to_weights().unwrap();
    let lb = Network::load(db.join("last"), &dev()).unwrap().to_weights().unwrap();
    for (name, wa) in &la.nodes {
        let wb = &lb.nodes[name];
        let (ka, kb) = (wa.kernel.as_ref().map(|k| &k.data), wb.kernel.as_ref().map(|k| &k.data));
        if let (Some(ka), Some(kb)) = (ka, kb) {
            for (p, q) in ka.iter().zip(kb) {
                assert!((p - q).abs() < 1e-5, "{name}: resumed weights differ ({p} vs {q})");
            }
        }
    }
    // Resuming against a different model is refused.
    let other = conv_dense_graph();
    assert!(train(&other, &splits, &quiet(4).with_out_dir(Some(db.display().to_string())).with_resume(true)).is_err());
    let _ = std::fs::remove_dir_all(&da);
    let _ = std::fs::remove_dir_all(&db);
}

#[test]
fn resume_works_for_adam_and_stateless_sgd() {
    struct KillAt(usize);
    impl TrainHook for KillAt {
        fn after_step(&mut self, _: &mut Network, ctx: &StepContext) -> Result<()> {
            if ctx.epoch == self.0 {
                return Err(TrainError::Config("killed".into()));
            }
            Ok(())
        }
    }
    let (tr, va) = (separable(48, 8), separable(16, 9));
    let g = small_cnn();
    let splits = Splits { train: &tr, val: Some(&va) };
    for (i, opt) in [
        OptimizerKind::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8 },
        OptimizerKind::Sgd { momentum: 0.0, nesterov: false },
    ]
    .into_iter()
    .enumerate()
    {
        let (da, db) = (tmpdir(&format!("r2a{i}")), tmpdir(&format!("r2b{i}")));
        let cfg = |d: &PathBuf| {
            quiet(3).with_lr(0.01).with_optimizer(opt.clone()).with_out_dir(Some(d.display().to_string()))
        };
        let a = train(&g, &splits, &cfg(&da)).unwrap();
        assert!(train_with_hook(&g, &splits, &cfg(&db), &mut KillAt(1)).is_err());
        let b = train(&g, &splits, &cfg(&db).with_resume(true)).unwrap();
        let (la, lb) = (a.summary.history[2].train_loss, b.summary.history[2].train_loss);
        assert!((la - lb).abs() < 1e-5, "{opt:?}: resumed loss {lb} vs {la}");
        let _ = std::fs::remove_dir_all(&da);
        let _ = std::fs::remove_dir_all(&db);
    }
}

// ---- pruning hooks -------------------------------------------------------------------------

#[test]
fn group_masks_gate_channels_and_learn() {
    let g = small_cnn();
    let mut net = Network::new(&g, &dev(), 3).unwrap();
    let groups = net.channel_groups().clone();
    // The second conv's group: zeroing its mask silences GAP, so logits = dense bias (0).
    let conv2 = g.nodes.iter().position(|n| matches!(n.op, Op::Conv2d(_)) && n.inputs != vec![0]).unwrap();
    let grp = groups.groups.iter().find(|gr| gr.producers.contains(&conv2)).unwrap().id;
    assert_eq!(net.mask_nodes(grp), &[conv2 + 1], "mask goes after the BN");
    assert_eq!(net.group_bn_gammas(grp).len(), 1);
    assert!(matches!(net.group_producer_weights(grp)[0].1, ProducerWeight::Conv(_)));
    net.set_group_mask(grp, t1(&[0.0; 6], &dev()), false).unwrap();
    let x = Tensor::<4>::ones([2, 1, 6, 6], &dev());
    let out = host(net.forward_mode(x, Mode::Eval).unwrap().reshape([4]));
    assert!(out.iter().all(|v| v.abs() < 1e-6), "masked output {out:?}");
    // Export folds the zero mask into BN gamma/beta.
    let ew = net.export_weights().unwrap();
    assert!(ew.masks.is_empty());
    assert!(ew.nodes[&g.nodes[conv2 + 1].name].bn.as_ref().unwrap().gamma.iter().all(|v| *v == 0.0));

    // A learnable mask with an L1 extra loss shrinks during training.
    struct L1(usize);
    impl TrainHook for L1 {
        fn extra_loss(&mut self, net: &Network, _: &Tensor<2>, _: &StepContext) -> Result<Option<Tensor<1>>> {
            Ok(net.group_mask(self.0).map(|m| m.abs().sum().mul_scalar(0.2)))
        }
    }
    let tr = separable(64, 7);
    let run = |hook: &mut dyn TrainHook| {
        let mut net = Network::new(&g, &dev(), 3).unwrap();
        net.set_group_mask(grp, t1(&[1.0; 6], &dev()), true).unwrap();
        train_network(net, &Splits { train: &tr, val: None }, &quiet(3), hook).unwrap()
    };
    let plain = run(&mut NoHook);
    let l1 = run(&mut L1(grp));
    let m0 = host(plain.network.group_mask(grp).unwrap());
    let m1 = host(l1.network.group_mask(grp).unwrap());
    // The mask is trained (it moved from 1) and the L1 term pulls it down further.
    assert!(m0.iter().any(|v| (v - 1.0).abs() > 1e-3), "learnable mask never changed: {m0:?}");
    assert!(m1.iter().sum::<f32>() < m0.iter().sum::<f32>() - 0.3, "L1 did not shrink the mask: {m1:?} vs {m0:?}");
    assert!(l1.summary.history.iter().all(|h| h.extra_loss > 0.0));
}

// ---- mcufit-data adapter -------------------------------------------------------------------

#[test]
fn trains_on_real_digits_through_the_data_adapter() {
    let opts = mcufit_data::LoadOptions { seed: 1, augment: true, ..Default::default() };
    let splits = mcufit_data::load("digits", &opts).unwrap();
    let mut b = GraphBuilder::new("digits", Shape::new(8, 8, 1));
    let x = b.conv_bn_relu(0, 16, 3, 1, Padding::Same);
    let x = b.conv_bn_relu(x, 32, 3, 2, Padding::Same);
    let p = b.add(Op::GlobalAvgPool, &[x]);
    let d = b.dense(p, 10);
    b.add(Op::Softmax, &[d]);
    let g = b.build().unwrap();
    // Augmented batches are reproducible from the seed the trainer passes.
    let (mut i1, mut l1, mut i2, mut l2) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    BatchSource::batch_augmented(&splits.train, &[0, 1, 2], 7, &mut i1, &mut l1).unwrap();
    BatchSource::batch_augmented(&splits.train, &[0, 1, 2], 7, &mut i2, &mut l2).unwrap();
    assert_eq!((i1, l1), (i2, l2));
    let cfg = quiet(4).with_batch_size(32);
    let r = train(&g, &Splits { train: &splits.train, val: Some(&splits.val) }, &cfg).unwrap();
    let test = evaluate(&r.network, &splits.test, 128).unwrap();
    assert!(test.accuracy > 0.8, "digits test accuracy {}: {:?}", test.accuracy, r.summary.history);
    assert_eq!(test.per_class_accuracy.len(), 10);
}

#[test]
fn distillation_blends_teacher_predictions_into_the_targets() {
    let (tr, va) = (separable(128, 7), separable(64, 8));
    let g = small_cnn();
    let teacher = train(&g, &Splits { train: &tr, val: None }, &quiet(6)).unwrap().network;
    let mut imgs = Vec::new();
    let mut labels = Vec::new();
    va.batch(&(0..8).collect::<Vec<_>>(), &mut imgs, &mut labels).unwrap();
    let x = teacher.input_from_nhwc(&imgs, 8, &dev()).unwrap();
    let onehot: Vec<f32> = labels.iter().flat_map(|&y| [(y == 0) as u8 as f32, (y == 1) as u8 as f32]).collect();
    let t = Tensor::<2>::from_data(TensorData::new(onehot.clone(), [8, 2]), &dev());
    let probs =
        host(burn::tensor::activation::softmax(teacher.forward_mode(x.clone(), Mode::Eval).unwrap(), 1).reshape([16]));
    let ctx = StepContext { epoch: 0, step: 0, lr: 0.1 };
    let blend = |alpha: f64| {
        let mut d = Distill::new(teacher.clone(), alpha, 1.0).unwrap();
        host(d.targets(&imgs, t.clone(), &ctx).unwrap().reshape([16]))
    };
    // alpha 0: the labels; alpha 1: the teacher's softmax; 0.25: the mix. Every row sums to 1.
    assert_eq!(blend(0.0), onehot);
    for (a, b) in blend(1.0).iter().zip(&probs) {
        assert!((a - b).abs() < 1e-6);
    }
    let mix = blend(0.25);
    for i in 0..16 {
        assert!((mix[i] - (0.75 * onehot[i] + 0.25 * probs[i])).abs() < 1e-6);
    }
    for row in mix.chunks(2) {
        assert!((row[0] + row[1] - 1.0).abs() < 1e-5);
    }
    assert!(Distill::new(teacher.clone(), 1.5, 1.0).is_err());
    assert!(Distill::new(teacher.clone(), 0.5, 0.0).is_err());

    // With alpha 1 the labels are ignored: a student trained on scrambled labels still learns the
    // task from a good teacher.
    let scrambled = {
        let mut im = Vec::new();
        let mut lb = Vec::new();
        tr.batch(&(0..128).collect::<Vec<_>>(), &mut im, &mut lb).unwrap();
        let wrong: Vec<u32> = (0..128).map(|i| (i / 3 % 2) as u32).collect();
        InMemory::new([6, 6, 1], 2, im, wrong).unwrap()
    };
    let mut hook = Distill::new(teacher, 1.0, 1.0).unwrap();
    let student =
        train_with_hook(&g, &Splits { train: &scrambled, val: None }, &quiet(6).with_seed(3), &mut hook).unwrap();
    let acc = evaluate(&student.network, &va, 64).unwrap().accuracy;
    assert!(acc >= 0.9, "distilled student accuracy {acc}");
}

/// A kill between the checkpoint's two renames leaves `last.old` (the previous epoch) and `last.tmp`
/// (the complete new one) and no `last`: resume picks up the newest complete state, not epoch 1.
#[test]
fn resume_recovers_a_checkpoint_caught_between_its_renames() {
    let (tr, va) = (separable(64, 5), separable(32, 6));
    let g = small_cnn();
    let splits = Splits { train: &tr, val: Some(&va) };
    let d = tmpdir("resume-rename");
    let two = train(&g, &splits, &quiet(2).with_out_dir(Some(d.display().to_string()))).unwrap();
    std::fs::rename(d.join("last"), d.join("last.tmp")).unwrap();
    assert!(mcufit_train::recover_checkpoint(d.join("last")).unwrap());
    assert!(d.join("last/state.json").is_file() && !d.join("last.tmp").exists());
    // Now with the other side only: `last.old` is taken when no `last.tmp` is there.
    std::fs::rename(d.join("last"), d.join("last.old")).unwrap();
    let three = train(&g, &splits, &quiet(3).with_out_dir(Some(d.display().to_string())).with_resume(true)).unwrap();
    assert_eq!(three.summary.history.len(), 3);
    // The first two epochs came from the checkpoint (their wall times are those of the first run).
    for (a, b) in three.summary.history[..2].iter().zip(&two.summary.history) {
        assert_eq!((a.epoch, a.seconds), (b.epoch, b.seconds));
        assert!((a.train_loss - b.train_loss).abs() < 1e-12);
    }
    let _ = std::fs::remove_dir_all(&d);
}

/// `replace_dir` at each of its steps: a half-filled `dir.partial` is never taken (and is removed by
/// recovery), a complete `dir.tmp` is taken when `dir` is gone, a failed write leaves `dir` as it was
/// and nothing behind.
#[test]
fn replace_dir_leaves_one_whole_directory_at_every_step() {
    use mcufit_train::{recover_dir, replace_dir, TrainError};
    let d = tmpdir("replace-dir");
    let dir = d.join("best");
    let write = |n: &str| {
        let n = n.to_string();
        move |p: &std::path::Path| -> mcufit_train::Result<()> {
            for f in ["a", "b"] {
                std::fs::write(p.join(f), &n).map_err(|e| TrainError::io(p, e))?;
            }
            Ok(())
        }
    };
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    replace_dir(&dir, write("1")).unwrap();
    replace_dir(&dir, write("2")).unwrap();
    assert_eq!((read("a"), read("b")), ("2".into(), "2".into()));
    let names = |d: &std::path::Path| {
        let mut v: Vec<String> =
            std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    };
    assert_eq!(names(&d), ["best"], "nothing left beside it");
    // Killed while filling `best.partial`: `best` is untouched and recovery drops the partial one.
    std::fs::create_dir(d.join("best.partial")).unwrap();
    std::fs::write(d.join("best.partial/a"), "3").unwrap();
    assert!(recover_dir(&dir).unwrap());
    assert_eq!((read("a"), read("b")), ("2".into(), "2".into()));
    assert_eq!(names(&d), ["best"]);
    // Killed between `best` → `best.old` and `best.tmp` → `best`: the complete new one is taken.
    replace_dir(&dir, write("3")).unwrap();
    std::fs::rename(&dir, d.join("best.old")).unwrap();
    std::fs::create_dir(d.join("best.tmp")).unwrap();
    write("4")(&d.join("best.tmp")).unwrap();
    assert!(recover_dir(&dir).unwrap());
    assert_eq!((read("a"), read("b")), ("4".into(), "4".into()));
    // A write that fails half-way (a full disk): `best` keeps its old content, no partial is left.
    let failing = |p: &std::path::Path| -> mcufit_train::Result<()> {
        std::fs::write(p.join("a"), "5").unwrap();
        Err(TrainError::Checkpoint("disk full".into()))
    };
    assert!(replace_dir(&dir, failing).is_err());
    assert_eq!((read("a"), read("b")), ("4".into(), "4".into()));
    assert_eq!(names(&d), ["best", "best.old"], "only the old one the simulated kill left");
    replace_dir(&dir, write("6")).unwrap();
    assert_eq!(names(&d), ["best"]);
    // Nothing there at all: nothing to recover.
    assert!(!recover_dir(d.join("none")).unwrap());
    let _ = std::fs::remove_dir_all(&d);
}
