"""Reader for IBM AMLSim output folders (`transactions.csv[.gz]`, `accounts.csv`, `alert_transactions.csv`).

AMLSim labels a transaction with `is_sar` and an `alert_id`; the alert's typology
lives in `alert_transactions.csv` (`alert_type`), so the typology is joined in by
alert id. Account open/close dates are simulation steps counted from
`conf.json`'s `base_date`. `accounts.csv` carries fake but PII-shaped columns
(names, SSN, address, birth date) which become `parties` rows and are tokenized
at ingest like real PII.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import polars as pl

from tianluo.ingest.base import RawBatch, Reader, Rejection, SourceError
from tianluo.ingest.csvsource import CsvSource

TX_COLUMNS = ["tran_id", "orig_acct", "bene_acct", "tx_type", "base_amt", "tran_timestamp", "is_sar", "alert_id"]
ACCOUNT_COLUMNS = ["acct_id", "dsply_nm", "type", "open_dt", "close_dt", "bank_id", "acct_rptng_crncy"]
PARTY_PII = ["first_name", "last_name", "street_addr", "city", "state", "zip", "ssn", "gender", "birth_date"]
TS_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
CHANNELS = {
    "TRANSFER": "transfer",
    "CASH-IN": "cash",
    "CASH-OUT": "cash",
    "CHECK": "cheque",
    "WIRE": "wire",
    "CREDIT": "card",
    "DEPOSIT": "cash",
    "PAYMENT": "transfer",
}
#: Steps at or beyond this are AMLSim's "never" (its default close_dt is 1,000,000).
NEVER_STEP = 100_000


class AmlSimReader(Reader):
    """`tianluo ingest --format amlsim DIR` for an AMLSim `outputs/<simulation>` folder."""

    format_name = "amlsim"

    def __init__(self, path: Path, *, currency: str | None = None, chunk_bytes: int | None = None):
        super().__init__(path)
        if not self.path.is_dir():
            raise SourceError(f"{self.path}: an AMLSim output folder is expected, not a file")
        self.tx_path = self._find("transactions.csv")
        self.accounts_path = self.path / "accounts.csv"
        self.alerts_path = self.path / "alert_transactions.csv"
        self.currency = currency
        self.chunk_bytes = chunk_bytes
        conf = self.path / "conf.json"
        base = "2017-01-01"
        if conf.exists():
            try:
                base = json.loads(conf.read_text())["general"]["base_date"]
            except (KeyError, ValueError) as exc:
                raise SourceError(f"{conf}: cannot read general.base_date ({exc})") from None
        self.base_date = date.fromisoformat(base)

    def _find(self, name: str) -> Path:
        for cand in (self.path / name, self.path / f"{name}.gz"):
            if cand.exists():
                return cand
        raise SourceError(f"{self.path}: no {name} or {name}.gz in the AMLSim folder")

    def files(self) -> list[Path]:
        return [p for p in (self.tx_path, self.accounts_path, self.alerts_path) if p.exists()]

    def _src(self, path: Path) -> CsvSource:
        return CsvSource(path, chunk_bytes=self.chunk_bytes) if self.chunk_bytes else CsvSource(path)

    def _alert_types(self) -> pl.DataFrame:
        if not self.alerts_path.exists():
            return pl.DataFrame(schema={"alert_id": pl.String, "typology": pl.String})
        src = self._src(self.alerts_path)
        src.require(["alert_id", "alert_type"])
        frames = [pl.from_arrow(c.table) for c in src.chunks()]
        df = pl.concat(frames) if frames else pl.DataFrame(schema={"alert_id": pl.String, "alert_type": pl.String})
        return df.select(alert_id=pl.col("alert_id"), typology=pl.col("alert_type")).unique("alert_id", keep="first")

    def _step_date(self, col: str) -> pl.Expr:
        step = pl.col(col).cast(pl.Int64, strict=False)
        as_date = pl.lit(self.base_date) + pl.duration(days=step)
        return pl.when(step.is_null() | (step >= NEVER_STEP)).then(None).otherwise(as_date.dt.strftime("%Y-%m-%d"))

    def batches(self) -> Iterator[RawBatch]:
        account_bank: pl.DataFrame | None = None
        currency = self.currency or "USD"
        if self.accounts_path.exists():
            src = self._src(self.accounts_path)
            src.require(ACCOUNT_COLUMNS)
            acct_file = str(self.accounts_path)
            banks = []
            for chunk in src.chunks():
                df = pl.from_arrow(chunk.table).with_columns(_line=pl.Series(chunk.lines, dtype=pl.Int64))
                assert isinstance(df, pl.DataFrame)
                rejected = [Rejection("accounts", acct_file, b.line, None, b.reason, b.raw) for b in chunk.bad]
                banks.append(df.select(acct_id="acct_id", bank_id="bank_id", ccy="acct_rptng_crncy"))
                yield RawBatch(
                    "accounts",
                    df.select(
                        account_id="acct_id",
                        party_id="dsply_nm",
                        bank="bank_id",
                        opened=self._step_date("open_dt"),
                        closed=self._step_date("close_dt"),
                        type=pl.col("type").replace_strict({"I": "personal", "O": "corporate"}, default=pl.col("type")),
                        _file=pl.lit(acct_file),
                        _line="_line",
                    ).to_arrow(),
                    rejected,
                )
                has_pii = all(c in df.columns for c in PARTY_PII)
                yield RawBatch(
                    "parties",
                    df.select(
                        party_id="dsply_nm",
                        kind=pl.when(pl.col("type") == "O").then(pl.lit("enterprise")).otherwise(pl.lit("person")),
                        name=pl.concat_str(["first_name", "last_name"], separator=" ")
                        if has_pii
                        else pl.lit(None, pl.String),
                        id_number=pl.col("ssn") if has_pii else pl.lit(None, pl.String),
                        address=pl.concat_str(["street_addr", "city", "state", "zip"], separator=", ")
                        if has_pii
                        else pl.lit(None, pl.String),
                        birth_year=pl.col("birth_date").str.slice(0, 4) if has_pii else pl.lit(None, pl.String),
                        gender=pl.col("gender").replace_strict({"Female": "F", "Male": "M"}, default=None)
                        if has_pii
                        else pl.lit(None, pl.String),
                        region=pl.concat_str([pl.col("country"), pl.col("state")], separator="-")
                        if "country" in df.columns
                        else pl.lit(None, pl.String),
                        _file=pl.lit(acct_file),
                        _line="_line",
                    ).to_arrow(),
                    [],
                )
            account_bank = pl.concat(banks).unique("acct_id", keep="first") if banks else None
        alerts = self._alert_types()
        src = self._src(self.tx_path)
        src.require(TX_COLUMNS)
        file = str(self.tx_path)
        for chunk in src.chunks():
            df = pl.from_arrow(chunk.table).with_columns(_line=pl.Series(chunk.lines, dtype=pl.Int64))
            assert isinstance(df, pl.DataFrame)
            df = df.join(alerts, on="alert_id", how="left")
            if account_bank is not None:
                df = df.join(
                    account_bank.rename({"acct_id": "orig_acct", "bank_id": "src_bank", "ccy": "src_ccy"}),
                    on="orig_acct",
                    how="left",
                )
                df = df.join(account_bank.select(bene_acct="acct_id", dst_bank="bank_id"), on="bene_acct", how="left")
            else:
                df = df.with_columns(
                    src_bank=pl.lit(None, pl.String), dst_bank=pl.lit(None, pl.String), src_ccy=pl.lit(None, pl.String)
                )
            is_alert = pl.col("alert_id").is_not_null() & (pl.col("alert_id") != "-1")
            out = df.select(
                txn_id=pl.col("tran_id"),
                ts=pl.col("tran_timestamp"),
                src_account=pl.col("orig_acct"),
                dst_account=pl.col("bene_acct"),
                amount=pl.col("base_amt"),
                currency=pl.lit(currency) if self.currency else pl.col("src_ccy").fill_null(currency),
                channel=pl.col("tx_type").replace_strict(CHANNELS, default=pl.col("tx_type").str.to_lowercase()),
                cross_border=pl.lit("false"),
                src_bank=pl.col("src_bank"),
                dst_bank=pl.col("dst_bank"),
                label=pl.col("is_sar"),
                typology=pl.when(is_alert).then(pl.col("typology")),
                attempt_id=pl.when(is_alert).then(pl.format("alert-{}", pl.col("alert_id"))),
                _file=pl.lit(file),
                _line=pl.col("_line"),
            )
            rejected = [Rejection("transactions", file, b.line, None, b.reason, b.raw) for b in chunk.bad]
            yield RawBatch("transactions", out.to_arrow(), rejected, ts_format=TS_FORMAT)
