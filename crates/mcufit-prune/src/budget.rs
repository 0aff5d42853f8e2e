//! Budgets: the feasibility check before training, and the exact
//! fit check after pruning. Every figure comes from `mcufit-cost` (the one source of truth).

use mcufit_cost::{Board, Budget, CostModel, Resource, Usage};
use serde::Serialize;

use crate::error::{PruneError, Result, Shortfall};

/// Checks that a budget bounds something, with positive finite limits.
pub fn check_budget(budget: &Budget, board: Option<&Board>) -> Result<()> {
    let mut any = false;
    for r in Resource::ALL {
        if let Some(l) = budget.limit(r) {
            any = true;
            if !(l.is_finite() && l > 0.0) {
                return Err(PruneError::Config(format!("the {} limit must be positive, got {l}", r.name())));
            }
        }
    }
    if !any {
        return Err(PruneError::Config(
            "no budget given: name a board or at least one of ram / flash / macs / latency".into(),
        ));
    }
    if budget.latency_ms.is_some() && board.is_none() {
        return Err(PruneError::Config("a latency limit needs a board".into()));
    }
    Ok(())
}

/// One bounded resource: where the model starts, the least it can reach, and the limit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResourceRange {
    pub resource: Resource,
    pub limit: f64,
    pub start: f64,
    /// Every prunable group at one channel.
    pub minimum: f64,
}

/// Group sizes with every prunable group at one channel (fixed groups keep their size): the
/// smallest figure of every resource, since each one grows with every group's channel count.
pub fn minimal_sizes(model: &CostModel) -> Vec<f64> {
    model.groups.groups.iter().map(|g| if g.prunable() { 1.0 } else { g.size as f64 }).collect()
}

/// Feasibility before training: the budget must be reachable at the smallest widths.
/// Returns the range of every bounded resource, or [`PruneError::Infeasible`] naming each
/// resource whose limit is below its minimum.
pub fn check_feasible(model: &CostModel, budget: &Budget, board: Option<&Board>) -> Result<Vec<ResourceRange>> {
    check_budget(budget, board)?;
    let start = model.usage(&model.sizes(), board);
    let least = model.usage(&minimal_sizes(model), board);
    let mut ranges = Vec::new();
    let mut short = Vec::new();
    for r in Resource::ALL {
        let Some(limit) = budget.limit(r) else { continue };
        let (Some(s), Some(m)) = (start.get(r), least.get(r)) else {
            return Err(PruneError::Config(format!("{} cannot be computed without a board", r.name())));
        };
        if m > limit {
            short.push(Shortfall { resource: r, limit, best: s, minimum: m });
        }
        ranges.push(ResourceRange { resource: r, limit, start: s, minimum: m });
    }
    if short.is_empty() {
        Ok(ranges)
    } else {
        Err(PruneError::Infeasible(short))
    }
}

/// Resources of `usage` over their limit (empty = fits).
pub fn over_budget(usage: &Usage, budget: &Budget) -> Vec<(Resource, f64, f64)> {
    Resource::ALL
        .iter()
        .filter_map(|&r| {
            let limit = budget.limit(r)?;
            let v = usage.get(r)?;
            (v > limit).then_some((r, v, limit))
        })
        .collect()
}

/// How far over budget, summed: `Σ_r max(0, R_r − B_r) / B_r`, except that peak memory counts
/// every step of the memory-optimal order over the limit (`Σ_k max(0, step_k − B) / B`), so that
/// shrinking one of several tied peak steps is progress even before the peak itself drops.
/// Zero exactly when the usage fits.
pub fn overflow(usage: &Usage, budget: &Budget) -> f64 {
    Resource::ALL
        .iter()
        .filter_map(|&r| {
            let limit = budget.limit(r)?;
            let v = usage.get(r)?;
            Some(match r {
                Resource::PeakMemory => usage.plan.steps.iter().map(|&s| (s - limit).max(0.0)).sum::<f64>() / limit,
                _ => (v - limit).max(0.0) / limit,
            })
        })
        .sum()
}

