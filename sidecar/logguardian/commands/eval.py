"""`logguardian eval PATH...`: grouping (GA), parsing (PA) and group-F1 (FGA) accuracy
of the template miner against Loghub ground truth, novelty precision/recall after a
1,000-record warm-up, per dataset and on average; with `--loso`, also the GA of a
configuration chosen on the other datasets (leave one out)."""

from __future__ import annotations

import argparse
import sys

from ..config import load_settings
from ..templates.evaluate import evaluate, leave_one_out, load_loghub, novelty


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    datasets = []
    for path in args.paths:
        try:
            datasets.append(load_loghub(path))
        except (OSError, ValueError) as exc:
            print(f"logguardian eval: {path}: {exc}", file=sys.stderr)
            return 2
    loso = getattr(args, "loso", False) and len(datasets) > 2
    held = leave_one_out(datasets) if loso else {}
    rows = []
    header = (
        f"{'dataset':<12}{'lines':>7}{'GA':>7}{'PA':>7}{'FGA':>7}{'groups':>14}"
        f"{'novP':>7}{'novR':>7}"
    )
    print(header + (f"{'LOSO GA':>9}" if loso else ""))
    for dataset in datasets:
        s = evaluate(dataset, settings.templates)
        p, r = novelty(dataset, settings.templates)
        extra = [held[dataset.name][0]] if loso else []
        rows.append([s.lines, s.ga, s.pa, s.fga, p, r, *extra])
        print(
            f"{s.name:<12}{s.lines:>7}{s.ga:>7.3f}{s.pa:>7.3f}{s.fga:>7.3f}"
            f"{f'{s.predicted_groups}/{s.true_groups}':>14}{p:>7.3f}{r:>7.3f}"
            + (f"{extra[0]:>9.3f}" if loso else "")
        )
    if len(rows) > 1:
        n = len(rows)
        avg = [sum(row[i] for row in rows) / n for i in range(1, len(rows[0]))]
        print(
            f"{'average':<12}{sum(row[0] for row in rows):>7}{avg[0]:>7.3f}{avg[1]:>7.3f}"
            f"{avg[2]:>7.3f}{'':>14}{avg[3]:>7.3f}{avg[4]:>7.3f}"
            + (f"{avg[5]:>9.3f}" if loso else "")
        )
    if loso:
        print("GA/PA/FGA/nov: the configured settings; LOSO GA: settings chosen on the others")
    return 0
