//! Float (f32) reference interpreter over the IR graph, node by node, unfused. Used for
//! calibration and as the accuracy reference for the int8 interpreter.

use mcufit_ir::{Graph, Op, Padding, Shape, Weights};

use crate::error::{QuantError, Result};

/// Spatial geometry shared by conv and pooling: TF padding semantics (top/left = total / 2).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub pad_top: isize,
    pub pad_left: isize,
}

impl Window {
    pub fn new(input: Shape, kernel: [usize; 2], stride: [usize; 2], padding: Padding) -> Self {
        let (pt, _) = padding.pads(input.h, kernel[0], stride[0]);
        let (pl, _) = padding.pads(input.w, kernel[1], stride[1]);
        Window {
            kh: kernel[0],
            kw: kernel[1],
            sh: stride[0],
            sw: stride[1],
            pad_top: pt as isize,
            pad_left: pl as isize,
        }
    }
}

pub(crate) fn conv2d_f32(
    x: &[f32],
    xs: Shape,
    kernel: &[f32],
    bias: Option<&[f32]>,
    groups: usize,
    win: Window,
    ys: Shape,
) -> Vec<f32> {
    let in_per_group = xs.c / groups;
    let out_per_group = ys.c / groups;
    let mut y = vec![0f32; ys.elements()];
    for oy in 0..ys.h {
        for ox in 0..ys.w {
            let iy0 = (oy * win.sh) as isize - win.pad_top;
            let ix0 = (ox * win.sw) as isize - win.pad_left;
            for oc in 0..ys.c {
                let g = oc / out_per_group;
                let mut acc = bias.map_or(0.0, |b| b[oc]);
                for ky in 0..win.kh {
                    let iy = iy0 + ky as isize;
                    if iy < 0 || iy >= xs.h as isize {
                        continue;
                    }
                    for kx in 0..win.kw {
                        let ix = ix0 + kx as isize;
                        if ix < 0 || ix >= xs.w as isize {
                            continue;
                        }
                        let xo = ((iy as usize * xs.w + ix as usize) * xs.c) + g * in_per_group;
                        let ko = ((oc * win.kh + ky) * win.kw + kx) * in_per_group;
                        for ic in 0..in_per_group {
                            acc += x[xo + ic] * kernel[ko + ic];
                        }
                    }
                }
                y[(oy * ys.w + ox) * ys.c + oc] = acc;
            }
        }
    }
    y
}

pub(crate) fn depthwise_f32(
    x: &[f32],
    xs: Shape,
    kernel: &[f32],
    bias: Option<&[f32]>,
    win: Window,
    ys: Shape,
) -> Vec<f32> {
    let mut y = vec![0f32; ys.elements()];
    let c = xs.c;
    for oy in 0..ys.h {
        for ox in 0..ys.w {
            let iy0 = (oy * win.sh) as isize - win.pad_top;
            let ix0 = (ox * win.sw) as isize - win.pad_left;
            for ch in 0..c {
                let mut acc = bias.map_or(0.0, |b| b[ch]);
                for ky in 0..win.kh {
                    let iy = iy0 + ky as isize;
                    if iy < 0 || iy >= xs.h as isize {
                        continue;
                    }
                    for kx in 0..win.kw {
                        let ix = ix0 + kx as isize;
                        if ix < 0 || ix >= xs.w as isize {
                            continue;
                        }
                        acc += x[(iy as usize * xs.w + ix as usize) * c + ch] * kernel[(ky * win.kw + kx) * c + ch];
                    }
                }
                y[(oy * ys.w + ox) * c + ch] = acc;
            }
        }
    }
    y
}

pub(crate) fn dense_f32(x: &[f32], kernel: &[f32], bias: Option<&[f32]>, units: usize) -> Vec<f32> {
    let n = x.len();
    (0..units)
        .map(|u| {
            let row = &kernel[u * n..(u + 1) * n];
            bias.map_or(0.0, |b| b[u]) + row.iter().zip(x).map(|(w, v)| w * v).sum::<f32>()
        })
        .collect()
}

/// Max or average pooling; padded positions are excluded (TF semantics).
pub(crate) fn pool_f32(x: &[f32], xs: Shape, win: Window, ys: Shape, max: bool) -> Vec<f32> {
    let mut y = vec![0f32; ys.elements()];
    for oy in 0..ys.h {
        for ox in 0..ys.w {
            let iy0 = (oy * win.sh) as isize - win.pad_top;
            let ix0 = (ox * win.sw) as isize - win.pad_left;
            for ch in 0..xs.c {
                let mut m = f32::NEG_INFINITY;
                let mut s = 0f32;
                let mut n = 0usize;
                for ky in 0..win.kh {
                    let iy = iy0 + ky as isize;
                    if iy < 0 || iy >= xs.h as isize {
                        continue;
                    }
                    for kx in 0..win.kw {
                        let ix = ix0 + kx as isize;
                        if ix < 0 || ix >= xs.w as isize {
                            continue;
                        }
                        let v = x[(iy as usize * xs.w + ix as usize) * xs.c + ch];
                        m = m.max(v);
                        s += v;
                        n += 1;
                    }
                }
                y[(oy * ys.w + ox) * xs.c + ch] = if max { m } else { s / n.max(1) as f32 };
            }
        }
    }
    y
}

