"""Alert and window configuration: the `alerts` settings group (``LINEAGE_ALERTS__*``)."""
from __future__ import annotations

from typing import Any

from lineage.settings import AlertSettings


def alert_settings(settings: Any) -> AlertSettings:
    """The alerts group of `settings`."""
    value: AlertSettings = settings.alerts
    return value


__all__ = ["AlertSettings", "alert_settings"]
