"""Series in and out as CSV: `timestamp,value` rows (ISO-8601 or epoch timestamps).

A row that cannot be read costs that row only: it is reported by line number and
still gets an output row (empty score), so output rows stay aligned with input rows.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TextIO

from ..record import parse_time


@dataclass
class Row:
    line: int
    timestamp: str
    value: str
    ts: float | None
    x: float | None


@dataclass
class ReadReport:
    rows: list[Row] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def bad(self) -> int:
        return len(self.errors)


def parse_value(text: str) -> float | None:
    try:
        x = float(text)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def read_series(fh: TextIO) -> ReadReport:
    """Every row of a `timestamp,value` CSV with a header (columns found by name, else
    the first two)."""
    report = ReadReport()
    reader = csv.reader(fh)
    header = next(reader, None)
    if header is None:
        return report
    names = [h.strip().lower() for h in header]
    t_col = names.index("timestamp") if "timestamp" in names else 0
    v_col = names.index("value") if "value" in names else 1
    for line, cells in enumerate(reader, start=2):
        if not cells:
            continue
        timestamp = cells[t_col] if len(cells) > t_col else ""
        value = cells[v_col] if len(cells) > v_col else ""
        ts = parse_time(timestamp)
        x = parse_value(value)
        if ts is None:
            report.errors.append(f"line {line}: not a timestamp: {timestamp!r}")
        elif x is None:
            report.errors.append(f"line {line}: not a number: {value!r}")
        report.rows.append(Row(line, timestamp, value, ts, x))
    return report


def time_order(rows: list[Row]) -> list[int]:
    """Indices of the readable rows in time order (stable for equal timestamps)."""
    good = [i for i, r in enumerate(rows) if r.ts is not None and r.x is not None]
    return sorted(good, key=lambda i: rows[i].ts)  # type: ignore[arg-type, return-value]


def write_scores(fh: TextIO, rows: Iterable[Row], scores: Iterable[float | None]) -> None:
    writer = csv.writer(fh, lineterminator="\n")
    writer.writerow(("timestamp", "value", "anomaly_score"))
    for row, score in zip(rows, scores, strict=True):
        writer.writerow((row.timestamp, row.value, "" if score is None else f"{score:.6f}"))


def pairs(rows: list[Row], order: list[int]) -> Iterator[tuple[float, float]]:
    for i in order:
        r = rows[i]
        assert r.ts is not None and r.x is not None
        yield r.ts, r.x
