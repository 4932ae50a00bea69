"""Who is who in a report: accounts and owners, the reporting side of a transaction, revealed PII, default codes.

Shared by the CAMLMAC and goAML writers so that both see the same customer, counterparty
and identity for every transaction, and so that each token is revealed at most once per
report (every reveal is an audited event for the caller).
"""

from __future__ import annotations

from typing import Any

import polars as pl

from tianluo.reference.currency import FxTable
from tianluo.report.codes import country_alpha2, id_type
from tianluo.report.model import Institution, ReportData, ReportError, Reveal

#: Account types that belong to the institution itself (cash, GL): never a customer, never a subject.
INTERNAL_ACCOUNT_TYPES = frozenset({"internal"})


def with_usd(tx: pl.DataFrame) -> pl.DataFrame:
    """Add `amount_usd`: USD amounts as they are, others from `amount_cny` at the day's packaged USD rate.

    The rate is taken on a million dollars (the FX table rounds to fen) so it keeps six
    decimals, and the result is rounded to cents like `amount_cny`; rows without `amount_cny`
    or a rate get null, which the reports write as `@N`.
    """
    if tx.height == 0:
        return tx.with_columns(amount_usd=pl.lit(None, pl.Float64))
    fx = FxTable.load()
    n = tx.height
    per_million = fx.to_cny(pl.Series("a", [1_000_000.0] * n), pl.Series("c", ["USD"] * n), tx["ts"])
    rate = per_million / 1_000_000.0
    usd = (
        pl.when(pl.col("currency") == "USD")
        .then(pl.col("amount"))
        .otherwise((pl.col("amount_cny") / rate).round(2, mode="half_away_from_zero"))
    )
    return tx.with_columns(amount_usd=usd)


class Parties:
    """Lookups over a ReportData, plus the reveal callback with its cache and pseudonymisation flag."""

    def __init__(self, institution: Institution, data: ReportData, reveal: Reveal | None) -> None:
        self.institution = institution
        self.accounts: dict[str, dict[str, Any]] = {r["account_id"]: r for r in data.accounts.iter_rows(named=True)}
        self.parties: dict[str, dict[str, Any]] = {r["party_id"]: r for r in data.parties.iter_rows(named=True)}
        self._reveal = reveal
        self._cache: dict[tuple[str, str], str] = {}
        #: True once a token was written because there was no reveal callback.
        self.pseudonymised = False

    @property
    def revealing(self) -> bool:
        return self._reveal is not None

    def pii(self, party: dict[str, Any] | None, field: str) -> str | None:
        """The clear value of a PII column of a party (through the callback), or its token without one."""
        if party is None:
            return None
        token = party.get(field)
        if not token:
            return None
        if self._reveal is None:
            self.pseudonymised = True
            return str(token)
        key = (field, str(token))
        if key not in self._cache:
            self._cache[key] = self._reveal(field, str(token))
        return self._cache[key]

    def owner(self, account_id: str | None) -> dict[str, Any] | None:
        acc = self.accounts.get(account_id or "")
        if acc is None or acc.get("party_id") is None:
            return None
        return self.parties.get(acc["party_id"])

    def owner_id(self, account_id: str | None) -> str | None:
        acc = self.accounts.get(account_id or "")
        return None if acc is None else acc.get("party_id")

    def is_internal(self, account_id: str | None) -> bool:
        acc = self.accounts.get(account_id or "")
        return acc is not None and acc.get("type") in INTERNAL_ACCOUNT_TYPES

    def is_foreign(self, party: dict[str, Any] | None) -> bool:
        a2 = country_alpha2(party.get("region")) if party else None
        return a2 is not None and a2 != "CN"

    def identity(self, party: dict[str, Any] | None) -> tuple[str | None, str, str, str | None]:
        """(name, document type code, "other type" text, document number) of a party."""
        if party is None:
            return None, "@N", "@N", None
        name = self.pii(party, "name")
        field = "uscc" if party.get("kind") == "enterprise" and party.get("uscc") else "id_number"
        number = self.pii(party, field)
        code, other = id_type(party.get("kind"), number, revealed=self.revealing, foreign=self.is_foreign(party))
        return name, code, other, number

    def bank_name(self, bank: str | None) -> str | None:
        """A bank as the dataset names it; this institution by its own name."""
        if bank and self.institution.bank_id and bank == self.institution.bank_id:
            return self.institution.display_name
        return bank

    def ours(self, txn: dict[str, Any]) -> tuple[bool, bool]:
        """Whether the payer / payee side is this institution's customer (`direction`, as detection reads it).

        `out`: only the payer banks here, `in`: only the payee, null: both (or the source has
        no notion of it). The institution's own internal accounts are never a customer.
        """
        d = txn.get("direction")
        src, dst = d != "in", d != "out"
        return (src and not self.is_internal(txn["src_account"]), dst and not self.is_internal(txn["dst_account"]))

    def customer_side(self, txn: dict[str, Any], subjects: set[str] | frozenset[str]) -> str:
        """`src` or `dst`: the side reported as the customer's. A subject's own side first, then
        a side that banks here, then the payer."""
        src_ours, dst_ours = self.ours(txn)
        src_subject = self.owner_id(txn["src_account"]) in subjects
        dst_subject = self.owner_id(txn["dst_account"]) in subjects
        if src_subject and (src_ours or not dst_subject):
            return "src"
        if dst_subject:
            return "dst"
        if src_ours or not dst_ours:
            return "src"
        return "dst"


