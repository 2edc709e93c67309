"""End-to-end records/s and mining lines/s of this tree beside a peer tree (another
checkout or a git ref), in one run, so a refactor can show it costs nothing.

    .venv/bin/python bench/e2e.py [--peer main] [--records 100000] [--rounds 3]

End to end: a sidecar on default settings (template miner, model stage with the
shipped bundle, online detection, local store) takes Fluent Bit-shaped JSON batches
of Loghub-2k lines (../shared/data/loghub) on `POST /api/v1/logs` from 4 concurrent
clients in the same process; the figure is records/s until every record has been
processed. Mining: `TemplateMiner.mine` over the same lines in 2,000-line batches.
Each measurement runs in a fresh child process with only that tree on its path,
alternating trees round by round; the medians and their ratio are printed (the
machine is shared, so only the ratio is stable).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = next(
    (p / "shared" for p in ROOT.parents[:2] if (p / "shared" / "data").is_dir()),
    ROOT.parent / "shared",
)

# Runs in the child, against whichever tree PYTHONPATH names; only APIs both trees
# have (Sidecar, load_settings, TemplateMiner, processed_records).
WORKER = r"""
import asyncio, json, sys, tempfile, time
from pathlib import Path

import aiohttp, orjson

kind, loghub, n = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
lines = []
for path in sorted(loghub.glob("*/*_2k.log")):
    app = path.parent.name.lower()
    lines += [(app, l) for l in path.read_text(errors="replace").splitlines() if l.strip()]
if not lines:
    lines = [("synthetic", f"request {i} served in {i % 97}ms") for i in range(2000)]

def mine():
    from logguardian.config import load_settings
    from logguardian.templates.miner import TemplateMiner
    miner = TemplateMiner(load_settings().templates)
    messages = [l for _, l in lines]
    services = [a for a, _ in lines]
    stamps = [1_700_000_000.0 + i for i in range(len(lines))]
    done, started = 0, time.perf_counter()
    while done < n:
        for s in range(0, len(messages), 2000):
            miner.mine(messages[s : s + 2000], services[s : s + 2000], stamps[s : s + 2000])
            done += len(messages[s : s + 2000])
    return done / (time.perf_counter() - started)

async def e2e():
    from logguardian.config import load_settings
    from logguardian.server import Sidecar
    with tempfile.TemporaryDirectory() as state:
        receivers = {"http": {"host": "127.0.0.1", "port": 0}}
        for name in ("forward", "grpc", "tcp"):
            receivers[name] = {"port": 0}
        import socket
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            receivers["http"]["port"] = sock.getsockname()[1]
        settings = load_settings(state_dir=Path(state), log_level="warning", receivers=receivers)
        sidecar = Sidecar(settings)
        await sidecar.start()
        url = f"http://127.0.0.1:{sidecar.http_port}/api/v1/logs"
        t0 = 1_700_000_000.0
        docs = [
            {"date": t0 + i * 0.01, "log": l, "kubernetes": {"labels": {"app": a}}}
            for i, (a, l) in enumerate(lines)
        ]
        bodies = [orjson.dumps(docs[s : s + 1000]) for s in range(0, len(docs), 1000)]
        todo = list(range(n // 1000))
        JSON = {"Content-Type": "application/json"}
        started = time.perf_counter()
        async with aiohttp.ClientSession() as http:
            async def client():
                while todo:
                    k = todo.pop()
                    body = bodies[k % len(bodies)]
                    while True:
                        async with http.post(url, data=body, headers=JSON) as r:
                            if r.status == 200:
                                break
                        await asyncio.sleep(0.01)
            await asyncio.gather(*(client() for _ in range(4)))
        total = (n // 1000) * 1000
        while sidecar.processed_records() < total:
            await asyncio.sleep(0.005)
        rate = total / (time.perf_counter() - started)
        await sidecar.stop()
        return rate

rate = mine() if kind == "mine" else asyncio.run(e2e())
print(json.dumps({"rate": rate}))
"""


def tree_of(peer: str, tmp: Path) -> Path | None:
    """A checkout directory as is; otherwise a git ref of this repository, exported."""
    path = Path(peer)
    if (path / "sidecar" / "logguardian").is_dir():
        return path.resolve()
    done = subprocess.run(
        ["git", "-C", str(ROOT), "archive", peer, "sidecar"], capture_output=True, check=False
    )
    if done.returncode != 0:
        print(f"note: peer {peer!r} is neither a checkout nor a git ref; measuring this tree only")
        return None
    with tarfile.open(fileobj=BytesIO(done.stdout)) as archive:
        archive.extractall(tmp, filter="data")
    return tmp


def measure(tree: Path, kind: str, n: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree / "sidecar")}
    done = subprocess.run(
        [sys.executable, "-c", WORKER, kind, str(SHARED / "data" / "loghub"), str(n)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tempfile.gettempdir(),
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{kind} on {tree} failed:\n{done.stderr[-3000:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["rate"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer", default="main", help="checkout dir or git ref (main)")
    parser.add_argument("--records", type=int, default=100_000, help="end-to-end records")
    parser.add_argument("--lines", type=int, default=300_000, help="mined lines")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="logguardian-peer-") as tmp:
        peer = tree_of(args.peer, Path(tmp))
        trees = {"this": ROOT} | ({f"peer ({args.peer})": peer} if peer else {})
        rates: dict[tuple[str, str], list[float]] = {}
        for round_ in range(args.rounds):
            order = list(trees.items())
            if round_ % 2:
                order.reverse()  # neither tree always runs first
            for name, tree in order:
                for kind, n in (("e2e", args.records), ("mine", args.lines)):
                    rates.setdefault((name, kind), []).append(measure(tree, kind, n))
        print(f"{'tree':<24} {'end-to-end rec/s':>18} {'mining lines/s':>16}")
        for name in trees:
            e2e = statistics.median(rates[(name, "e2e")])
            mine = statistics.median(rates[(name, "mine")])
            print(f"{name:<24} {e2e:>18,.0f} {mine:>16,.0f}")
        if peer:
            (this, other) = trees
            for kind, label in (("e2e", "end-to-end"), ("mine", "mining")):
                ratio = statistics.median(rates[(this, kind)]) / statistics.median(
                    rates[(other, kind)]
                )
                print(f"{label} this / peer: {ratio:.3f} (runs: {rates[(this, kind)]!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
