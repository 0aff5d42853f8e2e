//! Training-time channel masks on burn.
//!
//! Every prunable channel group `g` has a learnable **width** `k_g` (a real number of channels)
//! and a per-channel **salience** that orders its channels (rank 0 = most important). Channel `i`
//! with rank `r_i` gets
//!
//! ```text
//! soft_i = σ((k_g − r_i − ½) / τ_g)          hard_i = [r_i + ½ < k_g]  (rank 0 always kept)
//! mask_i = hard_i + (soft_i − detach(soft_i))
//! ```
//!
//! so the forward pass multiplies each channel by exactly 0 or 1, while the gradient reaches `k_g`
//! through the soft relaxation (straight-through). Salience decides *which* channels a group loses
//! (the least salient first), the width *how many*. A masked channel still has a gradient on its
//! mask (its pre-mask activation is computed), so if the task loss wants it back the width grows
//! and it returns, until the masks are frozen.
//!
//! The masks plug into `mcufit-train`'s per-group mask slots through burn's parameter
//! reparameterization: the slot's stored (frozen) value is the rank offsets `r_i + ½`, and a
//! [`WidthGate`] attached to it holds `k_g` as a trainable parameter and materialises the mask
//! above. The trainer's optimizer updates `k_g` like any other parameter.

use std::collections::HashMap;

use mcufit_train::burn;
use mcufit_train::burn::module::{Module, Param, ParamId, Reparameterization, Reparameterizer};
use mcufit_train::burn::tensor::activation::sigmoid;
use mcufit_train::burn::tensor::{Device, Tensor, TensorData};
use mcufit_train::{Mode, Network, ProducerWeight};
use serde::{Deserialize, Serialize};

use crate::error::{PruneError, Result};

/// The reparameterization that turns rank offsets into a straight-through 0/1 mask.
#[derive(Module, Debug)]
pub struct WidthGate {
    /// `[1]`: the group's learnable channel count.
    pub width: Param<Tensor<1>>,
    /// Softness of the relaxation, in channels.
    pub temperature: f64,
    /// Weight of the straight-through path (the task loss's gradient on the width); the forward
    /// value does not depend on it.
    pub ste_scale: f64,
}

impl Reparameterization for WidthGate {
    const NAME: &'static str = "width_gate";

    fn apply<const D: usize>(&self, base: Tensor<D>) -> Tensor<D> {
        let shape = base.shape();
        let n = shape.num_elements();
        let offsets: Tensor<1> = base.reshape([n]);
        let k: Tensor<1> = self.width.val().expand([n]);
        let z = (k - offsets.clone()).div_scalar(self.temperature);
        let soft = sigmoid(z.clone());
        // The top-ranked channel (offset ½) is always kept: a group never drops to zero channels.
        let hard = z.greater_elem(0.0).float().max_pair(offsets.lower_elem(1.0).float());
        let mask = hard + (soft.clone() - soft.detach()).mul_scalar(self.ste_scale);
        mask.reshape(shape)
    }
}

/// How channel importance is scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Salience {
    /// `|γ_i| / mean|γ| × ‖W_i‖ / mean‖W‖` summed over the group's producers (BN scale times the
    /// normalised filter norm; producers without BN use the filter norm alone). Free: read from
    /// the weights.
    #[default]
    BnWeight,
    /// First-order Taylor estimate of the loss change when the channel is removed,
    /// `|γ_i ∂L/∂γ_i + β_i ∂L/∂β_i|` at the mask-site BN (or `|Σ W ⊙ ∂L/∂W + b ∂L/∂b|` over the
    /// filter), summed over the group's sites, from one extra forward/backward per pruning step on
    /// a random training batch, averaged over steps.
    Taylor,
}

/// Host-side state of one group's mask (serialisable, for resume and reports).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupMask {
    pub group: usize,
    pub size: usize,
    /// Learnable channel count (read back from the network after each step).
    pub width: f64,
    pub temperature: f64,
    /// Salience per channel (larger = more important).
    pub salience: Vec<f32>,
    /// Rank of each channel by salience (0 = most important).
    pub rank: Vec<usize>,
    /// Parameter ids of the mask slot and of the width (kept across re-attachment so the
    /// optimizer's state follows them).
    pub mask_id: u64,
    pub width_id: u64,
    /// See [`WidthGate::ste_scale`].
    #[serde(default = "one")]
    pub ste_scale: f64,
}

