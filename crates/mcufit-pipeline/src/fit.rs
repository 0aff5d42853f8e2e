//! `fit`: one call from a model and data to a verified deployment under a budget.
//!
//! Steps, each with its output in the fit directory `DIR`, skipped on a rerun when its output is
//! complete (a step's record is written last, so a killed step runs again, resuming from its
//! checkpoints):
//!
//! 1. **train** the base model into `DIR/base` (or take `from`);
//! 2. **compress** it to the budget into `DIR/compressed` (skipped when the base already fits);
//! 3. **quantize** to int8 and score the deployed (int8 reference) accuracy;
//! 4. **export** `DIR/model.tflite` and the C library `DIR/c/`, link it for the board's RAM/flash;
//! 5. **verify** TFLite Micro, host C and Cortex-M4 outputs against the int8 reference;
//! 6. **report**: `DIR/fit.json` (every figure) and `DIR/report.html`.
//!
//! The defaults ([`Recipe::default`]) are the MNIST schedule of the evaluation protocol
//! (`bench/PROTOCOL.md`, figures in `bench/RESULTS.md`): a 20-epoch base, 15 pruning + 25 fine-tune
//! epochs from it, SGD 0.05 cosine (the fine-tune at half that), batch 64; [`Recipe::for_data`] scales the epochs for small data sets and a time budget.

use std::path::{Path, PathBuf};
use std::time::Instant;

use mcufit_ir::Graph;
use mcufit_prune::{CompressConfig, Salience};
use mcufit_train::{EvalReport, Network, TrainConfig};
use serde::{Deserialize, Serialize};

use crate::budget::{Budget, FitCheck, Footprint};
use crate::deploy::{self, Accuracies, VerifyOptions, VerifyReport};
use crate::error::{PipelineError, Result};
use crate::modeldir::{DataRecord, ModelDir, REPORT_JSON};
use crate::stages::{self, CompressRecord, TrainRecord};

/// The training schedule of a fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    pub base_epochs: usize,
    pub prune_epochs: usize,
    pub finetune_epochs: usize,
    pub batch: usize,
    pub lr: f64,
    pub weight_decay: f64,
    /// Knowledge distillation weight of the fine-tune (0: off).
    pub distill: f64,
    pub calibration: usize,
}

impl Default for Recipe {
    /// The MNIST schedule of the evaluation protocol (`bench/PROTOCOL.md`, setting `mnist-unas`).
    fn default() -> Self {
        Recipe {
            base_epochs: 20,
            prune_epochs: 15,
            finetune_epochs: 25,
            batch: 64,
            lr: 0.05,
            weight_decay: 5e-4,
            distill: 0.0,
            calibration: deploy::DEFAULT_CALIBRATION,
        }
    }
}

impl Recipe {
    /// Total epochs (base + pruning + fine-tune).
    pub fn total_epochs(&self) -> usize {
        self.base_epochs + self.prune_epochs + self.finetune_epochs
    }

    /// Scales every phase by `f` (at least 1 base, 1 pruning and 1 fine-tune epoch).
    pub fn scaled(&self, f: f64) -> Recipe {
        let s = |e: usize| ((e as f64 * f).round() as usize).max(1);
        Recipe {
            base_epochs: s(self.base_epochs),
            prune_epochs: s(self.prune_epochs),
            finetune_epochs: s(self.finetune_epochs),
            ..self.clone()
        }
    }

