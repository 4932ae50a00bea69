"""Scores against ground truth: the figures a rules or model owner tunes on, from plain arrays.

Only the illicit (minority) class is measured, because a monitoring system is judged
on the crime it finds and the alerts it costs, never on accuracy over licit traffic.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import average_precision_score


def evaluate(
    y_true: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    threshold: float,
    typologies: Sequence[str | None] | np.ndarray | None = None,
    k_list: Sequence[int] = (100, 1000),
) -> dict[str, object]:
    """Minority-class precision, recall and F1 at `threshold` (alert when score ≥ threshold), and ranking figures.

    Returns `rows`, `positives`, `alerts`, `threshold`, `precision`, `recall`, `f1`,
    `pr_auc` (average precision over the whole ranking), `precision_at_k` (str(k) →
    share of illicit among the k highest scores; k is capped at the row count, so the
    figure stays defined on small sets), `alerts_per_10k` (alert volume an investigation
    team must absorb) and, given the ground-truth `typologies`, `recall_by_typology`
    (typology → positives, detected, recall), which shows which schemes a model misses
    even when its overall recall looks fine. A figure with no defined value (precision
    with no alerts, PR-AUC with no positives) is None rather than a made-up 0.
    """
    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError(f"y_true and scores must be 1-D and the same length (got {y.shape} and {s.shape})")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must hold only 0 (licit) and 1 (illicit); drop rows with unknown labels first")
    y = y.astype(bool)
    alert = s >= threshold
    tp = int((alert & y).sum())
    n_alerts, n_pos = int(alert.sum()), int(y.sum())
    precision = tp / n_alerts if n_alerts else None
    recall = tp / n_pos if n_pos else None
    f1 = 2 * tp / (n_alerts + n_pos) if n_alerts + n_pos else None
    ranked = y[np.argsort(-s, kind="stable")]
    out: dict[str, object] = {
        "rows": len(y),
        "positives": n_pos,
        "alerts": n_alerts,
        "threshold": float(threshold),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "pr_auc": float(average_precision_score(y, s)) if n_pos else None,
        "precision_at_k": {str(k): float(ranked[: min(k, len(y))].mean()) if len(y) else None for k in k_list},
        "alerts_per_10k": n_alerts / len(y) * 10_000 if len(y) else None,
    }
    if typologies is not None:
        typ = np.asarray(typologies, dtype=object)
        if typ.shape != y.shape:
            raise ValueError(f"typologies must have one entry per row (got {typ.shape}, expected {y.shape})")
        by_typology = {}
        for name in sorted({t for t in typ[y] if t is not None}):
            mask = y & (typ == name)
            found = int((mask & alert).sum())
            by_typology[name] = {"positives": int(mask.sum()), "detected": found, "recall": found / int(mask.sum())}
        out["recall_by_typology"] = by_typology
    return out


def bootstrap_intervals(
    y_true: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    threshold: float,
    *,
    rounds: int = 200,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, tuple[float, float] | None]:
    """Percentile bootstrap intervals of precision, recall, F1 and PR-AUC at `threshold`.

    A test period holds tens of illicit rows, so a point figure alone overstates what is
    known: 85 positives give an F1 interval about ±0.03 wide. Rows are resampled with
    replacement `rounds` times (fixed `seed`: the same data gives the same interval); a
    figure undefined in a resample (no alerts, no positives) is left out of that resample.
    """
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError(f"y_true and scores must be 1-D and the same length (got {y.shape} and {s.shape})")
    rng = np.random.default_rng(seed)
    alert = s >= threshold
    figures: dict[str, list[float]] = {"precision": [], "recall": [], "f1": [], "pr_auc": []}
    for _ in range(rounds):
        idx = rng.integers(0, len(y), len(y))
        yy, aa = y[idx], alert[idx]
        tp, na, npos = int((yy & aa).sum()), int(aa.sum()), int(yy.sum())
        if na:
            figures["precision"].append(tp / na)
        if npos:
            figures["recall"].append(tp / npos)
            figures["pr_auc"].append(float(average_precision_score(yy, s[idx])))
        if na + npos:
            figures["f1"].append(2 * tp / (na + npos))
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    return {
        k: (float(np.percentile(v, lo)), float(np.percentile(v, hi))) if v else None for k, v in figures.items()
    }


def reference_bins(x: np.ndarray, names: Sequence[str], bins: int = 10) -> dict[str, dict[str, list[float]]]:
    """Per feature, decile edges and the share of rows in each bin (missing values a bin of their own).

    Saved with a model (training period), so that any later data can be compared to what the
    model learnt from without keeping the training rows.
    """
    out: dict[str, dict[str, list[float]]] = {}
    for j, name in enumerate(names):
        col = x[:, j]
        known = col[~np.isnan(col)]
        edges = np.unique(np.quantile(known, np.linspace(0, 1, bins + 1)[1:-1])) if len(known) else np.array([])
        out[name] = {"edges": edges.tolist(), "shares": _bin_shares(col, edges).tolist()}
    return out


def _bin_shares(col: np.ndarray, edges: np.ndarray) -> np.ndarray:
    missing = np.isnan(col)
    counts = np.bincount(np.searchsorted(edges, col[~missing], side="right"), minlength=len(edges) + 1)
    counts = np.append(counts, missing.sum()).astype(np.float64)
    return counts / max(len(col), 1)


def population_stability(reference: dict[str, list[float]], values: np.ndarray) -> float:
    """Population stability index of `values` against a feature's `reference_bins` entry.

    PSI = Σ (a − e) · ln(a / e) over the bins (shares floored at 0.0001 so an empty bin is not
    infinite). The industry's reading: below 0.1 stable, 0.1–0.25 moved, above 0.25 the model
    is scoring a population it was not trained on.
    """
    e = np.maximum(np.asarray(reference["shares"], dtype=np.float64), 1e-4)
    a = np.maximum(_bin_shares(np.asarray(values, dtype=np.float64), np.asarray(reference["edges"])), 1e-4)
    return float(np.sum((a - e) * np.log(a / e)))
