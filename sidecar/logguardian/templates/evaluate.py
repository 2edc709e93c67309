"""Loghub-style accuracy of a miner against ground truth.

* GA (grouping accuracy): a line is right iff its predicted group holds exactly
  the lines of its true group.
* PA (parsing accuracy): a line is right iff its template text equals the true
  template once every placeholder is written `<*>`.
* FGA: F1 over groups — precision and recall of predicted groups that equal a
  true group.
* Novelty precision/recall after a warm-up: a record is truly novel iff its true
  event never occurred before it; it is flagged novel iff the template id it gets
  (merges resolved at that moment) was first created by that record.
* Leave-one-system-out: a tunable chosen on the other systems, scored on the one
  left out, so a reported figure never comes from data the choice saw.
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..config import Templates as TemplateSettings
from .miner import TemplateMiner

_PLACEHOLDER = re.compile(r"<[A-Z*…]+>")
_SPACES = re.compile(r"\s+")


@dataclass(slots=True, frozen=True)
class Dataset:
    name: str
    messages: list[str]
    truth_ids: list[str]
    truth_templates: list[str]


@dataclass(slots=True, frozen=True)
class Scores:
    name: str
    lines: int
    ga: float
    pa: float
    fga: float
    predicted_groups: int
    true_groups: int


def load_loghub(path: Path) -> Dataset:
    """`path` is a `*_structured.csv` or a dataset directory holding one."""
    if path.is_dir():
        found = sorted(path.glob("*_structured.csv"))
        if not found:
            raise FileNotFoundError(f"no *_structured.csv in {path}")
        path = found[0]
    messages, ids, templates = [], [], []
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.DictReader(fh)
        missing = {"Content", "EventId", "EventTemplate"} - set(reader.fieldnames or ())
        if missing:
            names = ", ".join(sorted(missing))
            raise ValueError(f"{path}: not a Loghub structured CSV (no {names})")
        for row in reader:
            messages.append(row["Content"])
            ids.append(row["EventId"])
            templates.append(row["EventTemplate"])
    name = path.name.split("_")[0]
    return Dataset(name, messages, ids, templates)


def normalize_template(text: str) -> str:
    return _SPACES.sub(" ", _PLACEHOLDER.sub("<*>", text)).strip()


def score(
    name: str,
    predicted: Sequence[str],
    predicted_templates: Sequence[str],
    truth: Sequence[str],
    truth_templates: Sequence[str],
) -> Scores:
    pred_groups: dict[str, list[int]] = defaultdict(list)
    true_groups: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(predicted):
        pred_groups[p].append(i)
    for i, t in enumerate(truth):
        true_groups[t].append(i)
    correct_lines = 0
    correct_groups = 0
    for members in pred_groups.values():
        label = truth[members[0]]
        if len(true_groups[label]) == len(members) and all(truth[i] == label for i in members):
            correct_lines += len(members)
            correct_groups += 1
    pa_hits = sum(
        1
        for p, t in zip(predicted_templates, truth_templates, strict=True)
        if normalize_template(p) == normalize_template(t)
    )
    n = len(predicted)
    precision = correct_groups / len(pred_groups) if pred_groups else 0.0
    recall = correct_groups / len(true_groups) if true_groups else 0.0
    fga = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Scores(
        name,
        n,
        correct_lines / n if n else 0.0,
        pa_hits / n if n else 0.0,
        fga,
        len(pred_groups),
        len(true_groups),
    )


def evaluate(dataset: Dataset, settings: TemplateSettings | None = None) -> Scores:
    """Mine the dataset as a stream (one fresh miner), then score final groups:
    every line is judged by the template its id resolves to at the end."""
    miner = TemplateMiner(settings)
    ids = [tid for tid, _ in miner.add_batch(dataset.messages)]
    final = [miner.resolve(t) for t in ids]
    texts = [miner.text(t) or "" for t in final]
    return score(dataset.name, final, texts, dataset.truth_ids, dataset.truth_templates)


WARMUP = 1000


def novelty_scores(
    flagged: Sequence[bool], truth: Sequence[str], warmup: int = WARMUP
) -> tuple[float, float]:
    """Precision and recall of "new template" flags on the records after `warmup`."""
    seen: set[str] = set()
    tp = fp = fn = 0
    for i, (predicted, event) in enumerate(zip(flagged, truth, strict=True)):
        actual = event not in seen
        seen.add(event)
        if i < warmup:
            continue
        tp += predicted and actual
        fp += predicted and not actual
        fn += actual and not predicted
    return (tp / (tp + fp) if tp + fp else 1.0), (tp / (tp + fn) if tp + fn else 1.0)


def novelty_flags(messages: Sequence[str], settings: TemplateSettings | None = None) -> list[bool]:
    """One record at a time, as a trickle reaches the pipeline: flagged iff the id
    the record gets was never handed out before (a record that generalizes or
    joins a known template gets that template's id)."""
    miner = TemplateMiner(settings)
    known: set[str] = set()
    out = []
    for m in messages:
        tid = miner.resolve(miner.add(m)[0])
        out.append(tid not in known)
        known.add(tid)
    return out


def novelty(dataset: Dataset, settings: TemplateSettings | None = None) -> tuple[float, float]:
    return novelty_scores(novelty_flags(dataset.messages, settings), dataset.truth_ids)


def tuning_grid() -> list[TemplateSettings]:
    """The tunables a leave-one-out run may choose from."""
    return [
        TemplateSettings(variable_min_values=k, similarity=sim)
        for k in (2, 3, 4)
        for sim in (0.6, 0.7, 0.8)
    ]


def leave_one_out(
    datasets: Sequence[Dataset],
    grid: Sequence[TemplateSettings] | None = None,
    metric: Callable[[Dataset, TemplateSettings], float] = lambda d, s: evaluate(d, s).ga,
) -> dict[str, tuple[float, TemplateSettings]]:
    """Per dataset: the grid point with the best mean `metric` on all the others,
    and its `metric` on the one left out."""
    grid = list(grid) if grid is not None else tuning_grid()
    table = [[metric(ds, cfg) for ds in datasets] for cfg in grid]
    out: dict[str, tuple[float, TemplateSettings]] = {}
    for j, ds in enumerate(datasets):
        others = [i for i in range(len(datasets)) if i != j]
        best = max(range(len(grid)), key=lambda c: sum(table[c][i] for i in others))
        out[ds.name] = (table[best][j], grid[best])
    return out
