//! Exact parsing of Kubernetes resource quantities (`k8s.io/apimachinery/pkg/api/resource`).
//!
//! A quantity is `<sign><digits>[.<digits>]<suffix>` where the suffix is a binary SI suffix
//! (`Ki`…`Ei`), a decimal SI suffix (`n u m "" k M G T P E`) or a decimal exponent (`e3`, `E-2`).
//! The API server rounds `Value()` and `MilliValue()` up to the next integer; stowage does the
//! same with exact integer arithmetic (no floating point), so `0.1` cpu is exactly 100 m and
//! `1.5Gi` is exactly 1610612736 bytes.

use std::fmt;

/// Why a quantity string was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantityError {
    /// The string as given.
    pub input: String,
    /// What is wrong with it.
    pub problem: &'static str,
}

impl fmt::Display for QuantityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid quantity {:?} ({})", self.input, self.problem)
    }
}

impl std::error::Error for QuantityError {}

/// The multiplier a suffix stands for: `base^exponent` with base 2 or 10.
#[derive(Clone, Copy)]
enum Scale {
    Binary(u32),
    Decimal(i32),
}

/// Parses `s` and returns `ceil(q × 10^scale_digits)`: `scale_digits = 0` gives `Value()`,
/// `3` gives `MilliValue()`.
fn parse_scaled(s: &str, scale_digits: i32) -> Result<i64, QuantityError> {
    let err = |problem| QuantityError {
        input: s.to_string(),
        problem,
    };
    let trimmed = s.trim();
    if trimmed.is_empty() {
        return Err(err("empty string"));
    }
    let (negative, rest) = match trimmed.as_bytes()[0] {
        b'-' => (true, &trimmed[1..]),
        b'+' => (false, &trimmed[1..]),
        _ => (false, trimmed),
    };
    let number_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_end);
    let (whole, fraction) = match number.split_once('.') {
        Some((w, f)) => (w, f),
        None => (number, ""),
    };
    if whole.is_empty() && fraction.is_empty() {
        return Err(err("no digits"));
    }
    if fraction.contains('.') {
        return Err(err("more than one decimal point"));
    }
    let digits = whole.len() + fraction.len();
    // Leading zeros do not add precision; count only significant digits.
    let significant = format!("{whole}{fraction}");
    let significant = significant.trim_start_matches('0');
    if significant.len() > 36 {
        return Err(err("too many digits"));
    }
    let mut mantissa: i128 = 0;
    for b in significant.bytes() {
        mantissa = mantissa * 10 + i128::from(b - b'0');
    }
    debug_assert!(digits >= significant.len());
    let fraction_digits = fraction.len() as i32;

    let scale = parse_suffix(suffix).ok_or_else(|| err("unknown suffix"))?;
    if negative && mantissa != 0 {
        return Err(err("negative quantities are not allowed here"));
    }

    // q × 10^scale_digits = mantissa × 10^(scale_digits - fraction_digits) × multiplier
    let (binary_power, mut exponent) = match scale {
        Scale::Binary(p) => (p, scale_digits - fraction_digits),
        Scale::Decimal(e) => (0, scale_digits - fraction_digits + e),
    };
    let overflow = || err("value too large");
    let mut value = mantissa;
    for _ in 0..binary_power {
        value = value.checked_mul(2).ok_or_else(overflow)?;
    }
    while exponent > 0 {
        value = value.checked_mul(10).ok_or_else(overflow)?;
        exponent -= 1;
    }
    if exponent < 0 {
        // Round up, as the API server does for Value() and MilliValue().
        if -exponent > 38 {
            value = i128::from(value > 0);
        } else {
            let divisor = 10i128.pow((-exponent) as u32);
            value = (value + divisor - 1) / divisor;
        }
    }
    i64::try_from(value).map_err(|_| overflow())
}

fn parse_suffix(suffix: &str) -> Option<Scale> {
    Some(match suffix {
        "" => Scale::Decimal(0),
        "n" => Scale::Decimal(-9),
        "u" => Scale::Decimal(-6),
        "m" => Scale::Decimal(-3),
        "k" => Scale::Decimal(3),
        "M" => Scale::Decimal(6),
        "G" => Scale::Decimal(9),
        "T" => Scale::Decimal(12),
        "P" => Scale::Decimal(15),
        "E" => Scale::Decimal(18),
        "Ki" => Scale::Binary(10),
        "Mi" => Scale::Binary(20),
        "Gi" => Scale::Binary(30),
        "Ti" => Scale::Binary(40),
        "Pi" => Scale::Binary(50),
        "Ei" => Scale::Binary(60),
        _ => {
            let rest = suffix.strip_prefix(['e', 'E'])?;
            let digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 4
            {
                return None;
            }
            Scale::Decimal(rest.parse().ok()?)
        }
    })
}

