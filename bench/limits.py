"""Issue 13 floods against a real `logguardian serve` on 127.0.0.1: RSS before, peak
and after each flood against a 400 MB ceiling, /healthz latency meanwhile, and the
JSON decode rate beside raw orjson on the same bytes (the machine is shared, so
only ratios are stable), for this tree and, with `--before`, another one.

    .venv/bin/python bench/limits.py [--scale 1.0] [--before ../main/sidecar]

Floods (sizes from the issue; `--scale` shrinks them):
  huge array      12 MB JSON array of 1M tiny records (one body)       → 413
  gzip bomb       ~220 KB gzip body inflating to 5M tiny records       → 413
  open braces     1 MB of `{` on HTTP                                    → 400
  big frame       18 MB Forward-mode frame of 2M entries (with a chunk)  → refused, acked
  held frames     8 connections each holding 15 MB of an unfinished frame
  session keys    500k records, each its own session key (HTTP batches)  → accepted
  unique shapes   1M records, each its own message shape (HTTP batches)   → accepted
  big records     2,000 records of 100 KB (HTTP batches of 20)           → 503 past queue_bytes
After the floods the server idles `--settle-end` seconds (the bench closes sessions
after 60 s idle; the shipped bundle's own timeout is an hour, for HDFS blocks) and RSS
is read again: it must come back down. `serve` runs under the system allocator and
trims every 30 s (logguardian.memory); `PYTHONMALLOC=pymalloc` in the environment
shows what CPython's own allocator would keep.
`--only NAME` runs the floods whose name contains NAME.
Every loop is bounded (fixed counts, timeouts); the server is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import msgpack
import psutil

ROOT = Path(__file__).resolve().parents[1]
CEILING_MB = 400
TINY = b'{"log":"x"}'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`logguardian serve` as a user runs it, bound to 127.0.0.1."""

    def __init__(self, state: str):
        self.http, self.forward, self.tcp = _free_port(), _free_port(), _free_port()
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT / "sidecar"),
            "LOGGUARDIAN_RECEIVERS__HTTP__HOST": "127.0.0.1",
            "LOGGUARDIAN_RECEIVERS__FORWARD__HOST": "127.0.0.1",
            "LOGGUARDIAN_RECEIVERS__TCP__HOST": "127.0.0.1",
            "LOGGUARDIAN_RECEIVERS__TCP__PORT": str(self.tcp),
            "LOGGUARDIAN_MODEL__SESSION_KEY": "field:session",
            "LOGGUARDIAN_LOG_LEVEL": "warning",
            # The shipped bundle keeps an idle session an hour (HDFS blocks log minutes
            # apart); a minute lets the bench see the flood's sessions close.
            "LOGGUARDIAN_MODEL__SESSION_IDLE_SECONDS": "60",
        }
        cmd = [sys.executable, "-m", "logguardian.cli", "serve", "--state-dir", state]
        cmd += ["--http-port", str(self.http), "--forward-port", str(self.forward)]
        cmd += ["--grpc-port", "0"]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
        self.ps = psutil.Process(self.proc.pid)
        self.url = f"http://127.0.0.1:{self.http}"

    async def ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError("logguardian serve exited")
                try:
                    async with session.get(self.url + "/healthz") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
        raise RuntimeError("logguardian serve did not become healthy")

    def rss_mb(self) -> float:
        return float(self.ps.memory_info().rss) / 1e6

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Peak:
    """Samples the server's RSS every 50 ms in a thread while a flood runs."""

    def __init__(self, server: Server):
        self.server = server
        self.peak = server.rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.server.rss_mb())

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def health_watch(server: Server, done: asyncio.Event) -> float:
    """Worst /healthz latency until `done`."""
    worst = 0.0
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while not done.is_set():
            t = time.perf_counter()
            async with session.get(server.url + "/healthz") as r:
                await r.read()
            worst = max(worst, time.perf_counter() - t)
            await asyncio.sleep(0.1)
    return worst


async def post(body: bytes, url: str, headers: dict[str, str]) -> str:
    timeout = aiohttp.ClientTimeout(total=600)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.post(url + "/api/v1/logs", data=body, headers=headers) as r,
    ):
        await r.read()
        return str(r.status)


async def big_frame(server: Server, entries: int) -> str:
    entry = msgpack.packb([1718012392, {"log": "x"}])
    head = b"\x93" + msgpack.packb("flood") + b"\xdd" + entries.to_bytes(4, "big")
    reader, writer = await asyncio.open_connection("127.0.0.1", server.forward)
    writer.write(head)
    step = 50_000
    for start in range(0, entries, step):  # bounded: entries / step writes
        writer.write(entry * min(step, entries - start))
        await writer.drain()
    writer.write(msgpack.packb({"chunk": "flood"}))
    await writer.drain()
    reply = await asyncio.wait_for(reader.read(512), 600)
    writer.close()
    return "acked" if reply and msgpack.unpackb(reply) == {"ack": "flood"} else "no ack"


