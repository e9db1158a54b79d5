"""Every Redis key the pipeline uses, in one place (as :mod:`lineage.topics` is for topic names).

One deployment's keys live under ``lineage:<topic prefix>``, so several pipelines (and every
test) can share one Redis. A reader looking for who writes a key finds its name here once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lineage.settings import Settings


@dataclass(frozen=True, slots=True)
class KeySpace:
    """Key names of one pipeline deployment."""

    prefix: str

    @classmethod
    def of(cls, settings: Settings) -> KeySpace:
        return cls(f"lineage:{settings.topics.prefix}")

    def every_key(self) -> str:
        """A SCAN pattern matching every key of this deployment, and no other's."""
        return glob_escape(self.prefix) + ":*"

    # --- PII: data keys, erasure tombstones, held snapshots, flags -----------------------------
    def dek(self, subject_ref: str) -> str:
        """The subject's data key, wrapped by the KEK."""
        return f"{self.prefix}:pii:dek:{subject_ref}"

    def erased(self, subject_ref: str) -> str:
        """Tombstone of an erased subject (no key is ever created again)."""
        return f"{self.prefix}:pii:erased:{subject_ref}"

    @property
    def kek_ring(self) -> str:
        """Key ids of the deployment's KEK ring, current first (set by ``lineage keys rotate-kek``)."""
        return f"{self.prefix}:pii:kek_ring"

    def hold(self, prediction_id: str) -> str:
        """Where a prediction's sealed snapshot sits on the hold topic (``topic/partition/offset``)."""
        return f"{self.prefix}:pii:hold:{prediction_id}"

    def flagged_subject(self, subject_ref: str) -> str:
        return f"{self.prefix}:pii:flagged_subject:{subject_ref}"

    def flagged_prediction(self, prediction_id: str) -> str:
        return f"{self.prefix}:pii:flagged_prediction:{prediction_id}"

    # --- worker state -------------------------------------------------------------------------
    def stats(self, app_id: str) -> str:
        """Hash of the deployment's counters (accepted per class, dead letters per reason, tiers)."""
        return f"{self.prefix}:stats:{app_id}"

    def run(self, run_id: str) -> str:
        """A run's state machine (see :mod:`stream_apps.runstate`)."""
        return f"{self.prefix}:run:{run_id}"

    def monitor_leader(self) -> str:
        """Lease of the one lag monitor that publishes figures."""
        return f"{self.prefix}:monitor:leader"

    # --- access ------------------------------------------------------------------------------
    def api_key(self, token_sha256: str) -> str:
        """An API key's record, found by the SHA-256 of its token (the token itself is never stored)."""
        return f"{self.prefix}:access:key:{token_sha256}"

    @property
    def api_key_names(self) -> str:
        """Hash: key name -> SHA-256 of its current token."""
        return f"{self.prefix}:access:names"

    def api_session(self, session_sha256: str) -> str:
        """A signed-in browser session, found by the SHA-256 of its cookie value."""
        return f"{self.prefix}:access:session:{session_sha256}"

    # --- alerts -------------------------------------------------------------------------------
    @property
    def alerts(self) -> str:
        """Namespace of every alert key below."""
        return f"{self.prefix}:alerts"

    @property
    def alert_active(self) -> str:
        """Hash: fingerprint -> the firing alert."""
        return f"{self.alerts}:active"

    @property
    def alert_seen(self) -> str:
        """Hash: fingerprint -> when the alert was last asserted."""
        return f"{self.alerts}:seen"

    @property
    def alert_history(self) -> str:
        """List of resolved alerts, newest first, capped."""
        return f"{self.alerts}:history"

    def alert_cooldown(self, fingerprint: str) -> str:
        return f"{self.alerts}:cooldown:{fingerprint}"

    @property
    def alert_webhook_pending(self) -> str:
        """List of webhook notifications parked for retry."""
        return f"{self.alerts}:webhook:pending"

    @property
    def alert_counters(self) -> str:
        return f"{self.alerts}:counters"

    def alert_run_end(self, run_id: str) -> str:
        return f"{self.alerts}:run_end:{run_id}"

    @property
    def alert_streaming_seen(self) -> str:
        """Sorted set: streaming run id -> event time (us) of its latest START or RUNNING."""
        return f"{self.alerts}:streaming_seen"

    @property
    def alert_heartbeat(self) -> str:
        return f"{self.alerts}:heartbeat"

    @property
    def alert_heartbeat_baseline(self) -> str:
        return f"{self.alerts}:heartbeat_baseline"


def glob_escape(text: str) -> str:
    """``text`` as a Redis glob pattern that matches only itself."""
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)
