//! Test access to the public recordings in `../shared/vectors/` (golden tests).

use serde_yaml::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/vectors/fixtures");

/// One recorded HTTP exchange of an envoy-ai-gateway cassette.
pub struct Interaction {
    pub url: String,
    pub host: String,
    /// The query parameters, as recorded under `form`.
    pub form: Value,
    pub request_body: String,
    pub status: u64,
    pub response_body: String,
}

/// The first interaction of cassette `name`.
pub fn cassette(name: &str) -> Interaction {
    let path = format!("{FIXTURES}/envoy-ai-gateway/cassettes/{name}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let doc: Value = serde_yaml::from_str(&text).unwrap();
    let i = &doc["interactions"][0];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    Interaction {
        url: text(&i["request"]["url"]),
        host: text(&i["request"]["host"]),
        form: i["request"]["form"].clone(),
        request_body: text(&i["request"]["body"]),
        status: i["response"]["code"].as_u64().unwrap(),
        response_body: text(&i["response"]["body"]),
    }
}

/// The lines of a vercel-ai `*.chunks.txt` recording (one JSON chunk per line).
pub fn chunk_lines(relative: &str) -> Vec<String> {
    let path = format!("{FIXTURES}/vercel-ai/{relative}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}
