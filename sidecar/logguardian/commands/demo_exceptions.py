"""The demo's exception scene: a small "checkout" program fails in two releases
(the second moved the failing lines), its tracebacks are shipped one line per
record as a shipper without multiline parsing would, and the demo shows the one
exception group they form, with its code link and the finding it raised."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

SOURCE_URL = "https://git.example.com/{service}/blob/{version}/{file}#L{line}"
SERVICE = "checkout"
CART = """{padding}def coupon_discount(cart, code):
    coupons = {{"SPRING10": 10}}
    return cart["total"] * coupons[code] / 100


def apply_coupon(cart, code):
    try:
        return coupon_discount(cart, code)
    except KeyError as exc:
        raise ValueError(f"unknown coupon {{code!r}}") from exc
"""
MAIN = 'from shop.cart import apply_coupon\n\napply_coupon({"total": 120}, "WINTER25")\n'


def failing_run(root: Path, padding: int) -> str:
    """The traceback the real interpreter prints for this release."""
    (root / "shop").mkdir(parents=True, exist_ok=True)
    (root / "shop" / "__init__.py").write_text("")
    (root / "shop" / "cart.py").write_text(CART.format(padding="# release notes\n" * padding))
    (root / "main.py").write_text(MAIN)
    proc = subprocess.run(
        [sys.executable, "-B", "main.py"], cwd=root, capture_output=True, text=True, timeout=60
    )
    return proc.stderr.strip()


async def run_scene(http: aiohttp.ClientSession, base: str, ts: float) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="logguardian-demo-app-") as tmp:
        releases = [("1.4.2", failing_run(Path(tmp) / "v1", 0))]
        releases.append(("1.4.3", failing_run(Path(tmp) / "v2", 4)))
    for n, (version, trace) in enumerate(releases):
        docs = [
            {
                "log": line,
                "service": SERVICE,
                "service.version": version,
                "stream": "stderr",
                "level": "error",
                "date": ts + 60 * n + i * 0.001,
            }
            for i, line in enumerate(trace.split("\n"))
        ]
        async with http.post(f"{base}/api/v1/logs", json=docs) as resp:
            resp.raise_for_status()
    groups: list[dict[str, Any]] = []
    for _ in range(200):  # held lines are released after rejoin_wait_seconds
        async with http.get(f"{base}/api/v1/exceptions?service={SERVICE}") as resp:
            groups = (await resp.json())["exceptions"]
        if sum(g["count"] for g in groups) >= len(releases):
            break
        await asyncio.sleep(0.05)
    async with http.get(f"{base}/api/v1/anomalies?service={SERVICE}&limit=10000") as resp:
        anomalies = (await resp.json())["anomalies"]
    findings = [r["text"] for a in anomalies for r in a["reasons"] if r["kind"] == "exception"]
    lines = [
        f"\nException groups in {SERVICE} (a traceback from releases 1.4.2 and 1.4.3, the "
        "second with its lines moved, shipped one line per record):"
    ]
    for g in groups:
        lines.append(
            f"  {g['fingerprint']}  {g['title']}  x{g['count']}  "
            f"versions {', '.join(g['versions'])}  caused by {', '.join(g['causes']) or '-'}"
        )
        lines.append(f"      message: {g['message']}")
        if g.get("url"):
            lines.append(f"      code:    {g['url']}")
    for text in findings[:3]:
        lines.append(f"  finding: {text}")
    lines.append(f"  details: GET {base}/api/v1/exceptions/<fingerprint>")
    return lines
