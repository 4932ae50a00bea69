"""Benchmark Tianluo's graph features against IBM Snap ML's GraphFeaturePreprocessor: speed, then detection F1.

One process, the same data, the same windows and the same thread count for both:

1. throughput (transactions/s, wall and CPU) for (a) fan, degree and vertex statistics,
   (b) + scatter-gather, (c) + temporal and length-constrained cycles (the full set);
   Snap ML in its documented batch mode (one `transform` over the whole history, which
   lets earlier rows see later ones) and, on a prefix, in its causal one-row-at-a-time
   mode; Tianluo always causal, timed from a Polars DataFrame (string account ids
   included), Snap ML from a ready numeric array;
2. minority-class F1 of one LightGBM configuration (temporal 60/20/20 split, threshold
   chosen on validation) on raw features alone, raw + Snap ML features, raw + Tianluo
   features; recall per typology at that threshold.

Datasets: `../shared/data/amlsim-sample` and a simulated set of `--rows` transactions
(generated once into `--workdir` and reused). Snap ML is run on at most
`--snap-max-rows` leading rows of a dataset (its cost grows quickly with hub accounts);
whenever that cap applies, Tianluo is also scored on the same rows, and ratios and F1 are
reported on those rows.

    .venv/bin/python -P bench/graph_features.py --workdir /tmp/tianluo-bench-gf
    .venv/bin/python -P bench/graph_features.py --rows 500000 --snap-max-rows 500000 --datasets sim

Prints one line per figure: `<dataset>.<figure> <value> [unit]`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numba
import numpy as np
import polars as pl

from tianluo.detect.graph_features import GraphFeatures

DAY = 86_400
BINS = [2, 3, 4, 5, 6, 8, 10, 15, 20]
THREADS = 2
LGBM = {
    "n_estimators": 300, "learning_rate": 0.05, "num_leaves": 63, "min_child_samples": 20,
    "colsample_bytree": 0.8, "subsample": 0.8, "subsample_freq": 1, "random_state": 0,
    "n_jobs": THREADS, "verbose": -1,
}
SEEDS = (0, 1, 2)
#: Train / validation boundaries (shares of rows in time order). AMLSim's 65 SAR rows sit mostly
#: early in its two years: a 60/20/20 split would leave two in the test set, 40/20/40 leaves eleven.
SPLITS = {"amlsim": (0.4, 0.6), "sim": (0.6, 0.8)}


def say(dataset: str, figure: str, value: float | int | str, unit: str = "") -> None:
    if isinstance(value, float):
        value = f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"
    print(f"{dataset}.{figure} {value}{(' ' + unit) if unit else ''}", flush=True)


# --- data ---------------------------------------------------------------------------------------


def load_amlsim(work: Path) -> pl.DataFrame:
    cached = work / "amlsim.parquet"
    if not cached.exists():
        from tianluo.ingest import ingest, open_reader
        from tianluo.store import Dataset

        store = work / "amlsim-store"
        ingest(open_reader(Path(__file__).resolve().parents[1] / "../shared/data/amlsim-sample"),
               Dataset(store, create=True))
        pl.from_arrow(Dataset(store).read("transactions")).write_parquet(cached)
    return pl.read_parquet(cached)


def load_simulated(work: Path, rows: int) -> pl.DataFrame:
    cached = work / f"sim-{rows}.parquet"
    if not cached.exists():
        from tianluo.reference.currency import FxTable
        from tianluo.simulate import SimConfig, simulate

        persons = max(2_000, rows // 20)
        t0 = time.perf_counter()
        sim = simulate(SimConfig(transactions=rows, persons=persons, enterprises=max(200, persons // 10),
                                 days=180, seed=1))
        df = pl.from_arrow(sim.transactions)
        df = df.with_columns(amount_cny=FxTable.load().to_cny(df["amount"], df["currency"], df["ts"]))
        df.write_parquet(cached)
        print(f"# generated {df.height:,} simulated rows in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return pl.read_parquet(cached)


def snap_input(df: pl.DataFrame) -> np.ndarray:
    """Snap ML's edge list: [edge id, source id, target id, timestamp (s), amount]."""
    accounts = pl.Enum(pl.concat([df["src_account"], df["dst_account"]]).unique(maintain_order=True))
    return np.column_stack([
        np.arange(df.height), df["src_account"].cast(accounts).to_physical().to_numpy(),
        df["dst_account"].cast(accounts).to_physical().to_numpy(), df["ts"].dt.epoch("s").to_numpy(),
        df["amount_cny"].to_numpy(),
    ]).astype(np.float64)


