"""The tamper-evident audit trail (电子存证): entries hash-chained with SM3, and their verification.

Each entry's hash is SM3 over its canonical JSON (sorted keys, no spaces, UTF-8; the
timestamp as ISO 8601 UTC with microseconds) including the previous entry's hash, so
editing an entry breaks its own hash, removing or reordering entries breaks the next
entry's link, and the chain-head row (which every append updates in the same
transaction) catches entries cut from the end. The first entry chains to `GENESIS`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64


def sm3_hex(data: bytes) -> str:
    """SM3 (GB/T 32905-2016) through OpenSSL: the same digest as `tianluo.protect.sm3_hex`.

    Computed here directly so opening the case store does not load the tokenization kernels (numba).
    """
    return hashlib.new("sm3", data).hexdigest()


def canonical_json(value: Any) -> str:
    """The one serialisation hashed and stored: sorted keys, compact, non-ASCII kept as is."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=_jsonable)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return iso(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(value) if isinstance(value, (set, frozenset)) else list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable in an audit entry")


def iso(ts: dt.datetime) -> str:
    """An instant as the audit trail writes it: UTC, microseconds, `+00:00`."""
    return ts.astimezone(dt.UTC).isoformat(timespec="microseconds")


def entry_hash(
    *,
    seq: int,
    at: dt.datetime,
    tenant: str | None,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    case_id: int | None,
    details: str,
    prev_hash: str,
) -> str:
    """SM3 (hex) of one entry; `details` is the stored canonical JSON text."""
    body = {
        "seq": seq,
        "at": iso(at),
        "tenant": tenant,
        "actor": actor,
        "action": action,
        "object_type": object_type,
        "object_id": object_id,
        "case_id": case_id,
        "details": details,
        "prev": prev_hash,
    }
    return sm3_hex(canonical_json(body).encode("utf-8"))


@dataclass(frozen=True)
class AuditCheck:
    """Result of verifying the chain: `first_bad_seq` is the first entry that fails, else None."""

    ok: bool
    entries: int
    first_bad_seq: int | None = None
    problem: str | None = None
    head_hash: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "entries": self.entries, "first_bad_seq": self.first_bad_seq,
                "problem": self.problem, "head_hash": self.head_hash}


def verify_chain(rows: Iterable[Any], head_seq: int, head_hash: str) -> AuditCheck:
    """Check rows (ordered by seq) against the chain rules and the recorded head.

    Rows need the attributes of `AuditEntry`. The sequence must run 1, 2, 3 … without a
    gap; each row must name its predecessor's hash and hash to what it stores.
    """
    prev, expect, count = GENESIS, 1, 0
    for row in rows:
        count += 1
        if row.seq != expect:
            bad = min(row.seq, expect)
            return AuditCheck(False, count - 1, bad, f"entry {expect} is missing (found {row.seq} next)")
        if row.prev_hash != prev:
            return AuditCheck(False, count - 1, row.seq,
                              f"entry {row.seq} does not chain to entry {row.seq - 1}: removed, inserted or reordered")
        want = entry_hash(seq=row.seq, at=row.at, tenant=row.tenant, actor=row.actor, action=row.action,
                          object_type=row.object_type, object_id=row.object_id, case_id=row.case_id,
                          details=row.details, prev_hash=row.prev_hash)
        if want != row.hash:
            return AuditCheck(False, count - 1, row.seq, f"entry {row.seq} was edited: its SM3 hash does not match")
        prev, expect = row.hash, expect + 1
    last = expect - 1
    if last != head_seq or prev != head_hash:
        bad = min(last, head_seq) + 1 if last != head_seq else last
        return AuditCheck(False, count, bad,
                          f"the log ends at entry {last} but the chain head records entry {head_seq}: "
                          "entries were removed from the end (or the head was altered)")
    return AuditCheck(True, count, None, None, prev)
