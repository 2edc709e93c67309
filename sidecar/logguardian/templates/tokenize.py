"""Split a masked line into units: a word plus the separators glued after it.

Keeping separators inside units lets a template print exactly as the log looked
(`user=<*> uid=<NUM>`), while `key=value`, `key:value`, `(x)`, `[x]`, `"x"` and
JSON-ish text still split into positions that can vary independently.
"""

from __future__ import annotations

import re

SEPARATORS = " \t=,;:()[]{}\"'|"
_SEP_CLASS = re.escape(SEPARATORS)
_UNIT = re.compile(rf"[^{_SEP_CLASS}]+[{_SEP_CLASS}]*|[{_SEP_CLASS}]+")
WILDCARD = "<*>"


def units(line: str) -> list[str]:
    return _UNIT.findall(line)


def word(unit: str) -> str:
    """The unit without its trailing separators."""
    return unit.rstrip(SEPARATORS) or unit


def separator(unit: str) -> str:
    stripped = unit.rstrip(SEPARATORS)
    return unit[len(stripped) :] if stripped else ""
