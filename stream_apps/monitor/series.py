"""In-memory time series the dashboard and `/metrics` read (bounded; ClickHouse keeps history)."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

Labels = tuple[tuple[str, str], ...]


def labels_key(labels: dict[str, str]) -> Labels:
    return tuple(sorted((str(k), str(v)) for k, v in labels.items()))


@dataclass
class Series:
    """name -> label set -> deque of (ts seconds, value)."""

    maxlen: int = 720
    data: dict[str, dict[Labels, deque[tuple[float, float]]]] = field(default_factory=dict)

    def add(self, name: str, labels: dict[str, str], ts: float, value: float) -> None:
        per = self.data.setdefault(name, {})
        key = labels_key(labels)
        dq = per.get(key)
        if dq is None:
            dq = per[key] = deque(maxlen=self.maxlen)
        dq.append((ts, float(value)))

    def latest(self, name: str) -> dict[Labels, tuple[float, float]]:
        return {k: dq[-1] for k, dq in self.data.get(name, {}).items() if dq}

    def points(self, name: str, since: float = 0.0) -> dict[Labels, list[tuple[float, float]]]:
        return {k: [p for p in dq if p[0] >= since] for k, dq in self.data.get(name, {}).items()}

    def total(self, name: str) -> dict[Labels, float]:
        """Sum of every point per label set (for per-interval counts)."""
        return {k: sum(v for _, v in dq) for k, dq in self.data.get(name, {}).items()}

    def drop(self, name: str, keep: set[Labels]) -> None:
        per = self.data.get(name, {})
        for k in [k for k in per if k not in keep]:
            del per[k]
