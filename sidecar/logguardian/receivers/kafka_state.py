"""State follows the partition (issue 18): the Kafka Streams changelog pattern.

Shippers key records by service, so a service lives in one partition and one member
learns it. What that member learned about the service — its templates, its novelty
baseline ("seen before?") and its rate/error statistics — is written to a compacted
changelog topic under the key `<topic>/<partition>/<service>`, in the changelog
partition of the same number. When a rebalance moves the partition, the new owner
reads those keys back and imports them *before* it consumes the partition, so it goes
on where the old owner stopped instead of greeting every known template as
"first seen".

Offsets and state are captured together, on the pipeline's worker thread right after
the last exporter (`OffsetTracker.after_export`): at that instant every record below the
offsets is processed and handed to every exporter, and no later record has touched
the state. The member then flushes the local store, writes the state (waiting for the
broker's acks) and only then commits the offsets. A crash anywhere in between replays
from the previous commit with the previous state: at-least-once, and annotation ids
derived from topic/partition/offset make the replay write no duplicate.

Open incidents, sessions and operator feedback do not follow yet (they stay with the
member that had them); see the README section "When one node is not enough".
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

if TYPE_CHECKING:
    from ..config import KafkaReceiverSettings
    from ..detectors.online import Detection
    from ..templates.miner import TemplateMiner
    from .kafka import Key, OffsetTracker

log = logging.getLogger(__name__)

STATE_FORMAT = 1
# One service's state per changelog record; the topic and the producer allow this much.
MAX_STATE_BYTES = 16 * 1024 * 1024
StateKey = tuple[str, int, str]  # source topic, source partition, service


class ServiceState:
    """Exports and imports what the chain learned about one service. Every call takes
    the pipeline lock: processors only run under it, so nothing changes meanwhile."""

    def __init__(
        self,
        miner: TemplateMiner | None,
        detection: Detection | None,
        lock: threading.Lock,
    ):
        self.miner = miner
        self.detection = detection
        self.lock = lock

    def export(self, services: set[str]) -> dict[str, bytes]:
        """service → its state, serialized (one changelog value each)."""
        if not services:
            return {}
        with self.lock:
            templates = self.miner.export_services(services) if self.miner else {}
            out: dict[str, bytes] = {}
            for service in services:
                doc: dict[str, Any] = {"format": STATE_FORMAT, "service": service}
                doc["templates"] = templates.get(service, [])
                if self.detection is not None:
                    doc["novelty"] = self.detection.novelty.export_service(service)
                    doc["stats"] = self.detection.stats.export_service(service)
                out[service] = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
        return out

    def restore(self, states: dict[str, bytes]) -> int:
        """Import every service's state; a malformed one costs that service only
        (logged), never the others. Returns how many were imported."""
        docs: dict[str, dict[str, Any]] = {}
        for service, data in states.items():
            try:
                doc = orjson.loads(data)
                if not isinstance(doc, dict) or doc.get("format") != STATE_FORMAT:
                    raise ValueError(
                        f"format {doc.get('format') if isinstance(doc, dict) else doc!r}"
                    )
                docs[service] = doc
            except (orjson.JSONDecodeError, ValueError) as exc:
                log.error("kafka state: ignoring the state of %s: %s", service, exc)
        restored = 0
        with self.lock:
            for service, doc in docs.items():
                try:
                    self._import(service, doc)
                    restored += 1
                except (KeyError, TypeError, ValueError) as exc:
                    log.error("kafka state: could not import %s: %r", service, exc)
        return restored

    def _import(self, service: str, doc: dict[str, Any]) -> None:
        miner = self.miner
        if miner is not None:
            miner.import_service(service, doc.get("templates") or [])
        detection = self.detection
        if detection is None:
            return
        novelty = doc.get("novelty")
        if novelty is not None:
            if miner is not None:  # ids the local miner merged away count for the survivor
                counts: dict[str, int] = {}
                for tid, n in novelty["counts"].items():
                    survivor = miner.resolve(str(tid))
                    counts[survivor] = counts.get(survivor, 0) + int(n)
                novelty = {"total": novelty["total"], "counts": counts}
            detection.novelty.import_service(service, novelty)
        stats = doc.get("stats")
        if stats is not None:
            detection.stats.import_service(service, stats)


class Changelog:
    """The compacted topic: created on first use, written with acks from every
    in-sync replica, read back partition by partition."""

    def __init__(self, settings: KafkaReceiverSettings, connection: dict[str, Any]):
        self.settings = settings
        self.connection = connection  # bootstrap servers and security, as the consumer's
        self.topic = settings.changelog_topic or f"{settings.group_id}-state"
        self.partitions = 1
        self._producer: Producer | None = None

    def ensure(self, source_topics: Iterable[str]) -> None:
        """Create the changelog (compacted, as many partitions as the widest source
        topic) unless it exists; learn its partition count."""
        admin = AdminClient(dict(self.connection))
        meta = admin.list_topics(timeout=10)
        widest = max(
            (len(meta.topics[t].partitions) for t in source_topics if t in meta.topics),
            default=1,
        )
        if self.topic not in meta.topics:
            topic = NewTopic(
                self.topic,
                num_partitions=max(1, widest),
                replication_factor=-1,  # the broker's default
                config={
                    "cleanup.policy": "compact",
                    "max.message.bytes": str(MAX_STATE_BYTES + 1024),
                },
            )
            try:
                admin.create_topics([topic])[self.topic].result(30)
                log.info("kafka state: created changelog %s (%d partitions)", self.topic, widest)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
        deadline = time.monotonic() + 30
        while True:
            found = admin.list_topics(self.topic, timeout=10).topics.get(self.topic)
            if found is not None and found.error is None and found.partitions:
                self.partitions = len(found.partitions)
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"changelog topic {self.topic} not visible")
            time.sleep(0.2)

    def open_producer(self) -> Producer:
        """The idempotent producer (created early: it needs a producer id first)."""
        if self._producer is None:
            config = dict(self.connection)
            config.update(
                {
                    "acks": "all",
                    "enable.idempotence": True,
                    "compression.type": "zstd",
                    "message.max.bytes": MAX_STATE_BYTES + 1024,
                    "linger.ms": 5,
                }
            )
            self._producer = Producer(config, logger=log)
        return self._producer

    def partition_of(self, partition: int) -> int:
        return partition % self.partitions

    def write(self, entries: dict[StateKey, bytes], timeout: float) -> int:
        """Produce every entry and wait for all acks; raises if any failed (the caller
        then does not commit). Oversized states are skipped and logged. Returns bytes."""
        if not entries:
            return 0
        producer = self.open_producer()
        failures: list[str] = []

        def delivered(err: KafkaError | None, _msg: object) -> None:
            if err is not None:
                failures.append(err.str())

        written = 0
        for (topic, partition, service), value in entries.items():
            if len(value) > MAX_STATE_BYTES:
                log.error(
                    "kafka state: %s is %d bytes, over %d: not handed over",
                    service,
                    len(value),
                    MAX_STATE_BYTES,
                )
                continue
            while True:
                try:
                    producer.produce(
                        self.topic,
                        value=value,
                        key=f"{topic}/{partition}/{service}".encode(),
                        partition=self.partition_of(partition),
                        on_delivery=delivered,
                    )
                    break
                except BufferError:
                    producer.poll(0.05)
            written += len(value)
        left = producer.flush(timeout)
        if left or failures:
            raise KafkaException(
                KafkaError(KafkaError._MSG_TIMED_OUT if left else KafkaError._FAIL),
                f"changelog write failed: {failures[:1] or f'{left} unacknowledged'}",
            )
        return written

    def read(self, wanted: Iterable[tuple[str, int]], timeout: float) -> dict[StateKey, bytes]:
        """The latest state of every service of the `wanted` source partitions: each
        changelog partition involved is read from its start to its end."""
        wanted = set(wanted)
        if not wanted:
            return {}
        prefixes = {f"{t}/{p}/".encode(): (t, p) for t, p in wanted}
        config = dict(self.connection)
        config.update(
            {
                "group.id": f"{self.settings.group_id}-state-restore",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "fetch.max.bytes": 4 * MAX_STATE_BYTES,
            }
        )
        consumer = Consumer(config, logger=log)
        found: dict[StateKey, bytes] = {}
        try:
            ends: dict[int, int] = {}
            for cp in {self.partition_of(p) for _, p in wanted}:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(self.topic, cp), timeout=10
                )
                if high > low:
                    ends[cp] = high
            if not ends:
                return found
            # From the beginning: compaction keeps the latest value of every key.
            consumer.assign([TopicPartition(self.topic, cp, OFFSET_BEGINNING) for cp in ends])
            deadline = time.monotonic() + timeout
            while ends:
                if time.monotonic() > deadline:
                    raise KafkaException(
                        KafkaError(KafkaError._TIMED_OUT), "changelog restore timed out"
                    )
                for msg in consumer.consume(1000, 0.5):
                    err = msg.error()
                    cp = msg.partition()
                    if err is not None:
                        if err.code() != KafkaError._PARTITION_EOF:
                            raise KafkaException(err)
                        ends.pop(cp, None)
                        continue
                    key = msg.key() or b""
                    head, _, service = key.rpartition(b"/")
                    source = prefixes.get(head + b"/")
                    if source is not None:
                        state_key = (source[0], source[1], service.decode(errors="replace"))
                        value = msg.value()
                        if value is None:  # a tombstone
                            found.pop(state_key, None)
                        else:
                            found[state_key] = value
                    if msg.offset() + 1 >= ends.get(cp, 0):
                        ends.pop(cp, None)
        finally:
            consumer.close()
        return found

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(10)


@dataclass(slots=True)
class Checkpoint:
    """Offsets ready to commit and the state of their partitions' services, taken at
    the same batch boundary."""

    offsets: dict[Key, int] = field(default_factory=dict)
    states: dict[StateKey, bytes] = field(default_factory=dict)


class Checkpointer:
    """Takes checkpoints on the pipeline's worker thread, right after the last
    exporter (`OffsetTracker.after_export`; an idle pipeline ticks every
    `pipeline.tick_seconds`, so a request waits at most that long when nothing flows)."""

    def __init__(self, tracker: OffsetTracker, state: ServiceState):
        self.tracker = tracker
        self.state = state
        self._lock = threading.Lock()
        self._requests: list[tuple[Future[Checkpoint], set[Key] | None]] = []
        tracker.after_export = self._after_export

    def request(self, only: set[Key] | None = None) -> Future[Checkpoint]:
        future: Future[Checkpoint] = Future()
        with self._lock:
            self._requests.append((future, only))
        return future

    def _after_export(self) -> None:
        if not self._requests:
            return
        with self._lock:
            requests, self._requests = self._requests, []
        try:
            checkpoint = self.capture()
        except Exception as exc:  # the requester logs it and commits nothing
            for future, _ in requests:
                future.set_exception(exc)
            return
        for future, only in requests:
            if only is None:
                future.set_result(checkpoint)
            else:
                future.set_result(
                    Checkpoint(
                        {k: v for k, v in checkpoint.offsets.items() if k in only},
                        {
                            k: v
                            for k, v in checkpoint.states.items()
                            if any(k[:2] == key[:2] for key in only)
                        },
                    )
                )

    def capture(self) -> Checkpoint:
        """Offsets done now and their partitions' service states (worker thread)."""
        offsets = self.tracker.commits()
        services_of = {key: self.tracker.services(key) for key in offsets}
        states = self.state.export(set().union(*services_of.values()) if services_of else set())
        out = Checkpoint(offsets)
        for (topic, partition, _), services in services_of.items():
            for service in services:
                value = states.get(service)
                if value is not None:
                    out.states[(topic, partition, service)] = value
        return out
