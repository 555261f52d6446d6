"""The JSON Schema editors use (docs/hotline.schema.json) is the one generated from the models,
and it accepts the files the project ships: the demo configuration and every example scenario."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from hotline.config import config_schema

ROOT = Path(__file__).resolve().parents[3]
COMMITTED = ROOT / "docs" / "hotline.schema.json"
SHIPPED = [
    ROOT / "hotline" / "demo.toml",
    *sorted((ROOT / "examples" / "scenarios").glob("*.toml")),
]


def _json(value: Any) -> Any:
    """A TOML document as an editor's TOML language server hands it to JSON Schema."""
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json(v) for v in value]
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return value


def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(COMMITTED.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_committed_schema_is_the_generated_one() -> None:
    """Regenerate with: hotline config-schema > docs/hotline.schema.json"""
    assert json.loads(COMMITTED.read_text(encoding="utf-8")) == config_schema()


def test_config_schema_command_prints_it() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "hotline.cli", "config-schema"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0
    assert json.loads(proc.stdout) == config_schema()


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_schema_accepts_shipped_files(path: Path) -> None:
    doc = _json(tomllib.loads(path.read_text(encoding="utf-8")))
    errors = [e.message for e in _validator().iter_errors(doc)]
    assert errors == []


@pytest.mark.parametrize(
    "text",
    [
        '[server]\nlog_level = "loud"\n[entry_points]\n"1" = { kind = "echo" }\n',
        '[sip]\nrelm = "x"\n[entry_points]\n"1" = { kind = "echo" }\n',
        '[entry_points]\n"1" = { kind = "fax" }\n',
        '[[agents]]\nid = "a"\npassword = "pw-a"\nskills = { sales = 12 }\n'
        '[entry_points]\n"1" = { kind = "echo" }\n',
        "",
    ],
)
def test_schema_refuses_what_the_loader_refuses(text: str) -> None:
    assert not _validator().is_valid(_json(tomllib.loads(text)))
