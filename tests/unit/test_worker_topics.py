"""The topics `ensure_topics` pre-creates match the names the Faust app declares."""
from __future__ import annotations

from pathlib import Path

from lineage.keyspace import KeySpace
from lineage.settings import Settings, TopicSettings
from lineage.topics import TopicSpec, model_lineage_changelog, owned_by, topic_specs
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


def test_a_deployment_owns_its_topics_and_groups_and_no_neighbours(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, app_id="probe-app",
                        topics=TopicSettings(prefix="probe", openlineage="ol.events"))
    app = create_app(settings)  # never started
    app.finalize()
    mine = [*topic_specs(settings), *(t.changelog_topic.get_topic_name() for t in app.tables.values()),
            settings.app_id, settings.events_group, f"{settings.app_id}-__assignor-__leader"]
    neighbours = ["probe2.graph", "probeX", "probe-app2", "probe-app2.events", "probe-appx-model_lineage-changelog",
                  "lineage.graph", "ol.events.old", "xprobe.graph"]
    assert set(owned_by(settings, [*mine, *neighbours])) == set(mine)
    assert "ol.events" in mine  # its OpenLineage topic, outside the prefix, is its own too


def test_every_key_of_a_deployment_is_one_escaped_pattern() -> None:
    assert KeySpace.of(Settings(topics=TopicSettings(prefix="t1"))).every_key() == "lineage:t1:*"
    assert KeySpace("lineage:a*b[c]?\\").every_key() == "lineage:a\\*b\\[c\\]\\?\\\\:*"
