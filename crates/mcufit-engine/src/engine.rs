//! The [`Engine`]: a plan built once from the graph, per-node buffers kept between steps, and the
//! forward / backward walks over the nodes.

use std::time::{Duration, Instant};

use mcufit_ir::{Graph, NodeId, Op, Shape};

use crate::conv::{self, ConvPlan, Window};
use crate::depthwise::Depthwise;
use crate::elem::{self, ensure, scratch};
use crate::matmul::{matmul, View};
use crate::norm::{self, BnStats};
use crate::pool;
use crate::{EngineError, Mode, NodeParams, Params, Result};

/// How one node is computed, with the state it keeps between forward and backward.
enum Step {
    Input,
    /// Ordinary convolution: GEMM of the input (1x1 stride 1) or its im2col matrix with `wmat`.
    Conv {
        plan: ConvPlan,
        /// The kernel re-laid as `[(ky, kx, ci), cout]` (filled by each forward).
        wmat: Vec<f32>,
        /// Its gradient, before re-laying to burn's layout.
        dwmat: Vec<f32>,
        /// In [`Mode::Train`]: the batch norm (+ ReLU) whose output is this conv's input (its
        /// only reader), applied from the BN's input as the conv pads each image (direct form)
        /// or to each chunk (1x1 stride 1, recomputed in the backward).
        bn_in: Option<NodeId>,
        /// Zero-padded copies of the input images (direct stride-1 convolutions), kept from the
        /// forward for the backward; and the kernel of the input gradient (scratch).
        xpad: Vec<f32>,
        wflip: Vec<f32>,
    },
    /// Depthwise convolution (multiplier 1) with the kernel re-laid as `[kh·kw, c]`.
    Depthwise {
        dw: Depthwise,
        wmat: Vec<f32>,
        /// In [`Mode::Train`]: the batch norm (+ ReLU) whose output is this conv's input (its
        /// only reader), applied to each image from the BN's input, forward and backward.
        bn_in: Option<NodeId>,
        /// The flipped kernel of the stride-1 input gradient (scratch).
        kflip: Vec<f32>,
    },
    Dense {
        nin: usize,
        units: usize,
    },
    BatchNorm {
        eps: f32,
        stats: BnStats,
        /// The cap of a ReLU fused onto the output (the BN's only consumer).
        relu: norm::Relu,
        /// In [`Mode::Train`] the output (after the ReLU) is only read by this max pooling, which
        /// computes it on the fly ([`pool::max_forward_bn`]): it is never stored. When the
        /// pooling's windows tile the input, the BN's backward also reads the pooling's output
        /// gradient directly ([`norm::Dy::Pooled`]).
        pooled: Option<NodeId>,
        /// In [`Mode::Train`] the output is only read by an add that computes it on the fly
        /// ([`norm::add_bn_forward`]): it is never stored.
        in_add: bool,
        /// In [`Mode::Train`] the output is only read by a conv that computes it on the fly as
        /// it pads its input: it is never stored.
        in_conv: bool,
    },
    /// ReLU (`cap` = infinity) or ReLU6 (`cap` = 6).
    Relu {
        cap: f32,
    },
    MaxPool {
        win: Window,
        arg: Vec<u32>,
        /// In [`Mode::Train`]: the batch norm (+ ReLU) before, applied to its input on the fly.
        bn: Option<NodeId>,
    },
    AvgPool {
        win: Window,
    },
    GlobalAvgPool,
    /// Sum of the inputs, with the cap of a ReLU fused onto it (its only consumer).
    Add {
        relu: norm::Relu,
        /// In [`Mode::Train`], for a two-input add: the BN (no ReLU, the add its only consumer)
        /// whose output input `k` is, computed on the fly from the BN's input.
        bns: [Option<NodeId>; 2],
    },
    Concat,
    /// Flatten / reshape: NHWC data unchanged, the node shares its input's buffers.
    Alias,
    /// A ReLU computed by the batch norm or add before it: shares its buffers like an alias.
    FusedRelu,
}

impl Step {
    fn depthwise(win: Window, bn_in: Option<NodeId>) -> Step {
        let k = win.kh * win.kw * win.c;
        Step::Depthwise { dw: Depthwise::new(win), wmat: vec![0.0; k], bn_in, kflip: Vec::new() }
    }

    fn kind(&self) -> &'static str {
        match self {
            Step::Input => "input",
            Step::Conv { .. } => "conv2d",
            Step::Depthwise { .. } => "depthwise_conv2d",
            Step::Dense { .. } => "dense",
            Step::BatchNorm { .. } => "batch_norm",
            Step::Relu { .. } => "relu",
            Step::MaxPool { .. } => "max_pool2d",
            Step::AvgPool { .. } => "avg_pool2d",
            Step::GlobalAvgPool => "global_avg_pool",
            Step::Add { .. } => "add",
            Step::Concat => "concat",
            Step::Alias => "flatten/reshape",
            Step::FusedRelu => "relu (fused into batch_norm / add)",
        }
    }
}

/// Forward and backward of an mcufit IR graph on the CPU (see the crate docs for the contract).
///
/// Buffers are sized for the batch size of the last call and reused: steps at a constant batch
/// size allocate nothing (beyond gemm's own packing buffers).
pub struct Engine {
    steps: Vec<Step>,
    names: Vec<String>,
    inputs: Vec<Vec<NodeId>>,
    shapes: Vec<Shape>,
    mask_site: Vec<Option<usize>>,
    /// The node whose buffers hold each node's output (itself, or the source of an alias).
    buf: Vec<NodeId>,
    /// Whether a node's output gradient is needed (some parameter or mask lies at or before it).
    needs_grad: Vec<bool>,
    logits: NodeId,
    classes: usize,
    /// Batch size and mode of the last completed forward (`None`: no valid forward).
    last: Option<(usize, Mode)>,
    acts: Vec<Vec<f32>>,
    grads: Vec<Vec<f32>>,
    /// Output before the mask, for mask sites that are not batch norms.
    premask: Vec<Vec<f32>>,
    written: Vec<bool>,
    /// `deferred[conv]`: in this backward, the BN after the conv left its input gradient (the
    /// conv's dY) to the conv, which computes it image by image ([`norm::bn_dx_image`]).
    deferred: Vec<bool>,
    /// Shared partial-sum scratch of the reductions.
    part: Vec<f32>,
    /// `eval_fold[conv] = Some(bn)` (an ordinary or depthwise conv): in [`Mode::Eval`] the BN
    /// (the conv's only consumer) is applied by the conv as it writes each chunk; the BN then just
    /// takes over the buffer. In [`Mode::Train`] the conv computes the BN's statistics partials,
    /// and the BN's backward may leave its input gradient to the conv (`deferred`).
    eval_fold: Vec<Option<NodeId>>,
    /// Coefficients of a folded BN (scratch: `[a, b]` then their tiles).
    epi: (Vec<f32>, Vec<f32>),
    grad: Params,
    times: Vec<(Duration, Duration)>,
}

