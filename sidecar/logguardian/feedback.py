"""Operator verdicts on templates (`POST /api/v1/templates/{id}/feedback`).

"normal" suppresses alerts for a template and folds it into the baselines;
"anomalous" re-arms it. Verdicts are few and precious, so each change is written
to the state dir at once (atomically) rather than with the periodic snapshots.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import orjson

from .statefile import write_atomic

Verdict = Literal["normal", "anomalous"]
VERDICTS: tuple[Verdict, ...] = ("normal", "anomalous")


@dataclass(slots=True)
class Feedback:
    template_id: str
    verdict: Verdict
    at: float
    note: str = ""


class FeedbackStore:
    def __init__(self, path: Path | None):
        self.path = path
        self._items: dict[str, Feedback] = {}
        self._suppressed: frozenset[str] = frozenset()
        self._write_lock = threading.Lock()
        # Called with (template_id, verdict) after a change, e.g. to fold a template
        # into the detectors' baselines. Runs under the pipeline lock.
        self.listeners: list[Callable[[str, Verdict], None]] = []
        if path is not None and path.is_file():
            for item in orjson.loads(path.read_bytes()):
                fb = Feedback(
                    str(item["template_id"]),
                    item["verdict"],
                    float(item["at"]),
                    str(item.get("note", "")),
                )
                self._items[fb.template_id] = fb
            self._refresh()

    def suppressed(self, template_id: str | None) -> bool:
        return template_id is not None and template_id in self._suppressed

    @property
    def suppressed_ids(self) -> frozenset[str]:
        """Read without a lock on the hot path: replaced, never mutated."""
        return self._suppressed

    def get(self, template_id: str) -> Feedback | None:
        return self._items.get(template_id)

    def items(self) -> list[Feedback]:
        return list(self._items.values())

    def set(
        self, template_id: str, verdict: Verdict, note: str = "", at: float | None = None
    ) -> Feedback:
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}")
        fb = Feedback(template_id, verdict, time.time() if at is None else at, note)
        self._items[template_id] = fb
        self._refresh()
        self.save()
        for listener in self.listeners:
            listener(template_id, verdict)
        return fb

    def rename(self, old: str, new: str) -> None:
        """The miner merged `old` into `new`: the verdict follows the template."""
        fb = self._items.pop(old, None)
        if fb is not None and new not in self._items:
            fb.template_id = new
            self._items[new] = fb
            self._refresh()
            self.save()

    def _refresh(self) -> None:
        self._suppressed = frozenset(
            tid for tid, fb in self._items.items() if fb.verdict == "normal"
        )

    def save(self) -> None:
        if self.path is None:
            return
        data = orjson.dumps([asdict(fb) for fb in self._items.values()])
        with self._write_lock:
            write_atomic(self.path, data)
