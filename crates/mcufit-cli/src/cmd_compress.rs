//! `mcufit compress`: prune a model while it trains until it fits a board or a budget
//! (`mcufit-prune`, Liberis & Lane's differentiable pruning), then check it with the exact cost model.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use mcufit_prune::{compress, summary, CompressConfig, Salience};

use crate::cmd_train::TrainArgs;
use crate::datasets::{load_for, DataRecord};
use crate::resources::BudgetArgs;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SalienceArg {
    /// |BN gamma| x normalised filter norm (free: read from the weights).
    BnWeight,
    /// First-order Taylor estimate of the loss change (one extra backward per pruning step).
    Taylor,
}

#[derive(Args, Debug)]
pub struct CompressCmd {
    /// zoo:NAME, a model .json file, or a model directory.
    pub model: String,
    #[command(flatten)]
    pub budget: BudgetArgs,
    #[command(flatten)]
    pub train: TrainArgs,
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
    /// Fine-tune the pruned model on a blend of the labels and the --from model's predictions
    /// (knowledge distillation): the teacher's weight in the targets, 0 to 1 (0: off).
    #[arg(long, default_value_t = 0.0)]
    pub distill: f64,
    /// Softmax temperature of the teacher's predictions.
    #[arg(long, default_value_t = 1.0)]
    pub distill_temperature: f64,
    /// Print report.json instead of the summary.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &CompressCmd) -> Result<ExitCode> {
    let graph = mcufit_ir::load_model(&args.model).with_context(|| format!("cannot load model '{}'", args.model))?;
    let (board, budget) = args.budget.resolve()?;
    if args.distill > 0.0 && args.from.is_none() {
        anyhow::bail!("--distill needs --from: the trained model it learns from");
    }
    if budget == Default::default() {
        anyhow::bail!("give a budget: --board NAME, or --ram / --flash / --macs / --latency-ms");
    }
    // Reuse the starting model's split so "accuracy before" and "after" are on the same test side.
    let seed = args.from.as_deref().and_then(DataRecord::read).map(|r| r.seed).unwrap_or(args.train.seed);
    let record = DataRecord { spec: args.train.data.clone(), seed };
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from("runs").join(format!("{}-compressed", graph.name)));
    // Feasibility is checked inside `compress` before any data is loaded or training starts.
    let model = mcufit_cost::CostModel::new(&graph, Default::default())?;
    mcufit_prune::check_feasible(&model, &budget, board.as_ref())?;
    let splits = load_for(&graph, &args.train.data, seed)?;
    let mut config = CompressConfig::new(budget, args.train.config(None, false));
    config.board = board;
    config.from = args.from.clone();
    config.out_dir = Some(out.clone());
    config.resume = args.resume;
    config.warmup_epochs = args.warmup_epochs;
    config.finetune_epochs = args.finetune_epochs;
    config.distill = args.distill;
    config.distill_temperature = args.distill_temperature;
    config.salience = match args.salience {
        SalienceArg::BnWeight => Salience::BnWeight,
        SalienceArg::Taylor => Salience::Taylor,
    };
    let report = compress(&graph, &splits, &config)?;
    record.write(&out)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", summary(&report));
        println!("pruned model, report.json and summary.txt in {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}
