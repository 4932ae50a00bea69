"""Run a reader into a dataset: validate, stage, de-duplicate, partition, commit, report.

This is the one path by which data enters a dataset, so its guarantees are the
platform's: every input record is counted exactly once, as loaded or as
quarantined (with file, line, field and reason); re-ingesting the same files is
a no-op; a failure at any point leaves the dataset as it was.
"""

from __future__ import annotations

import hashlib
import json
import queue
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from tianluo.ingest.base import RawBatch, Reader
from tianluo.ingest.validate import validate
from tianluo.protect import ColumnTokenizer, Tokenizer, load_key
from tianluo.reference.currency import FxTable
from tianluo.schema import TABLES
from tianluo.store.dataset import STATE_TABLES, WRITE_MEMORY, Dataset, _fault, _sql_list

#: Validated rows held in memory before the stage spills to scratch Parquet.
STAGE_MEMORY_BYTES = 256_000_000

Progress = Callable[[str, int], None]


@dataclass
class IngestResult:
    """What one ingest did: counts per table, the data-quality report, or why it was skipped."""

    ingest_id: str
    skipped: bool = False
    previous: str | None = None
    loaded: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)


def fingerprint(path: Path) -> str:
    """SHA-256 of a file's bytes, streamed: identifies content independent of its name."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


class _Stage:
    """Validated batches of one ingest, before de-duplication: in memory, spilled to Parquet when large.

    Keeping a few million rows as Arrow in memory saves writing and re-reading them;
    past `spill_bytes` everything goes to scratch Parquet so memory stays bounded
    whatever the size of the source.
    """

    def __init__(self, root: Path, spill_bytes: int = STAGE_MEMORY_BYTES) -> None:
        self.root = root
        self.spill_bytes = spill_bytes
        self.memory: dict[str, list[pa.Table]] = {}
        self.held = 0
        self.writers: dict[str, pq.ParquetWriter] = {}
        self.seq = 0

    def write(self, table: str, data: pa.Table) -> None:
        if table != "quarantine":
            data = data.append_column("_seq", pa.array(range(self.seq, self.seq + data.num_rows), pa.int64()))
            self.seq += data.num_rows
        self.memory.setdefault(table, []).append(data)
        self.held += data.nbytes
        if self.writers or self.held > self.spill_bytes:
            self._spill()

    def _spill(self) -> None:
        for table, parts in self.memory.items():
            for data in parts:
                if table not in self.writers:
                    # Scratch files: lz4 is the fastest codec to write and read back.
                    self.writers[table] = pq.ParquetWriter(
                        self.root / f"{table}.parquet", data.schema, compression="lz4"
                    )
                self.writers[table].write_table(data)
        self.memory = {}
        self.held = 0

    def close(self) -> None:
        if self.writers:
            self._spill()
        for w in self.writers.values():
            w.close()

    def tables(self) -> list[str]:
        return sorted(set(self.memory) | set(self.writers))

    def relation(self, con: duckdb.DuckDBPyConnection, table: str) -> str:
        """SQL source of a staged table: a registered Arrow table or the scratch Parquet file."""
        if table in self.writers:
            return f"read_parquet('{self.root / f'{table}.parquet'}')"
        con.register(f"_staged_{table}", pa.concat_tables(self.memory[table]))
        return f"_staged_{table}"


def _dedupe_and_write(
    con: duckdb.DuckDBPyConnection, ds: Dataset, stage: Path, table: str, ingest_id: str, source: str
) -> tuple[list[Path], int]:
    """Quarantine duplicate keys and write the final files; return (files, duplicates)."""
    spec = TABLES[table]
    key = spec.key
    final = stage / "final" / table
    final.mkdir(parents=True, exist_ok=True)
    cols = ", ".join(spec.names)
    con.execute(f"CREATE OR REPLACE TEMP VIEW staged AS SELECT * FROM {source}")
    existing = [str(p) for p in ds.files(table)]
    # Transaction ids are immutable facts: one already stored is a duplicate. Accounts and
    # parties are state: a newer ingest supersedes (the view keeps the newest), so only
    # duplicates inside this ingest are quarantined.
    against_existing = ""
    if existing and table not in STATE_TABLES:
        against_existing = (
            f"UNION ALL SELECT s._seq, s._file, s.source_line, s.{key}, "
            f"'{key} ''' || s.{key} || ''' is already in the dataset' FROM staged s "
            f"SEMI JOIN (SELECT {key} FROM read_parquet({_sql_list(existing)})) e ON s.{key} = e.{key}"
        )
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE dups AS
        SELECT * FROM (
          SELECT _seq, _file, source_line, {key} AS k,
                 '{key} ''' || {key} || ''' repeats line ' || first_line || ' of this ingest' AS reason
          FROM (SELECT _seq, _file, source_line, {key},
                       first_value(source_line) OVER w AS first_line,
                       row_number() OVER w AS rn
                FROM staged WINDOW w AS (PARTITION BY {key} ORDER BY _seq))
          WHERE rn > 1
          {against_existing}
        ) QUALIFY row_number() OVER (PARTITION BY _seq ORDER BY reason) = 1
    """)
    ndup = int(con.execute("SELECT count(*) FROM dups").fetchall()[0][0])
    keep = "WHERE _seq NOT IN (SELECT _seq FROM dups)" if ndup else ""
    if table == "transactions":
        con.execute(f"""
            COPY (SELECT {cols}, CAST(ts AS DATE) AS day FROM staged {keep} ORDER BY ts, _seq)
            TO '{final}' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (day),
                          FILENAME_PATTERN 'part-{ingest_id}-{{i}}')
        """)
    else:
        con.execute(f"""
            COPY (SELECT {cols} FROM staged {keep} ORDER BY _seq)
            TO '{final}/part-{ingest_id}.parquet' (FORMAT parquet, COMPRESSION zstd)
        """)
    if ndup:
        raw_cols = " || ',' || ".join(
            f"coalesce(CAST({c} AS VARCHAR), '')"
            for c in spec.names
            if not spec.field(c).pii and c not in ("ingest_id", "source_line")
        )
        con.execute(f"""
            COPY (SELECT '{ingest_id}' AS ingest_id, '{table}' AS "table", d._file AS file,
                         d.source_line, '{key}' AS field, d.reason, {raw_cols} AS raw
                  FROM dups d JOIN staged s USING (_seq) ORDER BY d._seq)
            TO '{stage / "raw" / f"dups-{table}.parquet"}' (FORMAT parquet)
        """)
    return sorted(final.rglob("*.parquet")), ndup


