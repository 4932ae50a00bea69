"""`tianluo train` defaults against the 25-line peer script and against Tianluo's features under that script's model.

One process, one dataset ingested once, the same rows and the same split in time
(`tianluo.detect.model.temporal_split`: 60/20/20 on AMLSim 10K, 40/20/40 on the AMLSim sample as
in `bench/detection.py`), `--seeds` seeds (default 5: 0..4) for each of:

- (a) `train`: `tianluo.detect.model.train(tx, default_extractors(accounts, horizon=H), seed=s)`,
  the defaults of `tianluo train` (grid chosen on validation PR-AUC at 100..400 trees, 3 averaged
  members, Platt calibration, smoothed-F1 threshold), settled (`H = "1d"`, the CLI default) and
  causal (`H = None`). The features of each mode are computed once (extractors fitted on the
  training period, as `train` does) and handed to every seed's `train` through `Precomputed`,
  which checks that `train` asks for the very rows, in the very order, they were computed for;
- (b) `snapml+plain`: the peer script. IBM Snap ML's `GraphFeaturePreprocessor` in batch mode
  (one `transform` over the whole history: fan, degree, vertex statistics, scatter-gather, every
  window 1 day; `bench/graph_features.py` `snap_params`) next to the raw features of
  `bench/detection.py`, then `LGBMClassifier(n_estimators=300, learning_rate=0.05, num_leaves=63,
  scale_pos_weight=5, random_state=s)` fitted on the training period without early stopping, and
  the threshold among 0.05, 0.10, ..., 0.95 with the best validation F1;
- (c) `tianluo+plain`: the precomputed frames of (a), both modes, under that same LightGBM and
  threshold rule.

Snap ML holds the GIL and its batch scatter-gather takes minutes here, so its features are
extracted in a helper process (this script with `--snap-only`) started before (a) and kept in
`--workdir` (`<dataset>-snapml-batch-b-1d.npy` with its wall and CPU seconds); a later run reuses
them. Every model is fitted and scored in the one bench process. The plain LightGBM runs on one
thread, like `train` (shared cores). Its defaults sample neither
rows nor columns, so `random_state` does not change the model: the five seeds of (b) and (c) are
expected to agree exactly, and the figure `<config>.seeds_identical` says whether they did.

    .venv/bin/python bench/detection.py --datasets amlsim10k
    .venv/bin/python bench/detection.py --datasets amlsim10k,amlsim-sample --seeds 5
    .venv/bin/python bench/model_defaults.py --datasets amlsim10k --seeds 1     # smoke

Prints one line per figure (`<dataset>.<figure> <value> [unit]`, `bench/graph_features.py`
`say`), then a Markdown table: mean over seeds with (min–max), per-typology recall as mean (min).
Goal (issue 13): `train` defaults F1 >= 0.95 and PR-AUC >= 0.96 (mean of 5 seeds), max - min
<= 0.03 on both, every typology's recall >= 0.9; `<dataset>.goal.<config>` says whether it is met.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tianluo.detect.base import FeatureExtractor
from tianluo.detect.evaluate import evaluate
from tianluo.detect.features import assemble_features
from tianluo.detect.model import default_extractors, feature_matrix, temporal_split, train


def _load(module: str, file: str) -> Any:
    spec = importlib.util.spec_from_file_location(module, Path(__file__).with_name(file))
    assert spec is not None and spec.loader is not None
    out = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(out)
    return out


#: `bench/detection.py` (raw features) and, through it, `bench/graph_features.py` (`say`, Snap ML).
det = _load("bench_detection_for_model_defaults", "detection.py")
gfb = det.gfb

_DATA = Path(__file__).resolve().parents[1] / "../shared/data"
#: Dataset name → (source directory, split). The sample's 65 SAR rows sit early (bench/detection.py).
DATASETS: dict[str, tuple[Path, tuple[float, float, float]]] = {
    "amlsim10k": (_DATA / "amlsim-10k", (0.6, 0.2, 0.2)),
    "amlsim-sample": (_DATA / "amlsim-sample", (0.4, 0.2, 0.4)),
}
MODES: dict[str, str | None] = {"settled_1d": "1d", "causal": None}
#: The peer script's LightGBM (issue 13), one thread.
PLAIN = {"n_estimators": 300, "learning_rate": 0.05, "num_leaves": 63, "scale_pos_weight": 5, "n_jobs": 1,
         "verbose": -1}
PLAIN_THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.05), 2)
#: Snap ML for the peer script: fan, degree, vertex statistics and scatter-gather (level "b"), all on 1 day.
SNAP_LEVEL, SNAP_WINDOWS, SNAP_PATTERN = "b", ("1d",), "1d"
GOAL = {"f1": 0.95, "pr_auc": 0.96, "range": 0.03, "typology_recall": 0.9}

#: One seed's figures: floats, plus "recall.<typology>" entries.
Run = dict[str, float]


class Precomputed(FeatureExtractor):
    """Hands `train` a feature frame computed once; refuses rows other than those it was computed for, in that order."""

    name = "precomputed"

    def __init__(self, frame: pl.DataFrame, txn_ids: pl.Series) -> None:
        self.frame, self.txn_ids = frame, txn_ids

    def transform(self, transactions: pl.DataFrame) -> pl.DataFrame:
        ids = transactions["txn_id"]
        if len(ids) != len(self.txn_ids) or not bool((ids == self.txn_ids).all()):
            raise ValueError("train() asked for other rows or another order than the precomputed features")
        return self.frame


def load(name: str, work: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(transactions in `read_transactions` order, accounts) of `name`, ingested once into `work`."""
    from tianluo.detect.registry import read_transactions
    from tianluo.ingest import ingest, open_reader
    from tianluo.store import Dataset

    os.environ.setdefault("TIANLUO_MASTER_KEY", "0" * 64)
    root = work / f"{name}-dataset"
    done = work / f"{name}-dataset.done"
    if not done.exists():
        if root.exists():
            shutil.rmtree(root)
        t0 = time.perf_counter()
        ingest(open_reader(DATASETS[name][0]), Dataset(root, create=True))
        done.write_text("ok\n")
        gfb.say(name, "ingest_seconds", time.perf_counter() - t0, f"s into {root}")
    ds = Dataset(root)
    return read_transactions(ds), pl.DataFrame(pl.from_arrow(ds.read("accounts")))


