//! A bounds-checked `.tflite` reader: every offset is checked against the buffer before use, so
//! truncated or corrupted files give [`ExportError::Malformed`], never a panic or a huge
//! allocation. Reads the subset of the schema listed in `schema.rs` (first subgraph only).

use super::schema::{self, slot};
use super::{TflMetadata, TflModel, TflOperator, TflOptions, TflQuant, TflTensor};
use crate::error::{ExportError, Result};

fn bad<T>(msg: impl Into<String>) -> Result<T> {
    Err(ExportError::Malformed(msg.into()))
}

#[derive(Clone, Copy)]
struct Buf<'a>(&'a [u8]);

impl<'a> Buf<'a> {
    fn bytes(&self, pos: usize, n: usize) -> Result<&'a [u8]> {
        match pos.checked_add(n) {
            Some(end) if end <= self.0.len() => Ok(&self.0[pos..end]),
            _ => bad(format!("read of {n} bytes at offset {pos} past the end ({} bytes)", self.0.len())),
        }
    }
    fn u8(&self, pos: usize) -> Result<u8> {
        Ok(self.bytes(pos, 1)?[0])
    }
    fn u16(&self, pos: usize) -> Result<u16> {
        let b = self.bytes(pos, 2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&self, pos: usize) -> Result<u32> {
        let b = self.bytes(pos, 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i32(&self, pos: usize) -> Result<i32> {
        Ok(self.u32(pos)? as i32)
    }
    fn u64(&self, pos: usize) -> Result<u64> {
        let b = self.bytes(pos, 8)?;
        Ok(u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
    }
    /// Follows a `uoffset_t` stored at `pos`.
    fn deref(&self, pos: usize) -> Result<usize> {
        let off = self.u32(pos)? as usize;
        match pos.checked_add(off) {
            Some(t) if t < self.0.len() && off != 0 => Ok(t),
            _ => bad(format!("offset {off} at {pos} points outside the buffer")),
        }
    }
    fn table(&self, pos: usize) -> Result<Table<'a>> {
        let soff = self.i32(pos)? as i64;
        let vt = pos as i64 - soff;
        if vt < 0 || vt as usize >= self.0.len() {
            return bad(format!("vtable of table at {pos} is outside the buffer"));
        }
        let vt = vt as usize;
        let vt_len = self.u16(vt)? as usize;
        let obj_len = self.u16(vt + 2)? as usize;
        if vt_len < 4 || !vt_len.is_multiple_of(2) {
            return bad(format!("vtable at {vt} has bad length {vt_len}"));
        }
        self.bytes(vt, vt_len)?;
        self.bytes(pos, obj_len.max(4))?;
        Ok(Table { buf: *self, pos, vt, vt_len, obj_len })
    }
}

#[derive(Clone, Copy)]
struct Table<'a> {
    buf: Buf<'a>,
    pos: usize,
    vt: usize,
    vt_len: usize,
    obj_len: usize,
}

impl<'a> Table<'a> {
    /// Absolute position of field `slot_index`, if present.
    fn field(&self, slot_index: u16, size: usize) -> Result<Option<usize>> {
        let vo = slot(slot_index) as usize;
        if vo + 2 > self.vt_len {
            return Ok(None);
        }
        let off = self.buf.u16(self.vt + vo)? as usize;
        if off == 0 {
            return Ok(None);
        }
        if off + size > self.obj_len {
            return bad(format!("field {slot_index} of table at {} lies outside the table", self.pos));
        }
        Ok(Some(self.pos + off))
    }
    fn i8(&self, s: u16, default: i8) -> Result<i8> {
        Ok(match self.field(s, 1)? {
            Some(p) => self.buf.u8(p)? as i8,
            None => default,
        })
    }
    fn u8(&self, s: u16, default: u8) -> Result<u8> {
        Ok(match self.field(s, 1)? {
            Some(p) => self.buf.u8(p)?,
            None => default,
        })
    }
    fn bool(&self, s: u16) -> Result<bool> {
        Ok(self.u8(s, 0)? != 0)
    }
    fn i32(&self, s: u16, default: i32) -> Result<i32> {
        Ok(match self.field(s, 4)? {
            Some(p) => self.buf.i32(p)?,
            None => default,
        })
    }
    fn u32(&self, s: u16, default: u32) -> Result<u32> {
        Ok(self.i32(s, default as i32)? as u32)
    }
    fn f32(&self, s: u16, default: f32) -> Result<f32> {
        Ok(match self.field(s, 4)? {
            Some(p) => f32::from_bits(self.buf.u32(p)?),
            None => default,
        })
    }
    fn table(&self, s: u16) -> Result<Option<Table<'a>>> {
        match self.field(s, 4)? {
            Some(p) => Ok(Some(self.buf.table(self.buf.deref(p)?)?)),
            None => Ok(None),
        }
    }
    /// `(start, len)` of a vector of `elem`-byte elements, bounds-checked.
    fn vector(&self, s: u16, elem: usize) -> Result<Option<(usize, usize)>> {
        let Some(p) = self.field(s, 4)? else { return Ok(None) };
        let v = self.buf.deref(p)?;
        let len = self.buf.u32(v)? as usize;
        let start = v + 4;
        match len.checked_mul(elem) {
            Some(bytes) => {
                self.buf.bytes(start, bytes)?;
            }
            None => return bad(format!("vector at {v} is too long")),
        }
        Ok(Some((start, len)))
    }
    fn string(&self, s: u16) -> Result<String> {
        match self.vector(s, 1)? {
            Some((start, len)) => match std::str::from_utf8(self.buf.bytes(start, len)?) {
                Ok(s) => Ok(s.to_string()),
                Err(_) => bad("string is not UTF-8"),
            },
            None => Ok(String::new()),
        }
    }
    fn bytes(&self, s: u16) -> Result<Option<Vec<u8>>> {
        match self.vector(s, 1)? {
            Some((start, len)) => Ok(Some(self.buf.bytes(start, len)?.to_vec())),
            None => Ok(None),
        }
    }
    fn i32s(&self, s: u16) -> Result<Vec<i32>> {
        let Some((start, len)) = self.vector(s, 4)? else { return Ok(vec![]) };
        (0..len).map(|i| self.buf.i32(start + 4 * i)).collect()
    }
    fn f32s(&self, s: u16) -> Result<Vec<f32>> {
        Ok(self.i32s(s)?.into_iter().map(|v| f32::from_bits(v as u32)).collect())
    }
    fn i64s(&self, s: u16) -> Result<Vec<i64>> {
        let Some((start, len)) = self.vector(s, 8)? else { return Ok(vec![]) };
        (0..len).map(|i| self.buf.u64(start + 8 * i).map(|v| v as i64)).collect()
    }
    fn tables(&self, s: u16) -> Result<Vec<Table<'a>>> {
        let Some((start, len)) = self.vector(s, 4)? else { return Ok(vec![]) };
        (0..len).map(|i| self.buf.table(self.buf.deref(start + 4 * i)?)).collect()
    }
}

