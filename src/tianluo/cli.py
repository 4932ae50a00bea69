"""The `tianluo` command line: simulate, ingest, inspect datasets; the same code paths as the API and tests."""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import date
from pathlib import Path
from typing import Annotated, Any, NoReturn

import pyarrow.compute as pc
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from tianluo import __version__

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Tianluo (天罗): financial crime and risk monitoring.",
    pretty_exceptions_enable=False,
)
console = Console(stderr=False)
err = Console(stderr=True)

DatasetOpt = Annotated[Path, typer.Option("--dataset", "-d", help="Dataset directory.")]


def _fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f} {task.fields[unit]}"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
        disable=not err.is_terminal and not os.environ.get("TIANLUO_PROGRESS"),
    )


@app.command()
def version() -> None:
    """Print the version."""
    console.print(f"tianluo {__version__}")


@app.command()
def schema(markdown: Annotated[bool, typer.Option(help="Print docs/data-model.md.")] = False) -> None:
    """Show the canonical data model (the Arrow schema every stage uses)."""
    from tianluo import schema as s

    if markdown:
        sys.stdout.write(s.markdown() + "\n")
        return
    for t in s.TABLES.values():
        tab = Table(title=f"{t.name} — {t.doc}", title_justify="left")
        for col in ("column", "type", "required", "notes"):
            tab.add_column(col)
        for f in t.fields:
            tab.add_row(f.name, str(f.type), "yes" if f.required else "", f.doc)
        console.print(tab)


def _run_ingest(
    source: Path,
    dataset: Path,
    fmt: str,
    mapping: Path | None,
    patterns: Path | None,
    encoding: str | None,
    fx: Path | None,
    key_file: Path | None,
    vault: Path | None = None,
) -> Any:
    from tianluo.ingest import SourceError, ingest, open_reader
    from tianluo.protect import MasterKeyError, Tokenizer, load_key, load_keyring
    from tianluo.reference.currency import FxTable
    from tianluo.store import Dataset, DatasetError

    try:
        reader = open_reader(source, fmt, mapping=mapping, patterns=patterns, encoding=encoding)
        fx_table = FxTable.load(fx)
        # The keyring's current version tokenizes: after a rotation new data joins the rotated tokens.
        ring = load_keyring(None, load_key(key_file, create=key_file is None), create=True)
        tokenizer: Any = Tokenizer(ring)
        if vault is not None:
            from tianluo.protect import Vault

            # The vault tokenizes exactly like the tokenizer and also keeps each value, SM4-sealed.
            tokenizer = Vault(vault, ring)
        ds = Dataset(dataset, create=True)
        with _progress() as prog:
            tasks: dict[str, Any] = {}

            def tick(table: str, n: int) -> None:
                if table not in tasks:
                    tasks[table] = prog.add_task(f"ingest {table}", total=None, unit="rows")
                prog.advance(tasks[table], n)

            return ingest(reader, ds, fx=fx_table, tokenizer=tokenizer, progress=tick)
    except (SourceError, DatasetError, MasterKeyError, ValueError) as exc:
        _fail(str(exc))


def _print_result(res: Any, dataset: Path) -> None:
    if res.skipped:
        console.print(
            f"[yellow]already ingested[/] as {res.previous}: nothing to do "
            f"(loaded {sum(res.loaded.values()):,} rows then)"
        )
        return
    _print_quality(res.report)
    console.print(f"ingest [bold]{res.ingest_id}[/] committed to {dataset}")


def _print_quality(rep: dict[str, Any]) -> None:
    tab = Table(title="Data quality", title_justify="left")
    for col in ("table", "read", "loaded", "quarantined"):
        tab.add_column(col, justify="right" if col != "table" else "left")
    for t, n in rep.get("read", {}).items():
        tab.add_row(t, f"{n:,}", f"{rep['loaded'].get(t, 0):,}", f"{rep['quarantined'].get(t, 0):,}")
    console.print(tab)
    reasons = rep.get("quarantine_reasons", {})
    if reasons:
        rt = Table(title="Quarantine reasons", title_justify="left")
        for col in ("table", "field", "reason", "rows"):
            rt.add_column(col)
        for t, items in reasons.items():
            for it in items[:15]:
                rt.add_row(t, it["field"], escape(it["reason"]), f"{it['rows']:,}")
        console.print(rt)
    tx = rep.get("tables", {}).get("transactions")
    if tx:
        console.print(
            f"transactions {tx['first_ts']} → {tx['last_ts']}, "
            f"¥{tx['total_amount_cny']:,.2f} in CNY, {tx['labelled_illicit']:,} labelled illicit, "
            f"{tx['self_transfers']:,} self-transfers"
        )
        if tx.get("by_typology"):
            console.print("by typology: " + ", ".join(f"{k} {v:,}" for k, v in tx["by_typology"].items()))
        worst = sorted(((c, r) for c, r in tx["null_rate"].items() if r > 0), key=lambda x: -x[1])[:6]
        if worst:
            console.print("null rates: " + ", ".join(f"{c} {r:.1%}" for c, r in worst))
    for k, v in rep.get("notes", {}).items():
        console.print(escape(f"{k}: {v}"))