def snap_stem(dataset: str, work: Path) -> Path:
    """Where Snap ML's features of `dataset` are kept (`.npy`) with their extraction times (`.json`)."""
    return work / f"{dataset}-snapml-batch-{SNAP_LEVEL}-{SNAP_PATTERN}"


def extract_snap(dataset: str, work: Path) -> None:
    """Snap ML's batch features (graph columns only) of `dataset` into `snap_stem`, with wall and CPU seconds.

    Snap ML holds the GIL and its batch scatter-gather grows faster than the row count (AMLSim 10K,
    1 thread: 10,000 rows 1.1 s, 20,000 rows 2.4-7.2 s), so `run` starts this in a helper process
    (`--snap-only`) while `train` runs, and reads the result when it reaches the peer script.
    """
    tx, _ = load(dataset, work)
    x = gfb.snap_input(tx)
    wall, cpu = time.perf_counter(), time.process_time()
    snap = gfb.snap(SNAP_LEVEL, SNAP_WINDOWS, SNAP_PATTERN).transform(x)[:, x.shape[1]:].astype(np.float32)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    stem = snap_stem(dataset, work)
    np.save(stem.with_suffix(".tmp.npy"), snap)
    when = f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC"
    stem.with_suffix(".json").write_text(json.dumps({"when": when, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
                                                     "rows": int(x.shape[0])}))
    stem.with_suffix(".tmp.npy").rename(stem.with_suffix(".npy"))
    gfb.say(dataset, "snapml_batch.extracted", str(stem.with_suffix(".npy")), f"({wall:.0f} s wall, {cpu:.0f} s CPU)")


def start_snap(dataset: str, work: Path) -> subprocess.Popen[bytes] | None:
    """Start `extract_snap` in a helper process unless its result is already kept."""
    if snap_stem(dataset, work).with_suffix(".npy").exists():
        return None
    cmd = [sys.executable, str(Path(__file__).resolve()), "--snap-only", "--datasets", dataset,
           "--workdir", str(work.parent)]
    gfb.say(dataset, "snapml_batch.helper", "started", "(Snap ML batch extraction in a helper process, "
            "concurrently with train(); Snap ML holds the GIL)")
    return subprocess.Popen(cmd)


def snap_features(dataset: str, work: Path, helper: subprocess.Popen[bytes] | None, rows: int) -> np.ndarray:
    """Snap ML's features of `dataset`, waiting for the helper process if it is still running."""
    if helper is not None and helper.wait() != 0:
        raise RuntimeError(f"Snap ML helper process failed ({helper.returncode})")
    stem = snap_stem(dataset, work)
    took = json.loads(stem.with_suffix(".json").read_text())
    snap = np.load(stem.with_suffix(".npy"))
    if snap.shape[0] != rows or took["rows"] != rows:
        raise ValueError(f"kept Snap ML features have {snap.shape[0]} rows, the data {rows}; delete {stem}.*")
    gfb.say(dataset, "features.snapml_batch", snap.shape[1] + 5,
            f"columns (5 raw + Snap ML level {SNAP_LEVEL}, every window 1 d), extracted {took['when']}: "
            f"{took['wall_s']} s wall ({rows / took['wall_s']:,.0f} txn/s), {took['cpu_s']} s CPU, 2 threads"
            f"{'' if helper is not None else ' (kept from an earlier run)'}")
    return snap


