"""Ground-truth simulator: a bank's customers, their everyday money flows, and labelled injected crime.

`simulate(SimConfig(...))` returns canonical transactions, accounts and parties
(plus one ground-truth row per crime attempt); `write_source` writes them as a
folder that `tianluo ingest --format tianluo` loads. Same config and seed, same
data, byte for byte.
"""

from tianluo.simulate.engine import TRANSACTION_COLUMNS, SimConfig, Simulated, simulate
from tianluo.simulate.typologies import ALL_TYPOLOGIES, CASH_REPORT_THRESHOLD_CNY, TYPOLOGIES, Typology
from tianluo.simulate.writer import write_source

__all__ = [
    "ALL_TYPOLOGIES",
    "CASH_REPORT_THRESHOLD_CNY",
    "TRANSACTION_COLUMNS",
    "TYPOLOGIES",
    "SimConfig",
    "Simulated",
    "Typology",
    "simulate",
    "write_source",
]
