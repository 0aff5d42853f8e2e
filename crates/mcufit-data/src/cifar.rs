//! CIFAR-10 binary version: 3073-byte records (label, 1024 R, 1024 G, 1024 B).

use std::path::{Path, PathBuf};

use crate::error::DataError;

pub(crate) const RECORD: usize = 1 + 3 * 1024;
/// Largest batch file read: 100,000 records.
const MAX_BATCH_BYTES: u64 = 100_000 * RECORD as u64;
const DEFAULT_NAMES: [&str; 10] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/// Parses one batch file into HWC pixels (32x32x3 per image) and labels.
// `is_multiple_of` needs Rust 1.87; the workspace supports 1.85.
#[allow(clippy::manual_is_multiple_of)]
pub(crate) fn parse(bytes: &[u8], path: &Path) -> Result<(Vec<u8>, Vec<u32>), DataError> {
    if bytes.is_empty() || bytes.len() % RECORD != 0 {
        return Err(DataError::CifarLength { path: path.into(), len: bytes.len() as u64 });
    }
    let n = bytes.len() / RECORD;
    let mut pixels = Vec::with_capacity(n * 3072);
    let mut labels = Vec::with_capacity(n);
    for (i, rec) in bytes.chunks_exact(RECORD).enumerate() {
        if rec[0] > 9 {
            return Err(DataError::malformed(path, format!("record {i} has label {} (expected 0..9)", rec[0])));
        }
        labels.push(rec[0] as u32);
        let planes = &rec[1..];
        // File is CHW; the crate is NHWC.
        for p in 0..1024 {
            pixels.extend_from_slice(&[planes[p], planes[1024 + p], planes[2048 + p]]);
        }
    }
    Ok((pixels, labels))
}

/// Locates the batch folder: DIR itself or DIR/cifar-10-batches-bin.
fn batch_dir(dir: &Path) -> PathBuf {
    let nested = dir.join("cifar-10-batches-bin");
    if !dir.join("test_batch.bin").is_file() && nested.join("test_batch.bin").is_file() {
        nested
    } else {
        dir.to_path_buf()
    }
}

/// Loaded CIFAR-10: train pixels/labels, test pixels/labels, class names.
pub(crate) struct Cifar {
    pub train: (Vec<u8>, Vec<u32>),
    pub test: (Vec<u8>, Vec<u32>),
    pub class_names: Vec<String>,
}

pub(crate) fn load(dir: &Path) -> Result<Cifar, DataError> {
    let dir = batch_dir(dir);
    let read = |name: &str| -> Result<(Vec<u8>, Vec<u32>), DataError> {
        let p = dir.join(name);
        if !p.is_file() {
            return Err(DataError::NotFound {
                path: p,
                what: "CIFAR-10 binary batch (data_batch_1..5.bin, test_batch.bin)".into(),
            });
        }
        // A batch is 10,000 records (30.7 MB); allow a few times that, not whatever the file holds.
        let bytes = crate::read_limited(&p, MAX_BATCH_BYTES, "a CIFAR-10 batch file (30.7 MB)")?;
        parse(&bytes, &p)
    };
    let mut train = (Vec::new(), Vec::new());
    for b in 1..=5 {
        let (px, lb) = read(&format!("data_batch_{b}.bin"))?;
        train.0.extend(px);
        train.1.extend(lb);
    }
    let test = read("test_batch.bin")?;
    let meta = dir.join("batches.meta.txt");
    let class_names = if meta.is_file() {
        let text = std::fs::read_to_string(&meta).map_err(|e| DataError::io(&meta, e))?;
        let names: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
        if names.len() != 10 {
            return Err(DataError::malformed(&meta, format!("{} class names, expected 10", names.len())));
        }
        names
    } else {
        DEFAULT_NAMES.iter().map(|s| s.to_string()).collect()
    };
    Ok(Cifar { train, test, class_names })
}

/// Encodes records from HWC pixels (test fixtures).
#[cfg(test)]
pub(crate) fn encode(pixels_hwc: &[u8], labels: &[u32]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, &l) in labels.iter().enumerate() {
        out.push(l as u8);
        let img = &pixels_hwc[i * 3072..(i + 1) * 3072];
        for c in 0..3 {
            out.extend((0..1024).map(|p| img[p * 3 + c]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chw_to_hwc() {
        let mut rec = vec![7u8];
        rec.extend(std::iter::repeat_n(10u8, 1024));
        rec.extend(std::iter::repeat_n(20u8, 1024));
        rec.extend((0..1024).map(|p| (p % 251) as u8));
        let (px, lb) = parse(&rec, Path::new("r.bin")).unwrap();
        assert_eq!(lb, vec![7]);
        assert_eq!(px.len(), 3072);
        // Pixel 5 = (R, G, B) = (10, 20, 5).
        assert_eq!(&px[15..18], &[10, 20, 5]);
        assert_eq!(encode(&px, &lb), rec);
    }

    #[test]
    fn rejects_bad_length_and_label() {
        let p = Path::new("data_batch_1.bin");
        match parse(&vec![0u8; RECORD + 5], p) {
            Err(DataError::CifarLength { len, path }) => {
                assert_eq!(len, RECORD as u64 + 5);
                assert_eq!(path, p);
            }
            other => panic!("expected CifarLength, got {other:?}"),
        }
        assert!(matches!(parse(&[], p), Err(DataError::CifarLength { .. })));
        let mut rec = vec![0u8; RECORD];
        rec[0] = 10;
        assert!(matches!(parse(&rec, p), Err(DataError::Malformed { .. })));
    }

    #[test]
    fn folder_roundtrip_with_meta() {
        let dir = tempfile::tempdir().unwrap();
        let px: Vec<u8> = (0..2 * 3072).map(|v| (v * 13 % 256) as u8).collect();
        for b in 1..=5 {
            std::fs::write(dir.path().join(format!("data_batch_{b}.bin")), encode(&px, &[b - 1, b])).unwrap();
        }
        std::fs::write(dir.path().join("test_batch.bin"), encode(&px, &[9, 8])).unwrap();
        let names: String = (0..10).map(|i| format!("c{i}\n")).collect();
        std::fs::write(dir.path().join("batches.meta.txt"), names + "\n").unwrap();
        let c = load(dir.path()).unwrap();
        assert_eq!(c.train.1, vec![0, 1, 1, 2, 2, 3, 3, 4, 4, 5]);
        assert_eq!(c.test.1, vec![9, 8]);
        assert_eq!(&c.train.0[..3072], &px[..3072]);
        assert_eq!(c.class_names[3], "c3");
        std::fs::remove_file(dir.path().join("data_batch_4.bin")).unwrap();
        let err = load(dir.path()).err().unwrap();
        assert!(err.to_string().contains("data_batch_4.bin"), "{err}");
    }
}
