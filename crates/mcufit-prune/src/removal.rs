//! Physical channel removal on the backend-free [`Weights`].
//!
//! Given the channels each group keeps, every tensor a removed channel touches is sliced: conv
//! filters (output rows) and conv inputs (kernel input columns), depthwise filters, batch norms,
//! dense rows and columns (one column per pixel after a flatten), biases. The index maps come from
//! the IR's [`ChannelGroups::kept_indices`], so concat offsets and flatten repeats are handled in
//! one place.
//!
//! Removal must not change the function. A removed channel is allowed to be *constant* rather
//! than zero: in the masked network a channel is zeroed at its mask site (after its BN), but a
//! depthwise conv further along the same group adds its bias, and the BN after it shifts it, so
//! the channel reaches the next conv as a constant `c` (for example `relu(β)`-like values). We
//! propagate such constants exactly through channel-wise ops and fold `Σ_taps W·c` into the
//! bias of the layer that consumes them (adding a bias when it had none). A removed channel whose
//! value still depends on the input is an error, as is a constant that reaches a padded
//! convolution unevenly (border pixels see fewer taps, so no bias can stand in for it).

use mcufit_ir::{ChannelGroups, Graph, NodeId, NodeWeights, Op, Padding, Shape, TensorF32, Weights};
use serde::Serialize;

use crate::error::{PruneError, Result};

/// What a channel carries, as far as removal is concerned.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Val {
    /// Depends on the input.
    Live,
    /// The same value at every pixel of every example (0 for a zeroed channel).
    Const(f32),
}

/// What removal did.
#[derive(Debug, Clone, PartialEq, Default, Serialize, serde::Deserialize)]
pub struct RemovalReport {
    /// Channels per group before and after.
    pub sizes_before: Vec<usize>,
    pub sizes_after: Vec<usize>,
    /// Non-zero constant channels whose contribution was folded into a downstream bias.
    pub folded_constants: usize,
    /// Layers that gained a bias to receive folded constants.
    pub biases_added: Vec<String>,
}

/// Validates keep sets: one per group, sorted, unique, in range; fixed groups keep everything,
/// prunable ones at least one channel.
pub fn check_keep(groups: &ChannelGroups, keep: &[Vec<usize>]) -> Result<()> {
    if keep.len() != groups.groups.len() {
        return Err(PruneError::Removal(format!(
            "{} keep sets for {} channel groups",
            keep.len(),
            groups.groups.len()
        )));
    }
    for (g, k) in groups.groups.iter().zip(keep) {
        if k.windows(2).any(|w| w[0] >= w[1]) || k.last().is_some_and(|&x| x >= g.size) {
            return Err(PruneError::Removal(format!(
                "group {}: kept channels must be sorted, unique and below {}",
                g.id, g.size
            )));
        }
        if !g.prunable() && k.len() != g.size {
            return Err(PruneError::Removal(format!(
                "group {} cannot be pruned ({})",
                g.id,
                g.fixed.as_deref().unwrap_or("no producer")
            )));
        }
        if k.is_empty() {
            return Err(PruneError::Removal(format!("group {} would keep no channel", g.id)));
        }
    }
    Ok(())
}

/// Keep sets that keep everything.
pub fn keep_all(groups: &ChannelGroups) -> Vec<Vec<usize>> {
    groups.groups.iter().map(|g| (0..g.size).collect()).collect()
}

/// Where a producer's channels are zeroed in the masked network: at its batch norm when the
/// producer feeds exactly one BN, otherwise at its own output (the same rule as the training
/// network's mask sites).
pub fn mask_site(graph: &Graph, producer: NodeId) -> NodeId {
    let consumers = graph.consumers();
    match consumers[producer].as_slice() {
        [c] if matches!(graph.nodes[*c].op, Op::BatchNorm(_)) => *c,
        _ => producer,
    }
}

