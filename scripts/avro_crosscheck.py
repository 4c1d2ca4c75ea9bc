#!/usr/bin/env python3
"""Cross-checks emogate's Rust Avro codec against fastavro, an independent implementation.

Used by tests/codec_crosscheck.rs; prints one JSON object on stdout:
{"fingerprints": {"feature": HEX, "prediction": HEX}, "files": {NAME: RECORD}}.
Fingerprints are fastavro's CRC-64-AVRO of the Parsing Canonical Form, hex in wire (little-endian)
byte order. Floats appear as their float32 bit patterns so both sides compare them exactly.

  read DIR                  decode every DIR/feature-*.bin and DIR/prediction-*.bin
  write DIR N SEED DIMS     write N random FeatureRecords (DIMS features) and N EmotionPredictions
  read-legacy DIR           decode DIR/prediction-*.bin as a reader of the legacy schema would
                            (writer: the current schema, reader: schemas/legacy/, so the
                            `uncertainty` fields are skipped by Avro schema resolution)
  write-legacy DIR N SEED   write N EmotionPredictions with the legacy schema, single-object
                            framing with its fingerprint (records an older emogate left behind)

Framing is Confluent (0x00 + 4-byte big-endian id), single-object (0xC3 0x01 + fingerprint) or
raw, by the first bytes. Reading strips `logicalType` from the schema: timestamp-millis is encoded
as a plain long, and reading it as one lets every int64 through (datetime cannot hold them all).
"""
import io
import json
import random
import struct
import sys
from pathlib import Path

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_FILES = {
    "feature": ROOT / "schemas" / "feature_record.avsc",
    "prediction": ROOT / "schemas" / "emotion_prediction.avsc",
    "prediction_legacy": ROOT / "schemas" / "legacy" / "emotion_prediction.0.avsc",
}
ATTRIBUTES = ("valence", "arousal", "dominance")


