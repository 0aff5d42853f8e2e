//! Depth pruning with auxiliary heads: cut a trained network at one of its cut points
//! ([`mcufit_ir::cut_points`]) and put a small classifier head on the trunk
//! ([`mcufit_ir::truncate_with_head`]). The result is an ordinary IR graph, so the exact cost
//! model prices it and width pruning ([`crate::compress`]), int8 and export take it as it is.
//!
//! 1. [`CutTable::new`]: for every cut, the exact resources of trunk + head (params, model bytes,
//!    MACs, memory-optimal peak, latency with a board) at full width and with every prunable
//!    group at one channel (the least width pruning can reach), and whether it fits the budget.
//! 2. [`CutTable::check_feasible`]: a budget that no cut meets (with width pruning, if allowed)
//!    fails here, before any training, with the smallest figure any cut can reach.
//! 3. [`train_heads`]: every cut's head is trained with the trunk frozen: the trunk runs in
//!    evaluation mode (batch norm on its running statistics, no gradient) and feeds each head its
//!    cut tensor; only head parameters are optimised. One trunk pass per batch feeds all heads.
//!    The trained head and the base's trunk weights, unchanged, make the truncated network.
//! 4. [`CutTable::choose`]: the cut with the best **validation** accuracy among those that fit.
//! 5. Optionally ([`DepthConfig::finetune_epochs`]) the chosen network is fine-tuned whole, trunk
//!    unfrozen.
//!
//! [`depth_prune`] runs all of it.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use mcufit_cost::{Board, Budget, CostModel, CostOptions, Resource, Usage};
use mcufit_ir::{cut_points, head_graph, truncate_with_head, Cut, Graph, HeadSpec, NodeId, Weights};
use mcufit_train::burn::module::Module;
use mcufit_train::{
    default_device, evaluate, log_softmax_at, train_network, train_with_hook, BatchSource, EpochStats, EvalReport,
    Evaluator, LrSchedule, Network, NoHook, SplitMix64, TrainConfig, Trainer,
};
use serde::{Deserialize, Serialize};

use crate::budget::minimal_sizes;
use crate::compress::{fmt_res, Accuracy};
use crate::error::{PruneError, Result, Shortfall};

// ---- the cut table -----------------------------------------------------------------------------

/// Exact resources of one network (`mcufit-cost`'s figures): parameters (count), model bytes
/// (int8 weights + int32 biases, + requantisation data with `CostOptions::quant_params`), MACs per
/// inference, memory-optimal peak of int8 activations (bytes), latency (ms, with a board).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CutCost {
    pub params: f64,
    pub model_bytes: f64,
    pub macs: f64,
    pub peak_memory: f64,
    pub latency_ms: Option<f64>,
}

impl CutCost {
    fn of(u: &Usage) -> Self {
        CutCost {
            params: u.params,
            model_bytes: u.model_bytes,
            macs: u.macs,
            peak_memory: u.peak_memory,
            latency_ms: u.latency_ms,
        }
    }

    /// The figure a budget bounds for resource `r` (`None`: latency without a board).
    pub fn get(&self, r: Resource) -> Option<f64> {
        match r {
            Resource::PeakMemory => Some(self.peak_memory),
            Resource::ModelBytes => Some(self.model_bytes),
            Resource::Macs => Some(self.macs),
            Resource::Latency => self.latency_ms,
        }
    }

    /// Whether every bounded resource is within `budget` (an unbounded budget always fits).
    pub fn fits(&self, budget: &Budget) -> bool {
        Resource::ALL.iter().all(|&r| match (budget.limit(r), self.get(r)) {
            (Some(l), Some(v)) => v <= l,
            _ => true,
        })
    }
}

/// Whether a cut's network meets the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CutFit {
    /// At full width.
    Fits,
    /// Only after width pruning (it fits with every prunable group at one channel).
    WithWidth,
    /// Not even with every prunable group at one channel.
    No,
}

impl CutFit {
    /// Whether the cut is a candidate: it fits, or `width` pruning is allowed and can make it fit.
    pub fn reachable(self, width: bool) -> bool {
        match self {
            CutFit::Fits => true,
            CutFit::WithWidth => width,
            CutFit::No => false,
        }
    }
}

/// One row of the [`CutTable`]: one cut with the head on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CutRow {
    pub cut: Cut,
    /// Name of the truncated graph (`"{model}@{cut}+{head}"`).
    pub graph: String,
    /// Resources of trunk + head at full width.
    pub cost: CutCost,
    /// Resources with every prunable group at one channel: the least width pruning can reach.
    pub minimum: CutCost,
    pub fit: CutFit,
    /// Accuracy (0..=1) of trunk + trained head on the validation split; `None` until trained.
    pub val_accuracy: Option<f64>,
    /// Accuracy (0..=1) on the test split; `None` until trained.
    pub test_accuracy: Option<f64>,
    /// The cut [`CutTable::choose`] kept.
    pub chosen: bool,
}

