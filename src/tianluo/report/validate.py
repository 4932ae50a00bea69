"""Check a report against its XSD (and the few rules an XSD 1.0 cannot say), and write only what passed.

Each format has one schema in `report/xsd/`, declared once and used for every file: the
generators validate what they produce, `validate_report` checks files made elsewhere, and
`write_report` refuses to put an invalid file where it could be filed. The extra checks are
CAMLMAC's cross-field rules: `seqno` runs 1, 2, 3… in each repeating group, the count fields
(CTTN, TTNM, SETN, STNM) match what the file holds, and an "other" code (…9999, 99) comes
with its description.
"""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from lxml import etree

from tianluo.report.codes import NA, OTHER_ID_TYPES
from tianluo.report.model import ReportError, ReportFile

XSD_DIR = Path(__file__).parent / "xsd"
XSD_FILES = {"camlmac-hvtr": "camlmac_hvtr.xsd", "camlmac-bstr": "camlmac_bstr.xsd", "goaml": "goaml.xsd"}
ROOTS = {"HVTR": "camlmac-hvtr", "BSTR": "camlmac-bstr", "report": "goaml"}
#: Validation messages kept per file: a broken generator must not flood the caller's log.
MAX_ERRORS = 50


@cache
def schema(fmt: str) -> etree.XMLSchema:
    """The compiled XSD of a format (camlmac-hvtr, camlmac-bstr, goaml)."""
    if fmt not in XSD_FILES:
        raise ReportError(f"no schema for format {fmt!r}; known: {', '.join(XSD_FILES)}")
    return etree.XMLSchema(etree.parse(str(XSD_DIR / XSD_FILES[fmt])))


@dataclass
class ValidationResult:
    """Outcome of validating one file (for a ZIP: all its members, errors prefixed with the member)."""

    format: str
    valid: bool
    errors: list[str] = field(default_factory=list)


def _path(el: etree._Element) -> str:
    seq = el.get("seqno")
    return f"<{el.tag}{f' seqno={seq}' if seq else ''}>"


def _camlmac_rules(root: etree._Element) -> list[str]:
    errors: list[str] = []
    # seqno: 1..n in document order within each parent.
    for parent in root.iter():
        numbered = [c for c in parent if isinstance(c.tag, str) and c.get("seqno") is not None]
        for i, child in enumerate(numbered, start=1):
            if child.get("seqno") != str(i):
                errors.append(
                    f"line {child.sourceline}: {_path(child)} in <{parent.tag}> should have seqno={i} "
                    "(seqno starts at 1 and counts up in each repeating group)"
                )
                break

    def count(el: etree._Element, tag: str, expected: int) -> None:
        node = el.find(tag)
        if node is not None and (node.text or "") != str(expected):
            errors.append(f"line {node.sourceline}: {tag} is {node.text!r} but the file holds {expected}")

    if root.tag == "HVTR":
        rbif = root.find("RBIF")
        if rbif is not None:
            count(rbif, "CTTN", len(root.findall("CATIs/CATI")))
        for htcr in root.iter("HTCR"):
            count(htcr, "TTNM", len(htcr.findall("CCIFs/CCIF/TSDTs/TSDT")))
    if root.tag == "BSTR":
        rbif = root.find("RBIF")
        if rbif is not None:
            count(rbif, "SETN", len(root.findall("SEIFs/SEIF")))
            count(rbif, "STNM", len(root.findall("STIFs/STIF")))
            for code, other, needs in (("DORP", "ODRP", {"99"}), ("TPTR", "OTPR", {"99"})):
                c, o = rbif.find(code), rbif.find(other)
                if c is not None and o is not None and c.text in needs and (o.text or NA) == NA:
                    errors.append(f"line {o.sourceline}: {code} is {c.text} (other) so {other} must say which")
    # A "…9999" identity type must be described in the OITP / ORIT / OCIT that follows it.
    for el in root.iter():
        if isinstance(el.tag, str) and el.text in OTHER_ID_TYPES:
            nxt = el.getnext()
            if nxt is not None and nxt.tag in ("OITP", "ORIT", "OCIT") and (nxt.text or NA) == NA:
                errors.append(f"line {nxt.sourceline}: {el.tag} is {el.text} (other) so {nxt.tag} must say which")
    return errors


