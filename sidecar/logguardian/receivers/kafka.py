"""Kafka receiver (issue 18): one member of a consumer group.

Client: confluent-kafka (librdkafka). It ships as manylinux wheels with librdkafka
inside (nothing to compile), is the fastest Python client, and fetches, decompresses and
heartbeats on its own C threads, so the sidecar's single event loop only pays for
decoding. aiokafka would keep fetching and group membership on the event loop, which
here already runs the HTTP/gRPC receivers and admission. SASL (PLAIN, SCRAM) and TLS
are librdkafka properties.

Delivery is at-least-once: an offset is committed only once every record of that
message and the ones before it has gone through the chain, been handed to the exporters
(`OffsetTracker` is the last exporter), the local store has written what they
produced and the state of the partition's services is in the changelog topic
(`kafka_state.py`: a rebalance hands it to the next owner, which restores it before
consuming). Annotations of Kafka records get ids derived from topic/partition/offset
(`Record.origin`), so a replay after a crash writes no duplicate.

Backpressure: when the pipeline queue is full the member pauses its partitions and
waits for room; librdkafka keeps heartbeating, nothing is buffered beyond the one
batch in hand.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from prometheus_client import Gauge

from ..components import Consumer as ConsumerPort
from ..components import ReceiverContext
from ..config import KafkaReceiverSettings
from ..detectors.online import Detection
from ..exporters.local import LocalStore
from ..metrics import Metrics
from ..pipeline import Batch
from ..record import Record
from ..templates.miner import TemplateMiner
from .kafka_decode import MessageDecoder
from .kafka_state import Changelog, Checkpointer, ServiceState

if TYPE_CHECKING:
    from ..chain import BuildContext

log = logging.getLogger(__name__)

RECEIVER = "kafka"
POLL_SECONDS = 0.2
T = TypeVar("T")
Key = tuple[str, int, int]  # topic, partition, assignment generation


def connection_config(settings: KafkaReceiverSettings) -> dict[str, Any]:
    """librdkafka properties every client of the member shares: brokers, security."""
    config: dict[str, Any] = {
        "bootstrap.servers": ",".join(settings.brokers),
        "security.protocol": settings.security_protocol,
    }
    if settings.sasl_mechanism is not None:
        config["sasl.mechanism"] = settings.sasl_mechanism
        config["sasl.username"] = settings.sasl_username or ""
        config["sasl.password"] = settings.sasl_password or ""
    if settings.tls_ca_file is not None:
        config["ssl.ca.location"] = str(settings.tls_ca_file)
    if settings.tls_cert_file is not None:
        config["ssl.certificate.location"] = str(settings.tls_cert_file)
    if settings.tls_key_file is not None:
        config["ssl.key.location"] = str(settings.tls_key_file)
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        config["ssl.endpoint.identification.algorithm"] = (
            "https" if settings.tls_verify_hostname else "none"
        )
    return config


def client_config(settings: KafkaReceiverSettings) -> dict[str, Any]:
    """librdkafka consumer properties from settings (security included)."""
    config = connection_config(settings)
    config.update(
        {
            "group.id": settings.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "cooperative-sticky",
        }
    )
    config.update(settings.client_config)
    return config


class _Partition:
    """Messages of one partition in flight, in offset order, with how many of each
    message's records are not through the chain yet, and the services seen in it (whose
    state is checkpointed with its offsets)."""

    __slots__ = ("done", "pending", "remaining", "services")

    def __init__(self) -> None:
        self.pending: collections.deque[int] = collections.deque()
        self.remaining: dict[int, int] = {}
        self.done: int | None = None  # next offset to commit
        self.services: set[str] = set()

    def advance(self) -> None:
        while self.pending and self.remaining[self.pending[0]] == 0:
            offset = self.pending.popleft()
            del self.remaining[offset]
            self.done = offset + 1


class OffsetTracker:
    """The last exporter: a record reaching it has been processed and handed to every
    other exporter. Knows, per partition, the offset below which everything has."""

    name = "kafka-offsets"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._where: dict[int, tuple[Record, Key, int]] = {}
        self._partitions: dict[Key, _Partition] = {}
        self._committed: dict[Key, int] = {}
        # Runs on the worker thread after every batch (ticks too) has been through
        # every exporter: where state checkpoints are taken (kafka_state.Checkpointer).
        self.after_export: Callable[[], None] | None = None

    def track(self, key: Key, offset: int, records: list[Record]) -> None:
        """Called after `records` (all decoded from message `offset`) were queued."""
        with self._lock:
            part = self._partitions.setdefault(key, _Partition())
            part.pending.append(offset)
            part.remaining[offset] = len(records)
            services = part.services
            for record in records:
                self._where[id(record)] = (record, key, offset)
                services.add(record.service)
            part.advance()

    def export(self, batch: Batch) -> None:
        where = self._where
        with self._lock:
            touched = set()
            for record in batch.records:
                found = where.pop(id(record), None)
                if found is None:
                    continue
                _, key, offset = found
                part = self._partitions.get(key)
                if part is None or offset not in part.remaining:
                    continue  # revoked meanwhile: the new owner replays it
                part.remaining[offset] -= 1
                touched.add(key)
            for key in touched:
                self._partitions[key].advance()
        if self.after_export is not None:
            self.after_export()

    def commits(self) -> dict[Key, int]:
        """Offsets ready to commit that were not committed yet."""
        with self._lock:
            return {
                key: part.done
                for key, part in self._partitions.items()
                if part.done is not None and self._committed.get(key) != part.done
            }

    def committed(self, offsets: dict[Key, int]) -> None:
        with self._lock:
            self._committed.update(offsets)

    def services(self, key: Key) -> set[str]:
        with self._lock:
            part = self._partitions.get(key)
            return set(part.services) if part is not None else set()

    def in_flight(self, keys: list[Key] | None = None) -> int:
        """Messages tracked but not yet through the chain (in `keys`, or anywhere)."""
        with self._lock:
            return sum(
                len(part.pending)
                for key, part in self._partitions.items()
                if keys is None or key in keys
            )

    def position(self, key: Key) -> int | None:
        with self._lock:
            part = self._partitions.get(key)
            if part is None:
                return None
            return part.pending[0] if part.pending else part.done

    def forget(self, keys: list[Key]) -> None:
        with self._lock:
            for key in keys:
                self._partitions.pop(key, None)
                self._committed.pop(key, None)
            gone = set(keys)
            for rid in [rid for rid, (_, key, _) in self._where.items() if key in gone]:
                del self._where[rid]

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


@dataclass(slots=True)
class _Decoded:
    key: Key
    offset: int
    records: list[Record]


class KafkaMember:
    """The consumer loop, commits, rebalance handling, lag and readiness."""

    name = RECEIVER
    port: int | None = None  # no socket of its own

    def __init__(
        self,
        settings: KafkaReceiverSettings,
        metrics: Metrics,
        service_fields: list[str],
        tracker: OffsetTracker,
        flush_store: Callable[[], None] | None,
        consumer: ConsumerPort,
        state: ServiceState | None = None,
    ):
        self.settings = settings
        self.consumer = consumer
        self.metrics = metrics
        self.tracker = tracker
        self.flush_store = flush_store
        self.decoder = MessageDecoder(settings.encoding, service_fields)
        self.lag = _lag_gauge(metrics)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafka")
        self._consumer: Consumer | None = None
        self._generation: dict[tuple[str, int], int] = {}
        self._next_generation = 0
        self._assigned: set[tuple[str, int]] = set()
        self._lags: dict[tuple[str, int], int] = {}
        self.paused = False
        self.fatal: str | None = None
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self.changelog: Changelog | None = None
        self.checkpointer: Checkpointer | None = None
        self.state = state
        if state is not None:
            self.changelog = Changelog(settings, connection_config(settings))
            self.checkpointer = Checkpointer(tracker, state)
        self.restored_services = 0

    # -- consumer thread ----------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _open(self) -> None:
        config = client_config(self.settings)
        config["error_cb"] = self._on_error
        if self.changelog is not None:
            self.changelog.ensure(self.settings.topics)
            self.changelog.open_producer()
        consumer = Consumer(config, logger=log)
        consumer.subscribe(
            list(self.settings.topics), on_assign=self._on_assign, on_revoke=self._on_revoke
        )
        self._consumer = consumer

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self.fatal = err.str()
            log.error("kafka: fatal client error: %s", err.str())
        else:
            log.warning("kafka: %s", err.str())

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._next_generation += 1
            self._generation[(tp.topic, tp.partition)] = self._next_generation
            self._assigned.add((tp.topic, tp.partition))
        if self.paused:
            consumer.pause(partitions)
        log.info("kafka: assigned %s", _names(partitions))
        self._restore(partitions)

    def _restore(self, partitions: list[TopicPartition]) -> None:
        """Before the first fetch of a newly assigned partition: import the state its
        services had at the previous owner's last checkpoint."""
        if self.changelog is None or self.state is None or not partitions:
            return
        started = time.perf_counter()
        try:
            found = self.changelog.read(
                [(tp.topic, tp.partition) for tp in partitions],
                self.settings.restore_timeout_seconds,
            )
        except KafkaException as exc:
            # Consuming without the state loses nothing (it is re-learned, with a
            # burst of "first seen"); stalling the partitions would lose time.
            log.error("kafka state: restore of %s failed: %s", _names(partitions), exc)
            return
        restored = self.state.restore({service: v for (_, _, service), v in found.items()})
        self.restored_services += restored
        log.info(
            "kafka state: restored %d services (%d bytes) for %s in %.3f s",
            restored,
            sum(len(v) for v in found.values()),
            _names(partitions),
            time.perf_counter() - started,
        )

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Give the partitions' queued records a moment to get through the chain,
        checkpoint and commit, then forget them: what is still in the pipeline is
        replayed by the next owner (at-least-once)."""
        keys = [self._key(tp.topic, tp.partition) for tp in partitions]
        self._drain(keys)
        try:
            self._commit(set(keys))
        except (KafkaException, TimeoutError) as exc:
            log.warning("kafka: checkpoint/commit on revoke failed: %s", exc)
        self.tracker.forget(keys)
        for tp in partitions:
            self._generation.pop((tp.topic, tp.partition), None)
            self._assigned.discard((tp.topic, tp.partition))
            self._lags.pop((tp.topic, tp.partition), None)
            with contextlib.suppress(KeyError):
                self.lag.remove(tp.topic, str(tp.partition))
        log.info("kafka: revoked %s", _names(partitions))

    def _key(self, topic: str, partition: int) -> Key:
        return (topic, partition, self._generation.get((topic, partition), 0))

    def _poll(self) -> list[_Decoded]:
        """One fetch (rebalance callbacks run in here) decoded off the event loop."""
        assert self._consumer is not None
        messages: list[Message] = self._consumer.consume(self.settings.batch_messages, POLL_SECONDS)
        out: list[_Decoded] = []
        rejected = self.metrics.rejected
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("kafka: %s", err.str())
                continue
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            decoded = self.decoder(msg.value(), msg.key())
            for reason, n in decoded.reasons.items():
                rejected.labels(reason).inc(n)
            if decoded.errors:
                log.debug("kafka %s/%d@%d: %s", topic, partition, offset, decoded.errors[0])
            for i, record in enumerate(decoded.records):
                record.origin = f"{topic}/{partition}/{offset}/{i}"
            out.append(_Decoded(self._key(topic, partition), offset, decoded.records))
        return out

    def _drain(self, keys: list[Key] | None) -> None:
        deadline = time.monotonic() + self.settings.revoke_drain_seconds
        while self.tracker.in_flight(keys) and time.monotonic() < deadline:
            time.sleep(0.05)

    def _commit(self, only: set[Key] | None = None) -> None:
        """Checkpoint, then commit: offsets and state captured at one batch boundary;
        the store flushed and the state acknowledged by the broker before the offsets
        move (a failure in between leaves the previous commit and checkpoint)."""
        if self._consumer is None:
            return
        if self.checkpointer is None or self.changelog is None:
            offsets = self.tracker.commits()
            states = {}
        else:
            if self._stopping:
                # Admission is closed and the worker stops once the queue is empty:
                # after `_drain`, nothing moves, so capture here.
                checkpoint = self.checkpointer.capture()
            else:
                checkpoint = self.checkpointer.request(only).result(
                    self.settings.checkpoint_timeout_seconds
                )
            offsets, states = checkpoint.offsets, checkpoint.states
        if only is not None:
            offsets = {k: v for k, v in offsets.items() if k in only}
        if not offsets:
            return
        if self.flush_store is not None:
            self.flush_store()  # what the records produced is on disk before the commit
        if states and self.changelog is not None:
            self.changelog.write(states, self.settings.checkpoint_timeout_seconds)
        self._consumer.commit(
            offsets=[TopicPartition(t, p, o) for (t, p, _), o in offsets.items()],
            asynchronous=False,
        )
        self.tracker.committed(offsets)

    def _measure_lag(self) -> None:
        assert self._consumer is not None
        for topic, partition in list(self._assigned):
            tp = TopicPartition(topic, partition)
            try:
                _, high = self._consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                continue
            if high < 0:
                continue
            at = self.tracker.position(self._key(topic, partition))
            if at is None:
                position = self._consumer.position([tp])[0].offset
                at = position if position >= 0 else None
            if at is None:
                continue
            lag = max(0, high - at)
            self._lags[(topic, partition)] = lag
            self.lag.labels(topic, str(partition)).set(lag)

    def _pause(self, pause: bool) -> None:
        assert self._consumer is not None
        self.paused = pause
        assignment = self._consumer.assignment()
        if assignment:
            (self._consumer.pause if pause else self._consumer.resume)(assignment)

    # -- event loop ---------------------------------------------------------------------

    async def start(self) -> None:
        await self._call(self._open)
        self._tasks = [
            asyncio.create_task(self._consume(), name="kafka-consume"),
            asyncio.create_task(self._commit_loop(), name="kafka-commit"),
        ]
        log.info("kafka: member of group %s on %s", self.settings.group_id, self.settings.topics)

    async def _consume(self) -> None:
        pipeline = self.consumer
        while not self._stopping:
            try:
                polled = await self._call(self._poll)
            except KafkaException as exc:
                log.warning("kafka: poll failed: %s", exc)
                await asyncio.sleep(1.0)
                continue
            except Exception:
                # A bug must not silently end consumption: log, back off, go on.
                log.exception("kafka: poll round failed")
                await asyncio.sleep(1.0)
                continue
            if not polled:
                continue
            records = [r for d in polled for r in d.records]
            if records and not await pipeline.admit(records, RECEIVER):
                await self._call(self._pause, True)
                admitted = await pipeline.put(records, RECEIVER)
                if not admitted:
                    return  # shutting down: nothing committed for these, they replay
                await self._call(self._pause, False)
            for d in polled:
                if d.key == self._key(d.key[0], d.key[1]):  # not revoked while waiting
                    self.tracker.track(d.key, d.offset, d.records)

    async def _commit_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.settings.commit_seconds)
            try:
                await self._call(self._measure_lag)
                await self._call(self._commit)
            except (KafkaException, TimeoutError) as exc:
                log.warning("kafka: checkpoint/commit failed (retried next round): %s", exc)
            except Exception:
                log.exception("kafka: commit round failed (retried next round)")

    async def stop(self) -> None:
        """Runs before the pipeline drains (admission is closed): wait a moment for the
        records in flight, checkpoint and commit what is processed, leave the group."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._consumer is not None:
            try:
                await self._call(self._drain, None)
                await self._call(self._commit)
            except (KafkaException, TimeoutError) as exc:
                log.warning("kafka: final checkpoint/commit failed: %s", exc)
            await self._call(self._consumer.close)
        if self.changelog is not None:
            await self._call(self.changelog.close)
        self._executor.shutdown(wait=True)

    def readiness(self) -> tuple[bool, str]:
        total = sum(self._lags.values())
        detail = (
            f"{len(self._assigned)} partitions assigned, lag {total}"
            f"{', paused (pipeline full)' if self.paused else ''}"
        )
        if self.fatal is not None:
            return False, f"fatal: {self.fatal}"
        if any(task.done() for task in self._tasks) and not self._stopping:
            return False, "the consumer loop ended"
        limit = self.settings.max_lag_ready
        return (limit is None or total <= limit), detail