# --- the two extractors, configured alike --------------------------------------------------------

LEVELS = ("a", "b", "c")  # fan/degree/stats, + scatter-gather, + cycles


def ours(level: str, args: argparse.Namespace) -> GraphFeatures:
    w = f"{args.pattern_days}d"
    return GraphFeatures(
        windows=("1d", w), scatter_gather=w if level in "bc" else None,
        temporal_cycles=w if level == "c" else None, lc_cycles=w if level == "c" else None,
        temporal_cycle_max_len=args.cycle_len, lc_cycle_max_len=args.lc_len,
    )


def snap_params(level: str, args: argparse.Namespace) -> dict[str, object]:
    """Snap ML windows are closed ([t - tw, t]) for patterns and the graph: tw = w - 1 s equals our (t - w, t]."""
    w = args.pattern_days * DAY - 1
    return {
        "num_threads": THREADS, "time_window": w, "vertex_stats": True, "vertex_stats_cols": [4],
        "vertex_stats_feats": [0, 1, 2, 3, 4, 5, 6, 8],  # fan, degree, ratio, mean, sum, min, max, variance
        "fan": True, "fan_tw": DAY, "fan_bins": BINS, "degree": True, "degree_tw": DAY, "degree_bins": BINS,
        "scatter-gather": level in "bc", "scatter-gather_tw": w, "scatter-gather_bins": BINS,
        "temp-cycle": level == "c", "temp-cycle_tw": w, "temp-cycle_bins": BINS,
        "lc-cycle": level == "c", "lc-cycle_tw": w, "lc-cycle_len": args.lc_len,
        "lc-cycle_bins": list(range(2, args.lc_len + 1)),
    }


def snap(level: str, args: argparse.Namespace) -> Any:
    """A Snap ML preprocessor with `snap_params`."""
    from snapml import GraphFeaturePreprocessor

    gfp = GraphFeaturePreprocessor()
    params = gfp.get_params().copy()
    params.update(snap_params(level, args))
    gfp.set_params(params)
    return gfp


def timed(fn: Callable[[], object], repeat_under: float = 10.0) -> tuple[object, float, float]:
    """(result, wall s, CPU s) of the fastest of up to three runs; runs past `repeat_under` seconds are not repeated.

    The machine is shared: repeating short runs keeps one-off stalls out of the figure,
    and both tools get the same policy.
    """
    best = (None, float("inf"), float("inf"))
    for _ in range(3):
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn()
        run = (out, time.perf_counter() - wall, time.process_time() - cpu)
        best = min(best, run, key=lambda r: r[1])
        if run[1] > repeat_under:
            break
    return best


# --- detection ----------------------------------------------------------------------------------


def raw_features(df: pl.DataFrame) -> pl.DataFrame:
    local = df["ts"].dt.convert_time_zone("Asia/Shanghai")
    return pl.DataFrame({
        "amount_cny": df["amount_cny"],
        "channel": df["channel"].cast(pl.Categorical).to_physical().cast(pl.Int32),
        "cross_border": df["cross_border"].fill_null(False).cast(pl.Int8),
        "hour": local.dt.hour(), "weekday": local.dt.weekday(),
    })


