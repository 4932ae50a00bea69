"""Backtest a changed rule pack, thresholds file or miner profile over history before it goes live; measure rules.

A rules owner changes a threshold to cut noise; what they need to know before switching is
which alerts go away, which appear, and whether the ones that go away were the good ones.
`backtest` runs the current version and the candidate (rules, miners of a profile, or both)
over the same transactions (in memory, nothing is written) and compares them detector by
detector: alerts added and removed (by alert id, which is the same for the same finding on
the same evidence), precision and recall on the labelled rows, alerts per 10,000
transactions, and a sample around the line for analysts to read. `rule_figures` gives the
same figures for one version alone (`tianluo rules list --dataset`).

An alert is judged when one of its evidence transactions carries a label; it is a true
positive when one of them is labelled illicit. Recall is transaction recall: the share of
illicit transactions that some alert of the rule holds as evidence. Totals over several rules
count suspicious alerts only: a large-value alert is a reporting item, not a suspicion, and
must not stand in for one in a precision or recall figure.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from tianluo.detect.base import DetectInput, Detector
from tianluo.detect.rules.engine import RuleDetector, builtin_packs, load_rules
from tianluo.detect.rules.language import Call, Const, MeasureRef, Node, Rule, RuleError, Thresholds, read_rule_file

#: Comparisons whose constant side is a threshold a rule fires on (the "line" of the sample).
_COMPARISONS = ("ge", "gt", "le", "lt", "between")
_ALERT_COLUMNS = ("alert_id", "detector_version", "subject_id", "ts_start", "ts_end", "txn_ids", "amount_cny",
                  "reasons", "report_kind")


# --- which files make a version ---------------------------------------------------------------------------


def file_kind(path: str | Path) -> str:
    """'pack' (a `rules:` list), 'thresholds' (a `parameters:` mapping) or 'profile' (a `miners:` mapping).

    One option can then take any of them: a bank that only moves a threshold passes its
    thresholds file, one that edits a rule passes the pack, one that retunes the miners its profile.
    """
    doc, errors = read_rule_file(path)
    if errors:
        raise RuleError(errors)
    if isinstance(doc, Mapping) and isinstance(doc.get("rules"), list):
        return "pack"
    if isinstance(doc, Mapping) and isinstance(doc.get("parameters"), Mapping):
        return "thresholds"
    if isinstance(doc, Mapping) and isinstance(doc.get("miners"), Mapping):
        return "profile"
    raise RuleError([f"{path}: neither a rule pack (a 'rules' list), a thresholds file (a 'parameters' mapping) "
                     "nor a miner profile (a 'miners' mapping)"])


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
            kind = file_kind(f)
            if kind == "profile":
                raise RuleError([f"{f}: a miner profile, not rules; pass it with --profile"])
            (packs if kind == "pack" else changes).append(Path(f))
        return cls(tuple(packs) or None, (*(Path(t) for t in thresholds), *changes))

    def detector(self, *, shadow: bool = False) -> RuleDetector:
        """The rule detector of this version (raises RuleError with every problem of its files)."""
        t = Thresholds.load(list(self.thresholds))
        return RuleDetector(load_rules(self.packs, thresholds=t), thresholds=t, shadow=shadow)

    def describe(self) -> str:
        """The files of this version in words, for the backtest's heading."""
        packs = ", ".join(str(p) for p in self.packs) if self.packs else "built-in packs"
        return packs + (" with " + ", ".join(str(t) for t in self.thresholds) if self.thresholds else "")


def shadow_detectors(files: Iterable[str | Path], thresholds: Iterable[str | Path] = ()) -> list[Detector]:
    """Detectors to run in shadow (`tianluo detect --shadow-pack`), all marked shadow.

    The rules of the pack and thresholds files among `files` (after the standing `thresholds`),
    except those whose version is the live one (the built-in packs at `thresholds`): a shadow
    copy of an unchanged rule would only repeat the live alerts. And the miners of each profile.
    """
    from tianluo.detect.profiles import load_profile

    files = [Path(f) for f in files]
    standing = tuple(Path(t) for t in thresholds)
    profiles = [f for f in files if file_kind(f) == "profile"]
    rules = [f for f in files if f not in profiles]
    out: list[Detector] = []
    if rules:
        candidate = RuleVersion.from_files(rules, standing).detector()
        live = {r.id: r.version_tag for r in RuleVersion(None, standing).detector().rules}
        changed = [r for r in candidate.rules if live.get(r.id) != r.version_tag]
        if changed:
            out.append(RuleDetector(changed, thresholds=candidate.thresholds, shadow=True))
    for path in profiles:
        for miner in load_profile(path).build():
            miner.shadow = True
            out.append(miner)
    return out


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


