"""End-to-end records/s and mining lines/s of this tree beside a peer tree (another
checkout or a git ref), in one run, so a refactor can show it costs nothing.

    .venv/bin/python bench/e2e.py [--peer main] [--records 100000] [--rounds 3]
    .venv/bin/python bench/e2e.py --peer . --peer-env PYTHONMALLOC=pymalloc  # allocator cost

End to end: a sidecar on default settings (template miner, model stage with the
shipped bundle, online detection, local store) takes Fluent Bit-shaped JSON batches
of Loghub-2k lines (../shared/data/loghub) on `POST /api/v1/logs` from 4 concurrent
clients in the same process; the figure is records/s until every record has been
processed. Mining: `TemplateMiner.mine` over the same lines in 2,000-line batches.
Each measurement runs in a fresh child process with only that tree on its path,
alternating trees round by round. The machine is shared, and other load only ever
slows a run down, so each figure is the best of the rounds, by wall clock and per
CPU second of the process (all its threads), the one least disturbed by neighbours;
the ratios this / peer are what to read.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "sidecar"))

from logguardian.memory import ALLOCATOR, MALLOC_ENV  # noqa: E402

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
    done, started, cpu = 0, time.perf_counter(), time.process_time()
    while done < n:
        for s in range(0, len(messages), 2000):
            miner.mine(messages[s : s + 2000], services[s : s + 2000], stamps[s : s + 2000])
            done += len(messages[s : s + 2000])
    return done / (time.perf_counter() - started), done / (time.process_time() - cpu)

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
        started, cpu = time.perf_counter(), time.process_time()
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
        rates = total / (time.perf_counter() - started), total / (time.process_time() - cpu)
        await sidecar.stop()
        return rates

wall, cpu = mine() if kind == "mine" else asyncio.run(e2e())
print(json.dumps({"wall": wall, "cpu": cpu}))
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


def measure(tree: Path, kind: str, n: int, extra: dict[str, str]) -> dict[str, float]:
    # The allocator `logguardian serve` runs under (logguardian.memory), unless overridden.
    env = {
        "PYTHONMALLOC": ALLOCATOR,
        **MALLOC_ENV,
        **os.environ,
        "PYTHONPATH": str(tree / "sidecar"),
        **extra,
    }
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
    found: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer", default="main", help="checkout dir or git ref (main)")
    parser.add_argument("--records", type=int, default=100_000, help="end-to-end records")
    parser.add_argument("--lines", type=int, default=300_000, help="mined lines")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--peer-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment for the peer's runs only (--peer . --peer-env PYTHONMALLOC=pymalloc)",
    )
    args = parser.parse_args()
    peer_env = dict(kv.split("=", 1) for kv in args.peer_env)
    with tempfile.TemporaryDirectory(prefix="logguardian-peer-") as tmp:
        peer = tree_of(args.peer, Path(tmp))
        trees = {"this": ROOT} | ({f"peer ({args.peer})": peer} if peer else {})
        runs: dict[tuple[str, str], list[dict[str, float]]] = {}
        for round_ in range(args.rounds):
            order = list(trees.items())
            if round_ % 2:
                order.reverse()  # neither tree always runs first
            for name, tree in order:
                for kind, n in (("e2e", args.records), ("mine", args.lines)):
                    extra = peer_env if name != "this" else {}
                    runs.setdefault((name, kind), []).append(measure(tree, kind, n, extra))

        def best(name: str, kind: str, clock: str) -> float:
            return max(run[clock] for run in runs[(name, kind)])

        print(
            f"{'tree':<20} {'e2e rec/s':>11} {'e2e rec/cpu-s':>14} "
            f"{'mine lines/s':>13} {'mine lines/cpu-s':>17}"
        )
        for name in trees:
            e2e_wall, e2e_cpu = best(name, "e2e", "wall"), best(name, "e2e", "cpu")
            mine_wall, mine_cpu = best(name, "mine", "wall"), best(name, "mine", "cpu")
            print(
                f"{name:<20} {e2e_wall:>11,.0f} {e2e_cpu:>14,.0f} "
                f"{mine_wall:>13,.0f} {mine_cpu:>17,.0f}"
            )
        if peer:
            this, other = trees
            for kind, label in (("e2e", "end-to-end"), ("mine", "mining")):
                wall = best(this, kind, "wall") / best(other, kind, "wall")
                cpu = best(this, kind, "cpu") / best(other, kind, "cpu")
                print(f"{label} this / peer: {wall:.3f} (wall), {cpu:.3f} (per CPU second)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