@app.command("ingest")
def ingest_cmd(
    source: Annotated[Path, typer.Argument(help="File or folder to ingest.")],
    dataset: DatasetOpt,
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="auto, tianluo, amlworld, amlsim, pacs008, csv, parquet.")
    ] = "auto",
    mapping: Annotated[Path | None, typer.Option(help="Mapping file (TOML) for csv/parquet sources.")] = None,
    patterns: Annotated[Path | None, typer.Option(help="AMLworld *_Patterns.txt with ground truth.")] = None,
    encoding: Annotated[str | None, typer.Option(help="Text encoding of a CSV source (e.g. gb18030).")] = None,
    fx: Annotated[Path | None, typer.Option(help="FX table (CSV) overriding the packaged one.")] = None,
    key_file: Annotated[Path | None, typer.Option(help="Master key file for PII tokens.")] = None,
    report_json: Annotated[Path | None, typer.Option(help="Also write the data-quality report here.")] = None,
    vault: Annotated[
        Path | None, typer.Option(help="Token vault (SQLite, outside the dataset) that keeps PII for audited reveal.")
    ] = None,
) -> None:
    """Validate a source and load it into a dataset; bad rows go to quarantine with their reason."""
    res = _run_ingest(source, dataset, fmt, mapping, patterns, encoding, fx, key_file, vault)
    _print_result(res, dataset)
    if report_json and not res.skipped:
        report_json.write_text(json.dumps(res.report, indent=1, ensure_ascii=False, default=str))


@app.command()
def simulate(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the simulated source into.")],
    transactions: Annotated[int | None, typer.Option(help="Target number of transactions.")] = None,
    persons: Annotated[int, typer.Option(help="Number of natural persons.")] = 20_000,
    enterprises: Annotated[int, typer.Option(help="Number of enterprises.")] = 2_000,
    days: Annotated[int, typer.Option(help="Days of history.")] = 90,
    start: Annotated[str, typer.Option(help="First day (YYYY-MM-DD).")] = "2024-01-01",
    illicit_ratio: Annotated[float, typer.Option(help="Share of injected illicit transactions.")] = 0.002,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same data.")] = 0,
    fmt: Annotated[str, typer.Option("--format", help="parquet or csv.")] = "parquet",
    dataset: Annotated[Path | None, typer.Option("--dataset", "-d", help="Also ingest into this dataset.")] = None,
    vault: Annotated[Path | None, typer.Option(help="Token vault for the ingest (keeps PII for reveal).")] = None,
    amlworld_shapes: Annotated[
        bool,
        typer.Option(help="Stage the eight AMLworld typologies as AMLworld's real attempts look (per-hop "
                          "currency changes, layered stacks, partial bipartite, random walks); docs/miners.md."),
    ] = False,
) -> None:
    """Generate a bank's population and transactions with labelled, injected crime."""
    from tianluo.simulate import SimConfig, write_source
    from tianluo.simulate import simulate as run_sim

    if fmt not in ("parquet", "csv"):
        _fail("--format must be parquet or csv")
    try:
        cfg = SimConfig(
            persons=persons,
            enterprises=enterprises,
            days=days,
            start=date.fromisoformat(start),
            transactions=transactions,
            illicit_ratio=illicit_ratio,
            seed=seed,
            amlworld_shapes=amlworld_shapes,
        )
    except ValueError as exc:
        _fail(str(exc))
    t0 = time.perf_counter()
    with _progress() as prog:
        task = prog.add_task("simulate", total=1.0, unit="")

        def tick(step: str, frac: float) -> None:
            prog.update(task, completed=frac, description=f"simulate: {step}")

        sim = run_sim(cfg, progress=tick)
        prog.update(task, description="write source")
        write_source(sim, out, fmt)
        prog.update(task, completed=1.0, description="simulated")
    n = sim.transactions.num_rows
    ill = int(pc.sum(sim.transactions.column("label")).as_py() or 0)
    console.print(
        f"simulated {n:,} transactions ({ill:,} illicit), {sim.accounts.num_rows:,} accounts, "
        f"{sim.parties.num_rows:,} parties in {time.perf_counter() - t0:.1f} s → {out}"
    )
    if dataset is not None:
        res = _run_ingest(out, dataset, "tianluo", None, None, None, None, None, vault)
        _print_result(res, dataset)


