//! The in-memory [`Dataset`] and its batching.

use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::error::DataError;
use crate::mfcc::{Mfcc, CLIP_SAMPLES, FEATURES_PER_CLIP, NUM_MFCC};
use crate::speech;

/// How the f32 network input relates to the stored sample, so the int8 exporter can
/// quantize the input tensor without guessing.
#[derive(Clone, Debug, PartialEq)]
pub enum InputEncoding {
    /// Image bytes `p` in 0..=255 become `x = (p - zero_point) * scale`, with
    /// `scale = 1/128` and `zero_point = 128`, so `x` lies in [-1, 127/128].
    /// The int8 input is therefore exactly `q = p - 128` with quantization scale `1/128`
    /// and zero point 0: a microcontroller feeds the raw byte minus 128, no arithmetic.
    Pixels { scale: f32, zero_point: i32 },
    /// Audio features: `x[t][k] = (mfcc[t][k] - mean[k]) / std[k]` for frame `t` and
    /// coefficient `k` (the `w` axis of the `[49, 10, 1]` sample). `mean`/`std` (10 values
    /// each) are computed once on the un-augmented training split and shared by val/test;
    /// firmware applies the same affine map before quantizing with the scale the exporter
    /// calibrates.
    Features { mean: Vec<f32>, std: Vec<f32> },
}

impl InputEncoding {
    /// The encoding of every image dataset.
    pub const PIXELS: InputEncoding = InputEncoding::Pixels { scale: 1.0 / 128.0, zero_point: 128 };
}

/// Augmentation policy of a split (only training splits get one).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Augment {
    None,
    /// Random translation by up to `max_shift` pixels per axis (edge pixels replicate),
    /// plus a random horizontal flip when `hflip`.
    Image {
        max_shift: usize,
        hflip: bool,
    },
    /// Time shift and background noise on the waveform, then MFCC again.
    Speech,
}

pub(crate) struct SpeechSamples {
    /// Un-augmented MFCCs, `FEATURES_PER_CLIP` per sample.
    pub features: Vec<f32>,
    /// Raw 1 s waveforms (`CLIP_SAMPLES` per sample), kept only where augmentation needs them.
    pub waves: Option<Vec<i16>>,
    pub noise: Arc<Vec<Vec<f32>>>,
    pub mfcc: Arc<Mfcc>,
}

pub(crate) enum Samples {
    /// `len * h * w * c` bytes, NHWC.
    Pixels(Vec<u8>),
    Speech(SpeechSamples),
}

/// An in-memory labelled dataset split producing NHWC f32 batches.
pub struct Dataset {
    pub(crate) name: String,
    pub(crate) shape: [usize; 3],
    pub(crate) class_names: Vec<String>,
    pub(crate) labels: Vec<u32>,
    pub(crate) encoding: InputEncoding,
    pub(crate) samples: Samples,
    pub(crate) sources: Option<Vec<String>>,
    pub(crate) augment: Augment,
}

impl std::fmt::Debug for Dataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataset")
            .field("name", &self.name)
            .field("len", &self.labels.len())
            .field("shape", &self.shape)
            .field("class_names", &self.class_names)
            .field("encoding", &self.encoding)
            .field("augment", &self.augment)
            .finish()
    }
}

