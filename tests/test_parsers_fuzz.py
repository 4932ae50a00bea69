"""Fuzz every input parser: mutated sources end in a loaded dataset (bad rows quarantined) or a clean error.

For each format `tianluo ingest` reads (native Tianluo folder, AMLworld CSV, AMLSim
folder, ISO 20022 pacs.008 XML, a mapped core-banking CSV in GB18030), Hypothesis takes
a small valid source and damages one of its files — flipped bytes, random bytes inserted,
ranges deleted, lines duplicated, the file cut short. The only acceptable outcomes are a
finished ingest or `SourceError` (the message the CLI prints); any other exception is a
parser crash. A finished ingest must also have left the dataset readable.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ROOT, SHARED_DATA
from tianluo.ingest import SourceError, ingest, open_reader
from tianluo.protect import Tokenizer
from tianluo.reference.currency import FxTable
from tianluo.store import Dataset

DATA = ROOT / "tests" / "data"
FX = FxTable.load()
TOKENIZER = Tokenizer(bytes(range(32)))

# One edit: (kind, position in thousandths of the file, length, random bytes). Integers, not
# floats: a library loaded earlier in the suite sets flush-to-zero, which Hypothesis' float
# strategies refuse to run under.
_edit = st.tuples(st.sampled_from(["flip", "insert", "delete", "dup_line", "truncate"]),
                  st.integers(0, 1000), st.integers(1, 64), st.binary(min_size=1, max_size=16))


def _damage(data: bytes, edits: list[tuple[str, int, int, bytes]]) -> bytes:
    buf = bytearray(data)
    for kind, where, n, junk in edits:
        if not buf:
            break
        i = min(where * len(buf) // 1000, len(buf) - 1)
        if kind == "flip":
            for k in range(i, min(i + n, len(buf))):
                buf[k] ^= junk[k % len(junk)] or 0xFF
        elif kind == "insert":
            buf[i:i] = junk
        elif kind == "delete":
            del buf[i:i + n]
        elif kind == "dup_line":
            start = buf.rfind(b"\n", 0, i) + 1
            end = buf.find(b"\n", i)
            end = len(buf) if end < 0 else end + 1
            buf[end:end] = buf[start:end]
        else:
            del buf[i:]
    return bytes(buf)


def _amlsim(dest: Path) -> Path:
    src = SHARED_DATA / "amlsim-sample"
    if not src.exists():
        pytest.skip(f"shared data set {src} is not present on this machine")
    dest.mkdir()
    for name in ("accounts.csv", "transactions.csv.gz"):
        if name.endswith(".gz"):
            import gzip

            with gzip.open(src / name, "rt") as fh:
                head = "".join(line for _, line in zip(range(40), fh, strict=False))
            (dest / "transactions.csv").write_text(head)
        else:
            with open(src / name) as fh:
                (dest / name).write_text("".join(line for _, line in zip(range(60), fh, strict=False)))
    return dest


def _amlworld(dest: Path) -> Path:
    src = SHARED_DATA / "amlworld-format" / "HI-Small_Trans.sample.csv"
    if not src.exists():
        pytest.skip(f"shared data set {src} is not present on this machine")
    dest.mkdir()
    with open(src) as fh:
        (dest / "trans.csv").write_text("".join(line for _, line in zip(range(40), fh, strict=False)))
    return dest / "trans.csv"


def _copy(name: str) -> object:
    def make(dest: Path) -> Path:
        shutil.copytree(DATA / name, dest)
        return dest
    return make


def _pacs(dest: Path) -> Path:
    dest.mkdir()
    shutil.copy(DATA / "iso20022" / "pacs008_multi.xml", dest / "msg.xml")
    return dest / "msg.xml"


# format name → (build a valid source under a folder → the path to ingest, files that may be damaged)
SOURCES = {
    "tianluo": (_copy("report"), ["transactions.csv", "accounts.csv", "parties.csv", "tianluo-source.json"]),
    "amlworld": (_amlworld, ["trans.csv"]),
    "amlsim": (_amlsim, ["transactions.csv", "accounts.csv"]),
    "pacs008": (_pacs, ["msg.xml"]),
    "csv": (_copy("mapped"), ["core_banking_gb18030.csv", "core_banking.toml"]),
}


@pytest.mark.parametrize("fmt", sorted(SOURCES))
def test_damaged_sources_load_or_fail_cleanly(fmt: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    build, files = SOURCES[fmt]
    outcomes = {"loaded": 0, "refused": 0}

    @given(which=st.sampled_from(files), edits=st.lists(_edit, min_size=1, max_size=4))
    @settings(max_examples=25, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    def run(which: str, edits: list[tuple[str, int, int, bytes]]) -> None:
        root = tmp_path_factory.mktemp(f"fuzz-{fmt}")
        path = build(root / "src")  # type: ignore[operator]
        folder = path if path.is_dir() else path.parent
        target = folder / which
        target.write_bytes(_damage(target.read_bytes(), edits))
        mapping = folder / "core_banking.toml" if fmt == "csv" else None
        source = folder / "core_banking_gb18030.csv" if fmt == "csv" else path
        ds = Dataset(root / "ds", create=True)
        try:
            reader = open_reader(source, fmt, mapping=mapping)
            result = ingest(reader, ds, fx=FX, tokenizer=TOKENIZER)
        except SourceError as exc:
            assert str(exc), "a refusal must say why"
            outcomes["refused"] += 1
            return
        outcomes["loaded"] += 1
        assert all(n >= 0 for n in result.loaded.values()), result.loaded
        for table in ("transactions", "quarantine"):
            if ds.files(table):
                ds.read(table)

    run()
    assert outcomes["loaded"] + outcomes["refused"] == 25


_REPORT_SEEDS = [
    b'<?xml version="1.0" encoding="UTF-8"?>\n<PSTR><RBIF><RINM>x</RINM></RBIF><CTIF/></PSTR>\n',
    b'<?xml version="1.0" encoding="UTF-8"?>\n<HVTR><RBIF/><CATIs><CATI/></CATIs></HVTR>\n',
    b'<?xml version="1.0" encoding="UTF-8"?>\n<report><rentity_id>1</rentity_id><transaction/></report>\n',
]


@given(seed=st.sampled_from(_REPORT_SEEDS), edits=st.lists(_edit, max_size=4), zipped=st.booleans())
@settings(max_examples=60, deadline=None, derandomize=True, database=None)
def test_report_validator_never_crashes(seed: bytes, edits: list[tuple[str, int, int, bytes]], zipped: bool) -> None:
    """`tianluo report validate` reads files from outside: any bytes give a result or a ReportError."""
    import io
    import zipfile

    from tianluo.report import ReportError, validate_report

    content = _damage(seed, edits)
    if zipped:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("NBSC1234567890123-20240101-00000001.XML", content)
        content = buf.getvalue()
    try:
        result = validate_report(content)
    except ReportError as exc:
        assert str(exc)
        return
    assert isinstance(result.valid, bool)


def test_report_validator_resolves_no_external_entity(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-VALUE")
    xxe = (f'<?xml version="1.0"?><!DOCTYPE PSTR [<!ENTITY x SYSTEM "file://{secret}">]>'
           "<PSTR><RBIF><RINM>&x;</RINM></RBIF></PSTR>").encode()
    from tianluo.report import ReportError, validate_report

    try:
        result = validate_report(xxe)
    except ReportError as exc:
        assert "TOP-SECRET-VALUE" not in str(exc)
        return
    assert not result.valid and "TOP-SECRET-VALUE" not in " ".join(result.errors)
