"""The plain data a report is made from, and what a generator returns.

Reports are the last stage of the flow: they take plain values (an institution's
configuration, alerts as dicts or frames, Polars frames of canonical rows) so that the
case store and the API can hand over what they hold without this package importing them.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from tianluo.schema import ACCOUNTS, ALERTS, PARTIES, TRANSACTIONS

#: Reveal callback: (canonical PII field name, token) → clear value. The caller audits each use.
Reveal = Callable[[str, str], str]
#: Columns of `parties` that hold tokens instead of values (schema fields marked `pii`).
PII_FIELDS: tuple[str, ...] = tuple(f.name for f in PARTIES.fields if f.pii)
#: Report formats this package writes and validates.
FORMATS: tuple[str, ...] = ("camlmac-hvtr", "camlmac-bstr", "goaml", "zip")

_RICD = re.compile(r"[A-Z0-9]{14}")
_REGION = re.compile(r"\d{6}")


class ReportError(ValueError):
    """A report cannot be made or written as asked; the message says what is missing or wrong."""


@dataclass(frozen=True)
class Institution:
    """The reporting institution, from configuration (never from the transaction data).

    `ricd` is the 14-character reporting-institution code (JR/T 0124-2014, CAMLMAC RICD);
    `bank_id` is how the dataset names this institution in `accounts.bank` /
    `transactions.src_bank`; `branch_code` is the reporting branch's code (FINC/RPNC);
    `region` its 6-digit GB/T 2260 county code (TRCD, "where the transaction happened").
    """

    ricd: str
    name: str = ""
    bank_id: str | None = None
    branch_code: str | None = None
    region: str | None = None
    reporter_name: str | None = None
    reporter_phone: str | None = None
    reporter_email: str | None = None
    address: str | None = None
    city: str | None = None
    country: str = "CN"
    swift: str | None = None
    goaml_rentity_id: str | None = None
    goaml_rentity_branch: str | None = None

    def __post_init__(self) -> None:
        problems = []
        if not _RICD.fullmatch(self.ricd or ""):
            problems.append(f"ricd {self.ricd!r} must be 14 upper-case letters or digits (JR/T 0124-2014 code)")
        if self.region is not None and not _REGION.fullmatch(self.region):
            problems.append(f"region {self.region!r} must be a 6-digit GB/T 2260 county code")
        if self.goaml_rentity_id is not None and not str(self.goaml_rentity_id).isdigit():
            problems.append(f"goaml_rentity_id {self.goaml_rentity_id!r} must be the FIU-assigned number")
        if problems:
            raise ReportError("institution: " + "; ".join(problems))

    @property
    def display_name(self) -> str:
        return self.name or self.bank_id or self.ricd

    @classmethod
    def from_toml(cls, path: Path | str, **overrides: Any) -> Institution:
        """Read `[institution]` (or top-level keys) of a TOML file; non-None `overrides` win."""
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ReportError(f"{path}: cannot read the institution file: {exc}") from None
        raw = raw.get("institution", raw)
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ReportError(f"{path}: unknown institution key(s) {sorted(unknown)}; known: {sorted(known)}")
        values = {**raw, **{k: v for k, v in overrides.items() if v is not None}}
        if "ricd" not in values:
            raise ReportError(f"{path}: the institution needs ricd (14-character reporting-institution code)")
        return cls(**{k: (str(v) if k == "goaml_rentity_id" else v) for k, v in values.items()})


@dataclass
class ReportFile:
    """One generated file: its regulator file name, bytes, and whether it passed its schema.

    `pseudonymised` is True when personal data were written as tokens (no reveal callback):
    such a file is for review and must not be filed.
    """

    file_name: str
    content: bytes
    format: str
    valid: bool
    errors: list[str] = field(default_factory=list)
    pseudonymised: bool = False
    #: Facts about what went in, for the caller's log: counts, unknown codes, report date…
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class ReportData:
    """Canonical rows behind a report: the alerts, their evidence transactions, accounts and parties."""

    alerts: pl.DataFrame
    transactions: pl.DataFrame
    accounts: pl.DataFrame
    parties: pl.DataFrame

    def __post_init__(self) -> None:
        # Missing optional columns are added as nulls so a caller can pass just the columns it has.
        self.alerts = _with_columns(self.alerts, ALERTS.arrow)
        self.transactions = _with_columns(self.transactions, TRANSACTIONS.arrow)
        self.accounts = _with_columns(self.accounts, ACCOUNTS.arrow)
        self.parties = _with_columns(self.parties, PARTIES.arrow)


def _with_columns(df: pl.DataFrame, schema: Any) -> pl.DataFrame:
    empty = pl.from_arrow(schema.empty_table())
    assert isinstance(empty, pl.DataFrame)
    missing = [pl.lit(None, empty.schema[n]).alias(n) for n in empty.columns if n not in df.columns]
    return df.with_columns(missing) if missing else df


@dataclass
class SuspiciousReportInput:
    """What an investigator decided: the evidence, the narrative, the codes and the actions taken.

    `narrative` is the 可疑交易特征描述 (CAMLMAC STCB, goAML `reason`); `analysis` the 疑点分析
    (AOSP; built from the alerts' reasons when None); `actions` the measures taken (goAML
    `action`, appended to AOSP as 已采取措施). Codes default to the alerts' own (TOSC, goAML
    indicators, the rules' STCR registrations); subjects default to the alerts' subjects.
    """

    report_id: str
    data: ReportData
    narrative: str
    analysis: str | None = None
    actions: str = ""
    subjects: list[str] | None = None
    tosc: list[str] | None = None
    stcr: list[str] | None = None
    goaml_indicators: list[str] | None = None
    report_date: date | None = None
    #: DETR urgency: 01 normal, 02 especially urgent.
    detr: str = "01"
    #: TORP: how many times this report has been filed (1 for the first filing).
    torp: int = 1
    #: ORXN: file name of the first filing, for a follow-up or continued report.
    orxn: str | None = None
    #: DORP routing: 01 CAMLMAC only, 02 + PBOC branch, 03 + police, 04 + both, 99 other (ODRP says which).
    dorp: str = "01"
    odrp: str | None = None
    #: TPTR trigger: 01 model screening … 99 other (OTPR says which).
    tptr: str = "01"
    otpr: str | None = None
