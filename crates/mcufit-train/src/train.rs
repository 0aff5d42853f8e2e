//! The training loop: config, trainer, hooks, checkpoints, resume.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::config::Config;
use burn::module::{Module, ParamGroup, ParamId};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::{Device, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};
use mcufit_ir::Graph;
use serde::{Deserialize, Serialize};

use crate::data::{BatchSource, Splits};
use crate::error::{Result, TrainError};
use crate::eval::{argmax, check_data, evaluate, EvalReport, Evaluator};
use crate::fast::{EngineKind, FastPath};
use crate::network::{to_vec, Mode, Network};
use crate::ops;
use crate::rng::SplitMix64;

/// Which optimizer to use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OptimizerKind {
    /// SGD with (PyTorch-style, no dampening) momentum.
    Sgd {
        momentum: f64,
        nesterov: bool,
    },
    Adam {
        beta1: f32,
        beta2: f32,
        eps: f32,
    },
}

/// Learning-rate schedule, evaluated per step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LrSchedule {
    Constant,
    /// Linear warm-up for `warmup_epochs`, then cosine decay from `lr` to `lr * min_ratio`.
    Cosine {
        warmup_epochs: usize,
        min_ratio: f64,
    },
    /// `lr * gamma^(epoch / every)`.
    Step {
        every: usize,
        gamma: f64,
    },
}

impl LrSchedule {
    /// Learning rate at `step` (0-based, over the whole run) of `total` steps with
    /// `steps_per_epoch` steps per epoch.
    pub fn lr(&self, base: f64, step: u64, steps_per_epoch: u64, total: u64) -> f64 {
        let spe = steps_per_epoch.max(1);
        match *self {
            LrSchedule::Constant => base,
            LrSchedule::Cosine { warmup_epochs, min_ratio } => {
                let warm = warmup_epochs as u64 * spe;
                if step < warm {
                    return base * (step + 1) as f64 / warm as f64;
                }
                let span = total.saturating_sub(warm).max(1);
                let t = ((step - warm) as f64 / span as f64).min(1.0);
                let min = base * min_ratio;
                min + (base - min) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
            LrSchedule::Step { every, gamma } => {
                let epoch = step / spe;
                base * gamma.powi((epoch / every.max(1) as u64) as i32)
            }
        }
    }
}

/// Training configuration (burn `Config`: `TrainConfig::new()` gives the defaults, `with_*`
/// setters, JSON `save`/`load`).
#[derive(Config, Debug)]
pub struct TrainConfig {
    #[config(default = 10)]
    pub epochs: usize,
    #[config(default = 64)]
    pub batch_size: usize,
    /// Peak learning rate.
    #[config(default = 0.05)]
    pub lr: f64,
    #[config(default = "OptimizerKind::Sgd { momentum: 0.9, nesterov: false }")]
    pub optimizer: OptimizerKind,
    #[config(default = "LrSchedule::Cosine { warmup_epochs: 0, min_ratio: 0.0 }")]
    pub schedule: LrSchedule,
    /// L2 weight decay, applied to conv / dense kernels only (not biases, BN, masks).
    #[config(default = 5e-4)]
    pub weight_decay: f64,
    #[config(default = 42)]
    pub seed: u64,
    /// Where checkpoints go (`last/` every epoch, `best/` for the best validation accuracy).
    /// `None`: nothing is written and the run cannot be resumed.
    pub out_dir: Option<String>,
    /// Continue from `out_dir/last` if it exists (a fresh run otherwise).
    #[config(default = false)]
    pub resume: bool,
    /// Use the dataset's augmented batches for training.
    #[config(default = true)]
    pub augment: bool,
    /// BN running-average momentum (weight of the new batch, PyTorch convention).
    #[config(default = 0.1)]
    pub bn_momentum: f64,
    /// Show a progress bar.
    #[config(default = true)]
    pub progress: bool,
    /// Worker threads for the CPU backend (0 = rayon's default). Only the first setting in a
    /// process takes effect (rayon's global pool).
    #[config(default = 0)]
    pub threads: usize,
    /// Cap on training steps per epoch (quick experiments); `None` = whole dataset.
    pub max_steps_per_epoch: Option<usize>,
    /// Which code runs the forward and backward pass: mcufit's CPU engine where it applies
    /// (`Auto`), or burn's autodiff (`Burn`, the reference path).
    #[config(default = "EngineKind::Auto")]
    pub engine: EngineKind,
}

impl TrainConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(TrainError::Config(m));
        if self.max_steps_per_epoch == Some(0) {
            return bad("max_steps_per_epoch (--max-steps) must be at least 1".into());
        }
        if self.batch_size == 0 {
            return bad("batch_size must be at least 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("lr must be positive, got {}", self.lr));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!("weight_decay must be >= 0, got {}", self.weight_decay));
        }
        if !(0.0..=1.0).contains(&self.bn_momentum) {
            return bad(format!("bn_momentum must be in [0, 1], got {}", self.bn_momentum));
        }
        if self.resume && self.out_dir.is_none() {
            return bad("resume needs an out_dir".into());
        }
        match &self.optimizer {
            OptimizerKind::Sgd { momentum, .. } if !(0.0..1.0).contains(momentum) => {
                return bad(format!("SGD momentum must be in [0, 1), got {momentum}"))
            }
            OptimizerKind::Adam { beta1, beta2, eps }
                if !((0.0..1.0).contains(beta1) && (0.0..1.0).contains(beta2) && *eps > 0.0) =>
            {
                return bad("Adam needs 0 <= beta < 1 and eps > 0".into())
            }
            _ => {}
        }
        match &self.schedule {
            LrSchedule::Cosine { min_ratio, .. } if !(0.0..=1.0).contains(min_ratio) => {
                bad(format!("cosine min_ratio must be in [0, 1], got {min_ratio}"))
            }
            LrSchedule::Step { every: 0, .. } => bad("step schedule needs every >= 1".into()),
            LrSchedule::Step { gamma, .. } if !(gamma.is_finite() && *gamma > 0.0) => {
                bad(format!("step schedule gamma must be positive, got {gamma}"))
            }
            _ => Ok(()),
        }
    }
}

