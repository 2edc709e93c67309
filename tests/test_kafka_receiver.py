"""Kafka receiver against a real Apache Kafka 4 broker (KRaft): consumer-group member,
shipper encodings, at-least-once commits, backpressure by pausing, lag and /readyz."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition
from conftest import Capture
from google.protobuf import json_format
from logguardian.config import Settings
from logguardian.pipeline import Batch
from logguardian.receivers.kafka import KafkaMember
from logguardian.server import Sidecar
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from services.fixtures import _get
from services.kafka_fixtures import KafkaBroker

SERVICES = [f"svc-{i}" for i in range(8)]


def _topic(broker: KafkaBroker, partitions: int = 8) -> str:
    name = f"logs-{uuid.uuid4().hex[:8]}"
    broker.create_topic(name, partitions)
    return name


def _kafka(broker: KafkaBroker, topic: str, **extra: Any) -> dict[str, Any]:
    return {
        "brokers": [broker.bootstrap],
        "topics": [topic],
        "group_id": f"g-{topic}",
        "commit_seconds": 0.2,
        **extra,
    }


def _committed(broker: KafkaBroker, group: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
    try:
        tps = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], 10)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        consumer.close()


def _high(broker: KafkaBroker, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "probe"})
    try:
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), 10)[1]
            for p in range(partitions)
        }
    finally:
        consumer.close()


async def _wait(cond: Callable[[], bool], timeout: float, what: str) -> None:
    """Polls `cond` in a thread: it may block (HTTP to this sidecar, Kafka admin calls)."""
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(cond):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def fluent_bit_json(service: str, i: int) -> bytes:
    """What Fluent Bit's kafka output writes with `format json` (timestamp_key
    @timestamp, timestamp_format double)."""
    return orjson.dumps(
        {"@timestamp": 1_700_000_000.25 + i, "log": f"request {i} served", "service": service}
    )


def logstash_json(service: str, i: int) -> bytes:
    """Logstash's kafka output with `codec => json`."""
    return orjson.dumps(
        {
            "@timestamp": "2023-11-14T22:13:20.000Z",
            "@version": "1",
            "message": f"job {i} finished",
            "service": {"name": service},
            "host": {"name": "node-1"},
            "log": {"level": "info"},
        }
    )


def otlp_request(service: str, messages: list[str]) -> logs_service_pb2.ExportLogsServiceRequest:
    """What the OTel Collector's kafka exporter sends (one request per message)."""
    resource = resource_pb2.Resource(
        attributes=[
            common_pb2.KeyValue(key="service.name", value=common_pb2.AnyValue(string_value=service))
        ]
    )
    records = [
        logs_pb2.LogRecord(
            time_unix_nano=1_700_000_000_000_000_000 + i,
            severity_text="ERROR",
            body=common_pb2.AnyValue(string_value=text),
            trace_id=bytes(range(16)),
        )
        for i, text in enumerate(messages)
    ]
    return logs_service_pb2.ExportLogsServiceRequest(
        resource_logs=[
            logs_pb2.ResourceLogs(
                resource=resource, scope_logs=[logs_pb2.ScopeLogs(log_records=records)]
            )
        ]
    )


def otlp_json(service: str, messages: list[str]) -> bytes:
    """OTLP/JSON as the Collector writes it: camelCase, ids in hex."""
    doc = json_format.MessageToDict(otlp_request(service, messages))
    for resource in doc["resourceLogs"]:
        for scope in resource["scopeLogs"]:
            for lr in scope["logRecords"]:
                lr["traceId"] = bytes(range(16)).hex()
    return json.dumps(doc).encode()


async def test_group_member_consumes_keyed_services_and_commits_after_processing(
    kafka_broker: KafkaBroker, make_settings: Callable[..., Settings]
) -> None:
    topic = _topic(kafka_broker)
    n = 400
    sent = []
    for i in range(n):
        service = SERVICES[i % len(SERVICES)]
        value = fluent_bit_json(service, i) if i % 2 else logstash_json(service, i)
        sent.append((service.encode(), value))
    kafka_broker.produce(topic, sent)

    sidecar = Sidecar(make_settings(receivers={"kafka": _kafka(kafka_broker, topic)}))
    capture = Capture()
    sidecar.pipeline.processors.append(capture)
    await sidecar.start()
    try:
        records = await capture.wait_for(n, timeout=60)
        assert len(records) == n
        by_service: dict[str, set[str]] = {}
        for r in records:
            assert r.source == "kafka"
            by_service.setdefault(r.service, set()).add(r.message)
        assert set(by_service) == set(SERVICES)
        assert by_service["svc-1"] == {f"request {i} served" for i in range(1, n, 8)}
        assert by_service["svc-0"] == {f"job {i} finished" for i in range(0, n, 8)}
        fb = next(r for r in records if r.message == "request 1 served")
        assert fb.ts == pytest.approx(1_700_000_001.25)
        ls = next(r for r in records if r.message == "job 0 finished")
        assert ls.ts == pytest.approx(1_700_000_000.0) and ls.level == "info"
        # Keyed by service: one service lives in one partition.
        partitions: dict[str, set[str]] = {}
        for r in records:
            assert r.origin is not None
            partitions.setdefault(r.service, set()).add(r.origin.split("/")[1])
        assert all(len(p) == 1 for p in partitions.values())
        assert len({p for ps in partitions.values() for p in ps}) > 1

        high = await asyncio.to_thread(_high, kafka_broker, topic, 8)
        group = f"g-{topic}"
        await _wait(
            lambda: (
                _committed(kafka_broker, group, topic, 8)
                == {p: (h if h > 0 else -1001) for p, h in high.items()}
            ),
            30,
            "offsets committed up to the end of every partition",
        )
        port = sidecar.ports["http"]

        def caught_up() -> bool:
            status, body = _get(f"http://127.0.0.1:{port}/readyz")
            check = json.loads(body)["checks"]["kafka"]
            return status == 200 and check["ok"] and check["detail"].endswith("lag 0")

        await _wait(caught_up, 15, "/readyz to report the member caught up")

        def lags() -> list[str]:
            _, body = _get(f"http://127.0.0.1:{port}/metrics")
            return [
                line
                for line in body.decode().splitlines()
                if line.startswith("logguardian_kafka_lag{")
            ]

        # Lag is measured once per commit round: every partition reports, all at 0.
        await _wait(
            lambda: len(found := lags()) == 8 and all(line.endswith(" 0.0") for line in found),
            15,
            "a lag of 0 on each of the 8 partitions",
        )
    finally:
        await sidecar.stop()


