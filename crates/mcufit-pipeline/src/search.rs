//! The search stage (`mcufit search`): architecture search under the budget, coupled with pruning
//! (`docs/search.md`). `mcufit-search` holds the space, the optimiser and the trial store; this
//! module is its [`TrialRunner`]: it prices candidates with the exact cost model and the pruner's
//! feasibility check (the one `compress` fails an impossible budget with), and runs each trial with
//! the same stages `mcufit train` and `mcufit compress` use, into a model directory
//! `OUT/trials/ID` that `eval`, `analyze` and `export` take.
//!
//! A trial: proxy training ([`ProxyRecipe::proxy_epochs`]) into `OUT/trials/ID/proxy`, then, when the
//! search prunes and the trained model does not fit, DiffPrune [`stages::compress`] from it to the
//! budget ([`ProxyRecipe::prune_epochs`]) into `OUT/trials/ID`; otherwise the trained model is the
//! delivered one. Validation accuracy selects; test accuracy is only reported.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mcufit_cost::{CostModel, CostOptions};
use mcufit_data::{LoadOptions, Splits};
use mcufit_ir::{Graph, Shape};
pub use mcufit_search::worker_id;
pub use mcufit_search::{
    open as open_store, Bounds, Event, EvolutionConfig, Fitness, Genotype, Outcome, Preset, Progress, Resources,
    SearchMeta, SearchSpace, Status, Timings, Trial, TrialStore, WorkerOptions, WorkerSummary,
};
use mcufit_search::{progress, run_worker, TrialRunner};
use mcufit_train::{LrSchedule, OptimizerKind, TrainConfig};
use serde::{Deserialize, Serialize};

use crate::budget::{Budget, Footprint};
use crate::error::{Context, PipelineError, Result};
use crate::modeldir::{DataRecord, ModelDir, REPORT_JSON};
use crate::stages;

/// How every trial trains (stored with the search; workers read it from the store).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxyRecipe {
    /// Epochs of plain training before pruning (the proxy for a full training).
    pub proxy_epochs: usize,
    /// Pruning + fine-tune epochs of `compress` (at least 2), when the trained model does not fit.
    pub prune_epochs: usize,
    pub batch: usize,
    /// Peak learning rate of SGD (momentum 0.9, cosine schedule, weight decay 5e-4), as `mcufit train`.
    pub lr: f64,
    /// Cap on steps per epoch (quick searches); `None`: whole epochs.
    pub max_steps: Option<usize>,
}

impl Default for ProxyRecipe {
    fn default() -> Self {
        ProxyRecipe { proxy_epochs: 3, prune_epochs: 4, batch: 64, lr: 0.05, max_steps: None }
    }
}

/// What the trials need besides the recipe (stored with the search).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchTask {
    /// Data spec (`mnist:DIR`, `digits`, …), loaded at its own sample shape.
    pub data: String,
    /// Keep at most this many samples per split (quick searches).
    pub limit: Option<usize>,
    pub budget: Budget,
    /// Prune each trained candidate to the budget (`--prune`, default); otherwise a candidate must
    /// fit as it is.
    pub prune: bool,
    /// Where the search's trial directories go unless a worker gives its own `--out`.
    pub out: PathBuf,
}

/// A new search.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub space: SearchSpace,
    pub evolution: EvolutionConfig,
    /// Seeds the proposals, the data split and every trial's training seed.
    pub seed: u64,
    /// Trials to train (rejected candidates do not count).
    pub trials: u64,
    pub task: SearchTask,
    pub recipe: ProxyRecipe,
}

impl SearchRequest {
    /// The record the store keeps.
    pub fn meta(&self) -> Result<SearchMeta> {
        if !self.task.budget.is_bounded() {
            return Err(PipelineError::Config(
                "a search needs a budget: --board NAME, or --ram / --flash / --peak / --size / --macs / --latency-ms"
                    .into(),
            ));
        }
        if self.recipe.proxy_epochs == 0
            || self.recipe.batch == 0
            || !(self.recipe.lr.is_finite() && self.recipe.lr > 0.0)
        {
            return Err(PipelineError::Config("--proxy-epochs, --batch and --lr must be positive".into()));
        }
        if self.task.prune && self.recipe.prune_epochs < 2 {
            return Err(PipelineError::Config(
                "--prune-epochs must be at least 2 (pruning + fine-tune); or --no-prune".into(),
            ));
        }
        let b = &self.task.budget;
        let meta = SearchMeta {
            space: self.space,
            evolution: self.evolution,
            seed: self.seed,
            max_trials: self.trials,
            bounds: Bounds {
                peak: b.peak.or(b.ram).map(|v| v as f64),
                model_bytes: b.size.or(b.flash).map(|v| v as f64),
                macs: b.macs.map(|v| v as f64),
            },
            hyper: to_json(&self.recipe)?,
            task: to_json(&self.task)?,
        };
        meta.validate().map_err(search_err)?;
        Ok(meta)
    }
}

