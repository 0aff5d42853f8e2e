//! The `mcufit compress` pipeline: feasibility check → (warm-up) → pruning interleaved with
//! training → freeze masks → physical removal → fine-tune → exact budget check → output directory.

use std::path::PathBuf;
use std::time::Instant;

use mcufit_cost::{Board, Budget, CostModel, CostOptions, Resource, Usage};
use mcufit_ir::{Graph, Op};
use mcufit_train::burn::module::Module;
use mcufit_train::burn::tensor::Tensor;
use mcufit_train::{
    default_device, evaluate, train_network, train_with_hook, BatchSource, Distill, EpochStats, LrSchedule, Network,
    NoHook, SplitMix64, StepContext, TrainConfig, TrainHook, Trainer,
};
use serde::{Deserialize, Serialize};

use crate::baselines::prune_network;
use crate::budget::{check_feasible, minimal_sizes, over_budget, overflow, resource_table, ResourceFigure};
use crate::error::{PruneError, Result, Shortfall};
use crate::masks::{bn_weight_salience, taylor_salience, MaskState, Salience};
use crate::removal::RemovalReport;
use crate::resource::{annealed_budget, penalty_coefficients, LambdaSchedule, ResourceModel};

/// Configuration of [`compress`].
#[derive(Debug, Clone)]
pub struct CompressConfig {
    pub budget: Budget,
    /// Needed for a latency budget (clock and cycle model); reported otherwise.
    pub board: Option<Board>,
    pub cost_options: CostOptions,
    /// Training settings; `epochs` is the total of warm-up + pruning + fine-tune. Its `out_dir` and
    /// `resume` are ignored (see `out_dir` / `resume` below).
    pub train: TrainConfig,
    /// A trained model directory to start from (model.json + weights); its graph must be `graph`.
    pub from: Option<PathBuf>,
    /// Where the checkpoints go (`OUT/checkpoints/{prune,pruned,finetune}`); the pruned model itself is
    /// returned in the report for the caller to save.
    pub out_dir: Option<PathBuf>,
    /// Continue an interrupted run from `out_dir/checkpoints`.
    pub resume: bool,
    pub salience: Salience,
    /// Training steps between pruning steps (salience, ranks, resource gradients, λ). `None`:
    /// about 8 per epoch, at most every 40 steps.
    pub prune_every: Option<usize>,
    /// Epochs of plain training before pruning (default: 0 with `from`, else a quarter).
    pub warmup_epochs: Option<usize>,
    /// Epochs of fine-tuning after the masks freeze (default: 30 %, at least 1).
    pub finetune_epochs: Option<usize>,
    /// The penalty aims at `margin × budget` so the rounded architecture lands under it.
    pub margin: f64,
    /// Fraction of the pruning phase over which the target anneals from the start usage to the budget.
    pub anneal_fraction: f64,
    /// Weight of the task loss's straight-through gradient on the widths (1 = plain STE).
    pub ste_scale: f64,
    /// Fine-tune the pruned model against the unpruned `from` model's predictions (knowledge
    /// distillation, [`mcufit_train::Distill`]): weight of the teacher's soft labels in the
    /// targets, 0 = plain labels. Has no effect without `from` (there is no trained teacher).
    pub distill: f64,
    /// Softmax temperature of the teacher's soft labels.
    pub distill_temperature: f64,
}

impl CompressConfig {
    pub fn new(budget: Budget, train: TrainConfig) -> Self {
        CompressConfig {
            budget,
            board: None,
            cost_options: CostOptions::default(),
            train,
            from: None,
            out_dir: None,
            resume: false,
            salience: Salience::BnWeight,
            prune_every: None,
            warmup_epochs: None,
            finetune_epochs: None,
            margin: 0.97,
            anneal_fraction: 0.6,
            ste_scale: 1.0,
            distill: 0.0,
            distill_temperature: 1.0,
        }
    }

    /// (warm-up, pruning, fine-tune) epochs.
    pub fn phases(&self) -> Result<(usize, usize, usize)> {
        let e = self.train.epochs;
        if e < 2 {
            return Err(PruneError::Config(format!("compress needs at least 2 epochs (pruning + fine-tune), got {e}")));
        }
        let ft = self.finetune_epochs.unwrap_or(((e as f64 * 0.3).round() as usize).max(1));
        let warm = self.warmup_epochs.unwrap_or(if self.from.is_some() { 0 } else { e / 4 });
        if warm + ft >= e {
            return Err(PruneError::Config(format!(
                "{warm} warm-up + {ft} fine-tune epochs leave no pruning epoch out of {e}"
            )));
        }
        Ok((warm, e - warm - ft, ft))
    }

