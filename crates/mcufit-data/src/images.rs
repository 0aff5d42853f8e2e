//! Image decoding, resizing and the `images:DIR` class-folder loader.

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
    let img = if to[2] == 1 {
        DynamicImage::ImageLuma8(img.to_luma8())
    } else {
        DynamicImage::ImageRgb8(img.to_rgb8())
    };
    let img = if (to[0], to[1]) != (from[0], from[1]) {
        img.resize_exact(to[1] as u32, to[0] as u32, FilterType::Triangle)
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
    pixels
        .par_chunks_exact(len)
        .flat_map_iter(|img| adapt_one(img, from, to))
        .collect()
}

const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// A decoded class-folder dataset before splitting.
pub(crate) struct Folder {
    pub class_names: Vec<String>,
    pub pixels: Vec<u8>,
    pub labels: Vec<u32>,
    pub shape: [usize; 3],
    pub sources: Vec<String>,
}

fn decode(path: &Path) -> Result<DynamicImage, DataError> {
    let err = |msg: String| DataError::Image {
        path: path.into(),
        msg,
    };
    image::ImageReader::open(path)
        .map_err(|e| DataError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| err(e.to_string()))?
        .decode()
        .map_err(|e| err(e.to_string()))
}

/// Loads `DIR/<class>/*.{png,jpg,jpeg}`; classes are the sub-folders in name order.
/// With `target` every image is converted to it; without, all images must share the
/// first image's size, and its colour decides c (grey -> 1, otherwise 3).
pub(crate) fn load_folder(dir: &Path, target: Option<[usize; 3]>) -> Result<Folder, DataError> {
    let mut classes: Vec<(String, PathBuf)> = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let e = e.map_err(|e| DataError::io(dir, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && e.path().is_dir() {
            classes.push((name, e.path()));
        }
    }
    classes.sort();
    if classes.is_empty() {
        return Err(DataError::NotFound {
            path: dir.into(),
            what: "no class sub-folders".into(),
        });
    }
    let mut files: Vec<(u32, PathBuf, String)> = Vec::new();
    for (label, (name, path)) in classes.iter().enumerate() {
        let mut these: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| DataError::io(path, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .map(|x| {
                        EXTENSIONS.contains(&x.to_string_lossy().to_ascii_lowercase().as_str())
                    })
                    .unwrap_or(false)
            })
            .collect();
        if these.is_empty() {
            return Err(DataError::EmptyClass {
                path: path.clone(),
                what: "PNG/JPEG images",
            });
        }
        these.sort();
        for p in these {
            let src = format!(
                "{name}/{}",
                p.file_name().unwrap_or_default().to_string_lossy()
            );
            files.push((label as u32, p, src));
        }
    }
    let shape = match target {
        Some(t) => t,
        None => {
            let first = decode(&files[0].1)?;
            let c = if first.color().has_color() { 3 } else { 1 };
            [first.height() as usize, first.width() as usize, c]
        }
    };
    let imgs: Vec<Vec<u8>> = files
        .par_iter()
        .map(|(_, p, _)| {
            let img = decode(p)?;
            if target.is_none()
                && (img.height() as usize, img.width() as usize) != (shape[0], shape[1])
            {
                return Err(DataError::ImageSize {
                    path: p.clone(),
                    found_w: img.width(),
                    found_h: img.height(),
                    want_w: shape[1] as u32,
                    want_h: shape[0] as u32,
                });
            }
            let img = if shape[2] == 1 {
                DynamicImage::ImageLuma8(img.to_luma8())
            } else {
                DynamicImage::ImageRgb8(img.to_rgb8())
            };
            let img = if (img.height() as usize, img.width() as usize) != (shape[0], shape[1]) {
                img.resize_exact(shape[1] as u32, shape[0] as u32, FilterType::Triangle)
            } else {
                img
            };
            Ok(img.into_bytes())
        })
        .collect::<Result<_, DataError>>()?;
    Ok(Folder {
        class_names: classes.into_iter().map(|c| c.0).collect(),
        pixels: imgs.concat(),
        labels: files.iter().map(|f| f.0).collect(),
        shape,
        sources: files.into_iter().map(|f| f.2).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn save(path: &Path, w: u32, h: u32, f: impl Fn(u32, u32) -> [u8; 3]) {
        RgbImage::from_fn(w, h, |x, y| image::Rgb(f(x, y)))
            .save(path)
            .unwrap();
    }

    #[test]
    fn two_class_folder_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        for c in ["cats", "dogs"] {
            std::fs::create_dir(dir.path().join(c)).unwrap();
        }
        for i in 0..3u8 {
            save(&dir.path().join(format!("cats/{i}.png")), 4, 2, |x, y| {
                [x as u8 * 10 + i, y as u8, 200]
            });
            save(&dir.path().join(format!("dogs/{i}.png")), 4, 2, |_, _| {
                [i, 0, 0]
            });
        }
        std::fs::write(dir.path().join("dogs/notes.txt"), "ignored").unwrap();
        let f = load_folder(dir.path(), None).unwrap();
        assert_eq!(f.class_names, vec!["cats", "dogs"]);
        assert_eq!(f.shape, [2, 4, 3]);
        assert_eq!(f.labels, vec![0, 0, 0, 1, 1, 1]);
        assert_eq!(f.sources[4], "dogs/1.png");
        // cats/1.png pixel (x=2, y=1) = (21, 1, 200); PNG is lossless.
        let img1 = &f.pixels[24..48];
        assert_eq!(&img1[(4 + 2) * 3..(4 + 2) * 3 + 3], &[21, 1, 200]);

        // Grey 1x1 target: each dog image is a flat colour, so the luma is one value.
        let g = load_folder(dir.path(), Some([1, 1, 1])).unwrap();
        assert_eq!(g.pixels.len(), 6);

        // Different size without a target is an error naming the file.
        save(&dir.path().join("dogs/big.png"), 5, 5, |_, _| [0, 0, 0]);
        match load_folder(dir.path(), None) {
            Err(DataError::ImageSize {
                path, found_w: 5, ..
            }) => assert!(path.ends_with("big.png")),
            other => panic!("expected ImageSize, got {:?}", other.err()),
        }
        assert_eq!(
            load_folder(dir.path(), Some([3, 3, 3]))
                .unwrap()
                .labels
                .len(),
            7
        );
    }

    #[test]
    fn bad_image_and_empty_class() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        std::fs::write(
            dir.path().join("a/broken.png"),
            b"\x89PNG\r\n\x1a\nnot really",
        )
        .unwrap();
        match load_folder(dir.path(), Some([2, 2, 1])) {
            Err(e @ DataError::Image { .. }) => assert!(e.to_string().contains("broken.png")),
            other => panic!("expected Image error, got {:?}", other.err()),
        }
        std::fs::remove_file(dir.path().join("a/broken.png")).unwrap();
        match load_folder(dir.path(), None) {
            Err(DataError::EmptyClass { path, .. }) => assert!(path.ends_with("a")),
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
