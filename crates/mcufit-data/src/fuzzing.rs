//! In-memory entry points to the file parsers, for the fuzz harnesses in `fuzz/` (not a stable API).
//!
//! Each runs the same code as the loader does on a file's bytes and returns only whether it parsed;
//! a panic, hang or runaway allocation here is a bug in the parser.

use std::io::Cursor;
use std::path::Path;

use crate::{cifar, idx, images, mfcc::Mfcc, speech};

const PATH: &str = "<fuzz input>";

/// IDX: gunzip when gzip, then parse as an images file and as a labels file.
pub fn idx(bytes: &[u8]) -> bool {
    let path = Path::new(PATH);
    let Ok(raw) = idx::gunzip_if_gz(bytes.to_vec(), path) else { return false };
    let images = idx::parse(&raw, idx::IMAGES_MAGIC, path);
    let labels = idx::parse(&raw, idx::LABELS_MAGIC, path);
    if let Ok(i) = &images {
        assert_eq!(i.data.len(), i.dims.iter().product::<usize>());
    }
    images.is_ok() || labels.is_ok()
}

/// One CIFAR-10 binary batch file.
pub fn cifar(bytes: &[u8]) -> bool {
    match cifar::parse(bytes, Path::new(PATH)) {
        Ok((pixels, labels)) => {
            assert_eq!(pixels.len(), labels.len() * 3072);
            true
        }
        Err(_) => false,
    }
}

/// Largest width and height [`image`] decodes: the loader's own bound is [`images::MAX_SIDE`]
/// (8192); a fuzz input that declares up to that many pixels only costs time (allocating and
/// resizing a big zero-filled image), so the harness bounds sides at 512 to keep executions fast.
/// Every decoder path runs the same; only the size check refuses sooner.
pub const IMAGE_MAX_SIDE: u32 = 512;

/// One image file, decoded as the `images:` loader does (the format guessed from the content, at
/// most [`IMAGE_MAX_SIDE`] pixels a side), then converted to an 8x8 grey and an 8x8 RGB sample.
pub fn image(bytes: &[u8]) -> bool {
    let path = Path::new(PATH);
    let Ok(img) = images::decode_bytes(bytes, path, IMAGE_MAX_SIDE) else { return false };
    let native = images::native_shape(&img);
    assert!(native[2] == 1 || native[2] == 3);
    assert!(native[0] <= IMAGE_MAX_SIDE as usize && native[1] <= IMAGE_MAX_SIDE as usize, "size limit ignored");
    for shape in [[8, 8, 1], [8, 8, 3]] {
        assert_eq!(images::to_shape(img.clone(), shape).len(), 8 * 8 * shape[2]);
    }
    true
}

/// One WAV file, read as the `speech-commands:` loader does, then padded, normalized and turned into MFCCs.
pub fn wav(bytes: &[u8]) -> bool {
    let path = Path::new(PATH);
    let Ok(reader) = hound::WavReader::new(Cursor::new(bytes)) else { return false };
    let Ok(wave) = speech::read_wav_from(reader, path) else { return false };
    let features = Mfcc::new().compute(&speech::normalized(&speech::fit_clip(wave)));
    assert!(features.iter().all(|f| f.is_finite()), "non-finite MFCC");
    true
}
