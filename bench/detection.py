"""Detection benchmark: the same LightGBM on raw + IBM Snap ML graph features vs raw + Tianluo's.

One process, the same rows, the same windows (seconds for both; `bench/graph_features.py`
`WINDOWS` and `PATTERN_WINDOW`), the full feature set of each tool (fan, degree, vertex
statistics, scatter-gather, temporal and length-constrained cycles), both extractors on 2
threads. Feature sets compared:

- `raw`: amount, channel, cross-border flag, hour and weekday (China time);
- `raw+snapml_batch`: Snap ML's documented batch mode, one `transform` over the whole history.
  Its vertex statistics then cover the whole batch, past *and future*, whatever `time_window`
  says, and every pattern is credited to all its edges: features no real-time scorer can have;
- `raw+snapml_causal`: Snap ML fed one distinct timestamp at a time (how it is used on a
  stream): a row sees the past and the rows of its own instant;
- `raw+snapml_daily`: Snap ML fed one UTC day at a time (a T+1 monitoring job): a row sees the
  past and its whole day, later rows of the day included. Fast enough for every row of the
  5,000,000-row set, where the batch mode is out of reach;
- `raw+tianluo`: Tianluo's causal features (a row sees the rows before it and itself);
- `raw+tianluo_v3`: the same without the ratio columns added in version 4 (flow-through, fan
  ratios, repeats; `graph_features.RATIOS`): what they add.

Protocol: rows in time order, split 60/20/20 (train / validation / test; AMLSim 40/20/40,
because its 65 SAR rows sit early and 60/20/20 would leave two to test), LightGBM fitted on
train; each feature set chooses its LightGBM setting from `LGBM_GRID` (tree size, leaf cap) by
validation PR-AUC, since one fixed setting favoured one side or the other; the threshold that
maximises the illicit class's F1 on validation; F1 / precision / recall / PR-AUC (average
precision) on test, mean ± standard deviation over seeds. Per
typology *t*: the test rows that are licit or of *t* (other typologies dropped), at the same
threshold. Datasets: the AMLSim sample; `panel`, five small simulated banks (60,000 rows over
28 days each, 2 % crime; `bench/graph_features.py` `load_panel`), each its own graph and its own
model, test rows pooled: about 1,400 test positives across 15 typologies, all rows within
Snap ML's reach; `bank300k`, a whole simulated bank (300,000 rows, 90 days, 0.5 % crime, 1,517
illicit rows); and `sim`, the simulated set of `--rows` (5,000,000) transactions. Snap ML's
batch mode with scatter-gather does not finish on the larger simulated sets in reasonable time
(`SNAP_ROWS`; docs/benchmarks.md), so there every tool sees only the leading `--snap-rows`
rows, and Tianluo alone is also scored on all rows.

    .venv/bin/python bench/detection.py --datasets amlsim
    .venv/bin/python bench/detection.py --datasets panel --snap-causal-rows 0
    .venv/bin/python bench/detection.py --datasets bank300k --snap-rows 50000
    .venv/bin/python bench/detection.py --datasets sim --rows 5000000 --all-rows-only --lightgbm "63 leaves, capped"
    .venv/bin/python bench/detection.py --datasets sim --rows 5000000 --all-rows-only --lightgbm "63 leaves, capped" \
        --snap-daily --snap-all-rows-level a --snap-cache /tmp/tianluo-bench-graph-features/snap

Prints one line per figure (`<dataset>.<figure> <value> [unit]`), then a Markdown table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numba
import numpy as np
import polars as pl

from tianluo.detect.graph_features import RATIOS, GraphFeatures

# The sibling benchmark holds the data loaders and the like-for-like configurations; load it by
# path so this script runs from any working directory.
_spec = importlib.util.spec_from_file_location("bench_graph_features", Path(__file__).with_name("graph_features.py"))
assert _spec is not None and _spec.loader is not None
gfb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gfb)

#: The LightGBM settings every feature set may choose from, and how it chooses: each feature set
#: gets the setting whose pooled validation PR-AUC (LightGBM seed 0) is highest, then that setting
#: for every seed. One fixed setting favoured one side or the other (2026-12-06): on the panel,
#: without `max_delta_step` ours led Snap ML's batch mode 0.872 to 0.827, with it Snap ML led 0.862
#: to 0.783; and without it training on the 5M set's 3M rows at 0.2 % crime collapsed (train PR-AUC
#: 0.106). `max_delta_step` caps leaf values as `tianluo train` does (src/tianluo/detect/model.py);
#: the small trees regularise for banks with only a few schemes of each kind to learn from.
LGBM = {
    "n_estimators": 300, "learning_rate": 0.05, "num_leaves": 63, "min_child_samples": 20,
    "colsample_bytree": 0.8, "subsample": 0.8, "subsample_freq": 1, "max_delta_step": 1.0, "random_state": 0,
    "n_jobs": gfb.THREADS, "verbose": -1,
}
LGBM_GRID: dict[str, dict[str, object]] = {
    "63 leaves, capped": LGBM,
    "63 leaves": {**LGBM, "max_delta_step": 0.0},
    "15 leaves, capped": {**LGBM, "num_leaves": 15, "min_child_samples": 50},
    "15 leaves": {**LGBM, "num_leaves": 15, "min_child_samples": 50, "max_delta_step": 0.0},
}
SPLITS = {"amlsim": (0.4, 0.6), "bank300k": (0.6, 0.8), "sim": (0.6, 0.8), "panel": (0.6, 0.8)}
#: Leading rows every feature set is computed on, unless `--snap-rows` says otherwise. Snap ML's
#: batch scatter-gather grows much faster than the row count on the simulated bank (2026-12-06:
#: 10k rows 0.3 s, 20k 3.3 s, 40k 55 s; 250k and 300k not finished after 7 and 14 minutes).
SNAP_ROWS = {"amlsim": 200_000, "bank300k": 50_000, "sim": 50_000, "panel": 100_000}


def raw_features(df: pl.DataFrame) -> np.ndarray:
    """What a model knows without any graph: amount, channel, cross-border, hour and weekday in China."""
    local = df["ts"].dt.convert_time_zone("Asia/Shanghai")
    return pl.DataFrame({
        "amount_cny": df["amount_cny"],
        "channel": df["channel"].cast(pl.Categorical).to_physical().cast(pl.Int32),
        "cross_border": df["cross_border"].fill_null(False).cast(pl.Int8),
        "hour": local.dt.hour(), "weekday": local.dt.weekday(),
    }).to_numpy().astype(np.float32)


def _f1(pred: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    tp = float((pred & (y == 1)).sum())
    precision = tp / max(int(pred.sum()), 1)
    recall = tp / max(int(y.sum()), 1)
    return 2 * precision * recall / max(precision + recall, 1e-12), precision, recall


#: One dataset's part: (features, labels, typologies), rows in time order. A panel has several.
Part = tuple[np.ndarray, np.ndarray, np.ndarray]


def _fit_score(parts: list[Part], split: tuple[float, float], params: dict[str, object],
               seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """One setting, one seed, every part: (test prediction, test score, test label, typology, validation PR-AUC).

    Per part: fit on the first rows (time order), pick the F1-best threshold on the next, score
    the rest. A panel's banks are separate graphs and separate models (as each bank would train
    its own); their validation and test rows are pooled.
    """
    import lightgbm as lgb
    from sklearn.metrics import average_precision_score, precision_recall_curve

    preds, scores, ys, typs, v_scores, v_ys = [], [], [], [], [], []
    for x, y, typology in parts:
        n = len(y)
        a, b = int(n * split[0]), int(n * split[1])
        model = lgb.LGBMClassifier(**{**params, "random_state": seed}).fit(x[:a], y[:a])
        p_val = model.predict_proba(x[a:b])[:, 1]
        prec, rec, thr = precision_recall_curve(y[a:b], p_val)
        f1 = 2 * prec * rec / np.maximum(prec + rec, 1e-12)
        threshold = float(thr[int(np.argmax(f1[:-1]))]) if len(thr) else 0.5
        p_test = model.predict_proba(x[b:])[:, 1]
        preds.append(p_test >= threshold)
        scores.append(p_test)
        ys.append(y[b:])
        typs.append(typology[b:])
        v_scores.append(p_val)
        v_ys.append(y[a:b])
    v_y = np.concatenate(v_ys)
    val = float(average_precision_score(v_y, np.concatenate(v_scores))) if v_y.any() else 0.0
    pred, score, y_test, typ = (np.concatenate(c) for c in (preds, scores, ys, typs))
    return pred, score, y_test, typ, val


def evaluate(parts: list[Part], split: tuple[float, float], seeds: tuple[int, ...],
             grid: dict[str, dict[str, object]] | None = None) -> dict[str, object]:
    """Choose the LightGBM setting on validation, then score the test rows once per seed.

    The setting is chosen from `grid` (default `LGBM_GRID`) by pooled validation PR-AUC with the
    first seed; the test rows never take part in the choice.
    """
    from sklearn.metrics import average_precision_score

    grid = grid or LGBM_GRID
    first = {name: _fit_score(parts, split, params, seeds[0]) for name, params in grid.items()}
    chosen = max(first, key=lambda name: first[name][4])
    runs: list[dict[str, float]] = []
    for seed in seeds:
        fitted = first[chosen] if seed == seeds[0] else _fit_score(parts, split, grid[chosen], seed)
        pred, score, y_test, typ, _ = fitted
        f, p, r = _f1(pred, y_test)
        run = {"f1": f, "precision": p, "recall": r, "pr_auc": float(average_precision_score(y_test, score))}
        for t in sorted({str(t) for t in typ[y_test == 1]}):
            keep = (y_test == 0) | (typ == t)
            run[f"f1.{t}"], _, run[f"recall.{t}"] = _f1(pred[keep], y_test[keep])
        runs.append(run)
    out: dict[str, object] = {k: (float(np.mean([r[k] for r in runs])), float(np.std([r[k] for r in runs])))
                              for k in runs[0]}
    # The pooled test rows are the same for every seed: count them from the last one.
    out["positives"] = {t: int(((typ == t) & (y_test == 1)).sum()) for t in sorted({str(t) for t in typ[y_test == 1]})}
    out["test_positives"] = int(y_test.sum())
    out["setting"] = chosen
    out["validation_pr_auc"] = {name: round(r[4], 4) for name, r in first.items()}
    return out


def timed(fn: Callable[[], np.ndarray]) -> tuple[np.ndarray, float]:
    """(result, wall seconds) of one run."""
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def report(dataset: str, name: str, res: dict[str, object], seeds: tuple[int, ...]) -> None:
    """Print one feature set's figures."""
    def ms(key: str) -> str:
        mean, std = res[key]  # type: ignore[misc]
        return f"{mean:.3f} ± {std:.3f}"

    gfb.say(dataset, f"f1.{name}", ms("f1"), f"over seeds {seeds}, {res['test_positives']} test positives")
    gfb.say(dataset, f"lightgbm.{name}", repr(res["setting"]),
            f"(validation PR-AUC per setting: {res['validation_pr_auc']})")
    for key in ("precision", "recall", "pr_auc"):
        gfb.say(dataset, f"{key}.{name}", ms(key))
    for t, n in res["positives"].items():  # type: ignore[union-attr]
        gfb.say(dataset, f"f1.{t}.{name}", ms(f"f1.{t}"), f"recall {ms(f'recall.{t}')} of {n}")