fn to_json<T: Serialize>(v: &T) -> Result<serde_json::Value> {
    serde_json::to_value(v).map_err(|e| PipelineError::Config(format!("cannot record the search: {e}")))
}

fn search_err(e: mcufit_search::SearchError) -> PipelineError {
    match e {
        mcufit_search::SearchError::Infeasible(m) => PipelineError::DoesNotFit(m),
        other => PipelineError::Config(other.to_string()),
    }
}

/// The default store of a search writing to `out`: `sqlite:OUT/search.db`.
pub fn default_store(out: &Path) -> String {
    format!("sqlite:{}", out.join("search.db").display())
}

/// Opens the store named by `spec` (`sqlite:PATH` or `postgres://…`).
pub fn open(spec: &str) -> Result<Box<dyn TrialStore>> {
    open_store(spec).map_err(search_err)
}

/// Records `request` as the store's search (a store already holding the same search is joined; one
/// holding another is an error). Returns the recorded search.
pub fn create(store: &dyn TrialStore, request: &SearchRequest) -> Result<SearchMeta> {
    let meta = request.meta()?;
    store.create(&meta).map_err(search_err)?;
    Ok(meta)
}

/// The search the store holds; an error saying how to start one when it holds none.
pub fn existing(store: &dyn TrialStore) -> Result<SearchMeta> {
    store.meta().map_err(search_err)?.ok_or_else(|| {
        PipelineError::Config(format!(
            "{} holds no search: start one with `mcufit search --data SPEC BUDGET --out DIR` (or --store …)",
            store.describe()
        ))
    })
}

/// `--resume`: the process that ran the search is gone, so its `running` trials go back to the queue
/// (they rerun from scratch). Returns how many. Only for a store no live worker uses.
pub fn requeue_running(store: &dyn TrialStore) -> Result<u64> {
    store.requeue_running().map_err(search_err)
}

/// The output directory the search was started with.
pub fn task_out(store: &dyn TrialStore) -> Result<PathBuf> {
    Ok(task_of(&existing(store)?)?.0.out)
}

fn task_of(meta: &SearchMeta) -> Result<(SearchTask, ProxyRecipe)> {
    let bad = |e: serde_json::Error| PipelineError::Config(format!("the store's search record is not readable: {e}"));
    Ok((
        serde_json::from_value(meta.task.clone()).map_err(bad)?,
        serde_json::from_value(meta.hyper.clone()).map_err(bad)?,
    ))
}

/// A worker's own settings.
#[derive(Debug, Clone)]
pub struct WorkOptions {
    /// Trial directories go to `out/trials/ID` (default: the search's output directory).
    pub out: Option<PathBuf>,
    /// CPU threads for training (0: all cores).
    pub threads: usize,
    pub worker: WorkerOptions,
}

/// Runs trials of the store's search until it has every trial or the worker's deadline passes.
pub fn work(store: &dyn TrialStore, opts: &WorkOptions, on: &mut dyn FnMut(&Event)) -> Result<WorkerSummary> {
    let meta = existing(store)?;
    let (task, recipe) = task_of(&meta)?;
    let out = opts.out.clone().unwrap_or_else(|| task.out.clone());
    let load = LoadOptions { seed: meta.seed, limit: task.limit, ..LoadOptions::default() };
    let splits = mcufit_data::load(&task.data, &load).context(|| format!("cannot load data '{}'", task.data))?;
    let [h, w, c] = splits.train.shape();
    let runner = Runner {
        task: &task,
        recipe: &recipe,
        splits: &splits,
        out: &out,
        record: DataRecord { spec: task.data.clone(), seed: meta.seed },
        input: Shape::new(h, w, c),
        classes: splits.train.num_classes(),
        threads: opts.threads,
    };
    run_worker(store, &runner, &opts.worker, on).map_err(search_err)
}

