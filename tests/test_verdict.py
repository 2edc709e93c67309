"""One verdict for every way of asking: an operator's "normal" silences a template in
the pipeline, `POST /api/v1/score` and the gRPC `Score` RPC alike."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
import grpc
from conftest import free_port
from logguardian.config import Settings
from logguardian.receivers.proto import ingest_pb2, ingest_pb2_grpc
from logguardian.server import Sidecar
from logguardian.verdict import is_anomaly

# The shipped model bundle keys HDFS block sessions; a template it never saw in a
# normal session scores high whatever the online detectors think, so feedback is the
# only thing that can make this record "not an anomaly".
ODD = "blk_-4242 PacketResponder zebra quux frobnicated the gizmo 17 times"


def test_is_anomaly_needs_the_threshold_and_no_normal_verdict() -> None:
    assert is_anomaly(0.7, 0.7, "t1", frozenset())
    assert not is_anomaly(0.69, 0.7, "t1", frozenset())
    assert not is_anomaly(0.95, 0.7, "t1", frozenset({"t1"}))
    assert is_anomaly(0.95, 0.7, None, frozenset({"t1"}))


async def grpc_score(sidecar: Sidecar, message: str) -> ingest_pb2.ScoredRecord:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}") as channel:
        stub = ingest_pb2_grpc.IngestStub(channel)
        response = await stub.Score(
            ingest_pb2.ScoreRequest(records=[ingest_pb2.LogRecord(message=message, service="dn")])
        )
    (result,) = response.results
    return result


async def test_grpc_and_rest_score_honour_an_operator_verdict(
    make_settings: Callable[..., Settings],
) -> None:
    sidecar = Sidecar(make_settings(receivers={"grpc": {"port": free_port()}}))
    await sidecar.start()
    base = f"http://127.0.0.1:{sidecar.http_port}"
    try:
        before = await grpc_score(sidecar, ODD)
        assert before.anomaly and before.score >= sidecar.settings.detectors.threshold
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{base}/api/v1/templates/{before.template_id}/feedback",
                json={"verdict": "normal"},
            ) as resp:
                assert resp.status == 200
            after = await grpc_score(sidecar, ODD)
            async with http.post(f"{base}/api/v1/score", json={"log": ODD}) as resp:
                rest = await resp.json()
    finally:
        await sidecar.stop()
    # Still scored high (the model has not changed its mind), but not an anomaly.
    assert after.template_id == before.template_id
    assert after.score >= sidecar.settings.detectors.threshold
    assert after.anomaly is False
    assert rest["template_id"] == before.template_id and rest["anomaly"] is False
