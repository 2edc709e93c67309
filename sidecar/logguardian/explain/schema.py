"""The explanation's shape: what the model must answer and what incidents carry."""

from __future__ import annotations

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


def answer_schema() -> dict[str, Any]:
    """JSON schema for `response_format`, with every property required (strict mode)."""
    schema = Answer.model_json_schema()
    for part in [schema, *schema.get("$defs", {}).values()]:
        part["additionalProperties"] = False
        part["required"] = list(part.get("properties", {}))
    return schema


def explanation(
    answer: Answer, source: Literal["llm", "rules"], model: str | None, generated_at: float
) -> dict[str, Any]:
    """The dict an incident carries (`Incident.explanation`)."""
    out = answer.model_dump()
    out.update(source=source, model=model, generated_at=generated_at)
    return out
