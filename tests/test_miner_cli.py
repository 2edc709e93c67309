"""`logguardian mine` and `logguardian eval` as a user runs them (real processes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
from conftest import SHARED

CLI = [sys.executable, "-m", "logguardian.cli"]


def _mine(data: bytes, *args: str) -> list[dict[str, str]]:
    proc = subprocess.run(
        [*CLI, "mine", *args], input=data, capture_output=True, timeout=120, check=True
    )
    return [orjson.loads(line) for line in proc.stdout.splitlines()]


def test_one_json_line_per_input_line_even_for_odd_input() -> None:
    lines = [
        b"Connection from 10.0.0.1 closed",
        b"",
        b"\xff\xfe\x00 binary \x80 junk",
        b"x" * 1_000_000,
        b" ".join([b"tok"] * 10_000),
        b"Connection from 10.0.0.2 closed\r",
    ]
    out = _mine(b"\n".join(lines) + b"\n", "-")
    assert len(out) == len(lines)
    assert all(set(row) == {"template_id", "template"} for row in out)
    assert out[0]["template_id"] == out[5]["template_id"]
    assert out[0]["template"] == "Connection from <IP> closed"
    assert "<BIN>" in out[2]["template"]
    assert len({row["template_id"] for row in out}) == 5


def test_state_dir_keeps_ids_across_runs(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = _mine(b"user alice logged in\ndisk 91% full\n", "--state", str(state))
    assert (state / "templates.json").is_file()
    second = _mine(b"disk 12% full\nuser alice logged in\n", "--state", str(state))
    assert [r["template_id"] for r in second] == [first[1]["template_id"], first[0]["template_id"]]
    fresh = _mine(b"totally different words here\n", "--state", str(tmp_path / "other"))
    assert fresh[0]["template_id"] not in {r["template_id"] for r in first}


def test_mine_reads_a_file_and_reports_a_missing_one(tmp_path: Path) -> None:
    path = tmp_path / "in.log"
    path.write_bytes(b"a 1\na 2\n")
    proc = subprocess.run([*CLI, "mine", str(path)], capture_output=True, timeout=60, check=True)
    assert len(proc.stdout.splitlines()) == 2
    missing = subprocess.run(
        [*CLI, "mine", str(tmp_path / "nope.log")], capture_output=True, timeout=60
    )
    assert missing.returncode == 2 and b"nope.log" in missing.stderr


def test_eval_prints_accuracy_per_dataset() -> None:
    hdfs = SHARED / "data" / "loghub" / "HDFS"
    proc = subprocess.run(
        [*CLI, "eval", str(hdfs)], capture_output=True, timeout=120, check=True, text=True
    )
    row = next(line for line in proc.stdout.splitlines() if line.startswith("HDFS"))
    name, lines, ga, pa, fga, _, nov_p, nov_r = row.split()
    assert (name, lines) == ("HDFS", "2000")
    assert float(ga) >= 0.95 and 0 <= float(pa) <= 1 and 0 <= float(fga) <= 1
    # HDFS-2k has two events that first occur after the 1,000-record warm-up.
    assert float(nov_p) == 1.0 and float(nov_r) == 1.0
    bad = subprocess.run(
        [*CLI, "eval", str(SHARED / "data" / "README.md")],
        capture_output=True,
        timeout=60,
        text=True,
    )
    assert bad.returncode == 2 and "not a Loghub structured CSV" in bad.stderr


def test_eval_leave_one_out_reports_a_held_out_column() -> None:
    loghub = SHARED / "data" / "loghub"
    paths = [str(loghub / name) for name in ("HDFS", "Apache", "Spark")]
    proc = subprocess.run(
        [*CLI, "eval", "--loso", *paths], capture_output=True, timeout=300, check=True, text=True
    )
    lines = proc.stdout.splitlines()
    assert lines[0].split()[-2:] == ["LOSO", "GA"]
    rows = [line.split() for line in lines[1:4]]
    assert [r[0] for r in rows] == ["HDFS", "Apache", "Spark"]
    assert all(0.9 <= float(r[-1]) <= 1.0 for r in rows)
    assert "chosen on the others" in proc.stdout
