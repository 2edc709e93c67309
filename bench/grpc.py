"""gRPC receiver throughput (issue 8): records/s via OTLP Export in batches of 1,000 and
via logguardian.v1.Ingest streams, against the HTTP receiver (JSON arrays of 1,000) as
the peer, all on one sidecar in this process.

The sidecar (real chain: miner, model, detectors, local store) runs here; the load
comes from a child process so client CPU does not share this interpreter's GIL. Request
bodies are serialized once up front, so the client's cost is sending, not encoding.
For each scenario:
  - acked/s: records acknowledged (= safely queued) per second, client-side;
  - processed/s: records through the whole chain per second, until the last one.
The queue is sized to hold a whole scenario so "acked/s" is the receiver's own rate
rather than the chain's. A second table times decode + mapping alone per 1,000-record
request (no network, no pipeline).

    .venv/bin/python bench/grpc.py [--records N] [--concurrency C] [--rounds R]
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file shares the `grpc` package's name: move its own directory to the end of the
# path (a stable sort on "is it this directory") so `import grpc` finds the real one.
sys.path.sort(key=lambda p: Path(p or ".").resolve() == Path(__file__).resolve().parent)

import argparse
import asyncio
import multiprocessing as mp
import tempfile
import time
from multiprocessing.connection import Connection
from typing import Any

import aiohttp
import grpc
import orjson
from logguardian.config import load_settings
from logguardian.receivers.grpc import IngestMapper, OtlpMapper
from logguardian.receivers.proto import ingest_pb2
from logguardian.record import DEFAULT_SERVICE_FIELDS, Normalizer
from logguardian.server import Sidecar
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

ROOT = Path(__file__).resolve().parents[1]
LOGHUB = ROOT.parent / "shared" / "data" / "loghub"
BATCH = 1000
OTLP_EXPORT = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
INGEST_PUSH = "/logguardian.v1.Ingest/Push"
INGEST_STREAM = "/logguardian.v1.Ingest/PushStream"
INGEST_ACKED = "/logguardian.v1.Ingest/PushAcked"


def corpus() -> list[tuple[str, str]]:
    """(service, line) from every Loghub-2k system, interleaved like a node's mixed stream."""
    per_system = [
        [(path.parent.name.lower(), line) for line in path.read_text().splitlines() if line]
        for path in sorted(LOGHUB.glob("*/*_2k.log"))
    ]
    mixed = []
    for i in range(max(len(lines) for lines in per_system)):
        mixed.extend(lines[i] for lines in per_system if i < len(lines))
    return mixed


def batches(lines: list[tuple[str, str]], total: int) -> list[list[tuple[str, str]]]:
    out = []
    for start in range(0, total, BATCH):
        out.append([lines[(start + i) % len(lines)] for i in range(min(BATCH, total - start))])
    return out


def otlp_request(
    batch: list[tuple[str, str]], now_ns: int
) -> logs_service_pb2.ExportLogsServiceRequest:
    """One ResourceLogs per service, as a collector batching a node's pods would send."""
    by_service: dict[str, list[str]] = {}
    for service, line in batch:
        by_service.setdefault(service, []).append(line)
    return logs_service_pb2.ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                resource=Resource(
                    attributes=[
                        KeyValue(key="service.name", value=AnyValue(string_value=service)),
                        KeyValue(key="k8s.namespace.name", value=AnyValue(string_value="bench")),
                    ]
                ),
                scope_logs=[
                    ScopeLogs(
                        log_records=[
                            LogRecord(
                                time_unix_nano=now_ns,
                                severity_number=9,
                                severity_text="INFO",
                                body=AnyValue(string_value=line),
                            )
                            for line in lines
                        ]
                    )
                ],
            )
            for service, lines in by_service.items()
        ]
    )


def ingest_request(batch: list[tuple[str, str]], now: float) -> ingest_pb2.PushRequest:
    return ingest_pb2.PushRequest(
        records=[
            ingest_pb2.LogRecord(message=line, service=service, time=now) for service, line in batch
        ]
    )


def http_body(batch: list[tuple[str, str]], now: float) -> bytes:
    return orjson.dumps([{"log": line, "service": service, "time": now} for service, line in batch])


def payloads(kind: str, total: int) -> list[bytes]:
    now = time.time()
    lines = corpus()
    if kind == "otlp":
        return [otlp_request(b, int(now * 1e9)).SerializeToString() for b in batches(lines, total)]
    if kind == "http":
        return [http_body(b, now) for b in batches(lines, total)]
    return [ingest_request(b, now).SerializeToString() for b in batches(lines, total)]


# -- load generator (child process) -------------------------------------------------------


async def _unary(target: str, method: str, bodies: list[bytes], concurrency: int) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(method)  # raw bytes in and out
        pending = iter(bodies)

        async def worker() -> None:
            for body in pending:
                await call(body, timeout=60)

        await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _client_stream(target: str, bodies: list[bytes]) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.stream_unary(INGEST_STREAM)

        async def requests() -> Any:
            for body in bodies:
                yield body

        await call(requests(), timeout=120)


async def _acked_stream(target: str, bodies: list[bytes]) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.stream_stream(INGEST_ACKED)(timeout=120)

        async def write() -> None:
            for body in bodies:
                await call.write(body)
            await call.done_writing()

        writer = asyncio.create_task(write())
        acks = 0
        while await call.read() != grpc.aio.EOF:
            acks += 1
        await writer
        assert acks == len(bodies), (acks, len(bodies))


