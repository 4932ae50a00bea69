"""What can go wrong in the case store, as exceptions a person can read (the API maps them to 4xx)."""

from __future__ import annotations


class CaseError(Exception):
    """Base of every case-store error; `str(exc)` is a sentence for the user."""


class NotFound(CaseError):  # noqa: N818 - the names the API maps to 404/403/409/400
    """No such object in the caller's tenant (another tenant's ids are not found either) → 404."""


class NotAllowed(CaseError):  # noqa: N818 - the names the API maps to 404/403/409/400
    """The caller's role may not do this (or four-eyes forbids it) → 403."""


class Conflict(CaseError):  # noqa: N818 - the names the API maps to 404/403/409/400
    """The object is in a state where this is not possible (a transition not in the graph) → 409."""


class Invalid(CaseError):  # noqa: N818 - the names the API maps to 404/403/409/400
    """The request itself is malformed: an unknown role, a short reason, a bad page size → 400."""
