//! The schedule grammar of cron triggers, defined once: task validation (the client API) and the
//! operators' watchers both parse with [`Schedule::from_str`] and compute slots with
//! [`Schedule::next_after`], so every operator finds the same firing slots wherever and whenever
//! it starts.
//!
//! A schedule is one of:
//! - a 5-field cron expression, `minute hour day-of-month month day-of-week`, evaluated in UTC
//!   (never in a machine's local time zone: operators run anywhere). The field syntax is
//!   [`croner`]'s: lists, ranges, steps, `JAN`-`DEC`, `SUN`-`SAT` (`0` and `7` are Sunday), `?`,
//!   and its extensions `L`, `W` and `#`. When both day fields are restricted, a day matches if
//!   either does (Vixie cron), or both with croner's `+` before the day of week
//!   (`0 0 1-7 * +MON`: the first Monday). A seconds or a year field (6 or 7 fields) is refused,
//!   and so is an expression that never fires (`0 0 30 2 *`);
//! - `@hourly`, `@daily` (= `@midnight`), `@weekly`, `@monthly`, `@yearly` (= `@annually`):
//!   aliases of `0 * * * *`, `0 0 * * *`, `0 0 * * 0`, `0 0 1 * *` and `0 0 1 1 *`;
//! - `@every <duration>`, a Go duration (what the original server hands to `time.ParseDuration`):
//!   one or more `<number><unit>` with units `h`, `m`, `s`, `ms` (and `us`/`µs`, `ns`), decimal
//!   fractions allowed (`1.5h`), an optional leading `+`. The total must be a whole number of
//!   milliseconds, at least 1 s, and at most Go's largest duration (2562047h47m16.854s).
//!
//! Slots are milliseconds since the Unix epoch. A cron schedule fires at the start (second 0) of
//! every matching UTC minute. An `@every` schedule fires at `anchor + k * period` for `k >= 1`,
//! where the anchor is the task's `start_at`, or its creation time when `start_at` is unset: the
//! slots are a function of the task alone, not of when a watcher started (robfig/cron's `@every`,
//! which the original server uses, counts from whenever a scheduler picked the task up, so two
//! operators fire at different times).

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use croner::Cron;
use croner::errors::CronError;
use croner::parser::{CronParser, Seconds, Year};
use croner::time::{CivilDate, CivilDateTime, CivilTime, CronDateTime, Resolution, Weekday};

/// The shortest `@every` period: a shorter one would have operators reporting faster than the
/// aggregator can usefully run a task.
pub const MIN_PERIOD_MS: u64 = 1_000;

/// The longest `@every` period: Go's largest `time.Duration` (`i64::MAX` nanoseconds) in whole
/// milliseconds, so that we accept exactly the whole-millisecond durations Go does.
pub const MAX_PERIOD_MS: u64 = i64::MAX as u64 / NANOS_PER_MS as u64;

const NANOS_PER_MS: u128 = 1_000_000;
const MS_PER_SECOND: i64 = 1_000;
const SECONDS_PER_DAY: i64 = 86_400;

/// Field names, in order, for the messages.
const CRON_FIELDS: &str = "minute hour day-of-month month day-of-week";

/// A parsed schedule. `Display` gives back its canonical text, which parses to an equal value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// A 5-field cron expression (or one of its `@` aliases), evaluated in UTC.
    Cron(CronSchedule),
    /// `@every <duration>`: every `period_ms` milliseconds from the task's anchor.
    Every {
        /// At least [`MIN_PERIOD_MS`], at most [`MAX_PERIOD_MS`].
        period_ms: u64,
    },
}

/// A validated 5-field cron expression.
#[derive(Clone, PartialEq, Eq)]
pub struct CronSchedule {
    /// The canonical text: the alias (`@daily`), or the fields joined by single spaces.
    text: String,
    /// Boxed: croner's tables take over 300 bytes, which every `Schedule` would otherwise carry.
    cron: Box<Cron>,
}

impl CronSchedule {
    /// The canonical text of the expression.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// The text says it all; croner's own `Debug` prints every bit of its tables (5000 for the years).
impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CronSchedule").field(&self.text).finish()
    }
}

/// Why a schedule string was refused. The messages go back to the client as they are, so each
/// one names the input and says what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    #[error(
        "empty schedule: expected a 5-field cron expression ({CRON_FIELDS}) or @every <duration>"
    )]
    Empty,
    #[error(
        "invalid cron expression {text:?}: expected 5 fields ({CRON_FIELDS}), found {found}{}",
        field_count_hint(*.found)
    )]
    FieldCount { text: String, found: usize },
    #[error("invalid cron expression {text:?}: {reason}")]
    InvalidCron { text: String, reason: String },
    #[error("invalid cron expression {text:?}: it never fires (no date matches every field)")]
    NeverFires { text: String },
    #[error("invalid schedule {text:?}: time zones are not supported, schedules are in UTC")]
    TimeZone { text: String },
    #[error(
        "unknown schedule descriptor {descriptor:?}: expected @every <duration>, @hourly, @daily, \
         @midnight, @weekly, @monthly, @yearly or @annually"
    )]
    UnknownDescriptor { descriptor: String },
    #[error("invalid schedule {text:?}: {descriptor} takes no argument")]
    UnexpectedArgument { text: String, descriptor: String },
    #[error("invalid @every duration {text:?}: {reason}")]
    InvalidDuration { text: String, reason: DurationError },
}

