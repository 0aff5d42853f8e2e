//! Channel groups: the sets of channel dimensions that must be pruned together.
//!
//! A conv or dense layer creates the channels of its output. Channel-wise ops (batch norm,
//! activations, pooling, depthwise conv) pass them through, so pruning channel k of a conv also
//! removes channel k of the depthwise conv after it. A residual `add` ties its inputs: channel k of
//! both operands must survive or go together, so their producers join one group. A `concat` lays
//! its inputs' groups side by side (segments at offsets). `flatten` repeats the channel pattern once
//! per spatial position (NHWC order), which tells a following dense layer which input columns a
//! pruned channel owns. The network input and the classifier outputs are never prunable.

use crate::error::{IrError, Result};
use crate::graph::{Graph, NodeId};
use crate::op::Op;

pub type GroupId = usize;

/// One set of channels that is pruned as a unit.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelGroup {
    pub id: GroupId,
    /// Number of channels.
    pub size: usize,
    /// Layers whose output channels make up this group (convs / denses, tied by residual adds).
    pub producers: Vec<NodeId>,
    /// Why the group may not be pruned, if it may not.
    pub fixed: Option<String>,
}

impl ChannelGroup {
    pub fn prunable(&self) -> bool {
        self.fixed.is_none() && !self.producers.is_empty()
    }
}

/// How a node's output channel axis is made of groups: `segments` side by side, the whole
/// pattern repeated `repeat` times (repeat > 1 only for flattened tensors: one per pixel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub segments: Vec<GroupId>,
    pub repeat: usize,
}

/// Groups of a graph plus the layout of every node's output.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelGroups {
    pub groups: Vec<ChannelGroup>,
    pub layouts: Vec<Layout>,
}

impl ChannelGroups {
    /// Channels of a node's output given (possibly changed) group sizes.
    pub fn channels<T>(&self, node: NodeId, sizes: &[T]) -> T
    where
        T: Copy + std::iter::Sum<T> + std::ops::Mul<f64, Output = T>,
    {
        let l = &self.layouts[node];
        l.segments.iter().map(|&g| sizes[g]).sum::<T>() * l.repeat as f64
    }

    /// Current size of every group.
    pub fn sizes(&self) -> Vec<usize> {
        self.groups.iter().map(|g| g.size).collect()
    }

    /// Indices along a node's channel axis that survive when group `g` keeps `keep[g]` (sorted).
    pub fn kept_indices(&self, node: NodeId, keep: &[Vec<usize>]) -> Vec<usize> {
        let l = &self.layouts[node];
        let width: usize = l.segments.iter().map(|&g| self.groups[g].size).sum();
        let mut out = Vec::new();
        for r in 0..l.repeat {
            let mut offset = r * width;
            for &g in &l.segments {
                out.extend(keep[g].iter().map(|&k| offset + k));
                offset += self.groups[g].size;
            }
        }
        out
    }

    pub fn prunable(&self) -> impl Iterator<Item = &ChannelGroup> {
        self.groups.iter().filter(|g| g.prunable())
    }
}

#[derive(Default)]
struct UnionFind(Vec<usize>);
impl UnionFind {
    fn find(&mut self, x: usize) -> usize {
        let mut r = x;
        while self.0[r] != r {
            r = self.0[r];
        }
        let mut x = x;
        while self.0[x] != r {
            let next = self.0[x];
            self.0[x] = r;
            x = next;
        }
        r
    }
    fn union(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        if a != b {
            self.0[b] = a;
        }
    }
}

/// Groups as first created, before residual adds merge them.
#[derive(Default)]
struct Provisional {
    sizes: Vec<usize>,
    producers: Vec<Vec<NodeId>>,
    fixed: Vec<Option<String>>,
    uf: UnionFind,
}

impl Provisional {
    /// A new group holding a whole node output; returns that output's layout.
    fn fresh(&mut self, size: usize, producer: Option<NodeId>, why: Option<String>) -> Layout {
        let id = self.sizes.len();
        self.sizes.push(size);
        self.producers.push(producer.into_iter().collect());
        self.fixed.push(why);
        self.uf.0.push(id);
        Layout { segments: vec![id], repeat: 1 }
    }
}

