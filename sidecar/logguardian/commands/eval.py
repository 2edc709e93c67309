"""`logguardian eval PATH...`: grouping (GA), parsing (PA) and group-F1 (FGA) accuracy
of the template miner against Loghub ground truth, per dataset and on average."""

from __future__ import annotations

import argparse
import sys

from ..config import load_settings
from ..templates.evaluate import evaluate, load_loghub


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    datasets = []
    for path in args.paths:
        try:
            datasets.append(load_loghub(path))
        except (OSError, ValueError) as exc:
            print(f"logguardian eval: {path}: {exc}", file=sys.stderr)
            return 2
    results = []
    print(f"{'dataset':<12}{'lines':>7}{'GA':>7}{'PA':>7}{'FGA':>7}{'groups':>14}")
    for dataset in datasets:
        s = evaluate(dataset, settings.templates)
        results.append(s)
        print(
            f"{s.name:<12}{s.lines:>7}{s.ga:>7.3f}{s.pa:>7.3f}{s.fga:>7.3f}"
            f"{f'{s.predicted_groups}/{s.true_groups}':>14}"
        )
    if len(results) > 1:
        n = len(results)
        print(
            f"{'average':<12}{sum(s.lines for s in results):>7}"
            f"{sum(s.ga for s in results) / n:>7.3f}{sum(s.pa for s in results) / n:>7.3f}"
            f"{sum(s.fga for s in results) / n:>7.3f}"
        )
    return 0
