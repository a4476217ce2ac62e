//! Durations written `250ms`, `10s`, `5m`, `1h` (expanded like any string value).

use std::time::Duration;

use serde::{de::Error as _, Deserialize, Deserializer};

use super::expand::Text;

/// A positive duration from the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigDuration(pub Duration);

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Text::deserialize(d)?.0;
        parse(&text).map(ConfigDuration).map_err(D::Error::custom)
    }
}

/// Parses `<integer><unit>` with unit `ms`, `s`, `m` or `h`; zero is refused.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let amount: u64 = digits.parse().map_err(|_| invalid(text))?;
    let millis = match unit {
        "ms" => Some(amount),
        "s" => amount.checked_mul(1_000),
        "m" => amount.checked_mul(60_000),
        "h" => amount.checked_mul(3_600_000),
        _ => return Err(invalid(text)),
    }
    .ok_or_else(|| invalid(text))?;
    if millis == 0 {
        return Err(format!("`{text}`: a duration must be greater than zero"));
    }
    Ok(Duration::from_millis(millis))
}

fn invalid(text: &str) -> String {
    format!("`{text}` is not a duration (write e.g. `250ms`, `10s`, `5m`, `1h`)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse("1h").unwrap(), Duration::from_secs(3600));
    }

    #[test]
    fn refuses_bad_or_zero_durations() {
        for bad in ["", "10", "s", "1.5s", "10 sec", "-1s", "0ms"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
