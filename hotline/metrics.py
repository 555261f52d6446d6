"""A small Prometheus text-format registry (exposition format 0.0.4).

Counters and gauges with optional labels; gauges may be callbacks read at scrape time so the
numbers come straight from the live objects (no counter to drift).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels) + "}"


@dataclass
class _Metric:
    name: str
    help: str
    kind: str  # counter | gauge
    values: dict[tuple[tuple[str, str], ...], float] = field(default_factory=dict)
    callback: Callable[[], Iterable[tuple[dict[str, str], float]]] | None = None


class Metrics:
    """Register metrics once, then ``inc``/``set``; ``render()`` gives the exposition text."""

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}

    def counter(self, name: str, help: str) -> None:
        self._metrics.setdefault(name, _Metric(name, help, "counter"))

    def gauge(
        self,
        name: str,
        help: str,
        callback: Callable[[], Iterable[tuple[dict[str, str], float]]] | None = None,
    ) -> None:
        self._metrics[name] = _Metric(name, help, "gauge", callback=callback)

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        m = self._metrics[name]
        key = tuple(sorted(labels.items()))
        m.values[key] = m.values.get(key, 0.0) + amount

    def set(self, name: str, value: float, **labels: str) -> None:
        m = self._metrics[name]
        m.values[tuple(sorted(labels.items()))] = value

    def value(self, name: str, **labels: str) -> float:
        return self._metrics[name].values.get(tuple(sorted(labels.items())), 0.0)

    def render(self) -> str:
        lines: list[str] = []
        for m in self._metrics.values():
            lines.append(f"# HELP {m.name} {m.help}")
            lines.append(f"# TYPE {m.name} {m.kind}")
            samples: list[tuple[tuple[tuple[str, str], ...], float]] = list(m.values.items())
            if m.callback is not None:
                samples = [(tuple(sorted(lbl.items())), v) for lbl, v in m.callback()]
            if not samples and m.kind == "counter":
                samples = [((), 0.0)]
            for key, v in samples:
                num = repr(float(v)) if v != int(v) else str(int(v))
                lines.append(f"{m.name}{_labels(key)} {num}")
        return "\n".join(lines) + "\n"