/// Every cut of a model with one head, priced by the exact cost model against a budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CutTable {
    pub model: String,
    pub head: HeadSpec,
    pub num_classes: usize,
    pub budget: Budget,
    pub board: Option<String>,
    /// Resources of the model as given (no cut).
    pub base: CutCost,
    /// One row per cut, in network order (`rows[i].cut.block == i`).
    pub rows: Vec<CutRow>,
}

/// Positive finite limits, and a board for a latency limit. Unlike width pruning, an empty
/// budget is allowed (every cut fits; the table then only compares accuracy and cost).
fn check_limits(budget: &Budget, board: Option<&Board>) -> Result<()> {
    for r in Resource::ALL {
        if let Some(l) = budget.limit(r) {
            if !(l.is_finite() && l > 0.0) {
                return Err(PruneError::Config(format!("the {} limit must be positive, got {l}", r.name())));
            }
        }
    }
    if budget.latency_ms.is_some() && board.is_none() {
        return Err(PruneError::Config("a latency limit needs a board".into()));
    }
    Ok(())
}

impl CutTable {
    /// Prices `head` (with `num_classes` outputs) on every cut of `graph`. Fails when the
    /// budget is malformed, the head cannot be built, or `graph` has no cut point.
    pub fn new(
        graph: &Graph,
        head: &HeadSpec,
        num_classes: usize,
        budget: &Budget,
        board: Option<&Board>,
        options: CostOptions,
    ) -> Result<CutTable> {
        check_limits(budget, board)?;
        let cuts = cut_points(graph)?;
        if cuts.is_empty() {
            return Err(PruneError::Config(format!(
                "'{}' has no cut point (a tensor every path passes through, after a conv and before the \
                 classifier), so it cannot be depth-pruned",
                graph.name
            )));
        }
        let base_model = CostModel::new(graph, options)?;
        let base = CutCost::of(&base_model.usage(&base_model.sizes(), board));
        let mut rows = Vec::with_capacity(cuts.len());
        for cut in cuts {
            let g = truncate_with_head(graph, &cut, head, num_classes)?;
            let m = CostModel::new(&g, options)?;
            let cost = CutCost::of(&m.usage(&m.sizes(), board));
            let minimum = CutCost::of(&m.usage(&minimal_sizes(&m), board));
            let fit = if cost.fits(budget) {
                CutFit::Fits
            } else if minimum.fits(budget) {
                CutFit::WithWidth
            } else {
                CutFit::No
            };
            rows.push(CutRow {
                cut,
                graph: g.name.clone(),
                cost,
                minimum,
                fit,
                val_accuracy: None,
                test_accuracy: None,
                chosen: false,
            });
        }
        Ok(CutTable {
            model: graph.name.clone(),
            head: head.clone(),
            num_classes,
            budget: *budget,
            board: board.map(|b| b.name.clone()),
            base,
            rows,
        })
    }

    /// Indices of the rows that fit (with `width`: also those width pruning can make fit).
    pub fn candidates(&self, width: bool) -> Vec<usize> {
        (0..self.rows.len()).filter(|&i| self.rows[i].fit.reachable(width)).collect()
    }

    /// Before any training: at least one cut must fit (with `width`, at least one must fit with
    /// every prunable group at one channel). Otherwise [`PruneError::Infeasible`] names, for each
    /// resource that no cut can bring under its limit, the limit, the smallest figure of any cut at
    /// full width (`best`) and the smallest any cut can reach (`minimum`; with `width`, at one
    /// channel per group). When every resource alone is reachable but no single cut meets them all,
    /// a [`PruneError::Config`] says which cut reaches which minimum. Returns the candidates.
    pub fn check_feasible(&self, width: bool) -> Result<Vec<usize>> {
        let c = self.candidates(width);
        if !c.is_empty() {
            return Ok(c);
        }
        let reach = |row: &CutRow| if width { row.minimum } else { row.cost };
        let mut short = Vec::new();
        let mut parts = Vec::new();
        for r in Resource::ALL {
            let Some(limit) = self.budget.limit(r) else { continue };
            let least = |f: &dyn Fn(&CutRow) -> CutCost| {
                self.rows
                    .iter()
                    .filter_map(|row| Some((f(row).get(r)?, row.cut.name.as_str())))
                    .fold((f64::INFINITY, ""), |a, b| if b.0 < a.0 { b } else { a })
            };
            let (best, _) = least(&|row: &CutRow| row.cost);
            let (minimum, at) = least(&reach);
            if minimum > limit {
                short.push(Shortfall { resource: r, limit, best, minimum });
            }
            parts.push(format!("{} {:.0} {} at '{at}' (limit {limit:.0})", r.name(), minimum, r.unit()));
        }
        if !short.is_empty() {
            return Err(PruneError::Infeasible(short));
        }
        Err(PruneError::Config(format!(
            "no cut of '{}' with a {} head meets every limit at once{}: the smallest figures are {}, \
             but at different cuts",
            self.model,
            self.head,
            if width { " even with width pruning" } else { "" },
            parts.join(", ")
        )))
    }

