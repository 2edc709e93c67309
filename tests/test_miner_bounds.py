"""Bounds: template count, tokens per message, line length, cache sizes."""

from __future__ import annotations

import itertools
import random
import string

import pytest
from logguardian.config import Templates
from logguardian.templates import miner as miner_module
from logguardian.templates.miner import TRUNCATED, TemplateMiner


def _batched(items: list[str], n: int) -> list[list[str]]:
    return [items[i : i + n] for i in range(0, len(items), n)]


def _distinct_events(n: int) -> list[str]:
    """Lines that can never share a template: each starts with its own word."""
    words = ("".join(p) for p in itertools.product(string.ascii_lowercase, repeat=3))
    return [f"{w}event happened on host" for w in itertools.islice(words, n)]


def test_template_count_is_capped_and_frequent_templates_survive() -> None:
    miner = TemplateMiner(Templates(max_templates=50))
    frequent = "heartbeat from agent 7 ok"
    keep_id = miner.add(frequent)[0]
    for chunk in _batched(_distinct_events(600), 20):
        ids = [t for t, _ in miner.add_batch([*chunk, frequent, frequent])]
        assert len(miner) <= 50
        assert ids[-1] == keep_id
    assert miner.get(keep_id) is not None
    assert miner.get(keep_id).count == 1 + 2 * 30


def test_many_token_line_is_truncated_to_max_tokens() -> None:
    miner = TemplateMiner(Templates(max_tokens=64))
    line = " ".join(f"w{i}x" if i % 2 else "word" for i in range(10_000))
    tid, text = miner.add(line)
    assert text.endswith(TRUNCATED)
    assert text.count(" ") < 64
    # The same long shape again lands on the same template.
    assert miner.add(line.replace("w1x", "w2x"))[0] == tid


def test_megabyte_line_is_cut_to_max_line_bytes() -> None:
    miner = TemplateMiner(Templates(max_line_bytes=4096))
    line = "payload " + "ab" * 500_000
    tid, text = miner.add(line)
    assert len(text) <= 4096
    assert miner.add(line + " tail")[0] == tid


def test_caches_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(miner_module, "SHAPE_CACHE_MAX", 100)
    monkeypatch.setattr(miner_module, "EXACT_CACHE_MAX", 100)
    miner = TemplateMiner()
    words = ("".join(p) for p in itertools.product(string.ascii_lowercase, repeat=4))
    lines = [f"user {w} logged in" for w in itertools.islice(words, 2000)]
    for chunk in _batched(lines, 50):
        miner.add_batch(chunk)
        assert len(miner._shape) <= 100 + 50
        assert len(miner._loose) <= 100 + 50
        assert len(miner._exact) <= 100
    assert len(miner) == 1


def test_evicted_templates_take_their_index_with_them() -> None:
    """Issue 13 #8: a flood of one-off shapes under the template cap must not leave
    empty buckets, skeleton entries, per-service counters or encoded snapshots of
    evicted templates behind (they held 2 GB after 1M such records)."""
    rng = random.Random(1)
    miner = TemplateMiner(Templates(max_templates=50))

    def word() -> str:
        return "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 9)))

    for chunk in range(30):
        batch = [" ".join(word() for _ in range(rng.randint(3, 8))) for _ in range(100)]
        miner.add_batch(batch, [f"svc{chunk}-{i % 7}" for i in range(100)])
        miner.export_bytes()
    live = list(miner._templates.values())
    patterns = [*live, *miner._aliases.values()]
    assert len(live) <= 50
    assert all(miner._buckets.values()), "an emptied bucket was left behind"
    assert sum(map(len, miner._buckets.values())) <= 2 * len(patterns)
    assert len(miner._skeletons) <= sum(len(t.skeletons) for t in patterns)
    assert set(miner._skeletons.values()) <= {t.id for t in patterns}
    assert set(miner.service_template_counts()) <= {s for t in live for s in t.services}
    assert set(miner._encoded) <= {t.id for t in live}
    assert len(miner._shape) + len(miner._loose) + len(miner._exact) <= 3 * 100
