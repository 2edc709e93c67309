"""Explanations when the LLM server misbehaves: down, slow (timeout), 429, invalid
JSON, no structured-output support. The incident keeps its rules explanation, the
outcome is counted, and ingestion goes on while a call hangs. These are protocol
failures a real server cannot be made to produce on demand, so a small aiohttp
stand-in plays the server; tests/test_explain_llm.py uses the real model."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from conftest import free_port
from logguardian.config import Settings
from logguardian.explain.stage import ExplainStage
from logguardian.exporters.alertmanager import alert
from logguardian.exporters.elasticsearch import annotation_doc
from logguardian.incidents import IncidentStage
from logguardian.server import Sidecar
from logguardian.signals import Annotation, Incident
from services.planted import MASK_PATTERNS, SECRETS, baseline_records, incident_records
from services.traffic import normal_records, post_logs, settle


class StandIn:
    """An OpenAI-compatible chat endpoint that fails on purpose (`mode`)."""

    def __init__(self, mode: str):
        self.mode = mode
        self.requests: list[dict[str, Any]] = []
        self.holding = asyncio.Event()

    async def chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        if self.mode == "slow":
            self.holding.set()
            await asyncio.sleep(5)
        if self.mode == "429":
            return web.json_response(
                {"error": {"message": "rate limited", "type": "rate_limit"}}, status=429
            )
        if self.mode == "no_schema" and "response_format" in body:
            # Like llama-cpp-python's server: request validation refuses `json_schema`.
            status = 422 if body["response_format"]["type"] == "json_schema" else 400
            return web.json_response(
                {"detail": [{"loc": ["body", "response_format"], "msg": "not supported"}]},
                status=status,
            )
        content = "the service is broken, trust me" if self.mode == "invalid" else grounded(body)
        return web.json_response(
            {
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": content},
                    }
                ],
                "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150},
            }
        )


def grounded(body: dict[str, Any]) -> str:
    """An answer citing only what the request's incident context says."""
    context = json.loads(body["messages"][1]["content"].split("\n", 1)[1])
    top = context["templates"][0]
    return json.dumps(
        {
            "summary": f"{context['service']} logs new errors",
            "likely_cause": "a new failure mode",
            "evidence": [{"ref": top["id"], "fact": f"{top['count_in_incident']} records"}],
            "next_steps": ["read the new log lines"],
            "confidence": "low",
        }
    )


@pytest.fixture
async def stand_in(request: pytest.FixtureRequest) -> AsyncIterator[tuple[StandIn, str]]:
    server = StandIn(request.param)
    app = web.Application()
    app.router.add_post("/v1/chat/completions", server.chat)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    # "down": nothing listens at the URL the sidecar is given.
    url = f"http://127.0.0.1:{free_port() if server.mode == 'down' else port}/v1"
    try:
        yield server, url
    finally:
        await runner.cleanup()


def explain_settings(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "llm": {"base_url": url, "model": "stand-in", "timeout_seconds": 1.0},
        "min_severity": "low",
        "mask_patterns": MASK_PATTERNS,
        **extra,
    }


async def open_incident(sidecar: Sidecar, http: aiohttp.ClientSession) -> int:
    port = sidecar.http_port
    assert port is not None
    sent = 0
    for records in (baseline_records("payments"), incident_records("payments")):
        await post_logs(http, port, records)
        sent += len(records)
    await settle(sidecar, sent)
    return sent


def the_incident(sidecar: Sidecar) -> Incident:
    found = sidecar.parts.require(IncidentStage).list()
    assert len(found) == 1, found
    return found[0]


def calls(sidecar: Sidecar, outcome: str) -> float:
    return (
        sidecar.metrics.registry.get_sample_value(
            "logguardian_explain_calls_total", {"outcome": outcome}
        )
        or 0.0
    )


