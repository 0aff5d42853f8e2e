//! Tests on the real datasets; each skips with a message when its data is absent.
//!
//! Data root: `$MCUFIT_DATASETS`, else `shared/datasets` beside the repository,
//! else `/work/shared/datasets`.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use mcufit_data::{load, speaker_id, speech_split, LoadOptions, Side};

/// Says why a test does not run; under `CI` a skip is a failure (the test command sets up what
/// the tests need, so a missing data set there is a broken setup, not a reason to pass).
fn skip(why: &str) {
    assert!(std::env::var_os("CI").is_none(), "{why} (a skip is a failure under CI)");
    eprintln!("SKIPPED: {why}");
}

fn data_dir(name: &str) -> Option<PathBuf> {
    let mut roots = Vec::new();
    if let Ok(r) = std::env::var("MCUFIT_DATASETS") {
        roots.push(PathBuf::from(r));
    }
    roots.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets"));
    roots.push(PathBuf::from("/work/shared/datasets"));
    let found = roots.into_iter().map(|r| r.join(name)).find(|p| p.is_dir());
    if found.is_none() {
        skip(&format!("dataset `{name}` not found (set MCUFIT_DATASETS)"));
    }
    found
}

#[test]
fn mnist_loads_official_counts() {
    let Some(dir) = data_dir("mnist") else { return };
    let opts = LoadOptions { val_fraction: 0.1, seed: 1, ..Default::default() };
    let s = load(&format!("mnist:{}", dir.display()), &opts).unwrap();
    assert_eq!(s.train.len() + s.val.len(), 60_000);
    assert_eq!(s.val.len(), 6_000);
    assert_eq!(s.test.len(), 10_000);
    assert_eq!(s.train.shape(), [28, 28, 1]);
    // Published MNIST class frequencies.
    let train: Vec<usize> = s.train.class_counts().iter().zip(s.val.class_counts()).map(|(a, b)| a + b).collect();
    assert_eq!(train, [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]);
    assert_eq!(s.test.class_counts(), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]);
    assert_eq!(s.test.class_counts().iter().sum::<usize>(), 10_000);
    let (mut x, mut y) = (Vec::new(), Vec::new());
    s.test.batch(&[0, 1, 2, 3], &mut x, &mut y).unwrap();
    assert_eq!(x.len(), 4 * 784);
    // Background bytes are 0 -> -1.0; strokes reach 255 -> 127/128.
    assert!(x.iter().filter(|&&v| v == -1.0).count() > 4 * 784 / 2);
    assert!(x.iter().any(|&v| v == 127.0 / 128.0));
}

#[test]
fn fashion_mnist_loads() {
    let dir = PathBuf::from("/usr/share/datasets/fashion-mnist");
    if !dir.is_dir() {
        skip(&format!("{} absent (apt-get install dataset-fashion-mnist)", dir.display()));
        return;
    }
    let opts =
        LoadOptions { val_fraction: 0.0, target_shape: Some([32, 32, 3]), limit: Some(500), ..Default::default() };
    let s = load(&format!("fashion-mnist:{}", dir.display()), &opts).unwrap();
    assert_eq!((s.train.len(), s.val.len(), s.test.len()), (500, 0, 500));
    assert_eq!(s.train.shape(), [32, 32, 3]);
    let full =
        load(&format!("fashion-mnist:{}", dir.display()), &LoadOptions { val_fraction: 0.0, ..Default::default() })
            .unwrap();
    assert_eq!(full.train.class_counts(), vec![6000; 10]);
    assert_eq!(full.test.class_counts(), vec![1000; 10]);
}

