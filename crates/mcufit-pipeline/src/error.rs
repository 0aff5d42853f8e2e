//! The pipeline's error type: every stage's error, plus the two outcomes a user acts on
//! (a bad request, a budget that cannot be met).

use thiserror::Error;

#[derive(Debug, Error)]
pub enum PipelineError {
    #[error(transparent)]
    Ir(#[from] mcufit_ir::IrError),
    #[error(transparent)]
    Cost(#[from] mcufit_cost::CostError),
    #[error(transparent)]
    Data(#[from] mcufit_data::DataError),
    #[error(transparent)]
    Train(#[from] mcufit_train::TrainError),
    #[error(transparent)]
    Prune(#[from] mcufit_prune::PruneError),
    #[error(transparent)]
    Quant(#[from] mcufit_quant::QuantError),
    #[error(transparent)]
    Export(#[from] mcufit_export::ExportError),
    /// A request that cannot be carried out as given (bad flag value, missing input, ...).
    #[error("{0}")]
    Config(String),
    /// The budget cannot be met (the message names the smallest achievable figure).
    #[error("{0}")]
    DoesNotFit(String),
    // The wrapped errors are part of the message and not `#[source]`s, so a chain printer (anyhow's
    // `{:#}`) does not print them twice.
    #[error("{path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("{path}: {msg}")]
    File { path: String, msg: String },
    /// An error with the step it happened in.
    #[error("{context}: {inner}")]
    Context { context: String, inner: Box<PipelineError> },
}

impl PipelineError {
    pub fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        PipelineError::Io { path: path.display().to_string(), error: source }
    }

    /// True when the request was fine but the model cannot be made to fit (exit code 1 in the CLI,
    /// 2 for every other error).
    pub fn is_does_not_fit(&self) -> bool {
        match self {
            PipelineError::DoesNotFit(_)
            | PipelineError::Prune(mcufit_prune::PruneError::Infeasible(_))
            | PipelineError::Prune(mcufit_prune::PruneError::BudgetNotMet(_)) => true,
            PipelineError::Context { inner, .. } => inner.is_does_not_fit(),
            _ => false,
        }
    }
}

pub type Result<T, E = PipelineError> = std::result::Result<T, E>;

/// Adds a step description to an error (`"cannot load model 'x'"`).
pub trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: Into<PipelineError>> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| PipelineError::Context { context: what(), inner: Box::new(e.into()) })
    }
}
