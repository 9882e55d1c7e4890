//! Durations written as an integer and a unit: `"300ms"`, `"30s"`, `"5m"`, `"1h"`.

use std::time::Duration;

/// Why a duration string was refused. Its message quotes the string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("invalid duration {0:?}: expected an integer followed by a unit (ms, s, m, h), e.g. \"30s\"")]
    Syntax(String),
    #[error(
        "invalid duration {0:?}: fractions are not supported, use a smaller unit (e.g. \"1500ms\")"
    )]
    Fraction(String),
    #[error("invalid duration {0:?}: durations cannot be negative")]
    Negative(String),
    #[error("invalid duration {0:?}: unknown unit {1:?} (expected ms, s, m or h)")]
    Unit(String, String),
    #[error("invalid duration {0:?}: too large")]
    Overflow(String),
}

/// Parses `<digits><unit>` with unit `ms`, `s`, `m` or `h`. No sign, no spaces, no fractions.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let owned = || text.to_owned();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    if text.starts_with('-') {
        return Err(DurationError::Negative(owned()));
    }
    if digits.is_empty() {
        return Err(DurationError::Syntax(owned()));
    }
    if unit.starts_with(['.', ',']) {
        return Err(DurationError::Fraction(owned()));
    }
    let per_unit_ms: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "" => return Err(DurationError::Syntax(owned())),
        u if u.chars().all(|c| c.is_ascii_alphabetic()) => {
            return Err(DurationError::Unit(owned(), u.to_owned()))
        }
        _ => return Err(DurationError::Syntax(owned())),
    };
    let ms = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(per_unit_ms))
        .ok_or_else(|| DurationError::Overflow(owned()))?;
    Ok(Duration::from_millis(ms))
}

/// The shortest way to write `d` with one unit, as [`parse_duration`] reads it: `"5m"`,
/// `"1500ms"`. Sub-millisecond parts are dropped.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0 => "0s".to_owned(),
        _ if ms.is_multiple_of(3_600_000) => format!("{}h", ms / 3_600_000),
        _ if ms.is_multiple_of(60_000) => format!("{}m", ms / 60_000),
        _ if ms.is_multiple_of(1_000) => format!("{}s", ms / 1_000),
        _ => format!("{ms}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_integer_and_unit() {
        assert_eq!(parse_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("007s"), Ok(Duration::from_secs(7)));
    }

    #[test]
    fn formats_with_the_largest_exact_unit() {
        for text in ["0s", "300ms", "1500ms", "30s", "90s", "5m", "1h", "744h"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
        assert_eq!(format_duration(Duration::from_secs(60)), "1m");
        assert_eq!(format_duration(Duration::from_millis(7_200_000)), "2h");
    }

    #[test]
    fn refuses_everything_else_with_a_message_naming_the_value() {
        let msg = |s: &str| parse_duration(s).unwrap_err().to_string();
        assert_eq!(
            msg("30"),
            "invalid duration \"30\": expected an integer followed by a unit (ms, s, m, h), e.g. \"30s\""
        );
        assert_eq!(
            msg(""),
            "invalid duration \"\": expected an integer followed by a unit (ms, s, m, h), e.g. \"30s\""
        );
        assert_eq!(
            msg("s"),
            "invalid duration \"s\": expected an integer followed by a unit (ms, s, m, h), e.g. \"30s\""
        );
        assert_eq!(
            msg("5 m"),
            "invalid duration \"5 m\": expected an integer followed by a unit (ms, s, m, h), e.g. \"30s\""
        );
        assert_eq!(
            msg(" 5m"),
            "invalid duration \" 5m\": expected an integer followed by a unit (ms, s, m, h), e.g. \"30s\""
        );
        assert_eq!(
            msg("+5m"),
            "invalid duration \"+5m\": expected an integer followed by a unit (ms, s, m, h), e.g. \"30s\""
        );
        assert_eq!(
            msg("1m30s"),
            "invalid duration \"1m30s\": expected an integer followed by a unit (ms, s, m, h), e.g. \"30s\""
        );
        assert_eq!(
            msg("1.5s"),
            "invalid duration \"1.5s\": fractions are not supported, use a smaller unit (e.g. \"1500ms\")"
        );
        assert_eq!(
            msg("-1s"),
            "invalid duration \"-1s\": durations cannot be negative"
        );
        assert_eq!(
            msg("5min"),
            "invalid duration \"5min\": unknown unit \"min\" (expected ms, s, m or h)"
        );
        assert_eq!(
            msg("2d"),
            "invalid duration \"2d\": unknown unit \"d\" (expected ms, s, m or h)"
        );
        assert_eq!(
            msg("99999999999999999999h"),
            "invalid duration \"99999999999999999999h\": too large"
        );
        assert_eq!(
            msg("9999999999999999h"),
            "invalid duration \"9999999999999999h\": too large"
        );
    }
}
