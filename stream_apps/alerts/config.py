"""Alert and window configuration (the `alerts` settings group, ``LINEAGE_ALERTS__*``).

Lives here until the lead mounts it on :class:`lineage.settings.Settings` as
``alerts: AlertSettings = AlertSettings()``; read it with :func:`alert_settings`.
"""
from __future__ import annotations

import json
import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class AlertSettings(BaseModel):
    """Window sizes, deadlines, thresholds, de-duplication and delivery of alerts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Completeness windows (Faust, stream time of the graph topic).
    window_s: float = Field(default=60.0, gt=0)
    window_step_s: float | None = Field(default=None, gt=0)  # hopping when set, else tumbling
    window_grace_s: float = Field(default=2.0, ge=0)
    window_retention_s: float = Field(default=3600.0, gt=0)
    eval_interval_s: float = Field(default=1.0, gt=0)
    eval_horizon_s: float | None = Field(default=None, gt=0)  # closed windows re-evaluated this long
    run_deadline_s: float = Field(default=3600.0, gt=0)
    lineage_share_min: float = Field(default=0.95, ge=0, le=1)
    min_window_events: int = Field(default=1, ge=1)
    expected_emitters: tuple[str, ...] = ()
    heartbeat_window_s: float = Field(default=300.0, gt=0)
    # Queue depth (monitor process).
    sample_interval_s: float = Field(default=5.0, gt=0)
    lag_threshold: int = Field(default=10_000, ge=0)
    lag_window_s: float = Field(default=60.0, ge=0)
    lag_groups: tuple[str, ...] = ()  # empty: every group committing to the pipeline's topics
    spool_threshold: int = Field(default=10_000, ge=0)
    dlq_rate_threshold: float = Field(default=1.0, ge=0)  # dead letters per second, over lag_window_s
    # Lifecycle and delivery.
    resolve_after_s: float | None = Field(default=None, gt=0)  # default: 2 x window_s
    cooldown_s: float = Field(default=300.0, ge=0)
    webhook_url: str | None = None
    webhook_timeout_s: float = Field(default=5.0, gt=0)
    webhook_retries: int = Field(default=3, ge=0)
    history_limit: int = Field(default=1000, ge=10)
    metrics_retention_points: int = Field(default=720, ge=10)

    @property
    def stale_after_s(self) -> float:
        """A window alert nobody re-asserted for this long is resolved."""
        return self.resolve_after_s if self.resolve_after_s is not None else 2 * self.window_s

    @property
    def horizon_s(self) -> float:
        """How long after closing a window is still evaluated: must outlast a worker restart."""
        return self.eval_horizon_s if self.eval_horizon_s is not None else max(2 * self.window_s, 60.0)


#: Bridge until ``Settings.alerts`` exists: JSON overrides for child processes in tests.
#: (``LINEAGE_TEST_*`` is the prefix `check_env` reserves for the test-suite.)
TEST_OVERRIDES_ENV = "LINEAGE_TEST_ALERTS"


def alert_settings(settings: Any) -> AlertSettings:
    """The alerts group of `settings`; until it is mounted there, defaults (+ test overrides)."""
    value = getattr(settings, "alerts", None)
    if isinstance(value, AlertSettings):
        return value
    if isinstance(value, BaseModel):  # mounted as a copy of this class
        return AlertSettings(**value.model_dump())
    raw = os.environ.get(TEST_OVERRIDES_ENV)
    return AlertSettings(**json.loads(raw)) if raw else AlertSettings()
