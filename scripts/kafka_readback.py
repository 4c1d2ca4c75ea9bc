"""Independent check of emogate's output topics: confluent-kafka (its own librdkafka build)
reads every committed message, fastavro decodes predictions against schemas/*.avsc.

Prints one JSON object: counts per topic, predictions decoded, duplicates by the
`emogate.input` header, DLQ reasons, and the `emogate.input` positions seen. Used by the
pipeline integration tests; never by the service.

usage: kafka_readback.py --brokers B --topics T1,T2,... --expected N [--timeout S]
"""
import argparse
import io
import json
import struct
import sys
import time
import uuid
from collections import Counter

import fastavro
from confluent_kafka import Consumer, TopicPartition, KafkaException

SINGLE_OBJECT = b"\xc3\x01"


def load_schema(path):
    with open(path) as f:
        return fastavro.parse_schema(json.load(f))


def decode_prediction(schema, payload):
    if payload[:2] == SINGLE_OBJECT:
        body = payload[10:]
    elif payload[:1] == b"\x00":
        body = payload[5:]
    else:
        body = payload
    return fastavro.schemaless_reader(io.BytesIO(body), schema)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--topics", required=True)
    ap.add_argument("--expected", type=int, required=True)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--settle", type=float, default=1.5)
    ap.add_argument("--schema", default="schemas/emotion_prediction.avsc")
    args = ap.parse_args()
    schema = load_schema(args.schema)
    topics = args.topics.split(",")
    consumer = Consumer({
        "bootstrap.servers": args.brokers,
        "group.id": f"emogate-readback-{uuid.uuid4()}",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
        "auto.offset.reset": "earliest",
    })
    assignment = []
    for topic in topics:
        md = consumer.list_topics(topic, timeout=10).topics[topic]
        if md.error is not None:
            raise SystemExit(f"topic {topic}: {md.error}")
        assignment += [TopicPartition(topic, p, 0) for p in md.partitions]
    consumer.assign(assignment)

    counts = Counter()
    reasons = Counter()
    decisions = Counter()
    inputs = Counter()
    bad_predictions = []
    seen = 0
    started = last = time.time()
    while time.time() - started < args.timeout:
        msg = consumer.poll(0.2)
        if msg is None:
            if seen >= args.expected and time.time() - last >= args.settle:
                break
            continue
        if msg.error():
            raise KafkaException(msg.error())
        seen += 1
        last = time.time()
        headers = {k: (v or b"").decode() for k, v in (msg.headers() or [])}
        counts[msg.topic()] += 1
        inputs[headers.get("emogate.input", "?")] += 1
        if "emogate.error" in headers:
            reasons[headers["emogate.error"]] += 1
            if not headers.get("emogate.error.detail"):
                bad_predictions.append("dead letter without emogate.error.detail")
            continue
        try:
            record = decode_prediction(schema, msg.value())
        except Exception as e:  # noqa: BLE001 - reported, the test fails on it
            bad_predictions.append(f"{msg.topic()}/{msg.partition()}/{msg.offset()}: {e}")
            continue
        decisions[record["decision"]] += 1
        expected_topic = "accepted" if record["decision"] == "ACCEPTED" else "rejected"
        if expected_topic not in msg.topic():
            bad_predictions.append(f"{record['decision']} prediction on {msg.topic()}")
        if headers.get("emogate.model") != record["model_version"]:
            bad_predictions.append("emogate.model header differs from model_version")
        if msg.key() is None:
            bad_predictions.append("prediction without key")
    consumer.close()
    json.dump({
        "total": seen,
        "per_topic": dict(counts),
        "decisions": dict(decisions),
        "dlq_reasons": dict(reasons),
        "distinct_inputs": len(inputs),
        "duplicates": sum(n - 1 for n in inputs.values() if n > 1),
        "problems": bad_predictions[:20],
    }, sys.stdout)


if __name__ == "__main__":
    main()
