//! The archive stage's prediction decoder (current and legacy schema, every framing) on
//! arbitrary bytes: a prediction or a `DecodeError` with a reason code, never a panic.
use emogate::codec::{decode_prediction, DecodeError};

fn main() {
    afl::fuzz!(|data: &[u8]| {
        if let Err(e) = decode_prediction(data) {
            assert!(DecodeError::REASONS.contains(&e.reason()), "{e}");
        }
    });
}
