"""Storage of the canonical tables: day-partitioned Parquet, an atomic manifest, a DuckDB catalogue."""

from tianluo.store.dataset import Dataset, DatasetError

__all__ = ["Dataset", "DatasetError"]
