//! Test support: a seeded RNG, random parameters for a graph, and a naive f64 reference forward
//! pass written directly from the op definitions (TF padding, valid-pixel pooling, batch norm).
#![allow(dead_code)]

use mcufit_engine::{NodeParams, Params};
use mcufit_ir::{Graph, NodeId, Op, Padding, Shape};

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32)
    }
    pub fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }
}

/// Random parameters for every node of `g` (kernels scaled by fan-in so activations stay O(1)),
/// and a random mask for each group named in `mask_site` (sized by the site's channels).
pub fn random_params(g: &Graph, mask_site: &[Option<usize>], seed: u64) -> Params {
    let shapes = g.shapes().unwrap();
    let mut rng = Rng::new(seed);
    let mut nodes = Vec::new();
    for (id, node) in g.nodes.iter().enumerate() {
        let inp = node.inputs.first().map(|&i| shapes[i]);
        let mut p = NodeParams::default();
        match &node.op {
            Op::Conv2d(c) => {
                let cin = inp.unwrap().c / c.groups;
                let fan = cin * c.kernel[0] * c.kernel[1];
                let b = (3.0 / fan as f32).sqrt();
                p.kernel = Some(rng.vec(c.filters * fan, -b, b));
                p.bias = c.bias.then(|| rng.vec(c.filters, -0.2, 0.2));
            }
            Op::DepthwiseConv2d(d) => {
                let c = inp.unwrap().c;
                let fan = d.kernel[0] * d.kernel[1];
                let b = (3.0 / fan as f32).sqrt();
                p.kernel = Some(rng.vec(c * fan, -b, b));
                p.bias = d.bias.then(|| rng.vec(c, -0.2, 0.2));
            }
            Op::Dense(d) => {
                let nin = inp.unwrap().elements();
                let b = (3.0 / nin as f32).sqrt();
                p.weight = Some(rng.vec(nin * d.units, -b, b));
                p.bias = d.bias.then(|| rng.vec(d.units, -0.2, 0.2));
            }
            Op::BatchNorm(_) => {
                let c = shapes[id].c;
                p.gamma = Some(rng.vec(c, 0.5, 1.5));
                p.beta = Some(rng.vec(c, -0.3, 0.3));
                p.running_mean = Some(rng.vec(c, -0.2, 0.2));
                p.running_var = Some(rng.vec(c, 0.5, 1.5));
            }
            _ => {}
        }
        nodes.push(p);
    }
    let groups = mask_site.iter().flatten().map(|&g| g + 1).max().unwrap_or(0);
    let mut masks = vec![None; groups];
    for (id, site) in mask_site.iter().enumerate() {
        if let Some(gi) = site {
            if masks[*gi].is_none() {
                masks[*gi] = Some(rng.vec(shapes[id].c, 0.5, 1.5));
            }
        }
    }
    Params { nodes, masks }
}

/// The tensors of one node, in a fixed order: kernel, weight, bias, gamma, beta, running mean, var.
pub fn fields(p: &NodeParams) -> [&Option<Vec<f32>>; 7] {
    [&p.kernel, &p.weight, &p.bias, &p.gamma, &p.beta, &p.running_mean, &p.running_var]
}
pub fn fields_mut(p: &mut NodeParams) -> [&mut Option<Vec<f32>>; 7] {
    [&mut p.kernel, &mut p.weight, &mut p.bias, &mut p.gamma, &mut p.beta, &mut p.running_mean, &mut p.running_var]
}
pub const FIELD_NAMES: [&str; 7] = ["kernel", "weight", "bias", "gamma", "beta", "running_mean", "running_var"];

/// Parameters in f64: per node the 7 fields, then the masks.
#[derive(Clone)]
pub struct P64 {
    pub nodes: Vec<[Option<Vec<f64>>; 7]>,
    pub masks: Vec<Option<Vec<f64>>>,
}

