//! mcufit-data: datasets for mcufit as plain NHWC `f32` batches.
//!
//! [`load`] turns a spec string into [`Splits`] (`train`, `val`, `test`), each a
//! [`Dataset`] held in memory (image pixels as `u8`, converted to `f32` per batch).
//!
//! # Spec forms
//!
//! | spec | content | split |
//! |---|---|---|
//! | `digits` or `""` | UCI 8x8 handwritten digits, 1,797 real samples shipped by the `smartcore` crate; values 0..16 scaled to bytes `round(v*255/16)`; shape `[8,8,1]` | stratified seeded: test 15 %, val `val_fraction`, rest train |
//! | `mnist:DIR` | `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-*` (plain or `.gz`; `.idx3-ubyte` spelling too); `[28,28,1]` | val = seeded `val_fraction` of train; test = t10k files |
//! | `fashion-mnist:DIR` | same IDX layout (Debian `dataset-fashion-mnist` installs it in `/usr/share/datasets/fashion-mnist`) | as MNIST |
//! | `cifar10:DIR` | CIFAR-10 binary: `data_batch_1..5.bin`, `test_batch.bin` (in DIR or `DIR/cifar-10-batches-bin`), names from `batches.meta.txt` when present; `[32,32,3]` | val = seeded `val_fraction` of train; test = `test_batch.bin` |
//! | `images:DIR` | one sub-folder per class (name order = label order) of PNG/JPEG files | stratified seeded: test 15 %, val `val_fraction`, rest train |
//! | `speech-commands:DIR` | one sub-folder per label of 16 kHz 16-bit mono WAV clips, turned into MLPerf Tiny KWS MFCCs `[49,10,1]` (see [`mfcc`]) | speaker-disjoint 80/10/10 by hash (see [`speech_split`]) |
//!
//! `LoadOptions::target_shape` resizes image sets (bilinear, `image` crate triangle filter)
//! and converts channels (grey <-> RGB); for `images:` it is required when the files differ
//! in size. Speech only accepts `[49,10,1]`. `limit` keeps at most that many samples per
//! split (a seeded random subset). Splits are reproducible for a given `seed`.
//!
//! # Input contract (int8 export)
//!
//! Every image set yields `x = (p - 128) / 128` for the stored byte `p`
//! ([`InputEncoding::Pixels`] with `scale = 1/128`, `zero_point = 128`): the int8 network
//! input is exactly the raw byte minus 128, quantization scale `1/128`, zero point 0.
//! Speech yields per-coefficient standardized MFCCs ([`InputEncoding::Features`], mean/std
//! measured on the un-augmented training split).
//!
//! # Speech Commands details
//!
//! Labels are the 12 MLPerf Tiny classes `_silence_, _unknown_, yes, no, up, down, left,
//! right, on, off, stop, go` (only those present; other word folders count as `_unknown_`).
//! Clips are padded/trimmed to 1 s, peak-normalized (`x / max|x|`, as MLPerf Tiny), and
//! the MFCCs of every clip are computed once at load time in parallel. The training split
//! keeps its waveforms (i16) so [`Dataset::batch_augmented`] can apply the TF
//! speech_commands augmentation (±100 ms time shift; with probability 0.8 a random
//! `_background_noise_` segment at volume uniform in [0, 0.1); then MFCC again). Without a
//! `_background_noise_` folder only the time shift is applied. For speech the training
//! split always augments in `batch_augmented`; call [`Dataset::batch`] for clean features.
//! Image sets augment only when `LoadOptions::augment` is set.

mod cifar;
mod dataset;
mod digits;
mod error;
mod idx;
mod images;
pub mod mfcc;
mod speech;
mod split;

use std::path::Path;

pub use dataset::{Dataset, InputEncoding};
pub use error::{DataError, ACCEPTED_SPECS};
pub use speech::{
    speaker_id, speech_split, Side, SpeechClip, SpeechSplit, SplitReport, MLPERF_LABELS,
};

use dataset::{Augment, Samples};

/// Fraction of each class held out for test by `digits` and `images:`.
pub const TEST_FRACTION: f32 = 0.15;

