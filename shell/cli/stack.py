"""`lineage stack up | down | status | install`: the local Kafka + Redis (+ schema registry, ClickHouse health)."""
from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from lineage.redact import redact_url
from lineage.settings import Settings, load_settings
from shell.stack import Stack, unhealthy
from shell.stack.secrets import ROLES

app = typer.Typer(help="Run the local stack: Kafka (KRaft), Redis, optionally a schema registry; "
                       "report ClickHouse health.", no_args_is_help=True)

_STYLE = {"up": "green", "owned": "green", "absent": "green", "stopped": "dim", "degraded": "yellow",
          "starting": "yellow", "unmanaged": "yellow", "disabled": "dim"}
_REGISTRY_HELP = "Also the schema registry (Apicurio, Confluent API); same as LINEAGE_STACK__REGISTRY=true."


def _settings(registry: bool = False) -> Settings:
    """Settings from the environment; ``--registry`` switches the registry on for this command."""
    settings = load_settings()
    if registry:
        settings = settings.model_copy(update={"stack": settings.stack.model_copy(update={"registry": True})})
    return settings


def _print_json(report: Any) -> None:
    print(json.dumps(report, indent=2, default=str))


def _address(name: str, entry: dict[str, Any]) -> str:
    return redact_url(str(entry.get("bootstrap") or entry.get("url") or entry.get("dsn") or ""))


def _detail(name: str, entry: dict[str, Any]) -> str:
    if name == "kafka":
        ids = ", ".join(f"{b['id']}:{b['status']}" for b in entry.get("brokers", []))
        return f"cluster {entry.get('cluster_id') or '-'}; brokers {ids or '-'}"
    if name == "clickhouse":
        if entry.get("owner_pid"):
            return f"owned by pid {entry['owner_pid']}"
        return str(entry.get("version") or entry.get("detail") or "")
    if entry.get("pid"):
        return f"pid {entry['pid']}"
    return ""


def _print_table(report: dict[str, Any]) -> None:
    table = Table(box=None, pad_edge=False)
    for column in ("component", "status", "address", "detail"):
        table.add_column(column)
    rows = [(k, report[k]) for k in ("kafka", "redis", "registry", "clickhouse", "api", "dashboard") if k in report]
    rows += [(p["name"], p) for p in report.get("processes", [])]
    for name, entry in rows:
        status = entry["status"]
        table.add_row(name, f"[{_STYLE.get(status, 'red')}]{status}[/]", _address(name, entry), _detail(name, entry))
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)  # piped output: never wrap rows
    console.print(table)


@app.command()
def install(registry: bool = typer.Option(False, "--registry", help=_REGISTRY_HELP)) -> None:
    """Install Kafka's jars (Maven Central), redis-server (apt) and, if enabled, build the registry, when missing."""
    done = Stack(_settings(registry)).install()
    print("installed: " + ", ".join(done) if done else "nothing to install")


@app.command()
def up(
    brokers: int = typer.Option(None, "--brokers", min=1, max=5, help="Kafka nodes (default: settings / existing data)."),
    as_json: bool = typer.Option(False, "--json", help="Print the status report as JSON."),
    timeout: float = typer.Option(120.0, "--timeout", help="Seconds to wait for health."),
    registry: bool = typer.Option(False, "--registry", help=_REGISTRY_HELP),
    secure: bool = typer.Option(
        False, "--secure",
        help="Kafka with SASL/SCRAM + ACLs and Redis with ACL users; passwords are generated into "
             "<data_dir>/secrets/ (0600) with one env file per role. Remembered until `down --wipe`."),
) -> None:
    """Install what is missing, start Kafka, Redis (and the registry), wait until healthy (idempotent)."""
    stack = Stack(_settings(registry), brokers, secure=secure)
    report = stack.up(timeout)
    if stack.secrets is not None:
        report["secrets"] = _secrets_report(stack)
    _print_json(report) if as_json else _print_table(report)
    if stack.secrets is not None and not as_json:
        _print_secrets(report["secrets"])


def _secrets_report(stack: Stack) -> dict[str, Any]:
    """Where the credentials are (paths only: a password is never printed)."""
    assert stack.secrets is not None
    directory = stack.secrets.directory
    return {"dir": str(directory), "env_files": {r: str(directory / f"{r}.env") for r in ROLES}}


def _print_secrets(entry: dict[str, Any]) -> None:
    print(f"secured: credentials in {entry['dir']} (mode 0600, never printed). Start each component "
          "with its role's settings, e.g.:")
    for role, path in entry["env_files"].items():
        print(f"  {role:8} set -a; . {path}; set +a")


@app.command()
def down(
    wipe: bool = typer.Option(False, "--wipe", help="Also delete Kafka and Redis data (not ClickHouse)."),
    timeout: float = typer.Option(30.0, "--timeout", help="Seconds before SIGKILL."),
) -> None:
    """Stop everything the stack started, including pipeline processes registered under run/."""
    stopped = Stack(load_settings()).down(timeout, wipe)
    print("stopped: " + ", ".join(stopped) if stopped else "nothing was running")


@app.command()
def status(
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    check: bool = typer.Option(False, "--check", help="Exit 1 if a component is unhealthy or stopped."),
) -> None:
    """Each component, its address and health."""
    stack = Stack(load_settings())
    report = stack.status()
    if stack.secrets is not None:
        report["secrets"] = _secrets_report(stack)
    _print_json(report) if as_json else _print_table(report)
    if check and unhealthy(report):
        raise typer.Exit(1)
