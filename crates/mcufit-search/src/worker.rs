//! The worker loop: claim a trial from the store (proposing and pricing new candidates when the
//! queue is empty), run it while a thread renews its lease, record the outcome; until the search
//! has every trial it wants or the worker's deadline passes. Training is the [`TrialRunner`]'s
//! (the pipeline's), so this crate needs no training backend.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{channel, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Result, SearchError};
use crate::evolution::{propose, trial_seed};
use crate::space::Genotype;
use crate::store::{Claim, NewTrial, Outcome, Resources, SearchMeta, Status, Timings, Trial, TrialStore};

/// What the search needs from the layer that trains.
pub trait TrialRunner: Sync {
    /// Prices a candidate with the exact cost model: `Ok(Ok(full-width resources))` when it can
    /// meet the budget (after pruning, when the search prunes), `Ok(Err(reason))` when it cannot
    /// (the reason names the smallest achievable figure), `Err` when it cannot even be built.
    fn price(&self, genotype: &Genotype) -> Result<std::result::Result<Resources, String>>;
    /// Trains (and prunes) `trial` into its model directory. A failure is an `Outcome::Failed`
    /// whose message says what went wrong; the search goes on.
    fn run(&self, trial: &Trial) -> Outcome;
}

/// How one worker behaves.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Unique among the search's workers; see [`worker_id`].
    pub worker: String,
    /// A trial whose lease is not renewed for this long goes back to the queue (renewed every third).
    pub lease: Duration,
    /// No new trial is claimed after this instant (a running one finishes).
    pub deadline: Option<Instant>,
    /// How long to wait before asking again when every remaining trial runs elsewhere.
    pub poll: Duration,
    /// Consecutive rejected candidates after which the space is declared unable to meet the budget.
    pub max_rejections: usize,
}

impl WorkerOptions {
    pub fn new(worker: String) -> Self {
        WorkerOptions {
            worker,
            lease: Duration::from_secs(60),
            deadline: None,
            poll: Duration::from_secs(2),
            max_rejections: 5000,
        }
    }
}

/// `host:pid:nanos`, unique enough for workers on many machines.
pub fn worker_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "host".into());
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{host}:{}:{nanos:08x}", std::process::id())
}

/// Progress, for the front end to render.
#[derive(Debug, Clone)]
pub enum Event {
    /// A candidate priced and rejected before training.
    Rejected { id: u64, genotype: Genotype, reason: String, price_us: f64 },
    /// A trial claimed by this worker (`attempts > 1`: re-run after its worker died).
    Started { trial: Box<Trial> },
    /// A trial this worker finished (or failed).
    Finished { id: u64, outcome: Outcome },
    /// The trial's lease was lost (the store gave it to another worker); its result was dropped.
    LeaseLost { id: u64 },
    /// Every remaining trial runs elsewhere; waiting.
    Waiting,
}

/// What one worker did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WorkerSummary {
    pub claimed: u64,
    pub done: u64,
    pub failed: u64,
    pub rejected: u64,
    pub lost: u64,
    /// The search has every trial it wants (false: the deadline stopped this worker first).
    pub finished: bool,
    /// Time in the store over all its trials, ms.
    pub store_ms: f64,
}

/// Runs trials of the search in `store` until it is finished or `opts.deadline` passes.
pub fn run_worker(
    store: &dyn TrialStore,
    runner: &dyn TrialRunner,
    opts: &WorkerOptions,
    on: &mut dyn FnMut(&Event),
) -> Result<WorkerSummary> {
    let meta: SearchMeta = store.meta()?.ok_or_else(|| {
        SearchError::Config(format!("{} holds no search: start one first (without --worker)", store.describe()))
    })?;
    let mut sum = WorkerSummary::default();
    loop {
        if opts.deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(sum);
        }
        let mut rejected = Vec::new();
        let t0 = Instant::now();
        let claim = store.claim(&opts.worker, opts.lease, &mut |all, next| {
            rejected.clear();
            proposals(&meta, runner, all, next, opts.max_rejections, &mut rejected)
        })?;
        let claim_ms = t0.elapsed().as_secs_f64() * 1e3;
        for e in rejected.drain(..) {
            sum.rejected += 1;
            on(&e);
        }
        let trial = match claim {
            Claim::Finished => {
                sum.finished = true;
                return Ok(sum);
            }
            Claim::Wait => {
                on(&Event::Waiting);
                std::thread::sleep(opts.poll);
                continue;
            }
            Claim::Trial(t) => t,
        };
        sum.claimed += 1;
        on(&Event::Started { trial: trial.clone() });
        let (outcome, renew_ms, lost) = run_leased(store, runner, &trial, opts);
        let mut outcome = outcome;
        let t1 = Instant::now();
        let store_ms = claim_ms + renew_ms;
        // The finish itself is timed after it returns; recorded in the row as claim + renewals.
        match &mut outcome {
            Outcome::Done { timings, .. } | Outcome::Failed { timings, .. } => timings.store_ms = store_ms,
        }
        let kept = !lost && store.finish(trial.id, &opts.worker, &outcome)?;
        sum.store_ms += store_ms + t1.elapsed().as_secs_f64() * 1e3;
        if kept {
            match &outcome {
                Outcome::Done { .. } => sum.done += 1,
                Outcome::Failed { .. } => sum.failed += 1,
            }
            on(&Event::Finished { id: trial.id, outcome });
        } else {
            sum.lost += 1;
            on(&Event::LeaseLost { id: trial.id });
        }
    }
}