    /// Marks and returns the row with the best validation accuracy among the candidates (rows
    /// that fit; with `width`, also those width pruning can make fit). Ties go to the shallower
    /// (cheaper) cut. `None` when no candidate has a validation accuracy.
    pub fn choose(&mut self, width: bool) -> Option<usize> {
        let mut best: Option<(f64, usize)> = None;
        for (i, row) in self.rows.iter_mut().enumerate() {
            row.chosen = false;
            let (Some(a), true) = (row.val_accuracy, row.fit.reachable(width)) else { continue };
            if best.is_none_or(|(b, _)| a > b) {
                best = Some((a, i));
            }
        }
        let i = best?.1;
        self.rows[i].chosen = true;
        Some(i)
    }

    /// The table for people: one line per cut, the chosen one marked `◀`.
    pub fn summary(&self) -> String {
        let with_latency = self.rows.iter().any(|r| r.cost.latency_ms.is_some());
        let mut s = format!(
            "depth pruning: {} with a {} head ({} classes){}\n",
            self.model,
            self.head,
            self.num_classes,
            self.board.as_ref().map(|b| format!(" on {b}")).unwrap_or_default()
        );
        let limits: Vec<String> = Resource::ALL
            .iter()
            .filter_map(|&r| Some(format!("{} {}", r.name(), fmt_res(r, Some(self.budget.limit(r)?)))))
            .collect();
        s.push_str(&format!("budget: {}\n\n", if limits.is_empty() { "none".into() } else { limits.join(", ") }));
        s.push_str(&format!(
            "{:>3}  {:<18} {:>10} {:>8} {:>10} {:>10} {:>10}{}  {:>7} {:>7}  fits\n",
            "#",
            "cut",
            "shape",
            "params",
            "model",
            "MACs",
            "peak",
            if with_latency { format!(" {:>10}", "latency") } else { String::new() },
            "val",
            "test"
        ));
        let pct = |a: Option<f64>| a.map(|a| format!("{:.2}%", 100.0 * a)).unwrap_or_else(|| "-".into());
        for row in &self.rows {
            let c = &row.cost;
            s.push_str(&format!(
                "{:>3}  {:<18} {:>10} {:>8.0} {:>10} {:>10} {:>10}{}  {:>7} {:>7}  {}{}\n",
                row.cut.block,
                row.cut.name,
                row.cut.shape.to_string(),
                c.params,
                fmt_res(Resource::ModelBytes, Some(c.model_bytes)),
                fmt_res(Resource::Macs, Some(c.macs)),
                fmt_res(Resource::PeakMemory, Some(c.peak_memory)),
                if with_latency { format!(" {:>10}", fmt_res(Resource::Latency, c.latency_ms)) } else { String::new() },
                pct(row.val_accuracy),
                pct(row.test_accuracy),
                match row.fit {
                    CutFit::Fits => "yes",
                    CutFit::WithWidth => "with width pruning",
                    CutFit::No => "no",
                },
                if row.chosen { "  ◀ chosen" } else { "" }
            ));
        }
        s
    }
}

// ---- frozen trunk → cut features ---------------------------------------------------------------

/// The weights of `graph` (a truncated network whose trunk is `base`'s nodes `0..=trunk_end`):
/// trunk nodes from `base` (masks folded in), every later node from `head` by name.
fn assemble_weights(graph: &Graph, trunk_end: NodeId, base: &Network, head: &Weights) -> Result<Weights> {
    let bw = base.export_weights()?;
    let mut w = Weights::default();
    for (i, node) in graph.nodes.iter().enumerate() {
        let src = if i <= trunk_end { &bw } else { head };
        if let Some(nw) = src.nodes.get(&node.name) {
            w.nodes.insert(node.name.clone(), nw.clone());
        }
    }
    Ok(w)
}

/// The truncated network of `cut` with `base`'s trunk weights (unchanged) and `head`'s weights
/// (a network on [`head_graph`] of the same cut and head spec), in evaluation mode.
pub fn assemble(base: &Network, cut: &Cut, spec: &HeadSpec, head: &Network) -> Result<Network> {
    let k = head.num_classes();
    let g = truncate_with_head(base.graph(), cut, spec, k)?;
    let w = assemble_weights(&g, cut.node, base, &head.to_weights()?)?;
    Ok(Network::from_weights(&g, &w, &base.device())?.valid())
}

