"""Import hook serving the compiled routing core (see :mod:`hotline.native`), all of it or none.

Installed at interpreter start by ``hotline-native.pth`` in the virtualenv (``scripts/bootstrap``
writes it). Standard library only, and it reads nothing until a compiled module is first imported.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "build" / "native"
STAMP = OUT / "stamp.json"
GROUP = "hotline_native"
PURE_ENV = "HOTLINE_PURE_PYTHON"

# Pure cores on the routing hot path: no I/O, no asyncio, fully annotated. The live service and the
# simulator both import them, so both run the compiled form.
MODULES = (
    "acd.actions",
    "acd.events",
    "acd.engine",
    "acd.widening",
    "routing.explain",
    "routing.index",
    "routing.skills",
    "routing.member",
    "routing.strategy",
    "routing.strategies.basic",
    "routing.strategies.weighted",
    "sim.distributions",
    "sim.workload",
    "sim.kernel",
    "sim.model",
)


def source_path(module: str) -> Path:
    return ROOT.joinpath(*module.split(".")).with_suffix(".py")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def interpreter_tag() -> str:
    return f"{sys.implementation.cache_tag} {importlib.machinery.EXTENSION_SUFFIXES[0]}"


def stale_reason(stamp: dict[str, object]) -> str | None:
    """Why the build in ``stamp`` may not serve this interpreter and source tree, or None."""
    if stamp.get("interpreter") != interpreter_tag():
        return f"built for {stamp.get('interpreter')}, this is {interpreter_tag()}"
    sources = stamp.get("sources")
    if not isinstance(sources, dict) or set(sources) != set(MODULES):
        return "the list of compiled modules changed"
    for module, want in sources.items():
        path = source_path(module)
        if not path.is_file() or digest(path) != want:
            return f"{path.relative_to(ROOT)} changed since the build"
    return None


def built_files(stamp: dict[str, object] | None) -> tuple[dict[str, Path], str | None]:
    """The compiled module files of the build ``stamp`` describes, by module name, when they may
    serve this process; otherwise no files and the reason why not."""
    if stamp is None:
        return {}, "not built (run scripts/build-native)"
    reason = stale_reason(stamp)
    if reason is not None:
        return {}, reason
    files = stamp.get("files")
    if not isinstance(files, dict):
        return {}, "the build stamp lists no files"
    found = {str(name): OUT / str(rel) for name, rel in files.items()}
    missing = [p for p in found.values() if not p.is_file()]
    if missing:
        return {}, f"missing {missing[0]}"
    return found, None


def read_stamp() -> dict[str, object] | None:
    try:
        data = json.loads(STAMP.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class _Finder(importlib.abc.MetaPathFinder):
    """Serves the compiled modules once it has checked, on the first import of one, that the build
    is fresh; stands aside for good otherwise."""

    def __init__(self) -> None:
        self.decided = False
        self.files: dict[str, Path] = {}
        self.reason = "not checked yet"

    def _decide(self) -> None:
        self.decided = True
        if os.environ.get(PURE_ENV):
            self.reason = f"{PURE_ENV} is set"
            return
        stamp = read_stamp()
        self.files, reason = built_files(stamp)
        self.reason = reason or "compiled"
        if reason is not None and stamp is not None:  # built, but not for this source tree
            print(
                f"hotline: running the pure-Python routing core: {reason}; "
                "scripts/build-native compiles it again",
                file=sys.stderr,
            )

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MODULES and not fullname.startswith(GROUP):
            return None
        if not self.decided:
            self._decide()
        file = self.files.get(fullname)
        if file is None:
            return None
        return importlib.util.spec_from_file_location(fullname, file)


FINDER = _Finder()


def install() -> None:
    """Put the hook first on ``sys.meta_path`` (idempotent). Called by ``hotline-native.pth``."""
    if FINDER not in sys.meta_path:
        sys.meta_path.insert(0, FINDER)


def active() -> bool:
    """True when the routing core in this process is the compiled one."""
    engine = sys.modules.get("acd.engine")
    return engine is not None and not str(getattr(engine, "__file__", "")).endswith(".py")
