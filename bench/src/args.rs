//! A tiny command-line parser for `--name value` options (repeatable where a
//! command wants several values, such as `--header`).

use std::str::FromStr;

/// The `--name value` options of one command line, in the order given.
#[derive(Debug)]
pub struct Args {
    pairs: Vec<(String, String)>,
}

impl Args {
    /// Parses `args` as `--name value` pairs; every name must be one of `known`.
    pub fn parse(args: impl IntoIterator<Item = String>, known: &[&str]) -> Result<Args, String> {
        let mut pairs = Vec::new();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let name = arg
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument `{arg}`"))?;
            if !known.contains(&name) {
                let known: Vec<String> = known.iter().map(|k| format!("--{k}")).collect();
                return Err(format!(
                    "unknown option `--{name}` (this command takes {})",
                    known.join(", ")
                ));
            }
            let value = args
                .next()
                .ok_or_else(|| format!("option `--{name}` needs a value"))?;
            pairs.push((name.to_string(), value));
        }
        Ok(Args { pairs })
    }

    /// The last value given for `name`, parsed, or `default` when the option is absent.
    pub fn get<T: FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.last(name) {
            Some(value) => parse_value(name, value),
            None => Ok(default),
        }
    }

    /// The last value given for `name`, parsed, or `None` when the option is absent.
    pub fn optional<T: FromStr>(&self, name: &str) -> Result<Option<T>, String> {
        self.last(name).map(|v| parse_value(name, v)).transpose()
    }

    /// The last value given for `name`, parsed; an error when the option is absent.
    pub fn required<T: FromStr>(&self, name: &str) -> Result<T, String> {
        let value = self
            .last(name)
            .ok_or_else(|| format!("option `--{name}` is required"))?;
        parse_value(name, value)
    }

    /// Every value given for `name`, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn last(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn parse_value<T: FromStr>(name: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("option `--{name}`: cannot use `{value}`"))
}

#[cfg(test)]
mod tests {
    use super::Args;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_pairs_defaults_and_repeats() {
        let a = Args::parse(
            args(&["--n", "5", "--header", "A: 1", "--header", "B: 2"]),
            &["n", "header", "m"],
        )
        .unwrap();
        assert_eq!(a.get::<u32>("n", 1).unwrap(), 5);
        assert_eq!(a.get::<u32>("m", 7).unwrap(), 7);
        assert_eq!(a.all("header"), vec!["A: 1", "B: 2"]);
        assert!(a.required::<u32>("m").is_err());
    }

    #[test]
    fn rejects_unknown_missing_and_bad_values() {
        assert!(Args::parse(args(&["--x", "1"]), &["n"]).is_err());
        assert!(Args::parse(args(&["--n"]), &["n"]).is_err());
        assert!(Args::parse(args(&["n"]), &["n"]).is_err());
        let a = Args::parse(args(&["--n", "abc"]), &["n"]).unwrap();
        assert!(a.get::<u32>("n", 1).is_err());
    }
}
