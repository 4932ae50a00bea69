"""The rule language: a YAML/JSON syntax tree of allow-listed functions, checked and typed before anything runs.

A rule is data. Every expression node is a mapping with one key, the name of a
function from `FUNCTIONS`, whose value holds its arguments (a list, a mapping of
argument names, or a single value). A bare string is a column of the leg view
(`LEG_COLUMNS`), a measure of the rule, or a `${parameter}` from the thresholds
file, and nothing else: there is no string that is parsed as code, no SQL and no
`eval`. Because every function has a signature, a result type and a cost, a rule
can be validated with the path of every error (`rules[3].when.args[1]: unknown
function 'sumx'; known: ...`), priced, hashed and explained before it runs.

Thresholds live in a parameters file (`packs/thresholds.yaml`); a rule names them
as `${cash_cny}`, a user overrides them with a file of their own, and the content
hash of a rule is taken after substitution, so changing a threshold changes the
version every alert carries.
"""

from __future__ import annotations

import hashlib
import json
import re
import zoneinfo
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

#: Bumped when the meaning of a function or column changes, so that every rule hash changes with it.
LANGUAGE_VERSION = "1"

PACKS_DIR = Path(__file__).parent / "packs"
THRESHOLDS_FILE = PACKS_DIR / "thresholds.yaml"

# What an expression depends on, as bits: nothing (a constant, or a `by` column, which is constant within a
# window), a leg's own values outside any aggregate, or a window's aggregates. `{and: [is_cny, total_ok]}` is
# LEG | WINDOW, which is why these are bits and not an order: such a mix is fine in an evidence filter of a day
# window and wrong in a `when`.
CONST, LEG, WINDOW = 0, 1, 2

_PARAM_RE = re.compile(r"^\$\{([a-z_][a-z0-9_]*)\}$")
_IDENT_RE = re.compile(r"^[a-z_][a-z0-9_]*$")
_DURATION_RE = re.compile(r"^([1-9][0-9]*)(m|h|d)$")
# Values in `is_in` / `starts_with` lists: codes, ids and words, never anything with brackets or quotes.
_VALUE_RE = re.compile(r"^[\w .:/@+\-]*$")
_MAX_DEPTH = 32