struct Runner<'a> {
    task: &'a SearchTask,
    recipe: &'a ProxyRecipe,
    splits: &'a Splits,
    out: &'a Path,
    record: DataRecord,
    input: Shape,
    classes: usize,
    threads: usize,
}

/// The resources of `graph` as the search records them.
pub fn resources(graph: &Graph, budget: &Budget) -> Result<(Resources, Footprint)> {
    let fp = Footprint::of_graph(graph, budget)?;
    let model = CostModel::new(graph, CostOptions::default())?;
    let params = model.op_costs(&model.sizes()).iter().map(|o| o.params).sum();
    Ok((Resources { peak: fp.arena as f64, model_bytes: fp.weights as f64, macs: fp.macs as f64, params }, fp))
}

/// Prices a candidate graph against `budget`: `Ok(Ok(resources))` when it can fit (after full
/// pruning when `prune`, else as it is), `Ok(Err(reason))` naming the smallest achievable figure
/// when it cannot. This is the check `compress` makes before training.
pub fn price(graph: &Graph, budget: &Budget, prune: bool) -> Result<std::result::Result<Resources, String>> {
    let (res, fp) = resources(graph, budget)?;
    if !prune {
        let check = budget.check(&fp);
        return Ok(if check.fits { Ok(res) } else { Err(check.failures().join("; ")) });
    }
    let pb = match budget.prune_budget(&fp) {
        Ok(pb) => pb,
        Err(PipelineError::DoesNotFit(m)) => return Ok(Err(m)),
        Err(e) => return Err(e),
    };
    let model = CostModel::new(graph, CostOptions::default())?;
    match mcufit_prune::check_feasible(&model, &pb, budget.board.as_ref()) {
        Ok(_) => Ok(Ok(res)),
        Err(e @ mcufit_prune::PruneError::Infeasible(_)) => Ok(Err(e.to_string())),
        Err(e) => Err(e.into()),
    }
}

impl Runner<'_> {
    fn graph(&self, id: u64, g: &Genotype) -> Result<Graph> {
        g.to_graph(&format!("search-{id}"), self.input, self.classes).map_err(search_err)
    }

    fn train_config(&self, epochs: usize, seed: u64) -> TrainConfig {
        let r = self.recipe;
        TrainConfig::new()
            .with_epochs(epochs)
            .with_batch_size(r.batch)
            .with_lr(r.lr)
            .with_optimizer(OptimizerKind::Sgd { momentum: 0.9, nesterov: false })
            .with_schedule(LrSchedule::Cosine { warmup_epochs: 0, min_ratio: 0.0 })
            .with_weight_decay(5e-4)
            .with_seed(seed)
            .with_threads(self.threads)
            .with_max_steps_per_epoch(r.max_steps)
            .with_progress(false)
    }

    fn trial(&self, t: &Trial, timings: &mut Timings) -> Result<Outcome> {
        let dir = ModelDir::new(self.out.join("trials").join(t.id.to_string()));
        if dir.path().exists() {
            // A re-run (its worker died): start afresh, so the result is the uninterrupted one.
            std::fs::remove_dir_all(dir.path()).map_err(|e| PipelineError::io(dir.path(), e))?;
        }
        let graph = self.graph(t.id, &t.genotype)?;
        let budget = &self.task.budget;
        let proxy = ModelDir::new(dir.join("proxy"));
        let (net, rec) = stages::train(
            &graph,
            self.splits,
            &self.train_config(self.recipe.proxy_epochs, t.seed),
            &proxy,
            &self.record,
        )?;
        timings.train_s = rec.train_seconds;
        let (_, fp) = resources(&graph, budget)?;
        let (delivered, val, test) = if budget.check(&fp).fits {
            dir.save_network(&net)?;
            dir.write_data_record(&self.record)?;
            dir.write_json(REPORT_JSON, &rec)?;
            (graph, rec.val_accuracy.unwrap_or(0.0), rec.test_accuracy)
        } else if self.task.prune {
            let mut cfg = mcufit_prune::CompressConfig::new(
                Default::default(),
                self.train_config(self.recipe.prune_epochs, t.seed),
            );
            cfg.from = Some(proxy.path().to_path_buf());
            cfg.warmup_epochs = Some(0);
            let rep = stages::compress(&graph, self.splits, budget, cfg, &dir, &self.record)?;
            timings.compress_s = rep.times.total;
            let net =
                rep.network.as_ref().ok_or_else(|| PipelineError::Config("compress returned no network".into()))?;
            (net.graph().clone(), rep.accuracy_after.val, rep.accuracy_after.test)
        } else {
            return Err(PipelineError::DoesNotFit(
                "the trained candidate does not fit and the search does not prune".into(),
            ));
        };
        let (res, fp) = resources(&delivered, budget)?;
        let check = budget.check(&fp);
        if !check.fits {
            return Err(PipelineError::DoesNotFit(format!(
                "the delivered model does not fit: {}",
                check.failures().join("; ")
            )));
        }
        Ok(Outcome::Done {
            resources: res,
            val_accuracy: val,
            test_accuracy: test,
            timings: *timings,
            model_dir: dir.path().display().to_string(),
        })
    }
}

