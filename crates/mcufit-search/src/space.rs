//! The search space, as data: a [`Genotype`] is a stem, 1–N blocks and 0–2 dense layers; a
//! [`SearchSpace`] (preset `cnn`, `ds-cnn` or `resnet`) says which genotypes may be drawn and how
//! they mutate. [`Genotype::to_graph`] turns one into an ordinary IR [`Graph`] (batch norm + ReLU after
//! every convolution, as the zoo builds them) for the data's input shape and class count.
//!
//! Every genotype the space draws or mutates to builds a valid graph for any input of at least 1×1:
//! a down-sampling step that the feature map is too small for is left out, and a residual connection
//! is only made when the block keeps the shape (stride 1, same channel count); otherwise the flag is
//! carried but has no effect (the property test in `tests/space.rs` checks validity on random
//! genotypes and inputs).

use std::fmt;
use std::str::FromStr;

use mcufit_ir::{Graph, GraphBuilder, Op, Padding, Pool2d, Shape};
use rand::seq::{IndexedMutRandom, IndexedRandom};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Result, SearchError};

/// The kind of a block's convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockKind {
    /// k×k convolution → BN → ReLU.
    Conv,
    /// Depthwise-separable: k×k depthwise → BN → ReLU → 1×1 convolution → BN → ReLU.
    Separable,
}

/// How a block reduces the feature map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Down {
    /// Keeps the spatial size.
    None,
    /// The (depthwise) convolution has stride 2.
    Stride2,
    /// A 2×2 max pool after the block.
    Pool2,
}

/// One block (the stem is a `Conv` block without residual).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Block {
    pub kind: BlockKind,
    /// Kernel side, odd, 1–7.
    pub kernel: usize,
    /// Output channels, 1–128.
    pub channels: usize,
    pub down: Down,
    /// Add the block's input to its output before the last ReLU, when the shapes allow it.
    pub residual: bool,
}

/// What turns the last feature map into a vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Head {
    /// Global average pooling.
    Gap,
    /// Flatten every pixel (weights grow with the map: the cost model prices that).
    Flatten,
}

/// A candidate architecture (serialised as JSON in the trial store).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Genotype {
    pub stem: Block,
    pub blocks: Vec<Block>,
    pub head: Head,
    /// Hidden dense layers (units, 1–128) before the classifier, each followed by ReLU; 0–2 of them.
    pub dense: Vec<usize>,
}

/// The named spaces of `--space`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// Plain convolution blocks, no residuals (a VGG-like chain).
    Cnn,
    /// Depthwise-separable blocks after a standard convolution stem (MobileNet / DS-CNN-like).
    DsCnn,
    /// Standard or separable blocks, each with an optional residual connection.
    Resnet,
}

impl Preset {
    pub const ALL: [Preset; 3] = [Preset::Cnn, Preset::DsCnn, Preset::Resnet];
    pub fn name(self) -> &'static str {
        match self {
            Preset::Cnn => "cnn",
            Preset::DsCnn => "ds-cnn",
            Preset::Resnet => "resnet",
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Preset {
    type Err = SearchError;
    fn from_str(s: &str) -> Result<Self> {
        Preset::ALL
            .into_iter()
            .find(|p| p.name() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| SearchError::Config(format!("unknown search space '{s}': use one of cnn, ds-cnn, resnet")))
    }
}

/// Kernel sides a block may take.
pub const KERNELS: [usize; 4] = [1, 3, 5, 7];
/// The most channels (or dense units) a layer may have.
pub const MAX_CHANNELS: usize = 128;
/// The most hidden dense layers.
pub const MAX_DENSE: usize = 2;
/// Channel counts random genotypes start from (mutation reaches every count in 1–128).
const CHANNEL_GRID: [usize; 10] = [4, 8, 12, 16, 24, 32, 48, 64, 96, 128];

/// A search space: the preset and the block-count range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchSpace {
    pub preset: Preset,
    /// Fewest blocks after the stem (at least 1).
    pub min_blocks: usize,
    /// Most blocks after the stem.
    pub max_blocks: usize,
}

impl SearchSpace {
    /// The preset with 1–5 blocks.
    pub fn new(preset: Preset) -> Self {
        SearchSpace { preset, min_blocks: 1, max_blocks: 5 }
    }

    /// Checks the block-count range.
    pub fn validate(&self) -> Result<()> {
        if self.min_blocks == 0 || self.min_blocks > self.max_blocks || self.max_blocks > 32 {
            return Err(SearchError::Config(format!(
                "blocks {}–{}: need 1 ≤ min ≤ max ≤ 32",
                self.min_blocks, self.max_blocks
            )));
        }
        Ok(())
    }