/// Options of [`load`].
#[derive(Clone, Debug, PartialEq)]
pub struct LoadOptions {
    /// Seed of every random choice (splits, subsets).
    pub seed: u64,
    /// Fraction of the training data held out for validation (image sets; speech uses a
    /// fixed 80/10/10 speaker split). Must be in [0, 0.9].
    pub val_fraction: f32,
    /// Resize/convert image samples to `[h, w, c]` (c = 1 or 3).
    pub target_shape: Option<[usize; 3]>,
    /// Enable training augmentation for image sets (speech always augments in
    /// `batch_augmented`).
    pub augment: bool,
    /// Keep at most this many samples per split.
    pub limit: Option<usize>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            seed: 0,
            val_fraction: 0.1,
            target_shape: None,
            augment: false,
            limit: None,
        }
    }
}

impl LoadOptions {
    fn validate(&self) -> Result<(), DataError> {
        if !(0.0..=0.9).contains(&self.val_fraction) {
            return Err(DataError::InvalidOption(format!(
                "val_fraction {} must be in [0, 0.9]",
                self.val_fraction
            )));
        }
        if let Some(t) = self.target_shape {
            if t[0] == 0 || t[1] == 0 || !(t[2] == 1 || t[2] == 3) {
                return Err(DataError::InvalidOption(format!(
                    "target shape {t:?}: h and w must be > 0 and c 1 or 3"
                )));
            }
        }
        if self.limit == Some(0) {
            return Err(DataError::InvalidOption("limit must be at least 1".into()));
        }
        Ok(())
    }
}

/// Train, validation and test splits of one dataset.
#[derive(Debug)]
pub struct Splits {
    pub train: Dataset,
    pub val: Dataset,
    pub test: Dataset,
}

/// Loads the dataset named by `spec` (see the crate docs for the forms).
pub fn load(spec: &str, opts: &LoadOptions) -> Result<Splits, DataError> {
    opts.validate()?;
    let spec = spec.trim();
    if spec.is_empty() || spec == "digits" {
        return load_digits(opts);
    }
    let unknown = || DataError::UnknownSpec { spec: spec.into() };
    let (kind, dir) = spec.split_once(':').ok_or_else(unknown)?;
    if ![
        "mnist",
        "fashion-mnist",
        "cifar10",
        "images",
        "speech-commands",
    ]
    .contains(&kind)
        || dir.is_empty()
    {
        return Err(unknown());
    }
    let dir = Path::new(dir);
    if !dir.is_dir() {
        return Err(DataError::NotFound {
            path: dir.into(),
            what: format!("directory for `{kind}:`; accepted forms: {ACCEPTED_SPECS}"),
        });
    }
    match kind {
        "mnist" | "fashion-mnist" => load_idx(kind, dir, opts),
        "cifar10" => load_cifar(dir, opts),
        "images" => load_images(dir, opts),
        _ => speech::load(dir, opts),
    }
}

/// A labelled pool of images from which splits gather samples.
struct Pool<'a> {
    pixels: &'a [u8],
    labels: &'a [u32],
    shape: [usize; 3],
    sources: Option<&'a [String]>,
}

struct Meta<'a> {
    name: &'a str,
    class_names: Vec<String>,
    target: [usize; 3],
    augment: Augment,
}

fn gather(
    meta: &Meta,
    split: &str,
    pool: &Pool,
    idx: &[usize],
    limit: Option<usize>,
    train: bool,
) -> Dataset {
    let idx = &idx[..limit.map_or(idx.len(), |l| l.min(idx.len()))];
    let len: usize = pool.shape.iter().product();
    let mut raw = Vec::with_capacity(idx.len() * len);
    for &i in idx {
        raw.extend_from_slice(&pool.pixels[i * len..(i + 1) * len]);
    }
    Dataset {
        name: format!("{}/{split}", meta.name),
        shape: meta.target,
        class_names: meta.class_names.clone(),
        labels: idx.iter().map(|&i| pool.labels[i]).collect(),
        encoding: InputEncoding::PIXELS,
        samples: Samples::Pixels(images::adapt(&raw, pool.shape, meta.target)),
        sources: pool
            .sources
            .map(|s| idx.iter().map(|&i| s[i].clone()).collect()),
        augment: if train { meta.augment } else { Augment::None },
    }
}

