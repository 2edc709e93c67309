"""A real Apache Kafka 4 broker (KRaft, one combined broker+controller) on 127.0.0.1.

Installed by tests/services/kafka.sh (from install.sh). A broker that cannot start FAILS
the test, never skips it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from .fixtures import _binary, _free_port, _Process, running

HERE = Path(__file__).resolve().parent
KAFKA_SCRIPT = HERE / "kafka.sh"
KAFKA_START_SECONDS = 180.0


class KafkaBroker:
    """One broker; `bootstrap` is its `host:port` for clients."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.port = _free_port()
        self.controller_port = _free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._process = _Process(
            "kafka",
            [
                "bash",
                str(KAFKA_SCRIPT),
                "run",
                str(data_dir),
                str(self.port),
                str(self.controller_port),
            ],
            data_dir / "console.log",
        )

    def _admin(self) -> AdminClient:
        return AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})

    def _ready(self) -> bool:
        try:
            return bool(self._admin().list_topics(timeout=2).brokers)
        except KafkaException:
            return False

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._process.start()
        self._process.wait_ready(self._ready, KAFKA_START_SECONDS)

    def stop(self) -> None:
        self._process.stop()

    def create_topic(self, name: str, partitions: int, **config: str) -> None:
        admin = self._admin()  # must outlive the futures
        futures = admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config)]
        )
        futures[name].result(30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            meta = admin.list_topics(name, timeout=5).topics.get(name)
            if meta is not None and meta.error is None and len(meta.partitions) == partitions:
                return
            time.sleep(0.2)
        raise AssertionError(f"topic {name} not visible after 30 s")

    def member_env(
        self, topic: str, group: str, commit_seconds: int, session_timeout_ms: int | None = None
    ) -> dict[str, str]:
        """Environment of a `logguardian serve` consumer-group member reading `topic`
        that annotates every first-seen template (no warm-up) and snapshots only when
        it stops, so what a restart restores comes from Kafka, not a local snapshot."""
        env = {
            "LOGGUARDIAN_RECEIVERS__KAFKA__BROKERS": json.dumps([self.bootstrap]),
            "LOGGUARDIAN_RECEIVERS__KAFKA__TOPICS": json.dumps([topic]),
            "LOGGUARDIAN_RECEIVERS__KAFKA__GROUP_ID": group,
            "LOGGUARDIAN_RECEIVERS__KAFKA__COMMIT_SECONDS": str(commit_seconds),
            "LOGGUARDIAN_DETECTORS__WARMUP_RECORDS": "0",
            "LOGGUARDIAN_TEMPLATES__SNAPSHOT_SECONDS": "3600",
        }
        if session_timeout_ms is not None:
            env["LOGGUARDIAN_RECEIVERS__KAFKA__CLIENT_CONFIG"] = json.dumps(
                {"session.timeout.ms": str(session_timeout_ms)}
            )
        return env

    def committed_total(self, group: str, topic: str, partitions: int) -> int:
        """Sum of the group's committed offsets over the topic's partitions."""
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group})
        try:
            tps = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], 10)
            return sum(max(tp.offset, 0) for tp in tps)
        finally:
            consumer.close()

    def produce(self, topic: str, messages: Iterable[tuple[bytes | None, bytes]]) -> None:
        """Send (key, value) pairs with the default partitioner; waits for every ack."""
        producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5, "acks": "all"})
        failures: list[str] = []

        def delivered(err: object, msg: object) -> None:
            if err is not None:
                failures.append(str(err))

        for key, value in messages:
            while True:
                try:
                    producer.produce(topic, value=value, key=key, on_delivery=delivered)
                    break
                except BufferError:
                    producer.poll(0.1)
            producer.poll(0)
        assert producer.flush(60) == 0, "producer did not deliver everything in 60 s"
        assert not failures, failures[:3]


def word(n: int) -> str:
    """Four letters, no digits (a digit would make it a variable): distinct words for
    records that must each be a template of their own."""
    out = ""
    for _ in range(4):
        out += chr(97 + n % 26)
        n //= 26
    return out


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker]:
    """A real Kafka broker for the whole session (started once, ~20-60 s)."""
    _binary("java")
    with running(KafkaBroker, "logguardian-kafka-") as broker:
        yield broker
