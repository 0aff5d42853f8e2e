//! `mcufit train` and `mcufit eval`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use mcufit_pipeline::tasks::{eval_dir, EvalOutcome, EvalSplit};
use mcufit_pipeline::{stages, DataRecord, ModelDir};
use serde_json::json;

use crate::args::{say_adjustments, DirData, DistillArgs, TrainArgs};

#[derive(Args, Debug)]
pub struct TrainCmd {
    /// zoo:NAME, a model .json file, a model directory (its architecture, trained afresh: e.g. a
    /// search trial or a pruned model retrained from scratch), or a float .tflite / .onnx (training
    /// starts from its weights).
    pub model: String,
    #[command(flatten)]
    pub train: TrainArgs,
    /// Output directory (default runs/MODEL_NAME): the best model (model.json + weights), checkpoints, report.json.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue an interrupted run in --out from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// A trained model directory to learn from (knowledge distillation; give --distill W). It must
    /// have been trained on the same data and split (--data, --seed), so it has not seen the
    /// validation or test samples.
    #[arg(long)]
    pub teacher: Option<PathBuf>,
    #[command(flatten)]
    pub distill: DistillArgs,
    /// Print the final report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn train(args: &TrainCmd) -> Result<ExitCode> {
    let config = args.train.config()?;
    let (graph, splits, adj, base) =
        mcufit_pipeline::load_base_for_data(&args.model, &args.train.data, &args.train.load_options(args.train.seed))?;
    say_adjustments(&adj);
    let out = ModelDir::new(args.out.clone().unwrap_or_else(|| PathBuf::from("runs").join(&graph.name)));
    if args.resume && !mcufit_pipeline::stages::has_checkpoint(&out.join("last"))? {
        anyhow::bail!("--resume: {} holds no checkpoint to continue (no last/state.json)", out.path().display());
    }
    if !args.resume && out.has_model() {
        anyhow::bail!(
            "{} already holds a trained model; give another --out, or --resume to continue its training",
            out.path().display()
        );
    }
    let record = DataRecord { spec: args.train.data.clone(), seed: args.train.seed };
    let distill = match (&args.teacher, args.distill.get()) {
        (None, None) => None,
        (None, Some(_)) => anyhow::bail!("--distill needs --teacher: the trained model directory it learns from"),
        (Some(t), None) => {
            anyhow::bail!("--teacher {} needs --distill W (e.g. 0.5): the teacher's weight", t.display())
        }
        (Some(t), Some((weight, temperature))) => {
            Some(stages::Distillation { teacher: ModelDir::new(t.clone()), weight, temperature })
        }
    };
    let (_, rec) =
        stages::train_from(&graph, &splits, &config.with_resume(args.resume), &out, &record, base, distill.as_ref())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rec)?);
    } else {
        println!(
            "{}: test accuracy {:.2} % on {} examples ({} train, {} val) after {:.0} s; model in {}",
            graph.name,
            100.0 * rec.test_accuracy,
            rec.test_examples,
            rec.train_examples,
            rec.val_examples,
            rec.train_seconds,
            out.path().display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum SplitArg {
    Test,
    All,
}

#[derive(Args, Debug)]
pub struct EvalCmd {
    /// A model directory written by train, compress or fit, or a .tflite / .onnx file (int8: the
    /// bit-exact int8 reference on the data's raw features; needs --data).
    pub model_dir: PathBuf,
    #[command(flatten)]
    pub data: DirData,
    /// Which samples: test (the test split) or all (every split: for a model trained elsewhere on a
    /// data folder that is itself a test set).
    #[arg(long, value_enum, default_value_t = SplitArg::Test)]
    pub split: SplitArg,
    #[arg(long)]
    pub json: bool,
    /// Also quantize to int8 (as `mcufit export` does) and report the int8 reference
    /// interpreter's accuracy, i.e. what the deployed model scores, next to the float one.
    #[arg(long)]
    pub int8: bool,
    /// Training samples calibrating the int8 activation ranges (same default as export).
    #[arg(long, default_value_t = mcufit_pipeline::deploy::DEFAULT_CALIBRATION)]
    pub calibration: usize,
}

pub fn eval(args: &EvalCmd) -> Result<ExitCode> {
    let split = match args.split {
        SplitArg::Test => EvalSplit::Test,
        SplitArg::All => EvalSplit::All,
    };
    let r = eval_dir(&args.model_dir, args.data.data.as_deref(), args.data.seed, args.int8, args.calibration, split)?;
    if !args.json {
        for n in &r.notes {
            eprintln!("note: {n}");
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&eval_json(&r))?);
    } else {
        print_eval(&r);
    }
    Ok(ExitCode::SUCCESS)
}

fn eval_json(r: &EvalOutcome) -> serde_json::Value {
    let Some(main) = r.int8.as_ref().or(r.float.as_ref()) else { return json!({"model": r.model}) };
    let float = r.float.as_ref();
    let per_class: serde_json::Map<String, serde_json::Value> = main
        .per_class_accuracy
        .iter()
        .enumerate()
        .map(|(c, a)| {
            let name = r.class_names.get(c).cloned().unwrap_or_else(|| c.to_string());
            let fa = float.and_then(|f| f.per_class_accuracy.get(c));
            (name, json!({"accuracy": a, "float_accuracy": fa, "examples": main.class_counts[c]}))
        })
        .collect();
    json!({"model": r.model, "data": r.data, "split": r.split, "int8": r.int8.is_some(), "calibration_samples": r.calibration,
           "examples": main.examples, "accuracy": main.accuracy, "loss": main.loss,
           "float_accuracy": float.map(|f| f.accuracy), "float_loss": float.map(|f| f.loss),
           "per_class": per_class, "confusion": main.confusion, "notes": r.notes})
}

fn print_eval(r: &EvalOutcome) {
    let name = |c: usize| r.class_names.get(c).cloned().unwrap_or_else(|| c.to_string());
    let split = match r.split {
        EvalSplit::Test => "test",
        EvalSplit::All => "all-splits",
    };
    match (&r.int8, &r.float) {
        (Some(q), Some(f)) => {
            println!(
                "{} on {}: int8 (deployed) {split} accuracy {:.2} %, float {:.2} % ({} examples; int8 calibrated on {} training samples)",
                r.model,
                r.data,
                100.0 * q.accuracy,
                100.0 * f.accuracy,
                q.examples,
                r.calibration
            );
            println!("{:<12} {:>9} {:>9} {:>9}", "class", "examples", "int8", "float");
            for (c, a) in q.per_class_accuracy.iter().enumerate() {
                let fa = f.per_class_accuracy.get(c).copied().unwrap_or(0.0);
                println!("{:<12} {:>9} {:>7.1} % {:>7.1} %", name(c), q.class_counts[c], 100.0 * a, 100.0 * fa);
            }
        }
        (Some(q), None) => {
            println!(
                "{} on {}: int8 {split} accuracy {:.2} % ({} examples, bit-exact int8 reference)",
                r.model,
                r.data,
                100.0 * q.accuracy,
                q.examples
            );
            println!("{:<12} {:>9} {:>9}", "class", "examples", "accuracy");
            for (c, a) in q.per_class_accuracy.iter().enumerate() {
                println!("{:<12} {:>9} {:>7.1} %", name(c), q.class_counts[c], 100.0 * a);
            }
        }
        (None, Some(f)) => {
            println!(
                "{} on {}: {split} accuracy {:.2} % ({} examples, loss {:.4})",
                r.model,
                r.data,
                100.0 * f.accuracy,
                f.examples,
                f.loss
            );
            println!("{:<12} {:>9} {:>9}", "class", "examples", "accuracy");
            for (c, a) in f.per_class_accuracy.iter().enumerate() {
                println!("{:<12} {:>9} {:>8.1} %", name(c), f.class_counts[c], 100.0 * a);
            }
        }
        (None, None) => println!("{}: nothing evaluated", r.model),
    }
}
