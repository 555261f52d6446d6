"""A bad configuration stops start-up with the file, the line, the key and the reason."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hotline.config import ConfigError, load_config, parse_config, parse_hostport, with_overrides


def test_demo_config_loads() -> None:
    config = load_config(None)
    assert config.server.sip_port == 5060
    assert {a.id for a in config.agents} >= {"alice", "bob"}
    assert config.entry_point("*43") is not None
    assert config.entry_point("*43").kind == "echo"  # type: ignore[union-attr]
    assert config.agent("bob") is not None


def _error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(text, file="site.toml")
    return info.value


def test_bad_skill_level_names_file_line_and_key() -> None:
    text = (
        '[server]\nsip = "127.0.0.1:5060"\n\n[[agents]]\nid = "a"\npassword = "pw12"\n\n'
        '[[agents]]\nid = "b"\npassword = "pw12"\nskills = { sales = 12 }\n'
    )
    err = _error(text)
    assert err.file == "site.toml"
    assert err.path == "agents[1].skills.sales"
    assert err.line == 11
    assert "1-10" in err.reason
    assert str(err).startswith("site.toml:11: agents[1].skills.sales:")


def test_syntax_error_has_line() -> None:
    err = _error('[server]\nsip = "127.0.0.1:5060"\nhttp = \n')
    assert err.line == 3
    assert "TOML syntax error" in err.reason


DB = '[database]\nurl = "postgresql://h@127.0.0.1/x"\nnode = "a"\n'


@pytest.mark.parametrize(
    ("text", "path", "fragment"),
    [
        ('[server]\nsip = "pbx.example.com:5060"\n', "server.sip", "resolves no names"),
        ('[server]\nlog_format = "xml"\n', "server.log_format", "json"),
        ('[sip]\ntransports = ["sctp"]\n', "sip.transports[0]", "udp"),
        ("[sip]\nmin_expires = 100\nmax_expires = 50\n", "sip.max_expires", "min_expires"),
        ("[sip]\nrtp_ports = [30000, 20000]\n", "sip.rtp_ports", "LOW, HIGH"),
        ('[sip]\nrelm = "x"\n', "sip.relm", "unknown key"),
        ('[[agents]]\npassword = "pw12"\n', "agents[0].id", "required"),
        ('[[agents]]\nid = "a b"\npassword = "pw12"\n', "agents[0].id", "SIP user"),
        (
            '[[agents]]\nid = "a"\npassword = "pw12"\n[[agents]]\nid = "a"\npassword = "pw12"\n',
            "agents[1].id",
            "duplicate",
        ),
        ('[entry_points]\n"1000" = { kind = "fax" }\n', "entry_points.1000.kind", "echo"),
        ('[entry_points]\n"1000" = { kind = "queue" }\n', "entry_points.1000.target", "required"),
        (
            '[[trunks]]\nname = "t"\naddress = "127.0.0.1:5080"\nregister = true\n',
            "trunks[0].username",
            "register",
        ),
        (
            '[[trunks]]\nname = "t"\naddress = "127.0.0.1:5080"\ndids = { "+1" = "nowhere" }\n',
            "trunks[0].dids.+1",
            "nowhere",
        ),
        ("unknown_section = 1\n", "unknown_section", "unknown key"),
        ('[database]\nurl = "mysql://db/x"\n', "database.url", "postgresql://"),
        ('[database]\nschema = "Bad-Name"\n', "database.schema", "pattern"),
        ('[database]\nnode = "a b"\n', "database.node", "pattern"),
        ('[cluster]\nedge = "10.0.0.1:5060"\n', "cluster", "[database] url"),
        (DB + '[cluster]\nedge = "edge.example:5060"\n', "cluster.edge", "resolves no names"),
        (DB + "[cluster]\nlease_seconds = 0.1\n", "cluster.lease_seconds", "> 0.5"),
    ],
)
def test_validation_errors(text: str, path: str, fragment: str) -> None:
    err = _error(text)
    assert err.path == path
    assert fragment in err.reason
    assert err.line is not None


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.toml")
    assert "cannot read" in str(info.value)


def test_hostport_forms() -> None:
    assert parse_hostport("127.0.0.1:5070", default_port=5060) == ("127.0.0.1", 5070)
    assert parse_hostport("[::1]:5070", default_port=5060) == ("::1", 5070)
    assert parse_hostport("::1", default_port=5060) == ("::1", 5060)
    assert parse_hostport(":5070", default_port=5060) == ("0.0.0.0", 5070)
    with pytest.raises(ValueError):
        parse_hostport("1.2.3.4:99999", default_port=5060)


def test_command_line_overrides() -> None:
    config = with_overrides(
        load_config(None), sip="127.0.0.2:5999", http="127.0.0.1:0", data="/tmp/x"
    )
    assert (config.server.sip_host, config.server.sip_port) == ("127.0.0.2", 5999)
    assert config.server.http_port == 0
    assert config.server.data_dir == "/tmp/x"


def test_serve_refuses_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[sip]\nmin_expires = "soon"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "hotline.cli", "serve", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert f"{bad}:2: sip.min_expires: expected an integer" in proc.stderr


def test_acd_section_errors_are_located() -> None:
    text = (
        '[server]\nsip = "127.0.0.1:5060"\n\n[acd.queues.sales]\nstrategy = "longest-idle"\n\n'
        '[acd.queues.support]\nstrategy = "longest-idle"\nmax_wait = -5\n'
        '[entry_points]\n"1" = { kind = "echo" }\n'
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text, file="site.toml")
    assert (
        str(info.value) == "site.toml:9: acd.queues.support.max_wait: expected seconds > 0, got -5"
    )


def test_demo_acd_section_is_valid() -> None:
    assert load_config(None).acd.queues


def test_contact_center_sections_are_checked_at_start_up() -> None:
    """An entry point shadowing an extension, a bad voicemail setting and an unknown queue
    target all stop start-up with the file, the line and the key."""
    from hotline.config import ConfigError, parse_config

    base = (
        '[[agents]]\nid = "alice"\npassword = "pw-alice"\nextension = "1001"\n'
        '[acd.queues.sales]\nstrategy = "longest-idle"\n'
    )
    cases = [
        ('[entry_points]\n"1001" = { kind = "hotline" }\n', "entry_points.1001"),
        ("[voicemail]\nkeep_days = -1\n", "voicemail.keep_days"),
        ('[voicemail]\nstop_digits = "x"\n', "voicemail.stop_digits"),
        ('[entry_points]\n"2000" = { kind = "queue", target = "nope" }\n', "entry_points.2000"),
    ]
    echo = '[entry_points]\n"1" = { kind = "echo" }\n'
    for extra, key in cases:
        text = base + (extra if extra.startswith("[entry_points]") else extra + echo)
        with pytest.raises(ConfigError) as err:
            parse_config(text, file="site.toml")
        assert key in str(err.value) and "site.toml:" in str(err.value), str(err.value)