def evaluate(name: str, dataset: str, x: np.ndarray, y: np.ndarray, typology: np.ndarray,
             split: tuple[float, float]) -> None:
    """Train on the first rows (time order), pick the F1-best threshold on the next, score the rest.

    Three seeds of the same configuration; F1, precision, recall and recall per typology
    are their means, average precision (threshold-free) is reported beside them.
    """
    import lightgbm as lgb
    from sklearn.metrics import average_precision_score, precision_recall_curve

    n = len(y)
    a, b = int(n * split[0]), int(n * split[1])
    y_test, typ = y[b:], typology[b:]
    scores: list[tuple[float, float, float, float]] = []
    hits: dict[str, list[float]] = {}
    for seed in SEEDS:
        model = lgb.LGBMClassifier(**{**LGBM, "random_state": seed}).fit(x[:a], y[:a])
        prec, rec, thr = precision_recall_curve(y[a:b], model.predict_proba(x[a:b])[:, 1])
        f1 = 2 * prec * rec / np.maximum(prec + rec, 1e-12)
        threshold = float(thr[int(np.argmax(f1[:-1]))]) if len(thr) else 0.5
        p_test = model.predict_proba(x[b:])[:, 1]
        pred = p_test >= threshold
        tp = float((pred & (y_test == 1)).sum())
        precision = tp / max(pred.sum(), 1)
        recall = tp / max(y_test.sum(), 1)
        scores.append((2 * precision * recall / max(precision + recall, 1e-12), precision, recall,
                       float(average_precision_score(y_test, p_test))))
        for t in sorted({str(t) for t in typ[y_test == 1]}):
            hits.setdefault(t, []).append(float(pred[(typ == t) & (y_test == 1)].mean()))
    s = np.array(scores)
    say(dataset, f"f1.{name}", float(s[:, 0].mean()), f"± {s[:, 0].std():.3f} over seeds {SEEDS}")
    say(dataset, f"precision.{name}", float(s[:, 1].mean()))
    say(dataset, f"recall.{name}", float(s[:, 2].mean()))
    say(dataset, f"average_precision.{name}", float(s[:, 3].mean()))
    for t, r in hits.items():
        say(dataset, f"recall.{t}.{name}", float(np.mean(r)), f"of {int(((typ == t) & (y_test == 1)).sum())}")


def online_latency(dataset: str, df: pl.DataFrame, args: argparse.Namespace) -> None:
    """Score rows one at a time through `OnlineGraphState.update`; check they equal the batch features."""
    gf = ours("c", args)
    state = gf.online()
    state.update("warm", "up", 0, 1.0)  # compile / load outside the timing
    state = gf.online()
    rows = df.select(pl.col("src_account"), pl.col("dst_account"), pl.col("ts").dt.epoch("us"), "amount_cny").rows()
    took = np.empty(len(rows))
    got = np.empty((len(rows), len(gf.feature_names)))
    for k, (src, dst, ts, amount) in enumerate(rows):
        t0 = time.perf_counter()
        got[k] = state.update(src, dst, ts, amount)
        took[k] = time.perf_counter() - t0
    say(dataset, "online.update_mean", float(took.mean() * 1e6), f"µs per transaction over {len(rows)} rows")
    say(dataset, "online.update_p99", float(np.percentile(took, 99) * 1e6), "µs")
    say(dataset, "online.equals_batch", str(bool(np.array_equal(got, gf.transform(df).to_numpy(), equal_nan=True))))


# --- one dataset --------------------------------------------------------------------------------


