"""CAMLMAC file names, the per-day sequence number, and ZIP packages of at most 5 MB.

A file name is `<N|C|D><BH|BS><RICD:14>-<yyyymmdd>-<seq:8>.XML` (spec; REGULATIONS.md §3.1):
N new, C change, D delete (delete exists for large-value reports only), BH a bank's
large-value report, BS its suspicious report, and a sequence number that restarts at 1 each
day. The sequence must never repeat within a day, so it is kept in a small JSON file next to
the reports, taken under a file lock, and never lower than what the folder already holds.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import re
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import date
from pathlib import Path

from tianluo.report.model import ReportError, ReportFile

#: Largest ZIP CAMLMAC accepts (spec: "ZIP files of ≤ 5 MB"); a MB is taken as 1024 × 1024 bytes.
MAX_ZIP_BYTES = 5 * 1024 * 1024
#: Report kinds of a bank (the spec's BH/BS); securities (SH/SS) and insurance (IH/IS) are not written.
KINDS = {"camlmac-hvtr": "BH", "camlmac-bstr": "BS"}
ACTIONS = ("N", "C", "D")
SEQUENCE_FILE = ".tianluo-report-sequence.json"
_NAME = re.compile(r"([NCD])(BH|BS|SH|SS|IH|IS)([A-Z0-9]{14})-(\d{8})-(\d{8})\.(XML|ZIP)")


def file_name(action: str, fmt: str, ricd: str, day: date, seq: int, ext: str = "XML") -> str:
    """`NBHC0000000000001-20180701-00000010.XML`-style name; ReportError on an impossible combination."""
    if action not in ACTIONS:
        raise ReportError(f"report action {action!r} must be N (new), C (change) or D (delete)")
    if fmt not in KINDS:
        raise ReportError(f"{fmt!r} has no CAMLMAC file name; use camlmac-hvtr or camlmac-bstr")
    if action == "D" and fmt != "camlmac-hvtr":
        raise ReportError("only large-value reports can be deleted (D); correct a suspicious report with C")
    if not 1 <= seq <= 99_999_999:
        raise ReportError(f"sequence number {seq} must be between 1 and 99999999")
    if not re.fullmatch(r"[A-Z0-9]{14}", ricd):
        raise ReportError(f"RICD {ricd!r} must be 14 upper-case letters or digits")
    return f"{action}{KINDS[fmt]}{ricd}-{day:%Y%m%d}-{seq:08d}.{ext}"


def parse_file_name(name: str) -> dict[str, str | int] | None:
    """The parts of a CAMLMAC file name (action, kind, ricd, day, seq, ext), or None if it is not one."""
    m = _NAME.fullmatch(Path(name).name.upper())
    if not m:
        return None
    action, kind, ricd, day, seq, ext = m.groups()
    return {"action": action, "kind": kind, "ricd": ricd, "day": day, "seq": int(seq), "ext": ext}


def renumber(files: Sequence[ReportFile], first_seq: int) -> list[ReportFile]:
    """The same files named with sequence numbers `first_seq`, `first_seq + 1`, … (content is unchanged:
    a CAMLMAC XML does not mention its own name), so numbers are taken only for files that exist."""
    out = []
    for i, f in enumerate(files):
        parts = parse_file_name(f.file_name)
        if parts is None:
            raise ReportError(f"{f.file_name} is not a CAMLMAC file name")
        name = f"{parts['action']}{parts['kind']}{parts['ricd']}-{parts['day']}-{first_seq + i:08d}.{parts['ext']}"
        out.append(replace(f, file_name=name))
    return out


class DailySequence:
    """The next free sequence numbers of a reporting institution's day, for XML files and for ZIPs.

    Numbers are kept in `<folder>/.tianluo-report-sequence.json` under an exclusive lock, and
    a number is never reused even if a file was moved away after filing; files already in the
    folder raise the floor, so a lost state file cannot lead to a duplicate name either.
    """

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder)
        self.path = self.folder / SEQUENCE_FILE

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, int]]:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / (SEQUENCE_FILE + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                state = json.loads(self.path.read_text()) if self.path.exists() else {}
            except ValueError as exc:
                raise ReportError(f"{self.path} is damaged ({exc}); fix or remove it") from None
            yield state
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
            os.replace(tmp, self.path)

    def _floor(self, ricd: str, day: date, ext: str) -> int:
        best = 0
        for p in self.folder.iterdir() if self.folder.exists() else []:
            parts = parse_file_name(p.name)
            if parts and parts["ricd"] == ricd and parts["day"] == f"{day:%Y%m%d}" and parts["ext"] == ext:
                best = max(best, int(parts["seq"]))
        return best

    def take(self, ricd: str, day: date, count: int = 1, *, ext: str = "XML") -> int:
        """Reserve `count` consecutive numbers of `day` and return the first."""
        if count < 1:
            raise ValueError("count must be at least 1")
        key = f"{ricd}:{day:%Y%m%d}:{ext}"
        with self._locked() as state:
            first = max(int(state.get(key, 0)), self._floor(ricd, day, ext)) + 1
            state[key] = first + count - 1
        if first + count - 1 > 99_999_999:
            raise ReportError(f"the sequence of {day} for {ricd} is exhausted")
        return first


#: Bytes of a ZIP's end-of-central-directory record, and per member its two headers without the name.
_ZIP_END = 22
_ZIP_PER_MEMBER = 30 + 46


def _member_cost(member: ReportFile) -> int:
    """Exact bytes a member adds to a ZIP: its deflated data (as zipfile makes it) and both headers."""
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    size = len(deflate.compress(member.content)) + len(deflate.flush())
    return _ZIP_PER_MEMBER + 2 * len(member.file_name.encode()) + size


def _zip_bytes(members: Sequence[ReportFile]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for m in members:
            info = zipfile.ZipInfo(m.file_name, date_time=(2000, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, m.content, compress_type=zipfile.ZIP_DEFLATED, compresslevel=6)
    return buf.getvalue()


def package_zips(
    files: Sequence[ReportFile], *, first_seq: int, max_bytes: int = MAX_ZIP_BYTES
) -> list[ReportFile]:
    """Pack report XMLs into ZIPs of at most `max_bytes`, one message type per ZIP, in file order.

    Each ZIP is named like its XML files (same action, kind, RICD and day) with its own ZIP
    sequence number from `first_seq`. A single XML that does not fit raises ReportError:
    large-value reports are split into small enough XMLs when they are generated. The ZIPs'
    `valid` is that of all their members; their `pseudonymised` is true if any member's is.
    """
    if not files:
        return []
    heads = set()
    for f in files:
        parts = parse_file_name(f.file_name)
        if parts is None or parts["ext"] != "XML":
            raise ReportError(f"{f.file_name} is not a CAMLMAC report XML name")
        heads.add((parts["action"], parts["kind"], parts["ricd"], parts["day"]))
    if len(heads) > 1:
        raise ReportError(
            "one ZIP holds one message type of one institution and day; got " + ", ".join(sorted(map(str, heads)))
        )
    action, kind, ricd, day = heads.pop()
    groups: list[list[ReportFile]] = [[]]
    used = _ZIP_END
    for f in files:
        cost = _member_cost(f)
        if _ZIP_END + cost > max_bytes:
            raise ReportError(f"{f.file_name} does not fit in a {max_bytes}-byte ZIP even alone")
        if used + cost > max_bytes:
            groups.append([])
            used = _ZIP_END
        groups[-1].append(f)
        used += cost
    zips = []
    for i, members in enumerate(groups):
        name = f"{action}{kind}{ricd}-{day}-{first_seq + i:08d}.ZIP"
        content = _zip_bytes(members)
        if len(content) > max_bytes:  # the cost model above is exact; this guards against a zipfile change
            raise ReportError(f"{name} came out at {len(content)} bytes, over the {max_bytes}-byte limit")
        zips.append(
            ReportFile(
                file_name=name,
                content=content,
                format="zip",
                valid=all(m.valid for m in members),
                errors=[f"{m.file_name}: {e}" for m in members for e in m.errors],
                pseudonymised=any(m.pseudonymised for m in members),
                info={"members": [m.file_name for m in members]},
            )
        )
    return zips
