"""`logguardian.v1.LogRecord` → Record: explicit fields win, attributes fill the gaps
(through `Normalizer.build`, like every receiver)."""

from __future__ import annotations

from collections.abc import Sequence

from ...record import Normalizer, Record
from ..proto import ingest_pb2

MAX_ERRORS = 5
SOURCE = "grpc"


class IngestMapper:
    """Our typed `LogRecord` → Record."""

    def __init__(self, service_fields: Sequence[str]):
        self.service_fields = tuple(service_fields)
        self.normalize = Normalizer(SOURCE, self.service_fields)

    def records(
        self, items: Sequence[ingest_pb2.LogRecord], now: float
    ) -> tuple[list[Record], int, list[ingest_pb2.RecordError]]:
        records: list[Record] = []
        errors: list[ingest_pb2.RecordError] = []
        rejected = 0
        build = self.normalize.build
        for index, item in enumerate(items):
            if not item.message:
                rejected += 1
                if len(errors) < MAX_ERRORS:
                    errors.append(ingest_pb2.RecordError(index=index, message="empty message"))
                continue
            records.append(
                build(
                    item.message,
                    dict(item.attributes) if item.attributes else {},
                    ts=item.time if item.time > 0 else now,
                    level=item.level or None,
                    service=item.service or None,
                )
            )
        return records, rejected, errors
