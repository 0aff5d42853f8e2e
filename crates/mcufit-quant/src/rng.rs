//! A tiny deterministic PRNG (SplitMix64) for random weights and test inputs: reproducible across
//! platforms and crate versions, which matters for golden comparisons.

use mcufit_ir::{BnWeights, Graph, NodeWeights, Op, TensorF32, Weights};

use crate::error::Result;

#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[0, 1)`.
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.next_f32()
    }
    /// Uniform integer in `[0, n)`; `n` must be positive.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    pub fn i8(&mut self) -> i8 {
        self.next_u64() as i8
    }
}

/// He-uniform random kernels, small random biases and plausible batch-norm statistics (eps the
/// graph's) for every weighted node of `graph`: lets the whole quantize/export pipeline be tested
/// before any training. Deterministic for a seed.
pub fn random_weights(graph: &Graph, seed: u64) -> Result<Weights> {
    let shapes = graph.shapes()?;
    let mut rng = SplitMix64::new(seed);
    let mut w = Weights::default();
    for (id, node) in graph.nodes.iter().enumerate() {
        let in_shape = node.inputs.first().map_or(shapes[id], |&i| shapes[i]);
        let out_c = shapes[id].c;
        if let Some(shape) = node.op.kernel_shape(in_shape) {
            let n: usize = shape.iter().product();
            let fan_in = (n / out_c.max(1)).max(1) as f32;
            let limit = (6.0 / fan_in).sqrt();
            let data = (0..n).map(|_| rng.uniform(-limit, limit)).collect();
            let bias = node.op.has_bias().then(|| (0..out_c).map(|_| rng.uniform(-0.1, 0.1)).collect());
            let kernel = Some(TensorF32 { shape, data });
            w.nodes.insert(node.name.clone(), NodeWeights { kernel, bias, bn: None });
        } else if let Op::BatchNorm(b) = &node.op {
            let mut v = |lo, hi| (0..out_c).map(|_| rng.uniform(lo, hi)).collect::<Vec<f32>>();
            let gamma = v(0.5, 1.5);
            let beta = v(-0.3, 0.3);
            let mean = v(-0.3, 0.3);
            let var = v(0.5, 2.0);
            let bn = Some(BnWeights { gamma, beta, mean, var, eps: b.eps });
            w.nodes.insert(node.name.clone(), NodeWeights { kernel: None, bias: None, bn });
        }
    }
    Ok(w)
}
