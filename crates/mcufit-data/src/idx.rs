//! IDX files (MNIST, Fashion-MNIST), plain or gzip-compressed.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::DataError;

/// Magic of an unsigned-byte IDX file with 3 dims (images).
pub(crate) const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic of an unsigned-byte IDX file with 1 dim (labels).
pub(crate) const LABELS_MAGIC: u32 = 0x0000_0801;

/// A parsed unsigned-byte IDX array.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Idx {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Largest IDX file (after decompression) the loader reads: 1 GiB, twice EMNIST's largest images file.
/// A header that announces more is refused before anything is allocated or decompressed.
pub(crate) const MAX_IDX_BYTES: u64 = 1 << 30;

/// Reads a whole file, transparently gunzipping it when it starts with the gzip magic.
pub(crate) fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = crate::read_limited(path, MAX_IDX_BYTES, "an IDX file (MNIST's largest is 47 MB)")?;
    gunzip_if_gz(raw, path)
}

fn too_big(path: &Path, bytes: u64, what: &str) -> DataError {
    DataError::malformed(
        path,
        format!(
            "{what} {bytes} bytes, over the {MAX_IDX_BYTES}-byte limit of an IDX file (a corrupt header or a \
             decompression bomb; MNIST's largest file is 47 MB)"
        ),
    )
}

/// The in-memory half of [`read_maybe_gz`]: gunzips `raw` when it starts with the gzip magic.
///
/// Bounded by what the IDX header declares: the header is decompressed first, a declared size over
/// [`MAX_IDX_BYTES`] is refused at once, and decompression stops one byte past the declared size (the
/// parser then reports the trailing bytes), so a small .gz that expands to gigabytes costs nothing.
pub(crate) fn gunzip_if_gz(raw: Vec<u8>, path: &Path) -> Result<Vec<u8>, DataError> {
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw);
    }
    // A cut-off .gz is the usual cause of a read error; say so with the file name.
    let corrupt = |e: std::io::Error| DataError::malformed(path, format!("gzip stream is corrupt or truncated: {e}"));
    let mut gz = flate2::read::MultiGzDecoder::new(&raw[..]);
    let mut out = Vec::new();
    // Magic first (its last byte is the number of dims), then the dims.
    (&mut gz).take(4).read_to_end(&mut out).map_err(corrupt)?;
    // Only an unsigned-byte IDX header declares a size; anything else fails on its magic in `parse`.
    if out.len() == 4 && out[..3] == [0, 0, 0x08] {
        let header = 4 + 4 * u64::from(out[3]);
        (&mut gz).take(header - 4).read_to_end(&mut out).map_err(corrupt)?;
        if out.len() as u64 == header {
            let declared = out[4..]
                .chunks_exact(4)
                .map(|d| u64::from(u32::from_be_bytes([d[0], d[1], d[2], d[3]])))
                .try_fold(1u64, |acc, d| acc.checked_mul(d))
                .and_then(|n| n.checked_add(header));
            match declared {
                Some(n) if n <= MAX_IDX_BYTES => {
                    out.reserve_exact((n - header) as usize);
                    // One byte more than declared is enough for the parser to report trailing data.
                    (&mut gz).take(n + 1 - header).read_to_end(&mut out).map_err(corrupt)?;
                }
                _ => return Err(too_big(path, declared.unwrap_or(u64::MAX), "its header declares")),
            }
        }
    }
    Ok(out)
}