fn read_options(t: Option<Table>, kind: u8) -> Result<TflOptions> {
    use schema::*;
    let Some(t) = t else {
        return Ok(if kind == opts::NONE { TflOptions::None } else { TflOptions::Other(kind) });
    };
    Ok(match kind {
        opts::CONV_2D => TflOptions::Conv2D {
            padding: t.i8(conv_opts::PADDING, 0)?,
            stride_w: t.i32(conv_opts::STRIDE_W, 0)?,
            stride_h: t.i32(conv_opts::STRIDE_H, 0)?,
            activation: t.i8(conv_opts::ACTIVATION, 0)?,
            dilation_w: t.i32(conv_opts::DILATION_W, 1)?,
            dilation_h: t.i32(conv_opts::DILATION_H, 1)?,
        },
        opts::DEPTHWISE_CONV_2D => TflOptions::DepthwiseConv2D {
            padding: t.i8(dw_opts::PADDING, 0)?,
            stride_w: t.i32(dw_opts::STRIDE_W, 0)?,
            stride_h: t.i32(dw_opts::STRIDE_H, 0)?,
            depth_multiplier: t.i32(dw_opts::DEPTH_MULTIPLIER, 0)?,
            activation: t.i8(dw_opts::ACTIVATION, 0)?,
            dilation_w: t.i32(dw_opts::DILATION_W, 1)?,
            dilation_h: t.i32(dw_opts::DILATION_H, 1)?,
        },
        opts::POOL_2D => TflOptions::Pool2D {
            padding: t.i8(pool_opts::PADDING, 0)?,
            stride_w: t.i32(pool_opts::STRIDE_W, 0)?,
            stride_h: t.i32(pool_opts::STRIDE_H, 0)?,
            filter_w: t.i32(pool_opts::FILTER_W, 0)?,
            filter_h: t.i32(pool_opts::FILTER_H, 0)?,
            activation: t.i8(pool_opts::ACTIVATION, 0)?,
        },
        opts::FULLY_CONNECTED => TflOptions::FullyConnected {
            activation: t.i8(fc_opts::ACTIVATION, 0)?,
            weights_format: t.i8(fc_opts::WEIGHTS_FORMAT, 0)?,
            keep_num_dims: t.bool(fc_opts::KEEP_NUM_DIMS)?,
        },
        opts::SOFTMAX => TflOptions::Softmax { beta: t.f32(softmax_opts::BETA, 0.0)? },
        opts::CONCATENATION => TflOptions::Concatenation {
            axis: t.i32(concat_opts::AXIS, 0)?,
            activation: t.i8(concat_opts::ACTIVATION, 0)?,
        },
        opts::ADD => TflOptions::Add { activation: t.i8(add_opts::ACTIVATION, 0)? },
        opts::RESHAPE => TflOptions::Reshape { new_shape: t.i32s(reshape_opts::NEW_SHAPE)? },
        opts::REDUCER => TflOptions::Reducer { keep_dims: t.bool(0)? },
        other => TflOptions::Other(other),
    })
}

