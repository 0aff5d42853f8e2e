//! MLPerf Tiny keyword-spotting MFCC front end (49 frames x 10 coefficients).
//!
//! The recipe reproduces `get_dataset.py` of the MLPerf Tiny KWS reference, which uses
//! `tf.signal` ops (no `audio_microfrontend`):
//!
//! 1. waveform: 16 kHz samples as f32 (i16 / 32768), padded with zeros at the end or
//!    trimmed to 16,000 samples (1 s); the loader peak-normalizes it first (see crate docs);
//! 2. frames: 49 frames of 480 samples (30 ms), stride 320 samples (20 ms), no end padding
//!    (`tf.signal.stft` default);
//! 3. window: periodic Hann, `w[n] = 0.5 - 0.5 cos(2 pi n / 480)`;
//! 4. spectrum: 512-point real FFT (frame zero-padded to 512), **magnitude** `|X[k]|` for
//!    k = 0..=256 (`tf.abs(stft)`, not the power);
//! 5. mel: 40 triangular filters between 20 Hz and 4,000 Hz on the HTK mel scale
//!    `mel = 1127 ln(1 + f / 700)`, built exactly like `tf.signal.linear_to_mel_weight_matrix`
//!    (42 equally spaced mel edges, triangles evaluated in mel at the bin frequencies
//!    `k * 8000 / 256`, peak weight 1, no area normalization, DC bin weight 0);
//! 6. `ln(mel + 1e-6)`;
//! 7. DCT-II as `tf.signal.mfccs_from_log_mel_spectrograms`:
//!    `c[k] = sqrt(2 / 40) * sum_n x[n] cos(pi k (2n + 1) / 80)`, keep k = 0..10.
//!    This is the orthonormal DCT-II except that `c[0]` is larger by `sqrt(2)`; TF's scaling
//!    is kept so the features match the MLPerf reference bit for bit in intent.
//!
//! Output layout: row-major `[frame][coefficient]`, i.e. NHWC `[49, 10, 1]`.

use std::sync::Arc;

use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

/// Sample rate the front end expects.
pub const SAMPLE_RATE: u32 = 16_000;
/// Samples per clip (1 s).
pub const CLIP_SAMPLES: usize = 16_000;
/// Frame length in samples (30 ms).
pub const FRAME_LEN: usize = 480;
/// Frame stride in samples (20 ms).
pub const FRAME_STEP: usize = 320;
/// FFT length.
pub const FFT_LEN: usize = 512;
/// Mel filters.
pub const NUM_MEL: usize = 40;
/// Kept cepstral coefficients.
pub const NUM_MFCC: usize = 10;
/// Frames per clip: `1 + (16000 - 480) / 320`.
pub const NUM_FRAMES: usize = 1 + (CLIP_SAMPLES - FRAME_LEN) / FRAME_STEP;
/// Lower edge of the mel filter bank.
pub const MEL_LOW_HZ: f64 = 20.0;
/// Upper edge of the mel filter bank.
pub const MEL_HIGH_HZ: f64 = 4_000.0;
/// Offset inside the log.
pub const LOG_OFFSET: f32 = 1e-6;
/// Values per clip (49 * 10).
pub const FEATURES_PER_CLIP: usize = NUM_FRAMES * NUM_MFCC;

const NUM_BINS: usize = FFT_LEN / 2 + 1;

/// HTK mel scale, as `tf.signal`.
pub(crate) fn hz_to_mel(hz: f64) -> f64 {
    1127.0 * (1.0 + hz / 700.0).ln()
}

/// One triangular filter: first spectrum bin it touches and its weights from there.
#[derive(Clone, Debug)]
struct Band {
    start: usize,
    weights: Vec<f32>,
}

/// Precomputed MFCC front end. Cheap to share between threads.
#[derive(Clone)]
pub struct Mfcc {
    fft: Arc<dyn Fft<f32>>,
    window: Vec<f32>,
    bands: Vec<Band>,
    dct: Vec<f32>, // NUM_MFCC x NUM_MEL
}

impl std::fmt::Debug for Mfcc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mfcc").finish_non_exhaustive()
    }
}

impl Default for Mfcc {
    fn default() -> Self {
        Self::new()
    }
}

