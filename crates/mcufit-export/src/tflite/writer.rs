//! Serialises a [`TflModel`] to a schema-v3 `.tflite` flatbuffer with the `flatbuffers` crate's
//! builder (tables written by field slot, see `schema.rs`).

use flatbuffers::{FlatBufferBuilder, WIPOffset};

use super::schema;
use super::{TflModel, TflOptions};
use crate::error::{ExportError, Result};

type Table = WIPOffset<flatbuffers::TableFinishedWIPOffset>;

/// Pads so that a following `len`-byte vector's data ends up 16-byte aligned relative to the end
/// of the buffer (the finished buffer's length is a multiple of the builder's 8-byte minimum
/// alignment, so constant data is at least 8-byte aligned in the file).
fn align_data(fbb: &mut FlatBufferBuilder, len: usize) {
    let used = fbb.unfinished_data().len();
    let pad = (16 - (used + len) % 16) % 16;
    for _ in 0..pad {
        fbb.push(0u8);
    }
}

/// A `Buffer` table holding `data`, aligned as [`align_data`] says.
fn data_buffer(fbb: &mut FlatBufferBuilder, data: &[u8]) -> Table {
    align_data(fbb, data.len());
    let v = fbb.create_vector(data);
    let s = fbb.start_table();
    fbb.push_slot_always(schema::slot(schema::buffer::DATA), v);
    fbb.end_table(s)
}

fn options(fbb: &mut FlatBufferBuilder, o: &TflOptions) -> (u8, Option<Table>) {
    use schema::*;
    let t = match o {
        TflOptions::None | TflOptions::Other(_) => return (opts::NONE, None),
        TflOptions::Conv2D { padding, stride_w, stride_h, activation, dilation_w, dilation_h } => {
            let s = fbb.start_table();
            fbb.push_slot::<i8>(slot(conv_opts::PADDING), *padding, 0);
            fbb.push_slot::<i32>(slot(conv_opts::STRIDE_W), *stride_w, 0);
            fbb.push_slot::<i32>(slot(conv_opts::STRIDE_H), *stride_h, 0);
            fbb.push_slot::<i8>(slot(conv_opts::ACTIVATION), *activation, 0);
            fbb.push_slot::<i32>(slot(conv_opts::DILATION_W), *dilation_w, 1);
            fbb.push_slot::<i32>(slot(conv_opts::DILATION_H), *dilation_h, 1);
            (opts::CONV_2D, fbb.end_table(s))
        }
        TflOptions::DepthwiseConv2D {
            padding,
            stride_w,
            stride_h,
            depth_multiplier,
            activation,
            dilation_w,
            dilation_h,
        } => {
            let s = fbb.start_table();
            fbb.push_slot::<i8>(slot(dw_opts::PADDING), *padding, 0);
            fbb.push_slot::<i32>(slot(dw_opts::STRIDE_W), *stride_w, 0);
            fbb.push_slot::<i32>(slot(dw_opts::STRIDE_H), *stride_h, 0);
            fbb.push_slot::<i32>(slot(dw_opts::DEPTH_MULTIPLIER), *depth_multiplier, 0);
            fbb.push_slot::<i8>(slot(dw_opts::ACTIVATION), *activation, 0);
            fbb.push_slot::<i32>(slot(dw_opts::DILATION_W), *dilation_w, 1);
            fbb.push_slot::<i32>(slot(dw_opts::DILATION_H), *dilation_h, 1);
            (opts::DEPTHWISE_CONV_2D, fbb.end_table(s))
        }
        TflOptions::Pool2D { padding, stride_w, stride_h, filter_w, filter_h, activation } => {
            let s = fbb.start_table();
            fbb.push_slot::<i8>(slot(pool_opts::PADDING), *padding, 0);
            fbb.push_slot::<i32>(slot(pool_opts::STRIDE_W), *stride_w, 0);
            fbb.push_slot::<i32>(slot(pool_opts::STRIDE_H), *stride_h, 0);
            fbb.push_slot::<i32>(slot(pool_opts::FILTER_W), *filter_w, 0);
            fbb.push_slot::<i32>(slot(pool_opts::FILTER_H), *filter_h, 0);
            fbb.push_slot::<i8>(slot(pool_opts::ACTIVATION), *activation, 0);
            (opts::POOL_2D, fbb.end_table(s))
        }
        TflOptions::FullyConnected { activation, weights_format, keep_num_dims } => {
            let s = fbb.start_table();
            fbb.push_slot::<i8>(slot(fc_opts::ACTIVATION), *activation, 0);
            fbb.push_slot::<i8>(slot(fc_opts::WEIGHTS_FORMAT), *weights_format, 0);
            fbb.push_slot::<bool>(slot(fc_opts::KEEP_NUM_DIMS), *keep_num_dims, false);
            (opts::FULLY_CONNECTED, fbb.end_table(s))
        }
        TflOptions::Softmax { beta } => {
            let s = fbb.start_table();
            fbb.push_slot::<f32>(slot(softmax_opts::BETA), *beta, 0.0);
            (opts::SOFTMAX, fbb.end_table(s))
        }
        TflOptions::Concatenation { axis, activation } => {
            let s = fbb.start_table();
            fbb.push_slot::<i32>(slot(concat_opts::AXIS), *axis, 0);
            fbb.push_slot::<i8>(slot(concat_opts::ACTIVATION), *activation, 0);
            (opts::CONCATENATION, fbb.end_table(s))
        }
        TflOptions::Add { activation } => {
            let s = fbb.start_table();
            fbb.push_slot::<i8>(slot(add_opts::ACTIVATION), *activation, 0);
            (opts::ADD, fbb.end_table(s))
        }
        TflOptions::Reshape { new_shape } => {
            let v = fbb.create_vector(new_shape);
            let s = fbb.start_table();
            fbb.push_slot_always(slot(reshape_opts::NEW_SHAPE), v);
            (opts::RESHAPE, fbb.end_table(s))
        }
        TflOptions::Reducer { keep_dims } => {
            let s = fbb.start_table();
            fbb.push_slot::<bool>(slot(0), *keep_dims, false);
            (opts::REDUCER, fbb.end_table(s))
        }
    };
    (t.0, Some(t.1))
}

