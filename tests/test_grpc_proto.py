"""The committed generated code is exactly what the pinned grpcio-tools makes of ingest.proto."""

from __future__ import annotations

from pathlib import Path

from logguardian.receivers.proto import generate


def test_committed_code_matches_regeneration(tmp_path: Path) -> None:
    fresh = generate.generate(tmp_path)
    assert [p.name for p in fresh] == list(generate.GENERATED)
    for path in fresh:
        committed = generate.PROTO_DIR / path.name
        assert committed.read_bytes() == path.read_bytes(), (
            f"{committed.name} is stale: run `python -m logguardian.receivers.proto.generate`"
        )


def test_generated_module_describes_the_ingest_service() -> None:
    from logguardian.receivers.proto import ingest_pb2

    service = ingest_pb2.DESCRIPTOR.services_by_name["Ingest"]
    assert service.full_name == "logguardian.v1.Ingest"
    methods = {m.name: (m.client_streaming, m.server_streaming) for m in service.methods}
    assert methods == {
        "Push": (False, False),
        "PushStream": (True, False),
        "PushAcked": (True, True),
        "Score": (False, False),
    }
