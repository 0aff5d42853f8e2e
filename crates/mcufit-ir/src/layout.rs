//! Kernel layout conversions between mcufit's (TFLite's) layouts and the channel-first ones of
//! training backends and ONNX. Row-major f32; every function returns a new buffer of `v.len()`.

/// `[o, i, kh, kw]` (burn, ONNX) → `[o, kh, kw, i]` (OHWI).
pub fn oihw_to_ohwi(v: &[f32], [o, i, kh, kw]: [usize; 4]) -> Vec<f32> {
    let mut out = vec![0f32; v.len()];
    for a in 0..o {
        for b in 0..i {
            for y in 0..kh {
                for x in 0..kw {
                    out[((a * kh + y) * kw + x) * i + b] = v[((a * i + b) * kh + y) * kw + x];
                }
            }
        }
    }
    out
}

/// `[o, kh, kw, i]` (OHWI) → `[o, i, kh, kw]`.
pub fn ohwi_to_oihw(v: &[f32], [o, kh, kw, i]: [usize; 4]) -> Vec<f32> {
    let mut out = vec![0f32; v.len()];
    for a in 0..o {
        for y in 0..kh {
            for x in 0..kw {
                for b in 0..i {
                    out[((a * i + b) * kh + y) * kw + x] = v[((a * kh + y) * kw + x) * i + b];
                }
            }
        }
    }
    out
}

/// A `rows x cols` matrix transposed to `cols x rows`. Also the depthwise kernel conversions:
/// `[c, 1, kh, kw]` → `[1, kh, kw, c]` is `transpose(v, c, kh * kw)`, and back
/// `transpose(v, kh * kw, c)`.
pub fn transpose(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; v.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = v[r * cols + c];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_invert_each_other() {
        let v: Vec<f32> = (0..2 * 3 * 4 * 5).map(|x| x as f32).collect();
        let ohwi = oihw_to_ohwi(&v, [2, 3, 4, 5]);
        // Element (o=1, i=2, y=3, x=4) of OIHW lands at (o=1, y=3, x=4, i=2) of OHWI.
        assert_eq!(ohwi[((4 + 3) * 5 + 4) * 3 + 2], v[((3 + 2) * 4 + 3) * 5 + 4]);
        assert_eq!(ohwi_to_oihw(&ohwi, [2, 4, 5, 3]), v);
        let t = transpose(&v, 6, 20);
        assert_eq!(t[7 * 6 + 5], v[5 * 20 + 7]);
        assert_eq!(transpose(&t, 20, 6), v);
    }
}