def _report(
    con: duckdb.DuckDBPyConnection, stage: Path, tables: list[str], quarantine_file: Path | None, notes: dict[str, Any]
) -> dict[str, Any]:
    """Data-quality report: counts per reason class, null rates per column, labels per typology."""
    out: dict[str, Any] = {"tables": {}, "quarantine_reasons": {}, "notes": notes}
    for table in tables:
        files = sorted((stage / "final" / table).rglob("*.parquet"))
        if not files:
            continue
        src = f"read_parquet({_sql_list([str(f) for f in files])})"
        spec = TABLES[table]
        n = int(con.execute(f"SELECT count(*) FROM {src}").fetchall()[0][0])
        nulls = {}
        if n:
            exprs = ", ".join(f'count("{c}")' for c in spec.names)
            counts = con.execute(f"SELECT {exprs} FROM {src}").fetchall()[0]
            nulls = {c: round(1 - counts[i] / n, 4) for i, c in enumerate(spec.names)}
        entry: dict[str, Any] = {"loaded": n, "null_rate": nulls}
        if table == "transactions" and n:
            rows = con.execute(f"""
                SELECT count(*) FILTER (WHERE label = 1), count(*) FILTER (WHERE self_transfer),
                       min(ts)::VARCHAR, max(ts)::VARCHAR, sum(amount_cny) FROM {src}""").fetchall()[0]
            entry.update(
                labelled_illicit=rows[0],
                self_transfers=rows[1],
                first_ts=rows[2],
                last_ts=rows[3],
                total_amount_cny=round(rows[4] or 0, 2),
            )
            entry["by_typology"] = dict(
                con.execute(
                    f"SELECT typology, count(*) FROM {src} WHERE typology IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1"
                ).fetchall()
            )
            entry["by_channel"] = dict(
                con.execute(f"SELECT channel, count(*) FROM {src} GROUP BY 1 ORDER BY 2 DESC, 1").fetchall()
            )
        out["tables"][table] = entry
    if quarantine_file is not None:
        rows = con.execute(f"""
            SELECT "table", coalesce(field, '(row)'),
                   regexp_replace(reason, '''[^'']*''', '''…''', 'g') AS reason_class, count(*)
            FROM read_parquet('{quarantine_file}') GROUP BY ALL ORDER BY 4 DESC, 1, 2, 3""").fetchall()
        for table, fld, reason, count in rows:
            out["quarantine_reasons"].setdefault(table, []).append({"field": fld, "reason": reason, "rows": count})
    return out


