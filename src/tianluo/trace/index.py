"""The trace index: every transaction as an integer-encoded edge, with time-sorted adjacency per account.

Built once per dataset (a few seconds for millions of transactions) so that each trace
only touches the accounts it reaches. Arrays can be saved to a directory and loaded
memory-mapped, which is how a dataset's index is cached between processes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from tianluo.reference.currency import FxTable
from tianluo.store import Dataset
from tianluo.trace import _kernels as k

#: Bumped whenever the saved layout or what the arrays mean changes (old caches are then rebuilt).
INDEX_VERSION = 1
_COLUMNS = ("txn_id", "ts", "src_account", "dst_account", "amount_cny", "channel", "cross_border", "src_bank",
            "dst_bank")
_ARRAYS = ("src", "dst", "t", "amount", "channel", "flags", "account_bank", "out_ptr", "out_edge", "out_t", "out_r",
           "out_pos", "in_ptr", "in_edge", "in_t", "k0")


def alerted_accounts(ds: Dataset) -> list[str]:
    """Accounts in any suspicious alert of the dataset: the `alerted` sink of a trace (a known case)."""
    if not ds.files("alerts"):
        return []
    con = ds.connect()
    try:
        got = con.execute("SELECT DISTINCT unnest(accounts) FROM alerts WHERE report_kind = 'suspicious'").fetchall()
    finally:
        con.close()
    return [r[0] for r in got]


@dataclass
class TraceIndex:
    """Transactions as edges `0..n_edges-1` in time order, plus per-account adjacency and ledger shares.

    `t` is microseconds since the epoch (UTC), `amount` CNY. Self-transfers are left out:
    they move no money between accounts. Use `TraceIndex.build`; one trace at a time
    runs on an index (a lock serialises them) because they share a scratch array.
    """

    txn_id: pa.Array
    account_id: pa.Array
    banks: list[str]
    channels: list[str]
    institution: str | None
    src: np.ndarray
    dst: np.ndarray
    t: np.ndarray
    amount: np.ndarray
    channel: np.ndarray
    flags: np.ndarray
    account_bank: np.ndarray
    out_ptr: np.ndarray
    out_edge: np.ndarray
    out_t: np.ndarray
    out_r: np.ndarray
    out_pos: np.ndarray
    in_ptr: np.ndarray
    in_edge: np.ndarray
    in_t: np.ndarray
    k0: np.ndarray
    _used: np.ndarray = field(init=False, repr=False)
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)
    _account_pos: dict[str, int] | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        self._used = np.zeros(len(self.t), np.float64)

    @property
    def n_edges(self) -> int:
        return len(self.t)

    @property
    def n_accounts(self) -> int:
        return len(self.account_id)

    # -- building ------------------------------------------------------------------------------

    @classmethod
    def build(
        cls, source: Dataset | pa.Table | pl.DataFrame, *, institution: str | None = None,
        accounts: pa.Table | pl.DataFrame | None = None, cache: bool | Path | str = False,
    ) -> TraceIndex:
        """Index a dataset or a transactions table.

        A table needs `txn_id, ts, src_account, dst_account` and either `amount_cny` or
        `amount` (+ `currency`, converted with the packaged FX table); `channel`,
        `cross_border`, `src_bank`, `dst_bank` are used when present. `institution` is the
        reporting bank, which decides what counts as "another bank"; by default the bank
        that pays most transactions. `accounts` (a dataset's own by default) supplies each
        account's bank. `cache=True` keeps the index of a dataset under
        `<dataset>/.cache/trace/` (or under the given directory) and reuses it while the
        dataset's committed ingests stay the same.
        """
        if cache and (accounts is not None or not isinstance(source, Dataset)):
            raise ValueError("cache works for a Dataset with its own accounts only; build without cache otherwise")
        if isinstance(source, Dataset):
            cache_dir = None
            if cache:
                key = hashlib.sha1(json.dumps([INDEX_VERSION, institution, [w["id"] for w in source.ingests]])
                                   .encode()).hexdigest()[:16]
                root = source.root / ".cache" / "trace" if cache is True else Path(cache)
                cache_dir = root / key
                if (cache_dir / "meta.json").exists():
                    return cls.load(cache_dir)
            con = source.connect()
            try:
                tx = con.sql(f"SELECT {', '.join(_COLUMNS)} FROM transactions "
                             "WHERE NOT self_transfer AND amount_cny > 0 ORDER BY ts, txn_id").to_arrow_table()
                if accounts is None:
                    accounts = con.sql("SELECT account_id, bank FROM accounts").to_arrow_table()
            finally:
                con.close()
            index = cls._from_table(tx, institution, accounts)
            if cache_dir is not None:
                index.save(cache_dir)
            return index
        tx = _canonical(source)
        return cls._from_table(tx, institution, accounts)

    @classmethod
    def _from_table(cls, tx: pa.Table, institution: str | None, accounts: pa.Table | pl.DataFrame | None
                    ) -> TraceIndex:
        """Encode accounts, banks and channels as integers, sort adjacency by time and replay every ledger."""
        n = tx.num_rows
        ids = pc.dictionary_encode(pa.concat_arrays([_flat(tx["src_account"]), _flat(tx["dst_account"])]))
        codes = ids.indices.to_numpy().astype(np.int32)
        src, dst = codes[:n], codes[n:]
        account_id = ids.dictionary.cast(pa.large_string())
        n_acc = len(account_id)
        t = pc.cast(_flat(tx["ts"]), pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy()
        amount = _flat(tx["amount_cny"]).to_numpy(zero_copy_only=False).astype(np.float64)

        banks_enc = pc.dictionary_encode(pa.concat_arrays([_flat(tx["src_bank"]), _flat(tx["dst_bank"])]))
        banks = banks_enc.dictionary.to_pylist()
        bank_codes = banks_enc.indices.fill_null(-1).to_numpy().astype(np.int32)
        src_bank, dst_bank = bank_codes[:n], bank_codes[n:]
        if institution is None and len(banks):
            counts = np.bincount(src_bank[src_bank >= 0], minlength=len(banks))
            institution = banks[int(np.argmax(counts))] if counts.sum() else None
        account_bank = np.full(n_acc, -1, np.int32)
        account_bank[dst] = dst_bank
        account_bank[src] = src_bank
        if accounts is not None:
            acc = accounts.to_arrow() if isinstance(accounts, pl.DataFrame) else accounts
            acc_bank = _flat(acc["bank"])
            banks += sorted(set(pc.unique(acc_bank).drop_null().to_pylist()) - set(banks))
            pos = pc.index_in(_flat(acc["account_id"]), value_set=account_id)
            code = pc.index_in(acc_bank, value_set=pa.array(banks, pa.string()))
            known = pc.and_(pos.is_valid(), code.is_valid()).to_numpy(zero_copy_only=False)
            account_bank[pos.filter(known).to_numpy()] = code.filter(known).to_numpy()

        ch = pc.dictionary_encode(_flat(tx["channel"]).fill_null("other"))
        channels = ch.dictionary.to_pylist()
        channel = ch.indices.to_numpy().astype(np.uint8)
        inst = banks.index(institution) if institution in banks else -2
        flags = np.zeros(n, np.uint8)
        if "cash" in channels:
            flags |= np.where(channel == channels.index("cash"), k.F_CASH, 0).astype(np.uint8)
        flags |= np.where(_flat(tx["cross_border"]).fill_null(False).to_numpy(zero_copy_only=False),
                          k.F_CROSS_BORDER, 0).astype(np.uint8)
        flags |= np.where((src_bank >= 0) & (src_bank != inst), k.F_SRC_OTHER, 0).astype(np.uint8)
        flags |= np.where((dst_bank >= 0) & (dst_bank != inst), k.F_DST_OTHER, 0).astype(np.uint8)

        out_edge = np.argsort(src, kind="stable").astype(np.int32)
        in_edge = np.argsort(dst, kind="stable").astype(np.int32)
        out_ptr = np.zeros(n_acc + 1, np.int64)
        out_ptr[1:] = np.cumsum(np.bincount(src, minlength=n_acc))
        in_ptr = np.zeros(n_acc + 1, np.int64)
        in_ptr[1:] = np.cumsum(np.bincount(dst, minlength=n_acc))
        out_r, k0 = k.balances(out_ptr, out_edge, in_ptr, in_edge, t, amount)
        out_pos = np.empty(n, np.int64)
        out_pos[out_edge] = np.arange(n)
        return cls(
            txn_id=_flat(tx["txn_id"]).cast(pa.large_string()), account_id=account_id, banks=banks, channels=channels,
            institution=institution, src=src, dst=dst, t=t, amount=amount, channel=channel, flags=flags,
            account_bank=account_bank, out_ptr=out_ptr, out_edge=out_edge, out_t=t[out_edge], out_r=out_r,
            out_pos=out_pos, in_ptr=in_ptr, in_edge=in_edge, in_t=t[in_edge], k0=k0,
        )

    # -- lookups ---------------------------------------------------------------------------------

    def account(self, account_id: str) -> int:
        """Integer code of an account; KeyError names the account when it has no transactions here."""
        if self._account_pos is None:
            self._account_pos = {a: i for i, a in enumerate(self.account_id.to_pylist())}
        try:
            return self._account_pos[account_id]
        except KeyError:
            raise KeyError(f"account {account_id!r} has no transactions between two different accounts in this "
                           "index; check the id (account ids are the canonical `src_account`/`dst_account`)"
                           ) from None

    def edge(self, txn_id: str) -> int:
        """Edge id of a transaction; KeyError when it is absent (or a self-transfer, which is not indexed)."""
        pos = pc.index(self.txn_id, pa.scalar(txn_id, self.txn_id.type)).as_py()
        if pos < 0:
            raise KeyError(f"transaction {txn_id!r} is not in this index (unknown id, or a self-transfer)")
        return int(pos)

    @contextlib.contextmanager
    def scratch(self) -> Iterator[np.ndarray]:
        """The per-edge scratch array a trace accumulates traced amounts in (zero between traces), held exclusively."""
        with self._lock:
            yield self._used

    def account_mask(self, account_ids: Iterable[str]) -> np.ndarray:
        """Boolean mask over account codes of the given account ids (ids not in the index are ignored)."""
        values = pa.array(list(account_ids), pa.large_string())
        return pc.is_in(self.account_id, value_set=values).to_numpy(zero_copy_only=False)

    # -- persistence -----------------------------------------------------------------------------

    def save(self, directory: Path | str) -> None:
        """Write the index as .npy files (loadable memory-mapped) plus two Arrow files and meta.json, last."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        for name in _ARRAYS:
            np.save(d / f"{name}.npy", getattr(self, name))
        for name in ("txn_id", "account_id"):
            with pa.OSFile(str(d / f"{name}.arrow"), "wb") as sink, pa.ipc.new_file(
                sink, pa.schema([("v", pa.large_string())])
            ) as writer:
                writer.write_table(pa.table({"v": getattr(self, name)}))
        meta = {"version": INDEX_VERSION, "banks": self.banks, "channels": self.channels,
                "institution": self.institution}
        (d / "meta.json").write_text(json.dumps(meta, ensure_ascii=False))

    @classmethod
    def load(cls, directory: Path | str) -> TraceIndex:
        """Open a saved index; the arrays are memory-mapped, so opening is instant and pages load on use.

        Copy-on-write mapping keeps the arrays writeable in numpy's eyes (nothing writes to
        them), so the compiled kernels run on them without a second, read-only specialisation.
        """
        d = Path(directory)
        meta = json.loads((d / "meta.json").read_text())
        if meta.get("version") != INDEX_VERSION:
            raise ValueError(f"{d} holds a trace index of version {meta.get('version')}, this code reads "
                             f"{INDEX_VERSION}; rebuild it with TraceIndex.build")
        arrays = {name: np.load(d / f"{name}.npy", mmap_mode="c") for name in _ARRAYS}
        strings = {name: pa.ipc.open_file(pa.memory_map(str(d / f"{name}.arrow"))).read_all()["v"].combine_chunks()
                   for name in ("txn_id", "account_id")}
        return cls(**strings, **arrays, banks=meta["banks"], channels=meta["channels"],
                   institution=meta["institution"])


def _flat(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def _canonical(source: pa.Table | pl.DataFrame) -> pa.Table:
    """A transactions table reduced to what the index needs: CNY amounts, no self-transfers, in time order."""
    df = source if isinstance(source, pl.DataFrame) else pl.from_arrow(source)
    assert isinstance(df, pl.DataFrame)
    missing = [c for c in ("txn_id", "ts", "src_account", "dst_account") if c not in df.columns]
    if "amount_cny" not in df.columns and "amount" not in df.columns:
        missing.append("amount_cny (or amount)")
    if missing:
        raise ValueError(f"transactions table lacks column(s) {', '.join(missing)}; "
                         "pass canonical transactions (see docs/data-model.md)")
    if "amount_cny" not in df.columns:
        if "currency" in df.columns and (df["currency"] != "CNY").any():
            df = df.with_columns(amount_cny=FxTable.load().to_cny(df["amount"], df["currency"], df["ts"]))
        else:
            df = df.with_columns(amount_cny=pl.col("amount").cast(pl.Float64))
    defaults = {"channel": pl.lit(None, pl.String), "cross_border": pl.lit(None, pl.Boolean),
                "src_bank": pl.lit(None, pl.String), "dst_bank": pl.lit(None, pl.String)}
    df = df.with_columns([v.alias(c) for c, v in defaults.items() if c not in df.columns])
    if not isinstance(df.schema["ts"], pl.Datetime):
        raise ValueError(f"transactions column ts must be a timestamp (UTC), not {df.schema['ts']}")
    df = (
        df.select(_COLUMNS)
        .filter((pl.col("src_account") != pl.col("dst_account")) & pl.col("amount_cny").is_not_null()
                & (pl.col("amount_cny") > 0))
        .sort("ts", "txn_id")
    )
    return df.to_arrow()