/// Parses a `.tflite` file image. Fails cleanly on anything malformed.
pub fn read(data: &[u8]) -> Result<TflModel> {
    use schema::*;
    if data.len() < 8 {
        return bad(format!("{} bytes is too short for a flatbuffer", data.len()));
    }
    if &data[4..8] != FILE_IDENTIFIER.as_bytes() {
        return bad(format!("file identifier is {:?}, expected \"TFL3\"", String::from_utf8_lossy(&data[4..8])));
    }
    let buf = Buf(data);
    let root = buf.table(buf.deref(0)?)?;
    let version = root.u32(model::VERSION, 0)?;
    if version != SCHEMA_VERSION {
        return bad(format!("schema version {version}, expected {SCHEMA_VERSION}"));
    }
    let mut codes = Vec::new();
    for c in root.tables(model::OPERATOR_CODES)? {
        let dep = c.i8(operator_code::DEPRECATED_BUILTIN_CODE, 0)? as i32;
        let code = c.i32(operator_code::BUILTIN_CODE, 0)?;
        codes.push((code.max(dep), c.i32(operator_code::VERSION, 1)?));
    }
    let mut buffers: Vec<Option<Vec<u8>>> = Vec::new();
    for b in root.tables(model::BUFFERS)? {
        buffers.push(b.bytes(buffer::DATA)?);
    }
    let subgraphs = root.tables(model::SUBGRAPHS)?;
    let Some(sg) = subgraphs.first() else { return bad("the model has no subgraph") };

    let mut tensors = Vec::new();
    let mut copied = 0usize;
    for t in sg.tables(subgraph::TENSORS)? {
        let b = t.u32(tensor::BUFFER, 0)? as usize;
        let data = match buffers.get(b) {
            Some(d) => {
                // Many tensors sharing one big buffer must not blow up memory.
                copied += d.as_ref().map_or(0, |d| d.len());
                if copied > 4 * data.len() + 4096 {
                    return bad("buffers are shared by too many tensors");
                }
                d.clone().filter(|d| !d.is_empty())
            }
            None => return bad(format!("tensor refers to buffer {b}, the model has {}", buffers.len())),
        };
        let quant = match t.table(tensor::QUANTIZATION)? {
            Some(q) => {
                let scale = q.f32s(quant::SCALE)?;
                let zero_point = q.i64s(quant::ZERO_POINT)?;
                if scale.is_empty() {
                    None
                } else {
                    Some(TflQuant { scale, zero_point, quantized_dimension: q.i32(quant::QUANTIZED_DIMENSION, 0)? })
                }
            }
            None => None,
        };
        tensors.push(TflTensor {
            name: t.string(tensor::NAME)?,
            dims: t.i32s(tensor::SHAPE)?,
            ttype: t.i8(tensor::TYPE, 0)?,
            data,
            quant,
        });
    }
    let nt = tensors.len() as i32;
    let check = |v: Vec<i32>, what: &str| -> Result<Vec<i32>> {
        match v.iter().find(|&&i| i < -1 || i >= nt) {
            Some(i) => bad(format!("{what} refers to tensor {i}, the subgraph has {nt}")),
            None => Ok(v),
        }
    };
    let mut operators = Vec::new();
    for o in sg.tables(subgraph::OPERATORS)? {
        let idx = o.u32(operator::OPCODE_INDEX, 0)? as usize;
        let Some(&(code, version)) = codes.get(idx) else {
            return bad(format!("operator uses opcode {idx}, the model has {}", codes.len()));
        };
        let kind = o.u8(operator::BUILTIN_OPTIONS_TYPE, 0)?;
        let options = read_options(o.table(operator::BUILTIN_OPTIONS)?, kind)?;
        operators.push(TflOperator {
            code,
            version,
            inputs: check(o.i32s(operator::INPUTS)?, "operator input")?,
            outputs: check(o.i32s(operator::OUTPUTS)?, "operator output")?,
            options,
        });
    }
    let mut metadata = Vec::new();
    for md in root.tables(model::METADATA)? {
        let b = md.u32(metadata::BUFFER, 0)? as usize;
        let Some(data) = buffers.get(b) else {
            return bad(format!("metadata refers to buffer {b}, the model has {}", buffers.len()));
        };
        copied += data.as_ref().map_or(0, |d| d.len());
        if copied > 4 * buf.0.len() + 4096 {
            return bad("buffers are shared by too many tensors or metadata entries");
        }
        metadata.push(TflMetadata { name: md.string(metadata::NAME)?, data: data.clone().unwrap_or_default() });
    }
    Ok(TflModel {
        version,
        metadata,
        description: root.string(model::DESCRIPTION)?,
        subgraph_name: sg.string(subgraph::NAME)?,
        inputs: check(sg.i32s(subgraph::INPUTS)?, "subgraph input")?,
        outputs: check(sg.i32s(subgraph::OUTPUTS)?, "subgraph output")?,
        tensors,
        operators,
        subgraphs: subgraphs.len(),
    })
}
