"""Reports: regulator-format files (CAMLMAC HVTR/BSTR, goAML STR) from alerts, validated against their XSDs.

Inputs are plain data (an `Institution`, a `ReportData` of canonical rows, a
`SuspiciousReportInput`), so the case store and the API hand over what they hold without
this stage depending on them. Every generator validates what it writes and returns a
`ReportFile`; `write_report` refuses to write an invalid one.
"""

from tianluo.report.camlmac import large_value_reports, suspicious_report
from tianluo.report.codes import NA, CamlmacCodes, GoamlCodes, format_amount
from tianluo.report.data import alerts_by_id, alerts_frame, large_value_alerts, load_report_data
from tianluo.report.goaml import goaml_report
from tianluo.report.model import (
    FORMATS,
    Institution,
    ReportData,
    ReportError,
    ReportFile,
    Reveal,
    SuspiciousReportInput,
)
from tianluo.report.package import MAX_ZIP_BYTES, DailySequence, file_name, package_zips, parse_file_name, renumber
from tianluo.report.validate import ValidationResult, validate_report, write_report

__all__ = [
    "FORMATS",
    "MAX_ZIP_BYTES",
    "NA",
    "CamlmacCodes",
    "DailySequence",
    "GoamlCodes",
    "Institution",
    "ReportData",
    "ReportError",
    "ReportFile",
    "Reveal",
    "SuspiciousReportInput",
    "ValidationResult",
    "alerts_by_id",
    "alerts_frame",
    "file_name",
    "format_amount",
    "goaml_report",
    "large_value_alerts",
    "large_value_reports",
    "load_report_data",
    "package_zips",
    "parse_file_name",
    "renumber",
    "suspicious_report",
    "validate_report",
    "write_report",
]
