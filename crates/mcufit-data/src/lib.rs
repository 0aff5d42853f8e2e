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
//! | `images:DIR` | one sub-folder per class (name order = label order) of PNG, JPEG, BMP, GIF (first frame) or TIFF files | stratified seeded: test 15 %, val `val_fraction`, rest train |
//! | `images:DIR` with `DIR/train` and `DIR/test` | the data set's own split: each a class-folder tree, same class names | val = seeded `val_fraction` of `train/` (or `DIR/val` when present); test = `test/` |
//! | `speech-commands:DIR` | one sub-folder per label of 16 kHz 16-bit mono WAV clips, turned into MLPerf Tiny KWS MFCCs `[49,10,1]` (see [`mfcc`]) | speaker-disjoint 80/10/10 by hash (see [`speech_split`]) |
//!
//! `LoadOptions::target_shape` resizes image sets (bilinear, `image` crate triangle filter)
//! and converts channels (grey <-> RGB); for `images:` it is required when the files differ
//! in size. A channel count of [`NATIVE_CHANNELS`] (0) resizes but keeps the data set's own
//! channels (`images:` takes the first file's). What was converted is reported once in
//! [`Splits::conversion`] (the library never prints). Speech only accepts `[49,10,1]` (or
//! `[49,10,0]`). `limit` keeps at most that many samples per split (a seeded random subset;
//! `images:` decodes only those). Splits are reproducible for a given `seed`.
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
//! Image training splits augment by default (`LoadOptions::augment`): random shifts of up to a
//! tenth of the side (edges repeated) and, for colour photographs only (CIFAR-10, image folders
//! whose first training image is colour), random left-right flips; grey images (digits, letters)
//! are never flipped.

mod cifar;
mod conversion;
mod dataset;
mod digits;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod idx;
mod images;
pub mod mfcc;
mod speech;
mod split;

use std::path::Path;

pub use conversion::{ChannelChange, Conversion, Resize};
pub use dataset::{Dataset, InputEncoding};
pub use error::{DataError, ACCEPTED_SPECS};
pub use speech::{speaker_id, speech_split, Side, SpeechClip, SpeechSplit, SplitReport, MLPERF_LABELS};

use dataset::{Augment, Samples};

/// Fraction of each class held out for test by `digits` and `images:` (without `DIR/test`).
pub const TEST_FRACTION: f32 = 0.15;

/// Channel count in [`LoadOptions::target_shape`] meaning "keep the data set's own channels":
/// `Some([h, w, NATIVE_CHANNELS])` resizes to `h x w` without converting grey <-> RGB. The
/// loaded [`Dataset::shape`] then tells the channel count (e.g. to adapt a model's input).
pub const NATIVE_CHANNELS: usize = 0;

/// Options of [`load`].
#[derive(Clone, Debug, PartialEq)]
pub struct LoadOptions {
    /// Seed of every random choice (splits, subsets).
    pub seed: u64,
    /// Fraction of the training data held out for validation (image sets; speech uses a
    /// fixed 80/10/10 speaker split). Must be in [0, 0.9].
    pub val_fraction: f32,
    /// Resize/convert image samples to `[h, w, c]` (c = 1 or 3, or [`NATIVE_CHANNELS`] to keep
    /// the data's own channel count).
    pub target_shape: Option<[usize; 3]>,
    /// Give image sets their training augmentation (default on): random shifts of up to a tenth
    /// of the side, edges repeated, and, for colour photographs (CIFAR-10, image folders of
    /// colour images), random horizontal flips; never for grey images, where a mirror can change
    /// the class (digits, letters). Only [`Dataset::batch_augmented`] applies it, and the trainer
    /// calls that only with `TrainConfig::augment` on (`--no-augment` turns it off); validation
    /// and test never augment. Speech always has its augmentation (shifts and background noise).
    pub augment: bool,
    /// Keep at most this many samples per split.
    pub limit: Option<usize>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { seed: 0, val_fraction: 0.1, target_shape: None, augment: true, limit: None }
    }
}

