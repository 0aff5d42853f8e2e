//! The CPU fast path of a training step: [`mcufit_engine`] runs the network's forward and
//! backward pass; burn keeps everything around it — the loss, the hooks' extra terms (which read
//! the network's live parameters and the logits), the optimisers and the checkpoints.
//!
//! One step:
//! 1. the network's parameters are copied to the engine (burn layouts, a few hundred KB at most);
//! 2. the engine computes the logits on the host batch (NHWC, no NCHW copy);
//! 3. the logits become a burn leaf; loss = cross-entropy + the hook's extra term; burn's backward
//!    gives d loss / d logits and the hook term's own parameter gradients;
//! 4. the engine back-propagates d loss / d logits into every parameter; each gradient is added to
//!    the hook's gradient of the same parameter (if any) and handed to the optimiser;
//! 5. BN running statistics are updated from the engine's batch statistics with the formula of
//!    [`crate::Bn`]'s training forward.
//!
//! The burn path ([`EngineKind::Burn`]) stays the reference: tests compare the two.

use burn::module::{Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use mcufit_engine::{Engine, Mode as EngineMode, NodeParams, Params};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::network::{to_vec, Mode, Network};

/// Which code runs the network's forward and backward pass in training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineKind {
    /// mcufit's CPU engine when the network runs on the CPU and the engine supports its graph;
    /// burn otherwise (CUDA, or an op the engine lacks).
    #[default]
    Auto,
    /// burn's autodiff on the network's device: the reference path.
    Burn,
}

/// The engine bound to one network's graph, with its parameter buffers.
pub(crate) struct FastPath {
    engine: Engine,
    params: Params,
}

impl std::fmt::Debug for FastPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FastPath")
    }
}

/// Whether `device` (autodiff or not) is burn's CPU device.
fn is_cpu(device: &Device) -> bool {
    cfg!(not(feature = "cuda")) && device.clone().without_autodiff() == Device::flex()
}

fn host<const D: usize>(p: &Param<Tensor<D>>) -> Result<Vec<f32>> {
    to_vec(p.val())
}

impl FastPath {
    /// The fast path for `network`, or `None` when it must train on burn (not the CPU, a
    /// BN-folded network, or a graph the engine does not support).
    pub(crate) fn for_network(network: &Network, kind: EngineKind) -> Option<FastPath> {
        if kind == EngineKind::Burn || !is_cpu(&network.device()) || network.plan().is_folded() {
            return None;
        }
        let plan = network.plan();
        let engine = Engine::new(&plan.graph, plan.logits_node, plan.mask_sites().to_vec()).ok()?;
        Some(FastPath { engine, params: Params::default() })
    }

    /// Copies the network's current parameters (and, for evaluation, BN running statistics)
    /// into the engine's parameter buffers.
    fn gather(&mut self, network: &Network, mode: Mode) -> Result<()> {
        let nodes = &mut self.params.nodes;
        nodes.resize_with(network.layers.len(), NodeParams::default);
        for (np, layer) in nodes.iter_mut().zip(&network.layers) {
            np.kernel = layer.kernel.as_ref().map(host).transpose()?;
            np.weight = layer.weight.as_ref().map(host).transpose()?;
            np.bias = layer.bias.as_ref().map(host).transpose()?;
            match &layer.bn {
                Some(bn) => {
                    np.gamma = Some(host(&bn.gamma)?);
                    np.beta = Some(host(&bn.beta)?);
                    if mode == Mode::Eval {
                        let (m, v) = bn.running_stats();
                        np.running_mean = Some(to_vec(m)?);
                        np.running_var = Some(to_vec(v)?);
                    } else {
                        np.running_mean = None;
                        np.running_var = None;
                    }
                }
                None => (np.gamma, np.beta, np.running_mean, np.running_var) = (None, None, None, None),
            }
        }
        self.params.masks = network.masks.iter().map(|m| m.as_ref().map(host).transpose()).collect::<Result<_>>()?;
        Ok(())
    }

    /// Training-mode forward on a host NHWC batch: the logits `[n, classes]`, row-major.
    pub(crate) fn forward_train(&mut self, network: &Network, images: &[f32], n: usize) -> Result<Vec<f32>> {
        self.gather(network, Mode::Train)?;
        let logits = self.engine.forward(&self.params, images, n, EngineMode::Train).map_err(engine_err)?;
        Ok(logits.to_vec())
    }

