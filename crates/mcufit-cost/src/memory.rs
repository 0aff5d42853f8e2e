//! Peak activation memory under the best operator order.
//!
//! While an op runs, the arena holds every tensor that is already computed and still has a reader
//! that has not run yet (the op's own inputs among them), plus the op's output. The peak of an
//! order is the largest such set over its steps; the peak of a graph is the minimum of that over all
//! topological orders. For a chain there is one order; with branches the order matters (run the
//! branch that frees the most memory first), and greedy rules are not optimal in general.
//!
//! [`min_peak`] is an exact dynamic program over "done" sets (downsets of the DAG): the best peak
//! from a state is `min over ready ops v of max(step(S, v), best(S ∪ {v}))`, memoised by the set.
//! The number of states is the number of downsets, linear for chains and blocks of branches in
//! sequence (every zoo model), so it is fast on real networks. With `in_place_add`, an add whose
//! input dies at that add writes its output into that input's buffer (as CMSIS-NN/TFLM allow),
//! so the output costs nothing extra.

use std::collections::HashMap;

/// Switches of the memory model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MemoryOptions {
    /// Count the network input tensor in the arena (TFLM keeps it there).
    pub count_input: bool,
    /// Let an add overwrite an input that dies at it.
    pub in_place_add: bool,
}

impl Default for MemoryOptions {
    fn default() -> Self {
        MemoryOptions { count_input: true, in_place_add: false }
    }
}

/// A scheduling problem: ops in topological order, op 0 the network input, the last op the output.
#[derive(Debug, Clone)]
pub struct MemoryProblem {
    pub inputs: Vec<Vec<usize>>,
    pub consumers: Vec<Vec<usize>>,
    /// Bytes of each op's output tensor.
    pub bytes: Vec<f64>,
    /// Ops that may write in place over a dying input (adds).
    pub in_place: Vec<bool>,
    pub options: MemoryOptions,
}

/// The result: the minimal peak and an order that attains it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MemoryPlan {
    pub peak: f64,
    /// Op indices in execution order (starts with the input, 0).
    pub order: Vec<usize>,
    /// Arena bytes in use while each op of `order` runs.
    pub steps: Vec<f64>,
    /// Tensors (op indices) resident while each op of `order` runs, its output included.
    pub live: Vec<Vec<usize>>,
    /// For each step of `order`: the input whose buffer the op writes its output into (an in-place
    /// add), if any. Exporters place that output at the input's offset.
    pub in_place_of: Vec<Option<usize>>,
    /// Index into `order` of the (first) step that reaches the peak.
    pub peak_step: usize,
    /// Search states (downsets) the exact search memoised; 0 for a plan of a given order.
    pub states: usize,
}

type Set = Box<[u64]>;

fn has(s: &[u64], i: usize) -> bool {
    s[i / 64] >> (i % 64) & 1 == 1
}
fn with(s: &[u64], i: usize) -> Set {
    let mut t: Set = s.into();
    t[i / 64] |= 1 << (i % 64);
    t
}

impl MemoryProblem {
    /// A problem from each op's inputs (op 0 the network input, ops in topological order), the
    /// bytes of each op's output and which ops may work in place (adds).
    pub fn new(inputs: Vec<Vec<usize>>, bytes: Vec<f64>, in_place: Vec<bool>, options: MemoryOptions) -> Self {
        let mut consumers = vec![Vec::new(); inputs.len()];
        for (v, ins) in inputs.iter().enumerate() {
            for &u in ins {
                if !consumers[u].contains(&v) {
                    consumers[u].push(v);
                }
            }
        }
        MemoryProblem { inputs, consumers, bytes, in_place, options }
    }

    fn n(&self) -> usize {
        self.bytes.len()
    }

    fn counts(&self, u: usize) -> bool {
        u != 0 || self.options.count_input
    }

