//! # mcufit-search
//!
//! Architecture search under microcontroller bounds (SpArSe, μNAS), coupled with pruning, with a
//! trial store that survives crashes and scales to many workers (`docs/search.md`).
//!
//! - [`space`]: the search space as data. A [`Genotype`] (stem, 1–N standard or depthwise-separable
//!   blocks, 0–2 dense layers) builds an ordinary IR graph; presets `cnn`, `ds-cnn`, `resnet`.
//! - [`evolution`]: aging evolution with randomly scalarised fitness over (validation error, peak
//!   memory, model bytes, MACs), each resource normalised by its bound; the Pareto front.
//! - [`store`]: the trial store, a [`TrialStore`] trait with an embedded SQLite backend and a shared
//!   PostgreSQL one; every trial is a row, claimed under a lease.
//! - [`worker`]: the loop a worker runs: claim (propose and price new candidates when the queue is
//!   empty; those that cannot fit are rejected before training), run through a [`TrialRunner`],
//!   renew the lease meanwhile, record the outcome.
//!
//! Units: bytes for memory and model size (int8 activations, int8 weights + int32 biases), MACs as
//! counts, seconds for times unless a name says `_ms` or `_us`; accuracies are fractions in [0, 1].
//! The crate prints nothing: progress goes through [`worker::Event`] callbacks. It knows no training
//! backend: the pipeline implements [`TrialRunner`].

pub mod error;
pub mod evolution;
pub mod space;
pub mod store;
pub mod worker;

pub use error::{Result, SearchError};
pub use evolution::{pareto_front, Bounds, EvolutionConfig, Fitness};
pub use space::{Block, BlockKind, Down, Genotype, Head, Preset, SearchSpace};
pub use store::{open, Claim, NewTrial, Outcome, Resources, SearchMeta, Status, Timings, Trial, TrialStore};
pub use worker::{progress, run_worker, worker_id, Event, Progress, TrialRunner, WorkerOptions, WorkerSummary};
