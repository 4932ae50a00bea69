"""Write a simulation as a Tianluo source folder that `tianluo ingest --format tianluo` reads back.

Tables are streamed in row chunks (Parquet row groups / CSV batches), so
writing never needs a second in-memory copy of ten million rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from tianluo.simulate.engine import Simulated

#: Rows per Parquet row group / CSV write.
CHUNK_ROWS = 1_000_000
#: Timestamp layout of the CSV flavour; the native reader parses exactly this.
CSV_TS_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
SOURCE_MARKER = "tianluo-source.json"


def _csv_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Timestamps as `2024-01-01T08:30:15Z` (seconds, UTC); everything else as Arrow writes it."""
    cols = [pc.strftime(c.cast(pa.timestamp("s", tz="UTC")), format=CSV_TS_FORMAT) if pa.types.is_timestamp(c.type)
            else c for c in batch.columns]
    return pa.RecordBatch.from_arrays(cols, names=batch.schema.names)


def _write_table(table: pa.Table, path: Path, fmt: str) -> None:
    if fmt == "parquet":
        with pq.ParquetWriter(path, table.schema, compression="zstd") as w:
            for batch in table.to_batches(max_chunksize=CHUNK_ROWS):
                w.write_batch(batch, row_group_size=CHUNK_ROWS)
        return
    schema = pa.schema([pa.field(f.name, pa.string() if pa.types.is_timestamp(f.type) else f.type)
                        for f in table.schema])
    with pacsv.CSVWriter(str(path), schema) as w:
        for batch in table.to_batches(max_chunksize=CHUNK_ROWS):
            w.write_batch(_csv_batch(batch))


def write_source(sim: Simulated, out_dir: Path, fmt: str = "parquet") -> list[Path]:
    """Write transactions, accounts and parties (`fmt` "parquet" or "csv") and the marker file.

    CSV files are UTF-8 with a header row; null is an empty field and label is 0/1.
    Returns the paths written, marker last.
    """
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"format must be 'parquet' or 'csv', not {fmt!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    tables = {"transactions": sim.transactions, "accounts": sim.accounts, "parties": sim.parties}
    for name, table in tables.items():
        path = out / f"{name}.{fmt}"
        _write_table(table, path, fmt)
        paths.append(path)
    marker = out / SOURCE_MARKER
    meta = {
        "format": "tianluo",
        "generator": "tianluo.simulate",
        "config": sim.config.to_json(),
        "rows": {name: table.num_rows for name, table in tables.items()},
        "files": {name: p.name for name, p in zip(tables, paths, strict=True)},
    }
    marker.write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    paths.append(marker)
    return paths
