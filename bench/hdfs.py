"""HDFS block anomaly detection with the ONNX sequence/session model (issues 5, 12).

Trains a bundle with the real `logguardian train` CLI on a replay of train_normal.txt,
then scores a replay of one half of dev_normal + dev_abnormal at HDFS's real mix
(default 30,000 normal + 900 abnormal blocks, 2.9%) two ways:

- the CLI path: `logguardian score --model` as a subprocess; a block is anomalous iff
  any of its output lines (its records, or its final session line) is an anomaly;
- the stage path: the template miner stage and the model stage in process, on the
  lines' own timestamps; a block is anomalous if any of its records is flagged (or,
  for sessions flagged at close, the session's annotation).

The dev files are split by distinct sequence (crc32 of the line): `--split tune` is
the half used while developing, `--split untouched` (the default) the half that is only
ever reported. Prints precision, recall, F1 per path, records until detection, which
part of the model caught what, and the model stage's serving speed against a peer run
with the window cache disabled, in the same process.

    .venv/bin/python bench/hdfs.py [--split tune|untouched|all] [--seed N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import orjson
from logguardian.config import load_settings
from logguardian.detectors.model import ModelStage
from logguardian.metrics import Metrics
from logguardian.pipeline import Batch
from logguardian.record import Record
from logguardian.templates.stage import TemplateStage

ROOT = Path(__file__).resolve().parents[1]
# ../shared beside the checkout; a worktree sits one level deeper (/work/wt/<name>).
SHARED = next(
    (p / "shared" for p in ROOT.parents if (p / "shared" / "data").is_dir()), ROOT.parent / "shared"
)
HDFS = SHARED / "data" / "hdfs"
REPLAY = SHARED / "tools" / "hdfs_replay.py"
BLOCK = r"blk_-?\d+"
BATCH = 2000
IDLE = 3600.0


def replay(
    out: Path,
    normal: Path,
    abnormal: Path | None = None,
    n: int | None = None,
    m: int | None = None,
    labels: Path | None = None,
    seed: int = 7,
) -> None:
    cmd = [sys.executable, str(REPLAY), "--normal", str(normal), "--seed", str(seed)]
    if abnormal is not None:
        cmd += ["--abnormal", str(abnormal)]
    if n:
        cmd += ["--normal-sessions", str(n)]
    if m:
        cmd += ["--abnormal-sessions", str(m)]
    if labels is not None:
        cmd += ["--labels", str(labels)]
    with out.open("w") as fh:
        subprocess.run(cmd, stdout=fh, check=True)


def records(path: Path) -> list[Record]:
    """Raw HDFS lines with their own timestamps (yyMMdd HHmmss), as a tail input would."""
    out = []
    with path.open() as fh:
        for line in fh:
            line = line.rstrip("\n")
            ts = datetime.strptime(line[:13], "%y%m%d %H%M%S").replace(tzinfo=UTC).timestamp()
            out.append(Record(ts, line, "hdfs", None, {}, "bench"))
    return out


def batches(items: list[Record]) -> list[list[Record]]:
    return [items[i : i + BATCH] for i in range(0, len(items), BATCH)]


def split_sessions(src: Path, out: Path, part: str) -> Path:
    """The half of a session file whose distinct sequences hash to `part` ("tune": even,
    "untouched": odd), so no sequence is in both halves; "all" keeps every line."""
    if part == "all":
        return src
    keep = 0 if part == "tune" else 1
    lines = [
        line
        for line in src.read_text().splitlines()
        if line.strip() and zlib.crc32(line.strip().encode()) % 2 == keep
    ]
    out.write_text("\n".join(lines) + "\n")
    return out


def prf(flagged: set[str], truth: dict[str, bool]) -> tuple[float, float, float, int, int, int]:
    tp = sum(1 for b in flagged if truth.get(b))
    fp = len(flagged) - tp
    fn = sum(truth.values()) - tp
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1, tp, fp, fn


def cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    """The real `logguardian` console script of this interpreter's environment."""
    exe = Path(sys.executable).with_name("logguardian")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "logguardian.cli"]
    return subprocess.run([*cmd, *args], capture_output=True, check=True)


