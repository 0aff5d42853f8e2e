//! Per-op timings (forward, and forward+backward on autodiff) at the MNIST CNN's shapes, batch 64.
//! `cargo run -p mcufit-train --release --example profile_ops -- [threads]`

use std::time::Instant;

use mcufit_ir::Padding;
use mcufit_train::burn::tensor::{Device, Distribution, Tensor};
use mcufit_train::ops;

trait Rg {
    fn rg(self, ad: bool) -> Self;
}
impl<const D: usize> Rg for Tensor<D> {
    fn rg(self, ad: bool) -> Self {
        if ad {
            self.require_grad()
        } else {
            self
        }
    }
}

fn time<F: FnMut()>(name: &str, reps: usize, mut f: F) {
    f();
    let mut best = f64::MAX;
    for _ in 0..reps {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!("{name:<34} {:8.2} ms (min of {reps})", 1e3 * best);
}

fn main() {
    let threads: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(2);
    let _ = rayon::ThreadPoolBuilder::new().num_threads(threads).build_global();
    let reps = 8;
    for ad in [false, true] {
        let d = if ad { Device::flex().autodiff() } else { Device::flex() };
        let rnd = |s: [usize; 4]| Tensor::<4>::random(s, Distribution::Default, &d);
        let rnd1 = |n: usize| Tensor::<1>::random([n], Distribution::Default, &d);
        let x1 = rnd([64, 1, 28, 28]).rg(ad);
        let w1 = rnd([32, 1, 3, 3]).rg(ad);
        let x2 = rnd([64, 32, 14, 14]).rg(ad);
        let w2 = rnd([64, 32, 3, 3]).rg(ad);
        let b2 = rnd1(64).rg(ad);
        let a2 = rnd([64, 64, 14, 14]).rg(ad);
        let g = rnd1(64).rg(ad);
        let xd = Tensor::<2>::random([64, 3136], Distribution::Default, &d);
        let wd = Tensor::<2>::random([3136, 128], Distribution::Default, &d).rg(ad);
        let tag = if ad { "fwd+bwd" } else { "fwd" };
        let run = |y: Tensor<4>| {
            if ad {
                let _ = y.sum().backward();
            } else {
                let _ = y.into_data();
            }
        };
        time(&format!("conv1 1->32 28x28 {tag}"), reps, || {
            run(ops::conv2d(x1.clone(), w1.clone(), None, [1, 1], Padding::Same, 1))
        });
        time(&format!("conv2 32->64 14x14 {tag}"), reps, || {
            run(ops::conv2d(x2.clone(), w2.clone(), Some(b2.clone()), [1, 1], Padding::Same, 1))
        });
        time(&format!("bn 64x14x14 {tag}"), reps, || {
            run(ops::batch_norm_train(a2.clone(), g.clone(), g.clone(), 1e-3).0)
        });
        time(&format!("relu 64x14x14 {tag}"), reps, || run(ops::relu(a2.clone())));
        time(&format!("maxpool 64x14x14 {tag}"), reps, || {
            run(ops::max_pool2d(a2.clone(), [2, 2], [2, 2], Padding::Valid))
        });
        let f7 = rnd([64, 64, 7, 7]).rg(ad);
        time(&format!("flatten 64x7x7 {tag}"), reps, || run(ops::flatten_nhwc(f7.clone())));
        time(&format!("dense 3136->128 {tag}"), reps, || {
            let y = mcufit_train::burn::tensor::module::linear(xd.clone(), wd.clone(), None);
            if ad {
                let _ = y.sum().backward();
            } else {
                let _ = y.into_data();
            }
        });
    }
}
