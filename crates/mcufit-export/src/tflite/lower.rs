//! Lowering a quantized model to TFLite tensors and builtin operators, in a given op order.

use mcufit_ir::{Activation, Padding, Shape};
use mcufit_quant::{QOpKind, QTensor, QWeights, QuantizedModel};

use super::schema::{self, op, ttype};
use super::{TflMetadata, TflModel, TflOperator, TflOptions, TflQuant, TflTensor, OFFLINE_PLAN_METADATA};
use crate::error::{ExportError, Result};
use crate::order::check_order;
use crate::plan::{plan_arena, ArenaPlan, PlanOptions};

fn act(a: Activation) -> i8 {
    match a {
        Activation::None => schema::ACT_NONE,
        Activation::Relu => schema::ACT_RELU,
        Activation::Relu6 => schema::ACT_RELU6,
    }
}

fn pad(p: Padding) -> i8 {
    match p {
        Padding::Same => schema::PADDING_SAME,
        Padding::Valid => schema::PADDING_VALID,
    }
}

fn dims4(s: Shape) -> Vec<i32> {
    vec![1, s.h as i32, s.w as i32, s.c as i32]
}

fn act_quant(t: &QTensor) -> Option<TflQuant> {
    Some(TflQuant { scale: vec![t.scale], zero_point: vec![t.zero_point as i64], quantized_dimension: 0 })
}

/// How a consumer needs its input laid out.
enum Need {
    /// Exactly `[1, h, w, c]` of the tensor's IR shape.
    Nhwc,
    /// Any layout with the right element count (FULLY_CONNECTED, RESHAPE).
    Any,
    /// Last dimension equal to the IR channel count (SOFTMAX).
    LastDim,
}

struct Lowering<'a> {
    m: &'a QuantizedModel,
    out: TflModel,
    /// TFLite tensor holding each model tensor as its kernel produced it.
    raw: Vec<i32>,
    /// Cached `[1,h,w,c]` views (RESHAPE outputs) of model tensors.
    view: Vec<Option<i32>>,
    /// Other activation tensors that may share a model tensor's arena bytes (a concat's result
    /// before its 1x1 clamp, which runs element by element).
    alias: Vec<(i32, usize)>,
}

impl<'a> Lowering<'a> {
    fn add_tensor(&mut self, t: TflTensor) -> i32 {
        self.out.tensors.push(t);
        (self.out.tensors.len() - 1) as i32
    }

    fn add_op(&mut self, code: i32, version: i32, inputs: Vec<i32>, outputs: Vec<i32>, options: TflOptions) {
        self.out.operators.push(TflOperator { code, version, inputs, outputs, options });
    }

    fn reshape(&mut self, from: i32, dims: Vec<i32>, name: String, q: &QTensor) -> i32 {
        let shape_t = self.add_tensor(TflTensor {
            name: format!("{name}/shape"),
            dims: vec![dims.len() as i32],
            ttype: ttype::INT32,
            data: Some(dims.iter().flat_map(|d| d.to_le_bytes()).collect()),
            quant: None,
        });
        let out = self.add_tensor(TflTensor {
            name,
            dims: dims.clone(),
            ttype: ttype::INT8,
            data: None,
            quant: act_quant(q),
        });
        self.add_op(op::RESHAPE, 1, vec![from, shape_t], vec![out], TflOptions::Reshape { new_shape: dims });
        out
    }

    /// The TFLite tensor to feed model tensor `t` to a consumer with layout need `need`.
    fn input(&mut self, t: usize, need: Need) -> i32 {
        let raw = self.raw[t];
        let q = &self.m.tensors[t];
        let raw_dims = &self.out.tensors[raw as usize].dims;
        let ok = match need {
            Need::Any => true,
            Need::Nhwc => *raw_dims == dims4(q.shape),
            Need::LastDim => raw_dims.last() == Some(&(q.shape.c as i32)),
        };
        if ok {
            return raw;
        }
        if let Some(v) = self.view[t] {
            return v;
        }
        let v = self.reshape(raw, dims4(q.shape), format!("{}/nhwc", q.name), &q.clone());
        self.view[t] = Some(v);
        v
    }