def ingest(
    reader: Reader,
    dataset: Dataset,
    *,
    fx: FxTable | None = None,
    tokenizer: ColumnTokenizer | None = None,
    progress: Progress | None = None,
) -> IngestResult:
    """Ingest everything `reader` yields into `dataset`; see the module docstring for guarantees."""
    fx = fx or FxTable.load()
    tokenizer = tokenizer or Tokenizer(load_key(create=True))
    with dataset.writing():
        sources = [{"path": str(p), "sha256": fingerprint(p)} for p in reader.files()]
        prev = dataset.find_fingerprints([s["sha256"] for s in sources])
        if prev is not None:
            return IngestResult(
                prev["id"],
                skipped=True,
                previous=prev["id"],
                loaded=prev["counts"]["loaded"],
                quarantined=prev["counts"]["quarantined"],
                report=prev.get("report_summary", {}),
            )
        _check_key(dataset, tokenizer)
        started = datetime.now(UTC)
        ingest_id = started.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        stage_root = dataset.staging(ingest_id)
        try:
            return _run(reader, dataset, ingest_id, stage_root, sources, started, fx, tokenizer, progress)
        except BaseException:
            shutil.rmtree(stage_root, ignore_errors=True)
            raise


def _run(
    reader: Reader,
    dataset: Dataset,
    ingest_id: str,
    stage_root: Path,
    sources: list[dict[str, str]],
    started: datetime,
    fx: FxTable,
    tokenizer: ColumnTokenizer,
    progress: Progress | None,
) -> IngestResult:
    (stage_root / "raw").mkdir()
    stage = _Stage(stage_root / "raw")
    read_rows: dict[str, int] = {}
    try:
        for batch in _prefetch(reader.batches()):
            v = validate(batch, ingest_id=ingest_id, fx=fx, tokenizer=tokenizer)
            files = batch.data.column("_file")
            good_files = _loaded_files(batch, v.loaded.num_rows, files)
            stage.write(batch.table, v.loaded.append_column("_file", good_files))
            if v.quarantined.num_rows:
                stage.write("quarantine", v.quarantined)
            n = batch.data.num_rows + len(batch.rejected)
            read_rows[batch.table] = read_rows.get(batch.table, 0) + n
            if progress:
                progress(batch.table, n)
    finally:
        stage.close()
    _fault("after-stage")

    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(f"SET memory_limit = '{WRITE_MEMORY}'")
        con.execute(f"SET temp_directory = '{stage_root / 'spill'}'")
        con.execute("SET preserve_insertion_order = false")
        con.execute("SET enable_progress_bar = false")
        staged: dict[str, list[Path]] = {}
        dups: dict[str, int] = {}
        for table in ("transactions", "accounts", "parties"):
            if table in stage.tables():
                staged[table], dups[table] = _dedupe_and_write(
                    con, dataset, stage_root, table, ingest_id, stage.relation(con, table)
                )
        qsources = [stage.relation(con, "quarantine")] if "quarantine" in stage.tables() else []
        qsources += [f"read_parquet('{p}')" for p in sorted((stage_root / "raw").glob("dups-*.parquet"))]
        qfile: Path | None = None
        if qsources:
            qfile = stage_root / "final" / "quarantine" / f"part-{ingest_id}.parquet"
            qfile.parent.mkdir(parents=True, exist_ok=True)
            union = " UNION ALL ".join(f"SELECT * FROM {q}" for q in qsources)
            con.execute(f"""COPY (SELECT * FROM ({union}) ORDER BY file, source_line)
                            TO '{qfile}' (FORMAT parquet, COMPRESSION zstd)""")
            staged["quarantine"] = [qfile]
        report = _report(con, stage_root, [t for t in staged if t != "quarantine"], qfile, reader.notes())
    finally:
        con.close()

    quarantined: dict[str, int] = {}
    if qfile is not None:
        for row in pq.read_table(qfile, columns=["table"]).column("table").value_counts().to_pylist():
            quarantined[row["values"]] = row["counts"]
    loaded = {t: report["tables"].get(t, {}).get("loaded", 0) for t in read_rows}
    for t, n in read_rows.items():
        if loaded.get(t, 0) + quarantined.get(t, 0) != n:  # the platform's core promise
            raise RuntimeError(
                f"internal error: {t}: read {n} rows but loaded {loaded.get(t, 0)} "
                f"+ quarantined {quarantined.get(t, 0)}; nothing was committed"
            )
    finished = datetime.now(UTC)
    report.update(
        ingest_id=ingest_id,
        format=reader.format_name,
        sources=sources,
        started=started.isoformat(timespec="seconds"),
        finished=finished.isoformat(timespec="seconds"),
        read=read_rows,
        loaded=loaded,
        quarantined=quarantined,
    )
    report_file = stage_root / "final" / "reports" / f"{ingest_id}.json"
    report_file.parent.mkdir(parents=True, exist_ok=True)
    report_file.write_text(json.dumps(report, indent=1, ensure_ascii=False, default=str))
    staged["reports"] = [report_file]
    dataset.commit(
        ingest_id,
        "ingest",
        staged,
        {
            "format": reader.format_name,
            "sources": sources,
            "counts": {"read": read_rows, "loaded": loaded, "quarantined": quarantined},
            "report": f"reports/{ingest_id}.json",
            "key_check": tokenizer.key_check_value,
        },
    )
    return IngestResult(ingest_id, loaded=loaded, quarantined=quarantined, report=report)


