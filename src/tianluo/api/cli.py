"""`tianluo workspace …` and `tianluo serve`: set up a deployment and run the API + UI."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tianluo.api.workspace import Institution, Workspace, WorkspaceError

app = typer.Typer(help="Workspaces: the case database, institutions, datasets and users one deployment serves.",
                  no_args_is_help=True)
console = Console()
err = Console(stderr=True)
WsArg = Annotated[Path, typer.Argument(help="Workspace folder.")]


def _fail(message: str) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(2)


def _open(root: Path) -> tuple[Workspace, Any]:
    from tianluo.cases import CaseError, open_store

    try:
        ws = Workspace.open(root)
        return ws, open_store(ws.database)
    except (WorkspaceError, CaseError) as exc:
        _fail(str(exc))


def _system() -> Any:
    from tianluo.cases import SYSTEM

    return SYSTEM


@app.command("init")
def init(
    root: WsArg,
    db: Annotated[str | None, typer.Option(help="Case database URL (default: SQLite file in the workspace).")] = None,
    tenant: Annotated[str | None, typer.Option(help="Create this institution (tenant) too.")] = None,
    name: Annotated[str | None, typer.Option(help="Institution name.")] = None,
    ricd: Annotated[str, typer.Option(help="CAMLMAC reporting-institution code (14 characters).")] = "",
    bank_id: Annotated[str, typer.Option(help="How the datasets name this bank (accounts.bank).")] = "TIANLUO_BANK",
    goaml_rentity_id: Annotated[str, typer.Option(help="goAML reporting-entity id (digits).")] = "",
) -> None:
    """Create a workspace (idempotent) and its case database; optionally its first institution."""
    from tianluo.cases import CaseError, open_store

    try:
        ws = Workspace.init(root, database=db)
        store = open_store(ws.database)
        if tenant:
            _add_tenant(ws, store, Institution(tenant=tenant, name=name or tenant, ricd=ricd, bank_id=bank_id,
                                               goaml_rentity_id=goaml_rentity_id))
    except (WorkspaceError, CaseError) as exc:
        _fail(str(exc))
    console.print(f"workspace {escape(str(ws.root))} ready (cases: {escape(_redact(ws.database))})")


def _add_tenant(ws: Workspace, store: Any, inst: Institution) -> None:
    ws.add_institution(inst)
    if inst.tenant not in {t["tenant"] for t in store.list_tenants()}:
        store.create_tenant(inst.tenant, inst.name)


@app.command("add-tenant")
def add_tenant(
    root: WsArg,
    tenant: Annotated[str, typer.Argument(help="Tenant id (institution), e.g. BANK_A.")],
    name: Annotated[str | None, typer.Option(help="Institution name.")] = None,
    ricd: Annotated[str, typer.Option(help="CAMLMAC reporting-institution code (14 characters).")] = "",
    bank_id: Annotated[str, typer.Option(help="How the datasets name this bank (accounts.bank).")] = "TIANLUO_BANK",
    branch_code: Annotated[str, typer.Option(help="Reporting branch code (RPNC / FINC).")] = "",
    region: Annotated[str, typer.Option(help="6-digit GB/T 2260 region code of the institution.")] = "",
    reporter: Annotated[str, typer.Option(help="Name of the reporting officer on reports.")] = "",
    phone: Annotated[str, typer.Option(help="Phone of the reporting officer.")] = "",
    goaml_rentity_id: Annotated[str, typer.Option(help="goAML reporting-entity id (digits).")] = "",
) -> None:
    """Add (or update) an institution: reports use its codes; its users see only its data."""
    from tianluo.cases import CaseError

    ws, store = _open(root)
    try:
        _add_tenant(ws, store, Institution(tenant, name or tenant, ricd, bank_id, branch_code, region, reporter,
                                           phone, goaml_rentity_id))
    except (WorkspaceError, CaseError) as exc:
        _fail(str(exc))
    console.print(f"institution {escape(tenant)} ready")


@app.command("add-dataset")
def add_dataset(
    root: WsArg,
    name: Annotated[str, typer.Argument(help="Name the API and UI use for the dataset.")],
    path: Annotated[Path, typer.Argument(help="Dataset directory (created by ingest or simulate).")],
    tenant: Annotated[str, typer.Option(help="Institution that owns the dataset.")],
    sync: Annotated[bool, typer.Option(help="Import the dataset's existing alerts into the case store.")] = True,
) -> None:
    """Register a dataset under an institution (and bring its alerts into the queue)."""
    from tianluo.cases import CaseError

    _, store = _open(root)
    try:
        store.register_dataset(name, str(path.resolve()), tenant)
        if sync and (path / "_manifest.json").exists():
            res = store.sync_alerts(name, actor=_system())
            console.print(f"alerts synced: {escape(str(res))}")
    except CaseError as exc:
        _fail(str(exc))
    console.print(f"dataset {escape(name)} → {escape(str(path.resolve()))} ({escape(tenant)})")


@app.command("add-user")
def add_user(
    root: WsArg,
    username: Annotated[str, typer.Argument(help="Log-in name.")],
    role: Annotated[str, typer.Option(help="analyst, senior, admin, auditor or supervisor.")],
    tenant: Annotated[str, typer.Option(help="Institution of the user (supervisors: any, they see all).")],
    display_name: Annotated[str | None, typer.Option(help="Name shown in the UI.")] = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin.")] = False,
) -> None:
    """Create a user (argon2-hashed password; from stdin, $TIANLUO_PASSWORD, or a prompt)."""
    from tianluo.cases import CaseError

    _, store = _open(root)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = os.environ.get("TIANLUO_PASSWORD") or typer.prompt("password", hide_input=True,
                                                                      confirmation_prompt=True)
    if len(password) < 10:
        _fail("passwords have at least 10 characters")
    try:
        store.create_user(username, password, role, tenant, display_name=display_name)
    except CaseError as exc:
        _fail(str(exc))
    console.print(f"user {escape(username)} ({escape(role)}, {escape(tenant)}) created")


@app.command("sync")
def sync(root: WsArg, name: Annotated[str, typer.Argument(help="Registered dataset name.")]) -> None:
    """Import new alerts of a dataset into the case store (suppressions apply)."""
    from tianluo.cases import CaseError

    _, store = _open(root)
    try:
        res = store.sync_alerts(name, actor=_system())
    except CaseError as exc:
        _fail(str(exc))
    console.print(escape(str(res)))


@app.command("status")
def status(root: WsArg) -> None:
    """Institutions, datasets and users of the workspace."""
    ws, store = _open(root)
    tab = Table(title=f"Workspace {ws.root}", title_justify="left")
    for c in ("kind", "name", "tenant", "detail"):
        tab.add_column(c)
    for t in store.list_tenants():
        inst = ws.institution(t["tenant"])
        tab.add_row("institution", escape(inst.name), escape(t["tenant"]), f"RICD {escape(inst.ricd or '—')}")
    for d in store.datasets():
        tab.add_row("dataset", escape(d["name"]), escape(d["tenant"]), escape(d["path"]))
    for t in store.list_tenants():
        for u in store.list_users(t["tenant"]):
            tab.add_row("user", escape(u["username"]), escape(t["tenant"]), escape(u["role"]))
    console.print(tab)


def serve(
    workspace: Annotated[Path, typer.Option("--workspace", "-w", help="Workspace folder.")],
    host: Annotated[str, typer.Option(help="Address to listen on (default: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
) -> None:
    """Run the REST API and the investigator UI (http://HOST:PORT/)."""
    import uvicorn

    from tianluo.api.app import create_app

    try:
        application = create_app(workspace)
    except WorkspaceError as exc:
        _fail(str(exc))
    if host not in ("127.0.0.1", "localhost", "::1"):
        err.print("[yellow]warning:[/] listening beyond this machine: put TLS (a reverse proxy) in front")
    console.print(f"Tianluo at http://{host}:{port}/  (API: /api/v1, OpenAPI: /api/v1/openapi.json)")
    uvicorn.run(application, host=host, port=port, log_level="info", access_log=False)


def _redact(url: str) -> str:
    """A database URL without its password, for printing."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        cred, host = rest.rsplit("@", 1)
        user = cred.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url
