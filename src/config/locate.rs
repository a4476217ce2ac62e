//! Finds the line of a field in the YAML text, for errors found after parsing.
//!
//! serde_yaml reports lines for errors it sees itself (types, unknown keys, values
//! our deserialisers refuse). Rules that need the whole file (an undefined provider,
//! a fallback cycle) are checked afterwards on plain structs, and this module walks
//! the text by indentation to point at the offending line. It understands block
//! mappings, block sequences and one-line flow collections, which is how config
//! files are written; when it cannot follow a path it returns the deepest line found.

use std::fmt;

/// One step of a field path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A field path such as `models.gpt-4o.targets[1].provider`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldPath(pub Vec<Seg>);

impl FieldPath {
    /// The path with one more key.
    pub fn key(&self, key: &str) -> FieldPath {
        let mut p = self.clone();
        p.0.push(Seg::Key(key.to_string()));
        p
    }

    /// The path with one more index.
    pub fn index(&self, index: usize) -> FieldPath {
        let mut p = self.clone();
        p.0.push(Seg::Index(index));
        p
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

struct Line<'a> {
    indent: usize,
    text: &'a str,
}

/// The 1-based line of `path` in `yaml`, or of its deepest ancestor found.
pub fn line_of(yaml: &str, path: &FieldPath) -> Option<usize> {
    let lines: Vec<Line> = yaml
        .lines()
        .map(|raw| {
            let text = raw.trim_start();
            Line {
                indent: raw.len() - text.len(),
                text,
            }
        })
        .collect();
    let mut found: Option<(usize, usize)> = None; // (line index, column of the parent)
    for seg in &path.0 {
        let next = match (seg, found) {
            (Seg::Key(k), None) => find_key(&lines, 0, None, k),
            (Seg::Key(k), Some((at, col))) => find_key(&lines, at, Some(col), k),
            (Seg::Index(n), Some((at, col))) => find_item(&lines, at, col, *n),
            (Seg::Index(_), None) => None,
        };
        match next {
            Some(n) => found = Some(n),
            None => break,
        }
    }
    found.map(|(at, _)| at + 1)
}

fn is_blank(line: &Line) -> bool {
    line.text.is_empty() || line.text.starts_with('#')
}

/// The columns at which keys may start on this line: after the indent and after
/// each leading `- ` of a sequence item.
fn key_starts<'a>(line: &Line<'a>) -> Vec<(usize, &'a str)> {
    let mut starts = vec![(line.indent, line.text)];
    let (mut col, mut text) = (line.indent, line.text);
    while let Some(rest) = text.strip_prefix("- ") {
        let trimmed = rest.trim_start();
        col += 2 + (rest.len() - trimmed.len());
        text = trimmed;
        starts.push((col, text));
    }
    starts
}

fn starts_with_key(text: &str, key: &str) -> bool {
    [
        format!("{key}:"),
        format!("\"{key}\":"),
        format!("'{key}':"),
    ]
    .iter()
    .any(|k| text.starts_with(k.as_str()))
}

fn find_key(
    lines: &[Line],
    from: usize,
    parent: Option<usize>,
    key: &str,
) -> Option<(usize, usize)> {
    // A flow mapping on the parent's own line: `- { provider: x, model: y }`.
    if let Some(parent_col) = parent {
        let line = &lines[from];
        if let Some(pos) = find_in_flow(line.text, key) {
            let col = line.indent + pos;
            if col > parent_col {
                return Some((from, col));
            }
        }
    }
    for (i, line) in lines.iter().enumerate().skip(from) {
        if is_blank(line) {
            continue;
        }
        let starts = key_starts(line);
        if let Some(parent_col) = parent {
            if i > from && starts.iter().all(|(col, _)| *col <= parent_col) {
                return None; // left the parent's block
            }
        }
        for (col, text) in starts {
            let in_block = match parent {
                Some(p) => col > p,
                None => col == 0,
            };
            if in_block && starts_with_key(text, key) {
                return Some((i, col));
            }
        }
    }
    None
}

fn find_in_flow(text: &str, key: &str) -> Option<usize> {
    let open = text.find('{')?;
    let body = &text[open..];
    for sep in ["{", ",", "{ ", ", "] {
        for (pos, _) in body.match_indices(sep) {
            let after = body[pos + sep.len()..].trim_start();
            if starts_with_key(after, key) {
                return Some(open + body.len() - after.len());
            }
        }
    }
    None
}