class RuleError(ValueError):
    """A rule or thresholds file that cannot be used; `errors` lists every problem with its path."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("invalid rules:\n" + "\n".join(errors))
        self.errors = errors


# --- the leg view ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """A column of the leg view that rules may read."""

    name: str
    type: str  # number, bool or string
    doc: str


#: What a rule sees: one row per transaction per own-customer side ("leg"). A transfer between two
#: customers of the institution is two legs (the payer's `out`, the payee's `in`).
LEG_COLUMNS: dict[str, Column] = {
    c.name: c
    for c in (
        Column("amount_cny", "number", "Amount in CNY (`transactions.amount_cny`)."),
        Column("amount", "number", "Amount in the transaction's own currency."),
        Column(
            "amount_usd",
            "number",
            "USD equivalent: `amount` for USD, else `amount_cny` / CNY-per-USD of the same FX-table day, to the cent.",
        ),
        Column("currency", "string", "ISO 4217 code of `amount`."),
        Column("is_cny", "bool", "True when the transaction is denominated in CNY."),
        Column("channel", "string", "transfer, cash, card, cheque, ach, wire, crypto, mobile, …"),
        Column("purpose", "string", "Business purpose where the source gives one (salary, merchant, …)."),
        Column("direction", "string", "`in` when the money arrives on the leg's account, `out` when it leaves."),
        Column("cross_border", "bool", "True when the two sides are in different jurisdictions."),
        Column("account", "string", "The customer account the leg belongs to."),
        Column("account_type", "string", "`accounts.type` of that account (personal, corporate, …)."),
        Column("party", "string", "Owner of the account (`accounts.party_id`), null when unknown."),
        Column(
            "party_kind",
            "string",
            "person / enterprise: `parties.kind`, else from account type personal / corporate, else null.",
        ),
        Column("region", "string", "`parties.region` of the owner."),
        Column("bank", "string", "Bank of the leg's account, as the transaction names it."),
        Column("counterparty", "string", "Account on the other side."),
        Column("counterparty_party", "string", "Owner of the other side's account, null when unknown."),
        Column("counterparty_kind", "string", "person / enterprise of the other side, as for `party_kind`."),
        Column("counterparty_region", "string", "`parties.region` of the other side (GB/T 2260 code or country)."),
        Column("counterparty_bank", "string", "Bank of the other side, as the transaction names it."),
        Column("counterparty_age", "number", "Age in years of the other side when it is a person with a birth year."),
        Column("hour", "number", "Hour of day 0-23 in the configured time zone (`${timezone}`)."),
        Column("weekday", "number", "Day of week 1 (Monday) - 7 (Sunday) in the configured time zone."),
        Column(
            "gap_days",
            "number",
            "Days since the previous leg of the same account; for its first leg in the data, days since the later "
            "of the data's first transaction and the account's opening (a lower bound of the true gap).",
        ),
        Column("account_age_days", "number", "Days since the account was opened (null when unknown)."),
        Column(
            "history_days",
            "number",
            "Days of history the data holds before this leg (since the data's first transaction): how far back "
            "new_counterparty and gap_days can see. In the first weeks of a history every counterparty is "
            "\"new\", so a rule built on first contacts can wait until this is long enough.",
        ),
        Column(
            "minutes_since_in",
            "number",
            "For an outflow: minutes since the latest inflow of the same account at or before it (null for inflows "
            "and when there was none).",
        ),
        Column(
            "last_in_amount_cny",
            "number",
            "For an outflow: CNY amount of that latest inflow (null for inflows), so a rule can tell an outflow that "
            "passes one receipt on (≈ the same amount) from ordinary spending.",
        ),
        Column(
            "new_counterparty",
            "bool",
            "True for the first transaction between the account and this counterparty in the data (either "
            "direction); like gap_days it only knows the history it is given.",
        ),
        Column(
            "returns_to_payer",
            "bool",
            "For an outflow: true when the counterparty paid this account earlier (a pay-back, e.g. 'interest').",
        ),
    )
}


# --- functions ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arg:
    """One argument of a function: its name, type and whether it must be a constant."""

    name: str
    type: str  # number, bool, string, list, any
    const: bool = False
    optional: bool = False


@dataclass(frozen=True)
class Function:
    """An allow-listed function: signature, result type, cost and what it means."""

    name: str
    args: tuple[Arg, ...]
    returns: str
    doc: str
    cost: int = 1
    variadic: bool = False  # the single Arg repeats, at least `min_args` times
    min_args: int = 0
    aggregate: bool = False
    reads_time: bool = False  # per-leg by nature (reads the leg's local time)


#: Cost of an aggregate by window kind, in "passes over the legs" (a group-by hash is 2, a sorted rolling
#: scan 3-4, a rolling distinct count runs a compiled kernel with a hash table of counterparties: 6).
AGGREGATE_COST: dict[str, dict[str, int]] = {
    "sum": {"txn": 1, "day": 2, "all": 2, "rolling": 3},
    "count": {"txn": 1, "day": 2, "all": 2, "rolling": 3},
    "mean": {"txn": 1, "day": 2, "all": 2, "rolling": 6},
    "max": {"txn": 1, "day": 2, "all": 2, "rolling": 4},
    "min": {"txn": 1, "day": 2, "all": 2, "rolling": 4},
    "distinct": {"txn": 1, "day": 3, "all": 3, "rolling": 6},
}
#: Fixed cost of a window: sorting, grouping, and for rolling windows the evidence and episode passes.
WINDOW_COST: dict[str, int] = {"txn": 0, "day": 2, "all": 2, "rolling": 6}

_NUM2 = (Arg("left", "number"), Arg("right", "number"))
_AGG_WHERE = Arg("where", "bool", optional=True)

FUNCTIONS: dict[str, Function] = {
    f.name: f
    for f in (
        Function("and", (Arg("value", "bool"),), "bool", "True when every argument is true.", variadic=True,
                 min_args=2),
        Function("or", (Arg("value", "bool"),), "bool", "True when any argument is true.", variadic=True, min_args=2),
        Function("not", (Arg("value", "bool"),), "bool", "Negation."),
        Function("gt", _NUM2, "bool", "left > right."),
        Function("ge", _NUM2, "bool", "left ≥ right (PBOC thresholds are inclusive: use ge)."),
        Function("lt", _NUM2, "bool", "left < right."),
        Function("le", _NUM2, "bool", "left ≤ right."),
        Function("eq", (Arg("left", "any"), Arg("right", "any")), "bool",
                 "left = right, for two numbers or two booleans (strings: use is_in)."),
        Function("ne", (Arg("left", "any"), Arg("right", "any")), "bool", "left ≠ right (numbers or booleans)."),
        Function("between", (Arg("value", "number"), Arg("low", "number"), Arg("high", "number")), "bool",
                 "low ≤ value < high (half-open, so bands such as [90 %, 100 %) of a threshold tile)."),
        Function("add", (Arg("value", "number"),), "number", "Sum of the arguments.", variadic=True, min_args=2),
        Function("sub", _NUM2, "number", "left − right."),
        Function("mul", (Arg("value", "number"),), "number", "Product of the arguments.", variadic=True, min_args=2),
        Function("div", _NUM2, "number",
                 "Ratio left / right; null when right is 0, so a rule never fires on an empty denominator."),
        Function("abs", (Arg("value", "number"),), "number", "Absolute value."),
        Function("coalesce", (Arg("value", "number"), Arg("default", "number")), "number",
                 "value, or default where value is null (e.g. an empty max)."),
        Function("is_null", (Arg("value", "any"),), "bool", "True where the value is missing."),
        Function("is_in", (Arg("value", "string"), Arg("values", "list", const=True)), "bool",
                 "The string is one of the listed values (a literal list or a ${list} parameter)."),
        Function("starts_with", (Arg("value", "string"), Arg("prefixes", "list", const=True)), "bool",
                 "The string starts with one of the prefixes (region codes: '53' is all of Yunnan)."),
        Function("round_amount", (Arg("value", "number"), Arg("unit", "number", const=True)), "bool",
                 "value is a positive whole multiple of unit (to the fen): 50,000 is round to 10,000."),
        Function("time_of_day", (Arg("from", "number", const=True), Arg("to", "number", const=True)), "bool",
                 "The leg's local hour is in [from, to), wrapping past midnight (22 → 6 is night).",
                 reads_time=True),
        Function("sum", (Arg("of", "number"), _AGG_WHERE), "number",
                 "Sum of `of` over the window's legs where `where` holds (0 when none), to the fen.", aggregate=True),
        Function("count", (_AGG_WHERE,), "number", "Number of the window's legs where `where` holds.",
                 aggregate=True),
        Function("mean", (Arg("of", "number"), _AGG_WHERE), "number",
                 "Mean of `of` over the window's legs where `where` holds (null when none).", aggregate=True),
        Function("max", (Arg("of", "number"), _AGG_WHERE), "number",
                 "Largest `of` over the window's legs where `where` holds (null when none).", aggregate=True),
        Function("min", (Arg("of", "number"), _AGG_WHERE), "number",
                 "Smallest `of` over the window's legs where `where` holds (null when none).", aggregate=True),
        Function("distinct", (Arg("of", "any"), _AGG_WHERE), "number",
                 "Number of distinct non-null values of `of` (e.g. counterparty) over the window's legs where "
                 "`where` holds.", aggregate=True),
    )
}
_ARG_NAMES = {a.name for f in FUNCTIONS.values() for a in f.args}
assert not _ARG_NAMES & set(FUNCTIONS), "an argument name may not also be a function name"


# --- typed syntax tree ----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Node:
    """A checked expression: where it is in the file, its type and its level."""

    path: str
    type: str
    level: int  # CONST, or LEG | WINDOW bits


@dataclass(frozen=True, kw_only=True)
class Const(Node):
    """A literal, or a parameter substituted from the thresholds (`param` names it)."""

    value: Any
    param: str | None = None


@dataclass(frozen=True, kw_only=True)
class ColumnRef(Node):
    """A column of the leg view."""

    name: str


@dataclass(frozen=True, kw_only=True)
class MeasureRef(Node):
    """A named measure defined earlier in the same rule."""

    name: str


@dataclass(frozen=True, kw_only=True)
class Call(Node):
    """A function applied to arguments in signature order (None for an omitted optional argument)."""

    fn: str
    args: tuple[Node | None, ...]


# --- windows and templates ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """Which legs a rule's aggregates see together.

    `txn`: each leg alone; `day`: the calendar day in `${timezone}`; `all`: everything given;
    `rolling`: the trailing `size` ending at each leg, (t − size, t].
    """

    kind: str
    size: timedelta | None = None
    text: str = ""  # the size as written ("7d"), which is also its Polars duration string


def parse_duration(text: str) -> timedelta | None:
    """'7d', '24h', '30m' → timedelta; None when the text is not such a duration."""
    m = _DURATION_RE.match(text)
    if not m:
        return None
    n, unit = int(m.group(1)), m.group(2)
    return {"m": timedelta(minutes=n), "h": timedelta(hours=n), "d": timedelta(days=n)}[unit]


@dataclass(frozen=True)
class Placeholder:
    """`{name}` or `{name:format}` in a reason template."""

    name: str
    fmt: str  # "", cny, cny0, usd, usd0, int, pct, num, or a word map "in=deposits,out=withdrawals"


#: Number formats a reason template may use (no free-form format specs, so nothing can reach attributes).
TEMPLATE_FORMATS = ("cny", "cny0", "usd", "usd0", "int", "pct", "num")
#: Values every alert can put in its reason, besides the rule's measures, `by` columns and parameters.
TEMPLATE_BUILTINS = ("subject", "subject_type", "day", "window", "txn_count", "amount_cny", "ts_start", "ts_end")
_PLACEHOLDER_RE = re.compile(r"\{([^{}]*)\}")
_WORD_MAP_RE = re.compile(r"^[\w\- ]+=[^=,{}]*(,[\w\- ]+=[^=,{}]*)*$")


def parse_template(text: str) -> tuple[list[str | Placeholder], list[str]]:
    """Split a reason template into literal text and placeholders; also return syntax problems.

    `{{` and `}}` are literal braces. Placeholder names must be identifiers and formats must be one of
    `TEMPLATE_FORMATS` or a word map, so `{0.__class__}` or `{x!r}` are rejected, not interpreted.
    """
    parts: list[str | Placeholder] = []
    problems: list[str] = []
    escaped = text.replace("{{", "\x00").replace("}}", "\x01")
    pos = 0
    for m in _PLACEHOLDER_RE.finditer(escaped):
        parts.append(escaped[pos : m.start()])
        pos = m.end()
        inner = m.group(1)
        name, _, fmt = inner.partition(":")
        if not _IDENT_RE.match(name):
            problems.append(f"'{{{inner}}}' is not a placeholder; write {{name}} or {{name:format}}")
            continue
        if fmt and fmt not in TEMPLATE_FORMATS and not _WORD_MAP_RE.match(fmt):
            problems.append(
                f"'{{{inner}}}' has unknown format {fmt!r}; use one of {', '.join(TEMPLATE_FORMATS)} "
                "or a word map such as in=deposits,out=withdrawals"
            )
            continue
        parts.append(Placeholder(name, fmt))
    parts.append(escaped[pos:])
    out: list[str | Placeholder] = []
    for p in parts:
        if isinstance(p, str):
            if "{" in p or "}" in p:
                problems.append("unbalanced brace; write {{ or }} for a literal brace")
            p = p.replace("\x00", "{").replace("\x01", "}")
            if p:
                out.append(p)
        else:
            out.append(p)
    return out, problems


# --- thresholds -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Parameter:
    """A named threshold: value, type, what it means and where the number comes from."""

    name: str
    value: Any
    type: str  # number, bool, string, duration, list
    doc: str = ""
    source: str = ""


def _value_type(value: Any) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "duration" if parse_duration(value) else "string"
    if isinstance(value, list) and all(isinstance(v, str) and _VALUE_RE.match(v) for v in value):
        return "list"
    return None


class Thresholds(Mapping[str, Parameter]):
    """The parameters rules refer to as `${name}`: the packaged defaults plus any user overrides.

    Overrides may only change known parameters, and only to a value of the same type, so a typo
    in an override file is an error rather than a silently ignored setting.
    """

    def __init__(self, params: dict[str, Parameter]) -> None:
        self._params = dict(params)

    def __getitem__(self, name: str) -> Parameter:
        return self._params[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._params)

    def __len__(self) -> int:
        return len(self._params)

    def value(self, name: str) -> Any:
        """The value of a parameter."""
        return self._params[name].value

    @classmethod
    def load(cls, overrides: Iterable[str | Path | Mapping[str, Any]] | str | Path | Mapping[str, Any] | None = None,
             *, defaults: str | Path = THRESHOLDS_FILE) -> Thresholds:
        """The default thresholds file with each override applied in order (files or mappings).

        A file (YAML or JSON) holds `parameters: {name: value}` (or `name: {value: ...}`); a mapping
        may be either that or the bare `{name: value}`. Raises RuleError naming file and parameter.
        """
        base, errors = _read_parameters(Path(defaults), defaults_file=True)
        params: dict[str, Parameter] = dict(base)
        if overrides is None:
            items: list[Any] = []
        elif isinstance(overrides, str | Path | Mapping):
            items = [overrides]
        else:
            items = list(overrides)
        for item in items:
            if isinstance(item, Mapping):
                where = "thresholds override"
                body = item.get("parameters", item) if isinstance(item.get("parameters"), Mapping) else item
                new, errs = _parse_parameters(body, where, defaults_file=False)
            else:
                where = str(item)
                new, errs = _read_parameters(Path(item), defaults_file=False)
            errors += errs
            for name, p in new.items():
                old = params.get(name)
                if old is None:
                    errors.append(f"{where}: parameters.{name}: unknown parameter; known: {', '.join(sorted(params))}")
                elif old.type != p.type:
                    errors.append(
                        f"{where}: parameters.{name}: expected a {old.type} like {old.value!r}, got {p.value!r}"
                    )
                else:
                    params[name] = Parameter(name, p.value, old.type, old.doc, f"{where} (was {old.value!r})")
        tz = params.get("timezone")
        if tz is not None and tz.value not in zoneinfo.available_timezones():
            errors.append(f"{tz.source or defaults}: parameters.timezone: {tz.value!r} is not an IANA time zone")
        if errors:
            raise RuleError(errors)
        return cls(params)


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader (plain data only, no Python tags) that also rejects duplicate keys.

    A key written twice is silently shadowed by plain YAML, which is how a threshold changed in one
    place keeps its old value in effect; here it is an error with its line.
    """


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while reading a mapping", node.start_mark, f"found duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def load_yaml(text: str) -> Any:
    """Parse YAML or JSON text as plain data: no tags, no duplicate keys."""
    return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: plain data only