/// Where a step is in the run; passed to hooks.
#[derive(Debug, Clone, Copy)]
pub struct StepContext {
    pub epoch: usize,
    /// Global step index (0-based).
    pub step: u64,
    pub lr: f64,
}

/// Extension points for pruning and other regularised training.
pub trait TrainHook {
    /// An extra loss term added to the cross-entropy before backward (e.g. L1 on BN gammas or
    /// masks, read from `network`, whose parameters are tracked). `logits` are this step's.
    fn extra_loss(&mut self, network: &Network, logits: &Tensor<2>, ctx: &StepContext) -> Result<Option<Tensor<1>>> {
        let _ = (network, logits, ctx);
        Ok(None)
    }
    /// The targets the cross-entropy is taken against for a batch (`images`: its `n` NHWC host
    /// images, `n` = the rows of `targets`): by default the one-hot labels unchanged; [`Distill`]
    /// blends in a teacher's predictions.
    fn targets(&mut self, images: &[f32], targets: Tensor<2>, ctx: &StepContext) -> Result<Tensor<2>> {
        let _ = (images, ctx);
        Ok(targets)
    }
    /// Called after each optimizer step (e.g. clamp or re-threshold masks).
    fn after_step(&mut self, network: &mut Network, ctx: &StepContext) -> Result<()> {
        let _ = (network, ctx);
        Ok(())
    }
    /// Called after each epoch's validation.
    fn after_epoch(&mut self, network: &mut Network, stats: &EpochStats) -> Result<()> {
        let _ = (network, stats);
        Ok(())
    }
}

/// A hook that does nothing.
pub struct NoHook;
impl TrainHook for NoHook {}

/// Knowledge distillation (Hinton et al. 2015, "Distilling the Knowledge in a Neural Network"):
/// the student learns from `(1 - alpha) * one_hot + alpha * softmax(teacher_logits / temperature)`.
/// Used to fine-tune a pruned network against the unpruned one it came from. The teacher runs in
/// evaluation mode and receives no gradient; it costs one forward pass of the teacher per step.
pub struct Distill {
    pub teacher: Network,
    pub alpha: f64,
    pub temperature: f64,
    /// The teacher's evaluator, built at the first step (the teacher must not change after it).
    eval: Option<Evaluator>,
}

impl Distill {
    pub fn new(teacher: Network, alpha: f64, temperature: f64) -> Result<Self> {
        if !(0.0..=1.0).contains(&alpha) {
            return Err(TrainError::Config(format!("distillation weight must be in [0, 1], got {alpha}")));
        }
        if !(temperature.is_finite() && temperature > 0.0) {
            return Err(TrainError::Config(format!("distillation temperature must be > 0, got {temperature}")));
        }
        Ok(Distill { teacher, alpha, temperature, eval: None })
    }
}

