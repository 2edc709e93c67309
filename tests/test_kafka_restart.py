"""At-least-once across a crash: a `logguardian serve` consumer is killed with SIGKILL
mid-stream and restarted on the same state dir and group. Every record must be
processed (each one produces exactly one annotation) and every annotation must land
exactly once in the local store, although the records after the last commit are
consumed twice."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path

from services.kafka_fixtures import KafkaBroker, word
from services.serve import Serve

SERVICES = 8
PER_SERVICE = 40
N = SERVICES * PER_SERVICE


def _message(service: int, j: int) -> bytes:
    """Record j of a service shares no word but ERROR with the others: a template of its
    own, so with no warmup each record is a first-seen template and yields exactly one
    annotation."""
    text = "ERROR " + " ".join(word(j * 7 + k * 1000 + 17) for k in range(3))
    return json.dumps({"log": text, "service": f"svc-{service}"}).encode()


def _stored(state_dir: Path) -> list[tuple[str, str]]:
    """(annotation id, "service|message") of every stored annotation."""
    path = state_dir / "store.sqlite3"
    if not path.exists():
        return []
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as db:
        return [
            (row[0], f"{row[1]}|{json.loads(row[2])['message']}")
            for row in db.execute("SELECT id, service, doc FROM annotations")
        ]


def test_kill9_mid_stream_processes_everything_and_stores_each_annotation_once(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    topic = f"logs-{uuid.uuid4().hex[:8]}"
    group = f"g-{topic}"
    kafka_broker.create_topic(topic, 8)
    env = kafka_broker.member_env(topic, group, commit_seconds=2)
    state_dir = tmp_path / "state"
    serve = Serve(state_dir, env).start()
    messages = [
        (f"svc-{s}".encode(), _message(s, j)) for j in range(PER_SERVICE) for s in range(SERVICES)
    ]
    # A producer streaming ~60 records/s while the consumer is killed and restarted.
    producing = threading.Thread(
        target=lambda: [
            (kafka_broker.produce(topic, messages[i : i + 20]), time.sleep(0.3))
            for i in range(0, N, 20)
        ]
    )
    try:
        producing.start()
        deadline = time.monotonic() + 60
        while len(_stored(state_dir)) < N // 3:
            assert time.monotonic() < deadline, serve.output()
            time.sleep(0.05)
        serve.kill9()
        stored_before = len(_stored(state_dir))
        committed_before = kafka_broker.committed_total(group, topic, 8)
        assert committed_before < N
        serve.start()
        producing.join(60)
        deadline = time.monotonic() + 90
        while kafka_broker.committed_total(group, topic, 8) < N or len(_stored(state_dir)) < N:
            assert time.monotonic() < deadline, (
                f"{len(_stored(state_dir))} of {N} annotations stored\n{serve.output()}"
            )
            time.sleep(0.2)
        consumed_again = serve.metric("logguardian_received_total", 'receiver="kafka"')
        assert serve.terminate() == 0
    finally:
        serve.stop()
    stored = _stored(state_dir)
    expected = {f"{key.decode()}|{json.loads(value)['log']}" for key, value in messages}
    # Every record processed at least once, every annotation exactly once.
    assert len(stored) == N
    assert {message for _, message in stored} == expected
    assert len({annotation_id for annotation_id, _ in stored}) == N
    # The restarted member really replayed records whose annotations were stored
    # before the kill (so the ids, not luck, kept the store free of duplicates).
    assert consumed_again == N - committed_before
    assert consumed_again > N - stored_before, (consumed_again, stored_before, committed_before)


def test_two_members_split_the_partitions_and_the_survivor_takes_over_a_killed_ones(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    """Two sidecars in one group; one is killed with SIGKILL mid-stream and not
    restarted. The survivor is assigned the dead member's partitions (after the session
    timeout) and consumes from their last commit: every record is processed by one
    member or the other, and neither store holds an annotation twice."""
    topic = f"logs-{uuid.uuid4().hex[:8]}"
    group = f"g-{topic}"
    kafka_broker.create_topic(topic, 8)
    env = kafka_broker.member_env(topic, group, commit_seconds=2, session_timeout_ms=6000)
    doomed = Serve(tmp_path / "a", env).start()
    survivor = Serve(tmp_path / "b", env).start()
    messages = [
        (f"svc-{s}".encode(), _message(s, j)) for j in range(PER_SERVICE) for s in range(SERVICES)
    ]
    producing = threading.Thread(
        target=lambda: [
            (kafka_broker.produce(topic, messages[i : i + 20]), time.sleep(0.3))
            for i in range(0, N, 20)
        ]
    )
    try:
        producing.start()
        deadline = time.monotonic() + 60
        # Both members own partitions and have stored annotations before the kill.
        while len(_stored(tmp_path / "a")) < N // 8 or len(_stored(tmp_path / "b")) < N // 8:
            assert time.monotonic() < deadline, doomed.output() + survivor.output()
            time.sleep(0.05)
        doomed.kill9()
        producing.join(60)
        deadline = time.monotonic() + 120
        while kafka_broker.committed_total(group, topic, 8) < N:
            assert time.monotonic() < deadline, survivor.output()
            time.sleep(0.2)
        assert survivor.terminate() == 0
    finally:
        doomed.stop()
        survivor.stop()
    first, second = _stored(tmp_path / "a"), _stored(tmp_path / "b")
    expected = {f"{key.decode()}|{json.loads(value)['log']}" for key, value in messages}
    for stored in (first, second):
        assert len({annotation_id for annotation_id, _ in stored}) == len(stored)
    # The survivor's store alone holds each of its annotations once, though it replayed
    # what the dead member had processed after its last commit.
    assert len({m for _, m in second}) == len(second)
    assert {m for _, m in first} | {m for _, m in second} == expected
