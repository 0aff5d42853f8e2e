//! Constant folding: a node whose inputs are all constants (initializers, `Constant` nodes, values
//! folded before it) is evaluated at import time, exactly, on int64 / float32 values.
//!
//! This is the shape arithmetic `torch.onnx.export` writes around otherwise simple ops: `F.pad` /
//! `nn.ZeroPad2d` compute the Pad's `pads` with ConstantOfShape → Concat → Reshape → Slice (step -1)
//! → Transpose → Reshape → Cast, and `x.view(x.size(0), -1)` its target with Shape → Gather →
//! Unsqueeze → Concat. Only the ops in [`FOLDS`] are evaluated; any other op on constants only is an
//! error naming it.

use std::rc::Rc;

use super::tensor::{self, Const, Data};
use super::At;
use crate::Result;

/// The ops evaluated on constant inputs.
pub(super) const FOLDS: &[&str] = &[
    "Identity",
    "Dropout",
    "ConstantOfShape",
    "Shape",
    "Gather",
    "Unsqueeze",
    "Squeeze",
    "Concat",
    "Reshape",
    "Flatten",
    "Slice",
    "Transpose",
    "Cast",
    "Range",
    "Add",
    "Sub",
    "Mul",
    "Div",
];

/// The most elements a folded constant may have: shape arithmetic is a few values; this bounds what
/// a hostile `ConstantOfShape` or `Range` could allocate.
const MAX_FOLDED: usize = 1 << 20;

/// Evaluates `at` on its constant inputs (`None`: an omitted optional input).
pub(super) fn fold(at: &At, opset: i64, ins: &[Option<Rc<Const>>]) -> Result<Const> {
    let input = |i: usize| -> Result<&Const> {
        ins.get(i).and_then(|c| c.as_deref()).ok_or_else(|| at.malformed(format!("input #{i} is missing")))
    };
    let opt = |i: usize| -> Option<&Const> { ins.get(i).and_then(|c| c.as_deref()) };
    match at.op() {
        "Identity" | "Dropout" => Ok(input(0)?.clone()),
        "ConstantOfShape" => constant_of_shape(at, input(0)?),
        "Shape" => {
            let dims: Vec<i64> = input(0)?.dims.iter().map(|&d| d as i64).collect();
            let r = dims.len() as i64;
            let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
            let start = clamp(at.int("start", 0)?);
            let end = clamp(at.int("end", r)?).max(start);
            let v = dims[start..end].to_vec();
            Ok(Const { dims: vec![v.len()], data: Data::I64(v) })
        }
        "Gather" => gather(at, input(0)?, input(1)?),
        "Unsqueeze" | "Squeeze" => {
            let axes: Vec<i64> = match (opset < 13, opt(1)) {
                (false, Some(a)) => ints(at, a, "axes")?.to_vec(),
                _ => at.ints("axes").unwrap_or_default().to_vec(),
            };
            squeeze(at, input(0)?, &axes, at.op() == "Unsqueeze")
        }
        "Concat" => {
            let parts: Vec<&Const> = (0..at.node.input.len()).map(input).collect::<Result<_>>()?;
            concat(at, &parts, at.int("axis", 0)?)
        }
        "Reshape" => {
            let c = input(0)?;
            let target = ints(at, input(1)?, "the target shape")?;
            let dims = reshape_dims(at, &c.dims, target, at.int("allowzero", 0)? != 0)?;
            Ok(Const { dims, data: c.data.clone() })
        }
        "Flatten" => {
            let c = input(0)?;
            let axis = norm_axis(at, at.int("axis", 1)?, c.dims.len() + 1)?;
            let (a, b) = c.dims.split_at(axis);
            Ok(Const { dims: vec![a.iter().product(), b.iter().product()], data: c.data.clone() })
        }
        "Slice" => {
            let c = input(0)?;
            let (starts, ends, axes, steps) = if opset < 10 {
                let a = |n: &str| at.ints(n).map(<[i64]>::to_vec);
                (a("starts").unwrap_or_default(), a("ends").unwrap_or_default(), a("axes"), None)
            } else {
                let v = |i: usize, what: &str| opt(i).map(|c| ints(at, c, what).map(<[i64]>::to_vec)).transpose();
                (
                    ints(at, input(1)?, "starts")?.to_vec(),
                    ints(at, input(2)?, "ends")?.to_vec(),
                    v(3, "axes")?,
                    v(4, "steps")?,
                )
            };
            slice(at, c, &starts, &ends, axes, steps)
        }
        "Transpose" => {
            let c = input(0)?;
            let r = c.dims.len();
            let perm: Vec<i64> = at.ints("perm").map_or_else(|| (0..r as i64).rev().collect(), <[i64]>::to_vec);
            let mut seen = vec![false; r];
            let ok = perm.len() == r
                && perm
                    .iter()
                    .all(|&p| usize::try_from(p).is_ok_and(|p| p < r && !std::mem::replace(&mut seen[p], true)));
            if !ok {
                return Err(at.malformed(format!("perm {perm:?} is not a permutation of the {r} axes")));
            }
            let st = strides(&c.dims);
            let axes: Vec<Vec<usize>> =
                perm.iter().map(|&p| (0..c.dims[p as usize]).map(|j| j * st[p as usize]).collect()).collect();
            let dims = perm.iter().map(|&p| c.dims[p as usize]).collect();
            Ok(Const { dims, data: take(c, &product(&axes)) })
        }
        "Cast" => cast(at, input(0)?),
        "Range" => range(at, input(0)?, input(1)?, input(2)?),
        "Add" | "Sub" | "Mul" | "Div" => binary(at, input(0)?, input(1)?),
        other => Err(at.unsupported(format!(
            "all its inputs are constants, and mcufit folds only {} on constants (shape arithmetic), not {other}; \
             export with do_constant_folding=True (the default), or compute this value outside the model",
            FOLDS.join(", ")
        ))),
    }
}

