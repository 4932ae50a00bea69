"""Miner profiles as data: a YAML file of typology-miner parameters per kind of source, checked before anything runs.

The miners' defaults suit Chinese core-banking data (intraday stamps, CNY, schemes of
days). Other sources need other windows and tolerances: AMLSim stamps whole days and
spreads a fan over months; AMLworld stamps minutes and changes currency at every hop.
A profile names those choices once, as data a rules owner can read, diff and version,
instead of code. Every alert a profiled miner raises carries the profile's name,
version and content hash in `detector_version` (`2+amlworld@1.3f9a2b1c4d5e`), so an
alert always says which parameters found it.

The parameters a profile may set, and their types, are read from the miners' own
`__init__` signatures (declared once): a new miner parameter is settable from a profile
without touching this module. A file with an unknown key, a wrong type or an impossible
window is refused with the key path (`miners.cycle.window: must be a positive duration,
got '-1d'`), every problem at once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import inspect
import re
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from tianluo.detect.base import Detector

#: Keys a profile file may have at its top level.
TOP_KEYS = ("profile", "version", "description", "common", "miners")

_DURATION_RE = re.compile(r"^\s*([+-]?\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}

#: Upper bounds that are not spelled min_X / max_X: (the smaller one, the larger one).
_ORDERED_PAIRS = (
    ("min_senders", "max_side"),
    ("min_receivers", "max_side"),
    ("quick_min_fan", "min_fan"),
    ("quick_window", "window"),
    ("min_chains", "max_side"),
)


class ProfileError(ValueError):
    """A profile that cannot be used; `errors` lists every problem with its key path."""

    def __init__(self, source: str, errors: list[str]) -> None:
        super().__init__(f"invalid miner profile {source}:\n" + "\n".join(f"  {e}" for e in errors))
        self.source = source
        self.errors = errors


@dataclass(frozen=True)
class Profile:
    """A validated profile: which miners run, with which parameters (Python values), and where it came from."""

    name: str
    version: str
    description: str
    miners: dict[str, dict[str, Any]]
    source: str
    digest: str = field(repr=False)

    @property
    def tag(self) -> str:
        """`name@version.hash12`: what every alert of the profile's miners records after its miner version."""
        return f"{self.name[:30]}@{self.version[:8]}.{self.digest[:12]}"

    def build(self) -> list[Detector]:
        """The profile's miners, in the order of `MINERS`, each versioned `<miner version>+<tag>`."""
        from tianluo.detect.miners import miner_classes

        out: list[Detector] = []
        for key, cls in miner_classes().items():
            if key in self.miners:
                miner = cls(**self.miners[key])
                miner.version = f"{cls.version}+{self.tag}"
                out.append(miner)
        return out


def builtin_names() -> list[str]:
    """Names of the profiles shipped with Tianluo (files `detect/profiles/<name>.yaml`)."""
    folder = resources.files("tianluo.detect") / "profiles"
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_profile(spec: str | Path) -> Profile:
    """A built-in profile by name (`amlworld`) or a profile file by path; raises ProfileError with every problem.

    A name that is neither a built-in profile nor an existing file is refused with the
    list of built-in names, so a typo never silently runs the defaults.
    """
    text = str(spec)
    if isinstance(spec, str) and text in builtin_names():
        source = f"built-in profile {text!r}"
        raw = (resources.files("tianluo.detect") / "profiles" / f"{text}.yaml").read_bytes()
    else:
        path = Path(spec)
        if not path.is_file():
            raise ProfileError(
                text, [f"no such profile: not a built-in one ({', '.join(builtin_names())}) nor a readable file"]
            )
        source = str(path)
        raw = path.read_bytes()
    return parse_profile(raw, source)


def parse_profile(raw: bytes, source: str = "<profile>") -> Profile:
    """Validate profile YAML bytes into a `Profile`; the content hash is of the bytes as given."""
    try:
        doc = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ProfileError(source, [f"not valid YAML: {exc}"]) from None
    errors: list[str] = []
    if not isinstance(doc, dict):
        raise ProfileError(source, ["a profile is a mapping with keys " + ", ".join(TOP_KEYS)])
    for key in doc:
        if key not in TOP_KEYS:
            errors.append(f"{key}: unknown key (a profile has {', '.join(TOP_KEYS)})")
    name = doc.get("profile")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        errors.append(f"profile: must be a name of letters, digits, '-', '_' or '.', got {name!r}")
    version = doc.get("version")
    if isinstance(version, bool) or not isinstance(version, int | str) or str(version).strip() == "":
        errors.append(f"version: must be a number or a string, got {version!r}")
    description = doc.get("description", "")
    if not isinstance(description, str):
        errors.append(f"description: must be text, got {type(description).__name__}")
    specs = _specs()
    common = doc.get("common") or {}
    if not isinstance(common, dict):
        errors.append(f"common: must be a mapping of parameter: value, got {type(common).__name__}")
        common = {}
    every_param = {p for params in specs.values() for p in params}
    common_values: dict[str, Any] = {}
    for key, value in common.items():
        if key not in every_param:
            errors.append(f"common.{key}: unknown parameter; no miner takes it")
            continue
        kind = next(params[key] for params in specs.values() if key in params)
        got, problem = _convert(value, kind)
        if problem:
            errors.append(f"common.{key}: {problem}")
        else:
            common_values[key] = got
    miners = doc.get("miners")
    resolved: dict[str, dict[str, Any]] = {}
    if not isinstance(miners, dict) or not miners:
        errors.append("miners: must be a mapping of miner name: parameters, naming at least one of " + ", ".join(specs))
        miners = {}
    for key, params in miners.items():
        where = f"miners.{key}"
        if key not in specs:
            errors.append(f"{where}: unknown miner; expected one of {', '.join(specs)}")
            continue
        if params is None:
            params = {}
        if not isinstance(params, dict):
            errors.append(f"{where}: must be a mapping of parameter: value, got {type(params).__name__}")
            continue
        kwargs = {k: v for k, v in common_values.items() if k in specs[key]}
        for param, value in params.items():
            if param not in specs[key]:
                errors.append(f"{where}.{param}: unknown parameter; {key} takes {', '.join(specs[key])}")
                continue
            got, problem = _convert(value, specs[key][param])
            if problem:
                errors.append(f"{where}.{param}: {problem}")
            else:
                kwargs[param] = got
        errors.extend(_check_order(where, key, kwargs))
        resolved[key] = kwargs
    if not errors:
        # The miners' own checks (min_hops >= 2 and the like) are the last word; name the key path.
        from tianluo.detect.miners import miner_classes

        for key, kwargs in resolved.items():
            try:
                miner_classes()[key](**kwargs)
            except ValueError as exc:
                errors.append(f"miners.{key}: {exc}")
    if errors:
        raise ProfileError(source, errors)
    assert isinstance(name, str)
    return Profile(
        name=name,
        version=str(version),
        description=str(description).strip(),
        miners=resolved,
        source=source,
        digest=hashlib.sha256(raw).hexdigest(),
    )