def _names(partitions: list[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}/{tp.partition}" for tp in partitions) or "nothing"


def _lag_gauge(metrics: Metrics) -> Gauge:
    found = getattr(metrics, "kafka_lag", None)
    if found is None:
        found = Gauge(
            "logguardian_kafka_lag",
            "Records in the partition not yet processed by this member (high watermark "
            "minus the first unprocessed offset)",
            ["topic", "partition"],
            registry=metrics.registry,
        )
        metrics.kafka_lag = found  # type: ignore[attr-defined]
    return found


def build_tracker(ctx: BuildContext) -> None:
    """Chain factory (`chain_factory` of `receivers.kafka`): the offset tracker is the
    last exporter, so an offset is committable only once every exporter has the batch."""
    tracker = OffsetTracker()
    ctx.components.exporters.append(tracker)
    ctx.parts.add(tracker)


def build(settings: KafkaReceiverSettings, ctx: ReceiverContext) -> KafkaMember:
    """Receiver factory (`receivers.kafka`): a consumer-group member feeding the pipeline."""
    assert ctx.parts is not None, "the Kafka receiver needs the chain's parts"
    store = ctx.parts.get(LocalStore)
    state = None
    if settings.changelog:
        assert ctx.lock is not None, "handing state over needs the pipeline lock"
        state = ServiceState(ctx.parts.get(TemplateMiner), ctx.parts.get(Detection), ctx.lock)
    return KafkaMember(
        settings,
        ctx.metrics,
        list(ctx.service_fields),
        ctx.parts.require(OffsetTracker),
        store.flush if store is not None else None,
        ctx.consumer,
        state,
    )
