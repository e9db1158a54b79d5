"""Completeness detection state as plain classes: what the window agents and timers decide.

:mod:`stream_apps.windows` declares the Faust tables, agents and timers and does the I/O (Redis,
topics); the decisions live here so they are tested without Faust: which runs are open and which
are overdue, when an emitter's heartbeat is written, which windows closed, which window figures
are new, and this worker's stream metrics. The rules themselves (what counts, what alerts) are
the pure functions of :mod:`stream_apps.alerts.completeness`.

Tables are passed in as mappings: ``table`` is written in the partition's event context (Faust
table deletes need it), ``store`` is the table's local store, scanned by the timers.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from lineage.metric_records import rfc3339
from stream_apps.alerts.completeness import (
    RUN_ALERT,
    STREAM_ALERT,
    TERMINAL,
    Known,
    Point,
    Windows,
    split_key,
    window_stat_points,
)
from stream_apps.alerts.config import AlertSettings
from stream_apps.alerts.feed import RunEvent
from stream_apps.alerts.model import Alert

QUANTILES = (0.5, 0.95, 0.99)
HEARTBEAT_EVERY_S = 1.0


class PurgeSchedule:
    """Table keys to delete per partition, handed out at most once every ``every_s`` per partition."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self._pending: dict[int, set[Any]] = defaultdict(set)
        self._last: dict[int, float] = {}

    def add(self, partition: int, key: Hashable) -> None:
        self._pending[partition].add(key)

    def due(self, partition: int, now: float) -> list[Any]:
        """The partition's pending keys if its purge is due (the schedule restarts either way), else none."""
        if now - self._last.get(partition, 0) <= self.every_s:
            return []
        self._last[partition] = now
        return list(self._pending.pop(partition, ()))


@dataclass(frozen=True, slots=True)
class RunEnd:
    """A terminal event of a run: record it in Redis, then :meth:`RunTracker.ended`."""

    run_id: str
    event_type: str
    key: str


@dataclass(frozen=True, slots=True)
class StreamUpdate:
    """A START or RUNNING of a streaming run: record its time in Redis (the latest wins), since a
    run's events come in different batches, so on different feed partitions and in different
    workers' tables."""

    run_id: str
    event_time: int


def open_run_key(run_id: str, partition: int) -> str:
    return f"{run_id}|{partition}"


class RunTracker:
    """Runs that STARTed, keyed ``"<run_id>|<partition>"`` (a run's START and its terminal event
    usually sit on different partitions, so terminal events are recorded in Redis for all workers)."""

    def __init__(self, table: MutableMapping[str, Any], store: Mapping[Any, Any], cfg: AlertSettings) -> None:
        self.table = table
        self.store = store
        self.deadline_s = cfg.run_deadline_s
        self.stall_s = cfg.streaming_stall_s
        self.end_ttl_s = int(max(cfg.run_deadline_s * 2, 86_400))
        self.purges = PurgeSchedule(cfg.eval_interval_s * 5)

    def observe(self, run: RunEvent, partition: int) -> RunEnd | StreamUpdate | None:
        """Open a run on its START; a terminal event, or a streaming run's update, is returned for
        the caller to record."""
        if not run.run_id:
            return None
        key = open_run_key(run.run_id, partition)
        if run.event_type not in TERMINAL:
            entry = self.table.get(key)
            if run.streaming or (entry is not None and entry.get("streaming")):
                # A streaming job may never end: it is not awaited, it is watched for updates.
                if entry is None or entry["t"] < run.event_time:
                    self.table[key] = {"t": run.event_time, "job": run.job, "kind": run.kind, "streaming": True}
                return StreamUpdate(run.run_id, run.event_time)
        if run.event_type == "START":
            if self.table.get(key) is None:
                self.table[key] = {"t": run.event_time, "job": run.job, "kind": run.kind}
        elif run.event_type in TERMINAL:
            return RunEnd(run.run_id, run.event_type, key)
        return None

    def ended(self, end: RunEnd) -> None:
        if self.table.get(end.key) is not None:
            del self.table[end.key]

    def purge(self, partition: int, now: float) -> None:
        """Drop runs found ended by :meth:`settle` (in the partition's event context)."""
        for key in self.purges.due(partition, now):
            if self.table.get(key) is not None:
                del self.table[key]

    def overdue(self, now: float, mine: set[int]) -> list[tuple[str, dict[str, Any]]]:
        """Open runs on partitions this worker owns whose deadline passed: check them for an end."""
        out = []
        for key, value in list(self.store.items()):
            if not isinstance(value, dict) or not isinstance(key, str) or int(key.rsplit("|", 1)[1]) not in mine:
                continue
            if value["t"] / 1e6 + (self.stall_s if value.get("streaming") else self.deadline_s) <= now:
                out.append((key, value))
        return out

    def settle(
        self, overdue: list[tuple[str, dict[str, Any]]], ends: list[Any], now: float, seen: list[Any] | None = None,
    ) -> tuple[list[Alert], list[Alert]]:
        """(alerts to fire, alerts to resolve) given each overdue run's recorded end (None: no end)
        and, for streaming runs, the latest update any worker recorded (event time, microseconds)."""
        firing, resolved = [], []
        for (key, value), end, latest in zip(overdue, ends, seen or [None] * len(overdue)):
            run_id, part = key.rsplit("|", 1)
            if value.get("streaming") and end is None and latest is not None:
                value = {**value, "t": max(value["t"], int(float(latest)))}
                if value["t"] / 1e6 + self.stall_s > now:
                    continue  # updated on another partition since: not stalled
            if value.get("streaming"):
                alert = Alert.firing(
                    STREAM_ALERT, {"job": value["job"], "run_id": run_id},
                    f"streaming run {run_id} of job {value['job']} sent no update since {rfc3339(int(value['t']))} "
                    f"(more than {self.stall_s:.0f}s)", "warning", now - value["t"] / 1e6, source="windows")
            else:
                alert = Alert.firing(
                    RUN_ALERT, {"job": value["job"], "run_id": run_id},
                    f"run {run_id} of job {value['job']} started {rfc3339(int(value['t']))} and has no terminal "
                    f"event after {self.deadline_s:.0f}s", "warning", now - value["t"] / 1e6, source="windows")
            if end is not None:
                resolved.append(alert)
                self.purges.add(int(part), key)
            else:
                firing.append(alert)
        return firing, resolved