/// A frozen trunk: the base network's nodes up to the deepest of some cuts, in evaluation mode
/// (on the CPU engine where it applies), computing the cut tensors.
struct Trunk {
    /// Behind a lock because [`BatchSource`] reads batches through `&self`.
    eval: Mutex<Evaluator>,
    nodes: Vec<NodeId>,
}

impl Trunk {
    /// The trunk up to the deepest of `cuts` (a `gap` head closes it into a valid network; its
    /// output is never used).
    fn new(base: &Network, cuts: &[&Cut]) -> Result<Trunk> {
        let deepest = cuts.iter().max_by_key(|c| c.node).ok_or_else(|| PruneError::Config("no cut".into()))?;
        let g = truncate_with_head(base.graph(), deepest, &HeadSpec::Gap, base.num_classes())?;
        let filler = Network::new(&g, &base.device(), 0)?.to_weights()?;
        let w = assemble_weights(&g, deepest.node, base, &filler)?;
        let network = Network::from_weights(&g, &w, &base.device())?;
        Ok(Trunk { eval: Mutex::new(Evaluator::new(&network)?), nodes: cuts.iter().map(|c| c.node).collect() })
    }

    /// Runs a host NHWC batch through the trunk and hands `use_cuts` the evaluator, whose
    /// [`Evaluator::output`] of each cut node (in `self.nodes`) is that cut's NHWC tensor.
    fn with_features<T>(
        &self,
        images: &[f32],
        n: usize,
        use_cuts: impl FnOnce(&Evaluator, &[NodeId]) -> Result<T>,
    ) -> Result<T> {
        let mut eval = self.eval.lock().map_err(|_| PruneError::Config("trunk evaluator poisoned".into()))?;
        eval.forward(images, n, &self.nodes)?;
        use_cuts(&eval, &self.nodes)
    }
}

/// A data set seen through a frozen trunk: each example is the cut tensor of the underlying
/// image (augmented as the underlying source augments), so a head trains as an ordinary network
/// on it. The trunk is never updated.
pub struct CutFeatures<'a> {
    trunk: Trunk,
    data: &'a dyn BatchSource,
    shape: [usize; 3],
}

impl<'a> CutFeatures<'a> {
    /// The features of `cut` of `base` over `data` (images of `base`'s input shape).
    pub fn new(base: &Network, cut: &Cut, data: &'a dyn BatchSource) -> Result<Self> {
        Ok(CutFeatures { trunk: Trunk::new(base, &[cut])?, data, shape: [cut.shape.h, cut.shape.w, cut.shape.c] })
    }

    fn fill(&self, raw: &[f32], n: usize, images: &mut Vec<f32>) -> mcufit_train::Result<()> {
        let err = |e: PruneError| mcufit_train::TrainError::Data(format!("trunk features: {e}"));
        self.trunk
            .with_features(raw, n, |eval, nodes| {
                images.clear();
                images.extend_from_slice(eval.output(nodes[0])?);
                Ok(())
            })
            .map_err(err)
    }
}

impl BatchSource for CutFeatures<'_> {
    fn len(&self) -> usize {
        self.data.len()
    }
    fn shape(&self) -> [usize; 3] {
        self.shape
    }
    fn num_classes(&self) -> usize {
        self.data.num_classes()
    }
    fn batch(&self, indices: &[usize], images: &mut Vec<f32>, labels: &mut Vec<u32>) -> mcufit_train::Result<()> {
        let mut raw = Vec::new();
        self.data.batch(indices, &mut raw, labels)?;
        self.fill(&raw, labels.len(), images)
    }
    fn batch_augmented(
        &self,
        indices: &[usize],
        seed: u64,
        images: &mut Vec<f32>,
        labels: &mut Vec<u32>,
    ) -> mcufit_train::Result<()> {
        let mut raw = Vec::new();
        self.data.batch_augmented(indices, seed, &mut raw, labels)?;
        self.fill(&raw, labels.len(), images)
    }
}

// ---- training the heads ------------------------------------------------------------------------

/// One head trained on a frozen trunk.
#[derive(Debug)]
pub struct TrainedHead {
    pub cut: Cut,
    /// Trunk + head as one network (the truncated graph), evaluation mode: the trunk's weights
    /// are the base's, unchanged; the head's are its best epoch's (validation accuracy, else
    /// training accuracy).
    pub network: Network,
    /// The head's training epochs (loss and accuracy on the cut features = of the whole network).
    pub history: Vec<EpochStats>,
    pub best_epoch: Option<usize>,
    /// Validation accuracy (0..=1) of `network`, when a validation split was given.
    pub val_accuracy: Option<f64>,
}

