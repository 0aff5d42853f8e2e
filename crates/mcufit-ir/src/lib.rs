//! # mcufit-ir
//!
//! The typed graph at the centre of mcufit. A [`Graph`] is a list of [`Node`]s in topological
//! order, each applying one [`Op`] to earlier nodes' outputs. On top of it:
//! - shape inference with errors that name the node ([`Graph::shapes`]),
//! - the versioned JSON model file ([`Graph::to_json`] / [`Graph::from_json`], `docs/model-format.md`),
//! - channel groups: which channel dimensions prune together ([`Graph::channel_groups`]),
//! - the deployed, fused view that the cost model and exporters share ([`Graph::fused`]),
//! - the backend-free trained weights ([`Weights`]), checked against a graph ([`Weights::check`]),
//! - the model zoo ([`zoo`]) and fitting a model's classifier and input channels to a data set
//!   ([`adapt_to_data`]).

pub mod adapt;
mod cuts;
mod error;
mod fuse;
mod graph;
mod groups;
mod heads;
pub mod layout;
mod op;
mod weights;
pub mod zoo;

pub use adapt::{adapt_to_data, Adaptation};
pub use cuts::{check_cut, cut_points, Cut};
pub use error::{IrError, Result};
pub use fuse::{Activation, FusedGraph, FusedOp};
pub use graph::{Graph, GraphBuilder, Node, NodeId, MODEL_FORMAT, MODEL_FORMAT_VERSION};
pub use groups::{ChannelGroup, ChannelGroups, GroupId, Layout};
pub use heads::{head_graph, truncate_with_head, HeadSpec, HeadSpecError, HEAD_FORMS};
pub use op::{BatchNorm, Conv2d, Count, Dense, DepthwiseConv2d, Op, Padding, Pool2d, Shape};
pub use weights::{BnWeights, NodeWeights, TensorF32, Weights};

/// Loads a model given as `zoo:NAME` or a path to a model file (a `.json` file, or a directory
/// holding `model.json`).
pub fn load_model(spec: &str) -> Result<Graph> {
    if let Some(name) = spec.strip_prefix("zoo:") {
        return zoo::get(name);
    }
    let path = std::path::Path::new(spec);
    if path.is_dir() {
        return Graph::load(path.join("model.json"));
    }
    if !path.exists() {
        if zoo::names().contains(&spec) {
            return Err(IrError::Graph(format!("no file '{spec}'; did you mean 'zoo:{spec}'?")));
        }
        return Err(IrError::Io {
            path: spec.to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such model file (use zoo:NAME for a zoo model)",
            ),
        });
    }
    Graph::load(path)
}