async def _http(url: str, bodies: list[bytes], concurrency: int) -> None:
    async with aiohttp.ClientSession() as session:
        pending = iter(bodies)

        async def worker() -> None:
            for body in pending:
                async with session.post(
                    url, data=body, headers={"Content-Type": "application/json"}
                ) as resp:
                    assert resp.status == 200, (resp.status, await resp.text())

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def client_main(
    conn: Connection, scenario: str, target: str, http_url: str, total: int, concurrency: int
) -> None:
    kind = "otlp" if scenario.startswith("otlp") else "http" if scenario == "http" else "ingest"
    bodies = payloads(kind, total)
    conn.send("ready")
    conn.recv()
    started = time.perf_counter()
    if scenario == "otlp":
        run = _unary(target, OTLP_EXPORT, bodies, concurrency)
    elif scenario == "push":
        run = _unary(target, INGEST_PUSH, bodies, concurrency)
    elif scenario == "stream":
        run = _client_stream(target, bodies)
    elif scenario == "acked":
        run = _acked_stream(target, bodies)
    else:
        run = _http(http_url, bodies, concurrency)
    asyncio.run(run)
    conn.send(time.perf_counter() - started)


# -- sidecar side ---------------------------------------------------------------------------


def processed_total(sidecar: Sidecar) -> float:
    return sum(
        s.value
        for family in sidecar.metrics.records.collect()
        for s in family.samples
        if s.name.endswith("_total")
    )


async def scenario_run(
    sidecar: Sidecar, scenario: str, total: int, concurrency: int
) -> tuple[float, float]:
    loop = asyncio.get_running_loop()
    parent, child = mp.get_context("spawn").Pipe()
    proc = mp.get_context("spawn").Process(
        target=client_main,
        args=(
            child,
            scenario,
            f"127.0.0.1:{sidecar.grpc_port}",
            f"http://127.0.0.1:{sidecar.http_port}/api/v1/logs",
            total,
            concurrency,
        ),
    )
    proc.start()
    assert await loop.run_in_executor(None, parent.recv) == "ready"
    before = processed_total(sidecar)
    started = time.perf_counter()
    parent.send("go")
    acked_seconds = await loop.run_in_executor(None, parent.recv)
    while processed_total(sidecar) - before < total:
        await asyncio.sleep(0.005)
    processed_seconds = time.perf_counter() - started
    await loop.run_in_executor(None, proc.join)
    return total / acked_seconds, total / processed_seconds


def decode_costs(total: int = 20 * BATCH) -> dict[str, float]:
    """µs per record to turn wire bytes of 1,000-record requests into Records."""
    fields = DEFAULT_SERVICE_FIELDS
    costs = {}
    otlp = OtlpMapper(fields)
    ingest = IngestMapper(fields)
    normalize = Normalizer("http", fields)
    cases = {
        "otlp": (
            payloads("otlp", total),
            lambda b: otlp.records(logs_service_pb2.ExportLogsServiceRequest.FromString(b), 0.0),
        ),
        "ingest": (
            payloads("ingest", total),
            lambda b: ingest.records(ingest_pb2.PushRequest.FromString(b).records, 0.0),
        ),
        "http json": (payloads("http", total), lambda b: [normalize(d) for d in orjson.loads(b)]),
    }
    for name, (bodies, decode) in cases.items():
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            for body in bodies:
                decode(body)
            best = min(best, time.perf_counter() - started)
        costs[name] = best / total * 1e6
    return costs


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as state:
        settings = load_settings(
            state_dir=Path(state),
            receivers={
                "http": {"host": "127.0.0.1", "port": 0},
                "forward": {"port": 0},
                "tcp": {"port": 0},
                "grpc": {"host": "127.0.0.1", "port": 0},
            },
            pipeline={"queue_records": args.records + BATCH},
        )
        # Port 0 disables a receiver, so bind the two we need to free ports.
        import socket

        def free() -> int:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                return int(s.getsockname()[1])

        settings.receivers.http.port = free()
        settings.receivers.grpc.port = free()
        sidecar = Sidecar(settings)
        await sidecar.start()
        try:
            # Warm-up: the miner learns the corpus' templates once, for every scenario alike.
            await scenario_run(sidecar, "push", 20 * BATCH, args.concurrency)
            results: dict[str, tuple[float, float]] = {}
            for _ in range(args.rounds):  # interleaved rounds, best of each: noise hits all
                for scenario in ("http", "otlp", "push", "stream", "acked"):
                    acked, processed = await scenario_run(
                        sidecar, scenario, args.records, args.concurrency
                    )
                    best = results.get(scenario, (0.0, 0.0))
                    results[scenario] = (max(acked, best[0]), max(processed, best[1]))
        finally:
            await sidecar.stop()

    names = {
        "http": "HTTP POST /api/v1/logs, JSON x1000 (peer)",
        "otlp": f"OTLP Export x1000, {args.concurrency} in flight",
        "push": f"Ingest.Push x1000, {args.concurrency} in flight",
        "stream": "Ingest.PushStream x1000, 1 stream",
        "acked": "Ingest.PushAcked x1000, 1 stream",
    }
    peer_acked, peer_processed = results["http"]
    print(
        f"gRPC receiver, {args.records:,} Loghub-2k records per scenario, real chain, "
        f"best of {args.rounds} interleaved rounds"
    )
    print(f"{'scenario':44} {'acked/s':>10} {'vs peer':>8} {'processed/s':>12} {'vs peer':>8}")
    for scenario, (acked, processed) in results.items():
        print(
            f"{names[scenario]:44} {acked:>10,.0f} {acked / peer_acked:>7.2f}x "
            f"{processed:>12,.0f} {processed / peer_processed:>7.2f}x"
        )

    costs = decode_costs()
    print("\ndecode + map to Records, per 1,000-record request (no network, no pipeline)")
    print(f"{'wire format':20} {'us/record':>10} {'vs http json':>13}")
    for name, cost in costs.items():
        print(f"{name:20} {cost:>10.2f} {cost / costs['http json']:>12.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
