"""Grouping accuracy floor on the shared Loghub-2k data, one default config for all."""

from __future__ import annotations

import pytest
from conftest import SHARED
from logguardian.templates.evaluate import evaluate, load_loghub, score

LOGHUB = SHARED / "data" / "loghub"
DATASETS = sorted(p.name for p in LOGHUB.iterdir() if p.is_dir()) if LOGHUB.is_dir() else []


def test_shared_data_is_present() -> None:
    assert len(DATASETS) == 8, f"expected the 8 Loghub-2k datasets in {LOGHUB}"


@pytest.mark.parametrize("name", DATASETS)
def test_grouping_accuracy_floor(name: str) -> None:
    result = evaluate(load_loghub(LOGHUB / name))
    assert result.lines == 2000
    assert result.ga >= 0.9, f"{name}: GA {result.ga:.3f}"
    assert result.fga >= 0.8, f"{name}: FGA {result.fga:.3f}"


def test_average_grouping_accuracy() -> None:
    results = [evaluate(load_loghub(LOGHUB / name)) for name in DATASETS]
    average = sum(r.ga for r in results) / len(results)
    assert average >= 0.95, {r.name: round(r.ga, 3) for r in results}


def test_scoring_counts_only_exact_groups() -> None:
    """GA: a line is right only if its whole predicted group equals its true group."""
    truth = ["A", "A", "B", "B", "C"]
    tmpl = ["a <*>", "a <*>", "b", "b", "c"]
    perfect = score("x", ["1", "1", "2", "2", "3"], tmpl, truth, tmpl)
    assert perfect.ga == 1.0 and perfect.fga == 1.0 and perfect.pa == 1.0
    merged = score("x", ["1", "1", "1", "1", "3"], tmpl, truth, tmpl)
    assert merged.ga == pytest.approx(0.2)
    split = score("x", ["1", "9", "2", "2", "3"], tmpl, truth, tmpl)
    assert split.ga == pytest.approx(0.6)
    assert split.fga == pytest.approx(2 * (2 / 4) * (2 / 3) / (2 / 4 + 2 / 3))