    fn check(&self) -> Result<()> {
        if self.prune_every == Some(0) {
            return Err(PruneError::Config("prune_every must be at least 1".into()));
        }
        if !(self.margin > 0.0 && self.margin <= 1.0) {
            return Err(PruneError::Config(format!("margin must be in (0, 1], got {}", self.margin)));
        }
        if !(self.ste_scale.is_finite() && self.ste_scale >= 0.0) {
            return Err(PruneError::Config(format!("ste_scale must be >= 0, got {}", self.ste_scale)));
        }
        if !(self.anneal_fraction >= 0.0 && self.anneal_fraction <= 1.0) {
            return Err(PruneError::Config(format!("anneal_fraction must be in [0, 1], got {}", self.anneal_fraction)));
        }
        if !((0.0..=1.0).contains(&self.distill)
            && self.distill_temperature.is_finite()
            && self.distill_temperature > 0.0)
        {
            return Err(PruneError::Config(format!(
                "distill must be in [0, 1] and its temperature > 0, got {} and {}",
                self.distill, self.distill_temperature
            )));
        }
        if self.resume && self.out_dir.is_none() {
            return Err(PruneError::Config("resume needs an output directory".into()));
        }
        self.train.validate()?;
        self.phases().map(|_| ())
    }
}

/// Accuracy on validation and test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    pub val: f64,
    pub test: f64,
}

/// Output channels of one weighted layer before and after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerChannels {
    pub layer: String,
    pub kind: String,
    pub before: usize,
    pub after: usize,
}

/// Wall time of each phase, seconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct PhaseTimes {
    pub warmup: f64,
    pub prune: f64,
    pub finetune: f64,
    /// Evaluations before/after (not per-epoch validation, which is inside the phases).
    pub eval: f64,
    pub total: f64,
}

/// One pruning step, for the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PruneLog {
    pub step: u64,
    pub lambda: f64,
    /// Channels kept per masked group.
    pub counts: Vec<usize>,
    /// Largest relative excess over the annealed target (negative = under).
    pub excess: f64,
    /// Marginal importance per masked group (relative to the mean over groups).
    pub importance: Vec<f64>,
    pub peak_memory: f64,
    pub model_bytes: f64,
    pub macs: f64,
}

/// What [`compress`] did; serialised as `report.json`.
#[derive(Debug, Serialize)]
pub struct CompressReport {
    pub model: String,
    pub budget: Budget,
    pub board: Option<String>,
    pub salience: Salience,
    pub epochs: (usize, usize, usize),
    /// Of the starting model (`None` when trained from scratch: there is no unpruned reference).
    pub accuracy_before: Option<Accuracy>,
    pub accuracy_after: Accuracy,
    pub resources: Vec<ResourceFigure>,
    pub channels: Vec<LayerChannels>,
    pub group_sizes_before: Vec<usize>,
    pub group_sizes_after: Vec<usize>,
    pub lambda_final: f64,
    pub pruning_steps: usize,
    pub order_resolves: usize,
    pub removal: RemovalReport,
    pub times: PhaseTimes,
    pub log: Vec<PruneLog>,
    /// Every epoch of the run (warm-up, pruning, fine-tune), with validation figures.
    #[serde(default)]
    pub history: Vec<EpochStats>,
    /// Training steps per epoch (the pruning log's `step` / this = epoch).
    #[serde(default)]
    pub steps_per_epoch: u64,
    pub out_dir: Option<PathBuf>,
    /// With `resume`: the epoch of the whole schedule this run picked up from (a pruning-phase
    /// checkpoint's epoch, or warm-up + pruning epochs when the pruned model was reloaded); `None`
    /// when the run started fresh.
    pub resumed_at_epoch: Option<usize>,
    /// The pruned dense network (evaluation mode).
    #[serde(skip)]
    pub network: Option<Network>,
}

/// Images in the probe batch of the marginal-importance measurement.
const PROBE: usize = 64;

/// Mean cross-entropy of an evaluation-mode network on a host batch.
fn probe_loss(network: &Network, x: &[f32], y: &[u32]) -> Result<f64> {
    let n = y.len();
    let t = network.input_from_nhwc(x, n, &network.device())?;
    let logits = network.forward_mode(t, mcufit_train::Mode::Eval)?;
    let k = network.num_classes();
    let lp = mcufit_train::burn::tensor::activation::log_softmax(logits, 1)
        .into_data()
        .try_into_vec_as::<f32>()
        .map_err(|e| PruneError::Config(format!("{e:?}")))?;
    Ok(lp.chunks_exact(k).zip(y).map(|(row, &c)| -(row[c as usize] as f64)).sum::<f64>() / n.max(1) as f64)
}

