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
            if c in ("precision", "recall") and r["report_kind"] == "large_value":
                cells.append("report")  # a reporting item by amount, not a suspicion: nothing to be precise about
            elif c == "precision":
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
    profile: Annotated[
        str | None,
        typer.Option(help="Also (or, without PACK and --thresholds, only) compare the typology miners: this "
                          "profile (a built-in name or a profile file) against --against-profile."),
    ] = None,
    against_profile: Annotated[
        str | None, typer.Option(help="The current miner profile (default: core-banking, the default of detect).")
    ] = None,
    sample: Annotated[int, typer.Option(min=0, max=50, help="Alerts per detector and side in the sample.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Run a changed pack, thresholds file or miner profile over the dataset's history against the current version.

    Prints alerts added and removed per rule or miner, precision and recall on the labelled
    rows, alerts per 10,000 transactions, and a sample around the line for analysts. Writes
    nothing.
    """
    import polars as pl

    from tianluo.detect.miners import DEFAULT_PROFILE
    from tianluo.detect.profiles import ProfileError, load_profile
    from tianluo.detect.rules import RuleDetector, RuleError, load_rules
    from tianluo.detect.rules.backtest import RuleVersion, backtest, baseline_for

    with_rules = pack is not None or bool(thresholds) or profile is None
    data = _input(dataset)
    try:
        cand_version = RuleVersion.from_files([pack] if pack else [], thresholds or [])
        candidate: list[Any] = [cand_version.detector()] if with_rules else []
        names = [cand_version.describe()] if with_rules else []
        if profile is not None:
            candidate += load_profile(profile).build()
            names.append(f"miner profile {profile}")
        baseline: Any
        if against == ["stored"]:
            from tianluo.store import Dataset

            baseline, base_names = pl.from_arrow(Dataset(dataset).read("alerts")), [f"alerts stored in {dataset}"]
        else:
            baseline, base_names = [], []
            if with_rules and against:
                version = RuleVersion.from_files([Path(a) for a in against])
                baseline.append(version.detector())
                base_names.append(version.describe())
            elif with_rules:
                rules = baseline_for(candidate[0].rules) if cand_version.packs else load_rules()
                baseline.append(RuleDetector(rules))
                base_names.append("built-in rules at the default thresholds")
            if profile is not None:
                baseline += load_profile(against_profile or DEFAULT_PROFILE).build()
                base_names.append(f"miner profile {against_profile or DEFAULT_PROFILE}")
    except (RuleError, ProfileError) as exc:
        _fail(str(exc))
    result = backtest(data, candidate, baseline, baseline_name=" + ".join(base_names),
                      candidate_name=" + ".join(names), sample_size=sample)
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=1, ensure_ascii=False, default=str) + "\n")
        return
    _print_backtest(result)


def _print_backtest(result: Any) -> None:
    console.print(f"[bold]backtest[/] {escape(result.candidate)} against {escape(result.baseline)}: "
                  f"{result.transactions:,} transactions, {result.labelled:,} labelled, {result.illicit:,} illicit")
    tab = Table(title="Per rule or miner (before → after)", title_justify="left")
    for c in ("detector", "alerts", "added", "removed", "precision", "recall", "per 10k", "changed"):
        tab.add_column(c, justify="left" if c in ("detector", "changed") else "right")

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
        console.print(f"{unchanged} other detector(s) raise the same alerts in both versions")
    b, a = result.before, result.after
    console.print(
        f"suspicious alerts of the compared detectors (large-value reporting items left out): {b.alerts:,} → "
        f"{a.alerts:,}; precision {_pct(b.precision)} → {_pct(a.precision)} ({b.true_positives}/{b.judged} → "
        f"{a.true_positives}/{a.judged}); recall {_pct(b.recall)} → {_pct(a.recall)}; per 10,000 transactions "
        f"{b.alerts_per_10k:.2f} → {a.alerts_per_10k:.2f}. All alerts: {len(result.added):,} added, "
        f"{len(result.removed):,} removed"
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
