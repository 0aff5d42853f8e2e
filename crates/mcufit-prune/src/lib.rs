//! # mcufit-prune
//!
//! Budgeted differentiable structured pruning during training, after Liberis & Lane,
//! "Differentiable Network Pruning for Microcontrollers" (arXiv 2110.08350), plus physical channel
//! removal and the baselines it is compared with. See `docs/pruning.md` for the method.
//!
//! - [`budget`]: budget flags → [`mcufit_cost::Budget`], feasibility before training (with the
//!   smallest figure the architecture can reach), exact fit check after.
//! - [`resource`]: the differentiable resource model (gradients from `mcufit-cost`), the budget
//!   penalty and the automatic λ schedule.
//! - [`removal`]: slicing removed channels out of every tensor, folding constant channels into
//!   downstream biases.
//! - [`masks`]: the training-time channel masks on burn (straight-through, salience-ordered).
//! - [`baselines`]: uniform width scaling and L1-norm magnitude pruning at the same budget.
//! - [`compress()`]: the whole `mcufit compress` pipeline and its output directory.
//! - [`depth`]: depth pruning: the cut table, auxiliary heads trained on a frozen trunk, the
//!   choice of cut under a budget ([`depth_prune`]).

pub mod baselines;
pub mod budget;
mod compress;
pub use compress::summary;
pub mod depth;
mod error;
pub mod masks;
pub mod removal;
pub mod resource;

pub use budget::{check_feasible, minimal_sizes, ResourceFigure, ResourceRange};
pub use compress::{compress, Accuracy, CompressConfig, CompressReport, LayerChannels, PhaseTimes, PruneLog};
pub use depth::{
    depth_prune, train_heads, train_heads_separately, CutFit, CutRow, CutTable, DepthConfig, DepthReport, TrainedHead,
};
pub use error::{PruneError, Result, Shortfall};
pub use masks::{Salience, WidthGate};
pub use removal::{remove_channels, zero_channels, RemovalReport};
pub use resource::{LambdaSchedule, PenaltyTerm, ResourceModel};
