"""The OpenLineage intake without the rest of the pipeline: the stock HTTP transport posts to our
aiohttp routes and the converted event lands, Avro-encoded, on the project's topic; the stock Kafka
transport's JSON converts to a valid project record; `lineage emit` reports sent/spooled/failed."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from factories import openlineage_client_event
from integration.kafka_support import consume
from lineage.codec import Codec
from lineage.settings import Settings, settings_to_env
from producers.config import EmitterConfig
from producers.emitter import Emitter
from producers.openlineage import from_openlineage
from producers.records import partition_key
from stream_apps.intake_http import add_routes

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
MARTS = ("postgres://db:5432", "shop.marts.orders")  # the output the converted event must name


@pytest.fixture
def ready(settings_factory: Callable[..., Settings], make_topics: Callable[[Settings], list[str]]) -> Settings:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    s = settings_factory(api_port=port)
    make_topics(s)
    return s


@pytest.fixture
def intake(ready: Settings) -> Iterator[str]:
    """Our routes on a real HTTP server in a background thread; yields api.url."""
    loop = asyncio.new_event_loop()
    app = web.Application()
    emitter = Emitter(EmitterConfig.from_settings(ready), "openlineage-http")
    add_routes(app, emitter)
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, ready.api_host, ready.api_port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield ready.api_url
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        emitter.close()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def test_http_transport_lands_on_the_project_topic(ready: Settings, intake: str) -> None:
    from openlineage.client import OpenLineageClient
    from openlineage.client.transport.http import HttpCompression, HttpConfig, HttpTransport

    run_id = str(uuid.uuid4())
    client = OpenLineageClient(transport=HttpTransport(HttpConfig(url=intake, compression=HttpCompression.GZIP)))
    client.emit(openlineage_client_event(run_id, target=MARTS))  # raises on a non-2xx answer
    (msg,) = consume(ready, [ready.topics.dataset], 1)
    rec = Codec().decode(msg.value()).record
    assert rec["run"]["runId"] == run_id and msg.key() == f"run:{rec['job']['namespace']}/{rec['job']['name']}".encode()
    assert rec["outputs"][0]["name"] == "shop.marts.orders"


def test_kafka_transport_json_converts(ready: Settings) -> None:
    from openlineage.client import OpenLineageClient
    from openlineage.client.transport.kafka import KafkaConfig, KafkaTransport

    run_id = str(uuid.uuid4())
    client = OpenLineageClient(transport=KafkaTransport(KafkaConfig(
        config={"bootstrap.servers": ready.kafka_bootstrap}, topic=ready.topics.openlineage, flush=True)))
    client.emit(openlineage_client_event(run_id, target=MARTS))
    (msg,) = consume(ready, [ready.topics.openlineage], 1)
    kind, rec = from_openlineage(json.loads(msg.value()))
    assert kind == "dataset" and rec["run"]["runId"] == run_id
    # the SDK keys the converted event exactly as the stock client keyed the original
    assert msg.key() is not None and partition_key(kind, rec) == msg.key().decode()
    Codec().encode(kind, rec)


def test_lineage_emit_cli_summary(ready: Settings, tmp_path: Path) -> None:
    lines = [
        {"kind": "inference", "event": {"producer": "p", "endpoint": "e", "model_name": "m", "model_version": "1",
                                        "prediction_id": f"p{i}", "decision_type": "approve", "risk_score": 0.1,
                                        "subject_id": "s", "event_time": 1_781_510_400_000_000}}
        for i in range(50)
    ]
    from openlineage.client.serde import Serde

    lines.append(json.loads(Serde.to_json(openlineage_client_event())))
    path = tmp_path / "events.ndjson"
    path.write_text("\n".join(json.dumps(x) for x in lines) + '\n{"kind": "inference", "event": {"model_name": 5}}\nnope\n')
    env = {**settings_to_env(ready), "PATH": str(Path(sys.executable).parent)}
    done = subprocess.run([sys.executable, "-m", "shell", "emit", str(path), "--json"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr  # two bad lines
    summary = json.loads(done.stdout)
    assert summary["sent"] == 51 and summary["spooled"] == 0 and summary["failed"] == 2
    assert [e["line"] for e in summary["errors"]] == [52, 53]
    assert "model_name" in summary["errors"][0]["error"]
    consume(ready, [ready.topics.inference], 50)
    consume(ready, [ready.topics.dataset], 1)
