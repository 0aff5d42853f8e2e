//! Import of a `.tflite` (of the kind mcufit writes) back to a [`QuantizedModel`], one model op
//! per TFLite operator. Used for round-trip checks: the imported model must compute exactly
//! what the original computes.

use mcufit_ir::{Activation, Padding, Shape};
use mcufit_quant::{QOp, QOpKind, QTensor, QWeights, QuantizedModel};

use super::schema::{self, op, ttype};
use super::{TflModel, TflOptions, TflTensor};
use crate::error::{ExportError, Result};

fn err<T>(msg: impl Into<String>) -> Result<T> {
    Err(ExportError::Import(msg.into()))
}

fn shape_of(t: &TflTensor) -> Result<Shape> {
    let d: Vec<usize> = t.dims.iter().map(|&v| v.max(0) as usize).collect();
    match d.as_slice() {
        [1, h, w, c] => Ok(Shape::new(*h, *w, *c)),
        [1, n] => Ok(Shape::flat(*n)),
        _ => err(format!("tensor '{}' has dims {:?} (expected [1,h,w,c] or [1,n])", t.name, t.dims)),
    }
}

fn activation(a: i8) -> Result<Activation> {
    match a {
        schema::ACT_NONE => Ok(Activation::None),
        schema::ACT_RELU => Ok(Activation::Relu),
        schema::ACT_RELU6 => Ok(Activation::Relu6),
        other => err(format!("fused activation {other}")),
    }
}

fn padding(p: i8) -> Result<Padding> {
    match p {
        schema::PADDING_SAME => Ok(Padding::Same),
        schema::PADDING_VALID => Ok(Padding::Valid),
        other => err(format!("padding {other}")),
    }
}

/// A stride or window size: at least 1 (a negative one would wrap to a huge `usize`).
fn positive(v: i32, what: &str) -> Result<usize> {
    if v < 1 {
        return err(format!("{what} {v} (must be at least 1)"));
    }
    Ok(v as usize)
}

fn act_quant(t: &TflTensor) -> Result<(f32, i32)> {
    match &t.quant {
        Some(q) if t.ttype == ttype::INT8 && q.scale.len() == 1 && q.zero_point.len() == 1 => {
            Ok((q.scale[0], q.zero_point[0].clamp(-1000, 1000) as i32))
        }
        _ => err(format!("tensor '{}' is not a per-tensor quantized int8 tensor", t.name)),
    }
}

fn weights(m: &TflModel, filter: i32, bias: i32) -> Result<QWeights> {
    let (Some(f), Some(b)) = (m.tensors.get(filter as usize), m.tensors.get(bias as usize)) else {
        return err("operator without filter or bias tensor");
    };
    let (Some(fd), Some(bd)) = (&f.data, &b.data) else {
        return err(format!("'{}' or '{}' has no data", f.name, b.name));
    };
    let Some(q) = &f.quant else { return err(format!("filter '{}' is not quantized", f.name)) };
    if f.ttype != ttype::INT8 || b.ttype != ttype::INT32 || bd.len() % 4 != 0 {
        return err(format!("filter '{}' must be int8 and bias '{}' int32", f.name, b.name));
    }
    if q.zero_point.iter().any(|&z| z != 0) {
        return err(format!("filter '{}' is not symmetric", f.name));
    }
    Ok(QWeights {
        filter: fd.iter().map(|&v| v as i8).collect(),
        filter_dims: f.dims.iter().map(|&v| v.max(0) as usize).collect(),
        filter_scales: q.scale.clone(),
        bias: bd.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
    })
}