/// Checks that `cuts` belong to `base` and that `data` matches its input and classes.
fn check_inputs(base: &Network, cuts: &[Cut], data: &mcufit_train::Splits) -> Result<()> {
    for cut in cuts {
        mcufit_ir::check_cut(base.graph(), cut)?;
    }
    let s = base.input_shape();
    for (what, d) in std::iter::once(("training", data.train)).chain(data.val.map(|v| ("validation", v))) {
        if d.shape() != [s.h, s.w, s.c] || d.num_classes() != base.num_classes() {
            return Err(PruneError::Data(format!(
                "{what} data is {:?} with {} classes; the network takes {s} and has {} classes",
                d.shape(),
                d.num_classes(),
                base.num_classes()
            )));
        }
        if d.is_empty() {
            return Err(PruneError::Data(format!("{what} data is empty")));
        }
    }
    Ok(())
}

fn head_dir(config: &TrainConfig, cut: &Cut) -> Option<PathBuf> {
    config.out_dir.as_ref().map(|d| PathBuf::from(d).join("heads").join(format!("{:02}-{}", cut.block, cut.name)))
}

/// Trains `head` at each of `cuts` of the trained `base` with the trunk frozen (see the module
/// docs), **one trunk forward pass per batch feeding every head**: each batch of `data.train`
/// (augmented as the trainer would) goes through the trunk once, in evaluation mode, and each
/// head takes one optimiser step on its cut tensor; validation likewise. So training N heads costs
/// about one trunk pass plus N (small) head passes per batch, not N training runs.
///
/// Each head is an ordinary network on [`head_graph`] (outputs `base.num_classes()` classes) with
/// its own [`mcufit_train::Trainer`] and `config` (epochs, batch, LR schedule, optimizer, weight
/// decay, seed, augmentation, `max_steps_per_epoch`); batches, augmentation seeds and the best-
/// epoch choice (validation accuracy, else training accuracy) are the trainer's own, so each head
/// ends exactly as [`train_heads_separately`] would train it. With `config.out_dir = Some(D)`,
/// head `i` writes `D/heads/{block:02}-{cut}/{last,best}` every epoch, and `config.resume`
/// continues from them (when every head has a `last` checkpoint of the same epoch).
pub fn train_heads(
    base: &Network,
    cuts: &[Cut],
    head: &HeadSpec,
    data: &mcufit_train::Splits,
    config: &TrainConfig,
) -> Result<Vec<TrainedHead>> {
    config.validate()?;
    if cuts.is_empty() {
        return Ok(Vec::new());
    }
    let base = base.valid();
    check_inputs(&base, cuts, data)?;
    let k = base.num_classes();
    let trunk = Trunk::new(&base, &cuts.iter().collect::<Vec<_>>())?;
    let device = default_device();
    let dirs: Vec<Option<PathBuf>> = cuts.iter().map(|c| head_dir(config, c)).collect();
    let resume =
        config.resume && dirs.iter().all(|d| d.as_ref().is_some_and(|d| d.join("last").join("state.json").is_file()));
    let mut runs = Vec::with_capacity(cuts.len());
    for (cut, dir) in cuts.iter().zip(&dirs) {
        let hg = head_graph(base.graph(), cut, head, k)?;
        let run = match (resume, dir) {
            (true, Some(d)) => {
                let t = Trainer::resume(d.join("last"), config.clone(), &device)?;
                if t.network()?.graph() != &hg {
                    return Err(PruneError::Config(format!(
                        "{} holds another head than '{head}' at '{}'; use a new output directory",
                        d.display(),
                        cut.name
                    )));
                }
                let best = d.join("best");
                let best = if t.state.best_epoch.is_some()
                    && mcufit_train::recover_dir(&best)?
                    && best.join("model.json").is_file()
                {
                    Some(Network::load(&best, &device)?)
                } else {
                    None
                };
                HeadRun { trainer: t, best }
            }
            _ => {
                HeadRun { trainer: Trainer::new(Network::new(&hg, &device, config.seed)?, config.clone())?, best: None }
            }
        };
        runs.push(run);
    }
    let first = runs[0].trainer.state.epoch;
    if runs.iter().any(|r| r.trainer.state.epoch != first) {
        return Err(PruneError::Config("the heads' checkpoints are at different epochs; start afresh".into()));
    }
    let n = data.train.len();
    let batches_of = |epoch: usize| trainer_batches(config, n, epoch);
    let spe = batches_of(first).len() as u64;
    for r in &mut runs {
        r.trainer.set_steps_per_epoch(spe);
    }
    let (mut raw, mut labels) = (Vec::new(), Vec::new());
    for epoch in first..config.epochs {
        let start = Instant::now();
        let mut acc = vec![(0f64, 0usize, 0usize, 0f64); runs.len()]; // loss sum, correct, seen, lr
        for (b, idx) in batches_of(epoch).iter().enumerate() {
            if config.augment {
                let seed = SplitMix64::derive(config.seed, epoch as u64, 0xA0_0000 + b as u64).next_u64();
                data.train.batch_augmented(idx, seed, &mut raw, &mut labels)?;
            } else {
                data.train.batch(idx, &mut raw, &mut labels)?;
            }
            trunk.with_features(&raw, labels.len(), |eval, nodes| {
                for ((r, &node), a) in runs.iter_mut().zip(nodes).zip(&mut acc) {
                    let s = r.trainer.step(eval.output(node)?, &labels, &mut NoHook)?;
                    a.0 += s.loss * s.examples as f64;
                    a.1 += s.correct;
                    a.2 += s.examples;
                    a.3 = s.lr;
                }
                Ok(())
            })?;
        }
        let secs = start.elapsed().as_secs_f64();
        let val = match data.val {
            Some(v) => {
                let nets = runs.iter().map(|r| r.trainer.network()).collect::<mcufit_train::Result<Vec<_>>>()?;
                Some(evaluate_heads(&trunk, &nets, v, config.batch_size.max(256))?)
            }
            None => None,
        };
        for (i, (r, a)) in runs.iter_mut().zip(&acc).enumerate() {
            let t = &mut r.trainer;
            t.state.epoch += 1;
            t.state.rng = SplitMix64::derive(config.seed, t.state.epoch as u64, 0x5EED);
            let stats = EpochStats {
                epoch,
                train_loss: a.0 / a.2.max(1) as f64,
                train_accuracy: a.1 as f64 / a.2.max(1) as f64,
                extra_loss: 0.0,
                val_loss: val.as_ref().map(|v| v[i].loss),
                val_accuracy: val.as_ref().map(|v| v[i].accuracy),
                lr_end: a.3,
                images_per_sec: a.2 as f64 / secs.max(1e-9),
                seconds: secs,
            };
            let metric = stats.val_accuracy.unwrap_or(stats.train_accuracy);
            if config.progress {
                eprintln!(
                    "head at '{}' epoch {}/{}: loss {:.4} acc {:.2}%{}",
                    cuts[i].name,
                    epoch + 1,
                    config.epochs,
                    stats.train_loss,
                    100.0 * stats.train_accuracy,
                    stats.val_accuracy.map(|v| format!(" val {:.2}%", 100.0 * v)).unwrap_or_default()
                );
            }
            t.state.history.push(stats);
            if t.state.best_accuracy.is_none_or(|b| metric > b) {
                t.state.best_accuracy = Some(metric);
                t.state.best_epoch = Some(epoch);
                let snapshot = t.network()?.valid();
                if let Some(d) = &dirs[i] {
                    mcufit_train::replace_dir(&d.join("best"), |b| snapshot.save(b))?;
                }
                r.best = Some(snapshot);
            }
            if let Some(d) = &dirs[i] {
                r.trainer.save_checkpoint(d.join("last"))?;
            }
        }
    }
    let mut out = Vec::with_capacity(runs.len());
    for (cut, r) in cuts.iter().zip(runs) {
        let state = r.trainer.state.clone();
        let head_net = match r.best {
            Some(b) => b,
            None => r.trainer.into_network()?,
        };
        out.push(TrainedHead {
            cut: cut.clone(),
            network: assemble(&base, cut, head, &head_net)?,
            history: state.history,
            best_epoch: state.best_epoch,
            val_accuracy: data.val.and(state.best_accuracy),
        });
    }
    Ok(out)
}

