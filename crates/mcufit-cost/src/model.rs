//! The cost formulas, evaluated on the fused graph for given channel-group sizes.

use mcufit_ir::{ChannelGroups, FusedGraph, Graph, Op, Shape};
use serde::Serialize;

use crate::boards::{Board, OpWork};
use crate::memory::{MemoryOptions, MemoryPlan, MemoryProblem, SearchLimits};
use crate::Result;

/// Output positions along one axis whose kernel window lies wholly inside the input.
fn interior_positions(out: usize, input: usize, kernel: usize, stride: usize, padding: mcufit_ir::Padding) -> f64 {
    let (before, _) = padding.pads(input, kernel, stride);
    (0..out).filter(|&o| o * stride >= before && o * stride - before + kernel <= input).count() as f64
}

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, serde::Deserialize)]
pub struct CostOptions {
    pub memory: MemoryOptions,
    /// Count 8 B of per-channel requantisation data (int32 multiplier + shift) per output channel.
    pub quant_params: bool,
}

/// Cost of one fused op (one kernel call on the device).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpCost {
    /// Index in the fused graph.
    pub op: usize,
    /// Name of the IR node that does the work.
    pub name: String,
    pub kind: &'static str,
    /// Output shape at these channel counts (channels rounded to the nearest integer).
    pub shape: Shape,
    pub params: f64,
    pub model_bytes: f64,
    pub macs: f64,
    /// What the op asks of its kernel (MACs, element operations, pixels, channels, taps), for latency.
    pub work: OpWork,
    pub output_bytes: f64,
}

/// The resources a budget can bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    PeakMemory,
    ModelBytes,
    Macs,
    Latency,
}

impl Resource {
    pub const ALL: [Resource; 4] = [Resource::PeakMemory, Resource::ModelBytes, Resource::Macs, Resource::Latency];
    pub fn name(self) -> &'static str {
        match self {
            Resource::PeakMemory => "peak memory",
            Resource::ModelBytes => "model size",
            Resource::Macs => "MACs",
            Resource::Latency => "latency",
        }
    }
    pub fn unit(self) -> &'static str {
        match self {
            Resource::PeakMemory | Resource::ModelBytes => "B",
            Resource::Macs => "MACs",
            Resource::Latency => "ms",
        }
    }
}

/// Upper bounds on resources; `None` means unbounded.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, serde::Deserialize)]
pub struct Budget {
    pub peak_memory: Option<f64>,
    pub model_bytes: Option<f64>,
    pub macs: Option<f64>,
    pub latency_ms: Option<f64>,
}

impl Budget {
    /// The budget a board imposes: its SRAM and flash.
    pub fn from_board(board: &Board) -> Self {
        Budget {
            peak_memory: Some(board.sram_bytes as f64),
            model_bytes: Some(board.flash_bytes as f64),
            macs: None,
            latency_ms: None,
        }
    }
    pub fn limit(&self, r: Resource) -> Option<f64> {
        match r {
            Resource::PeakMemory => self.peak_memory,
            Resource::ModelBytes => self.model_bytes,
            Resource::Macs => self.macs,
            Resource::Latency => self.latency_ms,
        }
    }
    pub fn set(&mut self, r: Resource, v: Option<f64>) {
        match r {
            Resource::PeakMemory => self.peak_memory = v,
            Resource::ModelBytes => self.model_bytes = v,
            Resource::Macs => self.macs = v,
            Resource::Latency => self.latency_ms = v,
        }
    }
}

/// Totals for an architecture.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Usage {
    pub params: f64,
    pub model_bytes: f64,
    pub macs: f64,
    pub peak_memory: f64,
    /// `None` without a board.
    pub latency_cycles: Option<f64>,
    pub latency_ms: Option<f64>,
    pub plan: MemoryPlan,
    pub ops: Vec<OpCost>,
}

impl Usage {
    pub fn get(&self, r: Resource) -> Option<f64> {
        match r {
            Resource::PeakMemory => Some(self.peak_memory),
            Resource::ModelBytes => Some(self.model_bytes),
            Resource::Macs => Some(self.macs),
            Resource::Latency => self.latency_ms,
        }
    }
}

/// A graph prepared for costing at any channel-group sizes.
#[derive(Debug, Clone)]
pub struct CostModel {
    pub graph: Graph,
    pub fused: FusedGraph,
    pub groups: ChannelGroups,
    shapes: Vec<Shape>,
    pub options: CostOptions,
}

