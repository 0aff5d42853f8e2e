//! The training stages: train a model into a model directory, compress one to a budget.
//! Each returns a typed record that is also written as the directory's `report.json`.

use std::time::Instant;

use mcufit_data::Splits;
use mcufit_ir::Graph;
use mcufit_prune::{CompressConfig, CompressReport, LayerChannels, PruneLog};
use mcufit_train::{evaluate, EpochStats, Network, TrainConfig};
use serde::{Deserialize, Serialize};

use crate::budget::Budget;
use crate::error::{PipelineError, Result};
use crate::modeldir::{DataRecord, ModelDir, REPORT_JSON};

/// What training measured (`report.json` of a trained model directory).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainRecord {
    pub model: String,
    pub data: DataRecord,
    pub train_examples: usize,
    pub val_examples: usize,
    pub test_examples: usize,
    pub epochs: usize,
    pub train_seconds: f64,
    pub best_epoch: Option<usize>,
    pub val_accuracy: Option<f64>,
    pub history: Vec<EpochStats>,
    pub test_accuracy: f64,
    pub test_loss: f64,
}

/// True when training checkpoint `dir` (e.g. `OUT/last`) holds a complete state to resume from, after
/// recovering one a kill left between its two renames.
pub fn has_checkpoint(dir: &std::path::Path) -> Result<bool> {
    Ok(mcufit_train::recover_checkpoint(dir)? && dir.join("state.json").is_file())
}

/// Refuses to write over a directory that holds another model unless `resume` continues it.
pub fn check_out_dir(dir: &ModelDir, record: &DataRecord, resume: bool) -> Result<()> {
    if let Some(prev) = dir.data_record()? {
        if resume && prev != *record {
            return Err(PipelineError::Config(format!(
                "--resume: {} was trained on '{}' (split seed {}), not '{}' (seed {})",
                dir.path().display(),
                prev.spec,
                prev.seed,
                record.spec,
                record.seed
            )));
        }
    }
    Ok(())
}

/// Trains `graph` on `splits` into `dir` (checkpoints in `dir/last`, `dir/best`; `config.resume`
/// continues from them), evaluates the best network on the test split, writes the model,
/// `data.json` and `report.json`.
pub fn train(
    graph: &Graph,
    splits: &Splits,
    config: &TrainConfig,
    dir: &ModelDir,
    record: &DataRecord,
) -> Result<(Network, TrainRecord)> {
    train_from(graph, splits, config, dir, record, None, None)
}

/// Knowledge distillation from a trained model directory ([`mcufit_train::Distill`]).
#[derive(Debug, Clone)]
pub struct Distillation {
    /// The teacher: a model directory trained on the same data and split as the student.
    pub teacher: ModelDir,
    /// The teacher's weight in the targets, in (0, 1].
    pub weight: f64,
    /// Softmax temperature of the teacher's predictions.
    pub temperature: f64,
}

impl Distillation {
    /// The training hook; refuses a teacher trained on another split (it has seen the student's
    /// validation samples, so selection on validation would no longer be honest).
    pub fn hook(&self, record: &DataRecord) -> Result<mcufit_train::Distill> {
        let t = self.teacher.path().display();
        match self.teacher.data_record()? {
            Some(r) if &r == record => {}
            Some(r) => {
                return Err(PipelineError::Config(format!(
                    "the teacher {t} was trained on --data {} --seed {}, not --data {} --seed {}: a teacher on \
                     another split has seen this run's validation samples; train with its --data and --seed",
                    r.spec, r.seed, record.spec, record.seed
                )))
            }
            None => {
                return Err(PipelineError::Config(format!(
                    "the teacher {t} has no data.json: give a directory written by train"
                )))
            }
        }
        Ok(mcufit_train::Distill::new(self.teacher.load_network()?, self.weight, self.temperature)?)
    }
}

