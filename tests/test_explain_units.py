"""Masking (Luhn-checked cards, tokens, keys, PII), grounding, rules explanation,
budget and cache of incident explanations."""

from __future__ import annotations

import pytest
from logguardian.explain.budget import Budget, Cache
from logguardian.explain.client import parse
from logguardian.explain.context import MAX_TEXT, Context, TemplateFacts, clip
from logguardian.explain.grounding import problems
from logguardian.explain.mask import Masker, luhn_ok
from logguardian.explain.rules import rules_explanation
from logguardian.explain.schema import Answer, Evidence, answer_schema


@pytest.mark.parametrize(
    "text, secret",
    [
        ("mail bob.smith+x@corp.example.org now", "bob.smith+x@corp.example.org"),
        ("from 192.168.10.254 port 22", "192.168.10.254"),
        ("peer fe80::1ff:fe23:4567:890a up", "fe80::1ff:fe23:4567:890a"),
        ("Authorization: Bearer abc.DEF-123_456789", "abc.DEF-123_456789"),
        ("key AKIAIOSFODNN7EXAMPLE used", "AKIAIOSFODNN7EXAMPLE"),
        (
            "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abcdefghijklmnop",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abcdefghijklmnop",
        ),
        ("card 4111-1111-1111-1111 declined", "4111-1111-1111-1111"),
        ("card 5500 0000 0000 0004 declined", "5500 0000 0000 0004"),
        ("call +44 20 7946 0958 today", "+44 20 7946 0958"),
        ("password=hunter22 rejected", "hunter22"),
    ],
)
def test_masks_secrets(text: str, secret: str) -> None:
    masker = Masker()
    out = masker.mask(text)
    assert secret not in out
    assert masker.masked >= 1
    assert out.split()[0][:4] == text.split()[0][:4], "the words around a secret stay"


def test_luhn_decides_what_is_a_card() -> None:
    assert luhn_ok("4111111111111111")
    assert not luhn_ok("4111111111111112")
    out = Masker().mask("ids 4111111111111112 and 1700000000123 ts, card 4111111111111111")
    assert "4111111111111112" in out and "1700000000123" in out
    assert "4111111111111111" not in out and "<CARD>" in out


def test_ordinary_log_numbers_survive() -> None:
    text = "GET /api/items/42 200 in 35ms at 2026-12-01 10:40:00.123 v3.2.1 pid 12345"
    assert Masker().mask(text) == text


def test_configured_patterns() -> None:
    masker = Masker([r"ORD-\d+", r"tenant=\w+"])
    out = masker.mask("order ORD-99817 for tenant=acme")
    assert out == "order <MASKED> for <MASKED>"


def context() -> Context:
    return Context(
        incident_id="i1",
        service="payments",
        alertname="LogRateAnomaly",
        severity="high",
        anomalies=67,
        started_at=1_700_000_000.0,
        last_seen=1_700_000_300.0,
        window_seconds=60.0,
        reasons=["error ratio in payments 71% vs 1.8% baseline"],
        templates=[
            TemplateFacts("e0cb4b8309", "ERROR GatewayClient - charge <NUM> declined", 21, 0.4)
        ],
        examples=["ERROR GatewayClient - charge 17215629 declined"],
        kubernetes={"namespace": "shop", "version": "1.4.2"},
    )


def answer(ref: str = "e0cb4b8309", fact: str = "21 declined charges, 71% errors") -> Answer:
    return Answer(
        summary="payments is failing card charges",
        likely_cause="the gateway declines charges",
        evidence=[Evidence(ref=ref, fact=fact)],
        next_steps=["check the gateway"],
        confidence="medium",
    )


def test_grounded_answer_passes() -> None:
    assert problems(answer(), context()) == []
    assert problems(answer(ref="payments", fact="error ratio 71% vs 1.8%"), context()) == []


@pytest.mark.parametrize(
    "ref, fact, why",
    [
        ("deadbeef01", "21 declined", "unknown ref"),
        ("checkout", "21 declined", "unknown ref"),
        ("e0cb4b8309", "9x baseline", "number 9"),
        ("e0cb4b8309", "250 declined charges", "number 250"),
        ("e0cb4b8309", "template 1a2b3c4d5e also rose", "unknown id"),
    ],
)
def test_ungrounded_answer_is_rejected(ref: str, fact: str, why: str) -> None:
    found = problems(answer(ref, fact), context())
    assert found and any(why in f for f in found), found


def test_invented_id_in_summary_is_rejected() -> None:
    a = answer()
    a.summary = "template 9f9f9f9f9f spiked"
    assert problems(a, context())