def validate_xml(content: bytes, fmt: str = "auto") -> ValidationResult:
    """Parse and validate one XML document; `fmt` "auto" picks the format from the root element."""
    try:
        root = etree.parse(io.BytesIO(content), etree.XMLParser(resolve_entities=False, no_network=True)).getroot()
    except etree.XMLSyntaxError as exc:
        return ValidationResult(fmt, False, [f"not well-formed XML: {exc}"])
    detected = ROOTS.get(root.tag)
    if fmt == "auto":
        if detected is None:
            return ValidationResult(fmt, False, [f"root element <{root.tag}> is none of {', '.join(ROOTS)}"])
        fmt = detected
    errors: list[str] = []
    if fmt.startswith("camlmac") and not content.lstrip().startswith(b"<?xml"):
        errors.append("CAMLMAC files start with an XML declaration naming UTF-8")
    elif fmt.startswith("camlmac"):
        decl = content.lstrip()[:100].split(b"?>")[0].lower()
        if b'encoding="utf-8"' not in decl and b"encoding='utf-8'" not in decl:
            errors.append("CAMLMAC files are UTF-8 and must declare encoding=\"UTF-8\"")
    xsd = schema(fmt)
    if not xsd.validate(root.getroottree()):
        errors += [f"line {e.line}: {e.message}" for e in xsd.error_log]
    if fmt.startswith("camlmac") and root.tag == {"camlmac-hvtr": "HVTR", "camlmac-bstr": "BSTR"}[fmt]:
        errors += _camlmac_rules(root)
    return ValidationResult(fmt, not errors, errors[:MAX_ERRORS])


def validate_report(source: Path | str | bytes, fmt: str = "auto") -> ValidationResult:
    """Validate a report file from anywhere: an XML (any supported format) or a CAMLMAC ZIP of XMLs."""
    if isinstance(source, bytes):
        content = source
    else:
        try:
            content = Path(source).read_bytes()
        except OSError as exc:
            raise ReportError(f"cannot read {source}: {exc}") from None
    if content[:4] == b"PK\x03\x04":
        try:
            zf = zipfile.ZipFile(io.BytesIO(content))
        except zipfile.BadZipFile as exc:
            return ValidationResult("zip", False, [f"not a readable ZIP: {exc}"])
        errors: list[str] = []
        names = zf.namelist()
        if not names:
            errors.append("the ZIP is empty")
        for name in names:
            res = validate_xml(zf.read(name), fmt)
            errors += [f"{name}: {e}" for e in res.errors]
        return ValidationResult("zip", not errors, errors[:MAX_ERRORS])
    return validate_xml(content, fmt)


def checked(file_name: str, content: bytes, fmt: str, *, pseudonymised: bool, info: dict | None = None) -> ReportFile:
    """A ReportFile for freshly generated content, validated against its schema."""
    res = validate_xml(content, fmt)
    return ReportFile(file_name, content, fmt, res.valid, res.errors, pseudonymised, dict(info or {}))


def write_report(report: ReportFile, out_dir: Path | str, *, force: bool = False) -> Path:
    """Write a report into `out_dir` under its file name; ReportError if it is invalid or already there.

    An invalid file is refused unless `force`, and so is overwriting a file (a filed report's
    name must never be reused); the write goes to a temporary name first, so a crash never
    leaves half a report under a name that could be filed.
    """
    out = Path(out_dir)
    if not report.valid and not force:
        shown = "\n  ".join(report.errors[:10])
        raise ReportError(f"{report.file_name} failed validation and was not written (force writes it):\n  {shown}")
    out.mkdir(parents=True, exist_ok=True)
    target = out / report.file_name
    if target.exists() and not force:
        raise ReportError(f"{target} already exists; a report name is never reused (take a new sequence number)")
    tmp = target.with_name(f".{target.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(report.content)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, target)
    return target
