//! The trial store: one row per trial, one search per store. Two backends behind [`TrialStore`]:
//! [`SqliteStore`] (an embedded file, the default, `sqlite:PATH`) and [`PostgresStore`]
//! (`postgres://…`, shared by any number of workers on any number of machines).
//!
//! Every operation is one transaction:
//! - [`TrialStore::claim`] first returns `running` trials whose lease has expired to the queue, then
//!   takes the oldest `queued` trial (`SELECT … FOR UPDATE SKIP LOCKED` on PostgreSQL), and only when
//!   the queue is empty and the search wants more trials **proposes** new ones under the store's lock
//!   (`BEGIN IMMEDIATE` on SQLite, `pg_advisory_xact_lock` on PostgreSQL): the proposer sees every
//!   trial and the next id, candidates it rejects are stored as `rejected`, the accepted one is
//!   inserted already `running` for the claiming worker. No coordinator process is needed.
//! - [`TrialStore::renew`] extends a lease; [`TrialStore::finish`] records the outcome only while the
//!   worker still holds the trial (a worker whose lease expired and was re-run elsewhere gets
//!   `false`, and its result is dropped), so every trial ends exactly once.
//!
//! Times are Unix seconds from the workers' clocks (machines sharing a PostgreSQL search are assumed
//! to keep time with NTP; leases are tens of seconds).

mod postgres;
mod sql;
mod sqlite;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use self::postgres::PostgresStore;
pub use self::sqlite::SqliteStore;
use crate::error::{Result, SearchError};
use crate::evolution::{Bounds, EvolutionConfig};
use crate::space::{Genotype, SearchSpace};

/// A trial's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting for a worker (a trial whose worker died comes back here).
    Queued,
    /// A worker holds it under a lease.
    Running,
    Done,
    /// Training or compression failed; `error` says why. Not retried.
    Failed,
    /// Priced before training and found unable to fit the budget even fully pruned; never trained.
    Rejected,
}

impl Status {
    pub const ALL: [Status; 5] = [Status::Queued, Status::Running, Status::Done, Status::Failed, Status::Rejected];
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Done => "done",
            Status::Failed => "failed",
            Status::Rejected => "rejected",
        }
    }
    pub fn parse(s: &str) -> Result<Status> {
        Status::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| SearchError::Store(format!("unknown trial status '{s}'")))
    }
}

/// A model's resources as the exact cost model counts them: activation peak (bytes, int8),
/// model bytes (int8 weights + int32 biases), MACs, parameters.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Resources {
    pub peak: f64,
    pub model_bytes: f64,
    pub macs: f64,
    pub params: f64,
}

/// Where a trial's time went, seconds (store overhead in milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Timings {
    /// Proxy training.
    pub train_s: f64,
    /// Pruning to the budget (0 when the trained model fits as it is or `--prune` is off).
    pub compress_s: f64,
    /// The whole trial on the worker (load, train, compress, evaluate, save).
    pub total_s: f64,
    /// Time the worker spent in the store for this trial (claim, lease renewals, finish), ms.
    pub store_ms: f64,
}

/// One row of the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    /// 1, 2, 3, … in proposal order (rejected candidates take ids too).
    pub id: u64,
    pub genotype: Genotype,
    /// The trial's hyperparameters (the search's proxy recipe), as the runner reads them.
    pub hyper: serde_json::Value,
    pub status: Status,
    /// The worker holding or last holding it (`host:pid:tag`).
    pub worker: Option<String>,
    /// Unix seconds after which a `running` trial returns to the queue.
    pub lease_expires: Option<f64>,
    /// Training seed.
    pub seed: u64,
    /// How many times a worker claimed it (1 unless a worker died holding it).
    pub attempts: u64,
    pub proposed_at: f64,
    pub started_at: Option<f64>,
    pub finished_at: Option<f64>,
    /// Pricing with the exact cost model at proposal, microseconds.
    pub price_us: f64,
    /// Resources of the candidate at full width (as proposed).
    pub unpruned: Option<Resources>,
    /// Resources of the delivered (pruned) model.
    pub resources: Option<Resources>,
    pub val_accuracy: Option<f64>,
    /// Reported only; never used for selection.
    pub test_accuracy: Option<f64>,
    pub timings: Option<Timings>,
    /// The delivered model directory, on the worker's file system.
    pub model_dir: Option<String>,
    /// Why it failed, or why it was rejected.
    pub error: Option<String>,
}