def default_subjects(who: Parties, alerts: pl.DataFrame, txns: dict[str, dict[str, Any]]) -> list[str]:
    """Parties the alerts are about: party subjects, owners of account subjects, and for a
    transaction subject the owner of its side that banks here (the payer when both do)."""
    out: dict[str, None] = {}
    for a in alerts.iter_rows(named=True):
        kind, sid = a["subject_type"], a["subject_id"]
        owner: str | None = None
        if kind == "party":
            owner = sid
        elif kind == "account":
            owner = who.owner_id(sid)
        elif kind == "transaction" and sid in txns:
            t = txns[sid]
            src_ours, _ = who.ours(t)
            owner = who.owner_id(t["src_account"] if src_ours else t["dst_account"])
        if owner:
            out[owner] = None
    return list(out)


def evidence_order(alerts: pl.DataFrame, txns: dict[str, dict[str, Any]]) -> list[str]:
    """Every transaction of the report data, in time order: the evidence of a suspicious report.

    `load_report_data` puts exactly the alerts' evidence there; a caller may add transactions an
    investigator found. A transaction an alert cites but the data lacks is an error, not a gap.
    """
    cited = {t for ids in alerts["txn_ids"].to_list() if ids for t in ids}
    missing = sorted(cited - set(txns))
    if missing:
        raise ReportError(f"evidence transaction {missing[0]!r} of the alerts is not in the report data")
    if not txns:
        raise ReportError("no evidence transactions: a suspicious report needs at least one")
    return sorted(txns, key=lambda i: (txns[i]["ts"], i))


def codes_from_alerts(alerts: pl.DataFrame, column: str) -> list[str]:
    out: dict[str, None] = {}
    for value in alerts[column].to_list():
        for code in (value or "").split(","):
            if code.strip():
                out[code.strip()] = None
    return list(out)


def default_analysis(alerts: pl.DataFrame) -> str:
    """疑点分析 assembled from the alerts' own reasons (Chinese where the rule has it), one line each."""
    def cjk_share(text: str) -> float:
        return sum("\u4e00" <= ch <= "\u9fff" for ch in text) / max(len(text), 1)

    lines = []
    for a in alerts.iter_rows(named=True):
        reasons = [r for r in (a.get("reasons") or []) if r]
        text = max(reasons, key=cjk_share) if reasons else (a.get("typology") or "")
        lines.append(f"{a['detector']}：{text}")
    return "\n".join(lines)
