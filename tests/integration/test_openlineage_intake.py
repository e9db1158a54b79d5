"""Unmodified openlineage-python clients feed the pipeline: its Kafka transport (JSON on the
``openlineage`` topic) and its HTTP transport (``url: <api.url>`` with ``auth: {type: api_key}``; refused without a key) both end as graph edges in
ClickHouse; invalid OpenLineage input gets a 400 with a reason; the batch endpoint works."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from factories import openlineage_client_event
from helpers import api_token, wait_until
from integration.sink_support import api_sql, free_port, start_sink, stop_sink, wait_healthy
from integration.worker_support import running_workers, worker_logs
from lineage.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]
PG, LAKE = "postgres://db:5432", "s3://lake"


def post(url: str, body: bytes, token: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    req = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def edges_of(settings: Settings, run_id: str) -> set[tuple[str, str, str]]:
    rows = api_sql(settings, f"SELECT DISTINCT src, dst, edge_type FROM edges WHERE run_id = '{run_id}'")
    return {(r[0], r[1], r[2]) for r in rows}


def test_openlineage_python_kafka_and_http_transports_land_as_edges(
    settings_factory: Callable[..., Settings], make_topics: Callable[[Settings], list[str]], tmp_path: Path
) -> None:
    from openlineage.client import OpenLineageClient
    from openlineage.client.transport.http import HttpConfig, HttpTransport
    from openlineage.client.transport.kafka import KafkaConfig, KafkaTransport

    s = settings_factory(api_port=free_port())
    make_topics(s)
    kafka_run, http_run = str(uuid.uuid4()), str(uuid.uuid4())
    log = tmp_path / "sink.log"
    sink = start_sink(s, log)
    try:
        with running_workers(s):
            wait_healthy(s, sink, log)
            # (a) the stock Kafka transport, configured only with the broker and our topic
            kafka = OpenLineageClient(transport=KafkaTransport(KafkaConfig(
                config={"bootstrap.servers": s.kafka_bootstrap}, topic=s.topics.openlineage, flush=True)))
            kafka.emit(openlineage_client_event(kafka_run, "START"))
            kafka.emit(openlineage_client_event(kafka_run, "COMPLETE"))
            # (b) the stock HTTP transport, pointed at api.url with its own api_key auth (an emitter key)
            token = api_token(s, "emitter")
            http = OpenLineageClient(transport=HttpTransport(HttpConfig.from_dict(
                {"url": s.api_url, "auth": {"type": "api_key", "apiKey": token}})))
            http.emit(openlineage_client_event(http_run, source=(PG, "shop.public.customers"),
                                               target=(LAKE, "customers/clean")))
            # without a key, or with a revoked-looking one, the same client is refused and nothing is emitted
            refused_run = str(uuid.uuid4())
            for auth in ({}, {"auth": {"type": "api_key", "apiKey": "lk_not-a-key"}}):
                anonymous = OpenLineageClient(transport=HttpTransport(HttpConfig.from_dict({"url": s.api_url, **auth})))
                with pytest.raises(requests.HTTPError) as refused:
                    anonymous.emit(openlineage_client_event(refused_run))
                assert refused.value.response.status_code == 401

            run_node = f"run:{kafka_run}"
            expect_kafka = {
                ("job:airflow/orders_daily", run_node, "executes"),
                ("dataset:postgres://db:5432/shop.public.orders", run_node, "read_by"),
                (run_node, "dataset:s3://lake/orders/clean", "produced"),
            }
            wait_until(lambda: expect_kafka <= edges_of(s, kafka_run), 120,
                       "edges of the Kafka-transport run in ClickHouse")
            expect_http = {("dataset:postgres://db:5432/shop.public.customers", f"run:{http_run}", "read_by"),
                           (f"run:{http_run}", "dataset:s3://lake/customers/clean", "produced")}
            wait_until(lambda: expect_http <= edges_of(s, http_run), 120,
                       "edges of the HTTP-transport run in ClickHouse")
            assert not edges_of(s, refused_run)  # landed behind the accepted run: the refused ones never will

            # invalid input: 400 with a machine-readable reason, nothing emitted
            status, body = post(f"{s.api_url}/api/v1/lineage", b'{"eventType": "START"}', token)
            assert status == 400 and body["error"] == "not_a_run_event"
            status, body = post(f"{s.api_url}/api/v1/lineage", b"{not json", token)
            assert status == 400 and body["error"] == "invalid_json"
            # batch: answered per event; the valid events are accepted
            from openlineage.client.serde import Serde

            batch_run = str(uuid.uuid4())
            batch_event = openlineage_client_event(batch_run, source=(PG, "a.b.c"), target=(LAKE, "d/e"))
            good = json.loads(Serde.to_json(batch_event))
            status, body = post(f"{s.api_url}/api/v1/lineage/batch", json.dumps([{"run": {}}, {"run": {}}]).encode(), token)
            assert status == 400 and [r["index"] for r in body["results"]] == [0, 1] and body["accepted"] == 0
            status, body = post(f"{s.api_url}/api/v1/lineage/batch", json.dumps([good, good]).encode(), token)
            assert status == 200 and body["accepted"] == 2
            ids = [r["event_id"] for r in body["results"]]
            assert ids[0] == ids[1]  # a re-sent OpenLineage event keeps its id
            wait_until(lambda: edges_of(s, batch_run), 120, "edges of the batch run")
    except AssertionError:
        print(worker_logs(s)[-4000:], log.read_text()[-4000:])
        raise
    finally:
        stop_sink(sink)
