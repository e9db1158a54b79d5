"""The Grafana dashboard (deploy/grafana/lineage-sre.json) is well-formed, and every panel's SQL,
with Grafana's ClickHouse macros and the dashboard's variables substituted, runs against the
sink's real schema (its migrations, embedded chDB) and returns the hand-derived figures for a
small set of metric and alert rows written through the sink's own row path."""
from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from lineage.metric_records import metric_record
from lineage.settings import Settings
from sinks.base import Message
from sinks.clickhouse.client import Store
from sinks.clickhouse.queries import READONLY_SETTINGS
from sinks.clickhouse.writer import ClickHouseSink
from stream_apps.alerts.completeness import window_stat_points
from stream_apps.alerts.model import Alert

pytestmark = [pytest.mark.integration]

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "lineage-sre.json"
PLUGIN = "grafana-clickhouse-datasource"
PANEL_FORMAT = {"timeseries": (0, "timeseries"), "table": (1, "table")}  # format 0 = time series, 1 = table

# "Now" of the test data: a whole hour, recent enough for the metrics table's 90-day TTL.
T = float(int(time.time()) // 3600 * 3600)
FROM, TO, INTERVAL_S = T - 3600, T + 600, 60  # the dashboard's time range and interval for the queries


def at(value: datetime) -> int:
    """A returned time as seconds from T, the form the expectations below are written in. (Not a
    clock time: HH:MM:SS would sort 23:59 after 00:00 when T is midnight.)"""
    return round(_epoch(value) - T)


# --- Grafana's substitutions (the ClickHouse data source's macros, then dashboard variables) -----

def _dt(ts: float) -> str:
    return f"toDateTime({int(ts)})"


def _dt_ms(ts: float) -> str:
    return f"fromUnixTimestamp64Milli({int(ts * 1000)})"


MACROS: dict[str, Callable[[str], str]] = {
    "timeFilter": lambda c: f"{c} >= {_dt(FROM)} AND {c} <= {_dt(TO)}",
    "timeFilter_ms": lambda c: f"{c} >= {_dt_ms(FROM)} AND {c} <= {_dt_ms(TO)}",
    "dateFilter": lambda c: f"{c} >= toDate({_dt(FROM)}) AND {c} <= toDate({_dt(TO)})",
    "timeInterval": lambda c: f"toStartOfInterval(toDateTime({c}), INTERVAL {INTERVAL_S} second)",
    "timeInterval_ms": lambda c: f"toStartOfInterval(toDateTime64({c}, 3), INTERVAL {INTERVAL_S * 1000} millisecond)",
    "fromTime": lambda _: _dt(FROM),
    "toTime": lambda _: _dt(TO),
    "fromTime_ms": lambda _: _dt_ms(FROM),
    "toTime_ms": lambda _: _dt_ms(TO),
    "interval_s": lambda _: str(INTERVAL_S),
}
MACRO = re.compile(r"\$__(\w+)(?:\(([^()]*)\))?")
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(?!__)(\w+)")


def expand(sql: str, variables: dict[str, str]) -> str:
    def macro(m: re.Match[str]) -> str:
        assert m.group(1) in MACROS, f"macro $__{m.group(1)} is not one the ClickHouse data source knows"
        return MACROS[m.group(1)]((m.group(2) or "").strip())

    def variable(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        assert name in variables, f"${name} is not a dashboard variable"
        return variables[name]

    out = VARIABLE.sub(variable, MACRO.sub(macro, sql))
    assert "$" not in out, out
    return out


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _variables(dash: dict[str, Any]) -> dict[str, str]:
    return {v["name"]: v["current"]["value"] for v in dash["templating"]["list"] if v["type"] != "datasource"}


# --- structure --------------------------------------------------------------------------------

def test_dashboard_structure(dashboard: dict[str, Any]) -> None:
    d = dashboard
    assert d["title"] and re.fullmatch(r"[a-z0-9-]{1,40}", d["uid"]) and isinstance(d["schemaVersion"], int)
    assert "id" not in d or d["id"] is None  # importable into any Grafana
    (ds_input,) = d["__inputs"]
    assert ds_input["type"] == "datasource" and ds_input["pluginId"] == PLUGIN
    required = {(r["type"], r["id"]) for r in d["__requires"]}
    assert ("datasource", PLUGIN) in required
    assert {("panel", p["type"]) for p in d["panels"]} <= required

    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert len(variables) == len(d["templating"]["list"])
    ds_var = variables["datasource"]
    assert ds_var["type"] == "datasource" and ds_var["query"] == PLUGIN
    assert ds_var["current"]["value"] == "${%s}" % ds_input["name"]  # the data source picked at import
    assert variables["database"]["current"]["value"] == Settings().clickhouse_database

    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)) >= 9
    cells: set[tuple[int, int]] = set()
    for p in d["panels"]:
        g = p["gridPos"]
        assert g["w"] > 0 and g["h"] > 0 and g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, f"panel {p['title']!r} overlaps another"
        cells |= mine
        assert p["type"] in PANEL_FORMAT, p["type"]
        assert p["datasource"] == {"type": PLUGIN, "uid": "${datasource}"}, p["title"]
        assert p["targets"] and len({t["refId"] for t in p["targets"]}) == len(p["targets"])
        for t in p["targets"]:
            assert t["datasource"] == p["datasource"] and t["editorType"] == "sql" and t["rawSql"].strip()
            assert (t["format"], t["queryType"]) == PANEL_FORMAT[p["type"]], p["title"]

    # Every ${var} / $var anywhere refers to a template variable or an import input.
    known = set(variables) | {i["name"] for i in d["__inputs"]}
    refs = {a or b for a, b in VARIABLE.findall(json.dumps(d))}
    assert refs <= known, refs - known


