"""The per-input limits (settings `limits`) as each push receiver applies them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar

from ..config import Limits
from ..record import Normalizer

if TYPE_CHECKING:
    from ..components import Consumer

S = TypeVar("S")


def bounded_normalizer(source: str, service_fields: Sequence[str], limits: Limits) -> Normalizer:
    """A Normalizer refusing records over the size and nesting bounds."""
    return Normalizer(
        source, service_fields, max_depth=limits.max_depth, max_bytes=limits.max_record_bytes
    )


class PushReceiver(Generic[S]):
    """What every receiver that shippers push to holds: its settings, the consumer it
    queues into (and its metrics), and a normalizer bounded by the input limits,
    records stamped with `source`."""

    source: ClassVar[str]

    def __init__(
        self,
        settings: S,
        consumer: Consumer,
        service_fields: Sequence[str],
        limits: Limits | None = None,
    ):
        self.settings = settings
        self.pipeline = consumer
        self.metrics = consumer.metrics
        self.limits = limits if limits is not None else Limits()
        self.normalize = bounded_normalizer(self.source, service_fields, self.limits)