def run_detectors(detectors: Sequence[Detector], data: DetectInput) -> tuple[dict[str, pl.DataFrame], dict[str, Rule]]:
    """Alerts per detector name (rules: with their measures) and the rules among them, by id.

    A rule detector raises alerts under each rule's id; a miner under its own name (an empty
    frame when it found nothing, so a miner that stops finding anything shows as removed).
    """
    frames: dict[str, pl.DataFrame] = {}
    rules: dict[str, Rule] = {}
    for det in detectors:
        if isinstance(det, RuleDetector):
            frames.update(run_rules(det, data))
            rules.update({r.id: r for r in det.rules})
            continue
        alerts = pl.from_arrow(det.detect(data))
        assert isinstance(alerts, pl.DataFrame)
        frames.setdefault(det.name, alerts.head(0).select(_ALERT_COLUMNS))
        for name in alerts["detector"].unique(maintain_order=True).to_list():
            frames[name] = alerts.filter(pl.col("detector") == name).select(_ALERT_COLUMNS)
    return frames, rules


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


def _gates(node: Node | None, params: set[str]) -> list[tuple[str, str, int]]:
    """(measure, parameter, sense) where the rule compares a measure with one of `params`.

    `sense` is +1 when the measure must be at least the parameter (ge, gt, the low end of
    between) and -1 when at most (le, lt, the high end): which way "just under the line" is.
    """
    if not isinstance(node, Call):
        return []
    found = []
    if node.fn in _COMPARISONS and isinstance(node.args[0], MeasureRef):
        senses = (-1, 1, -1) if node.fn == "between" else (0, 1 if node.fn in ("ge", "gt") else -1)
        found += [(node.args[0].name, a.param, senses[i]) for i, a in enumerate(node.args) if i
                  and isinstance(a, Const) and a.param in params]
    for arg in node.args:
        found += _gates(arg, params)
    return found


#: How far past a changed threshold the "just under the line" sample looks (a quarter of its value).
_BELOW_MARGIN = 0.25


def _just_under(rule: Rule, thresholds: Thresholds, gates: list[tuple[str, str, int]], data: DetectInput,
                fired: pl.DataFrame) -> pl.DataFrame:
    """Alerts the rule would raise with each gated number threshold moved a quarter further out, on subjects
    and times where it raises none: the windows just under the new line, for analysts to read."""
    moved = dict(thresholds)
    for _, name, sense in gates:
        p = moved[name]
        if p.type == "number" and not isinstance(p.value, bool) and p.value:
            moved[name] = replace(p, value=p.value * (1 - sense * _BELOW_MARGIN))
    if all(moved[n] is thresholds[n] for _, n, _ in gates):
        return fired.head(0)
    relaxed = Thresholds(moved)
    source = Path(rule.source.split("#", 1)[0])
    (loose,) = [r for r in load_rules([source], thresholds=relaxed) if r.id == rule.id]
    found = run_rules(RuleDetector([loose], thresholds=relaxed), data)[rule.id]
    spans = fired.select("subject_id", pl.col("ts_start").alias("s"), pl.col("ts_end").alias("e"))
    overlapping = found.join(spans, on="subject_id").filter(
        (pl.col("ts_start") <= pl.col("e")) & (pl.col("ts_end") >= pl.col("s"))
    )["alert_id"]
    return found.filter(~pl.col("alert_id").is_in(overlapping.implode()))


