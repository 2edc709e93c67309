"""The Grafana app plugin's pages in a real browser against a live sidecar.

There is no Grafana server here, so the plugin's own page components are mounted in a
harness page (`grafana-plugin/harness`, built by `make plugin`) with Grafana's theme.
This test plays Grafana's part: it serves the page and the app's proxy route
(`/api/plugin-proxy/<id>/sidecar/…` → the sidecar, adding the token from
"secureJsonData"), feeds a real sidecar the demo sample, drives Debian's Chromium with
Playwright through the four pages, clicks "Mark normal", and checks the sidecar's own
state changed. The screenshots land in docs/img/grafana/ (shown in the README).
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from logguardian.commands.demo import CHUNK_RECORDS, load_sample
from logguardian.config import Settings
from logguardian.server import Sidecar

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "grafana-plugin"
HARNESS = PLUGIN / "harness-dist"
SHOTS = ROOT / "docs" / "img" / "grafana"
PROXY = "/api/plugin-proxy/logguardian-sidecar-app/sidecar"
TOKEN = "grafana-secure-json-token"

pytestmark = pytest.mark.integration


def _require_harness() -> None:
    if not (HARNESS / "index.html").exists() or shutil.which("node") is None:
        pytest.fail("grafana-plugin harness not built: run `make plugin` (make test does)")
    if not Path("/usr/bin/chromium").exists():
        pytest.fail("Debian's chromium is missing: tests/services/install.sh installs it")


class GrafanaStandIn:
    """Serves the harness and proxies the app route like Grafana's plugin proxy does."""

    def __init__(self, sidecar_url: str):
        self.sidecar_url = sidecar_url
        self.browser_auth_headers: list[str] = []
        self.proxied: list[tuple[str, str, int]] = []
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def _proxy(self, request: web.Request) -> web.Response:
        if "Authorization" in request.headers:
            self.browser_auth_headers.append(request.headers["Authorization"])
        url = f"{self.sidecar_url}/{request.match_info['tail']}"
        headers = {"Authorization": f"Bearer {TOKEN}"}
        if request.content_type == "application/json":
            headers["Content-Type"] = "application/json"
        async with (
            aiohttp.ClientSession() as http,
            http.request(
                request.method,
                url,
                params=request.query,
                data=await request.read(),
                headers=headers,
            ) as resp,
        ):
            body = await resp.read()
            self.proxied.append((request.method, request.match_info["tail"], resp.status))
            return web.Response(
                body=body, status=resp.status, content_type=resp.content_type or "text/plain"
            )

    async def _page(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["tail"]
        target = (HARNESS / name).resolve()
        if name and target.is_file() and HARNESS.resolve() in target.parents:
            return web.FileResponse(target)
        if "." in name.rsplit("/", 1)[-1]:
            raise web.HTTPNotFound()  # an asset Grafana would serve (fonts): not here
        return web.FileResponse(HARNESS / "index.html")  # client-side routes

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", PROXY + "/{tail:.*}", self._proxy)
        app.router.add_get("/{tail:.*}", self._page)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        assert site._server is not None and site._server.sockets
        self.port = site._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


async def _feed(url: str) -> None:
    """The demo sample through the HTTP receiver, as Fluent Bit's json_lines output."""
    lines, _, _ = load_sample()
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-ndjson"}
    async with aiohttp.ClientSession() as http:
        for i in range(0, len(lines), CHUNK_RECORDS):
            body = b"\n".join(lines[i : i + CHUNK_RECORDS]) + b"\n"
            while True:
                async with http.post(f"{url}/api/v1/logs", data=body, headers=auth) as resp:
                    if resp.status == 200:
                        break
                    assert resp.status == 503, await resp.text()
                await asyncio.sleep(0.2)


async def _get(url: str, path: str) -> Any:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{url}{path}", headers={"Authorization": f"Bearer {TOKEN}"}) as resp,
    ):
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def test_plugin_pages_in_chromium_against_a_live_sidecar(
    make_settings: Callable[..., Settings],
) -> None:
    _require_harness()
    sidecar = Sidecar(
        make_settings(
            receivers={"http": {"auth_token": TOKEN}},
            incidents={"quiet_seconds": 3600},
        )
    )
    await sidecar.start()
    grafana = GrafanaStandIn(f"http://127.0.0.1:{sidecar.http_port}")
    try:
        sidecar_url = f"http://127.0.0.1:{sidecar.http_port}"
        await _feed(sidecar_url)
        for _ in range(120):
            if (await _get(sidecar_url, "/api/v1/incidents"))["incidents"]:
                break
            await asyncio.sleep(0.5)
        base = await grafana.start()
        proc = await asyncio.create_subprocess_exec(
            "node",
            "tests/e2e.mjs",
            base,
            str(SHOTS),
            cwd=PLUGIN,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=300)
        assert proc.returncode == 0, err.decode(errors="replace")[-3000:]
        seen = json.loads(out.decode().strip().splitlines()[-1])

        assert seen["pageErrors"] == []
        assert seen["incidents"] >= 1 and seen["firstIncidentReasons"].strip()
        assert (seen["stateBefore"], seen["stateAfter"]) == ("normal", "suppressed")
        # The click changed the sidecar's own state, through the proxy route …
        templates = (await _get(sidecar_url, "/api/v1/templates?limit=100000"))["templates"]
        state = {t["id"]: t["state"] for t in templates}
        assert state[seen["templateId"]] == "suppressed"
        assert ("POST", f"api/v1/templates/{seen['templateId']}/feedback", 200) in grafana.proxied
        # … and the browser never held the token: only the proxy added it.
        assert grafana.browser_auth_headers == []
        assert "records processed" in seen["status"]
        for page in ("incidents", "templates", "exceptions", "status"):
            shot = SHOTS / f"{page}.png"
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    finally:
        await grafana.stop()
        await sidecar.stop()