impl Dataset {
    /// Name such as `mnist/train`.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Shape of one sample, `[h, w, c]` (NHWC without the batch axis).
    pub fn shape(&self) -> [usize; 3] {
        self.shape
    }
    /// Values per sample (`h * w * c`).
    pub fn sample_len(&self) -> usize {
        self.shape.iter().product()
    }
    /// Number of classes (length of [`Dataset::class_names`]).
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }
    /// Class names, indexed by label.
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    /// True when the split holds no sample.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    /// Label of every sample.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }
    /// Samples per class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut h = vec![0; self.num_classes()];
        for &l in &self.labels {
            h[l as usize] += 1;
        }
        h
    }
    /// How the f32 input relates to the stored sample; see [`InputEncoding`].
    pub fn input_encoding(&self) -> &InputEncoding {
        &self.encoding
    }
    /// Where sample `i` came from (`class/file` relative to the dataset folder), for
    /// folder-based datasets (`images:`, `speech-commands:`); `None` otherwise.
    pub fn source(&self, i: usize) -> Option<&str> {
        self.sources.as_ref()?.get(i).map(String::as_str)
    }
    /// Whether [`Dataset::batch_augmented`] changes anything for this split.
    pub fn augments(&self) -> bool {
        self.augment != Augment::None
    }

    fn check(&self, indices: &[usize]) -> Result<(), DataError> {
        match indices.iter().find(|&&i| i >= self.len()) {
            Some(&index) => Err(DataError::IndexOutOfRange { dataset: self.name.clone(), index, len: self.len() }),
            None => Ok(()),
        }
    }

    /// Writes the samples at `indices` to `out` as NHWC f32 (`indices.len() * sample_len()`
    /// values, encoded per [`Dataset::input_encoding`]) and their labels to `labels`.
    /// Both vectors are cleared first, so they can be reused across batches.
    pub fn batch(&self, indices: &[usize], out: &mut Vec<f32>, labels: &mut Vec<u32>) -> Result<(), DataError> {
        self.check(indices)?;
        out.clear();
        labels.clear();
        let len = self.sample_len();
        out.reserve(indices.len() * len);
        match &self.samples {
            Samples::Pixels(px) => {
                for &i in indices {
                    out.extend(px[i * len..(i + 1) * len].iter().map(|&p| pixel_to_f32(p)));
                }
            }
            Samples::Speech(s) => {
                for &i in indices {
                    let f = &s.features[i * len..(i + 1) * len];
                    self.push_features(f, out);
                }
            }
        }
        labels.extend(indices.iter().map(|&i| self.labels[i]));
        Ok(())
    }

    /// Like [`Dataset::batch`] but applies the split's training augmentation, drawing all
    /// randomness from `rng` (same rng state, same batch). Splits without augmentation
    /// (val/test, image sets loaded without `augment`) give exactly [`Dataset::batch`].
    ///
    /// * images: random shift by up to `max(1, h / 10)` pixels in each axis (edges
    ///   replicate), plus a random horizontal flip for CIFAR-10;
    /// * speech: waveform time shift uniform in ±100 ms (1,600 samples, zero fill), then
    ///   with probability 0.8 a random `_background_noise_` segment at a volume uniform in
    ///   [0, 0.1) is added and the sum clipped to [-1, 1]; MFCCs are then recomputed.
    pub fn batch_augmented<R: Rng + ?Sized>(
        &self,
        indices: &[usize],
        rng: &mut R,
        out: &mut Vec<f32>,
        labels: &mut Vec<u32>,
    ) -> Result<(), DataError> {
        match (self.augment, &self.samples) {
            (Augment::Image { max_shift, hflip }, Samples::Pixels(px)) => {
                self.check(indices)?;
                out.clear();
                labels.clear();
                let [h, w, c] = self.shape;
                let len = self.sample_len();
                let m = max_shift as i64;
                for &i in indices {
                    let dy = rng.random_range(-m..=m);
                    let dx = rng.random_range(-m..=m);
                    let flip = hflip && rng.random_bool(0.5);
                    let img = &px[i * len..(i + 1) * len];
                    for y in 0..h {
                        let sy = (y as i64 - dy).clamp(0, h as i64 - 1) as usize;
                        for x in 0..w {
                            let x0 = if flip { w - 1 - x } else { x };
                            let sx = (x0 as i64 - dx).clamp(0, w as i64 - 1) as usize;
                            let o = (sy * w + sx) * c;
                            out.extend(img[o..o + c].iter().map(|&p| pixel_to_f32(p)));
                        }
                    }
                }
                labels.extend(indices.iter().map(|&i| self.labels[i]));
                Ok(())
            }
            (Augment::Speech, Samples::Speech(s)) => {
                let Some(waves) = &s.waves else {
                    return self.batch(indices, out, labels);
                };
                self.check(indices)?;
                // Seeds are drawn in order so the parallel MFCC pass stays deterministic.
                let seeds: Vec<u64> = indices.iter().map(|_| rng.random()).collect();
                out.clear();
                out.resize(indices.len() * FEATURES_PER_CLIP, 0.0);
                out.par_chunks_mut(FEATURES_PER_CLIP).zip(indices.par_iter().zip(seeds.par_iter())).for_each(
                    |(dst, (&i, &seed))| {
                        let wave = &waves[i * CLIP_SAMPLES..(i + 1) * CLIP_SAMPLES];
                        let mut r = ChaCha8Rng::seed_from_u64(seed);
                        let aug = speech::augment(wave, &s.noise, &mut r);
                        let f = s.mfcc.compute(&aug);
                        self.write_features(&f, dst);
                    },
                );
                labels.clear();
                labels.extend(indices.iter().map(|&i| self.labels[i]));
                Ok(())
            }
            _ => self.batch(indices, out, labels),
        }
    }

    fn push_features(&self, f: &[f32], out: &mut Vec<f32>) {
        let start = out.len();
        out.resize(start + f.len(), 0.0);
        self.write_features(f, &mut out[start..]);
    }

    fn write_features(&self, f: &[f32], dst: &mut [f32]) {
        if let InputEncoding::Features { mean, std } = &self.encoding {
            for (j, (d, &v)) in dst.iter_mut().zip(f).enumerate() {
                let k = j % NUM_MFCC;
                *d = (v - mean[k]) / std[k];
            }
        } else {
            dst.copy_from_slice(f);
        }
    }
}

