"""`tianluo train` defaults on the panel of five simulated banks, settled (1 d) and causal, seed by seed.

Issue 13 asks for the product's training on the panel in both modes beside AMLSim: each bank is
its own graph and its own model (as each bank would train its own), split 60/20/20 by time;
test rows are pooled by adding the banks' alert and hit counts, so the pooled F1 weighs every
test positive once. PR-AUC is the mean of the banks' (a pooled ranking would mix five models'
scores, which are calibrated but not comparable rank for rank).

    .venv/bin/python bench/panel_train.py --seeds 1

Prints one line per figure (`panel.<figure> <value>`), then a Markdown table.
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from tianluo.detect.model import default_extractors, train

_spec = importlib.util.spec_from_file_location("bench_graph_features", Path(__file__).with_name("graph_features.py"))
assert _spec is not None and _spec.loader is not None
gfb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gfb)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=1, help="seeds per mode (0..N-1)")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "tianluo-bench-graph-features")
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    # The panel is the simulator's own output, not ingested: add the one derived column the features read.
    banks = [b.with_columns(self_transfer=pl.col("src_account") == pl.col("dst_account"))
             for b in gfb.load_panel(args.workdir)]
    gfb.say("panel", "banks", len(banks), f"{sum(b.height for b in banks):,} rows")
    rows = []
    for mode, horizon in (("settled 1d", "1d"), ("causal", None)):
        for seed in range(args.seeds):
            tp = alerts = positives = 0
            pr_aucs: list[float] = []
            recall_by: dict[str, tuple[int, int]] = {}
            t0 = time.perf_counter()
            for tx in banks:
                m = train(tx, default_extractors(None, horizon=horizon), seed=seed).metrics["test"]
                tp += round((m["precision"] or 0.0) * m["alerts"])
                alerts += m["alerts"]
                positives += m["positives"]
                pr_aucs.append(m["pr_auc"])
                for t, r in (m.get("recall_by_typology") or {}).items():
                    hit, n = recall_by.get(t, (0, 0))
                    recall_by[t] = (hit + r["detected"], n + r["positives"])
            secs = time.perf_counter() - t0
            f1 = 2 * tp / (alerts + positives)
            gfb.say("panel", f"f1.{mode}.seed{seed}", f"{f1:.3f}",
                    f"precision {tp / max(alerts, 1):.3f}, recall {tp / positives:.3f}, {positives} test positives")
            gfb.say("panel", f"pr_auc_mean.{mode}.seed{seed}", f"{np.mean(pr_aucs):.3f}",
                    f"per bank {[round(p, 3) for p in pr_aucs]}; {secs:.0f} s for five trainings")
            weak = {t: f"{h}/{n}" for t, (h, n) in sorted(recall_by.items()) if h < 0.9 * n}
            gfb.say("panel", f"typologies_below_0.9.{mode}.seed{seed}", len(weak), str(weak))
            rows.append((mode, seed, f1, tp / max(alerts, 1), tp / positives, float(np.mean(pr_aucs)),
                         len(recall_by) - len(weak), len(recall_by), secs))
    print("\n| mode | seed | pooled F1 | precision | recall | mean PR-AUC | typologies ≥ 0.9 recall | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for mode, seed, f1, p, r, ap_, good, n, secs in rows:
        print(f"| {mode} | {seed} | {f1:.3f} | {p:.3f} | {r:.3f} | {ap_:.3f} | {good} of {n} | {secs:.0f} |")


if __name__ == "__main__":
    main()
