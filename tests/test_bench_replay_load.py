"""bench/replay.py reads any Loghub-2k system, not only the dev ones: the held-out
systems lay their time out in other columns and formats."""

from __future__ import annotations

import csv
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import replay

# Column layouts of Loghub-2k structured CSVs (logpai/loghub), two rows 90.5 s apart
# where the source has sub-second times, else 90 s (or 91 s for a 1 s epoch).
LAYOUTS = {
    "android": (
        {"Date": "03-17", "Time": "16:13:38.811", "Level": "D"},
        {"Date": "03-17", "Time": "16:15:09.311", "Level": "E"},
        90.5,
    ),
    "bgl": (
        {"Timestamp": "1117838570", "Date": "2005.06.03", "Time": "2005-06-03-15.42.50.675872"},
        {"Timestamp": "1117838661", "Date": "2005.06.03", "Time": "2005-06-03-15.44.21.175872"},
        90.5,
    ),
    "hpc": ({"Time": "1077804742"}, {"Time": "1077804832"}, 90.0),
    "mac": (
        {"Month": "Jul", "Date": "1", "Time": "09:00:55"},
        {"Month": "Jul", "Date": "1", "Time": "09:02:25"},
        90.0,
    ),
    "openssh": (
        {"Date": "Dec", "Day": "10", "Time": "23:59:00"},
        {"Date": "Dec", "Day": "11", "Time": "00:00:30"},
        90.0,
    ),
    "proxifier": ({"Time": "10.30 16:49:06"}, {"Time": "10.30 16:50:36"}, 90.0),
    "thunderbird": (
        {"Timestamp": "1131566461", "Date": "2005.11.09", "Month": "Nov", "Time": "12:01:01"},
        {"Timestamp": "1131566552", "Date": "2005.11.09", "Month": "Nov", "Time": "12:02:32"},
        91.0,
    ),
    "windows": (
        {"Date": "2016-09-28", "Time": "04:30:30", "Level": "Info"},
        {"Date": "2016-09-28", "Time": "04:32:00", "Level": "Error"},
        90.0,
    ),
    "zookeeper": (
        {"Date": "2015-07-29", "Time": "17:41:44,747"},
        {"Date": "2015-07-29", "Time": "17:43:15,247"},
        90.5,
    ),
}


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_times_read_from_the_systems_own_columns(name: str) -> None:
    first, second, gap = LAYOUTS[name]
    rows = [{"LineId": "1", **first}, {"LineId": "2", **second}]
    ts = replay._parse_times(rows)
    assert ts[1] - ts[0] == pytest.approx(gap, abs=1e-3)


def test_an_unreadable_time_keeps_the_one_before_and_no_time_at_all_is_a_line_a_second() -> None:
    rows = [{"Time": "10.30 16:49:06"}, {"Time": "garbled"}, {"Time": "10.30 16:49:16"}]
    assert np.diff(replay._parse_times(rows)).tolist() == [0.0, 10.0]
    rows = [{"Content": "a"}, {"Content": "b"}, {"Content": "c"}]
    assert replay._parse_times(rows).tolist() == [0.0, 1.0, 2.0]


def test_a_held_out_style_system_loads_with_levels_and_a_spike_target(tmp_path: Path) -> None:
    path = tmp_path / "Android" / "Android_2k.log_structured.csv"
    path.parent.mkdir()
    start = datetime(2020, 3, 17, 16, 0, 0).timestamp()
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["LineId", "Date", "Time", "Level", "Content", "EventId", "EventTemplate"])
        for i in range(200):
            t = datetime.fromtimestamp(start + 3 * i)
            stamp = t.strftime("%H:%M:%S.") + f"{i % 1000:03d}"
            event, level = ("E1", "I") if i % 4 else ("E2", "E")
            text = f"wake lock {i} released" if event == "E1" else f"binder {i} died"
            tmpl = "wake lock <*> released" if event == "E1" else "binder <*> died"
            w.writerow([i + 1, t.strftime("%m-%d"), stamp, level, text, event, tmpl])
    system = replay.load(path, rate=1.0)
    assert system.name == "android"
    assert system.levels[:4] == ["error", "info", "info", "info"]
    assert system.cycle == pytest.approx(200.0, rel=0.02)  # scaled to 1 line/s
    assert system.steady == "E1"


def test_distorted_clocks_keep_arrival_order_and_judge_on_the_services_clock() -> None:
    records = [
        replay.Record(ts=float(t), message="m", service=svc, level=None)
        for t in range(6)
        for svc in ("a", "b")
    ]
    inj = replay.Injection("spike", "b", 3.0, 4.0)
    stream = replay.Stream(records, [""] * 12, [inj], {"a": 1.0, "b": 1.0}, 6.0)
    replay.distort(stream, {"b": 30.0}, stray=0.0)
    assert [r.ts for r in stream.records if r.service == "b"] == [t - 30.0 for t in range(6)]
    assert [r.ts for r in stream.records if r.service == "a"] == list(map(float, range(6)))
    assert (inj.start, inj.end, stream.warm_until["b"]) == (-27.0, -26.0, -29.0)
    many = [replay.Record(ts=0.0, message="m", service="a", level=None)] * replay.STRAY_EVERY
    stream = replay.Stream(many, [""] * len(many), [], {"a": 0.0}, 1.0)
    replay.distort(stream, {}, stray=240.0)
    assert sorted({r.ts for r in stream.records}) == [0.0, 240.0]
    assert stream.records[-1].ts == 240.0


def test_retime_puts_each_systems_lines_on_the_next_ones_timing() -> None:
    def system(name: str, gaps: list[float], events: list[str]) -> replay.System:
        n = len(gaps)
        return replay.System(
            name, ["m"] * n, [None] * n, events, np.asarray(gaps), [None] * n, [[]] * n, {}
        )

    # a: steady, one line a second; b: bursts of 4 lines, then a long lull.
    a = system("a", [1.0] * 8, ["A1", "A2"] * 4)
    b = system("b", [0.1, 0.1, 0.1, 0.1, 7.6] * 2, ["B1"] * 10)
    replay.retime([a, b], 1)
    # b's timing, tiled to a's length, scaled to keep a's rate.
    assert (a.gaps / a.gaps[0]).tolist() == pytest.approx([1, 1, 1, 1, 76, 1, 1, 1])
    assert a.gaps.sum() == pytest.approx(8.0)
    assert b.gaps.tolist() == pytest.approx([1.6] * 10)
    assert a.steady in ("A1", "A2") and b.steady == "B1"