impl TrainHook for Distill {
    fn targets(&mut self, images: &[f32], targets: Tensor<2>, _ctx: &StepContext) -> Result<Tensor<2>> {
        let [n, k] = targets.dims();
        let eval = match &mut self.eval {
            Some(e) => e,
            None => self.eval.insert(Evaluator::new(&self.teacher)?),
        };
        let logits = Tensor::<2>::from_data(TensorData::new(eval.logits(images, n)?, [n, k]), &targets.device());
        let soft = burn::tensor::activation::softmax(logits / self.temperature, 1);
        Ok(targets * (1.0 - self.alpha) + soft * self.alpha)
    }
}

/// Result of one optimisation step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepStats {
    /// Cross-entropy of the batch.
    pub loss: f64,
    /// The hook's extra loss (0 without one).
    pub extra_loss: f64,
    pub correct: usize,
    pub examples: usize,
    pub lr: f64,
}

/// Per-epoch record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub extra_loss: f64,
    pub val_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
    pub lr_end: f64,
    pub images_per_sec: f64,
    pub seconds: f64,
}

/// Everything needed to continue a run (saved as `state.json` in each checkpoint).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Epochs completed.
    pub epoch: usize,
    pub global_step: u64,
    pub best_accuracy: Option<f64>,
    pub best_epoch: Option<usize>,
    pub history: Vec<EpochStats>,
    /// Shuffle RNG state at the start of the next epoch. Streams are derived from
    /// (seed, epoch), so this is informational/a consistency check.
    pub rng: SplitMix64,
}

/// Serializable summary of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSummary {
    pub epochs: usize,
    pub best_epoch: Option<usize>,
    pub best_accuracy: Option<f64>,
    pub history: Vec<EpochStats>,
    pub final_eval: Option<EvalReport>,
    pub best_dir: Option<PathBuf>,
}

/// What [`train`] returns: the best network (on validation, else on training accuracy) in
/// evaluation mode, and the run summary.
#[derive(Debug)]
pub struct TrainReport {
    pub network: Network,
    pub summary: TrainSummary,
}

/// The CPU (flex) device, or CUDA 0 when built with the `cuda` feature.
pub fn default_device() -> Device {
    #[cfg(feature = "cuda")]
    {
        Device::cuda(0)
    }
    #[cfg(not(feature = "cuda"))]
    {
        Device::flex()
    }
}

fn set_threads(n: usize) {
    if n > 0 {
        // Fails only when the global pool already exists; the first setting then stays.
        let _ = rayon::ThreadPoolBuilder::new().num_threads(n).build_global();
    }
}

/// A step's loss: cross-entropy plus the hook's extra term, and their values on the host.
struct StepLoss {
    total: Tensor<1>,
    task: f64,
    extra: f64,
}

impl StepLoss {
    /// The loss of `logits` against `targets`; `Err(Diverged)` when either term is not finite.
    fn new(
        net: &Network,
        logits: &Tensor<2>,
        targets: Tensor<2>,
        hook: &mut dyn TrainHook,
        ctx: &StepContext,
    ) -> Result<StepLoss> {
        let task = ops::cross_entropy(logits.clone(), targets);
        let (total, extra) = match hook.extra_loss(net, logits, ctx)? {
            Some(e) => {
                let v = to_vec(e.clone().detach())?.first().copied().unwrap_or(0.0) as f64;
                (task.clone() + e, v)
            }
            None => (task.clone(), 0.0),
        };
        let task = to_vec(task.detach())?.first().copied().unwrap_or(f32::NAN) as f64;
        if !task.is_finite() || !extra.is_finite() {
            return Err(TrainError::Diverged(format!(
                "loss {task} (extra {extra}) at epoch {} step {}; lower the learning rate",
                ctx.epoch, ctx.step
            )));
        }
        Ok(StepLoss { total, task, extra })
    }
}

/// Drives training of one network.
pub struct Trainer {
    network: Option<Network>,
    optimizer: ModuleOptimizer,
    config: TrainConfig,
    device: Device,
    pub state: TrainState,
    steps_per_epoch: u64,
    best: Option<Network>,
    images: Vec<f32>,
    labels: Vec<u32>,
    onehot: Vec<f32>,
    /// The CPU engine for this network; built at the first step (`None` inside: burn trains).
    fast: Option<Option<FastPath>>,
}

