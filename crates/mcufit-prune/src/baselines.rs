//! Baselines at the same budget, for an honest comparison with [`crate::compress()`]:
//! - **uniform width scaling**: every prunable group scaled by the largest multiplier α whose
//!   architecture fits (bisection on the exact cost model), trained from scratch;
//! - **L1-norm magnitude pruning** (Li et al. 2017), one shot: from a trained model, repeatedly drop
//!   the channel with the smallest normalised filter L1 norm among the groups whose removal lowers
//!   an over-budget resource, until the exact cost model says it fits; then fine-tune.

use std::time::Instant;

use mcufit_cost::{Board, Budget, CostModel};
use mcufit_train::burn::module::Module;
use mcufit_train::{evaluate, train_network, train_with_hook, Network, NoHook, TrainConfig};
use serde::Serialize;

use crate::budget::{fits, minimal_sizes, over_budget, overflow};
use crate::error::{PruneError, Result, Shortfall};
use crate::masks::filter_l1;
use crate::removal::{remove_channels, zero_channels, RemovalReport};

/// Group sizes at width multiplier `alpha` (prunable groups `max(1, round(α·size))`).
pub fn scaled_sizes(model: &CostModel, alpha: f64) -> Vec<f64> {
    model
        .groups
        .groups
        .iter()
        .map(|g| if g.prunable() { (alpha * g.size as f64).round().clamp(1.0, g.size as f64) } else { g.size as f64 })
        .collect()
}

fn infeasible(model: &CostModel, budget: &Budget, board: Option<&Board>) -> PruneError {
    let least = model.usage(&minimal_sizes(model), board);
    let start = model.usage(&model.sizes(), board);
    PruneError::Infeasible(
        over_budget(&least, budget)
            .into_iter()
            .map(|(r, m, l)| Shortfall { resource: r, limit: l, best: start.get(r).unwrap_or(m), minimum: m })
            .collect(),
    )
}

/// The largest uniform width multiplier whose architecture fits, and its group sizes.
pub fn uniform_width(model: &CostModel, budget: &Budget, board: Option<&Board>) -> Result<(f64, Vec<usize>)> {
    if !fits(model, &minimal_sizes(model), budget, board) {
        return Err(infeasible(model, budget, board));
    }
    if fits(model, &model.sizes(), budget, board) {
        return Ok((1.0, model.groups.sizes()));
    }
    // Resources grow with every width, so fitting is monotone in α: bisect.
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    for _ in 0..40 {
        let mid = 0.5 * (lo + hi);
        if fits(model, &scaled_sizes(model, mid), budget, board) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let sizes = scaled_sizes(model, lo).into_iter().map(|s| s as usize).collect();
    Ok((lo, sizes))
}

/// Budget-aware global L1 selection: keep sets per group for `network` (trained) that fit.
pub fn l1_keep_sets(
    network: &Network,
    model: &CostModel,
    budget: &Budget,
    board: Option<&Board>,
) -> Result<Vec<Vec<usize>>> {
    if !fits(model, &minimal_sizes(model), budget, board) {
        return Err(infeasible(model, budget, board));
    }
    let groups = &model.groups.groups;
    // Normalised L1 importance per channel (each producer's norms divided by their mean, summed).
    let mut score: Vec<Vec<f32>> = Vec::new();
    for g in groups {
        let mut s = vec![0f32; g.size];
        if g.prunable() {
            for norms in filter_l1(network, g.id)? {
                let m = (norms.iter().sum::<f32>() / norms.len().max(1) as f32).max(1e-12);
                for (a, b) in s.iter_mut().zip(&norms) {
                    *a += b / m;
                }
            }
        }
        score.push(s);
    }
    let mut keep: Vec<Vec<usize>> = groups.iter().map(|g| (0..g.size).collect()).collect();
    loop {
        let sizes: Vec<f64> = keep.iter().map(|k| k.len() as f64).collect();
        let usage = model.usage(&sizes, board);
        let over = over_budget(&usage, budget);
        if over.is_empty() {
            return Ok(keep);
        }
        // Candidate groups: removing one channel reduces the overflow (tied peak steps included).
        let now = overflow(&usage, budget);
        let mut best: Option<(f32, usize, usize)> = None;
        for g in groups.iter().filter(|g| g.prunable() && keep[g.id].len() > 1) {
            let mut s = sizes.clone();
            s[g.id] -= 1.0;
            if overflow(&model.usage(&s, board), budget) >= now {
                continue;
            }
            let (pos, &ch) = keep[g.id]
                .iter()
                .enumerate()
                .min_by(|a, b| score[g.id][*a.1].partial_cmp(&score[g.id][*b.1]).unwrap_or(std::cmp::Ordering::Equal))
                .ok_or_else(|| PruneError::Config("empty group".into()))?;
            let v = score[g.id][ch];
            if best.is_none_or(|(bv, _, _)| v < bv) {
                best = Some((v, g.id, pos));
            }
        }
        let Some((_, g, pos)) = best else {
            return Err(infeasible(model, budget, board));
        };
        keep[g].remove(pos);
    }
}

/// Physically prunes a network to the given keep sets: channels outside them are zeroed at their
/// mask sites (any training masks are replaced by the keep sets), then sliced out. The result is a
/// dense network on the same device, in evaluation mode.
pub fn prune_network(network: &Network, keep: &[Vec<usize>]) -> Result<(Network, RemovalReport)> {
    let net = network.valid();
    let mut w = net.to_weights()?;
    w.masks.clear();
    let graph = net.graph().clone();
    let zeroed = zero_channels(&graph, &w, keep)?;
    let (g2, w2, report) = remove_channels(&graph, &zeroed, keep)?;
    let device = net.device();
    Ok((Network::from_weights(&g2, &w2, &device)?, report))
}

/// Which baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BaselineKind {
    Uniform,
    L1,
}

