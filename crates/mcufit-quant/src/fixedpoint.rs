//! gemmlowp / TFLite fixed-point primitives, reproduced bit for bit.
//!
//! Sources mirrored (TFLite Micro, double-rounding build, which is the default):
//! `fixedpoint/fixedpoint.h` (gemmlowp), `tensorflow/lite/kernels/internal/common.{h,cc}` and
//! `quantization_util.cc`. C++ signed overflow in these helpers is UB but wraps in practice on
//! every target TFLM runs on; the Rust versions use explicit wrapping arithmetic to match.

/// `gemmlowp::SaturatingRoundingDoublingHighMul` (ARM `VQRDMULH`): `round(a * b / 2^31)`,
/// saturating the single overflow case `MIN * MIN`.
#[inline]
pub fn saturating_rounding_doubling_high_mul(a: i32, b: i32) -> i32 {
    if a == b && a == i32::MIN {
        return i32::MAX;
    }
    let ab = a as i64 * b as i64;
    let nudge: i64 = if ab >= 0 { 1 << 30 } else { 1 - (1 << 30) };
    // C++ integer division truncates toward zero, as Rust's does.
    ((ab + nudge) / (1i64 << 31)) as i32
}

/// `gemmlowp::RoundingDivideByPOT`: rounding arithmetic right shift, ties away from zero.
/// `exponent` must be in `0..=31` (callers validate; out-of-range values are clamped).
#[inline]
pub fn rounding_divide_by_pot(x: i32, exponent: i32) -> i32 {
    let exponent = exponent.clamp(0, 31);
    let mask = ((1i64 << exponent) - 1) as i32;
    let remainder = x & mask;
    let threshold = (mask >> 1) + i32::from(x < 0);
    (x >> exponent) + i32::from(remainder > threshold)
}

/// Saturating left shift (`SaturatingRoundingMultiplyByPOT` with a positive exponent); a negative
/// exponent is a rounding right shift.
#[inline]
pub fn saturating_rounding_multiply_by_pot(x: i32, exponent: i32) -> i32 {
    if exponent == 0 {
        x
    } else if exponent > 0 {
        let threshold = (1i32 << (31 - exponent)) - 1;
        if x > threshold {
            i32::MAX
        } else if x < -threshold {
            i32::MIN
        } else {
            x.wrapping_shl(exponent as u32)
        }
    } else {
        rounding_divide_by_pot(x, -exponent)
    }
}

/// TFLM `MultiplyByQuantizedMultiplier(int32_t x, int32_t qm, int shift)` (double rounding):
/// used by CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED.
#[inline]
pub fn multiply_by_quantized_multiplier(x: i32, quantized_multiplier: i32, shift: i32) -> i32 {
    let left_shift = shift.max(0);
    let right_shift = (-shift).max(0);
    rounding_divide_by_pot(
        saturating_rounding_doubling_high_mul(
            x.wrapping_mul(1i32.wrapping_shl(left_shift as u32)),
            quantized_multiplier,
        ),
        right_shift,
    )
}

/// TFLM `MultiplyByQuantizedMultiplierSmallerThanOneExp` (used by ADD): `shift <= 0`.
#[inline]
pub fn multiply_by_quantized_multiplier_smaller_than_one_exp(
    x: i32,
    quantized_multiplier: i32,
    left_shift: i32,
) -> i32 {
    rounding_divide_by_pot(saturating_rounding_doubling_high_mul(x, quantized_multiplier), -left_shift)
}

/// TFLM `MultiplyByQuantizedMultiplierGreaterThanOne` (used by SOFTMAX): `shift >= 0`.
#[inline]
pub fn multiply_by_quantized_multiplier_greater_than_one(x: i32, quantized_multiplier: i32, left_shift: i32) -> i32 {
    saturating_rounding_doubling_high_mul(x.wrapping_mul(1i32.wrapping_shl(left_shift as u32)), quantized_multiplier)
}