fn build_optimizer(network: &Network, config: &TrainConfig) -> ModuleOptimizer {
    let decay = (config.weight_decay > 0.0).then(|| WeightDecayConfig::new(config.weight_decay as f32));
    // Kernels get weight decay; everything else (bias, BN, masks) does not.
    let kernels: Vec<ParamId> = network
        .layers
        .iter()
        .flat_map(|l| l.kernel.as_ref().map(|k| k.id).into_iter().chain(l.weight.as_ref().map(|w| w.id)))
        .collect();
    match &config.optimizer {
        OptimizerKind::Sgd { momentum, nesterov } => {
            let m = (*momentum > 0.0)
                .then(|| MomentumConfig::new().with_momentum(*momentum).with_dampening(0.0).with_nesterov(*nesterov));
            let plain = SgdConfig::new().with_momentum(m.clone()).init();
            match decay {
                Some(d) => plain.with_group(
                    ParamGroup::from_ids(kernels),
                    SgdConfig::new().with_momentum(m).with_weight_decay(Some(d)).build(),
                    None,
                ),
                None => plain,
            }
        }
        OptimizerKind::Adam { beta1, beta2, eps } => {
            let base = AdamConfig::new().with_beta_1(*beta1).with_beta_2(*beta2).with_epsilon(*eps);
            let plain = base.init();
            match decay {
                Some(d) => {
                    plain.with_group(ParamGroup::from_ids(kernels), base.with_weight_decay(Some(d)).build(), None)
                }
                None => plain,
            }
        }
    }
}

impl Trainer {
    /// A trainer for `network` (moved to the autodiff variant of its device).
    pub fn new(network: Network, config: TrainConfig) -> Result<Trainer> {
        config.validate()?;
        set_threads(config.threads);
        let device = network.device().autodiff();
        device.seed(config.seed);
        let network = network.with_bn_momentum(config.bn_momentum)?.fork(&device).train();
        let optimizer = build_optimizer(&network, &config);
        Ok(Trainer {
            network: Some(network),
            optimizer,
            device,
            state: TrainState {
                epoch: 0,
                global_step: 0,
                best_accuracy: None,
                best_epoch: None,
                history: Vec::new(),
                rng: SplitMix64::derive(config.seed, 0, 0x5EED),
            },
            config,
            steps_per_epoch: 0,
            best: None,
            images: Vec::new(),
            labels: Vec::new(),
            onehot: Vec::new(),
            fast: None,
        })
    }

    /// Continues from a checkpoint directory written by [`Trainer::save_checkpoint`].
    /// `config` should be the run's config (epochs may be raised to train longer).
    pub fn resume(dir: impl AsRef<Path>, config: TrainConfig, device: &Device) -> Result<Trainer> {
        let dir = dir.as_ref();
        recover_checkpoint(dir)?;
        let network = Network::load(dir, device)?;
        let mut t = Trainer::new(network, config)?;
        // Momentum / Adam moments are part of the state: resuming without them would silently
        // diverge from the uninterrupted run, so a missing file is an error.
        let opt_path = dir.join("optimizer.bpk");
        let optimizer = build_optimizer(t.network()?, &t.config);
        t.optimizer =
            optimizer.load(&opt_path).map_err(|e| TrainError::Checkpoint(format!("{}: {e}", opt_path.display())))?;
        let sp = dir.join("state.json");
        let text = std::fs::read_to_string(&sp).map_err(|e| TrainError::io(&sp, e))?;
        t.state = serde_json::from_str(&text).map_err(|e| TrainError::Checkpoint(format!("{}: {e}", sp.display())))?;
        Ok(t)
    }

    pub fn config(&self) -> &TrainConfig {
        &self.config
    }
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The network being trained (autodiff device, train mode).
    pub fn network(&self) -> Result<&Network> {
        self.network.as_ref().ok_or_else(|| TrainError::Checkpoint("network lost by an earlier failed step".into()))
    }
    pub fn network_mut(&mut self) -> Result<&mut Network> {
        // The caller may change the network's structure: the engine is rebuilt at the next step.
        self.fast = None;
        self.network.as_mut().ok_or_else(|| TrainError::Checkpoint("network lost by an earlier failed step".into()))
    }
    /// The trained network in evaluation mode.
    pub fn into_network(self) -> Result<Network> {
        self.network.map(|n| n.valid()).ok_or_else(|| TrainError::Checkpoint("network lost".into()))
    }

    /// Sets the epoch length (optimisation steps) the LR schedule assumes, for callers that drive
    /// [`Trainer::step`] in their own loop instead of [`Trainer::train_epoch`] / [`Trainer::fit`]
    /// (which set it from the data), e.g. several heads fed by one frozen trunk.
    pub fn set_steps_per_epoch(&mut self, steps: u64) {
        self.steps_per_epoch = steps.max(1);
    }

