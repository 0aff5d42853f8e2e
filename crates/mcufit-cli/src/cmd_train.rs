//! `mcufit train` and `mcufit eval`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use mcufit_train::{default_device, evaluate, EvalReport, LrSchedule, Network, OptimizerKind, TrainConfig};
use serde_json::json;

use crate::datasets::{load_for, DataRecord, DEFAULT_DATA};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Optimizer {
    Sgd,
    Adam,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Schedule {
    Cosine,
    Step,
    Constant,
}

/// Training flags shared by `train` and `compress`.
#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// Data: mnist:DIR, fashion-mnist:DIR, cifar10:DIR, images:DIR, speech-commands:DIR, or digits (built in).
    #[arg(long, default_value = DEFAULT_DATA)]
    pub data: String,
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Peak learning rate (default: 0.05 for SGD, 0.002 for Adam).
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long, value_enum, default_value_t = Optimizer::Sgd)]
    pub optimizer: Optimizer,
    #[arg(long, value_enum, default_value_t = Schedule::Cosine)]
    pub schedule: Schedule,
    #[arg(long, default_value_t = 5e-4)]
    pub weight_decay: f64,
    /// Seed for weights, data split, shuffling and augmentation.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// CPU threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Train without data augmentation.
    #[arg(long)]
    pub no_augment: bool,
    /// Cap on steps per epoch, for quick runs.
    #[arg(long)]
    pub max_steps: Option<usize>,
}

impl TrainArgs {
    pub fn config(&self, out_dir: Option<&Path>, resume: bool) -> TrainConfig {
        let (optimizer, lr) = match self.optimizer {
            Optimizer::Sgd => (OptimizerKind::Sgd { momentum: 0.9, nesterov: false }, self.lr.unwrap_or(0.05)),
            Optimizer::Adam => (OptimizerKind::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8 }, self.lr.unwrap_or(0.002)),
        };
        let schedule = match self.schedule {
            Schedule::Cosine => LrSchedule::Cosine { warmup_epochs: 0, min_ratio: 0.0 },
            Schedule::Step => LrSchedule::Step { every: (self.epochs / 3).max(1), gamma: 0.1 },
            Schedule::Constant => LrSchedule::Constant,
        };
        TrainConfig::new()
            .with_epochs(self.epochs)
            .with_batch_size(self.batch)
            .with_lr(lr)
            .with_optimizer(optimizer)
            .with_schedule(schedule)
            .with_weight_decay(self.weight_decay)
            .with_seed(self.seed)
            .with_out_dir(out_dir.map(|p| p.display().to_string()))
            .with_resume(resume)
            .with_augment(!self.no_augment)
            .with_threads(self.threads)
            .with_max_steps_per_epoch(self.max_steps)
    }
}

#[derive(Args, Debug)]
pub struct TrainCmd {
    /// zoo:NAME, a model .json file, or a model directory.
    pub model: String,
    #[command(flatten)]
    pub train: TrainArgs,
    /// Output directory (default runs/MODEL_NAME): the best model (model.json + weights), checkpoints, report.json.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue an interrupted run in --out from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Print the final report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn train(args: &TrainCmd) -> Result<ExitCode> {
    let graph = mcufit_ir::load_model(&args.model).with_context(|| format!("cannot load model '{}'", args.model))?;
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from("runs").join(&graph.name));
    let record = DataRecord { spec: args.train.data.clone(), seed: args.train.seed };
    if args.resume {
        if let Some(prev) = DataRecord::read(&out) {
            if prev != record {
                anyhow::bail!("--resume: {} was trained on {prev:?}, not {record:?}", out.display());
            }
        }
    }
    let splits = load_for(&graph, &args.train.data, args.train.seed)?;
    let config = args.train.config(Some(&out), args.resume);
    record.write(&out)?;
    let start = Instant::now();
    let report = mcufit_train::train(
        &graph,
        &mcufit_train::Splits { train: &splits.train, val: Some(&splits.val) },
        &config,
    )?;
    let train_seconds = start.elapsed().as_secs_f64();
    report.network.save(&out).with_context(|| format!("cannot save the model to {}", out.display()))?;
    let test = evaluate(&report.network, &splits.test, 256)?;
    let summary = json!({
        "model": graph.name,
        "data": record,
        "train_examples": splits.train.len(),
        "val_examples": splits.val.len(),
        "test_examples": splits.test.len(),
        "epochs": args.train.epochs,
        "train_seconds": train_seconds,
        "summary": serde_json::to_value(&report.summary)?,
        "test_accuracy": test.accuracy,
        "test_loss": test.loss,
    });
    std::fs::write(out.join("report.json"), serde_json::to_string_pretty(&summary)?)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "{}: test accuracy {:.2} % on {} examples ({} train, {} val) after {:.0} s; model in {}",
            graph.name,
            100.0 * test.accuracy,
            splits.test.len(),
            splits.train.len(),
            splits.val.len(),
            train_seconds,
            out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct EvalCmd {
    /// A model directory written by train or compress.
    pub model_dir: PathBuf,
    /// Data spec (default: the one the model was trained on, from its data.json).
    #[arg(long)]
    pub data: Option<String>,
    /// Split seed (default: the training seed from data.json, so the test side is the same).
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long)]
    pub json: bool,
    /// Also quantize to int8 (as `mcufit export` does) and report the int8 reference
    /// interpreter's accuracy, i.e. what the deployed model scores, next to the float one.
    #[arg(long)]
    pub int8: bool,
    /// Training samples calibrating the int8 activation ranges (same default as export).
    #[arg(long, default_value_t = 200)]
    pub calibration: usize,
}