/// [`train`] starting from `init` (e.g. an imported float model's weights) instead of a random
/// initialisation; a resumed run continues from its checkpoint either way; `distill` learns from a
/// teacher as well as the labels.
pub fn train_from(
    graph: &Graph,
    splits: &Splits,
    config: &TrainConfig,
    dir: &ModelDir,
    record: &DataRecord,
    init: Option<Network>,
    distill: Option<&Distillation>,
) -> Result<(Network, TrainRecord)> {
    check_out_dir(dir, record, config.resume)?;
    let mut hook: Box<dyn mcufit_train::TrainHook> = match distill {
        Some(d) => Box::new(d.hook(record)?),
        None => Box::new(mcufit_train::NoHook),
    };
    let hook = hook.as_mut();
    dir.create()?;
    dir.write_data_record(record)?;
    let config = config.clone().with_out_dir(Some(dir.path().display().to_string()));
    let start = Instant::now();
    let data = mcufit_train::Splits { train: &splits.train, val: Some(&splits.val) };
    let resuming = config.resume && has_checkpoint(&dir.join("last"))?;
    let report = match init {
        Some(net) if !resuming => {
            if net.graph() != graph {
                return Err(PipelineError::Config("the starting network is not of the model given".into()));
            }
            mcufit_train::train_network(net, &data, &config, hook)?
        }
        _ => mcufit_train::train_with_hook(graph, &data, &config, hook)?,
    };
    let train_seconds = start.elapsed().as_secs_f64();
    dir.save_network(&report.network)?;
    let test = evaluate(&report.network, &splits.test, 256)?;
    let rec = TrainRecord {
        model: graph.name.clone(),
        data: record.clone(),
        train_examples: splits.train.len(),
        val_examples: splits.val.len(),
        test_examples: splits.test.len(),
        epochs: config.epochs,
        train_seconds,
        best_epoch: report.summary.best_epoch,
        val_accuracy: report.summary.best_accuracy,
        history: report.summary.history.clone(),
        test_accuracy: test.accuracy,
        test_loss: test.loss,
    };
    dir.write_json(REPORT_JSON, &rec)?;
    Ok((report.network, rec))
}

/// What compression did, in the form the fit report keeps (`CompressReport` has the full detail in
/// the compressed model's `report.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompressRecord {
    /// (warm-up, pruning, fine-tune) epochs.
    pub epochs: (usize, usize, usize),
    pub val_accuracy_before: Option<f64>,
    pub test_accuracy_before: Option<f64>,
    pub val_accuracy: f64,
    pub test_accuracy: f64,
    pub channels: Vec<LayerChannels>,
    pub history: Vec<EpochStats>,
    pub log: Vec<PruneLog>,
    pub steps_per_epoch: u64,
    pub seconds: f64,
}

impl From<&CompressReport> for CompressRecord {
    fn from(r: &CompressReport) -> Self {
        CompressRecord {
            epochs: r.epochs,
            val_accuracy_before: r.accuracy_before.map(|a| a.val),
            test_accuracy_before: r.accuracy_before.map(|a| a.test),
            val_accuracy: r.accuracy_after.val,
            test_accuracy: r.accuracy_after.test,
            channels: r.channels.clone(),
            history: r.history.clone(),
            log: r.log.clone(),
            steps_per_epoch: r.steps_per_epoch,
            seconds: r.times.total,
        }
    }
}

/// Saves `net` (an imported float model's starting network) as the model directory `dir`, so that
/// the stages that start from a trained directory (`from`) take it; returns `dir`.
pub fn save_base(net: &Network, dir: &ModelDir, record: &DataRecord) -> Result<std::path::PathBuf> {
    dir.save_network(net)?;
    dir.write_data_record(record)?;
    Ok(dir.path().to_path_buf())
}

/// Compresses `graph` (from the trained `from` directory, or from scratch) to `budget` into `dir`.
/// The pruner works to [`Budget::prune_budget`] of the unpruned model's footprint, so the result
/// fits the totals (RAM, flash) as well as the bounds on the peak and weights.
pub fn compress(
    graph: &Graph,
    splits: &Splits,
    budget: &Budget,
    mut config: CompressConfig,
    dir: &ModelDir,
    record: &DataRecord,
) -> Result<CompressReport> {
    check_out_dir(dir, record, config.resume)?;
    let start = crate::budget::Footprint::of_graph(graph, budget)?;
    config.budget = budget.prune_budget(&start)?;
    config.board = budget.board.clone();
    config.out_dir = Some(dir.path().to_path_buf());
    let model = mcufit_cost::CostModel::new(graph, config.cost_options)?;
    mcufit_prune::check_feasible(&model, &config.budget, budget.board.as_ref())?;
    dir.create()?;
    dir.write_data_record(record)?;
    let report = mcufit_prune::compress(graph, splits, &config)?;
    let net = report.network.as_ref().ok_or_else(|| PipelineError::Config("compress returned no network".into()))?;
    dir.save_network(net)?;
    dir.write_bytes("summary.txt", mcufit_prune::summary(&report).as_bytes())?;
    // Written last: its presence marks a finished compress.
    dir.write_json(REPORT_JSON, &report)?;
    Ok(report)
}