fn image_augment(opts: &LoadOptions, target: [usize; 3], hflip: bool) -> Augment {
    if opts.augment {
        Augment::Image {
            max_shift: (target[0] / 10).max(1),
            hflip,
        }
    } else {
        Augment::None
    }
}

/// Official train/test files: val is a seeded slice of train.
fn holdout_splits(meta: &Meta, train: &Pool, test: &Pool, opts: &LoadOptions) -> Splits {
    let (tr, va) = split::holdout(train.labels.len(), opts.val_fraction, opts.seed);
    let te = split::shuffled(test.labels.len(), opts.seed, split::stream::ORDER_TEST);
    Splits {
        train: gather(meta, "train", train, &tr, opts.limit, true),
        val: gather(meta, "val", train, &va, opts.limit, false),
        test: gather(meta, "test", test, &te, opts.limit, false),
    }
}

/// One pool: seeded stratified train/val/test.
fn stratified_splits(meta: &Meta, pool: &Pool, opts: &LoadOptions) -> Splits {
    let [tr, va, te] = split::stratified(
        pool.labels,
        meta.class_names.len(),
        opts.val_fraction,
        TEST_FRACTION,
        opts.seed,
    );
    Splits {
        train: gather(meta, "train", pool, &tr, opts.limit, true),
        val: gather(meta, "val", pool, &va, opts.limit, false),
        test: gather(meta, "test", pool, &te, opts.limit, false),
    }
}

