"""Injected-incident scenarios: detection rate, time to detect, false incidents per
simulated day per service, and detection cost per record.

Traffic is seeded, multi-service and diurnal (logguardian.scenarios), rendered to
log lines and mined by the real miner first, whose cost is the peer the detection
cost is compared with (`--true-templates` skips mining and uses the generator's
template ids). A second peer, a bare loop doing one dict update per record, is
timed in the same process as a floor.

    .venv/bin/python bench/scenarios.py [--days 3] [--seeds 2] [--true-templates]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sidecar"))

from logguardian import scenarios
from logguardian.config import load_settings
from logguardian.detectors.online import Detection
from logguardian.metrics import Metrics
from logguardian.pipeline import Batch
from logguardian.record import Record
from logguardian.signals import Incident

START = 1_760_000_000 - 1_760_000_000 % 86400  # midnight UTC
BATCH = 2000
BATCH_SECONDS = 5.0  # the sidecar cuts batches every few ms to a second; so do we
MATCH_BEFORE = 60.0  # an incident opened this long before an injection still counts
MATCH_AFTER = 600.0  # ... or up to this long after it ended


def run(days: float, seed: int, mine: bool) -> dict[str, float | list[float] | int]:
    duration = days * 86400
    plan = scenarios.plan(START, duration, per_kind=max(1, int(days * 2)), seed=seed)
    traffic = scenarios.generate(START, duration, plan, seed=seed)
    levels = traffic.levels
    names = traffic.services
    records = [
        Record(ts=t, message="", service=names[s], level=levels[k], attributes={}, source="bench")
        for t, s, k in zip(
            traffic.ts.tolist(), traffic.service.tolist(), traffic.template.tolist(), strict=True
        )
    ]
    tids = traffic.template_ids()
    settings = load_settings(state_dir=Path("/nonexistent"))
    mine_seconds = 0.0
    if mine:
        from logguardian.templates.miner import TemplateMiner

        lines = [line for _t, _s, _l, line in scenarios.render(traffic, seed)]
        miner = TemplateMiner(settings.templates)
        started = time.perf_counter()
        for i in range(0, len(lines), BATCH):
            chunk = records[i : i + BATCH]
            pairs = miner.add_batch(
                lines[i : i + BATCH], [r.service for r in chunk], [r.ts for r in chunk]
            )
            tids[i : i + BATCH] = [p[0] for p in pairs]
        mine_seconds = time.perf_counter() - started

    detection = Detection(settings, Metrics(), None)
    stages = detection.stages
    incidents: dict[str, Incident] = {}
    first_annotation: dict[str, float] = {}
    cuts = _cuts(traffic.ts)
    started = time.perf_counter()
    for i, j in cuts:
        chunk = records[i:j]
        batch = Batch(
            records=chunk, now=chunk[-1].ts + 1.0, template_ids=tids[i:j], templates=tids[i:j]
        )
        for stage in stages:
            stage.process(batch)
        for inc in batch.incidents:
            incidents[inc.id] = inc
        for a in batch.annotations:
            if a.incident_id and a.incident_id not in first_annotation:
                first_annotation[a.incident_id] = a.ts
    detect_seconds = time.perf_counter() - started

    # Peer: the least any per-record detector can do (one dict update per record).
    started = time.perf_counter()
    counts: dict[tuple[str, str], int] = {}
    for record, tid in zip(records, tids, strict=True):
        key = (record.service, tid)
        counts[key] = counts.get(key, 0) + 1
    floor_seconds = time.perf_counter() - started

    found = sorted(incidents.values(), key=lambda inc: inc.started_at)
    matched: set[str] = set()
    delays = []
    missed = []
    for inj in plan:
        hits = [
            inc
            for inc in found
            if inc.service == inj.service
            and inj.start - MATCH_BEFORE <= inc.started_at <= inj.end + MATCH_AFTER
        ]
        if not hits:
            missed.append(f"{inj.kind}@{inj.service}")
            continue
        matched.update(inc.id for inc in hits)
        delays.append((inj.kind, max(0.0, hits[0].started_at - inj.start)))
    false = [inc for inc in found if inc.id not in matched]
    n = len(records)
    return {
        "records": n,
        "injected": len(plan),
        "detected": len(plan) - len(missed),
        "missed": missed,
        "delays": delays,
        "false": len(false),
        "false_detail": [
            f"{inc.service}@{(inc.started_at - START) / 3600:.1f}h "
            f"{inc.reasons[0] if inc.reasons else ''}"
            for inc in false
        ],
        "service_days": days * len(names),
        "detect_us": detect_seconds / n * 1e6,
        "floor_us": floor_seconds / n * 1e6,
        "mine_us": mine_seconds / n * 1e6,
    }


def _cuts(ts: np.ndarray) -> list[tuple[int, int]]:
    """Batch boundaries: at most BATCH records and BATCH_SECONDS of log time each."""
    out = []
    i, n = 0, len(ts)
    while i < n:
        j = min(n, i + BATCH, int(np.searchsorted(ts, ts[i] + BATCH_SECONDS)))
        j = max(j, i + 1)
        out.append((i, j))
        i = j
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=3.0)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument(
        "--true-templates",
        dest="mine",
        action="store_false",
        help="use the generator's template ids instead of mining",
    )
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    totals = {"records": 0, "injected": 0, "detected": 0, "false": 0, "service_days": 0.0}
    delays: list[tuple[str, float]] = []
    cost = []
    for seed in range(args.seeds):
        r = run(args.days, seed, args.mine)
        for key in totals:
            totals[key] += r[key]  # type: ignore[operator]
        delays += r["delays"]  # type: ignore[arg-type]
        cost.append((r["detect_us"], r["floor_us"], r["mine_us"]))
        print(
            f"seed {seed}: {r['records']:,} records, detected {r['detected']}/{r['injected']}"
            f" (missed: {', '.join(r['missed']) or 'none'}), false incidents {r['false']}, "
            f"detection {r['detect_us']:.2f} us/record"
        )  # type: ignore[str-format]
        if args.verbose:
            for line in r["false_detail"]:  # type: ignore[union-attr]
                print("   false:", line)
    detect_us = statistics.median(c[0] for c in cost)
    floor_us = statistics.median(c[1] for c in cost)
    print(
        f"\nscenarios: {args.seeds} seeds x {args.days:g} days x 4 services, "
        f"{totals['records']:,} records"
    )
    print(
        f"detection rate      {totals['detected']}/{totals['injected']} "
        f"({totals['detected'] / totals['injected']:.0%})"
    )
    if delays:
        seconds = [d for _, d in delays]
        print(
            f"time to detect      median {statistics.median(seconds):.0f} s, "
            f"max {max(seconds):.0f} s (log time)"
        )
        for kind in scenarios.KINDS:
            got = [d for k, d in delays if k == kind]
            if got:
                print(
                    f"  {kind:<17} median {statistics.median(got):.0f} s, "
                    f"max {max(got):.0f} s over {len(got)}"
                )
    print(
        f"false incidents     {totals['false']} = "
        f"{totals['false'] / totals['service_days']:.2f} per service per day"
    )
    print(
        f"detection cost      {detect_us:.2f} us/record "
        f"(bare dict-update loop {floor_us:.2f} us/record, ratio {detect_us / floor_us:.1f}x)"
    )
    if args.mine:
        mine_us = statistics.median(c[2] for c in cost)
        print(
            f"mining cost         {mine_us:.2f} us/record "
            f"(detection / mining = {detect_us / mine_us:.2f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
