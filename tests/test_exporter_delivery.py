"""The shared delivery backoff: doubling steps with jitter, capped, reset on success."""

from __future__ import annotations

from logguardian.exporters.delivery import Backoff


def test_backoff_doubles_with_jitter_up_to_the_cap_and_resets() -> None:
    backoff = Backoff(0.5, 3.0)
    steps = []
    for _ in range(5):
        wait = backoff.failed()
        assert backoff.delay / 2 <= wait <= backoff.delay  # jitter: upper half of the step
        steps.append(backoff.delay)
    assert steps == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    backoff.failed()
    assert backoff.delay == 0.5


def test_jitter_spreads_retries() -> None:
    waits = {Backoff(1.0, 10.0).failed() for _ in range(50)}
    assert len(waits) > 40 and min(waits) >= 0.5 and max(waits) <= 1.0
