"""`exporters.alertmanager.url` accepts what people write: one URL, a comma-separated
list (env), a YAML/JSON list."""

from __future__ import annotations

from pathlib import Path

import pytest
from logguardian.config import load_settings


@pytest.mark.parametrize(
    ("raw", "urls"),
    [
        ("http://am:9093", ["http://am:9093"]),
        ("http://am-0:9093, http://am-1:9093", ["http://am-0:9093", "http://am-1:9093"]),
        ('["http://am-0:9093","http://am-1:9093"]', ["http://am-0:9093", "http://am-1:9093"]),
    ],
)
def test_env_forms(monkeypatch: pytest.MonkeyPatch, raw: str, urls: list[str]) -> None:
    monkeypatch.setenv("LOGGUARDIAN_EXPORTERS__ALERTMANAGER__URL", raw)
    assert load_settings().exporters.alertmanager.url == urls


def test_yaml_string_and_list(tmp_path: Path) -> None:
    one = tmp_path / "one.yaml"
    one.write_text("exporters:\n  alertmanager:\n    url: http://am:9093\n")
    assert load_settings(one).exporters.alertmanager.url == ["http://am:9093"]
    two = tmp_path / "two.yaml"
    two.write_text("exporters:\n  alertmanager:\n    url: [http://a:9093, http://b:9093]\n")
    assert load_settings(two).exporters.alertmanager.url == ["http://a:9093", "http://b:9093"]
