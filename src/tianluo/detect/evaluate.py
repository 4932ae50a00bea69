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