    fn kinds(&self) -> &'static [BlockKind] {
        match self.preset {
            Preset::Cnn => &[BlockKind::Conv],
            Preset::DsCnn => &[BlockKind::Separable],
            Preset::Resnet => &[BlockKind::Conv, BlockKind::Separable],
        }
    }

    fn residuals(&self) -> bool {
        self.preset == Preset::Resnet
    }

    /// True when `g` belongs to this space (kinds, residuals, ranges).
    pub fn contains(&self, g: &Genotype) -> bool {
        let ok = |b: &Block| {
            KERNELS.contains(&b.kernel) && (1..=MAX_CHANNELS).contains(&b.channels) && (self.residuals() || !b.residual)
        };
        g.stem.kind == BlockKind::Conv
            && !g.stem.residual
            && ok(&g.stem)
            && (self.min_blocks..=self.max_blocks).contains(&g.blocks.len())
            && g.blocks.iter().all(|b| ok(b) && self.kinds().contains(&b.kind))
            && g.dense.len() <= MAX_DENSE
            && g.dense.iter().all(|u| (1..=MAX_CHANNELS).contains(u))
    }

    fn random_block<R: Rng>(&self, rng: &mut R) -> Block {
        Block {
            kind: *self.kinds().choose(rng).expect("kinds"),
            kernel: *KERNELS[1..].choose(rng).expect("kernels"),
            channels: *CHANNEL_GRID.choose(rng).expect("grid"),
            down: *[Down::None, Down::Stride2, Down::Pool2].choose(rng).expect("down"),
            residual: self.residuals() && rng.random_bool(0.5),
        }
    }

    /// A genotype drawn uniformly over the space's choices.
    pub fn random<R: Rng>(&self, rng: &mut R) -> Genotype {
        let stem = Block {
            kind: BlockKind::Conv,
            kernel: *KERNELS[1..].choose(rng).expect("kernels"),
            channels: *CHANNEL_GRID.choose(rng).expect("grid"),
            down: *[Down::None, Down::Stride2, Down::Pool2].choose(rng).expect("down"),
            residual: false,
        };
        let n = rng.random_range(self.min_blocks..=self.max_blocks);
        let blocks = (0..n).map(|_| self.random_block(rng)).collect();
        let head = if rng.random_bool(0.5) { Head::Gap } else { Head::Flatten };
        let dense = (0..rng.random_range(0..=MAX_DENSE)).map(|_| *CHANNEL_GRID.choose(rng).expect("grid")).collect();
        Genotype { stem, blocks, head, dense }
    }

    /// One random change (μNAS-style morphism): a block's kernel, width, kind, down-sampling or
    /// residual; a block added, removed or duplicated; the head; a dense layer added, removed or
    /// resized. The child always differs from `g` and stays in the space.
    pub fn mutate<R: Rng>(&self, g: &Genotype, rng: &mut R) -> Genotype {
        for _ in 0..64 {
            let mut c = g.clone();
            self.mutate_once(&mut c, rng);
            if c != *g && self.contains(&c) {
                return c;
            }
        }
        // Only reachable for a degenerate space; a fresh draw still differs with high probability.
        self.random(rng)
    }

    fn mutate_once<R: Rng>(&self, g: &mut Genotype, rng: &mut R) {
        let nb = g.blocks.len();
        match rng.random_range(0..10) {
            0 => {
                // A layer's width, scaled by 0.5–2 (or ±1..4 for narrow ones).
                let i = rng.random_range(0..=nb);
                let b = if i == nb { &mut g.stem } else { &mut g.blocks[i] };
                b.channels = new_width(b.channels, rng);
            }
            1 => {
                let i = rng.random_range(0..=nb);
                let b = if i == nb { &mut g.stem } else { &mut g.blocks[i] };
                b.kernel = *KERNELS.choose(rng).expect("kernels");
            }
            2 => {
                let i = rng.random_range(0..=nb);
                let b = if i == nb { &mut g.stem } else { &mut g.blocks[i] };
                b.down = *[Down::None, Down::Stride2, Down::Pool2].choose(rng).expect("down");
            }
            3 if nb > 0 => {
                let b = &mut g.blocks[rng.random_range(0..nb)];
                b.kind = *self.kinds().choose(rng).expect("kinds");
            }
            4 if nb > 0 && self.residuals() => {
                let b = &mut g.blocks[rng.random_range(0..nb)];
                b.residual = !b.residual;
            }
            5 if nb < self.max_blocks => {
                let at = rng.random_range(0..=nb);
                let mut b = self.random_block(rng);
                if rng.random_bool(0.5) && nb > 0 {
                    // Duplicate a neighbour without down-sampling: a deeper stage of the same width.
                    b = g.blocks[at.min(nb - 1)].clone();
                    b.down = Down::None;
                }
                g.blocks.insert(at, b);
            }
            6 if nb > self.min_blocks => {
                g.blocks.remove(rng.random_range(0..nb));
            }
            7 => g.head = if g.head == Head::Gap { Head::Flatten } else { Head::Gap },
            8 => {
                if !g.dense.is_empty() && rng.random_bool(0.5) {
                    g.dense.remove(rng.random_range(0..g.dense.len()));
                } else if g.dense.len() < MAX_DENSE {
                    g.dense.push(*CHANNEL_GRID.choose(rng).expect("grid"));
                }
            }
            _ => {
                if let Some(u) = g.dense.choose_mut(rng) {
                    *u = new_width(*u, rng);
                } else {
                    let b = &mut g.stem;
                    b.channels = new_width(b.channels, rng);
                }
            }
        }
    }
}

