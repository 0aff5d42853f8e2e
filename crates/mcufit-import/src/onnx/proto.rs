//! The ONNX protobuf messages, generated at build time by prost-build from the vendored
//! `proto/onnx.proto` (see `build.rs`). Decoding is prost's: unknown fields are skipped, nesting is
//! limited (100 levels), and no length in the file allocates more than the file holds.

#![allow(clippy::all, missing_docs)]

include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
