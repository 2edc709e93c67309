"""`logguardian score` (DESIGN §5 contract) as a user runs it: a subprocess on files,
detectors only (no model bundle)."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import orjson
from conftest import SHARED
from logguardian.commands.demo import sample_dir

KEYS = {"session", "template_id", "score", "anomaly", "reasons"}


def score(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "logguardian.cli", "score", *args],
        input=stdin,
        capture_output=True,
        timeout=300,
    )


def test_jsonl_scores_every_record_and_finds_the_error_burst(tmp_path: Path) -> None:
    truth = orjson.loads((sample_dir() / "truth.json").read_bytes())
    burst = next(i for i in truth["injections"] if i["kind"] == "error_burst")
    with gzip.open(sample_dir() / "sample.jsonl.gz", "rb") as f:
        lines = [line for line in f.read().split(b"\n") if line]
    lines = [line for line in lines if orjson.loads(line)["date"] < burst["end"]]
    # Two unreadable lines in the middle must not shift or spoil the others.
    lines[500:500] = [b"{not json", b'{"no_message": true}']
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")

    done = score(str(path), "--format", "jsonl")
    assert done.returncode == 0, done.stderr
    out = [orjson.loads(line) for line in done.stdout.splitlines()]
    assert len(out) == len(lines)
    assert "not JSON" in out[500]["error"] and "no message field" in out[501]["error"]
    assert b"2 line(s) could not be read" in done.stderr
    scored = [o for o in out if "error" not in o]
    assert all(set(o) == KEYS and 0.0 <= o["score"] <= 1.0 for o in scored)
    assert all(o["session"] is None for o in scored)  # no model, no sessions
    assert not any(o["anomaly"] for o in scored[:2000]), "warm-up: nothing alerts at first"

    docs = [orjson.loads(line) for line in lines if line.startswith(b'{"date"')]
    flagged = [(doc, o) for doc, o in zip(docs, scored, strict=True) if o["anomaly"]]
    in_burst = [
        (d, o)
        for d, o in flagged
        if d["date"] >= burst["start"] and d["kubernetes"]["labels"]["app"] == "payments"
    ]
    assert in_burst, "the payments error burst is flagged"
    assert {r["kind"] for _, o in in_burst for r in o["reasons"]} >= {"error_ratio"}
    assert all(o["score"] >= 0.7 for _, o in flagged)


def test_raw_lines_from_stdin(tmp_path: Path) -> None:
    raw = (SHARED / "data" / "loghub" / "HDFS" / "HDFS_2k.log").read_bytes()
    done = score("-", stdin=raw)
    assert done.returncode == 0, done.stderr
    out = [orjson.loads(line) for line in done.stdout.splitlines()]
    assert len(out) == raw.count(b"\n")
    assert all(set(o) == KEYS and o["template_id"] for o in out)
    # Mining is shared with the sidecar: far fewer templates than lines.
    assert len({o["template_id"] for o in out}) < 60


def test_missing_model_bundle_is_a_clear_error(tmp_path: Path) -> None:
    done = score(str(tmp_path / "x"), "--model", str(tmp_path / "nope"))
    assert done.returncode == 2
    assert b"model bundle not found" in done.stderr
