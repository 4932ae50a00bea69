"""Benchmark: ingest a simulated N-transaction CSV, beside plain pandas.read_csv + to_parquet on the same file.

Each contender runs in its own subprocess so that peak memory (ru_maxrss) is its own.
Tianluo's figure includes everything an ingest does (line-exact parsing, validation,
currency normalisation and FX, duplicate detection, day partitioning, the DuckDB
catalogue and the data-quality report); pandas only parses and writes one file.

    .venv/bin/python bench/ingest.py --rows 5000000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_tianluo(src: Path, out: Path) -> dict[str, float]:
    from tianluo.ingest import ingest, open_reader
    from tianluo.protect import Tokenizer
    from tianluo.store import Dataset

    t0 = time.perf_counter()
    res = ingest(open_reader(src, "tianluo"), Dataset(out, create=True), tokenizer=Tokenizer(b"\x01" * 32))
    secs = time.perf_counter() - t0
    return {"seconds": secs, "rows": res.loaded.get("transactions", 0), "peak_mib": _peak_mib()}


def run_pandas(src: Path, out: Path) -> dict[str, float]:
    import pandas as pd

    t0 = time.perf_counter()
    df = pd.read_csv(src / "transactions.csv")
    df.to_parquet(out / "transactions.parquet")
    secs = time.perf_counter() - t0
    return {"seconds": secs, "rows": len(df), "peak_mib": _peak_mib()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--workdir", type=Path, default=None, help="Keep the generated CSV here (reused if present).")
    ap.add_argument("--run", choices=["tianluo", "pandas"], help=argparse.SUPPRESS)
    ap.add_argument("--src", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.run:  # child process
        fn = run_tianluo if args.run == "tianluo" else run_pandas
        print(json.dumps(fn(args.src, args.out)))
        return

    work = args.workdir or Path(tempfile.mkdtemp(prefix="tianluo-bench-"))
    src = work / f"source-{args.rows}"
    if not (src / "transactions.csv").exists():
        from tianluo.simulate import SimConfig, simulate, write_source

        persons = max(2_000, args.rows // 20)
        cfg = SimConfig(transactions=args.rows, persons=persons, enterprises=max(200, persons // 10), days=180, seed=1)
        t0 = time.perf_counter()
        full = work / f"full-{args.rows}"
        write_source(simulate(cfg), full, "csv")
        src.mkdir(parents=True, exist_ok=True)
        # Only the transactions file: both contenders read the same single CSV.
        shutil.move(str(full / "transactions.csv"), src / "transactions.csv")
        (src / "tianluo-source.json").write_text(json.dumps({"format": "tianluo"}))
        shutil.rmtree(full)
        print(f"generated {args.rows:,} rows in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    size_mib = (src / "transactions.csv").stat().st_size / 2**20
    results = {}
    for who in ("tianluo", "pandas"):
        out = work / f"out-{who}"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        if who == "tianluo":
            shutil.rmtree(out)
        proc = subprocess.run(
            [sys.executable, __file__, "--run", who, "--src", str(src), "--out", str(out)],
            capture_output=True, text=True, check=True, env={**os.environ, "TIANLUO_PROGRESS": ""},
        )
        results[who] = json.loads(proc.stdout.strip().splitlines()[-1])
        shutil.rmtree(out, ignore_errors=True)
    ours, theirs = results["tianluo"], results["pandas"]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"file: {args.rows:,} transactions, {size_mib:,.0f} MiB CSV")
    for who, r in results.items():
        print(f"{who}: {r['seconds']:.2f} s, {r['rows'] / r['seconds']:,.0f} rows/s, peak {r['peak_mib']:,.0f} MiB")
    print(f"ratio tianluo/pandas throughput: {theirs['seconds'] / ours['seconds']:.2f}")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
