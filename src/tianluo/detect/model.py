"""Train a LightGBM transaction scorer on a temporal split, pick its alert threshold, explain and detect with it.

The protocol is the one a model-risk reviewer asks for: rows are split by time
(train on the past, tune on the next period, report on the period after that),
so no future transaction informs a past score; the alert threshold is chosen on
the validation period only; the test period is scored exactly once.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import lightgbm as lgb
import numpy as np
import polars as pl
import pyarrow as pa
from sklearn.metrics import precision_recall_curve

from tianluo.detect.base import DetectInput, Detector, FeatureExtractor, finish_alerts
from tianluo.detect.evaluate import evaluate
from tianluo.detect.features import TransactionFeatures, assemble_features, describe_feature
from tianluo.detect.graph_features import GraphFeatures

if TYPE_CHECKING:
    from tianluo.detect.registry import ModelRegistry

#: LightGBM settings for a rare positive class. Early stopping watches average precision
#: (PR-AUC) on the validation period, which tracks ranking quality on the minority class
#: (log-loss would mostly reward getting licit traffic right). `scale_pos_weight` (set by
#: `train` to licit / illicit, ~200 on the simulator) makes each illicit row count as much
#: as all licit rows together; `max_delta_step` caps the leaf values such large weights
#: would otherwise blow up, which is what kept test F1 stable (0.89-0.91 over four seeds
#: instead of 0.15-0.91). One thread: on shared cores OpenMP's busy-waiting made two
#: threads 8x slower than one (157 s vs 20 s); raise `num_threads` on a dedicated machine.
DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "metric": "average_precision",
    "learning_rate": 0.1,
    "num_leaves": 31,
    "min_child_samples": 20,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "max_delta_step": 1.0,
    "num_iterations": 500,
    "early_stopping_round": 50,
    "first_metric_only": True,
    "num_threads": 1,
    "deterministic": True,
    "force_row_wise": True,
    "verbose": -1,
}
_PARTS = ("train", "validation", "test")


def temporal_split(ts: pl.Series, split: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> np.ndarray:
    """Part of each row (0 train, 1 validation, 2 test), cutting the time-sorted rows at the `split` shares.

    Cuts fall between distinct timestamps, so every training row is strictly earlier
    than every validation row and every validation row strictly earlier than every
    test row, even when many transactions share one instant (daily-stamped sources).
    """
    if len(split) != 3 or min(split) <= 0 or abs(sum(split) - 1) > 1e-9:
        raise ValueError(f"split must be three positive shares summing to 1 (got {split})")
    t = ts.dt.epoch("us").to_numpy()
    ordered = np.sort(t)
    n = len(t)
    c1 = ordered[min(round(split[0] * n), n - 1)]
    c2 = ordered[min(round((split[0] + split[1]) * n), n - 1)]
    part = np.where(t < c1, 0, np.where(t < c2, 1, 2))
    counts = np.bincount(part, minlength=3)
    if (counts == 0).any():
        raise ValueError(
            f"temporal split {split} leaves a period empty (rows per period: {counts.tolist()}); "
            "the data spans too few distinct timestamps"
        )
    return part


def best_f1_threshold(y_true: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold that maximises the illicit class's F1 (ties go to the higher threshold: fewer alerts)."""
    if not np.asarray(y_true).any():
        raise ValueError("cannot choose a threshold: the validation period has no illicit transactions")
    precision, recall, thresholds = precision_recall_curve(y_true, scores)
    p, r = precision[:-1], recall[:-1]
    f1 = np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=(p + r) > 0)
    return float(thresholds[len(f1) - 1 - int(np.argmax(f1[::-1]))])


def feature_matrix(features: pl.DataFrame, names: Sequence[str]) -> np.ndarray:
    """The float matrix LightGBM reads, columns in `names` order, null as NaN (LightGBM's missing value)."""
    missing = [c for c in names if c not in features.columns]
    if missing:
        raise ValueError(f"feature columns missing: {missing}; score with the extractors the model was trained with")
    return features.select([pl.col(c).cast(pl.Float64).fill_null(float("nan")) for c in names]).to_numpy()


