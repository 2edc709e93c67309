"""Detection through a running sidecar: synchronous score API shapes, incidents from
replayed traffic at GET /api/v1/incidents and in the local store, and detector state
(baselines, novelty, open incidents) surviving a restart."""

from __future__ import annotations

import gzip
import itertools
from collections.abc import Callable
from pathlib import Path

import aiohttp
import orjson
from logguardian.commands.demo import sample_dir
from logguardian.config import Settings
from logguardian.detectors.online import Detection
from logguardian.exporters.local import LocalStore
from logguardian.server import Sidecar

SAMPLE = sample_dir()
TRUTH = orjson.loads((SAMPLE / "truth.json").read_bytes())


def sample_lines(until: float) -> list[bytes]:
    with gzip.open(SAMPLE / "sample.jsonl.gz", "rb") as f:
        return list(
            itertools.takewhile(
                lambda line: orjson.loads(line)["date"] < until,
                (line for line in f.read().split(b"\n") if line),
            )
        )


async def replay(sidecar: Sidecar, lines: list[bytes]) -> None:
    base = f"http://127.0.0.1:{sidecar.http_port}"
    async with aiohttp.ClientSession() as http:
        for i in range(0, len(lines), 1000):
            async with http.post(
                f"{base}/api/v1/logs",
                data=b"\n".join(lines[i : i + 1000]),
                headers={"Content-Type": "application/x-ndjson"},
            ) as resp:
                assert resp.status == 200
    while sidecar.pipeline.depth:
        await sidecar.pipeline.run_now([])
    await sidecar.pipeline.run_now([])


async def test_score_api_shapes(sidecar: Sidecar) -> None:
    base = f"http://127.0.0.1:{sidecar.http_port}"
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{base}/api/v1/score", json={"message": "GET /cart/1 200", "service": "shop"}
        ) as resp:
            one = await resp.json()
        assert set(one) == {"template_id", "template", "session", "score", "anomaly", "reasons"}
        assert one["template"] and one["anomaly"] is False  # warm-up: nothing alerts yet
        async with http.post(
            f"{base}/api/v1/score",
            json=[
                {"message": "GET /cart/2 200"},
                {"nomessage": 1},
                7,
                {"message": "GET /cart/3 200"},
            ],
        ) as resp:
            many = await resp.json()
        assert [("error" in m) for m in many] == [False, True, True, False]
        assert "no message field" in many[1]["error"]
        assert many[0]["template_id"] == many[3]["template_id"] == one["template_id"]
        async with http.post(f"{base}/api/v1/score", json={"nomessage": 1}) as resp:
            assert resp.status == 400
        async with http.post(f"{base}/api/v1/score", data=b"[{") as resp:
            assert resp.status == 400
        async with http.post(f"{base}/api/v1/score", json="text") as resp:
            assert resp.status == 400
        # Logstash's `http_compression`: a gzip body scores like a plain one.
        async with http.post(
            f"{base}/api/v1/score",
            data=gzip.compress(orjson.dumps({"message": "GET /cart/4 200"})),
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        ) as resp:
            assert resp.status == 200
            assert (await resp.json())["template_id"] == one["template_id"]
        async with http.post(
            f"{base}/api/v1/score",
            data=b"not gzip",
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        ) as resp:
            assert resp.status == 400
            assert "gzip" in (await resp.json())["error"]


async def test_incidents_from_replayed_traffic_and_restart(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """The first hour of the demo sample holds the payments error burst (40 min in)."""
    burst = next(i for i in TRUTH["injections"] if i["kind"] == "error_burst")
    settings = make_settings()
    sidecar = Sidecar(settings)
    await sidecar.start()
    try:
        await replay(sidecar, sample_lines(burst["start"] + 120))
        base = f"http://127.0.0.1:{sidecar.http_port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/api/v1/incidents?open=true") as resp:
                open_now = (await resp.json())["incidents"]
            async with http.get(f"{base}/api/v1/anomalies?service=payments") as resp:
                stored = (await resp.json())["anomalies"]
            async with http.get(f"{base}/metrics") as resp:
                metrics = await resp.text()
        pay = [i for i in open_now if i["service"] == "payments"]
        assert len(pay) == 1 and pay[0]["open"] is True
        assert burst["start"] <= pay[0]["started_at"] <= burst["start"] + 60
        assert pay[0]["alertname"] == "LogRateAnomaly"
        assert any("error ratio in payments" in r for r in pay[0]["reasons"])
        assert stored, "annotations reach the local store"
        assert 'logguardian_incidents_open{service="payments"} 1.0' in metrics
        detection = sidecar.parts.require(Detection)
        learned = detection.stats.services["payments"].limits.copy()
        assert learned
    finally:
        await sidecar.stop()
    assert (settings.state_dir / "detection.json").is_file()
    stored_incidents = sidecar.parts.require(LocalStore).incidents(open_only=True)
    assert pay[0]["id"] in {i["id"] for i in stored_incidents}, "incidents reach the store"

    # Restart on the same state dir: baselines, known templates and the open
    # incident are back; the next minutes of traffic raise nothing new.
    sidecar = Sidecar(settings)
    await sidecar.start()
    try:
        detection = sidecar.parts.require(Detection)
        assert detection.stats.services["payments"].limits == learned
        (still_open,) = [
            i for i in detection.incidents.list(open_only=True) if i.service == "payments"
        ]
        assert still_open.id == pay[0]["id"]
        since = burst["start"] + 120
        lines = sample_lines(burst["start"] + 600)
        await replay(sidecar, [line for line in lines if orjson.loads(line)["date"] >= since])
        after = sidecar.parts.require(LocalStore).anomalies(None, since, 1000)
        assert after, "the rest of the burst is still caught against restored baselines"
        kinds = {r["kind"] for a in after for r in a["reasons"]}
        assert "novelty" not in kinds, "a restart must not make known templates look new"
        assert "silence" not in kinds
        assert {a["service"] for a in after} == {"payments"}
    finally:
        await sidecar.stop()
