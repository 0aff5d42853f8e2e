//! Arena planning: tensor lifetimes under an operator order, the peak (the most bytes live at
//! once, the bound no placement can beat) and an offset for every tensor such that tensors live
//! at the same time never overlap. The memory model matches `mcufit-cost`: while an op runs, the
//! arena holds every computed tensor that still has an unrun reader, plus the op's output; an ADD
//! may write over an input that dies at it (`in_place_add`).

use mcufit_cost::memory::{MemoryOptions, MemoryProblem};
use mcufit_quant::{QOpKind, QuantizedModel};
use serde::Serialize;

use crate::error::{ExportError, Result};
use crate::order::check_order;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanOptions {
    /// Keep the network input in the arena (as TFLM does). If false, the C code reads the
    /// caller's input buffer directly.
    pub count_input: bool,
    /// Let an ADD write its output over an input that dies at it.
    pub in_place_add: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions { count_input: true, in_place_add: false }
    }
}

/// Where each tensor lives in the arena.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArenaPlan {
    /// Ops in execution order, the input (op 0) first.
    pub order: Vec<usize>,
    /// Arena offset of each tensor (index = op index); `None` for the input when it is read from
    /// the caller's buffer.
    pub offsets: Vec<Option<usize>>,
    /// Tensor each ADD writes over (index = op index), when done in place.
    pub in_place_of: Vec<Option<usize>>,
    /// Bytes of the arena.
    pub arena_bytes: usize,
    /// Peak bytes live at one step: the lower bound for any placement.
    pub peak_bytes: usize,
    /// Bytes in use while each op of `order` runs.
    pub steps: Vec<usize>,
    /// `arena_bytes == peak_bytes`.
    pub optimal: bool,
    /// Which heuristic produced the placement.
    pub method: String,
}

/// One buffer to place: a tensor (or an ADD output merged with the input it overwrites).
#[derive(Debug, Clone)]
struct Block {
    size: usize,
    start: usize,
    end: usize,
    tensors: Vec<usize>,
}

fn overlaps(a: &Block, b: &Block) -> bool {
    a.start <= b.end && b.start <= a.end
}

/// Plans the arena for `order` (op indices; the input op 0 may be included or left out).
pub fn plan_arena(model: &QuantizedModel, order: &[usize], opts: PlanOptions) -> Result<ArenaPlan> {
    let mut full = vec![0usize];
    full.extend(check_order(model, order)?);
    let n = model.ops.len();
    let mut pos = vec![0usize; n];
    for (s, &v) in full.iter().enumerate() {
        pos[v] = s;
    }
    let size: Vec<usize> = model.tensors.iter().map(|t| t.elements()).collect();
    // Step bytes and in-place adds come from mcufit-cost's memory model (one source of truth):
    // the arena planned here holds exactly what the cost model predicted.
    let problem = MemoryProblem::new(
        model.ops.iter().map(|op| op.inputs.clone()).collect(),
        size.iter().map(|&b| b as f64).collect(),
        model.ops.iter().map(|op| matches!(op.kind, QOpKind::Add { .. })).collect(),
        MemoryOptions { count_input: opts.count_input, in_place_add: opts.in_place_add },
    );
    let memory = problem.evaluate(&full).map_err(ExportError::Plan)?;
    let mut in_place_of = vec![None; n];
    for (&v, &u) in full.iter().zip(&memory.in_place_of) {
        in_place_of[v] = u;
    }
    let steps: Vec<usize> = memory.steps.iter().map(|&b| b as usize).collect();
    let peak = memory.peak as usize;
    let mut consumers = vec![Vec::new(); n];
    for (i, op) in model.ops.iter().enumerate() {
        for &j in &op.inputs {
            consumers[j].push(i);
        }
    }
    let last_use = |u: usize| consumers[u].iter().map(|&c| pos[c]).max().unwrap_or(pos[u]);
    let counts = |u: usize| u != 0 || opts.count_input;

    // Blocks: one per counted tensor, an in-place ADD merged into the block it overwrites.
    let mut block_of = vec![usize::MAX; n];
    let mut blocks: Vec<Block> = Vec::new();
    for &v in &full {
        if !counts(v) {
            continue;
        }
        if let Some(u) = in_place_of[v] {
            let b = block_of[u];
            blocks[b].end = blocks[b].end.max(last_use(v));
            blocks[b].tensors.push(v);
            block_of[v] = b;
        } else {
            block_of[v] = blocks.len();
            blocks.push(Block { size: size[v], start: pos[v], end: last_use(v), tensors: vec![v] });
        }
    }

    let (offsets_b, arena, method) = place(&blocks, peak);
    let mut offsets = vec![None; n];
    for (b, blk) in blocks.iter().enumerate() {
        for &t in &blk.tensors {
            offsets[t] = Some(offsets_b[b]);
        }
    }
    let plan = ArenaPlan {
        order: full,
        offsets,
        in_place_of,
        arena_bytes: arena,
        peak_bytes: peak,
        steps,
        optimal: arena == peak,
        method,
    };
    verify_plan(model, &plan, opts)?;
    Ok(plan)
}

