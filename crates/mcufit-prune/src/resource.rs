//! The differentiable resource model: each bounded resource as a function of the (soft) channel
//! count of every group, linearised at the current counts with the exact derivatives of
//! `mcufit-cost` (the same formulas as the exact figures: no second copy).
//!
//! Peak memory is `max_k step_k(s)` over the steps of the memory-optimal operator order. At fixed
//! order each step is linear in the sizes, so the max is piecewise linear; we differentiate through
//! the step(s) that attain it (a softmax over steps within 5 % of the peak, so near-ties all get
//! pushed down, which is the exact gradient when one step dominates) and re-solve the optimal order
//! whenever the rounded channel counts change.

use mcufit_cost::{Board, Budget, CostModel, CostOptions, Resource, Usage};
use mcufit_ir::Graph;
use serde::Serialize;

use crate::error::Result;

/// One bounded resource linearised at the current soft counts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PenaltyTerm {
    pub resource: Resource,
    /// Exact value at the rounded counts (memory-optimal order re-solved).
    pub value: f64,
    /// The limit the penalty uses (the budget, or the annealed budget while pruning).
    pub limit: f64,
    /// d value / d channels of each group at the soft counts (0 for fixed groups).
    pub grad: Vec<f64>,
}

impl PenaltyTerm {
    /// `value / limit - 1`; the hinge is active when positive.
    pub fn excess(&self) -> f64 {
        self.value / self.limit - 1.0
    }
    pub fn active(&self) -> bool {
        self.value > self.limit
    }
}

/// A graph's cost model with a cached memory-optimal order.
#[derive(Debug, Clone)]
pub struct ResourceModel {
    pub cost: CostModel,
    pub board: Option<Board>,
    order: Vec<usize>,
    order_for: Vec<f64>,
    /// How many times the order was re-solved (for reports / tests).
    pub resolves: usize,
}

impl ResourceModel {
    pub fn new(graph: &Graph, options: CostOptions, board: Option<Board>) -> Result<Self> {
        let cost = CostModel::new(graph, options)?;
        let sizes = cost.sizes();
        let order = cost.memory_plan(&sizes).order;
        Ok(ResourceModel { cost, board, order, order_for: sizes, resolves: 1 })
    }

    /// The counts the order was last solved for and the re-solve count, to checkpoint.
    pub fn solved_state(&self) -> (Vec<f64>, usize) {
        (self.order_for.clone(), self.resolves)
    }

    /// Restores [`ResourceModel::solved_state`] from a checkpoint: the order for those counts (solved
    /// here as [`ResourceModel::linearize`] solves it) and the count, so a resumed run re-solves
    /// exactly when the uninterrupted one does. Counts of the wrong length are ignored.
    pub fn restore_solved(&mut self, order_for: Vec<f64>, resolves: usize) {
        if order_for.len() == self.order_for.len() {
            self.order = self.usage(&order_for).plan.order;
            self.order_for = order_for;
            self.resolves = resolves;
        }
    }

    /// The current memory-optimal order (for the last rounded counts seen).
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    /// Exact usage at integer counts.
    pub fn usage(&self, sizes: &[f64]) -> Usage {
        self.cost.usage(sizes, self.board.as_ref())
    }

    /// Rounds soft counts to the architecture they stand for (prunable groups at least 1).
    pub fn round(&self, soft: &[f64]) -> Vec<f64> {
        self.cost
            .groups
            .groups
            .iter()
            .zip(soft)
            .map(|(g, &s)| if g.prunable() { s.round().clamp(1.0, g.size as f64) } else { g.size as f64 })
            .collect()
    }

    /// Linearises every resource bounded by `limits` at the soft counts `soft`: exact values at the
    /// rounded counts, gradients at the soft counts along the memory-optimal order of the rounded
    /// counts (re-solved when they changed).
    pub fn linearize(&mut self, soft: &[f64], limits: &Budget) -> (Usage, Vec<PenaltyTerm>) {
        let rounded = self.round(soft);
        let usage = self.usage(&rounded);
        if rounded != self.order_for {
            self.order = usage.plan.order.clone();
            self.order_for = rounded;
            self.resolves += 1;
        }
        let mut terms = Vec::new();
        for r in Resource::ALL {
            let (Some(limit), Some(value)) = (limits.limit(r), usage.get(r)) else { continue };
            let grad = match r {
                Resource::PeakMemory => self.peak_gradient(soft),
                _ => self.cost.gradient(r, soft, &self.order, self.board.as_ref()),
            };
            terms.push(PenaltyTerm { resource: r, value, limit, grad });
        }
        (usage, terms)
    }

