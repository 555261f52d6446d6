"""``bench.soak --tracemalloc``: allocation snapshots of the service and its media process.

``bench.soak`` puts this directory first on the service's ``PYTHONPATH`` with
``HOTLINE_TRACEMALLOC_DIR`` set, so every Python process it starts (``hotline serve`` and the
media process it spawns) imports this module at start-up. It writes its command line to
``DIR/PID.argv`` at once; half of ``HOTLINE_TRACEMALLOC_EVERY`` seconds (60) later it starts
:mod:`tracemalloc` (``HOTLINE_TRACEMALLOC_FRAMES`` frames, 8 by default; not at once: tracing
every import would slow the start past its deadline), then every ``HOTLINE_TRACEMALLOC_EVERY``
seconds writes a snapshot to ``DIR/PID-N.snap``, counts the ``CallSession`` objects still
alive after their call ended and writes what holds the oldest to ``DIR/PID-N.refs``.
``HOTLINE_TRACEMALLOC_FRAMES=0`` does only the counting (no tracing, no slow-down). A
diagnostic: tracing slows the processes down a lot, and each snapshot holds the GIL for a
moment. Without the variable it does nothing.
"""

from __future__ import annotations

import os
import threading
import time
import tracemalloc

_DIR = os.environ.get("HOTLINE_TRACEMALLOC_DIR")


def _dump(directory: str, every: float, frames: int) -> None:
    time.sleep(every / 2)  # started, not slowed down while starting (its start has a deadline)
    if frames > 0:
        tracemalloc.start(frames)
    n = 0
    while True:
        time.sleep(every)
        n += 1
        path = os.path.join(directory, f"{os.getpid()}-{n:03d}.snap")
        if frames > 0:
            tracemalloc.take_snapshot().dump(path + ".tmp")
            os.replace(path + ".tmp", path)
        _ended_sessions(os.path.join(directory, f"{os.getpid()}-{n:03d}.refs"))


def _ended_sessions(path: str) -> None:
    """Sessions still alive after their call ended, and what holds the oldest (a leak)."""
    import gc

    ended = [
        o
        for o in gc.get_objects()
        if type(o).__name__ == "CallSession" and getattr(o, "state", "") == "ended"
    ]
    if not ended:
        return
    lines = [f"{len(ended)} ended CallSession objects alive"]
    for r in gc.get_referrers(ended[0]):
        if r is ended:
            continue
        lines.append(f"  held by {type(r).__name__}: {repr(r)[:160]}")
        for r2 in gc.get_referrers(r)[:5]:
            lines.append(f"      held by {type(r2).__name__}: {repr(r2)[:160]}")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


if _DIR:
    with open("/proc/self/cmdline", "rb") as src:  # (sys.argv is not set yet)
        argv = src.read().replace(b"\0", b" ").decode(errors="replace").strip()
    with open(os.path.join(_DIR, f"{os.getpid()}.argv"), "w", encoding="utf-8") as fh:
        fh.write(argv)
    threading.Thread(
        target=_dump,
        args=(
            _DIR,
            float(os.environ.get("HOTLINE_TRACEMALLOC_EVERY", "60")),
            int(os.environ.get("HOTLINE_TRACEMALLOC_FRAMES", "8")),
        ),
        name="tracemalloc-dump",
        daemon=True,
    ).start()
