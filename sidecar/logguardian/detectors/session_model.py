"""Whole-session model: which combinations of templates normal sessions contain.

Checked when a session closes. A DeepLog-style next-template model cannot see what is
*missing* (a block allocated and received but never replicated or deleted just stops
logging); the set of templates a closed session contained can. The statistic is the
support of that exact template set among normal training sessions. Calibration on
held-out normal sessions measures how often a normal session's set is unseen; when
that rate is above the target false-positive rate the model is shipped disabled
rather than paging on noise.

A bundle may also carry `session.onnx`, an autoencoder over the session's template
counts (`profiles`), for sessions whose set is normal but whose proportions are not.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_SETS = 50_000


@dataclass(slots=True)
class SessionSetModel:
    support: dict[frozenset[int], int]
    min_support: int = 1
    enabled: bool = True
    heldout_unseen_rate: float | None = None

    @classmethod
    def fit(cls, sessions: Iterable[Sequence[int]], min_support: int = 1) -> SessionSetModel:
        counts = Counter(frozenset(s) for s in sessions if s)
        return cls(support=dict(counts.most_common(MAX_SETS)), min_support=min_support)

    def unseen(self, templates: Iterable[int]) -> bool:
        return self.support.get(frozenset(templates), 0) < self.min_support

    def calibrate(
        self, heldout: Sequence[Sequence[int]], target_fpr: float, weight: float = 1.0
    ) -> None:
        """Enabled iff the unseen rate on held-out sessions, times `weight` (the share of
        such sessions in traffic, when held-out holds only new ones), meets the target."""
        sessions = [s for s in heldout if s]
        if not sessions:
            self.enabled = False
            return
        rate = sum(self.unseen(s) for s in sessions) / len(sessions)
        self.heldout_unseen_rate = rate
        self.enabled = rate * weight <= target_fpr

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "template_sets",
            "enabled": self.enabled,
            "min_support": self.min_support,
            "heldout_unseen_rate": self.heldout_unseen_rate,
            "sets": [[sorted(s), n] for s, n in self.support.items()],
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> SessionSetModel:
        if doc.get("kind") != "template_sets":
            raise ValueError(f"unknown session model kind {doc.get('kind')!r}")
        return cls(
            support={frozenset(int(i) for i in s): int(n) for s, n in doc["sets"]},
            min_support=int(doc.get("min_support", 1)),
            enabled=bool(doc.get("enabled", True)),
            heldout_unseen_rate=doc.get("heldout_unseen_rate"),
        )


def profiles(sessions: Sequence[Mapping[int, int]], vocab: int) -> np.ndarray:
    """log1p template counts per session, the session autoencoder's input."""
    out = np.zeros((len(sessions), vocab), dtype=np.float32)
    for row, counts in enumerate(sessions):
        for idx, n in counts.items():
            if 0 <= idx < vocab:
                out[row, idx] = n
    return np.log1p(out, out=out)
