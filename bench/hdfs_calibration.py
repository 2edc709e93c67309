"""Do the model thresholds hold on normal HDFS sessions the model never saw?

Grouped K-fold over the distinct event sequences of train_normal.txt: each fold's
sessions are sequences absent from the other folds, on which `fit_models` (the code
`logguardian train` runs, with its own held-out calibration inside) is trained. Every
session of the fold is therefore new to the model — exactly the sessions that raised
false alarms on unseen data. Prints, per model, the false-positive rate on those new
sessions and, times the share of new sessions in traffic (Good-Turing), the expected
rate over all normal sessions; plus the same for the previous calibration (random
held-out, (1 - target) quantile) on the same nets, for comparison.

dev_normal/dev_abnormal are not read here: they stay for bench/hdfs.py.

    .venv/bin/python bench/hdfs_calibration.py [--folds 4] [--epochs 30]
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnxruntime as ort
from logguardian.detectors.session_model import profiles
from logguardian.training.calibrate import MARGIN, SAFETY, session_surprise
from logguardian.training.train import TrainOptions, fit_models

ROOT = Path(__file__).resolve().parents[1]
SHARED = next(
    (p / "shared" for p in ROOT.parents if (p / "shared" / "data").is_dir()), ROOT.parent / "shared"
)
HDFS = SHARED / "data" / "hdfs"


def read(path: Path) -> list[list[int]]:
    """Event ids → vocabulary indices (0 pads, 1 is unknown, so event e is e + 2)."""
    return [[int(t) + 2 for t in line.split()] for line in path.read_text().splitlines() if line]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    sessions = read(HDFS / "train_normal.txt")
    vocab = 32
    distinct = sorted({tuple(s) for s in sessions})
    random.Random(args.seed).shuffle(distinct)
    fold_of = {s: i % args.folds for i, s in enumerate(distinct)}
    once = Counter(tuple(s) for s in sessions)
    mass = sum(1 for s in sessions if once[tuple(s)] == 1) / len(sessions)
    print(
        f"train_normal: {len(sessions)} sessions, {len(distinct)} distinct sequences; "
        f"share seen once (Good-Turing estimate of new sessions in traffic) {mass:.3f}"
    )
    totals: Counter[str] = Counter()
    n_new = 0
    for fold in range(args.folds):
        train = [s for s in sessions if fold_of[tuple(s)] != fold]
        new = [s for s in sessions if fold_of[tuple(s)] == fold]
        options = TrainOptions(epochs=args.epochs, seed=args.seed, progress=False)
        fitted = fit_models(train, vocab, options)
        runner = ort.InferenceSession(fitted.onnx, providers=["CPUExecutionProvider"])
        name = runner.get_inputs()[0].name

        def predict(batch: np.ndarray, runner: ort.InferenceSession = runner, n: str = name):
            return runner.run(None, {n: batch})[0]

        ae = ort.InferenceSession(fitted.session_onnx, providers=["CPUExecutionProvider"])
        surprise = session_surprise(predict, new, options.window)
        errors = ae.run(None, {"profile": profiles([Counter(s) for s in new], vocab)})[0]
        sets = fitted.sets
        flags = {
            "sequence (LSTM)": [x >= fitted.threshold for x in surprise],
            "autoencoder": [e >= fitted.error_threshold for e in errors],
            "template set": [sets.enabled and sets.unseen(s) for s in new],
        }
        flags["any (shipped)"] = [any(f) for f in zip(*flags.values(), strict=True)]
        # the previous calibration: random 15% held-out (mostly repeats of fit sessions)
        rng = random.Random(args.seed)
        held = rng.sample(train, int(0.15 * len(train)))
        old = session_surprise(predict, held, options.window)
        q = float(np.quantile(np.asarray(old), 1 - options.target_fpr, method="higher"))
        old_threshold = max(q + MARGIN, SAFETY * q)
        flags["sequence, previous calibration"] = [x >= old_threshold for x in surprise]
        for key, f in flags.items():
            totals[key] += sum(f)
        n_new += len(new)
        print(
            f"fold {fold}: {len(train)} train sessions, {len(new)} new; thresholds "
            f"sequence {fitted.threshold:.2f} (previous {old_threshold:.2f}), autoencoder "
            f"{fitted.error_threshold:.4g}; calibration {fitted.calibration}; "
            + ", ".join(f"{k} {sum(f)}" for k, f in flags.items())
        )
    print(f"false positives on {n_new} new normal sessions (sequence never in training):")
    for key, count in totals.items():
        rate = count / n_new
        print(
            f"  {key:<32} {count:>4}  FPR on new {rate:.4f}  "
            f"expected over all normal sessions {rate * mass:.5f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
