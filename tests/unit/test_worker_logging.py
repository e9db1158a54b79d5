"""The worker's Faust logging setup: the root logger stays at the level asked for."""
from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from lineage.settings import Settings
from stream_apps.app import create_app, create_worker


@pytest.fixture
def restored_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.setLevel(level)
    root.handlers[:] = handlers


@pytest.mark.usefixtures("restored_root_logger")
def test_warning_level_worker_builds_no_debug_records(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path))  # builds the app only: no broker needed
    worker = create_worker(app, "warning")
    worker._setup_logging()  # what the worker does when it starts
    root = logging.getLogger()
    assert not logging.getLogger("faust.tables.recovery").isEnabledFor(logging.DEBUG)
    assert root.getEffectiveLevel() == logging.WARNING
    assert not [h for h in root.handlers if type(h).__name__ == "SpinnerHandler"]