async def held_frames(server: Server, connections: int, megabytes: int) -> str:
    """Connections that each send most of a big (acceptable) frame and stop there:
    what they cost is the frame buffer, once."""
    entry = msgpack.packb([1718012392, {"log": "y" * (1 << 20)}])
    head = b"\x93" + msgpack.packb("held") + b"\xdc" + (megabytes + 1).to_bytes(2, "big")
    writers = []
    for _ in range(connections):  # bounded: `connections` sockets
        _, writer = await asyncio.open_connection("127.0.0.1", server.forward)
        writer.write(head + entry * megabytes)
        await writer.drain()
        writers.append(writer)
    await asyncio.sleep(2)
    held = server.rss_mb()
    for writer in writers:
        writer.close()
    return f"{held:.0f} MB while held"


def _key_record(i: int) -> dict[str, Any]:
    return {"log": f"user login ok id={i}", "session": f"s{i}", "service": "auth"}


_WORDS = "abcdefghijklmnopqrstuvwxyz"


def _shape_record(i: int) -> dict[str, Any]:
    """A message whose words (hence shape) no other record shares."""
    words, n = [], i
    for _ in range(5):  # base-26 digits of i, spelled as letters, one word each
        words.append(_WORDS[n % 26] * (1 + n % 7))
        n //= 26
    return {"log": " ".join(words) + f" op{i % 97}x{i}", "service": "shapes"}


def _big_record(i: int) -> dict[str, Any]:
    return {"log": f"payload {i} " + "z" * 100_000, "service": "big"}


async def batches(
    server: Server, total: int, batch: int, make: Callable[[int], dict[str, Any]]
) -> str:
    """`total` records in HTTP bodies of `batch`, each retried on 503 (0.2 s apart)."""
    sent, retries = 0, 0
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for start in range(0, total, batch):  # bounded: total / batch bodies, 50 tries each
            body = json.dumps([make(i) for i in range(start, min(start + batch, total))]).encode()
            for _ in range(50):
                async with session.post(server.url + "/api/v1/logs", data=body) as r:
                    await r.read()
                if r.status != 503:
                    sent += min(batch, total - start)
                    break
                retries += 1
                await asyncio.sleep(0.2)
    return f"{sent} sent, {retries} 503s"


async def run_flood(
    server: Server, name: str, attack: Callable[[], Awaitable[str]], settle: float
) -> dict[str, Any]:
    before = server.rss_mb()
    done = asyncio.Event()
    watcher = asyncio.create_task(health_watch(server, done))
    started = time.perf_counter()
    with Peak(server) as peak:
        outcome = await attack()
        elapsed = time.perf_counter() - started
        await asyncio.sleep(settle)  # let the pipeline drain and memory come back
    done.set()
    worst = await watcher
    after = server.rss_mb()
    return {
        "flood": name,
        "outcome": outcome,
        "seconds": elapsed,
        "before": before,
        "peak": peak.peak,
        "after": after,
        "healthz": worst,
    }


async def floods(scale: float, only: str | None, settle_end: float) -> list[dict[str, Any]]:
    n_array = int(1_000_000 * scale)
    n_bomb = int(5_000_000 * scale)
    n_frame = int(2_000_000 * scale)
    n_keys = int(500_000 * scale)
    n_shapes = int(1_000_000 * scale)
    n_big = int(2_000 * scale)
    array = b"[" + b",".join([TINY] * n_array) + b"]"
    bomb = gzip.compress(b"[" + b",".join([TINY] * n_bomb) + b"]", 9)
    json_ct = {"Content-Type": "application/json"}
    results = []
    with tempfile.TemporaryDirectory() as state:
        server = Server(state)
        try:
            await server.ready()
            url = server.url
            plan: list[tuple[str, Callable[[], Awaitable[str]], float]] = [
                (f"huge array {len(array) / 1e6:.0f} MB", lambda: post(array, url, json_ct), 2),
                (
                    f"gzip bomb {len(bomb) / 1e3:.0f} KB",
                    lambda: post(bomb, url, {**json_ct, "Content-Encoding": "gzip"}),
                    2,
                ),
                ("open braces 1 MB", lambda: post(b"{" * 1_000_000, url, json_ct), 1),
                (f"big frame {n_frame:,} entries", lambda: big_frame(server, n_frame), 2),
                ("8 conns x 15 MB partial", lambda: held_frames(server, 8, 15), 2),
                (
                    f"session keys {n_keys:,}",
                    lambda: batches(server, n_keys, 5_000, _key_record),
                    10,
                ),
                (
                    f"unique shapes {n_shapes:,}",
                    lambda: batches(server, n_shapes, 5_000, _shape_record),
                    10,
                ),
                (
                    f"big records {n_big:,} x 100 KB",
                    lambda: batches(server, n_big, 20, _big_record),
                    5,
                ),
            ]
            for name, attack, settle in plan:
                if only is None or only in name:
                    results.append(await run_flood(server, name, attack, settle))
            await asyncio.sleep(settle_end)  # idle: sessions close, memory is handed back
            results.append(
                {
                    "flood": f"idle {settle_end:.0f} s after",
                    "outcome": "",
                    "seconds": settle_end,
                    "before": results[-1]["after"] if results else server.rss_mb(),
                    "peak": server.rss_mb(),
                    "after": server.rss_mb(),
                    "healthz": 0.0,
                }
            )
        finally:
            server.stop()
    return results