    /// Gradient of the peak through the step(s) attaining it: softmax weights (temperature 1 % of
    /// the peak) over the steps within 5 % of it. Steps are linear in the sizes at a fixed order, so
    /// a central difference of ±0.5 channel is exact.
    pub fn peak_gradient(&self, soft: &[f64]) -> Vec<f64> {
        let Ok(plan) = self.cost.memory_for_order(soft, &self.order) else {
            return vec![0.0; soft.len()];
        };
        let peak = plan.peak.max(1e-9);
        let near: Vec<(usize, f64)> = plan
            .steps
            .iter()
            .enumerate()
            .filter(|(_, &s)| s >= 0.95 * peak)
            .map(|(k, &s)| (k, ((s - peak) / (0.01 * peak)).exp()))
            .collect();
        let z: f64 = near.iter().map(|(_, w)| w).sum();
        let mut grad = vec![0.0; soft.len()];
        for g in self.cost.groups.groups.iter().filter(|g| g.prunable()) {
            let mut up = soft.to_vec();
            let mut down = soft.to_vec();
            up[g.id] += 0.5;
            down[g.id] -= 0.5;
            let (Ok(pu), Ok(pd)) =
                (self.cost.memory_for_order(&up, &self.order), self.cost.memory_for_order(&down, &self.order))
            else {
                continue;
            };
            grad[g.id] = near.iter().map(|&(k, w)| w / z * (pu.steps[k] - pd.steps[k])).sum();
        }
        grad
    }
}

/// The budget penalty's coefficient on each group's soft channel count:
/// `P(s) = Σ_r [R_r(round s) > B_r] · (Σ_g ∂R_r/∂s_g · s_g) / B_r`, so `∂P/∂s_g = Σ_active ∂R_r/∂s_g / B_r`.
/// This linear surrogate has the exact gradient of the normalised hinge `Σ_r max(0, R_r/B_r - 1)`.
pub fn penalty_coefficients(terms: &[PenaltyTerm], groups: usize) -> Vec<f64> {
    let mut c = vec![0.0; groups];
    for t in terms.iter().filter(|t| t.active()) {
        for (ci, gi) in c.iter_mut().zip(&t.grad) {
            *ci += gi / t.limit;
        }
    }
    c
}

/// The normalised hinge value `Σ_r max(0, R_r/B_r - 1)` (what the penalty coefficients differentiate).
pub fn hinge(terms: &[PenaltyTerm]) -> f64 {
    terms.iter().map(|t| t.excess().max(0.0)).sum()
}

/// Automatic λ: multiplicative dual ascent on the relative excess. Every pruning step,
/// `λ ← clamp(λ · exp(rate · clamp(excess / tolerance, -1, 1)), min, max)` where `excess` is the
/// largest `R_r/B_r - 1` over bounded resources at the current rounded counts (against the
/// annealed target). λ grows while the model is over (at full rate once `tolerance` over) and
/// shrinks as fast once it is under, so the penalty tracks the target and the user only gives budgets.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct LambdaSchedule {
    pub lambda: f64,
    pub rate: f64,
    pub tolerance: f64,
    pub min: f64,
    pub max: f64,
}

impl Default for LambdaSchedule {
    fn default() -> Self {
        LambdaSchedule { lambda: 1.0, rate: 0.3, tolerance: 0.05, min: 1e-2, max: 1e4 }
    }
}

impl LambdaSchedule {
    pub fn update(&mut self, excess: f64) -> f64 {
        let e = if excess.is_finite() { (excess / self.tolerance).clamp(-1.0, 1.0) } else { 0.0 };
        self.lambda = (self.lambda * (self.rate * e).exp()).clamp(self.min, self.max);
        self.lambda
    }
}

