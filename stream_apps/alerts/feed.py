"""The window feed: what the event path tells the completeness windows about each batch.

The windows do not read the graph topic back. For every graph record it builds, the compiled
event path also hands over what the windows need of it (its *facts*, ``graph::record_facts`` in
the compiled core, :data:`Facts` here). The processing side turns one batch's facts into a few
records on the feed topic (:func:`lineage.topics.window_counts_topic`) and produces them together
with the batch's graph records, so they are acknowledged before the batch's input is committed:

* a *counts* record per model and window: key the model, timestamp an event time of that window
  (the time the windowed table files it under), value ``{"counts": [[metric, label, n], ...]}``:
  the batch's :func:`~stream_apps.alerts.completeness.window_counts` of that model and window,
  summed;
* one *batch* record: no key, value ``{"runs": [...], "kinds": {...}, "tiers": {...},
  "latency": [...], "emitters": [...]}``: the batch's run events (:class:`RunEvent`, for run
  tracking), its events per kind and tier and their end-to-end latencies (the stream metrics),
  and the emitters seen (heartbeats).

Every counts record of a model lands on one partition (keyed by the model; every producer of the
feed is a librdkafka producer with its default partitioner), so the worker owning that partition
holds the model's exact window figures. Which window a prediction counts in is decided here with
the windowed table's own window (:func:`completeness_window`), so a record stands for exactly the
windows each of its predictions falls in.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import orjson
from faust.types.windows import WindowT
from faust.windows import HoppingWindow, TumblingWindow

from stream_apps.alerts.completeness import InferenceFacts, window_counts
from stream_apps.alerts.config import AlertSettings
from stream_apps.event_path.batch import OutRecord

#: What the windows read of one graph record (the compiled core's ``graph::record_facts``): kind,
#: event time (microseconds), event type, emitter, run id, job, whether the run streams, and for a
#: prediction its :data:`~stream_apps.alerts.completeness.InferenceFacts`.
Facts = tuple[str, int, str, str, str, str, bool, "InferenceFacts | None"]


class RunEvent(NamedTuple):
    """A run event as run tracking reads it from a batch record."""

    run_id: str
    event_type: str
    event_time: int  # microseconds
    job: str  # namespace/name
    kind: str
    streaming: bool


def run_event(fact: Facts) -> RunEvent | None:
    """The run event a record's facts describe (None for a prediction or an event without a run)."""
    kind, event_time, event_type, _, run_id, job, streaming, inf = fact
    if inf is not None or not run_id:
        return None
    return RunEvent(run_id, event_type, event_time, job, kind, streaming)


def completeness_window(cfg: AlertSettings) -> WindowT:
    """The completeness windows: tumbling, or hopping when ``window_step_s`` is set."""
    if cfg.window_step_s:
        return HoppingWindow(cfg.window_s, cfg.window_step_s, expires=cfg.window_retention_s)
    return TumblingWindow(cfg.window_s, expires=cfg.window_retention_s)


def count_records(topic: str, window: WindowT, facts: Iterable[Facts]) -> list[OutRecord]:
    """The counts records of ``facts``: one per model and set of windows."""
    cells: dict[tuple[str, Any], tuple[int, Counter[InferenceFacts]]] = {}
    ranges: dict[int, Any] = {}
    for fact in facts:
        inf = fact[7]
        if inf is None:
            continue
        # The record timestamp's resolution (the table files it under ms / 1000). Kafka takes no
        # negative timestamp and librdkafka reads 0 as "now": an event dated at or before the epoch
        # counts 1 ms after it.
        ms = max(fact[1] // 1000, 1)
        spans = ranges.get(ms)
        if spans is None:
            spans = ranges[ms] = tuple(window.ranges(ms / 1000))
        cell = cells.get((inf[0], spans))
        if cell is None:
            cell = cells[(inf[0], spans)] = (ms, Counter())
        cell[1][inf] += 1
    out = []
    for (model, _), (ms, by_facts) in cells.items():
        counts: Counter[tuple[str, str]] = Counter()
        for inf, n in by_facts.items():
            for pair in window_counts(inf):
                counts[pair] += n
        value = orjson.dumps({"counts": [[metric, label, n] for (metric, label), n in counts.items()]})
        out.append(OutRecord(topic, model.encode(), value, None, timestamp_ms=ms))
    return out


def batch_record(topic: str, facts: Sequence[Facts], now: float) -> OutRecord | None:
    """The batch record of ``facts`` (None for a batch that built no graph record)."""
    if not facts:
        return None
    kinds: Counter[str] = Counter()
    tiers: Counter[str] = Counter()
    runs = []
    latency = []
    emitters = set()
    for fact in facts:
        kind, event_time, _, emitter, _, _, _, inf = fact
        kinds[kind] += 1
        latency.append(max(0.0, now - event_time / 1e6))
        emitters.add(emitter)
        if inf is not None:
            if inf[3]:
                tiers[inf[3]] += 1
        elif (run := run_event(fact)) is not None:
            runs.append(list(run))
    emitters.discard("")
    doc = {"runs": runs, "kinds": kinds, "tiers": tiers, "latency": latency, "emitters": sorted(emitters)}
    return OutRecord(topic, None, orjson.dumps(doc), None)


def feed_records(topic: str, window: WindowT, facts: Sequence[Facts], now: float) -> list[OutRecord]:
    """Everything one batch tells the windows: its counts records, then its batch record."""
    out = count_records(topic, window, facts)
    batch = batch_record(topic, facts, now)
    if batch is not None:
        out.append(batch)
    return out


class FeedEntry(NamedTuple):
    """One feed record as the windows agent reads it."""

    counts: list[tuple[str, str, int]]
    runs: list[RunEvent]
    kinds: dict[str, int]
    tiers: dict[str, int]
    latency: list[float]
    emitters: list[str]


def _object(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TypeError(f"expected an object, not {type(value).__name__}")
    return value


def read_entry(value: bytes) -> FeedEntry:
    """A feed record's content. Raises ValueError (orjson's decode error included) or TypeError
    when it is not a feed record. A bare ``[[metric, label], ...]`` list (the counters of one
    prediction, as earlier releases wrote them) counts each pair once."""
    doc = orjson.loads(value)
    if isinstance(doc, list):
        return FeedEntry([(str(m), str(label), 1) for m, label in doc], [], {}, {}, [], [])
    if not isinstance(doc, dict):
        raise TypeError(f"a feed record is an object, not {type(doc).__name__}")
    counts = [(str(m), str(label), int(n)) for m, label, n in doc.get("counts") or ()]
    runs = [RunEvent(str(r), str(t), int(et), str(j), str(k), bool(st)) for r, t, et, j, k, st in doc.get("runs") or ()]
    kinds = {str(k): int(n) for k, n in _object(doc.get("kinds")).items()}
    tiers = {str(k): int(n) for k, n in _object(doc.get("tiers")).items()}
    latency = [float(x) for x in doc.get("latency") or ()]
    return FeedEntry(counts, runs, kinds, tiers, latency, [str(e) for e in doc.get("emitters") or ()])


__all__ = ["Facts", "FeedEntry", "RunEvent", "batch_record", "completeness_window", "count_records", "feed_records",
           "read_entry", "run_event"]
