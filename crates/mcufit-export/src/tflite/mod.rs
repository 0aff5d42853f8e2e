//! TFLite flatbuffer export: lowering a [`QuantizedModel`] to TFLite tensors and operators
//! ([`lower`]), the flatbuffer writer ([`write`], built with the `flatbuffers` crate), a
//! bounds-checked reader ([`read`]) and an importer back to a `QuantizedModel` ([`import`]).

pub mod import;
pub mod lower;
pub mod reader;
pub mod schema;
pub mod writer;

pub use import::import;
pub use lower::{encode_offline_plan, lower, lower_planned, offline_plan};
pub use reader::read;
pub use writer::write;

/// Quantization parameters of a TFLite tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct TflQuant {
    pub scale: Vec<f32>,
    pub zero_point: Vec<i64>,
    pub quantized_dimension: i32,
}

/// A tensor of the (single) subgraph; `data` is the constant buffer, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct TflTensor {
    pub name: String,
    pub dims: Vec<i32>,
    pub ttype: i8,
    pub data: Option<Vec<u8>>,
    pub quant: Option<TflQuant>,
}

impl TflTensor {
    pub fn elements(&self) -> usize {
        self.dims.iter().map(|&d| d.max(0) as usize).product()
    }
}

/// The builtin options mcufit writes (anything else read from a file is kept as `Other`).
#[derive(Debug, Clone, PartialEq)]
pub enum TflOptions {
    None,
    Conv2D {
        padding: i8,
        stride_w: i32,
        stride_h: i32,
        activation: i8,
        dilation_w: i32,
        dilation_h: i32,
    },
    DepthwiseConv2D {
        padding: i8,
        stride_w: i32,
        stride_h: i32,
        depth_multiplier: i32,
        activation: i8,
        dilation_w: i32,
        dilation_h: i32,
    },
    Pool2D {
        padding: i8,
        stride_w: i32,
        stride_h: i32,
        filter_w: i32,
        filter_h: i32,
        activation: i8,
    },
    FullyConnected {
        activation: i8,
        weights_format: i8,
        keep_num_dims: bool,
    },
    Softmax {
        beta: f32,
    },
    Concatenation {
        axis: i32,
        activation: i8,
    },
    Add {
        activation: i8,
    },
    Reshape {
        new_shape: Vec<i32>,
    },
    Reducer {
        keep_dims: bool,
    },
    /// A union member mcufit does not interpret (its type index).
    Other(u8),
}

#[derive(Debug, Clone, PartialEq)]
pub struct TflOperator {
    /// `BuiltinOperator` code.
    pub code: i32,
    pub version: i32,
    pub inputs: Vec<i32>,
    pub outputs: Vec<i32>,
    pub options: TflOptions,
}

/// Name of TFLite Micro's offline arena plan in a model's `metadata`.
pub const OFFLINE_PLAN_METADATA: &str = "OfflineMemoryAllocation";

/// One entry of the model's `metadata` (its bytes live in a buffer of their own).
#[derive(Debug, Clone, PartialEq)]
pub struct TflMetadata {
    pub name: String,
    pub data: Vec<u8>,
}

/// A single-subgraph TFLite model as mcufit sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct TflModel {
    pub version: u32,
    pub description: String,
    pub subgraph_name: String,
    pub tensors: Vec<TflTensor>,
    pub operators: Vec<TflOperator>,
    pub inputs: Vec<i32>,
    pub outputs: Vec<i32>,
    pub metadata: Vec<TflMetadata>,
    /// Subgraphs in the file (mcufit reads and writes the first; an importer refuses more).
    pub subgraphs: usize,
}

impl TflModel {
    /// The distinct (code, version) pairs in first-use order: the model's `operator_codes`.
    pub fn operator_codes(&self) -> Vec<(i32, i32)> {
        let mut codes: Vec<(i32, i32)> = Vec::new();
        for op in &self.operators {
            if !codes.contains(&(op.code, op.version)) {
                codes.push((op.code, op.version));
            }
        }
        codes
    }
}
