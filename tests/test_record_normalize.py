"""Record normalization (DESIGN §3) on the record shapes real shippers send."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from logguardian.record import Normalizer, normalize, parse_time

# Fluent Bit tail input + kubernetes filter, as the http output renders it
# (`json_date_key date`, `json_date_format double`, date written first).
FLUENT_BIT_K8S = (
    b'{"date":1718012392.000681,"time":"2024-06-10T09:39:52.000681Z","stream":"stderr",'
    b'"_p":"F","log":"2024-06-10 09:39:52 WARN  [pool-3] retrying payment 42",'
    b'"kubernetes":{"pod_name":"checkout-7d9f","namespace_name":"shop",'
    b'"pod_id":"8b1c","labels":{"app":"checkout","pod-template-hash":"7d9f"},'
    b'"host":"node-1","container_name":"checkout-api","docker_id":"ab12",'
    b'"container_image":"shop/checkout:1.2"}}'
)

# Logstash 8 event under ECS compatibility (host is an object).
LOGSTASH_ECS = (
    b'{"@timestamp":"2026-08-01T10:00:00.123456789Z","@version":"1",'
    b'"message":"ERROR Connection refused to db-1:5432",'
    b'"host":{"name":"web-3"},"log":{"file":{"path":"/var/log/app.log"}},'
    b'"event":{"original":"ERROR Connection refused"},"service":{"name":"billing"},'
    b'"tags":["_grokparsefailure"]}'
)

GELF = (
    b'{"version":"1.1","host":"node-2","short_message":"disk almost full",'
    b'"timestamp":1718012392.5,"level":4,"_service":"storage","_path":"/data"}'
)


def test_fluent_bit_kubernetes_record() -> None:
    r = normalize(orjson.loads(FLUENT_BIT_K8S), source="http")
    assert r.message.startswith("2024-06-10 09:39:52 WARN")
    assert r.ts == pytest.approx(1718012392.000681)
    assert r.service == "checkout"  # kubernetes.labels.app beats container_name
    assert r.level == "warn"  # inferred from the message text
    assert r.attributes["kubernetes"]["namespace_name"] == "shop"
    assert "log" not in r.attributes and r.attributes["stream"] == "stderr"
    assert r.source == "http"


def test_container_name_when_no_app_label() -> None:
    doc = orjson.loads(FLUENT_BIT_K8S)
    del doc["kubernetes"]["labels"]["app"]
    assert normalize(doc, source="http").service == "checkout-api"


@pytest.mark.parametrize(
    ("stamp", "fraction"),
    [
        ("2026-08-01T10:00:00.123Z", 0.123),
        ("2026-08-01T10:00:00.123456Z", 0.123456),
        ("2026-08-01T10:00:00.123456789Z", 0.123456),  # sub-µs digits are dropped
        ("2026-08-01T12:00:00.5+02:00", 0.5),
    ],
)
def test_logstash_timestamps_with_3_to_9_fraction_digits(stamp: str, fraction: float) -> None:
    base = datetime(2026, 8, 1, 10, tzinfo=UTC).timestamp()
    assert parse_time(stamp) == pytest.approx(base + fraction, abs=1e-6)


def test_logstash_ecs_event() -> None:
    r = normalize(orjson.loads(LOGSTASH_ECS), source="http")
    assert r.message == "ERROR Connection refused to db-1:5432"
    assert r.service == "billing"  # nested service.name
    assert r.level == "error"
    assert r.attributes["host"] == {"name": "web-3"}  # object kept as is
    assert r.ts == pytest.approx(datetime(2026, 8, 1, 10, tzinfo=UTC).timestamp() + 0.123456)


def test_logstash_legacy_host_string_and_log_level_field() -> None:
    doc = {
        "@timestamp": "2026-08-01T10:00:00.000Z",
        "message": "x",
        "host": "web-3",
        "log": {"level": "WARNING"},
    }
    r = normalize(doc, source="http")
    assert r.attributes["host"] == "web-3"
    assert r.level == "warn"  # log.level (ECS) beats inference


@pytest.mark.parametrize(
    ("letter", "level"),
    [("V", "trace"), ("D", "debug"), ("I", "info"), ("W", "warn"), ("E", "error"), ("F", "fatal")],
)
def test_one_letter_levels_of_logcat_and_glog(letter: str, level: str) -> None:
    """A shipper's logcat or glog parser leaves the level as one letter."""
    r = normalize({"message": "x", "level": letter}, source="http")
    assert r.level == level
    # A capital letter inside the message text is never read as a level.
    assert normalize({"log": "E I W value"}, source="http").level is None


def test_gelf_record() -> None:
    r = normalize(orjson.loads(GELF), source="http", service_fields=["_service", "service.name"])
    assert r.message == "disk almost full"
    assert r.ts == 1718012392.5
    assert r.level == "warn"  # GELF level 4 = syslog warning
    assert r.service == "storage"


def test_forward_entry_time_wins_and_tag_is_fallback_service() -> None:
    doc = {"log": "GET / 200", "time": "2001-01-01T00:00:00Z"}
    r = normalize(doc, source="forward", ts=1718012392.25, tag="kube.web")
    assert r.ts == 1718012392.25  # EventTime outside the map beats the map's time
    assert r.service == "kube.web"
    assert r.attributes["tag"] == "kube.web"


def test_epoch_ms_and_ns_and_java_sql_timestamp() -> None:
    assert parse_time(1718012392123) == pytest.approx(1718012392.123)
    assert parse_time(1718012392123456789) == pytest.approx(1718012392.123456789)
    assert parse_time("2024-06-10 09:39:52.000681") == pytest.approx(1718012392.000681)


def test_no_message_is_an_error_and_missing_time_is_receive_time() -> None:
    with pytest.raises(ValueError, match="no message field"):
        normalize({"date": 1.0, "stream": "stdout"}, source="http")
    r = normalize({"msg": "x"}, source="http", now=1234.5)
    assert r.ts == 1234.5 and r.service == "unknown" and r.level is None


def test_non_string_message_and_lowercase_words_not_levels() -> None:
    r = normalize({"message": {"k": 1}}, source="http")
    assert r.message == "{'k': 1}"
    assert normalize({"log": "no errors found"}, source="http").level is None


def test_normalizer_does_not_mutate_the_input() -> None:
    doc = orjson.loads(FLUENT_BIT_K8S)
    before = orjson.dumps(doc)
    Normalizer("http")(doc)
    assert orjson.dumps(doc) == before