/// `Value()`: the quantity rounded up to a whole number (bytes, counts).
pub fn parse_value(s: &str) -> Result<i64, QuantityError> {
    parse_scaled(s, 0)
}

/// `MilliValue()`: the quantity in thousandths, rounded up (milli-CPU).
pub fn parse_milli(s: &str) -> Result<i64, QuantityError> {
    parse_scaled(s, 3)
}

/// Formats milli-CPU the way `kubectl` shows it (`1500m`, `2`).
pub fn format_milli(milli: i64) -> String {
    if milli % 1000 == 0 {
        format!("{}", milli / 1000)
    } else {
        format!("{milli}m")
    }
}

/// Formats bytes with the largest exact binary suffix (`31Gi`, `512Mi`, `1000`).
pub fn format_bytes(bytes: i64) -> String {
    const SUFFIXES: [(&str, i64); 5] = [
        ("Ti", 1 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
        ("", 1),
    ];
    for (suffix, unit) in SUFFIXES {
        if bytes != 0 && bytes % unit == 0 {
            return format!("{}{suffix}", bytes / unit);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_up_like_the_api_server() {
        let cases: &[(&str, i64)] = &[
            ("0", 0),
            ("1", 1),
            ("1k", 1000),
            ("1Ki", 1024),
            ("31Gi", 31 << 30),
            ("1.5Gi", 1_610_612_736),
            ("128974848", 128_974_848),
            ("129e6", 129_000_000),
            ("129M", 129_000_000),
            ("123Mi", 128_974_848),
            ("1E", 1_000_000_000_000_000_000),
            ("1Ei", 1 << 60),
            ("1e3", 1000),
            ("1E3", 1000),
            ("1.1", 2),
            ("100m", 1),
            ("0.5", 1),
            ("1n", 1),
            ("+5", 5),
            ("2T", 2_000_000_000_000),
            ("2Ti", 2 << 40),
            ("1P", 1_000_000_000_000_000),
            ("1Pi", 1 << 50),
            ("5e-1", 1),
            ("0.0", 0),
            (".5", 1),
        ];
        for (input, want) in cases {
            assert_eq!(parse_value(input), Ok(*want), "Value() of {input}");
        }
    }

    #[test]
    fn milli_values_round_up_like_the_api_server() {
        let cases: &[(&str, i64)] = &[
            ("7910m", 7910),
            ("1.5", 1500),
            ("0.1", 100),
            ("100m", 100),
            ("1", 1000),
            ("0.0001", 1),
            ("1u", 1),
            ("250000u", 250),
            ("250001u", 251),
            ("1500000000n", 1500),
            ("2k", 2_000_000),
            ("1e-3", 1),
            ("1.0005", 1001),
            ("0", 0),
            ("0m", 0),
        ];
        for (input, want) in cases {
            assert_eq!(parse_milli(input), Ok(*want), "MilliValue() of {input}");
        }
    }

    #[test]
    fn garbage_is_rejected_with_the_input() {
        for input in [
            "", "12Gx", "abc", "1..2", "1.2.3", "Gi", "1 Gi", "1e", "1e+", "-1", "1ki", "1KI",
            "1mi", "1.5.Gi",
        ] {
            let e = parse_value(input).expect_err(input);
            assert_eq!(e.input, input);
        }
        assert_eq!(
            parse_value("99999999Ei").unwrap_err().problem,
            "value too large"
        );
    }

    proptest::proptest! {
        #[test]
        fn any_string_parses_or_errs_without_panicking(s in "\\PC{0,24}") {
            let _ = parse_value(&s);
            let _ = parse_milli(&s);
        }

        #[test]
        fn decimal_suffixes_scale_exactly(n in 0i64..1_000_000, suffix in 0usize..5) {
            let (text, factor) = [("", 1), ("k", 1_000), ("M", 1_000_000), ("Ki", 1024), ("Mi", 1 << 20)][suffix];
            proptest::prop_assert_eq!(parse_value(&format!("{n}{text}")), Ok(n * factor));
            proptest::prop_assert_eq!(parse_milli(&format!("{n}m")), Ok(n));
            // A thousandth more than a whole number rounds Value() up.
            proptest::prop_assert_eq!(parse_value(&format!("{n}.001")), Ok(n + 1));
        }
    }

    #[test]
    fn formats_round_trip() {
        assert_eq!(format_milli(1500), "1500m");
        assert_eq!(format_milli(2000), "2");
        assert_eq!(format_bytes(31 << 30), "31Gi");
        assert_eq!(format_bytes(1000), "1000");
        assert_eq!(format_bytes(0), "0");
        for b in [1i64 << 20, 3 << 30, 12345] {
            assert_eq!(parse_value(&format_bytes(b)), Ok(b));
        }
    }
}
