"""The per-input limits (settings `limits`) as each receiver applies them."""

from __future__ import annotations

from collections.abc import Sequence

from ..config import Limits
from ..record import Normalizer


def bounded_normalizer(source: str, service_fields: Sequence[str], limits: Limits) -> Normalizer:
    """A Normalizer refusing records over the size and nesting bounds."""
    return Normalizer(
        source, service_fields, max_depth=limits.max_depth, max_bytes=limits.max_record_bytes
    )
