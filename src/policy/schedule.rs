//! Time expressions of a policy: Go durations (`10m`, `1h30m`) and the cron schedules of
//! disruption budgets, evaluated as Karpenter does (`NodePool` budgets: standard five-field
//! cron in UTC, active while the last activation is less than `duration` ago).

use jiff::{Timestamp, tz::TimeZone};
use std::time::Duration;

/// Parses a Go `time.Duration` string (`300ms`, `1.5h`, `1h30m`, `0`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let input = s.trim();
    if input == "0" {
        return Ok(Duration::ZERO);
    }
    if input.is_empty() {
        return Err("empty duration".into());
    }
    if input.starts_with('-') {
        return Err(format!("{s:?}: durations must not be negative"));
    }
    let mut rest = input.strip_prefix('+').unwrap_or(input);
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(number_len);
        if number.is_empty() || number == "." {
            return Err(format!("{s:?}: expected a number (e.g. 10m, 1h30m, 90s)"));
        }
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, after) = tail.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("{s:?}: missing unit (use ns, us, ms, s, m or h)")),
            other => {
                return Err(format!(
                    "{s:?}: unknown unit {other:?} (use ns, us, ms, s, m or h)"
                ));
            }
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole
                .parse()
                .map_err(|_| format!("{s:?}: invalid number"))?
        };
        let mut value = whole * unit_nanos;
        let mut scale = unit_nanos;
        for digit in fraction.bytes().take(18) {
            scale /= 10;
            value += u128::from(digit - b'0') * scale;
        }
        total_nanos += value;
        rest = after;
    }
    let secs =
        u64::try_from(total_nanos / 1_000_000_000).map_err(|_| format!("{s:?}: too long"))?;
    Ok(Duration::new(secs, (total_nanos % 1_000_000_000) as u32))
}

