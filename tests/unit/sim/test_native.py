"""The compiled routing core (hotline/native.py): it is what the test command runs, it gives the
same output as the pure-Python source, and a build that no longer matches the source is never
used."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hotline import native_hook
from hotline.native_hook import MODULES, PURE_ENV

ROOT = Path(__file__).resolve().parents[3]


def test_the_routing_core_is_compiled_all_or_none() -> None:
    """Every listed module comes from the build, or none does (a compiled module never calls into
    an interpreted one of the same build); under the test command, which builds it first
    (``HOTLINE_REQUIRE_NATIVE=1``), it is the compiled one."""
    import importlib

    loaded = {name: importlib.import_module(name) for name in MODULES}
    compiled = {name for name, mod in loaded.items() if not str(mod.__file__).endswith(".py")}
    assert compiled in (set(), set(MODULES)), sorted(compiled)
    assert native_hook.active() == bool(compiled)
    if os.environ.get("HOTLINE_REQUIRE_NATIVE"):
        assert compiled == set(MODULES), native_hook.FINDER.reason


def _run(args: list[str], pure: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in (PURE_ENV, "HOTLINE_REQUIRE_NATIVE")}
    if pure:
        env[PURE_ENV] = "1"
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240
    )


def test_pure_python_source_gives_the_pinned_output_too() -> None:
    """The golden test pins figures, raw columns and every engine step of 18 scenarios; the suite
    runs it on the compiled core, this runs it on the source, so the two agree bit for bit. The
    simulator-versus-live-service decisions test runs on the source as well."""
    status = _run(["-m", "hotline.native", "status"], pure=True)
    assert status.stdout.startswith("pure Python"), status.stdout + status.stderr
    done = _run(
        [
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/unit/sim/test_sim_golden.py",
            "tests/unit/sim/test_sim_parity.py",
        ],
        pure=True,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


def _stamp() -> dict[str, object]:
    return {
        "interpreter": native_hook.interpreter_tag(),
        "sources": {m: native_hook.digest(native_hook.source_path(m)) for m in MODULES},
        "files": {m: "nowhere.so" for m in MODULES},
    }


def test_a_matching_stamp_is_fresh() -> None:
    assert native_hook.stale_reason(_stamp()) is None


def test_an_edited_source_makes_the_build_stale() -> None:
    stamp = _stamp()
    sources = stamp["sources"]
    assert isinstance(sources, dict)
    sources["acd.engine"] = "0" * 64
    assert native_hook.stale_reason(stamp) == "acd/engine.py changed since the build"


def test_another_interpreter_or_module_list_makes_the_build_stale() -> None:
    stamp = _stamp()
    stamp["interpreter"] = "cpython-312 .cpython-312-x86_64-linux-gnu.so"
    assert "built for cpython-312" in str(native_hook.stale_reason(stamp))
    stamp = _stamp()
    sources = stamp["sources"]
    assert isinstance(sources, dict)
    del sources["sim.model"]
    assert native_hook.stale_reason(stamp) == "the list of compiled modules changed"


def test_a_stale_build_is_never_served(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """All or none: with one source edited, the hook serves no module at all (a compiled module
    calling into a pure one of the same group is never mixed), and says why once on stderr."""
    stamp = _stamp()
    sources = stamp["sources"]
    assert isinstance(sources, dict)
    sources["routing.index"] = "0" * 64
    monkeypatch.setattr(native_hook, "read_stamp", lambda: stamp)
    monkeypatch.delenv(PURE_ENV, raising=False)
    finder = native_hook._Finder()
    for name in MODULES:
        assert finder.find_spec(name, None) is None
    assert finder.reason == "routing/index.py changed since the build"
    err = capsys.readouterr().err
    assert err.count("running the pure-Python routing core") == 1
    assert "routing/index.py changed since the build" in err


def test_a_missing_build_or_the_pure_switch_serves_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(native_hook, "read_stamp", lambda: None)
    monkeypatch.delenv(PURE_ENV, raising=False)
    finder = native_hook._Finder()
    assert finder.find_spec("acd.engine", None) is None
    assert finder.reason.startswith("not built")
    monkeypatch.setenv(PURE_ENV, "1")
    finder = native_hook._Finder()
    assert finder.find_spec("acd.engine", None) is None
    assert finder.reason == f"{PURE_ENV} is set"
    assert finder.find_spec("json", None) is None  # other modules are never its business
