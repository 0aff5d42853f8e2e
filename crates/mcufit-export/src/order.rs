//! Operator orders: validation and mapping from the IR's node order.

use mcufit_quant::QuantizedModel;

use crate::error::{ExportError, Result};

/// Checks that `order` lists every op of `model` except the input (op 0, which may be included
/// first) exactly once, each after the ops it reads. Returns the order without the input.
pub fn check_order(model: &QuantizedModel, order: &[usize]) -> Result<Vec<usize>> {
    let n = model.ops.len();
    let order: Vec<usize> = order.iter().copied().filter(|&i| i != 0).collect();
    let mut done = vec![false; n];
    done[0] = true;
    for &i in &order {
        if i >= n {
            return Err(ExportError::Order(format!("op index {i} out of range (the model has {n} ops)")));
        }
        if done[i] {
            return Err(ExportError::Order(format!("op {i} ('{}') appears twice", model.ops[i].name)));
        }
        if let Some(&j) = model.ops[i].inputs.iter().find(|&&j| !done[j]) {
            return Err(ExportError::Order(format!(
                "op {i} ('{}') reads op {j} ('{}'), which comes later",
                model.ops[i].name, model.ops[j].name
            )));
        }
        done[i] = true;
    }
    if let Some(missing) = (0..n).find(|&i| !done[i]) {
        return Err(ExportError::Order(format!("op {missing} ('{}') is missing", model.ops[missing].name)));
    }
    Ok(order)
}

/// The model's own (topological) order.
pub fn default_order(model: &QuantizedModel) -> Vec<usize> {
    (1..model.ops.len()).collect()
}