/// C `frexp`: `x = m * 2^e` with `0.5 <= |m| < 1` (for finite, non-zero `x`).
pub fn frexp(x: f64) -> (f64, i32) {
    if x == 0.0 || !x.is_finite() {
        return (x, 0);
    }
    let bits = x.to_bits();
    let exp_bits = ((bits >> 52) & 0x7ff) as i32;
    if exp_bits == 0 {
        // Subnormal: scale into the normal range first.
        let (m, e) = frexp(x * f64::from_bits(0x43f0_0000_0000_0000)); // 2^64
        return (m, e - 64);
    }
    let e = exp_bits - 1022;
    let m = f64::from_bits((bits & !(0x7ffu64 << 52)) | (1022u64 << 52));
    (m, e)
}

/// Error from [`quantize_multiplier`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MultiplierError {
    #[error("real multiplier {0} is not a finite non-negative number")]
    NotFinite(f64),
    #[error("real multiplier {value} needs a left shift of {shift} (TFLM supports at most 30)")]
    TooLarge { value: f64, shift: i32 },
}

/// TFLM `QuantizeMultiplier`: `m ≈ q * 2^(shift - 31)` with `q` in `[2^30, 2^31)`.
/// Returns `(quantized_multiplier, shift)`; tiny multipliers flush to `(0, 0)` as in TFLM.
pub fn quantize_multiplier(m: f64) -> Result<(i32, i32), MultiplierError> {
    if !m.is_finite() || m < 0.0 {
        return Err(MultiplierError::NotFinite(m));
    }
    if m == 0.0 {
        return Ok((0, 0));
    }
    let (q, mut shift) = frexp(m);
    // TfLiteRound is std::round: half away from zero, like f64::round.
    let mut q_fixed = (q * (1i64 << 31) as f64).round() as i64;
    if q_fixed == 1i64 << 31 {
        q_fixed /= 2;
        shift += 1;
    }
    if shift < -31 {
        shift = 0;
        q_fixed = 0;
    }
    if shift > 30 {
        return Err(MultiplierError::TooLarge { value: m, shift });
    }
    Ok((q_fixed as i32, shift))
}

/// `QuantizeMultiplierSmallerThanOneExp`: requires `0 < m < 1`.
pub fn quantize_multiplier_smaller_than_one(m: f64) -> Result<(i32, i32), MultiplierError> {
    if m.is_nan() || m <= 0.0 || m >= 1.0 {
        return Err(MultiplierError::NotFinite(m));
    }
    quantize_multiplier(m)
}

/// `QuantizeMultiplierGreaterThanOne`: requires `m > 1`.
pub fn quantize_multiplier_greater_than_one(m: f64) -> Result<(i32, i32), MultiplierError> {
    if m.is_nan() || m <= 1.0 || !m.is_finite() {
        return Err(MultiplierError::NotFinite(m));
    }
    quantize_multiplier(m)
}

// ---- gemmlowp fixed-point math used by int8 SOFTMAX ---------------------------------------------

/// `Rescale<dst>(FixedPoint<int32, src>)`.
#[inline]
fn rescale(x: i32, src_integer_bits: i32, dst_integer_bits: i32) -> i32 {
    saturating_rounding_multiply_by_pot(x, src_integer_bits - dst_integer_bits)
}

/// `exp_on_interval_between_negative_one_quarter_and_0_excl` on Q0.31.
fn exp_on_interval_between_negative_one_quarter_and_0_excl(a: i32) -> i32 {
    const CONSTANT_TERM: i32 = 1_895_147_668; // exp(-1/8)
    const CONSTANT_1_OVER_3: i32 = 715_827_883;
    let srdhm = saturating_rounding_doubling_high_mul;
    let x = a.wrapping_add(1 << 28); // a + 1/8
    let x2 = srdhm(x, x);
    let x3 = srdhm(x2, x);
    let x4 = srdhm(x2, x2);
    let x4_over_4 = rounding_divide_by_pot(x4, 2);
    let poly = rounding_divide_by_pot(srdhm(x4_over_4.wrapping_add(x3), CONSTANT_1_OVER_3).wrapping_add(x2), 1);
    CONSTANT_TERM.wrapping_add(srdhm(CONSTANT_TERM, x.wrapping_add(poly)))
}

