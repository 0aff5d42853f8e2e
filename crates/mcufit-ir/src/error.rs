use thiserror::Error;

/// Everything that can go wrong building, reading or checking a graph.
#[derive(Debug, Error)]
pub enum IrError {
    #[error("model file is not valid: {0}")]
    Parse(String),
    #[error("unsupported model file: {0}")]
    Format(String),
    #[error("node '{node}': {msg}")]
    Node { node: String, msg: String },
    #[error("graph: {0}")]
    Graph(String),
    /// Weights that do not fit the graph (not tied to one node; node errors are [`IrError::Node`]).
    #[error("weights: {0}")]
    Weights(String),
    #[error("unknown zoo model '{name}'; available: {available}")]
    UnknownZoo { name: String, available: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl IrError {
    pub(crate) fn node(node: &str, msg: impl Into<String>) -> Self {
        IrError::Node { node: node.to_string(), msg: msg.into() }
    }
}

pub type Result<T, E = IrError> = std::result::Result<T, E>;
