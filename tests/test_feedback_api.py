"""Feedback and templates over the real REST API, with a running sidecar: verdicts
change alerting, are listed, and survive a restart; bad requests are refused."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
from logguardian.config import Settings
from logguardian.server import Sidecar

T0 = 1_700_000_000.0


def lines(service: str, messages: list[str], start: float = T0) -> bytes:
    import orjson

    return b"".join(
        orjson.dumps({"date": start + i, "log": m, "service": service}) + b"\n"
        for i, m in enumerate(messages)
    )


async def ingest(http: aiohttp.ClientSession, base: str, body: bytes, sidecar: Sidecar) -> None:
    async with http.post(
        f"{base}/api/v1/logs", data=body, headers={"Content-Type": "application/x-ndjson"}
    ) as resp:
        assert resp.status == 200, await resp.text()
    await sidecar.pipeline.run_now([])  # every queued batch has been through the chain
    while sidecar.pipeline.depth:
        await sidecar.pipeline.run_now([])


async def score(http: aiohttp.ClientSession, base: str, doc: Any) -> Any:
    async with http.post(f"{base}/api/v1/score", json=doc) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def test_feedback_round_trip(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(detectors={"warmup_records": 20})
    sidecar = Sidecar(settings)
    await sidecar.start()
    base = f"http://127.0.0.1:{sidecar.http_port}"
    try:
        async with aiohttp.ClientSession() as http:
            warm = [f"user {i} logged in from 10.0.0.{i % 250}" for i in range(40)]
            await ingest(http, base, lines("auth", warm), sidecar)
            await ingest(http, base, lines("pay", [f"charge {i} ok" for i in range(40)]), sidecar)
            # A new error template in auth alerts...
            first = await score(
                http,
                base,
                {"log": "ERROR disk quota exceeded on /var/7", "service": "auth", "date": T0 + 50},
            )
            assert first["anomaly"] is True
            assert first["reasons"][0]["kind"] == "novelty"
            tid = first["template_id"]

            async with http.get(f"{base}/api/v1/templates") as resp:
                listed = {t["id"]: t for t in (await resp.json())["templates"]}
            assert listed[tid]["state"] == "normal" and listed[tid]["feedback"] is None
            assert listed[tid]["services"] == {"auth": 1}

            async with http.post(
                f"{base}/api/v1/templates/{tid}/feedback",
                json={"verdict": "normal", "note": "quota alerts are noise"},
            ) as resp:
                assert resp.status == 200
                body = await resp.json()
            assert body == {**body, "template_id": tid, "verdict": "normal", "state": "suppressed"}

            # ...is new in pay too, but an operator called it normal: no alert.
            again = await score(
                http,
                base,
                {"log": "ERROR disk quota exceeded on /var/9", "service": "pay", "date": T0 + 60},
            )
            assert again["template_id"] == tid and again["anomaly"] is False

            async with http.get(f"{base}/api/v1/templates?service=auth") as resp:
                listed = {t["id"]: t for t in (await resp.json())["templates"]}
            assert listed[tid]["state"] == "suppressed"
            assert listed[tid]["feedback"]["note"] == "quota alerts are noise"

            # Bad requests name the problem; nothing changes.
            async with http.post(
                f"{base}/api/v1/templates/{tid}/feedback", json={"verdict": "maybe"}
            ) as resp:
                assert resp.status == 400 and "verdict" in (await resp.json())["error"]
            async with http.post(f"{base}/api/v1/templates/{tid}/feedback", data=b"{nope") as resp:
                assert resp.status == 400
            async with http.post(
                f"{base}/api/v1/templates/doesnotexist/feedback", json={"verdict": "normal"}
            ) as resp:
                assert resp.status == 404
    finally:
        await sidecar.stop()

    # Persisted: a restarted sidecar on the same state dir still suppresses it,
    # and "anomalous" re-arms it.
    sidecar = Sidecar(settings)
    await sidecar.start()
    base = f"http://127.0.0.1:{sidecar.http_port}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/api/v1/templates") as resp:
                listed = {t["id"]: t for t in (await resp.json())["templates"]}
            assert listed[tid]["state"] == "suppressed"
            async with http.post(
                f"{base}/api/v1/templates/{tid}/feedback", json={"verdict": "anomalous"}
            ) as resp:
                assert (await resp.json())["state"] == "normal"
            await ingest(
                http,
                base,
                lines("shop", [f"cart {i} saved" for i in range(30)], start=T0 + 70),
                sidecar,
            )
            rearmed = await score(
                http,
                base,
                {"log": "ERROR disk quota exceeded on /var/3", "service": "shop", "date": T0 + 120},
            )
            assert rearmed["template_id"] == tid and rearmed["anomaly"] is True
    finally:
        await sidecar.stop()


async def test_feedback_requires_credentials_when_ingest_does(
    make_settings: Callable[..., Settings],
) -> None:
    sidecar = Sidecar(make_settings(receivers={"http": {"auth_token": "s3cret"}}))
    await sidecar.start()
    base = f"http://127.0.0.1:{sidecar.http_port}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{base}/api/v1/templates/x/feedback", json={"verdict": "normal"}
            ) as resp:
                assert resp.status == 401
            async with http.post(f"{base}/api/v1/score", json={"log": "x"}) as resp:
                assert resp.status == 401
            async with http.post(
                f"{base}/api/v1/score",
                json={"log": "x"},
                headers={"Authorization": "Bearer s3cret"},
            ) as resp:
                assert resp.status == 200
    finally:
        await sidecar.stop()