    /// The default recipe for a data set of `train_examples`, fitted into `time_budget` seconds at
    /// `images_per_sec` when given. The default schedule is the one for 54,000 MNIST images; a data set
    /// under 10,000 examples gets up to twice the epochs (the same schedule would take too few steps).
    pub fn for_data(train_examples: usize, images_per_sec: Option<f64>, time_budget: Option<f64>) -> Recipe {
        let base = Recipe::default();
        let small = (10_000.0 / train_examples.max(1) as f64).sqrt().clamp(1.0, 2.0);
        let r = base.scaled(small);
        match (images_per_sec, time_budget) {
            (Some(ips), Some(secs)) if ips > 0.0 => {
                // Pruning epochs cost about 1.3 plain ones; fine-tune epochs on the smaller model ~0.6.
                let cost = train_examples as f64 / ips
                    * (r.base_epochs as f64 + 1.3 * r.prune_epochs as f64 + 0.6 * r.finetune_epochs as f64);
                // Keep ~15 % of the budget for evaluation, quantization, export and verification.
                let f = (0.85 * secs / cost.max(1e-9)).min(1.0);
                r.scaled(f)
            }
            _ => r,
        }
    }
}

/// How the model is made to fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Differentiable structured (channel) pruning while training.
    #[default]
    Width,
    /// Cut the trained model after a block and put a small head on it (trunk frozen).
    Depth,
    /// Depth pruning, then width pruning of the chosen cut to the budget.
    #[serde(rename = "depth+width")]
    DepthWidth,
}

/// What the user asked for (stored in `DIR/fit.json`: a rerun must ask for the same).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitRequest {
    /// `zoo:NAME`, a model file or directory.
    pub model: String,
    pub data: String,
    pub seed: u64,
    pub budget: Budget,
    /// A trained model directory to start from instead of training a base.
    pub from: Option<PathBuf>,
    #[serde(default)]
    pub method: Method,
    /// The auxiliary head of depth pruning.
    #[serde(default)]
    pub head: mcufit_ir::HeadSpec,
}

/// Everything [`fit`] can be told besides the request.
#[derive(Debug, Clone)]
pub struct FitOptions {
    /// `None`: [`Recipe::for_data`].
    pub recipe: Option<Recipe>,
    /// Seconds for the whole fit (scales the recipe's epochs).
    pub time_budget: Option<f64>,
    pub verify: VerifyOptions,
    /// Skip verification (TFLM, host C, Cortex-M4).
    pub no_verify: bool,
    /// CPU threads (0: all).
    pub threads: usize,
    /// Progress bars and per-epoch lines from the trainer (stderr).
    pub progress: bool,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            recipe: None,
            time_budget: None,
            verify: VerifyOptions::default(),
            no_verify: false,
            threads: 0,
            progress: true,
        }
    }
}

/// One step of the fit, as the report lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRecord {
    pub step: String,
    /// `done`, `reused` (finished by an earlier run), `skipped`.
    pub status: String,
    pub seconds: Option<f64>,
    pub detail: String,
}

pub use mcufit_report::{LayerRow, MemoryStep};

/// Everything a fit measured (`DIR/fit.json`); `report.html` is drawn from it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FitReport {
    pub request: FitRequest,
    pub recipe: Recipe,
    /// Model adaptation and data conversion, said once.
    pub adjustments: Vec<String>,
    pub class_names: Vec<String>,
    pub base: Option<TrainRecord>,
    pub compress: Option<CompressRecord>,
    /// Depth pruning's cut table (every cut's resources and accuracies, the chosen row marked).
    #[serde(default)]
    pub cuts: Option<mcufit_prune::CutTable>,
    /// The unpruned model's footprint.
    pub before: Footprint,
    /// The delivered model's footprint (measured from the Cortex-M link when the tools are there).
    pub after: Footprint,
    pub fit: FitCheck,
    pub accuracy: Option<Accuracies>,
    pub layers: Vec<LayerRow>,
    pub memory: Vec<MemoryStep>,
    pub tflite: Option<PathBuf>,
    pub tflite_bytes: Option<usize>,
    pub c_dir: Option<PathBuf>,
    pub verify: Option<VerifyReport>,
    pub steps: Vec<StepRecord>,
    pub notes: Vec<String>,
    pub seconds: f64,
}

