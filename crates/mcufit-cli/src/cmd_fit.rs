//! `mcufit fit`: data to a verified device build in one command; `mcufit report`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use mcufit_pipeline::budget::{human_bytes, human_count};
use mcufit_pipeline::deploy::VerifyOptions;
use mcufit_pipeline::fit::{FIT_JSON, REPORT_HTML};
use mcufit_pipeline::{Event, FitOptions, FitReport, FitRequest, Method, ModelDir, Recipe};

use crate::args::BudgetArgs;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum MethodArg {
    Width,
    Depth,
    #[value(name = "depth+width")]
    DepthWidth,
}

#[derive(Args, Debug)]
pub struct FitCmd {
    /// zoo:NAME (adapts to the data's classes and channels), a model .json file, a model directory, or a
    /// float .tflite / .onnx (its weights are the trained base, saved to OUT/imported).
    pub model: String,
    /// Data: mnist:DIR, fashion-mnist:DIR, cifar10:DIR, images:DIR, speech-commands:DIR, or digits (built in).
    #[arg(long, default_value = mcufit_pipeline::DEFAULT_DATA)]
    pub data: String,
    #[command(flatten)]
    pub budget: BudgetArgs,
    /// The fit directory: base/, compressed/, model.tflite, c/, fit.json, report.html.
    #[arg(long)]
    pub out: PathBuf,
    /// Start from this trained model directory instead of training a base.
    #[arg(long)]
    pub from: Option<PathBuf>,
    /// How to make the model fit: width (channel pruning while training), depth (cut after a block,
    /// small head, trunk frozen), or depth+width (the chosen cut width-pruned to the budget).
    #[arg(long, value_enum, default_value_t = MethodArg::Width)]
    pub method: MethodArg,
    /// The auxiliary head of depth pruning: ds:32,16, gap, or conv:C.
    #[arg(long, default_value = "ds:32,16")]
    pub head: String,
    /// Seed of the split, weights, shuffling and augmentation.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Wall-clock budget for the whole fit, e.g. 90s, 30m, 2h: the recipe's epochs are scaled to it.
    #[arg(long, value_name = "DURATION")]
    pub time_budget: Option<String>,
    /// Epochs of the base training, pruning and fine-tune (default: the MNIST protocol schedule, 20/15/25,
    /// more for small data sets).
    #[arg(long, value_name = "BASE,PRUNE,FINETUNE")]
    pub epochs: Option<String>,
    /// Continue the fit in --out (a plain rerun does the same; --resume also insists there is one).
    #[arg(long)]
    pub resume: bool,
    /// Skip the TFLM / host C / Cortex-M4 verification.
    #[arg(long)]
    pub no_verify: bool,
    /// CPU threads (0: all).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Keep at most this many samples per split (quick runs).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Print fit.json instead of the summary.
    #[arg(long)]
    pub json: bool,
}

fn parse_epochs(t: &str) -> Result<Recipe> {
    let v: Vec<usize> = t
        .split(',')
        .map(|p| p.trim().parse())
        .collect::<Result<_, _>>()
        .with_context(|| format!("--epochs '{t}': give BASE,PRUNE,FINETUNE, e.g. 20,15,25"))?;
    match v[..] {
        [b, p, f] if b > 0 && p > 0 && f > 0 => {
            Ok(Recipe { base_epochs: b, prune_epochs: p, finetune_epochs: f, ..Recipe::default() })
        }
        _ => anyhow::bail!("--epochs '{t}': give three positive counts BASE,PRUNE,FINETUNE, e.g. 20,15,25"),
    }
}

