"""Benchmark fund-flow tracing: 6-hop forward traces on a simulated N-transaction dataset, beside recursive SQL.

Builds (once, in --workdir) a simulated dataset, indexes it, then traces forward from
--queries random accounts that have outflows, with the default limits (72 h per hop,
min ¥100 per hop, top 10 per account and hop, sinks cash / cross-border / other bank),
and from as many accounts drawn from the 1 % that pay most often (the large traces).
The same trace written as a recursive DuckDB query runs from the first --sql-queries of
those accounts on the same transactions, loaded into a DuckDB table beforehand.

    .venv/bin/python bench/tracing.py --rows 5000000 --workdir /tmp/bench-trace

What the SQL computes: time-respecting hops (each strictly after the previous one and at
most 72 h later), 6 hops, the origin's 10 largest outflows of at least ¥100 as hop 1, at
each further hop the 10 transactions per paying account with the largest attributed
amount, no expansion past a sink. The amount attributed to a transaction is the smallest
amount along the best path to it (a bottleneck), which is simple but not conserved: one
inflow can be counted in full on every outflow after it. Prints one line per figure.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

import duckdb
import numpy as np

from tianluo.ingest import ingest, open_reader
from tianluo.simulate import SimConfig, simulate, write_source
from tianluo.store import Dataset
from tianluo.trace import TraceIndex, trace

SQL = """
WITH RECURSIVE hops(hop, txn_id, src, dst, ts, traced, sink) AS (
  SELECT * FROM (
    SELECT 1, txn_id, src_account, dst_account, ts, amount_cny, sink FROM tx
    WHERE src_account = $acct AND amount_cny >= $min ORDER BY amount_cny DESC, ts LIMIT $k)
  UNION ALL
  SELECT * FROM (
    SELECT h.hop + 1, t.txn_id, t.src_account, t.dst_account, t.ts, max(least(h.traced, t.amount_cny)) AS traced,
           t.sink
    FROM hops h JOIN tx t ON t.src_account = h.dst AND t.ts > h.ts AND t.ts <= h.ts + INTERVAL 72 HOUR
    WHERE h.hop < $hops AND NOT h.sink
    GROUP BY h.hop, t.txn_id, t.src_account, t.dst_account, t.ts, t.sink
    HAVING max(least(h.traced, t.amount_cny)) >= $min) g
  QUALIFY row_number() OVER (PARTITION BY g.src_account ORDER BY g.traced DESC, g.ts) <= $k
)
SELECT count(DISTINCT txn_id) AS transactions, max(hop) AS hops FROM hops
"""


def dataset(rows: int, work: Path) -> Path:
    """The simulated dataset of `rows` transactions in `work`, generated and ingested on first use."""
    root = work / f"dataset-{rows}"
    if (root / "_manifest.json").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    persons = max(2_000, rows // 20)
    cfg = SimConfig(transactions=rows, persons=persons, enterprises=max(200, persons // 10), days=180, seed=1)
    t0 = time.perf_counter()
    src = work / f"source-{rows}"
    write_source(simulate(cfg), src, "parquet")
    ingest(open_reader(src), Dataset(root, create=True))
    shutil.rmtree(src)
    print(f"generated and ingested {rows:,} rows in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return root


def ms(values: list[float]) -> tuple[float, float]:
    """Median and 95th percentile, in milliseconds."""
    return statistics.median(values) * 1000, float(np.percentile(values, 95)) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bench-trace"), help="reused between runs")
    ap.add_argument("--queries", type=int, default=200, help="traces per method")
    ap.add_argument("--sql-queries", type=int, default=30, help="recursive SQL queries")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    ds = Dataset(dataset(args.rows, args.workdir))

    t0 = time.perf_counter()
    index = TraceIndex.build(ds)
    build_s = time.perf_counter() - t0
    cache = args.workdir / "index"
    shutil.rmtree(cache, ignore_errors=True)
    index.save(cache)
    t0 = time.perf_counter()
    index = TraceIndex.load(cache)
    load_s = time.perf_counter() - t0

    rng = np.random.default_rng(args.seed)
    out_degree = np.diff(index.out_ptr)
    payers = np.flatnonzero(out_degree > 0)
    busiest = payers[out_degree[payers] >= np.percentile(out_degree[payers], 99)]
    accounts = index.account_id.take(rng.choice(payers, args.queries, replace=False)).to_pylist()
    busy = index.account_id.take(rng.choice(busiest, args.queries, replace=False)).to_pylist()
    trace(index, accounts[0])  # compile (or load the cached machine code) and page in the index
    trace(index, accounts[0], method="proportional")
    lat: dict[str, list[float]] = {}
    sizes: dict[str, list[int]] = {}
    for label, method, starts in (("fifo", "fifo", accounts), ("proportional", "proportional", accounts),
                                  ("busy_fifo", "fifo", busy), ("busy_proportional", "proportional", busy)):
        lat[label], sizes[label] = [], []
        for a in starts:
            t0 = time.perf_counter()
            res = trace(index, a, method=method, max_hops=6)
            lat[label].append(time.perf_counter() - t0)
            sizes[label].append(res.summary["transactions"])

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    files = ", ".join(f"'{p}'" for p in ds.files("transactions"))
    t0 = time.perf_counter()
    con.execute(
        f"""CREATE TABLE tx AS SELECT txn_id, ts, src_account, dst_account, amount_cny,
            (channel = 'cash' OR coalesce(cross_border, false) OR coalesce(dst_bank <> '{index.institution}', false))
            AS sink FROM read_parquet([{files}]) WHERE NOT self_transfer"""
    )
    sql_load_s = time.perf_counter() - t0
    sql_lat, sql_sizes = [], []
    for a in accounts[: args.sql_queries]:
        t0 = time.perf_counter()
        n, _ = con.execute(SQL, {"acct": a, "min": 100.0, "k": 10, "hops": 6}).fetchone()
        sql_lat.append(time.perf_counter() - t0)
        sql_sizes.append(n)

    sql_med, sql_p95 = ms(sql_lat)
    ours_on_sql = statistics.median(lat["fifo"][: args.sql_queries]) * 1000
    print(f"machine {platform.machine()} {os.cpu_count()} cores Python {platform.python_version()}")
    print(f"load_average_1min {os.getloadavg()[0]:.1f}")
    print(f"transactions_indexed {index.n_edges}")
    print(f"accounts_indexed {index.n_accounts}")
    print(f"index_build_s {build_s:.2f}")
    print(f"index_load_mmap_s {load_s:.3f}")
    print(f"queries {args.queries}")
    for label, times in lat.items():
        med, p95 = ms(times)
        print(f"{label}_median_ms {med:.1f}")
        print(f"{label}_p95_ms {p95:.1f}")
        print(f"{label}_median_transactions {statistics.median(sizes[label]):.0f}")
    print(f"duckdb_load_s {sql_load_s:.2f}")
    print(f"duckdb_queries {len(sql_lat)}")
    print(f"duckdb_recursive_median_ms {sql_med:.1f}")
    print(f"duckdb_recursive_p95_ms {sql_p95:.1f}")
    print(f"duckdb_median_transactions {statistics.median(sql_sizes):.0f}")
    print(f"fifo_median_ms_same_accounts {ours_on_sql:.1f}")
    print(f"ratio_duckdb_over_fifo {statistics.median(sql_lat) * 1000 / ours_on_sql:.1f}")


if __name__ == "__main__":
    main()