pub fn to64(p: &Params) -> P64 {
    let conv = |v: &Option<Vec<f32>>| v.as_ref().map(|v| v.iter().map(|&x| x as f64).collect());
    P64 { nodes: p.nodes.iter().map(|n| fields(n).map(conv)).collect(), masks: p.masks.iter().map(conv).collect() }
}

fn pads(p: Padding, input: usize, k: usize, s: usize) -> isize {
    p.pads(input, k, s).0 as isize
}

/// Naive f64 forward to the logits `[n, classes]`.
pub fn reference(
    g: &Graph,
    logits: NodeId,
    mask_site: &[Option<usize>],
    p: &P64,
    x: &[f32],
    n: usize,
    train: bool,
) -> Vec<f64> {
    let shapes = g.shapes().unwrap();
    let mut vals: Vec<Vec<f64>> = Vec::new();
    for (id, node) in g.nodes.iter().enumerate().take(logits + 1) {
        let o: Shape = shapes[id];
        let ins: Vec<&Vec<f64>> = node.inputs.iter().map(|&i| &vals[i]).collect();
        let s: Shape = node.inputs.first().map(|&i| shapes[i]).unwrap_or(o);
        let at = |v: &Vec<f64>, b: usize, y: isize, xx: isize, c: usize| -> Option<f64> {
            (y >= 0 && xx >= 0 && (y as usize) < s.h && (xx as usize) < s.w)
                .then(|| v[((b * s.h + y as usize) * s.w + xx as usize) * s.c + c])
        };
        let pr = &p.nodes[id];
        let mut y = vec![0f64; n * o.elements()];
        let oi = |b: usize, yy: usize, xx: usize, c: usize| ((b * o.h + yy) * o.w + xx) * o.c + c;
        match &node.op {
            Op::Input { .. } => y = x.iter().map(|&v| v as f64).collect(),
            Op::Conv2d(cv) => {
                let k = pr[0].as_ref().unwrap();
                let (kh, kw) = (cv.kernel[0], cv.kernel[1]);
                let cin_g = s.c / cv.groups;
                let cout_g = cv.filters / cv.groups;
                let (pt, pl) = (pads(cv.padding, s.h, kh, cv.stride[0]), pads(cv.padding, s.w, kw, cv.stride[1]));
                for b in 0..n {
                    for oy in 0..o.h {
                        for ox in 0..o.w {
                            for oc in 0..o.c {
                                let gi = oc / cout_g;
                                let mut acc = pr[2].as_ref().map_or(0.0, |b| b[oc]);
                                for ci in 0..cin_g {
                                    for ky in 0..kh {
                                        for kx in 0..kw {
                                            let iy = (oy * cv.stride[0]) as isize - pt + ky as isize;
                                            let ix = (ox * cv.stride[1]) as isize - pl + kx as isize;
                                            if let Some(v) = at(ins[0], b, iy, ix, gi * cin_g + ci) {
                                                acc += v * k[((oc * cin_g + ci) * kh + ky) * kw + kx];
                                            }
                                        }
                                    }
                                }
                                y[oi(b, oy, ox, oc)] = acc;
                            }
                        }
                    }
                }
            }
            Op::DepthwiseConv2d(d) => {
                let k = pr[0].as_ref().unwrap();
                let (kh, kw) = (d.kernel[0], d.kernel[1]);
                let (pt, pl) = (pads(d.padding, s.h, kh, d.stride[0]), pads(d.padding, s.w, kw, d.stride[1]));
                for b in 0..n {
                    for oy in 0..o.h {
                        for ox in 0..o.w {
                            for c in 0..o.c {
                                let mut acc = pr[2].as_ref().map_or(0.0, |b| b[c]);
                                for ky in 0..kh {
                                    for kx in 0..kw {
                                        let iy = (oy * d.stride[0]) as isize - pt + ky as isize;
                                        let ix = (ox * d.stride[1]) as isize - pl + kx as isize;
                                        if let Some(v) = at(ins[0], b, iy, ix, c) {
                                            acc += v * k[(c * kh + ky) * kw + kx];
                                        }
                                    }
                                }
                                y[oi(b, oy, ox, c)] = acc;
                            }
                        }
                    }
                }
            }
            Op::Dense(d) => {
                let w = pr[1].as_ref().unwrap();
                let nin = s.elements();
                for b in 0..n {
                    for u in 0..d.units {
                        let mut acc = pr[2].as_ref().map_or(0.0, |b| b[u]);
                        for i in 0..nin {
                            acc += ins[0][b * nin + i] * w[i * d.units + u];
                        }
                        y[b * d.units + u] = acc;
                    }
                }
            }
            Op::BatchNorm(bn) => {
                let (gamma, beta) = (pr[3].as_ref().unwrap(), pr[4].as_ref().unwrap());
                let rows = n * o.h * o.w;
                for c in 0..o.c {
                    let (mean, var) = if train {
                        let mean = (0..rows).map(|r| ins[0][r * o.c + c]).sum::<f64>() / rows as f64;
                        let var = (0..rows).map(|r| (ins[0][r * o.c + c] - mean).powi(2)).sum::<f64>() / rows as f64;
                        (mean, var)
                    } else {
                        (pr[5].as_ref().unwrap()[c], pr[6].as_ref().unwrap()[c])
                    };
                    for r in 0..rows {
                        let v = (ins[0][r * o.c + c] - mean) / (var + bn.eps as f64).sqrt();
                        y[r * o.c + c] = v * gamma[c] + beta[c];
                    }
                }
            }
            Op::Relu => y = ins[0].iter().map(|&v| v.max(0.0)).collect(),
            Op::Relu6 => y = ins[0].iter().map(|&v| v.clamp(0.0, 6.0)).collect(),
            Op::MaxPool2d(pl) | Op::AvgPool2d(pl) => {
                let max = matches!(node.op, Op::MaxPool2d(_));
                let st = pl.strides();
                let (pt, pw) = (pads(pl.padding, s.h, pl.pool[0], st[0]), pads(pl.padding, s.w, pl.pool[1], st[1]));
                for b in 0..n {
                    for oy in 0..o.h {
                        for ox in 0..o.w {
                            for c in 0..o.c {
                                let mut vals_in = Vec::new();
                                for ky in 0..pl.pool[0] {
                                    for kx in 0..pl.pool[1] {
                                        let iy = (oy * st[0]) as isize - pt + ky as isize;
                                        let ix = (ox * st[1]) as isize - pw + kx as isize;
                                        vals_in.extend(at(ins[0], b, iy, ix, c));
                                    }
                                }
                                y[oi(b, oy, ox, c)] = if max {
                                    vals_in.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
                                } else {
                                    vals_in.iter().sum::<f64>() / vals_in.len() as f64
                                };
                            }
                        }
                    }
                }
            }
            Op::GlobalAvgPool => {
                let hw = s.h * s.w;
                for b in 0..n {
                    for c in 0..s.c {
                        y[b * s.c + c] = (0..hw).map(|p| ins[0][(b * hw + p) * s.c + c]).sum::<f64>() / hw as f64;
                    }
                }
            }
            Op::Add => {
                for v in &ins {
                    y.iter_mut().zip(v.iter()).for_each(|(y, &v)| *y += v);
                }
            }
            Op::Concat => {
                let rows = n * o.h * o.w;
                let mut off = 0;
                for (k, &i) in node.inputs.iter().enumerate() {
                    let cx = shapes[i].c;
                    for r in 0..rows {
                        for c in 0..cx {
                            y[r * o.c + off + c] = ins[k][r * cx + c];
                        }
                    }
                    off += cx;
                }
            }
            Op::Flatten | Op::Reshape { .. } => y = ins[0].clone(),
            Op::Softmax => unreachable!("not before the logits"),
        }
        if let Some(m) = mask_site[id].and_then(|gi| p.masks[gi].as_ref()) {
            for r in y.chunks_exact_mut(o.c) {
                r.iter_mut().zip(m).for_each(|(v, &m)| *v *= m);
            }
        }
        vals.push(y);
    }
    vals.swap_remove(logits)
}
