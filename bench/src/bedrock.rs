//! Bedrock's wire format for the fake upstream: the paths it answers and the
//! ConverseStream event frames (`application/vnd.amazon.eventstream`), encoded
//! with AWS's own codec so the gateway decodes exactly what Bedrock sends.

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};

/// `/model/{id}/converse` → `(id, false)`, `/model/{id}/converse-stream` →
/// `(id, true)`; `None` for any other path.
pub fn operation(path: &str) -> Option<(&str, bool)> {
    let (id, operation) = path.strip_prefix("/model/")?.rsplit_once('/')?;
    match operation {
        "converse" => Some((id, false)),
        "converse-stream" => Some((id, true)),
        _ => None,
    }
}

/// One ConverseStream event: the three string headers Bedrock sends and a JSON
/// payload.
pub fn event(event_type: &'static str, payload: &str) -> Result<Vec<u8>, String> {
    let message = Message::new(payload.as_bytes().to_vec())
        .add_header(Header::new(
            ":event-type",
            HeaderValue::String(event_type.into()),
        ))
        .add_header(Header::new(
            ":content-type",
            HeaderValue::String("application/json".into()),
        ))
        .add_header(Header::new(
            ":message-type",
            HeaderValue::String("event".into()),
        ));
    let mut frame = Vec::new();
    write_message_to(&message, &mut frame).map_err(|e| format!("cannot encode a frame: {e}"))?;
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_converse_paths() {
        assert_eq!(
            operation("/model/bench-model/converse"),
            Some(("bench-model", false))
        );
        assert_eq!(
            operation("/model/a%3A0/converse-stream"),
            Some(("a%3A0", true))
        );
        assert_eq!(operation("/v1/chat/completions"), None);
        assert_eq!(operation("/model/x/invoke"), None);
    }

    #[test]
    fn frames_carry_their_length_and_payload() {
        let frame = event(
            "contentBlockDelta",
            r#"{"contentBlockIndex":0,"delta":{"text":"hi"}}"#,
        )
        .unwrap();
        let total = u32::from_be_bytes(frame[0..4].try_into().unwrap()) as usize;
        assert_eq!(total, frame.len());
        let payload_at = frame.len() - 4 - 45;
        assert_eq!(
            &frame[payload_at..frame.len() - 4],
            br#"{"contentBlockIndex":0,"delta":{"text":"hi"}}"#
        );
    }
}
