//! ONNX tensors (initializers, `Constant` values, attribute tensors) → constants.
//!
//! Only what a float model needs is read: float32 (and float64, narrowed to f32) for weights,
//! int64 / int32 for shapes and axes. Sizes are checked before anything is allocated: a tensor's
//! element count must fit 2^53 and match the bytes the file holds for it.

use super::proto::tensor_proto::{DataLocation, DataType};
use super::proto::TensorProto;
use super::{malformed, unsupported};
use crate::Result;

/// The most elements one tensor may have: 2^53, the limit of the IR's shape inference (no
/// microcontroller model comes near it).
pub(super) const MAX_COUNT: u64 = 1 << 53;

/// A constant's values.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Data {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

/// A constant tensor: row-major values with their ONNX dims (`[]` for a scalar).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Const {
    pub dims: Vec<usize>,
    pub data: Data,
}

impl Const {
    pub fn len(&self) -> usize {
        match &self.data {
            Data::F32(v) => v.len(),
            Data::I64(v) => v.len(),
        }
    }

    /// The values as f32 (int constants converted), for min/max and bias operands.
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.data {
            Data::F32(v) => v.clone(),
            Data::I64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// The values as i64, `None` for a float constant.
    pub fn ints(&self) -> Option<&[i64]> {
        match &self.data {
            Data::I64(v) => Some(v),
            Data::F32(_) => None,
        }
    }

    /// The values as f32, `None` for an int constant.
    pub fn floats(&self) -> Option<&[f32]> {
        match &self.data {
            Data::F32(v) => Some(v),
            Data::I64(_) => None,
        }
    }
}

/// Element count of `dims`, `None` when it overflows or exceeds 2^53.
pub(super) fn count(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).filter(|&n| (n as u64) <= MAX_COUNT)
}

/// Decodes `t`; `what` says where it comes from in error messages ("initializer 'conv1.weight'").
pub(super) fn decode(t: &TensorProto, what: &str) -> Result<Const> {
    if t.data_location == Some(DataLocation::External as i32) || !t.external_data.is_empty() {
        return Err(unsupported(format!(
            "{what} keeps its data in a separate file; mcufit reads one self-contained .onnx: save it with \
             onnx.save(model, path, save_as_external_data=False) (possible below 2 GiB)"
        )));
    }
    if t.segment.is_some() {
        return Err(unsupported(format!("{what} is a segment of a larger tensor; save the model unsegmented")));
    }
    let mut dims = Vec::with_capacity(t.dims.len().min(8));
    for &d in &t.dims {
        match usize::try_from(d) {
            Ok(d) => dims.push(d),
            Err(_) => return Err(malformed(format!("{what} has the negative dimension {d} in {:?}", t.dims))),
        }
    }
    let n = count(&dims).ok_or_else(|| {
        malformed(format!(
            "{what} has dims {:?}: more than 2^53 elements, more than any model holds (a corrupt file?)",
            t.dims
        ))
    })?;
    let dt = t.data_type.unwrap_or(DataType::Undefined as i32);
    let raw = t.raw_data.as_deref().filter(|r| !r.is_empty());
    // The values of one element type, from raw_data (little-endian) or the typed field.
    fn values<T: Copy, const B: usize>(
        raw: Option<&[u8]>,
        typed: &[T],
        n: usize,
        what: &str,
        dims: &[usize],
        name: &str,
        from_le: fn([u8; B]) -> T,
    ) -> Result<Vec<T>> {
        let held = match raw {
            Some(r) => r.len() / B + usize::from(!r.len().is_multiple_of(B)),
            None => typed.len(),
        };
        if held != n || raw.is_some_and(|r| !r.len().is_multiple_of(B)) {
            let got = raw.map_or(format!("{} values", typed.len()), |r| format!("{} bytes", r.len()));
            return Err(malformed(format!(
                "{what} has dims {dims:?} ({n} {name} values) but holds {got}; the file is truncated or corrupt"
            )));
        }
        Ok(match raw {
            Some(r) => r.chunks_exact(B).map(|c| from_le(c.try_into().expect("chunks_exact gives B bytes"))).collect(),
            None => typed.to_vec(),
        })
    }
    let data = match DataType::try_from(dt) {
        Ok(DataType::Float) => Data::F32(values(raw, &t.float_data, n, what, &dims, "float32", f32::from_le_bytes)?),
        Ok(DataType::Double) => {
            let v = values(raw, &t.double_data, n, what, &dims, "float64", f64::from_le_bytes)?;
            Data::F32(v.into_iter().map(|x| x as f32).collect())
        }
        Ok(DataType::Int64) => Data::I64(values(raw, &t.int64_data, n, what, &dims, "int64", i64::from_le_bytes)?),
        Ok(DataType::Int32) => {
            let v = values(raw, &t.int32_data, n, what, &dims, "int32", i32::from_le_bytes)?;
            Data::I64(v.into_iter().map(i64::from).collect())
        }
        Ok(DataType::Undefined) => return Err(malformed(format!("{what} has no data type"))),
        Ok(other) => {
            return Err(unsupported(format!(
                "{what} is {}; mcufit imports float32 models (float32 weights, int64 shapes): convert the \
                 model to float32 first (for a quantized model, import the float one and let mcufit quantize)",
                other.as_str_name()
            )))
        }
        Err(_) => return Err(malformed(format!("{what} has the unknown data type {dt}"))),
    };
    Ok(Const { dims, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(dims: &[i64], dt: DataType, raw: &[u8]) -> TensorProto {
        TensorProto {
            dims: dims.to_vec(),
            data_type: Some(dt as i32),
            raw_data: Some(raw.to_vec()),
            ..Default::default()
        }
    }

    #[test]
    fn raw_and_typed_data_decode_and_sizes_are_checked_first() {
        let raw: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        let c = decode(&tensor(&[2], DataType::Float, &raw), "t").unwrap();
        assert_eq!(c, Const { dims: vec![2], data: Data::F32(vec![1.5, -2.0]) });
        let t = TensorProto {
            dims: vec![1, 2],
            data_type: Some(DataType::Int64 as i32),
            int64_data: vec![1, -1],
            ..Default::default()
        };
        assert_eq!(decode(&t, "t").unwrap().ints(), Some(&[1i64, -1][..]));
        // Scalars have no dims and one value.
        let s = decode(&tensor(&[], DataType::Float, &6f32.to_le_bytes()), "s").unwrap();
        assert_eq!((s.dims.len(), s.to_f32()), (0, vec![6.0]));
        for (dims, raw, words) in [
            (vec![1i64 << 40], vec![0u8; 16], "holds 16 bytes"),
            (vec![1 << 31, 1 << 31, 1 << 31], vec![], "more than 2^53"),
            (vec![-3], vec![], "negative"),
            (vec![3], vec![0u8; 11], "holds 11 bytes"),
        ] {
            let e = decode(&tensor(&dims, DataType::Float, &raw), "initializer 'w'").unwrap_err().to_string();
            assert!(e.contains("initializer 'w'") && e.contains(words), "{e}");
        }
        let e = decode(&tensor(&[1], DataType::Float16, &[0, 0]), "initializer 'h'").unwrap_err().to_string();
        assert!(e.contains("FLOAT16") && e.contains("float32"), "{e}");
        let mut ext = tensor(&[1], DataType::Float, &[]);
        ext.data_location = Some(DataLocation::External as i32);
        let e = decode(&ext, "initializer 'x'").unwrap_err().to_string();
        assert!(e.contains("save_as_external_data=False"), "{e}");
    }
}