/// The integer values of `c`; `what` names it in the error.
fn ints<'c>(at: &At, c: &'c Const, what: &str) -> Result<&'c [i64]> {
    c.ints().ok_or_else(|| at.malformed(format!("{what} are not integers")))
}

/// Row-major strides of `dims`.
fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

/// `a` (negative counts from the end) as an axis of a rank-`r` tensor.
fn norm_axis(at: &At, a: i64, r: usize) -> Result<usize> {
    let r = r as i64;
    let n = if a < 0 { a + r } else { a };
    if (0..r).contains(&n) {
        Ok(n as usize)
    } else {
        Err(at.malformed(format!("axis {a} is out of range for rank {r}")))
    }
}

/// The element count of a result of `dims`, refused above [`MAX_FOLDED`] before anything is allocated.
fn folded_count(at: &At, dims: &[usize]) -> Result<usize> {
    tensor::count(dims).filter(|&n| n <= MAX_FOLDED).ok_or_else(|| {
        at.unsupported(format!(
            "folding it gives a constant of dims {dims:?}, more than the {MAX_FOLDED} elements mcufit folds (shape \
             arithmetic is a few values)"
        ))
    })
}

/// The flat source index of every output element, row-major: output axis `i` steps through the
/// source offsets `axes[i]`, and an element's index is the sum of its axes' offsets.
fn product(axes: &[Vec<usize>]) -> Vec<usize> {
    let mut out = vec![0usize];
    for offs in axes {
        out = out.iter().flat_map(|&base| offs.iter().map(move |&o| base + o)).collect();
    }
    out
}

/// The elements of `c` at flat indices `picks`.
fn take(c: &Const, picks: &[usize]) -> Data {
    match &c.data {
        Data::I64(v) => Data::I64(picks.iter().map(|&i| v[i]).collect()),
        Data::F32(v) => Data::F32(picks.iter().map(|&i| v[i]).collect()),
    }
}

fn constant_of_shape(at: &At, shape: &Const) -> Result<Const> {
    let dims: Vec<usize> = ints(at, shape, "the shape")?
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| at.malformed(format!("negative dimension {d} in the shape"))))
        .collect::<Result<_>>()?;
    let n = folded_count(at, &dims)?;
    let value = match at.attr("value").and_then(|a| a.t.as_ref()) {
        Some(t) => tensor::decode(t, &format!("{} value", at.label()))?,
        None => Const { dims: vec![1], data: Data::F32(vec![0.0]) },
    };
    let data = match &value.data {
        Data::I64(v) if v.len() == 1 => Data::I64(vec![v[0]; n]),
        Data::F32(v) if v.len() == 1 => Data::F32(vec![v[0]; n]),
        _ => return Err(at.malformed(format!("the value has {} elements, expected one", value.len()))),
    };
    Ok(Const { dims, data })
}

