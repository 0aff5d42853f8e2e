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
//!
//! **Bounded.** `k` branches that run side by side give `2^k` downsets, so the exact search is
//! exponential in the width of the graph. [`MemoryProblem::min_peak`] runs it up to
//! [`SearchLimits::max_states`] memoised states (deterministic: no clock is read) and, past that,
//! falls back to a beam search over downsets ([`SearchLimits::beam_width`] states kept per step,
//! ranked by the peak so far, then the bytes left live) for an order, and to
//! [`MemoryProblem::lower_bound`], a proven lower bound on the minimum peak. The plan then says
//! `exact: false` and its peak is an upper bound within `peak - lower_bound` of the optimum
//! (`exact: true` again when the order meets the lower bound). Where the exact search finishes,
//! the result is the one it always gave.

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
    /// True when `peak` is the minimum over all orders (the exact search finished, or the order
    /// found meets `lower_bound`). False for a plan of a given order ([`MemoryProblem::evaluate`])
    /// and for a bounded search's order: its peak is then an upper bound on the minimum.
    pub exact: bool,
    /// A proven lower bound on the minimum peak: `peak` itself when `exact`, 0 for a plan of a
    /// given order (not computed there).
    pub lower_bound: f64,
}

impl MemoryPlan {
    /// How far the peak may be above the minimum peak: 0 when exact.
    pub fn gap(&self) -> f64 {
        if self.exact {
            0.0
        } else {
            (self.peak - self.lower_bound).max(0.0)
        }
    }
}

/// Limits of [`MemoryProblem::min_peak_within`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchLimits {
    /// States the exact search may memoise before it gives up (each costs O(ops²) time and a few
    /// words of memory; 50,000 take well under a second on 50-op graphs).
    pub max_states: usize,
    /// States the fallback beam search keeps per step, on graphs of up to 64 ops; on larger graphs
    /// `beam_width * 64² / ops²` (at least 4), so its work stays bounded (a 1000-branch graph: 4).
    pub beam_width: usize,
}

