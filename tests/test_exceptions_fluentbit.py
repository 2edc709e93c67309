"""The shipped Fluent Bit configs join stack traces at the source: a real Fluent Bit
(tests/services/fluentbit.sh) tails a file that real python3/java/go programs wrote
their traces into, between ordinary lines, and ships it through the shipped config
to a real `logguardian serve`. Each trace arrives as one record and forms one group:
Fluent Bit's `java` and `go` parsers join whole traces; its `python` parser stops at
Python 3.11+'s `^^^^` caret lines, and the sidecar's rejoin completes those pieces."""

from __future__ import annotations

import json
import time

import pytest
import runtimes
from services.serve import get
from test_fluentbit import Runner, fluent_bit  # noqa: F401 (a fixture)
from test_fluentbit import run as run

SITES = runtimes.make_sites(4)


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    out = {}
    for runtime in ("python", "java", "go"):
        root = runtimes.write(runtime, tmp_path_factory.mktemp(runtime) / "app", SITES, 0)
        command = runtimes.build(runtime, root)
        if runtime == "go":
            out[runtime] = runtimes.run_uncaught(command, (2, 0)).replace("exit status 2", "")
        else:
            out[runtime] = runtimes.run_cases(command, runtime, [(3, 0)])[0]
    return out


@pytest.mark.parametrize("config", ["http.yaml", "forward.conf"])
def test_shipped_configs_join_stack_traces(
    run: Runner, config: str, traces: dict[str, str]
) -> None:
    serve, shipper = run(config)
    serve.start()
    shipper.start()
    shipper.append(0, 30)
    lines = 30
    for text in traces.values():
        with open(shipper.file, "a") as f:
            f.write(text.strip("\n") + "\n")
        shipper.append(100, 3)  # ordinary lines after each trace end it
        lines += 3
        time.sleep(0.5)
    deadline = time.monotonic() + 60
    groups: list[dict] = []
    while time.monotonic() < deadline:
        status, body = get(serve.base + "/api/v1/exceptions?service=checkout", token=serve.token)
        assert status == 200, body
        groups = json.loads(body)["exceptions"]
        if {g["runtime"] for g in groups} >= set(traces):
            break
        time.sleep(0.5)
    time.sleep(3)  # anything still arriving would show up as an extra group
    status, body = get(serve.base + "/api/v1/exceptions?service=checkout", token=serve.token)
    groups = json.loads(body)["exceptions"]
    # One group per trace, each seen once: no fragment of a trace made its own.
    assert sorted(g["runtime"] for g in groups) == sorted(traces), (
        groups,
        shipper.output()[-2000:],
    )
    assert all(g["count"] == 1 for g in groups)
    python = next(g for g in groups if g["runtime"] == "python")
    assert python["causes"] == ["KeyError"] and python["type"] == "RuntimeError"
    # Ordinary lines arrive one record each, every trace as one record.
    assert serve.settle(lines + len(traces), timeout=30) == lines + len(traces)
