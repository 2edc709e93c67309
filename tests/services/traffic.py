"""Log traffic for exporter tests, sent through the sidecar's real HTTP receiver.

`novel_lines` yields lines of distinct token counts: the miner cannot merge them, so
each is a new template and (past warm-up) a novelty annotation. Tests compare what
an exporter delivered with the sidecar's own local store, not with a guessed count.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
from logguardian.exporters.local import LocalStore

WORDS = ("disk", "quota", "replica", "checksum", "kernel", "socket", "lease", "journal")


def normal_records(service: str, n: int, ts: float | None = None) -> list[dict[str, Any]]:
    ts = time.time() if ts is None else ts
    return [
        {
            "log": f"INFO GET /api/items/{i} 200 in {i % 50}ms",
            "service": service,
            "date": ts,
            "kubernetes": {"namespace_name": "shop", "pod_name": f"{service}-0"},
        }
        for i in range(n)
    ]


def novel_records(
    service: str, start: int, n: int, ts: float | None = None
) -> list[dict[str, Any]]:
    """Lines `start`..`start+n-1`; line k has k+3 tokens (keep start+n under ~200)."""
    ts = time.time() if ts is None else ts
    out = []
    for k in range(start, start + n):
        body = " ".join(WORDS[(k + j) % len(WORDS)] for j in range(k + 1))
        out.append(
            {
                "log": f"ERROR fault {body}",
                "service": service,
                "date": ts,
                "level": "error",
                "host": f"node-{k % 3}",
                "kubernetes": {"namespace_name": "shop", "pod_name": f"{service}-0"},
            }
        )
    return out


async def post_logs(
    http: aiohttp.ClientSession, port: int, records: list[dict[str, Any]]
) -> dict[str, Any]:
    async with http.post(f"http://127.0.0.1:{port}/api/v1/logs", json=records) as resp:
        body = await resp.json()
        assert resp.status == 200, body
        return dict(body)


async def anomaly_ids(http: aiohttp.ClientSession, port: int) -> set[str]:
    async with http.get(f"http://127.0.0.1:{port}/api/v1/anomalies?limit=10000") as resp:
        body = await resp.json()
    return {a["id"] for a in body["anomalies"]}


def processed(metrics: Any) -> float:
    """Records fully through the chain (logguardian_records_total, all services)."""
    return sum(
        s.value for m in metrics.records.collect() for s in m.samples if s.name.endswith("_total")
    )


async def settle(sidecar: Any, sent: int, timeout: float = 30.0) -> None:
    """Wait until the chain has processed `sent` records and the local store has written
    what they produced, so /api/v1/anomalies is complete."""
    deadline = time.monotonic() + timeout
    while processed(sidecar.metrics) < sent:
        assert time.monotonic() < deadline, f"{processed(sidecar.metrics)}/{sent} processed"
        await asyncio.sleep(0.05)
    # Records are counted after exporters took the batch; the local store writes on
    # its own thread, so wait for it before reading /api/v1/anomalies.
    store = sidecar.parts.get(LocalStore)
    if store is not None:
        await store.aflush()
