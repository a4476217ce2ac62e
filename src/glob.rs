//! `*` globs for key allow-lists (`claude-*`): small enough not to need a crate.

/// A pattern where `*` matches any run of characters, everything else itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(String);

impl Glob {
    /// Wraps a pattern.
    pub fn new(pattern: impl Into<String>) -> Self {
        Glob(pattern.into())
    }

    /// Whether `text` matches the whole pattern.
    pub fn matches(&self, text: &str) -> bool {
        let mut parts = self.0.split('*');
        let first = parts.next().unwrap_or_default();
        let Some(mut rest) = text.strip_prefix(first) else {
            return false;
        };
        let parts: Vec<&str> = parts.collect();
        let Some((last, middle)) = parts.split_last() else {
            return rest.is_empty(); // no `*` at all
        };
        for part in middle {
            match rest.find(part) {
                Some(pos) => rest = &rest[pos + part.len()..],
                None => return false,
            }
        }
        rest.len() >= last.len() && rest.ends_with(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_literals_and_stars() {
        assert!(Glob::new("gpt-4o").matches("gpt-4o"));
        assert!(!Glob::new("gpt-4o").matches("gpt-4o-mini"));
        assert!(Glob::new("claude-*").matches("claude-sonnet"));
        assert!(Glob::new("claude-*").matches("claude-"));
        assert!(!Glob::new("claude-*").matches("gpt-claude-x"));
        assert!(Glob::new("*").matches(""));
        assert!(Glob::new("*-mini").matches("gpt-4o-mini"));
        assert!(Glob::new("g*4*i").matches("gpt-4o-mini"));
        assert!(!Glob::new("a*a").matches("a"));
    }
}