fn invalid(m: String) -> EngineError {
    EngineError::Invalid(m)
}

/// A required parameter of `len` values.
fn need<'a>(v: &'a Option<Vec<f32>>, len: usize, node: &str, what: &str) -> Result<&'a [f32]> {
    match v {
        Some(v) if v.len() == len => Ok(v),
        Some(v) => Err(invalid(format!("node '{node}': {what} has {} values, expected {len}", v.len()))),
        None => Err(invalid(format!("node '{node}' needs a {what} parameter ({len} values)"))),
    }
}

/// An optional parameter (a bias) of `len` values.
fn opt<'a>(v: &'a Option<Vec<f32>>, len: usize, node: &str, what: &str) -> Result<Option<&'a [f32]>> {
    v.as_ref().map(|_| need(v, len, node, what)).transpose()
}

/// The BN (+ ReLU) of a training forward as its reader applies it (the statistics and `γ·m`,
/// `β·m` of the forward, in `stats.coef[..2·c]` until the BN's backward).
fn bn_act(step: &Step) -> pool::BnAct<'_> {
    let Step::BatchNorm { stats, relu, .. } = step else { unreachable!("a BN read on the fly") };
    let c = stats.mean.len();
    pool::BnAct {
        mean: &stats.mean,
        inv_std: &stats.inv_std,
        ga: &stats.coef[..c],
        gb: &stats.coef[c..2 * c],
        relu: relu.is_some(),
        cap: relu.unwrap_or(0.0),
    }
}

/// The dY of node `id`'s backward when BN `bn` after it left its input gradient to it
/// (`later = steps[id + 1..]`, `ghi = grads[id + 1..]`, `xbn` the BN's input): image `i`'s
/// computed by [`norm::bn_dx_image`] from the BN's statistics, ReLU and output gradient (that of
/// the max pooling after it when the pooling reads it, see [`norm::Dy`]). `None` when `bn` is.
fn deferred_dy<'a>(
    id: NodeId,
    bn: Option<NodeId>,
    later: &'a [Step],
    ghi: &'a [Vec<f32>],
    xbn: &'a [f32],
) -> Option<impl Fn(usize, &mut [f32]) + Sync + 'a> {
    let bn = bn?;
    let Step::BatchNorm { stats, relu, pooled, .. } = &later[bn - id - 1] else {
        unreachable!("eval_fold targets a BN")
    };
    let dys = match pooled.map(|pid| (pid, &later[pid - id - 1])) {
        Some((pid, Step::MaxPool { win, arg, .. })) if win.tiles() => norm::Dy::Pooled(win, &ghi[pid - id - 1], arg),
        _ => norm::Dy::Full(&ghi[bn - id - 1]),
    };
    let relu = *relu;
    Some(move |i: usize, out: &mut [f32]| norm::bn_dx_image(stats, relu, dys, xbn, i, out))
}

/// Sets `g` to zeros shaped like `p` (`None` where `p` is).
fn zeros_like(g: &mut Option<Vec<f32>>, p: &Option<Vec<f32>>) {
    match p {
        Some(p) => {
            let v = g.get_or_insert_with(Vec::new);
            ensure(v, p.len());
            v.fill(0.0);
        }
        None => *g = None,
    }
}