fn one() -> f64 {
    1.0
}

impl GroupMask {
    pub fn new(group: usize, size: usize, ids: (u64, u64)) -> Self {
        GroupMask {
            group,
            size,
            width: size as f64,
            temperature: (size as f64 / 16.0).max(1.0),
            salience: vec![1.0; size],
            rank: (0..size).collect(),
            mask_id: ids.0,
            width_id: ids.1,
            ste_scale: 1.0,
        }
    }

    /// Channels the hard mask keeps (`r + ½ < k`, and always rank 0), in index order.
    pub fn keep(&self) -> Vec<usize> {
        let n = self.count();
        (0..self.size).filter(|&i| self.rank[i] < n).collect()
    }

    /// Number of channels the hard mask keeps.
    pub fn count(&self) -> usize {
        ((0..self.size).filter(|&r| r as f64 + 0.5 < self.width).count()).max(1)
    }

    /// Soft channel count `Σ σ((k − r − ½)/τ)` (what the resource model differentiates).
    pub fn soft_count(&self) -> f64 {
        (0..self.size).map(|r| 1.0 / (1.0 + (-(self.width - r as f64 - 0.5) / self.temperature).exp())).sum()
    }

    /// Sets the salience and re-ranks (ties broken by channel index).
    pub fn set_salience(&mut self, s: Vec<f32>) {
        let mut order: Vec<usize> = (0..self.size).collect();
        order.sort_by(|&a, &b| s[b].partial_cmp(&s[a]).unwrap_or(std::cmp::Ordering::Equal).then(a.cmp(&b)));
        for (r, &i) in order.iter().enumerate() {
            self.rank[i] = r;
        }
        self.salience = s;
    }

    fn offsets(&self) -> Vec<f32> {
        self.rank.iter().map(|&r| r as f32 + 0.5).collect()
    }
}

/// Masks of all prunable groups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaskState {
    pub groups: Vec<GroupMask>,
}

struct Attach(HashMap<ParamId, WidthGate>);

impl Reparameterizer for Attach {
    type Reparam = WidthGate;
    fn reparameterize<const D: usize>(
        &mut self,
        _path: &str,
        param: Param<Tensor<D>>,
    ) -> (Param<Tensor<D>>, Option<WidthGate>) {
        let gate = self.0.remove(&param.id);
        (param, gate)
    }
}

fn tensor1(v: Vec<f32>, device: &Device) -> Tensor<1> {
    let n = v.len();
    Tensor::from_data(TensorData::new(v, [n]), device)
}

fn host<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data().try_into_vec_as::<f32>().map_err(|e| PruneError::Config(format!("reading a tensor: {e:?}")))
}

impl MaskState {
    /// A full-width mask for every prunable group of the network (fresh parameter ids).
    pub fn new(network: &Network) -> Self {
        let groups = network
            .channel_groups()
            .groups
            .iter()
            .filter(|g| g.prunable() && !network.mask_nodes(g.id).is_empty())
            .map(|g| GroupMask::new(g.id, g.size, (ParamId::new().val(), ParamId::new().val())))
            .collect();
        MaskState { groups }
    }

    /// Installs the masks into the network's group slots (replacing what was there), with the
    /// current ranks and widths. `trainable` makes the widths learnable (pruning phase).
    pub fn attach(&self, mut network: Network, trainable: bool) -> Result<Network> {
        let device = network.device();
        let mut gates = HashMap::new();
        for gm in &self.groups {
            let slot = network
                .masks
                .get_mut(gm.group)
                .ok_or_else(|| PruneError::Config(format!("no channel group {}", gm.group)))?;
            let mask_id = ParamId::from(gm.mask_id);
            *slot = Some(Param::initialized(mask_id, tensor1(gm.offsets(), &device)).set_require_grad(false));
            let mut w = tensor1(vec![gm.width as f32], &device);
            if trainable && device.is_autodiff() {
                w = w.require_grad();
            }
            gates.insert(
                mask_id,
                WidthGate {
                    width: Param::initialized(ParamId::from(gm.width_id), w),
                    temperature: gm.temperature,
                    ste_scale: gm.ste_scale,
                },
            );
        }
        Ok(network.apply_reparameterization(Attach(gates)))
    }