class HeartbeatThrottle:
    """An emitter's last-seen time is written at most once a second per worker."""

    def __init__(self, every_s: float = HEARTBEAT_EVERY_S) -> None:
        self.every_s = every_s
        self._sent: dict[str, float] = {}

    def due(self, emitter: str, now: float) -> bool:
        if not emitter or now - self._sent.get(emitter, 0) < self.every_s:
            return False
        self._sent[emitter] = now
        return True


class ClosedWindows:
    """Counts of the windows that closed within the evaluation horizon, summed over partitions.

    The windowed table's keys are ``(metric|label|partition, (start, end))``. Windows past their
    retention are scheduled for deletion (in the partition's event context, see :meth:`purge`).
    """

    def __init__(self, table: MutableMapping[Any, Any], store: Mapping[Any, Any], cfg: AlertSettings) -> None:
        self.table = table
        self.store = store
        self.grace_s = cfg.window_grace_s
        self.horizon_s = cfg.horizon_s
        self.retention_s = cfg.window_retention_s
        self.purges = PurgeSchedule(cfg.eval_interval_s * 5)

    def collect(self, now: float, mine: set[int]) -> dict[tuple[float, float], dict[tuple[str, str], int]]:
        out: dict[tuple[float, float], dict[tuple[str, str], int]] = defaultdict(lambda: defaultdict(int))
        for key, value in list(self.store.items()):
            try:
                raw, (start, end) = key
                metric, label, part = split_key(raw)
            except (TypeError, ValueError):
                continue
            if part not in mine or end + self.grace_s > now:
                continue  # a standby copy, or still open
            if end < now - self.horizon_s:
                if end < now - self.retention_s:
                    self.purges.add(part, key)
                continue
            out[(start, end)][(metric, label)] += int(value or 0)
        return out

    def purge(self, partition: int, now: float) -> None:
        for key in self.purges.due(partition, now):
            if key in self.store:
                del self.table[key]


class WindowStatLog:
    """Window figures go out once a window closed, and again whenever a late count changed them."""

    def __init__(self, retention_s: float) -> None:
        self.retention_s = retention_s
        self.published: dict[tuple[str, str, float], float] = {}

    def fresh(self, windows: Windows, now: float, known: Known | None = None) -> list[Point]:
        """The points not yet published with this value (remembered as published from now on).

        ``known`` (which model versions have training lineage now) makes a window's figures
        change, and go out again, when a version's training lineage arrives late."""
        fresh = []
        for point in window_stat_points(windows, known) if known else window_stat_points(windows):
            name, labels, end, value = point
            key = (name, labels["model"], end)
            if self.published.get(key) != value:
                self.published[key] = value
                fresh.append(point)
        cutoff = now - self.retention_s
        self.published = {k: v for k, v in self.published.items() if k[2] >= cutoff}
        return fresh


class StreamStats:
    """This worker's figures since the last sample: end-to-end latency (event time to its graph
    record's production), events per kind and tier, of the batches whose feed it read."""

    def __init__(self, worker: str) -> None:
        self.worker = worker
        self.latencies: list[float] = []
        self.tiers: dict[str, int] = defaultdict(int)
        self.kinds: dict[str, int] = defaultdict(int)
        self.decode_errors = 0

    def observe(self, kinds: Mapping[str, int], tiers: Mapping[str, int], latencies: Sequence[float]) -> None:
        """A batch's events per kind and per sampling tier, and their end-to-end latencies (seconds)."""
        self.latencies += latencies
        for kind, n in kinds.items():
            self.kinds[kind] += n
        for tier, n in tiers.items():
            self.tiers[tier] += n

    def decode_error(self) -> None:
        self.decode_errors += 1

    def sample(self, now: float) -> list[Point]:
        """The metric points since the last sample; starts the next sample."""
        worker = self.worker
        lat, self.latencies = sorted(self.latencies), []
        points: list[Point] = []
        if lat:
            for q in QUANTILES:
                points.append(("e2e_latency_seconds", {"quantile": str(q), "worker": worker}, now,
                               lat[min(len(lat) - 1, int(q * len(lat)))]))
        for tier, n in self.tiers.items():
            points.append(("sampling_tier_events", {"tier": tier, "worker": worker}, now, float(n)))
        for kind, n in self.kinds.items():
            points.append(("graph_events", {"kind": kind, "worker": worker}, now, float(n)))
        self.tiers.clear()
        self.kinds.clear()
        if self.decode_errors:
            points.append(("window_feed_decode_errors", {"worker": worker}, now, float(self.decode_errors)))
            self.decode_errors = 0
        return points
