"""What a trace returns: the traced graph (accounts and transactions), ranked paths, JSON and CSV views."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

#: Why a path ends, by the kernel's end code (see `_kernels.END_*`).
END_REASONS: dict[int, str] = {
    1: "cash",
    2: "cross_border",
    3: "other_bank",
    4: "alerted",
    5: "max_hops",
    6: "held",
    7: "pruned",
}
#: The reasons that are sinks in the investigator's sense (money left the bank's view or reached a known case).
SINK_REASONS = ("cash", "cross_border", "other_bank", "alerted")


@dataclass(frozen=True)
class TracePath:
    """One route the traced money took, in the direction money moved (payer first).

    `amount` is the traced money that took exactly this route (each step keeps the share
    its dominant source contributed); `end_traced` is all traced money on the last
    transaction; `end` says why the route stops (a sink kind or a limit).
    """

    accounts: tuple[str, ...]
    txn_ids: tuple[str, ...]
    timestamps: tuple[dt.datetime, ...]
    amount: float
    end_traced: float
    end: str

    @property
    def hops(self) -> int:
        return len(self.txn_ids)

    def to_dict(self) -> dict[str, Any]:
        return {
            "accounts": list(self.accounts),
            "txn_ids": list(self.txn_ids),
            "timestamps": [ts.isoformat() for ts in self.timestamps],
            "amount": round(self.amount, 2),
            "end_traced": round(self.end_traced, 2),
            "end": self.end,
            "hops": self.hops,
        }


@dataclass(frozen=True)
class TraceResult:
    """A traced fund flow: `nodes` (accounts), `edges` (transactions), ranked `paths` and a `summary`.

    `edges` columns: txn_id, ts, src_account, dst_account, amount, traced, hop, channel,
    sink. `nodes` columns: account_id, role, bank, traced_in, traced_out, dropped, hop,
    first_ts, last_ts, flags. Amounts are CNY.
    """

    params: dict[str, Any]
    nodes: pl.DataFrame
    edges: pl.DataFrame
    paths: list[TracePath]
    summary: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (timestamps as ISO 8601 strings, amounts rounded to the fen)."""

        def rows(df: pl.DataFrame) -> list[dict[str, Any]]:
            out = df.with_columns(
                [pl.col(c).dt.to_string("%Y-%m-%dT%H:%M:%S%.6f+00:00") for c, t in df.schema.items()
                 if isinstance(t, pl.Datetime)]
                + [pl.col(c).round(2) for c, t in df.schema.items() if t == pl.Float64]
            )
            return out.to_dicts()

        return {
            "params": self.params,
            "summary": self.summary,
            "nodes": rows(self.nodes),
            "edges": rows(self.edges),
            "paths": [p.to_dict() for p in self.paths],
        }

    def to_json(self, **kwargs: Any) -> str:
        """The result as JSON text (what the API serves and the UI draws)."""
        return json.dumps(self.to_dict(), ensure_ascii=False, **kwargs)

    def edges_csv(self, path: Path | str | None = None) -> str:
        """The traced transactions as CSV (one row per transaction); also written to `path` when given."""
        text = self.edges.write_csv()
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text