    /// Current learning rate, from the schedule.
    pub fn lr(&self) -> f64 {
        let total = self.steps_per_epoch * self.config.epochs as u64;
        self.config.schedule.lr(self.config.lr, self.state.global_step, self.steps_per_epoch, total)
    }

    /// One optimisation step on a host NHWC batch. Public so callers can run custom loops.
    pub fn step(&mut self, images: &[f32], labels: &[u32], hook: &mut dyn TrainHook) -> Result<StepStats> {
        let net = self.network()?;
        let n = labels.len();
        let k = net.num_classes();
        if images.len() != n * net.input_shape().elements() {
            return Err(TrainError::Data(format!(
                "a batch of {n} labels needs {} image floats, got {}",
                n * net.input_shape().elements(),
                images.len()
            )));
        }
        self.onehot.clear();
        self.onehot.resize(n * k, 0.0);
        for (i, &y) in labels.iter().enumerate() {
            if y as usize >= k {
                return Err(TrainError::Data(format!("label {y} out of range for {k} classes")));
            }
            self.onehot[i * k + y as usize] = 1.0;
        }
        let targets = Tensor::<2>::from_data(TensorData::new(self.onehot.clone(), [n, k]), &self.device);
        let lr = self.lr();
        let ctx = StepContext { epoch: self.state.epoch, step: self.state.global_step, lr };
        let targets = hook.targets(images, targets, &ctx)?;
        if self.uses_engine()? {
            return self.step_engine(images, targets, labels, hook, ctx);
        }
        self.step_burn(images, targets, labels, hook, ctx)
    }

    /// Whether steps on host batches ([`Trainer::step`]) run on mcufit's CPU engine (see
    /// [`TrainConfig::engine`]); `false`: burn's autodiff.
    pub fn uses_engine(&mut self) -> Result<bool> {
        if self.fast.is_none() {
            let fast = FastPath::for_network(self.network()?, self.config.engine);
            self.fast = Some(fast);
        }
        Ok(matches!(self.fast, Some(Some(_))))
    }

    /// [`Trainer::step`] on the CPU engine (see [`crate::fast`]): same loss, hooks and optimiser.
    fn step_engine(
        &mut self,
        images: &[f32],
        targets: Tensor<2>,
        labels: &[u32],
        hook: &mut dyn TrainHook,
        ctx: StepContext,
    ) -> Result<StepStats> {
        let n = labels.len();
        let net = self.network.as_ref().ok_or_else(|| TrainError::Checkpoint("network lost".into()))?;
        let Some(Some(fast)) = self.fast.as_mut() else {
            return Err(TrainError::Config("the CPU engine is not available for this network".into()));
        };
        let k = net.num_classes();
        let logits_host = fast.forward_train(net, images, n)?;
        let logits = Tensor::<2>::from_data(TensorData::new(logits_host.clone(), [n, k]), &self.device).require_grad();
        let loss = StepLoss::new(net, &logits, targets, hook, &ctx)?;
        let mut grads = loss.total.backward();
        let dlogits = logits
            .grad_remove(&mut grads)
            .ok_or_else(|| TrainError::Graph("the loss has no gradient with respect to the logits".into()))?;
        let dlogits = to_vec(dlogits)?;
        let mut grads = GradientsParams::from_grads(grads, net);
        fast.backward(net, &dlogits, &mut grads, &self.device.clone().without_autodiff())?;
        fast.update_running_stats(net, n)?;
        self.finish_step(grads, &logits_host, labels, hook, ctx, &loss)
    }

    /// [`Trainer::step`] on burn's autodiff (the reference path, and CUDA's).
    fn step_burn(
        &mut self,
        images: &[f32],
        targets: Tensor<2>,
        labels: &[u32],
        hook: &mut dyn TrainHook,
        ctx: StepContext,
    ) -> Result<StepStats> {
        let net = self.network()?;
        let x = net.input_from_nhwc(images, labels.len(), &self.device)?;
        let logits = net.forward_mode(x, Mode::Train)?;
        let loss = StepLoss::new(net, &logits, targets, hook, &ctx)?;
        let grads = GradientsParams::from_grads(loss.total.backward(), net);
        let logits_host = to_vec(logits.detach())?;
        self.finish_step(grads, &logits_host, labels, hook, ctx, &loss)
    }