impl Engine {
    /// Plans the computation of `graph` up to `logits_node` (a flat `[1, 1, classes]` tensor; later
    /// nodes are ignored). `mask_site[node] = Some(g)`: channel group `g`'s mask multiplies that
    /// node's output channels. `Err(Unsupported)` for what the engine does not implement (grouped
    /// convolutions other than depthwise, a softmax before the logits, a mask on an input,
    /// flatten or reshape node), so that the caller can fall back to burn.
    pub fn new(graph: &Graph, logits_node: NodeId, mask_site: Vec<Option<usize>>) -> Result<Engine> {
        let shapes = graph.shapes()?;
        let count = graph.nodes.len();
        if logits_node >= count {
            return Err(invalid(format!("logits node #{logits_node} is not in the graph ({count} nodes)")));
        }
        if !shapes[logits_node].is_flat() {
            return Err(invalid(format!(
                "logits node '{}' has shape {}; it must be a flat [1,1,classes] tensor",
                graph.nodes[logits_node].name, shapes[logits_node]
            )));
        }
        if mask_site.len() != count {
            return Err(invalid(format!("mask_site has {} entries, the graph has {count} nodes", mask_site.len())));
        }
        let end = logits_node + 1;
        let mut steps = Vec::with_capacity(end);
        let mut buf = Vec::with_capacity(end);
        let mut needs_grad = Vec::with_capacity(end);
        let mut consumers = vec![0usize; end];
        for node in &graph.nodes[..end] {
            for &i in &node.inputs {
                consumers[i] += 1;
            }
        }
        for (id, node) in graph.nodes.iter().enumerate().take(end) {
            let unsupported = |what: &str| EngineError::Unsupported(format!("node '{}': {what}", node.name));
            let inp = node.inputs.first().map(|&i| shapes[i]).unwrap_or(shapes[id]);
            let out = shapes[id];
            // The batch norm (+ ReLU) whose output only this node reads: it may compute it on
            // the fly (`in_conv`, see `Step::BatchNorm`), when `ok`.
            let mut bn_reader = |ok: bool| {
                let &src = node.inputs.first()?;
                let b = buf[src];
                match &mut steps[b] {
                    Step::BatchNorm { pooled: None, in_add: false, in_conv, .. }
                        if ok && consumers[src] == 1 && consumers[b] == 1 && b != 0 =>
                    {
                        *in_conv = true;
                        Some(b)
                    }
                    _ => None,
                }
            };
            let step = match &node.op {
                Op::Input { .. } => Step::Input,
                Op::Conv2d(c) if c.groups == 1 => {
                    let win = Window::new(inp, out, c.kernel, c.stride, c.padding);
                    let k = c.kernel[0] * c.kernel[1] * inp.c;
                    let plan = ConvPlan { win, cout: c.filters, direct: c.kernel == [1, 1] && c.stride == [1, 1] };
                    // The only reader of a BN's output (or of the ReLU fused into it), direct form.
                    let bn_in = bn_reader(plan.is_direct() || plan.direct);
                    Step::Conv {
                        plan,
                        bn_in,
                        wmat: vec![0.0; k * c.filters],
                        dwmat: vec![0.0; k * c.filters],
                        xpad: Vec::new(),
                        wflip: Vec::new(),
                    }
                }
                // A conv with one group per channel is a depthwise conv, in the same kernel layout.
                Op::Conv2d(c) if c.groups == inp.c && c.filters == inp.c => {
                    let win = Window::new(inp, out, c.kernel, c.stride, c.padding);
                    Step::depthwise(win, bn_reader(true))
                }
                Op::Conv2d(c) => {
                    return Err(unsupported(&format!(
                        "grouped conv2d (groups={}, {} -> {} channels) other than depthwise",
                        c.groups, inp.c, c.filters
                    )))
                }
                Op::DepthwiseConv2d(d) => {
                    let win = Window::new(inp, out, d.kernel, d.stride, d.padding);
                    Step::depthwise(win, bn_reader(true))
                }
                Op::Dense(d) => Step::Dense { nin: inp.elements(), units: d.units },
                Op::BatchNorm(b) => Step::BatchNorm {
                    eps: b.eps,
                    stats: BnStats {
                        mean: vec![0.0; out.c],
                        var: vec![0.0; out.c],
                        inv_std: vec![0.0; out.c],
                        coef: vec![0.0; 5 * out.c],
                        tiles: Vec::new(),
                        pre: Vec::new(),
                        pre_rows: 0,
                    },
                    relu: None,
                    pooled: None,
                    in_add: false,
                    in_conv: false,
                },
                Op::Relu | Op::Relu6 => {
                    let cap = if matches!(node.op, Op::Relu) { f32::INFINITY } else { 6.0 };
                    // A ReLU that is the only consumer of a batch norm is computed by that BN (one
                    // pass over the data instead of two, forward and backward).
                    let src = node.inputs[0];
                    match &mut steps[src] {
                        Step::BatchNorm { relu, .. } if consumers[src] == 1 && mask_site[id].is_none() => {
                            *relu = Some(cap);
                            Step::FusedRelu
                        }
                        // Likewise an add (whose output is not masked: the mask comes before the ReLU).
                        Step::Add { relu, .. }
                            if consumers[src] == 1 && mask_site[id].is_none() && mask_site[src].is_none() =>
                        {
                            *relu = Some(cap);
                            Step::FusedRelu
                        }
                        _ => Step::Relu { cap },
                    }
                }
                Op::MaxPool2d(p) => {
                    // A max pooling that is the only reader of a BN's output (or of the ReLU
                    // fused into it) computes that output itself in training.
                    let (src, b) = (node.inputs[0], buf[node.inputs[0]]);
                    let bn = match &mut steps[b] {
                        Step::BatchNorm { pooled, .. } if consumers[src] == 1 && consumers[b] == 1 && b != 0 => {
                            *pooled = Some(id);
                            Some(b)
                        }
                        _ => None,
                    };
                    Step::MaxPool { win: Window::new(inp, out, p.pool, p.strides(), p.padding), arg: Vec::new(), bn }
                }
                Op::AvgPool2d(p) => Step::AvgPool { win: Window::new(inp, out, p.pool, p.strides(), p.padding) },
                Op::GlobalAvgPool => Step::GlobalAvgPool,
                Op::Add => {
                    let mut bns = [None; 2];
                    if node.inputs.len() == 2 {
                        for (k, &src) in node.inputs.iter().enumerate() {
                            if let Step::BatchNorm { relu: None, pooled: None, in_add, .. } = &mut steps[src] {
                                if consumers[src] == 1 && src != 0 {
                                    *in_add = true;
                                    bns[k] = Some(src);
                                }
                            }
                        }
                    }
                    Step::Add { relu: None, bns }
                }
                Op::Concat => Step::Concat,
                Op::Flatten | Op::Reshape { .. } => Step::Alias,
                Op::Softmax => return Err(unsupported("softmax before the logits node")),
            };
            if mask_site[id].is_some() && matches!(step, Step::Input | Step::Alias) {
                return Err(unsupported(&format!("a channel mask on a '{}' node", node.op.kind())));
            }
            let alias = matches!(step, Step::Alias | Step::FusedRelu);
            buf.push(if alias { buf[node.inputs[0]] } else { id });
            let has_params = matches!(step, Step::Conv { .. } | Step::Depthwise { .. } | Step::Dense { .. })
                || matches!(step, Step::BatchNorm { .. })
                || mask_site[id].is_some();
            needs_grad.push(id > 0 && (has_params || node.inputs.iter().any(|&i| needs_grad[i])));
            steps.push(step);
        }
        let mut eval_fold = vec![None; end];
        for (id, node) in graph.nodes.iter().enumerate().take(end) {
            if let (Step::BatchNorm { .. }, Some(&src)) = (&steps[id], node.inputs.first()) {
                let producer = matches!(steps[src], Step::Conv { .. } | Step::Depthwise { .. });
                if producer && consumers[src] == 1 && mask_site[src].is_none() {
                    eval_fold[src] = Some(id);
                }
            }
        }
        Ok(Engine {
            eval_fold,
            epi: (Vec::new(), Vec::new()),
            names: graph.nodes[..end].iter().map(|n| n.name.clone()).collect(),
            inputs: graph.nodes[..end].iter().map(|n| n.inputs.clone()).collect(),
            shapes: shapes[..end].to_vec(),
            mask_site: mask_site[..end].to_vec(),
            buf,
            needs_grad,
            logits: logits_node,
            classes: shapes[logits_node].c,
            last: None,
            acts: vec![Vec::new(); end],
            grads: vec![Vec::new(); end],
            premask: vec![Vec::new(); end],
            written: vec![false; end],
            deferred: vec![false; end],
            part: Vec::new(),
            grad: Params::default(),
            times: vec![(Duration::ZERO, Duration::ZERO); end],
            steps,
        })
    }