impl Mfcc {
    /// Builds the window, the mel filter bank and the DCT matrix.
    pub fn new() -> Self {
        let fft = FftPlanner::<f32>::new().plan_fft_forward(FFT_LEN);
        let window = (0..FRAME_LEN)
            .map(|n| (0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / FRAME_LEN as f64).cos()) as f32)
            .collect();
        let lo = hz_to_mel(MEL_LOW_HZ);
        let hi = hz_to_mel(MEL_HIGH_HZ);
        let edges: Vec<f64> = (0..NUM_MEL + 2).map(|i| lo + (hi - lo) * i as f64 / (NUM_MEL + 1) as f64).collect();
        let nyquist = SAMPLE_RATE as f64 / 2.0;
        let bands = (0..NUM_MEL)
            .map(|m| {
                let (l, c, r) = (edges[m], edges[m + 1], edges[m + 2]);
                // Bin 0 (DC) is excluded, as in TF.
                let w: Vec<f32> = (0..NUM_BINS)
                    .map(|k| {
                        if k == 0 {
                            return 0.0;
                        }
                        let mel = hz_to_mel(nyquist * k as f64 / (NUM_BINS - 1) as f64);
                        let up = (mel - l) / (c - l);
                        let down = (r - mel) / (r - c);
                        up.min(down).max(0.0) as f32
                    })
                    .collect();
                let start = w.iter().position(|&v| v > 0.0).unwrap_or(0);
                let end = w.iter().rposition(|&v| v > 0.0).map_or(start, |e| e + 1);
                Band { start, weights: w[start..end].to_vec() }
            })
            .collect();
        let scale = (2.0 / NUM_MEL as f64).sqrt();
        let dct = (0..NUM_MFCC)
            .flat_map(|k| {
                (0..NUM_MEL).map(move |n| {
                    (scale * (std::f64::consts::PI * k as f64 * (2 * n + 1) as f64 / (2 * NUM_MEL) as f64).cos()) as f32
                })
            })
            .collect();
        Mfcc { fft, window, bands, dct }
    }

    /// Mel filter-bank energies (before the log) of every frame: `NUM_FRAMES x NUM_MEL`.
    /// `wave` is padded with zeros or trimmed to [`CLIP_SAMPLES`].
    pub(crate) fn mel_energies(&self, wave: &[f32]) -> Vec<f32> {
        let mut clip = vec![0f32; CLIP_SAMPLES];
        let n = wave.len().min(CLIP_SAMPLES);
        clip[..n].copy_from_slice(&wave[..n]);
        let mut buf = vec![Complex::new(0f32, 0f32); FFT_LEN];
        let mut scratch = vec![Complex::new(0f32, 0f32); self.fft.get_inplace_scratch_len()];
        let mut mag = vec![0f32; NUM_BINS];
        let mut out = Vec::with_capacity(NUM_FRAMES * NUM_MEL);
        for t in 0..NUM_FRAMES {
            let frame = &clip[t * FRAME_STEP..t * FRAME_STEP + FRAME_LEN];
            for (i, b) in buf.iter_mut().enumerate() {
                *b = if i < FRAME_LEN { Complex::new(frame[i] * self.window[i], 0.0) } else { Complex::new(0.0, 0.0) };
            }
            self.fft.process_with_scratch(&mut buf, &mut scratch);
            for (m, b) in mag.iter_mut().zip(&buf) {
                *m = b.norm();
            }
            for band in &self.bands {
                let s: f32 = band.weights.iter().zip(&mag[band.start..]).map(|(w, x)| w * x).sum();
                out.push(s);
            }
        }
        out
    }

    /// MFCC features of one clip, `NUM_FRAMES x NUM_MFCC` row-major. `wave` holds samples in
    /// [-1, 1] at 16 kHz and is padded with zeros or trimmed to 1 s.
    pub fn compute(&self, wave: &[f32]) -> Vec<f32> {
        let mel = self.mel_energies(wave);
        let mut out = Vec::with_capacity(FEATURES_PER_CLIP);
        let mut logmel = [0f32; NUM_MEL];
        for frame in mel.chunks_exact(NUM_MEL) {
            for (l, &e) in logmel.iter_mut().zip(frame) {
                *l = (e + LOG_OFFSET).ln();
            }
            for k in 0..NUM_MFCC {
                let row = &self.dct[k * NUM_MEL..(k + 1) * NUM_MEL];
                out.push(row.iter().zip(&logmel).map(|(a, b)| a * b).sum());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    fn tone(freq: f64, amp: f64) -> Vec<f32> {
        (0..CLIP_SAMPLES).map(|n| (amp * (2.0 * PI * freq * n as f64 / 16_000.0).sin()) as f32).collect()
    }

    /// Independent reference: naive O(N^2) DFT and explicit loops in f64, written from the
    /// recipe rather than sharing code with the crate.
    fn reference(wave: &[f32]) -> (Vec<f64>, Vec<f64>) {
        let mut mel_out = Vec::new();
        let mut mfcc_out = Vec::new();
        let mel = |hz: f64| 1127.0 * (1.0 + hz / 700.0).ln();
        for t in 0..49 {
            let mut spec = [0f64; 257];
            for (k, s) in spec.iter_mut().enumerate() {
                let (mut re, mut im) = (0.0, 0.0);
                for n in 0..480 {
                    let w = 0.5 - 0.5 * (2.0 * PI * n as f64 / 480.0).cos();
                    let x = wave[t * 320 + n] as f64 * w;
                    let ang = -2.0 * PI * (k * n) as f64 / 512.0;
                    re += x * ang.cos();
                    im += x * ang.sin();
                }
                *s = (re * re + im * im).sqrt();
            }
            let (lo, hi) = (mel(20.0), mel(4000.0));
            let mut logmel = [0f64; 40];
            for (m, lm) in logmel.iter_mut().enumerate() {
                let left = lo + (hi - lo) * m as f64 / 41.0;
                let center = lo + (hi - lo) * (m + 1) as f64 / 41.0;
                let right = lo + (hi - lo) * (m + 2) as f64 / 41.0;
                let mut e = 0.0;
                for (k, s) in spec.iter().enumerate().skip(1) {
                    let f = mel(k as f64 * 8000.0 / 256.0);
                    let w = if f > left && f <= center {
                        (f - left) / (center - left)
                    } else if f > center && f < right {
                        (right - f) / (right - center)
                    } else {
                        0.0
                    };
                    e += w * s;
                }
                mel_out.push(e);
                *lm = (e + 1e-6).ln();
            }
            for k in 0..10 {
                let mut c = 0.0;
                for (n, lm) in logmel.iter().enumerate() {
                    c += lm * (PI * k as f64 * (2.0 * n as f64 + 1.0) / 80.0).cos();
                }
                mfcc_out.push(c * (2.0f64 / 40.0).sqrt());
            }
        }
        (mel_out, mfcc_out)
    }

    fn assert_close(got: &[f32], want: &[f64], rel: f64, what: &str) {
        assert_eq!(got.len(), want.len(), "{what} length");
        let scale = want.iter().fold(0f64, |a, b| a.max(b.abs()));
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            let tol = rel * w.abs().max(scale * 1e-2);
            assert!((g as f64 - w).abs() <= tol, "{what}[{i}]: got {g}, reference {w} (tol {tol})");
        }
    }

    #[test]
    fn matches_naive_reference_on_tone_and_noise() {
        let m = Mfcc::new();
        // A chord plus a deterministic pseudo-random hiss so every band has energy.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let wave: Vec<f32> = tone(1000.0, 0.5)
            .iter()
            .zip(tone(2730.0, 0.2))
            .map(|(a, b)| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                a + b + ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.01
            })
            .collect();
        let (ref_mel, ref_mfcc) = reference(&wave);
        assert_close(&m.mel_energies(&wave), &ref_mel, 1e-3, "mel");
        assert_close(&m.compute(&wave), &ref_mfcc, 1e-3, "mfcc");
    }

    #[test]
    fn tone_peaks_in_the_band_holding_its_frequency() {
        let m = Mfcc::new();
        let mel = m.mel_energies(&tone(1000.0, 0.8));
        let (lo, hi) = (hz_to_mel(20.0), hz_to_mel(4000.0));
        let target = hz_to_mel(1000.0);
        // Band whose centre is nearest 1 kHz; its triangle must span 1 kHz.
        let want = (0..NUM_MEL)
            .min_by(|&a, &b| {
                let ca = lo + (hi - lo) * (a + 1) as f64 / 41.0;
                let cb = lo + (hi - lo) * (b + 1) as f64 / 41.0;
                (ca - target).abs().total_cmp(&(cb - target).abs())
            })
            .unwrap();
        let left = lo + (hi - lo) * want as f64 / 41.0;
        let right = lo + (hi - lo) * (want + 2) as f64 / 41.0;
        assert!(left < target && target < right);
        for frame in mel.chunks_exact(NUM_MEL) {
            let arg = (0..NUM_MEL).max_by(|&a, &b| frame[a].total_cmp(&frame[b])).unwrap();
            assert_eq!(arg, want, "frame energies {frame:?}");
        }
    }

    #[test]
    fn shape_and_silence() {
        let m = Mfcc::new();
        assert_eq!(NUM_FRAMES, 49);
        let f = m.compute(&[0.0; 100]);
        assert_eq!(f.len(), 490);
        // Silence: every log-mel is ln(1e-6); only c0 is non-zero.
        let c0 = (2.0f64 / 40.0).sqrt() * 40.0 * (1e-6f64).ln();
        assert!((f[0] as f64 - c0).abs() < 1e-3, "{}", f[0]);
        assert!(f[1].abs() < 1e-3);
    }
}
