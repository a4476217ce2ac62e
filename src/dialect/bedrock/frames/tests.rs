//! The framing against AWS's event-stream vectors: aws-sdk-go's valid and
//! corrupted frames, smithy-rs's edge cases (`../shared/vectors/eventstream`).

use std::path::{Path, PathBuf};

use base64::Engine;

use super::{FrameReader, MAX_MESSAGE_BYTES};

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors/eventstream")
}

fn read(path: PathBuf) -> Vec<u8> {
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every message in `bytes`, fed `piece` bytes at a time.
fn decode_in_pieces(
    bytes: &[u8],
    piece: usize,
) -> Result<Vec<aws_smithy_types::event_stream::Message>, String> {
    let mut reader = FrameReader::default();
    let mut messages = Vec::new();
    for chunk in bytes.chunks(piece) {
        reader.push(chunk);
        while let Some(message) = reader.next_message()? {
            messages.push(message);
        }
    }
    assert!(!reader.has_partial(), "bytes left over");
    Ok(messages)
}

#[test]
fn valid_go_sdk_frames_decode_to_their_payloads_whatever_the_cuts() {
    for name in [
        "all_headers",
        "empty_message",
        "int32_header",
        "payload_no_headers",
        "payload_one_str_header",
    ] {
        let wire = read(
            vectors()
                .join("aws-sdk-go-testdata/encoded/positive")
                .join(name),
        );
        let expected: serde_json::Value = serde_json::from_slice(&read(
            vectors()
                .join("aws-sdk-go-testdata/decoded/positive")
                .join(name),
        ))
        .unwrap();
        let payload = base64::engine::general_purpose::STANDARD
            .decode(expected["payload"].as_str().unwrap_or(""))
            .unwrap();
        for piece in [1, 3, 12, 13, wire.len()] {
            let messages = decode_in_pieces(&wire, piece).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(messages.len(), 1, "{name}");
            assert_eq!(messages[0].payload().as_ref(), payload.as_slice(), "{name}");
            let header_count = expected["headers"].as_array().map_or(0, Vec::len);
            assert_eq!(messages[0].headers().len(), header_count, "{name}");
        }
    }
}

#[test]
fn corrupted_go_sdk_frames_are_errors_not_waits() {
    for name in [
        "corrupted_header_len",
        "corrupted_headers",
        "corrupted_length",
        "corrupted_payload",
    ] {
        let wire = read(
            vectors()
                .join("aws-sdk-go-testdata/encoded/negative")
                .join(name),
        );
        for piece in [1, 7, wire.len()] {
            let mut reader = FrameReader::default();
            let mut failed = false;
            for chunk in wire.chunks(piece) {
                reader.push(chunk);
                if reader.next_message().is_err() {
                    failed = true;
                    break;
                }
            }
            assert!(failed, "{name} in pieces of {piece} was not refused");
        }
    }
}

#[test]
fn smithy_edge_cases_decode_or_fail_as_expected() {
    let dir = vectors().join("smithy-rs-test_data");
    let valid = read(dir.join("valid_with_all_headers_and_payload"));
    let messages = decode_in_pieces(&valid, 5).unwrap();
    assert_eq!(messages[0].payload().as_ref(), b"some payload");
    assert_eq!(messages[0].headers().len(), 10);
    let no_headers = decode_in_pieces(&read(dir.join("valid_no_headers")), 1).unwrap();
    assert_eq!(no_headers[0].payload().as_ref(), b"another test payload");
    for name in [
        "invalid_prelude_checksum",
        "invalid_message_checksum",
        "invalid_header_value_type",
        "invalid_header_name_length",
        "invalid_headers_length",
        "invalid_header_string_value_length",
        "invalid_header_string_length_cut_off",
        "invalid_header_name_length_too_long",
    ] {
        assert!(
            decode_in_pieces(&read(dir.join(name)), 4).is_err(),
            "{name} was accepted"
        );
    }
}

#[test]
fn a_length_beyond_the_bound_is_refused_once_the_prelude_is_in() {
    let total = (MAX_MESSAGE_BYTES + 1) as u32;
    let mut prelude = Vec::new();
    prelude.extend_from_slice(&total.to_be_bytes());
    prelude.extend_from_slice(&0u32.to_be_bytes());
    let crc = crc32fast::hash(&prelude);
    prelude.extend_from_slice(&crc.to_be_bytes());
    let mut reader = FrameReader::default();
    reader.push(&prelude[..11]);
    assert!(reader.next_message().unwrap().is_none());
    reader.push(&prelude[11..]);
    let error = reader.next_message().unwrap_err();
    assert!(error.contains("out of bounds"), "{error}");
}
