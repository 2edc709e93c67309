"""Names of the series methods (import-light: settings validate against it)."""

from __future__ import annotations

METHODS: tuple[str, ...] = ("mad", "ewma", "iqr", "roc", "seasonal", "level_shift")
