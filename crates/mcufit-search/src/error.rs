//! The search crate's error type.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum SearchError {
    #[error(transparent)]
    Ir(#[from] mcufit_ir::IrError),
    /// A request that cannot be carried out as given (bad flag value, a store holding another search, ...).
    #[error("{0}")]
    Config(String),
    /// The trial store failed (the message names the store and the operation).
    #[error("trial store: {0}")]
    Store(String),
    /// No candidate of the space can meet the budget even with every layer pruned to one channel.
    #[error("{0}")]
    Infeasible(String),
}

impl From<rusqlite::Error> for SearchError {
    fn from(e: rusqlite::Error) -> Self {
        SearchError::Store(format!("sqlite: {e}"))
    }
}

impl From<postgres::Error> for SearchError {
    fn from(e: postgres::Error) -> Self {
        SearchError::Store(format!("postgres: {e}"))
    }
}

impl From<serde_json::Error> for SearchError {
    fn from(e: serde_json::Error) -> Self {
        SearchError::Store(format!("a stored row is not valid JSON: {e}"))
    }
}

pub type Result<T, E = SearchError> = std::result::Result<T, E>;