/// The training hook that prunes.
struct PruneHook<'a> {
    state: MaskState,
    resources: ResourceModel,
    budget: Budget,
    start: Usage,
    lambda: LambdaSchedule,
    coeffs: Vec<f64>,
    salience: Salience,
    prune_every: usize,
    /// Steps of the pruning phase done, and planned.
    step: u64,
    total: u64,
    anneal_fraction: f64,
    margin: f64,
    all_sizes: Vec<usize>,
    active: bool,
    data: &'a dyn BatchSource,
    batch_size: usize,
    seed: u64,
    log: Vec<PruneLog>,
    /// Widths as last installed.
    set_widths: Vec<f64>,
    /// Fixed probe batch (NHWC images, labels) for the marginal-importance measurements.
    probe: (Vec<f32>, Vec<u32>),
    /// Largest width change per pruning step, as a fraction of the group.
    step_size: f64,
}

#[derive(Serialize, Deserialize)]
struct HookState {
    state: MaskState,
    lambda: LambdaSchedule,
    coeffs: Vec<f64>,
    step: u64,
    log: Vec<PruneLog>,
    set_widths: Vec<f64>,
    /// The counts the memory order was last solved for and the re-solves so far
    /// ([`ResourceModel::solved_state`]): a resumed run re-solves and reports as the uninterrupted one.
    #[serde(default)]
    solved: Option<(Vec<f64>, usize)>,
}

impl PruneHook<'_> {
    fn salience_update(&mut self, network: &Network) -> Result<()> {
        match self.salience {
            Salience::BnWeight => {
                for gm in &mut self.state.groups {
                    let s = bn_weight_salience(network, gm.group, gm.size)?;
                    gm.set_salience(s);
                }
            }
            Salience::Taylor => {
                let mut rng = SplitMix64::derive(self.seed, self.step, 0x7A71);
                let n = self.data.len();
                let idx: Vec<usize> = (0..self.batch_size.min(n)).map(|_| rng.below(n)).collect();
                let (mut x, mut y) = (Vec::new(), Vec::new());
                self.data.batch(&idx, &mut x, &mut y)?;
                let fresh = taylor_salience(network, &self.state, &x, &y)?;
                for (gm, s) in self.state.groups.iter_mut().zip(fresh) {
                    // Loss units (comparable across layers), averaged over pruning steps since
                    // single batches are noisy.
                    let first = self.log.is_empty();
                    let v =
                        s.iter().zip(&gm.salience).map(|(a, b)| if first { *a } else { 0.7 * b + 0.3 * a }).collect();
                    gm.set_salience(v);
                }
            }
        }
        Ok(())
    }

    /// Salience → ranks, resource gradients at the soft counts, λ, then re-installs the masks.
    fn prune_step(&mut self, network: &mut Network) -> Result<()> {
        self.state.read_widths(network)?;
        self.width_step();
        self.state.clamp_widths();
        self.set_widths = self.state.groups.iter().map(|g| g.width).collect();
        self.salience_update(network)?;
        let t = if self.anneal_fraction > 0.0 {
            self.step as f64 / (self.anneal_fraction * self.total.max(1) as f64)
        } else {
            1.0
        };
        let target = annealed_budget(&self.start, &self.budget, t, self.margin);
        let soft = self.state.soft_sizes(&self.all_sizes);
        let (usage, terms) = self.resources.linearize(&soft, &target);
        let excess = terms.iter().map(|t| t.excess()).fold(f64::NEG_INFINITY, f64::max);
        self.lambda.update(excess);
        let ms = self.marginal_importance(network)?;
        let importance = self.state.groups.iter().map(|g| ms[g.group]).collect();
        self.coeffs =
            penalty_coefficients(&terms, self.all_sizes.len()).into_iter().zip(ms).map(|(c, m)| c / m).collect();
        *network = self.state.attach(network.clone(), true)?;
        self.log.push(PruneLog {
            step: self.step,
            lambda: self.lambda.lambda,
            counts: self.state.groups.iter().map(|g| g.count()).collect(),
            excess,
            importance,
            peak_memory: usage.peak_memory,
            model_bytes: usage.model_bytes,
            macs: usage.macs,
        });
        Ok(())
    }

    /// The optimizer proposes width changes between pruning steps (task gradient + λ·penalty,
    /// through the straight-through masks, with momentum). A group moves by its proposal, clamped
    /// to `step_size` of its size per pruning step so that a λ spike cannot collapse a layer
    /// before the exact usage is looked at again.
    fn width_step(&mut self) {
        if self.set_widths.len() != self.state.groups.len() {
            return;
        }
        for (g, &w) in self.state.groups.iter_mut().zip(&self.set_widths) {
            let max = self.step_size * g.size as f64;
            g.width = w + (g.width - w).clamp(-max, max);
        }
    }

    /// Importance feedback on the penalty: the loss increase, measured, when each group loses its
    /// next `⌈τ⌉` least salient kept channels (evaluation-mode forward on a fixed probe batch of
    /// training images), per channel, relative to the mean over groups. A group whose marginal
    /// channels matter more is pruned more slowly: its penalty coefficient is divided by this
    /// (clamped to [0.05, 20]). This is what balances layers against each other; salience only
    /// orders channels within a group.
    fn marginal_importance(&mut self, network: &Network) -> Result<Vec<f64>> {
        let mut out = vec![1.0; self.all_sizes.len()];
        if self.probe.1.is_empty() {
            let n = self.data.len();
            let mut rng = SplitMix64::derive(self.seed, 0x9806, 1);
            let idx: Vec<usize> = (0..PROBE.min(n)).map(|_| rng.below(n)).collect();
            let (mut x, mut y) = (Vec::new(), Vec::new());
            self.data.batch(&idx, &mut x, &mut y)?;
            self.probe = (x, y);
        }
        let eval = network.valid();
        let (x, y) = (&self.probe.0, &self.probe.1);
        let base = probe_loss(&eval, x, y)?;
        let mut marg = Vec::new();
        for gi in 0..self.state.groups.len() {
            let gm = &self.state.groups[gi];
            let n = gm.count();
            if n <= 1 {
                marg.push((gm.group, f64::INFINITY));
                continue;
            }
            let k = (gm.temperature.ceil() as usize).clamp(1, n - 1);
            let mut fewer = self.state.clone();
            fewer.groups[gi].width = (n - k) as f64;
            let ablated = fewer.attach(eval.clone(), false)?;
            let l = probe_loss(&ablated, x, y)?;
            marg.push((gm.group, ((l - base) / k as f64).max(0.0)));
        }
        let finite: Vec<f64> = marg.iter().map(|m| m.1).filter(|v| v.is_finite()).collect();
        let mean = (finite.iter().sum::<f64>() / finite.len().max(1) as f64).max(1e-9);
        for (g, v) in marg {
            out[g] = (v / mean).clamp(0.05, 20.0);
        }
        Ok(out)
    }

    fn snapshot(&self) -> HookState {
        HookState {
            state: self.state.clone(),
            lambda: self.lambda,
            coeffs: self.coeffs.clone(),
            step: self.step,
            log: self.log.clone(),
            set_widths: self.set_widths.clone(),
            solved: Some(self.resources.solved_state()),
        }
    }
}