async def test_otel_collector_encodings_and_bad_messages(
    kafka_broker: KafkaBroker, make_settings: Callable[..., Settings]
) -> None:
    proto_topic, json_topic = _topic(kafka_broker, 2), _topic(kafka_broker, 2)
    kafka_broker.produce(
        proto_topic,
        [
            (None, otlp_request("checkout", ["pay ok", "pay failed"]).SerializeToString()),
            (None, b"\xff\x00 not protobuf"),
            (None, otlp_request("cart", ["cart ok"]).SerializeToString()),
        ],
    )
    kafka_broker.produce(
        json_topic,
        [
            (b"search", otlp_json("search", ["query ok"])),
            (b"search", b'{"log": "unterminated'),
            (b"search", fluent_bit_json("search", 7)),
        ],
    )
    settings = make_settings(
        receivers={
            "kafka": _kafka(kafka_broker, proto_topic, encoding="otlp_proto"),
        }
    )
    sidecar = Sidecar(settings)
    capture = Capture()
    sidecar.pipeline.processors.append(capture)
    await sidecar.start()
    try:
        records = await capture.wait_for(3, timeout=60)
        got = {(r.service, r.message, r.level) for r in records}
        assert got == {
            ("checkout", "pay ok", "error"),
            ("checkout", "pay failed", "error"),
            ("cart", "cart ok", "error"),
        }
        assert all(r.attributes["trace_id"] == bytes(range(16)).hex() for r in records)
        await _wait(
            lambda: sidecar.metrics.rejected.labels("malformed")._value.get() >= 1,
            10,
            "the bad message counted",
        )
    finally:
        await sidecar.stop()
    # Same for the OTLP/JSON encoding, detected inside the default `json` encoding.
    sidecar = Sidecar(make_settings(receivers={"kafka": _kafka(kafka_broker, json_topic)}))
    capture = Capture()
    sidecar.pipeline.processors.append(capture)
    await sidecar.start()
    try:
        records = await capture.wait_for(2, timeout=60)
        assert {(r.service, r.message) for r in records} == {
            ("search", "query ok"),
            ("search", "request 7 served"),
        }
        otlp = next(r for r in records if r.message == "query ok")
        assert otlp.attributes["trace_id"] == bytes(range(16)).hex()
        # The malformed message in between is skipped, not a stall: all committed.
        high = await asyncio.to_thread(_high, kafka_broker, json_topic, 2)
        await _wait(
            lambda: (
                _committed(kafka_broker, f"g-{json_topic}", json_topic, 2)
                == {p: (h if h > 0 else -1001) for p, h in high.items()}
            ),
            30,
            "offsets committed past the bad message",
        )
    finally:
        await sidecar.stop()


class _Slow:
    """A processor that holds each batch, so the queue fills."""

    name = "slow"

    def __init__(self) -> None:
        self.gate = threading.Event()

    def process(self, batch: Batch) -> None:
        if batch.records:
            self.gate.wait(10)


async def test_full_pipeline_pauses_partitions_instead_of_buffering(
    kafka_broker: KafkaBroker, make_settings: Callable[..., Settings]
) -> None:
    topic = _topic(kafka_broker, 2)
    n = 600
    kafka_broker.produce(topic, [(b"svc", fluent_bit_json("svc", i)) for i in range(n)])
    settings = make_settings(
        receivers={"kafka": _kafka(kafka_broker, topic, batch_messages=50)},
        pipeline={"queue_records": 100, "batch_records": 50, "batch_wait_seconds": 0},
    )
    sidecar = Sidecar(settings)
    slow, capture = _Slow(), Capture()
    sidecar.pipeline.processors[:0] = [slow]
    sidecar.pipeline.processors.append(capture)
    await sidecar.start()
    (member,) = [r for r in sidecar._listeners if isinstance(r, KafkaMember)]
    try:
        await _wait(lambda: member.paused, 30, "the member to pause its partitions")
        depth_seen = sidecar.pipeline.depth
        assert depth_seen <= 100
        port = sidecar.ports["http"]
        status, body = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/readyz")
        assert status == 503 and "paused" in json.loads(body)["checks"]["kafka"]["detail"]
        slow.gate.set()
        records = await capture.wait_for(n, timeout=60)
        assert sorted(r.message for r in records) == sorted(f"request {i} served" for i in range(n))
        await _wait(lambda: not member.paused, 10, "the member to resume")
    finally:
        slow.gate.set()
        await sidecar.stop()
