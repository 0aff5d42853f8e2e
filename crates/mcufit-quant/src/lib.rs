//! # mcufit-quant
//!
//! Int8 post-training quantization in the TFLite int8 scheme and a bit-exact reference
//! interpreter that reproduces TensorFlow Lite Micro's reference kernels.
//!
//! - [`quantize`] / [`quantize_with`]: BN folding and activation fusion (the IR's
//!   [`mcufit_ir::Graph::fused`] view), min/max calibration, per-channel symmetric int8 weights,
//!   per-tensor asymmetric int8 activations, int32 biases.
//! - [`QuantizedModel::run_int8`]: the int8 reference (gemmlowp `SaturatingRoundingDoublingHighMul`
//!   and `RoundingDivideByPOT`, TFLM's `QuantizeMultiplier`, ADD with left shift 20, AVERAGE_POOL
//!   rounding, int8 SOFTMAX in gemmlowp fixed point).
//! - [`run_float`]: the float reference, used for calibration.
//! - [`random_weights`]: random [`mcufit_ir::Weights`] for testing before any training.

pub mod error;
pub mod fixedpoint;
pub mod float_ref;
mod kernels;
pub mod model;
pub mod quantize;
pub mod rng;

pub use error::{QuantError, Result};
pub use float_ref::{run_float, run_float_all};
pub use kernels::{requant, softmax_int8};
pub use model::{
    activation_range, tflm_padding, AddParams, ChannelRequant, PreparedOp, QOp, QOpKind, QTensor, QWeights,
    QuantizedModel, SoftmaxParams, Window,
};
pub use quantize::{quantize, quantize_with, InputQuant, QuantizeOptions};
pub use rng::random_weights;