/// `gemmlowp::exp_on_negative_values` for `FixedPoint<int32, integer_bits>` input; returns Q0.31.
pub fn exp_on_negative_values(a: i32, integer_bits: i32) -> i32 {
    let fractional_bits = 31 - integer_bits;
    let one_quarter = 1i32 << (fractional_bits - 2);
    let mask = one_quarter - 1;
    let a_mod_quarter_minus_one_quarter = (a & mask).wrapping_sub(one_quarter);
    let mut result = exp_on_interval_between_negative_one_quarter_and_0_excl(rescale(
        a_mod_quarter_minus_one_quarter,
        integer_bits,
        0,
    ));
    let remainder = a_mod_quarter_minus_one_quarter.wrapping_sub(a);
    const BARREL: [(i32, i32); 7] = [
        (-2, 1_672_461_947),
        (-1, 1_302_514_674),
        (0, 790_015_084),
        (1, 290_630_308),
        (2, 39_332_535),
        (3, 720_401),
        (4, 242),
    ];
    for (exponent, multiplier) in BARREL {
        if integer_bits > exponent {
            let shift_amount = fractional_bits + exponent;
            if remainder & (1i32 << shift_amount) != 0 {
                result = saturating_rounding_doubling_high_mul(result, multiplier);
            }
        }
    }
    if integer_bits > 5 {
        let clamp = -(1i32 << (36 - integer_bits)); // -32.0
        if a < clamp {
            result = 0;
        }
    }
    if a == 0 {
        result = i32::MAX; // FixedPoint<int32,0>::One()
    }
    result
}

/// `gemmlowp::RoundingHalfSum` for int32.
#[inline]
fn rounding_half_sum(a: i32, b: i32) -> i32 {
    let sum = a as i64 + b as i64;
    let sign = if sum >= 0 { 1 } else { -1 };
    ((sum + sign) / 2) as i32
}

/// `gemmlowp::one_over_one_plus_x_for_x_in_0_1` on Q0.31.
pub fn one_over_one_plus_x_for_x_in_0_1(a: i32) -> i32 {
    let srdhm = saturating_rounding_doubling_high_mul;
    let half_denominator = rounding_half_sum(a, i32::MAX);
    const C48_OVER_17: i32 = 1_515_870_810; // Q2.29
    const CNEG32_OVER_17: i32 = -1_010_580_540; // Q2.29
    const F2_ONE: i32 = 1 << 29;
    let mut x = C48_OVER_17.wrapping_add(srdhm(half_denominator, CNEG32_OVER_17));
    for _ in 0..3 {
        let half_denominator_times_x = srdhm(half_denominator, x);
        let one_minus = F2_ONE.wrapping_sub(half_denominator_times_x);
        x = x.wrapping_add(rescale(srdhm(x, one_minus), 4, 2));
    }
    // ExactMulByPot<-1> turns Q2 into Q1 with the same raw value; then Rescale<0>.
    rescale(x, 1, 0)
}

/// TFLite `GetReciprocal(x, x_integer_digits, &num_bits_over_unit)`; returns `(raw, num_bits_over_unit)`.
pub fn get_reciprocal(x: i32, x_integer_digits: i32) -> (i32, i32) {
    let headroom_plus_one = (x as u32).leading_zeros() as i32;
    let num_bits_over_unit = x_integer_digits - headroom_plus_one;
    let shifted = if headroom_plus_one >= 32 { 0 } else { (x as u32) << headroom_plus_one };
    let shifted_sum_minus_one = shifted.wrapping_sub(1u32 << 31) as i32;
    (one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one), num_bits_over_unit)
}

