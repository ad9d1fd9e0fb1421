//! Fixed-point decimal text for the request path (the log line, the cost and overhead
//! headers): `{:.N}` float formatting cost ~2k instructions a number there; integer digits
//! through itoa cost a twentieth of that. Values outside what fits in integers fall back to
//! `{:.N}`.

use std::fmt::Write;

/// Room for any text [`fixed`] writes: a sign, 20 integer digits, a point and 18 places.
pub const FIXED_ROOM: usize = 40;

/// Appends `value` with exactly `places` decimals, rounded half away from zero.
pub fn push(out: &mut String, value: f64, places: u32) {
    let mut text = [0; FIXED_ROOM];
    match fixed(&mut text, value, places) {
        // Only ASCII digits, a sign and a point were written.
        Some(len) => out.push_str(std::str::from_utf8(&text[..len]).unwrap_or_default()),
        None => {
            let _ = write!(out, "{value:.prec$}", prec = places as usize);
        }
    }
}

/// Writes `value` with exactly `places` decimals into `out` and gives its length: a header
/// value's text with no `String` made for it. `None` for a value whose digits do not fit in
/// integers (or is not finite) and past 18 places, which `{:.N}` writes.
pub fn fixed(out: &mut [u8; FIXED_ROOM], value: f64, places: u32) -> Option<usize> {
    if places > 18 {
        return None;
    }
    let scale = 10u64.pow(places);
    let scaled = (value.abs() * scale as f64).round();
    if !scaled.is_finite() || scaled >= u64::MAX as f64 {
        return None;
    }
    let scaled = scaled as u64;
    let mut len = 0;
    let mut put = |bytes: &[u8]| {
        out[len..len + bytes.len()].copy_from_slice(bytes);
        len += bytes.len();
    };
    if value.is_sign_negative() && scaled != 0 {
        put(b"-");
    }
    let mut digits = itoa::Buffer::new();
    put(digits.format(scaled / scale).as_bytes());
    if places > 0 {
        put(b".");
        let fraction = digits.format(scaled % scale);
        for _ in fraction.len()..places as usize {
            put(b"0");
        }
        put(fraction.as_bytes());
    }
    Some(len)
}

/// `value` with exactly `places` decimals.
pub fn text(value: f64, places: u32) -> String {
    let mut out = String::with_capacity(24);
    push(&mut out, value, places);
    out
}

#[cfg(test)]
mod tests {
    use super::{fixed, text, FIXED_ROOM};

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

    #[test]
    fn fixed_writes_what_text_does_and_leaves_the_rest_to_float_formatting() {
        let mut room = [0; FIXED_ROOM];
        for value in [0.0, 0.000_122_5, 1.25, -3.5, 99_999.999_9, 1.8e19, 1e12] {
            for places in 0..=8 {
                let Some(len) = fixed(&mut room, value, places) else { continue };
                let written = std::str::from_utf8(&room[..len]).unwrap();
                // Exactly `places` decimals, within half of the last one of the value.
                let decimals = written.split_once('.').map_or(0, |(_, d)| d.len());
                assert_eq!(decimals, places as usize, "{value} {places}: {written}");
                let off = (written.parse::<f64>().unwrap() - value).abs();
                let half = 0.5 / 10f64.powi(places as i32);
                assert!(off <= half * (1.0 + 1e-9) + value.abs() * 1e-15, "{value} {places}: {written}");
            }
        }
        assert_eq!(fixed(&mut room, 1.0, 19), None, "past 18 places");
        assert_eq!(fixed(&mut room, 1e300, 2), None, "past integers");
        assert_eq!(fixed(&mut room, f64::NAN, 2), None);
        let len = fixed(&mut room, -1.25e-16, 18).unwrap();
        assert_eq!(&room[..len], b"-0.000000000000000125", "a sign and 18 places");
        assert_eq!(text(1e300, 2), format!("{:.2}", 1e300));
    }
}
