//! Error type of the pruning crate.

use mcufit_cost::Resource;
use thiserror::Error;

/// One resource that a budget cannot be met on.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Shortfall {
    pub resource: Resource,
    pub limit: f64,
    /// The best figure reached (the pruned model's, or the unpruned model's when detected before training).
    pub best: f64,
    /// The smallest figure the architecture can reach at all (every prunable group at 1 channel).
    pub minimum: f64,
}

impl std::fmt::Display for Shortfall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let u = self.resource.unit();
        write!(
            f,
            "{}: budget {:.0} {u}, best reached {:.0} {u}, smallest this architecture can reach {:.0} {u}",
            self.resource.name(),
            self.limit,
            self.best,
            self.minimum
        )?;
        if self.resource == Resource::Latency {
            // Latency needs decimals.
            write!(f, " ({:.3} / {:.3} / {:.3} ms)", self.limit, self.best, self.minimum)?;
        }
        Ok(())
    }
}

fn list(s: &[Shortfall]) -> String {
    s.iter().map(|x| x.to_string()).collect::<Vec<_>>().join("; ")
}

#[derive(Debug, Error)]
pub enum PruneError {
    #[error(transparent)]
    Ir(#[from] mcufit_ir::IrError),
    #[error(transparent)]
    Cost(#[from] mcufit_cost::CostError),
    #[error(transparent)]
    Train(#[from] mcufit_train::TrainError),
    #[error("data: {0}")]
    Data(String),
    #[error("config: {0}")]
    Config(String),
    /// The budget is below what the architecture can reach even with every prunable group at one
    /// channel (detected before any training).
    #[error("the budget is infeasible for this architecture: {}", list(.0))]
    Infeasible(Vec<Shortfall>),
    /// Pruning finished but the exact cost model says the result does not fit.
    #[error("the pruned model does not fit the budget: {}", list(.0))]
    BudgetNotMet(Vec<Shortfall>),
    /// Physical removal would change the network's function.
    #[error("channel removal: {0}")]
    Removal(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl PruneError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        PruneError::Io { path: path.display().to_string(), source }
    }
}

impl From<mcufit_data::DataError> for PruneError {
    fn from(e: mcufit_data::DataError) -> Self {
        PruneError::Data(e.to_string())
    }
}

pub type Result<T, E = PruneError> = std::result::Result<T, E>;