/// What is wrong with an `@every` duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DurationError {
    #[error("missing duration (e.g. @every 5m, @every 1h30m)")]
    Missing,
    #[error("expected <number><unit>, e.g. 90s or 1h30m")]
    Malformed,
    #[error("missing unit after {number:?} (expected h, m, s or ms)")]
    MissingUnit { number: String },
    #[error("unknown unit {unit:?} (expected h, m, s or ms)")]
    UnknownUnit { unit: String },
    #[error("the period must be positive")]
    Negative,
    #[error("the period must be positive, not zero")]
    Zero,
    #[error("the period must be a whole number of milliseconds")]
    SubMillisecond,
    #[error("the period must be at least 1s")]
    TooShort,
    #[error("the period is longer than the largest duration (2562047h47m16.854s)")]
    Overflow,
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let text = input.trim();
        if text.is_empty() {
            return Err(ScheduleError::Empty);
        }
        // robfig/cron (the original server's parser) takes a `TZ=` / `CRON_TZ=` prefix; refuse it
        // by name rather than with a puzzling field error.
        if text.starts_with("TZ=") || text.starts_with("CRON_TZ=") {
            return Err(ScheduleError::TimeZone { text: text.into() });
        }
        match text.strip_prefix('@') {
            Some(rest) => parse_descriptor(text, rest),
            None => parse_cron(text, text).map(Schedule::Cron),
        }
    }
}

impl Schedule {
    /// Parses a schedule string; the same as `text.parse::<Schedule>()`.
    pub fn parse(text: &str) -> Result<Self, ScheduleError> {
        text.parse()
    }

    /// The first slot strictly after `after_ms` (milliseconds since the Unix epoch), or `None`
    /// when there is none that can be represented (past the year 5000 for cron, past `i64::MAX`
    /// for `@every`).
    ///
    /// `anchor_ms` is the task's `start_at`, or its creation time when unset; only `@every` uses
    /// it: its slots are `anchor_ms + k * period_ms` for `k >= 1`, so a watcher that starts late,
    /// or restarts, lands on the same slots as one that ran all along.
    pub fn next_after(&self, after_ms: i64, anchor_ms: i64) -> Option<i64> {
        match self {
            Schedule::Cron(cron) => next_cron_slot(&cron.cron, after_ms),
            Schedule::Every { period_ms } => next_every_slot(*period_ms, after_ms, anchor_ms),
        }
    }

    /// The slots in `(from_exclusive_ms, to_inclusive_ms]`, oldest first, at most `limit` of them
    /// (the oldest ones): what a watcher missed while it was down. Call again from the last slot
    /// returned to page through more.
    pub fn slots_between(
        &self,
        from_exclusive_ms: i64,
        to_inclusive_ms: i64,
        anchor_ms: i64,
        limit: usize,
    ) -> Vec<i64> {
        let mut slots = Vec::new();
        let mut cursor = from_exclusive_ms;
        while slots.len() < limit {
            match self.next_after(cursor, anchor_ms) {
                Some(slot) if slot <= to_inclusive_ms => {
                    slots.push(slot);
                    cursor = slot;
                }
                _ => break,
            }
        }
        slots
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Cron(cron) => f.write_str(&cron.text),
            Schedule::Every { period_ms } => write!(f, "@every {}", format_period(*period_ms)),
        }
    }
}

/// `rest` is what follows the `@` of `text`.
fn parse_descriptor(text: &str, rest: &str) -> Result<Schedule, ScheduleError> {
    let (name, argument) = match rest.split_once(char::is_whitespace) {
        Some((name, argument)) => (name, argument.trim()),
        None => (rest, ""),
    };
    let name = name.to_ascii_lowercase();
    if name == "every" {
        return parse_period(argument)
            .map(|period_ms| Schedule::Every { period_ms })
            .map_err(|reason| ScheduleError::InvalidDuration {
                text: argument.into(),
                reason,
            });
    }
    // The aliases robfig/cron knows, each with its canonical name.
    let (canonical, expression) = match name.as_str() {
        "hourly" => ("@hourly", "0 * * * *"),
        "daily" | "midnight" => ("@daily", "0 0 * * *"),
        "weekly" => ("@weekly", "0 0 * * 0"),
        "monthly" => ("@monthly", "0 0 1 * *"),
        "yearly" | "annually" => ("@yearly", "0 0 1 1 *"),
        _ => {
            return Err(ScheduleError::UnknownDescriptor {
                descriptor: format!("@{name}"),
            });
        }
    };
    if !argument.is_empty() {
        return Err(ScheduleError::UnexpectedArgument {
            text: text.into(),
            descriptor: canonical.into(),
        });
    }
    parse_cron(expression, canonical).map(Schedule::Cron)
}