# --- parameter kinds, read from the miners' signatures ----------------------------------------------


def _kind(annotation: Any) -> str:
    """The profile kind of a parameter annotation: duration, int, number, bool, range (each optionally `?`)."""
    optional = False
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (types.UnionType, typing.Union) and type(None) in args:
        optional = True
        rest = [a for a in args if a is not type(None)]
        annotation = rest[0] if len(rest) == 1 else annotation
    if annotation is dt.timedelta:
        kind = "duration"
    elif annotation is bool:
        kind = "bool"
    elif annotation is int:
        kind = "int"
    elif annotation is float:
        kind = "number"
    elif typing.get_origin(annotation) is tuple:
        kind = "range"
    else:
        raise TypeError(f"miner parameter annotation {annotation!r} has no profile kind")
    return kind + ("?" if optional else "")


def _specs() -> dict[str, dict[str, str]]:
    """Per miner key, its parameters and their kinds, from the `__init__` signatures."""
    from tianluo.detect import miners as module

    out = {}
    for key, cls in module.miner_classes().items():
        hints = typing.get_type_hints(cls.__init__, vars(module))
        params = inspect.signature(cls.__init__).parameters
        out[key] = {p: _kind(hints[p]) for p in params if p != "self"}
    return out


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _convert(value: Any, kind: str) -> tuple[Any, str | None]:
    """(python value, None) or (None, why it is refused)."""
    if kind.endswith("?"):
        if value is None:
            return None, None
        kind = kind[:-1]
    elif value is None:
        return None, "must be set (this parameter cannot be null)"
    if kind == "duration":
        m = _DURATION_RE.match(value) if isinstance(value, str) else None
        if m is None:
            return None, f"must be a duration such as 30m, 24h or 7d, got {value!r}"
        seconds = float(m.group(1)) * _UNIT[m.group(2)]
        if seconds <= 0:
            return None, f"must be a positive duration, got {value!r}"
        return dt.timedelta(seconds=seconds), None
    if kind == "bool":
        return (value, None) if isinstance(value, bool) else (None, f"must be true or false, got {value!r}")
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            return None, f"must be a whole number, got {value!r}"
        if value < 1:
            return None, f"must be at least 1, got {value!r}"
        return value, None
    if kind == "number":
        if not _number(value):
            return None, f"must be a number, got {value!r}"
        if value < 0:
            return None, f"must not be negative, got {value!r}"
        return float(value), None
    if kind == "range":
        if not (isinstance(value, list) and len(value) == 2 and all(_number(v) for v in value)):
            return None, f"must be [low, high], two numbers, got {value!r}"
        lo, hi = float(value[0]), float(value[1])
        if lo < 0 or lo > hi:
            return None, f"must be [low, high] with 0 <= low <= high, got {value!r}"
        return (lo, hi), None
    raise AssertionError(kind)


def _check_order(where: str, key: str, kwargs: dict[str, Any]) -> list[str]:
    """min_X <= max_X (and the pairs in `_ORDERED_PAIRS`), each side as set or as the miner's default."""
    from tianluo.detect.miners import miner_classes

    defaults = {
        p.name: p.default
        for p in inspect.signature(miner_classes()[key].__init__).parameters.values()
        if p.default is not inspect.Parameter.empty
    }
    values = {**defaults, **kwargs}
    pairs = [(p, "max_" + p[4:]) for p in values if p.startswith("min_") and "max_" + p[4:] in values]
    pairs += [(a, b) for a, b in _ORDERED_PAIRS if a in values and b in values]
    errors = []
    for small, large in pairs:
        a, b = values[small], values[large]
        if a is None or b is None or (small not in kwargs and large not in kwargs):
            continue
        if a > b:
            bad = small if small in kwargs else large
            errors.append(
                f"{where}.{bad}: {small} ({_show(a)}) must not exceed {large} ({_show(b)})"
                + ("" if small in kwargs and large in kwargs else " (the other is the miner's default)")
            )
    return errors


def _show(value: Any) -> str:
    if isinstance(value, dt.timedelta):
        seconds = value.total_seconds()
        for unit in ("w", "d", "h", "m"):
            if seconds % _UNIT[unit] == 0:
                return f"{int(seconds // _UNIT[unit])}{unit}"
        return f"{seconds:g}s"
    return repr(value)