/// Writes `m` as a `.tflite` file image (identifier `TFL3`).
pub fn write(m: &TflModel) -> Result<Vec<u8>> {
    use schema::*;
    let n_tensors = m.tensors.len() as i32;
    let bad_index = |what: &str, i: i32| ExportError::Unsupported {
        op: what.into(),
        msg: format!("tensor index {i} out of range"),
    };
    for op in &m.operators {
        if let Some(&i) = op.inputs.iter().chain(&op.outputs).find(|&&i| i < -1 || i >= n_tensors) {
            return Err(bad_index("operator", i));
        }
    }
    if let Some(&i) = m.inputs.iter().chain(&m.outputs).find(|&&i| i < 0 || i >= n_tensors) {
        return Err(bad_index("subgraph", i));
    }
    let codes = m.operator_codes();
    let mut fbb = FlatBufferBuilder::with_capacity(
        1024 + m.tensors.iter().map(|t| t.data.as_ref().map_or(0, |d| d.len() + 32)).sum::<usize>(),
    );

    // Buffers: 0 is the empty sentinel; then one per constant tensor.
    let mut buffers: Vec<Table> = Vec::new();
    let empty = {
        let s = fbb.start_table();
        fbb.end_table(s)
    };
    buffers.push(empty);
    let mut buffer_of = vec![0u32; m.tensors.len()];
    for (i, t) in m.tensors.iter().enumerate() {
        if let Some(d) = &t.data {
            buffers.push(data_buffer(&mut fbb, d));
            buffer_of[i] = (buffers.len() - 1) as u32;
        }
    }

    // Metadata (e.g. TFLM's offline arena plan): one buffer each, after the constants.
    let mut metadata_buffer = Vec::with_capacity(m.metadata.len());
    for md in &m.metadata {
        buffers.push(data_buffer(&mut fbb, &md.data));
        metadata_buffer.push((buffers.len() - 1) as u32);
    }

    let mut tensors: Vec<Table> = Vec::with_capacity(m.tensors.len());
    for (i, t) in m.tensors.iter().enumerate() {
        let shape = fbb.create_vector(t.dims.as_slice());
        let name = fbb.create_string(&t.name);
        let q = t.quant.as_ref().map(|q| {
            let sc = fbb.create_vector(q.scale.as_slice());
            let zp = fbb.create_vector(q.zero_point.as_slice());
            let s = fbb.start_table();
            fbb.push_slot_always(slot(quant::SCALE), sc);
            fbb.push_slot_always(slot(quant::ZERO_POINT), zp);
            fbb.push_slot::<i32>(slot(quant::QUANTIZED_DIMENSION), q.quantized_dimension, 0);
            fbb.end_table(s)
        });
        let s = fbb.start_table();
        fbb.push_slot_always(slot(tensor::SHAPE), shape);
        fbb.push_slot::<i8>(slot(tensor::TYPE), t.ttype, 0);
        fbb.push_slot::<u32>(slot(tensor::BUFFER), buffer_of[i], 0);
        fbb.push_slot_always(slot(tensor::NAME), name);
        if let Some(q) = q {
            fbb.push_slot_always(slot(tensor::QUANTIZATION), q);
        }
        tensors.push(fbb.end_table(s));
    }

    let mut ops: Vec<Table> = Vec::with_capacity(m.operators.len());
    for op in &m.operators {
        let opcode_index = codes.iter().position(|c| *c == (op.code, op.version)).unwrap_or(0) as u32;
        let ins = fbb.create_vector(op.inputs.as_slice());
        let outs = fbb.create_vector(op.outputs.as_slice());
        let (otype, otable) = options(&mut fbb, &op.options);
        let s = fbb.start_table();
        fbb.push_slot::<u32>(slot(operator::OPCODE_INDEX), opcode_index, 0);
        fbb.push_slot_always(slot(operator::INPUTS), ins);
        fbb.push_slot_always(slot(operator::OUTPUTS), outs);
        fbb.push_slot::<u8>(slot(operator::BUILTIN_OPTIONS_TYPE), otype, 0);
        if let Some(t) = otable {
            fbb.push_slot_always(slot(operator::BUILTIN_OPTIONS), t);
        }
        ops.push(fbb.end_table(s));
    }

    let tensors_v = fbb.create_vector(&tensors);
    let inputs_v = fbb.create_vector(m.inputs.as_slice());
    let outputs_v = fbb.create_vector(m.outputs.as_slice());
    let ops_v = fbb.create_vector(&ops);
    let sg_name = fbb.create_string(&m.subgraph_name);
    let sg = {
        let s = fbb.start_table();
        fbb.push_slot_always(slot(subgraph::TENSORS), tensors_v);
        fbb.push_slot_always(slot(subgraph::INPUTS), inputs_v);
        fbb.push_slot_always(slot(subgraph::OUTPUTS), outputs_v);
        fbb.push_slot_always(slot(subgraph::OPERATORS), ops_v);
        fbb.push_slot_always(slot(subgraph::NAME), sg_name);
        fbb.end_table(s)
    };

    let mut code_tables: Vec<Table> = Vec::with_capacity(codes.len());
    for &(code, version) in &codes {
        let s = fbb.start_table();
        // Codes below 127 also go in the deprecated byte field, which older readers use.
        fbb.push_slot::<i8>(slot(operator_code::DEPRECATED_BUILTIN_CODE), code.min(127) as i8, 0);
        fbb.push_slot::<i32>(slot(operator_code::VERSION), version, 1);
        fbb.push_slot::<i32>(slot(operator_code::BUILTIN_CODE), code, 0);
        code_tables.push(fbb.end_table(s));
    }
    let codes_v = fbb.create_vector(&code_tables);
    let sgs_v = fbb.create_vector(&[sg]);
    let desc = fbb.create_string(&m.description);
    let bufs_v = fbb.create_vector(&buffers);
    let mut md_tables: Vec<Table> = Vec::with_capacity(m.metadata.len());
    for (md, &b) in m.metadata.iter().zip(&metadata_buffer) {
        let name = fbb.create_string(&md.name);
        let s = fbb.start_table();
        fbb.push_slot_always(slot(metadata::NAME), name);
        fbb.push_slot::<u32>(slot(metadata::BUFFER), b, 0);
        md_tables.push(fbb.end_table(s));
    }
    let md_v = (!md_tables.is_empty()).then(|| fbb.create_vector(&md_tables));
    let root = {
        let s = fbb.start_table();
        fbb.push_slot::<u32>(slot(model::VERSION), m.version, 0);
        fbb.push_slot_always(slot(model::OPERATOR_CODES), codes_v);
        fbb.push_slot_always(slot(model::SUBGRAPHS), sgs_v);
        fbb.push_slot_always(slot(model::DESCRIPTION), desc);
        fbb.push_slot_always(slot(model::BUFFERS), bufs_v);
        if let Some(v) = md_v {
            fbb.push_slot_always(slot(model::METADATA), v);
        }
        fbb.end_table(s)
    };
    fbb.finish(root, Some(FILE_IDENTIFIER));
    Ok(fbb.finished_data().to_vec())
}