/// The masked model of a dense one: zeroes, at every producer's mask site, the channels that the
/// keep sets drop (BN γ = β = 0, or the producer's filter rows and bias). Its outputs equal those
/// of the network with 0/1 masks; [`remove_channels`] then slices it without changing them.
pub fn zero_channels(graph: &Graph, weights: &Weights, keep: &[Vec<usize>]) -> Result<Weights> {
    weights.check(graph)?;
    let groups = graph.channel_groups()?;
    check_keep(&groups, keep)?;
    let mut w = weights.clone();
    for g in groups.groups.iter().filter(|g| g.prunable()) {
        let kept: std::collections::HashSet<usize> = keep[g.id].iter().copied().collect();
        let dropped: Vec<usize> = (0..g.size).filter(|i| !kept.contains(i)).collect();
        if dropped.is_empty() {
            continue;
        }
        for &p in &g.producers {
            let site = mask_site(graph, p);
            let name = &graph.nodes[site].name;
            let lw = w.nodes.get_mut(name).ok_or_else(|| PruneError::Removal(format!("no weights for '{name}'")))?;
            if let Some(bn) = &mut lw.bn {
                for &i in &dropped {
                    bn.gamma[i] = 0.0;
                    bn.beta[i] = 0.0;
                }
            } else {
                let k = lw.kernel.as_mut().ok_or_else(|| PruneError::Removal(format!("'{name}' has no kernel")))?;
                let per = k.data.len() / g.size;
                for &i in &dropped {
                    k.data[i * per..(i + 1) * per].iter_mut().for_each(|x| *x = 0.0);
                }
                if let Some(b) = &mut lw.bias {
                    for &i in &dropped {
                        b[i] = 0.0;
                    }
                }
            }
        }
    }
    Ok(w)
}

/// Per axis: the kernel taps that fall inside the input, if the same for every output position.
fn uniform_taps(input: usize, kernel: usize, stride: usize, padding: Padding, out: usize) -> Option<Vec<usize>> {
    let (before, _) = padding.pads(input, kernel, stride);
    let taps = |o: usize| -> Vec<usize> {
        (0..kernel)
            .filter(|&k| {
                let i = (o * stride + k) as isize - before as isize;
                i >= 0 && (i as usize) < input
            })
            .collect()
    };
    let first = taps(0);
    (1..out).all(|o| taps(o) == first).then_some(first)
}

struct Ctx<'a> {
    groups: &'a ChannelGroups,
    shapes: Vec<Shape>,
    keep: &'a [Vec<usize>],
    /// Per node: the value of each channel of its base (un-repeated) channel axis.
    vals: Vec<Vec<Val>>,
    removed: Vec<Vec<bool>>,
}

impl<'a> Ctx<'a> {
    fn width(&self, node: NodeId) -> usize {
        self.groups.layouts[node].segments.iter().map(|&g| self.groups.groups[g].size).sum()
    }
    /// Removed positions along a node's full channel axis (repeat included).
    fn removed_axis(&self, node: NodeId) -> Vec<usize> {
        let l = &self.groups.layouts[node];
        let mut out = Vec::new();
        let width = self.width(node);
        for r in 0..l.repeat {
            let mut off = r * width;
            for &g in &l.segments {
                out.extend((0..self.groups.groups[g].size).filter(|&i| self.removed[g][i]).map(|i| off + i));
                off += self.groups.groups[g].size;
            }
        }
        out
    }
    fn kept(&self, node: NodeId) -> Vec<usize> {
        self.groups.kept_indices(node, self.keep)
    }
    fn val_at(&self, node: NodeId, axis_index: usize) -> Val {
        let w = self.width(node).max(1);
        self.vals[node][axis_index % w]
    }
}

fn err(node: &str, m: String) -> PruneError {
    PruneError::Removal(format!("node '{node}': {m}"))
}

fn take(weights: &Weights, name: &str) -> Result<NodeWeights> {
    weights.get(name).cloned().ok_or_else(|| err(name, "no weights".into()))
}

