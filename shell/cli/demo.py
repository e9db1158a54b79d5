"""`lineage demo`: the whole pipeline on a realistic lending scenario, answers printed at the end."""
from __future__ import annotations

import time
from contextlib import closing
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from shell import scenario as lending
from lineage.exceptions import LineageError
from lineage.settings import Settings, load_settings


def _sink_backend(settings: Settings, timeout: float) -> Any:
    """Query through the sink just started. With embedded chDB the sink must stay the store's only
    owner, so never open the directory here: wait until the sink answers instead."""
    from sinks.clickhouse.backend import open_backend, sink_health

    deadline = time.monotonic() + timeout
    while settings.embedded_clickhouse and sink_health(settings.api_url) is None:
        if time.monotonic() > deadline:
            raise LineageError(
                f"the sink did not answer at {settings.api_url} within {timeout:.0f}s; "
                f"see {settings.data_dir / 'logs' / 'sink.log'}"
            )
        time.sleep(0.5)
    return open_backend(settings)


def _wait_stored(
    settings: Settings, backend: Any, sc: lending.Scenario, timeout: float, console: Console
) -> dict[str, int]:
    """Poll the store until every event of the scenario is there (counted by event id, per class)."""
    expected = {k: sc.count(k) for k in ("dataset", "feature", "training", "inference")}
    ids = ",".join(f"'{eid}'" for eid in sc.event_ids)
    sql = f"SELECT kind, uniqExact(event_id) FROM raw_events WHERE event_id IN ({ids}) GROUP BY kind"
    deadline = time.monotonic() + timeout
    counts: dict[str, int] = {}
    total = sum(expected.values())
    with Progress(
        TextColumn("stored in ClickHouse"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True,
    ) as progress:
        task = progress.add_task("stored", total=total)
        while time.monotonic() < deadline:
            try:
                counts = {str(k): int(v) for k, v in backend.sql(sql).rows}
            except LineageError:
                counts = {}
            progress.update(task, completed=min(total, sum(counts.values())))
            if all(counts.get(k, 0) == n for k, n in expected.items()):
                return counts
            time.sleep(0.5)
    raise LineageError(
        f"timed out after {timeout:.0f}s waiting for the scenario in ClickHouse: have {counts}, want {expected}; "
        f"see the logs under {settings.data_dir / 'logs'}"
    )


def demo(
    predictions: int = typer.Option(3000, "--predictions", min=10, max=1_000_000, help="Predictions to make."),
    workers: int = typer.Option(1, "--workers", min=1, max=8, help="Stream workers to run."),
    timeout: float = typer.Option(180.0, "--timeout", min=10, help="Seconds to wait for the scenario to land."),
) -> None:
    """Start the local stack and pipeline, emit the lending scenario, print provenance and impact."""
    from shell.cli.keys import ensure_local_admin
    from shell.cli.query import emit as show
    from shell.processes import start_pipeline
    from shell.stack import Stack
    from lineage.topics import ensure_topics
    from producers import Emitter, EmitterConfig

    console = Console(stderr=True)
    settings = load_settings()
    started = time.monotonic()
    console.print("[bold]1/5[/] starting Kafka (KRaft) and Redis ...")
    stack = Stack(settings)  # a stack started with --secure stays so: each process gets its role's credentials
    stack.up()
    settings = stack.admin_settings
    ensure_topics(settings)
    admin, issued = ensure_local_admin(settings)
    console.print(f"     admin key {admin.name!r} {'created and ' if issued else ''}kept in "
                  f"{settings.credentials_path} (mode 0600); this checkout's CLI uses it")
    console.print(f"[bold]2/5[/] starting {workers} stream worker(s) and the ClickHouse sink ...")
    start_pipeline(stack.role_settings("worker"), workers=workers, sink_settings=stack.role_settings("sink"))
    with closing(_sink_backend(settings, timeout)) as backend:
        sc = lending.build(predictions=predictions)
        console.print(
            f"[bold]3/5[/] emitting the lending scenario: {len(sc.events):,} events "
            f"(ETL {sc.count('dataset')}, features {sc.count('feature')}, training {sc.count('training')}, "
            f"predictions {sc.count('inference'):,})"
        )
        with Emitter(EmitterConfig.from_settings(stack.role_settings("emitter")), name="demo") as emitter:
            for kind, record in sc.events:
                emitter.emit_record(kind, record)
            emitter.flush(30.0)
            stats: dict[str, Any] = emitter.metrics()

        console.print("[bold]4/5[/] waiting until every event is in ClickHouse ...")
        _wait_stored(settings, backend, sc, timeout, console)

        elapsed = time.monotonic() - started
        console.print(f"[bold]5/5[/] answers (pipeline ready and scenario stored in {elapsed:.1f}s)\n")
        pid = _consequential_prediction(backend) or sc.sample_prediction
        res = backend.named("prediction", {"prediction_id": pid, "max_depth": 12})
        show(*_compact(res.columns, res.rows), False, f"Backward provenance of prediction {pid}")
        res = backend.named("downstream", {
            "namespace": lending.SOURCE_NS, "name": lending.SOURCE_TABLES[1], "node_type": "",
            "max_depth": 10, "since": "2026-06-15", "until": "2026-06-20", "as_of": None,
        })
        title = f"Forward impact of {lending.SOURCE_NS}/{lending.SOURCE_TABLES[1]} (rows of June 15-20)"
        cols, rows = _compact(res.columns, res.rows)
        show(cols, _summarise(cols, rows), False, title)
    print(
        f"\nemitter: {stats['delivered']} delivered, {stats['spool_depth']} still spooled, "
        f"{stats['failed']} failed\n"
        f"dashboard: {settings.api_url}/dashboard (sign in with the key in {settings.credentials_path})\n"
        f"explorer:  {lending.explorer_link(settings.api_url, pid)} (the sample prediction; same key)\n"
        f"more keys: `.venv/bin/lineage keys create --role analyst|auditor|investigator|emitter --name NAME`\n"
        f"The stack is still running. Query it with `.venv/bin/lineage query ...`; "
        f"stop it with `make down` (or `.venv/bin/lineage stack down`)."
    )


def _consequential_prediction(backend: Any) -> str | None:
    """A denied prediction, whose lineage is captured in full: the auditor's usual question."""
    res = backend.sql(
        "SELECT prediction_id FROM inference_lineage WHERE tier = 'consequential' ORDER BY prediction_id LIMIT 1"
    )
    return str(res.rows[0][0]) if res.rows else None


def _compact(columns: list[str], rows: list[tuple[Any, ...]]) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The columns a person reads first, with long digests shortened."""
    idx = {c: i for i, c in enumerate(columns)}
    wanted: list[str] = [c for c in ("depth", "node_type", "namespace", "name", "version", "edge_type", "edge_time") if c in idx]

    def short(value: Any) -> Any:
        text = str(value)
        return text[:19] + "..." if len(text) > 22 else value

    return wanted, [tuple(short(row[idx[c]]) for c in wanted) for row in rows]


def _summarise(columns: list[str], rows: list[tuple[Any, ...]], keep: int = 25) -> list[tuple[Any, ...]]:
    """Impact lists end in thousands of predictions: show the first `keep` rows and a count of the rest."""
    if len(rows) <= keep:
        return rows
    rest = len(rows) - keep
    filler = tuple(f"... {rest:,} more rows" if i == 0 else "" for i in range(len(columns)))
    return [*rows[:keep], filler]

