"""Kafka message decoding (every shipper encoding; bad input costs one message) and the
offset frontier that decides what may be committed."""

from __future__ import annotations

import msgpack
import orjson
from logguardian.pipeline import Batch
from logguardian.receivers.kafka import OffsetTracker
from logguardian.receivers.kafka_decode import MessageDecoder
from logguardian.record import DEFAULT_SERVICE_FIELDS, Record


def _decoder(encoding: str) -> MessageDecoder:
    return MessageDecoder(encoding, list(DEFAULT_SERVICE_FIELDS))


def test_fluent_bit_msgpack_map_with_its_timestamp_key() -> None:
    value = msgpack.packb(
        {"@timestamp": 1_700_000_000.5, "log": "disk full", "kubernetes": {"labels": {"app": "db"}}}
    )
    out = _decoder("msgpack")(value, b"db")
    assert not out.rejected
    [record] = out.records
    assert (record.message, record.service, record.ts, record.source) == (
        "disk full",
        "db",
        1_700_000_000.5,
        "kafka",
    )


def test_the_message_key_names_the_service_when_the_record_does_not() -> None:
    out = _decoder("json")(orjson.dumps({"message": "hello"}), b"payments")
    assert [r.service for r in out.records] == ["payments"]


def test_a_json_array_message_yields_every_record() -> None:
    value = orjson.dumps([{"log": "a", "service": "x"}, {"log": "b", "service": "x"}, 7])
    out = _decoder("json")(value, None)
    assert [r.message for r in out.records] == ["a", "b"]
    assert out.reasons == {"invalid_record": 1}


def test_bad_messages_are_counted_never_raised() -> None:
    for encoding, value in [
        ("json", b"{not json"),
        ("json", b""),
        ("msgpack", b"\xc1\xc1"),
        ("otlp_proto", b"\xff\xff\xff"),
        ("otlp_json", b"[1, 2]"),
        ("otlp_json", b'{"resourceLogs": "nope"}'),
    ]:
        out = _decoder(encoding)(value, None)
        assert out.records == [] and out.rejected >= 1, (encoding, value)


def _records(n: int) -> list[Record]:
    return [Record(0.0, f"m{i}", "s", None) for i in range(n)]


def test_offsets_commit_only_past_messages_whose_records_all_went_through() -> None:
    tracker = OffsetTracker()
    key = ("t", 0, 1)
    first, second, third = _records(2), _records(1), _records(1)
    tracker.track(key, 10, first)
    tracker.track(key, 11, [])  # nothing decodable: done as soon as those before it are
    tracker.track(key, 12, second)
    tracker.track(key, 13, third)
    assert tracker.commits() == {}
    tracker.export(Batch(records=[second[0], third[0], first[0]], now=0.0))
    assert tracker.commits() == {}  # message 10 still has a record in the pipeline
    tracker.export(Batch(records=[first[1]], now=0.0))
    assert tracker.commits() == {key: 14}
    tracker.committed({key: 14})
    assert tracker.commits() == {}


def test_a_revoked_partition_is_forgotten_and_its_late_records_ignored() -> None:
    tracker = OffsetTracker()
    old, new = ("t", 0, 1), ("t", 0, 2)
    late = _records(1)
    tracker.track(old, 5, late)
    tracker.forget([old])
    fresh = _records(1)
    tracker.track(new, 5, fresh)
    tracker.export(Batch(records=late, now=0.0))
    assert tracker.commits() == {}
    tracker.export(Batch(records=fresh, now=0.0))
    assert tracker.commits() == {new: 6}