/// The search a store holds: written once by the run that starts it, read by every worker and
/// `--resume`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchMeta {
    pub space: SearchSpace,
    pub evolution: EvolutionConfig,
    pub seed: u64,
    /// Trials to train (rejected candidates do not count).
    pub max_trials: u64,
    /// What resources are normalised by in the fitness.
    pub bounds: Bounds,
    /// The trials' hyperparameters, copied into every row.
    pub hyper: serde_json::Value,
    /// What the runner needs besides (data, budget, output directory…), opaque to this crate.
    pub task: serde_json::Value,
}

impl SearchMeta {
    pub fn validate(&self) -> Result<()> {
        self.space.validate()?;
        self.evolution.validate()?;
        if self.max_trials == 0 {
            return Err(SearchError::Config("--trials must be at least 1".into()));
        }
        Ok(())
    }
}

/// A candidate the proposer made: `error` set means rejected before training.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTrial {
    pub genotype: Genotype,
    pub seed: u64,
    pub price_us: f64,
    pub unpruned: Option<Resources>,
    /// The rejection reason, naming the smallest achievable figure.
    pub rejected: Option<String>,
}

/// Makes candidates for the next ids: gets every trial so far and the next free id, returns the
/// candidates in id order; all but possibly the last are rejected, an accepted one ends the list.
pub type Proposer<'a> = dyn FnMut(&[Trial], u64) -> Result<Vec<NewTrial>> + 'a;

/// What a claim got.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// This trial is now `running` for the worker, under a lease.
    Trial(Box<Trial>),
    /// Every trial has been proposed but some are still running elsewhere (their worker may die):
    /// try again later.
    Wait,
    /// The search is complete: every trial has ended.
    Finished,
}

/// How a trial ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Done { resources: Resources, val_accuracy: f64, test_accuracy: f64, timings: Timings, model_dir: String },
    Failed { error: String, timings: Timings },
}

/// A trial store (see the module docs for the contract of each operation).
pub trait TrialStore: Send + Sync {
    /// `sqlite:PATH` or the PostgreSQL URL without its password.
    fn describe(&self) -> String;
    /// Creates the tables if needed and records `meta`; a store that already holds a search keeps
    /// it, and one that holds a *different* search is an error.
    fn create(&self, meta: &SearchMeta) -> Result<()>;
    /// The search the store holds, if any.
    fn meta(&self) -> Result<Option<SearchMeta>>;
    /// Takes a trial for `worker` (re-queued, queued or newly proposed with `propose`) under a lease.
    fn claim(&self, worker: &str, lease: Duration, propose: &mut Proposer) -> Result<Claim>;
    /// Extends `worker`'s lease on trial `id`; `false` when the worker no longer holds it.
    fn renew(&self, id: u64, worker: &str, lease: Duration) -> Result<bool>;
    /// Records how trial `id` ended; `false` (and nothing written) when `worker` no longer holds it.
    fn finish(&self, id: u64, worker: &str, outcome: &Outcome) -> Result<bool>;
    /// Returns every `running` trial to the queue (`--resume`: the process that ran them is gone).
    fn requeue_running(&self) -> Result<u64>;
    /// Every trial, by id.
    fn trials(&self) -> Result<Vec<Trial>>;
}

/// Opens `sqlite:PATH`, a `.db`/`.sqlite` path, or `postgres://…` / `postgresql://…`.
pub fn open(spec: &str) -> Result<Box<dyn TrialStore>> {
    let s = spec.trim();
    if s.starts_with("postgres://") || s.starts_with("postgresql://") {
        return Ok(Box::new(PostgresStore::connect(s)?));
    }
    let path = s.strip_prefix("sqlite:").unwrap_or(s);
    if path.is_empty() || s.contains("://") {
        return Err(SearchError::Config(format!(
            "--store '{spec}': use sqlite:PATH (an embedded file) or postgres://USER@HOST:PORT/DB"
        )));
    }
    Ok(Box::new(SqliteStore::open(std::path::Path::new(path))?))
}

/// Unix time in seconds.
pub fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}
