"""Tianluo (天罗): financial crime and risk monitoring — ingest, detect, investigate, report."""

__version__ = "0.1.0"