@pytest.mark.parametrize(
    "stand_in, outcome, requests",
    [
        ("down", "unavailable", 0),
        ("slow", "timeout", 1),
        ("429", "rate_limited", 1),
        ("invalid", "invalid", 2),
    ],
    indirect=["stand_in"],
)
async def test_failures_leave_rules_explanation_and_ingest_running(
    stand_in: tuple[StandIn, str],
    outcome: str,
    requests: int,
    make_settings: Callable[..., Settings],
) -> None:
    server, url = stand_in
    settings = make_settings(detectors={"warmup_records": 50}, explain=explain_settings(url))
    sidecar = Sidecar(settings)
    await sidecar.start()
    stage = sidecar.parts.require(ExplainStage)
    try:
        async with aiohttp.ClientSession() as http:
            sent = await open_incident(sidecar, http)
            if server.mode == "slow":
                await asyncio.wait_for(server.holding.wait(), 5)
            # The worker never waits on the LLM: more records go through meanwhile.
            more = normal_records("payments", 2000)
            await post_logs(http, sidecar.http_port or 0, more)
            await settle(sidecar, sent + len(more))
            if server.mode == "slow":
                assert stage.explainer._tasks, "ingest finished while the LLM call hung"
            await stage.explainer.idle()
            async with http.get(f"http://127.0.0.1:{sidecar.http_port}/api/v1/incidents") as r:
                listed = (await r.json())["incidents"]
    finally:
        await sidecar.stop()
    assert calls(sidecar, outcome) == 1
    assert calls(sidecar, "accepted") == 0
    assert len(server.requests) == requests
    explanation = listed[0]["explanation"]
    assert explanation["source"] == "rules" and explanation["model"] is None
    assert "payments" in explanation["summary"] and explanation["evidence"]


@pytest.mark.parametrize("stand_in", ["no_schema"], indirect=True)
async def test_server_without_structured_output_and_one_call_per_signature(
    stand_in: tuple[StandIn, str], make_settings: Callable[..., Settings]
) -> None:
    server, url = stand_in
    settings = make_settings(
        detectors={"warmup_records": 50},
        explain=explain_settings(url, max_calls_per_hour=2),
    )
    sidecar = Sidecar(settings)
    await sidecar.start()
    stage = sidecar.parts.require(ExplainStage)
    base = f"http://127.0.0.1:{sidecar.http_port}"
    try:
        async with aiohttp.ClientSession() as http:
            await open_incident(sidecar, http)
            await stage.explainer.idle()
            incident = the_incident(sidecar)
            # json_schema refused (422), json_object refused (400), then instructions only.
            formats = [r.get("response_format", {}).get("type") for r in server.requests]
            assert formats == ["json_schema", "json_object", None]
            assert incident.explanation and incident.explanation["source"] == "llm"
            # The same incident signature again (a recurring incident): the cache answers.
            again = await stage.explainer.explain(incident, stage.context(incident))
            assert again == incident.explanation and len(server.requests) == 3
            assert (
                sidecar.metrics.registry.get_sample_value("logguardian_explain_cache_hits_total")
                == 1
            )
            # On demand: skips the cache, spends the last call of the hour's budget.
            async with http.post(f"{base}/api/v1/incidents/{incident.id}/explain") as resp:
                body = await resp.json()
            assert resp.status == 200 and body["explanation"]["source"] == "llm"
            assert len(server.requests) == 4
            async with http.post(f"{base}/api/v1/incidents/{incident.id}/explain") as resp:
                body = await resp.json()
            assert body["explanation"]["source"] == "rules", "budget spent: rules stand"
            async with http.post(f"{base}/api/v1/incidents/nope/explain") as resp:
                assert resp.status == 404
            async with http.get(f"{base}/metrics") as resp:
                metrics = await resp.text()
    finally:
        await sidecar.stop()
    assert calls(sidecar, "accepted") == 2 and calls(sidecar, "budget") == 1
    sent = json.dumps(server.requests, ensure_ascii=False)
    assert "<EMAIL>" in sent and "<CARD>" in sent and "payments" in sent
    for name, secret in SECRETS.items():
        assert secret not in sent, f"{name} reached the LLM server"
    assert 'logguardian_explain_budget_left{budget="calls_hour"} 0.0' in metrics
    assert 'logguardian_explain_tokens_total{kind="prompt"}' in metrics


def test_alert_description_and_es_doc_carry_the_explanation() -> None:
    explained = {
        "summary": "payments fails card charges",
        "likely_cause": "gateway timeouts",
        "source": "llm",
        "model": "m",
        "confidence": "medium",
        "evidence": [],
        "next_steps": [],
    }
    incident = Incident(
        id="i1",
        service="payments",
        alertname="LogAnomaly",
        severity="high",
        started_at=1.0,
        last_seen=2.0,
        reasons=["error ratio up"],
        explanation=explained,
    )
    from logguardian.config import Alertmanager

    notes = alert(incident, Alertmanager(), now=3.0)["annotations"]
    assert notes["description"].startswith("payments fails card charges")
    assert "error ratio up" in notes["description"]
    a = Annotation("a", 1.0, "payments", "m", None, 0.9, [], None, None, explanation=explained)
    doc = annotation_doc(a)["logguardian"]["explanation"]
    assert doc["summary"] == "payments fails card charges" and doc["source"] == "llm"
