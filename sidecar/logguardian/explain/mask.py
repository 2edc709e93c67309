"""Masks secrets and personal data in text before it leaves the process.

Order matters: structured secrets (JWTs, bearer tokens, keys) go first so their
pieces are not half-masked as something else; card numbers are masked only when
the Luhn check passes, so ids and timestamps of the same length survive.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_BUILTIN: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("JWT", re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}")),
    ("TOKEN", re.compile(r"(?i)\b(bearer|token|basic)\s+[A-Za-z0-9._~+/=-]{8,}")),
    ("AWS_KEY", re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[A-Z0-9]{16}\b")),
    ("GCP_KEY", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    (
        "SECRET",
        re.compile(
            r"(?i)\b(password|passwd|pwd|secret|api[_-]?key|access[_-]?key|"
            r"aws_secret_access_key|client[_-]?secret)(\s*[:=]\s*)(\"[^\"]*\"|'[^']*'|\S+)"
        ),
    ),
    ("EMAIL", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")),
    (
        "IP",
        re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b"),
    ),
    (
        "IP",
        re.compile(
            r"(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}(?![\w:])"
            r"|(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){1,6}:(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4})*)?(?![\w:])"
        ),
    ),
)
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d])")
_PHONE = re.compile(r"(?<![\w+])\+?\d{1,3}[ .-]?\(?\d{2,4}\)?[ .-]?\d{3,4}[ .-]?\d{3,4}(?!\w)")


def luhn_ok(digits: str) -> bool:
    """The card-number checksum: doubling every second digit from the right."""
    total = 0
    for n, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if n % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


class Masker:
    """Replaces each finding with `<KIND>`; `masked` counts what was replaced."""

    def __init__(self, extra_patterns: Iterable[str] = ()):
        self._extra = [re.compile(p) for p in extra_patterns]
        self.masked = 0

    def mask(self, text: str) -> str:
        for kind, pattern in _BUILTIN:
            if kind == "SECRET":
                text, n = pattern.subn(lambda m: f"{m.group(1)}{m.group(2)}<SECRET>", text)
            elif kind == "TOKEN":
                text, n = pattern.subn(lambda m: f"{m.group(1)} <TOKEN>", text)
            else:
                text, n = pattern.subn(f"<{kind}>", text)
            self.masked += n
        text = _CARD.sub(self._card, text)
        text = _PHONE.sub(self._phone, text)
        for pattern in self._extra:
            text, n = pattern.subn("<MASKED>", text)
            self.masked += n
        return text

    def _card(self, m: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", m.group(0))
        if 13 <= len(digits) <= 19 and luhn_ok(digits):
            self.masked += 1
            return "<CARD>"
        return m.group(0)

    def _phone(self, m: re.Match[str]) -> str:
        raw = m.group(0)
        digits = re.sub(r"\D", "", raw)
        # A phone number has separators or a leading +; a bare run of digits is an id.
        if 9 <= len(digits) <= 15 and (raw.startswith("+") or re.search(r"[ .()-]", raw)):
            self.masked += 1
            return "<PHONE>"
        return raw