    /// Forward pass of `n` NHWC images (`x`: `n·h·w·c` floats). Returns the logits `[n, classes]`,
    /// row-major. [`Mode::Train`] uses batch statistics and keeps what [`Engine::backward`]
    /// needs; [`Mode::Eval`] uses the running statistics (`running_mean` / `running_var` must be
    /// set on every batch norm).
    pub fn forward(&mut self, params: &Params, x: &[f32], n: usize, mode: Mode) -> Result<&[f32]> {
        self.last = None;
        let s = self.shapes[0];
        if n == 0 || x.len() != n * s.elements() {
            return Err(invalid(format!(
                "a batch of {n} images needs {} floats ({}x{}x{} NHWC each), got {} (n must be > 0)",
                n * s.elements(),
                s.h,
                s.w,
                s.c,
                x.len()
            )));
        }
        if params.nodes.len() < self.steps.len() {
            return Err(invalid(format!(
                "params has {} node entries, the graph needs one per node ({} up to the logits)",
                params.nodes.len(),
                self.steps.len()
            )));
        }
        // The whole walk runs on one rayon worker: the parallel loops of the nodes then start
        // from inside the pool instead of each handing its work over from a foreign thread (a
        // sleep / wake-up per loop, which dominated small models).
        rayon::scope(|_| -> Result<()> {
            for id in 0..self.steps.len() {
                let t0 = Instant::now();
                self.forward_node(id, params, x, n, mode)?;
                self.times[id].0 = t0.elapsed();
            }
            Ok(())
        })?;
        self.last = Some((n, mode));
        Ok(&self.acts[self.buf[self.logits]][..n * self.classes])
    }

