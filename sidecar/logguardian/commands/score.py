"""`logguardian score FILE [--model DIR] [--format raw|jsonl] [--session-key REGEX]`
(DESIGN §5, a contract): one JSON line per input record,
`{"session", "template_id", "score", "anomaly", "reasons"}`.

Runs the same chain as the sidecar (`chain.build_components`: miner, model stage
when `--model` is given, online detectors, fuse) with exporters off, batch by batch
through `Pipeline.run_batch`. A line that cannot be read still gets its output line,
`{"error": ...}`, so outputs stay aligned with inputs.

With a model, every session gets one more line when it closes (idle timeout, end
template, or end of input, where every still-open session is closed):
`{"session", "template_id": null, "score", "anomaly", "reasons", "final": true}`,
written after the lines of the batch it closed in. A block that only looks wrong
as a whole (it stopped logging half way) is caught there and nowhere else.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import orjson
from tqdm import tqdm

from ..chain import build_components
from ..config import Settings, load_settings
from ..detection_api import scored
from ..metrics import Metrics
from ..pipeline import Pipeline
from ..record import UNKNOWN_SERVICE, Record, infer_level, normalize
from ..sessions import SessionVerdict

SOURCE = "score"
MAX_REASONS = 3


def run(args: argparse.Namespace) -> int:
    model: dict[str, Any] = {"enabled": args.model is not None}
    if args.model is not None:
        if not args.model.is_dir():
            print(f"logguardian score: model bundle not found: {args.model}", file=sys.stderr)
            return 2
        model["bundle"] = args.model
    if args.session_key:
        model["session_key"] = args.session_key
    if args.state_dir is not None:
        return _score(load_settings(state_dir=args.state_dir, model=model), args)
    with tempfile.TemporaryDirectory(prefix="logguardian-score-") as tmp:
        return _score(load_settings(state_dir=Path(tmp), model=model), args)


def _score(settings: Settings, args: argparse.Namespace) -> int:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    metrics = Metrics(max_services=settings.pipeline.max_services)
    components = build_components(settings, metrics)
    pipeline = Pipeline(settings.pipeline, components.processors, [], metrics)
    fuse = components.handles.get("fuse")
    threshold = settings.detectors.threshold
    model = components.handles.get("model")
    finals: list[SessionVerdict] = []
    if model is not None:
        model.finals = finals
    out = sys.stdout.buffer
    bad = 0
    source: BinaryIO
    if args.file == "-":
        source = sys.stdin.buffer
    else:
        try:
            source = open(args.file, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            print(f"logguardian score: {exc}", file=sys.stderr)
            return 2
    bar = tqdm(
        unit="rec", unit_scale=True, desc="scoring", file=sys.stderr, disable=None, leave=False
    )
    with source, bar:
        for slots in _chunks(source, args.format, settings, settings.pipeline.batch_records):
            records = [slot for slot in slots if isinstance(slot, Record)]
            batch = pipeline.run_batch(records)
            lines = []
            k = 0
            for slot in slots:
                if isinstance(slot, str):
                    bad += 1
                    lines.append(orjson.dumps({"error": slot}))
                    continue
                result = scored(batch, k, fuse, threshold)
                k += 1
                lines.append(
                    orjson.dumps(
                        {
                            "session": result["session"],
                            "template_id": result["template_id"],
                            "score": result["score"],
                            "anomaly": result["anomaly"],
                            "reasons": result["reasons"],
                        }
                    )
                )
            lines.extend(orjson.dumps(final_line(v, fuse, threshold)) for v in finals)
            finals.clear()
            out.write(b"\n".join(lines) + b"\n")
            bar.update(len(slots))
    if model is not None:
        model.close_all()
        pipeline.run_batch([])  # a clock tick: the model stage closes every open session
        if finals:
            out.write(b"\n".join(orjson.dumps(final_line(v, fuse, threshold)) for v in finals))
            out.write(b"\n")
    out.flush()
    if args.state_dir is not None:
        _save_state(components.handles)
    if bad:
        print(
            f'logguardian score: {bad} line(s) could not be read (see their "error")',
            file=sys.stderr,
        )
    return 0


def final_line(verdict: SessionVerdict, fuse: Any, threshold: float) -> dict[str, Any]:
    """A closed session's verdict: an anomaly iff one of its findings passes the same
    decision as a record's (threshold and operator feedback on the finding's template).
    With no finding the score says how close it came (below the threshold)."""

    def passes(score: float, template_id: str | None) -> bool:
        return fuse.is_anomaly(score, template_id) if fuse is not None else score >= threshold

    ranked = sorted(verdict.findings.items(), key=lambda item: -item[1].score)
    live = [reason for tid, reason in ranked if passes(reason.score, tid)]
    if live:
        score = live[0].score
    elif ranked:
        score = ranked[0][1].score
    else:
        score = threshold * min(verdict.closeness, 0.999)
    reasons = (live + [r for _, r in ranked if r not in live])[:MAX_REASONS]
    return {
        "session": verdict.key,
        "template_id": None,
        "score": round(score, 4),
        "anomaly": bool(live),
        "reasons": [
            {"kind": r.kind, "score": round(r.score, 4), "text": r.text, "severity": r.severity}
            for r in reasons
        ],
        "final": True,
    }


def _chunks(
    source: BinaryIO, fmt: str, settings: Settings, size: int
) -> Iterator[list[Record | str]]:
    """Records (or, for unreadable lines, an error message) in input order."""
    fields = settings.pipeline.service_fields
    chunk: list[Record | str] = []
    for n, raw in enumerate(source, 1):
        text = raw.rstrip(b"\r\n")
        if fmt == "raw":
            message = text.decode("utf-8", "replace")
            chunk.append(
                Record(
                    ts=time.time(),
                    message=message,
                    service=UNKNOWN_SERVICE,
                    level=infer_level(message),
                    source=SOURCE,
                )
            )
        else:
            chunk.append(_parse(text, n, fields))
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _parse(text: bytes, n: int, fields: list[str]) -> Record | str:
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return f"line {n}: not JSON: {exc}"
    if not isinstance(doc, dict):
        return f"line {n}: not a JSON object"
    try:
        return normalize(doc, source=SOURCE, service_fields=fields)
    except ValueError as exc:
        return f"line {n}: {exc}"


def _save_state(handles: dict[str, Any]) -> None:
    stage = handles.get("template_stage")
    if stage is not None:
        stage.close()
    detection = handles.get("detection")
    if detection is not None:
        detection.save(detection.snapshot())