impl TrainHook for PruneHook<'_> {
    fn extra_loss(
        &mut self,
        network: &Network,
        _logits: &Tensor<2>,
        _ctx: &StepContext,
    ) -> mcufit_train::Result<Option<Tensor<1>>> {
        if !self.active || self.coeffs.iter().all(|&c| c == 0.0) {
            return Ok(None);
        }
        let soft =
            self.state.soft_count_tensors(network).map_err(|e| mcufit_train::TrainError::Config(e.to_string()))?;
        let mut total: Option<Tensor<1>> = None;
        for (g, s) in soft {
            let c = self.coeffs[g] * self.lambda.lambda;
            if c == 0.0 {
                continue;
            }
            let term = s.mul_scalar(c);
            total = Some(match total {
                Some(t) => t + term,
                None => term,
            });
        }
        Ok(total)
    }

    fn after_step(&mut self, network: &mut Network, _ctx: &StepContext) -> mcufit_train::Result<()> {
        if !self.active {
            return Ok(());
        }
        self.step += 1;
        if self.step.is_multiple_of(self.prune_every as u64) {
            self.prune_step(network).map_err(|e| mcufit_train::TrainError::Config(format!("pruning step: {e}")))?;
        }
        Ok(())
    }
}

/// Adjusts keep counts to the exact budget: drops the least salient channel of the group that
/// saves the most over-budget resource per unit of salience until everything fits, then gives
/// channels back (most salient first) while the budget allows.
fn project_to_budget(
    state: &mut MaskState,
    model: &CostModel,
    budget: &Budget,
    board: Option<&Board>,
    all: &[usize],
) -> Result<Vec<usize>> {
    let mut counts: Vec<usize> = state.groups.iter().map(|g| g.count()).collect();
    let sizes_of = |counts: &[usize]| -> Vec<f64> {
        let mut s: Vec<f64> = all.iter().map(|&x| x as f64).collect();
        for (gm, &c) in state.groups.iter().zip(counts) {
            s[gm.group] = c as f64;
        }
        s
    };
    // Salience of the channel at a given rank, relative to the group's mean.
    let rel = |gi: usize, rank: usize| -> f64 {
        let gm = &state.groups[gi];
        let mean = gm.salience.iter().map(|&x| x as f64).sum::<f64>() / gm.size.max(1) as f64;
        let ch = gm.rank.iter().position(|&r| r == rank).unwrap_or(0);
        gm.salience[ch] as f64 / mean.max(1e-12)
    };
    loop {
        let s = sizes_of(&counts);
        let usage = model.usage(&s, board);
        let over = over_budget(&usage, budget);
        if over.is_empty() {
            break;
        }
        let mut best: Option<(f64, usize)> = None;
        let now = overflow(&usage, budget);
        for gi in 0..counts.len() {
            if counts[gi] <= 1 {
                continue;
            }
            let mut s2 = s.clone();
            s2[state.groups[gi].group] -= 1.0;
            let saved = now - overflow(&model.usage(&s2, board), budget);
            if saved <= 0.0 {
                continue;
            }
            let score = saved / (rel(gi, counts[gi] - 1) + 1e-6);
            if best.is_none_or(|(b, _)| score > b) {
                best = Some((score, gi));
            }
        }
        let Some((_, gi)) = best else {
            let least = model.usage(&minimal_sizes(model), board);
            return Err(PruneError::BudgetNotMet(
                over.into_iter()
                    .map(|(r, v, l)| Shortfall { resource: r, limit: l, best: v, minimum: least.get(r).unwrap_or(v) })
                    .collect(),
            ));
        };
        counts[gi] -= 1;
    }
    // Grow back into any slack, most salient next channel first.
    loop {
        let s = sizes_of(&counts);
        let mut best: Option<(f64, usize)> = None;
        for gi in 0..counts.len() {
            if counts[gi] >= state.groups[gi].size {
                continue;
            }
            let mut s2 = s.clone();
            s2[state.groups[gi].group] += 1.0;
            if !over_budget(&model.usage(&s2, board), budget).is_empty() {
                continue;
            }
            let score = rel(gi, counts[gi]);
            if best.is_none_or(|(b, _)| score > b) {
                best = Some((score, gi));
            }
        }
        match best {
            Some((_, gi)) => counts[gi] += 1,
            None => break,
        }
    }
    for (gm, &c) in state.groups.iter_mut().zip(&counts) {
        gm.width = c as f64; // r + ½ < c keeps exactly c channels
    }
    Ok(counts)
}