fn gather(at: &At, data: &Const, idx: &Const) -> Result<Const> {
    let indices = ints(at, idx, "the indices")?;
    let axis = norm_axis(at, at.int("axis", 0)?, data.dims.len())?;
    let n = data.dims[axis] as i64;
    let st = strides(&data.dims);
    let mut dims = data.dims[..axis].to_vec();
    dims.extend(&idx.dims);
    dims.extend(&data.dims[axis + 1..]);
    folded_count(at, &dims)?;
    let picked: Vec<usize> = indices
        .iter()
        .map(|&i| {
            let j = if i < 0 { i + n } else { i };
            if (0..n).contains(&j) {
                Ok(j as usize * st[axis])
            } else {
                Err(at.malformed(format!("index {i} is out of range for {n} values")))
            }
        })
        .collect::<Result<_>>()?;
    let full = |k: usize| (0..data.dims[k]).map(|j| j * st[k]).collect::<Vec<_>>();
    let mut axes: Vec<Vec<usize>> = (0..axis).map(full).collect();
    axes.push(picked);
    axes.extend((axis + 1..data.dims.len()).map(full));
    Ok(Const { dims, data: take(data, &product(&axes)) })
}

fn squeeze(at: &At, c: &Const, axes: &[i64], insert: bool) -> Result<Const> {
    let mut dims = c.dims.clone();
    if insert {
        let r = dims.len() + axes.len();
        let mut norm: Vec<usize> = axes.iter().map(|&a| norm_axis(at, a, r)).collect::<Result<_>>()?;
        norm.sort_unstable();
        for a in norm {
            dims.insert(a.min(dims.len()), 1);
        }
    } else if axes.is_empty() {
        dims.retain(|&d| d != 1);
    } else {
        let mut keep = vec![true; dims.len()];
        for &a in axes {
            let n = norm_axis(at, a, dims.len())?;
            if dims[n] != 1 {
                return Err(at.malformed(format!("cannot squeeze axis {a} of {dims:?}")));
            }
            keep[n] = false;
        }
        dims = dims.iter().zip(&keep).filter(|(_, &k)| k).map(|(&d, _)| d).collect();
    }
    Ok(Const { dims, data: c.data.clone() })
}

fn concat(at: &At, parts: &[&Const], axis: i64) -> Result<Const> {
    let Some(first) = parts.first() else { return Err(at.malformed("Concat of no inputs")) };
    let r = first.dims.len();
    let axis = norm_axis(at, axis, r)?;
    let same = |c: &&Const| {
        c.dims.len() == r && c.dims.iter().zip(&first.dims).enumerate().all(|(i, (a, b))| i == axis || a == b)
    };
    if !parts.iter().all(same) {
        let all: Vec<&Vec<usize>> = parts.iter().map(|c| &c.dims).collect();
        return Err(at.malformed(format!("cannot concatenate dims {all:?} along axis {axis}")));
    }
    let mut dims = first.dims.clone();
    dims[axis] = parts.iter().map(|c| c.dims[axis]).sum();
    folded_count(at, &dims)?;
    let outer: usize = first.dims[..axis].iter().product();
    let inner: usize = first.dims[axis + 1..].iter().product();
    fn join<T: Copy>(parts: &[(Vec<T>, usize)], outer: usize) -> Vec<T> {
        let mut out = Vec::new();
        for o in 0..outer {
            for (v, chunk) in parts {
                out.extend_from_slice(&v[o * chunk..(o + 1) * chunk]);
            }
        }
        out
    }
    let data = if parts.iter().all(|c| c.ints().is_some()) {
        let p: Vec<(Vec<i64>, usize)> =
            parts.iter().map(|c| (c.ints().unwrap_or_default().to_vec(), c.dims[axis] * inner)).collect();
        Data::I64(join(&p, outer))
    } else {
        let p: Vec<(Vec<f32>, usize)> = parts.iter().map(|c| (c.to_f32(), c.dims[axis] * inner)).collect();
        Data::F32(join(&p, outer))
    };
    Ok(Const { dims, data })
}

