//! `mcufit compress`: prune a model while it trains until it fits a board or a budget
//! (differentiable structured pruning, `mcufit-prune`); `--method uniform|l1` runs the baselines at
//! the same budget.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, ValueEnum};
use mcufit_pipeline::config::BaselineKind;
use mcufit_pipeline::config::{
    compress_summary as summary, CompressConfig, DepthConfig, HeadSpec, Network, Salience, TrainConfig,
};
use mcufit_pipeline::{stages, DataRecord, ModelDir};

use crate::args::{say_adjustments, BudgetArgs, DistillArgs, TrainArgs};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SalienceArg {
    /// |BN gamma| x normalised filter norm (free: read from the weights).
    BnWeight,
    /// First-order Taylor estimate of the loss change (one extra backward per pruning step).
    Taylor,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Method {
    /// Differentiable structured pruning under the budget (DiffPrune).
    Width,
    /// Baseline: one width multiplier for every layer, trained from scratch.
    Uniform,
    /// Baseline: smallest-L1 filters of the --from model removed in one shot, then fine-tuned.
    L1,
    /// Depth pruning: cut the --from model after a block, put a small head on it (--head), train the
    /// heads with the trunk frozen, keep the best cut (validation) that fits.
    Depth,
    /// Depth pruning where a cut that width pruning can bring under the budget is a candidate too;
    /// the chosen cut is then width-pruned to the budget.
    #[value(name = "depth+width")]
    DepthWidth,
    /// Width and depth+width from the same --from model, each to the budget; keeps the one with the
    /// better validation accuracy and says why.
    Auto,
}

#[derive(Args, Debug)]
pub struct CompressCmd {
    /// zoo:NAME, a model .json file, a model directory, or a float .tflite / .onnx (its weights are
    /// the trained starting point, as with --from; saved to OUT/imported).
    pub model: String,
    #[command(flatten)]
    pub budget: BudgetArgs,
    #[command(flatten)]
    pub train: TrainArgs,
    /// Default: auto with --from (width and depth+width from the trained model, the better kept on
    /// validation); width without --from (depth pruning needs a trained model to cut).
    #[arg(long, value_enum)]
    pub method: Option<Method>,
    /// A trained model directory of the same architecture to start from (its split seed is reused).
    #[arg(long)]
    pub from: Option<PathBuf>,
    /// Output directory (default runs/MODEL_NAME-compressed): pruned model, report.json, summary.txt.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue an interrupted run in --out.
    #[arg(long)]
    pub resume: bool,
    #[arg(long, value_enum, default_value_t = SalienceArg::BnWeight)]
    pub salience: SalienceArg,
    /// Epochs of plain training before masks switch on (default: 0 with --from, else a quarter).
    #[arg(long)]
    pub warmup_epochs: Option<usize>,
    /// Epochs of fine-tuning the pruned, physically smaller model at the end (default: 30 % of --epochs).
    #[arg(long)]
    pub finetune_epochs: Option<usize>,
    /// Fine-tune the pruned model against the --from model's predictions (the teacher).
    #[command(flatten)]
    pub distill: DistillArgs,
    /// Auxiliary head for depth pruning (depth, depth+width, auto): ds:32,16 (default), gap, or conv:C.
    #[arg(long)]
    pub head: Option<String>,
    /// Print report.json instead of the summary.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &CompressCmd) -> Result<ExitCode> {
    let budget = args.budget.spec().resolve()?;
    if !budget.is_bounded() {
        anyhow::bail!("give a budget: --board NAME, or --ram / --flash / --peak / --size / --macs / --latency-ms");
    }
    let imported = mcufit_pipeline::imported::is_import_path(&args.model);
    if imported && args.from.is_some() {
        anyhow::bail!("{} is itself the trained starting point: drop --from", args.model);
    }
    if args.distill.get().is_some() && args.from.is_none() && !imported {
        anyhow::bail!("--distill needs --from: the trained model it learns from");
    }
    // Reuse the starting model's split so "accuracy before" and "after" are on the same test side.
    let seed = match &args.from.as_ref().map(ModelDir::new) {
        Some(d) => d.data_record()?.map_or(args.train.seed, |r| r.seed),
        None => args.train.seed,
    };
    let record = DataRecord { spec: args.train.data.clone(), seed };
    let (graph, splits, adj, base) =
        mcufit_pipeline::load_base_for_data(&args.model, &args.train.data, &args.train.load_options(seed))?;
    say_adjustments(&adj);
    let out = ModelDir::new(
        args.out.clone().unwrap_or_else(|| PathBuf::from("runs").join(format!("{}-compressed", graph.name))),
    );
    // Width keeps its checkpoints in OUT/checkpoints, depth its heads' in OUT/heads, auto both
    // under OUT/width and OUT/depth+width.
    let resumable = ["checkpoints", "heads", "width/checkpoints", "depth+width/heads"];
    if args.resume && !resumable.iter().any(|d| out.join(d).is_dir()) {
        anyhow::bail!("--resume: {} holds no compress checkpoints to continue", out.path().display());
    }
    if !args.resume && out.has_model() {
        anyhow::bail!("{} already holds a model; give another --out, or --resume to continue", out.path().display());
    }
    // An imported float model is the trained starting point: saved as a model directory, it is `--from`.
    let from = match &base {
        Some(net) => Some(stages::save_base(net, &ModelDir::new(out.join("imported")), &record)?),
        None => args.from.clone(),
    };
    let from_dir = from.as_ref().map(ModelDir::new);
    let train = args.train.config()?;
    let method = args.method.unwrap_or(if from.is_some() { Method::Auto } else { Method::Width });
    if args.head.is_some() && !matches!(method, Method::Depth | Method::DepthWidth | Method::Auto) {
        anyhow::bail!(
            "--head applies to depth pruning (--method depth, depth+width or auto), not to --method {}",
            format!("{method:?}").to_lowercase()
        );
    }
    if method == Method::Auto {
        let (base, mut depth) = depth_setup(
            args,
            from_dir.as_ref(),
            &train,
            "auto needs --from: the trained model both methods start from",
        )?;
        depth.width = true;
        let mut width = CompressConfig::new(Default::default(), train);
        width.from = from.clone();
        width.resume = args.resume;
        width.finetune_epochs = args.finetune_epochs;
        let (choice, _) = stages::auto(&graph, &splits, &budget, &base, width, depth, &out, &record)?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&choice)?);
        } else {
            println!("auto: kept {} ({}); model in {}", choice.winner, choice.why, out.path().display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    if matches!(method, Method::Depth | Method::DepthWidth) {
        let (base, mut cfg) =
            depth_setup(args, from_dir.as_ref(), &train, "depth needs --from: the trained model whose cuts get heads")?;
        cfg.width = method == Method::DepthWidth;
        cfg.finetune_epochs = args.finetune_epochs.unwrap_or(0);
        let width_train = (method == Method::DepthWidth).then_some(train);
        let r = stages::depth(&graph, &splits, &budget, &base, cfg, width_train, &out, &record)?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&r.depth)?);
        } else {
            print!("{}", r.depth.table.summary());
            if let Some(w) = &r.width {
                print!("{}", summary(w));
            }
            println!(
                "delivered: validation {:.2} %, test {:.2} %; model in {}",
                100.0 * r.val_accuracy,
                100.0 * r.test_accuracy,
                out.path().display()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if method != Method::Width {
        let base = from_dir.as_ref().map(|d| d.load_network()).transpose()?;
        let kind = if method == Method::Uniform { BaselineKind::Uniform } else { BaselineKind::L1 };
        if kind == BaselineKind::L1 && base.is_none() {
            anyhow::bail!("--method l1 needs --from: the trained model whose filters it removes");
        }
        let distill = args.distill.get();
        let r = stages::baseline(kind, &graph, &splits, &budget, base.as_ref(), &train, distill, &out, &record)?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&r)?);
        } else {
            println!(
                "{:?}: sizes {:?}: peak {:.0} B, weights {:.0} B, MACs {:.3} M; test accuracy {:.2} % ({} epochs, {:.0} s); model in {}",
                kind,
                r.sizes,
                r.usage.peak_memory,
                r.usage.model_bytes,
                r.usage.macs / 1e6,
                100.0 * r.test_accuracy,
                r.epochs,
                r.seconds,
                out.path().display()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut config = CompressConfig::new(Default::default(), train);
    config.from = from.clone();
    config.resume = args.resume;
    config.warmup_epochs = args.warmup_epochs;
    config.finetune_epochs = args.finetune_epochs;
    config.distill = args.distill.distill;
    config.distill_temperature = args.distill.distill_temperature;
    config.salience = match args.salience {
        SalienceArg::BnWeight => Salience::BnWeight,
        SalienceArg::Taylor => Salience::Taylor,
    };
    let report = stages::compress(&graph, &splits, &budget, config, &out, &record)?;
    let page = stages::write_compress_report(&graph, &report, &splits, &budget, &record, &out)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", summary(&report));
        println!("pruned model, report.json and summary.txt in {}; report: {}", out.path().display(), page.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The trained `--from` network and a depth configuration with the `--head` (checked before
/// anything is written); `missing_from` completes "--method ..." when there is no `--from`.
fn depth_setup(
    args: &CompressCmd,
    from: Option<&ModelDir>,
    train: &TrainConfig,
    missing_from: &str,
) -> Result<(Network, DepthConfig)> {
    let head: HeadSpec =
        args.head.as_deref().unwrap_or("ds:32,16").parse().map_err(|e| anyhow::anyhow!("--head: {e}"))?;
    let Some(from) = from else {
        anyhow::bail!("--method {missing_from}");
    };
    let base = from.load_network()?;
    let mut cfg = DepthConfig::new(Default::default(), train.clone());
    cfg.head = head;
    cfg.train.resume = args.resume;
    Ok((base, cfg))
}
