"""Typology-miner instances as model features: per transaction, how many instances of each miner it is evidence of.

The miners (fan-in, fan-out, cycle, scatter-gather, …) see a whole pattern at once: a
ring that turns, twenty payers feeding one hub. A per-transaction model sees one payment
and windows around its two accounts; it can rebuild a fan from counts but not a ring of
six accounts over a month. Telling the model "this payment is a leg of 2 fan-out and 1
cycle instance" hands it the miners' structural judgement, and lets it weigh a miner that
is noisy on one bank's data against its other evidence instead of queueing every instance.

When an instance counts for a row is the point of the two modes:

- causal (`horizon=None`, the real-time path): only instances already complete when the
  row is scored, `ts_end <= ts`. The legs before the last one of a pattern were scored
  before anyone could know the pattern, so they get 0 (as `features.rule_indicators`
  does for rule hits);
- settled (`horizon="1d"`, T+1 batch): instances complete within H after the row,
  `ts_end <= ts + H`, matching `GraphFeatures(horizon=...)`'s look-ahead. A row is scored
  once H has passed, so every instance it counts is already known then.

**Caveat, honestly:** the miners run over the whole history handed to `transform`, and which
instances they report can depend on rows after an instance's `ts_end`: candidate edges are
pairs with at most `max_pair_txns` payments *in the input* (a pair that pays again later
stops being a candidate), hub-share tests look at the hub's whole input, and overlapping
instances are merged or de-duplicated over the input. So the filter above guarantees that a
row never counts an instance ending after its own time (+ H), which is what the tests check,
but not that appending later rows leaves an earlier row's counts unchanged, as the graph and
history features guarantee. A scorer that runs the miners over the history it has at the
time reproduces the counts only up to that effect (docs/models.md measures it).

Vectorised: one miner run per miner, then Polars explode / join / group-by; no Python loop
over rows.
"""

from __future__ import annotations

import polars as pl

from tianluo.detect.base import DetectInput, Detector, FeatureExtractor
from tianluo.detect.graph_features import parse_window
from tianluo.detect.miners import DEFAULT_PROFILE, default_miners

_US = 1_000_000
#: Column prefix; the rest is the miner's profile key (`fan_in`, `cycle`, …) or `total`.
PREFIX = "miner_instances_"


def _key(miner_name: str) -> str:
    """A miner's profile key (`miner_fan_in` → `fan_in`), the name profiles and `miner_classes` use."""
    return miner_name.removeprefix("miner_")


class MinerFeatures(FeatureExtractor):
    """Per transaction and miner of `profile`, the miner instances (alerts) it is evidence of, complete in time.

    Columns (Float64, fixed by the profile whatever the data, so training and scoring frames
    line up): `miner_instances_<key>` for each miner the profile runs (`fan_in`, `fan_out`,
    `cycle`, …) and `miner_instances_total`, their sum. A row counts an instance when its
    `txn_id` is in the instance's `txn_ids` and `ts_end <= ts` (causal, `horizon=None`) or
    `ts_end <= ts + horizon` (settled). `profile` is a built-in name (`core-banking`, the
    default, `amlworld`, `amlsim`) or a profile file; `accounts` (optional) lets the miners
    leave the bank's internal accounts out, as `tianluo detect` does. `profile` and `horizon`
    are kept as plain attributes so a model file (`model.extractor_spec`) rebuilds the same
    extractor. See the module docstring for what causal does and does not promise here.
    """

    name = "miner_instances"
    version = "1"

    def __init__(
        self,
        profile: str | None = None,
        horizon: str | None = None,
        accounts: pl.DataFrame | None = None,
    ) -> None:
        self.profile = profile
        self.horizon = horizon
        self.accounts = accounts
        # Refuse a bad profile or horizon when the pipeline is built, not minutes into training.
        self._horizon_s = 0 if horizon is None else parse_window(horizon)
        self._keys = [_key(m.name) for m in self._miners()]

    def _miners(self) -> list[Detector]:
        return default_miners(self.profile or DEFAULT_PROFILE)

    @property
    def feature_names(self) -> list[str]:
        return [PREFIX + k for k in self._keys] + [PREFIX + "total"]

    def transform(self, transactions: pl.DataFrame) -> pl.DataFrame:
        """Feature columns aligned with `transactions` (which need not be sorted)."""
        names = self.feature_names
        n = transactions.height
        if n == 0:
            return pl.DataFrame(schema={c: pl.Float64 for c in names})
        rows = transactions.select("txn_id", ts=pl.col("ts").dt.epoch("us")).with_row_index("row")
        # Miners expect (ts, txn_id) order (DetectInput's contract); counts go back by txn_id.
        data = DetectInput(
            transactions.sort(["ts", "txn_id"]),
            self.accounts if self.accounts is not None else pl.DataFrame(),
            pl.DataFrame(),
        )
        found = [
            pl.from_arrow(miner.detect(data))
            .select("txn_ids", ts_end=pl.col("ts_end").dt.epoch("us"))
            .with_row_index("instance")
            .with_columns(miner=pl.lit(_key(miner.name)))
            for miner in self._miners()
        ]
        instances = pl.concat(found).filter(pl.col("ts_end").is_not_null())
        legs = (
            instances.explode("txn_ids")
            .rename({"txn_ids": "txn_id"})
            .unique(["miner", "instance", "txn_id"])  # an instance counts once per transaction
            .join(rows, on="txn_id", how="inner")
            .filter(pl.col("ts_end") <= pl.col("ts") + self._horizon_s * _US)
        )
        counts = legs.group_by("row").agg(
            [(pl.col("miner") == k).sum().cast(pl.Float64).alias(PREFIX + k) for k in self._keys]
        )
        out = rows.select("row").join(counts, on="row", how="left", maintain_order="left").drop("row").fill_null(0.0)
        return out.with_columns(pl.sum_horizontal(names[:-1]).alias(names[-1])).select(names)
