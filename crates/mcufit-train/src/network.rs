//! IR graph → trainable burn network.
//!
//! One [`Layer`] per IR node holds that node's parameters (most nodes have none). The network
//! walks the nodes in topological order, keeping each node's output only until its last consumer
//! has read it. Activations are NCHW internally; see [`crate::ops`].
//!
//! ## Channel-group mask hooks
//! Every channel group of [`Graph::channel_groups`] has a mask slot (`masks[g]`). A mask is a `[C]`
//! tensor multiplied onto the channel axis of each of the group's *producers* (convs / denses),
//! at the output of the producer's batch norm when the producer feeds exactly one batch norm,
//! otherwise at the producer's own output — i.e. after BN, before the activation. An empty slot
//! (`None`, the default) is the identity and costs nothing. A mask can be a frozen constant or a
//! learnable parameter ([`Network::set_group_mask`]).

use std::collections::HashMap;
use std::sync::Arc;

use burn::module::{Module, Param, ParamId, RunningState};
use burn::tensor::{Device, Tensor, TensorData};
use mcufit_ir::{ChannelGroups, Graph, GroupId, NodeId, Op, Shape};

use crate::error::{Result, TrainError};
use crate::ops;
use crate::rng::SplitMix64;

/// Whether batch norm uses batch statistics (and updates its running statistics) or running ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Train,
    Eval,
}

/// Batch-norm parameters and running statistics of one IR `batch_norm` node.
#[derive(Module, Debug)]
pub struct Bn {
    pub gamma: Param<Tensor<1>>,
    pub beta: Param<Tensor<1>>,
    pub running_mean: RunningState<Tensor<1>>,
    pub running_var: RunningState<Tensor<1>>,
    pub eps: f64,
    /// Weight of the new batch statistic in the running average (PyTorch convention).
    pub momentum: f64,
}

impl Bn {
    fn forward(&self, x: Tensor<4>, mode: Mode) -> Tensor<4> {
        match mode {
            Mode::Train => {
                let [n, _, h, w] = x.dims();
                let count = (n * h * w) as f64;
                let (y, mean, var) = ops::batch_norm_train(x, self.gamma.val(), self.beta.val(), self.eps);
                // Running variance is the unbiased estimate (PyTorch and TF both use Bessel's correction).
                let unbiased = if count > 1.0 { var.mul_scalar(count / (count - 1.0)) } else { var };
                let m = self.momentum;
                let rm = self.running_mean.value_sync().mul_scalar(1.0 - m).add(mean.mul_scalar(m));
                let rv = self.running_var.value_sync().mul_scalar(1.0 - m).add(unbiased.mul_scalar(m));
                self.running_mean.update(rm.detach());
                self.running_var.update(rv.detach());
                y
            }
            Mode::Eval => ops::batch_norm_eval(
                x,
                self.gamma.val(),
                self.beta.val(),
                self.running_mean.value_sync(),
                self.running_var.value_sync(),
                self.eps,
            ),
        }
    }

    /// Running mean and variance, synchronised with the latest training update.
    pub fn running_stats(&self) -> (Tensor<1>, Tensor<1>) {
        (self.running_mean.value_sync(), self.running_var.value_sync())
    }
}

/// Parameters of one IR node. Which fields are set depends on the op:
/// conv / depthwise: `kernel` (burn layout `[out, in/groups, kh, kw]`; depthwise `[c, 1, kh, kw]`)
/// and optional `bias`; dense: `weight` (`[in, units]`, input index in NHWC-flatten order) and
/// optional `bias`; batch norm: `bn`. Every other op has none.
#[derive(Module, Debug)]
pub struct Layer {
    pub kernel: Option<Param<Tensor<4>>>,
    pub weight: Option<Param<Tensor<2>>>,
    pub bias: Option<Param<Tensor<1>>>,
    pub bn: Option<Bn>,
}

impl Layer {
    fn empty() -> Self {
        Layer { kernel: None, weight: None, bias: None, bn: None }
    }
}

