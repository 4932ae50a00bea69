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
_RICD = re.compile(r"^[A-Za-z0-9]{14}$")


class WorkspaceError(RuntimeError):
    """The folder is not a workspace, or its configuration is invalid."""


@dataclass(frozen=True)
class Institution:
    """A reporting institution (tenant): its id, name and CAMLMAC reporting-institution code."""

    tenant: str
    name: str
    ricd: str = "@N"
    region: str = "@N"
    reporter: str = "@N"
    phone: str = "@N"


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
        if inst.ricd != "@N" and not _RICD.match(inst.ricd):
            raise WorkspaceError(f"RICD {inst.ricd!r}: the reporting-institution code has 14 letters or digits")
        self.institutions[inst.tenant] = inst
        cfg_path = self.root / CONFIG
        text = cfg_path.read_text(encoding="utf-8")
        head = text.split("\n[institutions.", 1)[0].rstrip("\n") + "\n"
        blocks = []
        for t, i in sorted(self.institutions.items()):
            blocks.append(
                f"\n[institutions.{_toml_key(t)}]\nname = {_toml_str(i.name)}\nricd = {_toml_str(i.ricd)}\n"
                f"region = {_toml_str(i.region)}\nreporter = {_toml_str(i.reporter)}\nphone = {_toml_str(i.phone)}\n"
            )
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
    known = {"name", "ricd", "region", "reporter", "phone"}
    unknown = set(spec) - known
    if unknown:
        raise WorkspaceError(f"{where}: [institutions.{tenant}] has unknown keys {sorted(unknown)}")
    return Institution(tenant=tenant, **{k: str(v) for k, v in spec.items()})


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _toml_key(value: str) -> str:
    return value if re.match(r"^[A-Za-z0-9_-]+$", value) else _toml_str(value)
