"""Entry point of the `lineage` command.

`pip install ai-lineage` is the emitter SDK alone; the command (stack, workers, sink, queries)
needs the ``pipeline`` extra. Without it the command says so in one line instead of failing on
an import deep inside.
"""
from __future__ import annotations

import re
import sys
from importlib import metadata

DISTRIBUTION = "ai-lineage"
EXTRA = "pipeline"

_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_IN_EXTRA = re.compile(rf"""extra\s*==\s*["']{EXTRA}["']""")


def missing_requirements(requires: list[str] | None) -> list[str]:
    """Distributions of the pipeline extra (from the ``Requires-Dist`` lines ``requires``) not installed."""
    missing = []
    for req in requires or ():
        name, _, marker = req.partition(";")
        m = _NAME.match(name)
        if m is None or not _IN_EXTRA.search(marker):
            continue
        try:
            metadata.distribution(m.group(1))
        except metadata.PackageNotFoundError:
            missing.append(m.group(1))
    return missing


def main(argv: list[str] | None = None) -> int:
    """Run `lineage`, or explain in one line that the pipeline extra is missing (exit status 1)."""
    try:
        requires = metadata.requires(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # run from a checkout that is not installed: nothing to check
        requires = None
    missing = missing_requirements(requires)
    if missing:
        print(
            f"lineage: this command needs the pipeline extra (missing: {', '.join(missing)}); "
            f"install it with: pip install '{DISTRIBUTION}[{EXTRA}]'",
            file=sys.stderr,
        )
        return 1
    from shell.cli.app import run

    return run(argv)
