"""Versioned trained models on disk (default `<dataset>/models/`) and the dataset-level train and evaluate entry points.

Layout::

    <root>/<name>/<version>/model.txt   LightGBM text model (readable, diffable, portable)
    <root>/<name>/<version>/model-1.txt the other averaged members (model-2.txt, …), if any
    <root>/<name>/<version>/meta.json   version, created, features and extractor versions, params,
                                        members, calibration, threshold, metrics, fingerprint
                                        of the training data

Versions are 1, 2, 3… per name and never reused or overwritten: a version is written
to a temporary folder and renamed into place, and a rename onto an existing version
fails, so two concurrent saves get two versions and a crash leaves no half model.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl

from tianluo.detect.base import FeatureExtractor
from tianluo.detect.evaluate import bootstrap_intervals, evaluate, population_stability
from tianluo.detect.features import assemble_features
from tianluo.detect.model import BAG, TrainedModel, build_extractors, default_extractors, feature_matrix, train
from tianluo.schema import TRANSACTIONS
from tianluo.store.dataset import Dataset

MODEL_FILE = "model.txt"


def member_file(k: int) -> str:
    """File of the k-th averaged member: `model.txt` for the first (models saved before bagging had one)."""
    return MODEL_FILE if k == 0 else f"model-{k}.txt"

META_FILE = "meta.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ModelRegistry:
    """Save, load and list trained models under `root`."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    @classmethod
    def for_dataset(cls, dataset_root: Path | str) -> ModelRegistry:
        """The registry that lives inside a dataset (`<dataset>/models/`)."""
        return cls(Path(dataset_root) / "models")

    def _dir(self, name: str) -> Path:
        if not _NAME.match(name):
            raise ValueError(f"model name {name!r} must be letters, digits, '_', '.' or '-' (not starting with one)")
        return self.root / name

    def versions(self, name: str) -> list[int]:
        """Saved versions of `name`, oldest first."""
        d = self._dir(name)
        if not d.exists():
            return []
        return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit() and (p / META_FILE).exists())

    def latest(self, name: str) -> int:
        versions = self.versions(name)
        if not versions:
            raise LookupError(f"no model named {name!r} in {self.root}; train one first (`tianluo train`)")
        return versions[-1]

    def save(self, name: str, model: TrainedModel) -> int:
        """Store `model` as the next version of `name` and return that version."""
        d = self._dir(name)
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".tmp-{os.getpid()}-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            for k, booster in enumerate(model.boosters):
                booster.save_model(str(tmp / member_file(k)))
            version = (self.versions(name) or [0])[-1] + 1
            while True:
                meta = {
                    "name": name,
                    "version": version,
                    "created": datetime.now(UTC).isoformat(timespec="seconds"),
                    "lightgbm": lgb.__version__,
                    "feature_names": model.feature_names,
                    "extractors": model.extractors,
                    "params": model.params,
                    "threshold": model.threshold,
                    "members": len(model.boosters),
                    "calibration": None if model.calibration is None else list(model.calibration),
                    "reference": model.reference,
                    "metrics": model.metrics,
                    "training_data": model.training_data,
                }
                (tmp / META_FILE).write_text(json.dumps(meta, indent=1, ensure_ascii=False), encoding="utf-8")
                try:
                    tmp.rename(d / str(version))
                    return version
                except OSError:
                    if not (d / str(version)).exists():
                        raise
                    version += 1  # another process took this version meanwhile
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def meta(self, name: str, version: int | None = None) -> dict[str, Any]:
        """The meta.json of a version (the latest by default)."""
        v = self.latest(name) if version is None else version
        path = self._dir(name) / str(v) / META_FILE
        if not path.exists():
            raise LookupError(f"model {name!r} has no version {v} in {self.root}; versions: {self.versions(name)}")
        return json.loads(path.read_text(encoding="utf-8"))

    def load(self, name: str, version: int | None = None) -> TrainedModel:
        """A saved model (the latest version by default), ready to score."""
        meta = self.meta(name, version)
        folder = self._dir(name) / str(meta["version"])
        boosters = [lgb.Booster(model_file=str(folder / member_file(k))) for k in range(meta.get("members", 1))]
        calibration = meta.get("calibration")
        return TrainedModel(
            boosters=boosters,
            calibration=None if calibration is None else (float(calibration[0]), float(calibration[1])),
            reference=meta.get("reference"),
            feature_names=meta["feature_names"],
            threshold=meta["threshold"],
            params=meta["params"],
            metrics=meta["metrics"],
            extractors=meta["extractors"],
            training_data=meta["training_data"],
        )

    def list(self) -> list[dict[str, Any]]:
        """One summary per saved version: name, version, created, threshold, test F1 and PR-AUC, training rows."""
        out = []
        if not self.root.exists():
            return out
        for d in sorted(p for p in self.root.iterdir() if p.is_dir() and _NAME.match(p.name)):
            for v in self.versions(d.name):
                m = self.meta(d.name, v)
                test = m["metrics"].get("test", {})
                out.append(
                    {
                        "name": d.name,
                        "version": v,
                        "created": m["created"],
                        "threshold": m["threshold"],
                        "test_f1": test.get("f1"),
                        "test_pr_auc": test.get("pr_auc"),
                        "training_rows": m["training_data"].get("rows"),
                    }
                )
        return out