    fn weights(&mut self, name: &str, w: &QWeights, input_scale: f32, qdim: i32) -> (i32, i32) {
        let f = self.add_tensor(TflTensor {
            name: format!("{name}/filter"),
            dims: w.filter_dims.iter().map(|&d| d as i32).collect(),
            ttype: ttype::INT8,
            data: Some(w.filter.iter().map(|&v| v as u8).collect()),
            quant: Some(TflQuant {
                scale: w.filter_scales.clone(),
                zero_point: vec![0; w.filter_scales.len()],
                quantized_dimension: qdim,
            }),
        });
        let b = self.add_tensor(TflTensor {
            name: format!("{name}/bias"),
            dims: vec![w.bias.len() as i32],
            ttype: ttype::INT32,
            data: Some(w.bias.iter().flat_map(|v| v.to_le_bytes()).collect()),
            quant: Some(TflQuant {
                // f32 product, the scale the int32 bias was quantized with.
                scale: w.filter_scales.iter().map(|&s| input_scale * s).collect(),
                zero_point: vec![0; w.bias.len()],
                quantized_dimension: 0,
            }),
        });
        (f, b)
    }
}

/// Lowers `model` to TFLite operators in `order` (indices of `model.ops`; the input op 0 may be
/// included or left out). Folded reshapes become RESHAPE ops only where a consumer needs the
/// new layout; a concat with a fused activation becomes CONCATENATION + a 1x1 MAX_POOL_2D clamp.
/// No arena plan is embedded (TFLM plans the arena itself); see [`lower_planned`].
pub fn lower(model: &QuantizedModel, order: &[usize]) -> Result<TflModel> {
    Ok(lower_impl(model, order)?.out)
}

/// [`lower`], plus mcufit's arena plan for the same order as TFLM's `OfflineMemoryAllocation`
/// metadata, so that TFLite Micro places every activation tensor where mcufit did and its arena
/// head is mcufit's planned arena (its own greedy planner can need more on branchy graphs).
/// A RESHAPE view shares the bytes of the tensor it views (TFLM's RESHAPE skips the copy when
/// input and output coincide); constants are marked -1 (not in the arena).
pub fn lower_planned(model: &QuantizedModel, order: &[usize], opts: PlanOptions) -> Result<(TflModel, ArenaPlan)> {
    let Lowering { mut out, raw, view, alias, .. } = lower_impl(model, order)?;
    let plan = plan_arena(model, order, opts)?;
    let mut offsets = vec![-1i32; out.tensors.len()];
    let mut place = |tfl: i32, t: usize| {
        if let Some(off) = plan.offsets[t] {
            offsets[tfl as usize] = off as i32;
        }
    };
    for t in 0..model.ops.len() {
        if raw[t] >= 0 {
            place(raw[t], t);
        }
        if let Some(v) = view[t] {
            place(v, t);
        }
    }
    for (tfl, t) in alias {
        place(tfl, t);
    }
    out.metadata.push(TflMetadata { name: OFFLINE_PLAN_METADATA.into(), data: encode_offline_plan(&offsets) });
    Ok((out, plan))
}

/// TFLM's offline plan format (`tensorflow/lite/micro/docs/memory_management.md`): int32 words,
/// little endian: format version 1, subgraph 0, the tensor count, then one arena offset per
/// tensor (-1 = not planned offline).
pub fn encode_offline_plan(offsets: &[i32]) -> Vec<u8> {
    [1, 0, offsets.len() as i32].iter().chain(offsets).flat_map(|v| v.to_le_bytes()).collect()
}

