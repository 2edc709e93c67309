"""Session keys and the bounded, TTL'd session table."""

from __future__ import annotations

import pytest
from logguardian.record import Record
from logguardian.sessions import Session, SessionKeyer, SessionTable


def rec(message: str, service: str = "svc", ts: float = 0.0) -> Record:
    return Record(ts, message, service, None, {}, "test")


def session(key: str, ts: float, service: str = "svc") -> Session:
    return Session(key, service, (0, 0), 1, ts, ts)


def test_keyer_uses_whole_match_or_first_group_or_service() -> None:
    assert SessionKeyer(r"blk_-?\d+").key(rec("Receiving block blk_-42 src")) == "blk_-42"
    assert SessionKeyer(r"trace=(\w+)").key(rec("GET / trace=ab12 200")) == "ab12"
    assert SessionKeyer(r"blk_-?\d+").key(rec("no block here")) is None
    assert SessionKeyer(None).key(rec("anything", service="api")) == "api"


def test_keyer_reads_a_record_field_for_trace_ids_and_pods() -> None:
    keyer = SessionKeyer("field:trace.id")
    record = rec("payment captured")
    record.attributes = {"trace": {"id": "4bf92f35"}}
    assert keyer.key(record) == "4bf92f35"
    record.attributes = {"trace.id": 1234}
    assert keyer.key(record) == "1234"
    record.attributes = {}
    assert keyer.key(record) is None


def test_keyer_rejects_a_bad_regex_with_its_text() -> None:
    with pytest.raises(ValueError, match=r"blk_\("):
        SessionKeyer(r"blk_(")


def test_idle_sessions_close_in_stream_time_oldest_first() -> None:
    table = SessionTable(idle_seconds=60, max_sessions=100)
    a, b = session("a", 1000), session("b", 1030)
    table.open(a)
    table.open(b)
    table.advance(1050, wall=5.0)
    assert table.expired() == []
    table.advance(1065, wall=6.0)
    assert [s.key for s in table.expired()] == ["a"]
    assert [s.key for s in table] == ["b"]
    table.advance(1100, wall=7.0)
    assert [s.key for s in table.expired()] == ["b"]
    assert len(table) == 0


def test_activity_moves_a_session_to_the_back() -> None:
    table = SessionTable(idle_seconds=60, max_sessions=100)
    a, b = session("a", 1000), session("b", 1010)
    table.open(a)
    table.open(b)
    a.last_ts = 1050
    table.touch(a)
    table.advance(1075, wall=1.0)
    assert [s.key for s in table.expired()] == ["b"]


def test_stream_time_follows_the_wall_clock_while_no_records_arrive() -> None:
    table = SessionTable(idle_seconds=60, max_sessions=100)
    table.open(session("a", 1_000))
    table.advance(1_000, wall=50.0)
    table.advance(None, wall=80.0)
    assert table.expired() == []
    table.advance(None, wall=111.0)
    assert [s.key for s in table.expired()] == ["a"]


def test_table_is_bounded_and_evicts_least_recently_active() -> None:
    table = SessionTable(idle_seconds=60, max_sessions=2)
    first = session("a", 1)
    assert table.open(first) == []
    assert table.open(session("b", 2)) == []
    evicted = table.open(session("c", 3))
    assert evicted == [first]
    assert len(table) == 2 and table.evicted == 1


def test_same_key_in_two_services_is_two_sessions() -> None:
    table = SessionTable(idle_seconds=60, max_sessions=10)
    table.open(session("k", 1, service="api"))
    table.open(session("k", 1, service="db"))
    assert len(table) == 2
    assert table.get("api", "k") is not table.get("db", "k")


def test_a_bad_session_key_setting_stops_startup_naming_the_key() -> None:
    from logguardian.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match=r"model\.session_key.*unterminated"):
        load_settings(model={"session_key": "blk_("})
