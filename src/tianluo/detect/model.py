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
from sklearn.metrics import average_precision_score, precision_recall_curve

from tianluo.detect.base import DetectInput, Detector, FeatureExtractor, finish_alerts
from tianluo.detect.evaluate import evaluate, reference_bins
from tianluo.detect.features import TransactionFeatures, assemble_features, describe_feature
from tianluo.detect.graph_features import GraphFeatures, parse_window
from tianluo.detect.history_features import HistoryFeatures

if TYPE_CHECKING:
    from tianluo.detect.registry import ModelRegistry

#: What every LightGBM of a model shares. Row and column subsampling make members trained with
#: different seeds disagree a little, which is what averaging them (`bag`) smooths out. One
#: thread: on shared cores OpenMP's busy-waiting made two threads 8x slower than one (157 s vs
#: 20 s); raise `num_threads` on a dedicated machine.
BASE_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "min_child_samples": 20,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "num_threads": 1,
    "deterministic": True,
    "force_row_wise": True,
    "verbose": -1,
}

#: The settings `train` chooses among, by validation PR-AUC. Why these and not one fixed setting:
#: on data nobody here wrote (AMLSim 10K, three seeds) the old single setting (early stopping on
#: one noisy validation round, `scale_pos_weight` = licit / illicit ≈ 300) swung test F1 from
#: 0.76 to 0.89, while a moderate class weight (5) and a fixed number of trees held; small trees
#: regularise where a bank has only a few schemes of each kind to learn from, and the capped
#: leaf values (`max_delta_step`) are what kept the 5M-row simulated set from collapsing
#: (docs/models.md).
GRID: tuple[dict[str, Any], ...] = (
    {"num_leaves": 63, "learning_rate": 0.05, "scale_pos_weight": 5.0},
    {"num_leaves": 15, "learning_rate": 0.05, "scale_pos_weight": 5.0, "max_delta_step": 1.0},
)
#: Tree counts the validation period chooses from (one model per setting, read at each count),
#: instead of early stopping, where one noisy round decides.
TREE_CHECKPOINTS: tuple[int, ...] = (100, 200, 300, 400)
#: Models averaged (different seeds, the chosen setting and tree count).
BAG = 3
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
    accounts: pl.DataFrame | None = None,
    graph_windows: Sequence[str] | None = None,
    horizon: str | None = None,
    miner_profile: str | None = None,
) -> list[FeatureExtractor]:
    """Raw transaction features (with account age and type from `accounts`), lifetime history and graph features.

    `miner_profile` adds the typology miners' instance counts per transaction under that profile
    (`MinerFeatures`, settled like the graph features). Off by default: on AMLSim 10K they
    changed nothing the other features did not already see (docs/models.md), at 15-20 s of
    mining per 200k rows.

    `graph_windows` replaces the graph features' default windows (1 d, 7 d, 30 d): a bank whose
    history is short, or whose validation shows the 30-day columns drifting (docs/models.md),
    trains with ("1d", "7d"). `horizon` (e.g. "1d") makes the graph features settled: each
    transaction also sees what happened in that horizon after it (batch T+1 monitoring); None
    keeps every feature causal, as the real-time path needs.
    """
    kwargs: dict[str, Any] = {"horizon": horizon}
    if graph_windows is not None:
        kwargs["windows"] = tuple(graph_windows)
    out: list[FeatureExtractor] = [TransactionFeatures(accounts), HistoryFeatures(), GraphFeatures(**kwargs)]
    if miner_profile is not None:
        from tianluo.detect.miner_features import MinerFeatures

        out.append(MinerFeatures(miner_profile, horizon, accounts))
    return out


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


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def smoothed_f1_threshold(y_true: np.ndarray, scores: np.ndarray, *, width: int = 5) -> float:
    """The threshold at the top of the F1 curve after a moving average over `width` neighbouring thresholds.

    Scores are calibrated probabilities, so thresholds are read on a fixed grid (0.01 … 0.99):
    with a hundred or so illicit validation rows the raw F1 curve is jagged, and its single
    highest point (`best_f1_threshold`) can sit on a spike that one transaction made (it put one
    model's threshold at 0.0037 on AMLSim). The smoothed peak moves little when a few rows change.
    """
    y = np.asarray(y_true).astype(bool)
    if not y.any():
        raise ValueError("cannot choose a threshold: the validation period has no illicit transactions")
    s = np.asarray(scores, dtype=np.float64)
    grid = np.round(np.arange(0.01, 1.0, 0.01), 2)
    order = np.sort(s)
    alerts = len(s) - np.searchsorted(order, grid, side="left")
    pos_scores = np.sort(s[y])
    tp = len(pos_scores) - np.searchsorted(pos_scores, grid, side="left")
    f1 = 2.0 * tp / (alerts + int(y.sum()))
    kernel = np.ones(width) / width
    smooth = np.convolve(np.pad(f1, width // 2, mode="edge"), kernel, mode="valid")
    # Ties go to the higher threshold (fewer alerts).
    return float(grid[len(smooth) - 1 - int(np.argmax(smooth[::-1]))])


def budget_threshold(scores: np.ndarray, alerts_per_10k: float) -> float:
    """The threshold at which the validation period would have raised `alerts_per_10k` alerts per 10,000 rows.

    For a bank that staffs its alert queue first and asks the model for its best alerts within it.
    """
    if not alerts_per_10k > 0:
        raise ValueError(f"an alert budget must be a positive number of alerts per 10,000 transactions, "
                         f"got {alerts_per_10k}")
    s = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    k = max(1, min(len(s), round(alerts_per_10k * len(s) / 10_000)))
    return float(s[k - 1])


def platt(raw: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Platt scaling: (a, b) with P(illicit) = 1 / (1 + exp(-(a · raw + b))), fitted on the validation period.

    Monotone, so ranking (PR-AUC) is unchanged; what changes is that a score means the same
    probability whatever class weight or tree count the model was trained with, so a threshold
    of 0.5 on one model means what it means on the next. Two parameters: isotonic regression
    would follow the noise of a hundred positives.
    """
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=1e4, max_iter=1000).fit(np.asarray(raw, dtype=np.float64)[:, None], y)
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


@dataclass
class TrainedModel:
    """A trained scorer: the averaged boosters, the feature columns they read, calibration, threshold, provenance.

    The score of a transaction is `1 / (1 + exp(-(a · r + b)))` where `r` is the mean raw
    score (log-odds) of `boosters` and `(a, b)` = `calibration` (None: `a = 1, b = 0`, models
    saved before calibration). `metrics` holds `windows` (rows, positives, first and last ts of
    each period), `selection` (validation PR-AUC of every setting and tree count tried, the
    choice), `validation` and `test` (`evaluate()` output at `threshold`) and `drift` (test
    minus validation precision and recall). `extractors` are specs (`extractor_spec`) to
    rebuild the feature pipeline at scoring time.
    """

    boosters: list[lgb.Booster]
    feature_names: list[str]
    threshold: float
    params: dict[str, Any]
    metrics: dict[str, Any]
    extractors: list[dict[str, Any]]
    training_data: dict[str, Any] = field(default_factory=dict)
    calibration: tuple[float, float] | None = None
    #: The training period's feature distributions (`evaluate.reference_bins`) and illicit rate, for
    #: drift warnings when the model scores other data.
    reference: dict[str, Any] | None = None

    def raw_scores(self, x: np.ndarray) -> np.ndarray:
        """Mean raw score (log-odds) of the members for a feature matrix."""
        return np.mean([b.predict(x, raw_score=True) for b in self.boosters], axis=0)

    def _probability(self, raw: np.ndarray) -> np.ndarray:
        a, b = self.calibration or (1.0, 0.0)
        return _sigmoid(a * raw + b)

    def predict_proba(self, features: pl.DataFrame) -> np.ndarray:
        """scikit-learn's shape: column 0 P(licit), column 1 P(illicit), calibrated on the validation period."""
        p = self._probability(self.raw_scores(feature_matrix(features, self.feature_names)))
        return np.column_stack([1.0 - p, p])

    def reasons(self, features: pl.DataFrame, top: int = 3) -> list[list[str]]:
        """For each row, the `top` features that pushed its score up most (SHAP values), in words with their values.

        SHAP values add up to the raw score, so the members' mean contributions explain the
        mean raw score exactly. Only positive contributions are reasons: a feature that made
        the transaction look more ordinary does not explain why it was flagged.
        """
        x = feature_matrix(features, self.feature_names)
        k = len(self.feature_names)
        contrib = np.mean([np.asarray(b.predict(x, pred_contrib=True))[:, :k] for b in self.boosters], axis=0)
        order = np.argsort(-contrib, axis=1, kind="stable")[:, :top]
        out = []
        for i in range(x.shape[0]):
            row = dict(zip(self.feature_names, x[i].tolist(), strict=True))
            out.append([describe_feature(self.feature_names[j], row) for j in order[i] if contrib[i, j] > 0])
        return out


def _fit(settings: dict[str, Any], x: np.ndarray, y: np.ndarray, names: list[str], trees: int) -> lgb.Booster:
    data = lgb.Dataset(x, y, feature_name=names, free_raw_data=True)
    return lgb.train({**settings, "num_iterations": trees}, data)


def train(
    transactions: pl.DataFrame,
    extractors: Sequence[FeatureExtractor],
    *,
    label_col: str = "label",
    params: dict[str, Any] | None = None,
    grid: Sequence[dict[str, Any]] | None = None,
    trees: Sequence[int] = TREE_CHECKPOINTS,
    bag: int = BAG,
    alerts_per_10k: float | None = None,
    split: tuple[float, float, float] = (0.6, 0.2, 0.2),
    seed: int = 0,
) -> TrainedModel:
    """Fit LightGBM of `label_col` on the earliest rows; choose, calibrate and threshold on the next; test on the last.

    Protocol: features over the whole history (they are causal or settled, so a validation
    row's window may reach into the training period, exactly as in production); extractors
    fitted on the training period only; rows without a label serve as history only.
    Every setting of `grid` (default `GRID`, each merged over `BASE_PARAMS` and `params`) is
    trained once with `max(trees)` trees and its validation PR-AUC read at each count in
    `trees`; the best (setting, count) wins, and `bag` members trained with that setting and
    seeds `seed`, `seed + 1`, … are averaged. The averaged raw score is Platt-calibrated on
    validation, and the threshold is the smoothed F1 peak on validation or, given
    `alerts_per_10k`, the score at that alert volume on validation. The test period is
    scored once, at the end.
    """
    if bag < 1:
        raise ValueError(f"bag must be at least 1 model (got {bag})")
    if not trees or min(trees) < 1:
        raise ValueError(f"trees must be positive tree counts (got {list(trees)})")
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
    xt, yt = x[rows["train"]], y[rows["train"]]
    xv, yv = x[rows["validation"]], y[rows["validation"]]
    counts = sorted(set(int(t) for t in trees))

    tried: list[dict[str, Any]] = []
    best: tuple[float, int, int, lgb.Booster] | None = None
    for g, setting in enumerate(grid if grid is not None else GRID):
        settings = {**BASE_PARAMS, **setting, **(params or {}), "seed": seed}
        booster = _fit(settings, xt, yt, names, counts[-1])
        for count in counts:
            ap = float(average_precision_score(yv, booster.predict(xv, num_iteration=count, raw_score=True)))
            tried.append({"setting": g, "trees": count, "validation_pr_auc": ap})
            # Ties go to the earlier setting and the fewer trees.
            if best is None or ap > best[0]:
                best = (ap, g, count, booster)
    assert best is not None
    _, chosen, count, first = best
    settings = {**BASE_PARAMS, **(grid if grid is not None else GRID)[chosen], **(params or {})}
    members = [lgb.Booster(model_str=first.model_to_string(num_iteration=count))]
    for k in range(1, bag):
        members.append(_fit({**settings, "seed": seed + k}, xt, yt, names, count))
    settings = {**settings, "seed": seed, "num_iterations": count}

    model = TrainedModel(
        boosters=members,
        feature_names=names,
        threshold=0.5,
        params=settings,
        metrics={},
        extractors=[extractor_spec(ex) for ex in extractors],
        training_data=data_fingerprint(tx, label_col),
        reference={"illicit_rate": float(yt.mean()), "features": reference_bins(xt, names)},
    )
    model.calibration = platt(model.raw_scores(xv), yv)

    def scores(p: str) -> np.ndarray:
        return model._probability(model.raw_scores(x[rows[p]]))

    val_scores = scores("validation")
    if alerts_per_10k is None:
        model.threshold = smoothed_f1_threshold(yv, val_scores)
    else:
        model.threshold = budget_threshold(val_scores, alerts_per_10k)
    typology = tx["typology"].to_numpy() if "typology" in tx.columns else None
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
    metrics: dict[str, Any] = {
        "windows": windows,
        "selection": {
            "grid": [dict(s) for s in (grid if grid is not None else GRID)],
            "tried": tried,
            "setting": chosen,
            "trees": count,
            "bag": bag,
            "threshold_rule": "smoothed F1 on validation"
            if alerts_per_10k is None
            else f"{alerts_per_10k:g} alerts per 10,000 on validation",
        },
    }
    for p in ("validation", "test"):
        r = rows[p]
        metrics[p] = evaluate(y[r], scores(p) if p == "test" else val_scores, model.threshold,
                              None if typology is None else typology[r])
    metrics["drift"] = {
        k: None if metrics["test"][k] is None or metrics["validation"][k] is None
        else metrics["test"][k] - metrics["validation"][k]
        for k in ("precision", "recall", "f1")
    }
    model.metrics = metrics
    return model


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
        #: Transactions the last `detect` left for a later run (their settled horizon not yet in the data).
        self.pending = 0

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

    @property
    def horizon(self) -> str | None:
        """The settled look-ahead of the model's features (None: causal, every row can be scored at once)."""
        horizons = [spec.get("params", {}).get("horizon") for spec in self.model.extractors]
        known = [h for h in horizons if h]
        return max(known, key=parse_window) if known else None

    @property
    def mode(self) -> str:
        """How this detector scores, in words for the operator."""
        h = self.horizon
        return f"settled (T+1): a transaction is scored once {h} has passed after it" if h else "causal (real-time)"

    def detect(self, data: DetectInput) -> pa.Table:
        """Alerts on transactions at or above the threshold.

        A settled model scores only transactions whose horizon the data already covers
        (ts + H ≤ the latest ts); the rest are `pending` and are scored by a later run,
        when more data has arrived, under the same deterministic alert ids.
        """
        tx = data.transactions
        extractors = self.extractors or build_extractors(self.model.extractors, accounts=data.accounts)
        features = assemble_features(tx, extractors)
        score = self.model.predict_proba(features)[:, 1]
        ready = np.ones(tx.height, dtype=bool)
        if self.horizon is not None and tx.height:
            ts = tx["ts"].dt.epoch("us").to_numpy()
            ready = ts + parse_window(self.horizon) * 1_000_000 <= ts.max()
        self.pending = int((~ready).sum())
        hit = np.flatnonzero((score >= self.model.threshold) & ready)
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