def _check_key(dataset: Dataset, tokenizer: ColumnTokenizer) -> None:
    """Refuse to ingest with another key than the dataset's earlier ingests of the same key version.

    Tokens made with a different key would silently fail to join the stored ones (the same
    customer would become two), so a wrong `$TIANLUO_MASTER_KEY` must stop the ingest. Key
    versions differ legitimately after a rotation; within one version the check value must match.
    """
    version = tokenizer.key_check_value.split(":", 1)[0]
    for write in reversed(dataset.ingests):
        recorded = write.get("key_check")
        if recorded and recorded.split(":", 1)[0] == version:
            tokenizer.check(recorded)
            return


def _prefetch(batches: Iterator[RawBatch], depth: int = 2) -> Iterator[RawBatch]:
    """Read the next batches in a thread while this one is validated.

    Parsing (pyarrow, numpy) and validation (polars) release the GIL, so on two cores
    reading overlaps checking; the bounded queue keeps at most `depth` batches in memory.
    """
    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for b in batches:
                while not stop.is_set():
                    try:
                        q.put(("batch", b), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(("done", None))
        except BaseException as exc:  # re-raised in the consumer, with its traceback
            q.put(("error", exc))

    t = threading.Thread(target=produce, name="tianluo-read", daemon=True)
    t.start()
    try:
        while True:
            kind, item = q.get()
            if kind == "done":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        t.join()


def _loaded_files(batch: Any, n_loaded: int, files: pa.ChunkedArray) -> pa.Array:
    """`_file` of the loaded rows: batches come from one file, so its first value serves all."""
    value = files[0].as_py() if len(files) else ""
    return pa.array([value] * n_loaded, pa.string()) if n_loaded else pa.array([], pa.string())
