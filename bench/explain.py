"""Incident explanations over the scenarios bench, with a real local model.

Seeded multi-service traffic with injected incidents (logguardian.scenarios) goes
through a real sidecar's pipeline twice in one process: without explanations (the
peer) and with an OpenAI-compatible LLM (llama.cpp's server with the Gemma 3 270M
GGUF that tests/services/llm.sh installs, started here). Reports calls per
incident, cache hit rate, LLM latency p50/p95, the share of answers the grounding
check accepted, and the ingest rate with and without explanations.

    .venv/bin/python bench/explain.py [--days 1] [--seed 0] [--base-url URL --model M]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sidecar"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the local model

from logguardian import scenarios
from logguardian.config import listener_names, load_settings
from logguardian.explain.stage import ExplainStage
from logguardian.incidents import IncidentStage
from logguardian.record import Record
from logguardian.server import Sidecar
from services.llm import MODEL_ALIAS, MODEL_FILE, server_argv, services_dir

START = 1_760_000_000 - 1_760_000_000 % 86400
CHUNK = 500


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def llama_server(log: Path) -> Iterator[str]:
    root = services_dir()
    python, model = root / "llm-venv/bin/python", root / "models" / MODEL_FILE
    if not python.is_file() or not model.is_file():
        raise SystemExit(f"no local model in {root}: run tests/services/llm.sh")
    port = _free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            server_argv(python, model, port), stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"llama server did not start:\n{log.read_text()[-2000:]}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{url}/models", timeout=2) as resp,
            ):
                if json.loads(resp.read())["data"]:
                    break
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


def records(days: float, seed: int) -> list[Record]:
    duration = days * 86400
    plan = scenarios.plan(START, duration, per_kind=max(1, int(days * 2)), seed=seed)
    traffic = scenarios.generate(START, duration, plan, seed=seed)
    return [
        Record(ts=t, message=line, service=svc, level=level, attributes={}, source="bench")
        for t, svc, level, line in scenarios.render(traffic, seed)
    ]


async def run(
    recs: list[Record], state: Path, base_url: str | None, model: str
) -> dict[str, object]:
    settings = load_settings(
        state_dir=state,
        log_level="warning",
        receivers={name: {"host": "127.0.0.1", "port": 0} for name in listener_names()},
        explain={
            "llm": {
                "base_url": base_url,
                "model": model,
                "timeout_seconds": 300,
                "max_tokens": 600,
            },
            # A local llama.cpp server answers one request at a time: a second one in
            # flight would only wait there, and time out.
            "concurrency": 1,
        },
    )
    sidecar = Sidecar(settings)
    await sidecar.start()
    try:
        started = time.perf_counter()
        for i in range(0, len(recs), CHUNK):
            # Like a receiver: offer, and wait for room when the queue is full.
            await sidecar.pipeline.put(recs[i : i + CHUNK], "bench")
        while sidecar.pipeline.depth:
            await asyncio.sleep(0.01)
        await sidecar.pipeline.run_now([])
        ingest_seconds = time.perf_counter() - started
        stage = sidecar.parts.require(ExplainStage)
        explainer = stage.explainer
        await explainer.idle()
        llm_seconds = time.perf_counter() - started
        incidents = sidecar.parts.require(IncidentStage).list(limit=100_000)
        return {
            "rate": len(recs) / ingest_seconds,
            "incidents": incidents,
            "outcomes": dict(explainer.outcomes),
            "cache_hits": explainer.cache_hits,
            "rejections": dict(explainer.rejections),
            "rejected": list(explainer.rejected),
            "contexts": {i: c.as_dict() for i, c in stage.contexts.items()},
            "latencies": list(explainer.latencies),
            "llm_seconds": llm_seconds,
        }
    finally:
        await sidecar.stop()


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


async def main_async(args: argparse.Namespace) -> int:
    recs = records(args.days, args.seed)
    print(f"scenarios: {args.days:g} days x 4 services, seed {args.seed}, {len(recs):,} records")
    with tempfile.TemporaryDirectory(prefix="bench-explain-") as tmp:
        root = Path(tmp)
        base = await run(recs, root / "off", None, args.model)
        if args.base_url:
            url_cm: contextlib.AbstractContextManager[str] = contextlib.nullcontext(args.base_url)
        else:
            url_cm = llama_server(root / "llama.log")
        with url_cm as url:
            on = await run(recs, root / "on", url, args.model)
    incidents = on["incidents"]
    assert isinstance(incidents, list)
    outcomes: dict[str, int] = on["outcomes"]  # type: ignore[assignment]
    answered = outcomes["accepted"] + outcomes["rejected"] + outcomes["invalid"]
    attempts = sum(outcomes.values())
    hits = int(on["cache_hits"])  # type: ignore[call-overload]
    latencies: list[float] = on["latencies"]  # type: ignore[assignment]
    by_source: dict[str, int] = {}
    for inc in incidents:
        src = (inc.explanation or {}).get("source", "none")
        by_source[src] = by_source.get(src, 0) + 1
    print(f"model               {args.model} at {args.base_url or 'local llama.cpp server'}")
    print(f"incidents           {len(incidents)} (explanations by source: {by_source})")
    print(
        f"LLM calls           {attempts - outcomes['budget'] - outcomes['dropped']} "
        f"= {(attempts - outcomes['budget'] - outcomes['dropped']) / max(1, len(incidents)):.2f}"
        f" per incident; outcomes { ({k: v for k, v in outcomes.items() if v}) }"
    )
    print(f"cache hit rate      {hits}/{hits + attempts} = {hits / max(1, hits + attempts):.0%}")
    if latencies:
        print(
            f"LLM latency         p50 {_pct(latencies, 50):.1f} s, p95 {_pct(latencies, 95):.1f} s"
            f" over {len(latencies)} calls"
        )
    print(
        f"grounding accepted  {outcomes['accepted']}/{answered} answers"
        f" = {outcomes['accepted'] / max(1, answered):.0%}"
        f" (rejected {outcomes['rejected']}, invalid JSON/schema {outcomes['invalid']})"
    )
    rejections: dict[str, int] = on["rejections"]  # type: ignore[assignment]
    if rejections:
        why = ", ".join(f"{k} {v}" for k, v in sorted(rejections.items(), key=lambda kv: -kv[1]))
        print(f"rejected because    {why} (answers; one answer can have several reasons)")
    r_off, r_on = float(base["rate"]), float(on["rate"])  # type: ignore[arg-type]
    print(
        f"ingest rate         {r_on:,.0f} rec/s with explanations, {r_off:,.0f} rec/s without"
        f" (ratio {r_on / r_off:.2f}; the local model shares this machine's CPUs)"
    )
    print(f"all explanations in {float(on['llm_seconds']):.0f} s after the first record")  # type: ignore[arg-type]
    if args.dump:
        dump = {
            "rejected": [{"answer": a, "problems": p} for a, p in on["rejected"]],  # type: ignore[attr-defined]
            "incidents": [
                {"explanation": i.explanation, "context": on["contexts"].get(i.id)}  # type: ignore[attr-defined]
                for i in incidents
            ],
        }
        Path(args.dump).write_text(json.dumps(dump, indent=1, default=str))
        print(f"answers and contexts written to {args.dump}")
    for inc in sorted(incidents, key=lambda i: i.started_at)[: args.show]:
        e = inc.explanation or {}
        print(f"\n[{inc.service} {inc.alertname} {inc.severity}] ({e.get('source')})")
        print(f"  summary: {e.get('summary')}")
        print(f"  likely cause: {e.get('likely_cause')}")
        for ev in e.get("evidence") or []:
            print(f"  evidence: {ev.get('ref')}: {ev.get('fact')}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--base-url", help="use this OpenAI-compatible server instead")
    parser.add_argument("--model", default=MODEL_ALIAS)
    parser.add_argument("--dump", help="write rejected answers and contexts to this JSON file")
    parser.add_argument("--show", type=int, default=3, help="explanations to print")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
