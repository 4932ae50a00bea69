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

    .venv/bin/python bench/graph_features.py --workdir /tmp/tianluo-bench-gf
    .venv/bin/python bench/graph_features.py --rows 500000 --datasets sim

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


def timed(fn: Callable[[], object]) -> tuple[object, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


# --- detection ----------------------------------------------------------------------------------


def raw_features(df: pl.DataFrame) -> pl.DataFrame:
    local = df["ts"].dt.convert_time_zone("Asia/Shanghai")
    return pl.DataFrame({
        "amount_cny": df["amount_cny"],
        "channel": df["channel"].cast(pl.Categorical).to_physical().cast(pl.Int32),
        "cross_border": df["cross_border"].fill_null(False).cast(pl.Int8),
        "hour": local.dt.hour(), "weekday": local.dt.weekday(),
    })


def evaluate(name: str, dataset: str, x: np.ndarray, y: np.ndarray, typology: np.ndarray) -> None:
    """Train on the first 60 % (time order), pick the F1-best threshold on the next 20 %, score the last 20 %."""
    import lightgbm as lgb
    from sklearn.metrics import f1_score, precision_recall_curve, precision_score, recall_score

    n = len(y)
    a, b = int(n * 0.6), int(n * 0.8)
    model = lgb.LGBMClassifier(**LGBM).fit(x[:a], y[:a])
    p_val = model.predict_proba(x[a:b])[:, 1]
    prec, rec, thr = precision_recall_curve(y[a:b], p_val)
    f1 = 2 * prec * rec / np.maximum(prec + rec, 1e-12)
    threshold = float(thr[int(np.argmax(f1[:-1]))]) if len(thr) else 0.5
    pred = model.predict_proba(x[b:])[:, 1] >= threshold
    y_test = y[b:]
    say(dataset, f"f1.{name}", float(f1_score(y_test, pred, zero_division=0)))
    say(dataset, f"precision.{name}", float(precision_score(y_test, pred, zero_division=0)))
    say(dataset, f"recall.{name}", float(recall_score(y_test, pred, zero_division=0)))
    typ = typology[b:]
    for t in sorted({str(t) for t in typ[y_test == 1]}):
        hit = (typ == t) & (y_test == 1)
        say(dataset, f"recall.{t}.{name}", float(pred[hit].mean()), f"of {int(hit.sum())}")


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
        out, wall, cpu = timed(lambda: np.vstack([gfp.transform(x[i: i + 1]) for i in range(n_stream)]))
        stream_rate = n_stream / wall
        say(dataset, "throughput.c.snapml_stream", stream_rate,
            f"txn/s over the first {n_stream} rows (wall {wall:.1f} s, cpu {cpu:.1f} s)")
        _, wall, _ = timed(lambda: ours("c", args).transform(head.head(n_stream)))
        say(dataset, "throughput.c.ratio_vs_stream", (n_stream / wall) / stream_rate, "x")
        snap_stream = out[:, x_snap.shape[1]:].astype(np.float32) if n_stream == n_snap else None
    else:
        snap_stream = None

    # detection: every feature set on the rows Snap ML saw, Tianluo also on all rows
    y = head["label"].fill_null(0).to_numpy()
    typ = head["typology"].fill_null("none").to_numpy()
    raw = raw_features(head).to_numpy().astype(np.float32)
    evaluate("raw", dataset, raw, y, typ)
    evaluate("raw+snapml_batch", dataset, np.hstack([raw, snap_batch]), y, typ)
    if snap_stream is not None:
        evaluate("raw+snapml_stream", dataset, np.hstack([raw, snap_stream]), y, typ)
    evaluate("raw+tianluo", dataset, np.hstack([raw, ours_full[:n_snap]]), y, typ)
    if n_snap < df.height:
        evaluate("raw+tianluo_all_rows", dataset,
                 np.hstack([raw_features(df).to_numpy().astype(np.float32), ours_full]),
                 df["label"].fill_null(0).to_numpy(), df["typology"].fill_null("none").to_numpy())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=5_000_000, help="size of the simulated set")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "tianluo-bench-graph-features")
    ap.add_argument("--datasets", default="amlsim,sim", help="comma-separated: amlsim, sim")
    ap.add_argument("--snap-max-rows", type=int, default=300_000, help="Snap ML sees at most this many leading rows")
    ap.add_argument("--snap-stream-rows", type=int, default=150_000,
                    help="rows for Snap ML's one-at-a-time (causal) mode; F1 uses it only when it covers all rows")
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
