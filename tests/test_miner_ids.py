"""Template ids: stable under generalization, merges resolvable, deterministic, and
kept across a snapshot/restore (what annotations and feedback rely on)."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest
from logguardian.config import Templates
from logguardian.templates.miner import TemplateMiner, template_id
from logguardian.templates.persistence import SNAPSHOT_NAME


def test_id_is_kept_when_the_template_generalizes() -> None:
    miner = TemplateMiner()
    first_id, first_text = miner.add("session opened for user cyrus by (uid=0)")
    assert first_text == "session opened for user cyrus by (uid=<NUM>)"
    assert miner.add("session opened for user news by (uid=0)")[0] != first_id
    tid, text = miner.add("session opened for user test by (uid=0)")
    # Three distinct users: the position became a variable, under the FIRST id.
    assert (tid, text) == (first_id, "session opened for user <*> by (uid=<NUM>)")
    assert miner.add("session opened for user alice by (uid=7)") == (first_id, text)
    assert len(miner) == 1


def test_merged_ids_resolve_to_the_survivor() -> None:
    miner = TemplateMiner()
    a = miner.add("worker alpha started on this node")[0]
    b = miner.add("worker beta started on this node")[0]
    c = miner.add("worker gamma started on this node")[0]
    assert a == c != b
    assert miner.resolve(b) == a
    assert miner.merges() == {b: a}
    info = miner.get(b)
    assert info is not None and info.id == a and info.count == 3


def test_a_differing_word_in_a_short_line_stays_an_event_and_key_values_vary() -> None:
    """GET/POST/DELETE/PUT differ in one of only two constant words: not enough
    agreement to call the word a variable. A `key=` value is a value once it varies."""
    miner = TemplateMiner()
    methods = {
        miner.add(f'10.0.0.1 "{m} /v2/servers HTTP/1.1" status: 200')[0]
        for m in ("GET", "POST", "DELETE", "PUT")
    }
    states = [
        miner.add(f"vm state={s} after 3 ms") for s in ("running", "paused", "stopped", "crashed")
    ]
    assert len(methods) == 4
    assert {tid for tid, _ in states} == {states[0][0]}
    assert states[-1][1] == "vm state=<*> after <NUM>"


def test_ids_are_content_derived_and_deterministic() -> None:
    lines = [f"job {i} done in {i * 7} ms on node-{i % 3}" for i in range(50)]
    one, two = TemplateMiner(), TemplateMiner()
    ids_one = [t for t, _ in one.add_batch(lines)]
    ids_two = [two.add(line)[0] for line in lines]
    assert ids_one == ids_two
    assert ids_one[0] == template_id("job <NUM> done in <NUM> on node-<NUM>")


def test_snapshot_round_trip_keeps_ids_counts_and_merges(tmp_path: Path) -> None:
    miner = TemplateMiner()
    lines = [
        "worker alpha started on this node",
        "worker beta started on this node",
        "worker gamma started on this node",
        "disk /dev/sda1 is 91% full",
        "disk /dev/sdb2 is 12% full",
    ]
    before = [t for t, _ in miner.add_batch(lines, ["a", "a", "b", "a", "b"], 1000.0)]
    miner.save(tmp_path)
    assert (tmp_path / SNAPSHOT_NAME).is_file()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]

    restored = TemplateMiner()
    assert restored.load(tmp_path)
    assert {i.id: (i.text, i.count, i.services) for i in restored.templates()} == {
        i.id: (i.text, i.count, i.services) for i in miner.templates()
    }
    assert restored.merges() == miner.merges()
    # New lines of known templates get the old ids; nothing looks new after restart.
    assert restored.add("worker delta started on this node")[0] == restored.resolve(before[1])
    assert restored.add("disk /dev/sdc3 is 50% full")[0] == before[3]
    assert len(restored) == len(miner)


def test_corrupt_or_foreign_snapshot_is_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / SNAPSHOT_NAME).write_bytes(b"{not json")
    miner = TemplateMiner()
    assert miner.load(tmp_path) is False
    kept = [p for p in os.listdir(tmp_path) if ".corrupt-" in p]
    assert len(kept) == 1 and (tmp_path / kept[0]).read_bytes() == b"{not json"
    (tmp_path / SNAPSHOT_NAME).write_bytes(orjson.dumps({"format": 99, "templates": []}))
    assert miner.load(tmp_path) is False
    assert "ignoring unreadable template snapshot" in caplog.text
    assert miner.add("still works 1")[1] == "still works <NUM>"


def test_missing_snapshot_starts_empty(tmp_path: Path) -> None:
    miner = TemplateMiner(Templates())
    assert miner.load(tmp_path / "nothing-here") is False
    assert len(miner) == 0


def test_first_and_last_seen_follow_record_time_and_services_are_counted() -> None:
    """Replayed logs carry old timestamps: first/last seen come from the records."""
    miner = TemplateMiner()
    miner.add_batch(
        ["job 1 ok", "job 2 ok", "job 3 ok"], ["a", "b", "a"], [1_000.0, 1_005.0, 1_010.0]
    )
    miner.add("job 4 ok", "c", 2_000.0)
    (info,) = miner.templates()
    assert (info.first_seen, info.last_seen) == (1_000.0, 2_000.0)
    assert info.services == {"a": 2, "b": 1, "c": 1}
    assert miner.service_template_counts() == {"a": 1, "b": 1, "c": 1}


def test_per_template_service_counts_are_bounded() -> None:
    from logguardian.templates.miner import MAX_SERVICES_PER_TEMPLATE, OTHER_SERVICE

    miner = TemplateMiner()
    n = MAX_SERVICES_PER_TEMPLATE + 40
    miner.add_batch(["ping 1"] * n, [f"svc-{i}" for i in range(n)], 1.0)
    (info,) = miner.templates()
    assert len(info.services) == MAX_SERVICES_PER_TEMPLATE + 1
    assert info.services[OTHER_SERVICE] == 40
    assert info.count == n


def test_incremental_snapshot_matches_a_full_one() -> None:
    """Snapshots re-encode only touched templates; the result must equal a full dump."""
    miner = TemplateMiner()
    miner.add_batch(
        [f"job {i} done" for i in range(5)] + ["worker alpha started on this node"], None, 1.0
    )
    first = orjson.loads(miner.export_bytes())
    assert first == orjson.loads(orjson.dumps(miner.export_state()))
    # Counts, a generalization and a merge since the last snapshot.
    miner.add_batch(
        [
            "job 9 done",
            "worker beta started on this node",
            "worker gamma started on this node",
            "disk full",
        ],
        ["b", "b", "b", "b"],
        2.0,
    )
    second = orjson.loads(miner.export_bytes())
    assert second == orjson.loads(orjson.dumps(miner.export_state()))
    assert second != first and second["merged"]


def test_snapshot_from_the_unit_tokenizer_still_loads_and_matches() -> None:
    """Snapshots written before whitespace tokens kept separators inside units
    (`"by "`, `"(uid="`): they load, and new lines of those templates keep the ids."""
    old_units = ["session ", "opened ", "for ", "user ", "<*> ", "by ", "(uid=", "<NUM>)"]
    state = {
        "format": 1,
        "seq": 1,
        "lines": 5,
        "merged": {"aaaaaaaaaa": "0123456789"},
        "templates": [
            {
                "id": "0123456789",
                "units": old_units,
                "seq": 1,
                "count": 5,
                "services": {"a": 5},
                "first_seen": 1.0,
                "last_seen": 2.0,
            }
        ],
    }
    miner = TemplateMiner()
    miner.import_state(state)
    tid, text = miner.add("session opened for user carol by (uid=1000)")
    assert (tid, text) == ("0123456789", "session opened for user <*> by (uid=<NUM>)")
    assert miner.resolve("aaaaaaaaaa") == "0123456789"
    assert miner.get(tid).count == 6


def test_an_optional_group_merge_keeps_the_older_id_and_survives_a_snapshot() -> None:
    """`sent 12 bytes in` first, `sent 1190 bytes (1.16 KB) in` later: the later
    shape joins the first id as an alias, and a restored miner still resolves it."""
    miner = TemplateMiner()
    first = miner.add("close, 12 bytes sent, 40 bytes received, lifetime 00:02")[0]
    second = miner.add("close, 1190 bytes (1.16 KB) sent, 40 bytes received, lifetime 00:03")[0]
    assert second == first
    assert len(miner) == 1
    restored = TemplateMiner()
    restored.import_state(orjson.loads(miner.export_bytes()))
    line = "close, 2190 bytes (2.16 KB) sent, 41 bytes received, lifetime 00:04"
    assert restored.add(line)[0] == first
    assert restored.merges() == miner.merges()
