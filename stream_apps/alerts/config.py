"""Alert and window configuration: the `alerts` settings group (``LINEAGE_ALERTS__*``)."""
from __future__ import annotations

from lineage.settings import AlertSettings, Settings


def alert_settings(settings: Settings) -> AlertSettings:
    """The alerts group of `settings`."""
    value: AlertSettings = settings.alerts
    return value


__all__ = ["AlertSettings", "alert_settings"]
