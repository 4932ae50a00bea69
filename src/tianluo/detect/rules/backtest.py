"""Backtest a changed rule pack or thresholds file over history before it goes live, and measure rules on labels.

A rules owner changes a threshold to cut noise; what they need to know before switching is
which alerts go away, which appear, and whether the ones that go away were the good ones.
`backtest` runs the current version and the candidate over the same transactions (in memory,
nothing is written) and compares them rule by rule: alerts added and removed (by alert id,
which is the same for the same finding on the same evidence), precision and recall on the
labelled rows, alerts per 10,000 transactions, and a sample around the line for analysts to
read. `rule_figures` gives the same figures for one version alone (`tianluo rules list
--dataset`).

An alert is judged when one of its evidence transactions carries a label; it is a true
positive when one of them is labelled illicit. Recall is transaction recall: the share of
illicit transactions that some alert of the rule holds as evidence.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from tianluo.detect.base import DetectInput
from tianluo.detect.rules.engine import RuleDetector, builtin_packs, load_rules
from tianluo.detect.rules.language import Call, Const, MeasureRef, Node, Rule, RuleError, Thresholds, read_rule_file

#: Comparisons whose constant side is a threshold a rule fires on (the "line" of the sample).
_COMPARISONS = ("ge", "gt", "le", "lt", "between")
_ALERT_COLUMNS = ("alert_id", "detector_version", "subject_id", "ts_start", "ts_end", "txn_ids", "amount_cny",
                  "reasons")


# --- which files make a version ---------------------------------------------------------------------------


def file_kind(path: str | Path) -> str:
    """'pack' for a rule file (`rules:` list), 'thresholds' for a thresholds file (`parameters:` mapping).

    One option can then take either: a bank that only moves a threshold passes its thresholds
    file, one that edits a rule passes the pack.
    """
    doc, errors = read_rule_file(path)
    if errors:
        raise RuleError(errors)
    if isinstance(doc, Mapping) and isinstance(doc.get("rules"), list):
        return "pack"
    if isinstance(doc, Mapping) and isinstance(doc.get("parameters"), Mapping):
        return "thresholds"
    raise RuleError([f"{path}: neither a rule pack (a 'rules' list) nor a thresholds file (a 'parameters' mapping)"])


@dataclass(frozen=True)
class RuleVersion:
    """One version of a rule set: its pack files (None: the built-in packs) and thresholds files, in order."""

    packs: tuple[Path, ...] | None = None
    thresholds: tuple[Path, ...] = ()

    @classmethod
    def from_files(cls, files: Iterable[str | Path], thresholds: Iterable[str | Path] = ()) -> RuleVersion:
        """Sort files into packs and thresholds by their content; no pack file means the built-in packs.

        `thresholds` (the bank's standing overrides) apply first, then the thresholds files among
        `files`, so the change under test wins.
        """
        packs: list[Path] = []
        changes: list[Path] = []
        for f in files:
            (packs if file_kind(f) == "pack" else changes).append(Path(f))
        return cls(tuple(packs) or None, (*(Path(t) for t in thresholds), *changes))

    def detector(self, *, shadow: bool = False) -> RuleDetector:
        """The rule detector of this version (raises RuleError with every problem of its files)."""
        t = Thresholds.load(list(self.thresholds))
        return RuleDetector(load_rules(self.packs, thresholds=t), thresholds=t, shadow=shadow)

    def describe(self) -> str:
        packs = ", ".join(str(p) for p in self.packs) if self.packs else "built-in packs"
        return packs + (" with " + ", ".join(str(t) for t in self.thresholds) if self.thresholds else "")


def baseline_for(candidate: Sequence[Rule]) -> list[Rule]:
    """The built-in rules a candidate replaces: whole built-in packs of the same `pack` name (so a rule
    deleted from the candidate shows as removed), else the built-in rules with the candidate's ids."""
    names = {_pack_name(Path(r.source.split("#", 1)[0])) for r in candidate}
    same = [p for p in builtin_packs() if _pack_name(p) in names]
    ids = {r.id for r in candidate}
    return [r for r in load_rules() if r.id in ids or any(r.source.startswith(f"{p}#") for p in same)]


def _pack_name(path: Path) -> str | None:
    doc, errors = read_rule_file(path)
    return None if errors or not isinstance(doc, Mapping) else doc.get("pack")


# --- running one version ----------------------------------------------------------------------------------


def run_rules(detector: RuleDetector, data: DetectInput) -> dict[str, pl.DataFrame]:
    """Each rule's alerts (columns `_ALERT_COLUMNS`) with its measures as extra columns, keyed by rule id."""
    legs = detector.legs(data)
    out: dict[str, pl.DataFrame] = {}
    for plan in detector.plans:
        body = plan.run(legs)
        alerts = pl.from_arrow(detector.alerts_of(plan, body))
        assert isinstance(alerts, pl.DataFrame)
        measures = body.select(pl.col(c).alias(c[4:]) for c in body.columns if c.startswith("__m_"))
        out[plan.rule.id] = pl.concat([alerts.select(_ALERT_COLUMNS), measures], how="horizontal")
    return out


def labels_of(transactions: pl.DataFrame) -> pl.DataFrame:
    """txn_id and label of the labelled transactions (empty when the data has no labels)."""
    if "label" not in transactions.columns:
        return pl.DataFrame(schema={"txn_id": pl.String, "label": pl.Int8})
    return transactions.select(pl.col("txn_id").cast(pl.String), pl.col("label").cast(pl.Int8)).drop_nulls("label")


def _judge(alerts: pl.DataFrame, labels: pl.DataFrame) -> pl.DataFrame:
    """Per alert: `judged` (touches a labelled row) and `illicit` (touches an illicit one; null if unjudged)."""
    if alerts.height == 0:
        return alerts.with_columns(judged=pl.lit(False), illicit=pl.lit(None, pl.Boolean))
    ex = (alerts.select("alert_id", pl.col("txn_ids").alias("txn_id")).explode("txn_id")
          .join(labels, on="txn_id", how="left")
          .group_by("alert_id").agg(judged=pl.col("label").is_not_null().any(), illicit=(pl.col("label") == 1).any()))
    return alerts.join(ex, on="alert_id", how="left").with_columns(
        illicit=pl.when(pl.col("judged")).then(pl.col("illicit"))
    )


# --- figures ----------------------------------------------------------------------------------------------


@dataclass
class Figures:
    """One rule (or a whole version) over the data: volume, precision and recall on the labelled rows."""

    alerts: int
    judged: int
    true_positives: int
    illicit_found: int
    precision: float | None
    recall: float | None
    alerts_per_10k: float


def _figures(alerts: pl.DataFrame, labels: pl.DataFrame, n_txn: int) -> Figures:
    illicit = labels.filter(pl.col("label") == 1)["txn_id"]
    judged = int(alerts["judged"].sum()) if alerts.height else 0
    tp = int(alerts["illicit"].fill_null(False).sum()) if alerts.height else 0
    found = (alerts["txn_ids"].explode().drop_nulls().unique().is_in(illicit.implode()).sum()
             if alerts.height and illicit.len() else 0)
    return Figures(
        alerts=alerts.height, judged=judged, true_positives=tp, illicit_found=int(found),
        precision=tp / judged if judged else None,
        recall=int(found) / illicit.len() if illicit.len() else None,
        alerts_per_10k=round(alerts.height / n_txn * 10_000, 3) if n_txn else 0.0,
    )


@dataclass
class RuleFigures:
    """`Figures` of one rule, with its id and version tag."""

    rule: str
    version: str
    figures: Figures


def rule_figures(detector: RuleDetector, data: DetectInput) -> list[RuleFigures]:
    """Each rule of `detector` measured on `data` (nothing written): what `tianluo rules list --dataset` shows."""
    labels = labels_of(data.transactions)
    runs = run_rules(detector, data)
    return [RuleFigures(r.id, r.version_tag, _figures(_judge(runs[r.id], labels), labels, data.transactions.height))
            for r in detector.rules]


# --- comparing two versions -------------------------------------------------------------------------------


@dataclass
class RuleChange:
    """One rule before and after: figures of each side (None where the rule is absent) and what moved."""

    rule: str
    version_before: str | None
    version_after: str | None
    before: Figures | None
    after: Figures | None
    added: int
    added_illicit: int
    removed: int
    removed_illicit: int
    parameters: dict[str, tuple[Any, Any]] = field(default_factory=dict)


@dataclass
class BacktestResult:
    """What `backtest` found: per rule, for the compared rules together, and a sample around the line."""

    transactions: int
    labelled: int
    illicit: int
    baseline: str
    candidate: str
    rules: list[RuleChange]
    before: Figures
    after: Figures
    added: list[str]
    removed: list[str]
    sample: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for `--json` (times as ISO text, parameter pairs as {before, after})."""
        out = asdict(self)
        for r in out["rules"]:
            r["parameters"] = {k: {"before": a, "after": b} for k, (a, b) in r["parameters"].items()}
        return _plain(out)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _gates(node: Node | None, params: set[str]) -> list[tuple[str, str]]:
    """(measure, parameter) pairs where the rule compares a measure with one of `params`."""
    if not isinstance(node, Call):
        return []
    found = []
    if node.fn in _COMPARISONS and isinstance(node.args[0], MeasureRef):
        found += [(node.args[0].name, a.param) for a in node.args[1:]
                  if isinstance(a, Const) and a.param in params]
    for arg in node.args:
        found += _gates(arg, params)
    return found


def backtest(
    data: DetectInput,
    candidate: RuleDetector,
    baseline: RuleDetector | pl.DataFrame,
    *,
    baseline_name: str = "current",
    candidate_name: str = "candidate",
    sample_size: int = 3,
) -> BacktestResult:
    """Compare a candidate rule version with the current one over `data`; nothing is written.

    `baseline` is the current version's detector (run over the same data) or alerts already
    stored for it (columns of the `alerts` table; only the candidate's rule ids are compared,
    and stored alerts carry no measures for the sample). The sample holds, per changed rule, up
    to `sample_size` alerts added (newly over the line), removed (now under it) and kept with
    their deciding measure nearest a changed threshold (just over it).
    """
    labels = labels_of(data.transactions)
    n = data.transactions.height
    after = {k: _judge(v, labels) for k, v in run_rules(candidate, data).items()}
    if isinstance(baseline, RuleDetector):
        before = {k: _judge(v, labels) for k, v in run_rules(baseline, data).items()}
        rules_before = {r.id: r for r in baseline.rules}
    else:
        stored = baseline.filter(pl.col("detector").is_in(list(after)))
        before = {k: _judge(stored.filter(pl.col("detector") == k).select(_ALERT_COLUMNS), labels) for k in after}
        rules_before = {}
    rules_after = {r.id: r for r in candidate.rules}
    changes: list[RuleChange] = []
    sample: list[dict[str, Any]] = []
    added_ids: list[str] = []
    removed_ids: list[str] = []
    order = [*rules_after, *(k for k in before if k not in rules_after)]
    for rid in order:
        a, b = after.get(rid), before.get(rid)
        ids_a = set(a["alert_id"]) if a is not None else set()
        ids_b = set(b["alert_id"]) if b is not None else set()
        added = a.filter(~pl.col("alert_id").is_in(list(ids_b))) if a is not None else None
        removed = b.filter(~pl.col("alert_id").is_in(list(ids_a))) if b is not None else None
        ra, rb = rules_after.get(rid), rules_before.get(rid)
        params = ({p: (rb.parameters.get(p), v) for p, v in ra.parameters.items() if rb.parameters.get(p) != v}
                  if ra is not None and rb is not None else {})
        changes.append(RuleChange(
            rule=rid,
            version_before=rb.version_tag if rb is not None else _stored_version(b),
            version_after=ra.version_tag if ra is not None else None,
            before=_figures(b, labels, n) if b is not None else None,
            after=_figures(a, labels, n) if a is not None else None,
            added=added.height if added is not None else 0,
            added_illicit=_count_illicit(added),
            removed=removed.height if removed is not None else 0,
            removed_illicit=_count_illicit(removed),
            parameters=params,
        ))
        added_ids += list(added["alert_id"]) if added is not None else []
        removed_ids += list(removed["alert_id"]) if removed is not None else []
        gates = _gates(ra.when, set(params)) if ra is not None else []
        new_values = {p: v for p, (_, v) in params.items()}
        for side, frame in (("added", added), ("removed", removed)):
            if frame is not None:
                sample += [_sample_row(rid, side, row, gates, new_values) for row in frame.head(sample_size).to_dicts()]
        if a is not None and gates and params:
            kept = a.filter(pl.col("alert_id").is_in(list(ids_b)))
            distance = pl.min_horizontal(
                ((pl.col(m) - new_values[p]).abs() / max(abs(float(new_values[p])), 1e-9)) for m, p in gates
            )
            kept = kept.with_columns(__d=distance).sort("__d", "alert_id", nulls_last=True).drop("__d")
            sample += [_sample_row(rid, "kept", row, gates, new_values) for row in kept.head(sample_size).to_dicts()]
    before_all = pl.concat([f for f in before.values() if f.height], how="diagonal_relaxed") if any(
        f.height for f in before.values()) else _empty_judged()
    after_all = pl.concat([f for f in after.values() if f.height], how="diagonal_relaxed") if any(
        f.height for f in after.values()) else _empty_judged()
    return BacktestResult(
        transactions=n, labelled=labels.height, illicit=int((labels["label"] == 1).sum()),
        baseline=baseline_name, candidate=candidate_name, rules=changes,
        before=_figures(before_all, labels, n), after=_figures(after_all, labels, n),
        added=sorted(added_ids), removed=sorted(removed_ids), sample=sample,
    )


def _empty_judged() -> pl.DataFrame:
    return pl.DataFrame(schema={"alert_id": pl.String, "txn_ids": pl.List(pl.String), "judged": pl.Boolean,
                                "illicit": pl.Boolean})


def _stored_version(frame: pl.DataFrame | None) -> str | None:
    if frame is None or frame.height == 0:
        return None
    return ",".join(sorted(set(frame["detector_version"])))


def _count_illicit(frame: pl.DataFrame | None) -> int:
    return int(frame["illicit"].fill_null(False).sum()) if frame is not None and frame.height else 0


_SIDES = {
    "added": "added: over the new line",
    "removed": "removed: under the new line",
    "kept": "kept: just over the new line",
}


def _sample_row(rule: str, side: str, row: dict[str, Any], gates: list[tuple[str, str]],
                new_values: dict[str, Any]) -> dict[str, Any]:
    measures = {m: row.get(m) for m, _ in gates if m in row}
    return {
        "rule": rule, "side": _SIDES[side], "alert_id": row["alert_id"], "subject": row["subject_id"],
        "ts_start": row["ts_start"], "ts_end": row["ts_end"], "txns": len(row["txn_ids"] or []),
        "amount_cny": row["amount_cny"], "illicit": row["illicit"],
        "line": {p: new_values[p] for _, p in gates},
        "measures": measures, "reason": (row["reasons"] or [""])[0],
    }