    /// Reads the widths back from the network (after optimizer steps).
    pub fn read_widths(&mut self, network: &Network) -> Result<()> {
        for gm in &mut self.groups {
            let gate = network
                .masks
                .get(gm.group)
                .and_then(|m| m.as_ref())
                .and_then(|p| p.reparameterization::<WidthGate>())
                .ok_or_else(|| PruneError::Config(format!("group {} has no width gate attached", gm.group)))?;
            gm.width = host(gate.width.val())?.first().copied().unwrap_or(0.0) as f64;
        }
        Ok(())
    }

    /// Keeps widths in `[1, size]`: outside it the relaxation has no gradient left.
    pub fn clamp_widths(&mut self) {
        for gm in &mut self.groups {
            gm.width = gm.width.clamp(1.0, gm.size as f64);
        }
    }

    /// Soft counts per channel group (fixed groups at their size).
    pub fn soft_sizes(&self, all_sizes: &[usize]) -> Vec<f64> {
        let mut s: Vec<f64> = all_sizes.iter().map(|&x| x as f64).collect();
        for gm in &self.groups {
            s[gm.group] = gm.soft_count();
        }
        s
    }

    /// Keep sets per channel group (fixed groups keep everything).
    pub fn keep_sets(&self, all_sizes: &[usize]) -> Vec<Vec<usize>> {
        let mut k: Vec<Vec<usize>> = all_sizes.iter().map(|&n| (0..n).collect()).collect();
        for gm in &self.groups {
            k[gm.group] = gm.keep();
        }
        k
    }

    /// Soft channel count of each group as a tracked tensor `[1]` (for the penalty).
    pub fn soft_count_tensors(&self, network: &Network) -> Result<Vec<(usize, Tensor<1>)>> {
        let mut out = Vec::new();
        for gm in &self.groups {
            let p = network
                .masks
                .get(gm.group)
                .and_then(|m| m.as_ref())
                .ok_or_else(|| PruneError::Config("mask missing".into()))?;
            let gate =
                p.reparameterization::<WidthGate>().ok_or_else(|| PruneError::Config("width gate missing".into()))?;
            let offsets = p.base();
            let n = gm.size;
            let z = (gate.width.val().expand([n]) - offsets).div_scalar(gm.temperature);
            out.push((gm.group, sigmoid(z).sum()));
        }
        Ok(out)
    }
}

fn mean(v: &[f32]) -> f32 {
    let m = v.iter().sum::<f32>() / v.len().max(1) as f32;
    if m > 0.0 {
        m
    } else {
        1.0
    }
}

/// Per-channel filter L2 norms of a producer weight.
fn filter_norms(w: ProducerWeight) -> Result<Vec<f32>> {
    Ok(match w {
        ProducerWeight::Conv(t) => {
            let [o, i, kh, kw] = t.dims();
            let v = host(t)?;
            let per = i * kh * kw;
            (0..o).map(|c| v[c * per..(c + 1) * per].iter().map(|x| x * x).sum::<f32>().sqrt()).collect()
        }
        ProducerWeight::Dense(t) => {
            let [n_in, units] = t.dims();
            let v = host(t)?;
            (0..units).map(|u| (0..n_in).map(|r| v[r * units + u].powi(2)).sum::<f32>().sqrt()).collect()
        }
    })
}

/// L1 norm of each output filter of each producer of group `g` (for the L1 baseline).
pub fn filter_l1(network: &Network, g: usize) -> Result<Vec<Vec<f32>>> {
    network
        .group_producer_weights(g)
        .into_iter()
        .map(|(_, w)| {
            Ok(match w {
                ProducerWeight::Conv(t) => {
                    let [o, i, kh, kw] = t.dims();
                    let v = host(t.reshape([o * i * kh * kw]))?;
                    let per = i * kh * kw;
                    (0..o).map(|c| v[c * per..(c + 1) * per].iter().map(|x| x.abs()).sum()).collect()
                }
                ProducerWeight::Dense(t) => {
                    let [n_in, units] = t.dims();
                    let v = host(t.reshape([n_in * units]))?;
                    (0..units).map(|u| (0..n_in).map(|r| v[r * units + u].abs()).sum()).collect()
                }
            })
        })
        .collect()
}