fn find_item(
    lines: &[Line],
    from: usize,
    parent_col: usize,
    index: usize,
) -> Option<(usize, usize)> {
    let mut seen = 0;
    let mut item_col = None;
    for (i, line) in lines.iter().enumerate().skip(from + 1) {
        if is_blank(line) {
            continue;
        }
        if line.indent < parent_col || (line.indent == parent_col && !line.text.starts_with("- ")) {
            break;
        }
        if line.text.starts_with("- ") || line.text == "-" {
            let col = *item_col.get_or_insert(line.indent);
            if line.indent == col {
                if seen == index {
                    return Some((i, col));
                }
                seen += 1;
            }
        }
    }
    // A one-line flow sequence such as `models: [a, b]` stays on its own line.
    lines
        .get(from)
        .filter(|l| l.text.contains('['))
        .map(|_| (from, parent_col + 1))
}

/// The first line at or after line `from` (1-based) that holds `value`, with the
/// key written on that line (empty for a sequence item).
pub fn value_line(yaml: &str, from: usize, value: &str) -> Option<(usize, String)> {
    yaml.lines()
        .enumerate()
        .skip(from.saturating_sub(1))
        .find(|(_, line)| line.contains(value))
        .map(|(i, line)| (i + 1, key_before(line, value)))
}

/// The key written just before `value` on `line` (`key: value`, also inside a
/// flow mapping), or empty.
fn key_before(line: &str, value: &str) -> String {
    let Some(pos) = line.find(value) else {
        return String::new();
    };
    let before = line[..pos]
        .trim_end()
        .trim_end_matches(['"', '\''])
        .trim_end();
    let Some(before) = before.strip_suffix(':') else {
        return String::new();
    };
    let start = before.rfind(['{', ',', ' ', '-']).map_or(0, |p| p + 1);
    before[start..].trim_matches(['"', '\'']).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = "\
keys:
  - name: web
    key: abc
  - name: other   # second
    key: def
providers:
  openai:
    type: openai
    base_url: http://x
models:
  gpt-4o:
    targets:
      - { provider: openai, model: gpt-4o }
      - provider: missing
        model: m
    fallbacks: [a, b]
";

    fn path(segs: &[Seg]) -> FieldPath {
        FieldPath(segs.to_vec())
    }

    fn k(s: &str) -> Seg {
        Seg::Key(s.into())
    }

    #[test]
    fn finds_block_and_sequence_fields() {
        assert_eq!(
            line_of(YAML, &path(&[k("keys"), Seg::Index(1), k("name")])),
            Some(4)
        );
        assert_eq!(
            line_of(YAML, &path(&[k("keys"), Seg::Index(1), k("key")])),
            Some(5)
        );
        assert_eq!(
            line_of(YAML, &path(&[k("providers"), k("openai"), k("base_url")])),
            Some(9)
        );
        let second = path(&[
            k("models"),
            k("gpt-4o"),
            k("targets"),
            Seg::Index(1),
            k("provider"),
        ]);
        assert_eq!(line_of(YAML, &second), Some(14));
    }

    #[test]
    fn finds_flow_fields_on_their_line() {
        let first = path(&[
            k("models"),
            k("gpt-4o"),
            k("targets"),
            Seg::Index(0),
            k("model"),
        ]);
        assert_eq!(line_of(YAML, &first), Some(13));
        let fallback = path(&[k("models"), k("gpt-4o"), k("fallbacks"), Seg::Index(1)]);
        assert_eq!(line_of(YAML, &fallback), Some(16));
    }

    #[test]
    fn falls_back_to_the_deepest_ancestor() {
        assert_eq!(
            line_of(YAML, &path(&[k("providers"), k("openai"), k("nope")])),
            Some(7)
        );
        assert_eq!(line_of(YAML, &path(&[k("nothing")])), None);
    }

    #[test]
    fn displays_paths() {
        let p = path(&[
            k("models"),
            k("m"),
            k("targets"),
            Seg::Index(2),
            k("provider"),
        ]);
        assert_eq!(p.to_string(), "models.m.targets[2].provider");
    }
}