def _read_parameters(path: Path, *, defaults_file: bool) -> tuple[dict[str, Parameter], list[str]]:
    try:
        doc = load_yaml(path.read_text(encoding="utf-8"))
    except OSError as exc:
        return {}, [f"{path}: cannot read thresholds file ({exc.strerror})"]
    except yaml.YAMLError as exc:
        return {}, [f"{path}: not valid YAML/JSON ({exc})"]
    if not isinstance(doc, Mapping) or not isinstance(doc.get("parameters"), Mapping):
        return {}, [f"{path}: a thresholds file is a mapping with a 'parameters' mapping"]
    return _parse_parameters(doc["parameters"], str(path), defaults_file=defaults_file)


def _parse_parameters(
    body: Mapping[str, Any], where: str, *, defaults_file: bool
) -> tuple[dict[str, Parameter], list[str]]:
    out: dict[str, Parameter] = {}
    errors: list[str] = []
    for name, spec in body.items():
        path = f"{where}: parameters.{name}"
        if not isinstance(name, str) or not _IDENT_RE.match(name):
            errors.append(f"{path}: a parameter name is lower_case_with_underscores")
            continue
        doc = source = ""
        value = spec
        if isinstance(spec, Mapping):
            unknown = set(spec) - {"value", "doc", "source"}
            if "value" not in spec or unknown:
                errors.append(f"{path}: write `{name}: VALUE` or `{name}: {{value: VALUE, doc: ..., source: ...}}`")
                continue
            value, doc, source = spec["value"], str(spec.get("doc", "")), str(spec.get("source", ""))
        elif defaults_file:
            errors.append(f"{path}: a packaged parameter needs value, doc and source")
            continue
        kind = _value_type(value)
        if kind is None:
            errors.append(f"{path}: {value!r} is not a number, boolean, string, duration or list of plain strings")
            continue
        out[name] = Parameter(name, value, kind, doc, source)
    return out, errors