    /// The end of every step: the accuracy count, the optimiser step, the hook's `after_step`.
    fn finish_step(
        &mut self,
        grads: GradientsParams,
        logits: &[f32],
        labels: &[u32],
        hook: &mut dyn TrainHook,
        ctx: StepContext,
        loss: &StepLoss,
    ) -> Result<StepStats> {
        let net = self.network.take().ok_or_else(|| TrainError::Checkpoint("network lost".into()))?;
        let k = net.num_classes();
        let correct = logits.chunks_exact(k).zip(labels).filter(|(row, &y)| argmax(row) == y as usize).count();
        let mut net = self.optimizer.step(ctx.lr, net, grads);
        let after = hook.after_step(&mut net, &ctx);
        self.network = Some(net);
        after?;
        self.state.global_step += 1;
        Ok(StepStats { loss: loss.task, extra_loss: loss.extra, correct, examples: labels.len(), lr: ctx.lr })
    }

    fn epoch_batches(&self, len: usize, epoch: usize) -> Vec<Vec<usize>> {
        let mut idx: Vec<usize> = (0..len).collect();
        // The order of epoch e depends only on (seed, e): a resumed run sees the same batches.
        SplitMix64::derive(self.config.seed, epoch as u64, 0x5EED).shuffle(&mut idx);
        let bs = self.config.batch_size;
        let mut batches: Vec<Vec<usize>> = idx.chunks(bs).map(|c| c.to_vec()).collect();
        // Drop a short last batch (batch statistics of a handful of images are noise), unless it
        // is the only one.
        if batches.len() > 1 && batches.last().is_some_and(|b| b.len() < bs) {
            batches.pop();
        }
        if let Some(m) = self.config.max_steps_per_epoch {
            batches.truncate(m.max(1));
        }
        batches
    }

    fn steps_for(&self, len: usize) -> u64 {
        let bs = self.config.batch_size;
        let mut s = if len <= bs { 1 } else { len / bs };
        if let Some(m) = self.config.max_steps_per_epoch {
            s = s.min(m.max(1));
        }
        s as u64
    }

