//! Azure's `api-version`: the dated surface a deployment is called with.
//!
//! What a request body may contain depends on it (see `body_rules.rs`), so it is
//! parsed once at config load into a date and a preview flag that compare cheaply.

use std::fmt;

/// A dated Azure OpenAI api-version: `YYYY-MM-DD` (GA) or `YYYY-MM-DD-preview`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiVersion {
    text: String,
    /// `YYYYMMDD` as a number, so versions compare by date.
    date: u32,
    preview: bool,
}

/// The first versions that accept something: a preview line and, when a GA
/// version has it too, the first such GA version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Since {
    pub preview: u32,
    pub ga: Option<u32>,
}

impl ApiVersion {
    /// Parses `text`, explaining what is expected when it is not a dated version.
    pub fn parse(text: &str) -> Result<ApiVersion, String> {
        let (day, preview) = match text.strip_suffix("-preview") {
            Some(day) => (day, true),
            None => (text, false),
        };
        let date = parse_date(day).ok_or_else(|| {
            format!(
                "`{text}` is not an Azure OpenAI api-version; expected a dated one such as \
                 \"2024-10-21\" or \"2025-04-01-preview\""
            )
        })?;
        Ok(ApiVersion {
            text: text.to_string(),
            date,
            preview,
        })
    }

    /// Whether this version accepts what arrived in `since`. Later previews carry
    /// everything earlier previews had; a GA version only what reached GA.
    pub fn supports(&self, since: Since) -> bool {
        if self.preview {
            self.date >= since.preview
        } else {
            since.ga.is_some_and(|ga| self.date >= ga)
        }
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// `YYYY-MM-DD` as `YYYYMMDD`, for plausible calendar dates only.
fn parse_date(text: &str) -> Option<u32> {
    let bytes = text.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = &text[range];
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())
            .flatten()
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let plausible =
        (2022..=2099).contains(&year) && (1..=12).contains(&month) && (1..=31).contains(&day);
    plausible.then_some(year * 10_000 + month * 100 + day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ga_and_preview_versions() {
        let ga = ApiVersion::parse("2024-10-21").unwrap();
        assert_eq!(ga.to_string(), "2024-10-21");
        assert!(!ga.preview);
        assert_eq!(ga.date, 20241021);
        let preview = ApiVersion::parse("2025-04-01-preview").unwrap();
        assert!(preview.preview);
        assert_eq!(preview.date, 20250401);
    }

    #[test]
    fn refuses_what_is_not_a_dated_version() {
        for bad in [
            "",
            "latest",
            "preview",
            "v1",
            "2024-10-21-beta",
            "2024-13-01",
            "24-10-21",
            "2024-1-021",
        ] {
            let e = ApiVersion::parse(bad).unwrap_err();
            assert!(e.contains("2024-10-21"), "{bad}: {e}");
        }
    }

    #[test]
    fn previews_carry_earlier_previews_and_ga_only_what_reached_ga() {
        let only_preview = Since {
            preview: 20240901,
            ga: None,
        };
        let reached_ga = Since {
            preview: 20240901,
            ga: Some(20241021),
        };
        let v = |t| ApiVersion::parse(t).unwrap();
        assert!(v("2024-09-01-preview").supports(only_preview));
        assert!(v("2025-01-01-preview").supports(only_preview));
        assert!(!v("2024-08-01-preview").supports(only_preview));
        assert!(!v("2024-10-21").supports(only_preview));
        assert!(v("2024-10-21").supports(reached_ga));
        assert!(!v("2024-06-01").supports(reached_ga));
    }
}
