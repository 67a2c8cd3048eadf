//! Civil dates without a time zone database, shared by the binary and `build.rs` (which
//! includes this file by path): the proleptic Gregorian date of a day count since
//! 1970-01-01, by Howard Hinnant's days-to-civil algorithm.

/// `(year, month, day)` of `days` since 1970-01-01 (negative before it).
pub fn date_of_day(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}
