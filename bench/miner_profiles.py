"""Benchmark the miner profiles: attempt recall per typology and non-attempt alerts per 10,000 background rows.

Two kinds of data, each under every built-in profile asked for:
- `amlworld`: the 1,000 background rows of `../shared/data/amlworld-format/HI-Small_Trans.sample.csv`
  with the eight shared real HI-Small attempts appended (as `tests/test_miner_profiles.py` does);
- `sim`: a simulated bank (`SimConfig(persons, enterprises, days, transactions, seed, illicit_ratio)`),
  with `--amlworld-shapes` its AMLworld typologies staged as AMLworld's real attempts look.

An attempt counts as *found* when the alerts of its typology's miner that hold nothing but its
transactions cover at least `--cover` of them (a stack of unconnected chains is several alerts);
*covered* is the share of its transactions in any alert of that miner. A *non-attempt alert* is an
alert of any miner with no transaction of any attempt; it is divided by the rows that belong to no
attempt. Prints one line per figure.

    .venv/bin/python bench/miner_profiles.py --data amlworld sim --profiles core-banking amlworld
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import polars as pl

from tianluo.detect import DetectInput
from tianluo.detect.profiles import load_profile
from tianluo.ingest import ingest, open_reader
from tianluo.reference.currency import FxTable
from tianluo.simulate import SimConfig, simulate
from tianluo.store import Dataset

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "amlworld-format"
MINER_OF = {
    "fan_in": "miner_fan_in",
    "fan_out": "miner_fan_out",
    "cycle": "miner_cycle",
    "scatter_gather": "miner_scatter_gather",
    "gather_scatter": "miner_gather_scatter",
    "bipartite": "miner_bipartite",
    "stack": "miner_stack",
    "random": "miner_random_walk",
}


def amlworld_input(work: Path) -> DetectInput:
    """The shared background rows with the eight shared attempts appended, ingested with their patterns."""
    patterns = "\n".join(
        (SHARED / n).read_text().strip() for n in ("HI-Small_Patterns.sample.txt", "HI-Small_Patterns.more.txt")
    )
    rows = [ln for ln in patterns.splitlines() if ln and not ln.startswith(("BEGIN", "END"))]
    trans = work / "HI-Small_Trans.csv"
    trans.write_text((SHARED / "HI-Small_Trans.sample.csv").read_text() + "\n".join(rows) + "\n")
    (work / "patterns.txt").write_text(patterns + "\n")
    ds = Dataset(work / "ds", create=True)
    ingest(open_reader(trans, patterns=work / "patterns.txt"), ds)
    tx = pl.from_arrow(ds.read("transactions")).sort("ts", "txn_id")
    assert isinstance(tx, pl.DataFrame)
    return DetectInput(tx, pl.DataFrame(), pl.DataFrame())


def sim_input(args: argparse.Namespace) -> DetectInput:
    sim = simulate(
        SimConfig(
            persons=args.persons,
            enterprises=args.persons // 10,
            days=args.days,
            transactions=args.rows,
            seed=args.seed,
            illicit_ratio=args.illicit_ratio,
            amlworld_shapes=args.amlworld_shapes,
            **({"typologies": tuple(args.typologies)} if args.typologies else {}),
        )
    )
    tx = pl.from_arrow(sim.transactions)
    assert isinstance(tx, pl.DataFrame)
    tx = tx.with_columns(
        amount_cny=FxTable.load().to_cny(tx["amount"], tx["currency"], tx["ts"]),
        self_transfer=pl.col("src_account") == pl.col("dst_account"),
    ).sort("ts", "txn_id")
    accounts = pl.from_arrow(sim.accounts)
    assert isinstance(accounts, pl.DataFrame)
    return DetectInput(tx, accounts, pl.DataFrame())


def measure(data: DetectInput, profile: str, cover: float) -> tuple[dict[str, tuple[int, int, float]], int, int, float]:
    """Per typology (found, attempts, covered share); non-attempt alerts; background rows; seconds."""
    tx = data.transactions
    truth = tx.filter(pl.col("attempt_id").is_not_null()).select("txn_id", "attempt_id", "typology")
    t0 = time.perf_counter()
    frames = [pl.from_arrow(m.detect(data)) for m in load_profile(profile).build()]
    seconds = time.perf_counter() - t0
    alerts = pl.concat([f for f in frames if isinstance(f, pl.DataFrame)])
    evidence = (
        alerts.select("alert_id", "detector", txn_id="txn_ids").explode("txn_id").join(truth, on="txn_id", how="left")
    )
    per_alert = evidence.group_by("alert_id").agg(
        attempts=pl.col("attempt_id").drop_nulls().n_unique(), attempt=pl.col("attempt_id").drop_nulls().first()
    )
    off = per_alert.filter(pl.col("attempts") == 0).height
    size = truth.group_by("attempt_id", "typology").len("size")
    out = {}
    for typology, detector in MINER_OF.items():
        attempts = size.filter(pl.col("typology") == typology)
        if attempts.height == 0:
            continue
        mine = evidence.filter(pl.col("detector") == detector).join(per_alert, on="alert_id")
        pure = mine.filter((pl.col("attempts") == 1) & (pl.col("attempt_id") == pl.col("attempt")))
        best = pure.group_by("attempt_id").agg(hit=pl.col("txn_id").n_unique())
        joined = attempts.join(best, on="attempt_id", how="left").fill_null(0)
        found = joined.filter(pl.col("hit") >= cover * pl.col("size")).height
        covered = mine.filter(pl.col("typology") == typology)["txn_id"].n_unique() / attempts["size"].sum()
        out[typology] = (found, attempts.height, covered)
    background = tx.height - truth.height
    return out, off, background, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", default=["amlworld", "sim"], choices=["amlworld", "sim"])
    ap.add_argument("--profiles", nargs="+", default=["core-banking", "amlworld"])
    ap.add_argument("--rows", type=int, default=150_000)
    ap.add_argument("--persons", type=int, default=3000)
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--illicit-ratio", type=float, default=0.03)
    ap.add_argument(
        "--amlworld-shapes", action="store_true", help="simulate AMLworld-faithful attempts (SimConfig.amlworld_shapes)"
    )
    ap.add_argument("--typologies", nargs="+", help="only these simulated typologies (default: all)")
    ap.add_argument("--cover", type=float, default=0.5, help="share of an attempt its miner's alerts must cover")
    args = ap.parse_args()
    print(
        f"machine: {platform.machine()} {platform.processor() or ''} cpus={os.cpu_count()} {time.strftime('%Y-%m-%d')}"
    )
    for kind in args.data:
        with tempfile.TemporaryDirectory() as tmp:
            data = amlworld_input(Path(tmp)) if kind == "amlworld" else sim_input(args)
            label = (
                "amlworld shared attempts"
                if kind == "amlworld"
                else f"sim rows={data.transactions.height} seed={args.seed} illicit_ratio={args.illicit_ratio}"
                + (" amlworld_shapes" if args.amlworld_shapes else "")
            )
            for profile in args.profiles:
                per, off, background, seconds = measure(data, profile, args.cover)
                for typology, (found, n, covered) in per.items():
                    print(f"{label} | {profile} | {typology}: found {found}/{n}, covered {covered:.0%}")
                rate = 1e4 * off / max(background, 1)
                print(
                    f"{label} | {profile} | non-attempt alerts: {off} on {background:,} background rows = "
                    f"{rate:.2f} per 10,000 | miners {seconds:.1f} s"
                )


if __name__ == "__main__":
    main()