def table(results: list[tuple[str, str, int, float | None, dict[str, object]]]) -> None:
    """All results as one Markdown table (rows: dataset and feature set)."""
    kinds = sorted({t for *_, r in results for t in r["positives"]})  # type: ignore[union-attr]
    typology_cols = " | ".join(f"F1 {t}" for t in kinds)
    print(f"\n| data (rows) | features | LightGBM | extraction txn/s | F1 | PR-AUC | {typology_cols} |")
    print("|---|---|---|---|---|---|" + "---|" * len(kinds))
    for dataset, name, rows, rate, r in results:
        cells = [f"{r[k][0]:.3f} ± {r[k][1]:.3f}" for k in ("f1", "pr_auc")]  # type: ignore[index]
        cells += [f"{r[f'f1.{t}'][0]:.3f}" if f"f1.{t}" in r else "—" for t in kinds]  # type: ignore[index]
        speed = f"{rate:,.0f}" if rate else "—"
        print(f"| {dataset} ({rows:,}) | {name} | {r['setting']} | {speed} | " + " | ".join(cells) + " |")


def labels(df: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(label 0/1, typology or "none") of every row."""
    return df["label"].fill_null(0).to_numpy(), df["typology"].fill_null("none").to_numpy()


def run(dataset: str, frames: list[pl.DataFrame], args: argparse.Namespace,
        results: list[tuple[str, str, int, float | None, dict[str, object]]]) -> None:
    """Every feature set on the rows Snap ML sees; Tianluo also on all rows of a single set when that is more."""
    windows = gfb.WINDOWS[dataset]
    split = SPLITS[dataset]
    limit = args.snap_rows or SNAP_ROWS[dataset]
    heads = [df.head(min(df.height, limit)) for df in frames]
    gfb.say(dataset, "rows", sum(df.height for df in frames), f"in {len(frames)} separate graph(s)")
    gfb.say(dataset, "compared_rows", sum(h.height for h in heads), "(leading rows every feature set is computed on)")
    gfb.say(dataset, "windows", f"stats {', '.join(windows)}; patterns {gfb.PATTERN_WINDOW} (both tools)")
    gfb.say(dataset, "split", f"{split[0]:.0%} / {split[1] - split[0]:.0%} / {1 - split[1]:.0%}")
    gf = gfb.ours("c", windows)
    gf.transform(heads[0].head(2_000))  # compile / load the kernels outside the timing
    if not args.all_rows_only:
        compare(dataset, heads, gf, args, results)
    df = frames[0]
    if len(frames) == 1 and heads[0].height < df.height and args.all_rows_seeds:
        seeds = tuple(range(args.all_rows_seeds))
        raw = raw_features(df)
        cpu = time.process_time()
        feats, wall = timed(lambda: gf.transform(df).to_numpy().astype(np.float32))
        cpu = time.process_time() - cpu
        gfb.say(dataset, "extraction.tianluo_all_rows", df.height / wall, f"txn/s ({wall:.1f} s)")
        gfb.say(dataset, "cpu.tianluo_all_rows", df.height / cpu, f"txn per CPU second ({cpu:.0f} s)")
        res = evaluate([(np.hstack([raw, feats]), *labels(df))], split, seeds, args.grid)
        del feats
        report(dataset, "raw+tianluo_all_rows", res, seeds)
        results.append((dataset, "raw+tianluo (all rows)", df.height, df.height / wall, res))
        if args.snap_daily:
            # Level "a" (fan, degree, vertex statistics, no patterns) is what finishes on millions of
            # rows here; "c" (the full set) had not after 45 minutes on the 5M set.
            level = args.snap_all_rows_level
            snap, wall = snap_all_rows(dataset, df, level, windows, args.snap_cache)
            if wall is not None:
                gfb.say(dataset, f"extraction.snapml_daily_{level}_all_rows", df.height / wall, f"txn/s ({wall:.1f} s)")
            res = evaluate([(np.hstack([raw, snap]), *labels(df))], split, seeds, args.grid)
            del snap
            report(dataset, f"raw+snapml_daily_{level}_all_rows", res, seeds)
            results.append((dataset, f"raw+snapml_daily level {level} (all rows)", df.height,
                            df.height / wall if wall else None, res))


def snap_all_rows(dataset: str, df: pl.DataFrame, level: str, windows: tuple[str, ...],
                  cache: Path | None) -> tuple[np.ndarray, float | None]:
    """Snap ML's daily-mode features on every row of `df`, and the wall seconds they took (None if unknown).

    On millions of rows this takes over an hour here, so with `cache` the features are kept in
    `<cache>/<dataset>-<rows>-daily-<level>.npy` with their wall and CPU seconds beside them
    (`.json`), and a later run evaluates the kept features instead of extracting them again.
    The CPU seconds (both threads) do not depend on what else the machine was doing.
    """
    stem = cache / f"{dataset}-{df.height}-daily-{level}" if cache else None
    if stem is not None and stem.with_suffix(".npy").exists():
        took = json.loads(stem.with_suffix(".json").read_text())
        gfb.say(dataset, f"snapml_daily_{level}_all_rows.cached", str(stem.with_suffix(".npy")),
                f"(extracted {took['when']}: {took['wall_s']} s wall, {took['cpu_s']} s CPU)")
        gfb.say(dataset, f"cpu.snapml_daily_{level}_all_rows", df.height / took["cpu_s"],
                f"txn per CPU second ({took['cpu_s']:.0f} s)")
        return np.load(stem.with_suffix(".npy")), took["wall_s"]
    x = gfb.snap_input(df)
    wall, cpu = time.perf_counter(), time.process_time()
    snap = gfb.snap_daily(level, windows, x, progress=True).astype(np.float32)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    gfb.say(dataset, f"cpu.snapml_daily_{level}_all_rows", df.height / cpu, f"txn per CPU second ({cpu:.0f} s)")
    if stem is not None:
        stem.parent.mkdir(parents=True, exist_ok=True)
        np.save(stem.with_suffix(".npy"), snap)
        when = f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC"
        took = {"when": when, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1)}
        stem.with_suffix(".json").write_text(json.dumps(took))
    return snap, wall


def drop_bulk_days(dataset: str, df: pl.DataFrame, limit: int) -> pl.DataFrame:
    """`df` without the UTC days on which one account made more than `limit` payments (bulk runs), for both tools.

    Snap ML's cost per call grows with the square of an account's payments in the window
    (measured 2026-12-06 with fan / degree / statistics on one payer paying n accounts in a
    day: 5,000 → 2 CPU s, 10,000 → 9, 20,000 → 40, 40,000 → 200), so a bank's quarterly interest
    run (twice in the 5M set: 265,000 payments from one account in a day) keeps it busy for
    hours. Leaving those days out lets it finish on millions of rows; ours do not need it.
    """
    day = (pl.col("ts").dt.epoch("s") // 86_400).alias("day")
    busiest = df.group_by(day, "src_account").agg(pl.len().alias("n")).filter(pl.col("n") > limit)
    bulk = busiest["day"].unique().sort().to_list()
    out = df.filter(~day.is_in(bulk))
    dates = ", ".join(str(dt.date(1970, 1, 1) + dt.timedelta(days=d)) for d in bulk)
    gfb.say(dataset, "bulk_days_dropped", len(bulk), f"({dates}): {df.height - out.height:,} of {df.height:,} rows, "
            f"one account making more than {limit:,} payments in a day")
    return out


#: Columns added in GraphFeatures version 4 (2026-12-06); `raw+tianluo_v3` leaves them out.
V4_COLUMNS = re.compile("|".join(f"{name}_" for name, _, _ in RATIOS))


def compare(dataset: str, heads: list[pl.DataFrame], gf: GraphFeatures, args: argparse.Namespace,
            results: list[tuple[str, str, int, float | None, dict[str, object]]]) -> None:
    """Every feature set on the same rows: extraction speed, then the same LightGBM on each."""
    windows = gfb.WINDOWS[dataset]
    seeds = tuple(range(args.seeds))
    n = sum(h.height for h in heads)
    causal = all(h.height <= args.snap_causal_rows for h in heads)
    keep = [k for k, c in enumerate(gf.feature_names) if not V4_COLUMNS.match(c)]
    sets: dict[str, list[Part]] = {name: [] for name in ("raw", "raw+tianluo", "raw+tianluo_v3", "raw+snapml_batch")}
    if causal:
        sets["raw+snapml_causal"] = []
    if args.snap_daily:
        sets["raw+snapml_daily"] = []
    walls = dict.fromkeys(sets, 0.0)
    for head in heads:
        raw = raw_features(head)
        y, typ = labels(head)
        sets["raw"].append((raw, y, typ))
        feats, wall = timed(lambda head=head: gf.transform(head).to_numpy().astype(np.float32))
        walls["raw+tianluo"] += wall
        sets["raw+tianluo"].append((np.hstack([raw, feats]), y, typ))
        sets["raw+tianluo_v3"].append((np.hstack([raw, feats[:, keep]]), y, typ))
        x = gfb.snap_input(head)
        snap, wall = timed(lambda x=x: gfb.snap_batch("c", windows, x).astype(np.float32))
        walls["raw+snapml_batch"] += wall
        sets["raw+snapml_batch"].append((np.hstack([raw, snap]), y, typ))
        if causal:
            snap, wall = timed(lambda x=x: gfb.snap_causal("c", windows, x).astype(np.float32))
            walls["raw+snapml_causal"] += wall
            sets["raw+snapml_causal"].append((np.hstack([raw, snap]), y, typ))
        if args.snap_daily:
            snap, wall = timed(lambda x=x: gfb.snap_daily("c", windows, x).astype(np.float32))
            walls["raw+snapml_daily"] += wall
            sets["raw+snapml_daily"].append((np.hstack([raw, snap]), y, typ))
    for name, wall in walls.items():
        if wall:
            gfb.say(dataset, f"extraction.{name.removeprefix('raw+')}", n / wall, f"txn/s ({wall:.1f} s, 2 threads)")
    for name, parts in sets.items():
        res = evaluate(parts, SPLITS[dataset], seeds, args.grid)
        report(dataset, name, res, seeds)
        results.append((dataset, name, n, n / walls[name] if walls[name] else None, res))


def main() -> None:
    """Parse the command line, run the chosen datasets, print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=5_000_000, help="size of the simulated set")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "tianluo-bench-graph-features")
    ap.add_argument("--datasets", default="amlsim,panel,bank300k",
                    help="comma-separated: amlsim, panel, bank300k, sim; amlsim10k and amlsim-sample run "
                         "bench/model_defaults.py (tianluo train defaults vs Snap ML + plain LightGBM)")
    ap.add_argument("--snap-rows", type=int, default=0,
                    help="leading rows every feature set is computed on (default per dataset: SNAP_ROWS)")
    ap.add_argument("--snap-causal-rows", type=int, default=300_000,
                    help="run Snap ML's causal mode (one call per timestamp) when the compared rows are at most this")
    ap.add_argument("--snap-daily", action="store_true",
                    help="also Snap ML fed one day at a time (on the compared rows, and on all rows with Tianluo's)")
    ap.add_argument("--snap-all-rows-level", default="c", choices=gfb.LEVELS,
                    help="Snap ML's features on all rows with --snap-daily: a = fan/degree/stats, "
                         "b = + scatter-gather, c = + cycles (the full set)")
    ap.add_argument("--drop-bulk-days", type=int, default=0, metavar="N",
                    help="leave out the days on which one account makes more than N payments (bulk runs such as "
                         "quarterly interest; Snap ML's cost is quadratic in them), for every tool")
    ap.add_argument("--snap-cache", type=Path, default=None,
                    help="keep Snap ML's all-rows daily features here and reuse them on later runs")
    ap.add_argument("--seeds", type=int, default=5, help="LightGBM seeds per feature set")
    ap.add_argument("--all-rows-seeds", type=int, default=1,
                    help="seeds for Tianluo on all simulated rows (0: skip; the comparison runs on the leading rows)")
    ap.add_argument("--all-rows-only", action="store_true",
                    help="skip the side-by-side comparison; only Tianluo on all simulated rows")
    ap.add_argument("--lightgbm", default="", choices=["", *LGBM_GRID],
                    help="one LightGBM setting for every feature set instead of choosing from LGBM_GRID on validation")
    args = ap.parse_args()
    args.grid = {args.lightgbm: LGBM_GRID[args.lightgbm]} if args.lightgbm else LGBM_GRID
    numba.set_num_threads(gfb.THREADS)
    args.workdir.mkdir(parents=True, exist_ok=True)
    print(gfb.header(), flush=True)
    results: list[tuple[str, str, int, float | None, dict[str, object]]] = []
    names = args.datasets.split(",")
    defaults = [name for name in names if name in ("amlsim10k", "amlsim-sample")]
    if defaults:  # `tianluo train` defaults, five seeds each: bench/model_defaults.py
        here = Path(__file__).with_name("model_defaults.py")
        spec = importlib.util.spec_from_file_location("bench_model_defaults", here)
        assert spec is not None and spec.loader is not None
        model_defaults = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(model_defaults)
        model_defaults.main(defaults, args.seeds, args.workdir)
    for name in (name for name in names if name not in defaults):
        frames = gfb.load_panel(args.workdir) if name == "panel" else [gfb.load(name, args.workdir, args.rows)]
        if args.drop_bulk_days:
            frames = [drop_bulk_days(name, df, args.drop_bulk_days) for df in frames]
        run(name, frames, args, results)
        print(f"# load after {name}: {os.getloadavg()[0]:.1f}", flush=True)
    if results:
        table(results)


if __name__ == "__main__":
    main()
