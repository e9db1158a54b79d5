"""`lineage bench [SUITE ...] [--json]`: run benchmark suites, print a table or one JSON object."""
from __future__ import annotations

import importlib
import json
import sys
from typing import Any

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from shell.bench import SUITES
from lineage.exceptions import ConfigError
from lineage.settings import load_settings


def bench(
    suites: list[str] = typer.Argument(None, help=f"Suites to run (default: all): {', '.join(SUITES)}."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object of figures."),
) -> None:
    """Measure throughput and latency against a baseline measured in the same run."""
    chosen = suites or list(SUITES)
    unknown = [s for s in chosen if s not in SUITES]
    if unknown:
        raise ConfigError(f"unknown suite(s) {', '.join(unknown)}; choose from {', '.join(SUITES)}")
    settings = load_settings()
    figures: dict[str, Any] = {}
    console = Console(stderr=True)
    with Progress(console=console, transient=True, disable=as_json or not sys.stderr.isatty()) as progress:
        for name in chosen:
            module = importlib.import_module(SUITES[name])
            figures.update(module.run(settings, progress))
    if as_json:
        print(json.dumps(figures, indent=2, sort_keys=True))
        return
    table = Table(title="lineage bench")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in figures.items():
        table.add_row(key, f"{value:,.2f}" if isinstance(value, float) else str(value))
    Console().print(table)
