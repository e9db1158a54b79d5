"""Access control on the sink's API with real keys (Redis), the real audit trail (Kafka) and chDB.

In process (the scenario store): every known SQL attack is refused for analyst and auditor keys
and leaves no trace; anonymous and wrong-role requests get 401/403; /health says nothing
internal; /metrics needs a key unless made public; auditors must give a reason.
A real sink process (intake, dashboard, alerts mounted): every data route refuses anonymous
callers, and an analyst's statement that runs into its time limit does not hold up ingestion.
"""
from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from factories import dataset_ref, run_event
from helpers import api_token, auth_headers, wait_until
from integration.alerts_support import Pipeline, start_pipeline
from integration.lineage_scenario import scenario_store
from integration.sink_support import api_client, deployment
from integration.worker_support import encode_many, produce_all
from lineage.settings import ApiSettings, Settings, SqlSettings
from sinks.clickhouse.client import Store

pytestmark = [pytest.mark.integration]

SECRET = "kek-secret-5d1e0a"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("access")
    (path / "keys").mkdir()
    (path / "keys" / "kek.key").write_text(SECRET)
    return path


@pytest.fixture(scope="module")
def store(data_dir: Path) -> Iterator[Store]:
    with scenario_store(data_dir / "clickhouse") as store:
        yield store


@pytest.fixture(scope="module")
def settings(stack: Any, data_dir: Path) -> Settings:
    return deployment(stack, data_dir)


def attacks(data_dir: Path) -> list[str]:
    return [
        "SELECT file('/etc/hostname')",
        f"SELECT file('{data_dir}/keys/kek.key')",
        "SELECT * FROM file('/etc/hostname', 'LineAsString')",
        "SELECT * FROM url('http://127.0.0.1:1/', 'LineAsString')",
        f"SELECT 1 INTO OUTFILE '{data_dir}/x'",
        "SELECT 1 SETTINGS readonly=0",
        "SELECT 1 /* ' */; CREATE TABLE t (x UInt8) ENGINE=Memory; SELECT 1 /* ' */",
        "INSERT INTO edges (src) VALUES ('x')",
    ]


def _tables(store: Store) -> set[str]:
    return {r[0] for r in store.query("SELECT name FROM system.tables WHERE database = 'lineage'").rows}