/// Progress events for the caller to render (the library prints nothing itself).
#[derive(Debug, Clone)]
pub enum Event {
    Step { step: String, detail: String },
    Note(String),
}

pub const FIT_JSON: &str = "fit.json";
pub const REPORT_HTML: &str = "report.html";

/// The fit directory's parts.
fn base_dir(out: &Path) -> ModelDir {
    ModelDir::new(out.join("base"))
}
fn compressed_dir(out: &Path) -> ModelDir {
    ModelDir::new(out.join("compressed"))
}

/// Images per second of one short training probe (a throw-away network, 8 steps after 2 warm-up steps).
fn probe_throughput(graph: &Graph, splits: &mcufit_data::Splits, batch: usize, threads: usize) -> Result<f64> {
    let run = |steps: usize| -> Result<f64> {
        let cfg = TrainConfig::new()
            .with_epochs(1)
            .with_batch_size(batch)
            .with_progress(false)
            .with_threads(threads)
            .with_max_steps_per_epoch(Some(steps));
        let t = Instant::now();
        mcufit_train::train(graph, &mcufit_train::Splits { train: &splits.train, val: None }, &cfg)?;
        Ok(t.elapsed().as_secs_f64())
    };
    let warm = run(2)?;
    let full = run(10)?;
    Ok((8 * batch) as f64 / (full - warm).max(1e-3))
}

fn train_config(recipe: &Recipe, epochs: usize, seed: u64, opts: &FitOptions) -> TrainConfig {
    TrainConfig::new()
        .with_epochs(epochs)
        .with_batch_size(recipe.batch)
        .with_lr(recipe.lr)
        .with_weight_decay(recipe.weight_decay)
        .with_seed(seed)
        .with_threads(opts.threads)
        .with_progress(opts.progress)
}

