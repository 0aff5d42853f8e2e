use thiserror::Error;

/// What can go wrong in the engine.
#[derive(Debug, Error)]
pub enum EngineError {
    /// The graph uses something the engine does not implement; the caller falls back to burn.
    #[error("not supported by the fast engine: {0}")]
    Unsupported(String),
    /// Inputs that do not match the graph (sizes, missing parameters, backward before forward).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Ir(#[from] mcufit_ir::IrError),
}

pub type Result<T> = std::result::Result<T, EngineError>;
