"""The case workflow as data: states, the edges between them, and which roles may take each edge.

Kept as a table (not code paths) so the store, `allowed_transitions`, the docs and the
tests all read the same graph. Two kinds of edge exist: plain transitions (`via =
"transition"`) and edges a report action takes (drafting a report moves an escalated case
to `report_drafted`; approving, rejecting and filing move it on). `CaseStore.transition`
accepts both kinds: for a report edge it acts on the case's one eligible report.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Every case state, in workflow order.
STATES: tuple[str, ...] = (
    "new",
    "investigating",
    "escalated",
    "report_drafted",
    "approved",
    "filed",
    "closed_false_positive",
    "closed_no_action",
)
CLOSED: frozenset[str] = frozenset({"closed_false_positive", "closed_no_action"})
#: States where no more work happens: new alerts of the subject open a new case.
TERMINAL: frozenset[str] = frozenset({"filed", *CLOSED})
#: States of a case that still receives its subject's new alerts.
ACTIVE: tuple[str, ...] = tuple(s for s in STATES if s not in TERMINAL)
#: States in which the suspicious-report deadline (not the triage one) runs.
REPORTING: frozenset[str] = frozenset({"escalated", "report_drafted", "approved"})

ROLES: tuple[str, ...] = ("analyst", "senior", "admin", "auditor", "supervisor")
#: Roles that work cases at all (notes, evidence, assignment, the transitions below).
CASE_WORKERS: frozenset[str] = frozenset({"analyst", "senior"})
SENIOR: frozenset[str] = frozenset({"senior"})


@dataclass(frozen=True)
class Edge:
    """One allowed move: who may take it, whether it needs a reason, and how it is taken."""

    source: str
    target: str
    roles: frozenset[str]
    via: str = "transition"  # "transition" or "report" (draft / approve / reject / file)
    needs_reason: bool = False
    label: str = ""


EDGES: tuple[Edge, ...] = (
    Edge("new", "investigating", CASE_WORKERS, label="start investigating"),
    Edge("investigating", "escalated", CASE_WORKERS, label="confirm suspicion (the STR deadline starts)"),
    *(
        Edge(s, t, CASE_WORKERS, needs_reason=True, label=label)
        for s in ("new", "investigating", "escalated")
        for t, label in (("closed_false_positive", "close as false positive (suppresses)"),
                         ("closed_no_action", "close without action"))
    ),
    Edge("escalated", "report_drafted", CASE_WORKERS, via="report",
         label="draft a report: `create_report` (`POST /cases/{id}/reports`), not `transition`"),
    Edge("report_drafted", "approved", SENIOR, via="report",
         label="approve the report: never its drafter, only a valid one (`approve_report`)"),
    Edge("report_drafted", "escalated", SENIOR, via="report", needs_reason=True,
         label="reject the report (`reject_report`; `transition` rejects every draft)"),
    Edge("approved", "filed", SENIOR, via="report", label="file the report with the regulator (`file_report`)"),
    Edge("closed_false_positive", "investigating", SENIOR, needs_reason=True, label="reopen"),
    Edge("closed_no_action", "investigating", SENIOR, needs_reason=True, label="reopen"),
)
_BY_PAIR: dict[tuple[str, str], Edge] = {(e.source, e.target): e for e in EDGES}


def edge(source: str, target: str) -> Edge | None:
    """The edge from `source` to `target`, or None when the graph has none."""
    return _BY_PAIR.get((source, target))


def targets(source: str, role: str) -> list[str]:
    """States `role` may move a case in `source` to, by the graph alone (before four-eyes checks)."""
    return [e.target for e in EDGES if e.source == source and role in e.roles]


def markdown_table() -> str:
    """The edges as a Markdown table (docs/cases.md embeds it; a test keeps it current)."""
    head = "| from | to | analyst | senior | admin | auditor | supervisor | how |\n|---|---|---|---|---|---|---|---|\n"
    rows = []
    for e in EDGES:
        marks = " | ".join("✓" if r in e.roles else "" for r in ROLES)
        how = e.label + (" — reason required" if e.needs_reason else "")
        rows.append(f"| `{e.source}` | `{e.target}` | {marks} | {how} |\n")
    return head + "".join(rows)