@app.command()
def info(dataset: Annotated[Path, typer.Argument(help="Dataset directory.")]) -> None:
    """Summarise a dataset: rows per table, time span, ingests, labels per typology."""
    ds = _open(dataset)
    con = ds.connect()
    console.print(f"[bold]dataset[/] {escape(str(ds.root))}")
    tab = Table()
    tab.add_column("table")
    tab.add_column("rows", justify="right")
    for t in ("transactions", "accounts", "parties", "quarantine"):
        tab.add_row(t, f"{con.execute(f'SELECT count(*) FROM {t}').fetchall()[0][0]:,}")
    console.print(tab)
    span = con.execute("SELECT min(ts)::VARCHAR, max(ts)::VARCHAR, sum(amount_cny) FROM transactions").fetchall()[0]
    if span[0]:
        console.print(f"from {span[0]} to {span[1]}, ¥{span[2]:,.2f}")
    typ = con.execute(
        "SELECT typology, count(*) FROM transactions WHERE label = 1 GROUP BY 1 ORDER BY 2 DESC"
    ).fetchall()
    if typ:
        console.print("labelled illicit: " + ", ".join(f"{t or '(no typology)'} {n:,}" for t, n in typ))
    for ing in ds.ingests:
        c = ing["counts"]
        console.print(f"ingest {ing['id']} ({ing['format']}): loaded {c['loaded']}, quarantined {c['quarantined']}")


