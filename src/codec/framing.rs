//! Wire framing: how an Avro datum is wrapped in a Kafka message value (DESIGN §4).
//!
//! Three framings exist in the wild and the decoders accept all of them, telling the caller
//! which one they saw so the outputs can be written the same way:
//!
//! * **Confluent**: `0x00`, then the schema-registry id as 4 bytes big-endian.
//! * **Single-object** (Avro spec): `0xC3 0x01`, then the schema's CRC-64-AVRO fingerprint as
//!   8 bytes little-endian. The fingerprint must be the expected schema's.
//! * **Raw**: the bare datum.
//!
//! Detection is unambiguous for both of our records because each starts with `utterance_id`,
//! whose zigzag length varint comes first in a raw datum: a first byte `0x00` would be length
//! 0, an empty id, which the decoders reject anyway; and `0xC3 0x01` is the varint 195, zigzag
//! −98, a negative length that no valid datum can have. So a message starting with either magic
//! is never a valid raw datum, and is decoded as that framing (too short a header is
//! `truncated`).

use super::error::DecodeError;
use super::schema::RecordSchema;

/// First byte of Confluent framing.
pub const CONFLUENT_MAGIC: u8 = 0x00;
/// First two bytes of Avro single-object encoding.
pub const SINGLE_OBJECT_MAGIC: [u8; 2] = [0xC3, 0x01];

const CONFLUENT_HEADER_LEN: usize = 5;
pub(crate) const SINGLE_OBJECT_HEADER_LEN: usize = 10;

/// How a datum is (or is to be) framed in a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Framing {
    /// The bare Avro datum.
    Raw,
    /// Avro single-object encoding with the schema's fingerprint.
    SingleObject,
    /// Confluent schema-registry framing.
    Confluent {
        /// Registry id of the writer's schema.
        schema_id: u32,
    },
}

impl Framing {
    /// Length of the header this framing puts before the datum.
    pub fn header_len(&self) -> usize {
        match self {
            Framing::Raw => 0,
            Framing::SingleObject => SINGLE_OBJECT_HEADER_LEN,
            Framing::Confluent { .. } => CONFLUENT_HEADER_LEN,
        }
    }

    /// Recognises the framing of `bytes`, expecting a datum of `schema`, and returns it with
    /// the offset where the datum starts. Fails on a short header or a foreign fingerprint.
    pub fn detect(bytes: &[u8], schema: RecordSchema) -> Result<(Framing, usize), DecodeError> {
        let framing = match bytes {
            [CONFLUENT_MAGIC, ..] => {
                let id = header_field::<4>(bytes, 1, "Confluent header")?;
                Framing::Confluent { schema_id: u32::from_be_bytes(id) }
            }
            [0xC3, 0x01, ..] => {
                let found = u64::from_le_bytes(header_field::<8>(
                    bytes,
                    SINGLE_OBJECT_MAGIC.len(),
                    "single-object header",
                )?);
                check_fingerprint(found, schema)?;
                Framing::SingleObject
            }
            _ => Framing::Raw,
        };
        Ok((framing, framing.header_len()))
    }

    /// Appends this framing's header for a datum of `schema` to `out`.
    pub fn write_header(&self, schema: RecordSchema, out: &mut Vec<u8>) {
        match self {
            Framing::Raw => {}
            Framing::SingleObject => {
                out.extend_from_slice(&SINGLE_OBJECT_MAGIC);
                out.extend_from_slice(&schema.fingerprint().to_le_bytes());
            }
            Framing::Confluent { schema_id } => {
                out.push(CONFLUENT_MAGIC);
                out.extend_from_slice(&schema_id.to_be_bytes());
            }
        }
    }
}

/// The `N` header bytes that follow a magic of `magic_len` bytes.
fn header_field<const N: usize>(
    bytes: &[u8],
    magic_len: usize,
    what: &'static str,
) -> Result<[u8; N], DecodeError> {
    bytes.get(magic_len..magic_len + N).and_then(|field| <[u8; N]>::try_from(field).ok()).ok_or(
        DecodeError::Truncated {
            what,
            offset: magic_len,
            needed: N as u64,
            available: bytes.len().saturating_sub(magic_len),
        },
    )
}

fn check_fingerprint(found: u64, schema: RecordSchema) -> Result<(), DecodeError> {
    let expected = schema.fingerprint();
    if found == expected {
        Ok(())
    } else {
        Err(DecodeError::UnknownFingerprint { found, expected, schema: schema.name() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Framing; 4] = [
        Framing::Raw,
        Framing::SingleObject,
        Framing::Confluent { schema_id: 0 },
        Framing::Confluent { schema_id: 0xDEAD_BEEF },
    ];

    #[test]
    fn headers_round_trip_for_both_schemas() {
        for schema in RecordSchema::ALL {
            for framing in ALL {
                let mut buf = Vec::new();
                framing.write_header(schema, &mut buf);
                assert_eq!(buf.len(), framing.header_len());
                buf.push(0x02); // first byte of a raw datum: a one-byte utterance_id length
                assert_eq!(Framing::detect(&buf, schema), Ok((framing, framing.header_len())));
            }
        }
    }

    #[test]
    fn confluent_id_is_big_endian() {
        let mut buf = Vec::new();
        Framing::Confluent { schema_id: 0x0102_0304 }.write_header(RecordSchema::FeatureRecord, &mut buf);
        assert_eq!(buf, [0x00, 0x01, 0x02, 0x03, 0x04]);
    }

    #[test]
    fn single_object_fingerprint_must_be_the_expected_schemas() {
        let mut buf = Vec::new();
        Framing::SingleObject.write_header(RecordSchema::EmotionPrediction, &mut buf);
        let err = Framing::detect(&buf, RecordSchema::FeatureRecord).unwrap_err();
        assert_eq!(err.reason(), "unknown_schema");
        assert!(matches!(err, DecodeError::UnknownFingerprint { schema: "FeatureRecord", .. }));
    }

    #[test]
    fn short_headers_are_truncated() {
        for bytes in [&[0x00][..], &[0x00, 1, 2, 3], &[0xC3, 0x01], &[0xC3, 0x01, 1, 2, 3, 4, 5, 6, 7]] {
            let err = Framing::detect(bytes, RecordSchema::FeatureRecord).unwrap_err();
            assert_eq!(err.reason(), "truncated", "{bytes:02x?}");
        }
    }

    #[test]
    fn other_first_bytes_are_raw() {
        for bytes in [&[][..], &[0xC3], &[0xC3, 0x02], &[0x02, b'a'], &[0x01]] {
            assert_eq!(Framing::detect(bytes, RecordSchema::FeatureRecord), Ok((Framing::Raw, 0)));
        }
    }
}