fn new_width<R: Rng>(c: usize, rng: &mut R) -> usize {
    let v = if c <= 8 {
        c as i64 + *[-4i64, -2, -1, 1, 2, 4].choose(rng).expect("steps")
    } else {
        (c as f64 * 2f64.powf(rng.random_range(-1.0..1.0))).round() as i64
    };
    v.clamp(1, MAX_CHANNELS as i64) as usize
}

impl Genotype {
    /// The IR graph named `name` for inputs of `input` and `classes` outputs (softmax at the end).
    /// Convolutions use "same" padding; each is followed by batch norm and ReLU.
    pub fn to_graph(&self, name: &str, input: Shape, classes: usize) -> Result<Graph> {
        if classes == 0 {
            return Err(SearchError::Config("the data has no classes".into()));
        }
        let mut b = GraphBuilder::new(name, input);
        let (mut x, mut shape) = (b.input(), input);
        for blk in std::iter::once(&self.stem).chain(&self.blocks) {
            (x, shape) = block(&mut b, x, shape, blk);
        }
        x = match self.head {
            Head::Gap => b.add(Op::GlobalAvgPool, &[x]),
            Head::Flatten => b.add(Op::Flatten, &[x]),
        };
        for &u in &self.dense {
            let d = b.dense(x, u);
            x = b.relu(d);
        }
        let d = b.dense(x, classes);
        b.add(Op::Softmax, &[d]);
        Ok(b.build()?)
    }

    /// One line for people, e.g. `conv5x5/16/s2 | sep3x3/32+res | sep3x3/64/pool | gap | 32 dense`.
    pub fn describe(&self) -> String {
        let blk = |b: &Block| {
            let kind = match b.kind {
                BlockKind::Conv => "conv",
                BlockKind::Separable => "sep",
            };
            let down = match b.down {
                Down::None => "",
                Down::Stride2 => "/s2",
                Down::Pool2 => "/pool",
            };
            format!(
                "{kind}{k}x{k}/{c}{down}{r}",
                k = b.kernel,
                c = b.channels,
                r = if b.residual { "+res" } else { "" }
            )
        };
        let mut parts: Vec<String> = std::iter::once(&self.stem).chain(&self.blocks).map(blk).collect();
        parts.push(match self.head {
            Head::Gap => "gap".into(),
            Head::Flatten => "flatten".into(),
        });
        if !self.dense.is_empty() {
            parts.push(format!("dense {}", self.dense.iter().map(|u| u.to_string()).collect::<Vec<_>>().join(",")));
        }
        parts.join(" | ")
    }
}

fn block(b: &mut GraphBuilder, x: usize, shape: Shape, blk: &Block) -> (usize, Shape) {
    let can_halve = shape.h >= 2 && shape.w >= 2;
    let stride = if blk.down == Down::Stride2 && can_halve { 2 } else { 1 };
    let out = Shape::new(shape.h.div_ceil(stride), shape.w.div_ceil(stride), blk.channels);
    let residual = blk.residual && stride == 1 && shape.c == blk.channels;
    let k = blk.kernel;
    let pre = match blk.kind {
        BlockKind::Conv => {
            let c = b.conv(x, blk.channels, k, stride, Padding::Same);
            b.bn(c)
        }
        BlockKind::Separable => {
            let d = b.dw(x, k, stride, Padding::Same);
            let d = b.bn(d);
            let d = b.relu(d);
            let c = b.conv(d, blk.channels, 1, 1, Padding::Same);
            b.bn(c)
        }
    };
    let sum = if residual { b.add(Op::Add, &[x, pre]) } else { pre };
    let mut y = b.relu(sum);
    let mut out = out;
    if blk.down == Down::Pool2 && can_halve {
        y = b.add(Op::MaxPool2d(Pool2d { pool: [2, 2], stride: None, padding: Padding::Valid }), &[y]);
        out = Shape::new(out.h / 2, out.w / 2, out.c);
    }
    (y, out)
}
