//! Allocation-free RFC 3339 timestamps, JSON string literals and set
//! lists for the output hot path. Both must produce exactly the bytes of the slow paths
//! they replace (`format_time`, `serde_json::to_string`).

use std::cell::Cell;

use crate::record::{FieldType, SetOf, Time};
use crate::value::{Value, ValueSet};

/// The last millisecond of year 9999: beyond it the four-digit year of the
/// fast path would no longer match `format_time`.
const MAX_FAST_MS: i64 = 253_402_300_799_999;

thread_local! {
    /// `YYYY-MM-DDT` of the day written last: the times of a run's matches
    /// fall on few days, and the calendar arithmetic was most of the cost
    /// of a timestamp.
    static DAY: Cell<(i64, [u8; 11])> = const { Cell::new((-1, [0; 11])) };
}

/// "00" to "99", two bytes each.
const TWO_DIGITS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Append `format_time(ms)` to `out` without allocating (except for times
/// outside 1970..=9999, which take the `time` crate path).
pub(crate) fn write_time(out: &mut Vec<u8>, ms: Time) {
    if !(0..=MAX_FAST_MS).contains(&ms) {
        out.extend_from_slice(super::format_time(ms).as_bytes());
        return;
    }
    let (days, ms_of_day) = (ms / 86_400_000, ms % 86_400_000);
    let date = DAY.with(|cached| match cached.get() {
        (d, date) if d == days => date,
        _ => {
            let date = date_part(days);
            cached.set((days, date));
            date
        }
    });
    let secs = ms_of_day / 1000;
    let mut b = *b"0000-00-00T00:00:00.000Z";
    b[..11].copy_from_slice(&date);
    two_digits(&mut b[11..13], secs / 3600);
    two_digits(&mut b[14..16], secs / 60 % 60);
    two_digits(&mut b[17..19], secs % 60);
    let milli = ms_of_day % 1000;
    b[20] = b'0' + (milli / 100) as u8;
    two_digits(&mut b[21..23], milli % 100);
    out.extend_from_slice(&b);
}

/// `YYYY-MM-DDT` of a day count since 1970-01-01 (days >= 0).
fn date_part(days: i64) -> [u8; 11] {
    let (year, month, day) = civil_from_days(days);
    let mut b = *b"0000-00-00T";
    digits(&mut b[0..4], year);
    digits(&mut b[5..7], month);
    digits(&mut b[8..10], day);
    b
}

/// `v` (0..=99) as two digits.
fn two_digits(dst: &mut [u8], v: i64) {
    // Callers pass 0..=99 (hours, minutes, seconds, a remainder of 100).
    let i = (v as usize % 100) * 2;
    dst.copy_from_slice(&TWO_DIGITS[i..i + 2]);
}

/// Zero-padded decimal of `v` filling `dst` (v fits: callers bound it).
fn digits(dst: &mut [u8], mut v: i64) {
    for d in dst.iter_mut().rev() {
        // v is non-negative and each digit is 0..=9.
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// (year, month, day) of a day count since 1970-01-01 (days >= 0), after
/// Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A JSON string literal, escaped exactly as serde_json does; strings that
/// need no escaping (the usual case) are copied without allocation.
pub(crate) fn write_json_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        match serde_json::to_string(s) {
            Ok(q) => out.extend_from_slice(q.as_bytes()),
            Err(_) => out.extend_from_slice(b"\"\""),
        }
        return;
    }
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

/// `"name":` for an object key that is a field name: an identifier of
/// the grammar or a name of the IANA table, so nothing in it needs escaping
/// (the per-byte check of [`write_json_str`] showed up per field).
pub(crate) fn write_key(out: &mut Vec<u8>, name: &str) {
    debug_assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

/// Decimal integer without going through `fmt`.
pub(crate) fn write_uint(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// An address as `Display` prints it; IPv4 without `fmt`.
pub(crate) fn write_ip(out: &mut Vec<u8>, ip: &std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let mut buf = itoa::Buffer::new();
            for (i, o) in v4.octets().iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(buf.format(*o).as_bytes());
            }
        }
        std::net::IpAddr::V6(v6) => {
            use std::io::Write as _;
            // Writing into a Vec cannot fail.
            let _ = write!(out, "{v6}");
        }
    }
}

/// A set field's members, `open`ed and `close`d, comma-separated, each
/// written by `elem` with the members' type (times or plain numbers).
pub(crate) fn write_set(
    out: &mut Vec<u8>,
    ty: FieldType,
    set: &ValueSet,
    (open, close): (u8, u8),
    elem: impl Fn(&mut Vec<u8>, FieldType, &Value),
) {
    let elem_ty = match ty {
        FieldType::Set(SetOf::Time) => FieldType::Time,
        _ => FieldType::Uint,
    };
    out.push(open);
    for (i, e) in set.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        elem(out, elem_ty, e);
    }
    out.push(close);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn time_str(ms: Time) -> String {
        let mut v = Vec::new();
        write_time(&mut v, ms);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn edges_match_the_slow_path() {
        for ms in [
            0,
            999,
            86_399_999,
            86_400_000,
            951_782_400_000, // 2000-02-29
            4_107_542_399_999,
            MAX_FAST_MS,
            MAX_FAST_MS + 1,
            -1,
            -86_400_001,
            i64::MAX,
            i64::MIN,
        ] {
            assert_eq!(time_str(ms), super::super::format_time(ms), "{ms}");
        }
    }

    #[test]
    fn escapes_like_serde_json() {
        for s in ["", "plain", "a\"b\\c\n", "tab\t", "\u{1}", "ünï\u{7f}"] {
            let mut v = Vec::new();
            write_json_str(&mut v, s);
            assert_eq!(
                String::from_utf8(v).unwrap(),
                serde_json::to_string(s).unwrap()
            );
        }
    }

    #[test]
    fn addresses_print_like_display() {
        for s in [
            "0.0.0.0",
            "10.0.0.5",
            "255.255.255.255",
            "::1",
            "2001:db8::7",
        ] {
            let ip: std::net::IpAddr = s.parse().unwrap();
            let mut v = Vec::new();
            write_ip(&mut v, &ip);
            assert_eq!(String::from_utf8(v).unwrap(), ip.to_string());
        }
    }

    proptest! {
        // 1970-01-01 .. 2100-01-01
        #[test]
        fn fast_time_equals_time_crate(ms in 0i64..4_102_444_800_000) {
            prop_assert_eq!(time_str(ms), super::super::format_time(ms));
        }

        #[test]
        fn fast_time_equals_time_crate_to_year_9999(ms in 0i64..=MAX_FAST_MS) {
            prop_assert_eq!(time_str(ms), super::super::format_time(ms));
        }

        #[test]
        fn uints_print_like_display(u in any::<u64>()) {
            let mut v = Vec::new();
            write_uint(&mut v, u);
            prop_assert_eq!(String::from_utf8(v).unwrap(), u.to_string());
        }
    }
}