pub(crate) fn softmax_f32(x: &[f32], depth: usize) -> Vec<f32> {
    let mut y = vec![0f32; x.len()];
    for (xr, yr) in x.chunks(depth).zip(y.chunks_mut(depth)) {
        let m = xr.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let mut s = 0f32;
        for (o, &v) in yr.iter_mut().zip(xr) {
            *o = (v - m).exp();
            s += *o;
        }
        for o in yr.iter_mut() {
            *o /= s;
        }
    }
    y
}

/// Runs the float network on one NHWC input; returns every node's output, in node order.
/// `weights` are taken as they are (check them first with [`Weights::check_deployable`]).
pub fn run_float_all(graph: &Graph, weights: &Weights, input: &[f32]) -> Result<Vec<Vec<f32>>> {
    let shapes = graph.shapes()?;
    let in_shape = graph.input_shape();
    if input.len() != in_shape.elements() {
        return Err(QuantError::InputSize { expected: in_shape.elements(), got: input.len() });
    }
    let mut vals: Vec<Vec<f32>> = Vec::with_capacity(graph.nodes.len());
    for (id, node) in graph.nodes.iter().enumerate() {
        let ys = shapes[id];
        let x = |k: usize| -> &[f32] { &vals[node.inputs[k]] };
        let xs = node.inputs.first().map(|&i| shapes[i]).unwrap_or(ys);
        let kernel = || -> Result<(&[f32], Option<&[f32]>)> {
            match weights.kernel(&node.name) {
                Some(k) => Ok((&k.data, weights.bias(&node.name))),
                None => Err(QuantError::MissingWeights { node: node.name.clone() }),
            }
        };
        let out = match &node.op {
            Op::Input { .. } => input.to_vec(),
            Op::Conv2d(c) => {
                let (k, b) = kernel()?;
                conv2d_f32(x(0), xs, k, b, c.groups, Window::new(xs, c.kernel, c.stride, c.padding), ys)
            }
            Op::DepthwiseConv2d(d) => {
                let (k, b) = kernel()?;
                depthwise_f32(x(0), xs, k, b, Window::new(xs, d.kernel, d.stride, d.padding), ys)
            }
            Op::Dense(d) => {
                let (k, b) = kernel()?;
                dense_f32(x(0), k, b, d.units)
            }
            Op::BatchNorm(bn) => match weights.bn(&node.name) {
                Some(w) => {
                    let c = ys.c;
                    x(0).iter()
                        .enumerate()
                        .map(|(i, &v)| {
                            let ch = i % c;
                            (v - w.mean[ch]) * w.gamma[ch] / (w.var[ch] + bn.eps).sqrt() + w.beta[ch]
                        })
                        .collect()
                }
                None => return Err(QuantError::MissingWeights { node: node.name.clone() }),
            },
            Op::Relu => x(0).iter().map(|&v| v.max(0.0)).collect(),
            Op::Relu6 => x(0).iter().map(|&v| v.clamp(0.0, 6.0)).collect(),
            Op::MaxPool2d(p) | Op::AvgPool2d(p) => {
                let win = Window::new(xs, p.pool, p.strides(), p.padding);
                pool_f32(x(0), xs, win, ys, matches!(node.op, Op::MaxPool2d(_)))
            }
            Op::GlobalAvgPool => {
                let win = Window { kh: xs.h, kw: xs.w, sh: 1, sw: 1, pad_top: 0, pad_left: 0 };
                pool_f32(x(0), xs, win, Shape::new(1, 1, xs.c), false)
            }
            Op::Add => {
                let mut acc = x(0).to_vec();
                for k in 1..node.inputs.len() {
                    for (a, b) in acc.iter_mut().zip(x(k)) {
                        *a += b;
                    }
                }
                acc
            }
            Op::Concat => {
                let mut out = vec![0f32; ys.elements()];
                let mut off = 0;
                for &i in &node.inputs {
                    let c = shapes[i].c;
                    for p in 0..ys.h * ys.w {
                        out[p * ys.c + off..p * ys.c + off + c].copy_from_slice(&vals[i][p * c..(p + 1) * c]);
                    }
                    off += c;
                }
                out
            }
            Op::Flatten | Op::Reshape { .. } => x(0).to_vec(),
            Op::Softmax => softmax_f32(x(0), ys.c),
        };
        vals.push(out);
    }
    Ok(vals)
}

/// Runs the float network and returns the output node's value.
pub fn run_float(graph: &Graph, weights: &Weights, input: &[f32]) -> Result<Vec<f32>> {
    let mut all = run_float_all(graph, weights, input)?;
    Ok(all.pop().unwrap_or_default())
}