/// ONNX Reshape's target: 0 copies the input's dimension (unless `allow_zero`), one -1 is inferred.
pub(super) fn reshape_dims(at: &At, dims: &[usize], target: &[i64], allow_zero: bool) -> Result<Vec<usize>> {
    let total: usize = dims.iter().product();
    let mut out: Vec<usize> = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &t) in target.iter().enumerate() {
        match t {
            0 if !allow_zero => {
                out.push(*dims.get(i).ok_or_else(|| at.malformed("target dim 0 past the input's rank"))?)
            }
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            t if t >= 0 => out.push(t as usize),
            _ => return Err(at.malformed(format!("target shape {target:?} is not a valid Reshape target"))),
        }
    }
    let known = out.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    match (infer, known) {
        (Some(i), Some(k)) if k > 0 && total.is_multiple_of(k) => out[i] = total / k,
        (None, Some(k)) if k == total => {}
        _ => return Err(at.malformed(format!("cannot reshape {dims:?} ({total} elements) to {target:?}"))),
    }
    Ok(out)
}

fn slice(
    at: &At,
    c: &Const,
    starts: &[i64],
    ends: &[i64],
    axes: Option<Vec<i64>>,
    steps: Option<Vec<i64>>,
) -> Result<Const> {
    let r = c.dims.len();
    let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err(at.malformed(format!(
            "starts {starts:?}, ends {ends:?}, axes {axes:?} and steps {steps:?} differ in length"
        )));
    }
    let st = strides(&c.dims);
    // Per axis, the source indices kept (all of them where the Slice does not name the axis).
    let mut keep: Vec<Option<Vec<usize>>> = vec![None; r];
    for (k, &a) in axes.iter().enumerate() {
        let a = norm_axis(at, a, r)?;
        if keep[a].is_some() {
            return Err(at.malformed(format!("axis {a} is sliced twice")));
        }
        let (d, s) = (c.dims[a] as i128, steps[k] as i128);
        if s == 0 {
            return Err(at.malformed("a step of 0"));
        }
        let wrap = |v: i64| if v < 0 { v as i128 + d } else { v as i128 };
        let (start, end) = if s > 0 {
            (wrap(starts[k]).clamp(0, d), wrap(ends[k]).clamp(0, d))
        } else {
            (wrap(starts[k]).clamp(0, d - 1), wrap(ends[k]).clamp(-1, d - 1))
        };
        let mut idx = Vec::new();
        let mut i = start;
        while (s > 0 && i < end) || (s < 0 && i > end) {
            idx.push(i as usize);
            i += s;
        }
        keep[a] = Some(idx);
    }
    let keep: Vec<Vec<usize>> =
        keep.into_iter().enumerate().map(|(a, k)| k.unwrap_or_else(|| (0..c.dims[a]).collect())).collect();
    let dims: Vec<usize> = keep.iter().map(Vec::len).collect();
    let axes: Vec<Vec<usize>> = keep.iter().enumerate().map(|(a, k)| k.iter().map(|&i| i * st[a]).collect()).collect();
    Ok(Const { dims, data: take(c, &product(&axes)) })
}

fn cast(at: &At, c: &Const) -> Result<Const> {
    use super::proto::tensor_proto::DataType as T;
    let to = at.int("to", 0)?;
    let to = T::try_from(to as i32).map_err(|_| at.malformed(format!("unknown target type {to}")))?;
    let data = match to {
        T::Float | T::Double => Data::F32(c.to_f32()),
        T::Int64 | T::Int32 | T::Int16 | T::Int8 | T::Uint8 | T::Uint16 | T::Uint32 | T::Uint64 => match &c.data {
            Data::I64(v) => Data::I64(v.clone()),
            // ONNX truncates toward zero, as `as` does
            Data::F32(v) => Data::I64(v.iter().map(|&x| x as i64).collect()),
        },
        other => {
            return Err(at.unsupported(format!(
                "Cast of a constant to {}; mcufit folds casts to float32/64 and integers only",
                other.as_str_name()
            )))
        }
    };
    Ok(Const { dims: c.dims.clone(), data })
}