    /// Trains one epoch (the next one); returns its training statistics (no validation).
    pub fn train_epoch(&mut self, data: &dyn BatchSource, hook: &mut dyn TrainHook) -> Result<EpochStats> {
        check_data(self.network()?, data, "training")?;
        if data.is_empty() {
            return Err(TrainError::Data("training dataset is empty".into()));
        }
        self.steps_per_epoch = self.steps_for(data.len());
        let epoch = self.state.epoch;
        let batches = self.epoch_batches(data.len(), epoch);
        let bar = if self.config.progress {
            let b = ProgressBar::new(batches.len() as u64);
            b.set_style(
                ProgressStyle::with_template("{prefix} [{bar:25}] {pos}/{len} {msg} ({elapsed}<{eta})")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            b.set_prefix(format!("epoch {}/{}", epoch + 1, self.config.epochs));
            b
        } else {
            ProgressBar::hidden()
        };
        let start = Instant::now();
        let (mut loss_sum, mut extra_sum, mut correct, mut seen, mut steps) = (0f64, 0f64, 0usize, 0usize, 0usize);
        let mut lr = self.lr();
        let mut images = std::mem::take(&mut self.images);
        let mut labels = std::mem::take(&mut self.labels);
        let result = (|| -> Result<()> {
            for (b, idx) in batches.iter().enumerate() {
                if self.config.augment {
                    let seed = SplitMix64::derive(self.config.seed, epoch as u64, 0xA0_0000 + b as u64).next_u64();
                    data.batch_augmented(idx, seed, &mut images, &mut labels)?;
                } else {
                    data.batch(idx, &mut images, &mut labels)?;
                }
                let s = self.step(&images, &labels, hook)?;
                lr = s.lr;
                loss_sum += s.loss * s.examples as f64;
                extra_sum += s.extra_loss;
                correct += s.correct;
                seen += s.examples;
                steps += 1;
                let secs = start.elapsed().as_secs_f64().max(1e-9);
                bar.set_message(format!(
                    "loss {:.4} acc {:.2}% {:.0} img/s",
                    loss_sum / seen.max(1) as f64,
                    100.0 * correct as f64 / seen.max(1) as f64,
                    seen as f64 / secs
                ));
                bar.inc(1);
            }
            Ok(())
        })();
        self.images = images;
        self.labels = labels;
        bar.finish_and_clear();
        result?;
        let secs = start.elapsed().as_secs_f64();
        self.state.epoch += 1;
        self.state.rng = SplitMix64::derive(self.config.seed, self.state.epoch as u64, 0x5EED);
        Ok(EpochStats {
            epoch,
            train_loss: loss_sum / seen.max(1) as f64,
            train_accuracy: correct as f64 / seen.max(1) as f64,
            extra_loss: extra_sum / steps.max(1) as f64,
            val_loss: None,
            val_accuracy: None,
            lr_end: lr,
            images_per_sec: seen as f64 / secs.max(1e-9),
            seconds: secs,
        })
    }

    /// Writes a resumable checkpoint (network + optimizer + state) into `dir`, atomically
    /// (written next to it, then renamed into place).
    pub fn save_checkpoint(&self, dir: impl AsRef<Path>) -> Result<()> {
        self.save_checkpoint_with(dir, &[])
    }

    /// [`Trainer::save_checkpoint`] plus extra files (name, contents) of the caller's own state
    /// (e.g. pruning masks), written into the same directory before it replaces the old one, so
    /// an interruption never leaves a checkpoint without them.
    pub fn save_checkpoint_with(&self, dir: impl AsRef<Path>, extra: &[(&str, String)]) -> Result<()> {
        let net = self.network()?;
        replace_dir(dir.as_ref(), |tmp| {
            net.save(tmp)?;
            self.optimizer
                .save(tmp.join("optimizer.bpk"))
                .map_err(|e| TrainError::Checkpoint(format!("optimizer state: {e}")))?;
            let state = serde_json::to_string_pretty(&self.state).map_err(|e| TrainError::Checkpoint(e.to_string()))?;
            let sp = tmp.join("state.json");
            std::fs::write(&sp, state).map_err(|e| TrainError::io(&sp, e))?;
            self.config.save(tmp.join("config.json")).map_err(|e| TrainError::io(tmp, e))?;
            for (name, text) in extra {
                let p = tmp.join(name);
                std::fs::write(&p, text).map_err(|e| TrainError::io(&p, e))?;
            }
            Ok(())
        })
    }

    /// Runs the remaining epochs: train, validate, checkpoint `last/` (and `best/` on a new best
    /// validation accuracy). Returns the best network.
    pub fn fit(&mut self, splits: &Splits, hook: &mut dyn TrainHook) -> Result<TrainReport> {
        if let Some(v) = splits.val {
            check_data(self.network()?, v, "validation")?;
        }
        let out = self.config.out_dir.clone().map(PathBuf::from);
        self.steps_per_epoch = self.steps_for(splits.train.len());
        if self.best.is_none() && self.state.best_epoch.is_some() {
            if let Some(o) = &out {
                let bd = o.join("best");
                if recover_dir(&bd)? && bd.join("model.json").exists() {
                    self.best = Some(Network::load(&bd, &self.device.clone().without_autodiff())?);
                }
            }
        }
        while self.state.epoch < self.config.epochs {
            let mut stats = self.train_epoch(splits.train, hook)?;
            let metric = match splits.val {
                Some(v) => {
                    let r = evaluate(self.network()?, v, self.config.batch_size.max(256))?;
                    stats.val_loss = Some(r.loss);
                    stats.val_accuracy = Some(r.accuracy);
                    r.accuracy
                }
                None => stats.train_accuracy,
            };
            if self.config.progress {
                eprintln!(
                    "epoch {}/{}: loss {:.4} acc {:.2}%{} lr {:.2e} {:.0} img/s",
                    stats.epoch + 1,
                    self.config.epochs,
                    stats.train_loss,
                    100.0 * stats.train_accuracy,
                    stats.val_accuracy.map(|a| format!(" val {:.2}%", 100.0 * a)).unwrap_or_default(),
                    stats.lr_end,
                    stats.images_per_sec
                );
            }
            hook.after_epoch(self.network_mut()?, &stats)?;
            self.state.history.push(stats.clone());
            let improved = self.state.best_accuracy.is_none_or(|b| metric > b);
            if improved {
                self.state.best_accuracy = Some(metric);
                self.state.best_epoch = Some(stats.epoch);
                let snapshot = self.network()?.valid();
                if let Some(o) = &out {
                    replace_dir(&o.join("best"), |d| snapshot.save(d))?;
                }
                self.best = Some(snapshot);
            }
            if let Some(o) = &out {
                self.save_checkpoint(o.join("last"))?;
            }
        }
        let network = match self.best.take() {
            Some(b) => b,
            None => self.network()?.valid(),
        };
        let final_eval = match splits.val {
            Some(v) => Some(evaluate(&network, v, self.config.batch_size.max(256))?),
            None => None,
        };
        Ok(TrainReport {
            summary: TrainSummary {
                epochs: self.state.epoch,
                best_epoch: self.state.best_epoch,
                best_accuracy: self.state.best_accuracy,
                history: self.state.history.clone(),
                final_eval,
                best_dir: out.map(|o| o.join("best")),
            },
            network,
        })
    }
}

/// Trains a fresh network for `graph` (or resumes `out_dir/last` when `config.resume`).
pub fn train(graph: &Graph, splits: &Splits, config: &TrainConfig) -> Result<TrainReport> {
    train_with_hook(graph, splits, config, &mut NoHook)
}

/// [`train`] with a hook (extra loss terms, per-step callbacks).
pub fn train_with_hook(
    graph: &Graph,
    splits: &Splits,
    config: &TrainConfig,
    hook: &mut dyn TrainHook,
) -> Result<TrainReport> {
    config.validate()?;
    set_threads(config.threads);
    let device = default_device();
    device.seed(config.seed);
    let last = config.out_dir.as_ref().map(|o| Path::new(o).join("last"));
    let mut trainer = match last {
        Some(l) if config.resume && recover_checkpoint(&l)? && l.join("state.json").exists() => {
            let t = Trainer::resume(&l, config.clone(), &device)?;
            if t.network()?.graph() != graph {
                return Err(TrainError::Checkpoint(format!(
                    "{} holds a different model than the one given; use a new out_dir or resume=false",
                    l.display()
                )));
            }
            t
        }
        _ => Trainer::new(Network::new(graph, &device, config.seed)?, config.clone())?,
    };
    trainer.fit(splits, hook)
}

/// Fine-tunes an existing network (e.g. after pruning) with the given config and hook.
pub fn train_network(
    network: Network,
    splits: &Splits,
    config: &TrainConfig,
    hook: &mut dyn TrainHook,
) -> Result<TrainReport> {
    Trainer::new(network, config.clone())?.fit(splits, hook)
}

/// Writes directory `dir` as one unit: `write` fills `dir.partial`, which is renamed to `dir.tmp` once
/// complete; then the old `dir` moves to `dir.old`, `dir.tmp` to `dir`, and `dir.old` is removed.
/// A kill at any instant leaves `dir` complete (old or new), or — between the last two renames — no
/// `dir` but a complete `dir.tmp` (and `dir.old`), which [`recover_dir`] moves into place. A
/// `dir.partial` is never read: it may be half-written.
pub fn replace_dir(dir: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let [partial, tmp, old] = ["partial", "tmp", "old"].map(|e| dir.with_extension(e));
    fn io(p: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
        move |e| TrainError::io(p, e)
    }
    remove_dir_if_any(&partial)?;
    // On an error (a full disk) nothing is left behind and `dir` is untouched.
    if let Err(e) = std::fs::create_dir_all(&partial).map_err(io(&partial)).and_then(|()| write(&partial)) {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(e);
    }
    remove_dir_if_any(&tmp)?;
    std::fs::rename(&partial, &tmp).map_err(io(&tmp))?;
    remove_dir_if_any(&old)?;
    if dir.exists() {
        std::fs::rename(dir, &old).map_err(io(dir))?;
    }
    std::fs::rename(&tmp, dir).map_err(io(dir))?;
    remove_dir_if_any(&old)
}

fn remove_dir_if_any(p: &Path) -> Result<()> {
    match std::fs::remove_dir_all(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(TrainError::io(p, e)),
        _ => Ok(()),
    }
}

/// Restores directory `dir` written by [`replace_dir`] after a kill between its last two renames:
/// when `dir` is missing, the complete `dir.tmp` (the newer) becomes `dir`, failing that `dir.old`.
/// A leftover `dir.partial` is removed, and so is `dir.old` when `dir` is there. Returns whether
/// `dir` exists afterwards.
pub fn recover_dir(dir: impl AsRef<Path>) -> Result<bool> {
    let dir = dir.as_ref();
    // What a killed writer was filling is never read; it goes.
    remove_dir_if_any(&dir.with_extension("partial"))?;
    if dir.exists() {
        // Killed after the last rename but before the superseded state was removed: it goes too.
        remove_dir_if_any(&dir.with_extension("old"))?;
        return Ok(true);
    }
    for side in [dir.with_extension("tmp"), dir.with_extension("old")] {
        if side.is_dir() {
            std::fs::rename(&side, dir).map_err(|e| TrainError::io(dir, e))?;
            return Ok(true);
        }
    }
    Ok(false)
}

/// [`recover_dir`] for a training checkpoint (`last/`, written by [`Trainer::save_checkpoint_with`]).
/// Called before every resume.
pub fn recover_checkpoint(dir: impl AsRef<Path>) -> Result<bool> {
    recover_dir(dir)
}
