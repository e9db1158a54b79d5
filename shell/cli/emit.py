"""`lineage emit FILE`: publish NDJSON lineage events (project events or OpenLineage RunEvents).

Each line is one of:

* ``{"kind": "<dataset|feature|training|inference>", "event": {...}}``: a project record;
* an OpenLineage RunEvent (has ``run`` and ``job`` and a string ``eventTime``): converted;
* a bare project record (kind inferred: ``prediction_id`` -> inference, ``training`` ->
  training, ``feature_set`` -> feature, otherwise dataset).

Every line is validated against its Avro schema before it is accepted. The summary counts
sent (acknowledged by Kafka), spooled (kept on disk, replayed by the next run with the same
``--name``) and failed (invalid lines, rejected events). Exit status 1 if anything failed.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO, Any

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from lineage.exceptions import ConfigError, EncodeError
from producers.config import EmitterConfig
from producers.emitter import Emitter
from producers.exceptions import InvalidEventError, OpenLineageError, SpoolFullError
from producers.openlineage import from_openlineage

KINDS = ("dataset", "feature", "training", "inference")


def classify_line(obj: Any) -> tuple[str, dict[str, Any]]:
    """(kind, record) for one parsed NDJSON line; OpenLineageError/ValueError if unusable."""
    if not isinstance(obj, dict):
        raise ValueError(f"a line must be a JSON object, got {type(obj).__name__}")
    if "kind" in obj:
        kind, rec = obj["kind"], obj.get("event", obj.get("record"))
        if kind not in KINDS or not isinstance(rec, dict):
            raise ValueError(f"'kind' must be one of {', '.join(KINDS)} with an 'event' object")
        return kind, rec
    if "run" in obj and "job" in obj and isinstance(obj.get("eventTime"), str):
        return from_openlineage(obj)
    if "prediction_id" in obj:
        return "inference", obj
    if "training" in obj:
        return "training", obj
    if "feature_set" in obj:
        return "feature", obj
    return "dataset", obj


def _open(path: str) -> tuple[IO[bytes], int | None]:
    if path == "-":
        return sys.stdin.buffer, None
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"no such file: {path}")
    return open(p, "rb"), p.stat().st_size  # noqa: SIM115 - closed by the caller


def emit(
    file: str = typer.Argument(..., help="NDJSON file of events ('-' for stdin)."),
    name: str = typer.Option("cli", "--name", help="Emitter name: its spool is <data_dir>/spool/<name>."),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds to wait for delivery before spooling the rest."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> int:
    """Publish NDJSON lineage events with a progress bar and a sent/spooled/failed summary."""
    config = EmitterConfig.from_env()
    fh, size = _open(file)
    err = Console(stderr=True)
    invalid: list[dict[str, Any]] = []
    accepted = 0
    em = Emitter(config, name, handle_signals=True)  # this command owns its process
    try:
        with Progress(TextColumn("emit"), BarColumn(), MofNCompleteColumn() if size is None else TextColumn(""),
                      TimeRemainingColumn(), console=err, transient=True,
                      disable=as_json or not sys.stderr.isatty()) as progress:
            task = progress.add_task("emit", total=size)
            for lineno, line in enumerate(fh, 1):
                progress.advance(task, len(line))
                if not line.strip():
                    continue
                try:
                    kind, rec = classify_line(orjson.loads(line))
                    em.check((kind, rec))  # what the pipeline would refuse, refused here with its reason
                except (ValueError, OpenLineageError, InvalidEventError, EncodeError) as exc:
                    invalid.append({"line": lineno, "error": str(exc)})
                    if not as_json:
                        err.print(f"line {lineno}: {exc}", markup=False, highlight=False)
                    continue
                try:
                    em.emit_record(kind, rec)
                except SpoolFullError as exc:
                    invalid.append({"line": lineno, "error": str(exc)})
                    err.print(f"line {lineno}: {exc}; stopping", markup=False)
                    break
                accepted += 1
        em.flush(timeout)
    finally:
        if fh is not sys.stdin.buffer:
            fh.close()
        spooled = em.close(timeout=0)
    summary = {
        "accepted": accepted,
        "sent": em.stats.delivered,
        "spooled": spooled,
        "failed": len(invalid) + em.stats.failed,
        "replayed_from_earlier_runs": em.spool.recovered,
        "spool": str(em.spool.directory),
        "errors": invalid[:100],
    }
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        Console().print(
            f"sent {summary['sent']:,}  spooled {summary['spooled']:,}  failed {summary['failed']:,}"
            + (f"  (spool: {summary['spool']}; the next `lineage emit --name {name}` replays it)" if spooled else ""),
            markup=False, highlight=False,
        )
    return 1 if summary["failed"] else 0