/// Lowest offset at which `blk` fits among `placed` (offset, block) without overlapping a block
/// live at the same time.
fn lowest_fit(blk: &Block, placed: &[(usize, &Block)]) -> usize {
    let mut busy: Vec<(usize, usize)> =
        placed.iter().filter(|(_, b)| overlaps(blk, b)).map(|(o, b)| (*o, *o + b.size)).collect();
    busy.sort_unstable();
    let mut off = 0;
    for (s, e) in busy {
        if s >= off + blk.size {
            break;
        }
        off = off.max(e);
    }
    off
}

fn greedy(blocks: &[Block], order: &[usize]) -> (Vec<usize>, usize) {
    let mut offs = vec![0usize; blocks.len()];
    let mut placed: Vec<(usize, &Block)> = Vec::new();
    let mut top = 0;
    for &b in order {
        let o = lowest_fit(&blocks[b], &placed);
        offs[b] = o;
        top = top.max(o + blocks[b].size);
        placed.push((o, &blocks[b]));
    }
    (offs, top)
}

/// Tries several greedy placements, then a bounded search for one that meets the peak.
fn place(blocks: &[Block], peak: usize) -> (Vec<usize>, usize, String) {
    if blocks.is_empty() {
        return (vec![], 0, "empty".into());
    }
    let idx: Vec<usize> = (0..blocks.len()).collect();
    let mut orders: Vec<(&str, Vec<usize>)> = Vec::new();
    let mut by_size = idx.clone();
    by_size.sort_by_key(|&b| (std::cmp::Reverse(blocks[b].size), blocks[b].start));
    orders.push(("greedy by size", by_size));
    let mut by_start = idx.clone();
    by_start.sort_by_key(|&b| (blocks[b].start, std::cmp::Reverse(blocks[b].size)));
    orders.push(("greedy by start", by_start));
    let mut by_len = idx.clone();
    by_len.sort_by_key(|&b| (std::cmp::Reverse(blocks[b].end - blocks[b].start), std::cmp::Reverse(blocks[b].size)));
    orders.push(("greedy by lifetime", by_len));
    let mut best: Option<(Vec<usize>, usize, String)> = None;
    for (name, o) in &orders {
        let (offs, top) = greedy(blocks, o);
        if best.as_ref().is_none_or(|b| top < b.1) {
            best = Some((offs, top, (*name).to_string()));
        }
    }
    let (offs, top, name) = best.unwrap_or_default();
    if top == peak {
        return (offs, top, name);
    }
    if let Some(offs) = search(blocks, peak) {
        return (offs, peak, "search".into());
    }
    (offs, top, name)
}

