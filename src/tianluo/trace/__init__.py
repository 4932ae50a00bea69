"""Trace: follow money forward or backward over time-respecting transaction chains, with amount attribution.

`TraceIndex.build(dataset_or_transactions)` indexes the transactions once; `trace(index,
start_account=... | start_txn=..., direction=..., method=...)` returns a `TraceResult`
(nodes, edges, ranked paths; `.to_json()`, `.edges_csv()`). docs/trace.md explains the
attribution methods and the invariants the tests prove.
"""

from tianluo.trace.engine import DEFAULT_SINKS, DIRECTIONS, METHODS, trace
from tianluo.trace.index import TraceIndex, alerted_accounts
from tianluo.trace.result import END_REASONS, SINK_REASONS, TracePath, TraceResult

__all__ = [
    "DEFAULT_SINKS",
    "DIRECTIONS",
    "END_REASONS",
    "METHODS",
    "SINK_REASONS",
    "TraceIndex",
    "TracePath",
    "TraceResult",
    "alerted_accounts",
    "trace",
]
