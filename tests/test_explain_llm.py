"""Explanations from a real local model: llama.cpp's OpenAI-compatible server with
Gemma 3 270M (tests/services/llm.py), reached through a recording proxy so the test
sees exactly what left the sidecar."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import aiohttp
from logguardian.config import Settings
from logguardian.explain.grounding import problems
from logguardian.explain.schema import Answer
from logguardian.explain.stage import ExplainStage
from logguardian.incidents import IncidentStage
from logguardian.server import Sidecar
from services.llm import LLMServer, RecordingProxy
from services.planted import MASK_PATTERNS, SECRETS, baseline_records, incident_records
from services.traffic import post_logs, settle


async def test_real_model_explains_grounded_and_private(
    llm_server: LLMServer,
    recording_proxy: RecordingProxy,
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(
        detectors={"warmup_records": 50},
        explain={
            "llm": {
                "base_url": recording_proxy.url,
                "model": llm_server.model,
                "timeout_seconds": 240.0,
                "max_tokens": 600,
            },
            "min_severity": "low",
            "mask_patterns": MASK_PATTERNS,
        },
    )
    sidecar = Sidecar(settings)
    await sidecar.start()
    stage = sidecar.parts.require(ExplainStage)
    explainer = stage.explainer
    try:
        async with aiohttp.ClientSession() as http:
            port = sidecar.http_port or 0
            sent = 0
            for records in (baseline_records("payments"), incident_records("payments")):
                await post_logs(http, port, records)
                sent += len(records)
            await settle(sidecar, sent)
            await explainer.idle()
            async with http.get(f"http://127.0.0.1:{port}/api/v1/incidents") as resp:
                listed = (await resp.json())["incidents"]
        incident = sidecar.parts.require(IncidentStage).list()[0]
        context = stage.contexts[incident.id]
        first_bodies = len(recording_proxy.chat_requests())
        # The same incident signature again: answered from the cache, no new request.
        await explainer.explain(incident, stage.context(incident))
        assert len(recording_proxy.chat_requests()) == first_bodies
    finally:
        await sidecar.stop()

    assert len(listed) == 1
    explained = listed[0]["explanation"]
    outcomes = {k: v for k, v in explainer.outcomes.items() if v}
    print("explanation:", json.dumps(explained, indent=1), outcomes, explainer.last_rejection)
    # One incident, one explanation attempt: one or two requests (a retry on bad JSON),
    # plus one when the server refuses the OpenAI `json_schema` response_format.
    assert sum(outcomes.values()) == 1, outcomes
    assert 1 <= first_bodies <= 3
    if outcomes.get("accepted"):
        assert explained["source"] == "llm" and explained["model"] == llm_server.model
        answer = Answer.model_validate(
            {k: explained[k] for k in ("summary", "likely_cause", "evidence", "next_steps")}
            | {"confidence": explained["confidence"]}
        )
        assert problems(answer, context) == []
    else:
        # A small model may cite what is not there: counted, and the rules one stands.
        assert set(outcomes) <= {"rejected", "invalid"}, outcomes
        assert explained["source"] == "rules"
        metric = sidecar.metrics.registry.get_sample_value(
            "logguardian_explain_calls_total", {"outcome": next(iter(outcomes))}
        )
        assert metric == 1
    assert explainer.metrics.registry.get_sample_value("logguardian_explain_cache_hits_total") == 1

    # Nothing planted in the records left the process; the context did.
    bodies = recording_proxy.bodies
    assert bodies
    for body in bodies:
        text = body.decode()
        decoded = json.dumps(json.loads(text), ensure_ascii=False)
        for name, secret in SECRETS.items():
            assert secret not in text and secret not in decoded, f"{name} leaked"
            assert secret.replace(" ", "") not in decoded.replace(" ", ""), f"{name} leaked"
    request = recording_proxy.chat_requests()[-1]
    prompt = request["messages"][1]["content"]
    assert "payments" in prompt and incident.template_ids[0] in prompt
    # The structured-output schema the server decoded under offers only real refs.
    form: dict[str, Any] = request["response_format"]  # type: ignore[assignment]
    schema = form["schema"] if form["type"] == "json_object" else form["json_schema"]["schema"]
    refs = schema["properties"]["evidence"]["items"]["properties"]["ref"]["enum"]
    assert refs == sorted(context.refs()) and incident.template_ids[0] in refs
    assert "<EMAIL>" in prompt and "<CARD>" in prompt and "<MASKED>" in prompt