/// Result of a baseline run.
#[derive(Debug, Clone, Serialize)]
pub struct BaselineReport {
    pub kind: BaselineKind,
    pub sizes: Vec<usize>,
    /// Width multiplier (uniform only).
    pub alpha: Option<f64>,
    pub usage: mcufit_cost::Usage,
    pub test_accuracy: f64,
    pub val_accuracy: Option<f64>,
    pub epochs: usize,
    pub seconds: f64,
}

/// Runs a baseline: `Uniform` trains the scaled architecture from scratch for `config.epochs`;
/// `L1` prunes `base` (a trained network of `graph`) in one shot and fine-tunes it for
/// `config.epochs`. Returns the test accuracy and the exact usage of the result.
#[allow(
    clippy::too_many_arguments,
    reason = "public entry point called by mcufit-pipeline; an options struct would churn its callers for no gain"
)]
pub fn run_baseline(
    kind: BaselineKind,
    graph: &mcufit_ir::Graph,
    splits: &mcufit_data::Splits,
    base: Option<&Network>,
    budget: &Budget,
    board: Option<&Board>,
    config: &TrainConfig,
    distill: Option<(f64, f64)>,
) -> Result<(BaselineReport, Network)> {
    let t0 = Instant::now();
    // The same fine-tune recipe as `compress` when asked: distil from the trained `base`.
    let mut hook: Box<dyn mcufit_train::TrainHook> = match (distill, base) {
        (Some((alpha, t)), Some(b)) if alpha > 0.0 => Box::new(mcufit_train::Distill::new(b.clone(), alpha, t)?),
        (Some((alpha, _)), None) if alpha > 0.0 => {
            return Err(PruneError::Config("distillation needs the trained model (--from) as the teacher".into()))
        }
        _ => Box::new(NoHook),
    };
    let model = CostModel::new(graph, Default::default())?;
    let tsplits = mcufit_train::Splits { train: &splits.train, val: Some(&splits.val) };
    let (net, sizes, alpha) = match kind {
        BaselineKind::Uniform => {
            let (alpha, sizes) = uniform_width(&model, budget, board)?;
            let g = graph.with_group_sizes(&model.groups, &sizes)?;
            (train_with_hook(&g, &tsplits, config, hook.as_mut())?.network, sizes, Some(alpha))
        }
        BaselineKind::L1 => {
            let base =
                base.ok_or_else(|| PruneError::Config("the L1 baseline needs a trained model (--from)".into()))?;
            if base.graph() != graph {
                return Err(PruneError::Config("the trained model's architecture differs from the graph".into()));
            }
            let keep = l1_keep_sets(base, &model, budget, board)?;
            let (small, _) = prune_network(base, &keep)?;
            let sizes = keep.iter().map(Vec::len).collect();
            (train_network(small, &tsplits, config, hook.as_mut())?.network, sizes, None)
        }
    };
    let small_model = CostModel::new(net.graph(), Default::default())?;
    let usage = small_model.usage(&small_model.sizes(), board);
    let test = evaluate(&net, &splits.test, 256)?;
    let val = evaluate(&net, &splits.val, 256).ok().map(|r| r.accuracy);
    Ok((
        BaselineReport {
            kind,
            sizes,
            alpha,
            usage,
            test_accuracy: test.accuracy,
            val_accuracy: val,
            epochs: config.epochs,
            seconds: t0.elapsed().as_secs_f64(),
        },
        net,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcufit_cost::CostOptions;
    use mcufit_ir::zoo;

    #[test]
    fn uniform_width_is_the_largest_fitting_multiplier() {
        let g = zoo::mnist_wide().unwrap();
        let m = CostModel::new(&g, CostOptions::default()).unwrap();
        let b = Budget { peak_memory: Some(2500.0), model_bytes: Some(4500.0), ..Default::default() };
        let (alpha, sizes) = uniform_width(&m, &b, None).unwrap();
        assert!(alpha > 0.0 && alpha < 1.0);
        let s: Vec<f64> = sizes.iter().map(|&x| x as f64).collect();
        assert!(fits(&m, &s, &b, None));
        // A slightly larger multiplier that changes the architecture no longer fits.
        let mut a = alpha;
        while scaled_sizes(&m, a) == s {
            a += 1e-3;
        }
        assert!(!fits(&m, &scaled_sizes(&m, a), &b, None));
        let tiny = Budget { peak_memory: Some(100.0), ..Default::default() };
        assert!(matches!(uniform_width(&m, &tiny, None), Err(PruneError::Infeasible(_))));
    }
}
