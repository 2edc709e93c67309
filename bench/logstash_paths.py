"""Logstash integration paths (issue 7): what the `http` filter on /api/v1/score
(logstash/pipeline/logguardian-enrich.conf, one request per event) costs against the
`http` output with json_batch (logguardian-ship.conf, 125 events per request), on one
sidecar with the real chain in this process.

Both load generators send exactly the bodies those plugins send (Logstash 8 ECS
events; the filter's 4-field JSON object), pre-serialized, with the concurrency the
shipped pipelines use (pipeline.workers 4 for enrich; one batch in flight per worker
for ship). Figures are events/s until every event is scored (enrich: the answer;
ship: logguardian_records_total reaches the count). The ratio is the point: use
enrich for moderate volume and ship for the firehose.

    .venv/bin/python bench/logstash_paths.py [--events N] [--workers W]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import tempfile
import time
from datetime import UTC, datetime

import aiohttp
import orjson
from logguardian.config import load_settings
from logguardian.server import Sidecar

BATCH = 125  # Logstash pipeline.batch.size default


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def events(n: int, seed: int) -> list[dict[str, object]]:
    rng = random.Random(seed)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"
    shapes = [
        "GET /api/items/{} 200 {} ms",
        "user {} logged in from 10.0.0.{}",
        "cache miss for key product:{} after {} ms",
        "payment {} declined code {}",
    ]
    return [
        {
            "@timestamp": stamp,
            "@version": "1",
            "message": rng.choice(shapes).format(rng.randint(1, 9999), rng.randint(1, 250)),
            "host": {"name": "web-1"},
            "service": {"name": f"svc-{i % 4}"},
            "log": {"level": "info"},
        }
        for i in range(n)
    ]


async def run_enrich(url: str, evs: list[dict[str, object]], workers: int) -> float:
    bodies = [
        orjson.dumps(
            {
                "message": e["message"],
                "@timestamp": e["@timestamp"],
                "service": e["service"]["name"],
                "level": "info",
            }
        )  # type: ignore[index]
        for e in evs
    ]
    queue = iter(bodies)
    started = time.perf_counter()

    async def worker(http: aiohttp.ClientSession) -> None:
        for body in queue:
            async with http.post(
                f"{url}/api/v1/score", data=body, headers={"Content-Type": "application/json"}
            ) as resp:
                assert resp.status == 200, await resp.text()
                await resp.read()

    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(worker(http) for _ in range(workers)))
    return len(bodies) / (time.perf_counter() - started)


async def run_ship(sidecar: Sidecar, url: str, evs: list[dict[str, object]], workers: int) -> float:
    bodies = [orjson.dumps(evs[i : i + BATCH]) for i in range(0, len(evs), BATCH)]
    queue = iter(bodies)
    before = processed(sidecar)
    started = time.perf_counter()

    async def worker(http: aiohttp.ClientSession) -> None:
        for body in queue:
            while True:
                async with http.post(
                    f"{url}/api/v1/logs", data=body, headers={"Content-Type": "application/json"}
                ) as resp:
                    await resp.read()
                    if resp.status == 200:
                        break
                    assert resp.status == 503, resp.status  # retried, as Logstash does
                await asyncio.sleep(0.05)

    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(worker(http) for _ in range(workers)))
    while processed(sidecar) - before < len(evs):
        await asyncio.sleep(0.005)
    return len(evs) / (time.perf_counter() - started)


def processed(sidecar: Sidecar) -> float:
    total = 0.0
    for family in sidecar.metrics.registry.collect():
        if family.name == "logguardian_records":
            total += sum(s.value for s in family.samples if s.name.endswith("_total"))
    return total


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=4000, help="events per enrich run")
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as state:
        settings = load_settings(
            state_dir=state,
            log_level="warning",
            receivers={
                "http": {"host": "127.0.0.1", "port": free_port()},
                "forward": {"port": 0},
                "tcp": {"port": 0},
                "grpc": {"port": 0},
            },
        )
        sidecar = Sidecar(settings)
        await sidecar.start()
        try:
            url = f"http://127.0.0.1:{sidecar.http_port}"
            await run_ship(sidecar, url, events(5000, 0), args.workers)  # warm-up
            enrich = await run_enrich(url, events(args.events, 1), args.workers)
            ship = await run_ship(sidecar, url, events(args.events * 10, 2), args.workers)
        finally:
            await sidecar.stop()
    print(f"{'path':<44}{'events/s':>12}")
    print(f"{'enrich: http filter -> /api/v1/score (1/req)':<44}{enrich:>12,.0f}")
    print(f"{'ship: http output json_batch (125/req)':<44}{ship:>12,.0f}")
    print(f"ship / enrich: {ship / enrich:.1f}x")


if __name__ == "__main__":
    asyncio.run(main())