impl TrialRunner for Runner<'_> {
    fn price(&self, g: &Genotype) -> mcufit_search::Result<std::result::Result<Resources, String>> {
        let graph = g.to_graph("candidate", self.input, self.classes)?;
        price(&graph, &self.task.budget, self.task.prune)
            .map_err(|e| mcufit_search::SearchError::Config(format!("cannot price a candidate: {e}")))
    }

    fn run(&self, t: &Trial) -> Outcome {
        let start = Instant::now();
        let mut timings = Timings::default();
        let r = self.trial(t, &mut timings);
        timings.total_s = start.elapsed().as_secs_f64();
        match r {
            Ok(Outcome::Done { resources, val_accuracy, test_accuracy, model_dir, .. }) => {
                Outcome::Done { resources, val_accuracy, test_accuracy, timings, model_dir }
            }
            Ok(failed) => failed,
            Err(e) => Outcome::Failed { error: e.to_string(), timings },
        }
    }
}

/// One member of the Pareto front.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FrontMember {
    pub id: u64,
    pub val_accuracy: f64,
    /// Reported only: selection used validation.
    pub test_accuracy: f64,
    pub peak: f64,
    pub model_bytes: f64,
    pub macs: f64,
    pub params: f64,
    pub architecture: String,
    pub genotype: Genotype,
    /// A model directory (`eval`, `analyze`, `export` take it).
    pub model_dir: Option<String>,
}

/// What `--status` and the end of a search show (`OUT/pareto.json`).
#[derive(Debug, Clone, Serialize)]
pub struct SearchResults {
    pub store: String,
    pub space: String,
    pub budget: String,
    pub max_trials: u64,
    pub progress: Progress,
    /// Validation accuracy against peak, model bytes and MACs; best accuracy first.
    pub front: Vec<FrontMember>,
}

/// Progress and the Pareto front, from the store.
pub fn results(store: &dyn TrialStore) -> Result<SearchResults> {
    let meta = existing(store)?;
    let (task, _) = task_of(&meta)?;
    let trials = store.trials().map_err(search_err)?;
    let front = mcufit_search::pareto_front(&trials)
        .into_iter()
        .map(|i| {
            let t = &trials[i];
            let r = t.resources.unwrap_or_default();
            FrontMember {
                id: t.id,
                val_accuracy: t.val_accuracy.unwrap_or(0.0),
                test_accuracy: t.test_accuracy.unwrap_or(0.0),
                peak: r.peak,
                model_bytes: r.model_bytes,
                macs: r.macs,
                params: r.params,
                architecture: t.genotype.describe(),
                genotype: t.genotype.clone(),
                model_dir: t.model_dir.clone(),
            }
        })
        .collect();
    Ok(SearchResults {
        store: store.describe(),
        space: meta.space.preset.to_string(),
        budget: task.budget.describe(),
        max_trials: meta.max_trials,
        progress: progress(&trials),
        front,
    })
}

/// Writes `out/pareto.json`; returns its path.
pub fn write_front(out: &Path, results: &SearchResults) -> Result<PathBuf> {
    let dir = ModelDir::new(out);
    dir.write_json("pareto.json", results)?;
    Ok(dir.join("pareto.json"))
}

/// A lease for `--lease`-less runs: long enough for renewals through a busy machine.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);
