"""`logguardian analyze SERIES.csv [--out OUT.csv]` (DESIGN §5, a contract).

`timestamp,value` in (header; ISO-8601 or epoch), `timestamp,value,anomaly_score`
out, one row per input row, each score computed in time order from past and present
points only (NAB's rule), by the same streaming detector watch targets use. Rows
that cannot be read get an empty score and are reported on stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from ..series.csvio import read_series, time_order, write_scores
from ..series.detector import METHODS, SeriesDetector

MAX_ERRORS_SHOWN = 5


def run(args: argparse.Namespace) -> int:
    methods = tuple(args.methods.split(",")) if args.methods else METHODS
    try:
        detector = SeriesDetector(methods)
    except ValueError as exc:
        print(f"logguardian analyze: {exc}", file=sys.stderr)
        return 2
    path = Path(args.file)
    if args.file != "-" and not path.is_file():
        print(f"logguardian analyze: no such file: {path}", file=sys.stderr)
        return 2
    if args.file == "-":
        report = read_series(sys.stdin)
    else:
        with path.open(newline="", encoding="utf-8", errors="replace") as fh:
            report = read_series(fh)
    rows = report.rows
    scores: list[float | None] = [None] * len(rows)
    order = time_order(rows)
    progress = tqdm(
        order, total=len(order), unit="pt", disable=not sys.stderr.isatty(), file=sys.stderr
    )
    for i in progress:
        row = rows[i]
        assert row.ts is not None and row.x is not None
        scores[i] = detector.update(row.ts, row.x).score
    if args.out:
        with Path(args.out).open("w", newline="", encoding="utf-8") as out:
            write_scores(out, rows, scores)
    else:
        write_scores(sys.stdout, rows, scores)
    for err in report.errors[:MAX_ERRORS_SHOWN]:
        print(f"logguardian analyze: {err}", file=sys.stderr)
    if report.bad > MAX_ERRORS_SHOWN:
        print(f"logguardian analyze: … {report.bad} unreadable rows in all", file=sys.stderr)
    return 0