/// `(p - 128) / 128`; exact in f32 because the scale is a power of two.
#[inline]
fn pixel_to_f32(p: u8) -> f32 {
    (p as f32 - 128.0) * (1.0 / 128.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(augment: Augment) -> Dataset {
        // Two 3x4x1 images with distinct bytes.
        let px: Vec<u8> = (0..24).map(|v| (v * 10) as u8).collect();
        Dataset {
            name: "tiny/train".into(),
            shape: [3, 4, 1],
            class_names: vec!["a".into(), "b".into()],
            labels: vec![1, 0],
            encoding: InputEncoding::PIXELS,
            samples: Samples::Pixels(px),
            sources: None,
            augment,
        }
    }

    #[test]
    fn batch_encodes_pixels_as_contract() {
        let d = tiny(Augment::None);
        let (mut out, mut lb) = (Vec::new(), Vec::new());
        d.batch(&[1, 0], &mut out, &mut lb).unwrap();
        assert_eq!(lb, vec![0, 1]);
        assert_eq!(out.len(), 24);
        // Sample 1 starts at byte 120 -> (120 - 128) / 128.
        assert_eq!(out[0], -8.0 / 128.0);
        assert_eq!(out[12], -1.0);
        // int8 contract: x / scale + 0 == p - 128 exactly.
        for (x, p) in out[12..].iter().zip(0u8..) {
            assert_eq!(x * 128.0, (p as f32 * 10.0) - 128.0);
        }
        assert_eq!(d.class_counts(), vec![1, 1]);
    }

    #[test]
    fn out_of_range_index_is_an_error() {
        let d = tiny(Augment::None);
        let err = d.batch(&[0, 2], &mut Vec::new(), &mut Vec::new()).unwrap_err();
        assert!(matches!(err, DataError::IndexOutOfRange { index: 2, len: 2, .. }));
        let mut r = ChaCha8Rng::seed_from_u64(0);
        assert!(d.batch_augmented(&[5], &mut r, &mut Vec::new(), &mut Vec::new()).is_err());
    }

    #[test]
    fn image_augmentation_is_seeded_shift() {
        let plain = tiny(Augment::None);
        let aug = tiny(Augment::Image { max_shift: 1, hflip: false });
        let (mut a, mut b, mut l) = (Vec::new(), Vec::new(), Vec::new());
        plain.batch(&[0], &mut a, &mut l).unwrap();
        // Without a policy the augmented variant is a no-op.
        plain.batch_augmented(&[0], &mut ChaCha8Rng::seed_from_u64(1), &mut b, &mut l).unwrap();
        assert_eq!(a, b);
        let mut seen_shift = false;
        for seed in 0..20 {
            let mut x = Vec::new();
            aug.batch_augmented(&[0, 0], &mut ChaCha8Rng::seed_from_u64(seed), &mut x, &mut l).unwrap();
            let mut y = Vec::new();
            aug.batch_augmented(&[0, 0], &mut ChaCha8Rng::seed_from_u64(seed), &mut y, &mut l).unwrap();
            assert_eq!(x, y, "same seed, same batch");
            // Every output value is a pixel of the source image.
            assert!(x.iter().all(|v| a.contains(v)));
            seen_shift |= x[..12] != a[..];
        }
        assert!(seen_shift);
    }
}
