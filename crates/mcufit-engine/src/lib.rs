//! # mcufit-engine
//!
//! A purpose-built CPU forward and backward pass of an mcufit IR [`Graph`], the fast path of the
//! training engine (`mcufit-train` keeps burn for the loss, the hooks, the optimisers and CUDA).
//!
//! ## Contract
//! - Activations are **NHWC** f32, the IR's own layout: flatten and reshape move no data, a 1x1
//!   convolution is one GEMM `[N*H*W, Cin] x [Cin, Cout]`, a k x k convolution is im2col + GEMM.
//! - Parameters and gradients travel in **burn's layouts** ([`Params`]), so the caller copies
//!   tensors in and out without re-laying them: conv kernel `[out, in, kh, kw]`, depthwise kernel
//!   `[c, 1, kh, kw]`, dense weight `[in, units]`.
//! - Same math as `mcufit_train::ops`: TF SAME padding (odd pixel bottom/right), max pooling never
//!   selects a padded pixel, average pooling over valid pixels only, training-mode batch norm with
//!   the batch mean and the biased variance, a channel mask multiplied onto the output of its mask
//!   site (after the BN of a producer that feeds exactly one BN).
//! - Deterministic: the result of a step depends only on its inputs, not on the thread count
//!   (reductions over the batch use fixed chunks summed in a fixed order).
//! - Buffers are kept between steps of the same batch size: no per-step allocation.
//!
//! ## Performance notes
//! - A k x k convolution with at most 64 output channels (and, at stride 1, at most 64 input
//!   channels) on an AVX-512 CPU runs directly, without im2col (`conv.rs`, `Taps`): each image is
//!   zero-padded once (kept for the backward) and every product is a segmented one of the
//!   register-blocked narrow kernel (`matmul.rs`): the taps `(kx, ci)` of a kernel row read
//!   consecutive floats of a padded input row. The kernel gradient reduces over output rows the
//!   same way; the stride-1 input gradient is the convolution of the padded dY with the flipped
//!   kernel (stride 2: dY · Wᵀ with gemm, then col2im). gemm transposes a row-major output, so
//!   16-64 output channels became its vector dimension with packing per call: 2-3x slower there.
//! - Other convolutions run in chunks of whole images (im2col of ~256 KiB, in a per-thread
//!   scratch that stays in L2, then a single-threaded GEMM), parallel over chunks.
//! - Depthwise convolutions (`depthwise.rs`) read the unpadded image, taps clipped at its
//!   border; on AVX-512, channels go in groups of up to four 16-lane vectors held in registers
//!   across the taps, several output pixels at a time where the windows lie inside the image
//!   (about eight accumulators); the 3x3 kernel gradient pads one image at a time into a
//!   per-thread buffer and keeps its 9 tap sums in registers over one pass of dY.
//! - A convolution backward accumulates the kernel gradient of a fixed run of images into one of
//!   at most 8 partial buffers, summed in order afterwards (1x1 convolutions alike), so the long
//!   reduction over N·H·W rows is parallel and still thread-count independent.
//! - A ReLU / ReLU6 that is the only consumer of a batch norm or an add (and no mask site) is
//!   computed by it, forward and backward; for a BN x̂ is never stored: the backward recomputes
//!   it (and the ReLU's input) from the BN's input, bit for bit. An add's backward hands its dY
//!   buffer to one input instead of copying it.
//! - A training-mode BN whose input is a convolution's output (ordinary or depthwise, the BN its
//!   only consumer) gets its batch statistics from the convolution, which sums each chunk it
//!   writes (an image, or a chunk of images) while the chunk is in cache, shifted by the chunk's
//!   first row; the BN re-centres and adds the partials in chunk order (f64). Its backward
//!   computes the sums (pass 1) only and leaves the input gradient to that convolution's
//!   backward, which computes it image by image into a scratch it then reads
//!   (`norm::bn_dx_image`): the BN's dx is never written whole, nor read back. In evaluation the
//!   convolution applies the BN (running statistics) to each chunk it writes.
//! - A max pooling that is the only reader of a BN's output (or of the ReLU fused into it)
//!   computes that output on the fly in training (`pool::max_forward_bn`), so it is never
//!   stored (`Engine::output` is `None` there, as for the fused BN); when the windows tile the
//!   input (2x2 stride 2), the BN's backward expands the pooling's dY one band of rows at a time
//!   from the winners instead of reading a full-size dY the pooling wrote (`norm::Dy::Pooled`).
//!   Likewise a BN (+ ReLU) output whose only reader is a direct-form convolution is applied as
//!   that convolution pads each image (`Taps::pad_input`), one whose only reader is a 1x1
//!   stride-1 convolution (a GEMM on its input) or a depthwise convolution is applied to each
//!   chunk or image into a scratch, forward and again in the backward, and
//!   one whose only reader is a two-input add is computed by the add (`norm::add_bn_forward`);
//!   the BN's backward is unchanged (it recomputes from the BN's input).
//! - The hand-written loops are compiled for AVX-512 and AVX2 as well and picked at run time
//!   (`simd.rs`); per-channel loops run over tiles of rows so narrow channel counts still fill
//!   whole vectors.
//! - `forward` / `backward` run their node walk on one rayon worker (`rayon::scope`), so the
//!   parallel loops do not each hand work over from the caller's thread.
//!
//! ```text
//! let mut engine = Engine::new(&graph, logits_node, mask_site)?;
//! let logits = engine.forward(&params, &x_nhwc, n, Mode::Train)?;   // [n, classes]
//! let grads = engine.backward(&params, &dlogits)?;                  // same layout as params
//! ```

mod conv;
mod depthwise;
mod elem;
mod engine;
mod error;
mod matmul;
mod norm;
mod pool;
mod simd;

pub use engine::Engine;
pub use error::{EngineError, Result};

/// Whether this CPU runs the direct (im2col-free) conv kernels and the narrow GEMM, which need
/// AVX-512. Without them (AVX2 machines) every k×k conv goes through im2col + GEMM, so a batch
/// norm read only by such a conv is stored rather than applied by the conv; results agree within
/// rounding either way.
pub fn direct_convs() -> bool {
    matmul::narrow_ok(1)
}

/// Whether batch norm uses batch statistics (training) or running ones (evaluation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Train,
    Eval,
}

/// Parameters (or gradients) of one IR node, in burn's layouts; the fields its op uses are
/// `Some`. conv: `kernel` `[out, in, kh, kw]` + optional `bias`; depthwise: `kernel`
/// `[c, 1, kh, kw]` + optional `bias`; dense: `weight` `[in, units]` (input index in NHWC-flatten
/// order) + optional `bias`; batch norm: `gamma`, `beta`, and in [`Mode::Eval`] `running_mean`,
/// `running_var`. Gradients never carry running statistics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeParams {
    pub kernel: Option<Vec<f32>>,
    pub weight: Option<Vec<f32>>,
    pub bias: Option<Vec<f32>>,
    pub gamma: Option<Vec<f32>>,
    pub beta: Option<Vec<f32>>,
    pub running_mean: Option<Vec<f32>>,
    pub running_var: Option<Vec<f32>>,
}

/// All parameters of a network: one [`NodeParams`] per IR node, one optional mask per channel
/// group (`None` = identity, no gradient).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params {
    pub nodes: Vec<NodeParams>,
    pub masks: Vec<Option<Vec<f32>>>,
}
