//! Flags shared by several commands, turned into the pipeline's types (the one parser of each).

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use mcufit_pipeline::config::{EngineKind, LrSchedule, OptimizerKind, TrainConfig};
use mcufit_pipeline::{BudgetSpec, Target, DEFAULT_DATA};

/// Extra board profiles.
#[derive(Args, Debug, Clone, Default)]
pub struct BoardsArgs {
    /// Extra board profiles (TOML, same form as the built-in boards.toml).
    #[arg(long, value_name = "FILE")]
    pub boards: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum, Default)]
pub enum TargetArg {
    /// mcufit's standalone C library.
    #[default]
    C,
    /// A .tflite run by TensorFlow Lite Micro.
    Tflite,
}

/// A board and/or limits. `--ram`/`--flash` bound the totals on the target (arena + scratch + stack +
/// runtime; weights + requantization + code); `--peak`/`--size` bound the activation peak and the
/// weight bytes alone, as the papers count them.
#[derive(Args, Debug, Clone, Default)]
pub struct BudgetArgs {
    /// Target board (see `mcufit boards`): its SRAM and flash bound RAM and flash in total.
    #[arg(long)]
    pub board: Option<String>,
    /// Total RAM on the target, e.g. 64KiB (overrides the board's SRAM).
    #[arg(long, value_name = "BYTES", allow_hyphen_values = true)]
    pub ram: Option<String>,
    /// Total flash on the target, e.g. 256KiB (overrides the board's flash).
    #[arg(long, value_name = "BYTES", allow_hyphen_values = true)]
    pub flash: Option<String>,
    /// Activation peak alone (the arena), e.g. 2500.
    #[arg(long, value_name = "BYTES", allow_hyphen_values = true)]
    pub peak: Option<String>,
    /// Weight bytes alone (int8 weights + int32 biases), e.g. 4500.
    #[arg(long, value_name = "BYTES", allow_hyphen_values = true)]
    pub size: Option<String>,
    /// MAC limit, e.g. 5M.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub macs: Option<String>,
    /// Latency limit in milliseconds (needs --board for the clock and cycle model).
    #[arg(long, value_name = "MS", allow_hyphen_values = true)]
    pub latency_ms: Option<String>,
    /// Stack reserved in RAM (default 4KiB).
    #[arg(long, value_name = "BYTES")]
    pub stack: Option<String>,
    /// Deployment target whose runtime counts against RAM and flash.
    #[arg(long, value_enum, default_value_t = TargetArg::C)]
    pub target: TargetArg,
    #[command(flatten)]
    pub boards: BoardsArgs,
}

impl BudgetArgs {
    pub fn spec(&self) -> BudgetSpec {
        BudgetSpec {
            board: self.board.clone(),
            boards_file: self.boards.boards.clone(),
            ram: self.ram.clone(),
            flash: self.flash.clone(),
            peak: self.peak.clone(),
            size: self.size.clone(),
            macs: self.macs.clone(),
            latency_ms: self.latency_ms.clone(),
            stack: self.stack.clone(),
            target: match self.target {
                TargetArg::C => Target::C,
                TargetArg::Tflite => Target::Tflite,
            },
        }
    }
}

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
    /// Keep at most this many samples per split, for quick runs.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Forward/backward code: auto (mcufit's CPU engine where it applies, burn otherwise) or
    /// burn (burn's autodiff everywhere: the reference, for comparisons).
    #[arg(long, value_enum, default_value_t = Engine::Auto)]
    pub engine: Engine,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Auto,
    Burn,
}

impl TrainArgs {
    pub fn config(&self) -> anyhow::Result<TrainConfig> {
        if self.epochs == 0 {
            anyhow::bail!("--epochs must be at least 1");
        }
        let (optimizer, lr) = match self.optimizer {
            Optimizer::Sgd => (OptimizerKind::Sgd { momentum: 0.9, nesterov: false }, self.lr.unwrap_or(0.05)),
            Optimizer::Adam => (OptimizerKind::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8 }, self.lr.unwrap_or(0.002)),
        };
        let schedule = match self.schedule {
            Schedule::Cosine => LrSchedule::Cosine { warmup_epochs: 0, min_ratio: 0.0 },
            Schedule::Step => LrSchedule::Step { every: (self.epochs / 3).max(1), gamma: 0.1 },
            Schedule::Constant => LrSchedule::Constant,
        };
        Ok(TrainConfig::new()
            .with_epochs(self.epochs)
            .with_batch_size(self.batch)
            .with_lr(lr)
            .with_optimizer(optimizer)
            .with_schedule(schedule)
            .with_weight_decay(self.weight_decay)
            .with_seed(self.seed)
            .with_augment(!self.no_augment)
            .with_threads(self.threads)
            .with_max_steps_per_epoch(self.max_steps)
            .with_engine(match self.engine {
                Engine::Auto => EngineKind::Auto,
                Engine::Burn => EngineKind::Burn,
            }))
    }

    pub fn load_options(&self, seed: u64) -> mcufit_pipeline::config::LoadOptions {
        mcufit_pipeline::config::LoadOptions { seed, limit: self.limit, ..Default::default() }
    }
}

/// Prints each line of what loading changed, once, on stderr.
pub fn say_adjustments(adj: &mcufit_pipeline::Adjustments) {
    for l in adj.lines() {
        eprintln!("note: {l}");
    }
}

/// Knowledge distillation: train on a blend of the labels and a teacher model's predictions.
#[derive(Args, Debug, Clone)]
pub struct DistillArgs {
    /// The teacher's weight in the targets, 0 to 1 (0: off): the student learns from
    /// (1 - W) · labels + W · softmax(teacher logits / --distill-temperature).
    #[arg(long, default_value_t = 0.0)]
    pub distill: f64,
    /// Softmax temperature of the teacher's predictions.
    #[arg(long, default_value_t = 1.0)]
    pub distill_temperature: f64,
}

impl DistillArgs {
    /// `(weight, temperature)` when distillation is on.
    pub fn get(&self) -> Option<(f64, f64)> {
        (self.distill > 0.0).then_some((self.distill, self.distill_temperature))
    }
}

/// The data a model directory is evaluated on: by default what its `data.json` records.
#[derive(Args, Debug, Clone, Default)]
pub struct DirData {
    /// Data spec (default: the one the model was trained on, from its data.json).
    #[arg(long)]
    pub data: Option<String>,
    /// Split seed (default: the training seed from data.json, so the test side is the same).
    #[arg(long)]
    pub seed: Option<u64>,
}

/// A duration flag (`90s`, `30m`, `2h`, a bare number is seconds); errors name `flag`.
pub fn parse_duration(flag: &str, t: &str) -> anyhow::Result<std::time::Duration> {
    use anyhow::Context;
    let t = t.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: f64 = num.parse().with_context(|| format!("{flag} '{t}': use e.g. 90s, 30m, 2h"))?;
    let secs = v * match unit {
        "" | "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => anyhow::bail!("{flag} '{t}': unit must be s, m or h"),
    };
    if !(secs.is_finite() && secs > 0.0) {
        anyhow::bail!("{flag} must be positive, got '{t}'");
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}
