//! Fixed-point decimal text for the request path (the log line, the cost and overhead
//! headers): `{:.N}` float formatting cost ~2k instructions a number there; integer digits
//! through itoa cost a twentieth of that. Values outside what fits in integers fall back to
//! `{:.N}`.

use std::fmt::Write;

/// Appends `value` with exactly `places` decimals, rounded half away from zero.
pub fn push(out: &mut String, value: f64, places: u32) {
    let scale = 10u64.pow(places.min(18));
    let scaled = (value.abs() * scale as f64).round();
    if !scaled.is_finite() || scaled >= u64::MAX as f64 {
        let _ = write!(out, "{value:.prec$}", prec = places as usize);
        return;
    }
    let scaled = scaled as u64;
    if value.is_sign_negative() && scaled != 0 {
        out.push('-');
    }
    let mut digits = itoa::Buffer::new();
    out.push_str(digits.format(scaled / scale));
    if places > 0 {
        out.push('.');
        let fraction = digits.format(scaled % scale);
        out.extend(std::iter::repeat_n('0', (places as usize).saturating_sub(fraction.len())));
        out.push_str(fraction);
    }
}

/// `value` with exactly `places` decimals.
pub fn text(value: f64, places: u32) -> String {
    let mut out = String::with_capacity(24);
    push(&mut out, value, places);
    out
}

#[cfg(test)]
mod tests {
    use super::text;

    #[test]
    fn matches_float_formatting() {
        for (value, places) in [
            (0.0, 8),
            (0.000_003, 8),
            (1.5, 3),
            (12.345_6, 1),
            (0.25, 0),
            (1_234.000_1, 3),
            (-2.5, 2),
            (0.000_000_004, 8),
            (7.0, 0),
        ] {
            assert_eq!(text(value, places), format!("{value:.prec$}", prec = places as usize), "{value} {places}");
        }
        assert_eq!(text(0.125, 2), "0.13", "half rounds away from zero");
        assert_eq!(text(f64::INFINITY, 2), "inf");
    }
}
