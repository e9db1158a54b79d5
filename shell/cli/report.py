"""`lineage report provenance|impact|completeness|erasure`: audit reports as HTML, PDF or JSON.

With a sink running (embedded store) the report is made by the sink (``GET /api/v1/reports/...``)
with the CLI's key, whose name and role the report states; otherwise the store is opened here and
the report states the local operator (``local:<OS user>``). Either way the report's SHA-256 is
recorded in the query audit log.
"""
from __future__ import annotations

import json
import sys
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from lineage.settings import Settings, load_settings

if TYPE_CHECKING:
    from sinks.clickhouse.backend import RemoteBackend

app = typer.Typer(help="Audit reports (html, pdf, json): provenance, impact, completeness, erasure.",
                  no_args_is_help=True)

_FORMAT = typer.Option("html", "--format", help="html (self-contained page), pdf (printed by headless Chromium) "
                                                "or json (the data the page is built from).")
_OUTPUT = typer.Option(None, "--output", "-o", help="File to write; default: lineage-<kind>-<key>.<format> here; "
                                                    "'-' writes to standard output.")
_JSON = typer.Option(False, "--json", help="Print what was written as JSON (path, format, bytes, sha256, verified).")
_REASON = typer.Option("", "--reason", help="Why (recorded in the audit log; required for auditor and "
                                            "investigator keys).")


def _remote(backend: RemoteBackend, kind: str, params: dict[str, str], fmt: str,
            reason: str) -> tuple[bytes, str, str, bool | None]:
    """(body, file name, sha256, verified) from the sink's report route."""
    query = urllib.parse.urlencode({**params, "format": fmt})
    body, headers = backend.get(f"/api/v1/reports/{urllib.parse.quote(kind)}?{query}", reason, timeout=300)
    disposition, sha = headers.get("Content-Disposition", ""), headers.get("X-Report-SHA256", "")
    verified = headers.get("X-Report-Verified")
    name = disposition.partition('filename="')[2].rstrip('"') or f"lineage-{kind}.{fmt}"
    return body, name, sha, None if verified is None else verified == "true"


def _local(settings: Settings, backend: Any, kind: str, params: dict[str, str], fmt: str,
           reason: str) -> tuple[bytes, str, str, bool | None]:
    import redis

    from sinks.clickhouse.client import QueryResult
    from sinks.clickhouse.queries import READONLY_SETTINGS, get_query
    from sinks.reports import subjects
    from sinks.reports.gather import Source
    from sinks.reports.service import make_report

    store = backend.store

    def named(name: str, p: dict[str, Any]) -> QueryResult:
        spec = get_query(name)
        return store.query(spec.sql, spec.bind(p), READONLY_SETTINGS)

    def query(sql: str, p: dict[str, Any]) -> QueryResult:
        return store.query(sql, p, READONLY_SETTINGS)

    client = redis.Redis.from_url(settings.redis_url, socket_timeout=10)
    try:
        source = Source(settings, named, query, subjects.erased_at(settings, client), subjects.sealed(settings))
        made = make_report(source, kind, dict(params), fmt, backend.actor, backend.audit, reason)
    finally:
        client.close()
    return made.body, made.filename, made.sha256, bool(made.report["integrity"].get("verified"))


def _make(kind: str, params: dict[str, str | None], fmt: str, output: str | None, as_json: bool, reason: str) -> None:
    from sinks.clickhouse.backend import DirectBackend, RemoteBackend, open_backend
    from sinks.reports.params import check_format, check_params

    settings = load_settings()
    given = {k: v for k, v in params.items() if v is not None and v != ""}
    check_format(fmt)
    check_params(kind, given)  # a bad argument fails here, before anything is opened
    backend = open_backend(settings)
    try:
        if isinstance(backend, RemoteBackend):
            body, name, sha, verified = _remote(backend, kind, given, fmt, reason)
        elif isinstance(backend, DirectBackend):
            body, name, sha, verified = _local(settings, backend, kind, given, fmt, reason)
        else:  # pragma: no cover - open_backend returns one of the two
            raise TypeError(type(backend).__name__)
    finally:
        backend.close()
    if output == "-":
        sys.stdout.buffer.write(body)
        sys.stdout.buffer.flush()
        return
    path = Path(output or name)
    path.write_bytes(body)
    if as_json:
        print(json.dumps({"path": str(path), "kind": kind, "format": fmt, "bytes": len(body), "sha256": sha,
                          "verified": verified}))
    else:
        chain = {True: "rows used verified", False: "rows used NOT verified", None: "see the report"}[verified]
        print(f"wrote {path} ({len(body)} bytes, sha256 {sha}; {chain})")