/// Runs a width baseline at the same budget as [`compress`]: `Uniform` scales every prunable group
/// by one factor and trains from scratch; `L1` removes the smallest-L1 filters of the trained `from`
/// model in one shot and fine-tunes. Writes the model and `report.json` into `dir`.
#[allow(clippy::too_many_arguments)]
pub fn baseline(
    kind: mcufit_prune::baselines::BaselineKind,
    graph: &Graph,
    splits: &Splits,
    budget: &Budget,
    from: Option<&Network>,
    config: &TrainConfig,
    distill: Option<(f64, f64)>,
    dir: &ModelDir,
    record: &DataRecord,
) -> Result<mcufit_prune::baselines::BaselineReport> {
    let start = crate::budget::Footprint::of_graph(graph, budget)?;
    let pb = budget.prune_budget(&start)?;
    let (report, net) =
        mcufit_prune::baselines::run_baseline(kind, graph, splits, from, &pb, budget.board.as_ref(), config, distill)?;
    dir.save_network(&net)?;
    dir.write_data_record(record)?;
    dir.write_json(REPORT_JSON, &report)?;
    Ok(report)
}

/// What [`depth`] did: the depth report and, for depth + width, the width pruning after it.
#[derive(Debug)]
pub struct DepthOutcome {
    pub depth: mcufit_prune::DepthReport,
    /// The width pruning of the chosen cut (depth + width, when the cut does not fit as it is).
    pub width: Option<CompressReport>,
    /// The delivered network (in `dir`).
    pub network: Network,
    pub val_accuracy: f64,
    pub test_accuracy: f64,
}

/// Depth pruning (De Leon & Atienza): every cut point of the trained `base` gets `config.head`, the
/// heads train with the trunk frozen (one trunk pass per batch feeds them all), and the cut with the
/// best validation accuracy among those that fit is kept. With `width` (depth + width), a cut that
/// width pruning can bring under the budget is a candidate too, and the chosen network is then
/// compressed to the budget (`compress_train`: its schedule). Writes the delivered model,
/// `cuts.txt` (the cut table) and `report.json` (the depth report) into `dir`; the chosen truncated
/// network before width pruning goes to `dir/depth`.
#[allow(clippy::too_many_arguments)]
pub fn depth(
    graph: &Graph,
    splits: &Splits,
    budget: &Budget,
    base: &Network,
    mut config: mcufit_prune::DepthConfig,
    compress_train: Option<TrainConfig>,
    dir: &ModelDir,
    record: &DataRecord,
) -> Result<DepthOutcome> {
    if base.graph() != graph {
        return Err(PipelineError::Config(
            "depth pruning starts from a trained model of the architecture given".into(),
        ));
    }
    let start = crate::budget::Footprint::of_graph(graph, budget)?;
    config.budget = budget.prune_budget(&start)?;
    config.board = budget.board.clone();
    // An impossible budget fails here, before anything is written, naming the smallest reachable figure.
    mcufit_prune::CutTable::new(
        graph,
        &config.head,
        base.num_classes(),
        &config.budget,
        config.board.as_ref(),
        config.cost_options,
    )?
    .check_feasible(config.width)?;
    dir.create()?;
    dir.write_data_record(record)?;
    config.train.out_dir = Some(dir.path().display().to_string());
    let report = mcufit_prune::depth_prune(base, splits, &config)?;
    let chosen =
        report.network.clone().ok_or_else(|| PipelineError::Config("depth pruning returned no network".into()))?;
    dir.write_bytes("cuts.txt", report.table.summary().as_bytes())?;
    let row = &report.table.rows[report.chosen];
    let needs_width = !row.cost.fits(&config.budget);
    let (network, width, val, test) = if needs_width {
        let Some(train) = compress_train else {
            return Err(PipelineError::DoesNotFit(format!(
                "no cut fits the budget as it is (the best, '{}', needs width pruning: use depth+width)",
                row.cut.name
            )));
        };
        let dd = ModelDir::new(dir.join("depth"));
        dd.save_network(&chosen)?;
        dd.write_data_record(record)?;
        let small = chosen.graph().clone();
        let mut cfg = CompressConfig::new(Default::default(), train);
        cfg.from = Some(dd.path().to_path_buf());
        cfg.warmup_epochs = Some(0);
        cfg.resume = dir.join("width").join("checkpoints").is_dir();
        let c = compress(&small, splits, budget, cfg, &ModelDir::new(dir.path().join("width")), record)?;
        let net = c.network.clone().ok_or_else(|| PipelineError::Config("compress returned no network".into()))?;
        let (v, t) = (c.accuracy_after.val, c.accuracy_after.test);
        (net, Some(c), v, t)
    } else {
        (chosen, None, report.accuracy.val, report.accuracy.test)
    };
    dir.save_network(&network)?;
    dir.write_json(REPORT_JSON, &report)?;
    Ok(DepthOutcome { depth: report, width, network, val_accuracy: val, test_accuracy: test })
}