/// Parses a 5-field expression; `canonical` is the text `Display` will give back (the alias when
/// the expression came from one).
fn parse_cron(expression: &str, canonical: &str) -> Result<CronSchedule, ScheduleError> {
    let fields: Vec<&str> = expression.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(ScheduleError::FieldCount {
            text: expression.into(),
            found: fields.len(),
        });
    }
    let joined = fields.join(" ");
    // croner skips empty list items ("1,,2" reads as "1,2"); a typo should not pass silently.
    if fields
        .iter()
        .any(|field| field.split(',').any(str::is_empty))
    {
        return Err(ScheduleError::InvalidCron {
            text: joined,
            reason: "empty item in a list".into(),
        });
    }
    let text = if canonical == expression {
        joined.clone()
    } else {
        canonical.to_owned()
    };
    // Seconds and years disallowed: croner then reads exactly these 5 fields, with the seconds
    // fixed at 0 and any year.
    let parser = CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build();
    let cron = parser
        .parse(&joined)
        .map_err(|e| ScheduleError::InvalidCron {
            text: joined.clone(),
            reason: cron_error_reason(&e),
        })?;
    // An expression that matches no date (`0 0 30 2 *`) would only fail later, in every watcher;
    // refuse it now. The Gregorian calendar repeats every 400 years and croner searches up to the
    // year 5000, so a pattern with no slot after 2001 has none at all. Such a search gives up
    // within about 40 ms (debug build).
    if next_cron_slot(&cron, NEVER_FIRES_PROBE_MS).is_none() {
        return Err(ScheduleError::NeverFires { text: joined });
    }
    Ok(CronSchedule {
        text,
        cron: Box::new(cron),
    })
}

/// Why a 6- or 7-field expression is refused: croner (and other cron libraries) would read it
/// with seconds or years, and the contract says 5 fields.
fn field_count_hint(found: usize) -> &'static str {
    if found > 5 {
        " (seconds and year fields are not supported)"
    } else {
        ""
    }
}

/// 2001-01-01T00:00:00Z, where the never-fires check starts its search.
const NEVER_FIRES_PROBE_MS: i64 = 978_307_200_000;

/// croner's messages carry their own prefixes ("Invalid pattern: ..."); keep them, they name
/// the offending part.
fn cron_error_reason(error: &CronError) -> String {
    match error {
        CronError::EmptyPattern => "empty expression".into(),
        other => other.to_string(),
    }
}

fn next_cron_slot(cron: &Cron, after_ms: i64) -> Option<i64> {
    // Slots sit on whole seconds (second 0 of a minute): searching from the second that holds
    // `after_ms`, exclusive of it, returns the first slot strictly after `after_ms` whether or
    // not `after_ms` has a sub-second part.
    let start = UtcSecond(after_ms.div_euclid(MS_PER_SECOND));
    let next = cron.find_next_occurrence(&start, false).ok()?;
    next.0.checked_mul(MS_PER_SECOND)
}

fn next_every_slot(period_ms: u64, after_ms: i64, anchor_ms: i64) -> Option<i64> {
    // i128: `anchor + k * period` must not wrap for any i64 inputs.
    let period = i128::from(period_ms);
    if period == 0 {
        return None;
    }
    let (after, anchor) = (i128::from(after_ms), i128::from(anchor_ms));
    let k = if after < anchor {
        1
    } else {
        (after - anchor) / period + 1
    };
    i64::try_from(anchor + k * period).ok()
}

/// Parses a Go duration into whole milliseconds (see the module docs for the grammar).
fn parse_period(text: &str) -> Result<u64, DurationError> {
    if text.is_empty() {
        return Err(DurationError::Missing);
    }
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    match rest {
        "" => return Err(DurationError::Malformed),
        // Go's one unitless duration.
        "0" => return Err(DurationError::Zero),
        _ => {}
    }
    // Like Go, add up nanoseconds, then require a whole number of milliseconds.
    let mut total_ns: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after_number) = rest.split_at(number_len);
        let unit_len = after_number
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after_number.len());
        let (unit, after_unit) = after_number.split_at(unit_len);
        if number.is_empty() {
            return Err(DurationError::Malformed);
        }
        if unit.is_empty() {
            return Err(DurationError::MissingUnit {
                number: number.into(),
            });
        }
        let unit_ns =
            unit_nanos(unit).ok_or_else(|| DurationError::UnknownUnit { unit: unit.into() })?;
        total_ns = total_ns
            .checked_add(component_nanos(number, unit_ns)?)
            .ok_or(DurationError::Overflow)?;
        rest = after_unit;
    }
    if total_ns > i64::MAX as u128 {
        return Err(DurationError::Overflow);
    }
    if negative && total_ns != 0 {
        return Err(DurationError::Negative);
    }
    if total_ns == 0 {
        return Err(DurationError::Zero);
    }
    if !total_ns.is_multiple_of(NANOS_PER_MS) {
        return Err(DurationError::SubMillisecond);
    }
    let period_ms = u64::try_from(total_ns / NANOS_PER_MS).map_err(|_| DurationError::Overflow)?;
    if period_ms < MIN_PERIOD_MS {
        return Err(DurationError::TooShort);
    }
    Ok(period_ms)
}