/// BN-weight salience of group `g`: Σ_producers (|γ_i|/mean|γ|) · (‖W_i‖/mean‖W‖).
pub fn bn_weight_salience(network: &Network, g: usize, size: usize) -> Result<Vec<f32>> {
    let graph = network.graph();
    let gammas: HashMap<usize, Vec<f32>> = network
        .group_bn_gammas(g)
        .into_iter()
        .map(|(bn, t)| Ok((graph.nodes[bn].inputs[0], host(t)?.into_iter().map(f32::abs).collect())))
        .collect::<Result<_>>()?;
    let mut s = vec![0f32; size];
    for (p, w) in network.group_producer_weights(g) {
        let norms = filter_norms(w)?;
        let mn = mean(&norms);
        let gam = gammas.get(&p);
        let mg = gam.map(|v| mean(v)).unwrap_or(1.0);
        for i in 0..size.min(norms.len()) {
            let gi = gam.map(|v| v[i] / mg).unwrap_or(1.0);
            s[i] += gi * norms[i] / mn;
        }
    }
    Ok(s)
}

/// First-order Taylor salience of every masked group from one forward/backward on a batch.
pub fn taylor_salience(network: &Network, state: &MaskState, images: &[f32], labels: &[u32]) -> Result<Vec<Vec<f32>>> {
    let device = network.device();
    let n = labels.len();
    let k = network.num_classes();
    let x = network.input_from_nhwc(images, n, &device)?;
    let mut onehot = vec![0f32; n * k];
    for (i, &y) in labels.iter().enumerate() {
        if (y as usize) < k {
            onehot[i * k + y as usize] = 1.0;
        }
    }
    let t = Tensor::<2>::from_data(TensorData::new(onehot, [n, k]), &device);
    let logits = network.forward_mode(x, Mode::Train)?;
    let loss = mcufit_train::ops::cross_entropy(logits, t);
    let grads = loss.backward();
    let mut out = Vec::new();
    for gm in &state.groups {
        let mut s = vec![0f32; gm.size];
        for &site in network.mask_nodes(gm.group) {
            let c = site_taylor(network, site, gm.size, &grads)?;
            for (a, b) in s.iter_mut().zip(&c) {
                *a += b.abs();
            }
        }
        out.push(s);
    }
    Ok(out)
}

/// `Σ θ ∂L/∂θ` per channel over the parameters of one mask site (BN γ, β; or filter and bias).
fn site_taylor(network: &Network, site: usize, size: usize, grads: &burn::tensor::Gradients) -> Result<Vec<f32>> {
    let layer = &network.layers[site];
    let mut c = vec![0f32; size];
    let mut add = |v: Vec<f32>| {
        for (a, b) in c.iter_mut().zip(&v) {
            *a += b;
        }
    };
    let prod1 = |t: Tensor<1>| -> Result<Option<Vec<f32>>> {
        match t.grad(grads) {
            Some(g) => Ok(Some(host(t.detach() * g)?)),
            None => Ok(None),
        }
    };
    if let Some(bn) = &layer.bn {
        add(prod1(bn.gamma.val())?.unwrap_or_default());
        add(prod1(bn.beta.val())?.unwrap_or_default());
        return Ok(c);
    }
    if let Some(kp) = &layer.kernel {
        let kt = kp.val();
        if let Some(g) = kt.grad(grads) {
            let [o, i, kh, kw] = kt.dims();
            let p: Tensor<2> = (kt.detach() * g).reshape([o, i * kh * kw]);
            add(host(p.sum_dim(1))?);
        }
    } else if let Some(wp) = &layer.weight {
        let wt = wp.val();
        if let Some(g) = wt.grad(grads) {
            add(host((wt.detach() * g).sum_dim(0))?);
        }
    }
    if let Some(b) = &layer.bias {
        add(prod1(b.val())?.unwrap_or_default());
    }
    Ok(c)
}
