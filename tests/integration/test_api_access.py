"""Access control on a real sink process (intake, dashboard, alerts mounted; real keys in Redis):
every data route refuses anonymous callers and wrong roles, and an analyst's statement that runs
into its time limit does not hold up ingestion. The SQL attacks per role through the API are in
``test_sql_sandbox.py``, next to the sandbox's own."""
from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from factories import dataset_ref, run_event
from helpers import api_token, auth_headers, wait_until
from integration.alerts_support import Pipeline, start_pipeline
from integration.sink_support import run_cli
from integration.worker_support import encode_many, produce_all
from lineage.settings import Settings, SqlSettings

pytestmark = [pytest.mark.integration]

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
    ("GET", "/api/v1/lineage?nodeId=dataset:ns:name", None),
    ("GET", "/api/v1/column-lineage?nodeId=dataset:ns:name", None),
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


def test_a_keyed_query_is_in_the_audit_log_with_statement_reason_and_rows(pipe: Pipeline) -> None:
    import redis

    from lineage.keyspace import KeySpace
    from sinks.access.keys import ApiKeys

    s = pipe.settings
    name = f"auditor-{uuid.uuid4().hex[:6]}"
    client = redis.Redis.from_url(s.redis_url)
    try:
        token, _ = ApiKeys(client, KeySpace.of(s)).create(name, "auditor")
    finally:
        client.close()
    statement = "SELECT event_id FROM raw_events LIMIT 3"
    req = urllib.request.Request(s.api_url + "/api/sql", data=json.dumps({"sql": statement}).encode(),
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}",
                                          "X-Lineage-Reason": "ticket AUD-7 sample"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        rows = len(json.loads(resp.read())["rows"])
    refused = urllib.request.Request(s.api_url + "/api/sql", data=json.dumps({"sql": "SELECT file('/etc/hostname')"}).encode(),
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}",
                                              "X-Lineage-Reason": "probe"})
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(refused, timeout=30)

    def logged() -> list[dict[str, Any]]:
        out = run_cli(s, "audit", "log", "--who", name, "--since", "1h", "--json").stdout
        entries = json.loads(out)
        return entries if len(entries) >= 2 else []

    entries = wait_until(logged, 60, "the two queries in `lineage audit log`", 0.5)
    by_what = {e["what"]: e for e in entries}
    ok = by_what[statement]
    assert (ok["who"], ok["role"], ok["action"], ok["reason"], ok["outcome"], ok["rows"]) == \
        (name, "auditor", "sql", "ticket AUD-7 sample", "ok", rows) and rows == 3
    assert by_what["SELECT file('/etc/hostname')"]["outcome"].startswith("refused: function file()")


def _decrypt(settings: Settings, pointer: str, token: str | None, reason: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    body = json.dumps({"reason": reason} if reason is not None else {}).encode()
    req = urllib.request.Request(f"{settings.api_url}/api/snapshots/{pointer}:decrypt", data=body, headers=headers,
                                 method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return int(resp.status), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), json.loads(exc.read())


def test_investigators_decrypt_a_snapshot_over_http_and_every_attempt_is_audited(pipe: Pipeline) -> None:
    from factories import inference_event

    s = pipe.settings
    pid, secret = f"dec-{uuid.uuid4().hex[:8]}", f"VAL{uuid.uuid4().hex[:8]}"
    event = inference_event(pid, subject_id=f"subj-{pid}", snapshot={"income": secret}, risk=0.95)
    produce_all(s, [(s.topics.inference, pid.encode(), encode_many(s, "inference", [event])[0], None)])

    def pointer() -> str:
        status, body = _sql(s, f"SELECT snapshot_pointer FROM inference_lineage FINAL WHERE prediction_id = '{pid}'")
        return str(body["rows"][0][0]) if status == 200 and body["rows"] and body["rows"][0][0] else ""

    ptr = wait_until(pointer, 90, f"the prediction's stored snapshot\n{pipe.logs()}", 0.5)
    investigator = api_token(s, "investigator")
    assert _decrypt(s, ptr, None, "case 1")[0] == 401
    assert _decrypt(s, ptr, api_token(s, "analyst"), "case 1")[0] == 403
    status, body = _decrypt(s, ptr, investigator, None)
    assert status == 400 and "reason" in body["error"]
    assert _decrypt(s, "pii-store:v1/nope/0/1", investigator, "case 1")[0] == 404
    status, body = _decrypt(s, ptr, investigator, "case 1")
    assert status == 200 and body["pointer"] == ptr and body["snapshot"]["values"]["income"] == secret

    def decrypts() -> list[dict[str, Any]]:
        out = run_cli(s, "audit", "log", "--action", "decrypt", "--since", "1h", "--json").stdout
        entries = [e for e in json.loads(out) if e["what"] in (ptr, "pii-store:v1/nope/0/1")]
        return entries if len(entries) >= 4 else []

    entries = wait_until(decrypts, 60, "the decrypt attempts in the audit log", 0.5)
    outcomes = sorted(e["outcome"].split(":")[0] for e in entries)
    assert outcomes == ["failed", "ok", "refused", "refused"], entries  # 401 never reaches the handler
    assert all(e["via"] == "api" for e in entries) and not [e for e in entries if secret in json.dumps(e)]