/// Go's units, in nanoseconds.
fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        "us" | "µs" | "μs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    })
}

/// `number` (digits, with at most one `.` and at least one digit) times `unit_ns`, truncated to a
/// whole nanosecond as Go does.
fn component_nanos(number: &str, unit_ns: u128) -> Result<u128, DurationError> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return Err(DurationError::Malformed);
    }
    let mut ns: u128 = 0;
    for digit in whole.bytes() {
        ns = ns
            .checked_mul(10)
            .and_then(|n| n.checked_add(u128::from(digit - b'0')))
            .ok_or(DurationError::Overflow)?;
    }
    ns = ns.checked_mul(unit_ns).ok_or(DurationError::Overflow)?;
    // 24 fraction digits are below a nanosecond of even an hour (3.6e12 ns), and
    // 10^24 * 3.6e12 still fits in a u128; further digits cannot change the truncated result.
    let fraction = &fraction[..fraction.len().min(24)];
    let mut numerator: u128 = 0;
    let mut scale: u128 = 1;
    for digit in fraction.bytes() {
        numerator = numerator * 10 + u128::from(digit - b'0');
        scale *= 10;
    }
    Ok(ns + numerator * unit_ns / scale)
}

/// The canonical text of a period: its hours, minutes, seconds and milliseconds, zero parts left
/// out (`5400000` → `1h30m`, `1500` → `1s500ms`).
fn format_period(period_ms: u64) -> String {
    let parts = [
        (period_ms / 3_600_000, "h"),
        (period_ms / 60_000 % 60, "m"),
        (period_ms / 1_000 % 60, "s"),
        (period_ms % 1_000, "ms"),
    ];
    let mut text = String::new();
    for (value, unit) in parts {
        if value != 0 {
            text.push_str(&format!("{value}{unit}"));
        }
    }
    if text.is_empty() {
        text.push_str("0s");
    }
    text
}

/// A UTC instant in whole seconds since the Unix epoch: the time type croner searches over for
/// us, so that schedules never depend on a machine's time zone and we need no date library.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct UtcSecond(i64);