#: Values a spec can hold as a constructor argument (they survive a JSON round trip).
_JSONABLE = (str, int, float, bool, type(None))


def extractor_spec(extractor: FeatureExtractor) -> dict[str, Any]:
    """How to rebuild an extractor at scoring time: class, name, version and its plain constructor arguments.

    Arguments are read back from same-named attributes (scikit-learn's convention);
    `accounts` is left out because scoring supplies the accounts of the data it scores,
    and an argument that is not plain data (an alerts table) is listed in `unsaved`, so
    rebuilding says what to pass instead of silently using a default.
    """
    cls = type(extractor)
    params: dict[str, Any] = {}
    unsaved: list[str] = []
    for arg in inspect.signature(cls).parameters:
        if arg == "accounts" or not hasattr(extractor, arg):
            continue
        value = getattr(extractor, arg)
        if isinstance(value, tuple | list) and all(isinstance(v, _JSONABLE) for v in value):
            params[arg] = list(value)
        elif isinstance(value, _JSONABLE):
            params[arg] = value
        else:
            unsaved.append(arg)
    return {
        "class": f"{cls.__module__}:{cls.__qualname__}",
        "name": extractor.name,
        "version": extractor.version,
        "params": params,
        "unsaved": unsaved,
    }


def build_extractors(specs: Sequence[dict[str, Any]], accounts: pl.DataFrame | None = None) -> list[FeatureExtractor]:
    """Rebuild a model's extractors from their specs; an extractor taking `accounts=` gets the accounts table.

    Only classes inside `tianluo` are imported (a meta.json must not be able to import
    arbitrary code), and a version other than the one the model was trained with raises:
    the features would mean something else and the scores would be wrong without error.
    """
    out: list[FeatureExtractor] = []
    for spec in specs:
        module, _, qualname = spec["class"].partition(":")
        if not module.startswith("tianluo."):
            raise ValueError(f"refusing to import feature extractor {spec['class']!r}: not part of tianluo")
        if spec.get("unsaved"):
            raise ValueError(
                f"feature extractor {spec['name']!r} was built with {spec['unsaved']}, which a model file cannot "
                "hold; pass the fitted extractors explicitly"
            )
        cls = getattr(importlib.import_module(module), qualname)
        kwargs = dict(spec.get("params", {}))
        if "accounts" in inspect.signature(cls).parameters:
            kwargs["accounts"] = accounts
        extractor = cls(**kwargs)
        if extractor.version != spec["version"]:
            raise ValueError(
                f"the model was trained with {spec['name']!r} version {spec['version']}, but version "
                f"{extractor.version} is installed; retrain the model"
            )
        out.append(extractor)
    return out


def default_extractors(
    accounts: pl.DataFrame | None = None, graph_windows: Sequence[str] | None = None
) -> list[FeatureExtractor]:
    """Raw transaction features (with account age and type from `accounts`) and the temporal-graph features.

    `graph_windows` replaces the graph features' default windows (1 d, 7 d, 30 d): a bank whose
    history is short, or whose validation shows the 30-day columns drifting (docs/models.md),
    trains with ("1d", "7d").
    """
    graph = GraphFeatures() if graph_windows is None else GraphFeatures(windows=tuple(graph_windows))
    return [TransactionFeatures(accounts), graph]


