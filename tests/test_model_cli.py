"""`logguardian score --model DIR --session-key REGEX` runs HDFS through the model stage."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
from logguardian.bundle import DEFAULT_BUNDLE
from test_model_stage import BLOCK, HDFS, REPLAY


def test_score_cli_sessionizes_and_flags_hdfs_blocks(tmp_path: Path) -> None:
    log, labels = tmp_path / "hdfs.log", tmp_path / "labels.csv"
    with log.open("w") as fh:
        subprocess.run(
            [
                sys.executable,
                str(REPLAY),
                "--normal",
                str(HDFS / "dev_normal.txt"),
                "--abnormal",
                str(HDFS / "dev_abnormal.txt"),
                "--normal-sessions",
                "150",
                "--abnormal-sessions",
                "40",
                "--seed",
                "21",
                "--labels",
                str(labels),
            ],
            stdout=fh,
            check=True,
        )
    truth = dict(row.split(",") for row in labels.read_text().splitlines()[1:])
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "logguardian.cli",
            "score",
            str(log),
            "--model",
            str(DEFAULT_BUNDLE),
            "--session-key",
            BLOCK,
        ],
        capture_output=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    out = [orjson.loads(line) for line in done.stdout.splitlines()]
    lines = log.read_text().splitlines()
    records, finals = out[: len(lines)], out[len(lines) :]
    for line, result in zip(lines, records, strict=True):
        assert result["session"] is not None and result["session"] in line
        assert "final" not in result
    # then one final verdict per block, every block still being open at end of input
    assert sorted(o["session"] for o in finals) == sorted(truth)
    assert all(o["final"] is True and o["template_id"] is None for o in finals)
    flagged = {o["session"] for o in out if o["anomaly"]}
    assert all(truth[block] == "1" for block in flagged), "no normal block flagged"
    assert len(flagged) >= 0.95 * sum(v == "1" for v in truth.values())
    # step-wise findings (unknown templates, unlikely order) speak before the block ends
    assert any(r["kind"] == "sequence" for o in records if o["anomaly"] for r in o["reasons"]), (
        "the model stage must speak in record lines too"
    )