# --- rules ----------------------------------------------------------------------------------------------

SEVERITIES = ("low", "medium", "high", "critical")
REPORT_KINDS = ("large_value", "suspicious")
SUBJECTS = ("party", "account")
_CRCD = ("0501", "0502", "0503", "0504")
_TOSC_RE = re.compile(r"^[0-9]{4}$")
_GOAML_RE = re.compile(r"^[A-Z]{4,6}$")

_RULE_KEYS_REQUIRED = (
    "id", "name", "name_zh", "description", "version", "severity", "score", "typology", "report_kind",
    "stcr", "subject", "window", "when", "reason",
)
_RULE_KEYS_OPTIONAL = ("crcd", "tosc", "goaml_indicator", "by", "legs", "measures", "evidence", "reason_zh")


@dataclass(frozen=True)
class Rule:
    """A checked rule: metadata and codes, the typed expressions, and its content hash.

    `version` is the author's explicit version; `content_hash` covers the whole definition with
    every parameter substituted, so `version_tag` (what alerts carry) changes on any edit,
    including a threshold change in an override file.
    """

    id: str
    name: str
    name_zh: str
    description: str
    version: str
    severity: str
    score: float
    typology: str
    report_kind: str
    stcr: str
    crcd: str | None
    tosc: tuple[str, ...]
    goaml_indicator: str | None
    subject: str
    window: Window
    by: tuple[str, ...]
    legs: Node | None
    measures: tuple[tuple[str, Node], ...]
    when: Node
    evidence: Node | None
    reason: tuple[str | Placeholder, ...]
    reason_zh: tuple[str | Placeholder, ...]
    parameters: dict[str, Any] = field(default_factory=dict)
    content_hash: str = ""
    cost: int = 0
    source: str = ""

    @property
    def version_tag(self) -> str:
        """`<version>+<first 12 hex of the content hash>`: what `alerts.detector_version` holds."""
        return f"{self.version}+{self.content_hash[:12]}"