/// Converts a TFLite model of mcufit's op subset back to a quantized model.
pub fn import(m: &TflModel) -> Result<QuantizedModel> {
    let (Some(&input), Some(&output)) = (m.inputs.first(), m.outputs.first()) else {
        return err("the subgraph has no input or output");
    };
    let tensor = |i: i32| -> Result<&TflTensor> {
        m.tensors.get(i as usize).ok_or_else(|| ExportError::Import(format!("tensor {i} out of range")))
    };
    let mut index_of = vec![usize::MAX; m.tensors.len()];
    let it = tensor(input)?;
    let (scale, zero_point) = act_quant(it)?;
    let mut tensors = vec![QTensor { name: it.name.clone(), shape: shape_of(it)?, scale, zero_point }];
    let mut ops =
        vec![QOp { name: it.name.clone(), kind: QOpKind::Input, inputs: vec![], kernel_shape: shape_of(it)? }];
    index_of[input as usize] = 0;
    for o in &m.operators {
        let [out] = o.outputs.as_slice() else { return err("operator with other than one output") };
        let ot = tensor(*out)?;
        let shape = shape_of(ot)?;
        let (scale, zero_point) = act_quant(ot)?;
        let inp = |k: usize| -> Result<usize> {
            match o.inputs.get(k) {
                Some(&i) if i >= 0 && (i as usize) < index_of.len() && index_of[i as usize] != usize::MAX => {
                    Ok(index_of[i as usize])
                }
                _ => err(format!("operator producing '{}' reads a tensor that is not computed before it", ot.name)),
            }
        };
        let (kind, inputs) = match (o.code, &o.options) {
            (
                op::CONV_2D,
                TflOptions::Conv2D { padding: p, stride_w, stride_h, activation: a, dilation_w: 1, dilation_h: 1 },
            ) => (
                QOpKind::Conv2d {
                    weights: weights(m, *o.inputs.get(1).unwrap_or(&-1), *o.inputs.get(2).unwrap_or(&-1))?,
                    stride: [positive(*stride_h, "stride")?, positive(*stride_w, "stride")?],
                    padding: padding(*p)?,
                    activation: activation(*a)?,
                },
                vec![inp(0)?],
            ),
            (
                op::DEPTHWISE_CONV_2D,
                TflOptions::DepthwiseConv2D {
                    padding: p,
                    stride_w,
                    stride_h,
                    activation: a,
                    dilation_w: 1,
                    dilation_h: 1,
                    ..
                },
            ) => (
                QOpKind::DepthwiseConv2d {
                    weights: weights(m, *o.inputs.get(1).unwrap_or(&-1), *o.inputs.get(2).unwrap_or(&-1))?,
                    stride: [positive(*stride_h, "stride")?, positive(*stride_w, "stride")?],
                    padding: padding(*p)?,
                    activation: activation(*a)?,
                },
                vec![inp(0)?],
            ),
            (
                op::FULLY_CONNECTED,
                TflOptions::FullyConnected { activation: a, weights_format: 0, keep_num_dims: false },
            ) => (
                QOpKind::FullyConnected {
                    weights: weights(m, *o.inputs.get(1).unwrap_or(&-1), *o.inputs.get(2).unwrap_or(&-1))?,
                    activation: activation(*a)?,
                },
                vec![inp(0)?],
            ),
            (op::ADD, TflOptions::Add { activation: a }) => {
                (QOpKind::Add { activation: activation(*a)? }, vec![inp(0)?, inp(1)?])
            }
            (op::CONCATENATION, TflOptions::Concatenation { axis, activation: a }) => {
                if *axis != 3 && *axis != -1 {
                    return err(format!("concatenation on axis {axis}"));
                }
                let ins = (0..o.inputs.len()).map(inp).collect::<Result<Vec<_>>>()?;
                (QOpKind::Concat { activation: activation(*a)? }, ins)
            }
            (
                op::MAX_POOL_2D | op::AVERAGE_POOL_2D,
                TflOptions::Pool2D { padding: p, stride_w, stride_h, filter_w, filter_h, activation: a },
            ) => {
                let pool = [positive(*filter_h, "pool size")?, positive(*filter_w, "pool size")?];
                let stride = [positive(*stride_h, "stride")?, positive(*stride_w, "stride")?];
                let (padding, activation) = (padding(*p)?, activation(*a)?);
                let k = if o.code == op::MAX_POOL_2D {
                    QOpKind::MaxPool { pool, stride, padding, activation }
                } else {
                    QOpKind::AvgPool { pool, stride, padding, activation }
                };
                (k, vec![inp(0)?])
            }
            (op::RESHAPE, _) => (QOpKind::Reshape, vec![inp(0)?]),
            (op::SOFTMAX, TflOptions::Softmax { beta }) => (QOpKind::Softmax { beta: *beta }, vec![inp(0)?]),
            (code, opts) => return err(format!("operator {code} with options {opts:?}")),
        };
        // Kernels address NHWC buffers; a [1,n] input of a 4-D op is the same bytes.
        index_of[*out as usize] = tensors.len();
        tensors.push(QTensor { name: ot.name.clone(), shape, scale, zero_point });
        ops.push(QOp { name: ot.name.clone(), kind, inputs, kernel_shape: shape });
    }
    let out_index = index_of.get(output as usize).copied().unwrap_or(usize::MAX);
    if out_index != tensors.len() - 1 {
        return err("the subgraph output is not the last operator's output");
    }
    let model = QuantizedModel { name: m.subgraph_name.clone(), ops, tensors };
    model.validate()?;
    Ok(model)
}