    /// The mask applied at `id`'s output, if any, checked against the channel count.
    fn mask<'a>(&self, params: &'a Params, id: NodeId) -> Result<Option<&'a [f32]>> {
        let Some(g) = self.mask_site[id] else { return Ok(None) };
        let slot = params.masks.get(g).ok_or_else(|| {
            invalid(format!(
                "node '{}' is the mask site of group {g}, but params.masks has {} groups",
                self.names[id],
                params.masks.len()
            ))
        })?;
        opt(slot, self.shapes[id].c, &self.names[id], &format!("mask of group {g}"))
    }

    fn forward_node(&mut self, id: NodeId, params: &Params, x: &[f32], n: usize, mode: Mode) -> Result<()> {
        if matches!(self.steps[id], Step::Alias | Step::FusedRelu) {
            return Ok(());
        }
        let mask = self.mask(params, id)?;
        // An evaluation-mode BN folded into this conv: its tiled coefficients and ReLU.
        let epi = match (mode, self.eval_fold[id]) {
            (Mode::Eval, Some(bn)) => {
                let bn_mask = self.mask(params, bn)?;
                let (bp, bname, c) = (&params.nodes[bn], &self.names[bn], self.shapes[bn].c);
                let Step::BatchNorm { eps, relu, .. } = self.steps[bn] else { unreachable!("eval_fold targets a BN") };
                let gamma = need(&bp.gamma, c, bname, "gamma")?;
                let beta = need(&bp.beta, c, bname, "beta")?;
                let rm = need(&bp.running_mean, c, bname, "running_mean (eval mode)")?;
                let rv = need(&bp.running_var, c, bname, "running_var (eval mode)")?;
                let (coef, tiles) = &mut self.epi;
                ensure(coef, 2 * c);
                let (a, _) = norm::eval_coefs(gamma, beta, rm, rv, bn_mask, eps, coef, tiles);
                Some((a.len(), relu))
            }
            _ => None,
        };
        let Engine { steps, names, inputs, shapes, buf, acts, premask, part, eval_fold, epi: epi_buf, .. } = self;
        let epi = epi.map(|(t, relu)| (&epi_buf.1[..t], &epi_buf.1[t..2 * t], relu));
        // A training-mode BN that is this conv's only consumer: the conv computes its statistics
        // partials as it writes each chunk.
        let (steps, later) = steps.split_at_mut(id + 1);
        let (before, step) = steps.split_at_mut(id);
        let bn_stats = match (mode, eval_fold[id]) {
            (Mode::Train, Some(bn)) => match &mut later[bn - id - 1] {
                Step::BatchNorm { stats, .. } => Some(stats),
                _ => None,
            },
            _ => None,
        };
        let (name, p, out_shape) = (&names[id], &params.nodes[id], shapes[id]);
        let mut y = std::mem::take(&mut acts[id]);
        ensure(&mut y, n * out_shape.elements());
        let arg = |k: usize| -> &[f32] { &acts[buf[inputs[id][k]]] };
        let mut mask_done = false;
        match &mut step[0] {
            Step::Input => y.copy_from_slice(x),
            Step::Conv { plan, wmat, xpad, bn_in, .. } => {
                let (win, cout) = (&plan.win, plan.cout);
                let (cin, kk) = (win.c, win.kh * win.kw * win.c);
                let kernel = need(&p.kernel, kk * cout, name, "kernel [out, in, kh, kw]")?;
                conv::kernel_to_matrix(kernel, cout, cin, win.kh, win.kw, wmat);
                let bias = opt(&p.bias, cout, name, "bias")?;
                let stats = bn_stats.map(|st| {
                    let (chunks, rows) = plan.stat_chunks(n);
                    ensure(&mut st.pre, chunks * norm::stats_record_len(cout));
                    st.pre_rows = rows;
                    &mut st.pre[..]
                });
                match (mode, *bn_in) {
                    (Mode::Train, Some(b)) => {
                        let f = bn_act(&before[b]);
                        let x = &acts[buf[inputs[b][0]]];
                        plan.forward(x, wmat, bias, epi, stats, Some(&f), xpad, &mut y);
                    }
                    _ => plan.forward(arg(0), wmat, bias, epi, stats, None, xpad, &mut y),
                }
            }
            Step::Depthwise { dw, wmat, bn_in, .. } => {
                let (c, taps) = (dw.g.c, dw.g.kh * dw.g.kw);
                let kernel = need(&p.kernel, taps * c, name, "kernel [c, 1, kh, kw]")?;
                for ch in 0..c {
                    for t in 0..taps {
                        wmat[t * c + ch] = kernel[ch * taps + t];
                    }
                }
                let bias = opt(&p.bias, c, name, "bias")?;
                let stats = bn_stats.map(|st| {
                    ensure(&mut st.pre, n * norm::stats_record_len(c));
                    st.pre_rows = dw.g.oh * dw.g.ow;
                    &mut st.pre[..]
                });
                match (mode, *bn_in) {
                    (Mode::Train, Some(b)) => {
                        let f = bn_act(&before[b]);
                        dw.forward(&acts[buf[inputs[b][0]]], wmat, bias, epi, stats, Some(&f), &mut y);
                    }
                    _ => dw.forward(arg(0), wmat, bias, epi, stats, None, &mut y),
                }
            }
            Step::Dense { nin, units } => {
                let w = need(&p.weight, *nin * *units, name, "weight [in, units]")?;
                let bias = opt(&p.bias, *units, name, "bias")?;
                if let Some(b) = bias {
                    conv::fill_rows(&mut y, b);
                }
                matmul(
                    n,
                    *units,
                    *nin,
                    &mut y,
                    *units,
                    bias.is_some(),
                    View::rows(arg(0), *nin),
                    View::rows(w, *units),
                );
            }
            Step::BatchNorm { eps, stats, relu, pooled, in_add, in_conv } => {
                let c = out_shape.c;
                let gamma = need(&p.gamma, c, name, "gamma")?;
                let beta = need(&p.beta, c, name, "beta")?;
                match mode {
                    Mode::Train => {
                        let out = (pooled.is_none() && !*in_add && !*in_conv).then_some(&mut y[..]);
                        norm::bn_train_forward(arg(0), gamma, beta, mask, *eps, *relu, out, stats, part);
                    }
                    // The conv before computed this BN: take over its buffer.
                    Mode::Eval if eval_fold[inputs[id][0]] == Some(id) => {
                        std::mem::swap(&mut y, &mut acts[inputs[id][0]]);
                    }
                    Mode::Eval => {
                        let rm = need(&p.running_mean, c, name, "running_mean (eval mode)")?;
                        let rv = need(&p.running_var, c, name, "running_var (eval mode)")?;
                        norm::bn_eval_forward(arg(0), gamma, beta, rm, rv, mask, *eps, *relu, &mut y, stats);
                    }
                }
                mask_done = true;
            }
            Step::Relu { cap } => elem::relu_forward(arg(0), &mut y, *cap),
            Step::MaxPool { win, arg: idx, bn } => {
                ensure(idx, y.len());
                match (mode, *bn) {
                    (Mode::Train, Some(b)) => {
                        let f = bn_act(&before[b]);
                        pool::max_forward_bn(win, &acts[buf[inputs[b][0]]], &f, &mut y, idx);
                    }
                    _ => pool::max_forward(win, arg(0), &mut y, idx),
                }
            }
            Step::AvgPool { win } => pool::avg_forward(win, arg(0), &mut y),
            Step::GlobalAvgPool => {
                let s = shapes[inputs[id][0]];
                pool::gap_forward(arg(0), s.spatial(), s.c, &mut y);
            }
            Step::Add { relu, bns: [ba, bb] } if mode == Mode::Train && (ba.is_some() || bb.is_some()) => {
                // One or both inputs: BN outputs computed here (the BN first: the sum commutes).
                let c = out_shape.c;
                let src = |b: NodeId| -> (&[f32], &[f32]) {
                    let Step::BatchNorm { stats, .. } = &before[b] else { unreachable!("an add's BN") };
                    (&acts[buf[inputs[b][0]]], &stats.tiles[..4 * norm::tile_len(c)])
                };
                match (*ba, *bb) {
                    (Some(a), Some(b)) => {
                        let ((xa, ta), (xb, tb)) = (src(a), src(b));
                        norm::add_bn_forward(xa, ta, xb, Some(tb), c, *relu, &mut y);
                    }
                    (Some(a), None) => {
                        let (xa, ta) = src(a);
                        norm::add_bn_forward(xa, ta, arg(1), None, c, *relu, &mut y);
                    }
                    (None, Some(b)) => {
                        let (xb, tb) = src(b);
                        norm::add_bn_forward(xb, tb, arg(0), None, c, *relu, &mut y);
                    }
                    (None, None) => unreachable!("guarded"),
                }
            }
            Step::Add { relu, .. } => {
                let last = inputs[id].len() == 2;
                elem::add_forward(arg(0), arg(1), &mut y, relu.filter(|_| last));
                for k in 2..inputs[id].len() {
                    elem::add_assign(arg(k), &mut y);
                }
                if let (Some(cap), false) = (*relu, last) {
                    elem::relu_inplace(&mut y, cap);
                }
            }
            Step::Concat => {
                let mut off = 0;
                for (k, &i) in inputs[id].iter().enumerate() {
                    let cx = shapes[i].c;
                    elem::concat_forward(arg(k), cx, &mut y, out_shape.c, off);
                    off += cx;
                }
            }
            Step::Alias | Step::FusedRelu => unreachable!("handled above"),
        }
        if let (Some(m), false) = (mask, mask_done) {
            let pre = &mut premask[id];
            ensure(pre, y.len());
            elem::mask_forward(&mut y, pre, m);
        }
        acts[id] = y;
        Ok(())
    }

    /// After a forward: the NHWC output of `node` (`n·h·w·c` floats of the node's shape), e.g. the
    /// cut tensors a frozen trunk feeds to auxiliary heads. `None` before a forward and for nodes
    /// after the logits node.
    ///
    /// Also `None` for a node whose own output is never materialised: a batch norm or add whose
    /// ReLU is fused into it (its buffer holds the ReLU's output), and in [`Mode::Eval`] an
    /// ordinary or depthwise convolution whose batch norm is folded into it (its buffer holds the
    /// BN's output), and in [`Mode::Train`] a batch norm (and the ReLU fused into it) whose
    /// output only a max pooling reads (the pooling computes it on the fly).
    pub fn output(&self, node: NodeId) -> Option<&[f32]> {
        let (n, mode) = self.last?;
        let fused_relu = match self.steps.get(node)? {
            Step::BatchNorm { relu, .. } | Step::Add { relu, .. } => relu.is_some(),
            _ => false,
        };
        // A BN whose output only a max pooling reads (computed by it on the fly in training).
        let pooled = mode == Mode::Train
            && matches!(
                self.steps[self.buf[node]],
                Step::BatchNorm { pooled: Some(_), .. }
                    | Step::BatchNorm { in_add: true, .. }
                    | Step::BatchNorm { in_conv: true, .. }
            );
        if pooled {
            return None;
        }
        let folded = mode == Mode::Eval && self.eval_fold.get(node).is_some_and(Option::is_some);
        if fused_relu || folded {
            return None;
        }
        let len = n * self.shapes[node].elements();
        self.acts.get(self.buf[node]).and_then(|a| a.get(..len))
    }

    /// After a [`Mode::Train`] forward: the batch mean and biased variance of batch-norm node
    /// `node` (`[c]` each); `None` for other nodes or when the last forward was not a training one.
    pub fn batch_stats(&self, node: NodeId) -> Option<(&[f32], &[f32])> {
        match (self.last, self.steps.get(node)) {
            (Some((_, Mode::Train)), Some(Step::BatchNorm { stats, .. })) => Some((&stats.mean, &stats.var)),
            _ => None,
        }
    }

    /// Gradients of `sum(dlogits · logits)` (`dlogits`: `[n, classes]` of the last forward, which
    /// must be a [`Mode::Train`] one with these `params`) with respect to every parameter in
    /// `params`, in the same layout: `Some` where `params` has a kernel / weight / bias / gamma /
    /// beta, running statistics `None`, masks `Some` where `params.masks[g]` is. No gradient with
    /// respect to the input images is computed.
    pub fn backward(&mut self, params: &Params, dlogits: &[f32]) -> Result<&Params> {
        let n = match self.last {
            Some((n, Mode::Train)) => n,
            Some((_, Mode::Eval)) => {
                return Err(invalid("backward needs a Mode::Train forward; the last forward was Mode::Eval".into()))
            }
            None => return Err(invalid("backward needs a successful Mode::Train forward first".into())),
        };
        if dlogits.len() != n * self.classes {
            return Err(invalid(format!(
                "dlogits has {} values, expected {n} x {} (batch x classes)",
                dlogits.len(),
                self.classes
            )));
        }
        if params.nodes.len() < self.steps.len() {
            return Err(invalid(format!(
                "params has {} node entries, expected {}",
                params.nodes.len(),
                self.steps.len()
            )));
        }
        self.prepare_grads(params);
        self.written.fill(false);
        self.deferred.fill(false);
        for id in 0..self.steps.len() {
            if self.needs_grad[id] && self.buf[id] == id {
                ensure(&mut self.grads[id], n * self.shapes[id].elements());
            }
            self.times[id].1 = Duration::ZERO;
        }
        let top = self.buf[self.logits];
        if !self.needs_grad[self.logits] {
            return Ok(&self.grad);
        }
        self.grads[top].copy_from_slice(dlogits);
        self.written[top] = true;
        // On one rayon worker, as in `forward`.
        rayon::scope(|_| -> Result<()> {
            for id in (1..self.steps.len()).rev() {
                if !self.needs_grad[id] || self.buf[id] != id || !self.written[id] {
                    continue;
                }
                let t0 = Instant::now();
                self.backward_node(id, params, n)?;
                self.times[id].1 = t0.elapsed();
            }
            Ok(())
        })?;
        Ok(&self.grad)
    }

    /// Shapes `self.grad` like `params` (see [`Engine::backward`]), all zeros.
    fn prepare_grads(&mut self, params: &Params) {
        let g = &mut self.grad;
        g.nodes.resize_with(params.nodes.len(), NodeParams::default);
        for (gn, pn) in g.nodes.iter_mut().zip(&params.nodes) {
            zeros_like(&mut gn.kernel, &pn.kernel);
            zeros_like(&mut gn.weight, &pn.weight);
            zeros_like(&mut gn.bias, &pn.bias);
            zeros_like(&mut gn.gamma, &pn.gamma);
            zeros_like(&mut gn.beta, &pn.beta);
            gn.running_mean = None;
            gn.running_var = None;
        }
        g.masks.resize(params.masks.len(), None);
        for (gm, pm) in g.masks.iter_mut().zip(&params.masks) {
            zeros_like(gm, pm);
        }
    }

    fn backward_node(&mut self, id: NodeId, params: &Params, n: usize) -> Result<()> {
        let mask = self.mask(params, id)?;
        // The mask's group, where a mask is applied (`mask` is only Some at a mask site).
        let group = self.mask_site[id].unwrap_or(0);
        let Engine {
            steps,
            names,
            inputs,
            shapes,
            buf,
            needs_grad,
            acts,
            grads,
            premask,
            written,
            deferred,
            eval_fold,
            part,
            grad,
            ..
        } = self;
        let name = &names[id];
        let p = &params.nodes[id];
        let c = shapes[id].c;
        let mut dy = std::mem::take(&mut grads[id]);
        let g = &mut grad.nodes[id];
        let is_bn = matches!(steps[id], Step::BatchNorm { .. });
        if let (Some(m), false) = (mask, is_bn) {
            let dmask = grad.masks[group].as_mut().expect("shaped like params.masks");
            elem::mask_backward(&mut dy, &premask[id], m, dmask, part);
        }
        // The gradient slot of input `k`: `(buffer, accumulate?)`, or None when not needed.
        let ins = &inputs[id];
        let target = |k: usize| -> Option<NodeId> { needs_grad[ins[k]].then_some(buf[ins[k]]) };
        macro_rules! with_dx {
            ($k:expr, |$dx:ident, $acc:ident| $body:expr) => {
                if let Some(t) = target($k) {
                    let $acc = written[t];
                    let $dx: &mut [f32] = &mut grads[t];
                    $body;
                    written[t] = true;
                }
            };
        }
        let arg = |k: usize| -> &[f32] { &acts[buf[ins[k]]] };
        // The input of BN `b` (what a conv that applies `b` itself reads).
        let bn_input = |b: NodeId| -> &[f32] { &acts[buf[inputs[b][0]]] };
        let (before, rest) = steps.split_at_mut(id);
        let (cur, later) = rest.split_at_mut(1);
        match &mut cur[0] {
            Step::Input | Step::Alias | Step::FusedRelu => unreachable!("not reached by the backward walk"),
            Step::Conv { plan, wmat, dwmat, xpad, wflip, bn_in } => {
                let (win, cout) = (plan.win, plan.cout);
                let kk = win.kh * win.kw * win.c;
                let defer = deferred[id];
                if let (Some(db), false) = (g.bias.as_mut(), defer) {
                    elem::col_sums(&dy, cout, db, part);
                }
                let groups = plan.groups(n);
                // Deferred: the bias gradient as per-image partials after the kernel's.
                let bias_len = if defer && g.bias.is_some() { n * cout } else { 0 };
                let (pt, pb_all) = scratch(part, groups * kk * cout + bias_len).split_at_mut(groups * kk * cout);
                let pb = (bias_len > 0).then_some(&mut pb_all[..]);
                // The deferred input gradient of the BN after this conv (this conv's dY).
                let (glo, ghi) = grads.split_at_mut(id + 1);
                let dy_of = deferred_dy(id, eval_fold[id].filter(|_| deferred[id]), later, ghi, &acts[id]);
                let dy_of = dy_of.as_ref().map(|f| f as conv::DyOf);
                // The input, or the BN's input and the BN to recompute it with.
                let (x, f) = match *bn_in {
                    Some(b) => (bn_input(b), Some(bn_act(&before[b]))),
                    None => (arg(0), None),
                };
                let f = f.as_ref();
                match target(0) {
                    Some(t) => {
                        let acc = written[t];
                        plan.backward(x, f, wmat, xpad, wflip, &dy, dy_of, pt, Some((&mut glo[t], acc)), pb);
                        written[t] = true;
                    }
                    None => plan.backward(x, f, wmat, xpad, wflip, &dy, dy_of, pt, None, pb),
                }
                if let (Some(db), true) = (g.bias.as_mut(), bias_len > 0) {
                    elem::sum_partials(pb_all, cout, 0, 1, db, false);
                }
                // dW = the partials summed in group order.
                conv::sum_groups(pt, groups, dwmat);
                let dk = g.kernel.as_mut().ok_or_else(|| invalid(format!("node '{name}' has no kernel")))?;
                conv::matrix_to_kernel(dwmat, cout, win.c, win.kh, win.kw, dk);
            }
            Step::Depthwise { dw, wmat, bn_in, kflip } => {
                let taps = dw.g.kh * dw.g.kw;
                let rec = (taps + 1) * c;
                // The per-image records, then their sums over the images (`[taps, c]`).
                let (pt, sums) = scratch(part, n * rec + taps * c).split_at_mut(n * rec);
                // The input, or the BN's input and the BN to recompute it with.
                let (x, f) = match *bn_in {
                    Some(b) => (bn_input(b), Some(bn_act(&before[b]))),
                    None => (arg(0), None),
                };
                // As for a conv: the deferred input gradient of the BN after it, image by image.
                let (glo, ghi) = grads.split_at_mut(id + 1);
                let dy_of = deferred_dy(id, eval_fold[id].filter(|_| deferred[id]), later, ghi, &acts[id]);
                let dy_of = dy_of.as_ref().map(|f| f as conv::DyOf);
                match target(0) {
                    Some(t) => {
                        let acc = written[t];
                        dw.backward(x, wmat, &dy, dy_of, f.as_ref(), pt, Some((&mut glo[t], acc)), kflip);
                        written[t] = true;
                    }
                    None => dw.backward(x, wmat, &dy, dy_of, f.as_ref(), pt, None, kflip),
                }
                let dk = g.kernel.as_mut().ok_or_else(|| invalid(format!("node '{name}' has no kernel")))?;
                // Summed over the images in `[taps, c]` order, then re-laid as `[c, taps]`.
                elem::sum_records(pt, rec, 0, sums, false);
                for ch in 0..c {
                    for t in 0..taps {
                        dk[ch * taps + t] = sums[t * c + ch];
                    }
                }
                if let Some(db) = g.bias.as_mut() {
                    elem::sum_partials(pt, c, taps, taps + 1, db, false);
                }
            }
            Step::Dense { nin, units } => {
                let (nin, units) = (*nin, *units);
                if let Some(db) = g.bias.as_mut() {
                    elem::col_sums(&dy, units, db, part);
                }
                let dw = g.weight.as_mut().ok_or_else(|| invalid(format!("node '{name}' has no weight")))?;
                matmul(nin, units, n, dw, units, false, View::transposed(arg(0), nin), View::rows(&dy, units));
                let w = need(&p.weight, nin * units, name, "weight [in, units]")?;
                with_dx!(0, |dx, acc| matmul(
                    n,
                    nin,
                    units,
                    dx,
                    nin,
                    acc,
                    View::rows(&dy, units),
                    View::transposed(w, units)
                ));
            }
            Step::BatchNorm { stats, relu, pooled, .. } => {
                // A max pooling that tiles its input: the BN reads the pooling's output gradient.
                let pool = pooled.and_then(|pid| match &later[pid - id - 1] {
                    Step::MaxPool { win, arg, .. } if win.tiles() => Some((pid, win, arg)),
                    _ => None,
                });
                let pdy = pool.map(|(pid, ..)| std::mem::take(&mut grads[pid]));
                let gamma = need(&p.gamma, c, name, "gamma")?;
                let beta = need(&p.beta, c, name, "beta")?;
                let dmask = match mask {
                    Some(m) => Some((m, grad.masks[group].as_deref_mut().expect("shaped like params.masks"))),
                    None => None,
                };
                let g = &mut grad.nodes[id];
                let (dgamma, dbeta) = match (g.gamma.as_deref_mut(), g.beta.as_deref_mut()) {
                    (Some(a), Some(b)) => (a, b),
                    _ => return Err(invalid(format!("node '{name}' has no gamma / beta"))),
                };
                // The conv before (this BN its only consumer) computes dx image by image from the
                // pass-2 coefficients, in its own backward, instead of reading it whole.
                let src = ins[0];
                let defer = eval_fold[src] == Some(id)
                    && target(0).is_some()
                    && matches!(&before[src], Step::Conv { .. } | Step::Depthwise { .. });
                if defer {
                    deferred[src] = true;
                }
                let dx = target(0).filter(|_| !defer).map(|t| {
                    let acc = written[t];
                    written[t] = true;
                    (&mut grads[t][..], acc)
                });
                if defer {
                    written[buf[src]] = true;
                }
                let dys = match (pool, &pdy) {
                    (Some((_, win, arg)), Some(pdy)) => norm::Dy::Pooled(win, pdy, arg),
                    _ => norm::Dy::Full(&dy),
                };
                norm::bn_backward(
                    dys,
                    &acts[buf[ins[0]]],
                    *relu,
                    gamma,
                    beta,
                    dmask,
                    stats,
                    dgamma,
                    dbeta,
                    dx,
                    defer,
                    part,
                );
                if let (Some((pid, ..)), Some(pdy)) = (pool, pdy) {
                    grads[pid] = pdy;
                }
            }
            Step::Relu { cap } => {
                let y = if mask.is_some() { &premask[id] } else { &acts[id] };
                with_dx!(0, |dx, acc| elem::relu_backward(y, &dy, dx, acc, *cap));
            }
            // The BN before reads this pooling's output gradient itself (see `Step::BatchNorm`).
            Step::MaxPool { win, bn: Some(_), .. } if win.tiles() => {
                if let Some(t) = target(0) {
                    written[t] = true;
                }
            }
            Step::MaxPool { win, arg: idx, .. } => with_dx!(0, |dx, acc| pool::max_backward(win, &dy, idx, dx, acc)),
            Step::AvgPool { win } => with_dx!(0, |dx, acc| pool::avg_backward(win, &dy, dx, acc)),
            Step::GlobalAvgPool => {
                let s = shapes[ins[0]];
                with_dx!(0, |dx, acc| pool::gap_backward(&dy, s.spatial(), s.c, dx, acc));
            }
            Step::Add { relu, .. } => {
                // One input whose gradient is not written yet (and no other input shares) takes
                // `dy`'s buffer instead of a copy; the others get copies first.
                let tg: Vec<Option<NodeId>> = (0..ins.len()).map(target).collect();
                let owner = (0..ins.len())
                    .find(|&k| tg[k].is_some_and(|t| !written[t] && tg.iter().filter(|&&o| o == Some(t)).count() == 1));
                let mut copies = (0..ins.len()).filter(|&k| Some(k) != owner && tg[k].is_some());
                if let Some(cap) = *relu {
                    // Through the fused ReLU first (its output is this node's), with the first
                    // copy in the same pass.
                    match copies.next() {
                        Some(k) => with_dx!(k, |dx, acc| elem::relu_mask_copy(&acts[id], &mut dy, dx, acc, cap)),
                        None => elem::relu_mask_inplace(&acts[id], &mut dy, cap),
                    }
                }
                for k in copies {
                    with_dx!(k, |dx, acc| elem::copy_into(acc, dx, &dy));
                }
                if let Some(t) = owner.and_then(|k| tg[k]) {
                    std::mem::swap(&mut grads[t], &mut dy);
                    written[t] = true;
                }
            }
            Step::Concat => {
                let mut off = 0;
                for k in 0..ins.len() {
                    let cx = shapes[ins[k]].c;
                    with_dx!(k, |dx, acc| elem::concat_backward(&dy, c, off, dx, cx, acc));
                    off += cx;
                }
            }
        }
        grads[id] = dy;
        Ok(())
    }

    /// Wall time of each node (up to the logits) in the last forward and the last backward, its
    /// mask included; `(forward, backward)` per node id. For profiling (see `examples/engine_bench.rs`).
    pub fn node_times(&self) -> &[(Duration, Duration)] {
        &self.times
    }

    /// Short name of what computes node `id` (e.g. `conv2d`, `batch_norm`), for profiles.
    pub fn node_kind(&self, id: NodeId) -> &'static str {
        self.steps.get(id).map_or("-", Step::kind)
    }
}