@app.command()
def quality(
    dataset: Annotated[Path, typer.Argument(help="Dataset directory.")],
    ingest_id: Annotated[str | None, typer.Option("--ingest", help="Ingest id (default: latest).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Show the data-quality report of an ingest."""
    ds = _open(dataset)
    ings = [i for i in ds.ingests if ingest_id in (None, i["id"])]
    if not ings:
        _fail(f"no ingest {ingest_id!r} in {dataset}" if ingest_id else f"{dataset} has no ingests yet")
    rep = json.loads((ds.root / ings[-1]["report"]).read_text())
    if as_json:
        sys.stdout.write(json.dumps(rep, indent=1, ensure_ascii=False) + "\n")
    else:
        _print_quality(rep)


@app.command()
def quarantine(
    dataset: Annotated[Path, typer.Argument(help="Dataset directory.")],
    limit: Annotated[int, typer.Option(help="Rows to show.")] = 20,
) -> None:
    """List quarantined rows: file, line, field and reason."""
    ds = _open(dataset)
    con = ds.connect()
    rows = con.execute(
        f'SELECT file, source_line, "table", field, reason FROM quarantine '
        f"ORDER BY file, source_line LIMIT {int(limit)}"
    ).fetchall()
    tab = Table(title="Quarantine", title_justify="left")
    for col in ("file", "line", "table", "field", "reason"):
        tab.add_column(col)
    for r in rows:
        tab.add_row(Path(r[0]).name, str(r[1]), r[2], r[3] or "(row)", escape(r[4]))
    console.print(tab)


@app.command()
def recover(dataset: Annotated[Path, typer.Argument(help="Dataset directory.")]) -> None:
    """Remove what an interrupted write left behind (runs automatically before every write)."""
    from tianluo.store import Dataset, DatasetError

    try:
        ds = Dataset(dataset)
        with ds.writing():
            pass
    except DatasetError as exc:
        _fail(str(exc))
    console.print(f"{dataset}: consistent, {len(ds.ingests)} committed ingest(s)")


def _open(dataset: Path) -> Any:
    from tianluo.store import Dataset, DatasetError

    try:
        return Dataset(dataset)
    except DatasetError as exc:
        _fail(str(exc))


@app.command()
def detect(
    dataset: Annotated[Path, typer.Argument(help="Dataset directory.")],
    only: Annotated[
        str | None, typer.Option(help="Comma-separated detector kinds to run: rule, miner, model (default: all).")
    ] = None,
    thresholds: Annotated[Path | None, typer.Option(help="Rule thresholds file overriding the defaults.")] = None,
    workspace: Annotated[
        Path | None, typer.Option(help="Also bring the new alerts into this workspace's case store (cases, queue).")
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option(help="Miner profile: core-banking (default), amlworld, amlsim, or a profile YAML file."),
    ] = None,
    shadow_pack: Annotated[
        list[Path] | None,
        typer.Option(help="Also run this rule pack, thresholds file or miner profile file in shadow: alerts stored "
                          "with shadow = true, never queued (`tianluo alerts --shadow` lists them). Repeatable."),
    ] = None,
) -> None:
    """Run rules, typology miners and registered models; commit new alerts (re-runs add no duplicates)."""
    from tianluo.detect.profiles import ProfileError, load_profile
    from tianluo.detect.run import default_detectors, run_detection

    try:
        miner_profile = load_profile(profile or "core-banking")
    except ProfileError as exc:
        _fail(str(exc))
    ds = _open(dataset)
    detectors = default_detectors(ds, thresholds=thresholds, profile=miner_profile)
    if only:
        kinds = {k.strip() for k in only.split(",")}
        unknown = kinds - {"rule", "miner", "model"}
        if unknown:
            _fail(f"--only: unknown kind(s) {sorted(unknown)}; use rule, miner, model")
        detectors = [d for d in detectors if d.kind in kinds]
    if shadow_pack:
        from tianluo.detect.rules import RuleError
        from tianluo.detect.rules.backtest import shadow_detectors

        try:
            detectors += shadow_detectors(shadow_pack, [thresholds] if thresholds else [])
        except (RuleError, ProfileError) as exc:
            _fail(str(exc))
    with _progress() as prog:
        task = prog.add_task("detect", total=len(detectors), unit="detectors")

        def tick(name: str) -> None:
            prog.update(task, description=f"detect: {name}")
            prog.advance(task)

        res = run_detection(ds, detectors, progress=tick)
    tab = Table(title=f"Detection run {res.run_id}", title_justify="left")
    for col in ("detector", "new alerts", "already known", "seconds"):
        tab.add_column(col, justify="left" if col == "detector" else "right")
    # A detector may raise alerts under several names (a rule pack: one per rule).
    for name in sorted(set(res.new) | set(res.known)):
        tab.add_row(name, f"{res.new.get(name, 0):,}", f"{res.known.get(name, 0):,}", "")
    for name, secs in res.seconds.items():
        tab.add_row(f"[dim]{escape(name)} (run time)[/]", "", "", f"{secs:.2f}")
    console.print(tab)
    console.print(f"{res.total_new:,} new alert(s) committed to {escape(str(dataset))}")
    for d in detectors:
        if hasattr(d, "mode"):  # models say whether they scored causally or settled (T+1), and what waits
            waiting = f"; {d.pending:,} recent transaction(s) wait for a later run" if getattr(d, "pending", 0) else ""
            console.print(f"{escape(d.name)}: {escape(d.mode)}{waiting}")
    console.print(f"miner profile: {escape(miner_profile.tag)} ({escape(miner_profile.source)})")
    if workspace is not None:
        _sync_workspace(workspace, dataset)


def _sync_workspace(workspace: Path, dataset: Path) -> None:
    """Sync a dataset's alerts into the workspace's case store (suppressions apply)."""
    from tianluo.api.workspace import Workspace, WorkspaceError
    from tianluo.cases import SYSTEM, CaseError, open_store

    try:
        store = open_store(Workspace.open(workspace).database)
        names = [d["name"] for d in store.datasets() if Path(d["path"]).resolve() == dataset.resolve()]
        if not names:
            _fail(f"{dataset} is not registered in {workspace}; run `tianluo workspace add-dataset`")
        res = store.sync_alerts(names[0], actor=SYSTEM)
    except (WorkspaceError, CaseError) as exc:
        _fail(str(exc))
    console.print(f"case store: {escape(str(res))}")


@app.command()
def alerts(
    dataset: Annotated[Path, typer.Argument(help="Dataset directory.")],
    limit: Annotated[int, typer.Option(help="Rows to show.")] = 20,
    typology: Annotated[str | None, typer.Option(help="Only this typology.")] = None,
    detector: Annotated[str | None, typer.Option(help="Only this detector.")] = None,
    shadow: Annotated[bool, typer.Option("--shadow", help="List the alerts of rule versions run in shadow.")] = False,
) -> None:
    """List alerts, highest score first, with their reasons."""
    ds = _open(dataset)
    con = ds.connect()
    where, params = [], []
    if typology:
        where.append("typology = ?")
        params.append(typology)
    if detector:
        where.append("detector = ?")
        params.append(detector)
    sql = (
        "SELECT score, detector, typology, subject_id, len(txn_ids), amount_cny, reasons[1] FROM "
        + ("shadow_alerts" if shadow else "alerts")
        + (" WHERE " + " AND ".join(where) if where else "")
        + " ORDER BY score DESC, amount_cny DESC NULLS LAST, alert_id LIMIT ?"
    )
    rows = con.execute(sql, [*params, int(limit)]).fetchall()
    tab = Table(title="Shadow alerts (never queued)" if shadow else "Alerts", title_justify="left")
    for col in ("score", "detector", "typology", "subject", "txns", "¥", "first reason"):
        tab.add_column(col)
    for r in rows:
        tab.add_row(f"{r[0]:.2f}", r[1], r[2] or "", r[3], str(r[4]), f"{r[5] or 0:,.2f}", escape(r[6] or ""))
    console.print(tab)


@app.command("trace")
def trace_cmd(
    dataset: Annotated[Path, typer.Argument(help="Dataset directory.")],
    account: Annotated[str | None, typer.Option(help="Trace from this account's payments (or receipts).")] = None,
    txn: Annotated[str | None, typer.Option("--txn", help="Trace from this one transaction.")] = None,
    alert: Annotated[str | None, typer.Option(help="Trace from an alert's first account over the alert's "
                                                   "time span (an alert id, or `top` for the highest score).")
                     ] = None,
    direction: Annotated[str, typer.Option(help="forward (where it went) or backward (where it came from).")
                         ] = "forward",
    method: Annotated[str, typer.Option(help="Amount attribution: fifo or proportional.")] = "fifo",
    start_time: Annotated[str | None, typer.Option(help="Start transactions from (ISO time, UTC if naive).")] = None,
    end_time: Annotated[str | None, typer.Option(help="Start transactions until (ISO time).")] = None,
    max_hops: Annotated[int, typer.Option(min=1, max=20, help="Longest chain (the start counts as hop 1).")] = 6,
    hop_window: Annotated[str, typer.Option(help="Each hop within this long after the money arrived.")] = "72h",
    min_amount: Annotated[float, typer.Option(min=0, help="Smallest traced CNY a hop must carry.")] = 100.0,
    paths: Annotated[int, typer.Option(min=0, max=100, help="Ranked paths to print.")] = 10,
    csv_out: Annotated[Path | None, typer.Option("--csv", help="Write the traced transactions as CSV here.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the whole trace (graph + paths) here.")
                        ] = None,
) -> None:
    """Follow the money from an account or a transaction: ranked paths to sinks, amounts attributed.

    Paths end at cash-outs, cross-border payments, other banks and accounts with alerts
    (the dataset's alerts). See docs/trace.md for the attribution rules.
    """
    from tianluo.trace import TraceIndex, alerted_accounts, trace

    if sum(x is not None for x in (account, txn, alert)) != 1:
        _fail("give exactly one of --account, --txn or --alert")
    if direction not in ("forward", "backward") or method not in ("fifo", "proportional"):
        _fail("--direction is forward or backward; --method is fifo or proportional")
    ds = _open(dataset)
    if alert is not None:
        if not ds.files("alerts"):
            _fail(f"{dataset} has no alerts yet; run `tianluo detect {dataset}` first")
        q = ("SELECT accounts[1], ts_start, ts_end FROM alerts WHERE report_kind = 'suspicious' "
             "AND len(accounts) > 0 ORDER BY score DESC, alert_id LIMIT 1" if alert == "top" else
             "SELECT accounts[1], ts_start, ts_end FROM alerts WHERE alert_id = ? AND len(accounts) > 0")
        con = ds.connect()
        try:
            row = con.execute(q, [] if alert == "top" else [alert]).fetchone()
        finally:
            con.close()
        if row is None:
            _fail(f"no alert {alert!r} with an account in {dataset}")
        account = row[0]
        start_time = start_time or row[1].isoformat()
        end_time = end_time or row[2].isoformat()
    alerted = alerted_accounts(ds)
    try:
        result = trace(TraceIndex.build(ds, cache=True), account, txn, direction=direction,  # type: ignore[arg-type]
                       method=method, start_time=start_time, end_time=end_time,  # type: ignore[arg-type]
                       max_hops=max_hops, hop_window=hop_window, min_amount=min_amount, alerted=alerted,
                       max_paths=max(paths, 1))
    except (ValueError, KeyError) as exc:
        _fail(str(exc).strip("'\""))
    sm = result.summary
    sinks = ", ".join(f"{k} ¥{v:,.2f}" for k, v in (sm.get("sinks") or {}).items() if v)
    origin = escape(account or txn or "") + (f" (alert {escape(alert)}, {start_time} – {end_time})" if alert else "")
    limits = "".join(f"; {label} ¥{sm[k]:,.2f}" for k, label in (
        ("held", "still held"), ("origin", "at the origin"), ("max_hops", "stopped by the hop limit"),
        ("dropped", "below the limits"), ("unexplained", "of unexplained origin")) if isinstance(sm.get(k), float))
    console.print(f"[bold]{direction} trace[/] from {origin}: ¥{sm['start_amount']:,.2f} traced over "
                  f"{sm['transactions']} transactions and {sm['accounts']} accounts; ends: {sinks or 'none'}{limits}")
    tab = Table(title="Paths (most traced money first)", title_justify="left")
    for col in ("#", "¥ traced", "hops", "ends", "accounts"):
        tab.add_column(col)
    for i, p in enumerate(result.paths[:paths], 1):
        tab.add_row(str(i), f"{p.amount:,.2f}", str(len(p.txn_ids)), p.end, escape(" → ".join(p.accounts)))
    console.print(tab)
    if csv_out:
        result.edges_csv(csv_out)
        console.print(f"transactions written to {csv_out}")
    if json_out:
        json_out.write_text(result.to_json(), encoding="utf-8")
        console.print(f"trace written to {json_out}")


#: The graph features' look-ahead `tianluo train` uses unless told otherwise: batch monitoring is T+1.
DEFAULT_HORIZON = "1d"


def _metrics_table(title: str, m: dict[str, Any]) -> Table:
    tab = Table(title=title, title_justify="left")
    tab.add_column("metric")
    tab.add_column("value", justify="right")
    for key in ("rows", "positives", "alerts", "threshold", "precision", "recall", "f1", "pr_auc", "alerts_per_10k"):
        if key in m and m[key] is not None:
            v = m[key]
            tab.add_row(key, f"{v:,.4f}" if isinstance(v, float) else f"{v:,}")
    for k, v in (m.get("precision_at_k") or {}).items():
        tab.add_row(f"precision@{k}", "" if v is None else f"{v:.4f}")
    for t, v in sorted((m.get("recall_by_typology") or {}).items()):
        tab.add_row(f"recall {t}", f"{v['detected']}/{v['positives']} = {v['recall']:.3f}")
    return tab


@app.command()
def train(
    dataset: Annotated[Path, typer.Argument(help="Dataset with labelled transactions.")],
    name: Annotated[str, typer.Option(help="Model name in the dataset's registry.")] = "default",
    seed: Annotated[int, typer.Option(help="Random seed (members use seed, seed+1, …).")] = 0,
    graph_windows: Annotated[
        str, typer.Option(help="Windows of the graph features' account statistics, comma-separated (e.g. 1d,7d).")
    ] = "1d,7d,30d",
    horizon: Annotated[
        str,
        typer.Option(help="Settled (T+1) look-ahead of the graph features for batch monitoring, e.g. 1d; "
                          "`none` trains a causal model for real-time scoring."),
    ] = DEFAULT_HORIZON,
    bag: Annotated[int, typer.Option(min=1, help="LightGBM models averaged (different seeds).")] = 3,
    alerts_per_10k: Annotated[
        float | None,
        typer.Option(help="Set the threshold by alert volume (alerts per 10,000 transactions on validation) "
                          "instead of the smoothed F1 peak."),
    ] = None,
    miner_features: Annotated[
        str | None,
        typer.Option(help="Also feed the typology miners' instance counts per transaction under this miner "
                          "profile (core-banking, amlworld, amlsim or a file) to the model."),
    ] = None,
) -> None:
    """Train LightGBM on raw, history and graph features; choose, calibrate and threshold on validation; register it.

    The setting and tree count are chosen on the validation period from a small grid, `bag`
    models are averaged, scores are calibrated (Platt) on validation, and the test period is
    scored once; docs/models.md.
    """
    from tianluo.detect.graph_features import GraphFeatures
    from tianluo.detect.registry import train_on_dataset

    windows = [w.strip() for w in graph_windows.split(",") if w.strip()]
    h = None if horizon.strip().lower() in ("", "none", "0") else horizon.strip()
    try:
        _ = GraphFeatures(windows=windows).feature_names  # the extractor's own checks, before reading the data
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--graph-windows") from exc
    try:
        _ = GraphFeatures(horizon=h).feature_names
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--horizon") from exc
    if miner_features is not None:
        from tianluo.detect.miner_features import MinerFeatures

        try:
            MinerFeatures(miner_features, h)
        except ValueError as exc:  # a bad profile (ProfileError) says which key, and why
            raise typer.BadParameter(str(exc), param_hint="--miner-features") from exc
    if alerts_per_10k is not None and not alerts_per_10k > 0:
        raise typer.BadParameter("must be a positive number of alerts per 10,000 transactions",
                                 param_hint="--alerts-per-10k")
    _open(dataset)
    with _progress() as prog:
        prog.add_task("train", total=None, unit="")
        try:
            model, version = train_on_dataset(
                dataset, name, seed=seed, graph_windows=windows, horizon=h, bag=bag, alerts_per_10k=alerts_per_10k,
                miner_profile=miner_features,
            )
        except ValueError as exc:
            _fail(f"cannot train: {exc}")
    sel = model.metrics["selection"]
    mode = f"settled, horizon {h}" if h else "causal (real-time)"
    console.print(
        f"registered model [bold]{escape(name)}[/] version {version} "
        f"({len(model.feature_names)} features, {mode}; setting {sel['setting']} of {len(sel['grid'])}, "
        f"{sel['trees']} trees, {sel['bag']} averaged; threshold {model.threshold:.2f} by {sel['threshold_rule']})"
    )
    test = model.metrics.get("test") or {}
    console.print(_metrics_table("Test period (never used for fitting, choosing or the threshold)", test))
    drift = model.metrics.get("drift") or {}
    words = ", ".join(f"{k} {v:+.3f}" for k, v in drift.items() if v is not None)
    if words:
        console.print(f"validation → test drift: {words}")


@app.command()
def evaluate(
    dataset: Annotated[Path, typer.Argument(help="Dataset with labelled transactions.")],
    name: Annotated[str, typer.Option(help="Model name.")] = "default",
    version: Annotated[int | None, typer.Option(help="Model version (default: latest).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Evaluate a registered model: F1, PR-AUC with bootstrap intervals, recall per typology, drift warnings."""
    from tianluo.detect.registry import evaluate_on_dataset

    _open(dataset)
    try:
        figures = evaluate_on_dataset(dataset, name, version)
    except (KeyError, FileNotFoundError, ValueError, LookupError) as exc:
        _fail(f"cannot evaluate model {name!r}: {exc}")
    if as_json:
        sys.stdout.write(json.dumps(figures, indent=1, default=str) + "\n")
        return
    console.print(_metrics_table(f"Model {name}", figures))
    for key, (lo, hi) in ((k, v) for k, v in (figures.get("intervals") or {}).items() if v is not None):
        console.print(f"{key} 95% bootstrap interval: {lo:.3f} – {hi:.3f}")
    for warning in (figures.get("drift") or {}).get("warnings", []):
        console.print(f"[yellow]warning:[/] {escape(warning)}")


from tianluo.api.cli import app as workspace_app  # noqa: E402 - sub-apps register after the main commands
from tianluo.api.cli import serve  # noqa: E402
from tianluo.cases.cli import app as cases_app  # noqa: E402
from tianluo.detect.rules.cli import app as rules_app  # noqa: E402
from tianluo.report.cli import app as report_app  # noqa: E402

app.add_typer(workspace_app, name="workspace")
app.add_typer(report_app, name="report")
app.add_typer(cases_app, name="cases")
app.add_typer(rules_app, name="rules")
app.command("serve")(serve)

if __name__ == "__main__":  # pragma: no cover
    app()
