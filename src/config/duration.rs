//! Human durations in the config ("100ms", "2s", "1m30s", "1.5s").
//!
//! Our own tiny parser: the grammar is small, and owning it lets error
//! messages say exactly which part of the value is wrong.

use std::time::Duration;

/// Parses a duration such as `"250ms"`, `"2s"`, `"1m30s"`, `"1.5s"`, `"1h"`.
/// A bare `"0"` means zero; any other number needs a unit so `"100"` can
/// never be misread as seconds by one operator and milliseconds by another.
pub fn parse(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration; write e.g. \"100ms\" or \"2s\"".into());
    }
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!(
                "invalid duration {s:?}: expected a number at {rest:?}"
            ));
        }
        let (num, after) = rest.split_at(num_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let scale_ns: f64 = match unit {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "d" => 86400e9,
            "" => {
                return Err(format!(
                    "invalid duration {s:?}: missing unit after {num} (use ms, s, m, h)"
                ))
            }
            other => {
                return Err(format!(
                    "invalid duration {s:?}: unknown unit {other:?} (use ns, us, ms, s, m, h, d)"
                ))
            }
        };
        let value: f64 = num
            .parse()
            .map_err(|_| format!("invalid duration {s:?}: bad number {num:?}"))?;
        let ns = value * scale_ns;
        if !ns.is_finite() || ns > 1e18 {
            return Err(format!("invalid duration {s:?}: too large"));
        }
        total += Duration::from_nanos(ns.round() as u64);
        rest = next;
    }
    Ok(total)
}

/// Formats a duration the way the config writes it, for status output.
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if d.is_zero() {
        "0".into()
    } else if d.subsec_nanos() % 1_000_000 != 0 {
        format!("{}us", d.as_micros())
    } else if ms % 1000 != 0 {
        format!("{ms}ms")
    } else {
        format!("{}s", d.as_secs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        let cases = [
            ("100ms", Duration::from_millis(100)),
            ("2s", Duration::from_secs(2)),
            ("1.5s", Duration::from_millis(1500)),
            ("1m30s", Duration::from_secs(90)),
            ("1h", Duration::from_secs(3600)),
            ("250us", Duration::from_micros(250)),
            ("0", Duration::ZERO),
            (" 3s ", Duration::from_secs(3)),
        ];
        for (s, want) in cases {
            assert_eq!(parse(s), Ok(want), "{s}");
        }
    }

    #[test]
    fn rejects_garbage() {
        for s in ["", "100", "ms", "1x", "1.2.3s", "-1s", "s1"] {
            assert!(parse(s).is_err(), "{s:?} should fail");
        }
    }

    #[test]
    fn formats_round_trip() {
        for d in [
            Duration::from_millis(100),
            Duration::from_secs(2),
            Duration::from_micros(1500),
        ] {
            assert_eq!(parse(&format(d)), Ok(d));
        }
    }
}