fn layer_channels(before: &Graph, after: &Graph) -> Vec<LayerChannels> {
    let (sb, sa) = (before.shapes().unwrap_or_default(), after.shapes().unwrap_or_default());
    before
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| matches!(n.op, Op::Conv2d(_) | Op::DepthwiseConv2d(_) | Op::Dense(_)))
        .filter_map(|(i, n)| {
            Some(LayerChannels {
                layer: n.name.clone(),
                kind: n.op.kind().to_string(),
                before: sb.get(i)?.c,
                after: sa.get(i)?.c,
            })
        })
        .collect()
}

fn acc(network: &Network, splits: &mcufit_data::Splits) -> Result<Accuracy> {
    Ok(Accuracy {
        val: evaluate(network, &splits.val, 256)?.accuracy,
        test: evaluate(network, &splits.test, 256)?.accuracy,
    })
}

/// Compresses `graph` to fit `config.budget`, training on `splits`. Fails before any training
/// when the budget is below what the architecture can reach ([`PruneError::Infeasible`]), and
/// after pruning when the exact cost model disagrees ([`PruneError::BudgetNotMet`]).
pub fn compress(graph: &Graph, splits: &mcufit_data::Splits, config: &CompressConfig) -> Result<CompressReport> {
    let t_all = Instant::now();
    config.check()?;
    let (warm, prune, ft) = config.phases()?;
    let board = config.board.as_ref();
    let model = CostModel::new(graph, config.cost_options)?;
    check_feasible(&model, &config.budget, board)?;
    let start = model.usage(&model.sizes(), board);
    let least = model.usage(&minimal_sizes(&model), board);
    let device = default_device();
    let ckpt = config.out_dir.as_ref().map(|o| o.join("checkpoints"));
    if let Some(o) = &config.out_dir {
        std::fs::create_dir_all(o).map_err(|e| PruneError::io(o, e))?;
    }

    let mut times = PhaseTimes::default();
    let t_eval = Instant::now();
    let base = match &config.from {
        Some(dir) => {
            let n = Network::load(dir, &device)?;
            if n.graph() != graph {
                return Err(PruneError::Config(format!(
                    "{} holds a different architecture than the model given",
                    dir.display()
                )));
            }
            n
        }
        None => Network::new(graph, &device, config.train.seed)?,
    };
    let accuracy_before = if config.from.is_some() { Some(acc(&base, splits)?) } else { None };
    let teacher = (config.from.is_some() && config.distill > 0.0).then(|| base.clone());
    times.eval += t_eval.elapsed().as_secs_f64();

    // ---- phase A: warm-up + pruning, one trainer so the LR schedule and momentum run through.
    let mut cfg_a = config.train.clone();
    cfg_a.epochs = warm + prune;
    cfg_a.out_dir = None;
    cfg_a.resume = false;
    // Keep a learning rate through the end of pruning (masks still move); fine-tuning decays it.
    if let LrSchedule::Cosine { warmup_epochs, .. } = cfg_a.schedule {
        cfg_a.schedule = LrSchedule::Cosine { warmup_epochs, min_ratio: 0.2 };
    }
    let prune_dir = ckpt.as_ref().map(|c| c.join("prune"));
    if config.resume {
        for d in [&prune_dir, &ft_dir_early(&ckpt)].into_iter().flatten() {
            mcufit_train::recover_checkpoint(d.join("last"))?;
        }
    }
    let resume_a = config.resume && prune_dir.as_ref().is_some_and(|d| d.join("last").join("hook.json").exists());
    let mut trainer = if resume_a {
        Trainer::resume(prune_dir.as_ref().unwrap().join("last"), cfg_a.clone(), &device)?
    } else {
        Trainer::new(base, cfg_a.clone())?
    };
    let spe = {
        let n = splits.train.len();
        let bs = cfg_a.batch_size;
        let s = if n <= bs { 1 } else { n / bs };
        cfg_a.max_steps_per_epoch.map_or(s, |m| s.min(m.max(1))) as u64
    };
    let all_sizes = model.groups.sizes();
    let mut state = MaskState::new(trainer.network()?);
    for gm in &mut state.groups {
        gm.ste_scale = config.ste_scale;
    }
    let mut hook = PruneHook {
        state,
        resources: ResourceModel::new(graph, config.cost_options, config.board.clone())?,
        budget: config.budget,
        start: start.clone(),
        lambda: LambdaSchedule::default(),
        coeffs: vec![0.0; all_sizes.len()],
        salience: config.salience,
        prune_every: config.prune_every.unwrap_or((spe as usize / 8).clamp(1, 40)),
        step: 0,
        total: spe * prune as u64,
        anneal_fraction: config.anneal_fraction,
        margin: config.margin,
        all_sizes: all_sizes.clone(),
        active: false,
        data: &splits.train,
        batch_size: cfg_a.batch_size,
        seed: cfg_a.seed,
        log: Vec::new(),
        set_widths: Vec::new(),
        probe: (Vec::new(), Vec::new()),
        step_size: 0.05,
    };
    if resume_a {
        let p = prune_dir.as_ref().unwrap().join("last").join("hook.json");
        let text = std::fs::read_to_string(&p).map_err(|e| PruneError::io(&p, e))?;
        let hs: HookState =
            serde_json::from_str(&text).map_err(|e| PruneError::Config(format!("{}: {e}", p.display())))?;
        hook.state = hs.state;
        hook.lambda = hs.lambda;
        hook.coeffs = hs.coeffs;
        hook.step = hs.step;
        hook.log = hs.log;
        hook.set_widths = hs.set_widths;
        if let Some((order_for, resolves)) = hs.solved {
            hook.resources.restore_solved(order_for, resolves);
        }
    }
    let mut resumed_at_epoch = resume_a.then_some(trainer.state.epoch);
    if let (Some(e), true) = (resumed_at_epoch, config.train.progress) {
        eprintln!("compress: resuming the pruning phase after epoch {e} of {}", config.train.epochs);
    }
    let mut masks_on = false;
    let ft_dir = ckpt.as_ref().map(|c| c.join("finetune"));
    let resume_b = config.resume && ft_dir.as_ref().is_some_and(|d| d.join("last").join("state.json").exists());
    let t_a = Instant::now();
    while !resume_b && trainer.state.epoch < warm + prune {
        let epoch = trainer.state.epoch;
        if epoch >= warm && !masks_on {
            let net = trainer.network_mut()?;
            *net = hook.state.attach(net.clone(), true)?;
            hook.active = true;
            masks_on = true;
            if hook.step == 0 {
                hook.prune_step(trainer.network_mut()?)?;
            }
        }
        let t = Instant::now();
        let mut stats = trainer.train_epoch(&splits.train, &mut hook)?;
        let val = evaluate(trainer.network()?, &splits.val, 256)?;
        stats.val_loss = Some(val.loss);
        stats.val_accuracy = Some(val.accuracy);
        // Kept in the checkpoint's state, so the history survives a resume.
        trainer.state.history.push(stats.clone());
        if epoch < warm {
            times.warmup += t.elapsed().as_secs_f64();
        } else {
            times.prune += t.elapsed().as_secs_f64();
        }
        if config.train.progress {
            let counts: Vec<usize> = hook.state.groups.iter().map(|g| g.count()).collect();
            eprintln!(
                "compress epoch {}/{} ({}): loss {:.4} acc {:.2}% val {:.2}% λ {:.3} channels {:?}",
                epoch + 1,
                config.train.epochs,
                if epoch < warm { "warm-up" } else { "pruning" },
                stats.train_loss,
                100.0 * stats.train_accuracy,
                100.0 * val.accuracy,
                hook.lambda.lambda,
                counts
            );
        }
        if let Some(d) = &prune_dir {
            let text = serde_json::to_string(&hook.snapshot()).map_err(|e| PruneError::Config(e.to_string()))?;
            trainer.save_checkpoint_with(d.join("last"), &[("hook.json", text)])?;
        }
    }
    let _ = t_a;

    // ---- freeze: exact projection onto the budget, then physical removal.
    // Phase A's epochs (from the checkpoint on resume); phase B's are appended below.
    let mut history: Vec<EpochStats>;
    let (small, removal) = if resume_b {
        resumed_at_epoch = Some(warm + prune);
        if config.train.progress {
            eprintln!("compress: resuming with the pruned model (fine-tune checkpoint found)");
        }
        let d = ckpt.as_ref().unwrap().join("pruned");
        mcufit_train::recover_dir(&d)?;
        let rep = d.join("removal.json");
        let text = std::fs::read_to_string(&rep).map_err(|e| PruneError::io(&rep, e))?;
        let (removal, log, lambda, hist): (RemovalReport, Vec<PruneLog>, LambdaSchedule, Option<Vec<EpochStats>>) =
            serde_json::from_str(&text).map_err(|e| PruneError::Config(e.to_string()))?;
        hook.log = log;
        hook.lambda = lambda;
        history = hist.unwrap_or_default();
        (Network::load(&d, &device)?, removal)
    } else {
        history = trainer.state.history.clone();
        let net = trainer.into_network()?;
        if masks_on {
            hook.state.read_widths(&net)?;
        }
        hook.state.clamp_widths();
        project_to_budget(&mut hook.state, &model, &config.budget, board, &all_sizes)?;
        let keep = hook.state.keep_sets(&all_sizes);
        let (small, removal) = prune_network(&net, &keep)?;
        if let Some(c) = &ckpt {
            let text = serde_json::to_string(&(&removal, &hook.log, &hook.lambda, Some(&history)))
                .map_err(|e| PruneError::Config(e.to_string()))?;
            // Model, weights and removal record as one unit: a kill leaves all of them or none.
            mcufit_train::replace_dir(&c.join("pruned"), |d| {
                small.save(d)?;
                let p = d.join("removal.json");
                std::fs::write(&p, &text).map_err(|e| mcufit_train::TrainError::io(&p, e))
            })?;
        }
        (small, removal)
    };

    // ---- phase B: fine-tune the smaller dense network.
    let t_b = Instant::now();
    let mut cfg_b = config.train.clone();
    cfg_b.epochs = ft;
    cfg_b.lr = config.train.lr * 0.5;
    cfg_b.schedule = LrSchedule::Cosine { warmup_epochs: 0, min_ratio: 0.0 };
    cfg_b.out_dir = ft_dir.as_ref().map(|d| d.display().to_string());
    cfg_b.resume = resume_b;
    let small_graph = small.graph().clone();
    let tsplits = mcufit_train::Splits { train: &splits.train, val: Some(&splits.val) };
    let mut ft_hook: Box<dyn TrainHook> = match teacher {
        Some(t) => Box::new(Distill::new(t, config.distill, config.distill_temperature)?),
        None => Box::new(NoHook),
    };
    let tuned = if resume_b {
        train_with_hook(&small_graph, &tsplits, &cfg_b, ft_hook.as_mut())?
    } else {
        train_network(small, &tsplits, &cfg_b, ft_hook.as_mut())?
    };
    times.finetune = t_b.elapsed().as_secs_f64();
    let network = tuned.network;
    history.extend(tuned.summary.history.iter().cloned().map(|mut e| {
        e.epoch += warm + prune;
        e
    }));

    // ---- the exact cost model has the last word.
    let small_model = CostModel::new(&small_graph, config.cost_options)?;
    let after = small_model.usage(&small_model.sizes(), board);
    let over = over_budget(&after, &config.budget);
    if !over.is_empty() {
        return Err(PruneError::BudgetNotMet(
            over.into_iter()
                .map(|(r, v, l)| Shortfall { resource: r, limit: l, best: v, minimum: least.get(r).unwrap_or(v) })
                .collect(),
        ));
    }
    let t_eval = Instant::now();
    let accuracy_after = acc(&network, splits)?;
    times.eval += t_eval.elapsed().as_secs_f64();
    times.total = t_all.elapsed().as_secs_f64();

    let report = CompressReport {
        model: graph.name.clone(),
        budget: config.budget,
        board: config.board.as_ref().map(|b| b.name.clone()),
        salience: config.salience,
        epochs: (warm, prune, ft),
        accuracy_before,
        accuracy_after,
        resources: resource_table(&start, &after, &least, &config.budget),
        channels: layer_channels(graph, &small_graph),
        group_sizes_before: all_sizes,
        group_sizes_after: small_model.groups.sizes(),
        lambda_final: hook.lambda.lambda,
        pruning_steps: hook.log.len(),
        order_resolves: hook.resources.resolves,
        removal,
        times,
        log: hook.log,
        history,
        steps_per_epoch: spe,
        out_dir: config.out_dir.clone(),
        resumed_at_epoch,
        network: Some(network),
    };
    // The caller writes the model directory (`mcufit-pipeline`'s `ModelDir`, its one writer).
    Ok(report)
}