/// One head being trained by [`train_heads`].
struct HeadRun {
    trainer: Trainer,
    /// Evaluation copy of the best epoch so far.
    best: Option<Network>,
}

/// The batches of `epoch` exactly as [`Trainer::train_epoch`] draws them: a shuffle from
/// (seed, epoch), chunks of the batch size, a short last batch dropped unless it is the only one,
/// at most `max_steps_per_epoch`.
fn trainer_batches(config: &TrainConfig, len: usize, epoch: usize) -> Vec<Vec<usize>> {
    let mut idx: Vec<usize> = (0..len).collect();
    SplitMix64::derive(config.seed, epoch as u64, 0x5EED).shuffle(&mut idx);
    let bs = config.batch_size;
    let mut batches: Vec<Vec<usize>> = idx.chunks(bs).map(|c| c.to_vec()).collect();
    if batches.len() > 1 && batches.last().is_some_and(|b| b.len() < bs) {
        batches.pop();
    }
    if let Some(m) = config.max_steps_per_epoch {
        batches.truncate(m.max(1));
    }
    batches
}

/// Evaluates every head on `data` with one trunk pass per batch, as [`evaluate`] would evaluate
/// each head on its [`CutFeatures`] (BN folded, the same batches).
fn evaluate_heads(trunk: &Trunk, heads: &[&Network], data: &dyn BatchSource, batch: usize) -> Result<Vec<EvalReport>> {
    let mut evals = heads.iter().map(|h| Evaluator::new(h)).collect::<mcufit_train::Result<Vec<_>>>()?;
    let k = heads.first().map(|n| n.num_classes()).unwrap_or(0);
    let mut confusion = vec![vec![vec![0usize; k]; k]; evals.len()];
    let mut loss = vec![0f64; evals.len()];
    let (mut raw, mut labels) = (Vec::new(), Vec::new());
    let all: Vec<usize> = (0..data.len()).collect();
    for idx in all.chunks(batch) {
        data.batch(idx, &mut raw, &mut labels)?;
        let n = labels.len();
        trunk.with_features(&raw, n, |trunk_eval, nodes| {
            for (h, (eval, &node)) in evals.iter_mut().zip(nodes).enumerate() {
                let logits = eval.logits(trunk_eval.output(node)?, n)?;
                for (row, &y) in logits.chunks_exact(k).zip(&labels) {
                    let y = y as usize;
                    if y >= k {
                        return Err(PruneError::Data(format!("label {y} out of range for {k} classes")));
                    }
                    loss[h] -= log_softmax_at(row, y);
                    confusion[h][y][argmax(row)] += 1;
                }
            }
            Ok(())
        })?;
    }
    confusion.into_iter().zip(loss).map(|(c, l)| Ok(EvalReport::from_confusion(c, l)?)).collect()
}

