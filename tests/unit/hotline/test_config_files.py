"""Whole files with several mistakes: every mistake is reported in one run, each at the line
where the user wrote it and under the key they wrote; the typed sections are what the engine,
the IVR and voicemail take."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from acd.config import AcdConfig, ConfigError
from hotline.config import Config, load_config, load_ivr, parse_config
from ivr.flow import IvrConfig

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "config"
SERVICE_FIXTURES = [p for p in sorted(FIXTURES.glob("*.toml")) if "scenario" not in p.stem]


def expected(path: Path) -> list[tuple[int, str]]:
    """``(line, key)`` of every ``# expect: KEY`` comment in a fixture."""
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        m = re.search(r"#\s*expect:\s*([\w.\[\]+-]+)\s*$", line)
        if m:
            out.append((n, m.group(1)))
    return out


@pytest.mark.parametrize("path", SERVICE_FIXTURES, ids=[p.stem for p in SERVICE_FIXTURES])
def test_every_mistake_is_reported_at_its_own_line(path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    want = expected(path)
    if not want:  # the empty file
        assert [(i.line, i.path) for i in err.issues] == [(1, "")]
        assert "empty" in err.reason
        return
    got = [(i.line, i.path) for i in err.issues]
    assert got == want, str(err)
    lines = str(err).splitlines()
    assert len(lines) == len(want)
    for text, (line, key) in zip(lines, want, strict=True):
        assert text.startswith(f"{path}:{line}: {key}: "), text


def test_reasons_are_plain_words() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(FIXTURES / "many_mistakes.toml")
    reasons = {i.path: i.reason for i in info.value.issues}
    assert reasons["agents[1].skills.sales"] == "expected a skill level 1-10, got 12"
    assert reasons["agents[0].queues"] == "unknown queue 'nosuchqueue'"
    assert reasons["sip.min_expires"] == "expected an integer, got 'soon'"
    assert reasons["sip.relm"].startswith("unknown key (expected one of: ")
    assert "realm" in reasons["sip.relm"]
    assert reasons["acd.queues.sales.max_wait"] == "expected seconds > 0, got -5"
    for reason in reasons.values():  # none of pydantic's own wording leaks through
        assert "Input should" not in reason and "validation error" not in reason


def test_check_config_prints_every_mistake_and_exits_2() -> None:
    path = FIXTURES / "many_mistakes.toml"
    proc = subprocess.run(
        [sys.executable, "-m", "hotline.cli", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    for line, key in expected(path):
        assert f"{path}:{line}: {key}: " in proc.stderr
    assert f"{len(expected(path))} mistakes" in proc.stderr


def test_check_config_refuses_an_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    proc = subprocess.run(
        [sys.executable, "-m", "hotline.cli", "check-config", str(empty)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert f"{empty}:1: the file is empty" in proc.stderr


def test_a_file_needs_an_entry_point() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config('[[agents]]\nid = "a"\npassword = "pw-a"\n', file="site.toml")
    assert str(info.value).startswith("site.toml:1: entry_points: expected at least one entry")


def test_the_demo_has_typed_sections() -> None:
    config = load_config(None)
    assert isinstance(config, Config)
    assert isinstance(config.acd, AcdConfig)
    assert set(config.acd.queues) == {"sales", "support", "complaints", "operator"}
    alice = config.acd.agents["alice"]
    assert alice.name == "Alice Martin" and dict(alice.skills) == {"en": 8, "sales": 7}
    assert set(alice.queues) == {"sales", "operator"}
    assert config.acd.queues["support"].widening[0].relax_levels == 2
    assert isinstance(config.ivr, IvrConfig) and config.ivr.entry == "main"
    assert config.ivr.flow("main").start == "welcome"
    assert config.voicemail.keep_days == 30 and config.voicemail.stop_digits == "#"
    # no plain-text password: the demo's hashes ship beside it (hotline/demo-staff.toml)
    assert config.agent("alice").password is None  # type: ignore[union-attr]
    assert config.server.staff_path.name == "demo-staff.toml" and config.server.staff_path.exists()


def test_the_typed_acd_is_what_the_engine_built_from_the_raw_tables() -> None:
    """The same AcdConfig the composition root used to rebuild from the file's tables."""
    import tomllib

    config = load_config(None)
    table = dict(tomllib.loads(config.text)["acd"])
    table["agents"] = {
        a.id: {"name": a.name, "skills": dict(a.skills), "queues": list(a.queues)}
        for a in config.agents
    }
    assert AcdConfig.from_dict(table) == config.acd


def test_agents_routing_keys_reach_the_engine() -> None:
    text = (
        '[[agents]]\nid = "a"\npassword = "pw-a"\nqueues = { q = { penalty = 2 } }\n'
        "max_misses = 1\nwrap_up_seconds = 7\npriority = 4\n"
        '[acd.queues.q]\n[entry_points]\n"1" = { kind = "queue", target = "q" }\n'
    )
    agent = parse_config(text).acd.agents["a"]
    assert (agent.max_misses, agent.wrap_up_seconds, agent.priority) == (1, 7, 4)
    assert agent.queues["q"].penalty == 2


def test_load_ivr_returns_versioned_flows_or_every_mistake(tmp_path: Path) -> None:
    demo = (Path(__file__).resolve().parents[3] / "hotline" / "demo.toml").read_text()
    site = tmp_path / "site.toml"
    site.write_text(demo)
    flows = load_ivr(site, version=4)
    assert flows.version == 4 and flows.flow("main").start == "welcome"
    broken = demo.replace('"3" = "account"', '"3" = "acount"').replace(
        'timezone = "UTC"', 'timezone = "Mars/Olympus"'
    )
    site.write_text(broken)
    with pytest.raises(ConfigError) as info:
        load_ivr(site, version=5)
    lines = broken.splitlines()
    assert [
        (i.path, lines[(i.line or 0) - 1].split("=")[0].strip()) for i in info.value.issues
    ] == [
        ("ivr.timezone", "timezone"),
        ("ivr.flows.main.nodes.menu.choices.3", "choices"),
    ]


def test_unknown_top_level_section_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config('[serevr]\n[entry_points]\n"1" = { kind = "echo" }\n', file="s.toml")
    assert str(info.value).startswith("s.toml:1: serevr: unknown key (expected one of: acd, ")