async def _post_sql(http: Any, sql: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    resp = await http.post("/api/sql", json={"sql": sql}, headers=headers)
    return resp.status, await resp.json()


@pytest.mark.parametrize("role", ["analyst", "auditor"])
def test_attacks_are_refused_for_keys_and_leave_no_trace(settings: Settings, store: Store, data_dir: Path,
                                                         role: str) -> None:
    before = _tables(store)
    edges = store.query("SELECT count() FROM edges").rows[0][0]
    headers = auth_headers(settings, role, reason="access test")

    async def scenario() -> None:
        async with api_client(settings, store) as http:
            for sql in attacks(data_dir):
                status, body = await _post_sql(http, sql, headers)
                assert status == 400, (sql, body)
                assert "\n" not in body["error"] and SECRET not in body["error"]
            status, body = await _post_sql(http, "SELECT count() AS n FROM nodes", headers)
            assert status == 200 and body["rows"][0][0] > 0

    asyncio.run(scenario())
    assert not (data_dir / "x").exists()
    assert store.query("EXISTS TABLE t").rows[0][0] == 0
    assert _tables(store) == before
    assert store.query("SELECT count() FROM edges").rows[0][0] == edges


def test_raw_records_are_for_auditors_not_analysts(settings: Settings, store: Store) -> None:
    async def scenario() -> None:
        async with api_client(settings, store) as http:
            status, body = await _post_sql(http, "SELECT record FROM raw_events LIMIT 1", auth_headers(settings, "analyst"))
            assert status == 400 and "raw_events" in body["error"]
            status, body = await _post_sql(http, "SELECT subject_ref FROM inference_lineage LIMIT 1",
                                           auth_headers(settings, "analyst"))
            assert status == 400
            status, body = await _post_sql(http, "SELECT count() FROM inference_lineage_anon", auth_headers(settings, "analyst"))
            assert status == 200
            status, body = await _post_sql(http, "SELECT count() FROM raw_events",
                                           auth_headers(settings, "auditor", reason="raw log review"))
            assert status == 200 and body["rows"][0][0] > 0

    asyncio.run(scenario())


def test_anonymous_401_wrong_role_403(settings: Settings, store: Store) -> None:
    async def scenario() -> None:
        async with api_client(settings, store) as http:
            for method, path in (("POST", "/api/sql"), ("GET", "/api/query/prediction?prediction_id=p3"),
                                 ("GET", "/metrics")):
                for headers in ({}, {"Authorization": "Bearer lk_forged"}, {"Authorization": "Basic YWRtaW46YWRtaW4="}):
                    resp = await http.request(method, path, json={"sql": "SELECT 1"}, headers=headers)
                    assert resp.status == 401, (path, headers)
                    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
            emitter = auth_headers(settings, "emitter")
            status, _ = await _post_sql(http, "SELECT 1", emitter)
            assert status == 403
            resp = await http.get("/api/query/verify", headers=auth_headers(settings, "analyst"))
            assert resp.status == 403  # the raw log's chain is for auditors
            resp = await http.get("/api/query/prediction", params={"prediction_id": "p3"},
                                  headers=auth_headers(settings, "analyst"))
            assert resp.status == 200 and (await resp.json())["rows"]

    asyncio.run(scenario())


def test_health_is_public_and_says_nothing_internal(settings: Settings, store: Store, data_dir: Path) -> None:
    async def scenario() -> None:
        async with api_client(settings, store) as http:
            resp = await http.get("/health")
            text = await resp.text()
            assert resp.status == 200 and json.loads(text)["status"] == "ok"
            assert str(data_dir) not in text and "chdb" not in text and "dsn" not in text

    asyncio.run(scenario())


def test_metrics_need_a_key_unless_made_public(settings: Settings, store: Store) -> None:
    public = settings.model_copy(update={"api": ApiSettings(metrics_public=True)})

    async def scenario() -> None:
        async with api_client(settings, store) as http:
            assert (await http.get("/metrics")).status == 401
            assert (await http.get("/metrics", headers=auth_headers(settings, "emitter"))).status == 403
            ok = await http.get("/metrics", headers=auth_headers(settings, "analyst"))
            assert ok.status == 200 and "lineage_sink_" in await ok.text()
        async with api_client(public, store) as http:
            assert (await http.get("/metrics")).status == 200
            assert (await http.post("/api/sql", json={"sql": "SELECT 1"})).status == 401

    asyncio.run(scenario())


def test_auditors_give_a_reason(settings: Settings, store: Store) -> None:
    async def scenario() -> None:
        async with api_client(settings, store) as http:
            status, body = await _post_sql(http, "SELECT 1", auth_headers(settings, "auditor"))
            assert status == 400 and "reason" in body["error"]
            status, _ = await _post_sql(http, "SELECT 1", auth_headers(settings, "auditor", reason="quarterly review"))
            assert status == 200
            status, _ = await _post_sql(http, "SELECT 1", auth_headers(settings, "analyst"))
            assert status == 200  # analysts are not asked

    asyncio.run(scenario())


# -- a real sink process -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pipe(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    tmp = tmp_path_factory.mktemp("access-sink")
    yield from start_pipeline(stack, tmp, settings_overrides={"sql": SqlSettings(max_execution_time_s=8)})


def _status(settings: Settings, method: str, path: str, token: str | None, body: bytes | None = None) -> int:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    req = urllib.request.Request(settings.api_url + path, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


DATA_ROUTES = [
    ("POST", "/api/sql", b'{"sql": "SELECT 1"}'),
    ("GET", "/api/query/completeness?model=m", None),
    ("POST", "/api/v1/lineage", b"{}"),
    ("POST", "/api/v1/lineage/batch", b"[]"),
    ("GET", "/api/alerts", None),
    ("GET", "/api/dashboard/data", None),
    ("GET", "/api/pipeline/stats", None),
    ("GET", "/metrics", None),
    ("GET", "/metrics/pipeline", None),
]


def test_every_data_route_of_the_sink_refuses_anonymous_callers(pipe: Pipeline) -> None:
    s = pipe.settings
    for method, path, body in DATA_ROUTES:
        assert _status(s, method, path, None, body) == 401, path
        assert _status(s, method, path, "lk_" + "0" * 43, body) == 401, path
    assert _status(s, "GET", "/health", None) == 200
    analyst, emitter = api_token(s, "analyst"), api_token(s, "emitter")
    assert _status(s, "POST", "/api/v1/lineage", analyst, b"{}") == 403
    assert _status(s, "GET", "/api/dashboard/data", emitter) == 403
    assert _status(s, "GET", "/api/alerts", analyst) == 200
    assert _status(s, "POST", "/api/v1/lineage/batch", emitter, b"[]") == 200  # an empty batch, accepted


def _sql(settings: Settings, sql: str, role: str = "admin") -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(settings.api_url + "/api/sql", data=json.dumps({"sql": sql}).encode(),
                                 headers={"Content-Type": "application/json", **auth_headers(settings, role)})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return int(resp.status), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), json.loads(exc.read())


def _datasets(n: int, tag: str) -> list[dict[str, Any]]:
    return [run_event("dataset", inputs=[dataset_ref("postgres://db:5432", f"{tag}.src{i}")],
                      outputs=[dataset_ref("s3://lake", f"{tag}/out{i}")]) for i in range(n)]


def _landed(settings: Settings, tag: str) -> int:
    status, body = _sql(settings, f"SELECT count() FROM nodes WHERE name LIKE '{tag}%'")
    return int(body["rows"][0][0]) if status == 200 else -1


def test_an_analyst_query_at_its_time_limit_does_not_stall_ingestion(pipe: Pipeline) -> None:
    s = pipe.settings
    first = f"warm{uuid.uuid4().hex[:6]}"
    produce_all(s, [(s.topics.dataset, None, r, None) for r in encode_many(s, "dataset", _datasets(150, first))])
    wait_until(lambda: _landed(s, first) >= 300, 120, f"the first batch in ClickHouse\n{pipe.logs()}", 0.5)

    slow: dict[str, Any] = {}

    def analyst() -> None:  # ~1e11 rows of cross join: only the time limit ends it
        started = time.monotonic()
        slow["status"], slow["body"] = _sql(
            s, "SELECT count() FROM nodes AS a, nodes AS b, nodes AS c, nodes AS d WHERE a.name != d.name", "analyst")
        slow["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=analyst)
    thread.start()
    second = f"late{uuid.uuid4().hex[:6]}"
    produce_all(s, [(s.topics.dataset, None, r, None) for r in encode_many(s, "dataset", _datasets(20, second))])
    wait_until(lambda: _landed(s, second) >= 40 or not thread.is_alive(), 60, "the second batch", 0.1)
    landed_while_running = thread.is_alive()
    thread.join(120)
    assert landed_while_running, f"the second batch landed only after the analyst's statement ended ({slow})"
    assert slow["status"] == 400 and "time" in slow["body"]["error"].lower(), slow
    req = urllib.request.Request(s.api_url + "/api/pipeline/stats", headers=auth_headers(s, "analyst"))
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert json.loads(resp.read())["accepted.dataset"] >= 170  # the workers' counters, behind a key
