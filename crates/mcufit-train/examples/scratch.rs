use std::time::Instant;
use mcufit_ir::Padding;
use mcufit_train::burn::tensor::{Device, Distribution, Tensor, Slice};
use mcufit_train::ops;

fn time<F: FnMut()>(name: &str, reps: usize, mut f: F) {
    f();
    let mut best = f64::MAX;
    for _ in 0..reps { let t = Instant::now(); f(); best = best.min(t.elapsed().as_secs_f64()); }
    println!("{name:<40} {:8.2} ms (min of {reps})", 1e3 * best);
}

fn pool_strided(x: Tensor<4>) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    let v = |dy: usize, dx: usize| x.clone().slice([Slice::new(0, None, 1), Slice::new(0, None, 1), Slice::new(dy as isize, Some((h - h % 2) as isize), 2), Slice::new(dx as isize, Some((w - w % 2) as isize), 2)]);
    v(0, 0).max_pair(v(0, 1)).max_pair(v(1, 0).max_pair(v(1, 1)))
}

fn conv_im2col(x: Tensor<4>, w: Tensor<4>) -> Tensor<4> {
    let [n, c, h, wd] = x.dims();
    let [o, _, kh, kw] = w.dims();
    let xp = x.pad([(0, 0), (0, 0), (1, 1), (1, 1)], mcufit_train::burn::tensor::ops::PadMode::Constant(0.0));
    let mut cols = Vec::new();
    for dy in 0..kh { for dx in 0..kw { cols.push(xp.clone().slice([0..n, 0..c, dy..dy + h, dx..dx + wd])); } }
    let cols = Tensor::cat(cols, 1).reshape([n, c * kh * kw, h * wd]);
    let wm = w.reshape([1, o, c * kh * kw]);
    wm.matmul(cols).reshape([n, o, h, wd])
}

fn bn_manual(x: Tensor<4>, g: Tensor<1>, b: Tensor<1>) -> Tensor<4> {
    let c = g.dims()[0];
    let mean = x.clone().mean_dims(&[0, 2, 3]);
    let xc = x - mean;
    let var = (xc.clone() * xc.clone()).mean_dims(&[0, 2, 3]);
    xc * (var.add_scalar(1e-3).sqrt().recip() * g.reshape([1, c, 1, 1])) + b.reshape([1, c, 1, 1])
}

fn main() {
    let _ = rayon::ThreadPoolBuilder::new().num_threads(2).build_global();
    for ad in [false, true] {
        let d = if ad { Device::flex().autodiff() } else { Device::flex() };
        let rg = |t: Tensor<4>| if ad { t.require_grad() } else { t };
        let rg1 = |t: Tensor<1>| if ad { t.require_grad() } else { t };
        let a2 = rg(Tensor::<4>::random([64, 64, 14, 14], Distribution::Default, &d));
        let x1 = rg(Tensor::<4>::random([64, 1, 28, 28], Distribution::Default, &d));
        let w1 = rg(Tensor::<4>::random([32, 1, 3, 3], Distribution::Default, &d));
        let g = rg1(Tensor::<1>::random([64], Distribution::Default, &d));
        let run = |y: Tensor<4>| { if ad { let _ = y.sum().backward(); } else { let _ = y.into_data(); } };
        let t = if ad { "fwd+bwd" } else { "fwd" };
        // check equality
        let a = ops::max_pool2d(a2.clone(), [2, 2], [2, 2], Padding::Valid);
        let b = pool_strided(a2.clone());
        println!("pool diff {}", (a - b).abs().max().into_scalar::<f32>());
        let a = ops::conv2d(x1.clone(), w1.clone(), None, [1, 1], Padding::Same, 1);
        let b = conv_im2col(x1.clone(), w1.clone());
        println!("conv diff {}", (a - b).abs().max().into_scalar::<f32>());
        for _ in 0..2 {
            time(&format!("maxpool2d {t}"), 10, || run(ops::max_pool2d(a2.clone(), [2, 2], [2, 2], Padding::Valid)));
            time(&format!("maxpool strided {t}"), 10, || run(pool_strided(a2.clone())));
            time(&format!("conv1 direct {t}"), 10, || run(ops::conv2d(x1.clone(), w1.clone(), None, [1, 1], Padding::Same, 1)));
            time(&format!("conv1 im2col {t}"), 10, || run(conv_im2col(x1.clone(), w1.clone())));
            time(&format!("bn train {t}"), 10, || run(ops::batch_norm_train(a2.clone(), g.clone(), g.clone(), 1e-3).0));
            time(&format!("bn manual {t}"), 10, || run(bn_manual(a2.clone(), g.clone(), g.clone())));
        }
    }
}
