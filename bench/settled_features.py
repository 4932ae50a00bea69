"""Settled graph features: what the look-ahead costs, in batch and streamed, and what it is worth to a model.

    .venv/bin/python bench/settled_features.py --dataset /tmp/amlsim10k [--rows 200000] [--horizons 1d]

Needs an ingested dataset (`tianluo ingest ../shared/data/amlsim-10k -d /tmp/amlsim10k`).
Prints one line per figure: batch throughput of `GraphFeatures().transform` (causal) and
`GraphFeatures(horizon=H).transform` (settled) on the first `--rows` transactions in
(ts, txn_id) order, best of `--repeat` runs after a warm-up that compiles the kernels;
throughput of `SettledGraphState` fed one day of transactions per call on the first
`--stream-rows` of them (checked equal to the batch rows); then, with `--model`, test
PR-AUC and F1 of one plain LightGBM (the issue's setting, one seed, 60/20/20 split in
time, threshold that maximises F1 on validation) on raw + causal vs raw + settled features.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import polars as pl

from tianluo.detect.features import TransactionFeatures
from tianluo.detect.graph_features import GraphFeatures
from tianluo.detect.model import best_f1_threshold, temporal_split
from tianluo.store import Dataset


def load(root: str, rows: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The first `rows` transactions in (ts, txn_id) order, and the accounts table."""
    ds = Dataset(root)
    tx = pl.from_arrow(ds.read("transactions")).sort("ts", "txn_id").head(rows)
    return tx, pl.from_arrow(ds.read("accounts"))


def timed(gf: GraphFeatures, tx: pl.DataFrame, repeat: int) -> tuple[float, pl.DataFrame]:
    best = float("inf")
    out = pl.DataFrame()
    for _ in range(repeat):
        start = time.perf_counter()
        out = gf.transform(tx)
        best = min(best, time.perf_counter() - start)
    return best, out


def stream(gf: GraphFeatures, tx: pl.DataFrame, want: np.ndarray) -> float:
    """Seconds to score `tx` through `SettledGraphState`, one calendar day per call; checks the rows against `want`."""
    state = gf.settled_online()
    got = []
    start = time.perf_counter()
    for (_,), day in tx.group_by(pl.col("ts").dt.date(), maintain_order=True):
        got.append(state.extend(day["src_account"].to_list(), day["dst_account"].to_list(),
                                day["ts"].dt.epoch("us").to_list(), day["amount_cny"].to_list()).features)
    got.append(state.flush().features)
    seconds = time.perf_counter() - start
    np.testing.assert_array_equal(np.vstack(got), want)
    return seconds


def model_figures(tx: pl.DataFrame, raw: pl.DataFrame, graph: pl.DataFrame, seed: int) -> tuple[float, float]:
    """(test PR-AUC, test F1) of the issue's plain LightGBM on raw + these graph features."""
    import lightgbm as lgb
    from sklearn.metrics import average_precision_score, f1_score

    x = pl.concat([raw, graph], how="horizontal").select(pl.all().cast(pl.Float64)).to_numpy()
    y = tx["label"].fill_null(False).cast(pl.Int8).to_numpy()
    part = temporal_split(tx["ts"])
    clf = lgb.LGBMClassifier(n_estimators=300, learning_rate=0.05, num_leaves=63, scale_pos_weight=5,
                             random_state=seed, n_jobs=2, verbose=-1)
    clf.fit(x[part == 0], y[part == 0])
    val, test = clf.predict_proba(x[part == 1])[:, 1], clf.predict_proba(x[part == 2])[:, 1]
    threshold = best_f1_threshold(y[part == 1], val)
    return average_precision_score(y[part == 2], test), f1_score(y[part == 2], test >= threshold)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--horizons", default="1d")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--stream-rows", type=int, default=20_000)
    ap.add_argument("--model", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    tx, accounts = load(args.dataset, args.rows)
    span = tx["ts"].max() - tx["ts"].min()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; "
          f"{tx.height:,} transactions over {span}")
    GraphFeatures(horizon="1d").transform(tx.head(2000))  # compile every kernel once
    causal_s, causal = timed(GraphFeatures(), tx, args.repeat)
    print(f"causal transform: {causal_s:.2f} s, {tx.height / causal_s:,.0f} txn/s, {causal.width} columns")
    settled = {}
    for h in args.horizons.split(","):
        gf = GraphFeatures(horizon=h)
        secs, settled[h] = timed(gf, tx, args.repeat)
        print(f"settled transform horizon {h}: {secs:.2f} s, {tx.height / secs:,.0f} txn/s, "
              f"{settled[h].width} columns, {causal_s / secs:.2f}x the causal throughput")
        head = tx.head(args.stream_rows)
        if head.height:
            want = gf.transform(head).to_numpy()
            secs = stream(gf, head, want)
            print(f"settled stream horizon {h}, one day per call: {head.height:,} rows in {secs:.2f} s, "
                  f"{head.height / secs:,.0f} txn/s, equal to batch")
    if args.model:
        raw = TransactionFeatures(accounts).transform(tx)
        pr, f1 = model_figures(tx, raw, causal, args.seed)
        print(f"LightGBM seed {args.seed}, raw + causal ({causal.width} graph columns): PR-AUC {pr:.3f}, F1 {f1:.3f}")
        for h, feats in settled.items():
            pr, f1 = model_figures(tx, raw, feats, args.seed)
            print(f"LightGBM seed {args.seed}, raw + settled {h} ({feats.width} graph columns): "
                  f"PR-AUC {pr:.3f}, F1 {f1:.3f}")


if __name__ == "__main__":
    main()
