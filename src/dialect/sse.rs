//! Server-sent events parsing, incremental and boundary-agnostic.
//!
//! Chunks arrive cut anywhere (inside a line, inside a UTF-8 sequence); this
//! collects complete events and keeps the rest for the next chunk. Only `data`
//! fields matter for OpenAI-style streams; comments and other fields are dropped.

/// Longest line accepted before the stream is declared broken.
const MAX_LINE: usize = 16 * 1024 * 1024;

/// The parser state between chunks.
#[derive(Default)]
pub struct SseParser {
    buf: Vec<u8>,
    data: Option<Vec<u8>>,
}

impl SseParser {
    /// Feeds a chunk; the `data` of each completed event is appended to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<Vec<u8>>) -> Result<(), String> {
        self.buf.extend_from_slice(chunk);
        let mut start = 0;
        while let Some(pos) = self.buf[start..].iter().position(|&b| b == b'\n') {
            let end = start + pos;
            let line = &self.buf[start..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                if let Some(data) = self.data.take() {
                    out.push(data);
                }
            } else if line[0] != b':' {
                let (field, value) = match line.iter().position(|&b| b == b':') {
                    Some(colon) => {
                        let value = &line[colon + 1..];
                        (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
                    }
                    None => (line, &b""[..]),
                };
                if field == b"data" {
                    let data = self.data.get_or_insert_with(Vec::new);
                    if !data.is_empty() {
                        data.push(b'\n');
                    }
                    data.extend_from_slice(value);
                }
            }
            start = end + 1;
        }
        self.buf.drain(..start);
        if self.buf.len() > MAX_LINE {
            return Err(format!("an SSE line is longer than {MAX_LINE} bytes"));
        }
        Ok(())
    }

    /// True when bytes of an unfinished event are pending.
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty() || self.data.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in_pieces(input: &[u8], piece: usize) -> Vec<Vec<u8>> {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        for chunk in input.chunks(piece) {
            p.push(chunk, &mut out).unwrap();
        }
        assert!(!p.has_partial());
        out
    }

    #[test]
    fn events_survive_any_chunking() {
        let input = "data: {\"a\":\"é\"}\n\n: keep-alive comment\n\nevent: x\r\ndata: one\r\ndata: two\r\n\r\ndata:[DONE]\n\n";
        for piece in 1..input.len() {
            let out = parse_in_pieces(input.as_bytes(), piece);
            assert_eq!(
                out,
                vec![
                    "{\"a\":\"é\"}".as_bytes().to_vec(),
                    b"one\ntwo".to_vec(),
                    b"[DONE]".to_vec()
                ],
                "piece size {piece}"
            );
        }
    }

    #[test]
    fn unfinished_events_are_reported() {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        p.push(b"data: {\"cut", &mut out).unwrap();
        assert!(out.is_empty());
        assert!(p.has_partial());
    }
}