/// Largest relative excess `max_r value/limit - 1` over the bounded resources (negative = slack).
pub fn excess(usage: &Usage, budget: &Budget) -> f64 {
    Resource::ALL.iter().filter_map(|&r| Some(usage.get(r)? / budget.limit(r)? - 1.0)).fold(f64::NEG_INFINITY, f64::max)
}

/// Whether these group sizes fit the budget, by the exact cost model.
pub fn fits(model: &CostModel, sizes: &[f64], budget: &Budget, board: Option<&Board>) -> bool {
    over_budget(&model.usage(sizes, board), budget).is_empty()
}

/// One resource of a report: before, after and the limit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResourceFigure {
    pub resource: Resource,
    pub unit: &'static str,
    pub before: Option<f64>,
    pub after: Option<f64>,
    pub limit: Option<f64>,
    pub minimum: Option<f64>,
    pub fits: bool,
}

/// Every resource before / after against the budget (unbounded ones with `limit: None`).
pub fn resource_table(before: &Usage, after: &Usage, least: &Usage, budget: &Budget) -> Vec<ResourceFigure> {
    Resource::ALL
        .iter()
        .map(|&r| {
            let limit = budget.limit(r);
            let a = after.get(r);
            ResourceFigure {
                resource: r,
                unit: r.unit(),
                before: before.get(r),
                after: a,
                limit,
                minimum: least.get(r),
                fits: match (a, limit) {
                    (Some(v), Some(l)) => v <= l,
                    _ => true,
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcufit_cost::CostOptions;
    use mcufit_ir::zoo;

    #[test]
    fn overflow_sees_progress_on_tied_peak_steps() {
        // DS-CNN's blocks all hold 25x5x64 in and out: many steps tie at the 16,000 B peak.
        let g = zoo::ds_cnn().unwrap();
        let m = CostModel::new(&g, CostOptions::default()).unwrap();
        let b = Budget { peak_memory: Some(8000.0), ..Default::default() };
        let s = m.sizes();
        let u = m.usage(&s, None);
        let prunable = m.groups.groups.iter().find(|g| g.prunable()).unwrap().id;
        let mut s2 = s.clone();
        s2[prunable] -= 1.0;
        let u2 = m.usage(&s2, None);
        assert_eq!(u.peak_memory, u2.peak_memory, "the peak itself does not move");
        assert!(overflow(&u2, &b) < overflow(&u, &b));
        assert_eq!(overflow(&m.usage(&minimal_sizes(&m), None), &b), 0.0);
    }

    #[test]
    fn infeasible_budget_reports_the_achievable_minimum() {
        let g = zoo::mnist_wide().unwrap();
        let m = CostModel::new(&g, CostOptions::default()).unwrap();
        let least = m.usage(&minimal_sizes(&m), None);
        // The 28x28 input alone is 784 B and the smallest first conv output (5x5 valid, stride 2)
        // 12x12x1 = 144 B.
        assert_eq!(least.peak_memory, 784.0 + 144.0);
        let budget = Budget { peak_memory: Some(500.0), macs: Some(1e9), ..Default::default() };
        match check_feasible(&m, &budget, None) {
            Err(PruneError::Infeasible(s)) => {
                assert_eq!(s.len(), 1);
                assert_eq!(s[0].resource, Resource::PeakMemory);
                assert_eq!(s[0].minimum, 928.0);
                let msg = PruneError::Infeasible(s).to_string();
                assert!(msg.contains("peak memory") && msg.contains("928"), "{msg}");
            }
            other => panic!("expected infeasible, got {other:?}"),
        }
        let ok = Budget { peak_memory: Some(2500.0), ..Default::default() };
        let ranges = check_feasible(&m, &ok, None).unwrap();
        assert_eq!(ranges[0].minimum, 928.0);
        assert!(ranges[0].start > 2500.0);
    }
}
