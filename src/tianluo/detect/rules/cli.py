"""`tianluo rules …`: list the rules (with their figures on a dataset), validate a rule file, backtest a change.

The commands only read: a backtest or a measured listing runs the rules in memory over the
dataset's transactions and writes nothing to it. Running a candidate for real, beside the live
version, is `tianluo detect DATASET --shadow-pack FILE`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

app = typer.Typer(help="Rule packs: list, validate and backtest.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)

ThresholdsOpt = Annotated[
    list[Path] | None,
    typer.Option("--thresholds", help="Thresholds file overriding the defaults (repeat to apply several in order)."),
]


def _fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


def _input(dataset: Path) -> Any:
    """The dataset's tables for a read-only run (the same reader a detection run uses)."""
    from tianluo.detect.run import load_input
    from tianluo.store import Dataset, DatasetError

    try:
        return load_input(Dataset(dataset))
    except DatasetError as exc:
        _fail(str(exc))


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


@app.command("list")
def rules_list(
    thresholds: ThresholdsOpt = None,
    dataset: Annotated[
        Path | None,
        typer.Option("--dataset", "-d", help="Also run each rule over this dataset (nothing is written) and show "
                                             "its alerts, precision on labelled rows and alerts per 10,000."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON.")] = False,
) -> None:
    """List the built-in rules with their codes and versions (and, with --dataset, how each one performs)."""
    from tianluo.detect.rules import RuleDetector, RuleError, Thresholds, load_rules, rule_table

    try:
        t = Thresholds.load(list(thresholds or []))
        rules = load_rules(thresholds=t)
    except RuleError as exc:
        _fail(str(exc))
    rows = rule_table(rules).to_dicts()
    cols = ["id", "name_zh", "report_kind", "typology", "crcd", "tosc", "goaml_indicator", "stcr", "version"]
    if dataset is not None:
        from tianluo.detect.rules.backtest import rule_figures

        figures = {f.rule: f.figures for f in rule_figures(RuleDetector(rules, thresholds=t), _input(dataset))}
        for r in rows:
            f = figures[r["id"]]
            r.update(alerts=f.alerts, true_positives=f.true_positives, judged=f.judged, precision=f.precision,
                     recall=f.recall, alerts_per_10k=f.alerts_per_10k)
        cols = ["id", "name_zh", "report_kind", "typology", "version", "alerts", "precision", "recall",
                "alerts_per_10k"]
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=1, ensure_ascii=False, default=str) + "\n")
        return
    tab = Table(title="Rules" + (f" on {escape(str(dataset))}" if dataset else ""), title_justify="left")
    for c in cols:
        tab.add_column(c, justify="right" if c in ("alerts", "precision", "recall", "alerts_per_10k") else "left")
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c)
            if c == "precision":
                cells.append(f"{_pct(v)} ({r['true_positives']}/{r['judged']})" if v is not None else "n/a")
            elif c == "recall":
                cells.append(_pct(v))
            elif c == "alerts_per_10k":
                cells.append(f"{v:.2f}")
            else:
                cells.append(escape(str(v)) if v is not None else "")
        tab.add_row(*cells)
    console.print(tab)


@app.command("validate")
def rules_validate(
    file: Annotated[Path, typer.Argument(help="Rule file (YAML) to check.")],
    thresholds: Annotated[Path | None, typer.Option(help="Thresholds file the rules refer to.")] = None,
) -> None:
    """Check a rule file without running it; every problem is printed with its path in the tree."""
    from tianluo.detect.rules import validate_rule_file

    problems = validate_rule_file(file, thresholds)
    for p in problems:
        console.print(escape(p))
    if problems:
        raise typer.Exit(1)
    console.print(f"{escape(str(file))}: valid")