/// Depth-first search for a placement inside `[0, peak)`: blocks in order of start, each tried
/// at the bottom-most free gap positions and at the top; bounded so it always ends quickly.
fn search(blocks: &[Block], peak: usize) -> Option<Vec<usize>> {
    let mut order: Vec<usize> = (0..blocks.len()).collect();
    order.sort_by_key(|&b| (blocks[b].start, std::cmp::Reverse(blocks[b].size)));
    let mut offs = vec![usize::MAX; blocks.len()];
    let mut budget = 200_000usize;
    fn rec(
        k: usize,
        order: &[usize],
        blocks: &[Block],
        peak: usize,
        offs: &mut Vec<usize>,
        budget: &mut usize,
    ) -> bool {
        if k == order.len() {
            return true;
        }
        if *budget == 0 {
            return false;
        }
        *budget -= 1;
        let b = order[k];
        let blk = &blocks[b];
        let mut busy: Vec<(usize, usize)> = order[..k]
            .iter()
            .filter(|&&p| overlaps(blk, &blocks[p]))
            .map(|&p| (offs[p], offs[p] + blocks[p].size))
            .collect();
        busy.sort_unstable();
        // Candidate offsets: 0, the end of every busy block, and flush against the top or the
        // start of every busy block.
        let mut cands: Vec<usize> = vec![0];
        cands.extend(busy.iter().map(|&(_, e)| e));
        cands.extend(busy.iter().filter_map(|&(s, _)| s.checked_sub(blk.size)));
        cands.extend(peak.checked_sub(blk.size));
        cands.sort_unstable();
        cands.dedup();
        for o in cands {
            if o + blk.size > peak || busy.iter().any(|&(s, e)| o < e && s < o + blk.size) {
                continue;
            }
            offs[b] = o;
            if rec(k + 1, order, blocks, peak, offs, budget) {
                return true;
            }
        }
        false
    }
    rec(0, &order, blocks, peak, &mut offs, &mut budget).then_some(offs)
}

/// Independent check of a plan: no two tensors live at the same step overlap (an in-place ADD
/// and the input it overwrites excepted), and everything lies inside the arena.
pub fn verify_plan(model: &QuantizedModel, plan: &ArenaPlan, opts: PlanOptions) -> Result<()> {
    let n = model.ops.len();
    let mut pos = vec![0usize; n];
    for (s, &v) in plan.order.iter().enumerate() {
        pos[v] = s;
    }
    let mut last = pos.clone();
    for (i, op) in model.ops.iter().enumerate() {
        for &j in &op.inputs {
            last[j] = last[j].max(pos[i]);
        }
    }
    let size = |u: usize| model.tensors[u].elements();
    for u in 0..n {
        if u == 0 && !opts.count_input {
            continue;
        }
        let Some(ou) = plan.offsets[u] else {
            return Err(ExportError::Plan(format!("tensor {u} has no offset")));
        };
        if ou + size(u) > plan.arena_bytes {
            return Err(ExportError::Plan(format!("tensor {u} ends past the arena")));
        }
        for v in u + 1..n {
            let Some(ov) = plan.offsets[v] else { continue };
            let live_together = pos[u] <= last[v] && pos[v] <= last[u];
            let shared = plan.in_place_of[v] == Some(u) || plan.in_place_of[u] == Some(v);
            let chained = plan.in_place_of[v].is_some() && plan.in_place_of[v] == plan.in_place_of[u];
            if live_together && !shared && !chained && ou < ov + size(v) && ov < ou + size(u) {
                // Blocks merged through in-place chains share storage by design; anything else
                // overlapping is a planner bug.
                let same_chain = chain_root(plan, u) == chain_root(plan, v);
                if !same_chain {
                    return Err(ExportError::Plan(format!(
                        "tensors '{}' and '{}' are live together but overlap",
                        model.tensors[u].name, model.tensors[v].name
                    )));
                }
            }
        }
    }
    Ok(())
}

fn chain_root(plan: &ArenaPlan, mut t: usize) -> usize {
    while let Some(u) = plan.in_place_of[t] {
        t = u;
    }
    t
}
