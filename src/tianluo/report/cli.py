"""`tianluo report …`: write CAMLMAC and goAML reports from a dataset's alerts, and validate report files.

A Typer sub-app (`app`) that the main CLI mounts as `report`; it also runs on its own as
`python -m tianluo.report.cli`. The commands call the same functions as the API and tests.
"""

from __future__ import annotations

import uuid
from datetime import date
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tianluo.report.camlmac import large_value_reports, suspicious_report
from tianluo.report.codes import china_today
from tianluo.report.data import alerts_by_id, large_value_alerts, load_report_data
from tianluo.report.goaml import goaml_report
from tianluo.report.model import PII_FIELDS, Institution, ReportData, ReportError, ReportFile, Reveal
from tianluo.report.model import SuspiciousReportInput as _Input
from tianluo.report.package import DailySequence, package_zips, renumber
from tianluo.report.validate import validate_report, write_report
from tianluo.store import Dataset, DatasetError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Regulator-format reports (CAMLMAC HVTR/BSTR, goAML STR), validated against their XSDs.",
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)

DatasetArg = Annotated[Path, typer.Argument(help="Dataset directory (run `tianluo detect` on it first).")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Folder to write the report files into.")]
InstitutionOpt = Annotated[
    Path | None, typer.Option("--institution", help="TOML file with the institution's [institution] settings.")
]
RicdOpt = Annotated[str | None, typer.Option(help="14-character reporting-institution code (RICD).")]
NameOpt = Annotated[str | None, typer.Option("--name", help="Institution name.")]
BankOpt = Annotated[str | None, typer.Option("--bank", help="How the dataset names this institution (accounts.bank).")]
BranchOpt = Annotated[str | None, typer.Option("--branch", help="Reporting branch code (FINC / RPNC).")]
RegionOpt = Annotated[str | None, typer.Option("--region", help="6-digit GB/T 2260 code of the reporting branch.")]
ReporterOpt = Annotated[str | None, typer.Option("--reporter", help="Name of the person filing (RPNM).")]
DateOpt = Annotated[
    str | None, typer.Option("--report-date", help="Date in the file name, YYYY-MM-DD (default: today in China).")
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Write files even if they fail validation.")]
VaultOpt = Annotated[
    Path | None,
    typer.Option("--vault", help="Token vault to reveal personal data from (audited); without it tokens are written."),
]
ActorOpt = Annotated[str | None, typer.Option("--actor", help="Who reveals (recorded in the vault's audit log).")]
ReasonOpt = Annotated[str | None, typer.Option("--reason", help="Why (recorded in the vault's audit log).")]
AlertOpt = Annotated[list[str], typer.Option("--alert", "-a", help="Alert id (repeat for several).")]
NarrativeOpt = Annotated[
    str | None, typer.Option("--narrative", help="可疑交易特征描述: what happened and why it is suspicious.")
]
NarrativeFileOpt = Annotated[
    Path | None, typer.Option("--narrative-file", help="Read the narrative from this UTF-8 file.")
]
AnalysisOpt = Annotated[str | None, typer.Option("--analysis", help="疑点分析 (default: the alerts' reasons).")]
ActionsOpt = Annotated[str, typer.Option("--actions", help="Measures taken (已采取措施).")]
ReportIdOpt = Annotated[
    str | None, typer.Option("--report-id", help="Your reference for the report (default: generated).")
]

def _fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


def _institution(
    path: Path | None, ricd: str | None, name: str | None, bank: str | None, branch: str | None,
    region: str | None, reporter: str | None, rentity_id: str | None = None,
) -> Institution:
    overrides = {"ricd": ricd, "name": name, "bank_id": bank, "branch_code": branch, "region": region,
                 "reporter_name": reporter, "goaml_rentity_id": rentity_id}
    if path is not None:
        return Institution.from_toml(path, **overrides)
    if ricd is None:
        _fail("give --ricd (14-character reporting-institution code) or --institution FILE.toml")
    return Institution(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]


def _day(text: str | None, option: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        _fail(f"{option} {text!r} is not a date (YYYY-MM-DD)")


def _open(dataset: Path) -> Dataset:
    try:
        return Dataset(dataset)
    except DatasetError as exc:
        _fail(str(exc))


def _reveal(vault: Path | None, actor: str | None, reason: str | None, data: ReportData) -> Reveal | None:
    """Reveal every token of the report's parties from the vault in one audited call per field."""
    if vault is None:
        return None
    if not actor or not reason:
        _fail("--vault needs --actor and --reason: every reveal is audited")
    from tianluo.protect import Vault, VaultError, load_keyring

    values: dict[tuple[str, str], str] = {}
    try:
        with Vault(vault, load_keyring()) as v:
            for field in PII_FIELDS:
                tokens = sorted({t for t in data.parties[field].to_list() if t})
                if tokens:
                    clear = v.reveal(field, tokens, reason=reason, actor=actor).to_pylist()
                    values.update({(field, t): c for t, c in zip(tokens, clear, strict=True)})
    except VaultError as exc:
        _fail(f"cannot reveal from {vault}: {exc}")
    return lambda field, token: values[(field, token)]


def _refuse_invalid(files: list[ReportFile], force: bool) -> None:
    """Stop before any sequence number is taken when a file failed validation (unless --force)."""
    if force:
        return
    for f in files:
        if not f.valid:
            shown = "\n  ".join(f.errors[:10])
            _fail(f"{f.file_name} failed validation; nothing was written (--force writes it):\n  {shown}", code=1)


def _write(files: list[ReportFile], out: Path, force: bool) -> None:
    table = Table(title=f"reports in {out}")
    for col in ("file", "format", "bytes", "valid", "personal data"):
        table.add_column(col)
    invalid = False
    for f in files:
        try:
            write_report(f, out, force=force)
        except ReportError as exc:
            err.print(f"[bold red]not written:[/] {escape(str(exc))}")
            invalid = True
            continue
        table.add_row(f.file_name, f.format, f"{len(f.content):,}", "yes" if f.valid else "[red]NO[/]",
                      "[yellow]tokens (review only)[/]" if f.pseudonymised else "revealed")
    console.print(table)
    if any(f.pseudonymised for f in files):
        err.print("[yellow]note:[/] personal data are pseudonymised tokens (no --vault); do not file these reports")
    if invalid:
        raise typer.Exit(1)


@app.command("large-value")
def large_value(
    dataset: DatasetArg,
    day: Annotated[str, typer.Option("--date", help="China calendar day of the transactions, YYYY-MM-DD.")],
    out: OutOpt,
    institution: InstitutionOpt = None,
    ricd: RicdOpt = None,
    name: NameOpt = None,
    bank: BankOpt = None,
    branch: BranchOpt = None,
    region: RegionOpt = None,
    reporter: ReporterOpt = None,
    report_date: DateOpt = None,
    zip_: Annotated[bool, typer.Option("--zip/--no-zip", help="Package into ZIPs of ≤ 5 MB (as filed).")] = True,
    force: ForceOpt = False,
    vault: VaultOpt = None,
    actor: ActorOpt = None,
    reason: ReasonOpt = None,
) -> None:
    """HVTR large-value report of one day's `large_value` alerts (CRCD 0501–0504)."""
    inst = _institution(institution, ricd, name, bank, branch, region, reporter)
    the_day = _day(day, "--date")
    assert the_day is not None
    ds = _open(dataset)
    try:
        alerts = large_value_alerts(ds, the_day)
        if not alerts:
            _fail(f"no large-value alerts on {the_day} in {ds.root}; run `tianluo detect {dataset}` first?", code=1)
        data = load_report_data(ds, alerts)
        rdate = _day(report_date, "--report-date") or china_today()
        files = large_value_reports(inst, data, report_date=rdate, reveal=_reveal(vault, actor, reason, data))
        _refuse_invalid(files, force)
        # Sequence numbers are taken once the files exist and passed, so a failed run uses none.
        seq = DailySequence(out)
        files = renumber(files, seq.take(inst.ricd, rdate, len(files)))
        if zip_:
            files = package_zips(files, first_seq=seq.take(inst.ricd, rdate, 1, ext="ZIP"))
    except ReportError as exc:
        _fail(str(exc))
    console.print(f"{len(alerts)} large-value alerts of {the_day}, {data.transactions.height} transactions")
    _write(files, out, force)


def _suspicious_input(
    ds: Dataset, alerts: list[str], narrative: str | None, narrative_file: Path | None, analysis: str | None,
    actions: str, report_id: str | None, tosc: list[str] | None, report_date: date | None,
) -> _Input:
    if narrative_file is not None:
        try:
            narrative = narrative_file.read_text(encoding="utf-8")
        except OSError as exc:
            _fail(f"cannot read {narrative_file}: {exc}")
    if not narrative or not narrative.strip():
        _fail("give the narrative (--narrative TEXT or --narrative-file FILE): a report says why it is suspicious")
    if not alerts:
        _fail("give at least one --alert ID (see `tianluo alerts DATASET`)")
    data = load_report_data(ds, alerts_by_id(ds, alerts))
    return _Input(
        report_id=report_id or f"TL-{uuid.uuid4().hex[:12].upper()}", data=data, narrative=narrative,
        analysis=analysis, actions=actions, tosc=tosc or None, report_date=report_date,
    )


@app.command()
def suspicious(
    dataset: DatasetArg,
    out: OutOpt,
    alert: AlertOpt = [],  # noqa: B006 - Typer reads the default, never mutates it
    narrative: NarrativeOpt = None,
    narrative_file: NarrativeFileOpt = None,
    analysis: AnalysisOpt = None,
    actions: ActionsOpt = "",
    report_id: ReportIdOpt = None,
    tosc: Annotated[list[str], typer.Option("--tosc", help="Suspected-crime code (default: the alerts').")] = [],  # noqa: B006
    institution: InstitutionOpt = None,
    ricd: RicdOpt = None,
    name: NameOpt = None,
    bank: BankOpt = None,
    branch: BranchOpt = None,
    region: RegionOpt = None,
    reporter: ReporterOpt = None,
    report_date: DateOpt = None,
    zip_: Annotated[bool, typer.Option("--zip/--no-zip", help="Also package the XML in a ZIP (as filed).")] = True,
    force: ForceOpt = False,
    vault: VaultOpt = None,
    actor: ActorOpt = None,
    reason: ReasonOpt = None,
) -> None:
    """BSTR suspicious transaction report of the given alerts, with the investigator's narrative."""
    inst = _institution(institution, ricd, name, bank, branch, region, reporter)
    ds = _open(dataset)
    rdate = _day(report_date, "--report-date") or china_today()
    try:
        inp = _suspicious_input(ds, alert, narrative, narrative_file, analysis, actions, report_id, tosc, rdate)
        f = suspicious_report(inst, inp, reveal=_reveal(vault, actor, reason, inp.data))
        _refuse_invalid([f], force)
        seq = DailySequence(out)
        f = renumber([f], seq.take(inst.ricd, rdate))[0]
        files = package_zips([f], first_seq=seq.take(inst.ricd, rdate, ext="ZIP")) if zip_ else [f]
    except ReportError as exc:
        _fail(str(exc))
    subjects = ", ".join(f.info["subjects"])
    console.print(f"report {inp.report_id}: {f.info['transactions']} transactions, subjects {subjects}")
    _write(files, out, force)


@app.command()
def goaml(
    dataset: DatasetArg,
    out: OutOpt,
    alert: AlertOpt = [],  # noqa: B006
    narrative: NarrativeOpt = None,
    narrative_file: NarrativeFileOpt = None,
    analysis: AnalysisOpt = None,
    actions: ActionsOpt = "",
    report_id: ReportIdOpt = None,
    rentity_id: Annotated[str | None, typer.Option("--rentity-id", help="FIU-assigned reporting-entity id.")] = None,
    institution: InstitutionOpt = None,
    ricd: RicdOpt = None,
    name: NameOpt = None,
    bank: BankOpt = None,
    branch: BranchOpt = None,
    region: RegionOpt = None,
    reporter: ReporterOpt = None,
    force: ForceOpt = False,
    vault: VaultOpt = None,
    actor: ActorOpt = None,
    reason: ReasonOpt = None,
) -> None:
    """goAML STR of the given alerts (a subset of the UNODC structure; see docs/reports.md)."""
    inst = _institution(institution, ricd, name, bank, branch, region, reporter, rentity_id)
    ds = _open(dataset)
    try:
        inp = _suspicious_input(ds, alert, narrative, narrative_file, analysis, actions, report_id, None, None)
        f = goaml_report(inst, inp, reveal=_reveal(vault, actor, reason, inp.data))
    except ReportError as exc:
        _fail(str(exc))
    console.print(f"report {inp.report_id}: {f.info['transactions']} transactions")
    _write([f], out, force)


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Report files: CAMLMAC XML or ZIP, goAML XML.")],
    fmt: Annotated[str, typer.Option("--format", help="auto, camlmac-hvtr, camlmac-bstr or goaml.")] = "auto",
) -> None:
    """Validate report files against Tianluo's XSDs and CAMLMAC's cross-field rules; exit 1 if any fails."""
    bad = 0
    for path in files:
        try:
            res = validate_report(path, fmt)
        except ReportError as exc:
            _fail(str(exc))
        if res.valid:
            console.print(f"[green]valid[/]   {escape(str(path))} ({res.format})")
            continue
        bad += 1
        console.print(f"[red]INVALID[/] {escape(str(path))} ({res.format})")
        for e in res.errors:
            console.print(f"  {escape(e)}")
    if bad:
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