def read_transactions(dataset: Dataset) -> pl.DataFrame:
    """A dataset's transactions with the canonical columns, in (ts, txn_id) order, as detectors expect them."""
    tx = pl.DataFrame(pl.from_arrow(dataset.read("transactions")))
    return tx.select([c for c in TRANSACTIONS.names if c in tx.columns]).sort(["ts", "txn_id"])


def train_on_dataset(
    dataset_root: Path | str,
    name: str = "default",
    extractors: list[FeatureExtractor] | None = None,
    *,
    params: dict[str, Any] | None = None,
    seed: int = 0,
    graph_windows: Sequence[str] | None = None,
    horizon: str | None = None,
    bag: int = BAG,
    alerts_per_10k: float | None = None,
    miner_profile: str | None = None,
) -> tuple[TrainedModel, int]:
    """Train on every labelled transaction of a dataset and register the model in `<dataset>/models/`.

    Default features: `default_extractors` with the dataset's accounts (for account age
    and type), `graph_windows`, `horizon` (settled mode) and `miner_profile` (miner instance
    counts). `params`, `seed`, `bag` and `alerts_per_10k` go to `train`. Returns the model
    (its `metrics` hold validation and test figures) and its version.
    """
    ds = Dataset(dataset_root)
    tx = read_transactions(ds)
    if extractors is None:
        accounts = pl.DataFrame(pl.from_arrow(ds.read("accounts")))
        extractors = default_extractors(accounts, graph_windows, horizon, miner_profile)
    model = train(tx, extractors, params=params, seed=seed, bag=bag, alerts_per_10k=alerts_per_10k)
    model.training_data["dataset"] = str(ds.root)
    return model, ModelRegistry.for_dataset(ds.root).save(name, model)


def evaluate_on_dataset(
    dataset_root: Path | str,
    name: str,
    version: int | None = None,
    *,
    registry: ModelRegistry | None = None,
) -> dict[str, Any]:
    """Score a dataset's labelled transactions with a registered model and return `evaluate()`'s figures.

    On the dataset the model was trained on, only rows after its validation period count
    (the test period plus anything ingested since), so training rows never flatter the
    figures; on any other dataset every labelled row counts. Features are computed on
    the full history either way. `registry` defaults to the dataset's own.
    """
    ds = Dataset(dataset_root)
    registry = registry or ModelRegistry.for_dataset(ds.root)
    version = registry.latest(name) if version is None else version
    model = registry.load(name, version)
    tx = read_transactions(ds)
    accounts = pl.DataFrame(pl.from_arrow(ds.read("accounts")))
    features = assemble_features(tx, build_extractors(model.extractors, accounts=accounts))
    scope = tx["label"].is_not_null()
    scope_words = "all labelled transactions"
    if model.training_data.get("dataset") == str(ds.root):
        validation_end = model.metrics["windows"]["validation"]["last_ts"]
        scope = scope & (tx["ts"] > datetime.fromisoformat(validation_end))
        scope_words = f"labelled transactions after the model's validation period (which ended {validation_end})"
    if not scope.any():
        raise ValueError(f"{ds.root} has no labelled transactions to evaluate on ({scope_words})")
    rows = scope.to_numpy()
    scores = model.predict_proba(features.filter(scope))[:, 1]
    y = tx["label"].to_numpy()[rows]
    figures = evaluate(y, scores, model.threshold, tx["typology"].to_numpy()[rows])
    out = {"model": name, "version": version, "dataset": str(ds.root), "scope": scope_words, **figures}
    out["intervals"] = bootstrap_intervals(y, scores, model.threshold)
    out["drift"] = drift_report(model, feature_matrix(features.filter(scope), model.feature_names), y)
    return out


#: Population stability above which a feature counts as moved (the usual reading: 0.25 = a different population).
PSI_WARN = 0.25


def drift_report(model: TrainedModel, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """How far the scored rows are from the model's training period: illicit rate and per-feature PSI, with warnings.

    Models saved before the reference was kept get no figures and one warning that says so.
    """
    ref = model.reference
    if not ref:
        return {"warnings": ["this model was saved without its training distributions; retrain to get drift checks"]}
    psi = {
        n: population_stability(ref["features"][n], x[:, j])
        for j, n in enumerate(model.feature_names)
        if n in ref["features"]
    }
    top = sorted(psi.items(), key=lambda kv: -kv[1])[:10]
    rate = float(np.mean(y)) if len(y) else 0.0
    warnings = []
    base = ref["illicit_rate"]
    if base > 0 and (rate > 2 * base or rate < base / 2):
        warnings.append(
            f"illicit rate {rate:.3%} is far from the training period's {base:.3%}: precision and recall at the "
            "model's threshold will not carry over; re-choose the threshold or retrain"
        )
    moved = [n for n, v in psi.items() if v > PSI_WARN]
    if moved:
        warnings.append(
            f"{len(moved)} of {len(psi)} features moved (PSI > {PSI_WARN}) since training, most: "
            + ", ".join(f"{n} {v:.2f}" for n, v in top if v > PSI_WARN)
        )
    return {
        "illicit_rate": rate,
        "training_illicit_rate": base,
        "psi_top": [{"feature": n, "psi": v} for n, v in top],
        "features_moved": len(moved),
        "warnings": warnings,
    }