    /// Evaluation-mode forward of a host NHWC batch (BN running statistics); the logits and other
    /// node outputs are then read with [`FastPath::output`]. `gather`: copy the parameters first
    /// (false only when they have not changed since the last call).
    pub(crate) fn forward_eval(&mut self, network: &Network, images: &[f32], n: usize, gather: bool) -> Result<()> {
        if gather {
            self.gather(network, Mode::Eval)?;
        }
        self.engine.forward(&self.params, images, n, EngineMode::Eval).map_err(engine_err)?;
        Ok(())
    }

    /// The NHWC output of `node` after the last forward.
    pub(crate) fn output(&self, node: mcufit_ir::NodeId) -> Result<&[f32]> {
        self.engine
            .output(node)
            .ok_or_else(|| TrainError::Graph(format!("node #{node} was not computed by the last forward")))
    }

    /// Back-propagates `dlogits` (of the last [`FastPath::forward_train`]) and merges the engine's
    /// gradients of every trainable parameter into `grads` (adding to a gradient already there,
    /// e.g. from a hook's extra loss term). `device` is the inner (non-autodiff) device.
    pub(crate) fn backward(
        &mut self,
        network: &Network,
        dlogits: &[f32],
        grads: &mut GradientsParams,
        device: &Device,
    ) -> Result<()> {
        let g = self.engine.backward(&self.params, dlogits).map_err(engine_err)?;
        fn merge<const D: usize>(
            grads: &mut GradientsParams,
            p: &Param<Tensor<D>>,
            g: Option<&Vec<f32>>,
            device: &Device,
        ) -> Result<()> {
            if !p.is_require_grad() {
                return Ok(());
            }
            let Some(g) = g else {
                return Err(TrainError::Graph(format!("the engine returned no gradient for parameter {}", p.id)));
            };
            let shape = p.val().dims();
            let t = Tensor::<D>::from_data(TensorData::new(g.clone(), shape), device);
            let id: ParamId = p.id;
            let t = match grads.remove::<D>(id) {
                Some(prev) => prev + t,
                None => t,
            };
            grads.register(id, t);
            Ok(())
        }
        for (layer, ng) in network.layers.iter().zip(&g.nodes) {
            if let Some(k) = &layer.kernel {
                merge(grads, k, ng.kernel.as_ref(), device)?;
            }
            if let Some(w) = &layer.weight {
                merge(grads, w, ng.weight.as_ref(), device)?;
            }
            if let Some(b) = &layer.bias {
                merge(grads, b, ng.bias.as_ref(), device)?;
            }
            if let Some(bn) = &layer.bn {
                merge(grads, &bn.gamma, ng.gamma.as_ref(), device)?;
                merge(grads, &bn.beta, ng.beta.as_ref(), device)?;
            }
        }
        for (m, mg) in network.masks.iter().zip(&g.masks) {
            if let Some(m) = m {
                merge(grads, m, mg.as_ref(), device)?;
            }
        }
        Ok(())
    }

    /// Updates every BN's running statistics from the last training forward's batch statistics,
    /// as [`crate::Bn`]'s training forward does (unbiased variance, PyTorch momentum).
    pub(crate) fn update_running_stats(&self, network: &Network, n: usize) -> Result<()> {
        let shapes = network.shapes();
        for (id, layer) in network.layers.iter().enumerate() {
            let Some(bn) = &layer.bn else { continue };
            let Some((mean, var)) = self.engine.batch_stats(id) else { continue };
            let s = shapes[id];
            let count = (n * s.h * s.w) as f64;
            let unbias = if count > 1.0 { count / (count - 1.0) } else { 1.0 };
            let m = bn.momentum;
            let (rm, rv) = bn.running_stats();
            let device = rm.device();
            let (rm, rv) = (to_vec(rm)?, to_vec(rv)?);
            let blend = |old: &[f32], new: &[f32], scale: f64| -> Vec<f32> {
                old.iter().zip(new).map(|(&o, &x)| ((1.0 - m) * o as f64 + m * scale * x as f64) as f32).collect()
            };
            let c = rm.len();
            let rm = Tensor::<1>::from_data(TensorData::new(blend(&rm, mean, 1.0), [c]), &device);
            let rv = Tensor::<1>::from_data(TensorData::new(blend(&rv, var, unbias), [c]), &device);
            bn.running_mean.update(rm);
            bn.running_var.update(rv);
        }
        Ok(())
    }
}

fn engine_err(e: mcufit_engine::EngineError) -> TrainError {
    TrainError::Graph(format!("training engine: {e}"))
}