def cli_path(bundle: Path, eval_log: Path, truth: dict[str, bool], out: Path) -> set[str]:
    """`logguardian score` as a user runs it; a block is anomalous iff any of its lines
    (records or its final session line) says so. Prints P/R/F1 and the time it took."""
    started = time.perf_counter()
    done = cli("score", str(eval_log), "--model", str(bundle), "--session-key", BLOCK)
    seconds = time.perf_counter() - started
    out.write_bytes(done.stdout)
    flagged: set[str] = set()
    finals = records = 0
    for line in done.stdout.splitlines():
        doc = orjson.loads(line)
        if doc.get("final"):
            finals += 1
        else:
            records += 1
        if doc.get("anomaly") and doc.get("session"):
            flagged.add(doc["session"])
    print(f"  score CLI: {records} record lines + {finals} final session lines in {seconds:.1f}s")
    return flagged


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--normal-sessions", type=int, default=30_000)
    ap.add_argument("--abnormal-sessions", type=int, default=900)
    ap.add_argument("--arch", default="lstm", choices=("lstm", "gru"))
    ap.add_argument("--window", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument(
        "--split",
        default="untouched",
        choices=("tune", "untouched", "all"),
        help="which half of dev_normal/dev_abnormal to evaluate on, by distinct sequence: "
        "'tune' (used while developing) or 'untouched' (reported only)",
    )
    ap.add_argument("--seed", type=int, help="replay seed (default: 7 tune, 11 untouched)")
    ap.add_argument(
        "--no-session-peer",
        dest="session_peer",
        action="store_false",
        help="skip the set statistic vs ONNX autoencoder breakdown",
    )
    ap.add_argument("--no-serving", dest="serving", action="store_false", help="skip speed")
    ap.add_argument(
        "--train-sessions",
        type=int,
        help="draw this many training sessions (with replacement) instead of "
        "each once; 50000 is ~1M lines, the issue's training-time target",
    )
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else (7 if args.split == "tune" else 11)

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        train_log, eval_log, labels = tmp / "train.log", tmp / "eval.log", tmp / "labels.csv"
        replay(train_log, HDFS / "train_normal.txt", n=args.train_sessions, seed=1)
        normal = split_sessions(HDFS / "dev_normal.txt", tmp / "normal.txt", args.split)
        abnormal = split_sessions(HDFS / "dev_abnormal.txt", tmp / "abnormal.txt", args.split)
        replay(
            eval_log, normal, abnormal, args.normal_sessions, args.abnormal_sessions, labels, seed
        )
        split = (
            f"split '{args.split}' of dev_normal/dev_abnormal (by distinct sequence), "
            f"replay seed {seed}"
        )

        # One bundle, trained by the real CLI, serves both paths below.
        bundle = tmp / "bundle"
        started = time.perf_counter()
        cli(
            "train",
            str(train_log),
            "--out",
            str(bundle),
            "--session-key",
            BLOCK,
            "--window",
            str(args.window),
            "--arch",
            args.arch,
            "--epochs",
            str(args.epochs),
        )
        train_seconds = time.perf_counter() - started
        meta = orjson.loads((bundle / "bundle.json").read_bytes())
        t = meta["training"]
        print(
            f"train (logguardian train, train_normal.txt replay seed 1): {t['records']} lines, "
            f"{t['sessions']} sessions, {len(meta['vocab'])} templates, {t['distinct_rows']} "
            f"distinct windows, {args.arch} k={args.window} {t['epochs']} epochs: "
            f"{train_seconds:.1f}s ({t['records'] / train_seconds:,.0f} lines/s end to end)"
        )
        print(f"calibration: {meta.get('calibration')}")
        print(f"held-out: {meta['heldout']}, thresholds {meta['thresholds']}")

        truth = {}
        for row in labels.read_text().splitlines()[1:]:
            block, label = row.split(",")
            truth[block] = label == "1"
        evaluation = records(eval_log)
        anomalous = sum(truth.values())
        print(
            f"eval on {split}: {len(evaluation)} records, {len(truth)} blocks "
            f"({anomalous} anomalous, {100 * anomalous / len(truth):.1f}%)"
        )

        p, r, f1, tp, fp, fn = prf(cli_path(bundle, eval_log, truth, tmp / "scored.jsonl"), truth)
        print(
            f"HDFS blocks via logguardian train + score (CLI) on {args.split}: "
            f"P={p:.4f} R={r:.4f} F1={f1:.4f} (tp={tp} fp={fp} fn={fn})"
        )

        settings = load_settings(
            state_dir=tmp / "state",
            model={
                "bundle": str(bundle),
                "session_key": BLOCK,
                "session_idle_seconds": IDLE,
                "max_sessions": 1_000_000,
            },
        )
        metrics = Metrics()
        miner = TemplateStage(settings, metrics)
        mined: list[Batch] = []
        for chunk in batches(evaluation):
            batch = Batch(records=chunk, now=chunk[-1].ts)
            miner.process(batch)
            mined.append(batch)

        variants = {
            "full model": (True, True, True),
            f"sequence ({args.arch.upper()}) only": (False, True, False),
            "session models (set + AE) only": (False, False, True),
            "unknown templates only": (True, False, False),
            f"{args.arch.upper()} + session, no unknown flag": (False, True, True),
        }
        print(f"stage path (template stage + model stage in process, log timestamps) on {split}:")
        for name, switches in variants.items():
            first = evaluate(settings, mined, switches)
            p, r, f1, tp, fp, fn = prf(set(first), truth)
            print(
                f"HDFS blocks, {name:<31} P={p:.4f} R={r:.4f} F1={f1:.4f} (tp={tp} fp={fp} fn={fn})"
            )
            if name != "full model":
                continue
            delays = [first[b][0] for b in first if truth.get(b)]
            if delays:
                print(
                    f"  records until detection (1 = first record of the block): "
                    f"median {statistics.median(delays):.0f}, "
                    f"mean {statistics.mean(delays):.1f}, max {max(delays)}"
                )
            by_how: dict[str, list[int]] = defaultdict(lambda: [0, 0])
            delay_by: dict[str, list[int]] = defaultdict(list)
            for b, (at, how) in first.items():
                by_how[how][0 if truth.get(b) else 1] += 1
                if truth.get(b):
                    delay_by[how].append(at)
            for how, (good, bad) in sorted(by_how.items()):
                median = statistics.median(delay_by[how]) if delay_by[how] else float("nan")
                print(
                    f"  first caught by {how:<17} tp={good:<5} fp={bad:<4} "
                    f"median records until detection {median:.0f}"
                )

        if args.serving:
            serving(settings, mined, metrics)
        if args.session_peer:
            session_models(settings, mined, truth)
    return 0


def evaluate(
    settings, mined: list[Batch], switches: tuple[bool, bool, bool]
) -> dict[str, tuple[int, str]]:
    """Runs the model stage over pre-mined batches; first flag per block."""
    stage = ModelStage(settings, Metrics())
    stage.detect_unknown, stage.detect_sequence, stage.detect_sessions = switches
    first: dict[str, tuple[int, str]] = {}
    position: dict[str, int] = defaultdict(int)
    for b in mined:
        batch = Batch(
            records=b.records, now=b.now, template_ids=b.template_ids, templates=b.templates
        )
        stage.process(batch)
        note(batch, first, position)
    stage.close_all()
    end = Batch(records=[], now=mined[-1].now + 2 * IDLE)
    stage.process(end)
    note(end, first, position)
    return first


def note(batch: Batch, first: dict[str, tuple[int, str]], position: dict[str, int]) -> None:
    """Records the first flag per block: (its record number within the block, cause)."""
    for i in range(len(batch.records)):
        key = batch.sessions[i]
        if key is None:
            continue
        position[key] += 1
        reasons = batch.reasons.get(i)
        if reasons and key not in first:
            how = reasons[0].kind + " model"
            if "never occurred" in reasons[0].text:
                how = "unknown template"
            first[key] = (position[key], how)
    for ann in batch.annotations:
        if ann.session and ann.session not in first:
            first[ann.session] = (position[ann.session], "session model")


def serving(settings, mined: list[Batch], metrics: Metrics) -> None:
    """Model stage alone on pre-mined batches, against two peers in the same process: the
    stage with its cross-batch cache off (windows still deduplicated per batch), and
    plain batched onnxruntime inference of every record's window (no cache at all)."""
    n = sum(len(b.records) for b in mined)
    results = {}
    for label, limit in (("cached", None), ("no cross-batch cache", 0)):
        stage = ModelStage(settings, Metrics())
        if limit is not None:
            stage.cache_limit = limit
        t0 = time.process_time()
        for b in mined:
            stage.process(
                Batch(
                    records=b.records, now=b.now, template_ids=b.template_ids, templates=b.templates
                )
            )
        cpu = time.process_time() - t0
        results[label] = n / cpu
        print(
            f"serving ({label}): {n / cpu:,.0f} records/s per CPU-second, "
            f"{stage.inferences} windows inferred ({stage.inferences / n:.4f} per record)"
        )
    bundle = ModelStage(settings, Metrics()).bundle
    assert bundle is not None
    sample = min(n, 100_000)
    windows = np.random.default_rng(0).integers(0, len(bundle.vocab), (sample, bundle.window))
    t0 = time.process_time()
    for start in range(0, sample, 4096):
        bundle.predict(windows[start : start + 4096])
    per_record = sample / (time.process_time() - t0)
    print(
        f"peer, one batched ONNX inference per record (no cache): {per_record:,.0f} "
        f"records/s per CPU-second"
    )
    print(
        f"serving ratio cached / no cross-batch cache: "
        f"{results['cached'] / results['no cross-batch cache']:.1f}x; "
        f"cached / inference per record: {results['cached'] / per_record:.1f}x"
    )


def block_sequences(stage: ModelStage, batches: list[Batch]) -> dict[str, list[int]]:
    """Vocabulary indices per block, mapped exactly as the model stage maps records."""
    bundle = stage.bundle
    assert bundle is not None
    out: dict[str, list[int]] = defaultdict(list)
    for b in batches:
        for record, text in zip(b.records, b.templates, strict=True):
            key = stage.keyer.key(record)
            if key is not None and text is not None:
                out[key].append(bundle.vocab.index(text, record.message))
    return out


def session_models(settings, mined: list[Batch], truth: dict[str, bool]) -> None:
    """The two session models at close, alone and together, on every evaluation block:
    the exact template-set statistic and the ONNX count autoencoder, both from the
    bundle and calibrated on the same held-out normal sessions."""
    from logguardian.detectors.session_model import profiles

    stage = ModelStage(settings, Metrics())
    bundle = stage.bundle
    assert bundle is not None and bundle.session_model is not None
    evaluation = block_sequences(stage, mined)
    blocks = list(evaluation)
    counts = [Counter(evaluation[b]) for b in blocks]
    errors = bundle.session_errors(profiles(counts, len(bundle.vocab)))
    assert errors is not None
    unseen = [bundle.session_model.unseen(c) for c in counts]
    odd = list(errors >= bundle.session_threshold)
    verdicts = {
        "template-set statistic": unseen,
        "ONNX count autoencoder": odd,
        "either (shipped)": [u or o for u, o in zip(unseen, odd, strict=True)],
    }
    for name, flags in verdicts.items():
        tp = sum(1 for b, f in zip(blocks, flags, strict=True) if f and truth[b])
        fp = sum(1 for b, f in zip(blocks, flags, strict=True) if f and not truth[b])
        fn = sum(1 for b, f in zip(blocks, flags, strict=True) if not f and truth[b])
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        print(
            f"session model at close alone, {name:<23} P={p:.4f} R={r:.4f} F1={f1:.4f} "
            f"(tp={tp} fp={fp} fn={fn})"
        )


if __name__ == "__main__":
    sys.exit(main())
