"""Watch settings (DESIGN §4 `watch.prometheus.url`, `watch.targets`) and the store of
targets added through the API, persisted in the state dir.

A target is a PromQL query polled at an interval; every series it returns is scored
by the series methods, and findings at or above `min_severity` become incidents of
service `target:<name>`. Targets from the config file are fixed; the API manages its
own, kept in `watch_targets.json` (written atomically) so they survive restarts.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .methods import METHODS

FILENAME = "watch_targets.json"
NAME_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"


class WatchTarget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, description="incidents get service target:<name>")
    query: str = Field(min_length=1, description="PromQL; each returned series is tracked")
    interval_seconds: float = Field(60.0, ge=0.1, description="poll and query_range step")
    methods: list[str] = Field(default_factory=lambda: list(METHODS))
    min_severity: Literal["low", "medium", "high", "critical"] = "medium"
    labels: dict[str, str] = Field(default_factory=dict, description="added to the alert")
    backfill_seconds: float = Field(
        86400.0, ge=0, description="history read with query_range on start"
    )
    max_series: int = Field(100, ge=1, le=10_000, description="label sets tracked at most")

    @field_validator("methods")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(METHODS))
        if unknown:
            raise ValueError(f"unknown method(s) {unknown}; known: {list(METHODS)}")
        if not value:
            raise ValueError("at least one method")
        return value


class WatchPrometheus(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, description="Prometheus base URL, e.g. http://prometheus:9090")
    timeout_seconds: float = Field(10.0, gt=0)
    max_backoff_seconds: float = Field(300.0, gt=0)


class Watch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prometheus: WatchPrometheus = WatchPrometheus()
    targets: list[WatchTarget] = Field(default_factory=list)


class TargetStore:
    """Targets added through the API, persisted; config targets are read-only."""

    def __init__(self, path: Path, config_targets: list[WatchTarget]):
        self.path = path
        self.config = {t.name: t for t in config_targets}
        self.api: dict[str, WatchTarget] = {}
        self._lock = threading.Lock()
        if path.exists():
            data = json.loads(path.read_text())
            for item in data.get("targets", []):
                target = WatchTarget.model_validate(item)
                if target.name not in self.config:
                    self.api[target.name] = target

    def all(self) -> list[tuple[WatchTarget, str]]:
        """(target, source) pairs, config first."""
        out = [(t, "config") for t in self.config.values()]
        return out + [(t, "api") for t in self.api.values()]

    def get(self, name: str) -> tuple[WatchTarget, str] | None:
        if name in self.config:
            return self.config[name], "config"
        if name in self.api:
            return self.api[name], "api"
        return None

    def put(self, target: WatchTarget) -> None:
        with self._lock:
            self.api[target.name] = target
            self._save()

    def delete(self, name: str) -> None:
        with self._lock:
            self.api.pop(name, None)
            self._save()

    def _save(self) -> None:
        payload: dict[str, Any] = {"targets": [t.model_dump() for t in self.api.values()]}
        tmp = self.path.with_suffix(".tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(payload, indent=1))
        os.replace(tmp, self.path)
