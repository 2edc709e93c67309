"""One explanation request to an OpenAI-compatible server, with the `openai` async
client: structured output where the server supports it, validation, one retry.

Only masked context is ever put in a message. Prompts are logged only at debug
level (and are masked by construction)."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import openai
from pydantic import ValidationError

from ..config import ExplainLLMSettings
from .context import Context
from .schema import Answer, answer_schema

log = logging.getLogger(__name__)

SYSTEM = (
    "You are an SRE assistant. Explain a log anomaly incident to an on-call engineer. "
    "Use ONLY the facts in the incident JSON. Answer with one JSON object with keys: "
    "summary (one sentence: what broke), likely_cause (short), evidence (1-4 objects "
    '{"ref": <a template id, exception fingerprint or the service name from the JSON>, '
    '"fact": <what it shows, numbers copied exactly from the JSON>}), next_steps '
    '(1-4 short strings), confidence ("low", "medium" or "high"). '
    "Never invent ids, services or numbers."
)
RETRY = "That was not a valid answer ({error}). Reply again with only the JSON object."
_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.MULTILINE)


class CallFailed(Exception):
    """The server could not be asked: `outcome` is a bounded metric label."""

    def __init__(self, outcome: str, detail: str):
        super().__init__(detail)
        self.outcome = outcome


@dataclass(slots=True)
class Reply:
    answer: Answer | None  # None: still invalid after the retry
    error: str | None
    prompt_tokens: int
    completion_tokens: int
    attempts: int


def api_key(settings: ExplainLLMSettings) -> str:
    if settings.api_key_file is not None:
        return Path(settings.api_key_file).read_text().strip()
    # Local servers (llama.cpp, Ollama) need no key, but the client insists on one.
    return settings.api_key or "unused"


def parse(text: str) -> Answer:
    """The answer object from the model's text (tolerates a ```json fence)."""
    body = _FENCE.sub("", text.strip())
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end < start:
        raise ValueError("no JSON object in the answer")
    # strict=False: small models put raw newlines inside strings.
    return Answer.model_validate(json.loads(body[start : end + 1], strict=False))


class LLMClient:
    def __init__(self, settings: ExplainLLMSettings):
        self.settings = settings
        self.model = settings.model
        self._client = openai.AsyncOpenAI(
            base_url=settings.base_url,
            api_key=api_key(settings),
            timeout=settings.timeout_seconds,
            max_retries=0,
        )
        # Structured output, most standard first; a server that refuses one (400/422
        # naming response_format) gets the next: OpenAI `json_schema`, then the
        # `json_object` + `schema` form (llama.cpp's server, Anyscale, Together), then
        # instructions only.
        self.modes = ["json_schema", "json_object", "none"]

    async def close(self) -> None:
        await self._client.close()

    async def ask(self, context: Context) -> Reply:
        messages: list[dict[str, str]] = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "Incident:\n" + context.prompt_json()},
        ]
        if log.isEnabledFor(logging.DEBUG):
            log.debug("explain prompt (masked): %s", messages[1]["content"])
        prompt_tokens = completion_tokens = 0
        error: str | None = None
        schema = answer_schema(context.refs())
        for attempt in (1, 2):
            text, usage = await self._complete(messages, schema)
            prompt_tokens += usage[0]
            completion_tokens += usage[1]
            try:
                return Reply(parse(text), None, prompt_tokens, completion_tokens, attempt)
            except (ValueError, ValidationError) as exc:
                error = str(exc).splitlines()[0][:200]
                messages = [
                    *messages[:2],
                    {"role": "assistant", "content": text[:2000]},
                    {"role": "user", "content": RETRY.format(error=error)},
                ]
        return Reply(None, error, prompt_tokens, completion_tokens, 2)

    async def _complete(
        self, messages: list[dict[str, str]], schema: dict[str, object]
    ) -> tuple[str, tuple[int, int]]:
        kwargs: dict[str, object] = {
            "model": self.model,
            "messages": messages,
            "max_tokens": self.settings.max_tokens,
            "temperature": 0,
        }
        mode = self.modes[0]
        if mode == "json_schema":
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "incident_explanation", "schema": schema},
            }
        elif mode == "json_object":
            kwargs["response_format"] = {"type": "json_object", "schema": schema}
        try:
            response = await self._client.chat.completions.create(**kwargs)  # type: ignore[call-overload]
        except (
            openai.BadRequestError,
            openai.UnprocessableEntityError,
            openai.InternalServerError,  # llama-cpp-python answers 500 to a refused field
        ) as exc:
            text = f"{exc} {json.dumps(exc.body, default=str)}".lower()
            if mode == "none" or "response_format" not in text:
                raise CallFailed("error", f"LLM server answered {exc.status_code}") from None
            self.modes.pop(0)
            log.info("LLM server refused response_format %s; trying %s", mode, self.modes[0])
            return await self._complete(messages, schema)
        except openai.APITimeoutError:
            raise CallFailed("timeout", "the LLM server did not answer in time") from None
        except openai.RateLimitError as exc:
            raise CallFailed("rate_limited", f"429 from the LLM server: {exc}") from None
        except openai.APIConnectionError as exc:
            raise CallFailed("unavailable", f"cannot reach the LLM server: {exc}") from None
        except openai.APIStatusError as exc:
            raise CallFailed("error", f"LLM server answered {exc.status_code}") from None
        except openai.OpenAIError as exc:
            raise CallFailed("error", f"LLM call failed: {exc}") from None
        if not response.choices:
            return "", _usage(response)
        return response.choices[0].message.content or "", _usage(response)


def _usage(response: object) -> tuple[int, int]:
    usage = getattr(response, "usage", None)
    if usage is None:
        return 0, 0
    return int(usage.prompt_tokens or 0), int(usage.completion_tokens or 0)
