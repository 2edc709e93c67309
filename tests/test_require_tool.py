"""`require_tool`: a missing external tool fails in CI and only skips elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest
from services.fixtures import require_tool

MISSING = "logguardian-no-such-tool-7f3a"


def test_missing_tool_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=MISSING):
        require_tool(MISSING)


def test_missing_tool_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"install\.sh"):
        require_tool(MISSING)


def test_present_tool_is_found_on_path() -> None:
    assert Path(require_tool("sh")).is_file()
