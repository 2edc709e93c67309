"""`logguardian train` end to end: logs → dataset → torch → ONNX → calibration → bundle."""

from __future__ import annotations

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
    novel_rate,
    novel_split,
    session_surprise,
    summary,
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


@dataclass
class Fitted:
    """The trained models with their calibration, before they become a bundle."""

    onnx: bytes
    session_onnx: bytes
    sets: SessionSetModel  # refit on every session, so every normal set seen ships
    threshold: float
    error_threshold: float
    thresholds: dict[str, Any]
    autoencoder: dict[str, Any]
    heldout: dict[str, Any]
    calibration: dict[str, Any]
    training: dict[str, Any]


def fit_models(
    sessions: list[list[int]], vocab: int, options: TrainOptions, show: bool = False
) -> Fitted:
    """Trains the sequence net and the session models on vocabulary-index sessions and
    calibrates their thresholds on held-out new sessions (see calibrate.py)."""
    # torch stays out of every other import path
    from .torch_model import (
        export_onnx,
        export_session_onnx,
        train,
        train_session_autoencoder,
    )

    split = novel_split(sessions, options.holdout, options.seed)
    fit, heldout = split.fit, split.heldout
    alpha = novel_rate(options.target_fpr, split.novel_mass if split.method == "novel" else 1)
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
    threshold, quantile, seq_certified = choose_threshold(held_scores, alpha)
    weight = split.novel_mass if split.method == "novel" else 1.0
    sets = SessionSetModel.fit(fit)
    sets.calibrate(heldout, options.target_fpr, weight)

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
    error_threshold, error_quantile, ae_certified = choose_error_threshold(held_errors, alpha)
    combined = [
        s >= threshold or (sets.enabled and sets.unseen(h)) or e >= error_threshold
        for s, h, e in zip(held_scores, heldout, held_errors, strict=True)
    ]
    enabled, unseen_rate = sets.enabled, sets.heldout_unseen_rate
    shipped = SessionSetModel.fit(sessions)  # ship every normal set seen
    shipped.enabled, shipped.heldout_unseen_rate = enabled, unseen_rate
    combined_rate = sum(combined) / len(combined) if combined else None
    return Fitted(
        onnx=onnx_bytes,
        session_onnx=session_onnx,
        sets=shipped,
        threshold=threshold,
        error_threshold=error_threshold,
        thresholds={
            "sequence_surprise": threshold,
            "surprise_base": SURPRISE_BASE,
            "heldout_quantile_surprise": quantile,
            "target_fpr": options.target_fpr,
        },
        autoencoder={
            "file": SESSION_FILE,
            "input": "log1p(count of each vocab index in the closed session)",
            "threshold": error_threshold,
            "heldout_quantile": error_quantile,
        },
        heldout={
            "sessions": len(heldout),
            "new_sessions": split.method == "novel",
            "sequence_session_fpr": fpr(held_scores, threshold),
            "autoencoder_session_fpr": fpr(held_errors, error_threshold),
            "set_unseen_rate": unseen_rate,
            "combined_session_fpr": combined_rate,
            # held-out holds only new sessions; repeats of seen ones score low
            "estimated_session_fpr": None
            if combined_rate is None
            else round(combined_rate * weight, 6),
        },
        calibration=summary(
            split,
            alpha,
            len(heldout),
            {"sequence": seq_certified, "autoencoder": ae_certified},
            options.target_fpr,
        ),
        training={
            "fit_sessions": len(fit),
            "distinct_rows": result.rows,
            "epochs": result.epochs,
            "final_loss": round(result.loss, 5),
            "train_seconds": round(result.seconds, 2),
        },
    )


def train_bundle(files: Sequence[Path], out: Path, options: TrainOptions) -> dict[str, Any]:
    """Trains and writes a bundle; returns its bundle.json content."""
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
    fitted = fit_models(data.sessions, len(data.vocab_ids) + 2, options, show)
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
        "thresholds": fitted.thresholds,
        "calibration": fitted.calibration,
        "session_model": fitted.sets.to_json(),
        "session_autoencoder": fitted.autoencoder,
        "end_templates": end_templates(data.sessions),
        "training": {
            "files": [str(f) for f in files],
            "format": options.fmt,
            "records": data.records,
            "keyed_records": data.keyed_records,
            "bad_lines": len(errors),
            "sessions": len(data.sessions),
            **fitted.training,
            "total_seconds": round(time.perf_counter() - started, 2),
        },
        "heldout": fitted.heldout,
    }
    write_bundle(out, meta, fitted.onnx, data.miner_state, fitted.session_onnx)
    meta["training"]["total_seconds"] = round(time.perf_counter() - started, 2)
    return meta
