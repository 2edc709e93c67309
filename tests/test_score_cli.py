"""`logguardian score` (DESIGN §5 contract) as a user runs it: a subprocess on files,
detectors only, and with a model bundle: sessions closed at end of input."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import orjson
from conftest import SHARED
from logguardian.bundle import DEFAULT_BUNDLE
from logguardian.commands.demo import sample_dir

KEYS = {"session", "template_id", "score", "anomaly", "reasons"}
BLOCK = r"blk_-?\d+"


def score(
    *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "logguardian.cli", "score", *args],
        input=stdin,
        capture_output=True,
        timeout=300,
        env=None if env is None else {**os.environ, **env},
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


# -- sessions at end of input (issue 12) -------------------------------------------------

NORMAL_BLOCK = [5, 5, 5, 22, 11, 9, 11, 9, 11, 9, 26, 26, 26, 23, 23, 23, 21, 21, 21]
# Allocated and receiving, then silence: every step is normal, only the whole is not.
TRUNCATED_BLOCK = [22, 5, 5]


def hdfs_log(tmp_path: Path, apart: float = 0.0) -> tuple[Path, dict[str, bool]]:
    """Three normal blocks and one that stops logging, interleaved (or one after the
    other, `apart` seconds between starts), every block still open when the input ends
    (no idle timeout passes, no end template)."""
    from test_model_stage import block_lines

    blocks = {1001: NORMAL_BLOCK, 1002: TRUNCATED_BLOCK, 1003: NORMAL_BLOCK, 1004: NORMAL_BLOCK}
    records = [
        r
        for n, (b, events) in enumerate(blocks.items())
        for r in block_lines(b, events, 1.2e9 + n * apart, 7.0)
    ]
    records.sort(key=lambda r: r.ts)
    path = tmp_path / "hdfs.log"
    path.write_text("".join(r.message + "\n" for r in records))
    return path, {f"blk_{b}": b == 1002 for b in blocks}


def score_model(path: Path, *extra: str, env: dict[str, str] | None = None) -> list[dict]:
    done = score(str(path), "--model", str(DEFAULT_BUNDLE), "--session-key", BLOCK, *extra, env=env)
    assert done.returncode == 0, done.stderr
    return [orjson.loads(line) for line in done.stdout.splitlines()]


def test_every_open_session_gets_a_final_line_and_a_truncated_block_is_flagged(
    tmp_path: Path,
) -> None:
    path, truth = hdfs_log(tmp_path)
    out = score_model(path)
    n = len(path.read_text().splitlines())
    records, finals = out[:n], out[n:]
    assert all(set(o) == KEYS for o in records)
    # one final line per block, after every record line, in the contract's shape
    assert sorted(o["session"] for o in finals) == sorted(truth)
    assert all(set(o) == KEYS | {"final"} and o["final"] is True for o in finals)
    assert all(o["template_id"] is None and 0.0 <= o["score"] <= 1.0 for o in finals)
    # the broken block looks fine record by record: only its close can tell
    assert not any(o["anomaly"] for o in records)
    verdict = {o["session"]: o for o in finals}
    assert {b for b, o in verdict.items() if o["anomaly"]} == {"blk_1002"}
    assert verdict["blk_1002"]["reasons"][0]["kind"] == "session"
    assert "missing" in verdict["blk_1002"]["reasons"][0]["text"]
    assert all(verdict[b]["score"] < 0.7 for b in truth if not truth[b])


def test_session_close_finding_on_a_suppressed_template_is_not_an_anomaly(
    tmp_path: Path,
) -> None:
    path, _ = hdfs_log(tmp_path)
    first = score_model(path)
    lines = path.read_text().splitlines()
    # the template of the broken block's last line: the finding at close is about it
    last = max(i for i, line in enumerate(lines) if "blk_1002" in line)
    tid = first[last]["template_id"]
    state = tmp_path / "state"
    state.mkdir()
    (state / "feedback.json").write_bytes(
        orjson.dumps([{"template_id": tid, "verdict": "normal", "at": 1.0, "note": "ok"}])
    )
    again = score_model(path, "--state-dir", str(state))
    verdict = {o["session"]: o for o in again if o.get("final")}
    assert verdict["blk_1002"]["anomaly"] is False
    # still explained (score and reason kept), just not raised
    assert verdict["blk_1002"]["score"] >= 0.7 and verdict["blk_1002"]["reasons"]
    assert not any(o["anomaly"] for o in again)


def test_sessions_pushed_out_of_a_full_table_still_get_their_verdict(tmp_path: Path) -> None:
    # blocks one after the other: the table of 2 pushes out only blocks that are done
    path, truth = hdfs_log(tmp_path, apart=1000.0)
    out = score_model(path, env={"LOGGUARDIAN_MODEL__MAX_SESSIONS": "2"})
    finals = [o for o in out if o.get("final")]
    assert {o["session"] for o in finals} == set(truth)
    assert {o["session"] for o in finals if o["anomaly"]} == {"blk_1002"}


def test_a_template_the_bundle_knows_is_not_first_seen_after_warm_up(tmp_path: Path) -> None:
    """A rare but normal step (a block scanner's "Verification succeeded") first logged
    after the novelty warm-up: known to the bundle's normal sessions, so not new."""
    from test_model_stage import block_lines

    verified = [5, 5, 5, 22, 11, 9, 11, 9, 11, 9, 26, 26, 26, 2, 23, 23, 23, 21, 21, 21]
    records = [r for b in range(60) for r in block_lines(2000 + b, NORMAL_BLOCK, 1.2e9 + b)]
    records += block_lines(3000, verified, 1.2e9 + 900.0)
    path = tmp_path / "hdfs.log"
    path.write_text("".join(r.message + "\n" for r in records))
    assert len(records) - len(verified) > 1000  # past the warm-up
    at = len(records) - len(verified) + verified.index(2)

    plain = score(str(path))  # statistics alone: the first such line is new
    assert plain.returncode == 0, plain.stderr
    line = orjson.loads(plain.stdout.splitlines()[at])
    assert line["anomaly"] and line["reasons"][0]["kind"] == "novelty"

    out = score_model(path)
    assert "Verification succeeded" in path.read_text().splitlines()[at]
    assert not any(o["anomaly"] for o in out), [o for o in out if o["anomaly"]][:2]