/// Candidates for ids `next, next+1, …` until one is accepted (see [`TrialRunner::price`]).
fn proposals(
    meta: &SearchMeta,
    runner: &dyn TrialRunner,
    all: &[Trial],
    next: u64,
    max_rejections: usize,
    events: &mut Vec<Event>,
) -> Result<Vec<NewTrial>> {
    let mut out = Vec::new();
    let mut last = String::new();
    for k in 0..max_rejections.max(1) as u64 {
        let id = next + k;
        let genotype = propose(&meta.space, &meta.evolution, &meta.bounds, meta.seed, id, all);
        let t = Instant::now();
        let priced = runner.price(&genotype)?;
        let price_us = t.elapsed().as_secs_f64() * 1e6;
        let seed = trial_seed(meta.seed, id);
        match priced {
            Ok(res) => {
                out.push(NewTrial { genotype, seed, price_us, unpruned: Some(res), rejected: None });
                return Ok(out);
            }
            Err(reason) => {
                events.push(Event::Rejected { id, genotype: genotype.clone(), reason: reason.clone(), price_us });
                last = reason.clone();
                out.push(NewTrial { genotype, seed, price_us, unpruned: None, rejected: Some(reason) });
            }
        }
    }
    Err(SearchError::Infeasible(format!(
        "{max_rejections} candidates of the '{}' space in a row cannot meet the budget even fully pruned \
         (the last: {last}); loosen the budget or pick another --space",
        meta.space.preset
    )))
}

/// Runs `trial` while a thread renews its lease every third of it. Returns the outcome, the time
/// spent renewing (ms) and whether the lease was lost.
fn run_leased(
    store: &dyn TrialStore,
    runner: &dyn TrialRunner,
    trial: &Trial,
    opts: &WorkerOptions,
) -> (Outcome, f64, bool) {
    let (stop, stopped) = channel::<()>();
    std::thread::scope(|s| {
        let renewer = s.spawn(move || {
            let (mut ms, mut lost) = (0.0, false);
            loop {
                match stopped.recv_timeout(opts.lease / 3) {
                    Err(RecvTimeoutError::Timeout) => {
                        let t = Instant::now();
                        // A failed renewal (network blip) is retried at the next tick; the lease
                        // only runs out if they keep failing.
                        if let Ok(false) = store.renew(trial.id, &opts.worker, opts.lease) {
                            lost = true;
                        }
                        ms += t.elapsed().as_secs_f64() * 1e3;
                        if lost {
                            return (ms, lost);
                        }
                    }
                    _ => return (ms, lost),
                }
            }
        });
        let start = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| runner.run(trial))).unwrap_or_else(|p| {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Outcome::Failed {
                error: format!("the trial panicked: {msg}"),
                timings: Timings { total_s: start.elapsed().as_secs_f64(), ..Default::default() },
            }
        });
        drop(stop);
        let (ms, lost) = renewer.join().unwrap_or((0.0, false));
        (outcome, ms, lost)
    })
}

/// Progress of a search, from its trials.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    pub queued: u64,
    pub running: u64,
    pub done: u64,
    pub failed: u64,
    pub rejected: u64,
    /// Proposed candidates (every row).
    pub proposed: u64,
    /// The done trial with the best validation accuracy (ties: smaller id).
    pub best: Option<Trial>,
    /// Finished trials per hour of wall time (first start to last finish).
    pub trials_per_hour: Option<f64>,
    /// Mean wall time of a done trial, s.
    pub mean_trial_s: Option<f64>,
    /// Mean pricing time of a proposal, µs.
    pub mean_price_us: Option<f64>,
    /// Training time the rejections saved: rejected × mean trial time, s.
    pub time_saved_s: Option<f64>,
    /// Mean store time per finished trial (claim + lease renewals), ms.
    pub mean_store_ms: Option<f64>,
    /// Trials claimed more than once (their worker died).
    pub rerun: u64,
    /// Running trials: (id, worker).
    pub running_on: Vec<(u64, String)>,
}

/// Summarises `trials`.
pub fn progress(trials: &[Trial]) -> Progress {
    let count = |s: Status| trials.iter().filter(|t| t.status == s).count() as u64;
    let done: Vec<&Trial> = trials.iter().filter(|t| t.status == Status::Done).collect();
    let best = done
        .iter()
        .max_by(|a, b| a.val_accuracy.unwrap_or(0.0).total_cmp(&b.val_accuracy.unwrap_or(0.0)).then(b.id.cmp(&a.id)))
        .map(|t| (*t).clone());
    let mean = |v: Vec<f64>| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    let mean_trial_s = mean(done.iter().filter_map(|t| t.timings.map(|x| x.total_s)).collect());
    let ended: Vec<&Trial> = trials.iter().filter(|t| matches!(t.status, Status::Done | Status::Failed)).collect();
    let first = ended.iter().filter_map(|t| t.started_at).fold(f64::INFINITY, f64::min);
    let last = ended.iter().filter_map(|t| t.finished_at).fold(f64::NEG_INFINITY, f64::max);
    let rejected = count(Status::Rejected);
    Progress {
        queued: count(Status::Queued),
        running: count(Status::Running),
        done: count(Status::Done),
        failed: count(Status::Failed),
        rejected,
        proposed: trials.len() as u64,
        best,
        trials_per_hour: (last > first).then(|| ended.len() as f64 * 3600.0 / (last - first)),
        mean_trial_s,
        mean_price_us: mean(trials.iter().map(|t| t.price_us).collect()),
        time_saved_s: mean_trial_s.map(|m| m * rejected as f64),
        mean_store_ms: mean(ended.iter().filter_map(|t| t.timings.map(|x| x.store_ms)).collect()),
        rerun: trials.iter().filter(|t| t.attempts > 1).count() as u64,
        running_on: trials
            .iter()
            .filter(|t| t.status == Status::Running)
            .map(|t| (t.id, t.worker.clone().unwrap_or_default()))
            .collect(),
    }
}
