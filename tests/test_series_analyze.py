"""`logguardian analyze` and `POST /api/v1/analyze`: one score per input point, past
points only, anomalies with severity, expected value and reason."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import aiohttp
import numpy as np
from logguardian.cli import main
from logguardian.server import Sidecar


def _series(n: int = 600, spike: int = 500) -> list[tuple[str, float]]:
    rng = np.random.default_rng(5)
    values = rng.normal(50.0, 2.0, n)
    values[spike] = 120.0
    return [
        (f"2024-03-01T{i // 60:02d}:{i % 60:02d}:00Z", round(float(v), 3))
        for i, v in enumerate(values)
    ]


def _write(path: Path, rows: list[tuple[str, object]]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(("timestamp", "value"))
        w.writerows(rows)


def test_cli_one_row_per_input_row_and_the_spike_scores_highest(tmp_path: Path) -> None:
    rows = _series()
    src, out = tmp_path / "s.csv", tmp_path / "out.csv"
    _write(src, rows)
    assert main(["analyze", str(src), "--out", str(out)]) == 0
    got = list(csv.DictReader(out.open()))
    assert len(got) == len(rows)
    assert [r["timestamp"] for r in got] == [r[0] for r in rows]
    scores = [float(r["anomaly_score"]) for r in got]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert int(np.argmax(scores)) == 500 and scores[500] > 0.5


def test_cli_scores_from_the_past_only_and_in_time_order(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    rows = _series()
    full, head = tmp_path / "full.csv", tmp_path / "head.csv"
    _write(full, rows)
    _write(head, rows[:450])
    assert main(["analyze", str(full)]) == 0
    full_out = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert main(["analyze", str(head)]) == 0
    head_out = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert head_out == full_out[:450]
    # Shuffled input: same score per row (computed in time order), rows in input order.
    shuffled = tmp_path / "shuffled.csv"
    order = np.random.default_rng(1).permutation(len(rows))
    _write(shuffled, [rows[i] for i in order])
    assert main(["analyze", str(shuffled)]) == 0
    shuffled_out = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [shuffled_out[k] for k in np.argsort(order)] == full_out


def test_cli_epoch_timestamps_and_bad_rows_cost_one_row(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    rows: list[tuple[str, object]] = [(str(1_700_000_000 + 60 * i), 10 + i % 5) for i in range(100)]
    rows[40] = ("yesterday", 12)
    rows[41] = (str(1_700_000_000 + 60 * 41), "n/a")
    src = tmp_path / "e.csv"
    _write(src, rows)
    assert main(["analyze", str(src)]) == 0
    captured = capsys.readouterr()
    out = list(csv.DictReader(io.StringIO(captured.out)))
    assert len(out) == 100
    assert out[40]["anomaly_score"] == "" and out[41]["anomaly_score"] == ""
    assert out[42]["anomaly_score"] != ""
    assert "line 42: not a timestamp" in captured.err and "line 43: not a number" in captured.err


def test_cli_refuses_missing_file_and_unknown_method(tmp_path: Path) -> None:
    assert main(["analyze", str(tmp_path / "nope.csv")]) == 2
    src = tmp_path / "s.csv"
    _write(src, _series(50, spike=40))
    assert main(["analyze", str(src), "--methods", "mad,tarot"]) == 2


async def test_api_scores_points_and_describes_the_spike(sidecar: Sidecar) -> None:
    rows = _series()
    body = {"series": [{"timestamp": t, "value": v} for t, v in rows], "methods": ["mad", "iqr"]}
    body["series"].insert(10, {"timestamp": "soon", "value": 1})
    url = f"http://127.0.0.1:{sidecar.http_port}/api/v1/analyze"
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json=body) as resp:
            assert resp.status == 200
            got = await resp.json()
        assert len(got["points"]) == len(rows) and got["rejected"] == 1
        assert "series[10]: not a timestamp" in got["errors"][0]
        assert got["methods"] == ["mad", "iqr"]
        spikes = [a for a in got["anomalies"] if a["value"] == 120.0]
        assert len(spikes) == 1
        spike = spikes[0]
        assert spike["severity"] in ("high", "critical")
        assert 45 < spike["expected"] < 55
        assert spike["method"] in ("mad", "iqr") and "120" in spike["reason"]
        assert len(got["anomalies"]) <= 3
        for bad, needle in (
            ({"series": []}, "series"),
            ({"series": [{"timestamp": 1, "value": 1}], "methods": ["x"]}, "unknown"),
            ([1, 2], "object"),
        ):
            async with http.post(url, json=bad) as resp:
                assert resp.status == 400 and needle in (await resp.json())["error"]
        async with http.post(url, data=b"{nope") as resp:
            assert resp.status == 400
