"""A workspace: the case database plus the datasets and institutions one deployment serves.

The API, `tianluo serve` and `tianluo detect --workspace` all start from a workspace
folder, so one path is all a deployment needs::

    <workspace>/tianluo.toml     database URL and the institutions (tenants) with their report codes
    <workspace>/cases.db         the embedded case store (SQLite) unless `database` names PostgreSQL
    <workspace>/uploads/         files received by the ingest endpoint, kept for provenance

Secrets never go in `tianluo.toml`: the master key comes from the environment or a key
file (see docs/security.md) and a PostgreSQL password can be given as `$TIANLUO_DB_URL`.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG = "tianluo.toml"
_TENANT_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_RICD = re.compile(r"^[A-Z0-9]{14}$")


class WorkspaceError(RuntimeError):
    """The folder is not a workspace, or its configuration is invalid."""


@dataclass(frozen=True)
class Institution:
    """A reporting institution (tenant): its name and the codes its regulator reports carry.

    `ricd` is the 14-character CAMLMAC reporting-institution code, `bank_id` how its datasets
    name it (`accounts.bank`), `goaml_rentity_id` the FIU-assigned goAML reporting-entity id.
    Codes may be left empty until the institution files reports; drafting then says which
    one is missing.
    """

    tenant: str
    name: str
    ricd: str = ""
    bank_id: str = ""
    branch_code: str = ""
    region: str = ""
    reporter_name: str = ""
    reporter_phone: str = ""
    goaml_rentity_id: str = ""

    def for_reports(self) -> Any:
        """The `tianluo.report.Institution` of this tenant (ReportError names a missing or bad code)."""
        from tianluo.report import Institution as ReportInstitution
        from tianluo.report import ReportError

        if not self.ricd:
            raise ReportError(f"institution {self.tenant} has no RICD: set it with "
                              f"`tianluo workspace add-tenant <workspace> {self.tenant} --ricd <14 characters>`")
        return ReportInstitution(
            ricd=self.ricd, name=self.name, bank_id=self.bank_id or None, branch_code=self.branch_code or None,
            region=self.region or None, reporter_name=self.reporter_name or None,
            reporter_phone=self.reporter_phone or None, goaml_rentity_id=self.goaml_rentity_id or None,
        )


INSTITUTION_KEYS = tuple(f for f in Institution.__dataclass_fields__ if f != "tenant")


@dataclass
class Workspace:
    """Where the case database and the institutions of a deployment are configured."""

    root: Path
    database: str
    institutions: dict[str, Institution] = field(default_factory=dict)

    @classmethod
    def open(cls, root: Path | str) -> Workspace:
        """Read `<root>/tianluo.toml`; `$TIANLUO_DB_URL` overrides the database URL."""
        root = Path(root).resolve()
        cfg_path = root / CONFIG
        if not cfg_path.exists():
            raise WorkspaceError(f"{root} is not a Tianluo workspace (no {CONFIG}); create one with "
                                 f"`tianluo workspace init {root} --tenant <INSTITUTION>`")
        try:
            cfg = tomllib.loads(cfg_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise WorkspaceError(f"{cfg_path}: {exc}") from exc
        db = os.environ.get("TIANLUO_DB_URL") or cfg.get("database") or f"sqlite:///{root / 'cases.db'}"
        insts = {}
        for tenant, spec in (cfg.get("institutions") or {}).items():
            insts[tenant] = _institution(tenant, spec, cfg_path)
        return cls(root=root, database=db, institutions=insts)

    @classmethod
    def init(cls, root: Path | str, *, database: str | None = None) -> Workspace:
        """Create the folder and a `tianluo.toml`; an existing workspace is left as it is."""
        root = Path(root).resolve()
        root.mkdir(parents=True, exist_ok=True)
        (root / "uploads").mkdir(exist_ok=True)
        cfg_path = root / CONFIG
        if not cfg_path.exists():
            lines = ["# Tianluo workspace. Secrets (master key, DB passwords) never go here.\n"]
            if database:
                lines.append(f"database = {_toml_str(database)}\n")
            cfg_path.write_text("".join(lines), encoding="utf-8")
        return cls.open(root)

    def add_institution(self, inst: Institution) -> None:
        """Record an institution in `tianluo.toml` (replacing an earlier entry of the same tenant)."""
        _check_tenant(inst.tenant)
        if inst.ricd and not _RICD.match(inst.ricd):
            raise WorkspaceError(f"RICD {inst.ricd!r}: the reporting-institution code has 14 upper-case letters "
                                 "or digits")
        self.institutions[inst.tenant] = inst
        cfg_path = self.root / CONFIG
        text = cfg_path.read_text(encoding="utf-8")
        head = text.split("\n[institutions.", 1)[0].rstrip("\n") + "\n"
        blocks = []
        for t, i in sorted(self.institutions.items()):
            body = "".join(f"{k} = {_toml_str(getattr(i, k))}\n" for k in INSTITUTION_KEYS)
            blocks.append(f"\n[institutions.{_toml_key(t)}]\n{body}")
        cfg_path.write_text(head + "".join(blocks), encoding="utf-8")

    def institution(self, tenant: str) -> Institution:
        """The tenant's institution record; a tenant without one reports with `@N` codes."""
        return self.institutions.get(tenant) or Institution(tenant=tenant, name=tenant)

    def vault(self, dataset: str) -> Path:
        """The token vault of a dataset: `<workspace>/vaults/<name>.sqlite` (outside every dataset)."""
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", dataset)
        path = self.root / "vaults"
        path.mkdir(exist_ok=True)
        return path / f"{safe}.sqlite"

    @property
    def uploads(self) -> Path:
        path = self.root / "uploads"
        path.mkdir(exist_ok=True)
        return path


def _check_tenant(tenant: str) -> None:
    if not _TENANT_ID.match(tenant):
        raise WorkspaceError(f"tenant id {tenant!r}: use 1–64 letters, digits, '_', '.' or '-'")


def _institution(tenant: str, spec: Any, where: Path) -> Institution:
    _check_tenant(tenant)
    if not isinstance(spec, dict):
        raise WorkspaceError(f"{where}: [institutions.{tenant}] must be a table")
    unknown = set(spec) - set(INSTITUTION_KEYS)
    if unknown:
        raise WorkspaceError(f"{where}: [institutions.{tenant}] has unknown keys {sorted(unknown)}")
    return Institution(tenant=tenant, **{k: str(v) for k, v in spec.items() if k != "name"},
                       name=str(spec.get("name", tenant)))


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _toml_key(value: str) -> str:
    return value if re.match(r"^[A-Za-z0-9_-]+$", value) else _toml_str(value)