@app.command("backtest")
def rules_backtest(
    dataset: Annotated[Path, typer.Option("--dataset", "-d", help="Dataset whose history to run over.")],
    pack: Annotated[
        Path | None,
        typer.Argument(help="Changed rule pack, or a thresholds file (default: the built-in packs).",
                       show_default=False),
    ] = None,
    thresholds: ThresholdsOpt = None,
    against: Annotated[
        list[str] | None,
        typer.Option("--against", help="The current version: rule pack(s) and/or thresholds file(s), or `stored` "
                                        "for the dataset's committed alerts (default: the built-in rules the "
                                        "candidate replaces, at the default thresholds)."),
    ] = None,
    sample: Annotated[int, typer.Option(min=0, max=50, help="Alerts per rule and side in the sample.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Run a changed pack or thresholds file over the dataset's history and compare it with the current version.

    Prints alerts added and removed per rule, precision and recall on the labelled rows, alerts
    per 10,000 transactions, and a sample around the line for analysts. Writes nothing.
    """
    import polars as pl

    from tianluo.detect.rules import RuleDetector, RuleError, load_rules
    from tianluo.detect.rules.backtest import RuleVersion, backtest, baseline_for

    data = _input(dataset)
    try:
        cand_version = RuleVersion.from_files([pack] if pack else [], thresholds or [])
        candidate = cand_version.detector()
        baseline: Any
        if against == ["stored"]:
            from tianluo.store import Dataset

            stored = pl.from_arrow(Dataset(dataset).read("alerts"))
            baseline, base_name = stored, f"alerts stored in {dataset}"
        elif against:
            version = RuleVersion.from_files([Path(a) for a in against])
            baseline, base_name = version.detector(), version.describe()
        elif cand_version.packs:
            baseline = RuleDetector(baseline_for(candidate.rules))
            base_name = "built-in rules at the default thresholds"
        else:
            baseline = RuleDetector(load_rules())
            base_name = "built-in rules at the default thresholds"
    except RuleError as exc:
        _fail(str(exc))
    result = backtest(data, candidate, baseline, baseline_name=base_name, candidate_name=cand_version.describe(),
                      sample_size=sample)
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=1, ensure_ascii=False, default=str) + "\n")
        return
    _print_backtest(result)


def _print_backtest(result: Any) -> None:
    console.print(f"[bold]backtest[/] {escape(result.candidate)} against {escape(result.baseline)}: "
                  f"{result.transactions:,} transactions, {result.labelled:,} labelled, {result.illicit:,} illicit")
    tab = Table(title="Per rule (before → after)", title_justify="left")
    for c in ("rule", "alerts", "added", "removed", "precision", "recall", "per 10k", "changed"):
        tab.add_column(c, justify="left" if c in ("rule", "changed") else "right")

    def pair(b: Any, a: Any, fmt: Any) -> str:
        return f"{fmt(b) if b is not None else '-'} → {fmt(a) if a is not None else '-'}"

    for r in result.rules:
        b, a = r.before, r.after
        if b is not None and a is not None and not r.added and not r.removed and not r.parameters:
            continue
        tab.add_row(
            escape(r.rule),
            pair(b and b.alerts, a and a.alerts, lambda v: f"{v:,}"),
            f"{r.added:,} ({r.added_illicit} illicit)",
            f"{r.removed:,} ({r.removed_illicit} illicit)",
            pair(b and b.precision, a and a.precision, _pct) if (b or a) else "",
            pair(b and b.recall, a and a.recall, _pct) if (b or a) else "",
            pair(b and b.alerts_per_10k, a and a.alerts_per_10k, lambda v: f"{v:.2f}"),
            escape(", ".join(f"{k} {x!r} → {y!r}" for k, (x, y) in r.parameters.items())),
        )
    console.print(tab)
    unchanged = sum(1 for r in result.rules if r.before and r.after and not (r.added or r.removed or r.parameters))
    if unchanged:
        console.print(f"{unchanged} other rule(s) raise the same alerts in both versions")
    b, a = result.before, result.after
    console.print(
        f"all compared rules: alerts {b.alerts:,} → {a.alerts:,} ({len(result.added):,} added, "
        f"{len(result.removed):,} removed); precision {_pct(b.precision)} → {_pct(a.precision)} "
        f"({b.true_positives}/{b.judged} → {a.true_positives}/{a.judged}); recall {_pct(b.recall)} → "
        f"{_pct(a.recall)}; alerts per 10,000 transactions {b.alerts_per_10k:.2f} → {a.alerts_per_10k:.2f}"
    )
    if result.sample:
        console.print("[bold]Around the line[/] (for analysts to read before switching):")
        for s in result.sample:
            measures = ", ".join(f"{k}={v:,.4g}" if isinstance(v, float) else f"{k}={v}"
                                 for k, v in s["measures"].items())
            illicit = {True: "illicit", False: "licit", None: "unlabelled"}[s["illicit"]]
            console.print(
                f"  {escape(s['rule'])} · {s['side']} · {escape(s['subject'])} · {s['ts_start']:%Y-%m-%d %H:%M} · "
                f"{s['txns']} txns · ¥{s['amount_cny'] or 0:,.2f} · {illicit}"
                + (f" · {escape(measures)}" if measures else "")
            )
            console.print(f"      {escape(s['reason'])}", style="dim")
