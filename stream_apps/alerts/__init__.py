"""Alert lifecycle: the record, its Redis-backed state machine, and its delivery."""
from __future__ import annotations

from stream_apps.alerts.config import AlertSettings, alert_settings
from stream_apps.alerts.engine import AlertEngine, build_engine
from stream_apps.alerts.model import FIRING, RESOLVED, Alert, webhook_payload

__all__ = ["FIRING", "RESOLVED", "Alert", "AlertEngine", "AlertSettings", "alert_settings", "build_engine", "webhook_payload"]