def tianluo_features(tx: pl.DataFrame, accounts: pl.DataFrame, horizon: str | None,
                     split: tuple[float, float, float]) -> tuple[pl.DataFrame, float]:
    """`default_extractors(accounts, horizon=...)` fitted on the training period, applied to every row (as `train`)."""
    part = temporal_split(tx["ts"], split)
    extractors = default_extractors(accounts, horizon=horizon)
    for ex in extractors:
        ex.fit(tx.filter(pl.Series(part == 0)))
    t0 = time.perf_counter()
    frame = assemble_features(tx, extractors)
    return frame, time.perf_counter() - t0


def run_train(tx: pl.DataFrame, frame: pl.DataFrame, split: tuple[float, float, float], seed: int) -> Run:
    """(a) One seed of `train` defaults on the precomputed features."""
    t0 = time.perf_counter()
    model = train(tx, [Precomputed(frame, tx["txn_id"])], seed=seed, split=split)
    seconds = time.perf_counter() - t0
    test, val, m = model.metrics["test"], model.metrics["validation"], model.metrics
    out: Run = {k: float(test[k] or 0.0) for k in ("f1", "pr_auc", "precision", "recall")}
    out |= {"threshold": model.threshold, "setting": float(m["selection"]["setting"]),
            "trees": float(m["selection"]["trees"]), "val_f1": float(val["f1"] or 0.0),
            "drift_precision": float(m["drift"]["precision"] or 0.0),
            "drift_recall": float(m["drift"]["recall"] or 0.0),
            "drift_f1": float(m["drift"]["f1"] or 0.0), "seconds": seconds}
    out |= {f"recall.{t}": r["recall"] for t, r in test.get("recall_by_typology", {}).items()}
    return out


def run_plain(x: np.ndarray, y: np.ndarray, typ: np.ndarray, part: np.ndarray, seed: int) -> tuple[Run, np.ndarray]:
    """(b, c) One seed of the peer script's LightGBM and threshold rule: figures and test scores."""
    import lightgbm as lgb

    t0 = time.perf_counter()
    clf = lgb.LGBMClassifier(**PLAIN, random_state=seed).fit(x[part == 0], y[part == 0])
    seconds = time.perf_counter() - t0
    p_val = clf.predict_proba(x[part == 1])[:, 1]
    p_test = clf.predict_proba(x[part == 2])[:, 1]
    yv = y[part == 1].astype(bool)
    f1 = [2 * int((p_val >= t)[yv].sum()) / max(int((p_val >= t).sum()) + int(yv.sum()), 1) for t in PLAIN_THRESHOLDS]
    threshold = float(PLAIN_THRESHOLDS[int(np.argmax(f1))])
    val = evaluate(y[part == 1], p_val, threshold)
    test = evaluate(y[part == 2], p_test, threshold, typ[part == 2])
    out: Run = {k: float(test[k] or 0.0) for k in ("f1", "pr_auc", "precision", "recall")}
    out |= {"threshold": threshold, "val_f1": float(val["f1"] or 0.0),
            "drift_precision": float((test["precision"] or 0.0) - (val["precision"] or 0.0)),
            "drift_recall": float((test["recall"] or 0.0) - (val["recall"] or 0.0)),
            "drift_f1": float((test["f1"] or 0.0) - (val["f1"] or 0.0)), "seconds": seconds}
    out |= {f"recall.{t}": r["recall"] for t, r in test["recall_by_typology"].items()}  # type: ignore[union-attr]
    return out, p_test


def say_run(dataset: str, config: str, seed: int, r: Run) -> None:
    """One seed's figures on one line."""
    typ = ", ".join(f"{k.removeprefix('recall.')} {v:.2f}" for k, v in r.items() if k.startswith("recall."))
    chosen = f"setting {int(r['setting'])}, {int(r['trees'])} trees, " if "setting" in r else ""
    gfb.say(dataset, f"seed{seed}.{config}", f"F1 {r['f1']:.4f}",
            f"PR-AUC {r['pr_auc']:.4f}, precision {r['precision']:.4f}, recall {r['recall']:.4f}, "
            f"{chosen}threshold {r['threshold']:.4g}, validation F1 {r['val_f1']:.4f}, {r['seconds']:.0f} s; "
            f"recall by typology: {typ}")