/// Index of the largest value (first on ties; NaN never wins), as the trainer's evaluation counts.
fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] || row[best].is_nan() {
            best = i;
        }
    }
    best
}

/// The reference form of [`train_heads`]: each head trained on its own by
/// [`mcufit_train::train_with_hook`] on [`CutFeatures`] (so one trunk pass per head per batch).
/// Same arguments, checkpoints and results; kept to check the shared pass against, and for a
/// single cut.
pub fn train_heads_separately(
    base: &Network,
    cuts: &[Cut],
    head: &HeadSpec,
    data: &mcufit_train::Splits,
    config: &TrainConfig,
) -> Result<Vec<TrainedHead>> {
    config.validate()?;
    let base = base.valid();
    check_inputs(&base, cuts, data)?;
    let k = base.num_classes();
    let mut out = Vec::with_capacity(cuts.len());
    for cut in cuts {
        let hg = head_graph(base.graph(), cut, head, k)?;
        let train = CutFeatures::new(&base, cut, data.train)?;
        let val = data.val.map(|v| CutFeatures::new(&base, cut, v)).transpose()?;
        let mut cfg = config.clone();
        cfg.out_dir = head_dir(config, cut).map(|d| d.display().to_string());
        let splits = mcufit_train::Splits { train: &train, val: val.as_ref().map(|v| v as &dyn BatchSource) };
        let report = train_with_hook(&hg, &splits, &cfg, &mut NoHook)?;
        out.push(TrainedHead {
            cut: cut.clone(),
            network: assemble(&base, cut, head, &report.network)?,
            history: report.summary.history.clone(),
            best_epoch: report.summary.best_epoch,
            val_accuracy: data.val.and(report.summary.best_accuracy),
        });
    }
    Ok(out)
}

// ---- the whole depth-pruning run ---------------------------------------------------------------

/// Configuration of [`depth_prune`].
#[derive(Debug, Clone)]
pub struct DepthConfig {
    /// The auxiliary head put on every cut (default `ds:32,16`).
    pub head: HeadSpec,
    /// Limits, as width pruning takes them (the pipeline maps RAM / flash totals onto them).
    pub budget: Budget,
    /// Needed for a latency limit; shown in the table otherwise.
    pub board: Option<Board>,
    pub cost_options: CostOptions,
    /// Training of the heads (and of the fine-tune, see `finetune_epochs`). With `out_dir`, heads
    /// checkpoint into `OUT/heads/..` (`resume` continues them), the fine-tune into `OUT/finetune`.
    pub train: TrainConfig,
    /// Depth + width: a cut is a candidate when width pruning can make it fit (the caller then
    /// width-prunes the chosen network, e.g. with [`crate::compress`]); otherwise it must fit as is.
    pub width: bool,
    /// Train heads only at candidate cuts. `false` (default) trains every cut, so the table has
    /// every cut's accuracy.
    pub only_candidates: bool,
    /// Epochs of fine-tuning the chosen network whole, trunk unfrozen (0 = none), at half of
    /// `train.lr` with a cosine schedule.
    pub finetune_epochs: usize,
}

impl DepthConfig {
    pub fn new(budget: Budget, train: TrainConfig) -> Self {
        DepthConfig {
            head: HeadSpec::default(),
            budget,
            board: None,
            cost_options: CostOptions::default(),
            train,
            width: false,
            only_candidates: false,
            finetune_epochs: 0,
        }
    }
}