def data_fingerprint(transactions: pl.DataFrame, label_col: str = "label") -> dict[str, Any]:
    """What a model was trained on: ingest runs, rows, time range, label counts (the caller adds the dataset root)."""
    labels = transactions[label_col] if label_col in transactions.columns else pl.Series([None] * transactions.height)
    ingest_ids = transactions["ingest_id"].unique().sort().to_list() if "ingest_id" in transactions.columns else []
    ts = transactions["ts"]
    return {
        "dataset": None,
        "ingest_ids": ingest_ids,
        "rows": transactions.height,
        "first_ts": ts.min().isoformat() if transactions.height else None,
        "last_ts": ts.max().isoformat() if transactions.height else None,
        "labels": {
            "licit": int((labels == 0).sum()),
            "illicit": int((labels == 1).sum()),
            "unknown": int(labels.is_null().sum()),
        },
    }


@dataclass
class TrainedModel:
    """A trained scorer: booster, the feature columns it reads, its alert threshold, and how it was made.

    `metrics` holds `windows` (rows, positives, first and last ts of each period),
    `validation` and `test` (`evaluate()` output at `threshold`) and `best_iteration`.
    `extractors` are specs (`extractor_spec`) to rebuild the feature pipeline at scoring time.
    """

    booster: lgb.Booster
    feature_names: list[str]
    threshold: float
    params: dict[str, Any]
    metrics: dict[str, Any]
    extractors: list[dict[str, Any]]
    training_data: dict[str, Any] = field(default_factory=dict)

    def predict_proba(self, features: pl.DataFrame) -> np.ndarray:
        """scikit-learn's shape: column 0 P(licit), column 1 P(illicit) (uncalibrated when classes are reweighted)."""
        p = self.booster.predict(feature_matrix(features, self.feature_names))
        return np.column_stack([1.0 - p, p])

    def reasons(self, features: pl.DataFrame, top: int = 3) -> list[list[str]]:
        """For each row, the `top` features that pushed its score up most (SHAP values), in words with their values.

        Only positive contributions are reasons: a feature that made the transaction look
        more ordinary does not explain why it was flagged.
        """
        x = feature_matrix(features, self.feature_names)
        contrib = np.asarray(self.booster.predict(x, pred_contrib=True))[:, : len(self.feature_names)]
        order = np.argsort(-contrib, axis=1, kind="stable")[:, :top]
        out = []
        for i in range(x.shape[0]):
            row = dict(zip(self.feature_names, x[i].tolist(), strict=True))
            out.append([describe_feature(self.feature_names[j], row) for j in order[i] if contrib[i, j] > 0])
        return out