fn range(at: &At, start: &Const, limit: &Const, delta: &Const) -> Result<Const> {
    if [start, limit, delta].iter().any(|c| c.len() != 1) {
        return Err(at.malformed("start, limit and delta must be scalars"));
    }
    match (&start.data, &limit.data, &delta.data) {
        (Data::I64(s), Data::I64(l), Data::I64(d)) => {
            let (s, l, d) = (s[0] as i128, l[0] as i128, d[0] as i128);
            if d == 0 {
                return Err(at.malformed("a delta of 0"));
            }
            let n = ((l - s) + d - d.signum()) / d; // ceil((l - s) / d)
            let n = usize::try_from(n.max(0)).unwrap_or(usize::MAX);
            folded_count(at, &[n])?;
            Ok(Const { dims: vec![n], data: Data::I64((0..n).map(|i| (s + i as i128 * d) as i64).collect()) })
        }
        (Data::F32(s), Data::F32(l), Data::F32(d)) => {
            let (s, l, d) = (s[0], l[0], d[0]);
            let n = ((l - s) / d).ceil();
            if !n.is_finite() {
                return Err(at.malformed(format!("Range({s}, {l}, {d}) has no finite length")));
            }
            let n = n.max(0.0) as usize;
            folded_count(at, &[n])?;
            Ok(Const { dims: vec![n], data: Data::F32((0..n).map(|i| s + i as f32 * d).collect()) })
        }
        _ => Err(at.malformed("start, limit and delta differ in type")),
    }
}

/// `Add`, `Sub`, `Mul`, `Div` with numpy broadcasting; integers exactly (overflow and division by
/// zero are errors, division truncates as onnxruntime's does), floats in f32.
fn binary(at: &At, a: &Const, b: &Const) -> Result<Const> {
    let r = a.dims.len().max(b.dims.len());
    let pad = |d: &[usize]| -> Vec<usize> { std::iter::repeat_n(1, r - d.len()).chain(d.iter().copied()).collect() };
    let (da, db) = (pad(&a.dims), pad(&b.dims));
    let mut dims = Vec::with_capacity(r);
    for (&x, &y) in da.iter().zip(&db) {
        dims.push(match (x, y) {
            _ if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return Err(at.malformed(format!("cannot broadcast dims {:?} and {:?}", a.dims, b.dims))),
        });
    }
    folded_count(at, &dims)?;
    let offsets = |d: &[usize]| -> Vec<usize> {
        let st = strides(d);
        let axes: Vec<Vec<usize>> =
            (0..r).map(|i| (0..dims[i]).map(|j| if d[i] == 1 { 0 } else { j * st[i] }).collect()).collect();
        product(&axes)
    };
    let (ia, ib) = (offsets(&da), offsets(&db));
    let op = at.op();
    let data = match (&a.data, &b.data) {
        (Data::I64(x), Data::I64(y)) => Data::I64(
            ia.iter()
                .zip(&ib)
                .map(|(&i, &j)| {
                    let (p, q) = (x[i], y[j]);
                    match op {
                        "Add" => p.checked_add(q),
                        "Sub" => p.checked_sub(q),
                        "Mul" => p.checked_mul(q),
                        _ => p.checked_div(q),
                    }
                    .ok_or_else(|| at.malformed(format!("{op} of {p} and {q} overflows or divides by zero")))
                })
                .collect::<Result<_>>()?,
        ),
        (Data::F32(x), Data::F32(y)) => Data::F32(
            ia.iter()
                .zip(&ib)
                .map(|(&i, &j)| {
                    let (p, q) = (x[i], y[j]);
                    match op {
                        "Add" => p + q,
                        "Sub" => p - q,
                        "Mul" => p * q,
                        _ => p / q,
                    }
                })
                .collect(),
        ),
        _ => return Err(at.malformed(format!("{op} of an integer and a float constant (ONNX needs one type)"))),
    };
    Ok(Const { dims, data })
}

#[cfg(test)]
mod tests {
    use super::super::proto::{AttributeProto, NodeProto};
    use super::*;

    fn c(dims: &[usize], v: &[i64]) -> Option<Rc<Const>> {
        Some(Rc::new(Const { dims: dims.to_vec(), data: Data::I64(v.to_vec()) }))
    }

    fn run(op: &str, attrs: Vec<AttributeProto>, ins: &[Option<Rc<Const>>]) -> Result<Const> {
        let node = NodeProto {
            op_type: Some(op.into()),
            name: Some("n".into()),
            input: ins.iter().map(|_| "i".to_string()).collect(),
            attribute: attrs,
            ..Default::default()
        };
        fold(&At { index: 0, node: &node }, 17, ins)
    }

    fn ints_attr(name: &str, v: &[i64]) -> AttributeProto {
        AttributeProto { name: Some(name.into()), ints: v.to_vec(), ..Default::default() }
    }

