//! Splits a byte stream into AWS event-stream messages
//! (`application/vnd.amazon.eventstream`, `PROVIDERS.md` §3.6).
//!
//! `aws-smithy-eventstream` decodes and CRC-checks each message. Its streaming
//! decoder, though, trusts a message's length before checking the prelude CRC
//! and has no size limit, so a corrupt or hostile length would make it wait for
//! gigabytes that never come. Framing is therefore done here: the prelude's CRC
//! and a size bound are checked as soon as its 12 bytes are in, and only then is
//! a whole message handed to the crate.

use aws_smithy_eventstream::frame::read_message_from;
use aws_smithy_types::event_stream::Message;
use bytes::{Buf, BytesMut};

/// `total_length`, `headers_length`, `prelude_crc`: three big-endian `u32`s.
const PRELUDE_BYTES: usize = 12;
/// Prelude plus the trailing message CRC: the smallest possible message.
const MIN_MESSAGE_BYTES: usize = 16;
/// The largest message accepted. Bedrock's events are a few hundred bytes; AWS's
/// SDKs cap payloads at 16 MiB, so this leaves room without inviting abuse.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024 + 128 * 1024;

/// Bytes received but not yet a whole message.
#[derive(Default)]
pub struct FrameReader {
    pending: BytesMut,
}

impl FrameReader {
    /// Adds bytes as they came off the wire, cut anywhere.
    pub fn push(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }

    /// The next whole message, `None` until one is complete; an error when the
    /// bytes cannot be an event stream (the stream is then unusable).
    pub fn next_message(&mut self) -> Result<Option<Message>, String> {
        if self.pending.len() < PRELUDE_BYTES {
            return Ok(None);
        }
        let prelude = &self.pending[..PRELUDE_BYTES];
        let total = (&prelude[0..4]).get_u32() as usize;
        let prelude_crc = (&prelude[8..12]).get_u32();
        if crc32fast::hash(&prelude[..8]) != prelude_crc {
            return Err("event-stream prelude checksum mismatch".into());
        }
        if !(MIN_MESSAGE_BYTES..=MAX_MESSAGE_BYTES).contains(&total) {
            return Err(format!("event-stream message length {total} out of bounds"));
        }
        if self.pending.len() < total {
            return Ok(None);
        }
        let message = self.pending.split_to(total).freeze();
        read_message_from(message)
            .map(Some)
            .map_err(|e| format!("invalid event-stream message: {e}"))
    }

    /// Whether bytes of an unfinished message are waiting.
    pub fn has_partial(&self) -> bool {
        !self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests;
