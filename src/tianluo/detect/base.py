"""One interface for every detector (rules, temporal-graph miners, models) and the alert rows they emit.

A detector has scikit-learn's shape: parameters in `__init__`, `fit` learns (a no-op
for rules and miners), `detect` returns alert rows. Feature extractors have the same
shape with `transform`, so they drop into a model pipeline. Every alert carries the
detector's name and version, and a deterministic `alert_id` built from the detector,
the subject and the evidence transactions, so that re-running detection on the same
data adds no duplicate alerts even after a version bump.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

import polars as pl
import pyarrow as pa

from tianluo.schema import ALERTS

Kind = Literal["rule", "miner", "model"]

#: Columns a detector fills in; `detector`, `detector_version`, `kind`, `shadow` and `alert_id`
#: are added by `finish_alerts`, `run_id` by the detection run.
ALERT_BODY = [
    f.name
    for f in ALERTS.fields
    if f.name not in ("alert_id", "detector", "detector_version", "kind", "run_id", "shadow")
]


@dataclass
class DetectInput:
    """What a detector sees: canonical tables, transactions sorted by (ts, txn_id).

    `transactions` is a Polars DataFrame with the columns of `schema.TRANSACTIONS`;
    `accounts` and `parties` likewise (possibly empty). Detectors must not assume labels
    are present (`label`, `typology` are ground truth for evaluation only).
    """

    transactions: pl.DataFrame
    accounts: pl.DataFrame
    parties: pl.DataFrame


class Detector(ABC):
    """Base class: set `name`, `version`, `kind`; implement `detect`.

    `shadow = True` marks a candidate version run beside the live one: its alerts are stored
    with `shadow = true` (and ids of their own, so a shadow finding never stands in for the
    live alert of the same fact) and stay out of the queue, reports and tracing.
    """

    name: str = ""
    version: str = "1"
    kind: Kind = "rule"
    shadow: bool = False

    def fit(self, data: DetectInput) -> Detector:
        """Learn from history (models); rules and miners have nothing to learn."""
        return self

    @abstractmethod
    def detect(self, data: DetectInput) -> pa.Table:
        """Alert rows (schema `ALERTS` minus `run_id`); build them with `finish_alerts`."""


class FeatureExtractor(ABC):
    """scikit-learn-shaped transformer: one output row per input transaction, same order."""

    name: str = ""
    version: str = "1"

    def fit(self, transactions: pl.DataFrame) -> FeatureExtractor:
        return self

    @abstractmethod
    def transform(self, transactions: pl.DataFrame) -> pl.DataFrame:
        """Feature columns (numeric, named for people: `fan_in_count_24h`), aligned with the input rows."""

    def fit_transform(self, transactions: pl.DataFrame) -> pl.DataFrame:
        return self.fit(transactions).transform(transactions)


def alert_id(detector: str, subject_id: str, txn_ids: list[str], *, shadow: bool = False) -> str:
    """Deterministic alert id: the same finding on the same evidence always has the same id.

    A shadow finding hashes differently from the live one: otherwise a shadow run would make the
    live alert of the same fact "already known" and it would never reach the queue.
    """
    h = hashlib.blake2b(digest_size=12)
    h.update(detector.encode())
    if shadow:
        h.update(b"\x00shadow")
    h.update(b"\x00" + subject_id.encode() + b"\x00")
    for t in sorted(txn_ids):
        h.update(t.encode() + b"\x01")
    return h.hexdigest()


def finish_alerts(body: pl.DataFrame, detector: Detector) -> pa.Table:
    """Complete alert rows from a detector's columns (`ALERT_BODY`) and check them against the schema.

    Missing optional columns are filled with nulls; a missing required column is a
    programming error and raises.
    """
    spec = {f.name: f for f in ALERTS.fields}
    cols = {}
    for name in ALERT_BODY:
        if name in body.columns:
            cols[name] = body[name]
        elif spec[name].required:
            raise ValueError(f"{detector.name}: alert column {name!r} is required")
        else:
            cols[name] = pl.Series(name, [None] * body.height, dtype=pl.from_arrow(pa.array([], spec[name].type)).dtype)
    df = pl.DataFrame(cols)
    shadow = bool(detector.shadow)
    ids = [
        alert_id(detector.name, s, t, shadow=shadow)
        for s, t in zip(df["subject_id"].to_list(), df["txn_ids"].to_list(), strict=True)
    ]
    df = df.with_columns(
        alert_id=pl.Series(ids, dtype=pl.String),
        detector=pl.lit(detector.name),
        detector_version=pl.lit(detector.version),
        kind=pl.lit(detector.kind),
        run_id=pl.lit(None, pl.String),
        shadow=pl.lit(shadow),
    )
    table = df.select(ALERTS.names).to_arrow()
    schema = pa.schema([pa.field(f.name, f.type, nullable=True) for f in ALERTS.fields])
    return table.cast(schema)
