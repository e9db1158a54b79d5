"""Roles and what each may do, least privilege first.

* ``emitter``: lineage intake only;
* ``analyst``: named queries and SQL over anonymised lineage (no raw event records, no
  pseudonymous subject references);
* ``auditor``: every lineage table read-only, reports, the audit log;
* ``investigator``: auditor plus decrypting a snapshot, with a reason;
* ``admin``: everything above plus keys, erase and flag.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Role(str, Enum):
    EMITTER = "emitter"
    ANALYST = "analyst"
    AUDITOR = "auditor"
    INVESTIGATOR = "investigator"
    ADMIN = "admin"


class Action(str, Enum):
    INTAKE = "intake"  # POST lineage events
    QUERY = "query"  # named queries, SQL over anonymised lineage, dashboard data
    METRICS = "metrics"  # Prometheus exposition (unless served publicly)
    READ_ALL = "read_all"  # raw events and subject references too
    REPORTS = "reports"
    AUDIT_LOG = "audit_log"
    DECRYPT = "decrypt"
    FLAG = "flag"
    ERASE = "erase"
    KEYS = "keys"


_AUDITOR = frozenset({Action.QUERY, Action.METRICS, Action.READ_ALL, Action.REPORTS, Action.AUDIT_LOG})
PERMISSIONS: dict[Role, frozenset[Action]] = {
    Role.EMITTER: frozenset({Action.INTAKE}),
    Role.ANALYST: frozenset({Action.QUERY, Action.METRICS}),
    Role.AUDITOR: _AUDITOR,
    Role.INVESTIGATOR: _AUDITOR | {Action.DECRYPT},
    Role.ADMIN: frozenset(Action),
}


def allows(role: Role, action: Action) -> bool:
    return action in PERMISSIONS[role]


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts, as the audit log records it: a key's name and role, never self-declared.

    ``via`` is ``api`` (a request with a key) or ``cli`` (the local administrator's direct path,
    named ``local:<os user>`` with the admin role).
    """

    name: str
    role: Role
    via: str = "api"

    @classmethod
    def local(cls) -> Actor:
        """The local administrator: whoever runs the CLI on the store's own machine, no sink running."""
        import getpass

        return cls(f"local:{getpass.getuser()}", Role.ADMIN, "cli")
