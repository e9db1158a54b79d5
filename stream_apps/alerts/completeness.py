"""Completeness rules as pure functions: what a prediction counts, which closed-window counts and
heartbeats make which alerts, and the per-window figures published as metrics.

The Faust wiring (tables, agents, timers) lives in :mod:`stream_apps.windows`; nothing here
touches Kafka or Redis, so the rules are unit-tested directly.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from lineage.metric_records import rfc3339
from stream_apps.alerts.config import AlertSettings
from stream_apps.alerts.model import Alert

SHARE_ALERT = "InferenceLineageIncomplete"
CONSEQ_ALERT = "ConsequentialNotCaptured"
UNKNOWN_ALERT = "UnknownModelVersion"
RUN_ALERT = "RunIncomplete"
STREAM_ALERT = "StreamingRunStalled"
SILENT_ALERT = "EmitterSilent"
WINDOW_ALERTS = (SHARE_ALERT, CONSEQ_ALERT, UNKNOWN_ALERT)
TERMINAL = ("COMPLETE", "FAIL", "ABORT")
CONSEQUENTIAL_TIERS = ("consequential", "flagged")

#: {(window start, window end): {(metric, label): count}}, times in epoch seconds.
Windows = Mapping[tuple[float, float], Mapping[tuple[str, str], int]]
#: (metric name, labels, epoch seconds, value): one metrics-topic point.
Point = tuple[str, dict[str, str], float, float]
#: Whether a ``model@version`` has training lineage now (the model-lineage table).
Known = Callable[[str], bool]


def _never(_: str) -> bool:
    return False


#: A prediction's lineage as the windows count it (the compiled core's ``graph::record_facts``):
#: (model, version, training run known, tier, lineage complete, snapshot stored, version unknown).
InferenceFacts = tuple[str, str, bool, str, bool, bool, bool]


def window_counts(inf: InferenceFacts) -> list[tuple[str, str]]:
    """(metric, label) counters one prediction adds to its window (labelled by its model).

    A prediction whose only gap is its version's training run (not known when it was consumed)
    is counted per version (``inf_unbound``, ``conseq_unbound``, label ``model@version``):
    evaluation counts it missing only while that version still has no training lineage, so the
    window's figures and alerts follow training lineage that arrives late.
    """
    model, version, bound, tier, complete, snapshot, unknown = inf
    unbound = bool(version) and not bound
    out = [("inf", model)]
    if not version:
        out.append(("inf_missing", model))
    elif unbound:
        out.append(("inf_unbound", f"{model}@{version}"))
    if tier in CONSEQUENTIAL_TIERS:
        out.append(("conseq", model))
        if not complete:
            if unbound and snapshot:
                out.append(("conseq_unbound", f"{model}@{version}"))
            else:
                out.append(("conseq_missing", model))
    if unknown:
        out.append(("unknown", f"{model}@{version}"))
    return out


def count_key(metric: str, label: str, partition: int) -> str:
    """The windowed table key; the partition keeps every key on the changelog partition it is written from."""
    return f"{metric}|{label}|{partition}"


def split_key(key: str) -> tuple[str, str, int]:
    metric, rest = key.split("|", 1)
    label, part = rest.rsplit("|", 1)
    return metric, label, int(part)


def _span(start: float, end: float) -> str:
    return f"{rfc3339(int(start * 1e6))[11:19]}-{rfc3339(int(end * 1e6))[11:19]}Z"


def _missing(counts: Mapping[tuple[str, str], int], metric: str, model: str, known: Known) -> int:
    """The window's ``metric`` count of ``model``, plus its per-version unbound counts still unknown."""
    unbound = metric.replace("_missing", "_unbound")
    return counts.get((metric, model), 0) + sum(
        n for (m, label), n in counts.items()
        if m == unbound and label.rpartition("@")[0] == model and not known(label)
    )


def evaluate_windows(windows: Windows, cfg: AlertSettings, known: Known = _never) -> list[Alert]:
    """Alerts that hold for closed windows, given which model versions have training lineage now."""
    alerts: list[Alert] = []
    for (start, end), counts in sorted(windows.items()):
        span = _span(start, end)
        models = {label for (metric, label) in counts if metric == "inf"}
        for model in sorted(models):
            total = counts.get(("inf", model), 0)
            missing = _missing(counts, "inf_missing", model, known)
            if total >= cfg.min_window_events and total and (total - missing) / total < cfg.lineage_share_min:
                share = missing / total
                alerts.append(Alert.firing(
                    SHARE_ALERT, {"model": model},
                    f"model {model}: {share:.1%} of {total} inference events in window {span} lack required "
                    f"lineage (model version + training run); allowed {1 - cfg.lineage_share_min:.0%}",
                    "warning", share, source="windows"))
            conseq, uncaptured = counts.get(("conseq", model), 0), _missing(counts, "conseq_missing", model, known)
            if uncaptured:
                alerts.append(Alert.firing(
                    CONSEQ_ALERT, {"model": model},
                    f"model {model}: {uncaptured} of {conseq} consequential predictions in window {span} "
                    "lack full lineage (training run, feature sets, stored snapshot)",
                    "critical", uncaptured, source="windows"))
        for (metric, label), n in sorted(counts.items()):
            if metric == "unknown" and n and not known(label):
                model, _, version = label.rpartition("@")
                alerts.append(Alert.firing(
                    UNKNOWN_ALERT, {"model": model, "model_version": version},
                    f"model {model} version {version} served {n} predictions in window {span} "
                    "but has no training lineage", "critical", n, source="windows"))
    # Several windows (hopping, or a backlog after a restart) may assert one alert: keep the last.
    return list({a.fingerprint: a for a in alerts}.values())


def window_stat_points(windows: Windows, known: Known = _never) -> list[Point]:
    """Per model and closed window: events, share with required lineage, consequential and uncaptured.

    Stamped with the window's end and labelled by model only, so whichever worker owns the
    model's window publishes the same series and a re-publication replaces the point.
    """
    points: list[Point] = []
    for (_, end), c in sorted(windows.items()):
        for (metric, model), total in sorted(c.items()):
            if metric != "inf":
                continue
            missing = _missing(c, "inf_missing", model, known)
            labels = {"model": model}
            points += [("inference_window_events", labels, end, float(total)),
                       ("inference_window_lineage_share", labels, end, (total - missing) / total if total else 1.0),
                       ("consequential_window_events", labels, end, float(c.get(("conseq", model), 0))),
                       ("consequential_window_uncaptured", labels, end, float(_missing(c, "conseq_missing", model, known)))]
    return points


def heartbeat_alerts(
    expected: Sequence[str], last_seen_us: Sequence[int | None], baseline_us: Sequence[int | None],
    now: float, window_s: float,
) -> list[Alert]:
    """EmitterSilent alerts for the expected emitters quiet for longer than `window_s`.

    An emitter never seen is measured from its baseline (when it was first expected).
    """
    firing: list[Alert] = []
    for emitter, last, first in zip(expected, last_seen_us, baseline_us):
        ref = last if last is not None else (first if first is not None else int(now * 1e6))
        quiet = now - ref / 1e6
        if quiet > window_s:
            firing.append(Alert.firing(SILENT_ALERT, {"emitter": emitter},
                                       f"expected emitter {emitter} sent nothing for {quiet:.0f}s "
                                       f"(heartbeat window {window_s:.0f}s)", "warning", quiet, source="windows"))
    return firing