/// The per-tensor offsets of a model's `OfflineMemoryAllocation` metadata, if it has one.
pub fn offline_plan(m: &TflModel) -> Option<Vec<i32>> {
    let md = m.metadata.iter().find(|md| md.name == OFFLINE_PLAN_METADATA)?;
    let words: Vec<i32> = md.data.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let n = usize::try_from(*words.get(2)?).ok()?;
    (words.len() == 3 + n).then(|| words[3..].to_vec())
}

/// The lowering itself; the finished [`Lowering`] keeps which TFLite tensors hold each model
/// tensor, for [`lower_planned`].
fn lower_impl<'a>(model: &'a QuantizedModel, order: &[usize]) -> Result<Lowering<'a>> {
    model.validate()?;
    let order = check_order(model, order)?;
    let n = model.ops.len();
    let mut l = Lowering {
        m: model,
        out: TflModel {
            version: schema::SCHEMA_VERSION,
            description: "mcufit".into(),
            subgraph_name: model.name.clone(),
            tensors: Vec::new(),
            operators: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            metadata: Vec::new(),
            subgraphs: 1,
        },
        raw: vec![-1; n],
        view: vec![None; n],
        alias: Vec::new(),
    };
    let input_t = &model.tensors[0];
    let inp = l.add_tensor(TflTensor {
        name: input_t.name.clone(),
        dims: dims4(input_t.shape),
        ttype: ttype::INT8,
        data: None,
        quant: act_quant(input_t),
    });
    l.raw[0] = inp;
    l.out.inputs = vec![inp];

    for &i in &order {
        let qop = &model.ops[i];
        let t = &model.tensors[i];
        // Weights are named after the op, activation tensors after the value they hold.
        let name = qop.name.clone();
        let tname = t.name.clone();
        let in_scale = qop.inputs.first().map_or(1.0, |&j| model.tensors[j].scale);
        let out_tensor = |l: &mut Lowering, dims: Vec<i32>, name: String| {
            l.add_tensor(TflTensor { name, dims, ttype: ttype::INT8, data: None, quant: act_quant(t) })
        };
        let ks = qop.kernel_shape;
        match &qop.kind {
            QOpKind::Input => continue,
            QOpKind::Conv2d { weights, stride, padding, activation } => {
                let x = l.input(qop.inputs[0], Need::Nhwc);
                let (f, b) = l.weights(&name, weights, in_scale, 0);
                let y = out_tensor(&mut l, dims4(ks), tname);
                l.add_op(
                    op::CONV_2D,
                    3,
                    vec![x, f, b],
                    vec![y],
                    TflOptions::Conv2D {
                        padding: pad(*padding),
                        stride_w: stride[1] as i32,
                        stride_h: stride[0] as i32,
                        activation: act(*activation),
                        dilation_w: 1,
                        dilation_h: 1,
                    },
                );
                l.raw[i] = y;
            }
            QOpKind::DepthwiseConv2d { weights, stride, padding, activation } => {
                let x = l.input(qop.inputs[0], Need::Nhwc);
                let (f, b) = l.weights(&name, weights, in_scale, 3);
                let y = out_tensor(&mut l, dims4(ks), tname);
                l.add_op(
                    op::DEPTHWISE_CONV_2D,
                    3,
                    vec![x, f, b],
                    vec![y],
                    TflOptions::DepthwiseConv2D {
                        padding: pad(*padding),
                        stride_w: stride[1] as i32,
                        stride_h: stride[0] as i32,
                        depth_multiplier: 1,
                        activation: act(*activation),
                        dilation_w: 1,
                        dilation_h: 1,
                    },
                );
                l.raw[i] = y;
            }
            QOpKind::FullyConnected { weights, activation } => {
                let x = l.input(qop.inputs[0], Need::Any);
                let (f, b) = l.weights(&name, weights, in_scale, 0);
                let y = out_tensor(&mut l, vec![1, ks.elements() as i32], tname);
                l.add_op(
                    op::FULLY_CONNECTED,
                    4,
                    vec![x, f, b],
                    vec![y],
                    TflOptions::FullyConnected {
                        activation: act(*activation),
                        weights_format: 0,
                        keep_num_dims: false,
                    },
                );
                l.raw[i] = y;
            }
            QOpKind::Add { activation } => {
                let a = l.input(qop.inputs[0], Need::Nhwc);
                let b = l.input(qop.inputs[1], Need::Nhwc);
                let y = out_tensor(&mut l, dims4(ks), tname);
                l.add_op(op::ADD, 2, vec![a, b], vec![y], TflOptions::Add { activation: act(*activation) });
                l.raw[i] = y;
            }
            QOpKind::Concat { activation } => {
                let xs: Vec<i32> = qop.inputs.iter().map(|&j| l.input(j, Need::Nhwc)).collect();
                if *activation == Activation::None {
                    let y = out_tensor(&mut l, dims4(ks), tname);
                    l.add_op(
                        op::CONCATENATION,
                        2,
                        xs,
                        vec![y],
                        TflOptions::Concatenation { axis: 3, activation: schema::ACT_NONE },
                    );
                    l.raw[i] = y;
                } else {
                    // TFLM's CONCATENATION only accepts activation NONE: clamp with a 1x1 max pool.
                    let c = out_tensor(&mut l, dims4(ks), format!("{name}/concat"));
                    l.alias.push((c, i));
                    l.add_op(
                        op::CONCATENATION,
                        2,
                        xs,
                        vec![c],
                        TflOptions::Concatenation { axis: 3, activation: schema::ACT_NONE },
                    );
                    let y = out_tensor(&mut l, dims4(ks), tname);
                    l.add_op(
                        op::MAX_POOL_2D,
                        2,
                        vec![c],
                        vec![y],
                        TflOptions::Pool2D {
                            padding: schema::PADDING_VALID,
                            stride_w: 1,
                            stride_h: 1,
                            filter_w: 1,
                            filter_h: 1,
                            activation: act(*activation),
                        },
                    );
                    l.raw[i] = y;
                }
            }
            QOpKind::MaxPool { pool, stride, padding, activation }
            | QOpKind::AvgPool { pool, stride, padding, activation } => {
                let code =
                    if matches!(qop.kind, QOpKind::MaxPool { .. }) { op::MAX_POOL_2D } else { op::AVERAGE_POOL_2D };
                let x = l.input(qop.inputs[0], Need::Nhwc);
                let y = out_tensor(&mut l, dims4(ks), tname);
                l.add_op(
                    code,
                    2,
                    vec![x],
                    vec![y],
                    TflOptions::Pool2D {
                        padding: pad(*padding),
                        stride_w: stride[1] as i32,
                        stride_h: stride[0] as i32,
                        filter_w: pool[1] as i32,
                        filter_h: pool[0] as i32,
                        activation: act(*activation),
                    },
                );
                l.raw[i] = y;
            }
            QOpKind::Reshape => {
                let x = l.input(qop.inputs[0], Need::Any);
                let dims = if ks.is_flat() { vec![1, ks.c as i32] } else { dims4(ks) };
                let y = l.reshape(x, dims, tname, &t.clone());
                l.raw[i] = y;
            }
            QOpKind::Softmax { beta } => {
                let x = l.input(qop.inputs[0], Need::LastDim);
                let dims = l.out.tensors[x as usize].dims.clone();
                let y = out_tensor(&mut l, dims, tname);
                l.add_op(op::SOFTMAX, 2, vec![x], vec![y], TflOptions::Softmax { beta: *beta });
                l.raw[i] = y;
            }
        }
    }
    l.out.outputs = vec![l.raw[n - 1]];
    if l.out.operators.is_empty() {
        return Err(ExportError::Unsupported { op: model.name.clone(), msg: "the model has no operators".into() });
    }
    Ok(l)
}
