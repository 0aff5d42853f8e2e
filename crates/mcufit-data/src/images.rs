//! Image decoding, resizing and the `images:DIR` class-folder loader.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use image::{imageops::FilterType, DynamicImage, GrayImage, RgbImage};
use rayon::prelude::*;

use crate::error::DataError;

/// Converts one HWC u8 image between shapes: channels first (1 <-> 3, luma by the `image`
/// crate's weights), then a bilinear (triangle filter) resize. `from` must have c in {1, 3}.
pub(crate) fn adapt_one(src: &[u8], from: [usize; 3], to: [usize; 3]) -> Vec<u8> {
    if from == to {
        return src.to_vec();
    }
    let (w, h) = (from[1] as u32, from[0] as u32);
    let img = match from[2] {
        1 => GrayImage::from_raw(w, h, src.to_vec()).map(DynamicImage::ImageLuma8),
        _ => RgbImage::from_raw(w, h, src.to_vec()).map(DynamicImage::ImageRgb8),
    }
    .expect("caller passes src.len() == h*w*c");
    to_shape(img, to)
}

/// Converts a decoded image to `shape` (channels, then bilinear resize) and returns its bytes.
pub(crate) fn to_shape(img: DynamicImage, shape: [usize; 3]) -> Vec<u8> {
    let img =
        if shape[2] == 1 { DynamicImage::ImageLuma8(img.to_luma8()) } else { DynamicImage::ImageRgb8(img.to_rgb8()) };
    let img = if (img.height() as usize, img.width() as usize) != (shape[0], shape[1]) {
        img.resize_exact(shape[1] as u32, shape[0] as u32, FilterType::Triangle)
    } else {
        img
    };
    img.into_bytes()
}

/// Converts `n` stacked images (parallel over samples).
pub(crate) fn adapt(pixels: &[u8], from: [usize; 3], to: [usize; 3]) -> Vec<u8> {
    if from == to {
        return pixels.to_vec();
    }
    let len: usize = from.iter().product();
    pixels.par_chunks_exact(len).flat_map_iter(|img| adapt_one(img, from, to)).collect()
}

/// File extensions the `images:` loader reads (compared case-insensitively).
pub(crate) const EXTENSIONS: [&str; 7] = ["png", "jpg", "jpeg", "bmp", "gif", "tif", "tiff"];

/// What an empty class folder lacks, for [`DataError::EmptyClass`].
const IMAGE_KINDS: &str = "PNG/JPEG/BMP/GIF/TIFF images";

/// One image file of a class-folder tree.
pub(crate) struct ImageFile {
    pub label: u32,
    pub path: PathBuf,
    /// `class/file` (or `split/class/file` in an official split), for [`crate::Dataset::source`].
    pub source: String,
}

/// A class-folder tree, listed but not decoded.
pub(crate) struct Listing {
    /// Sub-folder names in name order; the label is the index.
    pub class_names: Vec<String>,
    /// Files in (class, file name) order.
    pub files: Vec<ImageFile>,
}

