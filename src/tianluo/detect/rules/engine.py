"""Load, validate and run rule packs: `RuleDetector` is the detector (kind "rule") that turns them into alerts.

One run builds the leg view once and evaluates every compiled rule over it. Each
rule's alerts go through `finish_alerts` under the rule's own id and version tag
(`<version>+<content hash>`), so an alert always names the exact rule text and
thresholds that raised it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from tianluo.detect.base import DetectInput, Detector, finish_alerts
from tianluo.detect.rules.compile import Plan, build_legs
from tianluo.detect.rules.language import (
    PACKS_DIR,
    THRESHOLDS_FILE,
    Placeholder,
    Rule,
    RuleError,
    Thresholds,
    parse_rules,
    read_rule_file,
)
from tianluo.reference.currency import FxTable
from tianluo.schema import ALERTS

ThresholdsArg = Thresholds | str | Path | Mapping[str, Any] | Iterable[str | Path | Mapping[str, Any]] | None

#: Parameters that shape the leg view itself; every rule depends on them, so they are part of its hash.
ENGINE_PARAMETERS = ("timezone", "internal_account_types")


def builtin_packs() -> list[Path]:
    """The rule packs shipped with Tianluo (every YAML file in `packs/` except the thresholds)."""
    return sorted(p for p in PACKS_DIR.glob("*.yaml") if p != THRESHOLDS_FILE)


def _thresholds(thresholds: ThresholdsArg) -> Thresholds:
    return thresholds if isinstance(thresholds, Thresholds) else Thresholds.load(thresholds)


def _load(paths: Iterable[str | Path] | None, thresholds: Thresholds) -> tuple[list[Rule], list[str]]:
    rules: list[Rule] = []
    errors: list[str] = []
    seen: dict[str, str] = {}
    engine = {name: thresholds.value(name) for name in ENGINE_PARAMETERS}
    for path in builtin_packs() if paths is None else [Path(p) for p in paths]:
        doc, errs = read_rule_file(path)
        errors += errs
        if errs:
            continue
        found, errs = parse_rules(doc, str(path), thresholds)
        errors += errs
        for rule in found:
            if rule.id in seen:
                errors.append(f"{path}: rule id {rule.id!r} is also defined in {seen[rule.id]}")
                continue
            seen[rule.id] = str(path)
            rules.append(_with_engine(rule, engine))
    return rules, errors


def _with_engine(rule: Rule, engine: dict[str, Any]) -> Rule:
    """Fold the engine parameters into the rule's parameters and hash: they change what the rule sees."""
    digest = hashlib.sha256((rule.content_hash + repr(sorted(engine.items()))).encode()).hexdigest()
    return replace(rule, parameters={**rule.parameters, **engine}, content_hash=digest)


def load_rules(paths: Iterable[str | Path] | None = None, thresholds: ThresholdsArg = None) -> list[Rule]:
    """Read and check rule files (default: the built-in packs) against thresholds (default + overrides).

    `thresholds` is an override file, a mapping `{name: value}`, a list of those applied in
    order, or a `Thresholds`. Raises RuleError listing every problem with file and path.
    """
    rules, errors = _load(paths, _thresholds(thresholds))
    if errors:
        raise RuleError(errors)
    return rules


def validate_rule_file(path: str | Path, thresholds: ThresholdsArg = None) -> list[str]:
    """Every problem in one rule file (and in the thresholds it is checked against); empty when valid."""
    try:
        t = _thresholds(thresholds)
    except RuleError as exc:
        return exc.errors
    return _load([path], t)[1]


def rule_table(rules: Iterable[Rule]) -> pl.DataFrame:
    """One row per rule, for `tianluo rules list` and the docs: id, names, codes, version tag, cost, source."""
    rows = [
        {
            "id": r.id, "name": r.name, "name_zh": r.name_zh, "report_kind": r.report_kind, "typology": r.typology,
            "crcd": r.crcd, "tosc": ",".join(r.tosc) or None, "goaml_indicator": r.goaml_indicator, "stcr": r.stcr,
            "severity": r.severity, "score": r.score, "subject": r.subject,
            "window": r.window.text or r.window.kind, "version": r.version_tag, "cost": r.cost, "source": r.source,
        }
        for r in rules
    ]
    return pl.DataFrame(rows, infer_schema_length=None)


# --- reasons --------------------------------------------------------------------------------------------


def _format(value: Any, fmt: str) -> str:
    if value is None:
        return "n/a"
    if fmt and "=" in fmt:
        words = dict(pair.split("=", 1) for pair in fmt.split(","))
        return words.get(str(value), str(value))
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, int | float):
        number = float(value)
        formats = {
            "cny": f"¥{number:,.2f}", "cny0": f"¥{number:,.0f}", "usd": f"US${number:,.2f}",
            "usd0": f"US${number:,.0f}", "int": f"{number:,.0f}", "pct": f"{number * 100:.1f}%",
            "num": f"{number:,.2f}",
        }
        if fmt in formats:
            return formats[fmt]
        return f"{number:,.0f}" if number.is_integer() else f"{number:,.2f}"
    return str(value)


def render(template: Iterable[str | Placeholder], values: Mapping[str, Any]) -> str:
    """Fill a checked reason template with one alert's values (only names the checker allowed)."""
    return "".join(p if isinstance(p, str) else _format(values.get(p.name), p.fmt) for p in template)