def test_macro_expansion_matches_the_data_source() -> None:
    got = expand("SELECT $__timeInterval(ts) FROM ${db}.t WHERE $__timeFilter(ts) AND x < $__toTime", {"db": "lineage"})
    assert got == (f"SELECT toStartOfInterval(toDateTime(ts), INTERVAL 60 second) FROM lineage.t WHERE "
                   f"ts >= toDateTime({int(FROM)}) AND ts <= toDateTime({int(TO)}) AND x < toDateTime({int(TO)})")
    with pytest.raises(AssertionError):
        expand("SELECT $__noSuchMacro(ts)", {})
    with pytest.raises(AssertionError):
        expand("SELECT 1 FROM $other.t", {"db": "lineage"})


# --- the queries against the real schema ------------------------------------------------------

A_LAG = Alert("ConsumerLagHigh", {"group": "g1", "topic": "t.inference", "partition": "1"}, "critical",
              "consumer group g1 lags 12000 messages", starts_at=int((T - 300) * 1e6))
A_SHARE = Alert("InferenceLineageIncomplete", {"model": "credit"}, "warning", "model credit: 8.0% lack lineage",
                starts_at=int((T - 90) * 1e6))
A_OLD = Alert("EmitterSilent", {"emitter": "etl"}, "warning", "expected emitter etl sent nothing",
              starts_at=int((T - 7300) * 1e6))


def _metric_messages() -> list[bytes]:
    lag = {"group": "g1", "topic": "t.inference"}
    points = [
        ("consumer_lag", {**lag, "partition": "0"}, T - 120, 10), ("consumer_lag", {**lag, "partition": "0"}, T - 118, 15),
        ("consumer_lag", {**lag, "partition": "1"}, T - 120, 5000), ("consumer_lag", {**lag, "partition": "0"}, T - 60, 20),
        ("consumer_lag", {**lag, "partition": "1"}, T - 60, 12000),
        ("consumer_lag", {**lag, "partition": "0"}, T - 7200, 99999),  # outside the time range
        ("topic_messages_per_second", {"topic": "t.inference"}, T - 120, 100),
        ("topic_messages_per_second", {"topic": "t.inference"}, T - 100, 300),
        ("topic_messages_per_second", {"topic": "t.graph"}, T - 60, 50),
        ("deadletter_per_second", {}, T - 60, 0.5), ("deadletter_per_second", {}, T - 30, 1.5),
        ("e2e_latency_seconds", {"quantile": "0.99", "worker": "a"}, T - 60, 0.8),
        ("e2e_latency_seconds", {"quantile": "0.99", "worker": "b"}, T - 55, 1.7),
        ("e2e_latency_seconds", {"quantile": "0.5", "worker": "a"}, T - 60, 0.1),
        ("sampling_tier_events", {"tier": "routine", "worker": "a"}, T - 60, 40),
        ("sampling_tier_events", {"tier": "routine", "worker": "b"}, T - 50, 2),
        ("sampling_tier_events", {"tier": "consequential", "worker": "a"}, T - 60, 3),
        ("producer_spool_depth", {"producer": "etl-1"}, T - 60, 7),
        # A model whose window figures come split by an extra label: weighted by events.
        ("inference_window_events", {"model": "legacy", "worker": "w1"}, T - 60, 30),
        ("inference_window_lineage_share", {"model": "legacy", "worker": "w1"}, T - 60, 1.0),
        ("inference_window_events", {"model": "legacy", "worker": "w2"}, T - 60, 10),
        ("inference_window_lineage_share", {"model": "legacy", "worker": "w2"}, T - 60, 0.5),
    ]
    windows = {(T - 120, T - 60): {("inf", "credit"): 100, ("inf_missing", "credit"): 8},
               (T - 60, T): {("inf", "credit"): 50, ("inf", "fraud"): 20, ("inf_missing", "fraud"): 5}}
    points += window_stat_points(windows)
    return [metric_record(name, labels, ts, float(value)) for name, labels, ts, value in points]


