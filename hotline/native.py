"""The routing core compiled to C with mypyc, from the very same source, and loaded only when fresh.

The ACD engine, the routing strategies and the simulator's event loop are plain, fully typed Python.
``python -m hotline.native build`` (run by ``scripts/bootstrap``) compiles the modules listed in
:data:`MODULES` with mypyc into ``build/native/``, beside a stamp of every compiled source's SHA-256.
Nothing in the source tree changes: the compiled modules live outside it, and a small import hook,
installed at interpreter start by a ``.pth`` file in the virtualenv, serves them in place of the
``.py`` files, all of them or none:

* the stamp must match the source files byte for byte, and the interpreter must be the one that
  built them; otherwise (a source edited since the build, another Python) the hook stands aside and
  the pure-Python modules run, with one line on stderr saying why;
* ``HOTLINE_PURE_PYTHON=1`` makes it stand aside on purpose (the golden test runs both ways and
  compares; ``bench.sim`` times both).

Both forms give bit-identical results (``tests/unit/sim/test_native.py``); the compiled one is
2-3 times faster (docs/benchmarks.md). ``python -m hotline.native status`` says which one runs.
"""

from __future__ import annotations

import importlib.machinery
import json
import os
import sys
from pathlib import Path

from hotline.native_hook import (
    FINDER,
    GROUP,
    MODULES,
    OUT,
    ROOT,
    STAMP,
    active,
    built_files,
    digest,
    interpreter_tag,
    read_stamp,
    source_path,
)


def status() -> str:
    """Which routing core this process runs, and why."""
    import acd.engine  # noqa: F401  (the hook decides on the first import)

    if active():
        return f"compiled (mypyc) from {OUT}"
    if FINDER not in sys.meta_path:
        return "pure Python (the import hook is not installed: scripts/bootstrap writes it)"
    return f"pure Python ({FINDER.reason})"


def build(force: bool = False) -> bool:
    """Compile :data:`MODULES` into ``build/native`` unless the stamp says they are fresh.
    True when it compiled."""
    if not force and built_files(read_stamp())[1] is None:
        return False
    from mypyc.build import mypycify  # the build needs mypy; running does not
    from setuptools import setup

    sources = {m: digest(source_path(m)) for m in MODULES}
    paths = [str(source_path(m).relative_to(ROOT)) for m in MODULES]
    tmp = ROOT / "build" / "native-tmp"
    cwd = Path.cwd()
    os.chdir(ROOT)
    try:
        if STAMP.exists():
            STAMP.unlink()  # a half-done build is never taken for a fresh one
        extensions = mypycify(
            paths, opt_level="3", group_name=GROUP, target_dir=str(tmp / "c"), multi_file=True
        )
        setup(
            name="hotline-native",
            ext_modules=extensions,
            script_args=[
                "-q",
                "build_ext",
                "--build-lib",
                str(OUT),
                "--build-temp",
                str(tmp / "o"),
                "--parallel",
                str(os.cpu_count() or 1),
            ],
        )
    finally:
        os.chdir(cwd)
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    files = {m: str(Path(*m.split(".")).with_suffix(suffix)) for m in MODULES}
    files[f"{GROUP}__mypyc"] = f"{GROUP}__mypyc{suffix}"
    for name, rel in files.items():
        if not (OUT / rel).is_file():
            raise SystemExit(f"hotline.native: the build made no {OUT / rel} for {name}")
    STAMP.write_text(
        json.dumps({"interpreter": interpreter_tag(), "sources": sources, "files": files}, indent=1)
    )
    return True


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["build"]:
        compiled = build(force="--force" in args)
        print("hotline.native: compiled" if compiled else "hotline.native: up to date")
        return 0
    if args[:1] == ["status"]:
        print(status())
        return 0
    print("usage: python -m hotline.native build [--force] | status", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