/// Static, shared description of the computation (not a module parameter).
#[derive(Debug, Clone)]
pub struct Plan {
    pub graph: Graph,
    pub shapes: Vec<Shape>,
    pub groups: ChannelGroups,
    /// The node whose output is the logits: the output node, or the input of a final softmax.
    pub logits_node: NodeId,
    /// For each node, the last node (≤ `logits_node`) that reads its output.
    last_use: Vec<usize>,
    /// For each node, the channel group whose mask is applied to its output.
    mask_site: Vec<Option<GroupId>>,
    /// For each group, the nodes where its mask is applied.
    mask_nodes: Vec<Vec<NodeId>>,
    /// BN nodes folded into their producer ([`Network::fuse_bn`]); they pass data through.
    folded: Vec<bool>,
}

/// A producer's weight tensor (burn layout), as handed to pruning code.
#[derive(Debug, Clone)]
pub enum ProducerWeight {
    /// `[out, in/groups, kh, kw]`; the group's channels are axis 0.
    Conv(Tensor<4>),
    /// `[in, units]`; the group's channels are axis 1.
    Dense(Tensor<2>),
}

/// The trainable network built from an IR [`Graph`].
#[derive(Module, Debug)]
pub struct Network {
    /// One entry per IR node, in node order.
    pub layers: Vec<Layer>,
    /// One slot per channel group; `None` = identity.
    pub masks: Vec<Option<Param<Tensor<1>>>>,
    #[module(skip)]
    plan: Arc<Plan>,
}

fn tensor1(v: Vec<f32>, device: &Device) -> Tensor<1> {
    let n = v.len();
    Tensor::from_data(TensorData::new(v, [n]), device)
}

pub(crate) fn param<const D: usize>(t: Tensor<D>, id: Option<u64>, trainable: bool) -> Param<Tensor<D>> {
    let id = id.map(ParamId::from).unwrap_or_default();
    Param::initialized(id, t).set_require_grad(trainable)
}

/// Reads any float tensor back to the host.
pub(crate) fn to_vec<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data().try_into_vec_as::<f32>().map_err(|e| TrainError::Tensor(format!("{e:?}")))
}

impl Plan {
    fn new(graph: &Graph) -> Result<Plan> {
        graph.validate()?;
        let shapes = graph.shapes()?;
        let groups = graph.channel_groups()?;
        let out = graph.output();
        if !shapes[out].is_flat() {
            return Err(TrainError::Graph(format!(
                "the output node '{}' has shape {}; a classifier must end in a flat [1,1,classes] tensor",
                graph.nodes[out].name, shapes[out]
            )));
        }
        let logits_node = match graph.nodes[out].op {
            Op::Softmax => graph.nodes[out].inputs[0],
            _ => out,
        };
        let mut last_use = vec![0usize; graph.nodes.len()];
        for (id, n) in graph.nodes.iter().enumerate().take(logits_node + 1) {
            for &i in &n.inputs {
                last_use[i] = last_use[i].max(id);
            }
        }
        let consumers = graph.consumers();
        let mut mask_site = vec![None; graph.nodes.len()];
        let mut mask_nodes = vec![Vec::new(); groups.groups.len()];
        for g in &groups.groups {
            for &p in &g.producers {
                // After BN when the producer feeds exactly one BN, so the mask gates the normalised
                // channel (pruning a channel = zeroing gamma*x̂+beta, not just the conv output).
                let site = match consumers[p].as_slice() {
                    [c] if matches!(graph.nodes[*c].op, Op::BatchNorm(_)) => *c,
                    _ => p,
                };
                if site <= logits_node {
                    mask_site[site] = Some(g.id);
                    mask_nodes[g.id].push(site);
                }
            }
        }
        let folded = vec![false; graph.nodes.len()];
        Ok(Plan { graph: graph.clone(), shapes, groups, logits_node, last_use, mask_site, mask_nodes, folded })
    }
}

impl Plan {
    /// For each node, the channel group whose mask multiplies its output (see the module docs).
    pub fn mask_sites(&self) -> &[Option<GroupId>] {
        &self.mask_site
    }

    /// Whether some batch norm is folded into its producer ([`Network::fuse_bn`]): inference only.
    pub fn is_folded(&self) -> bool {
        self.folded.iter().any(|&f| f)
    }
}