    #[test]
    fn torchs_pad_chain_folds_to_onnx_pads() {
        // F.pad(x, (0, 1, 0, 1)) on a 4-D input, as torch.onnx.export (TorchScript, opset 17) writes it.
        let zeros = run("ConstantOfShape", vec![], &[c(&[1], &[4])]).unwrap();
        assert_eq!(zeros, Const { dims: vec![4], data: Data::F32(vec![0.0; 4]) });
        let zeros = run(
            "Cast",
            vec![AttributeProto { name: Some("to".into()), i: Some(7), ..Default::default() }],
            &[Some(Rc::new(zeros))],
        )
        .unwrap();
        let cat = run("Concat", vec![], &[c(&[4], &[0, 1, 0, 1]), Some(Rc::new(zeros))]).unwrap();
        let r = run("Reshape", vec![], &[Some(Rc::new(cat)), c(&[2], &[-1, 2])]).unwrap();
        assert_eq!(r.dims, [4, 2]);
        let s = run(
            "Slice",
            vec![],
            &[Some(Rc::new(r)), c(&[1], &[-1]), c(&[1], &[i64::MIN]), c(&[1], &[0]), c(&[1], &[-1])],
        )
        .unwrap();
        assert_eq!(s.ints().unwrap(), [0, 0, 0, 0, 0, 1, 0, 1]);
        let t = run("Transpose", vec![ints_attr("perm", &[1, 0])], &[Some(Rc::new(s))]).unwrap();
        let p = run("Reshape", vec![], &[Some(Rc::new(t)), c(&[1], &[-1])]).unwrap();
        assert_eq!((p.dims.clone(), p.ints().unwrap()), (vec![8], &[0i64, 0, 0, 0, 0, 0, 1, 1][..]));
    }

    #[test]
    fn gather_slice_transpose_and_arithmetic_follow_onnx() {
        let m = c(&[2, 3], &[1, 2, 3, 4, 5, 6]);
        let g = run(
            "Gather",
            vec![AttributeProto { name: Some("axis".into()), i: Some(1), ..Default::default() }],
            &[m.clone(), c(&[2], &[2, -3])],
        )
        .unwrap();
        assert_eq!((g.dims.clone(), g.ints().unwrap()), (vec![2, 2], &[3i64, 1, 6, 4][..]));
        let g = run("Gather", vec![], &[m.clone(), c(&[], &[1])]).unwrap();
        assert_eq!((g.dims.clone(), g.ints().unwrap()), (vec![3], &[4i64, 5, 6][..]));
        let t = run("Transpose", vec![], std::slice::from_ref(&m)).unwrap();
        assert_eq!((t.dims.clone(), t.ints().unwrap()), (vec![3, 2], &[1i64, 4, 2, 5, 3, 6][..]));
        let s = run("Slice", vec![], &[m.clone(), c(&[1], &[1]), c(&[1], &[100]), c(&[1], &[1])]).unwrap();
        assert_eq!((s.dims.clone(), s.ints().unwrap()), (vec![2, 2], &[2i64, 3, 5, 6][..]));
        let a = run("Mul", vec![], &[m.clone(), c(&[3], &[1, 0, -1])]).unwrap();
        assert_eq!(a.ints().unwrap(), [1, 0, -3, 4, 0, -6]);
        let d = run("Div", vec![], &[c(&[2], &[7, -7]), c(&[], &[2])]).unwrap();
        assert_eq!(d.ints().unwrap(), [3, -3]);
        assert!(run("Div", vec![], &[c(&[1], &[1]), c(&[1], &[0])])
            .unwrap_err()
            .to_string()
            .contains("divides by zero"));
        let r = run("Range", vec![], &[c(&[], &[5]), c(&[], &[0]), c(&[], &[-2])]).unwrap();
        assert_eq!(r.ints().unwrap(), [5, 3, 1]);
        let cat = run(
            "Concat",
            vec![AttributeProto { name: Some("axis".into()), i: Some(1), ..Default::default() }],
            &[m.clone(), c(&[2, 1], &[7, 8])],
        )
        .unwrap();
        assert_eq!((cat.dims.clone(), cat.ints().unwrap()), (vec![2, 4], &[1i64, 2, 3, 7, 4, 5, 6, 8][..]));
        let e = run("ConstantOfShape", vec![], &[c(&[2], &[1 << 20, 1 << 20])]).unwrap_err().to_string();
        assert!(e.contains("more than the"), "{e}");
        let e = run("Sqrt", vec![], &[m]).unwrap_err().to_string();
        assert!(e.contains("node 'n' (Sqrt)") && e.contains("not Sqrt") && e.contains("ConstantOfShape"), "{e}");
    }
}
