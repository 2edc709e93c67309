"""Split a masked line into tokens (positions) and describe each token's shape.

A position is a whitespace-delimited field, so a run of spaces or tabs never
shifts the positions after it, and a value whose shape carries punctuation
(`LOCAL(0)`, `a-b.c`, `tag="View Lock"`) still fills exactly one position.
A double-quoted span is one field even when it holds spaces.

Inside a token two things matter to the miner:

* its *key*: `user=` in `user=root`, `onExtend:` in `onExtend:42` — the part that
  names the field. Tokens with different keys are never the same slot;
* whether it holds a masked value (`<NUM>`, `blk_<NUM>`, `<*>`): a *value token*.
"""

from __future__ import annotations

import re

WILDCARD = "<*>"
# A quoted value of a key (`tag="View Lock"`) is one field even with spaces inside.
_TOKEN = re.compile(r'[^\s"=]*="[^"\n]*"\S*|\S+')
_PLACEHOLDER = re.compile(r"<[A-Z*…]+>")
# A key: a name directly followed by "=" and a non-empty value, or a plain
# identifier followed by ":" (a dotted name before ":" is a host and its port).
_KEY = re.compile(r"[(\[{\"']*(?:[A-Za-z_][\w.\-]*=|[A-Za-z_]\w*:)(?=.)")
# Punctuation a wildcard keeps around itself when two values share it: "(<*>)".
_EDGE = set("()[]{}\"',;:.!?/#|")


def tokens(line: str) -> list[str]:
    return _TOKEN.findall(line)


def is_value(token: str) -> bool:
    """A token holding a placeholder (`<NUM>`, `blk_<NUM>`, `<*>`) is a value slot."""
    return "<" in token and _PLACEHOLDER.search(token) is not None


def key(token: str) -> str:
    m = _KEY.match(token)
    return m.group() if m is not None else ""


def is_wildcard(token: str) -> bool:
    return WILDCARD in token


def covers(slot: str, token: str) -> bool:
    """Whether template slot `slot` takes `token` as it is: equal, or a wildcard
    whose fixed prefix (key, brackets) and suffix the token shares."""
    if slot == token:
        return True
    at = slot.find(WILDCARD)
    if at < 0:
        return False
    head, tail = slot[:at], slot[at + len(WILDCARD) :]
    return (
        len(token) >= len(head) + len(tail)
        and token.startswith(head)
        and token.endswith(tail)
        and (not head or key(token) == key(slot))
    )


def widen(a: str, b: str) -> str:
    """The narrowest wildcard slot covering two different tokens of one key: the
    key and the punctuation both share at their edges stay (`uid=<*>`, `(<*>)`)."""
    k = key(a)
    ra, rb = a[len(k) :], b[len(k) :]
    if WILDCARD in ra:
        at = ra.find(WILDCARD)
        head_a, tail_a = ra[:at], ra[at + len(WILDCARD) :]
    else:
        head_a, tail_a = ra, ra
    head = _common_edge(head_a, rb, forward=True)
    tail = _common_edge(tail_a, rb[len(head) :], forward=False)
    return k + head + WILDCARD + tail


def _common_edge(a: str, b: str, forward: bool) -> str:
    n = 0
    limit = min(len(a), len(b))
    while n < limit:
        ca = a[n] if forward else a[-1 - n]
        cb = b[n] if forward else b[-1 - n]
        if ca != cb or ca not in _EDGE:
            break
        n += 1
    if not n:
        return ""
    return a[:n] if forward else a[-n:]


def signature(token: str) -> str | None:
    """What a token contributes to a template's skeleton (the sequence of its
    constant parts): a literal word itself, a value token only its key (if any)."""
    if is_value(token):
        return key(token) or None
    return token


def skeleton(units: list[str]) -> tuple[str, ...]:
    """The constant parts of a token list in order, a repeated part once: lines
    whose lists hold one more `node <ok>` item have the same skeleton."""
    out: list[str] = []
    for u in units:
        s = signature(u)
        if s is not None and (not out or out[-1] != s):
            out.append(s)
    return tuple(out)
