//! The subset of the TFLite schema (schema.fbs, version 3) that mcufit writes and reads:
//! field slots, enum values and union indices, transcribed from
//! `tensorflow/lite/schema/schema.fbs`.

pub const FILE_IDENTIFIER: &str = "TFL3";
pub const SCHEMA_VERSION: u32 = 3;

/// `BuiltinOperator` codes.
pub mod op {
    pub const ADD: i32 = 0;
    pub const AVERAGE_POOL_2D: i32 = 1;
    pub const CONCATENATION: i32 = 2;
    pub const CONV_2D: i32 = 3;
    pub const DEPTHWISE_CONV_2D: i32 = 4;
    pub const DEQUANTIZE: i32 = 6;
    pub const FULLY_CONNECTED: i32 = 9;
    pub const MAX_POOL_2D: i32 = 17;
    pub const RESHAPE: i32 = 22;
    pub const SOFTMAX: i32 = 25;
    pub const MEAN: i32 = 40;
    pub const QUANTIZE: i32 = 114;
}

/// `BuiltinOptions` union type indices.
pub mod opts {
    pub const NONE: u8 = 0;
    pub const CONV_2D: u8 = 1;
    pub const DEPTHWISE_CONV_2D: u8 = 2;
    pub const POOL_2D: u8 = 5;
    pub const FULLY_CONNECTED: u8 = 8;
    pub const SOFTMAX: u8 = 9;
    pub const CONCATENATION: u8 = 10;
    pub const ADD: u8 = 11;
    pub const RESHAPE: u8 = 17;
    pub const REDUCER: u8 = 27;
}

/// `TensorType`.
pub mod ttype {
    pub const FLOAT32: i8 = 0;
    pub const INT32: i8 = 2;
    pub const INT8: i8 = 9;
}

/// `Padding`.
pub const PADDING_SAME: i8 = 0;
pub const PADDING_VALID: i8 = 1;

/// `ActivationFunctionType`.
pub const ACT_NONE: i8 = 0;
pub const ACT_RELU: i8 = 1;
pub const ACT_RELU6: i8 = 3;

/// Field slot `i` lives at vtable offset `4 + 2 i`.
pub const fn slot(i: u16) -> u16 {
    4 + 2 * i
}

pub mod model {
    pub const VERSION: u16 = 0;
    pub const OPERATOR_CODES: u16 = 1;
    pub const SUBGRAPHS: u16 = 2;
    pub const DESCRIPTION: u16 = 3;
    pub const BUFFERS: u16 = 4;
    pub const METADATA: u16 = 6;
}
pub mod metadata {
    pub const NAME: u16 = 0;
    pub const BUFFER: u16 = 1;
}
pub mod subgraph {
    pub const TENSORS: u16 = 0;
    pub const INPUTS: u16 = 1;
    pub const OUTPUTS: u16 = 2;
    pub const OPERATORS: u16 = 3;
    pub const NAME: u16 = 4;
}
pub mod buffer {
    pub const DATA: u16 = 0;
}
pub mod operator_code {
    pub const DEPRECATED_BUILTIN_CODE: u16 = 0;
    pub const VERSION: u16 = 2;
    pub const BUILTIN_CODE: u16 = 3;
}
pub mod operator {
    pub const OPCODE_INDEX: u16 = 0;
    pub const INPUTS: u16 = 1;
    pub const OUTPUTS: u16 = 2;
    pub const BUILTIN_OPTIONS_TYPE: u16 = 3;
    pub const BUILTIN_OPTIONS: u16 = 4;
}
pub mod tensor {
    pub const SHAPE: u16 = 0;
    pub const TYPE: u16 = 1;
    pub const BUFFER: u16 = 2;
    pub const NAME: u16 = 3;
    pub const QUANTIZATION: u16 = 4;
}
pub mod quant {
    pub const SCALE: u16 = 2;
    pub const ZERO_POINT: u16 = 3;
    pub const QUANTIZED_DIMENSION: u16 = 6;
}
pub mod conv_opts {
    pub const PADDING: u16 = 0;
    pub const STRIDE_W: u16 = 1;
    pub const STRIDE_H: u16 = 2;
    pub const ACTIVATION: u16 = 3;
    pub const DILATION_W: u16 = 4;
    pub const DILATION_H: u16 = 5;
}
pub mod dw_opts {
    pub const PADDING: u16 = 0;
    pub const STRIDE_W: u16 = 1;
    pub const STRIDE_H: u16 = 2;
    pub const DEPTH_MULTIPLIER: u16 = 3;
    pub const ACTIVATION: u16 = 4;
    pub const DILATION_W: u16 = 5;
    pub const DILATION_H: u16 = 6;
}
pub mod pool_opts {
    pub const PADDING: u16 = 0;
    pub const STRIDE_W: u16 = 1;
    pub const STRIDE_H: u16 = 2;
    pub const FILTER_W: u16 = 3;
    pub const FILTER_H: u16 = 4;
    pub const ACTIVATION: u16 = 5;
}
pub mod fc_opts {
    pub const ACTIVATION: u16 = 0;
    pub const WEIGHTS_FORMAT: u16 = 1;
    pub const KEEP_NUM_DIMS: u16 = 2;
}
pub mod softmax_opts {
    pub const BETA: u16 = 0;
}
pub mod concat_opts {
    pub const AXIS: u16 = 0;
    pub const ACTIVATION: u16 = 1;
}
pub mod add_opts {
    pub const ACTIVATION: u16 = 0;
}
pub mod reshape_opts {
    pub const NEW_SHAPE: u16 = 0;
}