/// TFLite `PreprocessSoftmaxScaling` (double-rounding build); returns `(multiplier, left_shift)`.
pub fn preprocess_softmax_scaling(
    beta: f64,
    input_scale: f64,
    input_integer_bits: i32,
) -> Result<(i32, i32), MultiplierError> {
    let max_real_multiplier = ((1i64 << 31) - 1) as f64;
    let m = (beta * input_scale * (1i64 << (31 - input_integer_bits)) as f64).min(max_real_multiplier);
    quantize_multiplier_greater_than_one(m)
}

/// TFLite `CalculateInputRadius(input_integer_bits, input_left_shift, total_signed_bits = 31)`.
pub fn calculate_input_radius(input_integer_bits: i32, input_left_shift: i32) -> i32 {
    let max_input_rescaled =
        1.0 * ((1i64 << input_integer_bits) - 1) as f64 * (1i64 << (31 - input_integer_bits)) as f64
            / (1i64 << input_left_shift) as f64;
    max_input_rescaled.floor() as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frexp_matches_definition() {
        for &x in &[1.0, 0.5, 0.75, 3.0, 1e-10, 123456.789, 2.0f64.powi(-1070), f64::MIN_POSITIVE] {
            let (m, e) = frexp(x);
            assert!((0.5..1.0).contains(&m), "{x}: m={m}");
            assert_eq!(m * 2f64.powi(e + 200) * 2f64.powi(-200), x);
        }
    }

    #[test]
    fn quantize_multiplier_known_values() {
        assert_eq!(quantize_multiplier(0.5).unwrap(), (1 << 30, 0));
        assert_eq!(quantize_multiplier(1.0).unwrap(), (1 << 30, 1));
        assert_eq!(quantize_multiplier(0.0).unwrap(), (0, 0));
        // Rounds up to 2^31 and renormalises.
        assert_eq!(quantize_multiplier(1.0 - 1e-12).unwrap(), (1 << 30, 1));
        assert_eq!(quantize_multiplier(1e-12).unwrap(), (0, 0));
        assert!(quantize_multiplier(f64::NAN).is_err());
        assert!(quantize_multiplier(-1.0).is_err());
        assert!(quantize_multiplier(2f64.powi(40)).is_err());
    }

    #[test]
    fn rounding_divide_ties_away_from_zero() {
        assert_eq!(rounding_divide_by_pot(5, 1), 3);
        assert_eq!(rounding_divide_by_pot(-5, 1), -3);
        assert_eq!(rounding_divide_by_pot(4, 1), 2);
        assert_eq!(rounding_divide_by_pot(-7, 2), -2);
        assert_eq!(rounding_divide_by_pot(i32::MIN, 31), -1);
        assert_eq!(rounding_divide_by_pot(i32::MAX, 31), 1);
    }

    #[test]
    fn exp_is_close_to_float_exp() {
        // Q5.26 inputs from -31 to 0.
        for i in 0..=310 {
            let v = -(i as f64) / 10.0;
            let raw = (v * (1i64 << 26) as f64) as i32;
            let got = exp_on_negative_values(raw, 5) as f64 / 2f64.powi(31);
            assert!((got - v.exp()).abs() < 2e-6, "exp({v}) = {got}");
        }
    }

    #[test]
    fn reciprocal_is_close() {
        for i in 1..200 {
            let x = 1.0 + i as f64 * 0.37; // in Q12.19
            let raw = (x * (1i64 << 19) as f64) as i32;
            let (r, bits) = get_reciprocal(raw, 12);
            let got = r as f64 / 2f64.powi(31) / 2f64.powi(bits);
            assert!((got - 1.0 / x).abs() < 1e-6 / x, "1/{x}: {got}");
        }
    }
}