def summarise(dataset: str, config: str, runs: list[Run]) -> dict[str, tuple[float, float, float]]:
    """(mean, min, max) over seeds of every figure, printed one per line; the goal check for `train` configs."""
    keys = [k for k in runs[0] if all(k in r for r in runs)]
    stats = {k: (float(np.mean([r[k] for r in runs])), float(np.min([r[k] for r in runs])),
                 float(np.max([r[k] for r in runs]))) for k in keys}
    for k in ("f1", "pr_auc", "precision", "recall", "val_f1", "drift_precision", "drift_recall", "drift_f1",
              "threshold", "seconds", *(k for k in keys if k.startswith("recall."))):
        mean, lo, hi = stats[k]
        gfb.say(dataset, f"{k}.{config}", mean,
                f"(min {lo:.4f}, max {hi:.4f}, max-min {hi - lo:.4f}; {len(runs)} seeds)")
    if "setting" in stats:
        chosen = sorted({(int(r["setting"]), int(r["trees"])) for r in runs})
        gfb.say(dataset, f"chosen.{config}", ", ".join(f"setting {s} at {t} trees" for s, t in chosen),
                "(setting 0: 63 leaves; 1: 15 leaves, max_delta_step 1; model.GRID)")
    if config.startswith("train"):
        typ = {k: v for k, v in stats.items() if k.startswith("recall.")}
        checks = {
            f"F1 mean {stats['f1'][0]:.3f} >= {GOAL['f1']}": stats["f1"][0] >= GOAL["f1"],
            f"PR-AUC mean {stats['pr_auc'][0]:.3f} >= {GOAL['pr_auc']}": stats["pr_auc"][0] >= GOAL["pr_auc"],
            f"F1 max-min {stats['f1'][2] - stats['f1'][1]:.3f} <= {GOAL['range']}":
                stats["f1"][2] - stats["f1"][1] <= GOAL["range"],
            f"PR-AUC max-min {stats['pr_auc'][2] - stats['pr_auc'][1]:.3f} <= {GOAL['range']}":
                stats["pr_auc"][2] - stats["pr_auc"][1] <= GOAL["range"],
            f"lowest mean typology recall {min(v[0] for v in typ.values()):.3f} >= {GOAL['typology_recall']}":
                min(v[0] for v in typ.values()) >= GOAL["typology_recall"],
        }
        verdict = "met" if all(checks.values()) else "NOT met"
        gfb.say(dataset, f"goal.{config}", verdict,
                "; ".join(f"{c}: {'yes' if ok else 'no'}" for c, ok in checks.items()))
    return stats


def run(dataset: str, seeds: tuple[int, ...], work: Path,
        results: list[tuple[str, str, int, dict[str, tuple[float, float, float]]]]) -> None:
    """(a), (b) and (c) on `dataset` for `seeds`; summaries appended to `results`."""
    split = DATASETS[dataset][1]
    work.mkdir(parents=True, exist_ok=True)
    tx, accounts = load(dataset, work)
    ordered = tx.sort(["ts", "txn_id"])
    if not bool((ordered["txn_id"] == tx["txn_id"]).all()):
        raise AssertionError("read_transactions did not return (ts, txn_id) order")
    part = temporal_split(tx["ts"], split)
    y = tx["label"].fill_null(0).cast(pl.Int8).to_numpy()
    typ = tx["typology"].fill_null("none").to_numpy()
    gfb.say(dataset, "rows", tx.height, f"{int(y.sum())} illicit; order (ts, txn_id) verified, as train() sorts")
    gfb.say(dataset, "split", " / ".join(f"{s:.0%}" for s in split),
            "rows " + " / ".join(str(int((part == k).sum())) for k in range(3))
            + ", illicit " + " / ".join(str(int(y[part == k].sum())) for k in range(3)))
    helper = start_snap(dataset, work)
    frames: dict[str, pl.DataFrame] = {}
    for mode, horizon in MODES.items():
        frames[mode], wall = tianluo_features(tx, accounts, horizon, split)
        gfb.say(dataset, f"features.tianluo_{mode}", frames[mode].width,
                f"columns in {wall:.1f} s ({tx.height / wall:,.0f} txn/s, first call includes kernel compilation)")

    # Seeds outermost: a run stopped early still holds every configuration for the seeds it finished.
    configs = [*(f"train_{m}" for m in MODES), *(f"tianluo_{m}+plain" for m in MODES), "snapml_batch+plain"]
    runs: dict[str, list[Run]] = {c: [] for c in configs}
    scores: dict[str, list[np.ndarray]] = {c: [] for c in configs}
    matrices: dict[str, np.ndarray] = {}
    for s in seeds:
        for config in configs:
            mode = config.removeprefix("train_").removeprefix("tianluo_").removesuffix("+plain")
            if config.startswith("train_"):  # (a)
                runs[config].append(run_train(tx, frames[mode], split, s))
            else:  # (c), (b)
                if config not in matrices:
                    if config.startswith("snapml"):
                        snap = snap_features(dataset, work, helper, tx.height)
                        matrices[config] = np.hstack([det.raw_features(tx), snap])
                    else:
                        matrices[config] = feature_matrix(frames[mode], frames[mode].columns).astype(np.float32)
                r, p = run_plain(matrices[config], y, typ, part, s)
                runs[config].append(r)
                scores[config].append(p)
            say_run(dataset, config, s, runs[config][-1])
        print(f"# load after seed {s}: {os.getloadavg()[0]:.1f}", flush=True)
    for config in configs:
        if scores[config]:
            gfb.say(dataset, f"seeds_identical.{config}", str(all(np.array_equal(scores[config][0], p)
                                                                  for p in scores[config])),
                    "(every seed's test scores equal: these LightGBM defaults sample neither rows nor columns)")
        train_mode = config.removeprefix("train_")
        width = frames[train_mode].width if config.startswith("train_") else matrices[config].shape[1]
        results.append((dataset, config, width, summarise(dataset, config, runs[config])))