/// Deterministic host-side initialisation: Kaiming-uniform for convs (ReLU nets), Glorot-uniform
/// for dense layers, zero biases, BN γ=1 β=0. Each node has its own stream derived from
/// (seed, node index), so the same seed gives the same weights on every backend.
fn init_layer(graph: &Graph, shapes: &[Shape], id: NodeId, seed: u64, bn_momentum: f64, device: &Device) -> Layer {
    let node = &graph.nodes[id];
    let mut rng = SplitMix64::derive(seed, id as u64, 0x1417);
    let mut uni = |n: usize, bound: f32| (0..n).map(|_| rng.uniform(-bound, bound)).collect::<Vec<f32>>();
    let in_shape = node.inputs.first().map(|&i| shapes[i]);
    let mut layer = Layer::empty();
    match &node.op {
        Op::Conv2d(c) => {
            let cin = in_shape.map(|s| s.c).unwrap_or(0) / c.groups.max(1);
            let fan_in = (cin * c.kernel[0] * c.kernel[1]).max(1);
            let bound = (6.0 / fan_in as f32).sqrt();
            let dims = [c.filters, cin, c.kernel[0], c.kernel[1]];
            let w = uni(dims.iter().product(), bound);
            layer.kernel = Some(param(Tensor::from_data(TensorData::new(w, dims), device), None, true));
            if c.bias {
                layer.bias = Some(param(tensor1(vec![0.0; c.filters], device), None, true));
            }
        }
        Op::DepthwiseConv2d(d) => {
            let c = in_shape.map(|s| s.c).unwrap_or(0);
            let fan_in = (d.kernel[0] * d.kernel[1]).max(1);
            let bound = (6.0 / fan_in as f32).sqrt();
            let dims = [c, 1, d.kernel[0], d.kernel[1]];
            let w = uni(dims.iter().product(), bound);
            layer.kernel = Some(param(Tensor::from_data(TensorData::new(w, dims), device), None, true));
            if d.bias {
                layer.bias = Some(param(tensor1(vec![0.0; c], device), None, true));
            }
        }
        Op::Dense(d) => {
            let n_in = in_shape.map(|s| s.elements()).unwrap_or(0);
            let bound = (6.0 / (n_in + d.units).max(1) as f32).sqrt();
            let w = uni(n_in * d.units, bound);
            layer.weight = Some(param(Tensor::from_data(TensorData::new(w, [n_in, d.units]), device), None, true));
            if d.bias {
                layer.bias = Some(param(tensor1(vec![0.0; d.units], device), None, true));
            }
        }
        Op::BatchNorm(b) => {
            let c = shapes[id].c;
            layer.bn = Some(Bn {
                gamma: param(tensor1(vec![1.0; c], device), None, true),
                beta: param(tensor1(vec![0.0; c], device), None, true),
                running_mean: RunningState::new(tensor1(vec![0.0; c], device)),
                running_var: RunningState::new(tensor1(vec![1.0; c], device)),
                eps: b.eps as f64,
                momentum: bn_momentum,
            });
        }
        _ => {}
    }
    layer
}

impl Network {
    /// Builds a freshly initialised network (deterministic for a given `seed`).
    /// BN running averages use momentum 0.1 (see [`Network::with_bn_momentum`]).
    pub fn new(graph: &Graph, device: &Device, seed: u64) -> Result<Network> {
        let plan = Plan::new(graph)?;
        let layers =
            (0..graph.nodes.len()).map(|id| init_layer(&plan.graph, &plan.shapes, id, seed, 0.1, device)).collect();
        let masks = vec![None; plan.groups.groups.len()];
        Ok(Network { layers, masks, plan: Arc::new(plan) })
    }

    /// Assembles a network from already-built parts (used by the weights loader).
    pub(crate) fn from_parts(
        graph: &Graph,
        layers: Vec<Layer>,
        masks: Vec<Option<Param<Tensor<1>>>>,
    ) -> Result<Network> {
        let plan = Plan::new(graph)?;
        if layers.len() != graph.nodes.len() || masks.len() != plan.groups.groups.len() {
            return Err(TrainError::Weights("layer or mask count does not match the graph".into()));
        }
        Ok(Network { layers, masks, plan: Arc::new(plan) })
    }

    /// Sets the BN running-average momentum (weight of the new batch statistic, 0..=1).
    pub fn with_bn_momentum(mut self, momentum: f64) -> Result<Network> {
        if !(0.0..=1.0).contains(&momentum) {
            return Err(TrainError::Config(format!("bn momentum must be in [0, 1], got {momentum}")));
        }
        for l in &mut self.layers {
            if let Some(bn) = &mut l.bn {
                bn.momentum = momentum;
            }
        }
        Ok(self)
    }

