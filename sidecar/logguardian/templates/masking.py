"""Pre-masking: variable values become named placeholders before any grouping.

Two tiers, both run over a whole batch joined by newlines so the regex engine
loops in C instead of Python:

* `shape_keys` writes every digit as "0" (one `bytes.translate`). Lines that
  differ only in digit values share a template, so this key fronts a cache and
  most lines never reach a regex at all.
* `mask_many` rewrites IPs, UUIDs, hex, timestamps, paths, emails, pod suffixes
  and numbers into `<IP>`, `<UUID>`… for the lines the cache did not know.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# Control characters (except tab) and U+FFFD runs: what binary garbage decodes to.
# Lone surrogates (undecodable bytes smuggled through) count too: they cannot be
# written as UTF-8, so they must not reach a template text or a snapshot.
_BINARY = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ufffd\ud800-\udfff]+")
_NEWLINES = re.compile(r"[\r\n]+")

_TLD = (
    r"(?:com|net|org|edu|gov|mil|info|biz|local|internal|lan|ar|at|au|be|br|ca|ch|cl|cn|cz|de|dk"
    r"|es|eu|fi|fr|hk|ie|il|jp|kr|mx|nl|nz|ph|pl|pt|ru|se|sg|th|tr|tw|ua|uk|us|vn|za)"
)
_MONTHS = (
    "Jan ",
    "Feb ",
    "Mar ",
    "Apr ",
    "May ",
    "Jun ",
    "Jul ",
    "Aug ",
    "Sep ",
    "Oct ",
    "Nov ",
    "Dec ",
)


@dataclass(frozen=True, slots=True)
class Rule:
    """One masking rule. `gates`: the rule can only match text holding one of these
    substrings (checked on the whole batch first: a substring test is far cheaper
    than a regex scan); `probe`, a cheap regex playing the same role. `digits`: it
    can only match text that has a digit.

    Patterns start with a literal or a character class where they can, and check
    the left word boundary with a lookbehind after it: the regex engine then skips
    non-starting characters in C instead of trying the whole pattern at each one.
    """

    pattern: re.Pattern[str]
    repl: str | Callable[[re.Match[str]], str]
    gates: tuple[str, ...] = ()
    digits: bool = False
    probe: re.Pattern[str] | None = None


def _rule(
    pattern: str,
    repl: str | Callable[[re.Match[str]], str],
    *gates: str,
    digits: bool = False,
    probe: str | None = None,
) -> Rule:
    return Rule(
        re.compile(pattern), repl, gates, digits, re.compile(probe) if probe is not None else None
    )


def _mixed_hex(match: re.Match[str]) -> str:
    """A run of 8+ hex characters is an id only if it mixes digits and letters
    ("deadbeef" and "20171223" are not ids of that kind)."""
    text = match.group()
    if text.isdigit() or text.isalpha():
        return text
    return "<HEX>"


_HEXCH = "[0-9a-fA-F]"
_POD = "[bcdfghjklmnpqrstvwxz2-9]"

# Order matters: URLs and paths first so the ids inside them do not split them
# into many positions, specific shapes (UUID, IP) before bare numbers, and the
# folding rules last because they read placeholders.
RULES: tuple[Rule, ...] = (
    _rule(r"[a-z](?<![\w+.-][a-z])[a-z0-9+.-]*://[^\s\"'<>]+", "<URL>", "://"),
    # A glob segment (`/api/*`, `/var/log/*.log`) is a path segment too.
    _rule(r"/(?<![\w./<>-]/)[\w.@%+~:*-]+(?:/[\w.@%+~:*-]+)+/?(?:\?[^\s\"'<>]*)?", "<PATH>", "/"),
    # Windows paths: C:\Windows\x.dll, \\server\share\f
    _rule(r"(?:[A-Za-z]:|\\\\[\w.$-]+)\\(?<![\w\\][A-Za-z]:\\)[^\s,;\"'<>]*", "<PATH>", "\\"),
    # 2024-01-31T12:00:00.123Z, 2015-10-18 18:01:47,978
    _rule(
        r"\d{4}-\d{2}-\d{2}[T ]\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?\b",
        "<TS>",
        ":",
        digits=True,
        probe=r"-\d\d-\d\d[T ]\d",
    ),
    # Sun Jul 3 12:00:01 2005, Jun 14 15:16:01 (syslog)
    _rule(
        r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun|Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
        r"(?<!\w...) +(?:(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +)?"
        r"\d{1,2} +\d{1,2}:\d{2}:\d{2}(?: +\d{4})?\b",
        "<TS>",
        *_MONTHS,
        digits=True,
    ),
    _rule(
        rf"{_HEXCH}{{8}}-{_HEXCH}{{4}}-{_HEXCH}{{4}}-{_HEXCH}{{4}}-{_HEXCH}{{12}}\b",
        "<UUID>",
        "-",
        digits=True,
        probe=rf"-{_HEXCH}{{4}}-{_HEXCH}{{4}}-",
    ),
    _rule(
        r"\b[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+\b",
        "<EMAIL>",
        "@",
        probe=r"@[A-Za-z0-9-]+\.[A-Za-z]",
    ),
    _rule(
        rf"{_HEXCH}{{2}}(?<!\w{_HEXCH}{{2}}):(?:{_HEXCH}{{2}}:){{4}}{_HEXCH}{{2}}\b",
        "<MAC>",
        ":",
        digits=True,
        probe=rf":{_HEXCH}{{2}}:{_HEXCH}{{2}}:",
    ),
    # Host names: dotted names ending in a common top-level domain.
    _rule(
        r"[A-Za-z0-9](?<![\w.-][A-Za-z0-9])[A-Za-z0-9-]*\.(?:[A-Za-z0-9-]+\.)*"
        + _TLD
        + r"\b(?![.-])",
        "<HOST>",
        probe=r"\." + _TLD + r"\b",
    ),
    _rule(
        r"\d(?<![\w.]\d)\d{0,2}(?:\.\d{1,3}){3}(?![\w.]*\d)",
        "<IP>",
        ".",
        digits=True,
        probe=r"\.\d{1,3}\.\d{1,3}\.",
    ),
    _rule(
        rf"{_HEXCH}(?<![\w:]{_HEXCH}){_HEXCH}{{0,3}}:(?:{_HEXCH}{{1,4}}:){{6}}{_HEXCH}{{1,4}}"
        r"(?![\w:])",
        "<IP>",
        ":",
        digits=True,
        probe=rf":{_HEXCH}{{1,4}}:{_HEXCH}{{1,4}}:{_HEXCH}{{1,4}}:",
    ),
    _rule(
        rf"(?<![\w:>])(?=[0-9a-fA-F:]*\d)(?:{_HEXCH}{{1,4}}(?::{_HEXCH}{{1,4}})*)?::"
        rf"(?:{_HEXCH}{{1,4}}(?::{_HEXCH}{{1,4}})*)?(?![\w:])",
        "<IP>",
        "::",
        digits=True,
    ),
    # Kubernetes pod names: <deployment>-<replicaset hash>-<5 char suffix>
    _rule(rf"-(?<=[a-z0-9]-){_POD}{{6,10}}-{_POD}{{5}}\b", "-<POD>", "-"),
    _rule(r"0[xX][0-9a-fA-F]+\b", "<HEX>", "0x", "0X", digits=True),
    # Bare hex ids (hashes, request ids): 8+ hex chars mixing digits and letters.
    _rule(rf"{_HEXCH}(?<!\w{_HEXCH}){_HEXCH}{{7,}}\b", _mixed_hex, digits=True),
    _rule(r"\d(?<!\w\d)\d?:\d{2}(?::\d{2})?(?:[.,]\d+)?\b", "<TIME>", ":", digits=True),
    # A sign belongs to the number only when it does not follow a word (a-1-2); a
    # unit of measure belongs to it too ("12 KB" and "3 MB" are the same field), after
    # any run of blanks (whitespace runs never change a template).
    _rule(
        r"[-+](?<![A-Za-z0-9.-][-+])\d+(?:\.\d+)*"
        r"(?:[ \t]*(?:[KMGTP]i?B\b|B\b|(?:ms|us|ns|sec|secs|msec)\b|%)|s(?![\w.]))?",
        "<NUM>",
        "-",
        "+",
        digits=True,
    ),
    _rule(
        r"\d+(?:\.\d+)*(?:[ \t]*(?:[KMGTP]i?B\b|B\b|(?:ms|us|ns|sec|secs|msec)\b|%)|s(?![\w.]))?",
        "<NUM>",
        digits=True,
    ),
    # Lists and glued runs of values ("<IP>,<IP>", "<NUM><NUM>") are one value.
    _rule(r"(<[A-Z]+>)(?:,[ \t]*<[A-Z]+>|<[A-Z]+>)+", r"\1", ">,", "><"),
)

PLACEHOLDERS = (
    "<TS>",
    "<UUID>",
    "<EMAIL>",
    "<URL>",
    "<PATH>",
    "<MAC>",
    "<IP>",
    "<HOST>",
    "<POD>",
    "<HEX>",
    "<TIME>",
    "<NUM>",
    "<BIN>",
    "<NONE>",
)

# bytes.translate tables for shape keys: every digit becomes "0", and in `prepare`
# control characters other than tab and newline become NUL so one `in` test finds
# them.
_DIGIT_TO_ZERO = bytes(0x30 if 0x30 <= b <= 0x39 else b for b in range(256))
_KEY_TABLE = bytes(
    0 if (b < 0x20 and b not in (0x09, 0x0A)) or b == 0x7F else c
    for b, c in enumerate(_DIGIT_TO_ZERO)
)


def clean(message: str, max_chars: int) -> str:
    """One line of text: truncated, newlines flattened, binary runs marked."""
    if len(message) > max_chars:
        message = message[:max_chars]
    if "\n" in message or "\r" in message:
        message = _NEWLINES.sub(" ", message)
    if not message.isascii() or not message.isprintable():
        message = _BINARY.sub("<BIN>", message)
    return message


def prepare(messages: Sequence[str], max_chars: int) -> tuple[list[str], list[bytes]]:
    """Clean lines and their shape keys (the line without digits).

    The common case — printable ASCII lines under the length limit — is checked and
    keyed for the whole batch with two C-level passes; only other batches pay for
    per-line cleaning.
    """
    lines = messages if isinstance(messages, list) else list(messages)
    joined = "\n".join(lines)
    if joined.isascii() and lines and max(map(len, lines)) <= max_chars:
        raw = joined.encode("ascii")
        keys = raw.translate(_KEY_TABLE)
        if b"\x00" not in keys and raw.count(b"\n") == len(lines) - 1:
            return lines, keys.split(b"\n")
    lines = [clean(m, max_chars) for m in lines]
    return lines, shape_keys(lines)


_OTHER_DIGIT = re.compile(r"(?![0-9])\d")  # a digit of another script


def shape_keys(lines: Sequence[str]) -> list[bytes]:
    """Cache keys: each line with every digit written "0" (lines must be
    newline-free). Lines that differ only in digit values share a key; keeping the
    lengths means a key never mixes lines that mask differently ("" and "0").
    The number rules match digits of any script ("\\d"), the key only ASCII ones: a
    line with digits of another script gets a "0" after a byte UTF-8 never holds,
    so `mask_many` does not take it for a line without digits."""
    joined = "\n".join(lines)
    keys = joined.encode("utf-8", "surrogatepass").translate(_DIGIT_TO_ZERO).split(b"\n")
    if not joined.isascii():
        for i, line in enumerate(lines):
            if not line.isascii() and _OTHER_DIGIT.search(line):
                keys[i] += b"\xff0"
    return keys


_ZERO_RUN = re.compile(rb"00+")


def fold_keys(keys: Sequence[bytes]) -> list[bytes]:
    """Shape keys with each run of "0" folded to one: the key of lines that differ
    in the values and lengths of their numbers. Newline-free keys only."""
    if not keys:
        return []
    return _ZERO_RUN.sub(b"0", b"\n".join(keys)).split(b"\n")


def _apply(text: str, digits: bool) -> str:
    for rule in RULES:
        if rule.digits and not digits:
            continue
        if rule.gates and not any(g in text for g in rule.gates):
            continue
        if rule.probe is not None and rule.probe.search(text) is None:
            continue
        text = rule.pattern.sub(rule.repl, text)
    return text


def mask(line: str) -> str:
    return _apply(line, True)


def mask_many(lines: Sequence[str], keys: Sequence[bytes] | None = None) -> list[str]:
    """`mask` for newline-free lines, one regex pass per rule over the whole batch.

    With the lines' shape keys, lines without digits are masked apart from the rest
    and skip the digit-only rules (most of them).
    """
    if not lines:
        return []
    if keys is None:
        return _apply("\n".join(lines), True).split("\n")
    plain = [i for i, key in enumerate(keys) if b"0" not in key]
    if not plain:
        return _apply("\n".join(lines), True).split("\n")
    out = list(lines)
    for i, masked in zip(
        plain, _apply("\n".join(lines[i] for i in plain), False).split("\n"), strict=True
    ):
        out[i] = masked
    if len(plain) < len(lines):
        plain_set = set(plain)
        rest = [i for i in range(len(lines)) if i not in plain_set]
        for i, masked in zip(
            rest, _apply("\n".join(lines[i] for i in rest), True).split("\n"), strict=True
        ):
            out[i] = masked
    return out
