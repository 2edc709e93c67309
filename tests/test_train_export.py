"""`logguardian train`: dataset building, ONNX export fidelity, the written bundle."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from conftest import SHARED
from logguardian.bundle import MINER_FILE, MODEL_FILE, PAD, SESSION_FILE, load_bundle
from logguardian.record import Record
from logguardian.training.dataset import build_dataset, end_templates, windows

# The `train` extra (torch, onnx): `make test` installs it, so a missing torch fails here.
from logguardian.training.torch_model import export_onnx, torch_log_probs, train

REPLAY = SHARED / "tools" / "hdfs_replay.py"
HDFS = SHARED / "data" / "hdfs"
BLOCK = r"blk_-?\d+"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "logguardian.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def train_jsonl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("train") / "train.jsonl"
    with path.open("w") as fh:
        subprocess.run(
            [
                sys.executable,
                str(REPLAY),
                "--normal",
                str(HDFS / "train_normal.txt"),
                "--normal-sessions",
                "400",
                "--seed",
                "5",
                "--format",
                "jsonl",
            ],
            stdout=fh,
            check=True,
        )
        fh.write("this line is not json\n")
        fh.write('{"no_message_field": 1}\n')
    return path


def test_dataset_groups_records_into_sessions_of_final_templates() -> None:
    records = [
        Record(float(i), m, "svc", None, {}, "t")
        for i, m in enumerate(
            [
                "open session 7 user 100",
                "open session 8 user 200",
                "read 512 bytes session 7",
                "close session 7",
                "read 64 bytes session 8",
                "close session 8",
                "noise without key",
            ]
        )
    ]
    data = build_dataset(records, r"session (\d+)", idle_seconds=3600)
    assert data.records == 7 and data.keyed_records == 6
    assert len(data.sessions) == 2 and len(data.vocab_texts) == 3
    # same steps in both sessions map to the same (final, generalized) template index
    assert data.sessions[0] == data.sessions[1]
    assert len(set(data.sessions[0])) == 3 and min(data.sessions[0]) >= 2
    assert sorted(data.vocab_counts) == [2, 2, 2]


def test_idle_gap_splits_a_key_into_two_sessions() -> None:
    records = [
        Record(ts, f"step {n} of job 1", "svc", None, {}, "t")
        for ts, n in ((0, 1), (10, 2), (5000, 1), (5010, 2))
    ]
    data = build_dataset(records, r"job \d+", idle_seconds=60)
    assert len(data.sessions) == 2


def test_windows_are_distinct_rows_with_counts() -> None:
    rows = windows([[2, 3], [2, 3], [2, 4]], k=2)
    assert rows[(PAD, PAD, 2)] == 3
    assert rows[(PAD, 2, 3)] == 2 and rows[(PAD, 2, 4)] == 1


def test_end_templates_are_only_ever_last() -> None:
    sessions = [[2, 3, 4]] * 30 + [[2, 4]] * 30 + [[2, 3, 3, 5]] * 30
    assert end_templates(sessions) == [4, 5]


@pytest.mark.parametrize("arch", ["lstm", "gru"])
def test_onnx_export_matches_torch(arch: str) -> None:
    sessions = [[2, 3, 4, 5, 5, 6], [2, 4, 3, 5, 6], [2, 3, 4, 5, 5, 5, 6]] * 10
    rows = windows(sessions, k=4)
    result = train(rows, vocab=7, arch=arch, epochs=80)
    runner = ort.InferenceSession(export_onnx(result.model, 4), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for batch_size in (1, 7, 300):
        batch = rng.integers(0, 7, size=(batch_size, 4), dtype=np.int64)
        onnx_out = runner.run(None, {"window": batch})[0]
        torch_out = torch_log_probs(result.model, batch)
        assert onnx_out.shape == (batch_size, 7)
        np.testing.assert_allclose(onnx_out, torch_out, atol=1e-4, rtol=1e-4)
    # and it learned: the most likely successor of (…, 2, 3, 4) is 5
    seen = np.array([[PAD, 2, 3, 4]], dtype=np.int64)
    assert int(runner.run(None, {"window": seen})[0].argmax()) == 5


def test_train_cli_writes_a_loadable_calibrated_bundle(train_jsonl: Path, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    done = cli(
        "train",
        str(train_jsonl),
        "--out",
        str(out),
        "--format",
        "jsonl",
        "--session-key",
        BLOCK,
        "--epochs",
        "8",
        "--window",
        "6",
    )
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stderr and done.stdout == ""
    meta = json.loads((out / "bundle.json").read_text())
    assert meta["format_version"] == 1 and meta["window"] == 6
    assert meta["session_key"] == BLOCK
    assert meta["training"]["bad_lines"] == 2
    assert meta["training"]["sessions"] == 400
    # calibrated on held-out NEW sessions (sequences seen once), at most 15% of them
    cal = meta["calibration"]
    assert cal["split"] == "novel" and "conformal" in cal["method"]
    assert 20 <= meta["heldout"]["sessions"] == cal["heldout_new_sessions"] <= 60
    n, mass, alpha = cal["heldout_new_sessions"], cal["novel_mass"], cal["alpha_new_sessions"]
    assert 0 < mass < 1 and alpha == pytest.approx(cal["target_fpr"] / mass, rel=1e-3)
    # 400 sessions cannot certify 0.1%: the bundle says so rather than claim it
    assert cal["certified"]["sequence"] is (1 / (n + 1) <= alpha)
    assert cal["bound_fpr_all_sessions"] == pytest.approx(max(alpha, 1 / (n + 1)) * mass, abs=1e-5)
    assert meta["heldout"]["new_sessions"] is True
    assert meta["thresholds"]["sequence_surprise"] > 0
    assert {MODEL_FILE, MINER_FILE, SESSION_FILE} == set(meta["files"])
    assert meta["session_autoencoder"]["threshold"] > 0
    texts = [v["text"] for v in meta["vocab"]]
    assert any("Receiving block blk_" in t for t in texts)
    bundle = load_bundle(out)
    assert len(bundle.vocab) == len(texts) + 2


def test_train_cli_reports_bad_input_clearly(tmp_path: Path) -> None:
    done = cli("train", str(tmp_path / "missing.log"), "--out", str(tmp_path / "b"))
    assert done.returncode == 2 and "no such file" in done.stderr
    log = tmp_path / "plain.log"
    log.write_text("hello world\n" * 50)
    done = cli("train", str(log), "--out", str(tmp_path / "b"), "--session-key", r"blk_\d+")
    assert done.returncode == 2 and "no sessions" in done.stderr
    assert not (tmp_path / "b").exists()


def test_learned_end_template_closes_a_session_at_once(tmp_path: Path) -> None:
    from logguardian.config import load_settings
    from logguardian.detectors.model import ModelStage
    from logguardian.metrics import Metrics
    from logguardian.pipeline import Batch
    from logguardian.templates.stage import TemplateStage
    from logguardian.training.train import TrainOptions, train_bundle

    def job(n: int, steps: list[str], t0: float) -> list[Record]:
        return [
            Record(t0 + i, f"job {n} {step}", "batch", None, {}, "t")
            for i, step in enumerate(steps)
        ]

    lines = tmp_path / "jobs.jsonl"
    full = ["started by scheduler", "loaded 42 rows", "wrote 42 rows", "finished ok"]
    with lines.open("w") as fh:
        for n in range(300):
            for r in job(n, full, n * 10.0):
                fh.write(json.dumps({"log": r.message, "date": r.ts, "app": "batch"}) + "\n")
    meta = train_bundle(
        [lines],
        tmp_path / "b",
        TrainOptions(fmt="jsonl", session_key=r"job \d+", epochs=20, progress=False),
    )
    finish = next(v["index"] for v in meta["vocab"] if "finished ok" in v["text"])
    assert meta["end_templates"] == [finish]

    settings = load_settings(state_dir=tmp_path / "state", model={"bundle": str(tmp_path / "b")})
    miner, stage = TemplateStage(settings), ModelStage(settings, Metrics())
    records = job(1000, full, 1e6) + job(1001, ["started by scheduler", "finished ok"], 1e6)
    batch = Batch(records=records, now=1e6)
    miner.process(batch)
    stage.process(batch)
    # both jobs closed on their end line, without waiting for the idle timeout
    assert len(stage.sessions) == 0
    # the job that skipped its work is flagged on its last line by the session model
    assert sorted(batch.reasons) == [5]
    assert [r.kind for r in batch.reasons[5]] == ["session"]
    assert "missing" in batch.reasons[5][0].text


# -- thresholds that hold on sessions the model never saw (issue 12) --------------------


def test_conformal_quantile_bounds_the_false_positive_rate_on_fresh_draws() -> None:
    from logguardian.training.calibrate import conformal_quantile

    rng = np.random.default_rng(1)
    alpha, rates = 0.05, []
    for _ in range(300):
        q, certified = conformal_quantile(rng.lognormal(0, 1.5, 99).tolist(), alpha)
        assert certified
        rates.append(float((rng.lognormal(0, 1.5, 2000) > q).mean()))
    # marginal guarantee: P(new > q) <= alpha (the mean over calibrations), not far below
    assert np.mean(rates) <= alpha + 0.005 and np.mean(rates) >= alpha / 2
    # a rate the sample cannot resolve is its worst score and says it is not certified
    scores = rng.lognormal(0, 1.5, 99).tolist()
    assert conformal_quantile(scores, 0.001) == (max(scores), False)


def grammar_session(rng: np.random.Generator) -> list[int]:
    """A normal session from a small workflow grammar with optional and repeated steps,
    so that many sessions have an exact order nobody logged before."""
    out = [2]
    for _ in range(int(rng.integers(1, 6))):
        out += [3, 4] if rng.random() < 0.8 else [4, 3]
        if rng.random() < 0.25:
            out.append(5)
    if rng.random() < 0.4:
        out += [6, 7] * int(rng.integers(1, 3))
    return [*out, 8]


def test_novel_split_holds_out_only_sequences_absent_from_fit() -> None:
    from logguardian.training.calibrate import novel_split

    rng = np.random.default_rng(2)
    sessions = [grammar_session(rng) for _ in range(600)]
    split = novel_split(sessions, holdout=0.15, seed=0)
    assert split.method == "novel" and split.heldout
    fit = {tuple(s) for s in split.fit}
    assert not any(tuple(s) in fit for s in split.heldout)
    once = sum(1 for s in sessions if sum(t == s for t in sessions) == 1)
    assert split.novel_mass == pytest.approx(once / len(sessions))
    assert len(split.fit) + len(split.heldout) == len(sessions)


def test_session_fpr_on_new_normal_sessions_stays_within_the_calibrated_bound() -> None:
    from collections import Counter

    from logguardian.detectors.session_model import profiles
    from logguardian.training.calibrate import session_surprise
    from logguardian.training.train import TrainOptions, fit_models

    rng = np.random.default_rng(3)
    sessions = [grammar_session(rng) for _ in range(800)]
    options = TrainOptions(window=4, epochs=80, progress=False)
    fitted = fit_models(sessions, 9, options)
    cal = fitted.calibration
    assert cal["split"] == "novel" and cal["heldout_new_sessions"] >= 50

    seen = {tuple(s) for s in sessions}
    new = [s for s in (grammar_session(rng) for _ in range(6000)) if tuple(s) not in seen]
    assert len(new) >= 300
    runner = ort.InferenceSession(fitted.onnx, providers=["CPUExecutionProvider"])
    ae = ort.InferenceSession(fitted.session_onnx, providers=["CPUExecutionProvider"])

    def flags(batch: list[list[int]]) -> list[bool]:
        surprise = session_surprise(
            lambda w: runner.run(None, {"window": w})[0], batch, options.window
        )
        errors = ae.run(None, {"profile": profiles([Counter(s) for s in batch], 9)})[0]
        return [
            x >= fitted.threshold or e >= fitted.error_threshold or fitted.sets.unseen(s)
            for x, e, s in zip(surprise, errors, batch, strict=True)
        ]

    rate = sum(flags(new)) / len(new)
    assert rate <= cal["bound_fpr_new_session"] + 0.01, (rate, cal)
    # ...while the thresholds still catch what is wrong: steps out of order, a lost tail
    broken = [[8, *s[1:-1], 2] for s in new[:100]] + [s[:2] for s in new[:100]]
    assert sum(flags(broken)) / len(broken) >= 0.95
