from pathlib import Path

import pytest
from logguardian.cli import build_parser
from logguardian.commands.serve import flag_overrides
from logguardian.config import ConfigError, listener_names, load_settings


def test_unknown_key_in_file_is_named(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("exporters:\n  elasticsearch:\n    ulr: http://x\n")
    with pytest.raises(ConfigError, match=r"exporters\.elasticsearch\.ulr"):
        load_settings(cfg)


def test_bad_value_in_env_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGGUARDIAN_DETECTORS__WARMUP_RECORDS", "lots")
    with pytest.raises(ConfigError, match=r"detectors\.warmup_records"):
        load_settings()


def test_precedence_flags_over_env_over_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "receivers:\n  http:\n    port: 1111\n    auth_token: from-file\n"
        "  forward:\n    port: 2222\n"
        "incidents:\n  quiet_seconds: 42\n"
    )
    monkeypatch.setenv("LOGGUARDIAN_RECEIVERS__HTTP__PORT", "3333")
    monkeypatch.setenv("LOGGUARDIAN_EXPORTERS__ELASTICSEARCH__URL", "http://es:9200")
    args = build_parser().parse_args(["serve", "--forward-port", "0"])
    s = load_settings(cfg, **flag_overrides(args))
    assert s.receivers.http.port == 3333  # env beats file
    assert s.receivers.http.auth_token == "from-file"  # file keys not overridden survive
    assert s.receivers.forward.port == 0  # flag beats file
    assert s.incidents.quiet_seconds == 42
    assert s.exporters.elasticsearch.url == "http://es:9200"


def test_missing_config_file() -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings("/nonexistent/logguardian.yaml")


def test_unparseable_env_list_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGGUARDIAN_PIPELINE__SERVICE_FIELDS", "not-json")
    with pytest.raises(ConfigError, match="pipeline"):
        load_settings()


def test_every_listening_receiver_gets_a_serve_port_flag() -> None:
    """`serve --<name>-port` comes from the settings model: a new listener needs no
    CLI edit, and a route-only receiver (OTLP/HTTP on the HTTP port) gets none."""
    names = listener_names()
    assert {"http", "forward", "grpc", "tcp"} <= set(names) and "otlp_http" not in names
    flags = [arg for name in names for arg in (f"--{name.replace('_', '-')}-port", "0")]
    args = build_parser().parse_args(["serve", *flags])
    settings = load_settings(**flag_overrides(args))
    assert all(getattr(settings.receivers, name).port == 0 for name in names)