class _Checker:
    """Turns one raw rule (parsed YAML) into a typed `Rule`, collecting every error with its path."""

    def __init__(self, thresholds: Thresholds, path: str) -> None:
        self.t = thresholds
        self.path = path
        self.errors: list[str] = []
        self.used: dict[str, Any] = {}
        self.measures: dict[str, Node] = {}
        self.broken: set[str] = set()  # measures with errors: references to them add no second error
        self.window_kind = "txn"
        self.by: tuple[str, ...] = ()
        self.cost = 0

    def err(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}")

    # -- parameters and plain values --

    def param(self, text: str, path: str) -> Parameter | None:
        m = _PARAM_RE.match(text)
        if not m:
            return None
        name = m.group(1)
        if name not in self.t:
            self.err(path, f"unknown parameter ${{{name}}}; known: {', '.join(sorted(self.t))}")
            return None
        p = self.t[name]
        self.used[name] = p.value
        return p

    def plain(self, raw: Any, path: str) -> Any:
        """A raw value with `${param}` substituted (used for window sizes and similar settings)."""
        if isinstance(raw, str) and raw.startswith("${"):
            p = self.param(raw, path)
            if p is None and not _PARAM_RE.match(raw):
                self.err(path, f"{raw!r} is not a ${{parameter}} reference")
            return None if p is None else p.value
        return raw

    # -- expressions --

    def expr(self, raw: Any, path: str, depth: int = 0) -> Node | None:
        if depth > _MAX_DEPTH:
            self.err(path, f"expression nested deeper than {_MAX_DEPTH} levels")
            return None
        if isinstance(raw, bool):
            return Const(path=path, type="bool", level=CONST, value=raw)
        if isinstance(raw, int | float):
            return Const(path=path, type="number", level=CONST, value=float(raw))
        if isinstance(raw, str):
            return self.name(raw, path)
        if isinstance(raw, list):
            if not all(isinstance(v, str) for v in raw):
                self.err(path, "a list literal holds strings only (values for is_in / starts_with); quote codes and "
                         "account numbers, e.g. ['0501', '6222020000000000001']")
                return None
            bad = [v for v in raw if not _VALUE_RE.match(v)]
            if bad:
                self.err(path, f"list value {bad[0]!r} has characters a code or id never has")
                return None
            return Const(path=path, type="list", level=CONST, value=tuple(raw))
        if isinstance(raw, Mapping):
            return self.call(raw, path, depth)
        self.err(path, f"{raw!r} is not an expression")
        return None

    def name(self, text: str, path: str) -> Node | None:
        if text.startswith("${") or _PARAM_RE.match(text):
            p = self.param(text, path)
            if p is None:
                if not _PARAM_RE.match(text):
                    self.err(path, f"{text!r} is not a ${{parameter}} reference")
                return None
            if p.type in ("string", "duration"):
                self.err(path, f"parameter ${{{p.name}}} is a {p.type}, not a value an expression can use")
                return None
            value = tuple(p.value) if p.type == "list" else (float(p.value) if p.type == "number" else p.value)
            return Const(path=path, type=p.type, level=CONST, value=value, param=p.name)
        if text in self.broken:
            return None
        if text in self.measures:
            m = self.measures[text]
            level = LEG if self.window_kind == "txn" else WINDOW
            return MeasureRef(path=path, type=m.type, level=level, name=text)
        if text in LEG_COLUMNS:
            # A `by` column has one value per window, so a window-level condition may read it.
            level = CONST if text in self.by else LEG
            return ColumnRef(path=path, type=LEG_COLUMNS[text].type, level=level, name=text)
        if _IDENT_RE.match(text):
            known = ", ".join(sorted(LEG_COLUMNS))
            measures = f"; measures so far: {', '.join(self.measures)}" if self.measures else ""
            self.err(path, f"unknown column {text!r}; known columns: {known}{measures}")
        else:
            self.err(
                path,
                f"{text!r} is not a column, measure or ${{parameter}}; expressions are written as function "
                "nodes (e.g. {gt: [amount_cny, 50000]}), never as code or SQL strings",
            )
        return None

    def call(self, raw: Mapping[str, Any], path: str, depth: int) -> Node | None:
        if len(raw) != 1:
            keys = ", ".join(map(str, raw))
            self.err(path, f"a function node has exactly one key, the function name; got {{{keys}}}")
            return None
        ((fname, body),) = raw.items()
        fn = FUNCTIONS.get(fname) if isinstance(fname, str) else None
        if fn is None:
            self.err(path, f"unknown function {fname!r}; known: {', '.join(sorted(FUNCTIONS))}")
            return None
        positional = self._arguments(fn, body, path)
        if positional is None:
            return None
        args: list[Node | None] = []
        ok = True
        for spec, (raw_arg, apath) in positional:
            if raw_arg is _MISSING:
                args.append(None)
                continue
            node = self.expr(raw_arg, apath, depth + 1)
            if node is None:
                ok = False
                args.append(None)
                continue
            if not self._fits(fn, spec, node, apath):
                ok = False
            args.append(node)
        if not ok:
            return None
        return self._typed_call(fn, tuple(args), path)

    def _arguments(self, fn: Function, body: Any, path: str) -> list[tuple[Arg, tuple[Any, str]]] | None:
        """Match the raw argument value(s) to the signature: list, mapping of names, or one bare value."""
        names = [a.name for a in fn.args]
        if fn.variadic:
            if not isinstance(body, list) or len(body) < fn.min_args:
                self.err(path, f"{fn.name} takes a list of at least {fn.min_args} arguments")
                return None
            return [(fn.args[0], (v, f"{path}.args[{i}]")) for i, v in enumerate(body)]
        if body is None:
            body = []
        if isinstance(body, Mapping) and not (len(body) == 1 and next(iter(body)) in FUNCTIONS):
            unknown = [str(k) for k in body if k not in names]
            if unknown:
                self.err(path, f"{fn.name} has no argument {', '.join(map(repr, unknown))}; "
                         f"signature: {_signature(fn)}")
                return None
            given = {k: (v, f"{path}.args.{k}") for k, v in body.items()}
        elif isinstance(body, list):
            if len(body) > len(names):
                self.err(path, f"{fn.name} takes at most {len(names)} arguments ({', '.join(names)}), got {len(body)}")
                return None
            given = {names[i]: (v, f"{path}.args[{i}]") for i, v in enumerate(body)}
        else:
            given = {names[0]: (body, f"{path}.args[0]")}
        out = []
        for a in fn.args:
            if a.name in given:
                out.append((a, given[a.name]))
            elif a.optional:
                out.append((a, (_MISSING, "")))
            else:
                self.err(path, f"{fn.name} needs argument {a.name!r} ({a.type}); signature: {_signature(fn)}")
                return None
        return out

    def _fits(self, fn: Function, spec: Arg, node: Node, path: str) -> bool:
        if spec.type != "any" and node.type != spec.type:
            what = _describe(node)
            self.err(path, f"{fn.name} expects {spec.name!r} of type {spec.type}, got {node.type} {what}")
            return False
        if spec.const and not isinstance(node, Const):
            self.err(path, f"{fn.name} needs {spec.name!r} to be a literal or ${{parameter}}, not {_describe(node)}")
            return False
        if spec.type == "any" and node.type == "list":
            self.err(path, f"{fn.name} cannot take a list for {spec.name!r}")
            return False
        return True

    def _typed_call(self, fn: Function, args: tuple[Node | None, ...], path: str) -> Node | None:
        present = [a for a in args if a is not None]
        if fn.aggregate:
            for a in present:
                if a.level & WINDOW:
                    self.err(a.path, f"{fn.name} aggregates per-transaction values; {_describe(a)} is per window")
                    return None
            self.cost += AGGREGATE_COST[fn.name][self.window_kind]
            level = LEG if self.window_kind == "txn" else WINDOW
            return Call(path=path, type=fn.returns, level=level, fn=fn.name, args=args)
        self.cost += fn.cost
        if fn.name in ("eq", "ne"):
            left, right = args
            assert left is not None and right is not None
            if left.type != right.type or left.type not in ("number", "bool"):
                self.err(path, f"{fn.name} compares two numbers or two booleans, got {left.type} and {right.type}"
                         + ("; for strings use is_in" if "string" in (left.type, right.type) else ""))
                return None
        if fn.name == "round_amount" and args[1] is not None and not args[1].value > 0:
            self.err(args[1].path, "round_amount needs a unit > 0")
            return None
        if fn.name == "time_of_day":
            for a in present:
                if not 0 <= a.value <= 24:
                    self.err(a.path, f"an hour is between 0 and 24, got {a.value:g}")
                    return None
        level = LEG if fn.reads_time else CONST
        for a in present:
            level |= a.level
        return Call(path=path, type=fn.returns, level=level, fn=fn.name, args=args)

    # -- whole rule --

    def check(self, raw: Any) -> Rule | None:
        p = self.path
        if not isinstance(raw, Mapping):
            self.err(p, "a rule is a mapping of fields")
            return None
        missing = [k for k in _RULE_KEYS_REQUIRED if k not in raw]
        unknown = [k for k in raw if k not in _RULE_KEYS_REQUIRED + _RULE_KEYS_OPTIONAL]
        for k in missing:
            self.err(p, f"missing field {k!r}")
        for k in unknown:
            self.err(f"{p}.{k}", f"unknown field; a rule has: {', '.join(_RULE_KEYS_REQUIRED + _RULE_KEYS_OPTIONAL)}")
        if missing:
            return None
        meta = self._metadata(raw)
        window = self._window(raw["window"], f"{p}.window")
        if window is not None:
            self.window_kind = window.kind
            self.cost += WINDOW_COST[window.kind]
        by = self._by(raw.get("by", []), f"{p}.by")
        self.by = by
        legs = self._bool(raw.get("legs"), f"{p}.legs", WINDOW, "the legs filter reads each transaction alone")
        measures = self._measures(raw.get("measures") or {}, f"{p}.measures")
        per_leg = LEG if self.window_kind != "txn" else CONST
        when = self._bool(raw["when"], f"{p}.when", per_leg,
                          "wrap per-transaction values in an aggregate such as sum(...) or max(...)")
        evidence = self._bool(raw.get("evidence"), f"{p}.evidence", WINDOW if self.window_kind == "rolling" else CONST,
                              "a rolling window's evidence filter reads per-transaction values only")
        reason = self._template(raw["reason"], f"{p}.reason", by)
        reason_zh = self._template(raw.get("reason_zh", ""), f"{p}.reason_zh", by)
        budget = self.t.value("max_rule_cost") if "max_rule_cost" in self.t else None
        if budget is not None and self.cost > budget:
            self.err(p, f"rule costs {self.cost} (passes over the legs), more than max_rule_cost {budget}")
        if self.errors or window is None or when is None or meta is None:
            return None
        resolved = _substitute(raw, self.t)
        digest = hashlib.sha256(
            json.dumps({"language": LANGUAGE_VERSION, "rule": resolved, "template_parameters": self.used},
                       sort_keys=True, ensure_ascii=False, default=str).encode()
        ).hexdigest()
        return Rule(
            **meta, subject=raw["subject"], window=window, by=by, legs=legs, measures=tuple(measures.items()),
            when=when, evidence=evidence, reason=tuple(reason), reason_zh=tuple(reason_zh),
            parameters=dict(sorted(self.used.items())), content_hash=digest, cost=self.cost, source=p,
        )

    def _metadata(self, raw: Mapping[str, Any]) -> dict[str, Any] | None:
        p = self.path
        ok = True

        def need(cond: bool, key: str, message: str) -> None:
            nonlocal ok
            if not cond:
                ok = False
                self.err(f"{p}.{key}", message)

        rid = raw["id"]
        need(isinstance(rid, str) and bool(_IDENT_RE.match(rid)), "id", "an id is lower_case_with_underscores")
        for key in ("name", "name_zh", "description", "typology", "stcr"):
            need(isinstance(raw[key], str) and bool(raw[key].strip()), key, "must be a non-empty string")
        need(isinstance(raw["version"], str | int) and not isinstance(raw["version"], bool)
             and str(raw["version"]).strip() != "", "version", "an explicit version: a number or a string like '2'")
        need(raw["severity"] in SEVERITIES, "severity", f"one of {', '.join(SEVERITIES)}")
        score = raw["score"]
        need(isinstance(score, int | float) and not isinstance(score, bool) and 0 <= score <= 1, "score",
             "a number in [0, 1]")
        need(raw["report_kind"] in REPORT_KINDS, "report_kind", f"one of {', '.join(REPORT_KINDS)}")
        need(raw["subject"] in SUBJECTS, "subject", f"one of {', '.join(SUBJECTS)}")
        crcd = raw.get("crcd")
        if raw["report_kind"] == "large_value":
            need(crcd in _CRCD, "crcd", f"a large_value rule needs a CRCD code, one of {', '.join(_CRCD)}")
        else:
            need(crcd is None, "crcd", "only large_value rules carry a CRCD code")
        tosc = raw.get("tosc") or []
        tosc = [tosc] if isinstance(tosc, str) else tosc
        need(isinstance(tosc, list) and all(isinstance(t, str) and _TOSC_RE.match(t) for t in tosc), "tosc",
             "TOSC codes are 4-digit strings (quote them in YAML: '0606')")
        goaml = raw.get("goaml_indicator")
        need(goaml is None or (isinstance(goaml, str) and bool(_GOAML_RE.match(goaml))), "goaml_indicator",
             "a goAML indicator code such as SPOS")
        if not ok:
            return None
        return {
            "id": rid, "name": raw["name"].strip(), "name_zh": raw["name_zh"].strip(),
            "description": " ".join(raw["description"].split()), "version": str(raw["version"]).strip(),
            "severity": raw["severity"], "score": float(score), "typology": raw["typology"],
            "report_kind": raw["report_kind"], "stcr": raw["stcr"], "crcd": crcd, "tosc": tuple(tosc),
            "goaml_indicator": goaml,
        }

    def _window(self, raw: Any, path: str) -> Window | None:
        if raw in ("txn", "day", "all"):
            return Window(raw)
        if isinstance(raw, Mapping) and set(raw) == {"rolling"}:
            value = self.plain(raw["rolling"], f"{path}.rolling")
            size = parse_duration(value) if isinstance(value, str) else None
            if size is None:
                if value is not None:
                    self.err(f"{path}.rolling", f"{value!r} is not a duration such as 30m, 24h or 7d")
                return None
            return Window("rolling", size, value)
        self.err(path, "window is txn, day, all or {rolling: DURATION} (e.g. {rolling: 7d})")
        return None

    def _by(self, raw: Any, path: str) -> tuple[str, ...]:
        if not isinstance(raw, list):
            self.err(path, "by is a list of columns")
            return ()
        out = []
        for i, c in enumerate(raw):
            col = LEG_COLUMNS.get(c) if isinstance(c, str) else None
            if col is None or col.type == "number":
                self.err(f"{path}[{i}]", f"{c!r} is not a string or boolean column of the leg view")
            else:
                out.append(c)
        return tuple(out)

    def _bool(self, raw: Any, path: str, forbidden: int, hint: str) -> Node | None:
        if raw is None:
            return None
        node = self.expr(raw, path)
        if node is None:
            return None
        if node.type != "bool":
            self.err(path, f"must be a condition (bool), got {node.type} {_describe(node)}")
            return None
        if node.level & forbidden:
            what = "per transaction" if forbidden & LEG else "per window"
            self.err(path, f"reads values {what}, which is not allowed here; {hint}")
            return None
        return node

    def _measures(self, raw: Any, path: str) -> dict[str, Node]:
        if not isinstance(raw, Mapping):
            self.err(path, "measures is a mapping of name: expression")
            return {}
        for name, body in raw.items():
            mpath = f"{path}.{name}"
            if not isinstance(name, str) or not _IDENT_RE.match(name):
                self.err(mpath, "a measure name is lower_case_with_underscores")
                continue
            if name in LEG_COLUMNS or name in TEMPLATE_BUILTINS:
                self.err(mpath, f"measure name {name!r} is already a column or built-in; choose another")
                continue
            node = self.expr(body, mpath)
            if node is not None and node.type not in ("number", "bool"):
                self.err(mpath, f"a measure is a number or a condition, got {node.type}")
                node = None
            if node is not None and self.window_kind != "txn" and node.level & LEG:
                self.err(mpath, "is per transaction; wrap it in an aggregate such as sum(...) or max(...)")
                node = None
            if node is None:
                self.broken.add(name)
            else:
                self.measures[name] = node
        return dict(self.measures)

    def _template(self, raw: Any, path: str, by: tuple[str, ...]) -> list[str | Placeholder]:
        if not isinstance(raw, str):
            self.err(path, "a reason template is a string")
            return []
        parts, problems = parse_template(raw)
        for problem in problems:
            self.err(path, problem)
        known = set(self.measures) | self.broken | set(TEMPLATE_BUILTINS) | set(by)
        for part in parts:
            if not isinstance(part, Placeholder):
                continue
            if part.name in known:
                continue
            if part.name in self.t:
                self.used[part.name] = self.t.value(part.name)
                continue
            self.err(path, f"placeholder {{{part.name}}} is not a measure, a 'by' column, a built-in "
                     f"({', '.join(TEMPLATE_BUILTINS)}) or a parameter")
        return parts