@app.command("provenance")
def provenance(
    prediction: str = typer.Option(..., "--prediction", help="Prediction id."),
    fmt: str = _FORMAT, output: str | None = _OUTPUT, as_json: bool = _JSON, reason: str = _REASON,
) -> None:
    """A prediction's provenance: model version, training run, feature sets, source tables and their
    versions, sampling tier and reason, snapshot status."""
    _make("provenance", {"prediction": prediction}, fmt, output, as_json, reason)


@app.command("impact")
def impact(
    namespace: str = typer.Option("", "--namespace", help="Dataset namespace (e.g. postgres://host:5432)."),
    name: str = typer.Option(..., "--name", help="Dataset (or job, model, feature set) name."),
    since: str | None = typer.Option(None, "--since", help="Window start for the dataset's own edges (ISO 8601, UTC)."),
    until: str | None = typer.Option(None, "--until", help="Window end (ISO 8601, UTC)."),
    fmt: str = _FORMAT, output: str | None = _OUTPUT, as_json: bool = _JSON, reason: str = _REASON,
) -> None:
    """Everything downstream of a dataset in a window: jobs, datasets, feature sets, models, model
    versions, and prediction counts per model version."""
    _make("impact", {"namespace": namespace, "name": name, "since": since, "until": until}, fmt, output, as_json,
          reason)


@app.command("completeness")
def completeness(
    model: str = typer.Option(..., "--model", help="Model name."),
    since: str | None = typer.Option(None, "--since", help="Window start: 7d, 24h or ISO 8601 (default: all time)."),
    fmt: str = _FORMAT, output: str | None = _OUTPUT, as_json: bool = _JSON, reason: str = _REASON,
) -> None:
    """A model's share of predictions with full lineage, by version (all time) and by version and day."""
    _make("completeness", {"model": model, "since": since}, fmt, output, as_json, reason)


@app.command("erasure")
def erasure(
    subject: str | None = typer.Option(None, "--subject", help="Data subject id (turned into its pseudonymous "
                                                               "reference here, with the deployment's pseudonym key)."),
    subject_ref: str | None = typer.Option(None, "--subject-ref", help="The subject's pseudonymous reference instead "
                                                                       "(as `lineage erase` prints it)."),
    fmt: str = _FORMAT, output: str | None = _OUTPUT, as_json: bool = _JSON, reason: str = _REASON,
) -> None:
    """Consent withdrawal: the predictions made about a subject, their model versions, the snapshots
    held and destroyed, and the erasure record; for an erased subject, that its snapshots are unreadable."""
    if (subject is None) == (subject_ref is None):
        raise typer.BadParameter("give exactly one of --subject or --subject-ref", param_hint="--subject")
    ref = subject_ref if subject_ref is not None else _pseudonym(subject or "")
    _make("erasure", {"subject_ref": ref}, fmt, output, as_json, reason)


def _pseudonym(subject: str) -> str:
    settings = load_settings()
    if settings.pseudonym_key is None and not Path(settings.pseudonym_key_path).exists():
        from sinks.exceptions import QueryError

        raise QueryError(f"no pseudonym key here ({settings.pseudonym_key_path}): run this where the pipeline's keys are, "
              "or pass --subject-ref")
    from shell.cli.pii import _data_keys

    ref: str = _data_keys(settings).subject_ref(subject)
    return ref
