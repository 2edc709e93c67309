"""The explanation's shape: what the model must answer and what incidents carry."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Confidence = Literal["low", "medium", "high"]


class Evidence(BaseModel):
    """One cited fact: `ref` names a template id, exception fingerprint or service
    from the context; `fact` says what about it (numbers must come from the context)."""

    model_config = ConfigDict(extra="forbid")
    ref: str = Field(max_length=200)
    fact: str = Field(max_length=500)


class Answer(BaseModel):
    """What the LLM returns (validated before anything else looks at it)."""

    model_config = ConfigDict(extra="forbid")
    summary: str = Field(min_length=1, max_length=600)
    likely_cause: str = Field(min_length=1, max_length=800)
    evidence: list[Evidence] = Field(min_length=1, max_length=8)
    next_steps: list[str] = Field(min_length=1, max_length=6)
    confidence: Confidence


def answer_schema(refs: Iterable[str] = ()) -> dict[str, Any]:
    """JSON schema for `response_format`: every property required (OpenAI strict
    mode), references inlined (grammar converters of local servers vary in $ref
    support). `refs`: what evidence may cite (the context's ids and names), as an
    enum, so a grammar-constrained decoder cannot cite anything else at all."""
    schema = Answer.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(defs[ref.rsplit("/", 1)[1]])
            out = {k: inline(v) for k, v in node.items() if k != "title"}
            if out.get("type") == "object":
                out["additionalProperties"] = False
                out["required"] = list(out.get("properties", {}))
            return out
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    out = dict(inline(schema))
    # Tighter than validation: a short answer fits `max_tokens` and reads on a pager.
    props = out["properties"]
    props["summary"]["maxLength"] = 300
    props["likely_cause"]["maxLength"] = 300
    props["evidence"]["maxItems"] = 4
    props["evidence"]["items"]["properties"]["fact"]["maxLength"] = 200
    props["next_steps"]["maxItems"] = 4
    props["next_steps"]["items"]["maxLength"] = 200
    allowed = sorted(set(refs))
    if allowed:
        props["evidence"]["items"]["properties"]["ref"] = {"type": "string", "enum": allowed}
    return out


def explanation(
    answer: Answer, source: Literal["llm", "rules"], model: str | None, generated_at: float
) -> dict[str, Any]:
    """The dict an incident carries (`Incident.explanation`)."""
    out = answer.model_dump()
    out.update(source=source, model=model, generated_at=generated_at)
    return out