def backtest(
    data: DetectInput,
    candidate: RuleDetector | Sequence[Detector],
    baseline: RuleDetector | Sequence[Detector] | pl.DataFrame,
    *,
    baseline_name: str = "current",
    candidate_name: str = "candidate",
    sample_size: int = 3,
) -> BacktestResult:
    """Compare a candidate rule version with the current one over `data`; nothing is written.

    `candidate` and `baseline` are detectors (a rule detector, miners, or a list of both) run
    over the same data, or for the baseline the alerts already stored (columns of the `alerts`
    table; only the candidate's detector names are compared, and stored alerts carry no
    measures for the sample). Rule parameters are compared for rules present on both sides.
    The sample holds, per changed detector, up to `sample_size` alerts added (newly over the
    line) and removed (now under it), and for a rule whose changed thresholds it compares
    measures with, the kept alerts whose measure is nearest the new line (just over it) and
    the nearest windows that still do not fire (just under it, found with those thresholds a
    quarter further out).
    """
    labels = labels_of(data.transactions)
    n = data.transactions.height
    frames, rules_after = run_detectors(_listed(candidate), data)
    rule_thresholds = {r.id: det.thresholds for det in _listed(candidate) if isinstance(det, RuleDetector)
                       for r in det.rules}
    after = {k: _judge(v, labels) for k, v in frames.items()}
    if isinstance(baseline, pl.DataFrame):
        stored = baseline.filter(pl.col("detector").is_in(list(after)))
        before = {k: _judge(stored.filter(pl.col("detector") == k).select(_ALERT_COLUMNS), labels) for k in after}
        rules_before: dict[str, Rule] = {}
    else:
        frames, rules_before = run_detectors(_listed(baseline), data)
        before = {k: _judge(v, labels) for k, v in frames.items()}
    changes: list[RuleChange] = []
    sample: list[dict[str, Any]] = []
    added_ids: list[str] = []
    removed_ids: list[str] = []
    order = [*after, *(k for k in before if k not in after)]
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
        distance = pl.min_horizontal(
            ((pl.col(m) - new_values[p]).abs() / max(abs(float(new_values[p])), 1e-9)) for m, p, _ in gates
        ) if gates else None
        for side, frame in (("added", added), ("removed", removed)):
            if frame is not None:
                sample += [_sample_row(rid, side, row, gates, new_values) for row in frame.head(sample_size).to_dicts()]
        if a is not None and ra is not None and distance is not None and sample_size:
            kept = a.filter(pl.col("alert_id").is_in(list(ids_b)))
            under = _judge(_just_under(ra, rule_thresholds[rid], gates, data, a), labels)
            for side, frame in (("kept", kept), ("under", under)):
                frame = frame.with_columns(__d=distance).sort("__d", "alert_id", nulls_last=True).drop("__d")
                sample += [_sample_row(rid, side, row, gates, new_values) for row in frame.head(sample_size).to_dicts()]
    before_all, after_all = _suspicious(before), _suspicious(after)
    return BacktestResult(
        transactions=n, labelled=labels.height, illicit=int((labels["label"] == 1).sum()),
        baseline=baseline_name, candidate=candidate_name, rules=changes,
        before=_figures(before_all, labels, n), after=_figures(after_all, labels, n),
        added=sorted(added_ids), removed=sorted(removed_ids), sample=sample,
    )


def _listed(side: RuleDetector | Sequence[Detector]) -> list[Detector]:
    return [side] if isinstance(side, Detector) else list(side)


def _suspicious(frames: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """Every suspicious alert of the compared detectors (large-value reporting items left out)."""
    columns = ["alert_id", "txn_ids", "judged", "illicit"]
    parts = [f.filter(pl.col("report_kind") == "suspicious").select(columns) for f in frames.values() if f.height]
    if parts:
        return pl.concat(parts)
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
    "under": "not raised: just under the new line",
}


def _sample_row(rule: str, side: str, row: dict[str, Any], gates: list[tuple[str, str, int]],
                new_values: dict[str, Any]) -> dict[str, Any]:
    measures = {m: row.get(m) for m, _, _ in gates if m in row}
    return {
        "rule": rule, "side": _SIDES[side], "alert_id": row["alert_id"], "subject": row["subject_id"],
        "ts_start": row["ts_start"], "ts_end": row["ts_end"], "txns": len(row["txn_ids"] or []),
        "amount_cny": row["amount_cny"], "illicit": row["illicit"],
        "line": {p: new_values[p] for _, p, _ in gates},
        "measures": measures, "reason": (row["reasons"] or [""])[0],
    }
