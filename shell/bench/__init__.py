"""`lineage bench`: every performance figure the project claims is measured here, never in a test.

Each suite is a module with ``run(settings, progress) -> dict[str, float | int | str]`` that
measures the project's path and its baseline in the same run and returns flat figures.
"""
from __future__ import annotations

#: suite name -> module implementing ``run``.
SUITES: dict[str, str] = {
    "emit": "shell.bench.emit",
    "pipeline": "shell.bench.pipeline",
    "storage": "shell.bench.storage",
}