impl LoadOptions {
    fn validate(&self) -> Result<(), DataError> {
        if !(0.0..=0.9).contains(&self.val_fraction) {
            return Err(DataError::InvalidOption(format!("val_fraction {} must be in [0, 0.9]", self.val_fraction)));
        }
        if let Some(t) = self.target_shape {
            if t[0] == 0 || t[1] == 0 || ![1, 3, NATIVE_CHANNELS].contains(&t[2]) {
                return Err(DataError::InvalidOption(format!(
                    "target shape {t:?}: h and w must be > 0 and c 1 or 3 (or {NATIVE_CHANNELS} to keep the data's own)"
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
    /// What was resized or channel-converted to meet [`LoadOptions::target_shape`]; `None`
    /// when every sample already had that shape. Its `Display` is one sentence to show once.
    pub conversion: Option<Conversion>,
}

impl LoadOptions {
    /// The sample shape for data whose own shape is `native`.
    fn target_for(&self, native: [usize; 3]) -> [usize; 3] {
        match self.target_shape {
            None => native,
            Some([h, w, NATIVE_CHANNELS]) => [h, w, native[2]],
            Some(t) => t,
        }
    }
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
    if !["mnist", "fashion-mnist", "cifar10", "images", "speech-commands"].contains(&kind) || dir.is_empty() {
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
}

struct Meta<'a> {
    name: &'a str,
    class_names: Vec<String>,
    target: [usize; 3],
    augment: Augment,
}

fn gather(meta: &Meta, split: &str, pool: &Pool, idx: &[usize], limit: Option<usize>, train: bool) -> Dataset {
    let idx = limited(idx, limit);
    let len: usize = pool.shape.iter().product();
    let mut raw = Vec::with_capacity(idx.len() * len);
    for &i in idx {
        raw.extend_from_slice(&pool.pixels[i * len..(i + 1) * len]);
    }
    pixel_dataset(
        meta,
        split,
        images::adapt(&raw, pool.shape, meta.target),
        idx.iter().map(|&i| pool.labels[i]).collect(),
        None,
        train,
    )
}

/// The first `limit` entries of `idx`.
fn limited<T>(idx: &[T], limit: Option<usize>) -> &[T] {
    &idx[..limit.map_or(idx.len(), |l| l.min(idx.len()))]
}

/// An image split from pixels already in `meta.target` shape.
fn pixel_dataset(
    meta: &Meta,
    split: &str,
    pixels: Vec<u8>,
    labels: Vec<u32>,
    sources: Option<Vec<String>>,
    train: bool,
) -> Dataset {
    Dataset {
        name: format!("{}/{split}", meta.name),
        shape: meta.target,
        class_names: meta.class_names.clone(),
        labels,
        encoding: InputEncoding::PIXELS,
        samples: Samples::Pixels(pixels),
        sources,
        augment: if train { meta.augment } else { Augment::None },
    }
}

/// Assembles splits whose samples all came from `shape` (one pool) and notes the conversion.
fn pool_splits(train: Dataset, val: Dataset, test: Dataset, shape: [usize; 3]) -> Splits {
    let n = train.len() + val.len() + test.len();
    let conversion = Conversion::uniform(shape, train.shape, n);
    Splits { train, val, test, conversion }
}

fn image_augment(opts: &LoadOptions, target: [usize; 3], hflip: bool) -> Augment {
    if opts.augment {
        Augment::Image { max_shift: (target[0] / 10).max(1), hflip }
    } else {
        Augment::None
    }
}

/// Official train/test files: val is a seeded slice of train.
fn holdout_splits(meta: &Meta, train: &Pool, test: &Pool, opts: &LoadOptions) -> Splits {
    let (tr, va) = split::holdout(train.labels.len(), opts.val_fraction, opts.seed);
    let te = split::shuffled(test.labels.len(), opts.seed, split::stream::ORDER_TEST);
    pool_splits(
        gather(meta, "train", train, &tr, opts.limit, true),
        gather(meta, "val", train, &va, opts.limit, false),
        gather(meta, "test", test, &te, opts.limit, false),
        train.shape,
    )
}

/// One pool: seeded stratified train/val/test.
fn stratified_splits(meta: &Meta, pool: &Pool, opts: &LoadOptions) -> Splits {
    let [tr, va, te] =
        split::stratified(pool.labels, meta.class_names.len(), opts.val_fraction, TEST_FRACTION, opts.seed);
    pool_splits(
        gather(meta, "train", pool, &tr, opts.limit, true),
        gather(meta, "val", pool, &va, opts.limit, false),
        gather(meta, "test", pool, &te, opts.limit, false),
        pool.shape,
    )
}

fn load_idx(kind: &str, dir: &Path, opts: &LoadOptions) -> Result<Splits, DataError> {
    let (trp, trl, h, w) = idx::load_pair(dir, "train-images-idx3-ubyte", "train-labels-idx1-ubyte")?;
    let (tep, tel, th, tw) = idx::load_pair(dir, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")?;
    if (th, tw) != (h, w) {
        return Err(DataError::malformed(
            idx::find(dir, "t10k-images-idx3-ubyte")?,
            format!("test images are {th}x{tw} but training images are {h}x{w}"),
        ));
    }
    require_two_classes(&trl, &idx::find(dir, "train-labels-idx1-ubyte")?)?;
    let shape = [h, w, 1];
    let target = opts.target_for(shape);
    let class_names = if kind == "mnist" {
        (0..10).map(|d| d.to_string()).collect()
    } else {
        ["t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let meta = Meta { name: kind, class_names, target, augment: image_augment(opts, target, false) };
    let train = Pool { pixels: &trp, labels: &trl, shape };
    let test = Pool { pixels: &tep, labels: &tel, shape };
    Ok(holdout_splits(&meta, &train, &test, opts))
}

fn load_cifar(dir: &Path, opts: &LoadOptions) -> Result<Splits, DataError> {
    let c = cifar::load(dir)?;
    require_two_classes(&c.train.1, dir)?;
    let shape = [32, 32, 3];
    let target = opts.target_for(shape);
    let meta = Meta { name: "cifar10", class_names: c.class_names, target, augment: image_augment(opts, target, true) };
    let train = Pool { pixels: &c.train.0, labels: &c.train.1, shape };
    let test = Pool { pixels: &c.test.0, labels: &c.test.1, shape };
    Ok(holdout_splits(&meta, &train, &test, opts))
}

/// Reads `path` whole, but at most `limit` bytes: a larger file, or a device or link to one that never
/// ends (`/dev/zero` named `x.png`), is refused after `limit + 1` bytes, naming `what` the limit is for.
pub(crate) fn read_limited(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>, DataError> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    // A regular file says its size: refuse at once rather than read `limit` bytes first.
    let known = f.metadata().map(|m| m.is_file() && m.len() > limit).unwrap_or(false);
    let mut out = Vec::new();
    if !known {
        f.take(limit + 1).read_to_end(&mut out).map_err(|e| DataError::io(path, e))?;
    }
    if known || out.len() as u64 > limit {
        return Err(DataError::malformed(
            path,
            format!("larger than {limit} bytes, the limit of {what} (a wrong or corrupt file?)"),
        ));
    }
    Ok(out)
}

/// Refuses training labels that are all one class: a model trained on them predicts that class and
/// scores 100 %, which says nothing. `path` is the file (or folder) the labels come from.
fn require_two_classes(labels: &[u32], path: &Path) -> Result<(), DataError> {
    match labels.first() {
        Some(&first) if labels.iter().all(|&l| l == first) => Err(DataError::malformed(
            path,
            format!(
                "all {} training examples are of class {first}: a classifier needs examples of at least 2 \
                 classes (with one class every prediction is right, accuracy is always 100 %)",
                labels.len()
            ),
        )),
        _ => Ok(()),
    }
}

fn load_images(dir: &Path, opts: &LoadOptions) -> Result<Splits, DataError> {
    use images::ImageFile;
    let official = images::official_split(dir)?;
    let pooled = match official {
        Some(_) => None,
        None => Some(images::list_folder(dir, "")?),
    };
    fn pick<'a>(files: &'a [ImageFile], idx: &[usize], limit: Option<usize>) -> Vec<&'a ImageFile> {
        limited(idx, limit).iter().map(|&i| &files[i]).collect()
    }
    let select = |files, idx: &[usize]| pick(files, idx, opts.limit);
    // The listing whose first file decides the shape when no target says it, and the three sides.
    let (listing, sides): (&images::Listing, [Vec<&ImageFile>; 3]) = match (&official, &pooled) {
        (Some(o), _) => {
            let files = &o.train.files;
            let (tr, va) = match &o.val {
                Some(v) => (
                    select(files, &split::shuffled(files.len(), opts.seed, split::stream::ORDER_TRAIN)),
                    select(&v.files, &split::shuffled(v.files.len(), opts.seed, split::stream::ORDER_VAL)),
                ),
                None => {
                    let (tr, va) = split::holdout(files.len(), opts.val_fraction, opts.seed);
                    (select(files, &tr), select(files, &va))
                }
            };
            let te = split::shuffled(o.test.files.len(), opts.seed, split::stream::ORDER_TEST);
            (&o.train, [tr, va, select(&o.test.files, &te)])
        }
        (None, Some(l)) => {
            let labels: Vec<u32> = l.files.iter().map(|f| f.label).collect();
            let idx = split::stratified(&labels, l.class_names.len(), opts.val_fraction, TEST_FRACTION, opts.seed);
            (l, idx.map(|i| select(&l.files, &i)))
        }
        (None, None) => unreachable!("a pooled listing exists without an official split"),
    };
    if let [only] = &listing.class_names[..] {
        let root = if official.is_some() { dir.join("train") } else { dir.to_path_buf() };
        return Err(DataError::malformed(
            &root,
            format!(
                "one class folder ('{only}'): a classifier needs at least 2, one sub-folder per class \
                 (with one class every prediction is right, accuracy is always 100 %); if the class \
                 folders are inside '{only}', give images:{}",
                root.join(only).display()
            ),
        ));
    }
    let shape = match opts.target_shape {
        Some(t) if t[2] != NATIVE_CHANNELS => t,
        _ => opts.target_for(images::shape_of(&listing.files[0].path)?),
    };
    // The training side's augmentation is set once it is decoded (below).
    let mut meta =
        Meta { name: "images", class_names: listing.class_names.clone(), target: shape, augment: Augment::None };
    let strict = opts.target_shape.is_none();
    let mut natives = Vec::new();
    let mut out = Vec::with_capacity(3);
    for (files, (name, train)) in sides.iter().zip([("train", true), ("val", false), ("test", false)]) {
        let (pixels, n) = images::decode_to(files, shape, strict)?;
        if train {
            // Colour folders are photographs (CIFAR-10, Visual Wake Words): flipped left-right
            // they are still what they were. Grey ones may be digits or letters: no flips.
            meta.augment = image_augment(opts, shape, n.first().is_some_and(|s| s[2] == 3));
        }
        natives.extend(n);
        let labels = files.iter().map(|f| f.label).collect();
        let sources = files.iter().map(|f| f.source.clone()).collect();
        out.push(pixel_dataset(&meta, name, pixels, labels, Some(sources), train));
    }
    let [train, val, test]: [Dataset; 3] = out.try_into().expect("three sides");
    Ok(Splits { train, val, test, conversion: Conversion::of(natives, shape) })
}

fn load_digits(opts: &LoadOptions) -> Result<Splits, DataError> {
    let (px, lb) = digits::load()?;
    let shape = [8, 8, 1];
    let target = opts.target_for(shape);
    let meta = Meta {
        name: "digits",
        class_names: (0..10).map(|d| d.to_string()).collect(),
        target,
        augment: image_augment(opts, target, false),
    };
    let pool = Pool { pixels: &px, labels: &lb, shape };
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
        assert_eq!(s.train.len() + s.val.len() + s.test.len(), digits::NUM_SAMPLES);
        assert_eq!(s.train.shape(), [8, 8, 1]);
        assert_eq!(
            s.test.len(),
            (0..10)
                .map(|c| {
                    let n = s.train.class_counts()[c] + s.val.class_counts()[c] + s.test.class_counts()[c];
                    (n as f64 * 0.15).round() as usize
                })
                .sum::<usize>()
        );
        assert_eq!(*s.train.input_encoding(), InputEncoding::PIXELS);
        let (x, _) = all_batches(&s.train);
        assert!(x.iter().all(|v| (-1.0..1.0).contains(v)));

        let a = load("digits", &LoadOptions { seed: 4, ..Default::default() }).unwrap();
        let b = load("digits", &LoadOptions { seed: 4, ..Default::default() }).unwrap();
        let c = load("digits", &LoadOptions { seed: 5, ..Default::default() }).unwrap();
        assert_eq!(all_batches(&a.val), all_batches(&b.val));
        assert_ne!(all_batches(&a.val), all_batches(&c.val));

        let r = load(
            "digits",
            &LoadOptions { target_shape: Some([28, 28, 1]), limit: Some(50), augment: true, ..Default::default() },
        )
        .unwrap();
        assert_eq!(r.train.shape(), [28, 28, 1]);
        assert_eq!((r.train.len(), r.val.len(), r.test.len()), (50, 50, 50));
        assert!(s.conversion.is_none() && a.conversion.is_none());
        let note = r.conversion.as_ref().expect("8x8 -> 28x28 is a conversion");
        assert_eq!((note.converted, note.total), (150, 150));
        assert_eq!(note.to_string(), "images resized 8x8x1 → 28x28x1 (bilinear)");
        let rgb = LoadOptions { target_shape: Some([8, 8, 3]), ..Default::default() };
        let c = load("digits", &rgb).unwrap().conversion.unwrap();
        assert_eq!(c.to_string(), "images converted 8x8x1 → 8x8x3 (gray replicated to RGB)");
        assert_eq!(c.channels, Some(ChannelChange::GrayToRgb));
        let same = LoadOptions { target_shape: Some([8, 8, 1]), ..Default::default() };
        assert!(load("digits", &same).unwrap().conversion.is_none());
        let native = LoadOptions { target_shape: Some([16, 16, NATIVE_CHANNELS]), ..Default::default() };
        let n = load("digits", &native).unwrap();
        assert_eq!(n.test.shape(), [16, 16, 1]);
        assert_eq!(n.conversion.unwrap().to_string(), "images resized 8x8x1 → 16x16x1 (bilinear)");
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
        assert!(e.to_string().contains("/definitely/not/here") && e.to_string().contains("cifar10:DIR"));
        let bad = LoadOptions { val_fraction: 1.5, ..Default::default() };
        assert!(matches!(load("digits", &bad), Err(DataError::InvalidOption(_))));
        let bad = LoadOptions { target_shape: Some([4, 4, 2]), ..Default::default() };
        assert!(matches!(load("digits", &bad), Err(DataError::InvalidOption(_))));
    }

    #[test]
    fn idx_folder_roundtrip_through_load() {
        let dir = tempfile::tempdir().unwrap();
        let mk = |n: usize, off: u8| -> (Vec<u8>, Vec<u8>) {
            let px = (0..n * 16).map(|v| (v as u8).wrapping_mul(3).wrapping_add(off)).collect();
            let lb = (0..n).map(|i| (i % 10) as u8).collect();
            (px, lb)
        };
        let (px, lb) = mk(20, 0);
        std::fs::write(dir.path().join("train-images-idx3-ubyte"), idx::encode(&[20, 4, 4], &px)).unwrap();
        std::fs::write(dir.path().join("train-labels-idx1-ubyte"), idx::encode(&[20], &lb)).unwrap();
        let (tpx, tlb) = mk(5, 1);
        std::fs::write(dir.path().join("t10k-images-idx3-ubyte"), idx::encode(&[5, 4, 4], &tpx)).unwrap();
        std::fs::write(dir.path().join("t10k-labels-idx1-ubyte"), idx::encode(&[5], &tlb)).unwrap();
        let spec = format!("fashion-mnist:{}", dir.path().display());
        let s = load(&spec, &LoadOptions { val_fraction: 0.25, ..Default::default() }).unwrap();
        assert_eq!((s.train.len(), s.val.len(), s.test.len()), (15, 5, 5));
        assert_eq!(s.test.class_names()[9], "ankle boot");
        assert!(s.conversion.is_none());
        // Every test sample decodes back to one of the written images with its label.
        let (x, y) = all_batches(&s.test);
        for (img, &l) in x.chunks(16).zip(&y) {
            let bytes: Vec<u8> = img.iter().map(|v| (v * 128.0 + 128.0) as u8).collect();
            let k = tpx.chunks(16).position(|t| t == &bytes[..]).expect("written image");
            assert_eq!(tlb[k] as u32, l);
        }
        // A truncated label file surfaces as Truncated naming it.
        std::fs::write(dir.path().join("t10k-labels-idx1-ubyte"), &idx::encode(&[5], &tlb)[..10]).unwrap();
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
            std::fs::write(dir.path().join(format!("data_batch_{b}.bin")), cifar::encode(&px, &[0, 1, 2])).unwrap();
        }
        std::fs::write(dir.path().join("test_batch.bin"), cifar::encode(&px, &[3, 4, 5])).unwrap();
        let s = load(
            &format!("cifar10:{}", dir.path().display()),
            &LoadOptions { target_shape: Some([16, 16, 1]), augment: true, ..Default::default() },
        )
        .unwrap();
        assert_eq!(s.train.len() + s.val.len(), 15);
        assert_eq!(s.test.shape(), [16, 16, 1]);
        assert_eq!(s.test.class_names()[0], "airplane");
        assert!(s.train.augments());
        assert_eq!(
            s.conversion.unwrap().to_string(),
            "images resized 32x32x3 → 16x16x1 (bilinear, RGB to gray by luma)"
        );

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
            &LoadOptions { val_fraction: 0.15, seed: 1, ..Default::default() },
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

    #[test]
    fn image_folders_augment_by_default_and_flip_only_colour_photographs() {
        use rand::SeedableRng;
        // Left-right asymmetric 8x8 images: a ramp along x (a shift of at most 1 pixel, edges
        // repeated, cannot turn it into its mirror).
        let ramp = |x: u32| (20 + 25 * x) as u8;
        let colour = tempfile::tempdir().unwrap();
        let grey = tempfile::tempdir().unwrap();
        for c in ["a", "b"] {
            for d in [colour.path(), grey.path()] {
                std::fs::create_dir(d.join(c)).unwrap();
            }
            for i in 0..10 {
                image::RgbImage::from_fn(8, 8, |x, _| image::Rgb([ramp(x), 0, 255 - ramp(x)]))
                    .save(colour.path().join(format!("{c}/{i}.png")))
                    .unwrap();
                image::GrayImage::from_fn(8, 8, |x, _| image::Luma([ramp(x)]))
                    .save(grey.path().join(format!("{c}/{i}.png")))
                    .unwrap();
            }
        }
        // How many of 64 augmented draws of image 0 are its exact mirror.
        let mirrored_draws = |dir: &Path| -> usize {
            let s = load(&format!("images:{}", dir.display()), &LoadOptions::default()).unwrap();
            assert!(s.train.augments() && !s.val.augments() && !s.test.augments());
            let [h, w, c] = s.train.shape();
            let (mut clean, mut y) = (Vec::new(), Vec::new());
            s.train.batch(&[0], &mut clean, &mut y).unwrap();
            let mirror: Vec<f32> = (0..h * w)
                .flat_map(|p| (0..c).map(move |k| (p / w * w + (w - 1 - p % w)) * c + k))
                .map(|i| clean[i])
                .collect();
            assert_ne!(mirror, clean);
            (0..64)
                .filter(|&seed| {
                    let mut x = Vec::new();
                    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
                    s.train.batch_augmented(&[0], &mut rng, &mut x, &mut y).unwrap();
                    x == mirror
                })
                .count()
        };
        assert!(mirrored_draws(colour.path()) > 0, "colour photographs are flipped");
        assert_eq!(mirrored_draws(grey.path()), 0, "grey images (digits, letters) are never flipped");
        // Off on request.
        let s =
            load(&format!("images:{}", grey.path().display()), &LoadOptions { augment: false, ..Default::default() })
                .unwrap();
        assert!(!s.train.augments());
    }

    #[test]
    fn single_class_data_is_refused_with_the_reason() {
        // One class folder (pooled and in an official split).
        let img = tempfile::tempdir().unwrap();
        image_tree(img.path(), "", &["cats"], 6, (4, 4));
        let e = load(&format!("images:{}", img.path().display()), &LoadOptions::default()).unwrap_err().to_string();
        assert!(e.contains("one class folder ('cats')") && e.contains("at least 2"), "{e}");
        assert!(e.contains(&format!("images:{}", img.path().join("cats").display())), "{e}");
        let off = tempfile::tempdir().unwrap();
        image_tree(off.path(), "train", &["cats"], 3, (4, 4));
        image_tree(off.path(), "test", &["cats"], 3, (4, 4));
        let e = load(&format!("images:{}", off.path().display()), &LoadOptions::default()).unwrap_err().to_string();
        assert!(e.contains("train: one class folder"), "{e}");
        // IDX and CIFAR whose training labels are all one class.
        let dir = tempfile::tempdir().unwrap();
        let w = |name: &str, bytes: Vec<u8>| std::fs::write(dir.path().join(name), bytes).unwrap();
        w("train-images-idx3-ubyte", idx::encode(&[8, 2, 2], &[1; 32]));
        w("train-labels-idx1-ubyte", idx::encode(&[8], &[7; 8]));
        w("t10k-images-idx3-ubyte", idx::encode(&[2, 2, 2], &[1; 8]));
        w("t10k-labels-idx1-ubyte", idx::encode(&[2], &[7, 1]));
        let e = load(&format!("mnist:{}", dir.path().display()), &LoadOptions::default()).unwrap_err().to_string();
        assert!(e.contains("train-labels-idx1-ubyte: all 8 training examples are of class 7"), "{e}");
        let c = tempfile::tempdir().unwrap();
        let px = vec![0u8; 2 * 3072];
        for b in 1..=5 {
            std::fs::write(c.path().join(format!("data_batch_{b}.bin")), cifar::encode(&px, &[4, 4])).unwrap();
        }
        std::fs::write(c.path().join("test_batch.bin"), cifar::encode(&px, &[4, 5])).unwrap();
        let e = load(&format!("cifar10:{}", c.path().display()), &LoadOptions::default()).unwrap_err().to_string();
        assert!(e.contains("all 10 training examples are of class 4"), "{e}");
    }

    #[test]
    fn truncated_and_oversized_images_are_refused() {
        let img = tempfile::tempdir().unwrap();
        image_tree(img.path(), "", &["a", "b"], 3, (16, 16));
        let spec = format!("images:{}", img.path().display());
        assert!(load(&spec, &LoadOptions::default()).is_ok());
        // A noisy JPEG (so its scan is long) cut before its end: the decoder alone would fill it in.
        let rgb = image::RgbImage::from_fn(64, 64, |x, y| image::Rgb([(x * 7 + y * 13) as u8, (x * y) as u8, 90]));
        let jpg = img.path().join("a/cut.jpg");
        rgb.save(&jpg).unwrap();
        let full = std::fs::read(&jpg).unwrap();
        assert!(images::jpeg_is_complete(&full));
        for keep in [full.len() - 2, full.len() * 3 / 4, full.len() / 2] {
            std::fs::write(&jpg, &full[..keep]).unwrap();
            let e = load(&spec, &LoadOptions::default()).unwrap_err().to_string();
            assert!(e.contains("cut.jpg") && e.contains("truncated JPEG"), "{keep}: {e}");
        }
        std::fs::remove_file(&jpg).unwrap();
        // Truncated PNG, BMP, GIF and TIFF: their decoders report the missing data.
        for ext in ["png", "bmp", "gif", "tiff"] {
            let p = img.path().join(format!("b/cut.{ext}"));
            rgb.save(&p).unwrap();
            let full = std::fs::read(&p).unwrap();
            for keep in [full.len() * 3 / 4, full.len() / 2] {
                std::fs::write(&p, &full[..keep]).unwrap();
                let e = load(&spec, &LoadOptions::default()).unwrap_err().to_string();
                assert!(e.contains(&format!("cut.{ext}: cannot decode image")), "{ext} {keep}/{}: {e}", full.len());
            }
            std::fs::remove_file(&p).unwrap();
        }
        // A link to a device that never ends is read only up to the file limit.
        #[cfg(unix)]
        {
            let p = img.path().join("b/zero.png");
            std::os::unix::fs::symlink("/dev/zero", &p).unwrap();
            let e = load(&spec, &LoadOptions::default()).unwrap_err().to_string();
            assert!(e.contains("zero.png: larger than 268435456 bytes, the limit of one image file"), "{e}");
            std::fs::remove_file(&p).unwrap();
        }
        // A PNG whose header declares 20000 x 20000 is refused by the size limit, before decoding.
        let p = img.path().join("b/huge.png");
        image::GrayImage::new(20000, 1).save(&p).unwrap();
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[20..24].copy_from_slice(&20000u32.to_be_bytes()); // IHDR height (the CRC is now wrong too)
        std::fs::write(&p, &bytes).unwrap();
        let e = load(&spec, &LoadOptions::default()).unwrap_err().to_string();
        assert!(e.contains("huge.png"), "{e}");
        let big = image::GrayImage::new(images::MAX_SIDE + 1, 1);
        big.save(&p).unwrap();
        let e = load(&spec, &LoadOptions::default()).unwrap_err().to_string();
        assert!(e.contains("huge.png") && e.contains("up to 8192x8192 pixels"), "{e}");
    }

    /// Writes `DIR/<side>/<class>/<i>.png` grey `w x h` images whose first byte is `class * 100 + i`.
    fn image_tree(root: &Path, side: &str, classes: &[&str], n: usize, (w, h): (u32, u32)) {
        for (c, name) in classes.iter().enumerate() {
            let d = root.join(side).join(name);
            std::fs::create_dir_all(&d).unwrap();
            for i in 0..n {
                let v = (c * 100 + i) as u8;
                image::GrayImage::from_pixel(w, h, image::Luma([v])).save(d.join(format!("{i}.png"))).unwrap();
            }
        }
    }

    #[test]
    fn images_official_train_test_folders() {
        let root = tempfile::tempdir().unwrap();
        image_tree(root.path(), "train", &["a", "b"], 10, (6, 5));
        image_tree(root.path(), "test", &["a", "b"], 4, (6, 5));
        let spec = format!("images:{}", root.path().display());
        let opts = LoadOptions { val_fraction: 0.2, seed: 3, ..Default::default() };
        let s = load(&spec, &opts).unwrap();
        assert_eq!((s.train.len(), s.val.len(), s.test.len()), (16, 4, 8));
        assert_eq!(s.train.class_names(), ["a", "b"]);
        assert_eq!(s.train.shape(), [5, 6, 1]);
        assert!(s.conversion.is_none());
        // The test side is exactly test/, train and val partition train/; labels follow folders.
        let sources = |d: &Dataset| -> Vec<String> { (0..d.len()).map(|i| d.source(i).unwrap().to_string()).collect() };
        let mut test = sources(&s.test);
        test.sort();
        let want: Vec<String> =
            ["a", "b"].iter().flat_map(|c| (0..4).map(move |i| format!("test/{c}/{i}.png"))).collect();
        assert_eq!(test, want);
        let mut tv: Vec<String> = sources(&s.train).into_iter().chain(sources(&s.val)).collect();
        tv.sort();
        tv.dedup();
        assert_eq!(tv.len(), 20);
        assert!(tv.iter().all(|p| p.starts_with("train/")));
        for d in [&s.train, &s.val, &s.test] {
            let (x, y) = all_batches(d);
            for (k, (img, &l)) in x.chunks(30).zip(&y).enumerate() {
                let src = d.source(k).unwrap();
                assert_eq!(l, if src.contains("/a/") { 0 } else { 1 }, "{src}");
                let i: usize = src.rsplit('/').next().unwrap().trim_end_matches(".png").parse().unwrap();
                assert_eq!(img[0] * 128.0 + 128.0, (l as usize * 100 + i) as f32, "{src}");
            }
        }
        // Seeded: the same seed gives the same val side, another seed another one.
        assert_eq!(sources(&load(&spec, &opts).unwrap().val), sources(&s.val));
        let other = LoadOptions { seed: 4, ..opts.clone() };
        assert_ne!(sources(&load(&spec, &other).unwrap().val), sources(&s.val));

        // Resize + channels: one note; `limit` keeps that many per side.
        let rgb = LoadOptions { target_shape: Some([8, 8, 3]), limit: Some(3), ..opts.clone() };
        let r = load(&spec, &rgb).unwrap();
        assert_eq!((r.train.len(), r.val.len(), r.test.len(), r.test.shape()), (3, 3, 3, [8, 8, 3]));
        assert_eq!(
            r.conversion.unwrap().to_string(),
            "images resized 5x6x1 → 8x8x3 (bilinear, gray replicated to RGB)"
        );
        let native = LoadOptions { target_shape: Some([5, 6, NATIVE_CHANNELS]), ..opts.clone() };
        let n = load(&spec, &native).unwrap();
        assert_eq!((n.train.shape(), n.conversion), ([5, 6, 1], None));

        // DIR/val, when present, is the validation side.
        image_tree(root.path(), "val", &["a", "b"], 2, (6, 5));
        let v = load(&spec, &opts).unwrap();
        assert_eq!((v.train.len(), v.val.len(), v.test.len()), (20, 4, 8));
        assert!(sources(&v.val).iter().all(|p| p.starts_with("val/")));

        // Different class lists: an error naming the difference.
        image_tree(root.path(), "test", &["c"], 1, (6, 5));
        let e = load(&spec, &opts).unwrap_err();
        assert!(matches!(e, DataError::Malformed { .. }), "{e}");
        assert!(e.to_string().contains("only in test/: 'c'"), "{e}");

        // Without both train/ and test/, the folders are classes as before (here: holding no
        // images directly, so the first is an empty class).
        std::fs::remove_dir_all(root.path().join("test")).unwrap();
        match load(&spec, &opts) {
            Err(DataError::EmptyClass { path, .. }) => assert!(path.ends_with("train")),
            other => panic!("expected EmptyClass, got {other:?}"),
        }
    }

    #[test]
    fn images_of_mixed_sizes_report_one_conversion() {
        let root = tempfile::tempdir().unwrap();
        image_tree(root.path(), "", &["a"], 4, (6, 5));
        image_tree(root.path(), "", &["b"], 4, (8, 8));
        let spec = format!("images:{}", root.path().display());
        // Without a target, the second size is an error.
        assert!(matches!(load(&spec, &LoadOptions::default()), Err(DataError::ImageSize { .. })));
        let opts = LoadOptions { target_shape: Some([8, 8, 1]), ..Default::default() };
        let s = load(&spec, &opts).unwrap();
        let c = s.conversion.unwrap();
        assert_eq!((c.converted, c.total, c.from.clone()), (4, 8, vec![[5, 6, 1]]));
        assert_eq!(c.to_string(), "4 of 8 images resized 5x6x1 → 8x8x1 (bilinear)");
    }
}
