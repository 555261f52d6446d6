"""``[http]`` and ``[security]``: plain HTTP is refused on a non-loopback address (TLS or a TLS
proxy is required), with the file, the line and the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from hotline.config import ConfigError, parse_config, with_overrides
from hotline.server import tls_context

BASE = '[entry_points]\n"1" = { kind = "echo" }\n'


def test_plain_http_on_a_non_loopback_address_is_a_configuration_error() -> None:
    for address in ("0.0.0.0:8080", "192.0.2.10:8080", "[::]:8080"):
        text = f'[server]\nsip = "127.0.0.1:5060"\nhttp = "{address}"\n' + BASE
        with pytest.raises(ConfigError) as info:
            parse_config(text, file="site.toml")
        message = str(info.value)
        assert message.startswith("site.toml:3: server.http: plain HTTP on "), message
        assert "tls_cert" in message and "behind_tls_proxy = true" in message


def test_loopback_tls_or_a_tls_proxy_are_accepted() -> None:
    for address in ("127.0.0.1:8080", "[::1]:8080", "127.0.0.5:80"):
        parse_config(f'[server]\nhttp = "{address}"\n' + BASE, file="site.toml")
    proxied = parse_config(
        '[server]\nhttp = "0.0.0.0:8080"\n[http]\nbehind_tls_proxy = true\n' + BASE,
        file="site.toml",
    )
    assert proxied.http.behind_tls_proxy
    tls = parse_config(
        '[server]\nhttp = "0.0.0.0:8443"\n[http]\ntls_cert = "c.pem"\ntls_key = "k.pem"\n' + BASE,
        file="/etc/hotline/site.toml",
    )
    assert tls.http.tls and tls.http.tls_cert == "/etc/hotline/c.pem"  # beside the file


def test_the_command_line_cannot_open_plain_http_to_the_network_either() -> None:
    config = parse_config(BASE, file="site.toml")
    with pytest.raises(ConfigError, match=r"<command line>: --http: plain HTTP on 0\.0\.0\.0"):
        with_overrides(config, http="0.0.0.0:8080")
    assert with_overrides(config, http="127.0.0.1:9000").server.http_port == 9000


def test_tls_settings_are_checked_together_and_a_bad_certificate_stops_the_start(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError, match=r"http\.tls_key: tls_cert and tls_key go together"):
        parse_config('[http]\ntls_cert = "c.pem"\n' + BASE, file="site.toml")
    (tmp_path / "c.pem").write_text("not a certificate")
    (tmp_path / "k.pem").write_text("not a key")
    cfg = tmp_path / "site.toml"
    cfg.write_text('[http]\ntls_cert = "c.pem"\ntls_key = "k.pem"\n' + BASE)
    config = parse_config(cfg.read_text(), file=str(cfg))
    with pytest.raises(ConfigError, match=r"site\.toml:2: http\.tls_cert: cannot load"):
        tls_context(config)


def test_security_and_metrics_settings() -> None:
    config = parse_config(
        "[security]\nmax_failures = 3\nlockout_seconds = 60\nsession_hours = 8\n"
        '[http]\nmetrics_token = "0123456789abcdef-metrics"\n' + BASE,
        file="site.toml",
    )
    assert (config.security.max_failures, config.security.lockout_seconds) == (3, 60.0)
    assert config.security.session_hours == 8.0
    assert config.http.metrics_token == "0123456789abcdef-metrics"
    with pytest.raises(ConfigError) as info:
        parse_config('[http]\nmetrics_token = "short-secret"\n' + BASE, file="site.toml")
    assert "at least 16 characters" in str(info.value)
    assert "short-secret" not in str(info.value)  # a secret is not echoed
    with pytest.raises(ConfigError, match=r"security\.max_failures"):
        parse_config("[security]\nmax_failures = 0\n" + BASE, file="site.toml")


def test_hotline_serve_refuses_to_start_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hotline.cli import main

    cfg = tmp_path / "site.toml"
    cfg.write_text('[server]\nhttp = "0.0.0.0:18080"\n' + BASE)
    assert main(["serve", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"configuration error: {cfg}:2: server.http: plain HTTP on 0.0.0.0" in err
    assert main(["serve", "--http", "0.0.0.0:18080", "--data", str(tmp_path)]) == 2
    assert "--http: plain HTTP on 0.0.0.0" in capsys.readouterr().err
