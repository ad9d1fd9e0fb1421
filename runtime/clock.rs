//! The wall clock, read in the two units the gateway keeps time in, precisely or to the last
//! clock tick. A leaf every layer may read; the request path reads it once per decision, not
//! once per deployment.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix seconds.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Unix milliseconds as of the kernel's last clock tick (1 to 4 ms ago): for minute windows,
/// budget periods, cooldowns and expiries, which a request checks several times. A precise read
/// measures the time-stamp counter, several times the cost of this one, which reads what the
/// kernel stored at its tick.
pub fn coarse_ms() -> u64 {
    #[cfg(target_os = "linux")]
    {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
        u64::try_from(t.tv_sec).unwrap_or(0) * 1000 + u64::try_from(t.tv_nsec).unwrap_or(0) / 1_000_000
    }
    #[cfg(not(target_os = "linux"))]
    {
        now_ms()
    }
}

/// Unix seconds, as [`coarse_ms`] reads them.
pub fn coarse_secs() -> u64 {
    coarse_ms() / 1000
}

/// Seconds from `at_secs` (Unix seconds) to the next whole minute, when per-minute windows
/// start again: a rate limit's `Retry-After`.
pub fn seconds_left_in_minute(at_secs: u64) -> u64 {
    60 - at_secs % 60
}

/// Unix milliseconds as RFC 3339 in UTC, to the millisecond: `2025-01-02T03:04:05.678Z`.
pub fn rfc3339_ms(ms: u64) -> String {
    let (secs, millis) = (ms / 1000, ms % 1000);
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    let (h, m, s) = (rest / 3600, rest % 3600 / 60, rest % 60);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{millis:03}Z")
}

/// An instant as people and scripts write it: Unix seconds (`1735689600`, `1735689600.5`) or
/// RFC 3339 (`2025-01-01T00:00:00Z`, `2025-01-01T01:00:00+01:00`, fractions allowed; a bare
/// `2025-01-01` is its midnight UTC). Unix milliseconds; `None` when it is neither, or before 1970.
pub fn parse_instant(text: &str) -> Option<u64> {
    let text = text.trim();
    if text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let seconds: f64 = text.parse().ok()?;
        return (seconds.is_finite() && seconds < 1e15).then(|| (seconds * 1000.0).round() as u64);
    }
    parse_rfc3339(text)
}

fn parse_rfc3339(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = b.get(range)?;
        digits.iter().all(u8::is_ascii_digit).then(|| digits.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
    };
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    if b.len() == 10 {
        return u64::try_from(days * 86_400_000).ok();
    }
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) || b.get(13) != Some(&b':') || b.get(16) != Some(&b':') {
        return None;
    }
    let (h, m, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if h > 23 || m > 59 || s > 60 {
        return None;
    }
    let mut i = 19;
    let mut millis = 0;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
        // Milliseconds: the first three digits of the fraction, padded.
        let digits = &b[start..i.min(start + 3)];
        millis = digits.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')) * 10i64.pow(3 - digits.len() as u32);
    }
    let offset = match &b[i..] {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let minutes = oh * 60 + om;
            if *sign == b'+' {
                minutes
            } else {
                -minutes
            }
        }
        _ => return None,
    };
    let seconds = days * 86_400 + h * 3600 + m * 60 + s - offset * 60;
    u64::try_from(seconds * 1000 + millis).ok()
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day since 1970-01-01 (the inverse of [`days_from_civil`]).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (if month <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coarse_clock_trails_the_precise_one_by_at_most_a_few_ticks() {
        let mut last = 0;
        for _ in 0..1000 {
            let before = now_ms();
            let coarse = coarse_ms();
            let after = now_ms();
            // A tick is at most 10 ms (HZ=100); the margin allows for a descheduled thread.
            assert!(coarse + 50 >= before && coarse <= after, "{before} {coarse} {after}");
            assert!(coarse >= last, "never backwards while the wall clock is not set back");
            last = coarse;
        }
    }

    #[test]
    fn instants_read_as_unix_seconds_or_rfc_3339_and_print_back() {
        assert_eq!(parse_instant("1735689600"), Some(1_735_689_600_000));
        assert_eq!(parse_instant("1735689600.25"), Some(1_735_689_600_250));
        assert_eq!(parse_instant("2025-01-01T00:00:00Z"), Some(1_735_689_600_000));
        assert_eq!(parse_instant("2025-01-01"), Some(1_735_689_600_000));
        assert_eq!(parse_instant("2025-01-01T01:00:00.5+01:00"), Some(1_735_689_600_500));
        assert_eq!(parse_instant("2024-12-31T19:00:00-05:00"), Some(1_735_689_600_000));
        assert_eq!(parse_instant("2024-02-29T12:00:00.123456Z"), Some(1_709_208_000_123));
        for bad in ["", "yesterday", "2025-13-01", "2023-02-29", "2025-01-01T25:00:00Z", "2025-01-01T00:00:00", "1e9"] {
            assert_eq!(parse_instant(bad), None, "{bad:?}");
        }
        assert_eq!(rfc3339_ms(1_735_689_600_250), "2025-01-01T00:00:00.250Z");
        assert_eq!(rfc3339_ms(1_709_208_000_123), "2024-02-29T12:00:00.123Z");
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        for ms in [0, 951_782_400_000, 1_709_208_000_123, 4_102_444_799_999] {
            assert_eq!(parse_instant(&rfc3339_ms(ms)), Some(ms));
        }
    }
}