/// A five-field cron schedule (`minute hour day-of-month month day-of-week`) or a descriptor
/// (`@hourly`, `@daily`/`@midnight`, `@weekly`, `@monthly`, `@yearly`/`@annually`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u32,
    days_of_month: u32,
    months: u16,
    days_of_week: u8,
    /// Day-of-month or day-of-week was `*`: then the two are ANDed, otherwise ORed (cron's rule).
    dom_any: bool,
    dow_any: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl Schedule {
    /// Parses a schedule; the error says which field is wrong.
    pub fn parse(expr: &str) -> Result<Schedule, String> {
        let expanded = match expr.trim() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "{expr:?}: expected 5 fields (minute hour day-of-month month day-of-week), got {}",
                fields.len()
            ));
        }
        let field = |i: usize, name: &str, min: u32, max: u32, names: &[&str]| {
            parse_field(fields[i], min, max, names)
                .map_err(|e| format!("{expr:?}: {name} field {:?}: {e}", fields[i]))
        };
        let minutes = field(0, "minute", 0, 59, &[])?;
        let hours = field(1, "hour", 0, 23, &[])?;
        let dom = field(2, "day-of-month", 1, 31, &[])?;
        let months = field(3, "month", 1, 12, &MONTHS)?;
        let mut dow = field(4, "day-of-week", 0, 7, &WEEKDAYS)?;
        if dow & (1 << 7) != 0 {
            dow |= 1; // 7 is Sunday too
        }
        Ok(Schedule {
            minutes,
            hours: hours as u32,
            days_of_month: dom as u32,
            months: months as u16,
            days_of_week: (dow & 0x7f) as u8,
            dom_any: fields[2] == "*" || fields[2] == "?",
            dow_any: fields[4] == "*" || fields[4] == "?",
        })
    }

    /// True when the schedule fires in the minute that contains `t` (UTC).
    pub fn fires_at(&self, t: Timestamp) -> bool {
        let dt = TimeZone::UTC.to_datetime(t);
        let bit = |set: u64, v: i8| set & (1u64 << v) != 0;
        if !bit(self.minutes, dt.minute())
            || !bit(u64::from(self.hours), dt.hour())
            || !bit(u64::from(self.months), dt.month())
        {
            return false;
        }
        let dom = bit(u64::from(self.days_of_month), dt.day());
        let dow = bit(
            u64::from(self.days_of_week),
            dt.weekday().to_sunday_zero_offset(),
        );
        if self.dom_any || self.dow_any {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// Karpenter's `Budget.IsActive`: the schedule fired in `(now - duration, now]`.
    pub fn active(&self, now: Timestamp, duration: Duration) -> bool {
        let now_s = now.as_second();
        let start_s = now_s - duration.as_secs() as i64;
        // First whole minute strictly after the window start.
        let mut minute = (start_s.div_euclid(60) + 1) * 60;
        while minute <= now_s {
            if let Ok(t) = Timestamp::from_second(minute)
                && self.fires_at(t)
            {
                return true;
            }
            minute += 60;
        }
        false
    }
}

fn parse_field(field: &str, min: u32, max: u32, names: &[&str]) -> Result<u64, String> {
    let value = |s: &str| -> Result<u32, String> {
        let lower = s.to_ascii_lowercase();
        if let Some(i) = names.iter().position(|n| *n == lower) {
            // Month names count from 1, weekday names from 0.
            return Ok(i as u32 + if names.len() == 12 { 1 } else { 0 });
        }
        let v: u32 = s
            .parse()
            .map_err(|_| format!("{s:?} is not a number or name"))?;
        if v < min || v > max {
            return Err(format!("{v} is outside {min}-{max}"));
        }
        Ok(v)
    };
    let mut bits = 0u64;
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .map_err(|_| format!("step {s:?} is not a number"))?;
                if step == 0 {
                    return Err("step must be at least 1".into());
                }
                (r, step)
            }
            None => (part, 1),
        };
        let (lo, hi) = if range == "*" || range == "?" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let v = value(range)?;
            // `5/15` means 5, 20, 35, 50.
            (v, if part.contains('/') { max } else { v })
        };
        if lo > hi {
            return Err(format!("range {lo}-{hi} is backwards"));
        }
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn go_durations() {
        let d = |s| parse_duration(s).unwrap();
        assert_eq!(d("10m"), Duration::from_secs(600));
        assert_eq!(d("1h30m"), Duration::from_secs(5400));
        assert_eq!(d("1.5h"), Duration::from_secs(5400));
        assert_eq!(d("300ms"), Duration::from_millis(300));
        assert_eq!(d("0"), Duration::ZERO);
        assert_eq!(d("2h45m30.5s"), Duration::from_millis(9_930_500));
        for bad in ["", "10", "10x", "-1m", "m", "1h-5m"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cron_fields_and_names() {
        let s = Schedule::parse("0 8 * * mon-fri").unwrap();
        assert!(s.fires_at(ts("2026-11-23T08:00:30Z")), "Monday 08:00");
        assert!(!s.fires_at(ts("2026-11-22T08:00:00Z")), "Sunday");
        assert!(!s.fires_at(ts("2026-11-23T08:01:00Z")));
        let s = Schedule::parse("*/15 9-17 1,15 * *").unwrap();
        assert!(s.fires_at(ts("2026-11-15T09:45:00Z")));
        assert!(!s.fires_at(ts("2026-11-16T09:45:00Z")));
        // Both day fields restricted: either may match.
        let s = Schedule::parse("0 0 1 * sun").unwrap();
        assert!(s.fires_at(ts("2026-11-01T00:00:00Z")));
        assert!(s.fires_at(ts("2026-11-22T00:00:00Z")));
        assert!(!s.fires_at(ts("2026-11-23T00:00:00Z")));
        assert_eq!(Schedule::parse("@daily"), Schedule::parse("0 0 * * *"));
        assert!(
            Schedule::parse("0 7 * * 7")
                .unwrap()
                .fires_at(ts("2026-11-22T07:00:00Z"))
        );
        for bad in [
            "* * * *",
            "60 * * * *",
            "* * * foo *",
            "*/0 * * * *",
            "5-1 * * * *",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn budget_windows() {
        let business = Schedule::parse("0 8 * * mon-fri").unwrap();
        let ten_hours = Duration::from_secs(10 * 3600);
        assert!(business.active(ts("2026-11-23T08:00:00Z"), ten_hours));
        assert!(business.active(ts("2026-11-23T17:59:59Z"), ten_hours));
        assert!(!business.active(ts("2026-11-23T18:00:00Z"), ten_hours));
        assert!(!business.active(ts("2026-11-23T07:59:59Z"), ten_hours));
        assert!(
            !business.active(ts("2026-11-22T12:00:00Z"), ten_hours),
            "Sunday"
        );
    }
}