/// Wall time of each phase, seconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct DepthTimes {
    pub heads: f64,
    pub finetune: f64,
    /// Evaluation of the trained networks on validation and test.
    pub eval: f64,
    pub total: f64,
}

/// What [`depth_prune`] did.
#[derive(Debug, Serialize)]
pub struct DepthReport {
    /// Every cut: resources, fit, validation / test accuracy of its trained head; the chosen row marked.
    pub table: CutTable,
    /// Index of the chosen row in `table.rows`. With [`DepthConfig::width`] its `fit` may be
    /// [`CutFit::WithWidth`]: the returned network then still has to be width-pruned to fit.
    pub chosen: usize,
    /// Accuracy of the returned network (after the fine-tune, when there was one).
    pub accuracy: Accuracy,
    pub finetuned: bool,
    /// Each trained head's epochs, by row index.
    pub head_histories: Vec<(usize, Vec<EpochStats>)>,
    pub finetune_history: Vec<EpochStats>,
    pub times: DepthTimes,
    /// The chosen truncated network (evaluation mode); the caller writes the model directory.
    #[serde(skip)]
    pub network: Option<Network>,
}

/// Depth-prunes the trained `base` to `config.budget` (see the module docs): prices every cut,
/// fails before training when no cut can fit ([`CutTable::check_feasible`]), trains the heads with
/// the trunk frozen, keeps the cut with the best validation accuracy among those that fit, and
/// optionally fine-tunes it whole. `splits` must match `base`'s input shape and class count.
pub fn depth_prune(base: &Network, splits: &mcufit_data::Splits, config: &DepthConfig) -> Result<DepthReport> {
    let t_all = Instant::now();
    config.train.validate()?;
    let mut table = CutTable::new(
        base.graph(),
        &config.head,
        base.num_classes(),
        &config.budget,
        config.board.as_ref(),
        config.cost_options,
    )?;
    let candidates = table.check_feasible(config.width)?;
    let to_train: Vec<usize> = if config.only_candidates { candidates } else { (0..table.rows.len()).collect() };
    let cuts: Vec<Cut> = to_train.iter().map(|&i| table.rows[i].cut.clone()).collect();
    let mut times = DepthTimes::default();

    let t = Instant::now();
    let data = mcufit_train::Splits { train: &splits.train, val: Some(&splits.val) };
    let heads = train_heads(base, &cuts, &config.head, &data, &config.train)?;
    times.heads = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let mut networks: Vec<Option<Network>> = vec![None; table.rows.len()];
    let mut head_histories = Vec::new();
    for (&i, h) in to_train.iter().zip(heads) {
        let row = &mut table.rows[i];
        row.val_accuracy = Some(evaluate(&h.network, &splits.val, 256)?.accuracy);
        row.test_accuracy = Some(evaluate(&h.network, &splits.test, 256)?.accuracy);
        head_histories.push((i, h.history));
        networks[i] = Some(h.network);
    }
    times.eval = t.elapsed().as_secs_f64();
    let chosen = table
        .choose(config.width)
        .ok_or_else(|| PruneError::Config("no cut that fits the budget was trained".into()))?;
    let mut network = networks[chosen].take().expect("the chosen row was trained");
    let row = &table.rows[chosen];
    let mut accuracy = Accuracy { val: row.val_accuracy.unwrap_or(0.0), test: row.test_accuracy.unwrap_or(0.0) };

    let mut finetune_history = Vec::new();
    if config.finetune_epochs > 0 {
        let t = Instant::now();
        let mut cfg = config.train.clone();
        cfg.epochs = config.finetune_epochs;
        cfg.lr = config.train.lr * 0.5;
        cfg.schedule = LrSchedule::Cosine { warmup_epochs: 0, min_ratio: 0.0 };
        cfg.out_dir = config.train.out_dir.as_ref().map(|d| PathBuf::from(d).join("finetune").display().to_string());
        cfg.resume = false;
        let tuned = train_network(network, &data, &cfg, &mut NoHook)?;
        finetune_history = tuned.summary.history.clone();
        network = tuned.network;
        times.finetune = t.elapsed().as_secs_f64();
        let t = Instant::now();
        accuracy = Accuracy {
            val: evaluate(&network, &splits.val, 256)?.accuracy,
            test: evaluate(&network, &splits.test, 256)?.accuracy,
        };
        times.eval += t.elapsed().as_secs_f64();
    }
    times.total = t_all.elapsed().as_secs_f64();
    Ok(DepthReport {
        table,
        chosen,
        accuracy,
        finetuned: config.finetune_epochs > 0,
        head_histories,
        finetune_history,
        times,
        network: Some(network),
    })
}