def run(dataset: str, df: pl.DataFrame, args: argparse.Namespace) -> None:
    df = df.sort("ts", maintain_order=True)
    n_snap = min(df.height, args.snap_max_rows)
    head = df.head(n_snap)
    x_snap = snap_input(head)
    say(dataset, "rows", df.height)
    say(dataset, "positives", int(df["label"].fill_null(0).sum()))
    say(dataset, "snapml_rows", n_snap, "(leading rows Snap ML is run on)")
    for level in LEVELS:
        gf = ours(level, args)
        gf.transform(df.head(2_000))  # compile / load the kernels outside the timing
        feats, wall, cpu = timed(lambda gf=gf: gf.transform(df))
        if level == "c":
            ours_full = feats.to_numpy().astype(np.float32)
        del feats
        say(dataset, f"throughput.{level}.tianluo", df.height / wall, f"txn/s (wall {wall:.1f} s, cpu {cpu:.1f} s)")
        if n_snap < df.height:
            _, wall, cpu = timed(lambda gf=gf: gf.transform(head))
            say(dataset, f"throughput.{level}.tianluo_on_snapml_rows", n_snap / wall,
                f"txn/s (wall {wall:.1f} s, cpu {cpu:.1f} s)")
        ours_rate = n_snap / wall
        out, wall, cpu = timed(lambda level=level: snap(level, args).transform(x_snap))
        if level == "c":
            snap_batch = out[:, x_snap.shape[1]:].astype(np.float32)
        del out
        say(dataset, f"throughput.{level}.snapml_batch", n_snap / wall, f"txn/s (wall {wall:.1f} s, cpu {cpu:.1f} s)")
        say(dataset, f"throughput.{level}.ratio_vs_batch", ours_rate / (n_snap / wall), "x")
    n_stream = min(n_snap, args.snap_stream_rows)
    if n_stream:
        gfp = snap("c", args)
        x = x_snap[:n_stream]
        out, wall, cpu = timed(lambda: np.vstack([gfp.transform(x[i: i + 1]) for i in range(n_stream)]), 0)
        stream_rate = n_stream / wall
        say(dataset, "throughput.c.snapml_stream", stream_rate,
            f"txn/s over the first {n_stream} rows (wall {wall:.1f} s, cpu {cpu:.1f} s)")
        _, wall, _ = timed(lambda: ours("c", args).transform(head.head(n_stream)))
        say(dataset, "throughput.c.ratio_vs_stream", (n_stream / wall) / stream_rate, "x")
        snap_stream = out[:, x_snap.shape[1]:].astype(np.float32) if n_stream == n_snap else None
    else:
        snap_stream = None

    online_latency(dataset, df.head(args.online_rows), args)

    # detection: every feature set on the rows Snap ML saw, Tianluo also on all rows
    y = head["label"].fill_null(0).to_numpy()
    typ = head["typology"].fill_null("none").to_numpy()
    raw = raw_features(head).to_numpy().astype(np.float32)
    split = SPLITS[dataset]
    say(dataset, "split", f"{split[0]:.0%} train / {split[1] - split[0]:.0%} validation / {1 - split[1]:.0%} test",
        f"({int(y[int(len(y) * split[1]):].sum())} test positives)")
    evaluate("raw", dataset, raw, y, typ, split)
    evaluate("raw+snapml_batch", dataset, np.hstack([raw, snap_batch]), y, typ, split)
    if snap_stream is not None:
        evaluate("raw+snapml_stream", dataset, np.hstack([raw, snap_stream]), y, typ, split)
    evaluate("raw+tianluo", dataset, np.hstack([raw, ours_full[:n_snap]]), y, typ, split)
    if n_snap < df.height:
        evaluate("raw+tianluo_all_rows", dataset,
                 np.hstack([raw_features(df).to_numpy().astype(np.float32), ours_full]),
                 df["label"].fill_null(0).to_numpy(), df["typology"].fill_null("none").to_numpy(), split)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=5_000_000, help="size of the simulated set")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "tianluo-bench-graph-features")
    ap.add_argument("--datasets", default="amlsim,sim", help="comma-separated: amlsim, sim")
    ap.add_argument("--snap-max-rows", type=int, default=300_000, help="Snap ML sees at most this many leading rows")
    ap.add_argument("--snap-stream-rows", type=int, default=150_000,
                    help="rows for Snap ML's one-at-a-time (causal) mode; F1 uses it only when it covers all rows")
    ap.add_argument("--online-rows", type=int, default=20_000, help="rows scored one at a time for latency")
    ap.add_argument("--pattern-days", type=int, default=7, help="window of statistics and patterns (days)")
    ap.add_argument("--cycle-len", type=int, default=10, help="longest temporal cycle Tianluo counts")
    ap.add_argument("--lc-len", type=int, default=6, help="longest length-constrained cycle (both)")
    args = ap.parse_args()
    numba.set_num_threads(THREADS)
    args.workdir.mkdir(parents=True, exist_ok=True)
    from importlib.metadata import version

    print(f"# {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}, numba {numba.__version__}, "
          f"snapml {version('snapml')}, threads {THREADS}", flush=True)
    for name in args.datasets.split(","):
        df = load_amlsim(args.workdir) if name == "amlsim" else load_simulated(args.workdir, args.rows)
        run(name, df, args)
        print(f"# load after {name}: {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
