"""The staff credentials file and ``hotline passwd``: hashes only, mode 0600, atomic; what the
server checks the web and SIP passwords against; what ``check-config`` warns about."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import argon2
import pytest

from hotline.auth.credentials import (
    StaffCredentials,
    StaffFileError,
    make_entry,
    read_staff,
    set_password,
)
from hotline.cli import main
from hotline.config import load_config, parse_config
from media_gateway.sip.auth import digest_ha1

CHEAP = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
"""Fast hashes for the tests that check logic, not cost."""

CONFIG = """
[server]
data_dir = "{data}"
{staff}

[sip]
realm = "desk"
auth_algorithms = ["SHA-256", "MD5"]

[[agents]]
id = "alice"

[[agents]]
id = "bob"
password = "bob-plain-1"

[entry_points]
"1" = {{ kind = "echo" }}
"""


def write_config(tmp: Path, staff: str = "") -> Path:
    path = tmp / "site.toml"
    path.write_text(CONFIG.format(data=tmp / "data", staff=staff))
    return path


def test_the_file_holds_hashes_only_owner_readable_and_keeps_other_entries(tmp_path: Path) -> None:
    path = tmp_path / "staff.toml"
    set_password(path, make_entry("alice", "s3cret-pw", realm="desk", algorithms=("MD5",)))
    set_password(path, make_entry("bob", "another-pw", realm="desk", algorithms=("MD5",)))
    text = path.read_text()
    assert "s3cret-pw" not in text and "another-pw" not in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    entries = read_staff(path)
    assert set(entries) == {"alice", "bob"}
    assert entries["alice"].web.startswith("$argon2id$")
    assert entries["alice"].ha1_for("desk", "MD5") == digest_ha1(
        "MD5", "alice", "desk", "s3cret-pw"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["staff.toml"]  # no temporary file left
    # a second passwd for alice replaces hers and keeps bob's
    set_password(path, make_entry("alice", "new-pw-22", realm="desk", algorithms=("MD5",)))
    again = read_staff(path)
    assert again["bob"] == entries["bob"] and again["alice"] != entries["alice"]


def test_a_broken_file_is_named_with_its_place(tmp_path: Path) -> None:
    path = tmp_path / "staff.toml"
    path.write_text('version = 1\n[staff."alice"]\nweb = "plain-text-password"\n')
    with pytest.raises(StaffFileError, match=r"staff\.alice\.web: expected an argon2 hash"):
        read_staff(path)
    path.write_text("version = \n")
    with pytest.raises(StaffFileError, match=r"staff\.toml:1: not a TOML file"):
        read_staff(path)


def test_web_and_sip_checks_from_the_file_or_a_plain_config_password(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    staff = config.server.staff_path
    set_password(
        staff,
        make_entry("alice", "alice-pw-1", realm="desk", algorithms=("SHA-256",), hasher=CHEAP),
    )
    creds = StaffCredentials(config, hasher=CHEAP)
    assert creds.verify_web("alice", "alice-pw-1")
    assert not creds.verify_web("alice", "alice-pw-2")
    assert creds.verify_web("bob", "bob-plain-1")  # not in the file: the configuration's
    assert not creds.verify_web("bob", "bob-plain-2")
    assert not creds.verify_web("mallory", "alice-pw-1")
    assert creds.ha1("alice", "SHA-256") == digest_ha1("SHA-256", "alice", "desk", "alice-pw-1")
    assert creds.ha1("alice", "MD5") is None  # not written for MD5
    assert creds.ha1("bob", "MD5") == digest_ha1("MD5", "bob", "desk", "bob-plain-1")
    assert creds.ha1("mallory", "MD5") is None
    # the file wins over the configuration once it lists bob; re-read without a restart
    set_password(
        staff, make_entry("bob", "bob-hashed-1", realm="desk", algorithms=("MD5",), hasher=CHEAP)
    )
    assert creds.verify_web("bob", "bob-hashed-1") and not creds.verify_web("bob", "bob-plain-1")


def test_a_name_in_the_file_but_not_in_the_configuration_signs_nobody_in(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    set_password(
        config.server.staff_path,
        make_entry("ghost", "ghost-pw-1", realm="desk", algorithms=("MD5",), hasher=CHEAP),
    )
    creds = StaffCredentials(config, hasher=CHEAP)
    assert not creds.verify_web("ghost", "ghost-pw-1")
    assert creds.ha1("ghost", "MD5") is None


def test_warnings_for_plain_text_and_missing_passwords(tmp_path: Path) -> None:
    creds = StaffCredentials(load_config(write_config(tmp_path)), hasher=CHEAP)
    warnings = "\n".join(creds.warnings())
    assert "'bob' has a plain-text password" in warnings
    assert "'alice' has no password" in warnings


def test_hotline_passwd_writes_hashes_that_check_config_accepts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(tmp_path, staff='staff_file = "secrets/staff.toml"')
    monkeypatch.setattr("sys.stdin", io.StringIO("alice-long-pw\n"))
    assert main(["passwd", "alice", "--config", str(cfg), "--password-stdin"]) == 0
    out = capsys.readouterr()
    assert "alice's password set in" in out.out and "SHA-256, MD5" in out.out
    path = tmp_path / "secrets" / "staff.toml"  # relative to the configuration file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    entry = read_staff(path)["alice"]
    assert set(entry.ha1["desk"]) == {"SHA-256", "MD5"}
    creds = StaffCredentials(load_config(cfg))
    assert creds.verify_web("alice", "alice-long-pw")
    # check-config: OK, and it warns about bob's plain-text password only
    assert main(["check-config", str(cfg)]) == 0
    err = capsys.readouterr().err
    assert "'bob' has a plain-text password" in err and "'alice'" not in err


def test_hotline_passwd_refuses_what_it_cannot_do_well(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = str(write_config(tmp_path))
    monkeypatch.setattr("sys.stdin", io.StringIO("long-enough-pw\n"))
    assert main(["passwd", "mallory", "--config", cfg, "--password-stdin"]) == 2
    assert "no staff member 'mallory'" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["passwd", "alice", "--config", cfg, "--password-stdin"]) == 1
    assert "at least 8 characters" in capsys.readouterr().err
    assert main(["passwd", "alice", "--password-stdin"]) == 2  # the built-in demo
    assert "give --config FILE" in capsys.readouterr().err
    answers = iter(["first-password", "second-password"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    assert main(["passwd", "alice", "--config", cfg]) == 1
    assert "differ" in capsys.readouterr().err
    assert not (tmp_path / "data" / "staff.toml").exists()


def test_the_demo_ships_hashes_of_the_readme_passwords() -> None:
    config = load_config(None)
    assert all(a.password is None for a in config.agents)
    creds = StaffCredentials(config)
    assert creds.verify_web("carol", "carol-demo-1")
    for user in ("alice", "bob", "carol", "dave"):
        for algorithm in ("MD5", "SHA-256"):
            want = digest_ha1(algorithm, user, "hotline", f"{user}-demo-1")
            assert creds.ha1(user, algorithm) == want
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    assert all(f"| {u} | {u}-demo-1 |" in readme for u in ("alice", "bob", "carol", "dave"))


def test_an_unreadable_staff_file_stops_the_start(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, staff='staff_file = "staff.toml"')
    (tmp_path / "staff.toml").write_text("not = [toml")
    with pytest.raises(StaffFileError):
        StaffCredentials(load_config(cfg))
    os.chmod(tmp_path / "staff.toml", 0o600)
    assert parse_config(cfg.read_text(), file=str(cfg)).server.staff_path == tmp_path / "staff.toml"