/// Runs (or resumes) a fit into `out`. `graph` is the model already adapted to the data
/// (see [`crate::load_model_for_data`]); `adjustments` are the notes that adaptation made.
pub fn fit(
    request: &FitRequest,
    graph: &Graph,
    splits: &mcufit_data::Splits,
    adjustments: Vec<String>,
    out: &Path,
    opts: &FitOptions,
    events: &mut dyn FnMut(Event),
) -> Result<FitReport> {
    let t_all = Instant::now();
    let dir = ModelDir::new(out);
    // What an earlier run in `out` finished (read once: the request check and the compress step use it).
    let prev: Option<FitReport> = dir.read_json(FIT_JSON)?;
    if let Some(prev) = &prev {
        if prev.request != *request {
            return Err(PipelineError::Config(format!(
                "{} holds a fit of {} on {} for {}; give another --out (or remove it) to fit something else",
                out.display(),
                prev.request.model,
                prev.request.data,
                prev.request.budget.describe()
            )));
        }
    } else if out.is_dir()
        && std::fs::read_dir(out).map_err(|e| PipelineError::io(out, e))?.next().is_some()
        && !out.join("base").is_dir()
        && !out.join("compressed").is_dir()
    {
        return Err(PipelineError::Config(format!(
            "{} exists and is not a fit directory; give a new --out so nothing in it is overwritten",
            out.display()
        )));
    }
    let record = DataRecord { spec: request.data.clone(), seed: request.seed };
    let budget = &request.budget;
    if !budget.is_bounded() {
        return Err(PipelineError::Config(
            "give a budget: --board NAME, or --ram / --flash / --peak / --size / --macs".into(),
        ));
    }
    let before = Footprint::of_graph(graph, budget)?;
    // Infeasible budgets fail here, before anything is written or trained, with the smallest reachable figure.
    let prune_budget = budget.prune_budget(&before)?;
    let cost = mcufit_cost::CostModel::new(graph, Default::default())?;
    mcufit_prune::check_feasible(&cost, &prune_budget, budget.board.as_ref())?;
    let base_fits = budget.check(&before).fits;
    dir.create()?;

    let recipe = match &opts.recipe {
        Some(r) => r.clone(),
        None => {
            let ips = match opts.time_budget {
                Some(_) => Some(probe_throughput(graph, splits, Recipe::default().batch, opts.threads)?),
                None => None,
            };
            Recipe::for_data(splits.train.len(), ips, opts.time_budget)
        }
    };
    let mut steps = Vec::new();
    let mut notes = Vec::new();
    for a in &adjustments {
        events(Event::Note(a.clone()));
    }

    // ---- 1. base
    let (base_net, base_rec, base_path): (Network, Option<TrainRecord>, PathBuf) = match &request.from {
        Some(from) => {
            let d = ModelDir::new(from);
            let net = d.load_network()?;
            if net.graph() != graph {
                return Err(PipelineError::Config(format!(
                    "{} holds model '{}', not the architecture given",
                    from.display(),
                    net.graph().name
                )));
            }
            steps.push(StepRecord {
                step: "train".into(),
                status: "skipped".into(),
                seconds: None,
                detail: format!("base taken from {}", from.display()),
            });
            (net, d.read_json(REPORT_JSON).ok().flatten(), from.clone())
        }
        None => {
            let bd = base_dir(out);
            match bd.read_json::<TrainRecord>(REPORT_JSON)? {
                Some(rec) if bd.has_model() && rec.epochs == recipe.base_epochs => {
                    events(Event::Step {
                        step: "train".into(),
                        detail: "reusing the base trained by an earlier run".into(),
                    });
                    steps.push(StepRecord {
                        step: "train".into(),
                        status: "reused".into(),
                        seconds: Some(rec.train_seconds),
                        detail: format!("{} epochs, test {:.2} %", rec.epochs, 100.0 * rec.test_accuracy),
                    });
                    (bd.load_network()?, Some(rec), bd.path().to_path_buf())
                }
                _ => {
                    events(Event::Step {
                        step: "train".into(),
                        detail: format!("{} epochs on {} examples", recipe.base_epochs, splits.train.len()),
                    });
                    let resume = mcufit_train::recover_checkpoint(bd.join("last"))?
                        && bd.join("last").join("state.json").exists();
                    let cfg = train_config(&recipe, recipe.base_epochs, request.seed, opts).with_resume(resume);
                    let (net, rec) = stages::train(graph, splits, &cfg, &bd, &record)?;
                    steps.push(StepRecord {
                        step: "train".into(),
                        status: "done".into(),
                        seconds: Some(rec.train_seconds),
                        detail: format!("{} epochs, test {:.2} %", rec.epochs, 100.0 * rec.test_accuracy),
                    });
                    (net, Some(rec), bd.path().to_path_buf())
                }
            }
        }
    };

    // ---- 2. compress
    let mut cuts: Option<mcufit_prune::CutTable> = None;
    let (net, compress_rec): (Network, Option<CompressRecord>) = if base_fits {
        let note = "the trained model already fits the budget: nothing to prune".to_string();
        events(Event::Step { step: "compress".into(), detail: note.clone() });
        steps.push(StepRecord { step: "compress".into(), status: "skipped".into(), seconds: None, detail: note });
        (base_net, None)
    } else {
        let cd = compressed_dir(out);
        let prev_cuts = prev.as_ref().and_then(|p| p.cuts.clone());
        match prev.and_then(|p| p.compress) {
            Some(rec) if cd.has_model() && cd.join(REPORT_JSON).exists() => {
                cuts = prev_cuts;
                events(Event::Step {
                    step: "compress".into(),
                    detail: "reusing the pruned model of an earlier run".into(),
                });
                steps.push(StepRecord {
                    step: "compress".into(),
                    status: "reused".into(),
                    seconds: Some(rec.seconds),
                    detail: format!("test {:.2} %", 100.0 * rec.test_accuracy),
                });
                (cd.load_network()?, Some(rec))
            }
            _ if request.method != Method::Width => {
                let head_epochs = recipe.prune_epochs + recipe.finetune_epochs;
                events(Event::Step {
                    step: "compress".into(),
                    detail: format!(
                        "depth pruning: a {} head on every cut, {head_epochs} epochs, trunk frozen",
                        request.head
                    ),
                });
                let mut cfg = mcufit_prune::DepthConfig::new(
                    prune_budget,
                    train_config(&recipe, head_epochs, request.seed, opts),
                );
                cfg.head = request.head.clone();
                cfg.width = request.method == Method::DepthWidth;
                let width_train = cfg.width.then(|| {
                    let mut t = train_config(&recipe, recipe.prune_epochs + recipe.finetune_epochs, request.seed, opts);
                    t.lr *= 0.5;
                    t
                });
                let t = Instant::now();
                let d = stages::depth(graph, splits, budget, &base_net, cfg, width_train, &cd, &record)?;
                let seconds = t.elapsed().as_secs_f64();
                let rec = match &d.width {
                    Some(w) => CompressRecord { seconds, ..CompressRecord::from(w) },
                    None => CompressRecord {
                        epochs: (0, 0, head_epochs),
                        val_accuracy_before: None,
                        test_accuracy_before: None,
                        val_accuracy: d.val_accuracy,
                        test_accuracy: d.test_accuracy,
                        channels: Vec::new(),
                        history: Vec::new(),
                        log: Vec::new(),
                        steps_per_epoch: 0,
                        seconds,
                    },
                };
                let row = &d.depth.table.rows[d.depth.chosen];
                steps.push(StepRecord {
                    step: "compress".into(),
                    status: "done".into(),
                    seconds: Some(seconds),
                    detail: format!(
                        "cut after '{}' + {} head{}; test {:.2} %",
                        row.cut.name,
                        request.head,
                        if d.width.is_some() { ", width-pruned" } else { "" },
                        100.0 * rec.test_accuracy
                    ),
                });
                cuts = Some(d.depth.table.clone());
                (d.network, Some(rec))
            }
            _ => {
                events(Event::Step {
                    step: "compress".into(),
                    detail: format!(
                        "{} pruning + {} fine-tune epochs to {}",
                        recipe.prune_epochs,
                        recipe.finetune_epochs,
                        budget.describe()
                    ),
                });
                let epochs = recipe.prune_epochs + recipe.finetune_epochs;
                let mut cfg = CompressConfig::new(prune_budget, train_config(&recipe, epochs, request.seed, opts));
                cfg.from = Some(base_path.clone());
                cfg.warmup_epochs = Some(0);
                cfg.finetune_epochs = Some(recipe.finetune_epochs);
                cfg.resume = cd.join("checkpoints").is_dir();
                cfg.distill = recipe.distill;
                cfg.salience = Salience::BnWeight;
                let rep = stages::compress(graph, splits, budget, cfg, &cd, &record)?;
                let rec = CompressRecord::from(&rep);
                steps.push(StepRecord {
                    step: "compress".into(),
                    status: "done".into(),
                    seconds: Some(rec.seconds),
                    detail: format!("test {:.2} %", 100.0 * rec.test_accuracy),
                });
                let net = rep.network.ok_or_else(|| PipelineError::Config("compress returned no network".into()))?;
                (net, Some(rec))
            }
        }
    };

    // ---- 3. quantize
    let t = Instant::now();
    events(Event::Step {
        step: "quantize".into(),
        detail: format!("int8, calibrated on {} training samples", recipe.calibration.min(splits.train.len())),
    });
    let q = deploy::quantize(&net, &splits.train, recipe.calibration)?;
    let accuracy = deploy::evaluate_both(&net, &q, &splits.test)?;
    steps.push(StepRecord {
        step: "quantize".into(),
        status: "done".into(),
        seconds: Some(t.elapsed().as_secs_f64()),
        detail: format!(
            "test float {:.2} %, int8 {:.2} %",
            100.0 * accuracy.float.accuracy,
            100.0 * accuracy.int8.accuracy
        ),
    });

    // ---- 4. export + board link
    let t = Instant::now();
    events(Event::Step {
        step: "export".into(),
        detail: "model.tflite and the C library, memory-optimal order".into(),
    });
    let small = net.graph().clone();
    let art = deploy::build(&q, &small)?;
    let tflite_path = out.join("model.tflite");
    deploy::write_tflite(&art, &tflite_path)?;
    let c_dir = out.join("c");
    deploy::write_c(&art, &c_dir)?;
    let mut after = deploy::footprint(&small, &art, budget)?;
    let mut link_detail = "board link not checked".to_string();
    let mut link_error = None;
    match deploy::missing_tool(mcufit_export::verify::Tools::Arm) {
        Some(why) => {
            notes.push(format!("the Cortex-M link was not checked ({why}); RAM and flash code terms are estimates"))
        }
        None if budget.target == crate::budget::Target::C => match deploy::link_for_board(&q, &after, &art, budget)? {
            Ok(fp) => {
                link_detail = format!("links for the Cortex-M4 in {} B RAM / {} B flash", fp.ram(), fp.flash());
                after = fp;
            }
            Err(why) => {
                link_detail = format!("does not link: {why}");
                link_error = Some(why);
            }
        },
        None => notes.push(
            "the .tflite target's code and runtime terms are estimates (TFLM's size depends on its build)".into(),
        ),
    }
    steps.push(StepRecord {
        step: "export".into(),
        status: "done".into(),
        seconds: Some(t.elapsed().as_secs_f64()),
        detail: format!(".tflite {} B; {link_detail}", art.tflite.len()),
    });

    // ---- 5. verify
    let verify = if opts.no_verify {
        steps.push(StepRecord {
            step: "verify".into(),
            status: "skipped".into(),
            seconds: None,
            detail: "--no-verify".into(),
        });
        None
    } else {
        let t = Instant::now();
        events(Event::Step {
            step: "verify".into(),
            detail: format!("TFLite Micro, host C, Cortex-M4 on up to {} real inputs", opts.verify.inputs),
        });
        let v = deploy::verify(&q, &art, splits, opts.verify)?;
        let ran =
            [v.tflm.as_ref().map(|_| "TFLM"), v.c_host.as_ref().map(|_| "host C"), v.m4.as_ref().map(|_| "Cortex-M4")];
        let ran: Vec<&str> = ran.into_iter().flatten().collect();
        steps.push(StepRecord {
            step: "verify".into(),
            status: if v.passed { "done".into() } else { "FAILED".into() },
            seconds: Some(t.elapsed().as_secs_f64()),
            detail: format!(
                "{} on {} inputs: {}",
                ran.join(", "),
                v.inputs,
                if v.passed { "bit-exact" } else { "mismatches" }
            ),
        });
        Some(v)
    };

    let check = match link_error {
        Some(why) => budget.check(&after).with_link_error(why),
        None => budget.check(&after),
    };
    let report = FitReport {
        request: request.clone(),
        recipe,
        adjustments,
        class_names: splits.test.class_names().to_vec(),
        base: base_rec,
        compress: compress_rec.clone(),
        cuts,
        before,
        after,
        fit: check,
        accuracy: Some(accuracy),
        layers: layers(graph, &small, compress_rec.as_ref())?,
        memory: memory_timeline(&small)?,
        tflite: Some(tflite_path),
        tflite_bytes: Some(art.tflite.len()),
        c_dir: Some(c_dir),
        verify,
        steps,
        notes,
        seconds: t_all.elapsed().as_secs_f64(),
    };
    dir.write_json(FIT_JSON, &report)?;
    events(Event::Step { step: "report".into(), detail: out.join(REPORT_HTML).display().to_string() });
    dir.write_bytes(REPORT_HTML, crate::report::render(&crate::report::from_fit(&report)).as_bytes())?;
    Ok(report)
}