def table(results: list[tuple[str, str, int, dict[str, tuple[float, float, float]]]]) -> None:
    """All summaries as one Markdown table: mean (min–max) over seeds; typology recall as mean (min)."""
    kinds = sorted({k.removeprefix("recall.") for *_, st in results for k in st if k.startswith("recall.")})
    head = " | ".join(f"recall {t}" for t in kinds)
    print(f"\n| data | model | columns | F1 | F1 max−min | PR-AUC | PR-AUC max−min | precision | recall | "
          f"drift P / R (test − val) | train s | {head} |")
    print("|---|---|---|---|---|---|---|---|---|---|---|" + "---|" * len(kinds))

    def mmm(st: dict[str, tuple[float, float, float]], k: str) -> str:
        mean, lo, hi = st[k]
        return f"{mean:.3f} ({lo:.3f}–{hi:.3f})"

    for dataset, config, width, st in results:
        cells = [mmm(st, "f1"), f"{st['f1'][2] - st['f1'][1]:.3f}", mmm(st, "pr_auc"),
                 f"{st['pr_auc'][2] - st['pr_auc'][1]:.3f}", mmm(st, "precision"), mmm(st, "recall"),
                 f"{st['drift_precision'][0]:+.3f} / {st['drift_recall'][0]:+.3f}", f"{st['seconds'][0]:.0f}"]
        cells += [f"{st[f'recall.{t}'][0]:.2f} ({st[f'recall.{t}'][1]:.2f})" if f"recall.{t}" in st else "—"
                  for t in kinds]
        print(f"| {dataset} | {config} | {width} | " + " | ".join(cells) + " |")


def main(datasets: list[str] | None = None, seeds: int | None = None, workdir: Path | None = None) -> None:
    """Run the chosen datasets (arguments from `bench/detection.py` or the command line), then print the table."""
    if datasets is None:
        ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
        ap.add_argument("--datasets", default="amlsim10k", help=f"comma-separated: {', '.join(DATASETS)}")
        ap.add_argument("--seeds", type=int, default=5, help="seeds per configuration (0..N-1)")
        ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "tianluo-bench-graph-features")
        ap.add_argument("--snap-only", action="store_true", help="only extract and keep Snap ML's features (helper)")
        args = ap.parse_args()
        if args.snap_only:
            for name in args.datasets.split(","):
                extract_snap(name, args.workdir / "model-defaults")
            return
        datasets, seeds, workdir = args.datasets.split(","), args.seeds, args.workdir
        import numba

        numba.set_num_threads(gfb.THREADS)
        print(gfb.header(), flush=True)
    assert seeds is not None and workdir is not None
    results: list[tuple[str, str, int, dict[str, tuple[float, float, float]]]] = []
    for name in datasets:
        run(name, tuple(range(seeds)), workdir / "model-defaults", results)
        print(f"# load after {name}: {os.getloadavg()[0]:.1f}", flush=True)
    table(results)


if __name__ == "__main__":
    main()
