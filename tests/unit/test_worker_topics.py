"""The topics `ensure_topics` pre-creates match the names the Faust app declares."""
from __future__ import annotations

from pathlib import Path

from lineage.settings import Settings
from lineage.topics import TopicSpec, model_lineage_changelog, topic_specs
from stream_apps.app import create_app


def test_changelog_and_window_topics_are_pre_created(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, app_id="probe-app")
    app = create_app(settings)  # never started
    app.finalize()
    table = app.tables["model_lineage"]
    assert table.changelog_topic.get_topic_name() == model_lineage_changelog(settings)
    specs = topic_specs(settings)
    assert model_lineage_changelog(settings) in specs
    assert specs[model_lineage_changelog(settings)] == TopicSpec(1, {"cleanup.policy": "compact"})


def test_every_table_changelog_is_pre_created(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, app_id="probe-app")
    app = create_app(settings)  # never started
    app.finalize()
    specs = topic_specs(settings)
    for table in app.tables.values():
        assert table.changelog_topic.get_topic_name() in specs, table.name