/// Non-hidden sub-folders of `dir`, in name order.
fn sub_folders(dir: &Path) -> Result<Vec<(String, PathBuf)>, DataError> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let e = e.map_err(|e| DataError::io(dir, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && e.path().is_dir() {
            out.push((name, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

fn is_image(p: &Path) -> bool {
    p.extension().map(|x| EXTENSIONS.contains(&x.to_string_lossy().to_ascii_lowercase().as_str())).unwrap_or(false)
}

/// Lists `dir/<class>/*.{png,jpg,jpeg,bmp,gif,tif,tiff}`; `prefix` starts every source name.
pub(crate) fn list_folder(dir: &Path, prefix: &str) -> Result<Listing, DataError> {
    let classes = sub_folders(dir)?;
    if classes.is_empty() {
        return Err(DataError::NotFound { path: dir.into(), what: "no class sub-folders".into() });
    }
    let mut files = Vec::new();
    for (label, (name, path)) in classes.iter().enumerate() {
        let mut these: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| DataError::io(path, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_image(p))
            .collect();
        if these.is_empty() {
            return Err(DataError::EmptyClass { path: path.clone(), what: IMAGE_KINDS });
        }
        these.sort();
        for p in these {
            let source = format!("{prefix}{name}/{}", p.file_name().unwrap_or_default().to_string_lossy());
            files.push(ImageFile { label: label as u32, path: p, source });
        }
    }
    Ok(Listing { class_names: classes.into_iter().map(|c| c.0).collect(), files })
}

/// An image folder that ships its own split: `DIR/train` and `DIR/test` (and optionally
/// `DIR/val`), each a class-folder tree with the same classes.
pub(crate) struct OfficialSplit {
    pub train: Listing,
    pub val: Option<Listing>,
    pub test: Listing,
}

/// The official split of `dir` when both `dir/train` and `dir/test` are folders, else `None`.
/// Class lists must match; the error names the classes found on one side only.
pub(crate) fn official_split(dir: &Path) -> Result<Option<OfficialSplit>, DataError> {
    let (train, test) = (dir.join("train"), dir.join("test"));
    if !(train.is_dir() && test.is_dir()) {
        return Ok(None);
    }
    let train = list_folder(&train, "train/")?;
    let check = |other: &Listing, side: &str| -> Result<(), DataError> {
        if other.class_names == train.class_names {
            return Ok(());
        }
        let a: BTreeSet<&String> = train.class_names.iter().collect();
        let b: BTreeSet<&String> = other.class_names.iter().collect();
        let list = |s: Vec<&&String>| {
            if s.is_empty() {
                "none".to_string()
            } else {
                s.iter().map(|c| format!("'{c}'")).collect::<Vec<_>>().join(", ")
            }
        };
        Err(DataError::malformed(
            dir.join(side),
            format!(
                "train/ and {side}/ must hold the same class folders; only in train/: {}; only in {side}/: {}",
                list(a.difference(&b).collect()),
                list(b.difference(&a).collect()),
            ),
        ))
    };
    let test = list_folder(&test, "test/")?;
    check(&test, "test")?;
    let val_dir = dir.join("val");
    let val = if val_dir.is_dir() {
        let val = list_folder(&val_dir, "val/")?;
        check(&val, "val")?;
        Some(val)
    } else {
        None
    };
    Ok(Some(OfficialSplit { train, val, test }))
}

/// Largest image width and height the `images:` loader decodes (a 20000x20000 PNG is refused, not
/// decoded into 1.6 GB): far above any input a microcontroller network takes.
pub(crate) const MAX_SIDE: u32 = 8192;
/// Most memory one image's decoder may allocate, the output included.
const MAX_DECODE_BYTES: u64 = 256 << 20;
/// Largest image file the loader reads.
const MAX_FILE_BYTES: u64 = 256 << 20;

fn decode(path: &Path) -> Result<DynamicImage, DataError> {
    let bytes = crate::read_limited(path, MAX_FILE_BYTES, "one image file")?;
    decode_bytes(&bytes, path, MAX_SIDE)
}

/// The decoding half of [`decode`], on a file's bytes (the fuzz harness gives it bytes and a smaller
/// `max_side`): the format is guessed from the content (else the extension), width and height are at
/// most `max_side`, the decoder's memory is bounded, and a JPEG cut off before its end-of-image
/// marker is refused (the decoder would fill the missing part with grey and say nothing).
pub(crate) fn decode_bytes(bytes: &[u8], path: &Path, max_side: u32) -> Result<DynamicImage, DataError> {
    let err = |msg: String| DataError::Image { path: path.into(), msg };
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes));
    if let Ok(f) = image::ImageFormat::from_path(path) {
        reader.set_format(f);
    }
    let mut reader = reader.with_guessed_format().map_err(|e| err(e.to_string()))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(max_side);
    limits.max_image_height = Some(max_side);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    if reader.format() == Some(image::ImageFormat::Jpeg) && !jpeg_is_complete(bytes) {
        return Err(err(format!(
            "truncated JPEG ({} bytes, no end-of-image marker after the last scan); re-copy or delete the file",
            bytes.len()
        )));
    }
    reader.decode().map_err(|e| match e {
        image::ImageError::Limits(l) => err(format!(
            "{l}: the loader decodes images up to {max_side}x{max_side} pixels and {} MiB; shrink it first",
            MAX_DECODE_BYTES >> 20
        )),
        e => err(e.to_string()),
    })
}

/// Whether a JPEG's last scan is followed by the end-of-image marker (FF D9). Markers cannot occur
/// inside entropy-coded data (an FF there is followed by 00 or a restart marker), so a file cut
/// anywhere after its last start-of-scan (FF DA) lacks it; a complete EXIF thumbnail before the
/// main image does not count, its scan comes first.
pub(crate) fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let last_sos = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    let last_eoi = bytes.windows(2).rposition(|w| w == [0xFF, 0xD9]);
    matches!((last_sos, last_eoi), (Some(s), Some(e)) if e > s)
}

/// `[h, w, c]` of a decoded image: c is 3 for colour, 1 for grey (alpha ignored).
pub(crate) fn native_shape(img: &DynamicImage) -> [usize; 3] {
    let c = if img.color().has_color() { 3 } else { 1 };
    [img.height() as usize, img.width() as usize, c]
}

/// Decodes one file and returns its native shape.
pub(crate) fn shape_of(path: &Path) -> Result<[usize; 3], DataError> {
    decode(path).map(|img| native_shape(&img))
}

/// Decodes `files` (in parallel) to `shape`, stacked NHWC, with each file's native shape.
/// With `strict` every image must already have `shape`'s height and width (no target was given).
pub(crate) fn decode_to(
    files: &[&ImageFile],
    shape: [usize; 3],
    strict: bool,
) -> Result<(Vec<u8>, Vec<[usize; 3]>), DataError> {
    let decoded: Vec<(Vec<u8>, [usize; 3])> = files
        .par_iter()
        .map(|f| {
            let img = decode(&f.path)?;
            let native = native_shape(&img);
            if strict && native[..2] != shape[..2] {
                return Err(DataError::ImageSize {
                    path: f.path.clone(),
                    found_w: img.width(),
                    found_h: img.height(),
                    want_w: shape[1] as u32,
                    want_h: shape[0] as u32,
                });
            }
            Ok((to_shape(img, shape), native))
        })
        .collect::<Result<_, DataError>>()?;
    let mut pixels = Vec::with_capacity(files.len() * shape.iter().product::<usize>());
    let mut natives = Vec::with_capacity(files.len());
    for (p, n) in decoded {
        pixels.extend_from_slice(&p);
        natives.push(n);
    }
    Ok((pixels, natives))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn save(path: &Path, w: u32, h: u32, f: impl Fn(u32, u32) -> [u8; 3]) {
        RgbImage::from_fn(w, h, |x, y| image::Rgb(f(x, y))).save(path).unwrap();
    }

    fn all(l: &Listing) -> Vec<&ImageFile> {
        l.files.iter().collect()
    }

    #[test]
    fn two_class_folder_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        for c in ["cats", "dogs"] {
            std::fs::create_dir(dir.path().join(c)).unwrap();
        }
        for i in 0..3u8 {
            save(&dir.path().join(format!("cats/{i}.png")), 4, 2, |x, y| [x as u8 * 10 + i, y as u8, 200]);
            save(&dir.path().join(format!("dogs/{i}.png")), 4, 2, |_, _| [i, 0, 0]);
        }
        std::fs::write(dir.path().join("dogs/notes.txt"), "ignored").unwrap();
        let l = list_folder(dir.path(), "").unwrap();
        assert_eq!(l.class_names, vec!["cats", "dogs"]);
        assert_eq!(l.files.iter().map(|f| f.label).collect::<Vec<_>>(), vec![0, 0, 0, 1, 1, 1]);
        assert_eq!(l.files[4].source, "dogs/1.png");
        let shape = shape_of(&l.files[0].path).unwrap();
        assert_eq!(shape, [2, 4, 3]);
        let (px, natives) = decode_to(&all(&l), shape, true).unwrap();
        assert_eq!(natives, vec![[2, 4, 3]; 6]);
        // cats/1.png pixel (x=2, y=1) = (21, 1, 200); PNG is lossless.
        let img1 = &px[24..48];
        assert_eq!(&img1[(4 + 2) * 3..(4 + 2) * 3 + 3], &[21, 1, 200]);

        // Grey 1x1 target: one byte per image.
        assert_eq!(decode_to(&all(&l), [1, 1, 1], false).unwrap().0.len(), 6);

        // Different size in strict mode is an error naming the file.
        save(&dir.path().join("dogs/big.png"), 5, 5, |_, _| [0, 0, 0]);
        let l = list_folder(dir.path(), "").unwrap();
        match decode_to(&all(&l), shape, true) {
            Err(DataError::ImageSize { path, found_w: 5, .. }) => assert!(path.ends_with("big.png")),
            other => panic!("expected ImageSize, got {:?}", other.err()),
        }
        let (px, natives) = decode_to(&all(&l), [3, 3, 3], false).unwrap();
        assert_eq!((px.len(), natives.len()), (7 * 27, 7));
    }

    #[test]
    fn reads_every_supported_format() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("c")).unwrap();
        // Four flat colours in 2x2 blocks: few enough for GIF's palette to keep them exactly.
        let colour = |x: u32, y: u32| {
            [[200u8, 10, 30], [0, 0, 0], [255, 255, 255], [40, 90, 160]][(x / 2 + 2 * (y / 2)) as usize]
        };
        let names = ["a.png", "b.JPG", "c.jpeg", "d.bmp", "e.gif", "f.tif", "g.TIFF"];
        for n in names {
            save(&dir.path().join("c").join(n), 4, 4, colour);
        }
        std::fs::write(dir.path().join("c/h.webp"), b"not read").unwrap();
        let l = list_folder(dir.path(), "").unwrap();
        let found: Vec<&str> = l.files.iter().map(|f| f.source.as_str()).collect();
        assert_eq!(found, names.iter().map(|n| format!("c/{n}")).collect::<Vec<_>>());
        let (px, natives) = decode_to(&all(&l), [4, 4, 3], true).unwrap();
        assert_eq!(natives, vec![[4, 4, 3]; names.len()]);
        let want: Vec<u8> = (0..16).flat_map(|i| colour(i % 4, i / 4)).collect();
        for (img, name) in px.chunks(48).zip(names) {
            if name.ends_with("jpeg") || name.ends_with("JPG") {
                // Lossy: close, not exact.
                let err = img.iter().zip(&want).map(|(&a, &b)| (a as i32 - b as i32).abs()).max().unwrap();
                assert!(err < 80, "{name}: max error {err}");
            } else {
                assert_eq!(img, &want[..], "{name}");
            }
        }
        // Grey PNG in an RGB target is replicated; its native shape says 1 channel.
        GrayImage::from_pixel(4, 4, image::Luma([77])).save(dir.path().join("c/z.png")).unwrap();
        let l = list_folder(dir.path(), "").unwrap();
        let z = l.files.iter().find(|f| f.source == "c/z.png").unwrap();
        let (px, natives) = decode_to(&[z], [4, 4, 3], true).unwrap();
        assert_eq!((natives[0], px), ([4, 4, 1], vec![77; 48]));
    }

    #[test]
    fn official_split_layout_and_class_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        assert!(official_split(dir.path()).unwrap().is_none());
        for side in ["train", "test"] {
            for c in ["a", "b"] {
                std::fs::create_dir_all(dir.path().join(side).join(c)).unwrap();
                save(&dir.path().join(format!("{side}/{c}/0.png")), 2, 2, |_, _| [1, 2, 3]);
            }
        }
        let o = official_split(dir.path()).unwrap().unwrap();
        assert_eq!(o.train.class_names, o.test.class_names);
        assert!(o.val.is_none());
        assert_eq!(o.test.files[1].source, "test/b/0.png");
        // Only train/ alone is not an official split.
        std::fs::rename(dir.path().join("test"), dir.path().join("held")).unwrap();
        assert!(official_split(dir.path()).unwrap().is_none());
        std::fs::rename(dir.path().join("held"), dir.path().join("test")).unwrap();
        // A class on one side only is an error naming it.
        std::fs::create_dir_all(dir.path().join("test/zebra")).unwrap();
        save(&dir.path().join("test/zebra/0.png"), 2, 2, |_, _| [0, 0, 0]);
        std::fs::remove_dir_all(dir.path().join("train/a")).unwrap();
        let e = official_split(dir.path()).err().expect("class mismatch");
        let msg = e.to_string();
        assert!(msg.contains("only in train/: none") && msg.contains("only in test/: 'a', 'zebra'"), "{msg}");
    }

    #[test]
    fn bad_image_and_empty_class() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        std::fs::write(dir.path().join("a/broken.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
        let l = list_folder(dir.path(), "").unwrap();
        match decode_to(&all(&l), [2, 2, 1], false) {
            Err(e @ DataError::Image { .. }) => assert!(e.to_string().contains("broken.png")),
            other => panic!("expected Image error, got {:?}", other.err()),
        }
        std::fs::remove_file(dir.path().join("a/broken.png")).unwrap();
        match list_folder(dir.path(), "") {
            Err(e @ DataError::EmptyClass { .. }) => {
                assert!(e.to_string().contains("/a:") && e.to_string().contains("BMP/GIF/TIFF"), "{e}")
            }
            other => panic!("expected EmptyClass, got {:?}", other.err()),
        }
    }

    #[test]
    fn adapt_resizes_and_converts() {
        // 2x2 grey checker -> 4x4 RGB: channels replicate, values stay in range.
        let out = adapt(&[0, 255, 255, 0], [2, 2, 1], [4, 4, 3]);
        assert_eq!(out.len(), 48);
        assert!(out.chunks(3).all(|p| p[0] == p[1] && p[1] == p[2]));
        // Flat images stay flat under bilinear resizing.
        let flat = adapt(&[77; 2 * 8 * 8], [8, 8, 1], [28, 28, 1]);
        assert!(flat[..784].iter().all(|&v| v == 77) && flat.len() == 2 * 784);
    }
}
