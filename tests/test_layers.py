"""The layers of docs/architecture.md hold: every import-linter contract in pyproject.toml is kept.

The contracts (``[tool.importlinter]``) say which package may import which, and which stdlib
modules (asyncio, socket, time, ...) the pure cores never import. ``lint-imports`` checks them,
following indirect imports and imports inside functions; this test runs it so that the test
command enforces the layering, and shows its report when a contract is broken.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _lint_imports() -> Path:
    """The ``lint-imports`` installed beside this interpreter (the project's virtualenv)."""
    name = "lint-imports.exe" if os.name == "nt" else "lint-imports"
    exe = Path(sys.executable).parent / name
    if not exe.exists():
        pytest.fail(f"{exe} is missing: install the dev extra (import-linter)")
    return exe


def test_import_contracts_are_kept() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONDEVMODE")}
    # Our packages are found from the repository root, not from wherever they are installed.
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(
        [str(_lint_imports()), "--no-cache"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    report = result.stdout + result.stderr
    if result.returncode != 0 or "0 broken" not in report:
        pytest.fail(f"import-linter contracts broken (pyproject.toml):\n{report}", pytrace=False)