# --- the detector ---------------------------------------------------------------------------------------


class _RuleIdentity(Detector):
    """Names one rule to `finish_alerts`, so its alerts carry the rule's id and version tag."""

    kind = "rule"

    def __init__(self, rule: Rule, owner: RuleDetector) -> None:
        self.name = rule.id
        self.version = rule.version_tag
        self.shadow = owner.shadow
        self._owner = owner
        self._rule = rule

    def detect(self, data: DetectInput) -> pa.Table:
        return self._owner.detect(data, only=[self._rule.id])


class RuleDetector(Detector):
    """Runs rules (default: the built-in packs) over a `DetectInput` and returns their alerts.

    `thresholds` must be the ones the rules were loaded with (it also fixes the time zone and
    the internal account types of the leg view); `fx` converts to USD equivalents (default:
    the packaged FX table). `timings_` holds the seconds each rule took in the last run.
    `shadow=True` runs the rules as a candidate beside the live version: their alerts are
    stored with `shadow = true` and never queued (see `Detector`).
    """

    kind = "rule"
    name = "rules"

    def __init__(self, rules: Iterable[Rule] | None = None, *, thresholds: ThresholdsArg = None,
                 fx: FxTable | None = None, shadow: bool = False) -> None:
        self.shadow = shadow
        self.thresholds = _thresholds(thresholds)
        self.rules = list(rules) if rules is not None else load_rules(thresholds=self.thresholds)
        for rule in self.rules:
            for name in ENGINE_PARAMETERS:
                if name in rule.parameters and rule.parameters[name] != self.thresholds.value(name):
                    raise ValueError(
                        f"rule {rule.id} was loaded with {name}={rule.parameters[name]!r} but the detector uses "
                        f"{self.thresholds.value(name)!r}; pass the same thresholds to load_rules and RuleDetector"
                    )
        self.fx = fx if fx is not None else FxTable.load()
        self.plans = [Plan.compile(r) for r in self.rules]
        self.version = hashlib.sha256("|".join(r.version_tag for r in self.rules).encode()).hexdigest()[:12]
        self.timings_: dict[str, float] = {}

    def legs(self, data: DetectInput) -> pl.DataFrame:
        """The leg view of the input (what every rule reads), for inspection and tests."""
        return build_legs(data.transactions, data.accounts, data.parties, self.thresholds, self.fx)

    def detect(self, data: DetectInput, only: Iterable[str] | None = None) -> pa.Table:
        """Alerts of every rule (or of the rule ids in `only`), concatenated in rule order."""
        wanted = set(only) if only is not None else None
        start = time.perf_counter()
        legs = self.legs(data)
        self.timings_ = {"legs": time.perf_counter() - start}
        tables = []
        for plan in self.plans:
            if wanted is not None and plan.rule.id not in wanted:
                continue
            start = time.perf_counter()
            tables.append(self.alerts_of(plan, plan.run(legs)))
            self.timings_[plan.rule.id] = time.perf_counter() - start
        if not tables:
            return _empty_alerts()
        return pa.concat_tables(tables)

    def alerts_of(self, plan: Plan, body: pl.DataFrame) -> pa.Table:
        """Alert rows of one rule from its `Plan.run` body, in the body's row order.

        Kept apart from `detect` so a backtest can read each alert's measures (the body's
        `__m_` columns) beside the finished alert.
        """
        rule = plan.rule
        tz = self.thresholds.value("timezone")
        body = body.with_columns(
            pl.col("ts_start").dt.convert_time_zone(tz).alias("__local_start"),
            pl.col("ts_end").dt.convert_time_zone(tz).alias("__local_end"),
        )
        window = rule.window.text or rule.window.kind
        reasons = []
        provenance = f"STCR {rule.stcr}: rule {rule.id} {rule.version_tag} ({rule.name_zh})"
        for row in body.iter_rows(named=True):
            values = {
                **{k: v for k, v in rule.parameters.items()},
                **{k[4:]: v for k, v in row.items() if k.startswith("__m_")},
                **{c: row[c] for c in rule.by},
                "subject": row["subject_id"], "subject_type": row["subject_type"], "day": row["day"],
                "window": window, "txn_count": row["txn_count"], "amount_cny": row["amount_cny"],
                "ts_start": row["__local_start"], "ts_end": row["__local_end"],
            }
            texts = [render(rule.reason, values)]
            if rule.reason_zh:
                texts.append(render(rule.reason_zh, values))
            reasons.append([*texts, provenance])
        out = body.select(
            "subject_type", "subject_id", "ts_start", "ts_end", "txn_ids", "accounts", "amount_cny",
        ).with_columns(
            score=pl.lit(rule.score),
            typology=pl.lit(rule.typology),
            reasons=pl.Series(reasons, dtype=pl.List(pl.String)),
            report_kind=pl.lit(rule.report_kind),
            crcd=pl.lit(rule.crcd, pl.String),
            tosc=pl.lit(",".join(rule.tosc) or None, pl.String),
            goaml_indicator=pl.lit(rule.goaml_indicator, pl.String),
        )
        return finish_alerts(out, _RuleIdentity(rule, self))


def _empty_alerts() -> pa.Table:
    return pa.schema([pa.field(f.name, f.type, nullable=True) for f in ALERTS.fields]).empty_table()
