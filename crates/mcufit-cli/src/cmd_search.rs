//! `mcufit search`: architecture search under the budget, coupled with pruning, with a resumable
//! trial store (SQLite in OUT by default, or PostgreSQL shared by many workers). `docs/search.md`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use clap::{Args, ValueEnum};
use mcufit_pipeline::search::{
    self, Event, EvolutionConfig, Outcome, Preset, ProxyRecipe, SearchRequest, SearchResults, SearchSpace, SearchTask,
    TrialStore, WorkOptions, WorkerOptions,
};
use mcufit_pipeline::DEFAULT_DATA;

use crate::args::BudgetArgs;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SpaceArg {
    /// Standard convolution blocks, no residuals.
    Cnn,
    /// Depthwise-separable blocks after a convolution stem.
    DsCnn,
    /// Standard or separable blocks with optional residual connections.
    Resnet,
}

#[derive(Args, Debug)]
pub struct SearchCmd {
    /// Data: mnist:DIR, fashion-mnist:DIR, cifar10:DIR, images:DIR, speech-commands:DIR, or digits (built in).
    #[arg(long, default_value = DEFAULT_DATA)]
    pub data: String,
    #[command(flatten)]
    pub budget: BudgetArgs,
    /// Output directory: trial model directories (OUT/trials/ID), pareto.json, and the default store.
    /// (default runs/search; a --worker defaults to the directory the search was started with)
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Trial store: sqlite:PATH (default sqlite:OUT/search.db) or postgres://USER@HOST:PORT/DB (shared by workers).
    #[arg(long)]
    pub store: Option<String>,
    #[arg(long, value_enum, default_value_t = SpaceArg::DsCnn)]
    pub space: SpaceArg,
    /// Most blocks after the stem.
    #[arg(long, default_value_t = 5)]
    pub max_blocks: usize,
    /// Trials to train (candidates rejected before training do not count).
    #[arg(long, default_value_t = 100)]
    pub trials: u64,
    /// Stop claiming new trials after this long (e.g. 90s, 30m, 3h); --resume continues.
    #[arg(long)]
    pub time_budget: Option<String>,
    /// Aging evolution's population (also the number of random initial candidates).
    #[arg(long, default_value_t = 100)]
    pub population: usize,
    /// Candidates sampled from the population per tournament.
    #[arg(long, default_value_t = 25)]
    pub sample: usize,
    /// How a tournament picks the parent: scalarised (μNAS: error and the resources, random weights
    /// per tournament; explores the whole front) or error (validation error alone: the most accurate
    /// model within the bounds, which every pruned candidate meets).
    #[arg(long, value_enum, default_value_t = FitnessArg::Scalarised)]
    pub fitness: FitnessArg,
    /// Epochs of proxy training per trial.
    #[arg(long, default_value_t = 3)]
    pub proxy_epochs: usize,
    /// Pruning + fine-tune epochs of compress per trial (when the trained candidate does not fit).
    #[arg(long, default_value_t = 4)]
    pub prune_epochs: usize,
    /// Do not prune: a candidate must fit the budget as it is.
    #[arg(long)]
    pub no_prune: bool,
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Peak SGD learning rate.
    #[arg(long, default_value_t = 0.05)]
    pub lr: f64,
    /// Cap on steps per epoch, for quick searches.
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Keep at most this many samples per split, for quick searches.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Seed of the proposals, the data split and the trials' training.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// CPU threads for training (0: all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// A trial whose worker stops renewing its lease this long goes back to the queue (e.g. 60s).
    #[arg(long, default_value = "60s")]
    pub lease: String,
    /// Continue the search in the store after a crash (its running trials go back to the queue).
    #[arg(long)]
    pub resume: bool,
    /// Join the search already in --store as one more worker (no search flags needed).
    #[arg(long)]
    pub worker: bool,
    /// Print the search's progress and Pareto front from the store, and exit.
    #[arg(long)]
    pub status: bool,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &SearchCmd) -> Result<ExitCode> {
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from("runs/search"));
    let store_spec = args.store.clone().unwrap_or_else(|| search::default_store(&out));
    if args.status {
        let store = search::open(&store_spec)?;
        print_results(&search::results(store.as_ref())?, args.json)?;
        return Ok(ExitCode::SUCCESS);
    }
    let lease = crate::args::parse_duration("--lease", &args.lease)?;
    let deadline = args.time_budget.as_deref().map(|t| crate::args::parse_duration("--time-budget", t)).transpose()?;
    let store = search::open(&store_spec)?;
    let store: &dyn TrialStore = store.as_ref();
    if args.worker || args.resume {
        let meta = search::existing(store)?;
        if args.resume {
            let n = search::requeue_running(store)?;
            eprintln!(
                "resuming the {} search in {} ({} trials; {n} interrupted trial(s) back in the queue)",
                meta.space.preset,
                store.describe(),
                meta.max_trials
            );
        } else {
            // Say which search this is: a worker joins whatever search the store holds.
            let r = search::results(store)?;
            eprintln!(
                "joining the {} search in {} as a worker: budget {}, seed {}, {} of {} trials done, {} running",
                meta.space.preset,
                store.describe(),
                r.budget,
                meta.seed,
                r.progress.done,
                meta.max_trials,
                r.progress.running
            );
        }
    } else {
        let budget = args.budget.spec().resolve()?;
        let preset = match args.space {
            SpaceArg::Cnn => Preset::Cnn,
            SpaceArg::DsCnn => Preset::DsCnn,
            SpaceArg::Resnet => Preset::Resnet,
        };
        let request = SearchRequest {
            space: SearchSpace { max_blocks: args.max_blocks, ..SearchSpace::new(preset) },
            evolution: EvolutionConfig {
                population: args.population,
                sample: args.sample,
                fitness: args.fitness.into(),
            },
            seed: args.seed,
            trials: args.trials,
            task: SearchTask {
                data: args.data.clone(),
                limit: args.limit,
                budget,
                prune: !args.no_prune,
                out: out.clone(),
            },
            recipe: ProxyRecipe {
                proxy_epochs: args.proxy_epochs,
                prune_epochs: args.prune_epochs,
                batch: args.batch,
                lr: args.lr,
                max_steps: args.max_steps,
            },
        };
        search::create(store, &request)?;
        eprintln!(
            "searching the {} space: {} trials ({} population, {} sample), store {}",
            preset,
            args.trials,
            args.population,
            args.sample,
            store.describe()
        );
    }
    let start = Instant::now();
    let opts = WorkOptions {
        out: if args.worker { args.out.clone() } else { Some(out.clone()) },
        threads: args.threads,
        worker: WorkerOptions {
            lease,
            deadline: deadline.map(|d| start + d),
            ..WorkerOptions::new(search::worker_id())
        },
    };
    let summary = search::work(store, &opts, &mut render)?;
    let results = search::results(store)?;
    let front_dir = match &opts.out {
        Some(o) => o.clone(),
        None => search::task_out(store)?,
    };
    let path = search::write_front(&front_dir, &results)?;
    print_results(&results, args.json)?;
    if !args.json {
        println!(
            "this worker: {} trials ({} done, {} failed, {} lost lease), {} rejected before training, {:.0} s; front in {}",
            summary.claimed,
            summary.done,
            summary.failed,
            summary.lost,
            summary.rejected,
            start.elapsed().as_secs_f64(),
            path.display()
        );
        if !summary.finished {
            println!("stopped by --time-budget: `mcufit search --resume --store {store_spec}` continues");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn render(e: &Event) {
    match e {
        Event::Rejected { id, genotype, reason, price_us } => {
            eprintln!("  #{id:<4} rejected before training ({price_us:.0} µs): {} — {reason}", genotype.describe())
        }
        Event::Started { trial } => {
            let again = if trial.attempts > 1 {
                format!(" (attempt {}: its worker died)", trial.attempts)
            } else {
                String::new()
            };
            eprintln!("  #{:<4} training{again}: {}", trial.id, trial.genotype.describe())
        }
        Event::Finished { id, outcome: Outcome::Done { resources: r, val_accuracy, test_accuracy, timings, .. } } => {
            eprintln!(
                "  #{id:<4} done: val {:.2} % (test {:.2} %), peak {:.0} B, weights {:.0} B, {:.2} M MACs, {:.0} s",
                100.0 * val_accuracy,
                100.0 * test_accuracy,
                r.peak,
                r.model_bytes,
                r.macs / 1e6,
                timings.total_s
            )
        }
        Event::Finished { id, outcome: Outcome::Failed { error, .. } } => eprintln!("  #{id:<4} failed: {error}"),
        Event::LeaseLost { id } => eprintln!("  #{id:<4} lease lost (re-run by another worker); result dropped"),
        Event::Waiting => {}
    }
}

fn print_results(r: &SearchResults, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
        return Ok(());
    }
    let p = &r.progress;
    println!("search ({} space) in {}: {}", r.space, r.store, r.budget);
    println!(
        "trials: {} done, {} running, {} queued, {} failed of {}; {} rejected before training ({:.0} % of {} proposed)",
        p.done,
        p.running,
        p.queued,
        p.failed,
        r.max_trials,
        p.rejected,
        if p.proposed > 0 { 100.0 * p.rejected as f64 / p.proposed as f64 } else { 0.0 },
        p.proposed
    );
    if let Some(tph) = p.trials_per_hour {
        println!(
            "throughput: {tph:.1} trials/hour, {:.1} s per trial, pricing {:.0} µs per candidate, store {:.1} ms per trial; \
             rejections saved ~{:.0} s of training",
            p.mean_trial_s.unwrap_or(0.0),
            p.mean_price_us.unwrap_or(0.0),
            p.mean_store_ms.unwrap_or(0.0),
            p.time_saved_s.unwrap_or(0.0)
        );
    }
    if p.rerun > 0 {
        println!("{} trial(s) re-run after their worker died", p.rerun);
    }
    for (id, w) in &p.running_on {
        println!("running: #{id} on {w}");
    }
    if let Some(b) = &p.best {
        println!(
            "best so far: #{} val {:.2} % (test {:.2} %): {}",
            b.id,
            100.0 * b.val_accuracy.unwrap_or(0.0),
            100.0 * b.test_accuracy.unwrap_or(0.0),
            b.genotype.describe()
        );
    }
    if !r.front.is_empty() {
        println!("\nPareto front (validation accuracy vs peak, model bytes, MACs):");
        println!(
            "  {:>5} {:>8} {:>8} {:>8} {:>8} {:>9}  model dir",
            "trial", "val %", "test %", "peak B", "model B", "MACs"
        );
        for m in &r.front {
            println!(
                "  {:>5} {:>8.2} {:>8.2} {:>8.0} {:>8.0} {:>8.2}M  {}",
                m.id,
                100.0 * m.val_accuracy,
                100.0 * m.test_accuracy,
                m.peak,
                m.model_bytes,
                m.macs / 1e6,
                m.model_dir.as_deref().unwrap_or("-")
            );
        }
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum FitnessArg {
    Scalarised,
    Error,
}

impl From<FitnessArg> for search::Fitness {
    fn from(f: FitnessArg) -> Self {
        match f {
            FitnessArg::Scalarised => search::Fitness::Scalarised,
            FitnessArg::Error => search::Fitness::Error,
        }
    }
}
