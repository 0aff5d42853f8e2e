//! # mcufit-train
//!
//! The training engine: builds a trainable burn network from an mcufit IR [`Graph`], trains it
//! (SGD-momentum / Adam, cosine / step schedules, weight decay, cross-entropy), evaluates it, and
//! saves/loads it together with its architecture. Pruning code hooks in through channel-group
//! masks ([`Network::set_group_mask`]) and extra loss terms ([`TrainHook`]).
//!
//! CPU by default (burn's `flex` backend); the `cuda` feature trains on CUDA device 0.
//!
//! ```no_run
//! use mcufit_train::{train, evaluate, InMemory, Splits, TrainConfig};
//! # fn main() -> mcufit_train::Result<()> {
//! let graph = mcufit_ir::zoo::mnist_cnn()?;
//! # let (train_set, val_set): (InMemory, InMemory) = todo!();
//! let config = TrainConfig::new().with_epochs(5).with_out_dir(Some("runs/mnist".into()));
//! let report = train(&graph, &Splits { train: &train_set, val: Some(&val_set) }, &config)?;
//! let eval = evaluate(&report.network, &val_set, 256)?;
//! report.network.save("runs/mnist/final")?;
//! # Ok(()) }
//! ```

mod data;
mod error;
mod eval;
mod fast;
mod network;
pub mod ops;
mod rng;
mod train;
mod weights;

pub use data::{BatchSource, InMemory, Splits};
pub use error::{Result, TrainError};
pub use eval::{evaluate, log_softmax_at, EvalReport, Evaluator};
pub use fast::EngineKind;
pub use network::{nhwc_to_tensor, Bn, Layer, Mode, Network, Plan, ProducerWeight};
pub use rng::SplitMix64;
pub use train::{
    default_device, recover_checkpoint, recover_dir, replace_dir, train, train_network, train_with_hook, Distill,
    EpochStats, LrSchedule, NoHook, OptimizerKind, StepContext, StepStats, TrainConfig, TrainHook, TrainReport,
    TrainState, TrainSummary, Trainer,
};
pub use weights::{
    read_safetensors, tensors_to_weights, weights_to_tensors, write_safetensors, NamedTensors, ParamIds,
};

/// Re-export of the burn version this crate is built on, so callers use matching types.
pub use burn;
