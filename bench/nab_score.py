"""NAB scoring, reimplemented from Lavin & Ahmad (ICMLA 2015) and NAB's documentation.

Each labelled window rewards its earliest detection with a scaled sigmoid of the
detection's relative position (1 at the window's left edge, falling to ~0 at its
right edge); every detection outside a window costs A_FP times the same sigmoid
of its distance past the preceding window (full cost before any window or 3
window-widths after one); an undetected window costs A_FN. The first 15% of each
file (capped at 750 rows) is probationary and not scored. One threshold per
profile is chosen to maximise the raw score summed over the whole corpus, and the
result is normalised so that the null detector (never fires) scores 0 and the
perfect detector (fires at each window's first point) scores 100.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

PROBATION_PERCENT = 0.15


@dataclass(frozen=True)
class Profile:
    """Application profile: weights of a true positive, false positive, false negative."""

    tp: float
    fp: float
    fn: float


PROFILES: dict[str, Profile] = {
    "standard": Profile(tp=1.0, fp=0.11, fn=1.0),
    "reward_low_FP_rate": Profile(tp=1.0, fp=0.22, fn=1.0),
    "reward_low_FN_rate": Profile(tp=1.0, fp=0.11, fn=2.0),
}


def scaled_sigmoid(position: float) -> float:
    """Reward of a detection at a relative position: -1 is a window's left edge, 0 its
    right edge, positive values lie after it (3 or more: the full penalty)."""
    if position >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


MAX_TP = scaled_sigmoid(-1.0)


def probation_length(rows: int) -> int:
    return int(min(math.floor(PROBATION_PERCENT * rows), PROBATION_PERCENT * 5000))


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.strip())


@dataclass
class FileLabels:
    """Per-row placement of one file: which window (index, or -1 outside any window,
    -2 probationary) and the unweighted sigmoid reward of a detection there."""

    window: np.ndarray  # int: window number in this file, -1 outside, -2 probation
    reward: np.ndarray  # float: in-window reward in (0, 1]; outside: sigmoid in [-1, 0)
    windows: int  # scorable windows (with at least one non-probationary row)


def label_file(timestamps: Sequence[datetime], limits: Sequence[Sequence[datetime]]) -> FileLabels:
    """Place every row relative to the labelled windows (as NAB's sweep does)."""
    n = len(timestamps)
    ts = np.array([t.timestamp() for t in timestamps])
    window = np.full(n, -1, dtype=np.int64)
    reward = np.zeros(n)
    spans: list[tuple[int, int]] = []
    for start, end in sorted(limits, key=lambda w: w[0]):
        left = int(np.searchsorted(ts, start.timestamp(), side="left"))
        right = int(np.searchsorted(ts, end.timestamp(), side="right")) - 1
        if right >= left:
            spans.append((left, right))
    prev_right: int | None = None
    prev_width = 0
    k = 0
    for i in range(n):
        while k < len(spans) and spans[k][1] < i:
            prev_right, prev_width = spans[k][1], spans[k][1] - spans[k][0] + 1
            k += 1
        if k < len(spans) and spans[k][0] <= i <= spans[k][1]:
            left, right = spans[k]
            width = right - left + 1
            window[i] = k
            reward[i] = scaled_sigmoid(-(right - i + 1) / width) / MAX_TP
        else:
            if prev_right is None:
                position = 3.0
            elif prev_width > 1:
                position = (i - prev_right) / (prev_width - 1)
            else:
                position = 3.0
            reward[i] = scaled_sigmoid(position)
    probation = probation_length(n)
    window[:probation] = -2
    scorable = len({int(w) for w in window if w >= 0})
    return FileLabels(window=window, reward=reward, windows=scorable)


@dataclass(frozen=True)
class Result:
    """One profile's outcome over a corpus."""

    score: float  # normalised: null detector 0, perfect detector 100
    threshold: float
    raw: float
    tp: int  # windows detected
    fn: int  # windows missed
    fp: int  # detections outside windows


def sweep(
    labels: Mapping[str, FileLabels],
    scores: Mapping[str, np.ndarray],
    profile: Profile,
) -> Result:
    """Best threshold for the whole corpus: raw score at every distinct anomaly score,
    lowering the threshold one value at a time (a row is detected iff score >= t)."""
    keys, vals, rewards, windows = [], [], [], []
    total_windows = 0
    for f, (name, lab) in enumerate(sorted(labels.items())):
        s = np.asarray(scores[name], dtype=float)
        if len(s) != len(lab.window):
            raise ValueError(f"{name}: {len(s)} scores for {len(lab.window)} rows")
        keep = lab.window != -2
        vals.append(s[keep])
        rewards.append(lab.reward[keep])
        w = lab.window[keep]
        windows.append(np.where(w >= 0, w + f * 100_000, -1))
        keys.append(name)
        total_windows += lab.windows
    v = np.concatenate(vals)
    r = np.concatenate(rewards)
    w = np.concatenate(windows)
    order = np.argsort(-v, kind="stable")
    v, r, w = v[order], r[order], w[order]

    null = -profile.fn * total_windows
    perfect = profile.tp * total_windows
    raw = null
    best = (raw, 1.1, 0, total_windows, 0)
    best_tp: dict[int, float] = {}
    fp_sum = 0.0
    fp_count = 0
    i = 0
    n = len(v)
    while i < n:
        j = i
        t = v[i]
        while j < n and v[j] == t:
            win = int(w[j])
            if win < 0:
                fp_sum += r[j] * profile.fp
                fp_count += 1
            else:
                gain = r[j] * profile.tp
                if win not in best_tp or gain > best_tp[win]:
                    best_tp[win] = gain
            j += 1
        detected = len(best_tp)
        raw = sum(best_tp.values()) + fp_sum - profile.fn * (total_windows - detected)
        if raw > best[0]:
            best = (raw, float(t), detected, total_windows - detected, fp_count)
        i = j
    raw, threshold, tp, fn, fp = best
    score = 100.0 * (raw - null) / (perfect - null)
    return Result(score=float(score), threshold=threshold, raw=float(raw), tp=tp, fn=fn, fp=fp)


def read_series(path: Path) -> tuple[list[datetime], list[float]]:
    """A NAB-style CSV: first column timestamp, value in the second (or named column)."""
    times: list[datetime] = []
    values: list[float] = []
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        next(reader)
        for row in reader:
            times.append(parse_time(row[0]))
            values.append(float(row[1]))
    return times, values


def load_corpus(root: Path) -> tuple[dict[str, list[datetime]], dict[str, list[float]], dict]:
    """Timestamps and values of every labelled series under `root/data`, and the windows."""
    raw = json.loads((root / "combined_windows.json").read_text())
    times: dict[str, list[datetime]] = {}
    values: dict[str, list[float]] = {}
    windows: dict[str, list[list[datetime]]] = {}
    for name, spans in raw.items():
        times[name], values[name] = read_series(root / "data" / name)
        windows[name] = [[parse_time(a), parse_time(b)] for a, b in spans]
    return times, values, windows


def label_corpus(
    times: Mapping[str, list[datetime]], windows: Mapping[str, list[list[datetime]]]
) -> dict[str, FileLabels]:
    return {name: label_file(times[name], windows[name]) for name in times}


def score_corpus(
    labels: Mapping[str, FileLabels],
    scores: Mapping[str, np.ndarray],
    profiles: Iterable[str] = tuple(PROFILES),
) -> dict[str, Result]:
    return {p: sweep(labels, scores, PROFILES[p]) for p in profiles}


def load_anchor(root: Path, detector: str, names: Iterable[str]) -> dict[str, np.ndarray]:
    """A published detector's per-row anomaly scores (`anchors/<detector>/<name>`)."""
    out: dict[str, np.ndarray] = {}
    for name in names:
        _, vals = read_series(root / "anchors" / detector / name)
        out[name] = np.array(vals)
    return out


PUBLISHED = {  # NAB's own scorer on these 31 series (../shared/data/README.md)
    "numenta": (71.2, 65.0, 75.9),
    "windowedGaussian": (36.7, 21.4, 45.2),
}


def _find_root() -> Path:
    """`shared/data/nab` beside the checkout (a worktree may sit one level deeper)."""
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "shared" / "data" / "nab"
        if candidate.is_dir():
            return candidate
    return Path(__file__).resolve().parents[2] / "shared" / "data" / "nab"


DEFAULT_ROOT = _find_root()


def main() -> int:
    """Score the two anchors' published per-point scores and compare with NAB's figures."""
    times, _, windows = load_corpus(DEFAULT_ROOT)
    labels = label_corpus(times, windows)
    worst = 0.0
    for detector, published in PUBLISHED.items():
        results = score_corpus(labels, load_anchor(DEFAULT_ROOT, detector, times))
        ours = [results[p].score for p in PROFILES]
        worst = max(worst, *(abs(a - b) for a, b in zip(ours, published, strict=True)))
        print(
            f"{detector:18s} ours "
            + " / ".join(f"{x:5.1f}" for x in ours)
            + "   NAB "
            + " / ".join(f"{x:5.1f}" for x in published)
        )
    return 0 if worst < 0.05 else 1


if __name__ == "__main__":
    raise SystemExit(main())