impl Default for SearchLimits {
    fn default() -> Self {
        SearchLimits { max_states: 50_000, beam_width: 128 }
    }
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
        let reused = self.reuses(done, v);
        if reused.is_none() && self.counts(v) {
            bytes += self.bytes[v];
        }
        live.push(v);
        (bytes, live, reused)
    }

    /// The input whose buffer `v` writes over: an add may take over the buffer of a counted input at
    /// least as large whose last reader it is.
    fn reuses(&self, done: &[u64], v: usize) -> Option<usize> {
        if !(self.options.in_place_add && self.in_place[v]) {
            return None;
        }
        self.inputs[v].iter().copied().find(|&u| {
            self.counts(u)
                && self.bytes[u] >= self.bytes[v]
                && self.consumers[u].iter().all(|&c| c == v || has(done, c))
        })
    }

    /// [`MemoryProblem::step`]'s bytes in O(degree), from `resident`, the bytes of the finished tensors
    /// that still have a reader after `done`; returns (bytes while `v` runs, `resident` after `v`).
    /// The search calls this instead of `step` (O(ops)); the sums are of whole bytes, so exact.
    fn step_from(&self, done: &[u64], resident: f64, v: usize) -> (f64, f64) {
        let here = resident + if self.reuses(done, v).is_none() && self.counts(v) { self.bytes[v] } else { 0.0 };
        let mut after = resident;
        if self.counts(v) && !self.consumers[v].is_empty() {
            after += self.bytes[v];
        }
        for (i, &u) in self.inputs[v].iter().enumerate() {
            if !self.inputs[v][..i].contains(&u)
                && self.counts(u)
                && self.consumers[u].iter().all(|&c| c == v || has(done, c))
            {
                after -= self.bytes[u];
            }
        }
        (here, after)
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
            exact: false,
            lower_bound: 0.0,
        })
    }

    /// The minimum peak over all topological orders, with an order that attains it, under the
    /// default [`SearchLimits`]: exact unless the graph has too many parallel branches (see the
    /// module docs and [`MemoryPlan::exact`]).
    pub fn min_peak(&self) -> MemoryPlan {
        self.min_peak_within(SearchLimits::default())
    }

    /// [`MemoryProblem::min_peak`] under the given limits.
    pub fn min_peak_within(&self, limits: SearchLimits) -> MemoryPlan {
        let mut memo: HashMap<Set, (f64, usize)> = HashMap::new();
        let start = self.empty();
        if self.best(&start, 0.0, &mut memo, limits.max_states).is_some() {
            let mut order = Vec::with_capacity(self.n());
            let mut s = start;
            while order.len() < self.n() {
                let (_, v) = memo[&s];
                order.push(v);
                s = with(&s, v);
            }
            let mut plan = self.evaluate(&order).expect("the search only builds valid orders");
            plan.states = memo.len();
            plan.exact = true;
            plan.lower_bound = plan.peak;
            return plan;
        }
        let states = memo.len();
        drop(memo);
        // Each step of the beam tries every ready op of every kept state: about width * ops² work in
        // all. Past 64 ops the width shrinks with ops² (at least 4), so that work stays bounded.
        let n = self.n().max(1);
        let width = (limits.beam_width.saturating_mul(64 * 64) / (n * n)).clamp(4, limits.beam_width.max(4));
        let order = self.beam_order(width.min(limits.beam_width.max(1)));
        let mut plan = self.evaluate(&order).expect("the beam search only builds valid orders");
        let lower = self.lower_bound();
        plan.states = states;
        // The bound and the peak sum the same bytes in different orders: never report a bound
        // above the peak (rounding), and an order that meets the bound is optimal.
        plan.exact = plan.peak <= lower;
        plan.lower_bound = lower.min(plan.peak);
        plan
    }

    /// A lower bound on the peak of every order. While `v` runs, every ancestor `u` of `v` is
    /// finished and, if it has a reader that is `v` or a descendant of `v`, that reader is not: `u`
    /// is resident. So the peak of any order is at least, for every `v`, the bytes of those `u` plus
    /// `v`'s output (left out where `v` might write in place over an input).
    pub fn lower_bound(&self) -> f64 {
        let n = self.n();
        let words = n.div_ceil(64);
        // A topological order (the ops are meant to be in one; do not rely on it).
        let mut indegree: Vec<usize> = (0..n).map(|v| self.inputs[v].iter().filter(|&&u| u < n).count()).collect();
        let mut topo: Vec<usize> = (0..n).filter(|&v| indegree[v] == 0).collect();
        let mut i = 0;
        while i < topo.len() {
            let u = topo[i];
            i += 1;
            for &c in &self.consumers[u] {
                let k = self.inputs[c].iter().filter(|&&x| x == u).count();
                indegree[c] -= k;
                if indegree[c] == 0 {
                    topo.push(c);
                }
            }
        }
        let mut anc = vec![vec![0u64; words]; n];
        for &v in &topo {
            let mut a = vec![0u64; words];
            for &u in &self.inputs[v] {
                for (x, y) in a.iter_mut().zip(&anc[u]) {
                    *x |= y;
                }
                a[u / 64] |= 1 << (u % 64);
            }
            anc[v] = a;
        }
        let mut desc = vec![vec![0u64; words]; n];
        for &v in topo.iter().rev() {
            let mut d = vec![0u64; words];
            for &c in &self.consumers[v] {
                for (x, y) in d.iter_mut().zip(&desc[c]) {
                    *x |= y;
                }
                d[c / 64] |= 1 << (c % 64);
            }
            desc[v] = d;
        }
        let mut bound = 0.0f64;
        for v in 0..n {
            let mut bytes = 0.0;
            for u in 0..n {
                if has(&anc[v], u) && self.counts(u) && self.consumers[u].iter().any(|&c| c == v || has(&desc[v], c)) {
                    bytes += self.bytes[u];
                }
            }
            let may_reuse = self.options.in_place_add
                && self.in_place[v]
                && self.inputs[v].iter().any(|&u| self.counts(u) && self.bytes[u] >= self.bytes[v]);
            if self.counts(v) && !may_reuse {
                bytes += self.bytes[v];
            }
            bound = bound.max(bytes);
        }
        bound
    }

    /// A good order found by a beam search over downsets: from each kept state, every ready op;
    /// states reached twice keep the better; the `width` best by (peak so far, bytes left live) go on.
    fn beam_order(&self, width: usize) -> Vec<usize> {
        struct Node {
            done: Set,
            /// Index in `links` of the last op of the order that reached this state.
            link: usize,
            peak: f64,
            live: f64,
        }
        // Orders as linked lists, (previous link, op), shared by the states that extend them.
        const ROOT: usize = usize::MAX;
        let mut links: Vec<(usize, usize)> = Vec::new();
        let n = self.n();
        let mut beam = vec![Node { done: self.empty(), link: ROOT, peak: 0.0, live: 0.0 }];
        for _ in 0..n {
            let mut next: HashMap<Set, Node> = HashMap::new();
            for s in &beam {
                for v in 0..n {
                    if !self.ready(&s.done, v) {
                        continue;
                    }
                    let (here, live) = self.step_from(&s.done, s.live, v);
                    let done = with(&s.done, v);
                    let peak = s.peak.max(here);
                    let better = |o: &Node| (peak, live) < (o.peak, o.live);
                    match next.get(&done) {
                        Some(o) if !better(o) => {}
                        _ => {
                            links.push((s.link, v));
                            next.insert(done.clone(), Node { done, link: links.len() - 1, peak, live });
                        }
                    }
                }
            }
            let mut states: Vec<Node> = next.into_values().collect();
            // Ties broken by the set of finished ops (distinct states have distinct sets), so the
            // result does not depend on hashing. A total order: selecting the `width` best first, then
            // sorting them, keeps what a full sort would.
            let cmp = |a: &Node, b: &Node| {
                a.peak.total_cmp(&b.peak).then(a.live.total_cmp(&b.live)).then_with(|| a.done.cmp(&b.done))
            };
            if states.len() > width {
                states.select_nth_unstable_by(width - 1, cmp);
                states.truncate(width);
            }
            states.sort_by(cmp);
            if states.is_empty() {
                break;
            }
            beam = states;
        }
        let mut order = Vec::with_capacity(n);
        let mut link = beam[0].link;
        while link != ROOT {
            let (prev, v) = links[link];
            order.push(v);
            link = prev;
        }
        order.reverse();
        order
    }

    /// Best peak to finish from `done`; memoises (peak, first op to run). `None` once more than
    /// `limit` states would be memoised.
    /// `resident`: the bytes of the finished tensors that still have a reader (a function of `done`).
    fn best(&self, done: &Set, resident: f64, memo: &mut HashMap<Set, (f64, usize)>, limit: usize) -> Option<f64> {
        if let Some(&(p, _)) = memo.get(done) {
            return Some(p);
        }
        if memo.len() >= limit {
            return None;
        }
        let mut best = (f64::INFINITY, usize::MAX);
        let mut remaining = false;
        for v in 0..self.n() {
            if !self.ready(done, v) {
                continue;
            }
            remaining = true;
            let (here, after) = self.step_from(done, resident, v);
            if here >= best.0 {
                continue; // this step alone is already no better than the best found
            }
            let next = with(done, v);
            let rest = self.best(&next, after, memo, limit)?;
            let peak = here.max(rest);
            if peak < best.0 {
                best = (peak, v);
            }
        }
        if !remaining {
            best = (0.0, usize::MAX);
        }
        memo.insert(done.clone(), best);
        Some(best.0)
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
