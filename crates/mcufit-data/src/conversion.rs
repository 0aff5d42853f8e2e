//! The note a loader leaves when it converts samples to `LoadOptions::target_shape`.
//!
//! The library never prints: [`crate::Splits::conversion`] carries what was done and its
//! [`Display`](std::fmt::Display) gives one sentence for a front end to show once.

use std::collections::BTreeSet;
use std::fmt;

/// How samples were resized.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Resize {
    /// Bilinear interpolation (the `image` crate's triangle filter) to the exact target height
    /// and width; the aspect ratio is not kept.
    Bilinear,
}

/// How the channel count was changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChannelChange {
    /// One grey channel replicated to R, G and B.
    GrayToRgb,
    /// R, G, B to one grey channel by the sRGB luma weights (0.2126, 0.7152, 0.0722).
    RgbToGray,
}

/// What a loader did to make its samples match the requested shape.
///
/// Present in [`crate::Splits`] only when at least one sample was converted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conversion {
    /// The distinct source shapes `[h, w, c]` of the converted samples, ascending.
    pub from: Vec<[usize; 3]>,
    /// The shape every sample now has.
    pub to: [usize; 3],
    /// The resize method, when the height or width changed.
    pub resize: Option<Resize>,
    /// The channel change, when the channel count changed.
    pub channels: Option<ChannelChange>,
    /// Samples converted (over the three splits).
    pub converted: usize,
    /// Samples in the three splits.
    pub total: usize,
}

impl Conversion {
    /// The note for samples of the given source shapes (one entry per sample, c in {1, 3})
    /// converted to `to`; `None` when every sample already had shape `to`.
    pub(crate) fn of(sources: impl IntoIterator<Item = [usize; 3]>, to: [usize; 3]) -> Option<Conversion> {
        let (mut total, mut converted) = (0, 0);
        let mut from = BTreeSet::new();
        for s in sources {
            total += 1;
            if s != to {
                converted += 1;
                from.insert(s);
            }
        }
        if converted == 0 {
            return None;
        }
        let resize = from.iter().any(|s| s[..2] != to[..2]).then_some(Resize::Bilinear);
        let channels = from.iter().any(|s| s[2] != to[2]).then_some(if to[2] == 1 {
            ChannelChange::RgbToGray
        } else {
            ChannelChange::GrayToRgb
        });
        Some(Conversion { from: from.into_iter().collect(), to, resize, channels, converted, total })
    }

    /// `n` samples, all of shape `from`, converted to `to`.
    pub(crate) fn uniform(from: [usize; 3], to: [usize; 3], n: usize) -> Option<Conversion> {
        if n == 0 {
            return None;
        }
        Conversion::of(std::iter::repeat_n(from, n), to)
    }
}

fn shape(s: &[usize; 3]) -> String {
    format!("{}x{}x{}", s[0], s[1], s[2])
}

/// Source shapes listed in full up to this many; beyond, "and N other sizes".
const LISTED: usize = 3;

impl fmt::Display for Conversion {
    /// One sentence, e.g. `images resized 28x28x1 → 32x32x3 (bilinear, gray replicated to RGB)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.converted < self.total {
            write!(f, "{} of {} images", self.converted, self.total)?;
        } else {
            write!(f, "images")?;
        }
        let verb = if self.resize.is_some() { "resized" } else { "converted" };
        let mut from: Vec<String> = self.from.iter().take(LISTED).map(shape).collect();
        if self.from.len() > LISTED {
            let rest = self.from.len() - LISTED;
            let last = from.pop().unwrap_or_default();
            from.push(format!("{last} and {rest} other size{}", if rest == 1 { "" } else { "s" }));
        }
        write!(f, " {verb} {} → {}", from.join(", "), shape(&self.to))?;
        let mut how = Vec::new();
        if let Some(Resize::Bilinear) = self.resize {
            how.push("bilinear");
        }
        match self.channels {
            Some(ChannelChange::GrayToRgb) => how.push("gray replicated to RGB"),
            Some(ChannelChange::RgbToGray) => how.push("RGB to gray by luma"),
            None => {}
        }
        write!(f, " ({})", how.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentence_and_fields() {
        let c = Conversion::uniform([28, 28, 1], [32, 32, 3], 5).unwrap();
        assert_eq!(c.to_string(), "images resized 28x28x1 → 32x32x3 (bilinear, gray replicated to RGB)");
        assert_eq!(
            (c.resize, c.channels, c.converted, c.total),
            (Some(Resize::Bilinear), Some(ChannelChange::GrayToRgb), 5, 5)
        );
        let c = Conversion::uniform([32, 32, 3], [32, 32, 1], 2).unwrap();
        assert_eq!(c.to_string(), "images converted 32x32x3 → 32x32x1 (RGB to gray by luma)");
        assert!(Conversion::uniform([8, 8, 1], [8, 8, 1], 9).is_none());
        assert!(Conversion::uniform([8, 8, 1], [9, 8, 1], 0).is_none());
        let mixed = [[10, 10, 3], [10, 10, 3], [20, 10, 3], [5, 5, 1], [7, 7, 3], [32, 32, 3]];
        let c = Conversion::of(mixed, [32, 32, 3]).unwrap();
        assert_eq!((c.converted, c.total, c.from.len()), (5, 6, 4));
        assert_eq!(
            c.to_string(),
            "5 of 6 images resized 5x5x1, 7x7x3, 10x10x3 and 1 other size → 32x32x3 (bilinear, gray replicated to RGB)"
        );
    }
}
