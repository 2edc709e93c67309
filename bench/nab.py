"""LogGuardian's series detector on the NAB dev half, beside the published anchors.

Runs `logguardian.series` over each of the 31 dev series (each point scored from
its past only, as `logguardian analyze` does) and scores it with the reimplemented
NAB scorer (bench/nab_score.py, which reproduces NAB's own figures for the anchors).
Prints standard / reward_low_FP_rate / reward_low_FN_rate for the whole dev half and
separately for the TUNE categories (where defaults were chosen) and the HELD-OUT
categories (never looked at while tuning), each with its own corpus threshold as
NAB would pick it, and the detector's speed.

    .venv/bin/python bench/nab.py [--set name=value ...] [--only tune|held]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nab_score as ns
from logguardian.series.detector import Params, SeriesDetector

# Defaults were tuned on these categories only; the rest is the held-out check.
TUNE = ("artificialWithAnomaly", "realAWSCloudwatch", "realTraffic")
HELD = ("artificialNoAnomaly", "realAdExchange", "realKnownCause", "realTweets")
ANCHORS = {  # published, NAB's own scorer, these 31 series
    "ARTime": (78.2, 70.4, 83.1),
    "numenta": (71.2, 65.0, 75.9),
    "RandomCutForest": (52.0, 38.3, 61.0),
    "windowedGaussian": (36.7, 21.4, 45.2),
}


def run_detector(times: list, values: list[float], params: Params) -> np.ndarray:
    detector = SeriesDetector(params=params)
    return np.array(
        [detector.update(t.timestamp(), v).score for t, v in zip(times, values, strict=True)]
    )


def fmt(results: dict[str, ns.Result]) -> str:
    return " / ".join(f"{results[p].score:5.1f}" for p in ns.PROFILES)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", default=[], help="Params field=value")
    parser.add_argument("--only", choices=("tune", "held"), default=None)
    args = parser.parse_args(argv)
    overrides = {}
    types = {f.name: f.type for f in dataclasses.fields(Params)}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = (int if types[key] in (int, "int") else float)(value)
    params = dataclasses.replace(Params(), **overrides)

    times, values, windows = ns.load_corpus(ns.DEFAULT_ROOT)
    names = sorted(times)
    if args.only:
        cats = TUNE if args.only == "tune" else HELD
        names = [n for n in names if n.split("/")[0] in cats]
    labels = ns.label_corpus({n: times[n] for n in names}, {n: windows[n] for n in names})
    scores: dict[str, np.ndarray] = {}
    points = 0
    start = time.perf_counter()
    for name in names:
        scores[name] = run_detector(times[name], values[name], params)
        points += len(values[name])
    elapsed = time.perf_counter() - start

    def subset(cats: tuple[str, ...]) -> dict[str, ns.Result]:
        keep = [n for n in names if n.split("/")[0] in cats]
        return ns.score_corpus({n: labels[n] for n in keep}, {n: scores[n] for n in keep})

    print("NAB dev half (31 series): standard / reward_low_FP_rate / reward_low_FN_rate")
    if overrides:
        print(f"  params overridden: {overrides}")
    if not args.only:
        whole = ns.score_corpus(labels, scores)
        print(
            f"  {'LogGuardian (all 31)':28s} {fmt(whole)}   threshold "
            f"{whole['standard'].threshold:.3f}, windows {whole['standard'].tp} hit / "
            f"{whole['standard'].fn} missed, {whole['standard'].fp} FP"
        )
        for name, figures in ANCHORS.items():
            print(f"  {name + ' (published)':28s} " + " / ".join(f"{x:5.1f}" for x in figures))
    for label, cats in (("tune", TUNE), ("held-out", HELD)):
        if args.only and label[:4] != args.only:
            continue
        print(f"  LogGuardian {label:16s} {fmt(subset(cats))}   ({', '.join(cats)})")
    for anchor in ("numenta", "windowedGaussian"):
        anchor_scores = ns.load_anchor(ns.DEFAULT_ROOT, anchor, names)
        for label, cats in (("tune", TUNE), ("held-out", HELD)):
            if args.only and label[:4] != args.only:
                continue
            keep = [n for n in names if n.split("/")[0] in cats]
            res = ns.score_corpus({n: labels[n] for n in keep}, {n: anchor_scores[n] for n in keep})
            print(f"  {anchor + ' ' + label:28s} {fmt(res)}   (anchor on the same subset)")
    print(f"  speed: {points / elapsed:,.0f} points/s ({points} points, {elapsed:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