#[test]
fn speech_commands_speaker_disjoint() {
    let Some(dir) = data_dir("speech_commands_v0.02_test") else {
        return;
    };
    let split = speech_split(&dir, 0).unwrap();
    let report = split.report();
    eprintln!("speech split (seed 0): {report}");
    assert_eq!(split.clips.len(), 4890);

    let s = load(&format!("speech-commands:{}", dir.display()), &LoadOptions::default()).unwrap();
    assert_eq!(s.train.len() + s.val.len() + s.test.len(), 4890);
    assert_eq!([s.train.len(), s.val.len(), s.test.len()], report.clips);
    assert_eq!(s.train.class_names()[0], "_silence_");
    assert_eq!(s.train.num_classes(), 12);
    // Folder sizes from the file system, independently of the loader.
    for (label, n) in s.train.class_names().iter().enumerate() {
        let on_disk = std::fs::read_dir(dir.join(n)).unwrap().count();
        let loaded = s.train.class_counts()[label] + s.val.class_counts()[label] + s.test.class_counts()[label];
        assert_eq!(loaded, on_disk, "{n}");
    }

    // Independent check: parse speakers from the loaded sources; none on two sides.
    let mut sides: HashMap<String, HashSet<&str>> = HashMap::new();
    for (d, side) in [(&s.train, "train"), (&s.val, "val"), (&s.test, "test")] {
        for i in 0..d.len() {
            let src = d.source(i).unwrap();
            let (folder, file) = src.split_once('/').unwrap();
            if folder == "_silence_" {
                continue;
            }
            let spk = file.split("_nohash_").next().unwrap().rsplit('_').next().unwrap();
            sides.entry(spk.to_string()).or_default().insert(side);
        }
    }
    let shared: Vec<_> = sides.iter().filter(|(_, v)| v.len() > 1).collect();
    assert!(shared.is_empty(), "speakers on two sides: {shared:?}");
    let per_side = |name| sides.values().filter(|v| v.contains(name)).count();
    assert_eq!([per_side("train"), per_side("val"), per_side("test")], report.speakers);
    assert_eq!(report.shared_speakers, 0);
    // Side fractions are near 80/10/10 of speakers.
    let total: usize = report.speakers.iter().sum();
    assert!((report.speakers[0] as f64 / total as f64 - 0.8).abs() < 0.05, "{report}");
    assert!(split.clips.iter().filter(|c| c.side == Side::Test).all(|c| c
        .speaker
        .as_deref()
        .is_none_or(|sp| speaker_id(&c.path.file_name().unwrap().to_string_lossy()) == Some(sp))));

    // Features are finite and the augmented path runs on real audio with real noise.
    let (mut x, mut y) = (Vec::new(), Vec::new());
    let idx: Vec<usize> = (0..64).collect();
    s.train.batch(&idx, &mut x, &mut y).unwrap();
    assert!(x.iter().all(|v| v.is_finite()));
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
    let mut xa = Vec::new();
    s.train.batch_augmented(&idx, &mut rng, &mut xa, &mut y).unwrap();
    assert!(xa.iter().all(|v| v.is_finite()));
    assert_ne!(x, xa);
}

#[test]
fn cifar10_jpeg_tree_uses_its_own_split() {
    // The CIFAR-10 JPEG tree: cifar10/{train,test}/CLASS/*.jpg (50,000 + 10,000 files).
    let Some(dir) = data_dir("cifar10") else { return };
    if !(dir.join("train").is_dir() && dir.join("test").is_dir()) {
        skip(&format!("{} has no train/ and test/ folders (the CIFAR-10 JPEG tree)", dir.display()));
        return;
    }
    let spec = format!("images:{}", dir.display());
    let opts = LoadOptions { val_fraction: 0.1, seed: 2, limit: Some(300), ..Default::default() };
    let s = load(&spec, &opts).unwrap();
    assert_eq!((s.train.len(), s.val.len(), s.test.len()), (300, 300, 300));
    assert_eq!(s.train.shape(), [32, 32, 3]);
    assert_eq!(
        s.train.class_names(),
        ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    );
    assert!(s.conversion.is_none());
    for (d, side) in [(&s.train, "train/"), (&s.val, "train/"), (&s.test, "test/")] {
        for i in 0..d.len() {
            let src = d.source(i).unwrap();
            assert!(src.starts_with(side), "{src}");
            // The label is the class folder.
            let class = src.split('/').nth(1).unwrap();
            assert_eq!(d.class_names()[d.labels()[i] as usize], class, "{src}");
        }
        // A random 300 of 45,000/10,000 covers every class.
        assert!(d.class_counts().iter().all(|&n| n > 0), "{side}");
    }
    let (mut x, mut y) = (Vec::new(), Vec::new());
    s.test.batch(&[0, 1], &mut x, &mut y).unwrap();
    assert!(x.iter().all(|v| (-1.0..1.0).contains(v)));
    assert!(x.iter().any(|&v| v != x[0]));

    // Resized and converted for a 28x28x1 model: one note, no printing.
    let grey = LoadOptions { target_shape: Some([28, 28, 1]), limit: Some(20), ..opts.clone() };
    let g = load(&spec, &grey).unwrap();
    assert_eq!(g.test.shape(), [28, 28, 1]);
    assert_eq!(g.conversion.unwrap().to_string(), "images resized 32x32x3 → 28x28x1 (bilinear, RGB to gray by luma)");
}