/// A resource's figure in its unit for the text tables (`-` when absent); depth's cut table uses it too.
pub(crate) fn fmt_res(r: Resource, v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if r == Resource::Latency => format!("{v:.2} ms"),
        Some(v) if r == Resource::Macs => format!("{:.3} M", v / 1e6),
        Some(v) => format!("{v:.0} B"),
    }
}

/// Human-readable summary (`summary.txt`).
pub fn summary(r: &CompressReport) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "mcufit compress: {}{}\n\n",
        r.model,
        r.board.as_ref().map(|b| format!(" for {b}")).unwrap_or_default()
    ));
    s.push_str(&format!(
        "{:<12} {:>14} {:>14} {:>14} {:>14}  fits\n",
        "resource", "before", "after", "budget", "minimum"
    ));
    for f in &r.resources {
        s.push_str(&format!(
            "{:<12} {:>14} {:>14} {:>14} {:>14}  {}\n",
            f.resource.name(),
            fmt_res(f.resource, f.before),
            fmt_res(f.resource, f.after),
            fmt_res(f.resource, f.limit),
            fmt_res(f.resource, f.minimum),
            if f.limit.is_none() {
                "-"
            } else if f.fits {
                "yes"
            } else {
                "NO"
            }
        ));
    }
    s.push('\n');
    match r.accuracy_before {
        Some(a) => s.push_str(&format!("accuracy before: val {:.2}%  test {:.2}%\n", 100.0 * a.val, 100.0 * a.test)),
        None => s.push_str("accuracy before: - (trained from scratch)\n"),
    }
    s.push_str(&format!(
        "accuracy after:  val {:.2}%  test {:.2}%\n\n",
        100.0 * r.accuracy_after.val,
        100.0 * r.accuracy_after.test
    ));
    s.push_str(&format!("{:<22} {:<18} {:>7} {:>7}\n", "layer", "kind", "before", "after"));
    for l in &r.channels {
        s.push_str(&format!("{:<22} {:<18} {:>7} {:>7}\n", l.layer, l.kind, l.before, l.after));
    }
    s.push_str(&format!(
        "\nepochs: {} warm-up, {} pruning, {} fine-tune; {} pruning steps, final λ {:.3}, memory order re-solved {} times\n",
        r.epochs.0, r.epochs.1, r.epochs.2, r.pruning_steps, r.lambda_final, r.order_resolves
    ));
    s.push_str(&format!(
        "wall time: {:.1} s (warm-up {:.1}, pruning {:.1}, fine-tune {:.1}, evaluation {:.1})\n",
        r.times.total, r.times.warmup, r.times.prune, r.times.finetune, r.times.eval
    ));
    s
}

/// The fine-tune checkpoint directory (`CKPT/finetune`).
fn ft_dir_early(ckpt: &Option<PathBuf>) -> Option<PathBuf> {
    ckpt.as_ref().map(|c| c.join("finetune"))
}
