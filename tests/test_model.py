"""Models against ground truth: metrics by hand, a leak-free temporal protocol, the registry, reasons in words.

The end-to-end tests train one model on a simulated bank (300k transactions, 0.5 %
injected crime) and require it to beat an amount-only baseline on the test period.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from sklearn.linear_model import LogisticRegression

from tianluo.detect.base import DetectInput
from tianluo.detect.evaluate import bootstrap_intervals, evaluate
from tianluo.detect.features import (
    LARGE_CASH_CNY,
    TransactionFeatures,
    assemble_features,
    describe_feature,
    rule_indicators,
)
from tianluo.detect.history_features import HistoryFeatures
from tianluo.detect.model import (
    ModelDetector,
    TrainedModel,
    best_f1_threshold,
    budget_threshold,
    build_extractors,
    extractor_spec,
    feature_matrix,
    smoothed_f1_threshold,
    temporal_split,
    train,
)
from tianluo.detect.registry import (
    ModelRegistry,
    drift_report,
    evaluate_on_dataset,
    read_transactions,
    train_on_dataset,
)
from tianluo.ingest import ingest, open_reader
from tianluo.schema import TRANSACTIONS
from tianluo.simulate import SimConfig, simulate, write_source
from tianluo.store.dataset import Dataset

from .conftest import TEST_KEY

CONFIG = SimConfig(persons=5000, enterprises=500, days=90, transactions=300_000, illicit_ratio=0.005, seed=11)
SNAKE_CASE = re.compile(r"\b[a-z0-9]+_[a-z0-9_]+\b")


# --- evaluation on hand-computed cases ----------------------------------------------------------------------------


def test_evaluate_hand_computed() -> None:
    y = [1, 0, 1, 0, 0, 1, 0, 0, 0, 0]
    s = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0]
    typ = ["fan_in", None, "cycle", None, None, "fan_in", None, None, None, None]
    m = evaluate(y, s, 0.55, typ, k_list=(2, 5, 100))
    # Alerts: the 4 scores ≥ 0.55, of which rows 0 and 2 are illicit; 3 illicit rows in all.
    assert (m["rows"], m["positives"], m["alerts"]) == (10, 3, 4)
    assert m["precision"] == 0.5
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(4 / 7)
    # Average precision: precision at each illicit row's rank (1, 3, 6), averaged.
    assert m["pr_auc"] == pytest.approx((1 / 1 + 2 / 3 + 3 / 6) / 3)
    assert m["precision_at_k"] == {"2": 0.5, "5": 0.4, "100": 0.3}
    assert m["alerts_per_10k"] == 4000.0
    assert m["recall_by_typology"] == {
        "cycle": {"positives": 1, "detected": 1, "recall": 1.0},
        "fan_in": {"positives": 2, "detected": 1, "recall": 0.5},
    }


def test_evaluate_undefined_figures_are_none() -> None:
    no_alerts = evaluate([1, 0], [0.2, 0.1], 0.5)
    assert (no_alerts["precision"], no_alerts["recall"], no_alerts["f1"]) == (None, 0.0, 0.0)
    no_positives = evaluate([0, 0], [0.9, 0.1], 0.5)
    assert (no_positives["recall"], no_positives["pr_auc"], no_positives["precision"]) == (None, None, 0.0)
    with pytest.raises(ValueError, match="only 0"):
        evaluate([1, 2], [0.1, 0.2], 0.5)


def test_best_f1_threshold_hand_computed() -> None:
    # Thresholds .9/.8/.7/.6/.1 give F1 .5/.8/.667/.857/.75: the best is 0.6.
    assert best_f1_threshold(np.array([1, 1, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.6, 0.1])) == 0.6
    # 0.9 and 0.6 tie at F1 2/3: the higher threshold (fewer alerts) wins.
    assert best_f1_threshold(np.array([1, 0, 0, 1]), np.array([0.9, 0.8, 0.7, 0.6])) == 0.9


def test_smoothed_f1_threshold_takes_the_middle_of_the_plateau() -> None:
    # 100 validation rows, 10 illicit scoring 0.60-0.68 and 0.95; licit rows stop at 0.55. F1 is 1.0 for every
    # grid threshold 0.56-0.60; the moving average peaks in the middle of that plateau (0.58), not at its edge,
    # so a small shift of the test period's scores does not fall off it.
    pos = np.array([0.95, 0.60, 0.61, 0.62, 0.63, 0.64, 0.65, 0.66, 0.67, 0.68])
    neg = np.concatenate([np.linspace(0.0, 0.55, 89), [0.30]])
    y = np.r_[np.ones(10), np.zeros(90)].astype(int)
    s = np.r_[pos, neg]
    t = smoothed_f1_threshold(y, s)
    assert t == 0.58
    assert evaluate(y, s, t)["f1"] == 1.0
    with pytest.raises(ValueError, match="no illicit"):
        smoothed_f1_threshold(np.zeros(5, int), np.linspace(0, 1, 5))


def test_budget_threshold_hand_computed() -> None:
    s = np.linspace(0.0, 0.999, 1000)  # 1,000 validation rows
    # 30 alerts per 10,000 rows on 1,000 rows = 3 alerts: the threshold is the third-highest score.
    assert budget_threshold(s, 30) == pytest.approx(0.997)
    assert (s >= budget_threshold(s, 30)).sum() == 3
    with pytest.raises(ValueError, match="positive number"):
        budget_threshold(s, 0)


def test_temporal_split_never_cuts_through_an_instant() -> None:
    ts = pl.Series(np.repeat(np.arange(10), 10) * 86_400_000_000).cast(pl.Datetime("us", "UTC"))
    part = temporal_split(ts, (0.55, 0.25, 0.2))
    t = ts.to_numpy()
    assert t[part == 0].max() < t[part == 1].min() and t[part == 1].max() < t[part == 2].min()
    # The instant the 55 % cut falls in (day 5) goes wholly to the later period.
    assert np.bincount(part).tolist() == [50, 30, 20]
    with pytest.raises(ValueError, match="empty"):
        temporal_split(pl.Series([0] * 5).cast(pl.Datetime("us", "UTC")))


# --- features -----------------------------------------------------------------------------------------------------


def test_describe_feature_speaks_with_values() -> None:
    row = {"cash_threshold_gap_pct": 0.4, "amount_cny_log10": math.log10(49_800)}
    assert describe_feature("cash_threshold_gap_pct", row) == "amount ¥49,800 is 0.4% under the ¥50,000 cash threshold"
    assert describe_feature("src_out_count_24h", {"src_out_count_24h": 14.0}) == (
        "payer sent 14 payments in the 24 h up to this transaction"
    )
    assert describe_feature("hour_china", {"hour_china": 2 + 14 / 60}) == "night-time (02:14 China time)"
    assert describe_feature("dst_in_sum_7d", {"dst_in_sum_7d": 1234567.5}) == (
        "payee received ¥1,234,567.50 in the 7 days up to this transaction"
    )
    assert describe_feature("src_secs_since_prev", {"src_secs_since_prev": None}) == (
        "first transaction of the payer's account in the data"
    )
    assert describe_feature("rule_pboc_large_cash", {"rule_pboc_large_cash": 1.0}) == (
        "rule 'pboc_large_cash' fired on this transaction"
    )
    assert describe_feature("fan_in_dst_7d", {"fan_in_dst_7d": 12.0}) == (
        "payee received from 12 distinct accounts in the 7 days up to this transaction"
    )
    assert describe_feature("src_account_age_days", {"src_account_age_days": 3650.0}) == (
        "payer's account opened 10 years before"
    )
    assert describe_feature("dst_account_internal", {"dst_account_internal": 0.0}) == (
        "payee is not an internal account"
    )
    assert describe_feature("amount_to_back_30d", {"amount_to_back_30d": 0.0075}) == (
        "amount is 0.8% of what the payee paid this payer in the 30 days before"
    )
    assert describe_feature("new_share_in_dst_7d", {"new_share_in_dst_7d": 0.8}) == (
        "80% of what the payee received in the 7 days up to this transaction came from payers that had not paid "
        "it before (first contacts)"
    )
    assert describe_feature("through_src_7d", {"through_src_7d": 0.98}) == (
        "payer paid out 98% of what it received in the 7 days up to this transaction"
    )
    assert describe_feature("fan_ratio_dst_30d", {"fan_ratio_dst_30d": None}) == (
        "payee paid no one in the 30 days up to this transaction"
    )
    assert describe_feature("repeat_in_dst_1d", {"repeat_in_dst_1d": 1.0}) == (
        "payee was paid by each payer 1.0 times on average in the 1 day up to this transaction"
    )
    assert describe_feature("paid_since_last_in_src", {"paid_since_last_in_src": 0.99}) == (
        "since it last received money the payer has paid out 99% of that amount, this payment included"
    )
    assert describe_feature("drained_max_in_src_7d", {"drained_max_in_src_7d": 1.02}) == (
        "since its largest receipt in the 7 days the payer has paid out 102% of that amount, this payment included"
    )
    # A column no template knows still reads as words with its value.
    assert describe_feature("burst_score_3h", {"burst_score_3h": 0.25}) == "burst score 3h is 0.25"


def test_every_feature_has_words() -> None:
    """Every column of the shipped extractors renders through a template, known or unknown, at any value."""
    # An empty canonical table: the column set must not depend on the data.
    tx = pl.DataFrame(pl.from_arrow(TRANSACTIONS.arrow.empty_table()))
    names = TransactionFeatures().transform(tx).columns
    graph = pytest.importorskip("tianluo.detect.graph_features")
    names += graph.GraphFeatures().feature_names + graph.GraphFeatures(horizon="1d").feature_names
    names += HistoryFeatures().feature_names
    for name in names:
        for value in (0.0, 1.0, 3.5, None):
            text = describe_feature(name, {name: value})
            assert not SNAKE_CASE.search(text) and not text.startswith(name.replace("_", " ")), (name, text)


def test_rule_indicators_mark_evidence_causally() -> None:
    t = pl.datetime_range(
        pl.datetime(2024, 1, 1, time_zone="UTC"), pl.datetime(2024, 1, 4, time_zone="UTC"), "1d", eager=True
    )
    tx = pl.DataFrame({"txn_id": ["a", "b", "c", "d"], "ts": t})
    alerts = pl.DataFrame(
        {
            "kind": ["rule", "model", "miner"],
            "detector": ["Structuring-Cash", "model_default", "fan_in"],
            "txn_ids": [["a", "b", "c"], ["d"], ["b", "d"]],
            "ts_end": [t[2], t[3], t[3]],
        }
    )
    causal = rule_indicators(alerts, tx)
    assert causal.to_dict(as_series=False) == {
        "miner_fan_in": [0.0, 0.0, 0.0, 1.0],  # b is evidence, but the pattern only exists once d happened
        "rule_structuring_cash": [0.0, 0.0, 1.0, 0.0],
    }
    full = rule_indicators(alerts, tx, causal=False, columns=["rule_structuring_cash", "rule_silent"])
    assert full.to_dict(as_series=False) == {
        "rule_structuring_cash": [1.0, 1.0, 1.0, 0.0],
        "rule_silent": [0.0, 0.0, 0.0, 0.0],
    }


# --- the simulated bank -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    write_source(simulate(CONFIG), root / "source")
    ds = Dataset(root / "dataset", create=True)
    with pytest.MonkeyPatch.context() as mp:  # the autouse key fixture is per test; this one is per module
        mp.setenv("TIANLUO_MASTER_KEY", TEST_KEY)
        ingest(open_reader(root / "source"), ds)
    return ds.root


@pytest.fixture(scope="module")
def tables(dataset: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    ds = Dataset(dataset)
    return read_transactions(ds), pl.DataFrame(pl.from_arrow(ds.read("accounts")))


@pytest.fixture(scope="module")
def features(tables: tuple[pl.DataFrame, pl.DataFrame]) -> pl.DataFrame:
    return assemble_features(tables[0], [TransactionFeatures(tables[1])])


@pytest.fixture(scope="module")
def trained(dataset: Path, tables: tuple[pl.DataFrame, pl.DataFrame]) -> tuple[TrainedModel, int]:
    return train_on_dataset(dataset, "aml", extractors=[TransactionFeatures(tables[1])])


def test_raw_features_are_causal_and_order_free(tables: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    tx, accounts = tables
    tx = tx.head(40_000)
    fx = TransactionFeatures(accounts)
    full = fx.transform(tx)
    # Appending later transactions changes nothing about earlier ones, to the bit.
    assert_frame_equal(full.head(30_000), fx.transform(tx.head(30_000)))
    # Rows are aligned with the input whatever its order.
    perm = np.random.default_rng(0).permutation(tx.height)
    assert_frame_equal(fx.transform(tx[perm]), full[perm])
    # Against a plain re-count over the past (and self) of a few rows.
    for i in (5_000, 21_345, 39_999):
        row = tx.row(i, named=True)
        past = tx.head(i + 1).filter(pl.col("ts") > row["ts"] - pl.duration(hours=24))
        sent = past.filter(pl.col("src_account") == row["src_account"])
        got = past.filter(pl.col("dst_account") == row["dst_account"])
        assert full["src_out_count_24h"][i] == sent.height
        assert full["src_out_sum_24h"][i] == pytest.approx(sent["amount_cny"].sum(), abs=0.01)
        assert full["dst_in_count_24h"][i] == got.height
    cash = full.filter(pl.col("channel_cash") == 1.0)
    gap = cash["cash_threshold_gap_pct"].drop_nulls()
    assert gap.min() > 0 and gap.max() <= 100
    under = cash.filter(pl.col("cash_threshold_gap_pct").is_not_null())
    assert ((10 ** under["amount_cny_log10"]) < LARGE_CASH_CNY).all()


def test_assemble_features_rejects_clashing_columns(tables: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    tx = tables[0].head(100)
    with pytest.raises(ValueError, match="comes from both"):
        assemble_features(tx, [TransactionFeatures(), TransactionFeatures()])


def test_temporal_protocol_and_threshold_from_validation(
    trained: tuple[TrainedModel, int], tables: tuple[pl.DataFrame, pl.DataFrame], features: pl.DataFrame, dataset: Path
) -> None:
    model, _ = trained
    tx = tables[0]
    w = model.metrics["windows"]
    assert w["train"]["last_ts"] < w["validation"]["first_ts"]
    assert w["validation"]["last_ts"] < w["test"]["first_ts"]
    assert [w[p]["rows"] for p in ("train", "validation", "test")] == pytest.approx(
        [0.6 * tx.height, 0.2 * tx.height, 0.2 * tx.height], rel=0.02
    )
    part = temporal_split(tx["ts"])
    y = tx["label"].to_numpy()
    validation, test = (part == 1), (part == 2)
    scores = model.predict_proba(features.filter(validation))[:, 1]
    assert model.threshold == smoothed_f1_threshold(y[validation], scores)
    # The validation period chose the setting and the tree count, and every member was trained with them.
    sel = model.metrics["selection"]
    best = max(sel["tried"], key=lambda r: r["validation_pr_auc"])
    assert (sel["setting"], sel["trees"]) == (best["setting"], best["trees"])
    assert len(model.boosters) == sel["bag"] == 3
    assert all(b.num_trees() == sel["trees"] for b in model.boosters)
    # Platt calibration is monotone: it changes what a score means, not the ranking.
    raw = model.raw_scores(feature_matrix(features.filter(validation), model.feature_names))
    assert np.array_equal(np.argsort(raw, kind="stable"), np.argsort(scores, kind="stable"))
    assert model.metrics["drift"]["recall"] == pytest.approx(
        model.metrics["test"]["recall"] - model.metrics["validation"]["recall"]
    )
    scores = model.predict_proba(features.filter(test))[:, 1]
    assert model.metrics["test"] == evaluate(y[test], scores, model.threshold, tx["typology"].to_numpy()[test])
    # The CLI's `tianluo evaluate` on the training dataset reports the same test period.
    report = evaluate_on_dataset(dataset, "aml")
    assert report["rows"] == model.metrics["test"]["rows"]
    assert report["f1"] == pytest.approx(model.metrics["test"]["f1"])


def test_test_labels_cannot_influence_the_model(tables: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    tx = tables[0].head(120_000)
    small = {"trees": (20, 40), "bag": 2}
    extractors = [TransactionFeatures(tables[1])]
    honest = train(tx, extractors, **small)
    part = temporal_split(tx.sort(["ts", "txn_id"])["ts"])
    flipped = tx.sort(["ts", "txn_id"]).with_columns(
        label=pl.when(pl.Series(part == 2)).then(1 - pl.col("label")).otherwise(pl.col("label"))
    )
    tampered = train(flipped, extractors, **small)
    assert tampered.threshold == honest.threshold and tampered.calibration == honest.calibration
    assert [b.model_to_string() for b in tampered.boosters] == [b.model_to_string() for b in honest.boosters]
    assert tampered.metrics["validation"] == honest.metrics["validation"]
    assert tampered.metrics["test"]["f1"] != honest.metrics["test"]["f1"]


def test_registry_round_trip(
    trained: tuple[TrainedModel, int], tables: tuple[pl.DataFrame, pl.DataFrame], features: pl.DataFrame, dataset: Path
) -> None:
    model, version = trained
    tx, accounts = tables
    registry = ModelRegistry.for_dataset(dataset)
    assert version == 1 and (dataset / "models" / "aml" / "1" / "model.txt").exists()
    loaded = registry.load("aml")
    rebuilt = build_extractors(loaded.extractors, accounts=accounts)
    assert [type(e) for e in rebuilt] == [TransactionFeatures] and rebuilt[0].accounts is accounts
    recent = features.tail(50_000)
    assert np.array_equal(loaded.predict_proba(recent), model.predict_proba(recent))
    assert loaded.threshold == model.threshold and loaded.feature_names == model.feature_names
    assert loaded.calibration == model.calibration and len(loaded.boosters) == 3
    assert (dataset / "models" / "aml" / "1" / "model-2.txt").exists()

    meta = json.loads((dataset / "models" / "aml" / "1" / "meta.json").read_text())
    fp = meta["training_data"]
    assert fp["dataset"] == str(dataset)
    assert fp["ingest_ids"] == [w["id"] for w in Dataset(dataset).ingests]
    assert fp["rows"] == tx.height
    assert fp["first_ts"] == tx["ts"].min().isoformat() and fp["last_ts"] == tx["ts"].max().isoformat()
    assert fp["labels"] == {"licit": int((tx["label"] == 0).sum()), "illicit": int(tx["label"].sum()), "unknown": 0}
    assert meta["extractors"] == [extractor_spec(TransactionFeatures())]

    assert registry.save("aml", loaded) == 2
    assert registry.versions("aml") == [1, 2]
    assert registry.load("aml").metrics == registry.load("aml", 1).metrics
    assert [(m["name"], m["version"]) for m in registry.list()] == [("aml", 1), ("aml", 2)]
    with pytest.raises(ValueError, match="model name"):
        registry.save("../escape", loaded)
    with pytest.raises(LookupError, match="no model named"):
        registry.load("missing")


def test_model_detector_alerts_with_reasons_in_words(
    trained: tuple[TrainedModel, int], tables: tuple[pl.DataFrame, pl.DataFrame], dataset: Path
) -> None:
    model, _ = trained
    tx, accounts = tables
    tx = tx.filter(pl.col("ts") >= datetime.fromisoformat(model.metrics["windows"]["test"]["first_ts"]))
    detector = ModelDetector.from_registry(ModelRegistry.for_dataset(dataset), "aml", 1)
    alerts = pl.DataFrame(pl.from_arrow(detector.detect(DetectInput(tx, accounts, pl.DataFrame()))))
    features = assemble_features(tx, [TransactionFeatures(accounts)])
    scores = model.predict_proba(features)[:, 1]
    assert alerts.height == int((scores >= model.threshold).sum()) > 0
    assert set(alerts["detector"]) == {"model_aml"} and set(alerts["kind"]) == {"model"}
    assert (alerts["score"] >= model.threshold).all()
    assert (alerts["txn_ids"].list.len() == 1).all()
    by_txn = dict(zip(tx["txn_id"], tx["src_account"], strict=True))
    assert all(by_txn[t[0]] == s for t, s in zip(alerts["txn_ids"], alerts["subject_id"], strict=True))
    for reasons in alerts["reasons"]:
        assert 1 <= len(reasons) <= 3
        for text in reasons:
            assert not SNAKE_CASE.search(text), f"reason {text!r} shows a feature name instead of words"
    # The reasons are the model's own top contributions for exactly those transactions.
    hit = np.flatnonzero(scores >= model.threshold)
    assert alerts["reasons"].to_list() == model.reasons(features[hit])


def test_model_beats_amount_baseline(
    trained: tuple[TrainedModel, int], tables: tuple[pl.DataFrame, pl.DataFrame]
) -> None:
    model, _ = trained
    tx = tables[0]
    part = temporal_split(tx["ts"])
    y = tx["label"].to_numpy()
    log_amount = np.log10(tx["amount_cny"].to_numpy())[:, None]
    # The baseline gets the same protocol: fitted on train, thresholded on validation, scored on test.
    baseline = LogisticRegression(class_weight="balanced").fit(log_amount[part == 0], y[part == 0])
    s = baseline.predict_proba(log_amount)[:, 1]
    base = evaluate(y[part == 2], s[part == 2], best_f1_threshold(y[part == 1], s[part == 1]))
    ours = model.metrics["test"]
    print(
        f"\ntest F1 model {ours['f1']:.3f} vs amount-only LR {base['f1']:.3f}; "
        f"PR-AUC {ours['pr_auc']:.3f} vs {base['pr_auc']:.3f}"
    )
    assert ours["f1"] >= base["f1"] + 0.5
    assert ours["f1"] >= 0.75 and ours["pr_auc"] >= 0.85


def test_drift_report_warns_on_a_different_population(
    trained: tuple[TrainedModel, int], tables: tuple[pl.DataFrame, pl.DataFrame], features: pl.DataFrame
) -> None:
    model, _ = trained
    tx = tables[0]
    part = temporal_split(tx["ts"])
    x = feature_matrix(features.filter(pl.Series(part == 2)), model.feature_names)
    y = tx["label"].to_numpy()[part == 2]
    same = drift_report(model, x, y)
    assert same["warnings"] == [] and same["features_moved"] == 0
    # The same rows with amounts a hundred times larger and ten times the crime: both warnings, the amount named.
    j = model.feature_names.index("amount_cny_log10")
    shifted = x.copy()
    shifted[:, j] += 2.0
    more_crime = np.where(np.arange(len(y)) % 10 == 0, 1, y)
    report = drift_report(model, shifted, more_crime)
    assert len(report["warnings"]) == 2
    assert "illicit rate" in report["warnings"][0] and "amount_cny_log10" in report["warnings"][1]
    assert report["psi_top"][0]["feature"] == "amount_cny_log10" and report["psi_top"][0]["psi"] > 1.0


def test_bootstrap_intervals_bracket_the_figure() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(5_000) < 0.02).astype(int)
    s = y * 0.25 + rng.random(5_000) * 0.6  # overlapping classes: every figure is uncertain
    point = evaluate(y, s, 0.5)
    ci = bootstrap_intervals(y, s, 0.5)
    for k in ("precision", "recall", "f1", "pr_auc"):
        lo, hi = ci[k]
        assert lo <= point[k] <= hi and hi - lo > 0
    assert bootstrap_intervals(y, s, 0.5) == ci  # fixed seed: the same data, the same interval
