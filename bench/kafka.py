"""Kafka consumer-group throughput: 1 vs 2 `logguardian serve` members.

    PYTHONPATH=sidecar .venv/bin/python bench/kafka.py [--records 200000] [--repeats 2]

A real Kafka 4 broker (tests/services/kafka.sh) gets one topic of 8 partitions holding
`--records` Fluent Bit-style JSON records keyed by service (16 services). For each
round a fresh consumer group of 1, then of 2, real `logguardian serve` processes reads
the whole topic; the figure is records / seconds from the moment every member is
healthy until the group's committed offsets reach the end of every partition (so it
includes the group join and the last commit interval). Rounds are interleaved and the
median is reported; the machine is shared, so only the 2-vs-1 ratio of one run
compares. Each member's `logguardian_received_total` is read too, to show how the
partitions were split.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from confluent_kafka import Consumer, TopicPartition
from services.kafka_fixtures import KafkaBroker
from services.serve import Serve

PARTITIONS = 8
SERVICES = 16
SHAPES = (
    "INFO order {} placed by user {}",
    "WARN payment {} retried after {} ms",
    "ERROR inventory {} out of stock at shelf {}",
    "INFO GET /api/items/{} 200 in {}ms",
)


def messages(n: int) -> list[tuple[bytes, bytes]]:
    now = time.time()
    out = []
    for i in range(n):
        service = f"svc-{i % SERVICES}"
        doc = {"@timestamp": now + i / 1000, "log": SHAPES[i % 4].format(i, i % 113)}
        doc["service"] = service
        out.append((service.encode(), json.dumps(doc).encode()))
    return out


def committed(broker: KafkaBroker, group: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
    try:
        tps = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], 10)
        return sum(max(tp.offset, 0) for tp in tps)
    finally:
        consumer.close()


def run_group(broker: KafkaBroker, topic: str, members: int, total: int, work: Path) -> float:
    group = f"bench-{uuid.uuid4().hex[:8]}"
    env = {
        "LOGGUARDIAN_RECEIVERS__KAFKA__BROKERS": json.dumps([broker.bootstrap]),
        "LOGGUARDIAN_RECEIVERS__KAFKA__TOPICS": json.dumps([topic]),
        "LOGGUARDIAN_RECEIVERS__KAFKA__GROUP_ID": group,
        "LOGGUARDIAN_RECEIVERS__KAFKA__COMMIT_SECONDS": "0.5",
    }
    serves = [Serve(work / f"{group}-{i}", env) for i in range(members)]
    try:
        # Start every process first, then time from when all are healthy.
        for serve in serves:
            serve.start(wait=False)
        for serve in serves:
            serve.wait_healthy(120)
        started = time.perf_counter()
        while committed(broker, group, topic) < total:
            time.sleep(0.1)
        seconds = time.perf_counter() - started
        split = [int(s.metric("logguardian_received_total", 'receiver="kafka"')) for s in serves]
        print(
            f"  {members} member(s): {total / seconds:9.0f} records/s"
            f"  ({seconds:.1f} s; split {split})"
        )
        return total / seconds
    finally:
        for serve in serves:
            serve.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="logguardian-bench-kafka-") as tmp:
        work = Path(tmp)
        broker = KafkaBroker(work / "broker")
        broker.start()
        try:
            topic = "bench-logs"
            broker.create_topic(topic, PARTITIONS)
            t0 = time.perf_counter()
            broker.produce(topic, messages(args.records))
            print(f"produced {args.records} records in {time.perf_counter() - t0:.1f} s")
            rates: dict[int, list[float]] = {1: [], 2: []}
            for _ in range(args.repeats):
                for members in (1, 2):
                    rates[members].append(run_group(broker, topic, members, args.records, work))
            one, two = statistics.median(rates[1]), statistics.median(rates[2])
            print(
                f"median: 1 member {one:.0f} records/s, 2 members {two:.0f} records/s,"
                f" ratio {two / one:.2f}x"
            )
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