def train(
    transactions: pl.DataFrame,
    extractors: Sequence[FeatureExtractor],
    *,
    label_col: str = "label",
    params: dict[str, Any] | None = None,
    split: tuple[float, float, float] = (0.6, 0.2, 0.2),
    seed: int = 0,
) -> TrainedModel:
    """Fit a LightGBM classifier of `label_col` on the earliest rows, stop and threshold on the next, test on the last.

    Features are computed over the whole history (they are causal, so a validation row's
    7-day window may reach into the training period, exactly as in production). The
    extractors are fitted on the training period only. Rows without a label are used as
    history but neither trained nor scored on. Imbalance is handled by `scale_pos_weight`
    = licit / illicit in the training period unless `params` sets it (or `is_unbalance`).
    """
    tx = transactions.sort(["ts", "txn_id"])
    part = temporal_split(tx["ts"], split)
    for ex in extractors:
        ex.fit(tx.filter(pl.Series(part == 0)))
    features = assemble_features(tx, extractors)
    names = features.columns
    x = feature_matrix(features, names)
    labels = tx[label_col]
    known = labels.is_not_null().to_numpy()
    y = labels.fill_null(0).cast(pl.Int8).to_numpy().astype(np.int8)
    rows = {p: np.flatnonzero((part == i) & known) for i, p in enumerate(_PARTS)}
    for p in ("train", "validation"):
        if not y[rows[p]].any():
            raise ValueError(f"the {p} period has no illicit ({label_col} = 1) transactions; use more or longer data")

    settings = {**DEFAULT_PARAMS, "seed": seed, **(params or {})}
    if "scale_pos_weight" not in settings and not settings.get("is_unbalance"):
        pos = int(y[rows["train"]].sum())
        settings["scale_pos_weight"] = (len(rows["train"]) - pos) / pos
    dtrain = lgb.Dataset(x[rows["train"]], y[rows["train"]], feature_name=names, free_raw_data=True)
    dvalid = lgb.Dataset(x[rows["validation"]], y[rows["validation"]], reference=dtrain)
    booster = lgb.train(settings, dtrain, valid_sets=[dvalid], valid_names=["validation"])
    best = booster.best_iteration or booster.current_iteration()
    # Keep only the trees up to the best iteration, so the model in memory is the one saved.
    booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))

    def scores(p: str) -> np.ndarray:
        return booster.predict(x[rows[p]])

    typology = tx["typology"].to_numpy() if "typology" in tx.columns else None
    threshold = best_f1_threshold(y[rows["validation"]], scores("validation"))
    ts = tx["ts"]
    windows = {
        p: {
            "rows": len(r),
            "positives": int(y[r].sum()),
            "first_ts": ts[int(np.flatnonzero(part == i)[0])].isoformat(),
            "last_ts": ts[int(np.flatnonzero(part == i)[-1])].isoformat(),
        }
        for i, (p, r) in enumerate(rows.items())
    }
    metrics: dict[str, Any] = {"best_iteration": best, "windows": windows}
    for p in ("validation", "test"):
        r = rows[p]
        metrics[p] = evaluate(y[r], scores(p), threshold, None if typology is None else typology[r])
    return TrainedModel(
        booster=booster,
        feature_names=names,
        threshold=threshold,
        params=settings,
        metrics=metrics,
        extractors=[extractor_spec(ex) for ex in extractors],
        training_data=data_fingerprint(tx, label_col),
    )


class ModelDetector(Detector):
    """Score transactions with a trained model; alert on each at or above its threshold, with reason codes.

    The alert's subject is the paying account, its evidence the one transaction. The
    feature pipeline is rebuilt from the model's extractor specs unless fitted
    `extractors` are given (needed for extractors with arguments, such as `RuleFeatures`).
    Usually built with `from_registry`, which names it `model_<name>` at the registered version.
    """

    kind = "model"

    def __init__(
        self,
        model: TrainedModel,
        name: str = "model_default",
        version: str = "1",
        *,
        extractors: Sequence[FeatureExtractor] | None = None,
    ) -> None:
        self.model = model
        self.name = name
        self.version = version
        self.extractors = extractors

    @classmethod
    def from_registry(
        cls,
        registry: ModelRegistry,
        name: str = "default",
        version: int | None = None,
        *,
        extractors: Sequence[FeatureExtractor] | None = None,
    ) -> ModelDetector:
        """The detector of a registered model (the latest version by default)."""
        v = registry.latest(name) if version is None else version
        return cls(registry.load(name, v), f"model_{name}", str(v), extractors=extractors)

    def detect(self, data: DetectInput) -> pa.Table:
        tx = data.transactions
        extractors = self.extractors or build_extractors(self.model.extractors, accounts=data.accounts)
        features = assemble_features(tx, extractors)
        score = self.model.predict_proba(features)[:, 1]
        hit = np.flatnonzero(score >= self.model.threshold)
        body = tx[hit].select(
            subject_type=pl.lit("account"),
            subject_id=pl.col("src_account"),
            ts_start=pl.col("ts"),
            ts_end=pl.col("ts"),
            txn_ids=pl.concat_list("txn_id"),
            accounts=pl.concat_list("src_account", "dst_account").list.unique(maintain_order=True),
            amount_cny=pl.col("amount_cny"),
            report_kind=pl.lit("suspicious"),
        )
        body = body.with_columns(
            score=pl.Series(score[hit], dtype=pl.Float64),
            reasons=pl.Series(self.model.reasons(features[hit]), dtype=pl.List(pl.String)),
        )
        return finish_alerts(body, self)