impl CronDateTime for UtcSecond {
    fn to_civil(&self) -> CivilDateTime {
        let days = self.0.div_euclid(SECONDS_PER_DAY);
        let second_of_day = self.0.rem_euclid(SECONDS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        // From milliseconds in an i64 the year stays within ±300 million; saturating only matters
        // for absurd inputs, which then fall past croner's year limit and find no slot.
        let year = i32::try_from(year).unwrap_or(if year < 0 { i32::MIN } else { i32::MAX });
        // The parts are in range by construction.
        CivilDateTime::new(
            CivilDate::from_parts_unchecked(year, month, day),
            CivilTime::from_parts_unchecked(
                (second_of_day / 3600) as u32,
                (second_of_day / 60 % 60) as u32,
                (second_of_day % 60) as u32,
            ),
        )
    }

    fn civil_weekday(&self) -> Weekday {
        // 1970-01-01 was a Thursday (4 days from Sunday).
        let days = self.0.div_euclid(SECONDS_PER_DAY);
        Weekday::from_days_from_sunday((days + 4).rem_euclid(7) as u32)
    }

    fn resolve_civil(&self, civil: CivilDateTime) -> Result<Resolution<Self>, CronError> {
        // UTC has no gaps and no repeated hours.
        let days = days_from_civil(i64::from(civil.year()), civil.month(), civil.day());
        let seconds = days
            .checked_mul(SECONDS_PER_DAY)
            .and_then(|s| {
                s.checked_add(
                    i64::from(civil.hour()) * 3600
                        + i64::from(civil.minute()) * 60
                        + i64::from(civil.second()),
                )
            })
            .ok_or(CronError::InvalidTime)?;
        Ok(Resolution::Single(UtcSecond(seconds)))
    }

    fn checked_add_seconds(&self, seconds: i64) -> Option<Self> {
        self.0.checked_add(seconds).map(UtcSecond)
    }

    fn cmp_instant(&self, other: &Self) -> Ordering {
        self.0.cmp(&other.0)
    }
}

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01, proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153; // 0 = March
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The inverse of [`civil_from_days`].
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let shifted_month = i64::from((month + 9) % 12); // 0 = March
    let day_of_year = (153 * shifted_month + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    const MINUTE: i64 = 60_000;
    const HOUR: i64 = 60 * MINUTE;
    const DAY: i64 = 24 * HOUR;

    /// Milliseconds since the epoch of a UTC date and time.
    fn utc(year: i64, month: u32, day: u32, hour: i64, minute: i64, second: i64) -> i64 {
        (days_from_civil(year, month, day) * SECONDS_PER_DAY + hour * 3600 + minute * 60 + second)
            * 1000
    }

    fn every(text: &str) -> Result<u64, ScheduleError> {
        match Schedule::parse(&format!("@every {text}"))? {
            Schedule::Every { period_ms } => Ok(period_ms),
            other => panic!("{text} parsed as {other:?}"),
        }
    }

    fn duration_error(text: &str) -> DurationError {
        match every(text) {
            Err(ScheduleError::InvalidDuration { reason, .. }) => reason,
            other => panic!("@every {text:?}: expected a duration error, got {other:?}"),
        }
    }

    #[test]
    fn the_calendar_helpers_agree_with_known_dates() {
        // Constants from `date -u -d ... +%s`.
        assert_eq!(utc(1970, 1, 1, 0, 0, 0), 0);
        assert_eq!(utc(2000, 3, 1, 0, 0, 0), 951_868_800_000);
        assert_eq!(utc(2024, 2, 29, 12, 0, 0), 1_709_208_000_000);
        assert_eq!(utc(1969, 12, 31, 23, 59, 59), -1000);
        assert_eq!(utc(2100, 3, 1, 0, 0, 0), 4_107_542_400_000);
        for days in -800_000..800_000 {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        // 2024-03-10 was a Sunday.
        let sunday = UtcSecond(utc(2024, 3, 10, 15, 0, 0) / 1000);
        assert_eq!(sunday.civil_weekday(), Weekday::Sunday);
        assert_eq!(UtcSecond(-1).civil_weekday(), Weekday::Wednesday);
    }

    #[test]
    fn valid_cron_expressions_parse_and_display_canonically() -> TestResult {
        for (input, canonical) in [
            ("*/5 * * * *", "*/5 * * * *"),
            ("  0   9 * *\tMON-FRI ", "0 9 * * MON-FRI"),
            ("0 0 1 1 *", "0 0 1 1 *"),
            ("15,45 8-18/2 * JAN,jul sun", "15,45 8-18/2 * JAN,jul sun"),
            ("0 12 L * ?", "0 12 L * ?"),
            ("0 0 * * 7", "0 0 * * 7"),
            ("0 0 29 2 *", "0 0 29 2 *"),
            ("@hourly", "@hourly"),
            ("@DAILY", "@daily"),
            ("@midnight", "@daily"),
            ("@weekly", "@weekly"),
            ("@monthly", "@monthly"),
            ("@annually", "@yearly"),
            ("@yearly", "@yearly"),
        ] {
            let schedule = Schedule::parse(input)?;
            assert!(matches!(schedule, Schedule::Cron(_)), "{input}");
            assert_eq!(schedule.to_string(), canonical, "{input}");
            assert_eq!(Schedule::parse(canonical)?, schedule, "{input}");
        }
        Ok(())
    }

    #[test]
    fn aliases_fire_like_their_cron_forms() -> TestResult {
        let from = utc(2024, 3, 13, 10, 17, 0); // a Wednesday
        for (alias, expression) in [
            ("@hourly", "0 * * * *"),
            ("@daily", "0 0 * * *"),
            ("@midnight", "0 0 * * *"),
            ("@weekly", "0 0 * * 0"),
            ("@monthly", "0 0 1 * *"),
            ("@yearly", "0 0 1 1 *"),
        ] {
            let (a, b) = (Schedule::parse(alias)?, Schedule::parse(expression)?);
            assert_eq!(
                a.slots_between(from, i64::MAX, 0, 5),
                b.slots_between(from, i64::MAX, 0, 5)
            );
        }
        assert_eq!(
            Schedule::parse("@weekly")?.next_after(from, 0),
            Some(utc(2024, 3, 17, 0, 0, 0))
        );
        Ok(())
    }

    #[test]
    fn wrong_field_counts_are_refused_with_the_fields_named() {
        let error = Schedule::parse("x y z").err().map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some(
                "invalid cron expression \"x y z\": expected 5 fields (minute hour day-of-month \
                 month day-of-week), found 3"
            )
        );
        for (input, found) in [
            ("* * * *", 4),
            ("0 */5 * * * *", 6),
            ("0 0 0 1 1 * 2030", 7),
        ] {
            let error = Schedule::parse(input);
            assert_eq!(
                error,
                Err(ScheduleError::FieldCount {
                    text: input.into(),
                    found
                }),
                "{input}"
            );
        }
        let six = Schedule::parse("0 */5 * * * *")
            .err()
            .map(|e| e.to_string());
        assert!(
            six.is_some_and(|m| m.ends_with("found 6 (seconds and year fields are not supported)"))
        );
    }

    #[test]
    fn invalid_cron_expressions_are_refused() {
        for input in [
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * 32 * *",
            "* * * 13 *",
            "* * * * 8",
            "a b c d e",
            "*/0 * * * *",
            "5-1 * * * *",
            "1,,2 * * * *",
            ",1 * * * *",
            "* * * 1, *",
            "0 0 * * MONDAY",
        ] {
            match Schedule::parse(input) {
                Err(ScheduleError::InvalidCron { text, reason }) => {
                    assert_eq!(text, input);
                    assert!(!reason.is_empty());
                }
                other => panic!("{input:?}: expected InvalidCron, got {other:?}"),
            }
        }
        assert_eq!(Schedule::parse("   "), Err(ScheduleError::Empty));
        for input in ["0 0 30 2 *", "0 0 31 4,6,9,11 *"] {
            assert_eq!(
                Schedule::parse(input),
                Err(ScheduleError::NeverFires { text: input.into() })
            );
        }
        assert!(matches!(
            Schedule::parse("TZ=Europe/Paris 0 9 * * *"),
            Err(ScheduleError::TimeZone { .. })
        ));
        assert!(matches!(
            Schedule::parse("CRON_TZ=UTC 0 9 * * *"),
            Err(ScheduleError::TimeZone { .. })
        ));
        for input in ["@reboot", "@", "@every5m", "@hour"] {
            assert!(
                matches!(
                    Schedule::parse(input),
                    Err(ScheduleError::UnknownDescriptor { .. })
                ),
                "{input}"
            );
        }
        assert_eq!(
            Schedule::parse("@daily 0 9 * * *")
                .err()
                .map(|e| e.to_string()),
            Some("invalid schedule \"@daily 0 9 * * *\": @daily takes no argument".into())
        );
    }

    #[test]
    fn every_accepts_go_durations() -> TestResult {
        for (text, period_ms) in [
            ("2s", 2_000),
            ("90s", 90_000),
            ("5m", 300_000),
            ("1h30m", 5_400_000),
            ("1h0m0s", 3_600_000),
            ("1500ms", 1_500),
            ("1000ms", 1_000),
            ("1.5h", 5_400_000),
            (".5m", 30_000),
            ("1.s", 1_000),
            ("1.25s", 1_250),
            ("+10s", 10_000),
            ("2h45m30s250ms", 9_930_250),
            ("0h1s", 1_000),
            ("1000000us", 1_000),
            ("1000000000ns", 1_000),
            ("1s1000000ns", 1_001),
            ("0.5ms999.5ms", 1_000),
            ("0090s", 90_000),
            ("9223372036854ms", MAX_PERIOD_MS),
            ("2562047h47m16.854s", MAX_PERIOD_MS),
        ] {
            assert_eq!(every(text)?, period_ms, "@every {text}");
        }
        // Extra fraction digits below a nanosecond are truncated, as Go does.
        assert_eq!(every("1.0000000000000000000000000000001s")?, 1_000);
        // Surrounding space is fine, as for the whole schedule.
        assert_eq!(every("  5m ")?, 300_000);
        assert_eq!(
            Schedule::parse("@EVERY 5m")?,
            Schedule::Every { period_ms: 300_000 }
        );
        Ok(())
    }

    #[test]
    fn every_refuses_bad_durations() {
        use DurationError::*;
        for (text, reason) in [
            ("", Missing),
            ("0", Zero),
            ("0s", Zero),
            ("0h0m", Zero),
            ("-0s", Zero),
            ("-5s", Negative),
            ("-1h30m", Negative),
            ("5", MissingUnit { number: "5".into() }),
            (
                "1h30",
                MissingUnit {
                    number: "30".into(),
                },
            ),
            ("5d", UnknownUnit { unit: "d".into() }),
            ("5 m", UnknownUnit { unit: " m".into() }),
            ("5S", UnknownUnit { unit: "S".into() }),
            ("5sec", UnknownUnit { unit: "sec".into() }),
            ("s", Malformed),
            ("+", Malformed),
            ("--5s", Malformed),
            (".s", Malformed),
            ("1..5s", Malformed),
            ("1.2.3s", Malformed),
            ("250ms", TooShort),
            ("999ms", TooShort),
            ("0.5s", TooShort),
            ("1500us", SubMillisecond),
            ("1.0005s", SubMillisecond),
            ("1s1ns", SubMillisecond),
            ("9223372036855ms", Overflow),
            ("2562048h", Overflow),
            ("99999999999999999999999999999999999999999h", Overflow),
            ("5000000000000000000000000000000000000000000000ns", Overflow),
        ] {
            assert_eq!(duration_error(text), reason, "@every {text:?}");
        }
        let message = Schedule::parse("@every 5d").err().map(|e| e.to_string());
        assert_eq!(
            message.as_deref(),
            Some("invalid @every duration \"5d\": unknown unit \"d\" (expected h, m, s or ms)")
        );
        let message = Schedule::parse("@every 250ms").err().map(|e| e.to_string());
        assert_eq!(
            message.as_deref(),
            Some("invalid @every duration \"250ms\": the period must be at least 1s")
        );
    }

    #[test]
    fn every_displays_canonically_and_round_trips() -> TestResult {
        for (input, canonical) in [
            ("@every 90s", "@every 1m30s"),
            ("@every 1h30m", "@every 1h30m"),
            ("@every 1.5h", "@every 1h30m"),
            ("@every 1500ms", "@every 1s500ms"),
            ("@every 48h", "@every 48h"),
            ("@every 2562047h47m16.854s", "@every 2562047h47m16s854ms"),
        ] {
            let schedule = Schedule::parse(input)?;
            assert_eq!(schedule.to_string(), canonical);
            assert_eq!(Schedule::parse(canonical)?, schedule);
        }
        Ok(())
    }

    #[test]
    fn cron_every_five_minutes() -> TestResult {
        let schedule = Schedule::parse("*/5 * * * *")?;
        let after = utc(2024, 3, 10, 10, 2, 30) + 500;
        assert_eq!(
            schedule.next_after(after, 0),
            Some(utc(2024, 3, 10, 10, 5, 0))
        );
        assert_eq!(
            schedule.slots_between(after, utc(2024, 3, 10, 10, 20, 0), 0, 100),
            vec![
                utc(2024, 3, 10, 10, 5, 0),
                utc(2024, 3, 10, 10, 10, 0),
                utc(2024, 3, 10, 10, 15, 0),
                utc(2024, 3, 10, 10, 20, 0),
            ]
        );
        // Across the end of a year.
        assert_eq!(
            schedule.next_after(utc(2024, 12, 31, 23, 59, 0), 0),
            Some(utc(2025, 1, 1, 0, 0, 0))
        );
        Ok(())
    }

    #[test]
    fn cron_at_a_fixed_hour_and_on_a_day_of_week() -> TestResult {
        let daily = Schedule::parse("30 14 * * *")?;
        assert_eq!(
            daily.next_after(utc(2024, 3, 10, 14, 29, 59), 0),
            Some(utc(2024, 3, 10, 14, 30, 0))
        );
        assert_eq!(
            daily.next_after(utc(2024, 3, 10, 14, 30, 0), 0),
            Some(utc(2024, 3, 11, 14, 30, 0))
        );
        // 2024-03-13 is a Wednesday; the next Monday 09:00 is the 18th.
        let mondays = Schedule::parse("0 9 * * MON")?;
        let wednesday = utc(2024, 3, 13, 12, 0, 0);
        assert_eq!(
            mondays.next_after(wednesday, 0),
            Some(utc(2024, 3, 18, 9, 0, 0))
        );
        assert_eq!(
            mondays.slots_between(wednesday, utc(2024, 4, 1, 9, 0, 0), 0, 10),
            vec![
                utc(2024, 3, 18, 9, 0, 0),
                utc(2024, 3, 25, 9, 0, 0),
                utc(2024, 4, 1, 9, 0, 0)
            ]
        );
        // Both day fields restricted: either matching is enough (the 1st, or any Friday).
        let either = Schedule::parse("0 0 1 * FRI")?;
        assert_eq!(
            either.slots_between(utc(2024, 2, 27, 0, 0, 0), utc(2024, 3, 9, 0, 0, 0), 0, 10),
            vec![utc(2024, 3, 1, 0, 0, 0), utc(2024, 3, 8, 0, 0, 0)]
        );
        // Both, with croner's `+`: the first Monday of a month (2024-04-01 was one).
        let first_monday = Schedule::parse("0 0 1-7 * +MON")?;
        assert_eq!(
            first_monday.next_after(wednesday, 0),
            Some(utc(2024, 4, 1, 0, 0, 0))
        );
        // The leap day, from a year without one.
        let leap = Schedule::parse("0 0 29 2 *")?;
        assert_eq!(
            leap.next_after(utc(2025, 3, 1, 0, 0, 0), 0),
            Some(utc(2028, 2, 29, 0, 0, 0))
        );
        Ok(())
    }

    #[test]
    fn a_slot_equal_to_after_is_not_returned() -> TestResult {
        let cron = Schedule::parse("*/5 * * * *")?;
        let slot = utc(2024, 3, 10, 10, 5, 0);
        assert_eq!(cron.next_after(slot - 1, 0), Some(slot));
        assert_eq!(cron.next_after(slot, 0), Some(slot + 5 * MINUTE));
        assert_eq!(cron.next_after(slot + 1, 0), Some(slot + 5 * MINUTE));
        assert_eq!(cron.slots_between(slot, slot, 0, 10), Vec::<i64>::new());
        assert_eq!(cron.slots_between(slot - 1, slot, 0, 10), vec![slot]);

        let anchor = 1_700_000_000_123;
        let every = Schedule::parse("@every 90s")?;
        let slot = anchor + 3 * 90_000;
        assert_eq!(every.next_after(slot - 1, anchor), Some(slot));
        assert_eq!(every.next_after(slot, anchor), Some(slot + 90_000));
        // The anchor itself is not a slot: the first is one period after it.
        assert_eq!(every.next_after(anchor, anchor), Some(anchor + 90_000));
        assert_eq!(every.next_after(anchor - 1, anchor), Some(anchor + 90_000));
        assert_eq!(every.next_after(i64::MIN, anchor), Some(anchor + 90_000));
        Ok(())
    }

    #[test]
    fn every_slots_do_not_depend_on_when_a_watcher_starts() -> TestResult {
        let schedule = Schedule::parse("@every 1m30s")?;
        let anchor = 1_700_000_000_123; // the task's start_at (or creation time)
        let end = anchor + 2 * HOUR;
        // Operator A watched from the start; operator B started 1000.5 s later, operator C
        // after a restart at an arbitrary moment.
        let a = schedule.slots_between(anchor, end, anchor, 1000);
        let b = schedule.slots_between(anchor + 1_000_500, end, anchor, 1000);
        let c = schedule.slots_between(anchor + 4_321_987, end, anchor, 1000);
        assert_eq!(a.len(), 80);
        assert!(a.iter().all(|slot| (slot - anchor) % 90_000 == 0));
        assert_eq!(&a[a.len() - b.len()..], b.as_slice());
        assert_eq!(&a[a.len() - c.len()..], c.as_slice());
        assert_eq!(b.first(), Some(&(anchor + 12 * 90_000)));
        Ok(())
    }

    #[test]
    fn slots_between_stops_at_the_limit_and_pages_on() -> TestResult {
        let schedule = Schedule::parse("* * * * *")?;
        let from = utc(2024, 1, 1, 0, 0, 0);
        let first = schedule.slots_between(from, from + DAY, 0, 3);
        assert_eq!(
            first,
            vec![from + MINUTE, from + 2 * MINUTE, from + 3 * MINUTE]
        );
        let next = schedule.slots_between(3 * MINUTE + from, from + DAY, 0, 2);
        assert_eq!(next, vec![from + 4 * MINUTE, from + 5 * MINUTE]);
        assert!(schedule.slots_between(from, from + DAY, 0, 0).is_empty());
        assert_eq!(
            schedule.slots_between(from, from + DAY, 0, 10_000).len(),
            1440
        );
        Ok(())
    }

    #[test]
    fn every_handles_large_k_and_the_edges_of_time() -> TestResult {
        let schedule = Schedule::parse("@every 1s")?;
        assert_eq!(
            schedule.next_after(1_000_000_000_000_001, 0),
            Some(1_000_000_000_001_000)
        );
        let anchor = -5_000; // before the epoch
        assert_eq!(
            schedule.next_after(4_000_000_000_000_000_000, anchor),
            Some(4_000_000_000_000_001_000)
        );
        // The next slot would not fit in an i64.
        assert_eq!(schedule.next_after(i64::MAX - 1, 0), None);
        let longest = Schedule::Every {
            period_ms: MAX_PERIOD_MS,
        };
        assert_eq!(longest.next_after(0, 0), Some(MAX_PERIOD_MS as i64));
        assert_eq!(longest.next_after(0, i64::MAX - 10), None);
        Ok(())
    }

    #[test]
    fn cron_is_evaluated_in_utc() -> TestResult {
        // Whatever the machine's zone, a daily slot is a UTC midnight and an hourly one a whole
        // UTC hour.
        let daily = Schedule::parse("@daily")?;
        let hourly = Schedule::parse("@hourly")?;
        let mut after = 1_700_000_000_123;
        for _ in 0..50 {
            let day = daily.next_after(after, 0).ok_or("no slot")?;
            let hour = hourly.next_after(after, 0).ok_or("no slot")?;
            assert_eq!(day % DAY, 0);
            assert_eq!(hour % HOUR, 0);
            assert!(day > after && day - after <= DAY);
            assert!(hour > after && hour - after <= HOUR);
            after += 7 * HOUR + 13 * MINUTE + 17_001;
        }
        assert_eq!(
            Schedule::parse("0 9 * * *")?.next_after(utc(2024, 7, 1, 8, 0, 0), 0),
            Some(utc(2024, 7, 1, 9, 0, 0))
        );
        // Before the epoch too.
        assert_eq!(daily.next_after(-DAY - 1, 0), Some(-DAY));
        Ok(())
    }

    #[test]
    fn cron_past_the_year_5000_has_no_slot() -> TestResult {
        let schedule = Schedule::parse("0 0 1 1 *")?;
        assert_eq!(schedule.next_after(utc(5000, 6, 1, 0, 0, 0), 0), None);
        assert_eq!(schedule.next_after(i64::MAX, 0), None);
        Ok(())
    }
}