impl CostModel {
    pub fn new(graph: &Graph, options: CostOptions) -> Result<Self> {
        Ok(CostModel {
            shapes: graph.shapes()?,
            fused: graph.fused(),
            groups: graph.channel_groups()?,
            graph: graph.clone(),
            options,
        })
    }

    /// The graph's own channel counts.
    pub fn sizes(&self) -> Vec<f64> {
        self.groups.groups.iter().map(|g| g.size as f64).collect()
    }

    /// Channels of an IR node's output at these group sizes.
    fn channels(&self, node: usize, sizes: &[f64]) -> f64 {
        self.groups.channels(node, sizes)
    }

    /// Per-op costs at these group sizes.
    pub fn op_costs(&self, sizes: &[f64]) -> Vec<OpCost> {
        self.fused
            .ops
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let node = &self.graph.nodes[f.anchor];
                let out_c = self.channels(f.anchor, sizes);
                let out_shape = self.shapes[f.anchor];
                let pixels = out_shape.spatial() as f64;
                let in_c = node.inputs.first().map(|&x| self.channels(x, sizes)).unwrap_or(0.0);
                let in_elems = node.inputs.first().map(|&x| self.shapes[x].spatial() as f64 * in_c).unwrap_or(0.0);
                let out_elems = pixels * out_c;
                // (weights, output channels with a bias, macs, elementwise ops)
                // The formulas live on the IR op (`Op::weight_count`, `Op::macs_at`), shared with
                // the quantized model and the exporters.
                let (weights, biased, macs, elementwise) = match &node.op {
                    Op::Conv2d(_) | Op::DepthwiseConv2d(_) | Op::Dense(_) => {
                        (node.op.weight_count(in_c, out_c), out_c, node.op.macs_at(pixels, in_c, out_c), 0.0)
                    }
                    Op::MaxPool2d(p) | Op::AvgPool2d(p) => (0.0, 0.0, 0.0, out_elems * (p.pool[0] * p.pool[1]) as f64),
                    Op::GlobalAvgPool => (0.0, 0.0, 0.0, in_elems),
                    Op::Add => (0.0, 0.0, 0.0, out_elems * (node.inputs.len() - 1) as f64),
                    Op::Input { .. } => (0.0, 0.0, 0.0, 0.0),
                    // Unfused batch norm / activation / reshape / concat / softmax: one pass over the data.
                    _ => (0.0, 0.0, 0.0, out_elems),
                };
                let has_bias = match &node.op {
                    Op::Conv2d(c) => c.bias || f.batch_norm.is_some(),
                    Op::DepthwiseConv2d(d) => d.bias || f.batch_norm.is_some(),
                    Op::Dense(d) => d.bias || f.batch_norm.is_some(),
                    _ => false,
                };
                let biases = if has_bias { biased } else { 0.0 };
                let qparams = if self.options.quant_params { 8.0 * biased } else { 0.0 };
                let out = self.shapes[f.output];
                let out_channels = self.channels(f.output, sizes);
                let (kernel, stride, padding) = match &node.op {
                    Op::Conv2d(c) => (c.kernel, c.stride, c.padding),
                    Op::DepthwiseConv2d(d) => (d.kernel, d.stride, d.padding),
                    Op::MaxPool2d(p) | Op::AvgPool2d(p) => (p.pool, p.stride.unwrap_or(p.pool), p.padding),
                    _ => ([1, 1], [1, 1], mcufit_ir::Padding::Valid),
                };
                let in_shape = node.inputs.first().map(|&x| self.shapes[x]);
                let interior = in_shape.map_or(pixels, |is| {
                    interior_positions(out_shape.h, is.h, kernel[0], stride[0], padding)
                        * interior_positions(out_shape.w, is.w, kernel[1], stride[1], padding)
                });
                let work = OpWork {
                    macs,
                    elementwise,
                    outputs: out_elems,
                    pixels,
                    interior_pixels: interior,
                    in_channels: in_c,
                    out_channels: out_c,
                    taps: (kernel[0] * kernel[1]) as f64,
                };
                OpCost {
                    op: i,
                    name: node.name.clone(),
                    kind: node.op.kind(),
                    shape: Shape::new(out.h, out.w, out_channels.round() as usize),
                    params: weights + biases,
                    model_bytes: weights + 4.0 * biases + qparams,
                    macs,
                    work,
                    output_bytes: out.spatial() as f64 * out_channels,
                }
            })
            .collect()
    }

    /// The scheduling problem at these sizes (the fused graph's tensors and their bytes), e.g. for
    /// [`MemoryProblem::lower_bound`] or a search under other limits.
    pub fn memory_problem(&self, sizes: &[f64]) -> MemoryProblem {
        self.problem_for(&self.op_costs(sizes))
    }

    fn problem_for(&self, ops: &[OpCost]) -> MemoryProblem {
        MemoryProblem {
            inputs: self.fused.ops.iter().map(|f| f.inputs.clone()).collect(),
            consumers: self.fused.consumers(),
            bytes: ops.iter().map(|o| o.output_bytes).collect(),
            in_place: self.fused.ops.iter().map(|f| matches!(self.graph.nodes[f.anchor].op, Op::Add)).collect(),
            options: self.options.memory,
        }
    }

    /// The memory-optimal order and its peak at these sizes: the exact search, or past its state
    /// limit an upper bound with a proven lower bound ([`MemoryPlan::exact`], [`MemoryPlan::gap`]).
    pub fn memory_plan(&self, sizes: &[f64]) -> MemoryPlan {
        self.memory_problem(sizes).min_peak()
    }

    /// [`CostModel::memory_plan`] under the given search limits.
    pub fn memory_plan_within(&self, sizes: &[f64], limits: SearchLimits) -> MemoryPlan {
        self.memory_problem(sizes).min_peak_within(limits)
    }

    /// Memory at each step of a fixed order at these sizes.
    pub fn memory_for_order(&self, sizes: &[f64], order: &[usize]) -> std::result::Result<MemoryPlan, String> {
        self.memory_problem(sizes).evaluate(order)
    }

    /// All totals at these sizes (the memory-optimal order is re-solved).
    pub fn usage(&self, sizes: &[f64], board: Option<&Board>) -> Usage {
        let ops = self.op_costs(sizes);
        let plan = self.problem_for(&ops).min_peak();
        self.totals(ops, plan, board)
    }

    fn totals(&self, ops: Vec<OpCost>, plan: MemoryPlan, board: Option<&Board>) -> Usage {
        let latency_cycles = board
            .map(|b| ops.iter().filter(|o| o.kind != "input").map(|o| b.cycles.cycles(o.kind, &o.work)).sum::<f64>());
        Usage {
            params: ops.iter().map(|o| o.params).sum(),
            model_bytes: ops.iter().map(|o| o.model_bytes).sum(),
            macs: ops.iter().map(|o| o.macs).sum(),
            peak_memory: plan.peak,
            latency_ms: latency_cycles.zip(board).map(|(c, b)| c / b.clock_hz() * 1e3),
            latency_cycles,
            plan,
            ops,
        }
    }

    /// The value of one resource at these sizes, with the operator order held fixed (the peak is then
    /// a max of linear functions of the sizes). Used for gradients.
    pub fn resource_at_order(&self, r: Resource, sizes: &[f64], order: &[usize], board: Option<&Board>) -> f64 {
        let ops = self.op_costs(sizes);
        let plan = self.problem_for(&ops).evaluate(order).expect("order from a plan of this graph");
        let u = self.totals(ops, plan, board);
        u.get(r).unwrap_or(0.0)
    }

    /// d resource / d size of each group, at these sizes, through the step that attains the peak of
    /// `order` for memory. Every cost is a polynomial of degree ≤ 2 in each group size (MACs and
    /// weights are products of in and out channels; memory at a fixed step is linear), so a central
    /// difference with step 0.5 is the exact derivative, not an approximation. Fixed groups get 0.
    pub fn gradient(&self, r: Resource, sizes: &[f64], order: &[usize], board: Option<&Board>) -> Vec<f64> {
        let plan_peak_step =
            (r == Resource::PeakMemory).then(|| self.memory_for_order(sizes, order).expect("valid order").peak_step);
        let value = |s: &[f64]| -> f64 {
            match plan_peak_step {
                // Differentiate the step that attains the peak, not the max (whose argmax could jump).
                Some(k) => self.memory_for_order(s, order).expect("valid order").steps[k],
                None => self.resource_at_order(r, s, order, board),
            }
        };
        let h = 0.5;
        self.groups
            .groups
            .iter()
            .map(|g| {
                if !g.prunable() {
                    return 0.0;
                }
                let mut up = sizes.to_vec();
                let mut down = sizes.to_vec();
                up[g.id] += h;
                down[g.id] -= h;
                (value(&up) - value(&down)) / (2.0 * h)
            })
            .collect()
    }
}
