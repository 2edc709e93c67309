"""Training data: log files → records → templates → sessions of vocabulary indices.

No torch here, so the pieces are reusable by evaluation code that must not need it.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ..bundle import PAD
from ..config import Templates
from ..record import Record, normalize
from ..sessions import SessionKeyer
from ..templates import TemplateMiner

CHUNK = 10_000


def read_records(
    paths: Iterable[Path], fmt: str, errors: list[str] | None = None
) -> Iterator[Record]:
    """Records from files: `raw` = one message per line, `jsonl` = one shipper map per line.

    Lines that are not valid JSON objects with a message are skipped and, when `errors`
    is given, described there, so one bad line never stops a training run.
    """
    for path in paths:
        with open(path, "rb") as fh:
            for number, line in enumerate(io.BufferedReader(fh), 1):
                if fmt == "raw":
                    text = line.decode("utf-8", "replace").rstrip("\r\n")
                    if text:
                        yield Record(0.0, text, "unknown", None, {}, "file")
                    continue
                if not line.strip():
                    continue
                try:
                    doc = orjson.loads(line)
                    if not isinstance(doc, dict):
                        raise ValueError("not a JSON object")
                    yield normalize(doc, source="file", now=0.0)
                except ValueError as exc:
                    if errors is not None:
                        errors.append(f"{path}:{number}: {exc}")


@dataclass
class Dataset:
    """Sessions as lists of vocabulary indices (2.. = templates, see bundle.PAD/UNK)."""

    sessions: list[list[int]]
    vocab_ids: list[str]
    vocab_texts: list[str]
    vocab_counts: list[int]
    records: int = 0
    keyed_records: int = 0
    miner_state: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def build_dataset(
    records: Iterable[Record],
    session_key: str | None,
    idle_seconds: float,
    templates: Templates | None = None,
    progress: Any = None,
) -> Dataset:
    """Mines templates over the whole input first, then maps every record to its final
    (fully generalized) template, so early and late lines of a template share one index."""
    miner = TemplateMiner(templates or Templates())
    keyer = SessionKeyer(session_key)
    ids: list[str] = []
    keys: list[tuple[str, str] | None] = []
    stamps: list[float] = []
    chunk_msgs: list[str] = []
    chunk_svcs: list[str] = []
    n = 0

    def flush() -> None:
        ids.extend(tid for tid, _ in miner.add_batch(chunk_msgs, chunk_svcs))
        chunk_msgs.clear()
        chunk_svcs.clear()

    for record in records:
        n += 1
        key = keyer.key(record)
        keys.append((record.service, key) if key is not None else None)
        stamps.append(record.ts)
        chunk_msgs.append(record.message)
        chunk_svcs.append(record.service)
        if len(chunk_msgs) >= CHUNK:
            flush()
            if progress is not None:
                progress.update(CHUNK)
    if chunk_msgs:
        if progress is not None:
            progress.update(len(chunk_msgs))
        flush()

    final = [miner.resolve(tid) for tid in ids]
    counts = Counter(t for t, k in zip(final, keys, strict=True) if k is not None)
    vocab_ids = [tid for tid, _ in counts.most_common()]
    index = {tid: i + 2 for i, tid in enumerate(vocab_ids)}
    texts = [miner.text(tid) or "" for tid in vocab_ids]

    open_sessions: dict[tuple[str, str], tuple[list[int], float]] = {}
    closed: list[list[int]] = []
    keyed = 0
    for tid, key, ts in zip(final, keys, stamps, strict=True):
        if key is None:
            continue
        keyed += 1
        found = open_sessions.get(key)
        if found is not None and ts - found[1] > idle_seconds:
            closed.append(found[0])
            found = None
        if found is None:
            found = ([], ts)
        found[0].append(index[tid])
        open_sessions[key] = (found[0], max(ts, found[1]))
    closed.extend(seq for seq, _ in open_sessions.values())
    return Dataset(
        sessions=closed,
        vocab_ids=vocab_ids,
        vocab_texts=texts,
        vocab_counts=[counts[t] for t in vocab_ids],
        records=n,
        keyed_records=keyed,
        miner_state=miner.export_state(),
    )


def windows(sessions: Iterable[list[int]], k: int) -> Counter[tuple[int, ...]]:
    """Distinct (window of the previous k indices, next index) rows with their counts.

    Sessions repeat heavily, so training on distinct rows weighted by count is far
    cheaper than on every record and learns the same distribution.
    """
    rows: Counter[tuple[int, ...]] = Counter()
    pad = (PAD,) * k
    for seq in sessions:
        window = pad
        for idx in seq:
            rows[(*window, idx)] += 1
            window = (*window[1:], idx)
    return rows


def end_templates(sessions: list[list[int]], min_sessions: int = 20) -> list[int]:
    """Templates that only ever occur once, as the last record of a session: seeing one
    closes the session at once instead of after the idle timeout."""
    seen: Counter[int] = Counter()
    last_once: Counter[int] = Counter()
    for seq in sessions:
        c = Counter(seq)
        seen.update(c.keys())
        if seq and c[seq[-1]] == 1:
            last_once[seq[-1]] += 1
    return sorted(t for t, n in seen.items() if n >= min_sessions and last_once[t] == n)