/// Parses IDX bytes, requiring `expected_magic` (which fixes type u8 and the number of dims).
pub(crate) fn parse(bytes: &[u8], expected_magic: u32, path: &Path) -> Result<Idx, DataError> {
    if bytes.len() < 4 {
        return Err(DataError::Truncated { path: path.into(), expected: 4, found: bytes.len() as u64 });
    }
    let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if magic != expected_magic {
        return Err(DataError::BadMagic { path: path.into(), found: magic, expected: expected_magic });
    }
    let ndims = (magic & 0xff) as usize;
    let header = 4 + 4 * ndims;
    if bytes.len() < header {
        return Err(DataError::Truncated { path: path.into(), expected: header as u64, found: bytes.len() as u64 });
    }
    let dims: Vec<usize> = (0..ndims)
        .map(|d| {
            let o = 4 + 4 * d;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect();
    let count = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| DataError::malformed(path, format!("IDX dims {dims:?} overflow")))?;
    let need = header as u64 + count as u64;
    let have = bytes.len() as u64;
    if have < need {
        return Err(DataError::Truncated { path: path.into(), expected: need, found: have });
    }
    if have > need {
        return Err(DataError::malformed(
            path,
            format!("{} trailing bytes after IDX data of dims {dims:?}", have - need),
        ));
    }
    Ok(Idx { dims, data: bytes[header..].to_vec() })
}

/// Encodes an unsigned-byte IDX array (used by tests to make fixtures).
#[cfg(test)]
pub(crate) fn encode(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

/// Finds `stem` in `dir` under the usual spellings: `train-images-idx3-ubyte`,
/// `train-images.idx3-ubyte`, each optionally with `.gz`.
pub(crate) fn find(dir: &Path, stem: &str) -> Result<PathBuf, DataError> {
    let dotted = stem.replacen("-idx", ".idx", 1);
    for base in [stem, dotted.as_str()] {
        for ext in ["", ".gz"] {
            let p = dir.join(format!("{base}{ext}"));
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    Err(DataError::NotFound { path: dir.join(stem), what: format!("expected {stem} or {stem}.gz") })
}

/// Loads one images/labels pair: returns (pixels, labels, height, width).
pub(crate) fn load_pair(
    dir: &Path,
    images_stem: &str,
    labels_stem: &str,
) -> Result<(Vec<u8>, Vec<u32>, usize, usize), DataError> {
    let ip = find(dir, images_stem)?;
    let lp = find(dir, labels_stem)?;
    let images = parse(&read_maybe_gz(&ip)?, IMAGES_MAGIC, &ip)?;
    let labels = parse(&read_maybe_gz(&lp)?, LABELS_MAGIC, &lp)?;
    let (n, h, w) = (images.dims[0], images.dims[1], images.dims[2]);
    if h == 0 || w == 0 {
        return Err(DataError::malformed(&ip, format!("image dims {h}x{w} are empty")));
    }
    if labels.dims[0] != n {
        return Err(DataError::malformed(
            &lp,
            format!("{} labels but {} has {n} images", labels.dims[0], ip.display()),
        ));
    }
    if let Some(pos) = labels.data.iter().position(|&l| l > 9) {
        return Err(DataError::malformed(
            &lp,
            format!("label {} at index {pos} is not a digit class 0..9", labels.data[pos]),
        ));
    }
    let labels = labels.data.iter().map(|&l| l as u32).collect();
    Ok((images.data, labels, h, w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_plain_and_gz() {
        let dir = tempfile::tempdir().unwrap();
        let pixels: Vec<u8> = (0..2 * 3 * 4).map(|v| v as u8 * 7).collect();
        std::fs::write(dir.path().join("train-images-idx3-ubyte"), encode(&[2, 3, 4], &pixels)).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &encode(&[2], &[3, 9])).unwrap();
        std::fs::write(dir.path().join("train-labels-idx1-ubyte.gz"), gz.finish().unwrap()).unwrap();
        let (px, labels, h, w) = load_pair(dir.path(), "train-images-idx3-ubyte", "train-labels-idx1-ubyte").unwrap();
        assert_eq!((h, w), (3, 4));
        assert_eq!(px, pixels);
        assert_eq!(labels, vec![3, 9]);
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, bytes).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn gzip_bombs_stop_at_the_declared_size() {
        let p = Path::new("bomb.gz");
        // The header declares 1000 x 28 x 28 but the stream expands to 32 MiB more than that.
        let mut raw = encode(&[1000, 28, 28], &[]);
        raw.resize(raw.len() + 1000 * 28 * 28 + (32 << 20), 0);
        let t = std::time::Instant::now();
        let out = gunzip_if_gz(gz(&raw), p).unwrap();
        assert_eq!(out.len(), 16 + 1000 * 28 * 28 + 1, "decompression stops one byte past the declared size");
        let e = parse(&out, IMAGES_MAGIC, p).unwrap_err().to_string();
        assert!(e.contains("trailing bytes"), "{e}");
        assert!(t.elapsed().as_secs() < 5);
        // A header that declares more than the limit is refused before its data is decompressed.
        let e = gunzip_if_gz(gz(&encode(&[0xffff_ffff, 0xffff, 0xffff], &[0; 1 << 16])), p).unwrap_err().to_string();
        assert!(e.contains("header declares") && e.contains("limit"), "{e}");
        // Not an IDX header: decompression stops after the magic, which the parser refuses.
        let out = gunzip_if_gz(gz(&vec![7u8; 1 << 20]), p).unwrap();
        assert!(matches!(parse(&out, IMAGES_MAGIC, p), Err(DataError::BadMagic { .. })));
        // A cut-off stream is an error naming the file.
        let mut cut = gz(&encode(&[2], &[1, 2]));
        cut.truncate(cut.len() / 2);
        assert!(gunzip_if_gz(cut, p).unwrap_err().to_string().contains("bomb.gz: gzip stream"));
    }

    #[test]
    fn rejects_wrong_magic() {
        let p = Path::new("x.idx");
        let bytes = encode(&[2], &[1, 2]);
        match parse(&bytes, IMAGES_MAGIC, p) {
            Err(DataError::BadMagic { found, .. }) => assert_eq!(found, LABELS_MAGIC),
            other => panic!("expected BadMagic, got {other:?}"),
        }
        let mut bad = encode(&[1, 1, 1], &[0]);
        bad[2] = 0x0d; // float type, unsupported
        assert!(matches!(parse(&bad, IMAGES_MAGIC, p), Err(DataError::BadMagic { .. })));
    }

    #[test]
    fn rejects_truncated_and_trailing() {
        let p = Path::new("t.idx");
        let mut bytes = encode(&[2, 2, 2], &[0; 8]);
        bytes.truncate(bytes.len() - 1);
        match parse(&bytes, IMAGES_MAGIC, p) {
            Err(DataError::Truncated { expected, found, path }) => {
                assert_eq!(expected, 16 + 8);
                assert_eq!(found, 16 + 7);
                assert_eq!(path, p);
            }
            other => panic!("expected Truncated, got {other:?}"),
        }
        // Header cut inside the dims.
        assert!(matches!(parse(&bytes[..9], IMAGES_MAGIC, p), Err(DataError::Truncated { expected: 16, .. })));
        let mut long = encode(&[1], &[1]);
        long.push(0);
        assert!(matches!(parse(&long, LABELS_MAGIC, p), Err(DataError::Malformed { .. })));
    }

    #[test]
    fn truncated_gzip_names_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &encode(&[64], &[5; 64])).unwrap();
        let mut bytes = gz.finish().unwrap();
        bytes.truncate(bytes.len() / 2);
        let p = dir.path().join("train-labels-idx1-ubyte.gz");
        std::fs::write(&p, bytes).unwrap();
        let err = read_maybe_gz(&p).unwrap_err();
        assert!(err.to_string().contains("train-labels-idx1-ubyte.gz"), "{err}");
    }

    #[test]
    fn count_mismatch_and_bad_label() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a-images-idx3-ubyte"), encode(&[2, 1, 1], &[0, 0])).unwrap();
        std::fs::write(dir.path().join("a-labels-idx1-ubyte"), encode(&[3], &[0, 1, 2])).unwrap();
        let err = load_pair(dir.path(), "a-images-idx3-ubyte", "a-labels-idx1-ubyte").unwrap_err();
        assert!(matches!(err, DataError::Malformed { .. }), "{err}");
        std::fs::write(dir.path().join("a-labels-idx1-ubyte"), encode(&[2], &[0, 10])).unwrap();
        let err = load_pair(dir.path(), "a-images-idx3-ubyte", "a-labels-idx1-ubyte").unwrap_err();
        assert!(err.to_string().contains("label 10"), "{err}");
    }
}
