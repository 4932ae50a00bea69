"""A detection run: every configured detector over a dataset, new alerts committed, known ones skipped.

Alert ids are deterministic (detector, subject, evidence), so the run appends only
alerts whose id the dataset does not have yet: re-running detection on the same data
adds nothing, and a rule's new version re-finding the same facts does not duplicate
them. The run is one atomic write, like an ingest.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from tianluo.detect.base import DetectInput, Detector
from tianluo.detect.profiles import Profile
from tianluo.schema import ALERTS
from tianluo.store import Dataset

Progress = Callable[[str], None]


@dataclass
class DetectResult:
    """What a run did: alerts per detector (new and already known) and where they went."""

    run_id: str
    new: dict[str, int] = field(default_factory=dict)
    known: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def total_new(self) -> int:
        return sum(self.new.values())


def load_input(ds: Dataset) -> DetectInput:
    """The dataset's canonical tables as Polars frames, transactions in (ts, txn_id) order."""
    con = ds.connect()
    try:
        tx = pl.from_arrow(con.sql("SELECT * FROM transactions ORDER BY ts, txn_id").to_arrow_table())
        accounts = pl.from_arrow(con.sql("SELECT * FROM accounts").to_arrow_table())
        parties = pl.from_arrow(con.sql("SELECT * FROM parties").to_arrow_table())
    finally:
        con.close()
    assert isinstance(tx, pl.DataFrame) and isinstance(accounts, pl.DataFrame) and isinstance(parties, pl.DataFrame)
    return DetectInput(tx, accounts, parties)


def default_detectors(
    ds: Dataset, *, thresholds: Path | None = None, profile: str | Path | Profile | None = None
) -> list[Detector]:
    """Built-in rule packs, the typology miners of `profile`, and the latest registered model if there is one.

    `profile` is a built-in miner profile name (`core-banking`, the default; `amlworld`;
    `amlsim`), a profile file or a loaded `Profile`. It is loaded and checked first, so
    an invalid profile raises `ProfileError` before any detector is built.
    """
    from tianluo.detect.miners import default_miners
    from tianluo.detect.rules import RuleDetector, load_rules

    miners = default_miners(profile)
    detectors: list[Detector] = [
        RuleDetector(load_rules(thresholds=thresholds), thresholds=thresholds),
        *miners,
    ]
    models = ds.root / "models"
    if models.exists():
        from tianluo.detect.model import ModelDetector
        from tianluo.detect.registry import ModelRegistry

        reg = ModelRegistry(models)
        for name in sorted({m["name"] for m in reg.list()}):
            detectors.append(ModelDetector.from_registry(reg, name))
    return detectors


def run_detection(
    ds: Dataset,
    detectors: Sequence[Detector] | None = None,
    *,
    data: DetectInput | None = None,
    progress: Progress | None = None,
) -> DetectResult:
    """Run `detectors` (default: `default_detectors`) over `ds` and commit the new alerts."""
    detectors = list(detectors) if detectors is not None else default_detectors(ds)
    data = data if data is not None else load_input(ds)
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    result = DetectResult(run_id)
    found: list[pa.Table] = []
    for det in detectors:
        if progress:
            progress(det.name)
        t0 = time.perf_counter()
        alerts = det.detect(data)
        result.seconds[det.name] = round(time.perf_counter() - t0, 3)
        found.append(alerts)
    schema = ALERTS.arrow
    nullable = pa.schema([pa.field(f.name, f.type, nullable=True) for f in schema])
    table = pa.concat_tables([t.cast(nullable) for t in found]) if found else nullable.empty_table()
    table = table.set_column(table.schema.get_field_index("run_id"), "run_id", pa.array([run_id] * table.num_rows))
    # The same finding can come from one detector twice (overlapping windows): keep the first.
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    df = df.unique("alert_id", keep="first", maintain_order=True)
    df = link_instances(df)
    with ds.writing():
        existing = {a for p in ds.files("alerts") for a in pq.read_table(p, columns=["alert_id"]).column(0).to_pylist()}
        is_new = ~df["alert_id"].is_in(list(existing)) if existing else pl.Series([True] * df.height)
        fresh = df.filter(is_new)
        # Shadow alerts are counted apart from the live ones of the same rule.
        label = pl.when(pl.col("shadow")).then(pl.col("detector") + " (shadow)").otherwise(pl.col("detector"))
        for name, n in df.filter(~is_new).group_by(label).len().iter_rows():
            result.known[name] = n
        for name, n in fresh.group_by(label).len().iter_rows():
            result.new[name] = n
        if fresh.height == 0:
            return result
        stage = ds.staging(run_id)
        out = stage / "final" / "alerts" / f"part-{run_id}.parquet"
        out.parent.mkdir(parents=True)
        pq.write_table(fresh.to_arrow().cast(schema), out, compression="zstd")
        ds.commit(
            run_id,
            "detect",
            {"alerts": [out]},
            {
                "detectors": {d.name: d.version for d in detectors},
                "counts": {"new": result.new, "known": result.known},
            },
        )
    return result


def link_instances(alerts: pl.DataFrame) -> pl.DataFrame:
    """Give each model alert the typology-miner instance its transaction belongs to, when there is one.

    A model scores one transaction; the miners see the pattern around it. An investigator
    opening a model alert should see at once that the payment is one leg of, say, a fan-in
    the miners found, and go to that instance: the model alert takes the instance's typology
    (if it has none) and a reason naming the pattern and the miner alert's id. Of several
    instances the strongest (highest score) is named. Shadow alerts are neither linked nor
    linked to.
    """
    if alerts.height == 0:
        return alerts
    live = ~pl.col("shadow").fill_null(False) if "shadow" in alerts.columns else pl.lit(True)
    miners = (
        alerts.filter((pl.col("kind") == "miner") & live)
        .select(pl.col("txn_ids").alias("txn_id"), "alert_id", "typology", "score")
        .explode("txn_id")
        .sort(["score", "alert_id"], descending=[True, False])
        .unique("txn_id", keep="first")
        .rename({"alert_id": "instance_id", "typology": "instance_typology", "score": "instance_score"})
    )
    models = alerts.filter((pl.col("kind") == "model") & live)
    if miners.height == 0 or models.height == 0:
        return alerts
    links = (
        models.select("alert_id", pl.col("txn_ids").list.first().alias("txn_id"))
        .join(miners, on="txn_id", how="inner")
        .select("alert_id", "instance_id", "instance_typology")
    )
    if links.height == 0:
        return alerts
    words = pl.format(
        "part of a {} pattern the typology miners found (alert {})",
        pl.col("instance_typology").fill_null("typology").str.replace_all("_", " "),
        pl.col("instance_id"),
    )
    out = alerts.join(links, on="alert_id", how="left", maintain_order="left").with_columns(
        typology=pl.coalesce("typology", "instance_typology"),
        reasons=pl.when(pl.col("instance_id").is_not_null())
        .then(pl.concat_list("reasons", pl.concat_list(words)))
        .otherwise(pl.col("reasons")),
    )
    return out.drop("instance_id", "instance_typology")
