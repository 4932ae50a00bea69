"""A dataset directory: day-partitioned Parquet, a manifest that is the only truth, and a DuckDB catalogue.

Layout::

    <dataset>/_manifest.json                 committed writes (ingests, detection runs) and their files
    <dataset>/transactions/day=YYYY-MM-DD/part-<ingest>-<n>.parquet
    <dataset>/accounts/part-<ingest>.parquet  (newest row per account_id wins)
    <dataset>/parties/part-<ingest>.parquet   (newest row per party_id wins)
    <dataset>/quarantine/part-<ingest>.parquet
    <dataset>/alerts/part-<run>.parquet       live alerts (view `alerts`) and shadow ones (view `shadow_alerts`)
    <dataset>/reports/<ingest>.json           data-quality report of each ingest
    <dataset>/catalog.duckdb                  views over the files above, for ad-hoc SQL

A write goes to `.staging/<ingest>/` first; commit moves the files into place and
then replaces `_manifest.json` atomically. Readers only ever see files the manifest
lists, so a crash at any point leaves the dataset as it was before the write, and
`recover()` (run on every write) deletes whatever an interrupted write left behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from tianluo.schema import ACCOUNTS, ALERTS, PARTIES, TABLES

MANIFEST = "_manifest.json"
CATALOG = "catalog.duckdb"
FORMAT_VERSION = 1
#: Tables whose rows are current state (the newest ingest's row per key wins).
STATE_TABLES = {ACCOUNTS.name: ACCOUNTS.key, PARTIES.name: PARTIES.key}
#: View of the alerts of rule versions run in shadow (`alerts.shadow`); `alerts` holds the live ones.
SHADOW_ALERTS = "shadow_alerts"
#: DuckDB's memory cap for a write: the 5M-row ingest must stay bounded.
WRITE_MEMORY = "2GB"


class DatasetError(RuntimeError):
    """The directory is not a dataset, is locked by another writer, or is damaged."""


def _fault(point: str) -> None:
    """Crash-test hook: `TIANLUO_FAULT=<point>` kills the process at that point of a write."""
    if os.environ.get("TIANLUO_FAULT") == point:
        os._exit(70)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _sql_list(paths: list[str]) -> str:
    return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"


class Dataset:
    """Open (or create) the dataset at `root`."""

    def __init__(self, root: Path | str, *, create: bool = False) -> None:
        self.root = Path(root).resolve()
        mpath = self.root / MANIFEST
        if not mpath.exists():
            if not create:
                raise DatasetError(
                    f"{self.root} is not a Tianluo dataset (no {MANIFEST}); "
                    "create one with `tianluo ingest` or `tianluo simulate`"
                )
            if self.root.exists() and any(p for p in self.root.iterdir() if p.name != ".staging"):
                raise DatasetError(f"{self.root} exists and is not empty; choose a new dataset directory")
            self.root.mkdir(parents=True, exist_ok=True)
            _atomic_write(mpath, json.dumps({"format": FORMAT_VERSION, "writes": []}, indent=1))
        self.manifest = self._read_manifest()

    # -- manifest ----------------------------------------------------------------------

    def _read_manifest(self) -> dict[str, Any]:
        try:
            m = json.loads((self.root / MANIFEST).read_text())
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{self.root / MANIFEST} is unreadable: {exc}") from None
        if m.get("format") != FORMAT_VERSION:
            raise DatasetError(f"{self.root}: dataset format {m.get('format')} is not supported")
        return m

    @property
    def writes(self) -> list[dict[str, Any]]:
        """Every committed write, oldest first: ingests and detection runs."""
        return list(self.manifest["writes"])

    @property
    def ingests(self) -> list[dict[str, Any]]:
        """Committed ingests, oldest first."""
        return [w for w in self.manifest["writes"] if w["kind"] == "ingest"]

    def files(self, table: str) -> list[Path]:
        """Committed files of a table, oldest ingest first."""
        return [self.root / rel for w in self.manifest["writes"] for rel in w["files"].get(table, [])]

    def find_fingerprints(self, digests: list[str]) -> dict[str, Any] | None:
        """The committed ingest that read exactly these files' contents, if any."""
        want = sorted(digests)
        for ing in self.ingests:
            if sorted(f["sha256"] for f in ing.get("sources", [])) == want:
                return ing
        return None

    # -- writing -----------------------------------------------------------------------

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the dataset's write lock (one writer at a time) and clean up a crashed write first."""
        lock = open(self.root / ".lock", "w")  # noqa: SIM115 - held for the context
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise DatasetError(f"{self.root} is being written by another process") from None
            self.manifest = self._read_manifest()
            self.recover()
            yield
        finally:
            lock.close()

    def recover(self) -> list[Path]:
        """Delete staging areas and data files no committed ingest lists; return what was removed."""
        removed: list[Path] = []
        staging = self.root / ".staging"
        if staging.exists():
            shutil.rmtree(staging)
            removed.append(staging)
        listed = {self.root / rel for w in self.manifest["writes"] for rels in w["files"].values() for rel in rels}
        for table in [*TABLES, "reports"]:
            tdir = self.root / table
            if not tdir.exists():
                continue
            for p in sorted(tdir.rglob("*")):
                if p.is_file() and p not in listed:
                    p.unlink()
                    removed.append(p)
            for d in sorted((d for d in tdir.rglob("*") if d.is_dir()), reverse=True):
                if not any(d.iterdir()):
                    d.rmdir()
        if removed:
            self.refresh_catalog()
        return removed

    def staging(self, ingest_id: str) -> Path:
        d = self.root / ".staging" / ingest_id
        d.mkdir(parents=True, exist_ok=False)
        return d

    def commit(self, write_id: str, kind: str, staged: dict[str, list[Path]], record: dict[str, Any]) -> None:
        """Move staged files into place, then publish them by replacing the manifest."""
        stage_root = self.root / ".staging" / write_id
        rel_files: dict[str, list[str]] = {}
        moves = []
        for table, paths in staged.items():
            for p in paths:
                rel = p.relative_to(stage_root / "final")
                moves.append((p, self.root / rel))
                rel_files.setdefault(table, []).append(str(rel))
        for i, (src, dst) in enumerate(moves):
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
            if i == len(moves) // 2:
                _fault("mid-commit")
        _fault("before-manifest")
        record = {
            **record,
            "id": write_id,
            "kind": kind,
            "files": rel_files,
            "committed": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        manifest = {**self.manifest, "writes": [*self.manifest["writes"], record]}
        _atomic_write(self.root / MANIFEST, json.dumps(manifest, indent=1, ensure_ascii=False))
        self.manifest = manifest
        shutil.rmtree(stage_root, ignore_errors=True)
        with contextlib.suppress(OSError):
            stage_root.parent.rmdir()  # only when no other staging area is in it
        self.refresh_catalog()

    # -- reading -----------------------------------------------------------------------

    def _view_sql(self, table: str) -> str:
        files = [str(p) for p in self.files(table)]
        if not files:
            return f"SELECT * FROM _empty_{table}"
        src = f"read_parquet({_sql_list(files)}, union_by_name = true)"
        if table == ALERTS.name:
            return self._alerts_sql(src, shadow=False)
        key = STATE_TABLES.get(table)
        if key is None:
            return f"SELECT * FROM {src}"
        seq = {w["id"]: n for n, w in enumerate(self.ingests)}
        cases = " ".join(f"WHEN '{i}' THEN {n}" for i, n in seq.items())
        return (
            f"SELECT * FROM {src} QUALIFY row_number() OVER "
            f"(PARTITION BY {key} ORDER BY CASE ingest_id {cases} END DESC, source_line DESC) = 1"
        )

    @staticmethod
    def _alerts_sql(src: str, *, shadow: bool) -> str:
        """Live (or shadow) alerts. Files written before the `shadow` column existed hold live alerts:
        the empty typed table supplies the column, and a missing value reads as false."""
        return (f"SELECT * REPLACE (coalesce(shadow, false) AS shadow) FROM "
                f"(SELECT * FROM _empty_{ALERTS.name} UNION ALL BY NAME SELECT * FROM {src}) "
                f"WHERE {'' if shadow else 'NOT '}coalesce(shadow, false)")

    def _install_views(self, con: duckdb.DuckDBPyConnection, *, temp: bool) -> None:
        kind = "TEMP VIEW" if temp else "VIEW"
        for name, spec in TABLES.items():
            empty = pa.table({f.name: pa.array([], f.type) for f in spec.fields})
            con.register(f"_arrow_empty_{name}", empty)
            con.execute(
                f"CREATE OR REPLACE {'TEMP ' if temp else ''}TABLE _empty_{name} AS SELECT * FROM _arrow_empty_{name}"
            )
            con.unregister(f"_arrow_empty_{name}")
            con.execute(f"CREATE OR REPLACE {kind} {name} AS {self._view_sql(name)}")
        files = [str(p) for p in self.files(ALERTS.name)]
        shadow = (self._alerts_sql(f"read_parquet({_sql_list(files)}, union_by_name = true)", shadow=True)
                  if files else f"SELECT * FROM _empty_{ALERTS.name}")
        con.execute(f"CREATE OR REPLACE {kind} {SHADOW_ALERTS} AS {shadow}")

    def connect(self) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB connection with one view per canonical table (UTC session)."""
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET enable_progress_bar = false")
        self._install_views(con, temp=True)
        return con

    def refresh_catalog(self) -> None:
        """Rewrite `catalog.duckdb` so `duckdb <dataset>/catalog.duckdb` sees the committed data."""
        path = self.root / CATALOG
        tmp = self.root / (CATALOG + ".tmp")
        tmp.unlink(missing_ok=True)
        con = duckdb.connect(str(tmp))
        con.execute("SET enable_progress_bar = false")
        try:
            con.execute("SET TimeZone = 'UTC'")
            self._install_views(con, temp=False)
            con.execute(
                "CREATE OR REPLACE TABLE writes AS SELECT * FROM (VALUES "
                + ", ".join(f"('{w['id']}', '{w['kind']}', '{w.get('committed', '')}')" for w in self.writes)
                + ") AS t(id, kind, committed)"
                if self.manifest["writes"]
                else "CREATE OR REPLACE TABLE writes (id VARCHAR, kind VARCHAR, committed VARCHAR)"
            )
        finally:
            con.close()
        os.replace(tmp, path)
        Path(str(tmp) + ".wal").unlink(missing_ok=True)

    def count(self, table: str) -> int:
        """Number of visible rows of a canonical table."""
        if table in STATE_TABLES or table in (ALERTS.name, SHADOW_ALERTS):
            con = self.connect()
            try:
                return int(con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])
            finally:
                con.close()
        return sum(pq.ParquetFile(p).metadata.num_rows for p in self.files(table))

    def read(self, table: str, where: str | None = None) -> pa.Table:
        """Read a canonical table (optionally filtered by a SQL predicate written by our code)."""
        con = self.connect()
        try:
            sql = f"SELECT * FROM {table}" + (f" WHERE {where}" if where else "")
            return con.sql(sql).to_arrow_table()
        finally:
            con.close()