impl Graph {
    /// Computes the channel groups and every node's channel layout.
    pub fn channel_groups(&self) -> Result<ChannelGroups> {
        let shapes = self.shapes()?;
        // Provisional groups, merged through a union-find at the end.
        let mut p = Provisional::default();
        let mut layouts: Vec<Layout> = Vec::with_capacity(self.nodes.len());
        for (id, node) in self.nodes.iter().enumerate() {
            let shape = shapes[id];
            let input_layout = node.inputs.first().map(|&i| layouts[i].clone());
            let layout = match &node.op {
                Op::Input { .. } => p.fresh(shape.c, None, Some("network input".into())),
                Op::Conv2d(c) if c.groups > 1 => {
                    let why = format!("grouped conv '{}' (groups={})", node.name, c.groups);
                    for &g in &input_layout.unwrap().segments {
                        p.fixed[g] = Some(why.clone());
                    }
                    p.fresh(shape.c, Some(id), Some(why))
                }
                Op::Conv2d(_) | Op::Dense(_) => p.fresh(shape.c, Some(id), None),
                Op::DepthwiseConv2d(_)
                | Op::BatchNorm(_)
                | Op::Relu
                | Op::Relu6
                | Op::MaxPool2d(_)
                | Op::AvgPool2d(_)
                | Op::GlobalAvgPool
                | Op::Softmax => input_layout.unwrap(),
                Op::Flatten => {
                    let l = input_layout.unwrap();
                    let x = shapes[node.inputs[0]];
                    Layout { segments: l.segments, repeat: l.repeat * x.spatial() }
                }
                Op::Reshape { shape: to } => {
                    let l = input_layout.unwrap();
                    let x = shapes[node.inputs[0]];
                    if to.is_flat() {
                        Layout { segments: l.segments, repeat: l.repeat * x.spatial() }
                    } else if to.c == x.c {
                        l
                    } else {
                        let why = format!("reshape '{}' mixes channels", node.name);
                        for &g in &l.segments {
                            p.fixed[g] = Some(why.clone());
                        }
                        p.fresh(to.c, None, Some(why))
                    }
                }
                Op::Add => {
                    let first = layouts[node.inputs[0]].clone();
                    let aligned = node.inputs.iter().all(|&i| {
                        let l = &layouts[i];
                        l.repeat == first.repeat
                            && l.segments.len() == first.segments.len()
                            && l.segments.iter().zip(&first.segments).all(|(&a, &b)| p.sizes[a] == p.sizes[b])
                    });
                    if aligned {
                        for &i in &node.inputs[1..] {
                            for (&a, &b) in layouts[i].segments.iter().zip(&first.segments) {
                                p.uf.union(b, a);
                            }
                        }
                    } else {
                        // Segment boundaries differ: channel k of one side is not one whole group of the other.
                        let why = format!("add '{}' joins misaligned channel groups", node.name);
                        for &i in &node.inputs {
                            for &g in &layouts[i].segments {
                                p.fixed[g] = Some(why.clone());
                            }
                        }
                    }
                    first
                }
                Op::Concat => {
                    if node.inputs.iter().all(|&i| layouts[i].repeat == 1) {
                        Layout {
                            segments: node.inputs.iter().flat_map(|&i| layouts[i].segments.clone()).collect(),
                            repeat: 1,
                        }
                    } else {
                        let why = format!("concat '{}' of flattened tensors", node.name);
                        for &i in &node.inputs {
                            for &g in &layouts[i].segments {
                                p.fixed[g] = Some(why.clone());
                            }
                        }
                        p.fresh(shape.c, None, Some(why))
                    }
                }
            };
            layouts.push(layout);
        }
        for &g in &layouts[self.output()].segments {
            p.fixed[g] = Some("classifier outputs".into());
        }
        // Merge provisional groups into final ids, in order of first appearance.
        let Provisional { sizes, producers, fixed, mut uf } = p;
        let n = sizes.len();
        let mut final_id = vec![usize::MAX; n];
        let mut groups: Vec<ChannelGroup> = Vec::new();
        for g in 0..n {
            let root = uf.find(g);
            if final_id[root] == usize::MAX {
                final_id[root] = groups.len();
                groups.push(ChannelGroup { id: groups.len(), size: sizes[root], producers: vec![], fixed: None });
            }
            let f = final_id[root];
            final_id[g] = f;
            groups[f].producers.extend(producers[g].iter().copied());
            if groups[f].fixed.is_none() {
                groups[f].fixed = fixed[g].clone();
            }
        }
        for g in &mut groups {
            g.producers.sort_unstable();
        }
        let layouts = layouts
            .into_iter()
            .map(|l| Layout { segments: l.segments.into_iter().map(|g| final_id[g]).collect(), repeat: l.repeat })
            .collect();
        Ok(ChannelGroups { groups, layouts })
    }

    /// The same architecture with group `g` resized to `sizes[g]` channels (its producers' filters
    /// or units change). Fixed groups must keep their size.
    pub fn with_group_sizes(&self, groups: &ChannelGroups, sizes: &[usize]) -> Result<Graph> {
        if sizes.len() != groups.groups.len() {
            return Err(IrError::Graph(format!(
                "{} group sizes given for {} groups",
                sizes.len(),
                groups.groups.len()
            )));
        }
        let mut g = self.clone();
        for (grp, &size) in groups.groups.iter().zip(sizes) {
            if size == grp.size {
                continue;
            }
            if !grp.prunable() {
                return Err(IrError::Graph(format!(
                    "channel group {} cannot be resized: {}",
                    grp.id,
                    grp.fixed.as_deref().unwrap_or("it has no producing layer")
                )));
            }
            if size == 0 {
                return Err(IrError::Graph(format!("channel group {} cannot be pruned to zero channels", grp.id)));
            }
            for &p in &grp.producers {
                match &mut g.nodes[p].op {
                    Op::Conv2d(c) => c.filters = size,
                    Op::Dense(d) => d.units = size,
                    _ => unreachable!("producers are convs and denses"),
                }
            }
        }
        g.validate()?;
        Ok(g)
    }
}
