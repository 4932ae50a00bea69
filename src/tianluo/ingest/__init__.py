"""Ingest: turn a source (AMLworld, AMLSim, mapped CSV/Parquet, ISO 20022, Tianluo native) into canonical rows.

Public surface: `open_reader` picks the reader for a path, `ingest` runs it into a
dataset. Every record is loaded or quarantined with its file, line, field and reason.
"""

from tianluo.ingest.base import RawBatch, Reader, Rejection, SourceError
from tianluo.ingest.detect_format import FORMATS, open_reader
from tianluo.ingest.pipeline import IngestResult, ingest

__all__ = ["FORMATS", "IngestResult", "RawBatch", "Reader", "Rejection", "SourceError", "ingest", "open_reader"]