fn load_idx(kind: &str, dir: &Path, opts: &LoadOptions) -> Result<Splits, DataError> {
    let (trp, trl, h, w) =
        idx::load_pair(dir, "train-images-idx3-ubyte", "train-labels-idx1-ubyte")?;
    let (tep, tel, th, tw) =
        idx::load_pair(dir, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")?;
    if (th, tw) != (h, w) {
        return Err(DataError::malformed(
            idx::find(dir, "t10k-images-idx3-ubyte")?,
            format!("test images are {th}x{tw} but training images are {h}x{w}"),
        ));
    }
    let shape = [h, w, 1];
    let target = opts.target_shape.unwrap_or(shape);
    let class_names = if kind == "mnist" {
        (0..10).map(|d| d.to_string()).collect()
    } else {
        [
            "t-shirt/top",
            "trouser",
            "pullover",
            "dress",
            "coat",
            "sandal",
            "shirt",
            "sneaker",
            "bag",
            "ankle boot",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let meta = Meta {
        name: kind,
        class_names,
        target,
        augment: image_augment(opts, target, false),
    };
    let train = Pool {
        pixels: &trp,
        labels: &trl,
        shape,
        sources: None,
    };
    let test = Pool {
        pixels: &tep,
        labels: &tel,
        shape,
        sources: None,
    };
    Ok(holdout_splits(&meta, &train, &test, opts))
}

fn load_cifar(dir: &Path, opts: &LoadOptions) -> Result<Splits, DataError> {
    let c = cifar::load(dir)?;
    let shape = [32, 32, 3];
    let target = opts.target_shape.unwrap_or(shape);
    let meta = Meta {
        name: "cifar10",
        class_names: c.class_names,
        target,
        augment: image_augment(opts, target, true),
    };
    let train = Pool {
        pixels: &c.train.0,
        labels: &c.train.1,
        shape,
        sources: None,
    };
    let test = Pool {
        pixels: &c.test.0,
        labels: &c.test.1,
        shape,
        sources: None,
    };
    Ok(holdout_splits(&meta, &train, &test, opts))
}

fn load_images(dir: &Path, opts: &LoadOptions) -> Result<Splits, DataError> {
    let f = images::load_folder(dir, opts.target_shape)?;
    let meta = Meta {
        name: "images",
        class_names: f.class_names,
        target: f.shape,
        augment: image_augment(opts, f.shape, false),
    };
    let pool = Pool {
        pixels: &f.pixels,
        labels: &f.labels,
        shape: f.shape,
        sources: Some(&f.sources),
    };
    Ok(stratified_splits(&meta, &pool, opts))
}

fn load_digits(opts: &LoadOptions) -> Result<Splits, DataError> {
    let (px, lb) = digits::load()?;
    let shape = [8, 8, 1];
    let target = opts.target_shape.unwrap_or(shape);
    let meta = Meta {
        name: "digits",
        class_names: (0..10).map(|d| d.to_string()).collect(),
        target,
        augment: image_augment(opts, target, false),
    };
    let pool = Pool {
        pixels: &px,
        labels: &lb,
        shape,
        sources: None,
    };
    Ok(stratified_splits(&meta, &pool, opts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_batches(d: &Dataset) -> (Vec<f32>, Vec<u32>) {
        let (mut x, mut y) = (Vec::new(), Vec::new());
        let idx: Vec<usize> = (0..d.len()).collect();
        d.batch(&idx, &mut x, &mut y).unwrap();
        (x, y)
    }

    #[test]
    fn digits_default_split_resize_and_seed() {
        let s = load("", &LoadOptions::default()).unwrap();
        assert_eq!(
            s.train.len() + s.val.len() + s.test.len(),
            digits::NUM_SAMPLES
        );
        assert_eq!(s.train.shape(), [8, 8, 1]);
        assert_eq!(
            s.test.len(),
            (0..10)
                .map(|c| {
                    let n = s.train.class_counts()[c]
                        + s.val.class_counts()[c]
                        + s.test.class_counts()[c];
                    (n as f64 * 0.15).round() as usize
                })
                .sum::<usize>()
        );
        assert_eq!(*s.train.input_encoding(), InputEncoding::PIXELS);
        let (x, _) = all_batches(&s.train);
        assert!(x.iter().all(|v| (-1.0..1.0).contains(v)));

        let a = load(
            "digits",
            &LoadOptions {
                seed: 4,
                ..Default::default()
            },
        )
        .unwrap();
        let b = load(
            "digits",
            &LoadOptions {
                seed: 4,
                ..Default::default()
            },
        )
        .unwrap();
        let c = load(
            "digits",
            &LoadOptions {
                seed: 5,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(all_batches(&a.val), all_batches(&b.val));
        assert_ne!(all_batches(&a.val), all_batches(&c.val));

        let r = load(
            "digits",
            &LoadOptions {
                target_shape: Some([28, 28, 1]),
                limit: Some(50),
                augment: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(r.train.shape(), [28, 28, 1]);
        assert_eq!((r.train.len(), r.val.len(), r.test.len()), (50, 50, 50));
        assert!(r.train.augments() && !r.val.augments());
        assert_eq!(all_batches(&r.train).0.len(), 50 * 784);
    }

    #[test]
    fn spec_errors_list_accepted_forms() {
        for bad in ["mnst:/tmp", "mnist:", "mnist", "cifar10"] {
            let e = load(bad, &LoadOptions::default()).unwrap_err();
            assert!(matches!(e, DataError::UnknownSpec { .. }), "{bad}: {e}");
            assert!(e.to_string().contains("speech-commands:DIR"), "{e}");
        }
        let e = load("mnist:/definitely/not/here", &LoadOptions::default()).unwrap_err();
        assert!(matches!(e, DataError::NotFound { .. }));
        assert!(
            e.to_string().contains("/definitely/not/here") && e.to_string().contains("cifar10:DIR")
        );
        let bad = LoadOptions {
            val_fraction: 1.5,
            ..Default::default()
        };
        assert!(matches!(
            load("digits", &bad),
            Err(DataError::InvalidOption(_))
        ));
        let bad = LoadOptions {
            target_shape: Some([4, 4, 2]),
            ..Default::default()
        };
        assert!(matches!(
            load("digits", &bad),
            Err(DataError::InvalidOption(_))
        ));
    }

    #[test]
    fn idx_folder_roundtrip_through_load() {
        let dir = tempfile::tempdir().unwrap();
        let mk = |n: usize, off: u8| -> (Vec<u8>, Vec<u8>) {
            let px = (0..n * 16)
                .map(|v| (v as u8).wrapping_mul(3).wrapping_add(off))
                .collect();
            let lb = (0..n).map(|i| (i % 10) as u8).collect();
            (px, lb)
        };
        let (px, lb) = mk(20, 0);
        std::fs::write(
            dir.path().join("train-images-idx3-ubyte"),
            idx::encode(&[20, 4, 4], &px),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("train-labels-idx1-ubyte"),
            idx::encode(&[20], &lb),
        )
        .unwrap();
        let (tpx, tlb) = mk(5, 1);
        std::fs::write(
            dir.path().join("t10k-images-idx3-ubyte"),
            idx::encode(&[5, 4, 4], &tpx),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("t10k-labels-idx1-ubyte"),
            idx::encode(&[5], &tlb),
        )
        .unwrap();
        let spec = format!("fashion-mnist:{}", dir.path().display());
        let s = load(
            &spec,
            &LoadOptions {
                val_fraction: 0.25,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!((s.train.len(), s.val.len(), s.test.len()), (15, 5, 5));
        assert_eq!(s.test.class_names()[9], "ankle boot");
        // Every test sample decodes back to one of the written images with its label.
        let (x, y) = all_batches(&s.test);
        for (img, &l) in x.chunks(16).zip(&y) {
            let bytes: Vec<u8> = img.iter().map(|v| (v * 128.0 + 128.0) as u8).collect();
            let k = tpx
                .chunks(16)
                .position(|t| t == &bytes[..])
                .expect("written image");
            assert_eq!(tlb[k] as u32, l);
        }
        // A truncated label file surfaces as Truncated naming it.
        std::fs::write(
            dir.path().join("t10k-labels-idx1-ubyte"),
            &idx::encode(&[5], &tlb)[..10],
        )
        .unwrap();
        match load(&spec, &LoadOptions::default()) {
            Err(e @ DataError::Truncated { .. }) => assert!(e.to_string().contains("t10k-labels")),
            other => panic!("expected Truncated, got {:?}", other.err()),
        }
    }

    #[test]
    fn cifar_and_images_through_load() {
        let dir = tempfile::tempdir().unwrap();
        let px: Vec<u8> = (0..3 * 3072).map(|v| (v % 256) as u8).collect();
        for b in 1..=5 {
            std::fs::write(
                dir.path().join(format!("data_batch_{b}.bin")),
                cifar::encode(&px, &[0, 1, 2]),
            )
            .unwrap();
        }
        std::fs::write(
            dir.path().join("test_batch.bin"),
            cifar::encode(&px, &[3, 4, 5]),
        )
        .unwrap();
        let s = load(
            &format!("cifar10:{}", dir.path().display()),
            &LoadOptions {
                target_shape: Some([16, 16, 1]),
                augment: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(s.train.len() + s.val.len(), 15);
        assert_eq!(s.test.shape(), [16, 16, 1]);
        assert_eq!(s.test.class_names()[0], "airplane");
        assert!(s.train.augments());

        let img = tempfile::tempdir().unwrap();
        for (c, v) in [("a", 10u8), ("b", 240u8)] {
            std::fs::create_dir(img.path().join(c)).unwrap();
            for i in 0..20u8 {
                image::GrayImage::from_pixel(6, 5, image::Luma([v + i % 3]))
                    .save(img.path().join(format!("{c}/{i}.png")))
                    .unwrap();
            }
        }
        let s = load(
            &format!("images:{}", img.path().display()),
            &LoadOptions {
                val_fraction: 0.15,
                seed: 1,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!((s.train.len(), s.val.len(), s.test.len()), (28, 6, 6));
        assert_eq!(s.train.shape(), [5, 6, 1]);
        let (x, y) = all_batches(&s.val);
        for (im, &l) in x.chunks(30).zip(&y) {
            let p = im[0] * 128.0 + 128.0;
            assert_eq!(l, if p < 128.0 { 0 } else { 1 });
            assert!(s.val.source(0).unwrap().ends_with(".png"));
        }
    }
}
