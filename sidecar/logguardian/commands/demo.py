"""`logguardian demo`: the embedded-default showcase.

Starts a real sidecar on free local ports with a temporary state dir, replays the
shipped sample (four services, two hours of logs with four injected incidents)
through the real HTTP receiver as Fluent Bit's `json_lines` output would, then
reads the findings back from the REST API and compares them with the ground truth.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import logging
import socket
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from tqdm import tqdm

from ..config import load_settings
from ..detectors.fuse import FuseStage
from ..explain.stage import ExplainStage
from ..server import Sidecar
from . import demo_exceptions

CHUNK_RECORDS = 500  # records per POST, like a Fluent Bit flush
MATCH_BEFORE = 60.0
MATCH_AFTER = 600.0
KIND_TEXT = {
    "error_burst": "error burst",
    "new_fatal": "new fatal template",
    "rate_spike": "rate spike",
    "silence": "service silent",
}


def sample_dir() -> Path:
    return Path(str(resources.files("logguardian") / "data" / "demo"))


def load_sample() -> tuple[list[bytes], list[float], dict[str, Any]]:
    root = sample_dir()
    truth = orjson.loads((root / "truth.json").read_bytes())
    with gzip.open(root / "sample.jsonl.gz", "rb") as f:
        lines = [line for line in f.read().split(b"\n") if line]
    stamps = [orjson.loads(line)["date"] for line in lines[::CHUNK_RECORDS]]
    return lines, stamps, truth


async def replay(url: str, lines: list[bytes], stamps: list[float], speed: float) -> float:
    """POST the sample in json_lines chunks; honour 429/503 + Retry-After like Fluent Bit."""
    started = time.monotonic()
    first = stamps[0]
    bar = tqdm(
        total=len(lines),
        unit="rec",
        unit_scale=True,
        desc="replaying",
        file=sys.stderr,
        disable=None,
        leave=False,
    )
    async with aiohttp.ClientSession() as http:
        for n, i in enumerate(range(0, len(lines), CHUNK_RECORDS)):
            if speed > 0:
                due = started + (stamps[n] - first) / speed
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            body = b"\n".join(lines[i : i + CHUNK_RECORDS]) + b"\n"
            while True:
                async with http.post(
                    url, data=body, headers={"Content-Type": "application/x-ndjson"}
                ) as resp:
                    if resp.status in (429, 503):
                        await asyncio.sleep(float(resp.headers.get("Retry-After", "1")))
                        continue
                    if resp.status != 200:
                        raise RuntimeError(f"ingest answered {resp.status}: {await resp.text()}")
                    break
            bar.update(min(CHUNK_RECORDS, len(lines) - i))
    bar.close()
    return time.monotonic() - started


async def run_demo(state_dir: Path, speed: float) -> int:
    lines, stamps, truth = load_sample()
    settings = load_settings(
        state_dir=state_dir,
        log_level="warning",
        receivers={
            "http": {"host": "127.0.0.1", "port": _free_port()},
            "forward": {"port": 0},
            "grpc": {"port": 0},
            "tcp": {"port": 0},
        },
        exceptions={"source_url_template": demo_exceptions.SOURCE_URL},
    )
    sidecar = Sidecar(settings)
    await sidecar.start()
    base = f"http://127.0.0.1:{sidecar.http_port}"
    try:
        print(f"LogGuardian demo: sidecar on {base}, state in {state_dir}")
        print(
            f"replaying {len(lines):,} records from {len(truth['services'])} services "
            f"({truth['duration'] / 3600:g} h of logs) through POST /api/v1/logs ..."
        )
        elapsed = await replay(f"{base}/api/v1/logs", lines, stamps, speed)
        while sidecar.pipeline.depth:
            await asyncio.sleep(0.05)
        await sidecar.pipeline.run_now([])  # the worker has finished every batch
        explain = sidecar.parts.get(ExplainStage)
        if explain is not None and explain.explainer.enabled:
            print("waiting for LLM explanations (LOGGUARDIAN_EXPLAIN__LLM__BASE_URL) ...")
            await explain.explainer.idle()
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{base}/api/v1/incidents?limit=1000") as resp,
        ):
            incidents = (await resp.json())["incidents"]
        fuse = sidecar.parts.require(FuseStage)
        per_service = dict(fuse.anomalies_by_service)
        async with aiohttp.ClientSession() as http:
            scene = await demo_exceptions.run_scene(http, base, stamps[-1] + 600)
    finally:
        await sidecar.stop()
    print(f"replayed in {elapsed:.1f} s ({len(lines) / elapsed:,.0f} records/s)\n")
    report(incidents, per_service, truth)
    print("\n".join(scene))
    return 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S")


def report(
    incidents: list[dict[str, Any]], per_service: dict[str, int], truth: dict[str, Any]
) -> None:
    injections = truth["injections"]
    incidents = sorted(incidents, key=lambda i: i["started_at"])
    label = {inc["id"]: f"#{n}" for n, inc in enumerate(incidents, 1)}
    matched: dict[str, dict[str, Any]] = {}
    found: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    for inj in injections:
        hit = next(
            (
                inc
                for inc in incidents
                if inc["service"] == inj["service"]
                and inj["start"] - MATCH_BEFORE <= inc["started_at"] <= inj["end"] + MATCH_AFTER
            ),
            None,
        )
        found.append((inj, hit))
        if hit is not None:
            matched[hit["id"]] = inj

    print(f"Incidents found: {len(incidents)}")
    for inc in incidents:
        resolved = inc["resolved_at"]
        end = "still open" if resolved is None else f"resolved {_clock(resolved)}"
        print(
            f"  {label[inc['id']]:>3} {inc['service']:<10} {inc['alertname']:<15} "
            f"{inc['severity']:<8} {_clock(inc['started_at'])} -> {end}, "
            f"{inc['anomalies']} anomalous records"
        )
        inj = matched.get(inc["id"])
        if inj is not None:
            delay = max(0.0, inc["started_at"] - inj["start"])
            print(
                f"      matches injected {KIND_TEXT[inj['kind']]} at {_clock(inj['start'])}: "
                f"detected after {delay:.0f} s"
            )
        else:
            print("      matches no injected incident (a false alarm)")
        for text in inc["reasons"][:3]:
            print(f"      why: {text}")
        if inc["examples"]:
            print(f"      e.g. {inc['examples'][0][:110]}")
        explained = inc.get("explanation")
        if explained:
            model = f", {explained['model']}" if explained.get("model") else ""
            print(f"      explained ({explained['source']}{model}): {explained['summary'][:200]}")
            print(f"      likely cause: {explained['likely_cause'][:200]}")
    print("\nAnomalous records per service:")
    for service in truth["services"]:
        print(f"  {service:<10} {per_service.get(service, 0):>6}")
    print("\nAgainst the injected ground truth:")
    delays = []
    for inj, hit in found:
        if hit is None:
            status = "MISSED"
        else:
            delay = max(0.0, hit["started_at"] - inj["start"])
            delays.append(delay)
            status = f"detected after {delay:.0f} s by {label[hit['id']]}"
        print(
            f"  {KIND_TEXT[inj['kind']]:<19} {inj['service']:<10} {_clock(inj['start'])}  {status}"
        )
    false = len(incidents) - len(matched)
    median = f", median time to detect {statistics.median(delays):.0f} s" if delays else ""
    print(
        f"\n{len(delays)}/{len(injections)} injected incidents detected{median}; "
        f"{false} incident(s) matching no injection."
    )


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.state_dir is not None:
        return asyncio.run(run_demo(args.state_dir, args.speed))
    with tempfile.TemporaryDirectory(prefix="logguardian-demo-") as tmp:
        return asyncio.run(run_demo(Path(tmp), args.speed))
