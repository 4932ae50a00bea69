"""The canonical tables, declared once: validation, storage and the data-model docs all derive from here.

Every stage of Tianluo reads and writes these three tables (plus the quarantine),
so a column is added here or nowhere. Each field carries its meaning and the
rule that makes a value valid; `tianluo schema --markdown` renders this module
as `docs/data-model.md`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

#: Channels a transaction can take. Readers map source vocabularies onto these.
CHANNELS: tuple[str, ...] = (
    "transfer",  # account-to-account inside or between banks
    "cash",  # cash deposit / withdrawal / cash remittance
    "card",  # debit or credit card payment
    "cheque",
    "ach",  # batch clearing (ACH, 小额批量)
    "wire",  # large-value / SWIFT / CIPS / pacs.008 credit transfer
    "crypto",  # virtual-asset transfer
    "reinvestment",  # AMLworld's own-account reinvestment
    "mobile",  # third-party / mobile payment (支付宝, 微信支付 style)
    "other",
)

#: Kinds of party.
PARTY_KINDS: tuple[str, ...] = ("person", "enterprise")

#: Direction of a transaction when one side is outside the reporting institution.
DIRECTIONS: tuple[str, ...] = ("in", "out")


@dataclass(frozen=True)
class Field:
    """One column of a canonical table.

    `required` means a row without a value is quarantined; `derived` means ingest
    computes it (a source never has to supply it); `pii` means the raw value must be
    tokenized before it is stored.
    """

    name: str
    type: pa.DataType
    doc: str
    required: bool = False
    derived: bool = False
    pii: bool = False
    allowed: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Table:
    """A canonical table: its fields in storage order and what keys a row."""

    name: str
    doc: str
    key: str
    fields: tuple[Field, ...] = field(default_factory=tuple)

    @property
    def arrow(self) -> pa.Schema:
        """The Arrow schema every stored Parquet file of this table has."""
        return pa.schema([pa.field(f.name, f.type, nullable=not f.required) for f in self.fields])

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.name} has no column {name!r}")

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]


UTC_TS = pa.timestamp("us", tz="UTC")

TRANSACTIONS = Table(
    name="transactions",
    doc="One movement of money between two accounts (one side may be outside the institution).",
    key="txn_id",
    fields=(
        Field(
            "txn_id",
            pa.string(),
            "Unique transaction id; derived from row content where the source has none.",
            required=True,
        ),
        Field("ts", UTC_TS, "When the transaction happened, UTC, to the microsecond.", required=True),
        Field("src_account", pa.string(), "Canonical id of the paying account.", required=True),
        Field("dst_account", pa.string(), "Canonical id of the receiving account.", required=True),
        Field("amount", pa.float64(), "Amount paid, in `currency`; strictly positive.", required=True),
        Field(
            "currency", pa.string(), "ISO 4217 code of `amount` (plus BTC/ETH/USDT for virtual assets).", required=True
        ),
        Field(
            "amount_cny",
            pa.float64(),
            "`amount` converted to CNY with the FX rate of the transaction's date.",
            required=True,
            derived=True,
        ),
        Field("channel", pa.string(), "How the money moved.", required=True, allowed=CHANNELS),
        Field(
            "direction",
            pa.string(),
            "`in`/`out` when the counterparty is outside the institution, else null.",
            allowed=DIRECTIONS,
        ),
        Field("cross_border", pa.bool_(), "True when the two sides are in different jurisdictions."),
        Field("src_bank", pa.string(), "Bank of the paying account, as the source wrote it (kept as a string)."),
        Field("dst_bank", pa.string(), "Bank of the receiving account, as the source wrote it."),
        Field("dst_amount", pa.float64(), "Amount received when it differs from `amount` (FX), else null."),
        Field("dst_currency", pa.string(), "Currency of `dst_amount`."),
        Field("purpose", pa.string(), "Business purpose where known (salary, merchant, bill, supplier, loan…)."),
        Field(
            "self_transfer",
            pa.bool_(),
            "True when payer and payee are the same account (flagged, never dropped).",
            required=True,
            derived=True,
        ),
        Field("label", pa.int8(), "Ground truth: 1 illicit, 0 licit, null unknown."),
        Field(
            "typology", pa.string(), "Ground-truth typology of an illicit transaction (fan_in, cycle, structuring…)."
        ),
        Field(
            "attempt_id", pa.string(), "Ground-truth id of the laundering attempt / scheme the transaction belongs to."
        ),
        Field("ingest_id", pa.string(), "The ingest run that loaded the row.", required=True, derived=True),
        Field(
            "source_line",
            pa.int64(),
            "Line (or XML element line) of the row in its source file.",
            required=True,
            derived=True,
        ),
    ),
)

ACCOUNTS = Table(
    name="accounts",
    doc="An account held at a bank or payment institution by a party.",
    key="account_id",
    fields=(
        Field("account_id", pa.string(), "Canonical account id, the same string used in transactions.", required=True),
        Field("party_id", pa.string(), "Owner of the account."),
        Field("bank", pa.string(), "Bank or payment institution holding the account."),
        Field("opened", pa.date32(), "Date the account was opened."),
        Field("closed", pa.date32(), "Date the account was closed, null while open."),
        Field("type", pa.string(), "Account type: personal, corporate, payment, internal…"),
        Field("ingest_id", pa.string(), "The ingest run that loaded the row.", required=True, derived=True),
        Field("source_line", pa.int64(), "Line of the row in its source file.", required=True, derived=True),
    ),
)

PARTIES = Table(
    name="parties",
    doc="A customer or counterparty: a natural person or an enterprise. PII is stored only as tokens.",
    key="party_id",
    fields=(
        Field("party_id", pa.string(), "Party id.", required=True),
        Field("kind", pa.string(), "person or enterprise.", required=True, allowed=PARTY_KINDS),
        Field("name", pa.string(), "Name (token).", pii=True),
        Field("id_number", pa.string(), "Resident ID number / passport / SSN (token).", pii=True),
        Field("phone", pa.string(), "Mobile number (token).", pii=True),
        Field("address", pa.string(), "Street address (token).", pii=True),
        Field("uscc", pa.string(), "Unified social credit code of an enterprise (token).", pii=True),
        Field("birth_year", pa.int16(), "Year of birth of a person (kept in clear for age-based rules)."),
        Field("gender", pa.string(), "Gender of a person: F, M or null."),
        Field("region", pa.string(), "Administrative region code (6-digit GB/T 2260) or country code."),
        Field("industry", pa.string(), "Industry of an enterprise (GB/T 4754 section letter and name)."),
        Field("registered_capital", pa.float64(), "Registered capital of an enterprise, CNY."),
        Field("founded", pa.date32(), "Founding date of an enterprise."),
        Field("ingest_id", pa.string(), "The ingest run that loaded the row.", required=True, derived=True),
        Field("source_line", pa.int64(), "Line of the row in its source file.", required=True, derived=True),
    ),
)

QUARANTINE = Table(
    name="quarantine",
    doc="Every input row that was not loaded, with where it was and why.",
    key="source_line",
    fields=(
        Field("ingest_id", pa.string(), "The ingest run.", required=True),
        Field("table", pa.string(), "Canonical table the row was meant for.", required=True),
        Field("file", pa.string(), "Source file.", required=True),
        Field("source_line", pa.int64(), "Line (1-based, header is line 1) or XML element line.", required=True),
        Field("field", pa.string(), "Column that failed, null for a whole-row problem."),
        Field("reason", pa.string(), "What is wrong, and what would fix it.", required=True),
        Field("raw", pa.string(), "The raw row as read (PII columns are dropped from it)."),
    ),
)

ALERTS = Table(
    name="alerts",
    doc="A detector's finding: who, which transactions, why, how strongly; keyed so re-runs add no duplicates.",
    key="alert_id",
    fields=(
        Field(
            "alert_id",
            pa.string(),
            "Deterministic id: hash of detector name, subject and evidence transactions (not the version).",
            required=True,
        ),
        Field("detector", pa.string(), "Rule, miner or model name (e.g. `pboc_large_cash`).", required=True),
        Field("detector_version", pa.string(), "Version of the rule / miner / model that raised it.", required=True),
        Field("kind", pa.string(), "rule, miner or model.", required=True, allowed=("rule", "miner", "model")),
        Field(
            "subject_type",
            pa.string(),
            "What the alert is about.",
            required=True,
            allowed=("account", "party", "transaction"),
        ),
        Field("subject_id", pa.string(), "Account id, party id or txn id of the subject.", required=True),
        Field("ts_start", UTC_TS, "First evidence transaction time.", required=True),
        Field("ts_end", UTC_TS, "Last evidence transaction time.", required=True),
        Field("score", pa.float64(), "Strength in [0, 1]; rules give 1.0 unless they grade.", required=True),
        Field("typology", pa.string(), "Typology the alert points to (fan_in, structuring, large_value…)."),
        Field("reasons", pa.list_(pa.string()), "Reasons in words an investigator understands.", required=True),
        Field(
            "txn_ids", pa.list_(pa.string()), "Evidence: the exact transactions (the pattern instance).", required=True
        ),
        Field("accounts", pa.list_(pa.string()), "Evidence: every account in the pattern instance.", required=True),
        Field("amount_cny", pa.float64(), "Total CNY of the evidence transactions."),
        Field(
            "report_kind",
            pa.string(),
            "`large_value` for LVTR candidates, `suspicious` otherwise.",
            required=True,
            allowed=("large_value", "suspicious"),
        ),
        Field("crcd", pa.string(), "CAMLMAC large-value feature code (0501–0504) for LVTR candidates."),
        Field("tosc", pa.string(), "CAMLMAC suspected-crime code (TOSC, e.g. 0802, 1201) where one applies."),
        Field("goaml_indicator", pa.string(), "goAML report indicator code (e.g. SPOS, SPOEQ) where one applies."),
        Field("run_id", pa.string(), "The detection run that first raised it.", required=True, derived=True),
        Field(
            "shadow",
            pa.bool_(),
            "True for an alert of a rule version run in shadow (`tianluo detect --shadow-pack`): kept for "
            "comparison in the `shadow_alerts` view, never queued, reported or traced; the `alerts` view holds "
            "the live ones (a file without the column reads as live).",
            derived=True,
        ),
    ),
)

TABLES: dict[str, Table] = {t.name: t for t in (TRANSACTIONS, ACCOUNTS, PARTIES, QUARANTINE, ALERTS)}


def markdown() -> str:
    """Render the schema as Markdown (the body of docs/data-model.md)."""
    out = [
        "# Canonical data model",
        "",
        "Generated from `src/tianluo/schema.py` by `tianluo schema --markdown`; do not edit by hand.",
        "",
    ]
    for t in TABLES.values():
        out += [f"## `{t.name}`", "", t.doc, "", "| column | type | required | notes |", "|---|---|---|---|"]
        for f in t.fields:
            notes = f.doc
            if f.allowed:
                notes += " One of: " + ", ".join(f"`{a}`" for a in f.allowed) + "."
            if f.derived:
                notes += " *Derived at ingest.*"
            if f.pii:
                notes += " *PII: stored as an HMAC-SM3 token.*"
            out.append(f"| `{f.name}` | {f.type} | {'yes' if f.required else ''} | {notes} |")
        out.append("")
    return "\n".join(out)