/// The delivered model's layers (deployed form: BN and ReLU folded), with channels before pruning.
pub(crate) fn layers(before: &Graph, after: &Graph, compress: Option<&CompressRecord>) -> Result<Vec<LayerRow>> {
    let cm = mcufit_cost::CostModel::new(after, Default::default())?;
    let usage = cm.usage(&cm.sizes(), None);
    let _ = before;
    Ok(usage
        .ops
        .iter()
        .filter(|o| o.kind != "input")
        .map(|o| {
            let ch = compress.and_then(|c| c.channels.iter().find(|l| l.layer == o.name));
            LayerRow {
                name: o.name.clone(),
                kind: o.kind.to_string(),
                output: o.shape.to_string(),
                channels_before: ch.map(|l| l.before),
                channels_after: ch.map_or(o.shape.c, |l| l.after),
                params: o.params as u64,
                macs: o.macs as u64,
            }
        })
        .collect())
}

/// Live bytes at each op of the memory-optimal order.
pub fn memory_timeline(graph: &Graph) -> Result<Vec<MemoryStep>> {
    let cm = mcufit_cost::CostModel::new(graph, Default::default())?;
    let usage = cm.usage(&cm.sizes(), None);
    let plan = &usage.plan;
    Ok(plan
        .order
        .iter()
        .zip(&plan.steps)
        .map(|(&op, &live)| MemoryStep { op: usage.ops[op].name.clone(), live_bytes: live })
        .collect())
}

