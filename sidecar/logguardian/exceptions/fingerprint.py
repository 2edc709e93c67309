"""Grouping key of a parsed trace: what failed (types along the cause chain) and
where (the top in-app frames, as file + function), never line numbers or values.

A deploy that moves lines keeps the key; a different throw site or exception type
changes it. Generated names (Java lambdas `lambda$main$0`, anonymous classes
`Foo$1`, Go closures' numbering stays: `func1` is stable across line moves) lose
their counters, and paths keep only their tail so the checkout directory does not
matter. The exception message only decides when no frame does (a trace with no
frames at all): then its masked form — the miner's masking, which is
deterministic, unlike the miner's evolving templates — is the tie-breaker.
"""

from __future__ import annotations

import hashlib
import re

from ..templates import masking
from .parse import Frame, ParsedException, Trace

TOP_FRAMES = 3  # in-app frames per exception in the key
MAX_CHAIN = 3  # exceptions of the cause chain in the key
PATH_PARTS = 2  # trailing path components kept in a frame's key

_GENERATED = re.compile(r"\$\d+|\$\$Lambda[^.(]*|/0x[0-9a-f]+|\bblock \(\d+ levels\)")
_GO_ARGS = re.compile(r"\(0x[0-9a-f, .]*\)$")


def short_path(file: str | None, in_app_prefixes: tuple[str, ...] = ()) -> str:
    """Path as it appears in keys and titles: relative to an in-app prefix when one
    matches, else the last `PATH_PARTS` components (a parent with digits in its
    name is taken for a release directory and dropped)."""
    if not file:
        return ""
    path = file.replace("\\", "/")
    if path.startswith("file://"):
        path = path[7:]
    for prefix in in_app_prefixes:
        if "/" in prefix and path.startswith(prefix):
            return path[len(prefix) :].lstrip("/")
    parts = [p for p in path.split("/") if p][-PATH_PARTS:]
    if len(parts) > 1 and any(c.isdigit() for c in parts[0]):
        # A file at the app's root: its parent is the deploy/release directory
        # (v1.4.2, a git sha, a tmp dir), which must not split a group.
        parts = parts[1:]
    return "/".join(parts)


def frame_function(frame: Frame) -> str:
    function = _GENERATED.sub("$", frame.function)
    function = _GO_ARGS.sub("", function)
    if frame.module and not function.startswith(frame.module):
        module = _GENERATED.sub("$", frame.module)
        return f"{module}.{function}"
    return function


def frame_key(frame: Frame, in_app_prefixes: tuple[str, ...] = ()) -> str:
    if frame.module:  # Java/.NET/Go: the qualified function says where
        return frame_function(frame)
    return f"{short_path(frame.file, in_app_prefixes)}:{frame_function(frame)}"


def top_frames(exc: ParsedException, n: int = TOP_FRAMES) -> list[Frame]:
    """The `n` frames nearest the throw site that are the application's own; library
    frames only when there is no in-app frame at all."""
    in_app = [f for f in exc.frames if f.in_app][:n]
    return in_app or exc.frames[:n]


def message_template(message: str) -> str:
    return masking.mask(masking.clean(message, 512))


def signature(trace: Trace, in_app_prefixes: tuple[str, ...] = ()) -> list[str]:
    parts = [trace.runtime]
    for exc in trace.chain[:MAX_CHAIN]:
        parts.append("T " + _GENERATED.sub("$", exc.type))
        frames = top_frames(exc)
        parts.extend("F " + frame_key(f, in_app_prefixes) for f in frames)
        if not exc.frames:
            parts.append("M " + message_template(exc.message))
    return parts


def fingerprint(service: str, trace: Trace, in_app_prefixes: tuple[str, ...] = ()) -> str:
    """Stable 16-hex key; per service, as error trackers group per project."""
    text = "\n".join([service, *signature(trace, in_app_prefixes)])
    return hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=8).hexdigest()


def culprit(trace: Trace, in_app_prefixes: tuple[str, ...] = ()) -> str:
    """`cart/api.py:apply_coupon` / `UserService.get`: where it failed, for humans."""
    frames = top_frames(trace.primary, 1)
    if not frames:
        return ""
    frame = frames[0]
    if frame.module and trace.runtime in ("java", "dotnet"):
        return f"{frame.module.rsplit('.', 1)[-1]}.{frame.function}"
    if frame.module:
        return frame_function(frame)
    return f"{short_path(frame.file, in_app_prefixes)}:{frame.function}"