pub fn run(args: &FitCmd) -> Result<ExitCode> {
    let budget = args.budget.spec().resolve()?;
    if args.resume && !(args.out.join(FIT_JSON).is_file() || args.out.join("base").is_dir()) {
        anyhow::bail!("--resume: {} holds no fit to continue", args.out.display());
    }
    let opts = FitOptions {
        recipe: args.epochs.as_deref().map(parse_epochs).transpose()?,
        time_budget: args
            .time_budget
            .as_deref()
            .map(|t| crate::args::parse_duration("--time-budget", t).map(|d| d.as_secs_f64()))
            .transpose()?,
        verify: VerifyOptions::default(),
        no_verify: args.no_verify,
        threads: args.threads,
        progress: true,
    };
    let load = mcufit_pipeline::config::LoadOptions { seed: args.seed, limit: args.limit, ..Default::default() };
    let (graph, splits, adj, base) = mcufit_pipeline::load_base_for_data(&args.model, &args.data, &load)?;
    // An imported float model is the trained base: saved as OUT/imported, it is `--from`.
    let from = match &base {
        Some(_) if args.from.is_some() => anyhow::bail!("{} is itself the trained base: drop --from", args.model),
        Some(net) => {
            let record = mcufit_pipeline::DataRecord { spec: args.data.clone(), seed: args.seed };
            let dir = ModelDir::new(args.out.join("imported"));
            Some(mcufit_pipeline::stages::save_base(net, &dir, &record)?)
        }
        None => args.from.clone(),
    };
    let head = args.head.parse().map_err(|e| anyhow::anyhow!("--head: {e}"))?;
    let method = match args.method {
        MethodArg::Width => Method::Width,
        MethodArg::Depth => Method::Depth,
        MethodArg::DepthWidth => Method::DepthWidth,
    };
    let request =
        FitRequest { model: args.model.clone(), data: args.data.clone(), seed: args.seed, budget, from, method, head };
    let mut events = |e: Event| match e {
        Event::Step { step, detail } => eprintln!("== {step}: {detail}"),
        Event::Note(n) => eprintln!("note: {n}"),
    };
    let r = mcufit_pipeline::fit(&request, &graph, &splits, adj.lines(), &args.out, &opts, &mut events)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print_summary(&r, &args.out);
    }
    let ok = r.fit.fits && r.verify.as_ref().is_none_or(|v| v.passed);
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn print_summary(r: &FitReport, out: &std::path::Path) {
    println!();
    if let Some(a) = &r.accuracy {
        println!(
            "{}: int8 test accuracy {:.2} % (float {:.2} %) on {} test examples",
            r.request.model,
            100.0 * a.int8.accuracy,
            100.0 * a.float.accuracy,
            a.int8.examples
        );
    }
    let b = &r.before;
    let a = &r.after;
    println!(
        "  pruned: peak {} → {}, weights {} → {}, MACs {} → {}",
        human_bytes(b.arena as f64),
        human_bytes(a.arena as f64),
        human_bytes(b.weights as f64),
        human_bytes(a.weights as f64),
        human_count(b.macs as f64),
        human_count(a.macs as f64)
    );
    crate::cmd_analyze::print_fit(&r.fit, &r.request.budget.describe());
    if let Some(v) = &r.verify {
        crate::cmd_export::print_verify(v);
    }
    for n in &r.notes {
        println!("  note: {n}");
    }
    println!(
        "{} in {:.0} s; files in {}: model.tflite, c/, fit.json; report: {}",
        if r.fit.fits { "fits" } else { "DOES NOT FIT" },
        r.seconds,
        out.display(),
        out.join(REPORT_HTML).display()
    );
}

#[derive(Args, Debug)]
pub struct ReportCmd {
    /// A fit directory (with fit.json).
    pub dir: PathBuf,
    /// Where to write the HTML (default DIR/report.html).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn report(args: &ReportCmd) -> Result<ExitCode> {
    let d = ModelDir::new(&args.dir);
    let r: FitReport = d.read_json(FIT_JSON)?.with_context(|| {
        format!("{} has no {FIT_JSON}: mcufit report takes a directory written by mcufit fit", args.dir.display())
    })?;
    let html = mcufit_pipeline::report::render(&mcufit_pipeline::report::from_fit(&r));
    let out = args.out.clone().unwrap_or_else(|| args.dir.join(REPORT_HTML));
    mcufit_pipeline::modeldir::write_atomic(&out, html.as_bytes())?;
    println!("wrote {}", out.display());
    Ok(ExitCode::SUCCESS)
}
