"""Key rotation for stored data: rewrite the token columns of Parquet files with a vault's rotation map.

`Vault.rotate` re-seals every value under a new key version and returns which old token
became which new one; this module applies that map to the files that hold tokens, so equal
raw values keep equal tokens across files, tables and datasets, and new ingests (which use
the new version) join with the rewritten data.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tianluo.protect.tokens import token_prefix, token_version


class RotationError(RuntimeError):
    """A file holds a token of a rotated version that the map does not cover; the message names it."""


def retokenize_parquet(
    files: Iterable[Path | str], mapping: pa.Table, *, columns: Iterable[str] | None = None
) -> dict[str, int]:
    """Replace old tokens by new ones in each Parquet file, atomically; returns tokens replaced per file.

    `columns` defaults to every string column holding a token of a version the map rotates
    away from. A token of such a version that is missing from the map was never deposited in
    the vault, so it cannot be rotated: that raises RotationError before the file is touched.
    Values that are not tokens of those versions (other columns, FPE tokens) are left alone,
    so running it again over files already rewritten changes nothing.
    """
    prefixes = {token_prefix(token_version(t)) for t in pc.unique(mapping["old_token"]).to_pylist()}
    old = mapping["old_token"].combine_chunks()
    new = mapping["new_token"].combine_chunks()
    done: dict[str, int] = {}
    for file in files:
        path = Path(file)
        table = pq.read_table(path)
        wanted = (
            list(columns)
            if columns is not None
            else [f.name for f in table.schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
        )
        replaced = 0
        for name in wanted:
            col = table.column(name).combine_chunks()
            stale = np.zeros(len(col), bool)
            for prefix in prefixes:
                stale |= pc.fill_null(pc.starts_with(col, prefix), False).to_numpy(zero_copy_only=False)
            if not stale.any():
                continue
            idx = pc.index_in(col, value_set=old)
            unmapped = stale & pc.is_null(idx).to_numpy(zero_copy_only=False)
            if unmapped.any():
                first = col[int(np.argmax(unmapped))].as_py()
                raise RotationError(
                    f"{path} column {name}: token {first} is not in the rotation map; "
                    "its value was never put in the vault, so it cannot be re-tokenized"
                )
            rotated = pc.if_else(pa.array(stale), pc.take(new, idx).cast(col.type), col)
            table = table.set_column(table.schema.get_field_index(name), table.schema.field(name), rotated)
            replaced += int(stale.sum())
        if replaced:
            tmp = path.with_name(path.name + ".rotating")
            pq.write_table(table, tmp, compression=_compression(path))
            os.replace(tmp, path)
        done[str(path)] = replaced
    return done


def _compression(path: Path) -> str:
    meta = pq.ParquetFile(path).metadata
    if meta.num_row_groups and meta.row_group(0).num_columns:
        return meta.row_group(0).column(0).compression.lower()
    return "zstd"
