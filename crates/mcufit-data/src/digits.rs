//! The UCI 8x8 handwritten digits (1,797 samples), shipped inside the `smartcore` crate.

use std::path::PathBuf;

use crate::error::DataError;

/// Number of samples in the UCI digits set.
#[cfg(test)]
pub(crate) const NUM_SAMPLES: usize = 1797;

fn origin() -> PathBuf {
    PathBuf::from("<smartcore::dataset::digits>")
}

/// Returns (pixels 8x8x1 as bytes 0..=255, labels). Source values 0..=16 map to
/// `round(v * 255 / 16)` so 16 (full ink) is 255.
pub(crate) fn load() -> Result<(Vec<u8>, Vec<u32>), DataError> {
    let ds = smartcore::dataset::digits::load_dataset();
    if ds.num_features != 64 || ds.data.len() != ds.num_samples * 64 || ds.target.len() != ds.num_samples {
        return Err(DataError::malformed(
            origin(),
            format!(
                "unexpected layout: {} samples x {} features, {} values, {} targets",
                ds.num_samples,
                ds.num_features,
                ds.data.len(),
                ds.target.len()
            ),
        ));
    }
    let mut pixels = Vec::with_capacity(ds.data.len());
    for (i, &v) in ds.data.iter().enumerate() {
        if !(0.0..=16.0).contains(&v) || v.fract() != 0.0 {
            return Err(DataError::malformed(origin(), format!("value {v} at {i} is not an integer in 0..=16")));
        }
        pixels.push((v * 255.0 / 16.0).round() as u8);
    }
    let mut labels = Vec::with_capacity(ds.num_samples);
    for (i, &t) in ds.target.iter().enumerate() {
        if !(0.0..=9.0).contains(&t) || t.fract() != 0.0 {
            return Err(DataError::malformed(origin(), format!("target {t} at {i} is not a digit")));
        }
        labels.push(t as u32);
    }
    Ok((pixels, labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ships_the_real_uci_digits() {
        let (px, lb) = load().unwrap();
        assert_eq!(lb.len(), NUM_SAMPLES);
        assert_eq!(px.len(), NUM_SAMPLES * 64);
        // The UCI set has 174..=183 samples per class.
        let mut h = [0usize; 10];
        for &l in &lb {
            h[l as usize] += 1;
        }
        assert!(h.iter().all(|&n| (174..=183).contains(&n)), "{h:?}");
        // Real strokes: every image has ink and background, corner pixels are mostly blank.
        assert!(px.chunks(64).all(|im| im.contains(&0) && im.iter().any(|&v| v > 128)));
        let corner_ink = px.chunks(64).filter(|im| im[0] > 0).count();
        assert!(corner_ink < 10, "{corner_ink}");
    }
}