def _alert_messages() -> list[bytes]:
    return [A_LAG.to_topic(), A_LAG.resolved(int((T - 100) * 1e6)).to_topic(), A_SHARE.to_topic(), A_OLD.to_topic()]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    store = Store.open(f"chdb://{tmp_path_factory.mktemp('grafana') / 'clickhouse'}", Settings().clickhouse_database)
    sink = ClickHouseSink(store, [], ["m"], ["a"])
    for i, raw in enumerate(_metric_messages()):
        sink.add(Message("m", 0, i, None, raw))
    for i, raw in enumerate(_alert_messages()):
        sink.add(Message("a", 0, i, None, raw))
    rows = sink.flush().rows
    assert rows.get("pipeline_metrics") == len(_metric_messages()) and rows.get("alerts") == 4, rows
    try:
        yield store
    finally:
        store.close()


def _epoch(value: datetime) -> float:
    return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()


def _series(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Time-series rows as (seconds from T, series..., rounded value), in a stable order."""
    return sorted((at(r[0]), *r[1:-1], round(float(r[-1]), 6)) for r in rows)


EXPECTED_SERIES: dict[int, list[tuple[Any, ...]]] = {
    1: [(-120, "g1 t.inference[0]", 15.0), (-120, "g1 t.inference[1]", 5000.0),
        (-60, "g1 t.inference[0]", 20.0), (-60, "g1 t.inference[1]", 12000.0)],
    2: [(-120, "t.inference", 200.0), (-60, "t.graph", 50.0)],
    3: [(-60, 1.0)],
    4: [(-60, "p0.5", 0.1), (-60, "p0.99", 1.7)],
    5: [(-60, "consequential", 3.0), (-60, "routine", 42.0)],
    6: [(-60, "credit", 0.92), (-60, "legacy", 0.875), (0, "credit", 1.0), (0, "fraud", 0.75)],
    7: [(-60, "etl-1", 7.0)],
}
EXPECTED_TABLES: dict[int, list[tuple[Any, ...]]] = {
    # Active alerts: the resolved lag alert is gone, the old one still firing stays (no time filter).
    8: [("InferenceLineageIncomplete", "warning", {"model": "credit"}, A_SHARE.summary, -90),
        ("EmitterSilent", "warning", {"emitter": "etl"}, A_OLD.summary, -7300)],
    # Transitions in the time range, newest first.
    9: [(-90, "InferenceLineageIncomplete", "firing"), (-100, "ConsumerLagHigh", "resolved"),
        (-300, "ConsumerLagHigh", "firing")],
}


def test_every_panel_query_runs_on_the_schema_and_returns_the_expected_rows(
        dashboard: dict[str, Any], store: Store) -> None:
    variables = _variables(dashboard)
    panels = {p["id"]: p for p in dashboard["panels"]}
    assert set(panels) == set(EXPECTED_SERIES) | set(EXPECTED_TABLES), "a panel without expected rows here"
    for pid, panel in sorted(panels.items()):
        (target,) = panel["targets"]
        res = store.query(expand(target["rawSql"], variables), None, READONLY_SETTINGS)
        if panel["type"] == "timeseries":
            # The data source turns long frames into series: time first, ascending.
            assert res.columns[0] == "time" and res.types[0].startswith("DateTime"), (panel["title"], res.types)
            times = [_epoch(r[0]) for r in res.rows]
            assert times == sorted(times), panel["title"]
            assert _series(res.rows) == EXPECTED_SERIES[pid], panel["title"]
        elif pid == 8:
            got = [(*r[:4], at(r[4])) for r in res.rows]
            assert got == EXPECTED_TABLES[pid], panel["title"]
        else:
            got = [(at(r[0]), r[1], r[2]) for r in res.rows]
            assert got == EXPECTED_TABLES[pid], panel["title"]
