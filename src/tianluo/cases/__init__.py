"""Cases: the alert queue, case workflow, reports with four-eyes approval, and the SM3-chained audit trail.

`open_store(url)` opens (and migrates) the case database — SQLite by default,
PostgreSQL for a team — and returns the `CaseStore` that the CLI, the API and the
tests share. See docs/cases.md.
"""

from tianluo.cases._base import SYSTEM, User
from tianluo.cases.audit import AuditCheck
from tianluo.cases.errors import CaseError, Conflict, Invalid, NotAllowed, NotFound
from tianluo.cases.queue import SyncResult
from tianluo.cases.store import CaseStore, open_store
from tianluo.cases.workflow import STATES

__all__ = [
    "STATES",
    "SYSTEM",
    "AuditCheck",
    "CaseError",
    "CaseStore",
    "Conflict",
    "Invalid",
    "NotAllowed",
    "NotFound",
    "SyncResult",
    "User",
    "open_store",
]