    /// Tensors resident while `v` runs after the set `done`, the bytes they take, and the input
    /// `v` overwrites in place (if any).
    fn step(&self, done: &[u64], v: usize) -> (f64, Vec<usize>, Option<usize>) {
        let mut live = Vec::new();
        let mut bytes = 0.0;
        for u in 0..self.n() {
            if has(done, u) && self.consumers[u].iter().any(|&c| !has(done, c)) {
                live.push(u);
                if self.counts(u) {
                    bytes += self.bytes[u];
                }
            }
        }
        // An add may take over the buffer of a counted input at least as large whose last reader it is.
        let reused = if self.options.in_place_add && self.in_place[v] {
            self.inputs[v].iter().copied().find(|&u| {
                self.counts(u)
                    && self.bytes[u] >= self.bytes[v]
                    && self.consumers[u].iter().all(|&c| c == v || has(done, c))
            })
        } else {
            None
        };
        if reused.is_none() && self.counts(v) {
            bytes += self.bytes[v];
        }
        live.push(v);
        (bytes, live, reused)
    }

    fn ready(&self, done: &[u64], v: usize) -> bool {
        !has(done, v) && self.inputs[v].iter().all(|&u| has(done, u))
    }

    fn empty(&self) -> Set {
        vec![0u64; self.n().div_ceil(64)].into()
    }

    /// Memory at every step of a given order; errors if it is not a topological order of all ops.
    pub fn evaluate(&self, order: &[usize]) -> Result<MemoryPlan, String> {
        if order.len() != self.n() {
            return Err(format!("order has {} ops, the graph {}", order.len(), self.n()));
        }
        let mut done = self.empty();
        let (mut steps, mut lives, mut in_place_of) = (Vec::new(), Vec::new(), Vec::new());
        for &v in order {
            if v >= self.n() || !self.ready(&done, v) {
                return Err(format!("op {v} is not ready at its place in the order"));
            }
            let (b, l, r) = self.step(&done, v);
            steps.push(b);
            lives.push(l);
            in_place_of.push(r);
            done = with(&done, v);
        }
        let peak_step = argmax(&steps);
        Ok(MemoryPlan {
            peak: steps[peak_step],
            order: order.to_vec(),
            steps,
            live: lives,
            in_place_of,
            peak_step,
            states: 0,
        })
    }

    /// The exact minimum peak over all topological orders, with an order that attains it.
    pub fn min_peak(&self) -> MemoryPlan {
        let mut memo: HashMap<Set, (f64, usize)> = HashMap::new();
        let start = self.empty();
        self.best(&start, &mut memo);
        let mut order = Vec::with_capacity(self.n());
        let mut s = start;
        while order.len() < self.n() {
            let (_, v) = memo[&s];
            order.push(v);
            s = with(&s, v);
        }
        let mut plan = self.evaluate(&order).expect("the search only builds valid orders");
        plan.states = memo.len();
        plan
    }

    /// Best peak to finish from `done`; memoises (peak, first op to run).
    fn best(&self, done: &Set, memo: &mut HashMap<Set, (f64, usize)>) -> f64 {
        if let Some(&(p, _)) = memo.get(done) {
            return p;
        }
        let mut best = (f64::INFINITY, usize::MAX);
        let mut remaining = false;
        for v in 0..self.n() {
            if !self.ready(done, v) {
                continue;
            }
            remaining = true;
            let (here, ..) = self.step(done, v);
            if here >= best.0 {
                continue; // this step alone is already no better than the best found
            }
            let next = with(done, v);
            let rest = self.best(&next, memo);
            let peak = here.max(rest);
            if peak < best.0 {
                best = (peak, v);
            }
        }
        if !remaining {
            best = (0.0, usize::MAX);
        }
        memo.insert(done.clone(), best);
        best.0
    }

    /// Every topological order (exponential; for tests and tiny graphs only).
    pub fn all_orders(&self) -> Vec<Vec<usize>> {
        fn rec(p: &MemoryProblem, done: &Set, cur: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
            if cur.len() == p.n() {
                out.push(cur.clone());
                return;
            }
            for v in 0..p.n() {
                if p.ready(done, v) {
                    cur.push(v);
                    rec(p, &with(done, v), cur, out);
                    cur.pop();
                }
            }
        }
        let mut out = Vec::new();
        rec(self, &self.empty(), &mut Vec::new(), &mut out);
        out
    }
}

pub(crate) fn argmax(xs: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best
}
