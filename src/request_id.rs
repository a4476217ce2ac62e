//! `x-request-id`: the client's when it is safe to echo, otherwise a new one.

/// The client's id if it is 1–128 characters of `[A-Za-z0-9._:-]`, else a fresh one.
pub fn accept_or_generate(client: Option<&[u8]>) -> String {
    match client {
        Some(id) if is_valid(id) => String::from_utf8_lossy(id).into_owned(),
        _ => generate(),
    }
}

fn is_valid(id: &[u8]) -> bool {
    (1..=128).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// 128 random bits as 32 hex characters.
pub fn generate() -> String {
    format!("{:032x}", rand::random::<u128>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_valid_ids_and_replaces_others() {
        assert_eq!(accept_or_generate(Some(b"req-1.a_b:c")), "req-1.a_b:c");
        for bad in [
            &b""[..],
            b"has space",
            b"semi;colon",
            &[b'a'; 129][..],
            b"\xff",
        ] {
            let id = accept_or_generate(Some(bad));
            assert_eq!(id.len(), 32, "{bad:?}");
            assert!(is_valid(id.as_bytes()));
        }
        assert_ne!(generate(), generate());
    }
}
