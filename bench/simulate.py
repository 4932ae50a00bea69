"""Benchmark `tianluo simulate`: generate N transactions, write them as Parquet, report speed and memory.

Usage: python bench/simulate.py [--rows 10000000] [--persons N] [--enterprises N] [--days 90]
Prints one line per figure (name, value, unit) for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from tianluo.simulate import SimConfig, simulate, write_source


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000, help="target number of transactions")
    ap.add_argument("--persons", type=int, default=None, help="own-bank persons (default rows / 20)")
    ap.add_argument("--enterprises", type=int, default=None, help="own-bank enterprises (default persons / 10)")
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    persons = args.persons or max(100, args.rows // 20)
    enterprises = args.enterprises or max(20, persons // 10)
    config = SimConfig(persons=persons, enterprises=enterprises, days=args.days, transactions=args.rows,
                       seed=args.seed)

    with tempfile.TemporaryDirectory(prefix="tianluo-bench-") as tmp:
        t0 = time.perf_counter()
        sim = simulate(config)
        t1 = time.perf_counter()
        paths = write_source(sim, Path(tmp), "parquet")
        t2 = time.perf_counter()
        size = sum(p.stat().st_size for p in paths)
    rows = sim.transactions.num_rows
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(f"rows {rows}")
    print(f"persons {persons}")
    print(f"enterprises {enterprises}")
    print(f"illicit_rows {sim.attempts.column('transactions').to_numpy().sum() if sim.attempts.num_rows else 0}")
    print(f"simulate_seconds {t1 - t0:.1f}")
    print(f"write_seconds {t2 - t1:.1f}")
    print(f"seconds {t2 - t0:.1f}")
    print(f"rows_per_second {rows / (t2 - t0):.0f}")
    print(f"parquet_mib {size / 2**20:.0f}")
    print(f"peak_rss_mib {peak_kib / 1024:.0f}")
    print(f"cpus {os.cpu_count()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