pub fn eval(args: &EvalCmd) -> Result<ExitCode> {
    let record = DataRecord::read(&args.model_dir);
    let spec = args
        .data
        .clone()
        .or_else(|| record.as_ref().map(|r| r.spec.clone()))
        .context("no --data given and the model directory has no data.json saying what it was trained on")?;
    let seed = args.seed.or(record.as_ref().map(|r| r.seed)).unwrap_or(42);
    let network = Network::load(&args.model_dir, &default_device())
        .with_context(|| format!("cannot load a trained model from {}", args.model_dir.display()))?;
    let splits = load_for(network.graph(), &spec, seed)?;
    let report = evaluate(&network, &splits.test, 256)?;
    if args.int8 {
        let q = crate::cmd_export::quantize_network(&network, &splits.train, args.calibration)?;
        let int8 = crate::cmd_export::int8_eval(&q, &splits.test)?;
        print_eval_int8(network.graph().name.as_str(), &spec, splits.test.class_names(), &report, &int8, args)?;
        return Ok(ExitCode::SUCCESS);
    }
    print_eval(network.graph().name.as_str(), &spec, splits.test.class_names(), &report, args.json)?;
    Ok(ExitCode::SUCCESS)
}

/// `eval --int8`: the deployed (int8 reference) accuracy first, the float one beside it.
fn print_eval_int8(
    model: &str,
    spec: &str,
    class_names: &[String],
    float: &EvalReport,
    int8: &crate::cmd_export::Int8Eval,
    args: &EvalCmd,
) -> Result<()> {
    let name = |c: usize| class_names.get(c).cloned().unwrap_or_else(|| c.to_string());
    if args.json {
        let per_class: serde_json::Map<String, serde_json::Value> = int8
            .per_class_accuracy
            .iter()
            .enumerate()
            .map(|(c, a)| {
                let f = float.per_class_accuracy.get(c).copied().unwrap_or(0.0);
                (name(c), json!({"accuracy": a, "float_accuracy": f, "examples": int8.class_counts[c]}))
            })
            .collect();
        let v = json!({"model": model, "data": spec, "int8": true, "calibration_samples": args.calibration,
                       "examples": int8.examples, "accuracy": int8.accuracy, "float_accuracy": float.accuracy,
                       "float_loss": float.loss, "per_class": per_class, "confusion": int8.confusion});
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "{model} on {spec}: int8 (deployed) test accuracy {:.2} %, float {:.2} % ({} examples; int8 calibrated on {} training samples)",
        100.0 * int8.accuracy,
        100.0 * float.accuracy,
        int8.examples,
        args.calibration
    );
    println!("{:<12} {:>9} {:>9} {:>9}", "class", "examples", "int8", "float");
    for (c, a) in int8.per_class_accuracy.iter().enumerate() {
        let f = float.per_class_accuracy.get(c).copied().unwrap_or(0.0);
        println!("{:<12} {:>9} {:>7.1} % {:>7.1} %", name(c), int8.class_counts[c], 100.0 * a, 100.0 * f);
    }
    Ok(())
}

pub fn print_eval(model: &str, spec: &str, class_names: &[String], r: &EvalReport, as_json: bool) -> Result<()> {
    let name = |c: usize| class_names.get(c).cloned().unwrap_or_else(|| c.to_string());
    if as_json {
        let per_class: serde_json::Map<String, serde_json::Value> = r
            .per_class_accuracy
            .iter()
            .enumerate()
            .map(|(c, a)| (name(c), json!({"accuracy": a, "examples": r.class_counts[c]})))
            .collect();
        let v = json!({"model": model, "data": spec, "examples": r.examples, "accuracy": r.accuracy,
                       "loss": r.loss, "per_class": per_class, "confusion": r.confusion});
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("{model} on {spec}: test accuracy {:.2} % ({} examples, loss {:.4})", 100.0 * r.accuracy, r.examples, r.loss);
    println!("{:<12} {:>9} {:>9}", "class", "examples", "accuracy");
    for (c, a) in r.per_class_accuracy.iter().enumerate() {
        println!("{:<12} {:>9} {:>8.1} %", name(c), r.class_counts[c], 100.0 * a);
    }
    Ok(())
}