/// Writes `report.html` for a finished [`compress`] into `dir` (quantizes the pruned model to report its
/// int8 test accuracy too); returns the page's path.
pub fn write_compress_report(
    graph: &Graph,
    report: &CompressReport,
    splits: &Splits,
    budget: &Budget,
    record: &DataRecord,
    dir: &ModelDir,
) -> Result<std::path::PathBuf> {
    let net = report.network.as_ref().ok_or_else(|| PipelineError::Config("compress returned no network".into()))?;
    let page = crate::fit::compress_report(graph, net, splits, budget, record, None, &CompressRecord::from(report))?;
    dir.write_bytes(crate::fit::REPORT_HTML, crate::report::render(&crate::report::from_fit(&page)).as_bytes())?;
    Ok(dir.join(crate::fit::REPORT_HTML))
}

/// The two candidates of `--method auto` on validation, and which one was kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AutoChoice {
    pub width_val: f64,
    pub width_test: f64,
    pub depth_val: f64,
    pub depth_test: f64,
    /// `width` or `depth+width`.
    pub winner: String,
    /// One sentence: why it won.
    pub why: String,
}

/// `--method auto`: width pruning (DiffPrune from `base`) and depth + width pruning, each to `budget`
/// into `dir/width` and `dir/depth+width`; the one with the better validation accuracy (ties: width,
/// the simpler model) is saved into `dir` with `auto.json` saying which and why.
#[allow(clippy::too_many_arguments)]
pub fn auto(
    graph: &Graph,
    splits: &Splits,
    budget: &Budget,
    base: &Network,
    width: CompressConfig,
    depth_cfg: mcufit_prune::DepthConfig,
    dir: &ModelDir,
    record: &DataRecord,
) -> Result<(AutoChoice, Network)> {
    let train = width.train.clone();
    let w = compress(graph, splits, budget, width, &ModelDir::new(dir.join("width")), record)?;
    let d =
        depth(graph, splits, budget, base, depth_cfg, Some(train), &ModelDir::new(dir.join("depth+width")), record)?;
    let (wv, wt) = (w.accuracy_after.val, w.accuracy_after.test);
    let depth_wins = d.val_accuracy > wv;
    let why = format!(
        "validation accuracy {:.2} % (width) vs {:.2} % (depth+width, cut after '{}'); the test split was not looked at",
        100.0 * wv,
        100.0 * d.val_accuracy,
        d.depth.table.rows[d.depth.chosen].cut.name
    );
    let choice = AutoChoice {
        width_val: wv,
        width_test: wt,
        depth_val: d.val_accuracy,
        depth_test: d.test_accuracy,
        winner: if depth_wins { "depth+width".into() } else { "width".into() },
        why,
    };
    let net = if depth_wins {
        d.network
    } else {
        w.network.clone().ok_or_else(|| PipelineError::Config("compress returned no network".into()))?
    };
    dir.save_network(&net)?;
    dir.write_data_record(record)?;
    dir.write_json("auto.json", &choice)?;
    Ok((choice, net))
}
