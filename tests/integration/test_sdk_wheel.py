"""The SDK as a service installs it: a wheel built from this checkout, installed with its base
dependencies only into a fresh virtualenv outside the checkout, emits a dataset event to the real
broker; the pipeline run from the checkout (worker + sink) turns it into graph rows that
`lineage query upstream` finds. The wheel carries the schemas byte for byte, and its `lineage`
command without the pipeline extra says what to install instead of failing on an import."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from helpers import api_token, free_port, wait_until
from integration.sink_support import env_for, start_sink, stop_sink, wait_healthy
from integration.worker_support import running_workers
from lineage.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
#: Distributions of the `pipeline` extra that a service installing the SDK must not get.
PIPELINE_ONLY = ("faust-streaming", "chdb", "clickhouse-connect", "aiohttp", "typer", "redis", "rich")

PROBE = textwrap.dedent("""
    import json, sys
    from importlib import metadata
    from lineage.schemas import SHIPPED_DIR
    installed = []
    for name in sys.argv[1:]:
        try:
            metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        installed.append(name)
    print(json.dumps({"installed": installed, "schemas": str(SHIPPED_DIR)}))
""")

EMIT = textwrap.dedent("""
    import json, sys
    import producers
    from producers import Dataset, DatasetEvent, Emitter, EmitterConfig, Job, Run

    args = json.loads(sys.argv[1])
    config = EmitterConfig(bootstrap_servers=args["bootstrap"], topic_prefix=args["prefix"],
                           spool_dir=args["spool"], metrics_interval_s=0)
    with Emitter(config, name="wheel-svc") as em:
        event_id = em.emit(DatasetEvent(
            eventType="COMPLETE", run=Run(args["run_id"]), job=Job("etl", "wheel_copy"),
            producer="https://example.com/wheel-svc",
            inputs=[Dataset("postgres://db:5432", args["source"])],
            outputs=[Dataset("s3://lake", args["target"])]))
        left = em.flush(60)
        delivered, failed = em.stats.delivered, em.stats.failed
    print(json.dumps({"event_id": event_id, "left": left, "delivered": delivered, "failed": failed,
                      "sdk": producers.__file__}))
""")


def _outside_env() -> dict[str, str]:
    """The environment without this checkout's Python setup or settings."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("LINEAGE_", "PYTHON")) and k != "VIRTUAL_ENV"}


def _run(argv: list[Any], cwd: Path, timeout: float, env: dict[str, str] | None = None) -> str:
    res = subprocess.run([str(a) for a in argv], cwd=cwd, env=env or _outside_env(), capture_output=True,
                         text=True, timeout=timeout)
    assert res.returncode == 0, f"{' '.join(map(str, argv))} exited {res.returncode}:\n{res.stderr[-3000:]}{res.stdout[-2000:]}"
    return res.stdout


def _copy_checkout(dest: Path) -> Path:
    """The files git tracks (or would track) in this checkout, as they are now, copied to ``dest``."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        src, dst = REPO / name, dest / name
        if not src.exists() and not src.is_symlink():
            continue  # deleted in the work tree
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            dst.symlink_to(os.readlink(src))
        else:
            shutil.copy2(src, dst)
    return dest


def test_sdk_wheel_alone_emits_into_the_pipeline(
    settings_factory: Callable[..., Settings], make_topics: Callable[[Settings], list[str]],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    outside = tmp_path_factory.mktemp("sdk-wheel").resolve()
    assert not outside.is_relative_to(REPO)

    # the wheel, from a copy of this checkout's files (a build in the checkout would reuse its build/)
    source_tree = _copy_checkout(outside / "src")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", outside / "dist", source_tree], outside, 600)
    (wheel,) = (outside / "dist").glob("ai_lineage-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        packaged = {Path(n).name: zf.read(n) for n in zf.namelist() if n.startswith("lineage/avro/") and n.endswith(".avsc")}
    shipped = {p.name: p.read_bytes() for p in sorted((REPO / "avro").glob("*.avsc"))}
    assert shipped and packaged == shipped

    # a fresh virtualenv outside the checkout with the wheel and its base dependencies only
    venv = outside / "venv"
    _run([sys.executable, "-m", "venv", venv], outside, 120)
    py = venv / "bin" / "python"
    _run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel], outside, 900)
    probe = json.loads(_run([py, "-c", PROBE, *PIPELINE_ONLY], outside, 60))
    assert probe["installed"] == [], f"the SDK install pulled in pipeline packages: {probe['installed']}"
    assert Path(probe["schemas"]).is_relative_to(venv)

    # its `lineage` command without the pipeline extra: one line, no traceback
    res = subprocess.run([venv / "bin" / "lineage", "query", "--help"], cwd=outside, env=_outside_env(),
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert res.stderr.count("\n") == 1 and "pip install 'ai-lineage[pipeline]'" in res.stderr, res.stderr

    # emit with the minimal config form to this test's private topics
    settings = settings_factory(api_port=free_port())
    make_topics(settings)
    api_token(settings)  # the checkout's CLI key, as `make demo` leaves it
    tag = uuid.uuid4().hex[:8]
    source, target = f"shop.public.orders_{tag}", f"wheel/{tag}"
    args = {"bootstrap": settings.kafka_bootstrap, "prefix": settings.topics.prefix, "spool": str(outside / "spool"),
            "run_id": str(uuid.uuid4()), "source": source, "target": target}
    emitted = json.loads(_run([py, "-c", EMIT, json.dumps(args)], outside, 120).splitlines()[-1])
    assert Path(emitted["sdk"]).is_relative_to(venv)  # the installed SDK, not the checkout
    assert emitted["left"] == 0 and emitted["delivered"] == 1 and emitted["failed"] == 0

    # the pipeline from the checkout turns it into graph rows; `lineage query upstream` finds them
    log = outside / "sink.log"
    sink = start_sink(settings, log)
    try:
        with running_workers(settings):
            wait_healthy(settings, sink, log)

            def upstream() -> list[dict[str, Any]]:
                res = subprocess.run(
                    [sys.executable, "-m", "shell", "query", "upstream", "--namespace", "s3://lake", "--name", target,
                     "--json"], cwd=REPO, env=env_for(settings), capture_output=True, text=True, timeout=120,
                )
                assert res.returncode == 0, res.stderr
                return list(json.loads(res.stdout))

            rows = wait_until(upstream, 180, f"the upstream of s3://lake/{target}", interval=2.0)
    finally:
        assert stop_sink(sink) == 0, log.read_text()[-3000:]
    reached = {r["node_id"] for r in rows}
    assert f"run:{args['run_id']}" in reached and f"dataset:postgres://db:5432/{source}" in reached, rows
