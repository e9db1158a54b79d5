"""The `lineage` command: one CLI for everything. Each area registers a sub-command module below.

Started through :func:`shell.cli.main`, which first checks that the pipeline extra is installed.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys

import redis
import typer
from typer.exceptions import TyperException

from lineage.exceptions import LineageError
from lineage.redact import redact_text

app = typer.Typer(
    name="lineage",
    help="Streaming lineage for AI systems: stack, emit, query, bench and operations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

#: (module, attribute, name): a Typer group or a plain command function to mount.
_COMMANDS: list[tuple[str, str, str]] = [
    ("shell.cli.stack", "app", "stack"),
    ("shell.cli.worker", "worker", "worker"),
    ("shell.cli.pii", "flag", "flag"),
    ("shell.cli.pii", "snapshot_app", "snapshot"),
    ("shell.cli.pii", "erase", "erase"),
    ("shell.cli.sink", "sink", "sink"),
    ("shell.cli.keyholder", "keyholder", "keyholder"),
    ("shell.cli.query", "app", "query"),
    ("shell.cli.query", "sql", "sql"),
    ("shell.cli.query", "verify", "verify"),
    ("shell.cli.report", "app", "report"),
    ("shell.cli.audit", "app", "audit"),
    ("shell.cli.emit", "emit", "emit"),
    ("shell.cli.demo", "demo", "demo"),
    ("shell.cli.bench", "bench", "bench"),
    ("shell.cli.alerts", "alerts", "alerts"),
    ("shell.cli.keys", "app", "keys"),
    ("shell.cli.seal", "app", "seal"),
    ("shell.cli.deadletters", "app", "deadletters"),
]


@app.command()
def version() -> None:
    """Print the installed version."""
    from lineage import __version__

    print(__version__)


def _mount() -> None:
    for module, attr, name in _COMMANDS:
        if importlib.util.find_spec(module) is None:  # area not installed in this build
            continue
        obj = getattr(importlib.import_module(module), attr)
        if isinstance(obj, typer.Typer):
            app.add_typer(obj, name=name)
        else:
            app.command(name=name)(obj)


def run(argv: list[str] | None = None) -> int:
    """Run the command: one-line messages for bad arguments and known errors, never a traceback."""
    _mount()
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="lineage", standalone_mode=False)
    except TyperException as exc:  # usage errors raised by the CLI parser
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
            print(ctx.get_help(), file=sys.stderr)
            return 2
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        print(f"lineage: error: {message}{hint}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 2))
    except (typer.Abort, KeyboardInterrupt):
        print("lineage: interrupted", file=sys.stderr)
        return 130
    except LineageError as exc:
        print(f"lineage: error: {redact_text(str(exc))}", file=sys.stderr)
        return 1
    except redis.RedisError as exc:  # e.g. a wrong Redis password: one line, no URL, no traceback
        print(f"lineage: error: redis: {redact_text(str(exc))}", file=sys.stderr)
        return 1
    return result if isinstance(result, int) else 0

