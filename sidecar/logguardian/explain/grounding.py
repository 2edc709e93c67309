"""Rejects an answer that cites anything the context does not contain.

A small or hallucinating model invents template ids, services and numbers; an
on-call engineer cannot tell them from real ones, so one invented citation costs
the whole answer and the rules explanation stands.
"""

from __future__ import annotations

import re

from .context import Context
from .schema import Answer

# A number, also with a unit glued on ("9x", "35ms"); not inside a word or an id.
_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?")
_HEXISH = re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,64}\b")


# Why an answer was rejected, as a bounded label (bench, logs): by the problem's prefix.
REASONS = {
    "evidence cites unknown ref": "unknown_ref",
    "states number": "unknown_number",
    "cites unknown id": "unknown_id",
}


def reason(problem: str) -> str:
    """The bounded label of one problem `problems()` found."""
    return next((label for prefix, label in REASONS.items() if problem.startswith(prefix)), "other")


def problems(answer: Answer, context: Context) -> list[str]:
    """Empty when every citation is grounded; else what was not found."""
    found: list[str] = []
    refs = context.refs()
    numbers = context.numbers()
    known_hex = set(_HEXISH.findall(context.prompt_json()))
    for item in answer.evidence:
        if item.ref not in refs:
            found.append(f"evidence cites unknown ref {item.ref!r}")
    # What the engineer reads as findings states only the context's numbers; the next
    # steps may say "wait 5 minutes".
    texts = [answer.summary, answer.likely_cause, *(e.fact for e in answer.evidence)]
    for text in texts:
        for raw in _NUMBER.findall(_HEXISH.sub(" ", text)):
            if float(raw) not in numbers:
                found.append(f"states number {raw} not in the context")
    for text in texts:
        for token in _HEXISH.findall(text):
            if token not in known_hex:
                found.append(f"cites unknown id {token!r}")
    return found
