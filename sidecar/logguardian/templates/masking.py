"""Pre-masking: variable values become named placeholders before any grouping.

Two tiers, both run over a whole batch joined by newlines so the regex engine
loops in C instead of Python:

* `shape_keys` drops every digit (one `bytes.translate`). Lines that differ only
  in their digits almost always share a template, so this key fronts a cache and
  most lines never reach a regex at all.
* `mask_many` rewrites IPs, UUIDs, hex, timestamps, paths, emails, pod suffixes
  and numbers into `<IP>`, `<UUID>`… for the lines the cache did not know.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_DIGITS = b"0123456789"
# Control characters (except tab) and U+FFFD runs: what binary garbage decodes to.
_BINARY = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ufffd]+")
_NEWLINES = re.compile(r"[\r\n]+")

_TLD = (
    r"(?:com|net|org|edu|gov|mil|info|biz|local|internal|lan|ar|at|au|be|br|ca|ch|cl|cn|cz|de|dk"
    r"|es|eu|fi|fr|hk|ie|il|jp|kr|mx|nl|nz|ph|pl|pt|ru|se|sg|th|tr|tw|ua|uk|us|vn|za)"
)
# Order matters: specific shapes first, so a UUID is not eaten as numbers.
_RULES: tuple[tuple[str, str], ...] = (
    # URLs and paths (two or more segments, query string included) come first so
    # the ids inside them do not split them into many positions.
    (r"\b[a-z][a-z0-9+.-]*://[^\s\"'<>]+", "<URL>"),
    (r"(?<![\w./<>-])(?:/[\w.@%+~:-]+){2,}/?(?:\?[^\s\"'<>]*)?", "<PATH>"),
    # 2024-01-31T12:00:00.123Z, 2015-10-18 18:01:47,978, Sun Jul 3 12:00:01 2005,
    # Jun 14 15:16:01 (syslog)
    (r"\d{4}-\d{2}-\d{2}[T ]\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?\b", "<TS>"),
    (r"\b(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) +)?(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov"
     r"|Dec) +\d{1,2} +\d{1,2}:\d{2}:\d{2}(?: +\d{4})?\b", "<TS>"),
    (r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b", "<UUID>"),
    (r"\b[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+\b", "<EMAIL>"),
    (r"\b(?:[0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}\b", "<MAC>"),
    # Host names: dotted names ending in a common top-level domain.
    (r"(?<![\w.-])(?:[A-Za-z0-9-]+\.)+" + _TLD + r"\b(?![.-])", "<HOST>"),
    (r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?![\w.]*\d)", "<IP>"),
    (r"(?<![\w:])(?=[0-9a-fA-F:]*\d)(?:[0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}(?![\w:])", "<IP>"),
    (r"(?<![\w:>])(?=[0-9a-fA-F:]*\d)(?:[0-9a-fA-F]{1,4}(?::[0-9a-fA-F]{1,4})*)?::"
     r"(?:[0-9a-fA-F]{1,4}(?::[0-9a-fA-F]{1,4})*)?(?![\w:])", "<IP>"),
    # Kubernetes pod names: <deployment>-<replicaset hash>-<5 char suffix>
    (r"\b([a-z0-9]+(?:-[a-z0-9]+)*)-[bcdfghjklmnpqrstvwxz2-9]{6,10}-[bcdfghjklmnpqrstvwxz2-9]{5}\b",
     r"\1-<POD>"),
    (r"\b0[xX][0-9a-fA-F]+\b", "<HEX>"),
    # Bare hex ids (hashes, request ids): 8+ hex chars mixing digits and letters.
    (r"\b(?=[0-9a-fA-F]*[0-9])(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}\b", "<HEX>"),
    (r"\b\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d+)?\b", "<TIME>"),
    # A sign belongs to the number only when it does not follow a word (a-1-2); a
    # unit of measure belongs to it too ("12 KB" and "3 MB" are the same field).
    (r"(?:(?<![A-Za-z0-9.-])[-+])?\d+(?:\.\d+)*(?: ?[KMGTP]i?B\b| ?B\b|(?:ms|us|ns|s|%)(?![\w.]))?",
     "<NUM>"),
    # Lists and glued runs of values ("<IP>,<IP>", "<NUM><NUM>") are one value.
    (r"(<[A-Z]+>)(?:, ?<[A-Z]+>|<[A-Z]+>)+", r"\1"),
    # An empty value in parentheses, "from 1.2.3.4 () at": same slot as "(host)".
    (r"(?<=\s)\(\)(?=\s|$)", "(<NONE>)"),
)
_COMPILED = tuple((re.compile(pattern), repl) for pattern, repl in _RULES)

PLACEHOLDERS = ("<TS>", "<UUID>", "<EMAIL>", "<URL>", "<PATH>", "<MAC>", "<IP>", "<HOST>",
                "<POD>", "<HEX>", "<TIME>", "<NUM>", "<BIN>", "<NONE>")


def clean(message: str, max_chars: int) -> str:
    """One line of text: truncated, newlines flattened, binary runs marked."""
    if len(message) > max_chars:
        message = message[:max_chars]
    if "\n" in message or "\r" in message:
        message = _NEWLINES.sub(" ", message)
    if not message.isprintable() or "\ufffd" in message:
        message = _BINARY.sub("<BIN>", message)
    return message


def clean_many(messages: Sequence[str], max_chars: int) -> list[str]:
    """`clean` for a batch, paying per-line only for lines that need it."""
    out = list(messages)
    joined = "\n".join(out)
    if joined.count("\n") == len(out) - 1 and joined.isascii() and joined.replace(
        "\n", ""
    ).isprintable() and all(len(m) <= max_chars for m in out):
        return out
    return [clean(m, max_chars) for m in out]


def shape_keys(lines: Sequence[str]) -> list[bytes]:
    """Cache keys: each line with its digits removed (lines must be newline-free)."""
    return "\n".join(lines).encode("utf-8", "surrogatepass").translate(None, _DIGITS).split(b"\n")


def mask(line: str) -> str:
    for pattern, repl in _COMPILED:
        line = pattern.sub(repl, line)
    return line


def mask_many(lines: Sequence[str]) -> list[str]:
    """`mask` for newline-free lines, one regex pass per rule over the whole batch."""
    if not lines:
        return []
    joined = "\n".join(lines)
    for pattern, repl in _COMPILED:
        joined = pattern.sub(repl, joined)
    return joined.split("\n")
