"""`logguardian train` end to end: logs → dataset → torch → ONNX → calibration → bundle."""

from __future__ import annotations

import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tqdm import tqdm

from ..bundle import SESSION_FILE, write_bundle
from ..detectors.session_model import SessionSetModel, profiles
from .calibrate import (
    SURPRISE_BASE,
    choose_error_threshold,
    choose_threshold,
    fpr,
    session_surprise,
)
from .dataset import build_dataset, end_templates, read_records, windows


@dataclass
class TrainOptions:
    fmt: str = "raw"
    session_key: str | None = None
    session_idle_seconds: float = 3600.0
    window: int = 10
    arch: str = "lstm"
    epochs: int = 30
    target_fpr: float = 0.001
    holdout: float = 0.15
    seed: int = 0
    threads: int = 1  # the net is small: a second intra-op thread only adds contention
    progress: bool | None = None  # None: only on a terminal


def train_bundle(files: Sequence[Path], out: Path, options: TrainOptions) -> dict[str, Any]:
    """Trains and writes a bundle; returns its bundle.json content."""
    # torch stays out of every other import path
    from .torch_model import (
        export_onnx,
        export_session_onnx,
        train,
        train_session_autoencoder,
    )

    show = sys.stderr.isatty() if options.progress is None else options.progress
    started = time.perf_counter()
    errors: list[str] = []
    with tqdm(desc="mining", unit=" lines", disable=not show, file=sys.stderr) as bar:
        data = build_dataset(
            read_records(files, options.fmt, errors),
            options.session_key,
            options.session_idle_seconds,
            progress=bar,
        )
    if not data.sessions:
        raise ValueError("no sessions in the input: check --session-key and --format")
    order = list(range(len(data.sessions)))
    random.Random(options.seed).shuffle(order)
    n_hold = int(len(order) * options.holdout) if len(order) >= 20 else 0
    heldout = [data.sessions[i] for i in order[:n_hold]]
    fit = [data.sessions[i] for i in order[n_hold:]]
    vocab = len(data.vocab_ids) + 2
    rows = windows(fit, options.window)
    with tqdm(
        total=options.epochs, desc="training", unit=" epoch", disable=not show, file=sys.stderr
    ) as bar:
        result = train(
            rows,
            vocab,
            arch=options.arch,
            epochs=options.epochs,
            seed=options.seed,
            threads=options.threads,
            progress=bar,
        )
    onnx_bytes = export_onnx(result.model, options.window)

    runner = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    input_name = runner.get_inputs()[0].name

    def predict(batch: Any) -> Any:
        return runner.run(None, {input_name: batch})[0]

    held_scores = session_surprise(predict, heldout, options.window)
    threshold, quantile = choose_threshold(held_scores, options.target_fpr)
    sets = SessionSetModel.fit(fit)
    sets.calibrate(heldout, options.target_fpr)
    sequence_fpr = fpr(held_scores, threshold)

    def profile(seqs: list[list[int]]) -> np.ndarray:
        return profiles([Counter(s) for s in seqs], vocab)

    autoencoder = train_session_autoencoder(
        profile(fit), seed=options.seed, threads=options.threads
    )
    session_onnx = export_session_onnx(autoencoder, vocab)
    session_runner = ort.InferenceSession(session_onnx, providers=["CPUExecutionProvider"])
    held_errors = (
        session_runner.run(None, {"profile": profile(heldout)})[0].tolist() if heldout else []
    )
    error_threshold, error_quantile = choose_error_threshold(held_errors, options.target_fpr)
    combined = [
        s >= threshold or (sets.enabled and sets.unseen(h)) or e >= error_threshold
        for s, h, e in zip(held_scores, heldout, held_errors, strict=True)
    ]
    enabled, unseen_rate = sets.enabled, sets.heldout_unseen_rate
    sets = SessionSetModel.fit(data.sessions)  # ship every normal set seen
    sets.enabled, sets.heldout_unseen_rate = enabled, unseen_rate

    meta: dict[str, Any] = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "window": options.window,
        "arch": options.arch,
        "session_key": options.session_key,
        "session_idle_seconds": options.session_idle_seconds,
        "vocab": [
            {"index": i + 2, "id": tid, "text": text, "count": count}
            for i, (tid, text, count) in enumerate(
                zip(data.vocab_ids, data.vocab_texts, data.vocab_counts, strict=True)
            )
        ],
        "thresholds": {
            "sequence_surprise": threshold,
            "surprise_base": SURPRISE_BASE,
            "heldout_quantile_surprise": quantile,
            "target_fpr": options.target_fpr,
        },
        "session_model": sets.to_json(),
        "session_autoencoder": {
            "file": SESSION_FILE,
            "input": "log1p(count of each vocab index in the closed session)",
            "threshold": error_threshold,
            "heldout_quantile": error_quantile,
        },
        "end_templates": end_templates(data.sessions),
        "training": {
            "files": [str(f) for f in files],
            "format": options.fmt,
            "records": data.records,
            "keyed_records": data.keyed_records,
            "bad_lines": len(errors),
            "sessions": len(data.sessions),
            "fit_sessions": len(fit),
            "distinct_rows": result.rows,
            "epochs": result.epochs,
            "final_loss": round(result.loss, 5),
            "train_seconds": round(result.seconds, 2),
            "total_seconds": round(time.perf_counter() - started, 2),
        },
        "heldout": {
            "sessions": len(heldout),
            "sequence_session_fpr": sequence_fpr,
            "autoencoder_session_fpr": fpr(held_errors, error_threshold),
            "set_unseen_rate": unseen_rate,
            "combined_session_fpr": sum(combined) / len(combined) if combined else None,
        },
    }
    write_bundle(out, meta, onnx_bytes, data.miner_state, session_onnx)
    meta["training"]["total_seconds"] = round(time.perf_counter() - started, 2)
    return meta