# -- decode rate ---------------------------------------------------------------------------


def decode_rates(seconds: float) -> dict[str, tuple[float, float, int]]:
    """records/CPU-s of our decoder and of raw orjson on the same bodies (imports
    `logguardian` from whatever PYTHONPATH says: this tree or `--before`)."""
    import orjson
    from logguardian.receivers import decode
    from logguardian.record import Normalizer

    sys.path.insert(0, str(ROOT / "bench"))
    from ingest import BATCH, best_rate, fluent_bit_records, load_lines

    normalize = Normalizer("http")
    objs = [orjson.dumps(r) for r in fluent_bit_records(load_lines())]
    array = b"[" + b",".join(objs) + b"]"
    bad = b'{"log":"\\ud800"}'
    one_bad = b"[" + b",".join([*objs[:500], bad, *objs[501:]]) + b"]"
    stream = b"".join(objs)
    cases = {
        "array (fast path)": (array, lambda: orjson.loads(array)),
        "array, 1 bad element": (one_bad, lambda: orjson.loads(array)),
        "json_stream": (stream, lambda: orjson.loads(b"[" + stream.replace(b"}{", b"},{") + b"]")),
    }
    out = {}
    for name, (body, raw) in cases.items():

        def ours(body: bytes = body) -> int:
            try:
                return len(decode.decode_json(body, normalize).records)
            except decode.DecodeError:
                return 0  # the whole body refused (400)

        out[name] = (best_rate(ours, seconds), best_rate(raw, seconds), ours())
    assert BATCH == 1000
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="shrink the floods")
    parser.add_argument("--seconds", type=float, default=1.0, help="per decode measurement")
    parser.add_argument("--before", type=Path, help="another tree's sidecar/ to compare decode")
    parser.add_argument("--decode-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--skip-floods", action="store_true")
    parser.add_argument("--only", help="run only the floods whose name contains this")
    parser.add_argument(
        "--settle-end", type=float, default=100.0, help="idle seconds before the last RSS reading"
    )
    parser.add_argument("--skip-decode", action="store_true")
    args = parser.parse_args()
    if args.decode_only:
        print(json.dumps(decode_rates(args.seconds)))
        return 0

    failed = False
    if not args.skip_floods:
        print(f"floods against `logguardian serve` (scale {args.scale}), ceiling {CEILING_MB} MB")
        header = (
            f"{'flood':<28} {'outcome':<24} {'s':>6} {'RSS before':>10} {'peak':>7} "
            f"{'after':>7} {'healthz max':>11}"
        )
        print(header)
        print("-" * len(header))
        for r in asyncio.run(floods(args.scale, args.only, args.settle_end)):
            over = r["peak"] > CEILING_MB
            failed = failed or over
            print(
                f"{r['flood']:<28} {r['outcome']:<24} {r['seconds']:>6.1f} "
                f"{r['before']:>8.0f}MB {r['peak']:>5.0f}MB {r['after']:>5.0f}MB "
                f"{r['healthz']:>10.2f}s{'  OVER CEILING' if over else ''}"
            )
        print()
    if args.skip_decode:
        return 1 if failed else 0

    trees = [("this tree", ROOT / "sidecar")]
    if args.before is not None:
        trees.append(("before", args.before.resolve()))
    print("JSON decode + normalize, 1,000 Fluent Bit k8s records per body, best run per CPU-s")
    header = (
        f"{'tree':<10} {'body':<22} {'kept':>5} {'ours rec/s':>11} {'orjson rec/s':>13} "
        f"{'ours/raw':>9}"
    )
    print(header)
    print("-" * len(header))
    for label, tree in trees:
        env = {**os.environ, "PYTHONPATH": str(tree)}
        cmd = [sys.executable, __file__, "--decode-only", "--seconds", str(args.seconds)]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode:
            print(f"{label}: failed: {done.stderr.strip().splitlines()[-1:]}")
            continue
        for name, (ours, raw, kept) in json.loads(done.stdout).items():
            print(
                f"{label:<10} {name:<22} {kept:>5} {ours:>11,.0f} {raw:>13,.0f} {ours / raw:>9.2f}"
            )
    print("(kept: records decoded from the 1,000; 0 = the whole body refused)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