def test_invented_number_in_summary_or_cause_is_rejected() -> None:
    a = answer()
    a.summary = "the worst error level since 2024"
    assert any("number 2024" in p for p in problems(a, context()))
    a = answer()
    a.likely_cause = "the gateway declines 71% of 250 charges"
    assert any("number 250" in p for p in problems(a, context()))
    a = answer()
    a.next_steps = ["wait 5 minutes, then check the gateway"]
    assert problems(a, context()) == [], "advice may carry its own numbers"


def test_schema_lets_evidence_cite_only_the_contexts_refs() -> None:
    """What a grammar-constrained decoder is held to: the refs grounding accepts."""
    ctx = context()
    ref = answer_schema(ctx.refs())["properties"]["evidence"]["items"]["properties"]["ref"]
    assert ref == {"type": "string", "enum": ["e0cb4b8309", "payments", "shop"]}
    for allowed in ref["enum"]:
        assert problems(answer(ref=allowed, fact="21 declined"), ctx) == []
    # No context, no enum: the schema alone still validates answers.
    free = answer_schema()["properties"]["evidence"]["items"]["properties"]["ref"]
    assert "enum" not in free and free["type"] == "string"


def test_rules_explanation_is_valid_and_factual() -> None:
    out = rules_explanation(context(), now=1.0)
    assert out["source"] == "rules" and out["model"] is None
    fields = {
        k: out[k] for k in ("summary", "likely_cause", "evidence", "next_steps", "confidence")
    }
    parsed = Answer.model_validate(fields)
    assert problems(parsed, context()) == [], "the rules explanation is grounded by construction"
    assert "67" in out["summary"] and "payments" in out["summary"]
    assert any("1.4.2" in s for s in out["next_steps"])


def test_parse_tolerates_a_fence_and_rejects_garbage() -> None:
    body = (
        '{"summary": "s", "likely_cause": "c", "evidence": [{"ref": "r", "fact": "f"}], '
        '"next_steps": ["n"], "confidence": "low"}'
    )
    assert parse(f"```json\n{body}\n```").summary == "s"
    with pytest.raises(ValueError):
        parse("I think the service is down.")
    with pytest.raises(ValueError):
        parse('{"summary": "s"}')


def test_budget_per_hour_and_day() -> None:
    budget = Budget(calls_per_hour=2, tokens_per_day=1000)
    t = 1_000_000.0
    assert budget.allow(t)
    budget.spend_call(t)
    budget.spend_call(t + 1)
    assert not budget.allow(t + 2) and budget.calls_left(t + 2) == 0
    assert budget.allow(t + 3601), "the hour slides"
    budget.spend_tokens(1000, t + 3601)
    assert not budget.allow(t + 3602) and budget.tokens_left(t + 3602) == 0
    assert budget.allow(t + 3601 + 86400)


def test_cache_ttl() -> None:
    cache = Cache(ttl=10)
    cache.put("k", {"summary": "x"}, now=100)
    assert cache.get("k", now=105) == (True, {"summary": "x"})
    assert cache.get("k", now=111) == (False, None)
    cache.put("rejected", None, now=100)
    assert cache.get("rejected", now=101) == (True, None)


def test_clip_masks_before_cutting() -> None:
    """A secret across the length limit must not leave a recognisable-less piece."""
    masker = Masker()
    line = "x" * (MAX_TEXT - 10) + " card 4111 1111 1111 1111 and more words after it"
    out = clip(line, masker)
    assert "4111" not in out and len(out) <= MAX_TEXT + 2
    # Already cut upstream (incident examples) right inside a card number.
    tail = "card 4111 1111 11"
    cut = "word " * ((500 - len(tail)) // 5) + "w" * ((500 - len(tail)) % 5) + tail
    assert len(cut) == 500
    short = Masker()
    out = clip(cut[-120:], short, cut_at=120)
    assert "4111" not in out and "1111" not in out and out.startswith("word")


def test_template_placeholders_do_not_shield_secrets() -> None:
    from logguardian.explain.stage import PLACEHOLDER

    template = (
        "key AKIAIOSFODNN<NUM>EXAMPLE "
        "jwt eyJhbGciOiJIUzI<NUM>NiJ9.eyJzdWIiOiJhbGljZSJ<NUM>.c<NUM>lnbmF"
    )
    out = Masker().mask(PLACEHOLDER.sub("0", template))
    assert "AKIAIOSFODNN" not in out and "eyJzdWIi" not in out
