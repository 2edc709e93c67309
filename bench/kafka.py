"""Kafka mode on a real broker: throughput of 1 vs 2 members, the rebalance pause, the
state restore time per MB, and consumer lag under a producer at 80% of capacity.

    PYTHONPATH=sidecar .venv/bin/python bench/kafka.py [--records 200000] [--repeats 2]

A real Kafka 4 broker (tests/services/kafka.sh) gets one topic of 8 partitions holding
`--records` Fluent Bit-style JSON records keyed by service (16 services).

1. records/s: for each round a fresh consumer group of 1, then of 2, real
   `logguardian serve` processes reads the whole topic; the figure is records /
   seconds from the moment every member is healthy until the group's committed
   offsets reach the end of every partition (so it includes the group join, the
   state checkpoints and the last commit interval). Rounds are interleaved and the
   median is reported; only the 2-vs-1 ratio of one run compares.
2. rebalance pause: two members read a steady stream; one leaves (SIGTERM, then in a
   second run SIGKILL). The pause is the longest time a partition's committed offset
   stood still across the departure (commits every 0.5 s when nothing moves).
   SIGKILL adds the session timeout (6 s here; librdkafka's default is 45 s).
3. restore per MB: services with many templates are checkpointed to the changelog
   topic from one chain and restored into a fresh one (read + import), in process.
4. lag at 80%: one member, a producer at 80% of the 1-member rate from (1); the
   group's lag (log end minus committed offsets) sampled every second.

The machine is shared (2 cores, several agents): the load average is printed before
and after.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

# bench/grpc.py would shadow the grpc package the Kafka receiver's OTLP decoding needs.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.append(str(Path(__file__).resolve().parents[1] / "tests"))
from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from services.kafka_fixtures import KafkaBroker  # noqa: E402
from services.serve import Serve, get  # noqa: E402

PARTITIONS = 8
SERVICES = 16
SHAPES = (
    "INFO order {} placed by user {}",
    "WARN payment {} retried after {} ms",
    "ERROR inventory {} out of stock at shelf {}",
    "INFO GET /api/items/{} 200 in {}ms",
)


def message(i: int, now: float) -> tuple[bytes, bytes]:
    service = f"svc-{i % SERVICES}"
    doc = {"@timestamp": now + i / 1000, "log": SHAPES[i % 4].format(i, i % 113)}
    doc["service"] = service
    return service.encode(), json.dumps(doc).encode()


def messages(n: int) -> list[tuple[bytes, bytes]]:
    now = time.time()
    return [message(i, now) for i in range(n)]


def committed(broker: KafkaBroker, group: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
    try:
        tps = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], 10)
        return {tp.partition: max(tp.offset, 0) for tp in tps}
    finally:
        consumer.close()


def log_end(broker: KafkaBroker, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "bench-probe"})
    try:
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), 10)[1]
            for p in range(PARTITIONS)
        )
    finally:
        consumer.close()


def member_env(broker: KafkaBroker, topic: str, group: str) -> dict[str, str]:
    return {
        "LOGGUARDIAN_RECEIVERS__KAFKA__BROKERS": json.dumps([broker.bootstrap]),
        "LOGGUARDIAN_RECEIVERS__KAFKA__TOPICS": json.dumps([topic]),
        "LOGGUARDIAN_RECEIVERS__KAFKA__GROUP_ID": group,
        "LOGGUARDIAN_RECEIVERS__KAFKA__COMMIT_SECONDS": "0.5",
        "LOGGUARDIAN_RECEIVERS__KAFKA__CLIENT_CONFIG": json.dumps({"session.timeout.ms": "6000"}),
    }


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} / {fifteen:.1f} on {os.cpu_count()} cores"


def assigned(serve: Serve) -> int:
    """Partitions the member owns (its /readyz Kafka check)."""
    try:
        body = json.loads(get(serve.base + "/readyz", 2.0)[1])
    except (OSError, ValueError):
        return 0
    detail = body.get("checks", {}).get("kafka", {}).get("detail", "")
    return int(detail.split(" partitions assigned")[0]) if "partitions assigned" in detail else 0


# -- 1. throughput -------------------------------------------------------------------------


def run_group(broker: KafkaBroker, topic: str, members: int, total: int, work: Path) -> float:
    group = f"bench-{uuid.uuid4().hex[:8]}"
    serves = [
        Serve(work / f"{group}-{i}", member_env(broker, topic, group)) for i in range(members)
    ]
    try:
        # Start every process first, then time from when all are healthy.
        for serve in serves:
            serve.start(wait=False)
        for serve in serves:
            serve.wait_healthy(120)
        # Time from when the partitions are split evenly (the first member to join
        # starts alone), counting what the group commits from then on.
        while [assigned(s) for s in serves] != [PARTITIONS // members] * members:
            time.sleep(0.05)
        started = time.perf_counter()
        base = sum(committed(broker, group, topic).values())
        while sum(committed(broker, group, topic).values()) < total:
            time.sleep(0.1)
        seconds = time.perf_counter() - started
        split = [int(s.metric("logguardian_received_total", 'receiver="kafka"')) for s in serves]
        rate = (total - base) / seconds
        print(
            f"  {members} member(s): {rate:9.0f} records/s"
            f"  ({total - base} records in {seconds:.1f} s; received per member {split})"
        )
        return rate
    finally:
        for serve in serves:
            serve.stop()


# -- 2. rebalance pause --------------------------------------------------------------------


class Stream:
    """A producer thread writing `rate` keyed records/s until stopped."""

    def __init__(self, broker: KafkaBroker, topic: str, rate: float):
        self.producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
        self.topic, self.rate = topic, rate
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        start, now = time.monotonic(), time.time()
        while not self._stop.is_set():
            due = int((time.monotonic() - start) * self.rate)
            while self.sent < due:
                key, value = message(self.sent, now)
                try:
                    self.producer.produce(self.topic, value=value, key=key)
                    self.sent += 1
                except BufferError:
                    self.producer.poll(0.05)
            self.producer.poll(0)
            time.sleep(0.02)
        self.producer.flush(30)

    def __enter__(self) -> Stream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)


def rebalance_pause(broker: KafkaBroker, work: Path, how: signal.Signals, rate: float) -> float:
    topic = f"bench-rebalance-{uuid.uuid4().hex[:6]}"
    broker.create_topic(topic, PARTITIONS)
    group = f"bench-{uuid.uuid4().hex[:8]}"
    env = member_env(broker, topic, group)
    leaving, staying = Serve(work / f"{group}-a", env), Serve(work / f"{group}-b", env)
    history: dict[int, list[tuple[float, int]]] = {p: [] for p in range(PARTITIONS)}
    try:
        leaving.start(wait=False)
        staying.start(wait=False)
        leaving.wait_healthy(120)
        staying.wait_healthy(120)
        while (assigned(leaving), assigned(staying)) != (PARTITIONS // 2, PARTITIONS // 2):
            time.sleep(0.05)
        with Stream(broker, topic, rate):
            left_at = time.monotonic() + 10.0
            departed = False
            owned = (0, 0)
            end = left_at + 25.0
            while time.monotonic() < end:
                if not departed and time.monotonic() >= left_at:
                    assert leaving.proc is not None
                    owned = (assigned(leaving), assigned(staying))
                    leaving.proc.send_signal(how)
                    left_at = time.monotonic()
                    departed = True
                at = time.monotonic()
                for p, offset in committed(broker, group, topic).items():
                    if not history[p] or history[p][-1][1] != offset:
                        history[p].append((at, offset))
                time.sleep(0.1)
    finally:
        leaving.stop()
        staying.stop()
    # Longest stand-still of any partition that spans the departure.
    pause = 0.0
    for changes in history.values():
        times = [t for t, _ in changes]
        for before, after in itertools.pairwise(times):
            if before <= left_at < after:
                pause = max(pause, after - left_at)
    print(f"  {how.name}: partitions owned (leaving, staying) at the departure: {owned}")
    return pause


# -- 3. restore per MB ---------------------------------------------------------------------


def restore_per_mb(broker: KafkaBroker, work: Path, templates_per_service: int) -> None:
    from logguardian.chain import build_components
    from logguardian.config import load_settings
    from logguardian.detectors.online import Detection
    from logguardian.metrics import Metrics
    from logguardian.pipeline import Pipeline
    from logguardian.receivers.kafka import connection_config
    from logguardian.receivers.kafka_state import Changelog, ServiceState
    from logguardian.record import Record
    from logguardian.templates.miner import TemplateMiner

    def chain(name: str) -> tuple[Pipeline, ServiceState]:
        settings = load_settings(state_dir=work / name)
        components = build_components(settings, Metrics())
        pipeline = Pipeline(settings.pipeline, components.processors, [], Metrics())
        parts = components.parts
        state = ServiceState(parts.require(TemplateMiner), parts.require(Detection), pipeline.lock)
        return pipeline, state

    def word(n: int) -> str:
        out = ""
        for _ in range(5):
            out += chr(97 + n % 26)
            n //= 26
        return out

    source, source_state = chain("restore-source")
    services = [f"svc-{i}" for i in range(PARTITIONS)]
    for s, service in enumerate(services):
        records = [
            Record(
                1000.0 + j,
                # Distinct first and last words: each line a template of its own,
                # found through its own bucket (as real templates mostly are).
                f"{word(j * 31 + s * 977)} {word(j * 17 + 5)} failed with {j} {word(j + s)}",
                service,
                None,
                {},
                "bench",
            )
            for j in range(templates_per_service)
        ]
        for i in range(0, len(records), 2000):
            source.run_batch(records[i : i + 2000], now=1000.0)
    exported = source_state.export(set(services))
    total = sum(len(v) for v in exported.values())
    settings = load_settings(
        receivers={"kafka": {"brokers": [broker.bootstrap], "group_id": "bench-restore"}}
    ).receivers.kafka
    changelog = Changelog(settings, connection_config(settings))
    changelog.topic = f"bench-state-{uuid.uuid4().hex[:6]}"
    changelog.ensure([])  # no source topic: one partition, every service in it
    changelog.write(
        {("logs", p, service): exported[service] for p, service in enumerate(services)}, 60
    )
    changelog.close()
    _, target_state = chain("restore-target")
    started = time.perf_counter()
    found = changelog.read([("logs", p) for p in range(PARTITIONS)], 60)
    read = time.perf_counter() - started
    restored = target_state.restore({service: v for (_, _, service), v in found.items()})
    seconds = time.perf_counter() - started
    mb = total / 1e6
    print(
        f"  {restored} services, {templates_per_service} templates each, {mb:.1f} MB of state:"
        f" read {read:.2f} s + import {seconds - read:.2f} s = {seconds:.2f} s"
        f" ({seconds / mb:.2f} s per MB)"
    )


# -- 4. lag at 80% ---------------------------------------------------------------------------


def lag_at(broker: KafkaBroker, work: Path, rate: float, seconds: float) -> None:
    topic = f"bench-lag-{uuid.uuid4().hex[:6]}"
    broker.create_topic(topic, PARTITIONS)
    group = f"bench-{uuid.uuid4().hex[:8]}"
    serve = Serve(work / f"{group}-lag", member_env(broker, topic, group))
    lags: list[int] = []
    try:
        serve.start()
        with Stream(broker, topic, rate) as stream:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                time.sleep(1.0)
                lags.append(log_end(broker, topic) - sum(committed(broker, group, topic).values()))
            sent_rate = stream.sent / seconds
    finally:
        serve.stop()
    tail = lags[len(lags) // 2 :]
    print(
        f"  producer {sent_rate:.0f} records/s for {seconds:.0f} s: lag median"
        f" {statistics.median(lags):.0f}, max {max(lags)}, second half median"
        f" {statistics.median(tail):.0f} records"
        f" (= {statistics.median(tail) / rate:.2f} s of production)"
    )


def throughput(broker: KafkaBroker, work: Path, records: int, repeats: int) -> float:
    topic = "bench-logs"
    broker.create_topic(topic, PARTITIONS)
    t0 = time.perf_counter()
    broker.produce(topic, messages(records))
    print(f"produced {records} records in {time.perf_counter() - t0:.1f} s")
    print("1. records/s, consumer group of 1 vs 2 `logguardian serve`:")
    rates: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(repeats):
        for members in (1, 2):
            rates[members].append(run_group(broker, topic, members, records, work))
    one, two = statistics.median(rates[1]), statistics.median(rates[2])
    print(
        f"  median: 1 member {one:.0f} records/s, 2 members {two:.0f} records/s,"
        f" ratio {two / one:.2f}x"
    )
    return one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--templates", type=int, default=4000, help="per service, restore")
    parser.add_argument("--lag-seconds", type=float, default=30.0)
    parser.add_argument(
        "--rate", type=float, default=None, help="1-member records/s: skip part 1 (needs it)"
    )
    args = parser.parse_args()
    print(f"before: {load()}")
    with tempfile.TemporaryDirectory(prefix="logguardian-bench-kafka-") as tmp:
        work = Path(tmp)
        broker = KafkaBroker(work / "broker")
        broker.start()
        try:
            if args.rate is None:
                one = throughput(broker, work, args.records, args.repeats)
            else:
                one = args.rate
                print(f"1. skipped: 1 member taken as {one:.0f} records/s")
            print("2. rebalance pause (longest partition stand-still across a departure):")
            for how in (signal.SIGTERM, signal.SIGKILL):
                pause = rebalance_pause(broker, work, how, rate=0.3 * one)
                print(f"  {how.name}: {pause:.1f} s (stream {0.3 * one:.0f} records/s)")
            print("3. restore of per-service state from the changelog:")
            restore_per_mb(broker, work, args.templates)
            print("4. lag, one member, producer at 80% of its rate:")
            lag_at(broker, work, 0.8 * one, args.lag_seconds)
        finally:
            broker.stop()
    print(f"after: {load()}")


if __name__ == "__main__":
    main()
