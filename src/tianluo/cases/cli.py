"""`tianluo cases …`: operate the case database from a shell — verify the audit trail, list cases, set up users.

Every command takes `--db URL` (or `$TIANLUO_DB_URL`): `sqlite:///path/cases.db`, a bare
file path, or `postgresql+psycopg://user:password@host:port/db`. Commands act as the
operator (`SYSTEM` in the audit trail).
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tianluo.cases import SYSTEM, CaseError, CaseStore, open_store
from tianluo.cases.workflow import ROLES

app = typer.Typer(help="The case database: audit trail, cases, institutions and users.", no_args_is_help=True)
users_app = typer.Typer(help="Users (argon2id-hashed passwords).", no_args_is_help=True)
tenants_app = typer.Typer(help="Institutions (tenants).", no_args_is_help=True)
datasets_app = typer.Typer(help="Datasets registered in the case store.", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(tenants_app, name="tenants")
app.add_typer(datasets_app, name="datasets")
console = Console()
err = Console(stderr=True)

Db = Annotated[str, typer.Option("--db", envvar="TIANLUO_DB_URL", help="Case database URL (or a SQLite file path).")]


def _fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


def _store(db: str) -> CaseStore:
    try:
        return open_store(db)
    except CaseError as exc:
        _fail(str(exc))


@app.command("verify-audit")
def verify_audit(db: Db) -> None:
    """Recompute the SM3 hash chain of the audit trail; exit 1 and name the first bad entry if it was altered."""
    store = _store(db)
    try:
        res = store.verify_audit()
    finally:
        store.close()
    if res.ok:
        console.print(f"audit trail OK: {res.entries:,} entries, head {res.head_hash}")
        return
    err.print(f"[bold red]audit trail BROKEN[/] at entry {res.first_bad_seq}: {escape(res.problem or '')} "
              f"({res.entries:,} entries verified before it)")
    raise typer.Exit(1)


@app.command("list")
def list_cases(
    db: Db,
    tenant: Annotated[str | None, typer.Option(help="Only this institution (default: all).")] = None,
    status: Annotated[str | None, typer.Option(help="Only these states (comma-separated).")] = None,
    limit: Annotated[int, typer.Option(help="Rows per institution.", min=1, max=500)] = 50,
) -> None:
    """List cases, riskiest first, with their state and deadline."""
    store = _store(db)
    try:
        tenants = [tenant] if tenant else [t["tenant"] for t in store.list_tenants()]
        tab = Table(title="Cases", title_justify="left")
        for col in ("tenant", "case", "status", "risk", "alerts", "amount CNY", "assignee", "due (UTC)", "SLA",
                    "subject"):
            tab.add_column(col, justify="right" if col in ("case", "risk", "alerts", "amount CNY") else "left")
        shown = total = 0
        for t in tenants:
            items, n = store.list_cases(t, status=status, page_size=limit)
            total += n
            for c in items:
                shown += 1
                due = c["due_at"].strftime("%Y-%m-%d %H:%M") if c["due_at"] else ""
                tab.add_row(escape(t), str(c["case_id"]), c["status"], f"{c['risk_score']:.2f}", str(c["alert_count"]),
                            f"{c['amount_cny']:,.2f}", escape(c["assignee"] or ""), due, c["sla_state"] or "",
                            escape(c["title"]))
    except CaseError as exc:
        _fail(str(exc))
    finally:
        store.close()
    console.print(tab)
    console.print(f"{shown:,} of {total:,} case(s)")


@tenants_app.command("add")
def tenants_add(
    tenant: Annotated[str, typer.Argument(help="Tenant id, e.g. BANK_A.")],
    db: Db,
    name: Annotated[str | None, typer.Option(help="Institution name.")] = None,
) -> None:
    """Create an institution."""
    store = _store(db)
    try:
        store.create_tenant(tenant, name)
    except CaseError as exc:
        _fail(str(exc))
    finally:
        store.close()
    console.print(f"institution {escape(tenant)} created")


@tenants_app.command("list")
def tenants_list(db: Db) -> None:
    """List institutions."""
    store = _store(db)
    try:
        for t in store.list_tenants():
            console.print(f"{escape(t['tenant'])}\t{escape(t['name'])}")
    finally:
        store.close()


@users_app.command("add")
def users_add(
    username: Annotated[str, typer.Argument(help="Log-in name.")],
    db: Db,
    role: Annotated[str, typer.Option(help=f"One of: {', '.join(ROLES)}.")],
    tenant: Annotated[str, typer.Option(help="Institution of the user.")],
    display_name: Annotated[str | None, typer.Option(help="Name shown in the UI.")] = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin.")] = False,
) -> None:
    """Create a user; the password comes from stdin (--password-stdin), $TIANLUO_PASSWORD or a prompt."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = os.environ.get("TIANLUO_PASSWORD") or typer.prompt("password", hide_input=True,
                                                                      confirmation_prompt=True)
    store = _store(db)
    try:
        store.create_user(username, password, role, tenant, display_name=display_name)
    except CaseError as exc:
        _fail(str(exc))
    finally:
        store.close()
    console.print(f"user {escape(username)} ({escape(role)}, {escape(tenant)}) created")


@users_app.command("list")
def users_list(
    db: Db,
    tenant: Annotated[str | None, typer.Option(help="Only this institution (default: all).")] = None,
) -> None:
    """List users: name, role, institution, whether disabled."""
    store = _store(db)
    try:
        tab = Table(title="Users", title_justify="left")
        for col in ("username", "display name", "role", "tenant", "disabled"):
            tab.add_column(col)
        for t in [tenant] if tenant else [x["tenant"] for x in store.list_tenants()]:
            for u in store.list_users(t):
                tab.add_row(escape(u["username"]), escape(u["display_name"]), u["role"], escape(u["tenant"]),
                            "yes" if u["disabled"] else "")
    finally:
        store.close()
    console.print(tab)


@datasets_app.command("add")
def datasets_add(
    name: Annotated[str, typer.Argument(help="Name the API and UI use for the dataset.")],
    path: Annotated[str, typer.Argument(help="Dataset directory.")],
    db: Db,
    tenant: Annotated[str, typer.Option(help="Institution that owns the dataset.")],
) -> None:
    """Register a dataset under an institution (then `sync` brings its alerts in)."""
    store = _store(db)
    try:
        store.register_dataset(name, path, tenant)
    except CaseError as exc:
        _fail(str(exc))
    finally:
        store.close()
    console.print(f"dataset {escape(name)} registered for {escape(tenant)}")


@datasets_app.command("list")
def datasets_list(db: Db) -> None:
    """List registered datasets."""
    store = _store(db)
    try:
        for d in store.datasets():
            console.print(f"{escape(d['name'])}\t{escape(d['tenant'])}\t{escape(d['path'])}")
    finally:
        store.close()


@app.command("sync")
def sync(
    name: Annotated[str, typer.Argument(help="Registered dataset name.")],
    db: Db,
) -> None:
    """Bring a dataset's new alerts into the queue: suppressions apply, suspicious ones roll up into cases."""
    store = _store(db)
    try:
        res = store.sync_alerts(name, actor=SYSTEM)
    except CaseError as exc:
        _fail(str(exc))
    finally:
        store.close()
    console.print(escape(str(res)))


if __name__ == "__main__":
    app()