class _Missing:
    """Marker for an optional argument that was not given."""


_MISSING = _Missing()


def _signature(fn: Function) -> str:
    if fn.variadic:
        return f"{fn.name}: [{fn.args[0].type}, ...]"
    return f"{fn.name}: [" + ", ".join(f"{a.name}: {a.type}" + ("?" if a.optional else "") for a in fn.args) + "]"


def _describe(node: Node) -> str:
    if isinstance(node, ColumnRef):
        return f"column {node.name!r}"
    if isinstance(node, MeasureRef):
        return f"measure {node.name!r}"
    if isinstance(node, Const):
        return f"${{{node.param}}}" if node.param else f"literal {node.value!r}"
    assert isinstance(node, Call)
    return f"{node.fn}(...)"


def _substitute(raw: Any, t: Thresholds) -> Any:
    """The raw rule with every `${param}` replaced by its value: what the content hash covers."""
    if isinstance(raw, str):
        m = _PARAM_RE.match(raw)
        return t.value(m.group(1)) if m and m.group(1) in t else raw
    if isinstance(raw, list):
        return [_substitute(v, t) for v in raw]
    if isinstance(raw, Mapping):
        return {str(k): _substitute(v, t) for k, v in raw.items()}
    return raw


def parse_rules(doc: Any, source: str, thresholds: Thresholds) -> tuple[list[Rule], list[str]]:
    """Check a parsed rule file (`{pack, description, rules: [...]}`); return the rules and every error.

    Errors are prefixed with `source` and carry the path inside the file, e.g.
    `packs/x.yaml: rules[3].when.args[1]: unknown function 'sumx'; known: ...`.
    """
    if not isinstance(doc, Mapping) or not isinstance(doc.get("rules"), list):
        return [], [f"{source}: a rule file is a mapping with a 'rules' list"]
    extra = set(doc) - {"pack", "description", "rules"}
    errors = [f"{source}: {k}: unknown top-level field; a rule file has pack, description, rules" for k in extra]
    rules: list[Rule] = []
    seen: dict[str, str] = {}
    for i, raw in enumerate(doc["rules"]):
        checker = _Checker(thresholds, f"rules[{i}]")
        rule = checker.check(raw)
        errors += [f"{source}: {e}" for e in checker.errors]
        if rule is None:
            continue
        if rule.id in seen:
            errors.append(f"{source}: rules[{i}].id: duplicate rule id {rule.id!r} (first at {seen[rule.id]})")
            continue
        seen[rule.id] = f"rules[{i}]"
        rules.append(_with_source(rule, f"{source}#{rule.id}"))
    return rules, errors


def _with_source(rule: Rule, source: str) -> Rule:
    return replace(rule, source=source)


def read_rule_file(path: str | Path) -> tuple[Any, list[str]]:
    """Parse a YAML or JSON rule file safely (no Python tags); return the document or the error."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        return None, [f"{p}: cannot read rule file ({exc.strerror})"]
    try:
        return load_yaml(text), []
    except yaml.YAMLError as exc:
        return None, [f"{p}: not valid YAML/JSON (only plain data is accepted, no tags): {exc}"]