/// The budget the penalty aims at while pruning: geometric interpolation from the starting usage
/// down to `margin ×` the real budget over the annealing fraction of the pruning phase (`t` in
/// [0, 1]), so the network loses capacity gradually instead of all at once. The margin keeps the
/// rounded architecture under the real budget.
pub fn annealed_budget(start: &Usage, budget: &Budget, t: f64, margin: f64) -> Budget {
    let t = t.clamp(0.0, 1.0);
    let mut b = *budget;
    for r in Resource::ALL {
        let (Some(limit), Some(s)) = (budget.limit(r), start.get(r)) else { continue };
        let target = limit * margin;
        let v = if s > target { s * (target / s).powf(t) } else { target };
        b.set(r, Some(v));
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcufit_ir::zoo;

    #[test]
    fn peak_gradient_matches_the_exact_model_along_the_order() {
        // mnist-wide is a chain whose peak (conv2: 12x12xC1 in + 5x5xC2 out) is well clear of the
        // other steps, so the softmax weighting reduces to the attaining step: the cost model's own gradient.
        let g = zoo::mnist_wide().unwrap();
        let mut m = ResourceModel::new(&g, CostOptions::default(), None).unwrap();
        let soft: Vec<f64> = m.cost.sizes().iter().map(|s| s * 0.7).collect();
        let (usage, terms) =
            m.linearize(&soft, &Budget { peak_memory: Some(1.0), macs: Some(1.0), ..Default::default() });
        assert_eq!(terms.len(), 2);
        let exact = m.cost.gradient(Resource::PeakMemory, &soft, m.order(), None);
        for (a, b) in terms[0].grad.iter().zip(&exact) {
            assert!((a - b).abs() < 1e-9, "{a} vs {b}");
        }
        // d peak / d C1 = 12*12 (conv2's input), d peak / d C2 = 5*5 (its output); others 0.
        let groups = &m.cost.groups;
        let c1 = groups.layouts[g.find("conv2d_1").unwrap()].segments[0];
        assert_eq!(terms[0].grad[c1], 144.0);
        assert_eq!(terms[1].grad, m.cost.gradient(Resource::Macs, &soft, m.order(), None));
        assert!(usage.peak_memory > 1.0 && terms.iter().all(|t| t.active()));
        let c = penalty_coefficients(&terms, soft.len());
        for grp in &groups.groups {
            assert_eq!(c[grp.id] == 0.0, !grp.prunable(), "group {}", grp.id);
        }
    }

    #[test]
    fn near_tied_peak_steps_share_the_gradient() {
        let g = zoo::branchy_net().unwrap();
        let m = ResourceModel::new(&g, CostOptions::default(), None).unwrap();
        let soft = m.cost.sizes();
        let grad = m.peak_gradient(&soft);
        let plan = m.cost.memory_for_order(&soft, m.order()).unwrap();
        // The gradient is a convex combination of the steps' gradients: bounded by their extremes.
        for grp in m.cost.groups.groups.iter().filter(|g| g.prunable()) {
            let mut up = soft.clone();
            up[grp.id] += 1.0;
            let p = m.cost.memory_for_order(&up, m.order()).unwrap();
            let d: Vec<f64> = p.steps.iter().zip(&plan.steps).map(|(a, b)| a - b).collect();
            let lo = d.iter().cloned().fold(f64::INFINITY, f64::min);
            let hi = d.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            assert!(grad[grp.id] >= lo - 1e-9 && grad[grp.id] <= hi + 1e-9);
        }
        assert!(grad.iter().any(|&x| x > 0.0));
    }

    #[test]
    fn order_is_resolved_when_rounded_counts_change() {
        let g = zoo::branchy_net().unwrap();
        let mut m = ResourceModel::new(&g, CostOptions::default(), None).unwrap();
        let b = Budget { peak_memory: Some(1.0), ..Default::default() };
        let s = m.cost.sizes();
        m.linearize(&s, &b);
        assert_eq!(m.resolves, 1);
        let s2: Vec<f64> = s.iter().map(|x| x * 0.5).collect();
        m.linearize(&s2, &b);
        assert_eq!(m.resolves, 2);
        let s3: Vec<f64> = s2.iter().map(|x| x + 0.1).collect();
        m.linearize(&s3, &b);
        assert_eq!(m.resolves, 2, "same rounding, same order");
    }

    #[test]
    fn lambda_grows_over_budget_and_decays_under() {
        let mut l = LambdaSchedule::default();
        let a = l.update(0.5);
        assert!(a > 1.0);
        let b = l.update(-0.5);
        assert!(b < a);
        for _ in 0..10_000 {
            l.update(10.0);
        }
        assert_eq!(l.lambda, l.max);
    }

    #[test]
    fn annealing_goes_from_start_to_margin_times_budget() {
        let g = zoo::mnist_wide().unwrap();
        let m = ResourceModel::new(&g, CostOptions::default(), None).unwrap();
        let u = m.usage(&m.cost.sizes());
        let b = Budget { peak_memory: Some(2500.0), ..Default::default() };
        assert!((annealed_budget(&u, &b, 0.0, 0.97).peak_memory.unwrap() - u.peak_memory).abs() < 1e-6);
        assert!((annealed_budget(&u, &b, 1.0, 0.97).peak_memory.unwrap() - 2425.0).abs() < 1e-6);
        let mid = annealed_budget(&u, &b, 0.5, 0.97).peak_memory.unwrap();
        assert!(mid < u.peak_memory && mid > 2425.0);
    }
}