    pub fn graph(&self) -> &Graph {
        &self.plan.graph
    }
    pub fn shapes(&self) -> &[Shape] {
        &self.plan.shapes
    }
    pub fn channel_groups(&self) -> &ChannelGroups {
        &self.plan.groups
    }
    pub fn plan(&self) -> &Plan {
        &self.plan
    }
    pub fn input_shape(&self) -> Shape {
        self.plan.shapes[0]
    }
    pub fn num_classes(&self) -> usize {
        self.plan.shapes[self.plan.logits_node].c
    }

    /// Nodes at whose output group `g`'s mask is applied (BN after a producer, or the producer).
    pub fn mask_nodes(&self, g: GroupId) -> &[NodeId] {
        self.plan.mask_nodes.get(g).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Forward pass to logits `[N, classes]`. BN runs in train mode iff `x` is on an autodiff device
    /// (burn's convention: `network.train()` for training, `network.valid()` for evaluation).
    /// `x` is NCHW `[N, C, H, W]` (see [`Network::input_from_nhwc`]). A final softmax node is not
    /// applied; use [`Network::predict`] for probabilities.
    pub fn forward(&self, x: Tensor<4>) -> Result<Tensor<2>> {
        let mode = if x.is_autodiff() { Mode::Train } else { Mode::Eval };
        self.forward_mode(x, mode)
    }

    /// Forward pass with an explicit BN mode.
    pub fn forward_mode(&self, x: Tensor<4>, mode: Mode) -> Result<Tensor<2>> {
        Ok(self.forward_capture(x, mode, &[])?.0)
    }

    /// Softmax probabilities `[N, classes]`, evaluation mode.
    pub fn predict(&self, x: Tensor<4>) -> Result<Tensor<2>> {
        Ok(burn::tensor::activation::softmax(self.forward_mode(x, Mode::Eval)?, 1))
    }

    /// Forward pass that also returns the NCHW outputs of the nodes in `capture` (e.g. for
    /// activation-based pruning criteria). Captured nodes after the logits node are not computed.
    pub fn forward_capture(
        &self,
        x: Tensor<4>,
        mode: Mode,
        capture: &[NodeId],
    ) -> Result<(Tensor<2>, HashMap<NodeId, Tensor<4>>)> {
        let plan = &*self.plan;
        let graph = &plan.graph;
        let input = plan.shapes[0];
        let [n, c, h, w] = x.dims();
        if n == 0 || c != input.c || h != input.h || w != input.w {
            return Err(TrainError::Data(format!(
                "input batch is [{n}, {c}, {h}, {w}] (NCHW), the network expects [N>0, {}, {}, {}]",
                input.c, input.h, input.w
            )));
        }
        let fused = plan.folded.iter().any(|&f| f);
        if fused && mode == Mode::Train {
            return Err(TrainError::Config("a BN-fused network is inference-only; train the unfused one".into()));
        }
        let end = plan.logits_node;
        let mut vals: Vec<Option<Tensor<4>>> = vec![None; end + 1];
        let mut captured = HashMap::new();
        let mut x = Some(x);
        for id in 0..=end {
            let node = &graph.nodes[id];
            let layer = &self.layers[id];
            let missing = |what: &str| TrainError::Graph(format!("node '{}' has no {what} parameter", node.name));
            // Move an input out when this is its last reader (and the last occurrence in `inputs`).
            let mut args = Vec::with_capacity(node.inputs.len());
            for (k, &i) in node.inputs.iter().enumerate() {
                let last = plan.last_use[i] == id && !node.inputs[k + 1..].contains(&i);
                let v = if last { vals[i].take() } else { vals[i].clone() };
                args.push(
                    v.ok_or_else(|| TrainError::Graph(format!("node '{}': input #{i} not available", node.name)))?,
                );
            }
            let mut args = args.into_iter();
            let mut a = || args.next().ok_or_else(|| TrainError::Graph(format!("node '{}' lacks an input", node.name)));
            let bias = layer.bias.as_ref().map(|b| b.val());
            let y = match &node.op {
                Op::Input { .. } => x.take().ok_or_else(|| TrainError::Graph("second input node".into()))?,
                Op::Conv2d(cv) => {
                    let k = layer.kernel.as_ref().ok_or_else(|| missing("kernel"))?;
                    ops::conv2d(a()?, k.val(), bias, cv.stride, cv.padding, cv.groups)
                }
                Op::DepthwiseConv2d(d) => {
                    let k = layer.kernel.as_ref().ok_or_else(|| missing("kernel"))?;
                    ops::depthwise_conv2d(a()?, k.val(), bias, d.stride, d.padding)
                }
                Op::Dense(_) => {
                    let wt = layer.weight.as_ref().ok_or_else(|| missing("weight"))?;
                    ops::dense(a()?, wt.val(), bias)
                }
                Op::BatchNorm(_) if plan.folded[id] => a()?,
                Op::BatchNorm(_) => layer.bn.as_ref().ok_or_else(|| missing("batch norm"))?.forward(a()?, mode),
                Op::Relu => ops::relu(a()?),
                Op::Relu6 => ops::relu6(a()?),
                Op::MaxPool2d(p) => ops::max_pool2d(a()?, p.pool, p.strides(), p.padding),
                Op::AvgPool2d(p) => ops::avg_pool2d(a()?, p.pool, p.strides(), p.padding),
                Op::GlobalAvgPool => ops::global_avg_pool(a()?),
                Op::Add => {
                    let mut s = a()?;
                    for t in args.by_ref() {
                        s = s + t;
                    }
                    s
                }
                Op::Concat => Tensor::cat(args.by_ref().collect(), 1),
                Op::Flatten => ops::flatten_nhwc(a()?),
                Op::Reshape { shape } => ops::reshape_nhwc(a()?, *shape),
                Op::Softmax => ops::softmax_channels(a()?),
            };
            let y = match plan.mask_site[id].and_then(|g| self.masks[g].as_ref()) {
                Some(m) => ops::channel_scale(y, m.val()),
                None => y,
            };
            if capture.contains(&id) {
                captured.insert(id, y.clone());
            }
            vals[id] = Some(y);
        }
        let out = vals[end].take().ok_or_else(|| TrainError::Graph("no output".into()))?;
        let [n, k, _, _] = out.dims();
        Ok((out.reshape([n, k]), captured))
    }

    /// Converts a host NHWC batch (`n * h * w * c` floats) into the NCHW input tensor.
    pub fn input_from_nhwc(&self, nhwc: &[f32], n: usize, device: &Device) -> Result<Tensor<4>> {
        let s = self.input_shape();
        nhwc_to_tensor(nhwc, n, s, device)
    }

    /// The device the parameters live on (flex if the network has no parameters).
    pub fn device(&self) -> Device {
        self.devices().into_iter().next().unwrap_or_else(crate::default_device)
    }

    /// Inference copy with every batch norm that directly follows a conv / depthwise / dense
    /// (its only consumer) folded into that layer: `w' = w·γ/√(σ²+ε)`, `b' = (b−μ)·γ/√(σ²+ε) + β`.
    /// Saves a full pass over each activation. Only [`Mode::Eval`] forwards are allowed on it.
    pub fn fuse_bn(&self) -> Result<Network> {
        let mut net = self.valid();
        let graph = &self.plan.graph;
        let consumers = graph.consumers();
        let mut plan = (*self.plan).clone();
        for (id, node) in graph.nodes.iter().enumerate() {
            if !matches!(node.op, Op::BatchNorm(_)) {
                continue;
            }
            let [p] = node.inputs.as_slice() else { continue };
            let p = *p;
            let foldable = matches!(graph.nodes[p].op, Op::Conv2d(_) | Op::DepthwiseConv2d(_) | Op::Dense(_))
                && consumers[p].len() == 1
                && plan.mask_site[p].is_none();
            if !foldable {
                continue;
            }
            let Some(bn) = net.layers[id].bn.as_ref() else { continue };
            let (mean, var) = bn.running_stats();
            let scale = bn.gamma.val() / (var.add_scalar(bn.eps)).sqrt();
            let shift = bn.beta.val() - mean * scale.clone();
            let c = scale.dims()[0];
            let prod = &mut net.layers[p];
            let bias = match prod.bias.take() {
                Some(b) => b.val() * scale.clone() + shift,
                None => shift,
            };
            if let Some(k) = prod.kernel.take() {
                let k = k.val() * scale.clone().reshape([c, 1, 1, 1]);
                prod.kernel = Some(param(k, None, false));
            } else if let Some(w) = prod.weight.take() {
                let w = w.val() * scale.clone().reshape([1, c]);
                prod.weight = Some(param(w, None, false));
            } else {
                return Err(TrainError::Graph(format!("node '{}' has no weights to fold into", graph.nodes[p].name)));
            }
            prod.bias = Some(param(bias, None, false));
            plan.folded[id] = true;
        }
        net.plan = Arc::new(plan);
        Ok(net)
    }

    // ---- hooks for pruning -------------------------------------------------------------------

    /// Sets group `g`'s mask. `learnable` makes it a trained parameter (its gradient is then
    /// computed and the optimizer updates it). Replacing a mask keeps its parameter id so optimizer
    /// state carries over.
    pub fn set_group_mask(&mut self, g: GroupId, mask: Tensor<1>, learnable: bool) -> Result<()> {
        let group =
            self.plan.groups.groups.get(g).ok_or_else(|| TrainError::Config(format!("no channel group {g}")))?;
        let [len] = mask.dims();
        if len != group.size {
            return Err(TrainError::Config(format!(
                "mask for group {g} has {len} entries, the group has {}",
                group.size
            )));
        }
        let id = self.masks[g].as_ref().map(|p| p.id.val());
        self.masks[g] = Some(param(mask, id, learnable));
        Ok(())
    }

    /// Removes group `g`'s mask (back to identity).
    pub fn clear_group_mask(&mut self, g: GroupId) -> Result<()> {
        let slot = self.masks.get_mut(g).ok_or_else(|| TrainError::Config(format!("no channel group {g}")))?;
        *slot = None;
        Ok(())
    }

    /// Group `g`'s mask value (`None` = identity). Tracked by autodiff when learnable, so it can be
    /// used in an extra loss term.
    pub fn group_mask(&self, g: GroupId) -> Option<Tensor<1>> {
        self.masks.get(g).and_then(|m| m.as_ref()).map(|p| p.val())
    }

    /// The batch norms that normalise group `g`'s channels: `(bn node, gamma)` for each producer
    /// followed by a BN. Gammas are the live parameters (differentiable) — e.g. for an L1 sparsity
    /// term or for ranking channels.
    pub fn group_bn_gammas(&self, g: GroupId) -> Vec<(NodeId, Tensor<1>)> {
        self.mask_nodes(g).iter().filter_map(|&n| self.layers[n].bn.as_ref().map(|bn| (n, bn.gamma.val()))).collect()
    }

    /// The weights of group `g`'s producers (burn layout, see [`ProducerWeight`]).
    pub fn group_producer_weights(&self, g: GroupId) -> Vec<(NodeId, ProducerWeight)> {
        let Some(group) = self.plan.groups.groups.get(g) else { return Vec::new() };
        group
            .producers
            .iter()
            .filter_map(|&p| {
                let l = &self.layers[p];
                if let Some(k) = &l.kernel {
                    Some((p, ProducerWeight::Conv(k.val())))
                } else {
                    l.weight.as_ref().map(|w| (p, ProducerWeight::Dense(w.val())))
                }
            })
            .collect()
    }
}

/// NHWC host batch → NCHW tensor, checking the length.
pub fn nhwc_to_tensor(nhwc: &[f32], n: usize, s: Shape, device: &Device) -> Result<Tensor<4>> {
    let per = s.elements();
    if n == 0 || nhwc.len() != n * per {
        return Err(TrainError::Data(format!(
            "batch of {n} images needs {} floats ({}x{}x{} each), got {}",
            n * per,
            s.h,
            s.w,
            s.c,
            nhwc.len()
        )));
    }
    let (hw, c) = (s.h * s.w, s.c);
    let data = if c == 1 {
        nhwc.to_vec()
    } else {
        let mut out = vec![0f32; nhwc.len()];
        for b in 0..n {
            let src = &nhwc[b * per..(b + 1) * per];
            let dst = &mut out[b * per..(b + 1) * per];
            for p in 0..hw {
                for ch in 0..c {
                    dst[ch * hw + p] = src[p * c + ch];
                }
            }
        }
        out
    };
    Ok(Tensor::from_data(TensorData::new(data, [n, c, s.h, s.w]), device))
}