/// Removes every channel the keep sets drop; returns the smaller graph (same node names), its
/// weights, and a report. `weights` must be in deployment form (masks folded, see
/// `Network::export_weights`); removed channels must be zero or constant there.
pub fn remove_channels(
    graph: &Graph,
    weights: &Weights,
    keep: &[Vec<usize>],
) -> Result<(Graph, Weights, RemovalReport)> {
    if !weights.masks.is_empty() {
        return Err(PruneError::Removal(
            "the weights carry unfolded channel masks; fold them first (Network::export_weights)".into(),
        ));
    }
    // Every kernel has the shape the graph implies (indexing below relies on it).
    weights.check(graph)?;
    let groups = graph.channel_groups()?;
    check_keep(&groups, keep)?;
    let sizes: Vec<usize> = keep.iter().map(Vec::len).collect();
    let mut new_graph = graph.with_group_sizes(&groups, &sizes)?;
    let removed: Vec<Vec<bool>> = groups
        .groups
        .iter()
        .zip(keep)
        .map(|(g, k)| {
            let mut r = vec![true; g.size];
            k.iter().for_each(|&i| r[i] = false);
            r
        })
        .collect();
    let mut cx = Ctx { groups: &groups, shapes: graph.shapes()?, keep, vals: Vec::new(), removed };
    let mut out = Weights::default();
    let mut report = RemovalReport { sizes_before: groups.sizes(), sizes_after: sizes, ..Default::default() };

    for (id, node) in graph.nodes.iter().enumerate() {
        let name = node.name.as_str();
        let width = cx.width(id);
        let input = node.inputs.first().copied();
        let in_vals = |cx: &Ctx| input.map(|i| cx.vals[i].clone()).unwrap_or_default();
        let vals: Vec<Val> = match &node.op {
            Op::Input { .. } => vec![Val::Live; width],
            Op::Conv2d(c) => {
                let x = input.ok_or_else(|| err(name, "no input".into()))?;
                let (xs, ys) = (cx.shapes[x], cx.shapes[id]);
                let lw = take(weights, name)?;
                let k = lw.kernel.as_ref().ok_or_else(|| err(name, "no kernel".into()))?;
                let (o, kh, kw, i) = (c.filters, c.kernel[0], c.kernel[1], xs.c / c.groups);
                let mut bias = lw.bias.clone();
                let removed_in = if c.groups == 1 { cx.removed_axis(x) } else { Vec::new() };
                let taps = (|| {
                    Some((
                        uniform_taps(xs.h, kh, c.stride[0], c.padding, ys.h)?,
                        uniform_taps(xs.w, kw, c.stride[1], c.padding, ys.w)?,
                    ))
                })();
                for &ri in &removed_in {
                    match cx.val_at(x, ri) {
                        Val::Const(0.0) => {}
                        Val::Const(v) => {
                            let (th, tw) = taps.clone().ok_or_else(|| {
                                err(name, format!("removed input channel {ri} is a constant {v} but the padded convolution sees it unevenly at the borders"))
                            })?;
                            let b = bias.get_or_insert_with(|| vec![0.0; o]);
                            for (oc, bo) in b.iter_mut().enumerate() {
                                let mut s = 0f32;
                                for &y in &th {
                                    for &xx in &tw {
                                        s += k.data[((oc * kh + y) * kw + xx) * i + ri];
                                    }
                                }
                                *bo += s * v;
                            }
                            report.folded_constants += 1;
                        }
                        Val::Live => {
                            return Err(err(
                                name,
                                format!(
                                    "removed input channel {ri} still carries data (it is neither masked nor constant)"
                                ),
                            ))
                        }
                    }
                }
                // Slice: output rows, input columns.
                let ko = cx.kept(id);
                let ki: Vec<usize> = if c.groups == 1 { cx.kept(x) } else { (0..i).collect() };
                let mut data = Vec::with_capacity(ko.len() * kh * kw * ki.len());
                for &oc in &ko {
                    for y in 0..kh {
                        for xx in 0..kw {
                            let base = ((oc * kh + y) * kw + xx) * i;
                            data.extend(ki.iter().map(|&ic| k.data[base + ic]));
                        }
                    }
                }
                if bias.is_some() && lw.bias.is_none() {
                    report.biases_added.push(name.to_string());
                    if let Op::Conv2d(nc) = &mut new_graph.nodes[id].op {
                        nc.bias = true;
                    }
                }
                let vals = (0..o)
                    .map(|oc| {
                        let row = &k.data[oc * kh * kw * i..(oc + 1) * kh * kw * i];
                        if row.iter().all(|&w| w == 0.0) {
                            Val::Const(bias.as_ref().map_or(0.0, |b| b[oc]))
                        } else {
                            Val::Live
                        }
                    })
                    .collect();
                let nb = bias.map(|b| ko.iter().map(|&oc| b[oc]).collect());
                out.nodes.insert(
                    name.into(),
                    NodeWeights {
                        kernel: Some(TensorF32::new(vec![ko.len(), kh, kw, ki.len()], data)?),
                        bias: nb,
                        bn: None,
                    },
                );
                vals
            }
            Op::DepthwiseConv2d(d) => {
                let x = input.ok_or_else(|| err(name, "no input".into()))?;
                let (xs, ys) = (cx.shapes[x], cx.shapes[id]);
                let lw = take(weights, name)?;
                let k = lw.kernel.as_ref().ok_or_else(|| err(name, "no kernel".into()))?;
                let (kh, kw, c) = (d.kernel[0], d.kernel[1], xs.c);
                let taps = (|| {
                    Some((
                        uniform_taps(xs.h, kh, d.stride[0], d.padding, ys.h)?,
                        uniform_taps(xs.w, kw, d.stride[1], d.padding, ys.w)?,
                    ))
                })();
                let iv = in_vals(&cx);
                let b = |ch: usize| lw.bias.as_ref().map_or(0.0, |b| b[ch]);
                let vals = (0..c)
                    .map(|ch| {
                        let all_zero = (0..kh * kw).all(|t| k.data[t * c + ch] == 0.0);
                        match iv[ch] {
                            _ if all_zero => Val::Const(b(ch)),
                            Val::Const(0.0) => Val::Const(b(ch)),
                            Val::Const(v) => match &taps {
                                Some((th, tw)) => {
                                    let mut s = 0f32;
                                    for &y in th {
                                        for &xx in tw {
                                            s += k.data[(y * kw + xx) * c + ch];
                                        }
                                    }
                                    Val::Const(s * v + b(ch))
                                }
                                None => Val::Live,
                            },
                            Val::Live => Val::Live,
                        }
                    })
                    .collect();
                let kc = cx.kept(id);
                let mut data = Vec::with_capacity(kh * kw * kc.len());
                for t in 0..kh * kw {
                    data.extend(kc.iter().map(|&ch| k.data[t * c + ch]));
                }
                let nb = lw.bias.as_ref().map(|b| kc.iter().map(|&ch| b[ch]).collect());
                out.nodes.insert(
                    name.into(),
                    NodeWeights { kernel: Some(TensorF32::new(vec![1, kh, kw, kc.len()], data)?), bias: nb, bn: None },
                );
                vals
            }
            Op::Dense(dn) => {
                let x = input.ok_or_else(|| err(name, "no input".into()))?;
                let n_in = cx.shapes[x].elements();
                let lw = take(weights, name)?;
                let k = lw.kernel.as_ref().ok_or_else(|| err(name, "no kernel".into()))?;
                let u = dn.units;
                let mut bias = lw.bias.clone();
                for j in cx.removed_axis(x) {
                    match cx.val_at(x, j) {
                        Val::Const(0.0) => {}
                        Val::Const(v) => {
                            let b = bias.get_or_insert_with(|| vec![0.0; u]);
                            for (r, bo) in b.iter_mut().enumerate() {
                                *bo += k.data[r * n_in + j] * v;
                            }
                            report.folded_constants += 1;
                        }
                        Val::Live => return Err(err(name, format!("removed input {j} still carries data"))),
                    }
                }
                if bias.is_some() && lw.bias.is_none() {
                    report.biases_added.push(name.to_string());
                    if let Op::Dense(nd) = &mut new_graph.nodes[id].op {
                        nd.bias = true;
                    }
                }
                let ko = cx.kept(id);
                let ki = cx.kept(x);
                let mut data = Vec::with_capacity(ko.len() * ki.len());
                for &r in &ko {
                    data.extend(ki.iter().map(|&j| k.data[r * n_in + j]));
                }
                let vals = (0..u)
                    .map(|r| {
                        if k.data[r * n_in..(r + 1) * n_in].iter().all(|&w| w == 0.0) {
                            Val::Const(bias.as_ref().map_or(0.0, |b| b[r]))
                        } else {
                            Val::Live
                        }
                    })
                    .collect();
                let nb = bias.map(|b| ko.iter().map(|&r| b[r]).collect());
                out.nodes.insert(
                    name.into(),
                    NodeWeights { kernel: Some(TensorF32::new(vec![ko.len(), ki.len()], data)?), bias: nb, bn: None },
                );
                vals
            }
            Op::BatchNorm(_) => {
                let lw = take(weights, name)?;
                let bn = lw.bn.as_ref().ok_or_else(|| err(name, "no batch-norm parameters".into()))?;
                let iv = in_vals(&cx);
                let vals = iv
                    .iter()
                    .enumerate()
                    .map(|(c, v)| {
                        let inv = 1.0 / (bn.var[c] + bn.eps).sqrt();
                        match v {
                            Val::Const(x) => Val::Const((x - bn.mean[c]) * inv * bn.gamma[c] + bn.beta[c]),
                            Val::Live if bn.gamma[c] == 0.0 => Val::Const(bn.beta[c]),
                            Val::Live => Val::Live,
                        }
                    })
                    .collect();
                let kc = cx.kept(id);
                let pick = |v: &Vec<f32>| kc.iter().map(|&c| v[c]).collect::<Vec<f32>>();
                let mut nbn = bn.clone();
                nbn.gamma = pick(&bn.gamma);
                nbn.beta = pick(&bn.beta);
                nbn.mean = pick(&bn.mean);
                nbn.var = pick(&bn.var);
                out.nodes.insert(name.into(), NodeWeights { kernel: None, bias: None, bn: Some(nbn) });
                vals
            }
            Op::Relu => in_vals(&cx).into_iter().map(|v| map_const(v, |x| x.max(0.0))).collect(),
            Op::Relu6 => in_vals(&cx).into_iter().map(|v| map_const(v, |x| x.clamp(0.0, 6.0))).collect(),
            // A constant channel stays that constant through pooling (max and TF-style average
            // pooling never read padding) and through flatten / reshape.
            Op::MaxPool2d(_) | Op::AvgPool2d(_) | Op::GlobalAvgPool | Op::Flatten | Op::Softmax => in_vals(&cx),
            Op::Reshape { .. } => {
                let iv = in_vals(&cx);
                if iv.len() == width {
                    iv
                } else {
                    vec![Val::Live; width]
                }
            }
            Op::Add => {
                let mut acc = cx.vals[node.inputs[0]].clone();
                for &i in &node.inputs[1..] {
                    for (a, b) in acc.iter_mut().zip(&cx.vals[i]) {
                        *a = match (*a, *b) {
                            (Val::Const(x), Val::Const(y)) => Val::Const(x + y),
                            _ => Val::Live,
                        };
                    }
                }
                acc
            }
            Op::Concat => node.inputs.iter().flat_map(|&i| cx.vals[i].clone()).collect(),
        };
        if vals.len() != width {
            return Err(err(name, format!("internal: {} channel values for a width of {width}", vals.len())));
        }
        cx.vals.push(vals);
    }
    new_graph.validate()?;
    Ok((new_graph, out, report))
}

fn map_const(v: Val, f: impl Fn(f32) -> f32) -> Val {
    match v {
        Val::Const(x) => Val::Const(f(x)),
        Val::Live => Val::Live,
    }
}
