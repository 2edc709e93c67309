"""Bundle loading and failure modes, hot reload in a running sidecar, and scoring in a
runtime where torch cannot be imported."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from logguardian.bundle import (
    DEFAULT_BUNDLE,
    META_FILE,
    MINER_FILE,
    MODEL_FILE,
    SESSION_FILE,
    BundleError,
    load_bundle,
    write_bundle,
)
from logguardian.config import Settings
from logguardian.detectors.model import ModelStage
from logguardian.server import Sidecar
from test_model_stage import BLOCK, NORMAL, block_lines

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def bundle_copy(tmp_path: Path) -> Path:
    target = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, target)
    return target


def rewrite_meta(path: Path, **changes: object) -> None:
    meta = json.loads((path / META_FILE).read_text())
    meta.update(changes)
    (path / META_FILE).write_text(json.dumps(meta))


def test_default_bundle_loads_and_predicts_a_distribution(bundle_copy: Path) -> None:
    bundle = load_bundle(bundle_copy)
    import numpy as np

    probs = np.exp(bundle.predict(np.zeros((3, bundle.window), dtype=np.int64)))
    assert probs.shape == (3, len(bundle.vocab))
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: shutil.rmtree(p), "not found"),
        (lambda p: (p / META_FILE).unlink(), "has no bundle.json"),
        (lambda p: (p / META_FILE).write_text("{not json"), "not valid JSON"),
        (lambda p: (p / META_FILE).write_text("[1, 2]"), "is not a logguardian-bundle"),
        (lambda p: rewrite_meta(p, format_version=99), "format version 99"),
        (lambda p: rewrite_meta(p, window="ten"), "bad field"),
        (lambda p: (p / MODEL_FILE).unlink(), "has no model.onnx"),
        (lambda p: (p / MODEL_FILE).write_bytes(b"\x08garbage"), "corrupt (checksum"),
        (lambda p: (p / MINER_FILE).write_text("{}"), "miner.json is corrupt"),
        (lambda p: (p / SESSION_FILE).unlink(), "session.onnx is listed but missing"),
    ],
)
def test_broken_bundles_are_clear_errors(
    bundle_copy: Path, damage: Callable[[Path], None], message: str
) -> None:
    damage(bundle_copy)
    with pytest.raises(BundleError, match=message.replace("(", r"\(")):
        load_bundle(bundle_copy)


def test_a_model_that_onnxruntime_rejects_is_an_error_even_with_a_valid_checksum(
    bundle_copy: Path,
) -> None:
    meta = json.loads((bundle_copy / META_FILE).read_text())
    miner = json.loads((bundle_copy / MINER_FILE).read_text())
    write_bundle(bundle_copy, meta, b"this is not an onnx graph", miner)
    with pytest.raises(BundleError, match=r"onnxruntime cannot load model\.onnx"):
        load_bundle(bundle_copy)


def _records_processed(sidecar: Sidecar, service: str) -> float:
    value = sidecar.metrics.registry.get_sample_value(
        "logguardian_records_total", {"service": service}
    )
    return value or 0.0


def _payload(block: int, t0: float) -> list[dict[str, object]]:
    return [
        {"log": r.message, "date": r.ts, "service": "hdfs"}
        for r in block_lines(block, NORMAL, t0=t0)
    ]


async def _wait(
    predicate: Callable[[], bool], what: Callable[[], object], timeout: float = 30.0
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, f"timed out at {what()!r}"
        await asyncio.sleep(0.05)


async def test_sidecar_runs_on_statistics_alone_with_a_corrupt_bundle(
    make_settings: Callable[..., Settings], bundle_copy: Path
) -> None:
    (bundle_copy / META_FILE).write_text("{truncated")
    sidecar = Sidecar(make_settings(model={"bundle": str(bundle_copy)}))
    await sidecar.start()
    try:
        base = f"http://127.0.0.1:{sidecar.http_port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/readyz") as resp:
                body = await resp.json()
            assert resp.status == 200
            detail = body["checks"]["model"]["detail"]
            assert "statistics alone" in detail and "not valid JSON" in detail
            async with http.get(f"{base}/metrics") as resp:
                text = await resp.text()
            assert "logguardian_model_loaded 0.0" in text
            async with http.post(f"{base}/api/v1/logs", json=_payload(1, 1e9)) as resp:
                assert resp.status == 200
        await _wait(
            lambda: _records_processed(sidecar, "hdfs") == len(NORMAL),
            lambda: _records_processed(sidecar, "hdfs"),
        )
    finally:
        await sidecar.stop()


async def test_hot_reload_swaps_the_model_without_dropping_records(
    make_settings: Callable[..., Settings], bundle_copy: Path
) -> None:
    sidecar = Sidecar(
        make_settings(
            model={"bundle": str(bundle_copy), "session_key": BLOCK, "reload_seconds": 0.1}
        )
    )
    stage = sidecar.parts.require(ModelStage)
    await sidecar.start()
    sent = 0
    try:
        assert sidecar.metrics.model_loaded._value.get() == 1
        before = await sidecar.pipeline.run_now(block_lines(1, NORMAL, t0=1e9))
        assert before.reasons == {}, "the shipped model finds a normal block normal"
        old_generation = stage.generation
        url = f"http://127.0.0.1:{sidecar.http_port}/api/v1/logs"
        async with aiohttp.ClientSession() as http:
            for n in range(40):
                if n == 15:
                    # a retrained bundle that finds every step surprising
                    meta = json.loads((bundle_copy / META_FILE).read_text())
                    meta["thresholds"] = dict(
                        meta["thresholds"], sequence_surprise=1e-3, surprise_base=0.0
                    )
                    write_bundle(
                        bundle_copy,
                        meta,
                        (bundle_copy / MODEL_FILE).read_bytes(),
                        json.loads((bundle_copy / MINER_FILE).read_text()),
                        (bundle_copy / SESSION_FILE).read_bytes(),
                    )
                async with http.post(url, json=_payload(100 + n, 1e9 + n)) as resp:
                    assert resp.status == 200
                    assert (await resp.json())["accepted"] == len(NORMAL)
                sent += len(NORMAL)
                await asyncio.sleep(0.03)
        await _wait(lambda: stage.generation == old_generation + 1, lambda: stage.error)
        # every record posted, plus the block scored synchronously before the swap
        await _wait(
            lambda: _records_processed(sidecar, "hdfs") == sent + len(NORMAL),
            lambda: (_records_processed(sidecar, "hdfs"), sent),
        )
        after = await sidecar.pipeline.run_now(block_lines(2, NORMAL, t0=2e9))
        assert after.reasons, "the reloaded model is the one scoring"
        assert all(r.kind == "sequence" for rs in after.reasons.values() for r in rs)
        ok, detail = sidecar.readiness["model"]()
        assert ok and f"generation {old_generation + 1}" in detail
    finally:
        await sidecar.stop()
    assert _records_processed(sidecar, "hdfs") == sent + 2 * len(NORMAL)


async def test_a_broken_reload_keeps_serving_the_previous_model(
    make_settings: Callable[..., Settings], bundle_copy: Path
) -> None:
    sidecar = Sidecar(make_settings(model={"bundle": str(bundle_copy), "reload_seconds": 60}))
    stage = sidecar.parts.require(ModelStage)
    loaded = stage.bundle
    (bundle_copy / MODEL_FILE).write_bytes(b"half written")
    assert await stage.check_reload() is False
    assert stage.bundle is loaded
    ok, detail = stage.readiness()
    assert ok and "reload failed" in detail and "checksum" in detail
    assert sidecar.metrics.model_loaded._value.get() == 1


def test_scoring_works_where_torch_cannot_be_imported(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import json, sys
        sys.modules["torch"] = None  # any `import torch` now raises ImportError
        sys.modules["onnx"] = None
        sys.path.insert(0, {str(ROOT / "tests")!r})
        from logguardian.config import load_settings
        from logguardian.detectors.model import ModelStage
        from logguardian.metrics import Metrics
        from logguardian.pipeline import Batch
        from logguardian.templates.stage import TemplateStage
        from test_model_stage import BLOCK, NORMAL, block_lines
        settings = load_settings(state_dir={str(tmp_path / "state")!r},
                                 model={{"session_key": BLOCK}})
        miner, stage = TemplateStage(settings), ModelStage(settings, Metrics())
        batch = Batch(records=block_lines(1, NORMAL, 1e9) + block_lines(2, NORMAL[::-1], 1e9),
                      now=1e9)
        miner.process(batch)
        stage.process(batch)
        flagged = sorted({{batch.sessions[i] for i in batch.reasons}})
        print(json.dumps({{"error": stage.error, "flagged": flagged,
                          "torch": sys.modules.get("torch") is not None}}))
    """)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"error": None, "flagged": ["blk_2"], "torch": False}


def test_without_a_bundle_records_still_get_their_session_key(tmp_path: Path) -> None:
    from logguardian.config import load_settings
    from logguardian.detectors.model import ModelStage
    from logguardian.metrics import Metrics
    from logguardian.pipeline import Batch

    metrics = Metrics()
    settings = load_settings(
        state_dir=tmp_path / "s", model={"bundle": str(tmp_path / "nothing"), "session_key": BLOCK}
    )
    stage = ModelStage(settings, metrics)
    assert stage.bundle is None and "not found" in (stage.error or "")
    assert metrics.model_loaded._value.get() == 0
    records = block_lines(9, [22, 20], t0=1e9)
    batch = Batch(records=records, now=1e9, templates=["t"] * 2, template_ids=["i"] * 2)
    stage.process(batch)
    assert batch.sessions == ["blk_9", "blk_9"] and batch.reasons == {}
