"""The alert record: what fires, what resolves, and how it looks on the wire.

One :class:`Alert` per (name, labels). Its fingerprint is a hash of exactly that, so every
evaluator (any worker, the monitor, a restarted process) names the same condition the same
way and de-duplication can key on it. Times are integer microseconds since the epoch, like
graph rows; the Alertmanager webhook body uses RFC 3339 strings.
"""
from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import orjson

from lineage.metric_records import rfc3339

FIRING = "firing"
RESOLVED = "resolved"
SEVERITIES = ("info", "warning", "critical")
#: Alertmanager's "not ended" timestamp.
ZERO_TIME = "0001-01-01T00:00:00Z"


def now_us() -> int:
    return time.time_ns() // 1000


def fingerprint(name: str, labels: Mapping[str, str]) -> str:
    """16 hex digits over the alert name and its sorted labels (Alertmanager's length)."""
    h = hashlib.sha256(name.encode())
    for key in sorted(labels):
        h.update(b"\xff" + key.encode() + b"\xfe" + str(labels[key]).encode())
    return h.hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert instance; `state` moves firing -> resolved exactly once."""

    name: str
    labels: dict[str, str]
    severity: str = "warning"
    summary: str = ""
    description: str = ""
    state: str = FIRING
    starts_at: int = 0
    ends_at: int = 0
    fingerprint: str = ""
    notified: bool = True
    source: str = ""
    value: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, not {self.severity!r}")
        if self.state not in (FIRING, RESOLVED):
            raise ValueError(f"state must be firing or resolved, not {self.state!r}")
        labels = {str(k): str(v) for k, v in self.labels.items()}
        object.__setattr__(self, "labels", labels)
        if not self.fingerprint:
            object.__setattr__(self, "fingerprint", fingerprint(self.name, labels))
        if not self.starts_at:
            object.__setattr__(self, "starts_at", now_us())

    @classmethod
    def firing(
        cls,
        name: str,
        labels: Mapping[str, Any],
        summary: str,
        severity: str = "warning",
        value: float = 0.0,
        description: str = "",
        source: str = "",
    ) -> Alert:
        return cls(
            name=name,
            labels={k: str(v) for k, v in labels.items()},
            severity=severity,
            summary=summary,
            description=description,
            value=float(value),
            source=source,
        )

    def resolved(self, at_us: int | None = None) -> Alert:
        return replace(self, state=RESOLVED, ends_at=at_us or now_us())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> bytes:
        """Internal form (Redis state): integer microseconds."""
        return orjson.dumps(self.to_dict())

    def to_topic(self) -> bytes:
        """The record on the alerts topic (-> ClickHouse `alerts`): RFC 3339 times, null end while firing."""
        return orjson.dumps(
            {
                "alert_name": self.name,
                "state": self.state,
                "severity": self.severity,
                "labels": self.labels,
                "summary": self.summary,
                "description": self.description,
                "starts_at": rfc3339(self.starts_at),
                "ends_at": rfc3339(self.ends_at) if self.ends_at else None,
                "updated_at": rfc3339(self.ends_at or self.starts_at),
                "fingerprint": self.fingerprint,
                "source": self.source,
                "value": self.value,
            }
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Alert:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def from_json(cls, raw: bytes | str) -> Alert:
        return cls.from_dict(orjson.loads(raw))

    def am_labels(self) -> dict[str, str]:
        """Labels as Alertmanager sees them: the alert's plus `alertname` and `severity`."""
        return {"alertname": self.name, "severity": self.severity, **self.labels}

    def am_alert(self, generator_url: str = "") -> dict[str, Any]:
        """One element of the webhook's `alerts` array."""
        return {
            "status": self.state,
            "labels": self.am_labels(),
            "annotations": {"summary": self.summary, "description": self.description or self.summary},
            "startsAt": rfc3339(self.starts_at),
            "endsAt": rfc3339(self.ends_at) if self.ends_at else ZERO_TIME,
            "generatorURL": generator_url,
            "fingerprint": self.fingerprint,
        }


def _common(dicts: Sequence[Mapping[str, str]]) -> dict[str, str]:
    if not dicts:
        return {}
    first = dict(dicts[0])
    return {k: v for k, v in first.items() if all(d.get(k) == v for d in dicts[1:])}


def webhook_payload(
    alerts: Sequence[Alert], receiver: str = "lineage", external_url: str = "", generator_url: str = ""
) -> dict[str, Any]:
    """An Alertmanager webhook body (version 4) for alerts of one group."""
    if not alerts:
        raise ValueError("a webhook notification needs at least one alert")
    items = [a.am_alert(generator_url) for a in alerts]
    status = FIRING if any(a.state == FIRING for a in alerts) else RESOLVED
    group_labels = {"alertname": alerts[0].name} if all(a.name == alerts[0].name for a in alerts) else {}
    group_key = "{}:{" + ",".join(f'{k}="{v}"' for k, v in sorted(group_labels.items())) + "}"
    return {
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": group_labels,
        "commonLabels": _common([i["labels"] for i in items]),
        "commonAnnotations": _common([i["annotations"] for i in items]),
        "externalURL": external_url,
        "alerts": items,
    }