/// The test accuracy of the delivered model as the device computes it.
pub fn deployed_accuracy(r: &FitReport) -> Option<&EvalReport> {
    r.accuracy.as_ref().map(|a| &a.int8)
}

/// The report of a `compress` run alone (no export or verification): the same page as a fit's, from
/// the compress record, the unpruned and pruned footprints, and the pruned model's float and int8
/// test accuracy.
pub fn compress_report(
    graph: &Graph,
    pruned: &Network,
    splits: &mcufit_data::Splits,
    budget: &Budget,
    record: &DataRecord,
    from: Option<PathBuf>,
    rec: &CompressRecord,
) -> Result<FitReport> {
    let small = pruned.graph().clone();
    let q = deploy::quantize(pruned, &splits.train, deploy::DEFAULT_CALIBRATION)?;
    let accuracy = deploy::evaluate_both(pruned, &q, &splits.test)?;
    let after = Footprint::of_graph(&small, budget)?;
    let (w, p, f) = rec.epochs;
    Ok(FitReport {
        request: FitRequest {
            model: graph.name.clone(),
            data: record.spec.clone(),
            seed: record.seed,
            budget: budget.clone(),
            from,
            method: Method::Width,
            head: Default::default(),
        },
        recipe: Recipe { base_epochs: w, prune_epochs: p, finetune_epochs: f, ..Recipe::default() },
        adjustments: Vec::new(),
        class_names: splits.test.class_names().to_vec(),
        base: None,
        compress: Some(rec.clone()),
        cuts: None,
        before: Footprint::of_graph(graph, budget)?,
        fit: budget.check(&after),
        after,
        accuracy: Some(accuracy),
        layers: layers(graph, &small, Some(rec))?,
        memory: memory_timeline(&small)?,
        tflite: None,
        tflite_bytes: None,
        c_dir: None,
        verify: None,
        steps: vec![StepRecord {
            step: "compress".into(),
            status: "done".into(),
            seconds: Some(rec.seconds),
            detail: format!("{w} warm-up + {p} pruning + {f} fine-tune epochs"),
        }],
        notes: vec!["compress alone: not exported or verified (mcufit export, or mcufit fit for every step)".into()],
        seconds: rec.seconds,
    })
}