def strip_logical_types(node):
    if isinstance(node, dict):
        return {k: strip_logical_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [strip_logical_types(v) for v in node]
    return node


def load_schema(kind, strip=False):
    raw = json.loads(SCHEMA_FILES[kind].read_text())
    return fastavro.parse_schema(strip_logical_types(raw) if strip else raw)


def schema_fingerprint(kind):
    return fingerprint(to_parsing_canonical_form(load_schema(kind)), "CRC-64-AVRO")


def f32_bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


def random_f32(rng):
    while True:
        bits = rng.getrandbits(32)
        if (bits >> 23) & 0xFF != 0xFF:  # finite: exponent not all ones
            return struct.unpack("<f", struct.pack("<I", bits))[0]


def random_text(rng, min_len=0):
    pools = [(0x20, 0x7E), (0x00, 0x1F), (0xA0, 0x24F), (0x370, 0x3FF), (0x4E00, 0x9FFF), (0x1F300, 0x1F6FF)]
    return "".join(chr(rng.randint(*rng.choice(pools))) for _ in range(rng.randint(min_len, 20)))


def maybe_text(rng):
    return None if rng.random() < 0.3 else random_text(rng)


def framing_json(framing, schema_id=None):
    return {"framing": framing, "schema_id": schema_id}


def feature_json(rec, framing):
    return {
        **framing,
        "utterance_id": rec["utterance_id"],
        "speaker_id": rec["speaker_id"],
        "source": rec["source"],
        "timestamp": rec["timestamp"],
        "feature_set": rec["feature_set"],
        "features": [f32_bits(x) for x in rec["features"]],
    }


def attribute_json(a):
    return {
        "value": f32_bits(a["value"]),
        "consensus": f32_bits(a["consensus"]),
        "distribution": [f32_bits(x) for x in a["distribution"]],
        "entropy": f32_bits(a["entropy"]),
        "uncertainty_source": a["uncertainty_source"],
        "accepted": a["accepted"],
        # Absent for a reader of the legacy schema, which has no such field.
        **({"uncertainty": None if a["uncertainty"] is None else f32_bits(a["uncertainty"])} if "uncertainty" in a else {}),
    }


def prediction_json(rec, framing):
    out = {**framing}
    for key in ("utterance_id", "speaker_id", "source", "timestamp", "processed_at", "model_version", "decision"):
        out[key] = rec[key]
    for attribute in ATTRIBUTES:
        out[attribute] = attribute_json(rec[attribute])
    return out


def split_framing(data, fp, name):
    if data[:1] == b"\x00":
        return framing_json("confluent", int.from_bytes(data[1:5], "big")), data[5:]
    if data[:2] == b"\xc3\x01":
        if data[2:10] != fp:
            sys.exit(f"{name}: single-object fingerprint {data[2:10].hex()} is not fastavro's {fp.hex()}")
        return framing_json("single_object"), data[10:]
    return framing_json("raw"), data


def read_files(directory, kind, to_json, reader_schema=None):
    """Decodes DIR/<kind>-*.bin written with `kind`'s schema, as `reader_schema` if given."""
    writer = load_schema(kind, strip=True)
    fp = bytes.fromhex(schema_fingerprint(kind))
    files = {}
    for path in sorted(Path(directory).glob(f"{kind}-*.bin")):
        framing, body = split_framing(path.read_bytes(), fp, path.name)
        stream = io.BytesIO(body)
        record = fastavro.schemaless_reader(stream, writer, reader_schema)
        if stream.tell() != len(body):
            sys.exit(f"{path.name}: {len(body) - stream.tell()} trailing bytes")
        files[path.name] = to_json(record, framing)
    return files


def read_legacy(directory):
    return read_files(directory, "prediction", prediction_json, load_schema("prediction_legacy", strip=True))


def write_legacy(directory, n, seed):
    rng = random.Random(seed)
    schema = load_schema("prediction_legacy")
    header = b"\xc3\x01" + bytes.fromhex(schema_fingerprint("prediction_legacy"))
    files = {}
    for i in range(n):
        record = random_prediction(rng)
        for attribute in ATTRIBUTES:
            del record[attribute]["uncertainty"]
        body = io.BytesIO()
        fastavro.schemaless_writer(body, schema, record)
        name = f"prediction-{i:03}.bin"
        (Path(directory) / name).write_bytes(header + body.getvalue())
        files[name] = prediction_json(record, framing_json("single_object"))
    return files


def read(directory):
    return {**read_files(directory, "feature", feature_json), **read_files(directory, "prediction", prediction_json)}


def random_feature_record(rng, dims):
    return {
        "utterance_id": random_text(rng, min_len=1),
        "speaker_id": maybe_text(rng),
        "source": maybe_text(rng),
        "timestamp": rng.randint(-(2**63), 2**63 - 1),
        "feature_set": random_text(rng),
        "features": [random_f32(rng) for _ in range(dims)],
    }


def random_attribute(rng):
    return {
        "value": random_f32(rng),
        "consensus": random_f32(rng),
        "distribution": [random_f32(rng) for _ in range(7)],
        "entropy": random_f32(rng),
        "uncertainty_source": rng.choice(ATTRIBUTES),
        "accepted": rng.random() < 0.5,
        "uncertainty": None if rng.random() < 0.3 else random_f32(rng),
    }


def random_prediction(rng):
    rec = {
        "utterance_id": random_text(rng, min_len=1),
        "speaker_id": maybe_text(rng),
        "source": maybe_text(rng),
        "timestamp": rng.randint(-(2**63), 2**63 - 1),
        "processed_at": rng.randint(-(2**63), 2**63 - 1),
        "model_version": random_text(rng),
        "decision": rng.choice(("ACCEPTED", "REJECTED")),
    }
    for attribute in ATTRIBUTES:
        rec[attribute] = random_attribute(rng)
    return rec


def frame(i, rng, fp):
    """Cycles raw / single-object / Confluent framing; returns (header bytes, framing json)."""
    if i % 3 == 0:
        return b"", framing_json("raw")
    if i % 3 == 1:
        return b"\xc3\x01" + fp, framing_json("single_object")
    schema_id = rng.randint(0, 2**32 - 1)
    return b"\x00" + schema_id.to_bytes(4, "big"), framing_json("confluent", schema_id)


def write(directory, n, seed, dims):
    rng = random.Random(seed)
    files = {}
    kinds = (
        ("feature", lambda: random_feature_record(rng, dims), feature_json),
        ("prediction", lambda: random_prediction(rng), prediction_json),
    )
    for kind, make, to_json in kinds:
        schema = load_schema(kind)
        fp = bytes.fromhex(schema_fingerprint(kind))
        for i in range(n):
            record = make()
            header, framing = frame(i, rng, fp)
            body = io.BytesIO()
            fastavro.schemaless_writer(body, schema, record)
            name = f"{kind}-{i:03}.bin"
            (Path(directory) / name).write_bytes(header + body.getvalue())
            files[name] = to_json(record, framing)
    return files


def main(argv):
    if len(argv) == 2 and argv[0] == "read":
        files = read(argv[1])
    elif len(argv) == 5 and argv[0] == "write":
        files = write(argv[1], int(argv[2]), int(argv[3]), int(argv[4]))
    elif len(argv) == 2 and argv[0] == "read-legacy":
        files = read_legacy(argv[1])
    elif len(argv) == 4 and argv[0] == "write-legacy":
        files = write_legacy(argv[1], int(argv[2]), int(argv[3]))
    else:
        sys.exit(__doc__)
    fingerprints = {kind: schema_fingerprint(kind) for kind in SCHEMA_FILES}
    json.dump({"fingerprints": fingerprints, "files": files}, sys.stdout, ensure_ascii=True)


if __name__ == "__main__":
    main(sys.argv[1:])
