//! Avro codec: see the codec work.
